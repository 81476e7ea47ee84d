//! What every [`ReviewsStore`] must do, as generic checks: the SQLite
//! store's unit tests and the end-to-end tests on PostgreSQL run the same
//! ones, each on a store seeded with [`PRODUCTS`] products' reviews.

use std::collections::HashSet;

use super::ReviewsStore;

/// Products whose reviews the store under test is seeded with.
pub const PRODUCTS: u32 = 100;

/// The product with the most reviews pages through all of them, newest
/// first, each once; its summary counts and averages them; a garbled
/// token is refused.
pub async fn pages_through_every_review_newest_first_and_summarises_them<S: ReviewsStore>(
    store: &S,
) {
    let index = (1..=PRODUCTS)
        .max_by_key(|i| tailor_seed::reviews(*i).len())
        .unwrap();
    let id = tailor_seed::product_id(index);
    let expected = tailor_seed::reviews(index);
    let (mut seen, mut token, mut last) =
        (HashSet::new(), String::new(), (i64::MAX, String::new()));
    loop {
        let (page, next) = store.list(id.clone(), 3, token).await.unwrap();
        assert!(page.len() <= 3);
        for r in page {
            let key = (r.create_time.unwrap().seconds, r.id.clone());
            assert!(
                key.0 < last.0 || (key.0 == last.0 && (last.1.is_empty() || key.1 < last.1)),
                "newest first: {key:?} after {last:?}"
            );
            last = key;
            assert_eq!(r.product_id, id);
            assert!(seen.insert(r.id));
        }
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen.len(), expected.len());
    let summary = store.summaries(vec![id.clone()]).await.unwrap().remove(0);
    assert_eq!(summary.review_count as usize, expected.len());
    let mean = expected.iter().map(|r| r.rating as f64).sum::<f64>() / expected.len() as f64;
    assert!((summary.average_rating - mean).abs() < 1e-9);
    for stars in 1..=5 {
        let count = expected.iter().filter(|r| r.rating == stars).count();
        assert_eq!(
            summary.rating_histogram[(stars - 1) as usize] as usize,
            count
        );
    }
    assert!(store.list("x".into(), 3, "bogus".into()).await.is_err());
    // A token is bound to its product.
    let (_, next) = store.list(id, 1, String::new()).await.unwrap();
    assert!(
        store
            .list(tailor_seed::product_id(1), 1, next)
            .await
            .is_err()
    );
}

/// Every generated review is there once: the summaries of all products
/// count exactly what the generator made, and products without reviews
/// have no summary.
pub async fn every_generated_review_is_seeded_once<S: ReviewsStore>(store: &S) {
    let ids: Vec<String> = (1..=PRODUCTS)
        .map(tailor_seed::product_id)
        .chain(["prod-unknown".to_owned()])
        .collect();
    let summaries = store.summaries(ids).await.unwrap();
    for index in 1..=PRODUCTS {
        let id = tailor_seed::product_id(index);
        let made = tailor_seed::reviews(index).len();
        let counted = summaries
            .iter()
            .find(|s| s.product_id == id)
            .map_or(0, |s| s.review_count as usize);
        assert_eq!(counted, made, "{id}");
    }
    assert!(summaries.iter().all(|s| s.product_id != "prod-unknown"));
    assert!(store.summaries(Vec::new()).await.unwrap().is_empty());
}

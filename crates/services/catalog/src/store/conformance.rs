//! What every [`CatalogStore`] must do, as generic checks: the SQLite
//! store's unit tests and the end-to-end tests on PostgreSQL run the same
//! ones, each on a store seeded with [`PRODUCTS`] generated products.

use std::collections::{BTreeMap, HashSet};

use tailor_fieldmask::FieldMask;
use tailor_proto::catalog::v1::Product;

use super::{CatalogStore, ListFilter};

/// Products the store under test is seeded with.
pub const PRODUCTS: u32 = 600;

fn price(product: &Product) -> i64 {
    product.price.as_ref().map_or(0, |m| m.amount_minor)
}

/// Every product of a listing with `filter`, page by page of `page_size`,
/// checking that pages come in id order and each says the same total.
async fn every_page<S: CatalogStore>(store: &S, filter: ListFilter) -> Vec<Product> {
    let mut all: Vec<Product> = Vec::new();
    let mut token = String::new();
    let mut total = None;
    loop {
        let page = store
            .list(ListFilter {
                page_token: token,
                ..filter.clone()
            })
            .await
            .unwrap();
        assert!(page.products.len() <= filter.page_size);
        assert_eq!(*total.get_or_insert(page.total_size), page.total_size);
        for product in page.products {
            if let Some(last) = all.last() {
                assert!(last.id < product.id, "{} then {}", last.id, product.id);
            }
            all.push(product);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(total.unwrap() as usize, all.len(), "total_size counts them");
    all
}

/// The seeded catalogue is there, once: every generated product, each in
/// its category, the categories counting them; `products` finds the ids
/// that exist.
pub async fn the_catalogue_is_seeded_once<S: CatalogStore>(store: &S) {
    let all = every_page(
        store,
        ListFilter {
            page_size: 97,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), PRODUCTS as usize);
    for (product, index) in all.iter().zip(1..) {
        assert_eq!(product, &tailor_seed::product(index));
    }
    let categories = store.categories().await.unwrap();
    assert_eq!(categories.len(), tailor_seed::categories().len());
    let counted: i32 = categories.iter().map(|c| c.product_count).sum();
    assert_eq!(counted, PRODUCTS as i32);
    assert!(
        categories.windows(2).all(|w| w[0].name < w[1].name),
        "by name"
    );
    let wanted = vec![
        tailor_seed::product_id(3),
        "prod-unknown".to_owned(),
        tailor_seed::product_id(PRODUCTS),
    ];
    let found: HashSet<String> = store
        .products(wanted)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        found,
        HashSet::from([
            tailor_seed::product_id(3),
            tailor_seed::product_id(PRODUCTS)
        ])
    );
    assert!(store.products(Vec::new()).await.unwrap().is_empty());
}

/// Filters (category, words, update time) select what they say, page
/// tokens belong to their filter, and a garbled token is refused.
pub async fn listings_filter_and_page<S: CatalogStore>(store: &S) {
    let everything: Vec<Product> = (1..=PRODUCTS).map(tailor_seed::product).collect();
    let category = everything[0].category_id.clone();
    let word = everything[0]
        .title
        .split_whitespace()
        .last()
        .unwrap()
        .to_lowercase();
    let since = {
        let mut times: Vec<i64> = everything
            .iter()
            .map(|p| p.update_time.map_or(0, |t| t.seconds))
            .collect();
        times.sort();
        times[times.len() / 2]
    };
    let filter = ListFilter {
        category_id: category.clone(),
        words: vec![word.clone()],
        updated_since: Some(since),
        page_size: 5,
        page_token: String::new(),
        fields: None,
    };
    let listed: Vec<String> = every_page(store, filter.clone())
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    let expected: Vec<String> = everything
        .iter()
        .filter(|p| p.category_id == category)
        .filter(|p| p.update_time.map_or(0, |t| t.seconds) >= since)
        .filter(|p| super::search_text(p).contains(&word))
        .map(|p| p.id.clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(listed, expected);

    // Each filter alone, any two, and none: the query holds only the
    // filters asked for, so every combination is its own statement.
    for mask in 0..8u8 {
        let subset = ListFilter {
            category_id: if mask & 1 != 0 {
                category.clone()
            } else {
                String::new()
            },
            words: if mask & 2 != 0 {
                vec![word.clone()]
            } else {
                Vec::new()
            },
            updated_since: (mask & 4 != 0).then_some(since),
            page_size: 7,
            page_token: String::new(),
            fields: None,
        };
        let expected: Vec<String> = everything
            .iter()
            .filter(|p| mask & 1 == 0 || p.category_id == category)
            .filter(|p| mask & 2 == 0 || super::search_text(p).contains(&word))
            .filter(|p| mask & 4 == 0 || p.update_time.map_or(0, |t| t.seconds) >= since)
            .map(|p| p.id.clone())
            .collect();
        let first = store.list(subset.clone()).await.unwrap();
        assert_eq!(
            first.total_size as usize,
            expected.len(),
            "filters {mask:03b}"
        );
        let listed: Vec<String> = every_page(store, subset)
            .await
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(listed, expected, "filters {mask:03b}");
    }

    let first = store.list(filter.clone()).await.unwrap();
    if !first.next_page_token.is_empty() {
        let foreign = ListFilter {
            category_id: String::new(),
            page_token: first.next_page_token,
            ..filter.clone()
        };
        assert!(
            store.list(foreign).await.is_err(),
            "a token of another filter"
        );
    }
    let garbled = ListFilter {
        page_token: "not-a-token".into(),
        ..filter
    };
    assert!(store.list(garbled).await.is_err());
    let none = store
        .list(ListFilter {
            words: vec!["zzzz-no-such-word".into()],
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.products.is_empty() && none.next_page_token.is_empty());
    assert_eq!(none.total_size, 0);
}

/// Related products are the product's category's nearest in price (ties
/// by id), as a sort of the whole category orders them, for limits from
/// none to more than the category holds; an unknown product has none.
pub async fn related_products_are_the_nearest_in_price<S: CatalogStore>(store: &S) {
    let everything: Vec<Product> = (1..=PRODUCTS).map(tailor_seed::product).collect();
    let mut by_category: BTreeMap<&str, Vec<&Product>> = BTreeMap::new();
    for product in &everything {
        by_category
            .entry(product.category_id.as_str())
            .or_default()
            .push(product);
    }
    for product in everything.iter().step_by(11) {
        let mut expected: Vec<&Product> = by_category[product.category_id.as_str()]
            .iter()
            .copied()
            .filter(|p| p.id != product.id)
            .collect();
        expected.sort_by(|a, b| {
            price(a)
                .abs_diff(price(product))
                .cmp(&price(b).abs_diff(price(product)))
                .then_with(|| a.id.cmp(&b.id))
        });
        for limit in [0, 1, 4, 12, PRODUCTS as usize] {
            let found: Vec<String> = store
                .related(product.id.clone(), limit, None)
                .await
                .unwrap()
                .unwrap()
                .into_iter()
                .map(|p| p.id)
                .collect();
            let wanted: Vec<String> = expected.iter().take(limit).map(|p| p.id.clone()).collect();
            assert_eq!(found, wanted, "{} limit {limit}", product.id);
        }
    }
    // A read mask is applied in the store: each product as the whole one
    // with the unselected fields cleared.
    let product_type = prost_reflect::DescriptorPool::decode(tailor_proto::FILE_DESCRIPTOR_SET)
        .unwrap()
        .get_message_by_name("tailor.catalog.v1.Product")
        .unwrap();
    let mask = FieldMask::parse(
        &product_type,
        &["id", "title", "price.amount_minor", "images"],
    )
    .unwrap();
    let whole = store
        .related("prod-000007".into(), 6, None)
        .await
        .unwrap()
        .unwrap();
    let selected = store
        .related("prod-000007".into(), 6, Some(mask.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(selected.len(), 6);
    assert!(
        selected
            .iter()
            .all(|p| p.description.is_empty() && p.price.is_some())
    );
    let expected: Vec<Product> = whole.into_iter().map(|p| mask.apply(p)).collect();
    assert_eq!(selected, expected);
    let listed = store
        .list(ListFilter {
            page_size: 4,
            fields: Some(mask.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let whole = store
        .list(ListFilter {
            page_size: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    let expected: Vec<Product> = whole.products.into_iter().map(|p| mask.apply(p)).collect();
    assert_eq!(listed.products, expected);
    assert!(
        store
            .related("prod-unknown".into(), 4, None)
            .await
            .unwrap()
            .is_none()
    );
}

//! What every [`OrderStore`] must do, as generic checks: the SQLite store's
//! unit tests and the end-to-end tests on PostgreSQL run the same ones.

use std::collections::HashSet;
use std::time::Duration;

use tailor_proto::orders::v1::{Order, OrderStatus};

use super::{Fulfilment, OrderStore};

fn order(id: &str, customer: &str) -> Order {
    Order {
        id: id.into(),
        customer_id: customer.into(),
        ..Default::default()
    }
}

/// A key replays its order, refuses a different request, is scoped per
/// customer; the simulator (fulfilment step 1 ms) moves an order through
/// every status in order and leaves it delivered.
pub async fn keys_replay_conflict_and_the_simulator_delivers<S: Fulfilment>(store: &S) {
    let mut changes = store.changes();
    let first = store
        .create("k".into(), "f1".into(), order("ord-1", "ann"))
        .await
        .unwrap()
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.order.status, OrderStatus::Placed as i32);
    let replay = store
        .create("k".into(), "f1".into(), order("ord-2", "ann"))
        .await
        .unwrap()
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.order.id, "ord-1");
    let conflict = store
        .create("k".into(), "f2".into(), order("ord-3", "ann"))
        .await
        .unwrap();
    assert!(conflict.is_none(), "same key, different request");
    let other_customer = store
        .create("k".into(), "f1".into(), order("ord-4", "bob"))
        .await
        .unwrap()
        .unwrap();
    assert!(!other_customer.replayed, "keys are scoped per customer");
    assert!(store.get("ord-2".into()).await.unwrap().is_none());

    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.last() != Some(&(OrderStatus::Delivered as i32)) {
        assert!(
            tokio::time::Instant::now() < until,
            "delivered in time: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
        store.advance_due().await.unwrap();
        while let Ok(change) = changes.try_recv() {
            if change.id == "ord-1" && seen.last() != Some(&change.status) {
                seen.push(change.status);
            }
        }
    }
    assert_eq!(
        seen,
        vec![1, 2, 3, 4, 5],
        "placed, confirmed, packed, shipped, delivered in order"
    );
    let stored = store.get("ord-1".into()).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Delivered as i32);
    let millis = |t: Option<prost_types::Timestamp>| {
        let t = t.unwrap();
        t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
    };
    assert!(millis(stored.update_time) > millis(stored.create_time));
    assert_eq!(store.advance_due().await.unwrap(), 0, "nothing left to do");
}

/// Many retries of one key at once store one order, and every retry gets
/// it.
pub async fn concurrent_retries_of_one_key_store_one_order<S: OrderStore + Clone>(store: &S) {
    let attempts: Vec<_> = (0..24)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create(
                        "double-click".into(),
                        "same".into(),
                        order(&format!("ord-try-{n}"), "cyd"),
                    )
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for attempt in attempts {
        let created = attempt.await.unwrap();
        fresh += usize::from(!created.replayed);
        ids.insert(created.order.id);
    }
    assert_eq!((ids.len(), fresh), (1, 1), "{ids:?}");
    let (listed, next) = store.list("cyd".into(), 100, String::new()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(next.is_empty());
}

/// A customer's orders page newest first, every order once, and a page
/// token from another customer's listing is refused.
pub async fn orders_page_newest_first<S: OrderStore>(store: &S) {
    for n in 0..7 {
        store
            .create(
                format!("key-{n}"),
                format!("f{n}"),
                order(&format!("ord-p{n}"), "dee"),
            )
            .await
            .unwrap()
            .unwrap();
        // Distinct creation times for most, equal ones for some.
        if n % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    store
        .create("key-x".into(), "fx".into(), order("ord-else", "eve"))
        .await
        .unwrap();
    let (mut token, mut seen, mut last) = (String::new(), Vec::new(), None);
    loop {
        let (page, next) = store.list("dee".into(), 3, token).await.unwrap();
        assert!(page.len() <= 3);
        for o in page {
            assert_eq!(o.customer_id, "dee");
            let key = (
                o.create_time.unwrap().seconds,
                o.create_time.unwrap().nanos,
                o.id.clone(),
            );
            if let Some(last) = &last {
                assert!(&key < last, "newest first: {key:?} after {last:?}");
            }
            last = Some(key);
            seen.push(o.id);
        }
        if next.is_empty() {
            break;
        }
        token = next;
    }
    seen.sort();
    let expected: Vec<String> = (0..7).map(|n| format!("ord-p{n}")).collect();
    assert_eq!(seen, expected);
    let (_, eves_next) = store.list("eve".into(), 1, String::new()).await.unwrap();
    assert!(eves_next.is_empty());
    let (_, dees_next) = store.list("dee".into(), 1, String::new()).await.unwrap();
    assert!(store.list("eve".into(), 1, dees_next).await.is_err());
}

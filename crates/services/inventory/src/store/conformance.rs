//! What every [`InventoryStore`] must do, as generic checks: the SQLite
//! store's unit tests and the end-to-end tests on PostgreSQL run the same
//! ones, each on a store stocked with [`PRODUCTS`] generated products.

use tailor_proto::inventory::v1::ReservationLine;

use super::{InventoryStore, ReserveOutcome};

/// Products the store under test is stocked with.
pub const PRODUCTS: u32 = 50;

/// A generated product with at least `units` in one warehouse.
fn product_with(units: i32) -> String {
    let index = (1..=PRODUCTS)
        .find(|i| tailor_seed::stock(*i).iter().any(|w| w.on_hand >= units))
        .unwrap();
    tailor_seed::product_id(index)
}

async fn available<S: InventoryStore>(store: &S, id: &str) -> i32 {
    store.stock(vec![id.to_owned()]).await.unwrap()[0].total_available
}

/// Twenty retries of one reservation at once hold its stock once; a
/// reservation no warehouse can serve is refused.
pub async fn concurrent_retries_of_one_reservation_hold_stock_once<S: InventoryStore + Clone>(
    store: &S,
) {
    let id = product_with(5);
    let before = available(store, &id).await;
    let line = ReservationLine {
        product_id: id.clone(),
        quantity: 5,
    };
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (store, line) = (store.clone(), line.clone());
            tokio::spawn(async move { store.reserve("rsv-1".into(), vec![line]).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.unwrap());
    }
    let fresh = outcomes
        .iter()
        .filter(|o| matches!(o, ReserveOutcome::Reserved(_, false)))
        .count();
    assert_eq!(fresh, 1);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ReserveOutcome::Reserved(r, _) if r.lines.len() == 1)),
        "every retry is answered with the reservation: {outcomes:?}"
    );
    assert_eq!(before - available(store, &id).await, 5);
    let too_much = store
        .reserve(
            "rsv-2".into(),
            vec![ReservationLine {
                product_id: id,
                quantity: 100_000,
            }],
        )
        .await
        .unwrap();
    assert!(matches!(too_much, ReserveOutcome::Insufficient(_)));
}

/// Released twice at once, a reservation gives its stock back once; its id
/// is free again afterwards.
pub async fn a_released_reservation_gives_its_stock_back_exactly_once<S: InventoryStore>(
    store: &S,
) {
    let id = product_with(3);
    let before = available(store, &id).await;
    let line = ReservationLine {
        product_id: id.clone(),
        quantity: 3,
    };
    store
        .reserve("rsv-3".into(), vec![line.clone()])
        .await
        .unwrap();
    // Another reservation of the same product stays held throughout.
    store
        .reserve(
            "rsv-other".into(),
            vec![ReservationLine {
                quantity: 1,
                ..line.clone()
            }],
        )
        .await
        .unwrap();
    assert_eq!(available(store, &id).await, before - 4);
    let (first, second) =
        tokio::join!(store.release("rsv-3".into()), store.release("rsv-3".into()));
    let released = [first.unwrap(), second.unwrap()];
    assert_eq!(released.iter().filter(|r| **r).count(), 1, "{released:?}");
    assert_eq!(available(store, &id).await, before - 1);
    assert!(!store.release("rsv-3".into()).await.unwrap());
    assert!(!store.release("never-made".into()).await.unwrap());
    assert_eq!(available(store, &id).await, before - 1);
    // The id is free again: a retried order holds stock afresh.
    let again = store.reserve("rsv-3".into(), vec![line]).await.unwrap();
    assert!(matches!(again, ReserveOutcome::Reserved(_, false)));
    assert_eq!(available(store, &id).await, before - 4);
}

/// Many different reservations of one product at once, together asking for
/// twice its stock: exactly the stock is held, one unit each, none twice,
/// and every warehouse holds at most what it has. A reservation of two
/// products that cannot both be served holds neither.
pub async fn concurrent_reservations_never_hold_more_than_the_stock<S: InventoryStore + Clone>(
    store: &S,
) {
    let index = (1..=PRODUCTS)
        .rev()
        .find(|i| {
            let total: i32 = tailor_seed::stock(*i).iter().map(|w| w.on_hand).sum();
            (3..=60).contains(&total)
        })
        .expect("a product with a little stock");
    let id = tailor_seed::product_id(index);
    let stock = available(store, &id).await;
    assert!(stock > 0, "{id} has stock");
    let attempts: Vec<_> = (0..stock * 2)
        .map(|n| {
            let store = store.clone();
            let line = ReservationLine {
                product_id: id.clone(),
                quantity: 1,
            };
            tokio::spawn(async move {
                store
                    .reserve(format!("rsv-many-{n}"), vec![line])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut held = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            ReserveOutcome::Reserved(_, false) => held += 1,
            ReserveOutcome::Insufficient(product) => assert_eq!(product, id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(held, stock, "exactly the stock is held");
    let after = store.stock(vec![id.clone()]).await.unwrap().remove(0);
    assert_eq!(after.total_available, 0);
    for warehouse in &after.warehouses {
        assert!(
            warehouse.reserved <= warehouse.on_hand,
            "never more than on hand: {warehouse:?}"
        );
    }
    // All or nothing: the second line cannot be served, so the first is
    // given back.
    let other = product_with(1);
    let before = available(store, &other).await;
    let both = store
        .reserve(
            "rsv-both".into(),
            vec![
                ReservationLine {
                    product_id: other.clone(),
                    quantity: 1,
                },
                ReservationLine {
                    product_id: id.clone(),
                    quantity: 1,
                },
            ],
        )
        .await
        .unwrap();
    assert!(matches!(both, ReserveOutcome::Insufficient(p) if p == id));
    assert_eq!(available(store, &other).await, before);
}

/// Every generated product is stocked in its generated warehouses, nearest
/// first, and unknown products are left out.
pub async fn stock_is_seeded_and_answered_per_warehouse<S: InventoryStore>(store: &S) {
    let ids: Vec<String> = [1, 2, PRODUCTS]
        .iter()
        .map(|i| tailor_seed::product_id(*i))
        .chain(["prod-unknown".to_owned()])
        .collect();
    let stocks = store.stock(ids.clone()).await.unwrap();
    assert_eq!(stocks.len(), 3, "the unknown product is left out");
    for (stock, index) in stocks.iter().zip([1, 2, PRODUCTS]) {
        assert_eq!(stock.product_id, tailor_seed::product_id(index));
        let mut expected = tailor_seed::stock(index);
        expected.sort_by_key(|w| w.ship_days);
        let names: Vec<&str> = stock
            .warehouses
            .iter()
            .map(|w| w.warehouse_id.as_str())
            .collect();
        let wanted: Vec<&str> = expected.iter().map(|w| w.warehouse_id.as_str()).collect();
        assert_eq!(names, wanted);
        let on_hand: i32 = stock.warehouses.iter().map(|w| w.on_hand).sum();
        assert_eq!(on_hand, expected.iter().map(|w| w.on_hand).sum::<i32>());
        assert_eq!(
            stock.total_available,
            stock.warehouses.iter().map(|w| w.available).sum::<i32>()
        );
    }
    assert!(store.stock(Vec::new()).await.unwrap().is_empty());
}

//! A BFF carries every order watch of its clients to the orders service as
//! streams on its one HTTP/2 connection there. A client connection may
//! hold 256 streams at a BFF; the BFF's own connection to a downstream
//! service must be allowed far more, or the 257th watch in the whole BFF,
//! whoever opened it, waits until another one ends.

use std::time::Duration;

use futures_util::StreamExt;
use tailor_e2e::{PRODUCTS, Server, Stack, StackOptions, bearer, web_token};
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{OrderLineInput, PlaceOrderRequest, WatchOrderRequest};
use tailor_web_bff::WATCHES_PER_USER;
use tonic::transport::Channel;

/// Watches held at once: more than the 256 streams of one connection.
const WATCHES: usize = 300;
/// Client connections the watches are spread over, round robin: 150
/// streams on each, within what a BFF allows one client connection.
const CONNECTIONS: usize = 2;
/// How long all watches may take to deliver their first message; a watch
/// queued behind a stream limit would wait for as long as the others stay
/// open, which is the whole test.
const OPEN_WITHIN: Duration = Duration::from_secs(60);

/// The seeded products with stock for a few orders each.
fn stocked() -> Vec<String> {
    (1..=PRODUCTS)
        .filter(|&index| {
            tailor_seed::stock(index)
                .iter()
                .map(|w| w.available)
                .sum::<i32>()
                >= 20
        })
        .map(|index| format!("prod-{index:06}"))
        .collect()
}

#[tokio::test]
async fn a_bff_holds_more_than_256_order_watches_at_once_on_its_one_connection_to_orders() {
    // Orders stay placed for the whole test, so every watch stays open.
    let stack = Stack::start_with(StackOptions {
        fulfilment_step: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    hold_watches(&stack.web, &stack.orders).await;
}

/// Places [`WATCHES`] orders through the web BFF `web` and watches them
/// all at once; panics unless every watch has its first message within
/// [`OPEN_WITHIN`] and all are open at the orders service `orders`.
pub(crate) async fn hold_watches(web: &Server, orders: &Server) {
    // Each user places and watches at most WATCHES_PER_USER orders (the
    // watch cap; the order rate's burst is above it): 38 users.
    let users = WATCHES.div_ceil(WATCHES_PER_USER);
    let tokens: Vec<String> = (0..users)
        .map(|u| web_token(&format!("watcher-{u}")))
        .collect();
    let token = |i: usize| tokens[i / WATCHES_PER_USER].clone();
    let products = stocked();
    assert!(products.len() >= 30, "{} stocked products", products.len());
    let mut clients: Vec<ShopServiceClient<Channel>> = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(ShopServiceClient::new(web.channel().await));
    }
    let client = |i: usize| clients[i % CONNECTIONS].clone();

    let placed: Vec<(usize, String)> = futures_util::stream::iter(0..WATCHES)
        .map(|i| {
            let (mut client, token, product) =
                (client(i), token(i), products[i % products.len()].clone());
            async move {
                let request = PlaceOrderRequest {
                    idempotency_key: format!("capacity-{i}"),
                    lines: vec![OrderLineInput {
                        product_id: product,
                        quantity: 1,
                    }],
                };
                let order = client
                    .place_order(bearer(&token, request))
                    .await
                    .unwrap_or_else(|status| panic!("order {i}: {status:?}"))
                    .into_inner()
                    .order
                    .unwrap();
                (i, order.id)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(placed.len(), WATCHES);

    let orders_before = orders.stats.snapshot();
    let opened = futures_util::stream::iter(placed)
        .map(|(i, order_id)| {
            let (mut client, token) = (client(i), token(i));
            async move {
                let request = WatchOrderRequest {
                    order_id: order_id.clone(),
                };
                let mut updates = client
                    .watch_order(bearer(&token, request))
                    .await
                    .unwrap_or_else(|status| panic!("watch {i}: {status:?}"))
                    .into_inner();
                // The order's current state arrives first: the stream is
                // open end to end.
                let first = updates
                    .message()
                    .await
                    .unwrap_or_else(|status| panic!("watch {i}: {status:?}"))
                    .unwrap_or_else(|| panic!("watch {i} ended before its first message"));
                assert_eq!(first.order.unwrap().id, order_id);
                updates
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let mut held = tokio::time::timeout(OPEN_WITHIN, opened)
        .await
        .unwrap_or_else(|_| {
            panic!("not all {WATCHES} watches had their first message within {OPEN_WITHIN:?}")
        });
    assert_eq!(held.len(), WATCHES);

    // Every watch is open at the orders service at once (a watch is a call
    // in flight there until it ends), carried by the web BFF.
    let ended = |c: tailor_interceptors::access_log::CallCounts| {
        (c.succeeded + c.failed + c.cancelled) as i64
    };
    let now = orders.stats.snapshot();
    let in_flight =
        (now.started as i64 - orders_before.started as i64) - (ended(now) - ended(orders_before));
    assert!(
        in_flight >= WATCHES as i64,
        "{in_flight} calls in flight at the orders service with {WATCHES} watches open"
    );
    // And none of them has ended: each is still waiting for a change.
    for (i, updates) in held.iter_mut().enumerate() {
        let next = tokio::time::timeout(Duration::from_millis(1), updates.message()).await;
        assert!(next.is_err(), "watch {i} ended or moved on: {next:?}");
    }
}

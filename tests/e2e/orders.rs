use std::collections::HashSet;

use tailor_e2e::{Stack, bearer, web_token};
use tailor_proto::orders::v1::ListOrdersRequest;
use tailor_proto::orders::v1::orders_service_client::OrdersServiceClient;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{OrderLineInput, PlaceOrderRequest};

#[tokio::test]
async fn concurrent_retries_with_one_key_make_exactly_one_order() {
    let stack = Stack::start().await;
    let channel = stack.web.channel().await;
    let token = web_token("frank");
    let attempts = (0..16).map(|_| {
        let mut web = ShopServiceClient::new(channel.clone());
        let token = token.clone();
        tokio::spawn(async move {
            web.place_order(bearer(
                &token,
                PlaceOrderRequest {
                    idempotency_key: "double-click".into(),
                    lines: vec![OrderLineInput {
                        product_id: "prod-000020".into(),
                        quantity: 1,
                    }],
                },
            ))
            .await
            .map(|r| r.into_inner().order.unwrap().id)
        })
    });
    let mut ids = HashSet::new();
    for attempt in futures_util::future::join_all(attempts).await {
        ids.insert(attempt.unwrap().unwrap());
    }
    assert_eq!(ids.len(), 1, "every retry got the same order: {ids:?}");

    let stored = OrdersServiceClient::new(stack.orders.channel().await)
        .list_orders(tailor_e2e::on_behalf_of(
            "web-bff",
            "orders",
            "frank",
            ListOrdersRequest {
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(stored.len(), 1, "exactly one order is stored");
}

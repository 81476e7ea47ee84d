//! Inputs out of bounds get INVALID_ARGUMENT naming what is wrong, and
//! leave nothing behind: money that would overflow, searches too long to
//! be a shopper's.

use tailor_e2e::Stack;
use tailor_proto::orders::v1::orders_service_client::OrdersServiceClient;
use tailor_proto::orders::v1::{CreateOrderRequest, ListOrdersRequest, OrderLine};
use tailor_proto::r#type::v1::Money;
use tailor_proto::web::v1::ListProductsRequest;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tonic::Code;

#[tokio::test]
async fn an_order_total_that_would_overflow_is_refused_and_not_stored() {
    let stack = Stack::start().await;
    let mut orders = OrdersServiceClient::new(stack.orders.channel().await);
    let line = |product: &str| OrderLine {
        product_id: product.into(),
        title: "Overpriced".into(),
        quantity: 2,
        unit_price: Some(Money {
            currency_code: "EUR".into(),
            amount_minor: 4_611_686_018_427_387_904,
        }),
    };
    for lines in [
        vec![line("prod-000001")],
        vec![line("prod-000001"), line("prod-000002")],
    ] {
        let status = orders
            .create_order(CreateOrderRequest {
                customer_id: "overflow-customer".into(),
                idempotency_key: format!("overflow-{}", lines.len()),
                lines,
                channel: "web".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("total"), "{}", status.message());
    }
    let stored = orders
        .list_orders(ListOrdersRequest {
            customer_id: "overflow-customer".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stored.orders.is_empty(), "{:?}", stored.orders);
}

#[tokio::test]
async fn searches_longer_than_a_shoppers_are_refused_naming_the_query() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let search = |query: String| ListProductsRequest {
        query,
        page_size: 3,
        ..Default::default()
    };
    let catalog_before = stack.catalog.stats.snapshot();
    for words in [1200, 990, 9] {
        let status = web
            .list_products(search(vec!["mug"; words].join(" ")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{words} words");
        assert_eq!(status.message(), "query must hold at most 8 words");
    }
    let status = web
        .list_products(search("m".repeat(201)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("query must be"),
        "{}",
        status.message()
    );
    // Refused as the caller's mistake, not as an outage of the catalog.
    assert_eq!(
        stack.catalog.stats.snapshot().succeeded,
        catalog_before.succeeded
    );

    let answer = web
        .list_products(search(["mug"; 8].join(" ")))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.total_size >= 0);
}

#[tokio::test]
async fn oversized_sign_in_names_and_malformed_keys_are_refused_before_any_work() {
    use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
    use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
    use tailor_proto::web::v1::SignInRequest;
    use tailor_proto::web::v1::session_service_client::SessionServiceClient;

    let stack = Stack::start().await;
    let mut sessions = SessionServiceClient::new(stack.web.channel().await);
    let sign_in = |username: String, password: String| SignInRequest { username, password };
    let status = sessions
        .sign_in(sign_in("x".repeat(1 << 20), "secret".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "username must be at most 64 characters");
    let status = sessions
        .sign_in(sign_in("ada".into(), "p".repeat(100_000)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("password must be"),
        "{status:?}"
    );

    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);
    let well_formed_unknown = format!("tk_0123456789abcdef_{}", "ab".repeat(32));
    let oversized = format!("tk_0123456789abcdef_{}", "ab".repeat(2_000));
    let odd_id = format!("tk_{}_{}", "z".repeat(16), "ab".repeat(32));
    for (key, reason) in [
        (&well_formed_unknown, "unknown"),
        (&oversized, "malformed"),
        (&odd_id, "malformed"),
    ] {
        let status = partner
            .batch_get_availability(tailor_e2e::api_key(
                key,
                BatchGetAvailabilityRequest {
                    product_ids: vec!["prod-000001".into()],
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{reason}");
        if reason == "malformed" {
            assert!(status.message().contains("malformed"), "{status:?}");
        }
    }
}

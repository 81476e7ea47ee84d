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
    // A 1 MB name is over the message bound before it is a name at all.
    let status = sessions
        .sign_in(sign_in("x".repeat(1 << 20), "secret".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "username must be at most 64 characters");
    let status = sessions
        .sign_in(sign_in("ada".into(), "p".repeat(10_000)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let status = sessions
        .sign_in(sign_in("x".repeat(1000), "secret".into()))
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

/// A request message of about `bytes` bytes: a search that long.
fn search_of(bytes: usize) -> String {
    "m".repeat(bytes)
}

fn assert_too_large(status: &tonic::Status, limit: usize, what: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
    assert!(
        status
            .message()
            .ends_with(&format!("larger than the limit of {limit} bytes")),
        "{what}: {}",
        status.message()
    );
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted_on_every_server_and_wire() {
    use tailor_e2e::grpc_web::{self, Http, Mode};
    use tailor_interceptors::message_size::{BFF_MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGE_BYTES};
    use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
    use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
    use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
    use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;

    let stack = Stack::start().await;
    // The test web BFF admits grpc-web messages of 64 KiB: the same bound
    // holds for its native callers.
    let web_limit = tailor_e2e::web_options().browser.max_request_bytes;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let search = |query: String| ListProductsRequest {
        query,
        ..Default::default()
    };
    let status = web
        .list_products(search(search_of(web_limit + 1)))
        .await
        .unwrap_err();
    assert_too_large(&status, web_limit, "web, native");
    // Just under the bound the message is read, and refused for what it
    // says, naming the field.
    let status = web
        .list_products(search(search_of(web_limit - 16)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("query"), "{status:?}");

    for http in [Http::One, Http::Two] {
        for mode in Mode::ALL {
            let reply = grpc_web::call(
                stack.web.address,
                http,
                mode,
                "/tailor.web.v1.ShopService/ListProducts",
                &search(search_of(web_limit + 1)),
                &[("origin", tailor_e2e::WEB_ORIGIN)],
            )
            .await;
            assert_eq!(
                reply.code(),
                Some(Code::ResourceExhausted),
                "grpc-web {http:?} {mode:?}: {}",
                reply.message()
            );
        }
    }

    let mut mobile = MobileClient::new(stack.mobile.channel().await);
    let status = mobile
        .list_products(tailor_proto::mobile::v1::ListProductsRequest {
            query: search_of(BFF_MAX_MESSAGE_BYTES + 1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_too_large(&status, BFF_MAX_MESSAGE_BYTES, "mobile");

    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);
    let ids = BatchGetAvailabilityRequest {
        product_ids: vec!["p".repeat(1024); BFF_MAX_MESSAGE_BYTES / 1024 + 1],
    };
    let status = partner
        .batch_get_availability(tailor_e2e::api_key(&stack.partner_key, ids))
        .await
        .unwrap_err();
    assert_too_large(&status, BFF_MAX_MESSAGE_BYTES, "partner");

    // A downstream service holds even its BFFs to its bound.
    let mut catalog = CatalogServiceClient::new(stack.catalog.channel().await);
    let status = catalog
        .list_products(tailor_e2e::on_behalf_of(
            "web-bff",
            "catalog",
            "shopper",
            tailor_proto::catalog::v1::ListProductsRequest {
                query: search_of(DEFAULT_MAX_MESSAGE_BYTES + 1),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_too_large(&status, DEFAULT_MAX_MESSAGE_BYTES, "catalog");
}

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
            .create_order(tailor_e2e::on_behalf_of(
                "web-bff",
                "orders",
                "overflow-customer",
                CreateOrderRequest {
                    idempotency_key: format!("overflow-{}", lines.len()),
                    lines,
                    channel: "web".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("total"), "{}", status.message());
    }
    let stored = orders
        .list_orders(tailor_e2e::on_behalf_of(
            "web-bff",
            "orders",
            "overflow-customer",
            ListOrdersRequest::default(),
        ))
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
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let status = sessions
        .sign_in(sign_in("x".repeat(1000), "secret".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "username must be at most 64 characters");
    let status = sessions
        .sign_in(sign_in("ada".into(), "p".repeat(10_000)))
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

fn assert_names(status: &tonic::Status, field_message: &str, what: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert!(
        status.message().starts_with(field_message),
        "{what}: {:?} should start with {field_message:?}",
        status.message()
    );
}

#[tokio::test]
async fn over_long_strings_are_refused_naming_the_field_before_any_downstream_call() {
    use futures_util::future::BoxFuture;
    use tailor_e2e::{api_key, bearer, mobile_token, web_token};
    use tailor_proto::mobile::v1 as mobile;
    use tailor_proto::partner::v1 as partner;
    use tailor_proto::web::v1 as web;

    let stack = Stack::start().await;
    let long = |n: usize| "x".repeat(n);
    let web_shop = ShopServiceClient::new(stack.web.channel().await);
    let mobile_shop =
        mobile::shop_service_client::ShopServiceClient::new(stack.mobile.channel().await);
    let partner_api =
        partner::partner_service_client::PartnerServiceClient::new(stack.partner.channel().await);
    let (web_user, mobile_user) = (web_token("ivy"), mobile_token("ivy"));
    let key = stack.partner_key.clone();
    let before: Vec<_> = stack.servers()[..4]
        .iter()
        .map(|(_, server)| server.stats.snapshot().started)
        .collect();

    let web_line = |product_id: String| web::OrderLineInput {
        product_id,
        quantity: 1,
    };
    let cases: Vec<(&str, &str, BoxFuture<'_, tonic::Status>)> = vec![
        (
            "web page_token",
            "page_token must be at most 1024 characters",
            Box::pin({
                let mut c = web_shop.clone();
                async move {
                    c.list_products(web::ListProductsRequest {
                        page_token: long(2000),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err()
                }
            }),
        ),
        (
            "web category_id",
            "category_id must be at most 64 characters",
            Box::pin({
                let mut c = web_shop.clone();
                async move {
                    c.list_products(web::ListProductsRequest {
                        category_id: long(65),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err()
                }
            }),
        ),
        (
            "web product_id",
            "product_id must be at most 64 characters",
            Box::pin({
                let mut c = web_shop.clone();
                async move {
                    c.get_product_page(web::GetProductPageRequest {
                        product_id: long(65),
                    })
                    .await
                    .unwrap_err()
                }
            }),
        ),
        (
            "web order line",
            "lines[].product_id must be at most 64 characters",
            Box::pin({
                let mut c = web_shop.clone();
                let token = web_user.clone();
                async move {
                    let order = web::PlaceOrderRequest {
                        idempotency_key: "long-line".into(),
                        lines: vec![web_line(long(65))],
                    };
                    c.place_order(bearer(&token, order)).await.unwrap_err()
                }
            }),
        ),
        (
            "web idempotency_key",
            "idempotency_key must be",
            Box::pin({
                let mut c = web_shop.clone();
                let token = web_user.clone();
                async move {
                    let order = web::PlaceOrderRequest {
                        idempotency_key: long(129),
                        lines: vec![web_line("prod-000001".into())],
                    };
                    c.place_order(bearer(&token, order)).await.unwrap_err()
                }
            }),
        ),
        (
            "web order_id",
            "order_id must be at most 64 characters",
            Box::pin({
                let mut c = web_shop.clone();
                let token = web_user.clone();
                async move {
                    let watch = web::WatchOrderRequest { order_id: long(65) };
                    c.watch_order(bearer(&token, watch)).await.unwrap_err()
                }
            }),
        ),
        (
            "mobile search",
            "query must be at most 200 characters",
            Box::pin({
                let mut c = mobile_shop.clone();
                async move {
                    c.list_products(mobile::ListProductsRequest {
                        query: long(201),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err()
                }
            }),
        ),
        (
            "mobile if_version",
            "if_version must be at most 64 characters",
            Box::pin({
                let mut c = mobile_shop.clone();
                async move {
                    c.list_products(mobile::ListProductsRequest {
                        if_version: long(65),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err()
                }
            }),
        ),
        (
            "mobile read mask",
            "read mask paths must be at most 128 characters",
            Box::pin({
                let mut c = mobile_shop.clone();
                async move {
                    c.get_product_page(mobile::GetProductPageRequest {
                        product_id: "prod-000001".into(),
                        read_mask: Some(prost_types::FieldMask {
                            paths: vec![long(50_000)],
                        }),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err()
                }
            }),
        ),
        (
            "mobile order_id",
            "order_id must be at most 64 characters",
            Box::pin({
                let mut c = mobile_shop.clone();
                let token = mobile_user.clone();
                async move {
                    let watch = mobile::WatchOrderRequest { order_id: long(65) };
                    c.watch_order(bearer(&token, watch)).await.unwrap_err()
                }
            }),
        ),
        (
            "partner cursor",
            "cursor must be at most 1024 characters",
            Box::pin({
                let mut c = partner_api.clone();
                let key = key.clone();
                async move {
                    let feed = partner::StreamCatalogFeedRequest {
                        cursor: long(2000),
                        updated_since: None,
                    };
                    c.stream_catalog_feed(api_key(&key, feed))
                        .await
                        .unwrap_err()
                }
            }),
        ),
        (
            "partner product_ids",
            "product_ids[] must be at most 64 characters",
            Box::pin({
                let mut c = partner_api.clone();
                let key = key.clone();
                async move {
                    let ids = partner::BatchGetAvailabilityRequest {
                        product_ids: vec!["prod-000001".into(), long(65)],
                    };
                    c.batch_get_availability(api_key(&key, ids))
                        .await
                        .unwrap_err()
                }
            }),
        ),
        (
            "partner page_token",
            "page_token must be at most 1024 characters",
            Box::pin({
                let mut c = partner_api.clone();
                let key = key.clone();
                async move {
                    let list = partner::ListOrdersRequest {
                        page_size: 10,
                        page_token: long(2000),
                    };
                    c.list_orders(api_key(&key, list)).await.unwrap_err()
                }
            }),
        ),
        (
            "partner order_id",
            "order_id must be at most 64 characters",
            Box::pin({
                let mut c = partner_api.clone();
                let key = key.clone();
                async move {
                    let get = partner::GetOrderRequest { order_id: long(65) };
                    c.get_order(api_key(&key, get)).await.unwrap_err()
                }
            }),
        ),
    ];
    for (what, message, call) in cases {
        assert_names(&call.await, message, what);
    }
    // Refused at the BFFs: none of it reached a downstream service.
    let after: Vec<_> = stack.servers()[..4]
        .iter()
        .map(|(_, server)| server.stats.snapshot().started)
        .collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn downstream_services_bound_the_strings_any_bff_may_send_them() {
    use tailor_e2e::on_behalf_of;
    use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
    use tailor_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
    use tailor_proto::reviews::v1::reviews_service_client::ReviewsServiceClient;

    let stack = Stack::start().await;
    let long = |n: usize| "x".repeat(n);
    let mut catalog = CatalogServiceClient::new(stack.catalog.channel().await);
    let mut inventory = InventoryServiceClient::new(stack.inventory.channel().await);
    let mut reviews = ReviewsServiceClient::new(stack.reviews.channel().await);
    fn call<T>(service: &str, message: T) -> tonic::Request<T> {
        on_behalf_of("web-bff", service, "shopper", message)
    }

    let status = catalog
        .get_product(call(
            "catalog",
            tailor_proto::catalog::v1::GetProductRequest { id: long(65) },
        ))
        .await
        .unwrap_err();
    assert_names(&status, "id must be at most 64 characters", "catalog id");
    let status = catalog
        .list_products(call(
            "catalog",
            tailor_proto::catalog::v1::ListProductsRequest {
                query: ["mug"; 1200].join(" "),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_names(&status, "query must hold at most 8 words", "catalog search");
    let status = inventory
        .batch_get_stock(call(
            "inventory",
            tailor_proto::inventory::v1::BatchGetStockRequest {
                product_ids: vec![long(65)],
            },
        ))
        .await
        .unwrap_err();
    assert_names(
        &status,
        "product_ids[] must be at most 64 characters",
        "inventory ids",
    );
    let status = reviews
        .list_reviews(call(
            "reviews",
            tailor_proto::reviews::v1::ListReviewsRequest {
                product_id: "prod-000001".into(),
                page_size: 5,
                page_token: long(100_000),
            },
        ))
        .await
        .unwrap_err();
    assert_names(&status, "invalid page_token", "reviews page_token");

    use tailor_proto::orders::v1::orders_service_client::OrdersServiceClient;
    use tailor_proto::orders::v1::{CreateOrderRequest, OrderLine, WatchOrderRequest};
    let mut orders = OrdersServiceClient::new(stack.orders.channel().await);
    let line = |title: String, currency: &str| OrderLine {
        product_id: "prod-000001".into(),
        title,
        quantity: 1,
        unit_price: Some(Money {
            currency_code: currency.into(),
            amount_minor: 1299,
        }),
    };
    for (order_line, field) in [
        (
            line(long(10_000), "EUR"),
            "lines[].title must be at most 512",
        ),
        (
            line("Mug".into(), &long(100)),
            "lines[].unit_price.currency_code must be at most 3",
        ),
    ] {
        let status = orders
            .create_order(call(
                "orders",
                CreateOrderRequest {
                    idempotency_key: "long-fields".into(),
                    lines: vec![order_line],
                    channel: "web".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_names(&status, field, "orders");
    }
    let status = orders
        .watch_order(call(
            "orders",
            WatchOrderRequest {
                order_id: long(65),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_names(&status, "order_id must be at most 64", "orders watch");
}

/// Retries `open` until it succeeds, for a slot freed by a stream the
/// server learns was dropped a moment after the client dropped it.
async fn eventually<T, F, Fut>(mut open: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open().await {
            Ok(value) => return value,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the slot was never freed: {status:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

fn assert_capped(status: &tonic::Status, cap: usize, what: &str) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
    assert!(
        status.message().contains(&format!("at most {cap} {what}")),
        "{}",
        status.message()
    );
    let retry = status.get_error_details().retry_info().cloned();
    assert!(
        retry.and_then(|r| r.retry_delay).is_some(),
        "{what}: RetryInfo"
    );
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_order_watches_and_a_closed_one_frees_its_slot() {
    use tailor_e2e::{StackOptions, bearer, web_token};
    use tailor_proto::web::v1::{OrderLineInput, PlaceOrderRequest, WatchOrderRequest};
    use tailor_web_bff::WATCHES_PER_USER;

    // Orders stay placed for the whole test, so every watch stays open.
    let stack = Stack::start_with(StackOptions {
        fulfilment_step: std::time::Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let token = web_token("watcher");
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let order = web
        .place_order(bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: "watched".into(),
                lines: vec![OrderLineInput {
                    product_id: "prod-000007".into(),
                    quantity: 1,
                }],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let watch = |client: &ShopServiceClient<tonic::transport::Channel>| {
        let mut client = client.clone();
        let request = bearer(
            &token,
            WatchOrderRequest {
                order_id: order.id.clone(),
            },
        );
        async move {
            let mut updates = client.watch_order(request).await?.into_inner();
            // The current state arrives first: the stream is open.
            updates.message().await?.expect("the order's state");
            Ok::<_, tonic::Status>(updates)
        }
    };

    // One watch on a connection of its own, the rest on the shared one.
    let own = ShopServiceClient::new(stack.web.channel().await);
    let on_own_connection = watch(&own).await.unwrap();
    let mut open = Vec::new();
    for _ in 1..WATCHES_PER_USER {
        open.push(watch(&web).await.unwrap());
    }
    let refused = watch(&web).await.unwrap_err();
    assert_capped(&refused, WATCHES_PER_USER, "order watches");
    // Someone else is not held to this user's cap.
    let other = bearer(
        &web_token("someone-else"),
        WatchOrderRequest {
            order_id: order.id.clone(),
        },
    );
    assert_eq!(
        web.watch_order(other).await.unwrap_err().code(),
        Code::NotFound
    );

    // A stream the client drops frees its slot.
    drop(open.pop());
    open.push(eventually(|| watch(&web)).await);
    assert_capped(
        &watch(&web).await.unwrap_err(),
        WATCHES_PER_USER,
        "order watches",
    );
    // So does a client that goes away with its connection.
    drop((on_own_connection, own));
    open.push(eventually(|| watch(&web)).await);
    assert_eq!(open.len(), WATCHES_PER_USER);
}

#[tokio::test]
async fn an_api_key_holds_a_bounded_number_of_catalogue_feeds() {
    use tailor_partner_bff::FEEDS_PER_KEY;
    use tailor_proto::partner::v1::StreamCatalogFeedRequest;
    use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;

    let stack = Stack::start().await;
    let feed = || {
        let request = tailor_e2e::api_key(&stack.partner_key, StreamCatalogFeedRequest::default());
        let url = stack.partner.url();
        async move {
            // A reader with the protocol's initial 64 KiB windows, each feed
            // on its own connection: what it has not taken holds its feed
            // open (a client with megabyte windows would let the BFF send
            // the whole test catalogue at once and end the feed).
            let channel = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .initial_stream_window_size(65_535)
                .initial_connection_window_size(65_535)
                .connect()
                .await
                .unwrap();
            let mut client = PartnerServiceClient::new(channel);
            let mut products = client.stream_catalog_feed(request).await?.into_inner();
            // Take one product and leave the feed open, as a slow reader.
            products.message().await?.expect("a product");
            Ok::<_, tonic::Status>(products)
        }
    };
    let mut open = Vec::new();
    for _ in 0..FEEDS_PER_KEY {
        open.push(feed().await.unwrap());
    }
    assert_capped(&feed().await.unwrap_err(), FEEDS_PER_KEY, "catalogue feeds");
    drop(open.remove(0));
    open.push(eventually(feed).await);
    assert_eq!(open.len(), FEEDS_PER_KEY);
}

/// A grpc-web ListProducts to the BFF at `address` carrying `padding`
/// bytes of one extra header, over HTTP/1.1.
async fn padded_http1_call(
    address: std::net::SocketAddr,
    padding: usize,
) -> http::Response<hyper::body::Incoming> {
    use tailor_e2e::grpc_web::{self, Http, Mode};
    let mut request = grpc_web::request(
        address,
        "/tailor.web.v1.ShopService/ListProducts",
        Mode::Binary,
        grpc_web::body(
            Mode::Binary,
            &grpc_web::frame(&ListProductsRequest::default()),
        ),
    );
    let headers = request.headers_mut();
    headers.insert("origin", tailor_e2e::WEB_ORIGIN.parse().unwrap());
    headers.insert("x-padding", "p".repeat(padding).parse().unwrap());
    grpc_web::open(address, Http::One, request).await
}

#[tokio::test]
async fn a_400_kb_header_block_over_http1_is_refused_before_it_is_read_whole() {
    let stack = Stack::start().await;
    for (name, server) in [
        ("web", &stack.web),
        ("mobile", &stack.mobile),
        ("partner", &stack.partner),
    ] {
        let response = padded_http1_call(server.address, 400_000).await;
        assert_eq!(
            response.status(),
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "{name}"
        );
    }
}

/// `request` with 40 KB of extra metadata.
fn padded<T>(mut request: tonic::Request<T>) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("x-padding", "p".repeat(40_000).parse().unwrap());
    request
}

// The transport admits header blocks up to 64 KiB, above the stack's
// metadata bound (16 KiB), so a 40 KB block reaches the stack and gets a
// gRPC status instead of the transport's bare HTTP 431 (which tonic
// clients report as UNKNOWN).
#[tokio::test]
async fn a_40_kb_header_block_gets_resource_exhausted_over_http2_and_http1() {
    use tailor_e2e::grpc_web;
    use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
    use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
    use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;

    let stack = Stack::start().await;
    let metadata_refused = |status: tonic::Status, name: &str| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{name}: {status:?}");
        assert!(
            status.message().starts_with("request metadata of"),
            "{name}: {}",
            status.message()
        );
    };
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let status = web
        .list_products(padded(tonic::Request::new(ListProductsRequest::default())))
        .await
        .unwrap_err();
    metadata_refused(status, "web");
    let mut mobile = MobileClient::new(stack.mobile.channel().await);
    let status = mobile
        .list_products(padded(tonic::Request::new(
            tailor_proto::mobile::v1::ListProductsRequest::default(),
        )))
        .await
        .unwrap_err();
    metadata_refused(status, "mobile");
    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);
    let status = partner
        .batch_get_availability(padded(tailor_e2e::api_key(
            &stack.partner_key,
            BatchGetAvailabilityRequest::default(),
        )))
        .await
        .unwrap_err();
    metadata_refused(status, "partner");
    // The connection survives the refusal: the next call is answered.
    web.list_products(ListProductsRequest::default())
        .await
        .unwrap();

    // grpc-web over HTTP/1.1, as a browser sends it.
    let response = padded_http1_call(stack.web.address, 40_000).await;
    let reply = grpc_web::read(grpc_web::Mode::Binary, response).await;
    assert_eq!(reply.code(), Some(Code::ResourceExhausted), "{reply:?}");
    assert!(
        reply.message().starts_with("request metadata of"),
        "{reply:?}"
    );
}

//! What the mobile BFF does to send less: read masks (which also decide the
//! downstream calls), compression negotiated both ways, "unchanged"
//! answers, retry-safe orders, and the payload targets against the web BFF.

use std::collections::BTreeSet;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tailor_e2e::grpc_web::{self, Http};
use tailor_e2e::{Stack, bearer, mobile_token, web_token};
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient;
use tailor_proto::mobile::v1::{
    GetProductPageRequest, GetProductPageResponse, ListProductsRequest, OrderLineInput,
    PlaceOrderRequest, PlaceOrderResponse, ProductView,
};
use tailor_proto::orders::v1::ListOrdersRequest;
use tailor_proto::orders::v1::orders_service_client::OrdersServiceClient;
use tonic::Code;
use tonic::codec::CompressionEncoding;

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn page(paths: &[&str]) -> GetProductPageRequest {
    GetProductPageRequest {
        product_id: "prod-000042".into(),
        read_mask: mask(paths),
        ..Default::default()
    }
}

#[tokio::test]
async fn read_masks_keep_only_the_named_fields_nested_and_repeated() {
    let stack = Stack::start().await;
    let mut mobile = ShopServiceClient::new(stack.mobile.channel().await);
    let full = mobile
        .get_product_page(page(&[]))
        .await
        .unwrap()
        .into_inner();
    assert!(!full.title.is_empty() && !full.top_reviews.is_empty() && !full.related.is_empty());

    let masked = mobile
        .get_product_page(page(&["title", "top_reviews.rating", "related.id"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(masked.title, full.title);
    assert_eq!(masked.id, "", "unmasked fields are empty");
    assert_eq!(masked.price_minor, 0);
    assert_eq!(masked.top_reviews.len(), full.top_reviews.len());
    for (review, original) in masked.top_reviews.iter().zip(&full.top_reviews) {
        assert_eq!(review.rating, original.rating);
        assert!(review.text.is_empty() && review.author_name.is_empty());
    }
    assert_eq!(masked.related.len(), full.related.len());
    assert!(
        masked
            .related
            .iter()
            .all(|c| !c.id.is_empty() && c.title.is_empty())
    );

    // The header works for generic clients; the request field wins over it.
    let mut request = tonic::Request::new(page(&[]));
    request
        .metadata_mut()
        .insert("x-read-mask", "id,stock".parse().unwrap());
    let by_header = mobile.get_product_page(request).await.unwrap().into_inner();
    assert_eq!(by_header.id, "prod-000042");
    assert_eq!(by_header.stock, full.stock);
    assert!(by_header.title.is_empty() && by_header.top_reviews.is_empty());
    // Several values and spaces work too (some clients split on commas).
    let mut request = tonic::Request::new(page(&[]));
    request
        .metadata_mut()
        .append("x-read-mask", "id title".parse().unwrap());
    request
        .metadata_mut()
        .append("x-read-mask", "stock".parse().unwrap());
    let split = mobile.get_product_page(request).await.unwrap().into_inner();
    assert_eq!(
        (split.id.as_str(), split.title.as_str()),
        ("prod-000042", full.title.as_str())
    );
    assert_eq!(split.stock, full.stock);
    assert!(split.top_reviews.is_empty());

    // Lists mask each card.
    let cards = mobile
        .list_products(ListProductsRequest {
            page_size: 5,
            read_mask: mask(&["id", "price_minor"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cards.products.len(), 5);
    assert!(
        !cards.next_page_token.is_empty(),
        "paging survives the mask"
    );
    for card in &cards.products {
        assert!(!card.id.is_empty() && card.price_minor > 0);
        assert!(card.title.is_empty() && card.thumbnail_url.is_empty());
    }

    // An unknown path is refused, naming it.
    for (request, path) in [
        (page(&["title", "colour"]), "\"colour\""),
        (page(&["top_reviews.stars"]), "\"top_reviews.stars\""),
    ] {
        let error = mobile.get_product_page(request).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().contains(path), "{}", error.message());
    }
    let error = mobile
        .list_products(ListProductsRequest {
            read_mask: mask(&["products.title"]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_mask_decides_which_downstream_services_are_called() {
    let stack = Stack::start().await;
    let mut mobile = ShopServiceClient::new(stack.mobile.channel().await);
    let calls = |stack: &Stack| {
        (
            stack.catalog.stats.snapshot().started,
            stack.inventory.stats.snapshot().started,
            stack.reviews.stats.snapshot().started,
        )
    };

    let before = calls(&stack);
    mobile
        .get_product_page(page(&["title", "price_minor", "stock"]))
        .await
        .unwrap();
    let after = calls(&stack);
    assert_eq!(
        after.2, before.2,
        "no reviews requested: reviews never called"
    );
    assert_eq!(
        after.1,
        before.1 + 1,
        "stock requested: inventory called once"
    );
    assert_eq!(
        after.0,
        before.0 + 1,
        "only the product, no related products"
    );

    let before = calls(&stack);
    mobile
        .get_product_page(GetProductPageRequest {
            product_id: "prod-000042".into(),
            view: ProductView::Basic.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = calls(&stack);
    assert_eq!(after.2, before.2, "the BASIC view skips reviews");

    let before = calls(&stack);
    mobile
        .get_product_page(page(&["top_reviews.text"]))
        .await
        .unwrap();
    let after = calls(&stack);
    assert_eq!(
        after.1, before.1,
        "no stock requested: inventory never called"
    );
    assert!(after.2 > before.2, "reviews requested: reviews called");

    let before = calls(&stack);
    mobile
        .list_products(ListProductsRequest {
            page_size: 20,
            read_mask: mask(&["id", "title"]),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = calls(&stack);
    assert_eq!(
        (after.1, after.2),
        (before.1, before.2),
        "cards without stock or rating"
    );
}

const PAGE_PATH: &str = "/tailor.mobile.v1.ShopService/GetProductPage";
/// What a client taking both compressions says in `grpc-accept-encoding`.
const ACCEPTS: &str = "gzip,zstd";

/// A native gRPC answer as it came over the wire.
struct RawAnswer {
    headers: http::HeaderMap,
    trailers: http::HeaderMap,
    /// Each message: its compressed flag and its bytes.
    messages: Vec<(u8, Bytes)>,
}

impl RawAnswer {
    fn status(&self) -> &str {
        self.trailers
            .get("grpc-status")
            .or(self.headers.get("grpc-status"))
            .map_or("none", |v| v.to_str().unwrap())
    }

    fn flags(&self) -> Vec<u8> {
        self.messages.iter().map(|(flag, _)| *flag).collect()
    }

    /// The one message, which must be plain.
    fn decode<M: prost::Message + Default>(&self) -> M {
        let [(0, bytes)] = self.messages.as_slice() else {
            panic!("not one plain message: {:?}", self.flags());
        };
        M::decode(bytes.clone()).unwrap()
    }
}

/// Calls `path` with `message` over a raw HTTP/2 connection as a client
/// accepting gzip and zstd answers does, bearing `token` when given.
async fn raw_call(
    address: std::net::SocketAddr,
    path: &str,
    message: &impl prost::Message,
    token: Option<&str>,
) -> RawAnswer {
    let mut request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-accept-encoding", ACCEPTS);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(grpc_web::frame(message))))
        .unwrap();
    let response = grpc_web::open(address, Http::Two, request).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap();
    let trailers = body.trailers().cloned().unwrap_or_default();
    let mut bytes = body.to_bytes();
    let mut messages = Vec::new();
    while bytes.len() >= 5 {
        let flag = bytes[0];
        let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        let frame = bytes.split_to(5 + length);
        messages.push((flag, frame.slice(5..)));
    }
    assert!(bytes.is_empty(), "{} stray bytes", bytes.len());
    RawAnswer {
        headers: parts.headers,
        trailers,
        messages,
    }
}

#[tokio::test]
async fn compression_is_negotiated_both_ways_and_small_answers_stay_plain() {
    let stack = Stack::start().await;
    let channel = stack.mobile.channel().await;
    let request = || GetProductPageRequest {
        product_id: "prod-000042".into(),
        ..Default::default()
    };
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = ShopServiceClient::new(channel.clone())
            .accept_compressed(encoding)
            .send_compressed(encoding);
        let answer = client.get_product_page(request()).await.unwrap();
        let header = answer
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let expected = match encoding {
            CompressionEncoding::Gzip => "gzip",
            _ => "zstd",
        };
        assert_eq!(
            header.as_deref(),
            Some(expected),
            "a large answer is compressed"
        );
        assert_eq!(answer.into_inner().id, "prod-000042");
    }
    // A client that does not accept compression gets plain answers.
    let mut plain = ShopServiceClient::new(channel.clone());
    let answer = plain.get_product_page(request()).await.unwrap();
    assert!(answer.metadata().get("grpc-encoding").is_none());

    // Small answers stay plain for a client that would take either
    // compression: each message's compressed flag, read off the wire, is
    // 0 for them and 1 for a large answer on the same terms. (The
    // `grpc-encoding` header names the encoding agreed for the call, small
    // answers included; the flag says whether a message uses it.)
    let address = stack.mobile.address;
    let large = raw_call(address, PAGE_PATH, &request(), None).await;
    assert_eq!(large.status(), "0", "{:?}", large.trailers);
    let encoding = large
        .headers
        .get("grpc-encoding")
        .map(|v| v.to_str().unwrap());
    assert!(
        matches!(encoding, Some("gzip" | "zstd")),
        "{:?}",
        large.headers
    );
    assert_eq!(
        large.flags(),
        [1],
        "a large answer to a client taking {ACCEPTS} is compressed"
    );
    let version = plain
        .get_product_page(request())
        .await
        .unwrap()
        .into_inner()
        .version;
    // An unchanged answer is its version and a flag.
    let unchanged = raw_call(
        address,
        PAGE_PATH,
        &GetProductPageRequest {
            if_version: version,
            ..request()
        },
        None,
    )
    .await;
    assert_eq!(unchanged.status(), "0", "{:?}", unchanged.trailers);
    assert_eq!(unchanged.flags(), [0], "an unchanged answer is plain");
    let answer: GetProductPageResponse = unchanged.decode();
    assert!(answer.unchanged && answer.title.is_empty());
    // A placed order is a few dozen bytes.
    let token = mobile_token("watcher");
    let placed = raw_call(
        address,
        "/tailor.mobile.v1.ShopService/PlaceOrder",
        &PlaceOrderRequest {
            idempotency_key: "watch-plain".into(),
            lines: vec![OrderLineInput {
                product_id: "prod-000011".into(),
                quantity: 1,
            }],
        },
        Some(&token),
    )
    .await;
    assert_eq!(placed.status(), "0", "{:?}", placed.trailers);
    assert_eq!(placed.flags(), [0], "a placed order is plain");
    let order = placed
        .decode::<PlaceOrderResponse>()
        .order
        .expect("the placed order");
    assert_eq!(order.item_count, 1);
    let mut client = ShopServiceClient::new(channel).accept_compressed(CompressionEncoding::Gzip);

    // Order status updates are a few bytes each: the stream stays plain
    // even for a client that would take compression.
    let watch = client
        .watch_order(bearer(
            &token,
            tailor_proto::mobile::v1::WatchOrderRequest { order_id: order.id },
        ))
        .await
        .unwrap();
    assert!(
        watch.metadata().get("grpc-encoding").is_none(),
        "{:?}",
        watch.metadata()
    );
    let mut updates = watch.into_inner();
    assert!(updates.message().await.unwrap().is_some());
}

#[tokio::test]
async fn an_unchanged_answer_is_a_version_and_nothing_else() {
    let stack = Stack::start().await;
    let mut mobile = ShopServiceClient::new(stack.mobile.channel().await);
    let first = mobile
        .get_product_page(page(&[]))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.version.is_empty() && !first.unchanged);
    let again = mobile
        .get_product_page(GetProductPageRequest {
            if_version: first.version.clone(),
            ..page(&[])
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.unchanged);
    assert_eq!(again.version, first.version);
    assert!(again.title.is_empty() && again.top_reviews.is_empty());
    assert!(prost::Message::encoded_len(&again) < 40, "{again:?}");

    // Another mask is another answer, with another version.
    let masked = mobile
        .get_product_page(GetProductPageRequest {
            if_version: first.version.clone(),
            ..page(&["title"])
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!masked.unchanged);
    assert_ne!(masked.version, first.version);
    // A stale version gets the full answer.
    let stale = mobile
        .get_product_page(GetProductPageRequest {
            if_version: "stale".into(),
            ..page(&[])
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!stale.unchanged && stale.title == first.title);

    let list = ListProductsRequest {
        page_size: 20,
        ..Default::default()
    };
    let cards = mobile
        .list_products(list.clone())
        .await
        .unwrap()
        .into_inner();
    let unchanged = mobile
        .list_products(ListProductsRequest {
            if_version: cards.version.clone(),
            ..list
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unchanged.unchanged && unchanged.products.is_empty());
}

#[tokio::test]
async fn concurrent_retries_of_one_order_get_the_same_order() {
    let stack = Stack::start().await;
    let channel = stack.mobile.channel().await;
    let token = mobile_token("flaky-phone");
    let place = || PlaceOrderRequest {
        idempotency_key: "checkout-7f3a".into(),
        lines: vec![OrderLineInput {
            product_id: "prod-000011".into(),
            quantity: 2,
        }],
    };
    let tries = (0..8).map(|_| {
        let mut client = ShopServiceClient::new(channel.clone());
        let request = bearer(&token, place());
        tokio::spawn(async move { client.place_order(request).await })
    });
    let mut ids = BTreeSet::new();
    for attempt in tries {
        let order = attempt.await.unwrap().unwrap().into_inner().order.unwrap();
        ids.insert(order.id);
    }
    assert_eq!(ids.len(), 1, "every retry returns the one order: {ids:?}");
    // The orders service holds that one order for the customer, no other.
    let orders = OrdersServiceClient::new(stack.orders.channel_as("mobile-bff").await);
    let stored = || {
        let request = tailor_e2e::on_behalf_of(
            "mobile-bff",
            "orders",
            "flaky-phone",
            ListOrdersRequest {
                page_size: 100,
                ..Default::default()
            },
        );
        let mut orders = orders.clone();
        async move {
            let answer = orders.list_orders(request).await.unwrap().into_inner();
            answer
                .orders
                .into_iter()
                .map(|o| o.id)
                .collect::<BTreeSet<_>>()
        }
    };
    assert_eq!(stored().await, ids);

    // Without a key, no order is placed at all: neither stock is reserved
    // nor an order created.
    let before = (
        stack.inventory.stats.settled().await,
        stack.orders.stats.settled().await,
    );
    let mut client = ShopServiceClient::new(channel);
    let error = client
        .place_order(bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: String::new(),
                ..place()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("idempotency_key"), "{error:?}");
    let after = (
        stack.inventory.stats.settled().await,
        stack.orders.stats.settled().await,
    );
    assert_eq!(after, before, "no downstream call");
    assert_eq!(stored().await, ids, "still the one order");
}

#[tokio::test]
async fn the_payload_report_meets_its_targets() {
    let stack = Stack::start().await;
    let targets = tailor_bench::payload::Targets {
        web: stack.web.address,
        mobile: stack.mobile.address,
        web_token: web_token("report"),
        mobile_token: mobile_token("report"),
    };
    let screens = tailor_bench::payload::measure(&targets, "e2e")
        .await
        .unwrap();
    let table = tailor_bench::payload::table(&screens);
    for screen in &screens {
        assert!(
            screen.plain_ratio() <= 0.40,
            "{}: mobile is {:.0}% of web uncompressed\n{table}",
            screen.screen,
            100.0 * screen.plain_ratio()
        );
        assert!(
            screen.compressed_ratio() <= 0.20,
            "{}: compressed mobile is {:.0}% of web\n{table}",
            screen.screen,
            100.0 * screen.compressed_ratio()
        );
        assert!(
            screen.mobile_gzip <= screen.mobile_plain && screen.mobile_zstd <= screen.mobile_plain,
            "compression never inflates\n{table}"
        );
    }
}

#[tokio::test]
async fn reads_are_retried_on_transient_failures_and_writes_never() {
    // Every second call to catalog and to orders fails with UNAVAILABLE.
    let stack = Stack::start_with(tailor_e2e::StackOptions {
        unavailable_every: Some(2),
        ..Default::default()
    })
    .await;
    let mut mobile = ShopServiceClient::new(stack.mobile.channel().await);
    for _ in 0..10 {
        let page = mobile
            .get_product_page(page(&["title", "related.id"]))
            .await
            .expect("a flaky catalog is retried, the screen still works");
        let page = page.into_inner();
        assert!(!page.title.is_empty() && !page.related.is_empty());
    }
    let catalog = stack.catalog.stats.snapshot();
    assert!(catalog.failed >= 10, "the catalog did fail: {catalog:?}");

    // Orders: PlaceOrder's CreateOrder is a write, sent once. Half of the
    // attempts meet the injected failure and say so; none is repeated
    // behind the caller's back.
    let token = mobile_token("steady-phone");
    let before = stack.orders.stats.snapshot().started;
    let mut outcomes = Vec::new();
    for n in 0..6 {
        let request = bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: format!("flaky-{n}"),
                lines: vec![OrderLineInput {
                    product_id: "prod-000011".into(),
                    quantity: 1,
                }],
            },
        );
        outcomes.push(
            mobile
                .place_order(request)
                .await
                .map(|_| ())
                .map_err(|s| s.code()),
        );
    }
    let creates = stack.orders.stats.snapshot().started - before;
    assert_eq!(creates, 6, "one CreateOrder per PlaceOrder, no retries");
    assert!(
        outcomes.contains(&Err(Code::Unavailable)) && outcomes.iter().any(Result::is_ok),
        "{outcomes:?}"
    );
}

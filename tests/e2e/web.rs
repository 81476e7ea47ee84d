use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tailor_e2e::{Stack, bearer, downstream_args, web_token};
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{
    GetProductPageRequest, ListProductsRequest, OrderLineInput, OrderStatus, PlaceOrderRequest,
    WatchOrderRequest,
};
use tonic::Code;

#[tokio::test]
async fn product_list_pages_through_the_whole_catalogue_with_rich_cards() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let mut seen = HashSet::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = web
            .list_products(ListProductsRequest {
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert_eq!(page.total_size, tailor_e2e::PRODUCTS as i32);
        assert!(page.degraded_sections.is_empty());
        for card in &page.products {
            assert!(seen.insert(card.id.clone()), "{} listed twice", card.id);
            assert!(!card.title.is_empty() && !card.brand.is_empty());
            let price = card.price.as_ref().unwrap();
            assert!(price.display.starts_with('€'), "{}", price.display);
            let sources = &card.picture.as_ref().unwrap().sources;
            assert!(sources.len() >= 3, "every size for srcset");
            assert!(sources.windows(2).all(|w| w[0].width < w[1].width));
            assert!(
                card.rating.is_some(),
                "ratings come from the reviews service"
            );
            assert!(card.available_units.is_some(), "stock comes from inventory");
        }
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), tailor_e2e::PRODUCTS as usize);
}

#[tokio::test]
async fn search_finds_only_matching_products_and_bad_input_is_refused() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let first = web
        .list_products(ListProductsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products
        .remove(0);
    let word = first
        .title
        .split_whitespace()
        .max_by_key(|w| w.len())
        .unwrap()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    let found = web
        .list_products(ListProductsRequest {
            page_size: 100,
            query: word.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(found.products.iter().any(|p| p.id == first.id));
    assert!(found.total_size < tailor_e2e::PRODUCTS as i32);

    let negative = web
        .list_products(ListProductsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
    let bad_token = web
        .list_products(ListProductsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn product_page_combines_catalogue_stock_reviews_and_related() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let page = web
        .get_product_page(GetProductPageRequest {
            product_id: "prod-000042".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let product = page.product.unwrap();
    assert_eq!(product.id, "prod-000042");
    assert!(product.description.len() > 300, "a real description");
    assert!(!product.pictures.is_empty());
    let availability = page.availability.unwrap();
    assert!(!availability.warehouses.is_empty());
    assert_eq!(
        availability.total_available_units,
        availability
            .warehouses
            .iter()
            .map(|w| w.available_units)
            .sum::<i32>()
    );
    assert!(!availability.summary.is_empty());
    let reviews = page.reviews.unwrap();
    assert_eq!(reviews.rating.unwrap().histogram.len(), 5);
    assert!(reviews.reviews.len() <= 5);
    assert!(!page.related.is_empty());
    assert!(page.related.iter().all(|r| r.id != "prod-000042"));
    assert!(page.degraded_sections.is_empty());

    let missing = web
        .get_product_page(GetProductPageRequest {
            product_id: "prod-999999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let empty = web
        .get_product_page(GetProductPageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_signed_in_user_places_an_order_and_watches_it_to_delivery() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let token = web_token("alice");
    let place = || PlaceOrderRequest {
        idempotency_key: "checkout-1".into(),
        lines: vec![
            OrderLineInput {
                product_id: "prod-000007".into(),
                quantity: 2,
            },
            OrderLineInput {
                product_id: "prod-000008".into(),
                quantity: 1,
            },
        ],
    };
    let order = web
        .place_order(bearer(&token, place()))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.status(), OrderStatus::Placed);
    let total = order.total.as_ref().unwrap().amount.as_ref().unwrap();
    let sum: i64 = order
        .lines
        .iter()
        .map(|l| {
            l.unit_price
                .as_ref()
                .unwrap()
                .amount
                .as_ref()
                .unwrap()
                .amount_minor
                * l.quantity as i64
        })
        .sum();
    assert_eq!(total.amount_minor, sum);

    let again = web
        .place_order(bearer(&token, place()))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(again.id, order.id, "a retry returns the same order");

    let mut updates = web
        .watch_order(bearer(
            &token,
            WatchOrderRequest {
                order_id: order.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut statuses = Vec::new();
    while let Some(update) = updates.next().await {
        let update = update.unwrap().order.unwrap();
        assert_eq!(update.id, order.id);
        assert!(!update.status_label.is_empty());
        statuses.push(update.status());
    }
    // From wherever the order was when the watch began, every later status
    // arrives, none skipped, up to delivery.
    assert!(
        statuses.windows(2).all(|w| w[1] as i32 == w[0] as i32 + 1),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&OrderStatus::Delivered));

    let bob = web
        .watch_order(bearer(
            &web_token("bob"),
            WatchOrderRequest { order_id: order.id },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        bob.code(),
        Code::NotFound,
        "another user's order does not exist for bob"
    );
}

#[tokio::test]
async fn orders_need_a_signed_in_user_and_a_valid_request() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let anonymous = web
        .place_order(PlaceOrderRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let token = web_token("carol");
    let no_key = web
        .place_order(bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: String::new(),
                lines: vec![OrderLineInput {
                    product_id: "prod-000001".into(),
                    quantity: 1,
                }],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::InvalidArgument);
    assert!(no_key.message().contains("idempotency_key"));
    let unknown = web
        .place_order(bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: "k-unknown".into(),
                lines: vec![OrderLineInput {
                    product_id: "prod-999999".into(),
                    quantity: 1,
                }],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("prod-999999"));
}

/// A gRPC proxy in front of downstream services that holds every call
/// until `expected` calls are waiting at once, then lets them all through.
/// Calls made one after another never all wait there together: each one
/// waits out the limit alone and is counted late.
struct Gate {
    expected: usize,
    /// The method of every call that reached the gate, in arrival order.
    arrived: std::sync::Mutex<Vec<String>>,
    open: tokio::sync::watch::Sender<bool>,
    /// Calls let through because they waited too long, not because all
    /// were there.
    late: AtomicUsize,
}

impl Gate {
    fn new(expected: usize) -> Arc<Gate> {
        Arc::new(Gate {
            expected,
            arrived: Default::default(),
            open: tokio::sync::watch::channel(false).0,
            late: AtomicUsize::new(0),
        })
    }

    /// Waits at the gate until every expected call is waiting, or until
    /// `limit` has passed (counted as late).
    async fn pass(&self, method: String, limit: Duration) {
        {
            let mut arrived = self.arrived.lock().unwrap();
            arrived.push(method);
            if arrived.len() == self.expected {
                self.open.send_replace(true);
            }
        }
        let mut open = self.open.subscribe();
        if tokio::time::timeout(limit, open.wait_for(|open| *open))
            .await
            .is_err()
        {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn arrived(&self) -> Vec<String> {
        self.arrived.lock().unwrap().clone()
    }

    /// A proxy on a free port that forwards through the gate to the
    /// downstream `service` at `upstream`; its address as the BFFs take it.
    /// It terminates TLS with the service's certificate and calls on as the
    /// web BFF.
    async fn guard(self: &Arc<Gate>, service: &'static str, upstream: SocketAddr) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let gate = self.clone();
        let channel = tailor_e2e::connect_mesh(upstream, service, "web-bff").await;
        let acceptor =
            tailor_trust::tls::acceptor(tailor_e2e::credentials(service).server_config().unwrap());
        tokio::spawn(async move {
            loop {
                let (inbound, _) = listener.accept().await.unwrap();
                let (gate, channel, acceptor) = (gate.clone(), channel.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let (inbound, _) =
                        tailor_trust::tls::accept(&acceptor, inbound, Duration::from_secs(10))
                            .await
                            .unwrap();
                    let forward = service_fn(move |request: http::Request<Incoming>| {
                        let (gate, mut channel) = (gate.clone(), channel.clone());
                        async move {
                            use tower::{Service, ServiceExt};
                            let method = request.uri().path().to_owned();
                            gate.pass(method, Duration::from_secs(5)).await;
                            channel
                                .ready()
                                .await?
                                .call(request.map(tonic::body::Body::new))
                                .await
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(inbound), forward)
                        .await;
                });
            }
        });
        format!("https://{address}")
    }
}

#[tokio::test]
async fn the_product_page_calls_its_five_downstreams_in_parallel() {
    let stack = Stack::start().await;
    // All five calls must be open at the same moment to pass the gate.
    let gate = Gate::new(5);
    let args = downstream_args(
        &gate.guard("catalog", stack.catalog.address).await,
        &gate.guard("inventory", stack.inventory.address).await,
        &gate.guard("reviews", stack.reviews.address).await,
        &stack.orders.url(),
    );
    let (web, _mobile, _partner) =
        tailor_e2e::start_bffs(&args, stack.keys.clone(), stack.accounts.clone()).await;
    let mut client = ShopServiceClient::new(web.channel().await);
    let page = tokio::time::timeout(
        Duration::from_secs(60),
        client.get_product_page(GetProductPageRequest {
            product_id: "prod-000042".into(),
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("no page; calls at the gate: {:?}", gate.arrived()))
    .unwrap()
    .into_inner();
    assert!(page.degraded_sections.is_empty(), "{page:?}");
    assert!(page.product.is_some() && page.availability.is_some() && page.reviews.is_some());
    assert!(!page.related.is_empty());

    let mut arrived = gate.arrived();
    arrived.sort();
    assert_eq!(
        arrived,
        [
            "/tailor.catalog.v1.CatalogService/GetProduct",
            "/tailor.catalog.v1.CatalogService/ListRelatedProducts",
            "/tailor.inventory.v1.InventoryService/GetStock",
            "/tailor.reviews.v1.ReviewsService/GetReviewSummary",
            "/tailor.reviews.v1.ReviewsService/ListReviews",
        ],
        "each part asked for once, all five waiting at the gate together"
    );
    assert_eq!(
        gate.late.load(Ordering::Relaxed),
        0,
        "calls gave up waiting for the others: they were not all open at once"
    );
    // The services answered exactly those calls.
    for (server, calls) in [
        (&stack.catalog, 2),
        (&stack.inventory, 1),
        (&stack.reviews, 2),
    ] {
        let counts = server.stats.settled().await;
        assert_eq!(
            (counts.started, counts.succeeded),
            (calls, calls),
            "{counts:?}"
        );
    }
}

#[tokio::test]
async fn slow_downstreams_delay_the_page_by_one_latency_not_their_sum() {
    // Every downstream call of the page takes at least 150 ms (within the
    // 250 ms an optional part is waited for); the page makes five, so
    // calling them in turn would take 750 ms or more.
    let slow = Duration::from_millis(150);
    let stack = Stack::start_with(tailor_e2e::StackOptions {
        catalog_latency: Some(slow),
        stock_and_reviews_latency: Some(slow),
        ..Default::default()
    })
    .await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let started = std::time::Instant::now();
    let page = web
        .get_product_page(GetProductPageRequest {
            product_id: "prod-000042".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    assert!(page.degraded_sections.is_empty(), "{page:?}");
    assert!(took >= slow, "the latency was injected: {took:?}");
    assert!(
        took < slow * 5,
        "the page took {took:?}, as long as its five downstream calls in a row"
    );
}

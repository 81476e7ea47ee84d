//! What strangers and eager users can make a BFF hold or do, tried the way
//! an attacker would: floods of made-up user names and API keys leave the
//! real process's memory where it was; sign-in attempts are slowed per
//! client address and per user name, and recover instead of locking anyone
//! out; orders are limited per user; an order that was refused gives its
//! reserved stock back, and one whose fate is unknown keeps it.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tailor_e2e::{
    Process, Server, Stack, api_key, bearer, downstream_args, mobile_token, start_bffs, web_token,
};
use tailor_proto::inventory::v1::BatchGetStockRequest;
use tailor_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use tailor_proto::orders::v1::orders_service_server::{OrdersService, OrdersServiceServer};
use tailor_proto::orders::v1::{
    CreateOrderRequest, CreateOrderResponse, GetOrderRequest, GetOrderResponse, ListOrdersRequest,
    ListOrdersResponse, WatchOrderRequest, WatchOrderResponse,
};
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::web::v1::SignInRequest;
use tailor_proto::web::v1::session_service_client::SessionServiceClient;
use tailor_proto::{mobile, web};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// The resident memory of process `pid`, in KiB, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Resident memory once it has settled: the lowest of a few readings.
async fn settled_rss_kib(pid: u32) -> u64 {
    let mut lowest = u64::MAX;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        lowest = lowest.min(rss_kib(pid));
    }
    lowest
}

const MIB: u64 = 1024;

/// A BFF binary over `stack`, its files in `data`.
async fn bff(binary: &str, stack: &Stack, data: &Path, env: &[(&str, &str)]) -> Process {
    let data = data.to_str().unwrap();
    Process::start_bff(binary, data, &stack.downstream_urls(), &[], env, None).await
}

/// A channel to `server` from the loopback address `from` (127.0.0.0/8 is
/// all loopback, so tests can call from several addresses).
async fn channel_from(server: SocketAddr, from: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{server}"))
        .unwrap()
        .local_address(Some(from.parse::<IpAddr>().unwrap()))
        .connect()
        .await
        .unwrap()
}

/// The web BFF's data directory with user `ada` (password `lovelace`).
async fn web_data_with_ada() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let accounts =
        tailor_web_bff::Accounts::open(&data.path().join("web.db"), Duration::from_secs(3600))
            .unwrap();
    accounts.add_user("ada", "", "lovelace").await.unwrap();
    data
}

/// One sign-in from the loopback address `from`: OK or the status.
async fn sign_in(
    web: SocketAddr,
    from: &str,
    username: &str,
    password: &str,
) -> Result<(), tonic::Status> {
    let mut sessions = SessionServiceClient::new(channel_from(web, from).await);
    sessions
        .sign_in(SignInRequest {
            username: username.into(),
            password: password.into(),
        })
        .await
        .map(drop)
}

/// Asserts a refusal with RetryInfo naming `what`; returns the delay.
fn refused(result: Result<(), tonic::Status>, what: &str) -> Duration {
    let status = result.expect_err("the attempt is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(what), "{status:?}");
    let delay = status
        .get_details_retry_info()
        .and_then(|retry| retry.retry_delay)
        .expect("RetryInfo says when to come back");
    assert!(delay > Duration::ZERO, "{delay:?}");
    delay
}

#[tokio::test]
async fn a_hundred_one_megabyte_user_names_leave_the_web_bffs_memory_where_it_was() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let web = bff("tailor-web-bff", &stack, data.path(), &[]).await;
    let pid = web.child.id().unwrap();
    let mut sessions = SessionServiceClient::new(tailor_e2e::connect(web.address).await);
    let attempt = |username: String| SignInRequest {
        username,
        password: "secret".into(),
    };
    // The connection and the sign-in path as a caller first meets them.
    let warm_up = sessions.sign_in(attempt("nobody".into())).await;
    assert_eq!(warm_up.unwrap_err().code(), Code::Unauthenticated);
    let before = settled_rss_kib(pid).await;
    for n in 0..100u8 {
        let name = format!("{n:03}{}", "x".repeat((1 << 20) - 3));
        let status = sessions.sign_in(attempt(name)).await.unwrap_err();
        // Too long a name, or too large a message: refused either way.
        assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::ResourceExhausted
            ),
            "{status:?}"
        );
    }
    let after = settled_rss_kib(pid).await;
    println!(
        "web BFF RSS: {:.1} MiB before, {:.1} MiB after 100 sign-ins with 1 MB user names",
        before as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    assert!(
        after <= before + 10 * MIB,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn three_thousand_oversized_bogus_keys_leave_the_partner_bffs_memory_where_it_was() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let partner = bff("tailor-partner-bff", &stack, data.path(), &[]).await;
    let pid = partner.child.id().unwrap();
    let mut client = PartnerServiceClient::new(tailor_e2e::connect(partner.address).await);
    let call = |key: String| {
        api_key(
            &key,
            BatchGetAvailabilityRequest {
                product_ids: vec!["prod-000001".into()],
            },
        )
    };
    let warm_up = client
        .batch_get_availability(call(format!("tk_{:016x}_{}", 0, "ab".repeat(32))))
        .await;
    assert_eq!(warm_up.unwrap_err().code(), Code::Unauthenticated);
    let before = settled_rss_kib(pid).await;
    // Refused calls end their streams early; the server's HTTP/2 stack
    // closes a connection after about a thousand of those, so the flood
    // comes over a fresh connection every 500 calls, as an attacker's would.
    for n in 1..=3_000u64 {
        if n % 500 == 0 {
            client = PartnerServiceClient::new(tailor_e2e::connect(partner.address).await);
        }
        // A distinct key id each time, and a secret 60 times too long.
        let key = format!("tk_{n:016x}_{}", "ab".repeat(2_000));
        let status = client.batch_get_availability(call(key)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let oversized = settled_rss_kib(pid).await;
    // Well-formed keys with made-up ids reach the key store's cache.
    for n in 1..=3_000u64 {
        if n % 500 == 0 {
            client = PartnerServiceClient::new(tailor_e2e::connect(partner.address).await);
        }
        let key = format!("tk_{:016x}_{}", n << 20, "ab".repeat(32));
        let status = client.batch_get_availability(call(key)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let after = settled_rss_kib(pid).await;
    println!(
        "partner BFF RSS: {:.1} MiB before, {:.1} MiB after 3,000 oversized bogus keys, \
         {:.1} MiB after 3,000 more well-formed unknown ones",
        before as f64 / MIB as f64,
        oversized as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    assert!(
        oversized <= before + 10 * MIB,
        "RSS grew from {before} KiB to {oversized} KiB"
    );
    assert!(
        after <= before + 10 * MIB,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn one_password_sprayed_over_many_names_is_slowed_per_address() {
    let stack = Stack::start().await;
    let data = web_data_with_ada().await;
    // Four attempts at once per address, then one every 100 s.
    let env = [("TAILOR_WEB_SIGN_IN_ADDRESS_LIMITS", "0.01:4")];
    let web = bff("tailor-web-bff", &stack, data.path(), &env).await;
    let sprayer = "127.0.0.2";
    for name in ["alice", "bob", "carol", "dave"] {
        let status = sign_in(web.address, sprayer, name, "Summer2024!").await;
        assert_eq!(status.unwrap_err().code(), Code::Unauthenticated);
    }
    let delay = refused(
        sign_in(web.address, sprayer, "erin", "Summer2024!").await,
        "from this address",
    );
    assert!(delay <= Duration::from_secs(100), "{delay:?}");
    // Ada, elsewhere, signs in as usual.
    sign_in(web.address, "127.0.0.3", "ada", "lovelace")
        .await
        .expect("another address is not slowed");
}

#[tokio::test]
async fn guesses_at_one_name_are_slowed_and_the_user_gets_back_in() {
    let stack = Stack::start().await;
    let data = web_data_with_ada().await;
    // Two attempts at once per name, then one every 5 s.
    let env = [("TAILOR_WEB_SIGN_IN_LIMITS", "0.2:2")];
    let web = bff("tailor-web-bff", &stack, data.path(), &env).await;
    let (home, stranger, travelling) = ("127.0.0.3", "127.0.0.4", "127.0.0.5");
    sign_in(web.address, home, "ada", "lovelace").await.unwrap();
    // A stranger guesses Ada's password until the name's bucket is empty.
    let guess = sign_in(web.address, stranger, "ada", "guess-1").await;
    assert_eq!(guess.unwrap_err().code(), Code::Unauthenticated);
    refused(
        sign_in(web.address, stranger, "ada", "guess-2").await,
        "for this user",
    );
    // Where Ada signed in before, the stranger's guesses do not reach her.
    sign_in(web.address, home, "ada", "lovelace")
        .await
        .expect("a known address has its own allowance");
    // From a new address she waits too, but only seconds, not a day.
    let delay = refused(
        sign_in(web.address, travelling, "ada", "lovelace").await,
        "for this user",
    );
    assert!(delay <= Duration::from_secs(5), "{delay:?}");
    tokio::time::sleep(delay).await;
    sign_in(web.address, travelling, "ada", "lovelace")
        .await
        .expect("the limit recovers by itself");
}

/// Products whose best warehouse holds at least `units`, the first `n`.
async fn stocked(inventory: &Server, n: usize, units: i32) -> Vec<String> {
    let mut inventory = InventoryServiceClient::new(inventory.channel().await);
    let ids = (1..=tailor_e2e::PRODUCTS)
        .map(|i| format!("prod-{i:06}"))
        .collect();
    let stocks = inventory
        .batch_get_stock(BatchGetStockRequest { product_ids: ids })
        .await
        .unwrap()
        .into_inner()
        .stocks;
    let found: Vec<String> = stocks
        .into_iter()
        .filter(|s| s.warehouses.iter().any(|w| w.available >= units))
        .map(|s| s.product_id)
        .take(n)
        .collect();
    assert_eq!(found.len(), n, "the seeded shop has stock");
    found
}

/// Units of `product` still available, as the inventory service says.
async fn available(inventory: &Server, product: &str) -> i32 {
    let mut inventory = InventoryServiceClient::new(inventory.channel().await);
    inventory
        .batch_get_stock(BatchGetStockRequest {
            product_ids: vec![product.to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
        .stocks[0]
        .total_available
}

fn web_order(key: &str, product: &str, quantity: i32) -> web::v1::PlaceOrderRequest {
    web::v1::PlaceOrderRequest {
        idempotency_key: key.into(),
        lines: vec![web::v1::OrderLineInput {
            product_id: product.into(),
            quantity,
        }],
    }
}

fn mobile_order(key: &str, product: &str, quantity: i32) -> mobile::v1::PlaceOrderRequest {
    mobile::v1::PlaceOrderRequest {
        idempotency_key: key.into(),
        lines: vec![mobile::v1::OrderLineInput {
            product_id: product.into(),
            quantity,
        }],
    }
}

/// Asserts the refusal of an order over the user's rate.
fn over_the_rate(status: &tonic::Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("orders for this user"),
        "{status:?}"
    );
    let delay = status
        .get_details_retry_info()
        .and_then(|retry| retry.retry_delay)
        .expect("RetryInfo says when to come back");
    // The default: a new order every 10 s once the burst of 10 is spent.
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(10),
        "{delay:?}"
    );
}

#[tokio::test]
async fn orders_are_limited_per_user_on_web_and_mobile_with_retry_info() {
    let stack = Stack::start().await;
    let products = stocked(&stack.inventory, 22, 2).await;

    let mut shop = web::v1::shop_service_client::ShopServiceClient::new(stack.web.channel().await);
    let token = web_token("eager");
    let mut first = String::new();
    for (n, product) in products[..10].iter().enumerate() {
        let order = web_order(&format!("web-{n}"), product, 1);
        let placed = shop.place_order(bearer(&token, order)).await.unwrap();
        if n == 0 {
            first = placed.into_inner().order.unwrap().id;
        }
    }
    let refused = shop
        .place_order(bearer(&token, web_order("web-10", &products[10], 1)))
        .await
        .unwrap_err();
    over_the_rate(&refused);
    // A retry of an order already placed still gets it back...
    let again = shop
        .place_order(bearer(&token, web_order("web-0", &products[0], 1)))
        .await
        .expect("a retry is not a new order");
    assert_eq!(again.into_inner().order.unwrap().id, first);
    // ... and other users order as usual.
    let other = web_order("web-10", &products[10], 1);
    shop.place_order(bearer(&web_token("patient"), other))
        .await
        .unwrap();

    let mut phone =
        mobile::v1::shop_service_client::ShopServiceClient::new(stack.mobile.channel().await);
    let token = mobile_token("eager");
    for (n, product) in products[11..21].iter().enumerate() {
        let order = mobile_order(&format!("mobile-{n}"), product, 1);
        phone.place_order(bearer(&token, order)).await.unwrap();
    }
    let refused = phone
        .place_order(bearer(&token, mobile_order("mobile-10", &products[21], 1)))
        .await
        .unwrap_err();
    over_the_rate(&refused);
}

/// An orders service that refuses every order before storing anything, as
/// the real one refuses an order it cannot take.
struct RefusingOrders;

#[tonic::async_trait]
impl OrdersService for RefusingOrders {
    async fn create_order(
        &self,
        _: tonic::Request<CreateOrderRequest>,
    ) -> Result<tonic::Response<CreateOrderResponse>, tonic::Status> {
        Err(tonic::Status::failed_precondition(
            "the shop takes no orders today",
        ))
    }

    async fn get_order(
        &self,
        _: tonic::Request<GetOrderRequest>,
    ) -> Result<tonic::Response<GetOrderResponse>, tonic::Status> {
        Err(tonic::Status::not_found("no orders here"))
    }

    async fn list_orders(
        &self,
        _: tonic::Request<ListOrdersRequest>,
    ) -> Result<tonic::Response<ListOrdersResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListOrdersResponse::default()))
    }

    type WatchOrderStream = futures_util::stream::Empty<Result<WatchOrderResponse, tonic::Status>>;

    async fn watch_order(
        &self,
        _: tonic::Request<WatchOrderRequest>,
    ) -> Result<tonic::Response<Self::WatchOrderStream>, tonic::Status> {
        Err(tonic::Status::not_found("no orders here"))
    }
}

#[tokio::test]
async fn a_refused_order_gives_its_reserved_stock_back() {
    let stack = Stack::start().await;
    // The BFFs over the real catalogue and inventory, and an orders
    // service that refuses, served like the real one (mutual TLS).
    let refusing = Server::start_service(
        tailor_runtime::GrpcServer::new("orders")
            .add_service(OrdersServiceServer::new(RefusingOrders)),
        tailor_runtime::ServeOptions::default(),
    )
    .await;
    let [catalog, inventory, reviews, _] = stack.downstream_urls();
    let args = downstream_args(&catalog, &inventory, &reviews, &refusing.url());
    let data = tempfile::tempdir().unwrap();
    let keys = tailor_partner_bff::KeyStore::open(&data.path().join("partner.db")).unwrap();
    let accounts =
        tailor_web_bff::Accounts::open(&data.path().join("web.db"), Duration::from_secs(60))
            .unwrap();
    let (web_bff, mobile_bff, _partner) = start_bffs(&args, keys, accounts).await;

    let products = stocked(&stack.inventory, 2, 2).await;
    let before: Vec<i32> = [
        available(&stack.inventory, &products[0]).await,
        available(&stack.inventory, &products[1]).await,
    ]
    .to_vec();
    let mut shop = web::v1::shop_service_client::ShopServiceClient::new(web_bff.channel().await);
    let status = shop
        .place_order(bearer(
            &web_token("ada"),
            web_order("refused-1", &products[0], 2),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let mut phone =
        mobile::v1::shop_service_client::ShopServiceClient::new(mobile_bff.channel().await);
    let status = phone
        .place_order(bearer(
            &mobile_token("ada"),
            mobile_order("refused-2", &products[1], 2),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let after = [
        available(&stack.inventory, &products[0]).await,
        available(&stack.inventory, &products[1]).await,
    ];
    assert_eq!(after.to_vec(), before, "the stock is back");
    // Both reached the orders service, which comes after the reservation.
    let creates = refusing.stats.snapshot().started;
    assert_eq!(creates, 2, "both orders were reserved and sent");
}

#[tokio::test]
async fn an_order_that_may_have_been_created_keeps_its_reserved_stock() {
    let stack = Stack::start().await;
    let products = stocked(&stack.inventory, 2, 2).await;
    let mut shop = web::v1::shop_service_client::ShopServiceClient::new(stack.web.channel().await);
    let token = web_token("ada");

    // The key reused for other lines: the orders service refuses, but the
    // reservation under that key is the first order's and stays held.
    let first_before = available(&stack.inventory, &products[0]).await;
    let second_before = available(&stack.inventory, &products[1]).await;
    shop.place_order(bearer(&token, web_order("k-1", &products[0], 2)))
        .await
        .unwrap();
    let status = shop
        .place_order(bearer(&token, web_order("k-1", &products[1], 1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        available(&stack.inventory, &products[0]).await,
        first_before - 2
    );
    assert_eq!(
        available(&stack.inventory, &products[1]).await,
        second_before
    );

    // The orders service gone: the order may or may not exist, so its
    // stock stays held for the client's retry with the same key.
    let before = available(&stack.inventory, &products[1]).await;
    let orders = stack.orders;
    orders.stop().await;
    let status = shop
        .place_order(bearer(&token, web_order("k-2", &products[1], 1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(available(&stack.inventory, &products[1]).await, before - 1);
}

//! Nothing lost: a steady stream of order placements, each retried by its
//! client with the same idempotency key until acknowledged, while the
//! orders service and the BFF are stopped (SIGTERM) and killed (SIGKILL)
//! and started again. Afterwards the orders database is compared with
//! what the clients saw acknowledged: every acknowledged order is stored,
//! exactly once, under its key, and no order is stored twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tailor_e2e::{PRODUCTS, Process, bearer, mobile_token};
use tailor_proto::inventory::v1::BatchGetStockRequest;
use tailor_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient;
use tailor_proto::mobile::v1::{OrderLineInput, PlaceOrderRequest};
use tokio::sync::Mutex;
use tonic::Code;

/// Orders placed in all, by this many clients at once.
const ORDERS: usize = 100;
const CLIENTS: usize = 4;

/// How a server is stopped.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Term,
    Kill,
}

struct Restartable {
    binary: &'static str,
    address: SocketAddr,
    args: Vec<String>,
    process: Process,
}

impl Restartable {
    async fn start(binary: &'static str, listen: &str, args: Vec<String>) -> Restartable {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Process::start_listening(binary, listen, &refs, &[], None).await;
        Restartable {
            binary,
            address: process.address,
            args,
            process,
        }
    }

    /// Stops the process as `how` says and starts it again on its address.
    async fn bounce(&mut self, how: Stop) {
        match how {
            Stop::Term => {
                self.process.terminate();
                let status = self.process.exited(Duration::from_secs(30)).await;
                assert!(
                    status.success(),
                    "{} drained and exited: {status:?}",
                    self.binary
                );
            }
            Stop::Kill => self.process.crash().await,
        }
        let refs: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let listen = self.address.to_string();
        self.process = Process::start_listening(self.binary, &listen, &refs, &[], None).await;
    }
}

/// Products with at least `units` in stock, enough of them for every
/// order: stock runs out for some generated products.
async fn products_in_stock(inventory: SocketAddr, units: i32) -> Vec<String> {
    let channel = tailor_e2e::connect_mesh(inventory, "inventory", "mobile-bff").await;
    let stock = InventoryServiceClient::new(channel)
        .batch_get_stock(tailor_e2e::on_behalf_of(
            "mobile-bff",
            "inventory",
            "keeper",
            BatchGetStockRequest {
                product_ids: (1..=60).map(|n| format!("prod-{n:06}")).collect(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let products: Vec<String> = stock
        .stocks
        .into_iter()
        .filter(|s| s.total_available >= units)
        .map(|s| s.product_id)
        .collect();
    assert!(
        products.len() * units as usize >= ORDERS,
        "not enough stock for {ORDERS} orders: {products:?}"
    );
    products
}

/// Places order `key` for `user` until it is acknowledged; the statuses
/// that leave the outcome unknown or say "not now" are retried with the
/// same key, any other fails the test.
async fn place_until_acknowledged(
    client: &mut ShopServiceClient<tonic::transport::Channel>,
    user: &str,
    key: &str,
    product: &str,
) -> (String, u32) {
    let token = mobile_token(user);
    let mut attempts = 0;
    let give_up = Instant::now() + Duration::from_secs(90);
    loop {
        attempts += 1;
        let mut request = bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: key.to_owned(),
                lines: vec![OrderLineInput {
                    product_id: product.to_owned(),
                    quantity: 1,
                }],
            },
        );
        request.set_timeout(Duration::from_secs(5));
        match client.place_order(request).await {
            Ok(answer) => {
                let order = answer.into_inner().order.expect("an acknowledged order");
                return (order.id, attempts);
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable
                        | Code::DeadlineExceeded
                        | Code::Cancelled
                        | Code::Unknown
                        | Code::ResourceExhausted
                ) =>
            {
                assert!(
                    Instant::now() < give_up,
                    "order {key} still not acknowledged after {attempts} attempts: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("order {key}: {status:?}"),
        }
    }
}

#[tokio::test]
async fn every_acknowledged_order_is_stored_exactly_once_across_stops_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let products = PRODUCTS.to_string();
    let seeded = ["--data-dir", &data, "--products", &products];
    let catalog = Process::start("tailor-catalog", &seeded).await;
    let inventory = Process::start("tailor-inventory", &seeded).await;
    let reviews = Process::start("tailor-reviews", &seeded).await;
    let orders_args: Vec<String> = ["--data-dir", &data, "--drain-timeout-ms", "5000"]
        .map(str::to_owned)
        .into();
    let mut orders = Restartable::start("tailor-orders", "127.0.0.1:0", orders_args).await;
    let secret = std::str::from_utf8(tailor_e2e::SECRET).unwrap();
    let bff_args: Vec<String> = [
        "--data-dir",
        &data,
        "--catalog-addr",
        &catalog.url(),
        "--inventory-addr",
        &inventory.url(),
        "--reviews-addr",
        &reviews.url(),
        "--orders-addr",
        &orders.process.url(),
        "--jwt-hs256-secret",
        secret,
        "--order-limits",
        "1000:1000:100000",
        "--drain-timeout-ms",
        "5000",
    ]
    .map(str::to_owned)
    .into();
    let bff = Arc::new(Mutex::new(
        Restartable::start("tailor-mobile-bff", "127.0.0.1:0", bff_args).await,
    ));
    let bff_address = bff.lock().await.address;

    let products = Arc::new(products_in_stock(inventory.address, 10).await);
    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (next, acknowledged, products) = (next.clone(), acknowledged.clone(), products.clone());
        clients.push(tokio::spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{bff_address}"))
                .unwrap()
                .connect_lazy();
            let mut client = ShopServiceClient::new(channel);
            let user = format!("keeper-{c}");
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= ORDERS {
                    return seen;
                }
                let key = format!("order-{i}");
                let (id, attempts) = place_until_acknowledged(
                    &mut client,
                    &user,
                    &key,
                    &products[i % products.len()],
                )
                .await;
                acknowledged.fetch_add(1, Ordering::SeqCst);
                seen.push((user.clone(), key, id, attempts));
            }
        }));
    }

    // The faults, each once enough orders have gone through since the last.
    let faults = [
        ("orders", Stop::Term),
        ("orders", Stop::Kill),
        ("bff", Stop::Term),
        ("bff", Stop::Kill),
    ];
    for (n, (which, how)) in faults.into_iter().enumerate() {
        let due = (n + 1) * ORDERS / (faults.len() + 1);
        let waited = Instant::now();
        while acknowledged.load(Ordering::SeqCst) < due {
            assert!(
                waited.elapsed() < Duration::from_secs(120),
                "orders stopped being acknowledged before the {which} {how:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match which {
            "orders" => orders.bounce(how).await,
            _ => bff.lock().await.bounce(how).await,
        }
    }

    let mut seen = Vec::new();
    for client in clients {
        seen.extend(client.await.unwrap());
    }
    assert_eq!(seen.len(), ORDERS, "every order acknowledged");
    let retried = seen.iter().filter(|(.., attempts)| *attempts > 1).count();
    assert!(
        retried > 0,
        "the faults should have made some clients retry; none did"
    );

    // What the store holds, read after the orders service stopped.
    orders.process.terminate();
    orders.process.exited(Duration::from_secs(30)).await;
    let db = rusqlite::Connection::open_with_flags(
        dir.path().join("orders.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let keys: HashMap<(String, String), String> = db
        .prepare("SELECT customer_id, key, order_id FROM idempotency_keys")
        .unwrap()
        .query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let stored: Vec<(String, String)> = db
        .prepare("SELECT id, customer_id FROM orders")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The BFF stores each client key under a key derived from it; one
    // per order placed.
    assert_eq!(keys.len(), ORDERS, "one idempotency key per order placed");
    for (user, key, id, _) in &seen {
        assert_eq!(
            stored.iter().filter(|(stored, _)| stored == id).count(),
            1,
            "order {id} ({key} of {user}) is stored once"
        );
        assert!(
            keys.values().any(|order| order == id),
            "order {id} ({key} of {user}) is stored under its key"
        );
    }
    assert_eq!(
        stored.len(),
        ORDERS,
        "no order is stored twice or without an acknowledgement: {} stored for {ORDERS} keys",
        stored.len()
    );
    drop((catalog, inventory, reviews));
}

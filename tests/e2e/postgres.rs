//! The stores on the real PostgreSQL engine: each store's own checks (the
//! ones its SQLite implementation passes in its unit tests), and the
//! guarantees that must hold across replicas, with two server processes on
//! one database: one order per idempotency key, no stock reserved twice,
//! a partner's limits counted once, sessions and sign-in limits shared by
//! the web BFFs. Every test starts a PostgreSQL server of its own
//! ([`tailor_e2e::postgres::Postgres`]) and fails when it cannot.

use std::collections::HashSet;
use std::time::Duration;

use tailor_e2e::postgres::Postgres;
use tailor_e2e::{Process, connect_mesh, on_behalf_of};
use tailor_proto::orders::v1::orders_service_client::OrdersServiceClient;
use tailor_proto::orders::v1::{CreateOrderRequest, OrderLine, OrderStatus, WatchOrderRequest};
use tailor_proto::r#type::v1::Money;
use tailor_storage::PostgresUrl;

fn parse(url: &str) -> PostgresUrl {
    url.parse().unwrap()
}

/// `binary` (a downstream service) as its own process, keeping its store
/// in the database at `url`.
async fn service_on(binary: &str, url: &str, extra: &[&str]) -> (Process, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--database-url",
        url,
        "--data-dir",
        data.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let log = data.path().join("stderr.log");
    let process = Process::start_with(binary, &args, &[], Some(&log)).await;
    (process, data)
}

mod orders {
    use super::*;
    use tailor_orders::{PgOrderStore, conformance};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_order_store_passes_its_checks_on_postgres() {
        let postgres = Postgres::start().await;
        let url = parse(&postgres.database("shop").await);
        let store = PgOrderStore::connect(&url, Duration::from_millis(1))
            .await
            .unwrap();
        conformance::keys_replay_conflict_and_the_simulator_delivers(&store).await;
        conformance::concurrent_retries_of_one_key_store_one_order(&store).await;
        conformance::orders_page_newest_first(&store).await;
        // A second replica's store sees the same orders.
        let replica = PgOrderStore::connect(&url, Duration::from_millis(1))
            .await
            .unwrap();
        let stored = tailor_orders::OrderStore::get(&replica, "ord-1".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.status, OrderStatus::Delivered as i32);
    }

    fn create(key: &str) -> CreateOrderRequest {
        CreateOrderRequest {
            idempotency_key: key.into(),
            lines: vec![OrderLine {
                product_id: "prod-000020".into(),
                title: "Mug".into(),
                quantity: 2,
                unit_price: Some(Money {
                    currency_code: "EUR".into(),
                    amount_minor: 1250,
                }),
            }],
            channel: "web".into(),
            ..Default::default()
        }
    }

    /// Two replicas of the orders service on one database, and a client
    /// retrying one order with one key through both at once, as a client
    /// behind a load balancer would: every attempt is answered with the
    /// same order, and the table holds it once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_retries_through_two_orders_processes_make_exactly_one_order() {
        let postgres = Postgres::start().await;
        let url = postgres.database("shop").await;
        let (first, _first_data) = service_on("tailor-orders", &url, &[]).await;
        let (second, _second_data) = service_on("tailor-orders", &url, &[]).await;
        let channels = [
            connect_mesh(first.address, "orders", "web-bff").await,
            connect_mesh(second.address, "orders", "web-bff").await,
        ];
        let attempts = (0..40).map(|n| {
            let mut client = OrdersServiceClient::new(channels[n % 2].clone());
            tokio::spawn(async move {
                client
                    .create_order(on_behalf_of(
                        "web-bff",
                        "orders",
                        "frank",
                        create("double-click"),
                    ))
                    .await
                    .map(|r| r.into_inner())
            })
        });
        let mut ids = HashSet::new();
        let mut fresh = 0;
        for attempt in futures_util::future::join_all(attempts).await {
            let answer = attempt.unwrap().expect("every retry is answered");
            fresh += usize::from(!answer.replayed);
            ids.insert(answer.order.unwrap().id);
        }
        assert_eq!(ids.len(), 1, "every retry got the same order: {ids:?}");
        assert_eq!(fresh, 1, "one attempt made it, the others replayed it");

        let db = postgres.client("shop").await;
        for table in ["orders", "idempotency_keys"] {
            let stored: i64 = db
                .query_one(
                    &format!("SELECT count(*) FROM orders.{table} WHERE customer_id = 'frank'"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(stored, 1, "{table}");
        }
    }

    /// A watcher on one replica sees every status change another replica
    /// makes: the replica watched runs no simulator of its own
    /// (`--fulfilment-step-ms 0`), so what it reports came through the
    /// database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watcher_on_one_replica_sees_the_changes_another_makes() {
        let postgres = Postgres::start().await;
        let url = postgres.database("shop").await;
        let (working, _working_data) =
            service_on("tailor-orders", &url, &["--fulfilment-step-ms", "300"]).await;
        let (idle, _idle_data) =
            service_on("tailor-orders", &url, &["--fulfilment-step-ms", "0"]).await;
        let order =
            OrdersServiceClient::new(connect_mesh(working.address, "orders", "web-bff").await)
                .create_order(on_behalf_of("web-bff", "orders", "gil", create("watch-me")))
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap();
        let mut watch =
            OrdersServiceClient::new(connect_mesh(idle.address, "orders", "web-bff").await)
                .watch_order(on_behalf_of(
                    "web-bff",
                    "orders",
                    "gil",
                    WatchOrderRequest {
                        order_id: order.id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(change) = watch.message().await.unwrap() {
                seen.push(change.order.unwrap().status);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("delivered within 20 s; seen {seen:?}"));
        assert_eq!(
            seen.last(),
            Some(&(OrderStatus::Delivered as i32)),
            "{seen:?}"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
        assert!(
            seen.len() >= 3,
            "changes as they happened, not only the end: {seen:?}"
        );
    }
}

/// A `--database-url` that is not one, or names a server that is not
/// there, stops the server at start-up with a message naming the flag.
#[tokio::test]
async fn a_wrong_or_unreachable_database_url_stops_the_server_at_start_up() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let malformed = tailor_e2e::command("tailor-orders")
        .args(["--listen", "127.0.0.1:0", "--data-dir", dir])
        .args(["--database-url", "mysql://shop"])
        .output()
        .await
        .unwrap();
    assert!(!malformed.status.success());
    let said = String::from_utf8_lossy(&malformed.stderr);
    assert!(said.contains("--database-url"), "{said}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = tailor_e2e::command("tailor-orders")
        .args(["--listen", "127.0.0.1:0", "--data-dir", dir])
        .args(["--trust-dir", tailor_e2e::trust().dir.to_str().unwrap()])
        .env(
            "TAILOR_DATABASE_URL",
            format!("postgres://tailor:secret-word@127.0.0.1:{closed}/shop"),
        )
        .output()
        .await
        .unwrap();
    assert!(!unreachable.status.success());
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        said.contains("--database-url: cannot reach PostgreSQL at tailor@127.0.0.1:"),
        "{said}"
    );
    assert!(!said.contains("secret-word"), "{said}");
    assert!(
        !data.path().join("orders.db").exists(),
        "no SQLite file instead"
    );
}

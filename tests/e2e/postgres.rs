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

mod inventory {
    use super::*;
    use tailor_inventory::{PgInventoryStore, conformance};
    use tailor_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
    use tailor_proto::inventory::v1::{GetStockRequest, ReservationLine, ReserveStockRequest};
    use tonic::Code;

    /// Each check on a store of its own, in a database of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_inventory_store_passes_its_checks_on_postgres() {
        let postgres = Postgres::start().await;
        let store = |name: &'static str| {
            let postgres = &postgres;
            async move {
                let url = parse(&postgres.database(name).await);
                PgInventoryStore::connect(&url, conformance::PRODUCTS)
                    .await
                    .unwrap()
            }
        };
        conformance::concurrent_retries_of_one_reservation_hold_stock_once(&store("retries").await)
            .await;
        conformance::a_released_reservation_gives_its_stock_back_exactly_once(
            &store("releases").await,
        )
        .await;
        conformance::concurrent_reservations_never_hold_more_than_the_stock(
            &store("oversell").await,
        )
        .await;
        let seeded = store("seeded").await;
        conformance::stock_is_seeded_and_answered_per_warehouse(&seeded).await;
        // A second replica starting on the same database stocks nothing
        // again.
        let url = parse(&postgres.url("seeded"));
        let replica = PgInventoryStore::connect(&url, conformance::PRODUCTS)
            .await
            .unwrap();
        conformance::stock_is_seeded_and_answered_per_warehouse(&replica).await;
    }

    /// Two replicas of the inventory service on one database, and orders
    /// of ten units each of one product through both at once, twice as
    /// many as its stock could serve: no warehouse row ever holds more than
    /// it has, every order that was answered holds exactly its ten, what is
    /// left anywhere is less than one more order, and every refusal is
    /// FAILED_PRECONDITION.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_inventory_processes_never_reserve_more_than_the_stock() {
        let postgres = Postgres::start().await;
        let url = postgres.database("shop").await;
        let products = ["--products", "60"];
        // Started together, as a rollout does: one of them stocks the
        // database, the other finds it stocked.
        let ((first, _first_data), (second, _second_data)) = tokio::join!(
            service_on("tailor-inventory", &url, &products),
            service_on("tailor-inventory", &url, &products)
        );
        let channels = [
            connect_mesh(first.address, "inventory", "web-bff").await,
            connect_mesh(second.address, "inventory", "web-bff").await,
        ];
        const UNITS: i32 = 10;
        let index = (1..=60)
            .find(|i| {
                let total: i32 = tailor_seed::stock(*i).iter().map(|w| w.on_hand).sum();
                (300..=800).contains(&total)
            })
            .unwrap();
        let product = tailor_seed::product_id(index);
        let stock: i32 = tailor_seed::stock(index).iter().map(|w| w.on_hand).sum();
        let db = postgres.client("shop").await;
        let rows: i64 = db
            .query_one("SELECT count(*) FROM inventory.stock", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 60 * 4, "stocked once");

        let attempts = (0..2 * stock / UNITS).map(|n| {
            let mut client = InventoryServiceClient::new(channels[n as usize % 2].clone());
            let product = product.clone();
            tokio::spawn(async move {
                client
                    .reserve_stock(on_behalf_of(
                        "web-bff",
                        "inventory",
                        "shopper",
                        ReserveStockRequest {
                            reservation_id: format!("rsv-{n}"),
                            lines: vec![ReservationLine {
                                product_id: product,
                                quantity: UNITS,
                            }],
                        },
                    ))
                    .await
                    .map(|_| ())
            })
        });
        let mut reserved = 0;
        for attempt in futures_util::future::join_all(attempts).await {
            match attempt.unwrap() {
                Ok(()) => reserved += 1,
                Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
            }
        }
        assert!(
            reserved > 0 && reserved * UNITS <= stock,
            "{reserved} orders of {stock}"
        );

        let held: Vec<(String, i32, i32)> = db
            .query(
                "SELECT warehouse_id, on_hand, reserved FROM inventory.stock WHERE product_id = $1",
                &[&product],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        for (warehouse, on_hand, held) in &held {
            assert!(held <= on_hand, "{warehouse}: {held} of {on_hand} held");
            assert!(
                on_hand - held < UNITS,
                "{warehouse}: {} left, enough for a refused order",
                on_hand - held
            );
        }
        assert_eq!(
            held.iter().map(|(_, _, r)| r).sum::<i32>(),
            reserved * UNITS,
            "each answered order holds its units, once"
        );
        // Both replicas tell the same story.
        for channel in &channels {
            let seen = InventoryServiceClient::new(channel.clone())
                .get_stock(on_behalf_of(
                    "web-bff",
                    "inventory",
                    "shopper",
                    GetStockRequest {
                        product_id: product.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .stock
                .unwrap();
            assert_eq!(seen.total_available, stock - reserved * UNITS);
        }
    }
}

mod partner {
    use super::*;
    use std::net::SocketAddr;
    use tailor_e2e::{Stack, api_key};
    use tailor_partner_bff::keys::conformance;
    use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
    use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
    use tonic::Code;
    use tonic_types::StatusExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_key_store_passes_its_checks_on_postgres() {
        let postgres = Postgres::start().await;
        let url = parse(&postgres.database("partner").await);
        let store = tailor_partner_bff::KeyStore::connect(&url).await.unwrap();
        let key = conformance::keys_verify_list_and_revoke(&store).await;
        conformance::quota_counts_are_kept_per_day(&store).await;
        conformance::shared_limits_admit_exactly_the_allowance(&store).await;
        // No column of any row holds the secret.
        let secret = key.token.rsplit('_').next().unwrap().to_owned();
        let rows: Vec<String> = postgres
            .client("partner")
            .await
            .query("SELECT t::text FROM partner_bff.api_keys t", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|row| !row.contains(&secret)), "{rows:?}");
    }

    /// `keys create` as an operator runs it, against `database` (a
    /// `--database-url`, or `None` for the SQLite file in `data`).
    async fn create_key(data: &str, database: Option<&str>, plan: &str) -> String {
        let mut command = tailor_e2e::command("tailor-partner-bff");
        command.args(["--data-dir", data]);
        if let Some(url) = database {
            command.args(["--database-url", url]);
        }
        let output = command
            .args(["keys", "create", "--tenant", "acme", "--plan", plan])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// `calls` availability calls with `key` at once, spread evenly over
    /// the BFFs at `addresses`: how many were answered, and every refusal.
    async fn hammer(
        addresses: &[SocketAddr],
        key: &str,
        calls: usize,
    ) -> (usize, Vec<tonic::Status>) {
        let mut channels = Vec::new();
        for address in addresses {
            channels.push(tailor_e2e::connect(*address).await);
        }
        let attempts = (0..calls).map(|n| {
            let mut client = PartnerServiceClient::new(channels[n % channels.len()].clone());
            let key = key.to_owned();
            tokio::spawn(async move {
                client
                    .batch_get_availability(api_key(
                        &key,
                        BatchGetAvailabilityRequest {
                            product_ids: vec!["prod-000001".into()],
                        },
                    ))
                    .await
                    .map(|_| ())
            })
        });
        let mut answered = 0;
        let mut refused = Vec::new();
        for attempt in futures_util::future::join_all(attempts).await {
            match attempt.unwrap() {
                Ok(()) => answered += 1,
                Err(status) => refused.push(status),
            }
        }
        (answered, refused)
    }

    /// A burst of 12 with about one token every 17 minutes (so no token
    /// comes back during the test: the bucket's tolerance is zero here),
    /// and a quota of 20 a day with tokens to spare.
    const PLANS: &str = "trial=0.001:12:100000,standard=1000:1000:20";

    /// One key's calls, at once, through `partners`: the bucket gives its
    /// burst and no more, the quota its calls and no more, each refusal
    /// RESOURCE_EXHAUSTED saying which limit and when to come back.
    async fn exactly_the_allowance(partners: &[SocketAddr], bursty: &str, metered: &str) {
        let (answered, refused) = hammer(partners, bursty, 40).await;
        assert_eq!(
            answered, 12,
            "the burst, once across all replicas: {refused:?}"
        );
        for status in &refused {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(status.message().contains("rate limit"), "{status:?}");
            let retry = status
                .get_details_retry_info()
                .unwrap()
                .retry_delay
                .unwrap();
            assert!(retry > Duration::from_secs(100), "{retry:?}");
        }
        let (answered, refused) = hammer(partners, metered, 50).await;
        assert_eq!(answered, 20, "the day's quota, once across all replicas");
        for status in &refused {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(status.message().contains("daily quota of 20"), "{status:?}");
            assert!(status.get_details_quota_failure().is_some());
        }
    }

    /// Two partner BFF processes on one database, one key: together they
    /// admit what one process admits, exactly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_partner_processes_admit_one_key_its_limit_and_no_more() {
        let stack = Stack::start().await;
        let postgres = Postgres::start().await;
        let url = postgres.database("partner").await;
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let data: Vec<&str> = dirs.iter().map(|d| d.path().to_str().unwrap()).collect();
        // Keys made through one replica's command work on both.
        let bursty = create_key(data[0], Some(&url), "trial").await;
        let metered = create_key(data[1], Some(&url), "standard").await;
        let downstreams = stack.downstream_urls();
        let mut partners = Vec::new();
        for data in &data {
            let args = ["--database-url", url.as_str(), "--plan-limits", PLANS];
            partners.push(
                Process::start_bff("tailor-partner-bff", data, &downstreams, &args, &[], None)
                    .await,
            );
        }
        let addresses: Vec<SocketAddr> = partners.iter().map(|p| p.address).collect();
        exactly_the_allowance(&addresses, &bursty, &metered).await;
        // Each key has one row, and nothing was written to SQLite.
        let buckets: i64 = postgres
            .client("partner")
            .await
            .query_one("SELECT count(*) FROM partner_bff.limit_buckets", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(buckets, 2);
        assert!(dirs.iter().all(|d| !d.path().join("partner.db").exists()));
    }

    /// The embedded default: one process on its SQLite file, counting in
    /// memory, admits the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_partner_process_on_sqlite_admits_the_same() {
        let stack = Stack::start().await;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let bursty = create_key(data, None, "trial").await;
        let metered = create_key(data, None, "standard").await;
        let partner = Process::start_bff(
            "tailor-partner-bff",
            data,
            &stack.downstream_urls(),
            &["--plan-limits", PLANS],
            &[],
            None,
        )
        .await;
        exactly_the_allowance(&[partner.address], &bursty, &metered).await;
    }
}

mod web {
    use super::*;
    use std::net::SocketAddr;
    use tailor_e2e::Stack;
    use tailor_e2e::grpc_web::{self, Http, Mode};
    use tailor_proto::web::v1::{
        GetSessionRequest, GetSessionResponse, SignInRequest, SignInResponse, SignOutRequest,
    };
    use tailor_web_bff::accounts::conformance::{self, QUICK, STEADY};
    use tailor_web_bff::throttle::SignInThrottle;
    use tokio::io::AsyncWriteExt;
    use tonic::Code;

    const APP: &str = "http://app.test";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_accounts_store_and_sign_in_limits_pass_their_checks_on_postgres() {
        let postgres = Postgres::start().await;
        let url = parse(&postgres.database("web").await);
        let accounts = tailor_web_bff::Accounts::connect(&url, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(accounts.is_shared());
        conformance::passwords_verify_and_names_are_checked(&accounts).await;
        conformance::sessions_start_resolve_and_end(&accounts).await;
        let shared = |limits| SignInThrottle::shared(limits, accounts.clone(), 1);
        conformance::one_password_sprayed_over_many_names_is_slowed_per_address(&shared(STEADY))
            .await;
        conformance::guessing_one_name_from_many_addresses_is_slowed_and_recovers(&shared(QUICK))
            .await;
        conformance::a_stranger_cannot_lock_out_a_user_from_where_they_signed_in_before(&shared(
            STEADY,
        ))
        .await;
        let rows: Vec<String> = postgres
            .client("web")
            .await
            .query("SELECT t::text FROM web_bff.users t", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|row| !row.contains("lovelace")), "{rows:?}");
    }

    /// Adds `username` with `password` through `users add` on the database
    /// at `url`, as an operator would.
    async fn add_user(url: &str, username: &str, password: &str) {
        let data = tempfile::tempdir().unwrap();
        let mut child = tailor_e2e::command("tailor-web-bff")
            .args([
                "--data-dir",
                data.path().to_str().unwrap(),
                "--database-url",
                url,
            ])
            .args(["users", "add", username])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert!(
            output.status.success(),
            "users add: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Two web BFF processes on one database, admitting the app at [`APP`],
    /// with `extra` flags.
    async fn two_web_bffs(
        stack: &Stack,
        url: &str,
        extra: &[&str],
    ) -> (Vec<Process>, Vec<tempfile::TempDir>) {
        let mut processes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..2 {
            let data = tempfile::tempdir().unwrap();
            let mut args = vec!["--database-url", url, "--cors-origin", APP];
            args.extend_from_slice(extra);
            processes.push(
                Process::start_bff(
                    "tailor-web-bff",
                    data.path().to_str().unwrap(),
                    &stack.downstream_urls(),
                    &args,
                    &[],
                    None,
                )
                .await,
            );
            dirs.push(data);
        }
        (processes, dirs)
    }

    /// A grpc-web call from the app, as the browser makes it.
    async fn call(
        address: SocketAddr,
        path: &str,
        message: &impl prost::Message,
        cookie: Option<&str>,
    ) -> grpc_web::Reply {
        let mut headers = vec![("origin", APP), ("x-tailor-csrf", "1")];
        if let Some(cookie) = cookie {
            headers.push(("cookie", cookie));
        }
        grpc_web::call(address, Http::One, Mode::Binary, path, message, &headers).await
    }

    const SIGN_IN: &str = "/tailor.web.v1.SessionService/SignIn";
    const SIGN_OUT: &str = "/tailor.web.v1.SessionService/SignOut";
    const WHO: &str = "/tailor.web.v1.SessionService/GetSession";

    fn sign_in(username: &str, password: &str) -> SignInRequest {
        SignInRequest {
            username: username.into(),
            password: password.into(),
        }
    }

    /// A browser signed in through one replica is signed in on the other
    /// (the load balancer may send its next call anywhere), and signed out
    /// on both by signing out on either.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_made_on_one_web_bff_works_on_another() {
        let stack = Stack::start().await;
        let postgres = Postgres::start().await;
        let url = postgres.database("web").await;
        add_user(&url, "ada", "lovelace").await;
        let (webs, _dirs) = two_web_bffs(&stack, &url, &[]).await;
        let (first, second) = (webs[0].address, webs[1].address);

        let reply = call(first, SIGN_IN, &sign_in("ada", "lovelace"), None).await;
        assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
        let signed_in = reply.decode::<SignInResponse>()[0].session.clone().unwrap();
        let set_cookie = reply.headers["set-cookie"].to_str().unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();

        let reply = call(second, WHO, &GetSessionRequest {}, Some(&cookie)).await;
        assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
        let session = reply.decode::<GetSessionResponse>()[0]
            .session
            .clone()
            .unwrap();
        assert_eq!(session.user_id, "user-ada");
        assert_eq!(session, signed_in);

        let reply = call(second, SIGN_OUT, &SignOutRequest {}, Some(&cookie)).await;
        assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
        for web in [first, second] {
            let reply = call(web, WHO, &GetSessionRequest {}, Some(&cookie)).await;
            assert_eq!(reply.code(), Some(Code::Unauthenticated), "{reply:?}");
        }
    }

    /// Password guesses for one user, sent to two replicas in turn: the
    /// user's bucket (4 at once, then one every 17 minutes) is one for
    /// both, so the fifth guess is refused whichever replica gets it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_in_limits_hold_across_two_web_bffs() {
        let stack = Stack::start().await;
        let postgres = Postgres::start().await;
        let url = postgres.database("web").await;
        add_user(&url, "ivy", "correct horse").await;
        let limits = [
            "--sign-in-limits",
            "0.001:4",
            "--sign-in-address-limits",
            "0.001:100",
        ];
        let (webs, _dirs) = two_web_bffs(&stack, &url, &limits).await;
        let mut codes = Vec::new();
        for n in 0..10 {
            let reply = call(webs[n % 2].address, SIGN_IN, &sign_in("ivy", "guess"), None).await;
            if reply.code() == Some(Code::ResourceExhausted) {
                assert!(reply.message().contains("for this user"), "{reply:?}");
            }
            codes.push(reply.code().unwrap());
        }
        let mut expected = vec![Code::Unauthenticated; 4];
        expected.extend([Code::ResourceExhausted; 6]);
        assert_eq!(codes, expected);
        // The right password waits too, on either replica: the limit is
        // the name's, not the guesser's.
        let reply = call(
            webs[1].address,
            SIGN_IN,
            &sign_in("ivy", "correct horse"),
            None,
        )
        .await;
        assert_eq!(reply.code(), Some(Code::ResourceExhausted), "{reply:?}");
    }
}

mod catalog_and_reviews {
    use super::*;
    use tailor_catalog::PgCatalogStore;
    use tailor_reviews::PgReviewsStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_catalog_store_passes_its_checks_on_postgres() {
        use tailor_catalog::conformance;
        let postgres = Postgres::start().await;
        let url = parse(&postgres.database("shop").await);
        let store = PgCatalogStore::connect(&url, conformance::PRODUCTS)
            .await
            .unwrap();
        conformance::the_catalogue_is_seeded_once(&store).await;
        conformance::listings_filter_and_page(&store).await;
        conformance::related_products_are_the_nearest_in_price(&store).await;
        // A replica starting later finds the catalogue seeded.
        let replica = PgCatalogStore::connect(&url, conformance::PRODUCTS)
            .await
            .unwrap();
        conformance::the_catalogue_is_seeded_once(&replica).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reviews_store_passes_its_checks_on_postgres() {
        use tailor_reviews::conformance;
        let postgres = Postgres::start().await;
        let url = parse(&postgres.database("shop").await);
        let store = PgReviewsStore::connect(&url, conformance::PRODUCTS)
            .await
            .unwrap();
        conformance::pages_through_every_review_newest_first_and_summarises_them(&store).await;
        conformance::every_generated_review_is_seeded_once(&store).await;
    }

    /// Two replicas of each seeding service started at the same moment on
    /// one database seed it once, each service in its own schema.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_starting_together_seed_once() {
        let postgres = Postgres::start().await;
        let url = postgres.database("shop").await;
        let products = ["--products", "400"];
        let (catalogs, reviews) = tokio::join!(
            async {
                tokio::join!(
                    service_on("tailor-catalog", &url, &products),
                    service_on("tailor-catalog", &url, &products)
                )
            },
            async {
                tokio::join!(
                    service_on("tailor-reviews", &url, &products),
                    service_on("tailor-reviews", &url, &products)
                )
            }
        );
        let db = postgres.client("shop").await;
        let count = |sql: &'static str| {
            let db = &db;
            async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
        };
        assert_eq!(count("SELECT count(*) FROM catalog.products").await, 400);
        let generated: usize = (1..=400).map(|i| tailor_seed::reviews(i).len()).sum();
        assert_eq!(
            count("SELECT count(*) FROM reviews.reviews").await,
            generated as i64
        );
        let versions: Vec<i64> = db
            .query(
                "SELECT version FROM catalog.schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(versions, [1, 2], "every step recorded once");
        drop((catalogs, reviews));
    }
}

/// The whole system on one PostgreSQL database, as a deployment runs it:
/// the four services and the web and partner BFFs as processes, each in
/// its own schema; a product page is complete, an order is placed and
/// stored, a partner key made with the command works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_stack_runs_on_one_postgresql_database() {
    use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
    use tailor_proto::web::v1::{GetProductPageRequest, OrderLineInput, PlaceOrderRequest};

    let postgres = Postgres::start().await;
    let url = postgres.database("tailor").await;
    let products = ["--products", "300"];
    let (
        (catalog, _catalog_data),
        (inventory, _inventory_data),
        (reviews, _reviews_data),
        (orders, _orders_data),
    ) = tokio::join!(
        service_on("tailor-catalog", &url, &products),
        service_on("tailor-inventory", &url, &products),
        service_on("tailor-reviews", &url, &products),
        service_on("tailor-orders", &url, &[])
    );
    let downstreams =
        [&catalog, &inventory, &reviews, &orders].map(|p| format!("https://{}", p.address));
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let with_db = ["--database-url", url.as_str()];
    let web = Process::start_bff("tailor-web-bff", dir, &downstreams, &with_db, &[], None).await;

    let mut shop = ShopServiceClient::new(tailor_e2e::connect(web.address).await);
    let page = shop
        .get_product_page(GetProductPageRequest {
            product_id: "prod-000007".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        page.degraded_sections.is_empty(),
        "{:?}",
        page.degraded_sections
    );
    assert_eq!(page.product.unwrap().id, "prod-000007");
    assert!(page.availability.is_some() && page.reviews.is_some());
    assert!(!page.related.is_empty());
    let placed = shop
        .place_order(tailor_e2e::bearer(
            &tailor_e2e::web_token("kim"),
            PlaceOrderRequest {
                idempotency_key: "first".into(),
                lines: vec![OrderLineInput {
                    product_id: "prod-000007".into(),
                    quantity: 1,
                }],
            },
        ))
        .await;
    let db = postgres.client("tailor").await;
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM orders.orders WHERE customer_id = 'kim'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    match placed {
        Ok(_) => assert_eq!(stored, 1),
        // The generated product may be out of stock; then nothing is kept.
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
            assert_eq!(stored, 0);
        }
    }
    let key = {
        let output = tailor_e2e::command("tailor-partner-bff")
            .args(["--data-dir", dir, "--database-url", &url])
            .args(["keys", "create", "--tenant", "acme"])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let partner =
        Process::start_bff("tailor-partner-bff", dir, &downstreams, &with_db, &[], None).await;
    tailor_proto::partner::v1::partner_service_client::PartnerServiceClient::new(
        tailor_e2e::connect(partner.address).await,
    )
    .batch_get_availability(tailor_e2e::api_key(
        &key,
        tailor_proto::partner::v1::BatchGetAvailabilityRequest {
            product_ids: vec!["prod-000007".into()],
        },
    ))
    .await
    .unwrap();

    let schemas: Vec<String> = db
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg_%'
             AND nspname NOT IN ('public', 'information_schema') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        schemas,
        [
            "catalog",
            "inventory",
            "orders",
            "partner_bff",
            "reviews",
            "web_bff"
        ]
    );
    let files: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| name.to_string_lossy().ends_with(".db"))
        .collect();
    assert!(files.is_empty(), "no SQLite file beside: {files:?}");
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

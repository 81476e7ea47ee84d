//! A BFF's health follows the downstream services it cannot work without:
//! the web BFF process reports NOT_SERVING (its API and overall, on its API
//! and admin ports) once the catalog has been unreachable for its grace
//! time, SERVING again once the catalog is back on the same address, and
//! NOT_SERVING first when it is told to stop, after which it exits even
//! though a watcher still holds a health stream open.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tailor_e2e::{Process, Stack};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SHOP: &str = "tailor.web.v1.ShopService";

/// The catalog binary listening on `listen`, its store in `data`.
async fn catalog(listen: &str, data: &Path) -> (tokio::process::Child, SocketAddr) {
    let mut child = tailor_e2e::command("tailor-catalog")
        .args(["--listen", listen, "--products", "50", "--data-dir"])
        .arg(data)
        .arg("--trust-dir")
        .arg(&tailor_e2e::trust().dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, address)) = line.split_once(" listening on ") {
                return address.trim().parse().unwrap();
            }
        }
        panic!("the catalog exited before listening");
    })
    .await
    .expect("the catalog started in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

/// The next status a health watch reports, within `limit`.
async fn next_status(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    limit: Duration,
) -> ServingStatus {
    tokio::time::timeout(limit, watch.next())
        .await
        .expect("health changed in time")
        .expect("the watch is open")
        .unwrap()
        .status()
}

async fn check(address: SocketAddr, service: &str) -> ServingStatus {
    HealthClient::new(tailor_e2e::connect(address).await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

#[tokio::test]
async fn a_bff_is_not_serving_while_its_required_catalog_is_down_and_serving_once_it_is_back() {
    let stack = Stack::start().await;
    let catalog_data = stack.dir.path().join("catalog-process");
    std::fs::create_dir_all(&catalog_data).unwrap();
    let (mut catalog_process, catalog_address) = catalog("127.0.0.1:0", &catalog_data).await;
    let [_, inventory, reviews, orders] = stack.downstream_urls();
    let downstreams = [
        format!("https://{catalog_address}"),
        inventory,
        reviews,
        orders,
    ];
    let data = stack.dir.path().join("readiness-web");
    std::fs::create_dir_all(&data).unwrap();
    let grace = Duration::from_millis(1000);
    let mut web = Process::start_bff(
        "tailor-web-bff",
        data.to_str().unwrap(),
        &downstreams,
        &[
            "--readiness-grace-ms",
            "1000",
            "--readiness-probe-ms",
            "200",
            "--admin-listen",
            "127.0.0.1:0",
            "--drain-timeout-ms",
            "10000",
        ],
        &[],
        None,
    )
    .await;
    let admin = web.admin.expect("the web BFF announces its admin port");
    let mut api = HealthClient::new(tailor_e2e::connect(web.address).await);
    let mut shop = api
        .watch(HealthCheckRequest {
            service: SHOP.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut overall = HealthClient::new(tailor_e2e::connect(admin).await)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let limit = Duration::from_secs(10);
    assert_eq!(next_status(&mut shop, limit).await, ServingStatus::Serving);
    assert_eq!(
        next_status(&mut overall, limit).await,
        ServingStatus::Serving
    );

    // The catalog dies: after the grace time, and not before, the BFF
    // says it cannot serve, on both ports.
    catalog_process.start_kill().unwrap();
    catalog_process.wait().await.unwrap();
    let died = Instant::now();
    assert_eq!(
        next_status(&mut shop, grace + Duration::from_secs(5)).await,
        ServingStatus::NotServing
    );
    let took = died.elapsed();
    assert!(
        took >= grace - Duration::from_millis(100),
        "NOT_SERVING came before the grace time: {took:?}"
    );
    assert_eq!(
        next_status(&mut overall, limit).await,
        ServingStatus::NotServing
    );
    assert_eq!(check(admin, SHOP).await, ServingStatus::NotServing);
    assert_eq!(check(web.address, "").await, ServingStatus::NotServing);
    // Liveness does not follow the downstreams: the process still serves.
    assert_eq!(
        check(admin, tailor_runtime::LIVENESS).await,
        ServingStatus::Serving
    );

    // The catalog comes back on the same address: SERVING again.
    let (mut catalog_process, again) = catalog(&catalog_address.to_string(), &catalog_data).await;
    assert_eq!(again, catalog_address);
    assert_eq!(next_status(&mut shop, limit).await, ServingStatus::Serving);
    assert_eq!(
        next_status(&mut overall, limit).await,
        ServingStatus::Serving
    );
    assert_eq!(check(admin, SHOP).await, ServingStatus::Serving);

    // SIGTERM: NOT_SERVING first, then the watch ends and the process
    // exits, well before its 10 s drain timeout although the watchers
    // kept their streams open.
    web.terminate();
    let stopping = Instant::now();
    assert_eq!(
        next_status(&mut shop, limit).await,
        ServingStatus::NotServing
    );
    assert_eq!(
        next_status(&mut overall, limit).await,
        ServingStatus::NotServing
    );
    let ended = tokio::time::timeout(limit, shop.next()).await.unwrap();
    assert!(
        !matches!(ended, Some(Ok(_))),
        "no status after NOT_SERVING: {ended:?}"
    );
    let exit = web.exited(limit).await;
    assert!(exit.success(), "{exit:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "the watchers held the drain: {:?}",
        stopping.elapsed()
    );
    catalog_process.start_kill().unwrap();
}

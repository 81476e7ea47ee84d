use std::time::Duration;

use tailor_e2e::{UpTable, api_key, bin_dir, connect};
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::web::v1::ListProductsRequest;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn tailor_up_starts_seven_servers_prints_how_to_call_them_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut launcher = tailor_e2e::command("tailor")
        .args(["up", "--any-ports", "--products", "300"])
        .args(["--fulfilment-step-ms", "200", "--bin-dir"])
        .arg(bin_dir())
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(launcher.stdout.take().unwrap()).lines();
    let table = tokio::time::timeout(Duration::from_secs(90), UpTable::read(&mut lines))
        .await
        .expect("the launcher printed its table in time")
        .expect("the launcher printed its table");
    let printed = &table.printed;
    assert!(printed.contains("all 7 servers SERVING"), "{printed}");
    assert!(printed.contains("grpcurl -plaintext"), "{printed}");
    assert!(printed.contains("buf curl"), "{printed}");
    assert_eq!(table.servers.len(), 7, "{printed}");
    let at = |name: &str| table.at(name);

    // Stores, logs and the development key are their owner's alone.
    let mode = |path: &str| {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(data.join(path)).unwrap();
        metadata.permissions().mode() & 0o777
    };
    assert_eq!(mode(""), 0o700, "the data directory");
    assert_eq!(mode("logs"), 0o700);
    for file in [
        "partner-dev-key.txt",
        "logs/web-bff.log",
        "catalog.db",
        "catalog.db-wal",
        "web.db",
        "partner.db",
        "orders.db",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    let partner_key = &table.partner_key;

    let list = ShopServiceClient::new(connect(at("web-bff")).await)
        .list_products(ListProductsRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.products.len(), 3);
    assert!(partner_key.starts_with("tk_"), "{printed}");
    let availability = PartnerServiceClient::new(connect(at("partner-bff")).await)
        .batch_get_availability(api_key(
            partner_key,
            BatchGetAvailabilityRequest {
                product_ids: vec!["prod-000001".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(availability.availabilities[0].known);

    // Each server's metrics address is printed, and listed for Prometheus
    // in the targets file deploy/prometheus/prometheus.yml reads.
    let targets: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("prometheus/targets.json")).unwrap(),
    )
    .unwrap();
    let targets = targets.as_array().unwrap();
    assert_eq!(targets.len(), 7, "{targets:?}");
    assert_eq!(mode("prometheus/targets.json"), 0o600);
    for (name, health) in &table.health {
        assert!(
            printed.contains(&format!("http://{health}/metrics")),
            "{name}'s metrics address: {printed}"
        );
        let target = targets
            .iter()
            .find(|t| t["labels"]["server"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is not a target: {targets:?}"));
        assert_eq!(target["targets"], serde_json::json!([health.to_string()]));
        let client_type = name.strip_suffix("-bff").map(serde_json::Value::from);
        assert_eq!(
            target["labels"].get("client_type"),
            client_type.as_ref(),
            "{target}"
        );
    }
    let web_admin = table
        .health
        .iter()
        .find(|(name, _)| name == "web-bff")
        .unwrap()
        .1;
    let request = http::Request::get(format!("http://{web_admin}/metrics"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response =
        tailor_e2e::grpc_web::open(web_admin, tailor_e2e::grpc_web::Http::One, request).await;
    assert_eq!(response.status(), http::StatusCode::OK);
    let metrics = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(
            r#"rpc_server_calls_total{client_type="web",method="tailor.web.v1.ShopService/ListProducts",protocol="grpc",server="web-bff",status="OK"} 1"#
        ),
        "{metrics}"
    );

    // The example phone app walks its screens against the launched stack.
    let example = tailor_e2e::command("tailor-mobile-example")
        .arg("--mobile")
        .arg(format!("http://{}", at("mobile-bff")))
        .output()
        .await
        .unwrap();
    let walked = String::from_utf8_lossy(&example.stdout);
    assert!(
        example.status.success(),
        "{walked}{}",
        String::from_utf8_lossy(&example.stderr)
    );
    for screen in [
        "list (20 cards, BASIC view)",
        "unchanged: the app shows what it has",
        "placed once",
        "Placed -> Confirmed",
    ] {
        assert!(
            walked.contains(screen),
            "{screen:?} missing from:\n{walked}"
        );
    }

    let pid = nix::unistd::Pid::from_raw(launcher.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), launcher.wait())
        .await
        .expect("the launcher stopped")
        .unwrap();
    assert!(status.success(), "{status:?}");
    for (name, address) in table.servers {
        assert!(
            tokio::net::TcpStream::connect(address).await.is_err(),
            "{name} still listens after the launcher stopped"
        );
    }
}

#[tokio::test]
async fn servers_stop_when_the_launcher_is_killed_without_stopping_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut launcher = tailor_e2e::command("tailor")
        .args(["up", "--any-ports", "--products", "50", "--bin-dir"])
        .arg(bin_dir())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(launcher.stdout.take().unwrap()).lines();
    let table = tokio::time::timeout(Duration::from_secs(90), UpTable::read(&mut lines))
        .await
        .expect("the launcher printed its table in time")
        .expect("the launcher printed its table");
    assert_eq!(table.servers.len(), 7, "{}", table.printed);

    // SIGKILL: the launcher gets no chance to stop its servers.
    launcher.start_kill().unwrap();
    launcher.wait().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for (name, address) in &table.servers {
        loop {
            if tokio::net::TcpStream::connect(address).await.is_err() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} still serves 20 s after its launcher was killed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A loopback address nothing listened on a moment ago: a downstream that
/// is not there.
fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `tailor probe <address> [service]` (the container image's health
/// check) and what it printed on stdout and stderr.
async fn probe(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = tailor_e2e::command("tailor")
        .arg("probe")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn tailor_probe_succeeds_only_while_the_admin_port_reports_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let mut catalog = tailor_e2e::Process::start(
        "tailor-catalog",
        &[
            "--products",
            "50",
            "--data-dir",
            &data("catalog"),
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let catalog_admin = catalog.admin.expect("the catalog announces its admin port");
    let admin = catalog_admin.to_string();

    let (ok, stdout, stderr) = probe(&[&admin], &[]).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "SERVING");
    let (ok, _, stderr) = probe(&[&admin, "tailor.catalog.v1.CatalogService"], &[]).await;
    assert!(ok, "{stderr}");
    // In a container the address comes from TAILOR_ADMIN_LISTEN, on all
    // interfaces; the probe asks loopback.
    let everywhere = format!("0.0.0.0:{}", catalog_admin.port());
    let (ok, _, stderr) = probe(&[], &[("TAILOR_ADMIN_LISTEN", &everywhere)]).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = probe(&[&admin, "tailor.nope.v1.NopeService"], &[]).await;
    assert!(!ok);
    assert!(
        stderr.contains("does not know \"tailor.nope.v1.NopeService\""),
        "{stderr}"
    );

    // A BFF's health follows its required catalog: the probe fails,
    // saying NOT_SERVING, once the catalog is gone for the grace time.
    let closed = format!("https://{}", free_address());
    let downstreams = [
        catalog.url().replace("http://", "https://"),
        closed.clone(),
        closed.clone(),
        closed,
    ];
    let mut web = tailor_e2e::Process::start_bff(
        "tailor-web-bff",
        &data("web"),
        &downstreams,
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--readiness-grace-ms",
            "300",
            "--readiness-probe-ms",
            "100",
        ],
        &[],
        None,
    )
    .await;
    let web_admin = web
        .admin
        .expect("the web BFF announces its admin port")
        .to_string();
    let (ok, _, stderr) = probe(&[&web_admin, "tailor.web.v1.ShopService"], &[]).await;
    assert!(ok, "{stderr}");
    catalog.crash().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let stderr = loop {
        let (ok, _, stderr) = probe(&[&web_admin, "tailor.web.v1.ShopService"], &[]).await;
        if !ok {
            break stderr;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe still succeeds 15 s after the catalog died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(stderr.contains("NOT_SERVING"), "{stderr}");

    // Nothing listening: a failure naming the address.
    web.crash().await;
    let (ok, _, stderr) = probe(&[&web_admin], &[]).await;
    assert!(!ok);
    assert!(stderr.contains("cannot connect"), "{stderr}");

    // Something that accepts but never answers: a failure within the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_address = silent.local_addr().unwrap().to_string();
    let started = std::time::Instant::now();
    let (ok, _, stderr) = probe(&["--timeout-ms", "500", &silent_address], &[]).await;
    assert!(!ok);
    assert!(stderr.contains("no answer"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

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

//! Downstream call policies as a client of a BFF process meets them: a
//! circuit that opens on a hanging optional service so pages stop waiting
//! for it, retries that carry pages over a flaky catalogue, and a retry
//! budget that stops a BFF from multiplying the load on a service that
//! fails everything. The BFF is the real binary; its metrics are read from
//! its admin port as Prometheus would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tailor_e2e::{Process, Server, Stack, StackOptions};
use tailor_proto::web::v1::GetProductPageRequest;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_runtime::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The web BFF binary over `downstreams`, its admin port at the returned
/// address, with `policy` as its `--downstream-policy`.
async fn web_bff(stack: &Stack, downstreams: &[String; 4], policy: &str) -> (Process, SocketAddr) {
    let data = stack.dir.path().join("policies-web");
    std::fs::create_dir_all(&data).unwrap();
    let mut extra = vec!["--admin-listen", "127.0.0.1:0"];
    if !policy.is_empty() {
        extra.extend(["--downstream-policy", policy]);
    }
    let process = Process::start_bff(
        "tailor-web-bff",
        data.to_str().unwrap(),
        downstreams,
        &extra,
        &[],
        None,
    )
    .await;
    let admin = process.admin.expect("the web BFF announces its admin port");
    (process, admin)
}

/// The admin port's `/metrics`, as Prometheus text.
async fn metrics(admin: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bff\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// The sum of the series `name` whose labels include `label`.
fn sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn page() -> GetProductPageRequest {
    GetProductPageRequest {
        product_id: "prod-000042".into(),
    }
}

#[tokio::test]
async fn once_the_circuit_opens_pages_skip_a_hanging_reviews_service_without_calling_it() {
    let stack = Stack::start().await;
    // A reviews service that takes 5 s to answer anything.
    let reviews = tailor_reviews::build_server(&tailor_reviews::ReviewsConfig {
        database: stack.dir.path().join("slow-reviews.db").into(),
        products: tailor_e2e::PRODUCTS,
    })
    .await
    .unwrap();
    let reviews = Server::start_service(
        reviews,
        ServeOptions {
            injected_latency: Some(Duration::from_secs(5)),
            ..ServeOptions::default()
        },
    )
    .await;
    let downstreams = [
        stack.catalog.url(),
        stack.inventory.url(),
        reviews.url(),
        stack.orders.url(),
    ];
    let (web, admin) = web_bff(
        &stack,
        &downstreams,
        "reviews.timeout=100ms,reviews.breaker-consecutive=3,reviews.breaker-open=60s",
    )
    .await;
    let mut client = ShopServiceClient::new(tailor_e2e::connect(web.address).await);

    // The first pages wait for reviews until their attempts time out,
    // which opens its circuit.
    let opened = Instant::now();
    loop {
        let answer = client.get_product_page(page()).await.unwrap().into_inner();
        assert!(answer.product.is_some());
        assert!(answer.degraded_sections.contains(&"reviews".to_owned()));
        let text = metrics(admin).await;
        if sum(&text, "rpc_client_circuit_state", "target=\"reviews\"") == 2.0 {
            break;
        }
        assert!(
            opened.elapsed() < Duration::from_secs(20),
            "the reviews circuit never opened:\n{text}"
        );
    }

    // Open: every page is answered without reviews, and reviews is not
    // called at all.
    let reached = reviews.stats.snapshot().started;
    for _ in 0..5 {
        let began = Instant::now();
        let answer = client.get_product_page(page()).await.unwrap().into_inner();
        assert!(answer.product.is_some() && answer.availability.is_some());
        assert_eq!(answer.degraded_sections, vec!["reviews".to_owned()]);
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "the page waited for the hanging service: {:?}",
            began.elapsed()
        );
    }
    assert_eq!(
        reviews.stats.snapshot().started,
        reached,
        "no call reached reviews while its circuit was open"
    );
    let text = metrics(admin).await;
    assert!(
        sum(&text, "rpc_client_refused_total", "reason=\"circuit_open\"") >= 5.0,
        "{text}"
    );
    // Reviews is optional: the BFF stays ready.
    let health = HealthClient::new(tailor_e2e::connect(admin).await)
        .check(HealthCheckRequest {
            service: "tailor.web.v1.ShopService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn a_flaky_catalog_is_retried_so_every_page_succeeds_within_the_retry_budget() {
    // Every second call to the catalog answers UNAVAILABLE.
    let stack = Stack::start_with(StackOptions {
        unavailable_every: Some(2),
        ..Default::default()
    })
    .await;
    let (web, admin) = web_bff(&stack, &stack.downstream_urls(), "").await;
    let mut client = ShopServiceClient::new(tailor_e2e::connect(web.address).await);
    let began = Instant::now();
    for _ in 0..30 {
        let answer = client
            .get_product_page(page())
            .await
            .expect("a flaky catalog is retried")
            .into_inner();
        assert!(answer.product.is_some());
    }
    let seconds = began.elapsed().as_secs_f64();
    let text = metrics(admin).await;
    let calls = sum(&text, "rpc_client_calls_total", "target=\"catalog\"");
    let retries = sum(&text, "rpc_client_retries_total", "target=\"catalog\"");
    let refused = sum(
        &text,
        "rpc_client_retries_refused_total",
        "target=\"catalog\"",
    );
    assert!(calls >= 30.0, "{text}");
    assert!(
        retries >= 1.0,
        "the catalog did fail and was retried: {text}"
    );
    // One page at a time holds at most two retries in flight, within the
    // budget's floor of three: no failure goes without its retry.
    assert_eq!(refused, 0.0, "{text}");
    eprintln!("flaky catalog: {calls} calls, {retries} retries in {seconds:.1} s");
}

#[tokio::test]
async fn retries_stop_at_the_budget_when_the_catalog_fails_every_call() {
    // A catalog that takes 100 ms to fail every call, so calls overlap.
    let stack = Stack::start_with(StackOptions {
        unavailable_every: Some(1),
        catalog_latency: Some(Duration::from_millis(100)),
        ..Default::default()
    })
    .await;
    // A floor of one retry at once and a circuit that does not open, so
    // only the budget's share limits the retries.
    let (web, admin) = web_bff(
        &stack,
        &stack.downstream_urls(),
        "catalog.retry-min-concurrency=1,catalog.breaker-consecutive=100000,catalog.breaker-min-calls=100000",
    )
    .await;
    let client = ShopServiceClient::new(tailor_e2e::connect(web.address).await);
    // Forty pages at once, each of another product (identical reads in
    // flight would share one call).
    let pages = (0..40).map(|n| {
        let mut client = client.clone();
        async move {
            client
                .get_product_page(GetProductPageRequest {
                    product_id: format!("prod-{:06}", n + 1),
                })
                .await
        }
    });
    for answer in futures_util::future::join_all(pages).await {
        let status = answer.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "catalog is unavailable");
    }
    let text = metrics(admin).await;
    let calls = sum(&text, "rpc_client_calls_total", "target=\"catalog\"");
    let retries = sum(&text, "rpc_client_retries_total", "target=\"catalog\"");
    let refused = sum(
        &text,
        "rpc_client_retries_refused_total",
        "target=\"catalog\"",
    );
    assert!(calls >= 40.0, "{text}");
    // Without a budget every read would be tried until the deadline, up
    // to twenty times: 19 retries a call. With it, retries out are a tenth
    // of the attempts out (4 to 8 while the first attempts are out), and a
    // call pausing or waiting to retry is not one, so once the first
    // attempts have failed only the floor of one is left: 7 to 9 retries
    // for 80 calls here. At most one a call leaves room for a busy machine
    // starting the pages apart.
    assert!(
        (1.0..=calls).contains(&retries),
        "{retries} retries for {calls} calls"
    );
    // A page fails with its first read to fail for good (the other is
    // dropped): that read was refused a retry by the budget, or made
    // retries until its attempts or deadline ran out.
    assert!(
        refused + retries >= 40.0,
        "{refused} retries refused, {retries} made, for 40 pages"
    );
    eprintln!("catalog failing every call: {calls} calls, {retries} retries, {refused} refused");
}

#[tokio::test]
async fn an_unknown_service_key_or_value_stops_the_bff_at_start_up_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let secret = std::str::from_utf8(tailor_e2e::SECRET).unwrap();
    for (flag, value, named) in [
        ("--downstream-policy", "payments.timeout=1s", "payments"),
        ("--downstream-policy", "catalog.speed=fast", "speed"),
        (
            "--downstream-policy",
            "catalog.timeout=soon",
            "catalog.timeout=soon",
        ),
        ("--required-downstreams", "catalog,payments", "payments"),
    ] {
        let run = tailor_e2e::command("tailor-web-bff")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg("--trust-dir")
            .arg(&tailor_e2e::trust().dir)
            .args(["--jwt-hs256-secret", secret, flag, value])
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("the BFF started with {flag} {value}"))
            .unwrap();
        assert!(!output.status.success(), "{flag} {value}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains(named), "{flag} {value}: {said}");
    }
}

#[tokio::test]
async fn identical_pages_opened_at_once_share_their_catalog_reads() {
    // The catalog takes 300 ms, so twenty pages asked at once overlap.
    let stack = Stack::start_with(StackOptions {
        catalog_latency: Some(Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let client = ShopServiceClient::new(stack.web.channel().await);
    let before = stack.catalog.stats.snapshot().started;
    let pages = futures_util::future::join_all((0..20).map(|_| {
        let mut client = client.clone();
        async move { client.get_product_page(page()).await }
    }))
    .await;
    for answer in pages {
        let answer = answer.expect("every page is answered").into_inner();
        assert_eq!(answer.product.unwrap().id, "prod-000042");
    }
    // Each page reads the product and its related products (an optional
    // part, left out after 250 ms): 40 reads, of which the concurrent
    // identical ones shared a call.
    let reached = stack.catalog.stats.settled().await.started - before;
    assert!(
        reached < 20,
        "{reached} catalog calls for 20 identical pages"
    );
    eprintln!("20 identical pages at once: {reached} catalog calls");
}

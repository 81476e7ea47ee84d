//! Stopping a server as people stop it, through the real binary: SIGTERM
//! from a supervisor, SIGINT from Ctrl-C. In-flight calls and streams
//! finish within the drain timeout (`--drain-timeout-ms`, or its
//! environment variable), new connections are refused, and the process
//! exits 0. Each test waits for an observed fact (the downstream call has
//! started, the first message has arrived) before it signals, so the call
//! is in flight by construction, not by a lucky sleep.

use std::time::{Duration, Instant};

use tailor_e2e::{Process, Stack, StackOptions, bearer, web_token};
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{
    GetProductPageRequest, OrderLineInput, OrderStatus, PlaceOrderRequest, WatchOrderRequest,
};

/// The web BFF binary over `stack`'s downstream services.
async fn web_bff(stack: &Stack, extra: &[&str], env: &[(&str, &str)]) -> Process {
    let data = stack.dir.path().join("web-process");
    std::fs::create_dir_all(&data).unwrap();
    let data = data.to_str().unwrap();
    Process::start_bff(
        "tailor-web-bff",
        data,
        &stack.downstream_urls(),
        extra,
        env,
        None,
    )
    .await
}

/// Polls `done` every few milliseconds until it holds, for up to 10 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_call_finish_and_refuses_new_connections() {
    let stack = Stack::start_with(StackOptions {
        catalog_latency: Some(Duration::from_millis(1500)),
        ..Default::default()
    })
    .await;
    let mut web = web_bff(&stack, &["--drain-timeout-ms", "10000"], &[]).await;
    let address = web.address;
    let mut client = ShopServiceClient::new(tailor_e2e::connect(address).await);
    let catalog_before = stack.catalog.stats.snapshot().started;
    let call = tokio::spawn(async move {
        client
            .get_product_page(GetProductPageRequest {
                product_id: "prod-000042".into(),
            })
            .await
    });
    until("the page's catalog call started", || {
        stack.catalog.stats.snapshot().started > catalog_before
    })
    .await;

    web.terminate();
    // The listener closes at once; the call in flight is still being served.
    until("new connections are refused", || {
        std::net::TcpStream::connect(address).is_err()
    })
    .await;
    assert!(
        !call.is_finished(),
        "the call waited for its catalog answer"
    );
    let page = call.await.unwrap().expect("the in-flight call was drained");
    assert_eq!(page.into_inner().product.unwrap().id, "prod-000042");
    let exit = web.exited(Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}");
}

/// Places an order through `web` and opens its status stream; returns the
/// stream after its first message (the order as placed).
async fn watch_new_order(
    web: &Process,
    key: &str,
) -> tonic::Streaming<tailor_proto::web::v1::WatchOrderResponse> {
    let token = web_token("drain-user");
    let mut client = ShopServiceClient::new(tailor_e2e::connect(web.address).await);
    let order = client
        .place_order(bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: key.into(),
                lines: vec![OrderLineInput {
                    product_id: "prod-000007".into(),
                    quantity: 1,
                }],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let mut stream = client
        .watch_order(bearer(&token, WatchOrderRequest { order_id: order.id }))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.order.unwrap().status(), OrderStatus::Placed);
    stream
}

#[tokio::test]
async fn sigint_drains_an_in_flight_stream_to_its_end() {
    let stack = Stack::start_with(StackOptions {
        fulfilment_step: Duration::from_millis(150),
        ..Default::default()
    })
    .await;
    let mut web = web_bff(&stack, &["--drain-timeout-ms", "10000"], &[]).await;
    let mut stream = watch_new_order(&web, "drain-sigint").await;

    web.interrupt();
    let mut seen = Vec::new();
    while let Some(update) = stream.message().await.expect("the stream ends cleanly") {
        seen.push(update.order.unwrap().status());
    }
    assert_eq!(
        seen.last(),
        Some(&OrderStatus::Delivered),
        "every status after Ctrl-C arrived: {seen:?}"
    );
    let exit = web.exited(Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_stream_that_outlives_the_drain_timeout_is_ended_and_the_process_exits() {
    // An order that never moves: its stream would stay open for ever.
    let stack = Stack::start_with(StackOptions {
        fulfilment_step: Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    // The drain timeout from the environment, as a deployment sets it.
    let drain = Duration::from_millis(800);
    let mut web = web_bff(&stack, &[], &[("TAILOR_DRAIN_TIMEOUT_MS", "800")]).await;
    let mut stream = watch_new_order(&web, "drain-timeout").await;

    let signalled = Instant::now();
    web.terminate();
    let ended = tokio::time::timeout(Duration::from_secs(15), stream.message())
        .await
        .expect("the stream ended instead of hanging");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "no status change was due: {ended:?}"
    );
    let exit = web.exited(Duration::from_secs(15)).await;
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took >= drain,
        "the open stream was given the drain timeout, not cut at once: {took:?}"
    );
}

#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_access_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let log = dir.path().join("catalog.log");
    let catalog = Process::start_with(
        "tailor-catalog",
        &["--data-dir", data, "--products", "20"],
        &[("TAILOR_LOG_FORMAT", "json")],
        Some(&log),
    )
    .await;
    let mut client = tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient::new(
        tailor_e2e::connect_mesh(catalog.address, "catalog", "web-bff").await,
    );
    for (id, product) in [
        ("json-ok-1", "prod-000001"),
        ("json-missing-1", "prod-999999"),
    ] {
        let mut request = tonic::Request::new(tailor_proto::catalog::v1::GetProductRequest {
            id: product.into(),
        });
        request
            .metadata_mut()
            .insert("x-request-id", id.parse().unwrap());
        let _ = client.get_product(request).await;
    }
    let mut found = Vec::new();
    until("both access lines are written", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        found = text
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
            })
            .filter(|line| line["target"] == "access")
            .collect();
        found.len() >= 2
    })
    .await;
    assert_eq!(found[0]["request_id"], "json-ok-1", "{:?}", found[0]);
    assert_eq!(found[0]["status"], "OK");
    assert_eq!(
        found[0]["method"],
        "/tailor.catalog.v1.CatalogService/GetProduct"
    );
    assert_eq!(found[1]["request_id"], "json-missing-1");
    assert_eq!(found[1]["status"], "NotFound");
}

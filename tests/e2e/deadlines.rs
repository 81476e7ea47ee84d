use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use tailor_e2e::{Stack, StackOptions, bearer, web_token};
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{
    GetProductPageRequest, OrderLineInput, PlaceOrderRequest, WatchOrderRequest,
};
use tonic::Code;

#[tokio::test]
async fn a_caller_deadline_caps_the_downstream_call_and_cancels_it() {
    let stack = Stack::start_with(StackOptions {
        catalog_latency: Some(Duration::from_millis(800)),
        ..Default::default()
    })
    .await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    // Warm the BFF's connection to the catalog so the measurement is the deadline's.
    let _ = web
        .get_product_page(GetProductPageRequest {
            product_id: "prod-000001".into(),
        })
        .await;
    let before = stack.catalog.stats.snapshot();

    // A client's own timer fires at the same instant and would report
    // CANCELLED or DEADLINE_EXCEEDED itself; a raw HTTP/2 call with only the
    // `grpc-timeout` header shows what the server answers.
    let started = Instant::now();
    let (code, message) = raw_call(
        stack.web.address,
        "/tailor.web.v1.ShopService/GetProductPage",
        "50m",
        &GetProductPageRequest {
            product_id: "prod-000002".into(),
        },
    )
    .await;
    let took = started.elapsed();
    assert_eq!(code, Code::DeadlineExceeded as i32, "{message}");
    // Time is the claim here, so bound it, generously: well before the
    // catalog's 800 ms answer, never before the deadline.
    assert!(
        took < Duration::from_millis(700),
        "answered after {took:?}, not about 50 ms"
    );
    assert!(
        took >= Duration::from_millis(45),
        "answered before the deadline: {took:?}"
    );

    // The catalog call made for it was abandoned, not left running.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = stack.catalog.stats.snapshot();
        let ended_early = (now.cancelled - before.cancelled) + (now.failed - before.failed);
        if ended_early >= 1 && now.succeeded == before.succeeded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the catalog call was not cancelled: {before:?} -> {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One unary call over bare HTTP/2: returns grpc-status and grpc-message.
async fn raw_call<M: prost::Message>(
    address: std::net::SocketAddr,
    path: &str,
    timeout: &str,
    message: &M,
) -> (i32, String) {
    let (code, message, _) = raw_stream(address, path, timeout, &[], message).await;
    (code, message)
}

/// One call over bare HTTP/2 with only `grpc-timeout` (and `headers`) as
/// the deadline, so the answer is the server's and not a client timer's:
/// returns grpc-status, grpc-message and how many messages came first.
async fn raw_stream<M: prost::Message>(
    address: std::net::SocketAddr,
    path: &str,
    timeout: &str,
    headers: &[(&str, &str)],
    message: &M,
) -> (i32, String, usize) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(()).unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    let payload = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    send.send_data(bytes::Bytes::from(frame), true).unwrap();
    let response = response.await.unwrap();
    let (head, mut body) = response.into_parts();
    let status_in = |headers: &http::HeaderMap| {
        headers.get("grpc-status").map(|code| {
            let message = headers
                .get("grpc-message")
                .map(|m| m.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (code.to_str().unwrap().parse().unwrap(), message)
        })
    };
    if let Some((code, message)) = status_in(&head.headers) {
        return (code, message, 0);
    }
    let mut messages = 0;
    while let Some(chunk) = body.data().await {
        // Status updates are small: one message per data frame.
        if !chunk.unwrap().is_empty() {
            messages += 1;
        }
    }
    let trailers = body.trailers().await.unwrap().unwrap();
    let (code, message) = status_in(&trailers).unwrap();
    (code, message, messages)
}

#[tokio::test]
async fn a_deadline_that_leaves_enough_time_changes_nothing() {
    let stack = Stack::start_with(StackOptions {
        catalog_latency: Some(Duration::from_millis(30)),
        ..Default::default()
    })
    .await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let mut request = tonic::Request::new(GetProductPageRequest {
        product_id: "prod-000002".into(),
    });
    request.set_timeout(Duration::from_secs(5));
    let page = web.get_product_page(request).await.unwrap().into_inner();
    assert_eq!(page.product.unwrap().id, "prod-000002");
}

/// A transparent proxy in front of the catalog that records the
/// `grpc-timeout` of every request it forwards: what the BFF really sent.
/// It terminates TLS with the catalog's certificate and calls on as the
/// web BFF, as a mesh sidecar would.
async fn recording_proxy(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let channel = tailor_e2e::connect_mesh(target, "catalog", "web-bff").await;
    let acceptor =
        tailor_trust::tls::acceptor(tailor_e2e::credentials("catalog").server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let channel = channel.clone();
            let recorded = recorded.clone();
            let acceptor = acceptor.clone();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let timeout = request
                        .headers()
                        .get("grpc-timeout")
                        .map(|v| v.to_str().unwrap().to_owned());
                    recorded.lock().unwrap().push(timeout);
                    let mut channel = channel.clone();
                    async move {
                        use tower::{Service, ServiceExt};
                        channel
                            .ready()
                            .await?
                            .call(request.map(tonic::body::Body::new))
                            .await
                    }
                });
            tokio::spawn(async move {
                let (tls, _) =
                    tailor_trust::tls::accept(&acceptor, tcp, std::time::Duration::from_secs(10))
                        .await
                        .unwrap();
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await
            });
        }
    });
    (address, seen)
}

/// Milliseconds of a `grpc-timeout` value (`100m`, `2S`, `1999000u`).
fn millis(timeout: &str) -> f64 {
    let (value, unit) = timeout.split_at(timeout.len() - 1);
    let value: f64 = value.parse().unwrap();
    value
        * match unit {
            "H" => 3_600_000.0,
            "M" => 60_000.0,
            "S" => 1_000.0,
            "m" => 1.0,
            "u" => 0.001,
            "n" => 0.000_001,
            other => panic!("unit {other}"),
        }
}

#[tokio::test]
async fn the_remaining_deadline_reaches_the_downstream_service() {
    let stack = Stack::start().await;
    let (proxy, seen) = recording_proxy(stack.catalog.address).await;
    let args = tailor_e2e::downstream_args(
        &format!("http://{proxy}"),
        &stack.inventory.url(),
        &stack.reviews.url(),
        &stack.orders.url(),
    );
    let (web, _mobile, _partner) =
        tailor_e2e::start_bffs(&args, stack.keys.clone(), stack.accounts.clone()).await;
    let mut client = ShopServiceClient::new(web.channel().await);

    let page = || GetProductPageRequest {
        product_id: "prod-000003".into(),
    };
    client.get_product_page(page()).await.unwrap();
    let without: Vec<_> = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        !without.is_empty(),
        "the catalog was called through the proxy"
    );
    // Without a deadline, each attempt carries only its own bound (the
    // default policy's 5 s), so the service stops when the BFF stops waiting.
    assert!(
        without
            .iter()
            .all(|t| t.as_deref().map(millis) == Some(5000.0)),
        "each attempt's own bound, nothing else: {without:?}"
    );

    let mut request = tonic::Request::new(page());
    request.set_timeout(Duration::from_secs(3));
    client.get_product_page(request).await.unwrap();
    let with: Vec<_> = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(with.len(), without.len(), "{with:?}");
    for timeout in with {
        let ms = millis(&timeout.expect("every catalog call carries the deadline"));
        assert!(
            ms <= 3000.0 && ms > 1000.0,
            "what is left of the caller's 3 s: {ms} ms"
        );
    }
}

#[tokio::test]
async fn a_deadline_that_passes_mid_stream_ends_it_with_deadline_exceeded() {
    let stack = Stack::start_with(StackOptions {
        fulfilment_step: Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    let token = web_token("deadline-user");
    let mut client = ShopServiceClient::new(stack.web.channel().await);
    let order = client
        .place_order(bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: "deadline-stream".into(),
                lines: vec![OrderLineInput {
                    product_id: "prod-000005".into(),
                    quantity: 1,
                }],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let bearer_header = format!("Bearer {token}");
    let (code, message, messages) = raw_stream(
        stack.web.address,
        "/tailor.web.v1.ShopService/WatchOrder",
        "300m",
        &[("authorization", &bearer_header)],
        &WatchOrderRequest { order_id: order.id },
    )
    .await;
    assert_eq!(messages, 1, "the current state came before the deadline");
    assert_eq!(code, Code::DeadlineExceeded as i32, "{message}");
}

#[tokio::test]
async fn retries_stop_when_the_callers_deadline_leaves_no_room() {
    // Every catalog call fails: the BFF retries reads, as far as the
    // caller's deadline allows.
    let stack = Stack::start_with(StackOptions {
        unavailable_every: Some(1),
        ..Default::default()
    })
    .await;
    let client = ShopServiceClient::new(stack.web.channel().await);
    let attempts = |deadline: Option<Duration>| {
        let mut client = client.clone();
        let stats = stack.catalog.stats.clone();
        async move {
            let before = stats.snapshot().started;
            let mut request = tonic::Request::new(GetProductPageRequest {
                product_id: "prod-000004".into(),
            });
            if let Some(deadline) = deadline {
                request.set_timeout(deadline);
            }
            let status = client.get_product_page(request).await.unwrap_err();
            (status, stats.settled().await.started - before)
        }
    };
    // The page asks the catalog for the product and for related products:
    // two reads. With 30 ms, a retry's pause (up to 20 ms, and twice that
    // must be left) never fits: each read is tried once. On a loaded
    // machine the 30 ms may run out before the BFF's answer arrives (the
    // client's own timer then ends the call), but never with a retry made.
    let (status, tried_first) = attempts(Some(Duration::from_millis(30))).await;
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
        ),
        "{status:?}"
    );
    assert!(
        tried_first <= 2,
        "{tried_first} catalog calls: a read was retried"
    );
    // With 5 s, both reads are tried again and again, until ten failed
    // attempts in a row, those above included, open the circuit (an
    // attempt already sent may still fail after it): the deadline leaves
    // room for twenty each, but a service failing every call is the
    // breaker's to stop.
    let (status, tried) = attempts(Some(Duration::from_secs(5))).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        (10..=11).contains(&(tried_first + tried)),
        "{tried_first} and {tried} catalog calls before the circuit opened"
    );
}

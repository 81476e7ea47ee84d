use std::time::{Duration, Instant};

use tailor_e2e::{Stack, StackOptions};
use tailor_proto::web::v1::GetProductPageRequest;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
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
    assert!(
        took < Duration::from_millis(400),
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
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(())
        .unwrap();
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
    if let Some(status) = status_in(&head.headers) {
        return status;
    }
    while body.data().await.is_some() {}
    let trailers = body.trailers().await.unwrap().unwrap();
    status_in(&trailers).unwrap()
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

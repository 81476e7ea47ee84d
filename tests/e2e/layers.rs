//! The one onion every server is built with (`tailor_runtime::stack`), as a
//! client meets it: refusals by the outer layers still carry a request id
//! and count as calls, unknown methods are UNIMPLEMENTED before anyone asks
//! for credentials, content types a server does not speak get HTTP 415,
//! and both chaos knobs can be on at once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tailor_e2e::grpc_web::{self, Http, Mode};
use tailor_e2e::{Server, Stack, WEB_ORIGIN};
use tailor_proto::catalog::v1::GetProductRequest;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::web::v1::ListProductsRequest;
use tailor_runtime::ServeOptions;
use tonic::Code;

const LIST: &str = "/tailor.web.v1.ShopService/ListProducts";

fn failed(server: &Server) -> u64 {
    server.stats.snapshot().failed
}

#[tokio::test]
async fn browser_refusals_carry_the_request_id_and_are_logged_as_calls() {
    let stack = Stack::start().await;
    let web = stack.web.address;
    let list = grpc_web::frame(&ListProductsRequest::default());

    // A call from an origin the CORS list does not allow.
    let before = failed(&stack.web);
    let mut foreign = grpc_web::request(web, LIST, Mode::Binary, list.clone().into());
    foreign
        .headers_mut()
        .insert("origin", "https://evil.test".parse().unwrap());
    foreign
        .headers_mut()
        .insert("x-request-id", "cors-refusal-1".parse().unwrap());
    let reply = grpc_web::read(Mode::Binary, grpc_web::open(web, Http::One, foreign).await).await;
    assert_eq!(reply.code(), Some(Code::PermissionDenied), "{reply:?}");
    assert_eq!(reply.headers["x-request-id"], "cors-refusal-1");
    assert_eq!(
        failed(&stack.web),
        before + 1,
        "the refusal is one logged call"
    );

    // A malformed grpc-web body: the frame announces more than it holds.
    let before = failed(&stack.web);
    let truncated = Bytes::from(vec![0, 0, 0, 0, 9, 1, 2]);
    let mut malformed = grpc_web::request(web, LIST, Mode::Binary, truncated);
    malformed
        .headers_mut()
        .insert("origin", WEB_ORIGIN.parse().unwrap());
    let reply = grpc_web::read(
        Mode::Binary,
        grpc_web::open(web, Http::Two, malformed).await,
    )
    .await;
    assert_eq!(reply.code(), Some(Code::InvalidArgument), "{reply:?}");
    let minted = reply.headers["x-request-id"].to_str().unwrap();
    assert_eq!(minted.len(), 32, "a request id is minted: {minted}");
    assert_eq!(failed(&stack.web), before + 1);
}

/// Calls `path` with an empty message over native gRPC, no credentials.
async fn call_raw(server: &Server, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(
        tonic::Request::new(()),
        http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented_on_every_server_without_credentials() {
    let stack = Stack::start().await;
    for (name, server) in stack.servers() {
        for path in [
            "/tailor.web.v1.ShopService/GetProductPag",
            "/tailor.nothing.v1.NoService/Get",
        ] {
            let status = call_raw(server, path).await;
            assert_eq!(
                status.code(),
                Code::Unimplemented,
                "{name} {path}: {status:?}"
            );
            assert!(status.metadata().contains_key("x-request-id"), "{name}");
        }
    }
    // A known method still asks for credentials where it needs them.
    let status = call_raw(&stack.web, "/tailor.web.v1.ShopService/PlaceOrder").await;
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_content_type_a_bff_does_not_speak_is_http_415_and_a_downstream_port_wants_tls() {
    let stack = Stack::start().await;
    for (name, server) in stack.servers() {
        if server.service.is_some() {
            // A downstream port speaks mutual TLS only: plaintext of any
            // content type is told so before anything else.
            let request = http::Request::post(format!("http://{}{LIST}", server.address))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            let response = grpc_web::open(server.address, Http::Two, request).await;
            assert_eq!(response.headers()["grpc-status"], "16", "{name}");
            continue;
        }
        for (http, content_type) in [
            (Http::One, "application/json"),
            (Http::Two, "application/x-www-form-urlencoded"),
            (Http::Two, "text/plain"),
        ] {
            let request = http::Request::post(format!("http://{}{LIST}", server.address))
                .header("content-type", content_type)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            let response = grpc_web::open(server.address, http, request).await;
            assert_eq!(response.status(), 415, "{name} {content_type}");
            assert_eq!(response.headers()["grpc-status"], "3", "{name}");
            assert!(response.headers().contains_key("x-request-id"), "{name}");
        }
        // grpc-web is the web BFF's alone.
        let request = grpc_web::request(
            server.address,
            LIST,
            Mode::Binary,
            grpc_web::frame(&ListProductsRequest::default()).into(),
        );
        let response = grpc_web::open(server.address, Http::One, request).await;
        let expected = if name == "web-bff" { 200 } else { 415 };
        assert_eq!(response.status(), expected, "{name} grpc-web");
    }
}

#[tokio::test]
async fn latency_and_failures_can_be_injected_together() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = tailor_catalog::build_server(&tailor_catalog::CatalogConfig {
        database: dir.path().join("catalog.db").into(),
        products: 20,
    })
    .await
    .unwrap();
    let delay = Duration::from_millis(400);
    let server = Server::start_service(
        catalog,
        ServeOptions {
            drain_timeout: Duration::from_secs(1),
            injected_latency: Some(delay),
            inject_unavailable_every: Some(2),
            ..ServeOptions::default()
        },
    )
    .await;
    let mut client = CatalogServiceClient::new(server.channel().await);
    let mut codes = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let outcome = client
            .get_product(GetProductRequest {
                id: "prod-000001".into(),
            })
            .await;
        codes.push(outcome.map_or_else(|s| s.code(), |_| Code::Ok));
        assert!(started.elapsed() >= delay, "every call is delayed");
    }
    assert_eq!(
        codes,
        [Code::Ok, Code::Unavailable, Code::Ok, Code::Unavailable]
    );
    // Health and reflection are neither delayed nor failed: probes and
    // tools see the truth whatever the chaos.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            server.channel().await,
        );
    for _ in 0..3 {
        let started = Instant::now();
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap();
        let list = tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                ),
            ),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter([list]))
            .await
            .unwrap()
            .into_inner();
        assert!(answers.message().await.unwrap().is_some());
        assert!(started.elapsed() < delay, "took {:?}", started.elapsed());
    }
}

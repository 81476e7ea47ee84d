//! What one client can hold of a server before any call is decoded:
//! connections, and connections it leaves idle.

use std::time::Duration;

use tailor_e2e::Server;
use tailor_proto::catalog::v1::GetProductRequest;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_runtime::{ServeOptions, TransportLimits};
use tokio::io::AsyncReadExt;

async fn catalog_with(limits: TransportLimits) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = tailor_catalog::build_server(&tailor_catalog::CatalogConfig {
        database: dir.path().join("catalog.db").into(),
        products: 20,
    })
    .await
    .unwrap();
    let options = ServeOptions {
        transport: limits,
        ..ServeOptions::default()
    };
    (Server::start_service(catalog, options).await, dir)
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (catalog, _dir) = catalog_with(TransportLimits {
        max_connections: 2,
        ..TransportLimits::default()
    })
    .await;
    // Two connections that say nothing hold both places.
    let first = tokio::net::TcpStream::connect(catalog.address)
        .await
        .unwrap();
    let _second = tokio::net::TcpStream::connect(catalog.address)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let call = tokio::spawn({
        let address = catalog.address;
        async move {
            let channel = tailor_e2e::connect_mesh(address, "catalog", "web-bff").await;
            CatalogServiceClient::new(channel)
                .get_product(GetProductRequest {
                    id: "prod-000001".into(),
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "a third connection was served at once");
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the waiting connection is served once a place is free")
        .unwrap()
        .unwrap();
    assert_eq!(answer.into_inner().product.unwrap().id, "prod-000001");
}

#[tokio::test]
async fn a_connection_left_idle_is_closed() {
    let (catalog, _dir) = catalog_with(TransportLimits {
        idle_timeout: Duration::from_millis(300),
        ..TransportLimits::default()
    })
    .await;
    let limits = ServeOptions {
        transport: TransportLimits {
            idle_timeout: Duration::from_millis(300),
            ..TransportLimits::default()
        },
        ..ServeOptions::default()
    };
    // A plaintext port too: a server with nothing but health.
    let plain = Server::start(tailor_runtime::GrpcServer::new("probe"), limits).await;
    for address in [catalog.address, plain.address] {
        let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buffer))
            .await
            .expect("the server closed the idle connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    // A client in use is not cut: calls a little apart on one channel.
    let channel = catalog.channel().await;
    let mut client = CatalogServiceClient::new(channel);
    for _ in 0..4 {
        client
            .get_product(GetProductRequest {
                id: "prod-000001".into(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

use std::time::Duration;

use futures_util::StreamExt;
use tailor_e2e::Stack;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SERVICES: [(&str, &str); 7] = [
    ("catalog", "tailor.catalog.v1.CatalogService"),
    ("inventory", "tailor.inventory.v1.InventoryService"),
    ("reviews", "tailor.reviews.v1.ReviewsService"),
    ("orders", "tailor.orders.v1.OrdersService"),
    ("web-bff", "tailor.web.v1.ShopService"),
    ("mobile-bff", "tailor.mobile.v1.ShopService"),
    ("partner-bff", "tailor.partner.v1.PartnerService"),
];

#[tokio::test]
async fn every_server_reports_serving_overall_and_per_service() {
    let stack = Stack::start().await;
    for (name, server) in stack.servers() {
        let service = SERVICES.iter().find(|(n, _)| *n == name).unwrap().1;
        let mut health = HealthClient::new(server.channel().await);
        for asked in ["", service] {
            let status = health
                .check(HealthCheckRequest {
                    service: asked.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status();
            assert_eq!(status, ServingStatus::Serving, "{name} {asked:?}");
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "tailor.nope.v1.NopeService".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound, "{name}");
    }
}

#[tokio::test]
async fn watch_reports_not_serving_when_a_server_begins_to_drain() {
    let stack = Stack::start().await;
    for (name, server) in stack.servers() {
        let service = SERVICES.iter().find(|(n, _)| *n == name).unwrap().1;
        let mut health = HealthClient::new(server.channel().await);
        let mut watch = health
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.next().await.unwrap().unwrap().status();
        assert_eq!(first, ServingStatus::Serving, "{name}");
        server.begin_shutdown();
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: no health change while draining"));
        assert_eq!(
            next.unwrap().unwrap().status(),
            ServingStatus::NotServing,
            "{name}"
        );
    }
}

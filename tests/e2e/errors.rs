//! What a client reads when something breaks inside: INTERNAL with the
//! request id to quote and nothing else from a service, UNAVAILABLE naming
//! the service from a BFF; and `x-request-id` on every BFF's answers.

use tailor_e2e::{Stack, api_key, mobile_token};
use tailor_proto::catalog::v1::GetProductRequest;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient as WebClient;
use tonic::Code;

fn with_id<T>(id: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

fn leaks(message: &str) -> bool {
    let lower = message.to_lowercase();
    ["sqlite", "table", "products", ".db", "/tmp", "127.0.0.1"]
        .iter()
        .any(|word| lower.contains(word))
}

#[tokio::test]
async fn a_broken_store_answers_internal_with_the_request_id_and_no_internals() {
    let stack = Stack::start().await;
    // Break the catalog's store under the running service.
    let db = rusqlite::Connection::open(stack.dir.path().join("catalog.db")).unwrap();
    db.execute_batch("ALTER TABLE products RENAME TO products_gone")
        .unwrap();

    let mut catalog = CatalogServiceClient::new(stack.catalog.channel().await);
    let status = catalog
        .get_product(with_id(
            "broken-store-1",
            GetProductRequest {
                id: "prod-000001".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(
        status.message(),
        "internal error (request id broken-store-1)"
    );
    assert_eq!(
        status.metadata().get("x-request-id").unwrap(),
        "broken-store-1"
    );

    // Through a BFF, the page names the service that failed, nothing more.
    let mut web = WebClient::new(stack.web.channel().await);
    let status = web
        .get_product_page(with_id(
            "broken-store-2",
            tailor_proto::web::v1::GetProductPageRequest {
                product_id: "prod-000001".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "catalog is unavailable");
    assert!(!leaks(status.message()));
    assert_eq!(
        status.metadata().get("x-request-id").unwrap(),
        "broken-store-2"
    );
}

#[tokio::test]
async fn every_bff_answers_with_the_request_id_it_was_given_or_a_new_one() {
    let stack = Stack::start().await;
    let mut web = WebClient::new(stack.web.channel().await);
    let mut mobile = MobileClient::new(stack.mobile.channel().await);
    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);

    let answer = web
        .list_products(with_id("rid-web", Default::default()))
        .await
        .unwrap();
    assert_eq!(answer.metadata().get("x-request-id").unwrap(), "rid-web");

    let answer = mobile
        .list_products(with_id("rid-mobile", Default::default()))
        .await
        .unwrap();
    assert_eq!(answer.metadata().get("x-request-id").unwrap(), "rid-mobile");
    let mut request = tailor_e2e::bearer(&mobile_token("rid-user"), Default::default());
    request
        .metadata_mut()
        .insert("x-request-id", "rid-mobile-error".parse().unwrap());
    let status = mobile.place_order(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.metadata().get("x-request-id").unwrap(),
        "rid-mobile-error"
    );

    let mut request = api_key(
        &stack.partner_key,
        BatchGetAvailabilityRequest {
            product_ids: vec!["prod-000001".into()],
        },
    );
    request
        .metadata_mut()
        .insert("x-request-id", "rid-partner".parse().unwrap());
    let answer = partner.batch_get_availability(request).await.unwrap();
    assert_eq!(
        answer.metadata().get("x-request-id").unwrap(),
        "rid-partner"
    );
    // No key: refused, still with an id, minted this time.
    let status = partner
        .batch_get_availability(BatchGetAvailabilityRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let minted = status.metadata().get("x-request-id").unwrap();
    assert_eq!(minted.len(), 32, "{minted:?}");
}

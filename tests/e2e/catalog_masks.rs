//! Read masks on the catalog's lists: a BFF that shows products as cards
//! asks for the few fields a card needs, and the catalog sends only those;
//! a path a product does not have is INVALID_ARGUMENT, named.

use tailor_e2e::Stack;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::catalog::v1::{ListProductsRequest, ListRelatedProductsRequest};
use tonic::Code;

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[tokio::test]
async fn the_catalog_sends_only_the_fields_a_read_mask_names_and_refuses_unknown_ones() {
    let stack = Stack::start().await;
    let mut catalog = CatalogServiceClient::new(stack.catalog.channel().await);
    let full = catalog
        .list_related_products(ListRelatedProductsRequest {
            product_id: "prod-000042".into(),
            page_size: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    let cards = catalog
        .list_related_products(ListRelatedProductsRequest {
            product_id: "prod-000042".into(),
            page_size: 4,
            read_mask: mask(&["id", "title", "price"]),
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(cards.len(), 4);
    for (card, product) in cards.iter().zip(&full) {
        assert_eq!(card.id, product.id);
        assert_eq!(card.title, product.title);
        assert_eq!(card.price, product.price);
        assert!(!product.description.is_empty());
        assert!(card.description.is_empty() && card.images.is_empty());
        assert!(card.attributes.is_empty() && card.tags.is_empty());
    }
    let list = catalog
        .list_products(ListProductsRequest {
            page_size: 5,
            read_mask: mask(&["id", "images"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.products.len(), 5);
    assert!(
        list.products
            .iter()
            .all(|p| p.title.is_empty() && !p.images.is_empty())
    );

    for status in [
        catalog
            .list_products(ListProductsRequest {
                read_mask: mask(&["id", "colour"]),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        catalog
            .list_related_products(ListRelatedProductsRequest {
                product_id: "prod-000042".into(),
                read_mask: mask(&["colour"]),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("\"colour\""),
            "{}",
            status.message()
        );
    }
}

use std::collections::HashMap;

use futures_util::StreamExt;
use tailor_e2e::{Stack, bearer, mobile_token, web_token};
use tailor_proto::catalog::v1 as catalog;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::inventory::v1 as inventory_v1;
use tailor_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient;
use tailor_proto::mobile::v1::{
    GetProductPageRequest, ListProductsRequest, OrderLineInput, OrderStatus, PlaceOrderRequest,
    Screen, StockState, WatchOrderRequest,
};
use tailor_proto::reviews::v1 as reviews_v1;
use tailor_proto::reviews::v1::reviews_service_client::ReviewsServiceClient;
use tonic::Code;

/// The catalogue's products with these ids, by id.
async fn catalogue(stack: &Stack, ids: &[&str]) -> HashMap<String, catalog::Product> {
    let mut client = CatalogServiceClient::new(stack.catalog.channel().await);
    let answer = client
        .batch_get_products(catalog::BatchGetProductsRequest {
            ids: ids.iter().map(|id| id.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.missing_ids.is_empty(), "{:?}", answer.missing_ids);
    answer
        .products
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect()
}

/// The URL of `product`'s first image in the variant `width` pixels wide.
fn variant_url(product: &catalog::Product, width: i32) -> &str {
    let variants = &product.images[0].variants;
    &variants
        .iter()
        .find(|v| v.width == width)
        .unwrap_or_else(|| panic!("{} has no {width} px image: {variants:?}", product.id))
        .url
}

#[tokio::test]
async fn cards_are_compact_and_the_thumbnail_follows_the_screen() {
    let stack = Stack::start().await;
    let mut mobile = ShopServiceClient::new(stack.mobile.channel().await);
    let list = |screen| ListProductsRequest {
        page_size: 20,
        screen,
        ..Default::default()
    };
    let phone = mobile.list_products(list(None)).await.unwrap().into_inner();
    assert_eq!(phone.products.len(), 20);
    assert!(!phone.next_page_token.is_empty());
    let ids: Vec<&str> = phone.products.iter().map(|c| c.id.as_str()).collect();
    let products = catalogue(&stack, &ids).await;
    for card in &phone.products {
        let product = &products[&card.id];
        assert!(card.title.chars().count() <= 40, "{}", card.title);
        assert_eq!(
            card.price_minor,
            product.price.as_ref().unwrap().amount_minor
        );
        assert_eq!(card.currency_code, "EUR");
        assert!(card.rating_tenths % 5 == 0 && (0..=50).contains(&card.rating_tenths));
        assert_ne!(card.stock(), StockState::Unspecified);
    }

    // A thumbnail is 96 points wide: the image is the catalogue's smallest
    // variant (160, 320, 640, 1280, 2048 px) at least 96 x density pixels
    // wide, whatever the screen's width.
    let screen = |width_points, density| {
        Some(Screen {
            width_points,
            density,
        })
    };
    let cases = [
        ("no screen: a 390 pt phone at 3x, 288 px", None, 320),
        ("320 pt at 1x, 96 px", screen(320, 1.0), 160),
        ("412 pt at 2x, 192 px", screen(412, 2.0), 320),
        ("360 pt at 3.5x, 336 px", screen(360, 3.5), 640),
        ("1024 pt tablet at 2x, 192 px", screen(1024, 2.0), 320),
    ];
    for (what, screen, width) in cases {
        let cards = mobile
            .list_products(list(screen))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cards.products.len(), 20, "{what}");
        for card in &cards.products {
            assert_eq!(
                card.thumbnail_url,
                variant_url(&products[&card.id], width),
                "{what}: the {width} px variant"
            );
        }
    }
    // The x-screen header says the same for generic clients.
    let mut request = tonic::Request::new(list(None));
    request
        .metadata_mut()
        .insert("x-screen", "320x1".parse().unwrap());
    let cards = mobile.list_products(request).await.unwrap().into_inner();
    let card = &cards.products[0];
    assert_eq!(card.thumbnail_url, variant_url(&products[&card.id], 160));
}

#[tokio::test]
async fn product_screen_is_trimmed_for_a_phone() {
    let stack = Stack::start().await;
    let mut mobile = ShopServiceClient::new(stack.mobile.channel().await);
    let mut reviews = ReviewsServiceClient::new(stack.reviews.channel().await);
    let mut inventory = InventoryServiceClient::new(stack.inventory.channel().await);
    let mut catalog_client = CatalogServiceClient::new(stack.catalog.channel().await);
    // In the seeded shop, prod-000042 has 6 reviews, prod-000002 two and
    // prod-000011 none (checked against the reviews service below).
    for (id, seeded_reviews) in [("prod-000042", 6), ("prod-000002", 2), ("prod-000011", 0)] {
        let page = mobile
            .get_product_page(GetProductPageRequest {
                product_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let product = &catalogue(&stack, &[id]).await[id];
        assert_eq!(page.id, id);
        assert_eq!(page.title, product.title);
        assert!(page.short_description.chars().count() <= 300);
        assert!(
            product
                .description
                .starts_with(page.short_description.trim_end_matches('…')),
            "{id}: the short description is the start of the description"
        );
        // The full-width image on a 390 pt, 3x phone: 1170 px, so the
        // 1280 px variant.
        assert_eq!(page.image_url, variant_url(product, 1280));

        // Reviews: the count and the stars of all of them, and the three
        // most helpful of the newest 20, each trimmed to 200 characters.
        let summary = reviews
            .get_review_summary(reviews_v1::GetReviewSummaryRequest {
                product_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .summary
            .unwrap();
        assert_eq!(summary.review_count, seeded_reviews, "{id}");
        assert_eq!(page.review_count, seeded_reviews, "{id}");
        assert_eq!(page.rating_tenths % 5, 0);
        assert!(
            (f64::from(page.rating_tenths) / 10.0 - summary.average_rating).abs() <= 0.25,
            "{id}: {} tenths for an average of {}",
            page.rating_tenths,
            summary.average_rating
        );
        let mut pool = reviews
            .list_reviews(reviews_v1::ListReviewsRequest {
                product_id: id.into(),
                page_size: 20,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .reviews;
        assert_eq!(
            page.top_reviews.len(),
            pool.len().min(3),
            "{id}: {} reviews",
            pool.len()
        );
        let mut chosen = Vec::new();
        for snippet in &page.top_reviews {
            assert!(snippet.text.chars().count() <= 200, "{}", snippet.text);
            let at = pool
                .iter()
                .position(|r| {
                    r.author_name == snippet.author_name
                        && r.rating == snippet.rating
                        && r.body.starts_with(snippet.text.trim_end_matches('…'))
                        && (r.body == snippet.text || snippet.text.ends_with('…'))
                })
                .unwrap_or_else(|| panic!("{id}: {snippet:?} is none of its reviews"));
            chosen.push(pool.remove(at).helpful_count);
        }
        let least_helpful_chosen = chosen.iter().min().copied().unwrap_or(i32::MAX);
        assert!(
            pool.iter().all(|r| r.helpful_count <= least_helpful_chosen),
            "{id}: the most helpful reviews are shown ({chosen:?} chosen)"
        );

        // Stock as the inventory says, coarse.
        let stock = inventory
            .get_stock(inventory_v1::GetStockRequest {
                product_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .stock
            .unwrap();
        let expected = match stock.total_available {
            0 => StockState::OutOfStock,
            1..10 => StockState::Low,
            _ => StockState::InStock,
        };
        assert_eq!(
            page.stock(),
            expected,
            "{id}: {} available",
            stock.total_available
        );

        // The related products the catalogue names, as cards.
        let related: Vec<String> = catalog_client
            .list_related_products(catalog::ListRelatedProductsRequest {
                product_id: id.into(),
                page_size: 6,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .products
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert!(!related.is_empty());
        let cards: Vec<&str> = page.related.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(cards, related, "{id}");
        assert!(page.degraded_sections.is_empty());
    }
}

#[tokio::test]
async fn an_order_placed_twice_after_a_lost_response_is_one_order() {
    let stack = Stack::start().await;
    let mut mobile = ShopServiceClient::new(stack.mobile.channel().await);
    let token = mobile_token("dana");
    let request = || PlaceOrderRequest {
        idempotency_key: "phone-7f3a".into(),
        lines: vec![OrderLineInput {
            product_id: "prod-000010".into(),
            quantity: 3,
        }],
    };
    let first = mobile
        .place_order(bearer(&token, request()))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let retry = mobile
        .place_order(bearer(&token, request()))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(first.id, retry.id);
    assert_eq!(first.item_count, 3);
    assert!(first.total_minor > 0);

    let statuses: Vec<OrderStatus> = mobile
        .watch_order(bearer(&token, WatchOrderRequest { order_id: first.id }))
        .await
        .unwrap()
        .into_inner()
        .map(|u| u.unwrap().status())
        .collect()
        .await;
    assert_eq!(
        statuses.last(),
        Some(&OrderStatus::Delivered),
        "{statuses:?}"
    );

    let web_token_on_mobile = mobile
        .place_order(bearer(&web_token("dana"), request()))
        .await
        .unwrap_err();
    assert_eq!(
        web_token_on_mobile.code(),
        Code::Unauthenticated,
        "a token for the web BFF is not accepted by the mobile BFF"
    );
}

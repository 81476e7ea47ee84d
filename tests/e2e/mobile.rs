use futures_util::StreamExt;
use tailor_e2e::{Stack, bearer, mobile_token, web_token};
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient;
use tailor_proto::mobile::v1::{
    GetProductPageRequest, ListProductsRequest, OrderLineInput, OrderStatus, PlaceOrderRequest,
    Screen, StockState, WatchOrderRequest,
};
use tonic::Code;

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
    for card in &phone.products {
        assert!(card.title.chars().count() <= 40, "{}", card.title);
        assert!(card.price_minor > 0);
        assert_eq!(card.currency_code, "EUR");
        assert!(card.thumbnail_url.starts_with("https://"));
        assert!(card.rating_tenths % 5 == 0 && (0..=50).contains(&card.rating_tenths));
        assert_ne!(card.stock(), StockState::Unspecified);
    }
    let low_density = mobile
        .list_products(list(Some(Screen {
            width_points: 320,
            density: 1.0,
        })))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(low_density.products[0].id, phone.products[0].id);
    assert_ne!(
        low_density.products[0].thumbnail_url, phone.products[0].thumbnail_url,
        "a 1x screen gets a smaller image than a 3x one"
    );
}

#[tokio::test]
async fn product_screen_is_trimmed_for_a_phone() {
    let stack = Stack::start().await;
    let mut mobile = ShopServiceClient::new(stack.mobile.channel().await);
    let page = mobile
        .get_product_page(GetProductPageRequest {
            product_id: "prod-000042".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.id, "prod-000042");
    assert!(page.short_description.chars().count() <= 300);
    assert!(!page.image_url.is_empty());
    assert!(page.top_reviews.len() <= 3);
    assert!(
        page.top_reviews
            .iter()
            .all(|r| r.text.chars().count() <= 200)
    );
    assert_ne!(page.stock(), StockState::Unspecified);
    assert!(!page.related.is_empty());
    assert!(page.degraded_sections.is_empty());
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

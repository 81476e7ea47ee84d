use std::collections::HashSet;

use futures_util::StreamExt;
use tailor_e2e::{Stack, bearer, web_token};
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{
    GetProductPageRequest, ListProductsRequest, OrderLineInput, OrderStatus, PlaceOrderRequest,
    WatchOrderRequest,
};
use tonic::Code;

#[tokio::test]
async fn product_list_pages_through_the_whole_catalogue_with_rich_cards() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let mut seen = HashSet::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = web
            .list_products(ListProductsRequest {
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert_eq!(page.total_size, tailor_e2e::PRODUCTS as i32);
        assert!(page.degraded_sections.is_empty());
        for card in &page.products {
            assert!(seen.insert(card.id.clone()), "{} listed twice", card.id);
            assert!(!card.title.is_empty() && !card.brand.is_empty());
            let price = card.price.as_ref().unwrap();
            assert!(price.display.starts_with('€'), "{}", price.display);
            let sources = &card.picture.as_ref().unwrap().sources;
            assert!(sources.len() >= 3, "every size for srcset");
            assert!(sources.windows(2).all(|w| w[0].width < w[1].width));
            assert!(
                card.rating.is_some(),
                "ratings come from the reviews service"
            );
            assert!(card.available_units.is_some(), "stock comes from inventory");
        }
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), tailor_e2e::PRODUCTS as usize);
}

#[tokio::test]
async fn search_finds_only_matching_products_and_bad_input_is_refused() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let first = web
        .list_products(ListProductsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products
        .remove(0);
    let word = first
        .title
        .split_whitespace()
        .max_by_key(|w| w.len())
        .unwrap()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    let found = web
        .list_products(ListProductsRequest {
            page_size: 100,
            query: word.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(found.products.iter().any(|p| p.id == first.id));
    assert!(found.total_size < tailor_e2e::PRODUCTS as i32);

    let negative = web
        .list_products(ListProductsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
    let bad_token = web
        .list_products(ListProductsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn product_page_combines_catalogue_stock_reviews_and_related() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let page = web
        .get_product_page(GetProductPageRequest {
            product_id: "prod-000042".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let product = page.product.unwrap();
    assert_eq!(product.id, "prod-000042");
    assert!(product.description.len() > 300, "a real description");
    assert!(!product.pictures.is_empty());
    let availability = page.availability.unwrap();
    assert!(!availability.warehouses.is_empty());
    assert_eq!(
        availability.total_available_units,
        availability
            .warehouses
            .iter()
            .map(|w| w.available_units)
            .sum::<i32>()
    );
    assert!(!availability.summary.is_empty());
    let reviews = page.reviews.unwrap();
    assert_eq!(reviews.rating.unwrap().histogram.len(), 5);
    assert!(reviews.reviews.len() <= 5);
    assert!(!page.related.is_empty());
    assert!(page.related.iter().all(|r| r.id != "prod-000042"));
    assert!(page.degraded_sections.is_empty());

    let missing = web
        .get_product_page(GetProductPageRequest {
            product_id: "prod-999999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let empty = web
        .get_product_page(GetProductPageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_signed_in_user_places_an_order_and_watches_it_to_delivery() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let token = web_token("alice");
    let place = || PlaceOrderRequest {
        idempotency_key: "checkout-1".into(),
        lines: vec![
            OrderLineInput {
                product_id: "prod-000007".into(),
                quantity: 2,
            },
            OrderLineInput {
                product_id: "prod-000008".into(),
                quantity: 1,
            },
        ],
    };
    let order = web
        .place_order(bearer(&token, place()))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.status(), OrderStatus::Placed);
    let total = order.total.as_ref().unwrap().amount.as_ref().unwrap();
    let sum: i64 = order
        .lines
        .iter()
        .map(|l| {
            l.unit_price
                .as_ref()
                .unwrap()
                .amount
                .as_ref()
                .unwrap()
                .amount_minor
                * l.quantity as i64
        })
        .sum();
    assert_eq!(total.amount_minor, sum);

    let again = web
        .place_order(bearer(&token, place()))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(again.id, order.id, "a retry returns the same order");

    let mut updates = web
        .watch_order(bearer(
            &token,
            WatchOrderRequest {
                order_id: order.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut statuses = Vec::new();
    while let Some(update) = updates.next().await {
        let update = update.unwrap().order.unwrap();
        assert_eq!(update.id, order.id);
        assert!(!update.status_label.is_empty());
        statuses.push(update.status());
    }
    assert!(statuses.len() >= 3, "{statuses:?}");
    assert!(statuses.windows(2).all(|w| w[0] < w[1]), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&OrderStatus::Delivered));

    let bob = web
        .watch_order(bearer(
            &web_token("bob"),
            WatchOrderRequest { order_id: order.id },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        bob.code(),
        Code::NotFound,
        "another user's order does not exist for bob"
    );
}

#[tokio::test]
async fn orders_need_a_signed_in_user_and_a_valid_request() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let anonymous = web
        .place_order(PlaceOrderRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let token = web_token("carol");
    let no_key = web
        .place_order(bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: String::new(),
                lines: vec![OrderLineInput {
                    product_id: "prod-000001".into(),
                    quantity: 1,
                }],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::InvalidArgument);
    assert!(no_key.message().contains("idempotency_key"));
    let unknown = web
        .place_order(bearer(
            &token,
            PlaceOrderRequest {
                idempotency_key: "k-unknown".into(),
                lines: vec![OrderLineInput {
                    product_id: "prod-999999".into(),
                    quantity: 1,
                }],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("prod-999999"));
}

#[tokio::test]
async fn the_product_page_calls_its_five_downstreams_in_parallel() {
    // Every downstream call takes at least 150 ms: five in a row would take
    // 750 ms, in parallel the page takes about one of them.
    let slow = std::time::Duration::from_millis(150);
    let stack = Stack::start_with(tailor_e2e::StackOptions {
        catalog_latency: Some(slow),
        stock_and_reviews_latency: Some(slow),
        ..Default::default()
    })
    .await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let request = || GetProductPageRequest {
        product_id: "prod-000042".into(),
    };
    web.get_product_page(request()).await.unwrap();
    let started = std::time::Instant::now();
    let page = web.get_product_page(request()).await.unwrap().into_inner();
    let took = started.elapsed();
    assert!(page.degraded_sections.is_empty());
    assert!(took >= slow, "{took:?}");
    assert!(
        took < slow * 3,
        "the page took {took:?}: its downstream calls ran in sequence"
    );
}

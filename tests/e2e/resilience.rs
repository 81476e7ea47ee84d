use std::time::{Duration, Instant};

use tailor_e2e::{PRODUCTS, Process};
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient as WebClient;
use tailor_proto::{mobile, web};
use tonic::Code;

struct Processes {
    catalog: Process,
    reviews: Process,
    web: Process,
    mobile: Process,
    _others: Vec<Process>,
    _dir: tempfile::TempDir,
}

async fn start() -> Processes {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let products = PRODUCTS.to_string();
    let seeded = ["--data-dir", &data, "--products", &products];
    let catalog = Process::start("tailor-catalog", &seeded).await;
    let inventory = Process::start("tailor-inventory", &seeded).await;
    let reviews = Process::start("tailor-reviews", &seeded).await;
    let orders = Process::start("tailor-orders", &["--data-dir", &data]).await;
    let downstreams = [catalog.url(), inventory.url(), reviews.url(), orders.url()];
    let bff = |binary| Process::start_bff(binary, &data, &downstreams, &[], &[], None);
    let web = bff("tailor-web-bff").await;
    let mobile = bff("tailor-mobile-bff").await;
    Processes {
        catalog,
        reviews,
        web,
        mobile,
        _others: vec![inventory, orders],
        _dir: dir,
    }
}

fn page_request() -> web::v1::GetProductPageRequest {
    web::v1::GetProductPageRequest {
        product_id: "prod-000042".into(),
    }
}

#[tokio::test]
async fn a_dead_optional_service_degrades_the_page_and_a_dead_required_one_fails_fast() {
    let mut stack = start().await;
    let mut web = WebClient::new(tailor_e2e::connect(stack.web.address).await);
    let healthy = web
        .get_product_page(page_request())
        .await
        .unwrap()
        .into_inner();
    assert!(healthy.degraded_sections.is_empty());

    stack.reviews.crash().await;
    let partial = web
        .get_product_page(page_request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partial.degraded_sections, vec!["reviews".to_owned()]);
    assert!(partial.reviews.is_none());
    assert!(partial.product.is_some() && partial.availability.is_some());
    let list = web
        .list_products(web::v1::ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.degraded_sections, vec!["ratings".to_owned()]);
    assert!(list.products.iter().all(|c| c.rating.is_none()));

    stack.catalog.crash().await;
    let started = Instant::now();
    let status = web.get_product_page(page_request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "catalog is unavailable",
        "no address, no transport error text"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_crashed_bff_does_not_touch_the_other_bffs() {
    let mut stack = start().await;
    stack.web.crash().await;
    let mut mobile = MobileClient::new(tailor_e2e::connect(stack.mobile.address).await);
    let page = mobile
        .get_product_page(mobile::v1::GetProductPageRequest {
            product_id: "prod-000042".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.id, "prod-000042");
    assert!(page.degraded_sections.is_empty());
}

#[tokio::test]
async fn the_mobile_example_shows_a_product_screen_without_reviews_when_reviews_are_down() {
    let mut stack = start().await;
    stack.reviews.crash().await;
    let example = tailor_e2e::command("tailor-mobile-example")
        .arg("--mobile")
        .arg(format!("http://{}", stack.mobile.address))
        .arg("--secret")
        .arg(std::str::from_utf8(tailor_e2e::SECRET).unwrap())
        .output()
        .await
        .unwrap();
    // The walk goes on to watch an order this stack does not fulfil; what
    // matters here is the product screen, shown with what could be had.
    let walked = String::from_utf8_lossy(&example.stdout);
    let screen = walked
        .lines()
        .find(|line| line.starts_with("product screen "))
        .unwrap_or_else(|| panic!("no product screen in:\n{walked}"));
    assert!(
        screen.contains("0 reviews shown") && screen.contains("not available right now: reviews"),
        "{screen}"
    );
}

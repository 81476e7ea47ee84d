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

    let mut request = tonic::Request::new(GetProductPageRequest {
        product_id: "prod-000002".into(),
    });
    request.set_timeout(Duration::from_millis(50));
    let started = Instant::now();
    let status = web.get_product_page(request).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(took < Duration::from_millis(400), "answered after {took:?}, not about 50 ms");
    assert!(took >= Duration::from_millis(45), "answered before the deadline: {took:?}");

    // The catalog call made for it was abandoned, not left running.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = stack.catalog.stats.snapshot();
        let ended_early = (now.cancelled - before.cancelled) + (now.failed - before.failed);
        if ended_early >= 1 && now.succeeded == before.succeeded {
            break;
        }
        assert!(Instant::now() < deadline, "the catalog call was not cancelled: {before:?} -> {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

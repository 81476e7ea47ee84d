//! The catalogue feed under a slow reader: the partner BFF (a real process,
//! its memory read from /proc) must not buffer the catalogue when the
//! client stops reading; HTTP/2 flow control holds the stream and the feed
//! fetches the next page only when the previous one is taken.

use std::time::Duration;

use tailor_e2e::{Process, api_key};
use tailor_proto::partner::v1::StreamCatalogFeedRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_stalled_feed_reader_does_not_make_the_bff_buffer_the_catalogue() {
    const PRODUCTS: &str = "6000";
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let catalog = Process::start(
        "tailor-catalog",
        &["--data-dir", dir, "--products", PRODUCTS],
    )
    .await;
    // The other downstream services are not used by the feed.
    let args = [
        "--data-dir",
        dir,
        "--catalog-addr",
        &catalog.url(),
        "--inventory-addr",
        "http://127.0.0.1:9",
        "--reviews-addr",
        "http://127.0.0.1:9",
        "--orders-addr",
        "http://127.0.0.1:9",
    ];
    let key = tailor_e2e::create_key_with_cli(dir, "bulk", "standard").await;
    let partner = Process::start("tailor-partner-bff", &args).await;
    let pid = partner.child.id().unwrap();
    let mut client = PartnerServiceClient::new(tailor_e2e::connect(partner.address).await);

    // Warm up the code paths with a full small read, then settle.
    let mut warm = client
        .stream_catalog_feed(api_key(&key, StreamCatalogFeedRequest::default()))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..300 {
        warm.message().await.unwrap().unwrap();
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);

    // A reader that takes one product and stalls.
    let mut stalled = client
        .stream_catalog_feed(api_key(&key, StreamCatalogFeedRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let first = stalled.message().await.unwrap().unwrap();
    let message_bytes = prost::Message::encoded_len(&first) as u64;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled_rss = rss_kib(pid);

    // Then reads everything, counting the catalogue's size.
    let mut total = message_bytes;
    let mut count = 1;
    while let Some(message) = stalled.message().await.unwrap() {
        total += prost::Message::encoded_len(&message) as u64;
        count += 1;
    }
    let after = rss_kib(pid);
    println!(
        "feed memory: catalogue {count} products, {} KiB on the wire; partner BFF RSS {before} KiB \
         before, {stalled_rss} KiB with the reader stalled (+{} KiB), {after} KiB after the full read",
        total / 1024,
        stalled_rss.saturating_sub(before)
    );
    assert_eq!(count, PRODUCTS.parse::<u64>().unwrap());
    let catalogue_kib = total / 1024;
    assert!(
        catalogue_kib > 8 * 1024,
        "the catalogue is big enough to tell: {catalogue_kib} KiB"
    );
    assert!(
        stalled_rss.saturating_sub(before) < catalogue_kib / 4,
        "stalled reader made the BFF grow by {} KiB for a {catalogue_kib} KiB catalogue",
        stalled_rss.saturating_sub(before)
    );
}

//! The catalogue feed under a slow reader: the partner BFF (a real process,
//! its memory read from /proc) must not buffer the catalogue when the
//! client stops reading; HTTP/2 flow control holds the stream and the feed
//! fetches the next page only when the previous one is taken.
//!
//! The catalog runs in-process so that its call counter shows every page
//! the feed asks for.

use std::time::{Duration, Instant};

use tailor_e2e::{Process, Server, api_key};
use tailor_proto::partner::v1::StreamCatalogFeedRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_runtime::ServeOptions;

/// Products in the catalogue: about 9 MiB of feed.
const PRODUCTS: u64 = 6000;
/// Products per catalogue page the feed asks for (`FEED_PAGE_SIZE` in the
/// partner BFF's `feed.rs`).
const PAGE: u64 = 100;
/// The reader's HTTP/2 flow-control windows, stream and connection: the
/// protocol's initial 64 KiB, so what the reader has not taken holds the
/// stream after some 40 products (a client with megabyte windows lets the
/// BFF send that much ahead, and its memory holds it instead).
const WINDOW: u32 = 65_535;
/// How long the reader stalls, the catalogue calls watched all along.
const STALL: Duration = Duration::from_millis(1500);

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The page that holds the `taken`-th product (1-based) of the feed.
fn page_of(taken: u64) -> u64 {
    taken.div_ceil(PAGE)
}

#[tokio::test]
async fn a_stalled_feed_reader_does_not_make_the_bff_buffer_the_catalogue() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let catalog = tailor_catalog::build_server(&tailor_catalog::CatalogConfig {
        database: data.path().join("catalog.db").into(),
        products: PRODUCTS as u32,
    })
    .await
    .unwrap();
    let catalog = Server::start_service(catalog, ServeOptions::default()).await;
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
        // The catalogue's call count is the measure here: no readiness
        // health checks of it during the test.
        "--readiness-probe-ms",
        "600000",
    ];
    let key = tailor_e2e::create_key_with_cli(dir, "bulk", "standard").await;
    let partner = Process::start("tailor-partner-bff", &args).await;
    let pid = partner.child.id().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(partner.url())
        .unwrap()
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .connect()
        .await
        .unwrap();
    let mut client = PartnerServiceClient::new(channel);
    let pages = || catalog.stats.snapshot().started;

    // Warm up the code paths with a small feed read to its end (the
    // products updated since June 2026, a few pages), so that every
    // catalogue call it caused has ended.
    let since = prost_types::Timestamp {
        seconds: 1_780_272_000,
        nanos: 0,
    };
    let mut warm = client
        .stream_catalog_feed(api_key(
            &key,
            StreamCatalogFeedRequest {
                cursor: String::new(),
                updated_since: Some(since),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut warmed = 0;
    while warm.message().await.unwrap().is_some() {
        warmed += 1;
    }
    assert!(warmed > 0);
    let base = catalog.stats.settled().await;
    assert_eq!(base.failed + base.cancelled, 0, "{base:?}");
    let before = rss_kib(pid);

    // A reader that takes one product and stalls.
    let base = base.started;
    let mut stalled = client
        .stream_catalog_feed(api_key(&key, StreamCatalogFeedRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let first = stalled.message().await.unwrap().unwrap();
    let message_bytes = prost::Message::encoded_len(&first) as u64;
    // As long as it stalls, the feed holds the page it is in, and at most
    // the next one: a feed reading ahead would be asking for more now.
    let stalled_since = Instant::now();
    let mut most_while_stalled = 0;
    while stalled_since.elapsed() < STALL {
        most_while_stalled = pages() - base;
        assert!(
            most_while_stalled <= page_of(1) + 1,
            "with the reader stalled after one product, the feed fetched \
             {most_while_stalled} catalogue pages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most_while_stalled >= 1, "the first page was fetched");
    let stalled_rss = rss_kib(pid);

    // Then reads everything, counting the catalogue's size; each product
    // taken lets the feed at most one page ahead of it.
    let mut total = message_bytes;
    let mut taken = 1;
    while let Some(message) = stalled.message().await.unwrap() {
        total += prost::Message::encoded_len(&message) as u64;
        taken += 1;
        let fetched = pages() - base;
        assert!(
            fetched <= page_of(taken) + 1,
            "{taken} products taken, {fetched} catalogue pages fetched"
        );
    }
    let fetched = catalog.stats.settled().await.started - base;
    let after = rss_kib(pid);
    println!(
        "feed memory: warmed up on {warmed} products; catalogue {taken} products, {} KiB on the wire, {fetched} catalogue \
         pages ({most_while_stalled} while the reader stalled); partner BFF RSS {before} KiB \
         before, {stalled_rss} KiB with the reader stalled (+{} KiB), {after} KiB after the \
         full read",
        total / 1024,
        stalled_rss.saturating_sub(before)
    );
    assert_eq!(taken, PRODUCTS);
    // Every page once (and one more, empty, where the catalogue only finds
    // its end by being asked).
    assert!(
        (PRODUCTS / PAGE..=PRODUCTS / PAGE + 1).contains(&fetched),
        "{fetched} catalogue pages for {PRODUCTS} products"
    );
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

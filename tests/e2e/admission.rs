//! Overload, through the real binaries: a downstream service admits each
//! calling BFF within its own share (`--admission`), a BFF sheds calls
//! beyond its bound (`--max-in-flight`) while health still answers, and a
//! flood of refusals writes a log of bounded size.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tailor_e2e::{
    Process, Stack, StackOptions, api_key, connect, connect_mesh, create_key_with_cli,
};
use tailor_proto::catalog::v1::GetProductRequest;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::mobile::v1::ListProductsRequest;
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient;
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

/// The Prometheus text a server's admin port serves.
async fn metrics(admin: SocketAddr) -> String {
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text
}

/// The value of the series of `name` whose labels include every one of
/// `labels` (`client_type="mobile"`), 0 when there is none.
fn series(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How each of a burst of calls ended, and how long it took.
type Outcome = (Code, Option<tonic::Status>, Duration);

async fn outcomes(calls: Vec<tokio::task::JoinHandle<Outcome>>) -> Vec<Outcome> {
    let mut ended = Vec::new();
    for call in calls {
        ended.push(call.await.unwrap());
    }
    ended
}

#[tokio::test]
async fn a_flooding_bff_is_refused_beyond_its_share_while_another_bffs_calls_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Every call takes a second; mobile may have one at once and two
    // waiting, web keeps its default share.
    let catalog = Process::start(
        "tailor-catalog",
        &[
            "--data-dir",
            data,
            "--products",
            "50",
            "--admission",
            "mobile=1:2",
            "--inject-latency-ms",
            "1000",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let admin = catalog.admin.expect("the catalog announces its admin port");
    let mobile =
        CatalogServiceClient::new(connect_mesh(catalog.address, "catalog", "mobile-bff").await);
    let web = CatalogServiceClient::new(connect_mesh(catalog.address, "catalog", "web-bff").await);
    let get = |mut client: CatalogServiceClient<tonic::transport::Channel>| {
        tokio::spawn(async move {
            let began = Instant::now();
            let answer = client
                .get_product(GetProductRequest {
                    id: "prod-000001".into(),
                })
                .await;
            match answer {
                Ok(_) => (Code::Ok, None, began.elapsed()),
                Err(status) => (status.code(), Some(status), began.elapsed()),
            }
        })
    };
    let mobile_calls: Vec<_> = (0..12).map(|_| get(mobile.clone())).collect();
    // The flood first holds its share (a refusal means one is running and
    // two wait), then the web calls come: they must be served beside it.
    // Without waiting, the web calls may take every slot first.
    let began = Instant::now();
    while series(
        &metrics(admin).await,
        "tailor_overload_refusals_total",
        &["client_type=\"mobile\"", "reason=\"admission\""],
    ) < 1.0
    {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the flood was never refused"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let web_calls: Vec<_> = (0..6).map(|_| get(web.clone())).collect();

    let web_ended = outcomes(web_calls).await;
    assert!(
        web_ended.iter().all(|(code, _, _)| *code == Code::Ok),
        "web calls were refused while mobile flooded: {web_ended:?}"
    );
    let mobile_ended = outcomes(mobile_calls).await;
    let served = mobile_ended
        .iter()
        .filter(|(c, _, _)| *c == Code::Ok)
        .count();
    let refused: Vec<_> = mobile_ended
        .iter()
        .filter(|(c, _, _)| *c == Code::ResourceExhausted)
        .collect();
    assert_eq!(served + refused.len(), 12, "{mobile_ended:?}");
    // One in flight and two waiting are served; the calls that arrived
    // while those held the share are refused (on a loaded machine a few
    // more may arrive after a place was freed).
    assert!(served >= 3, "{mobile_ended:?}");
    assert!(refused.len() >= 6, "{mobile_ended:?}");
    for (_, status, took) in &refused {
        let status = status.as_ref().unwrap();
        assert!(
            status
                .get_details_retry_info()
                .is_some_and(|r| r.retry_delay.is_some()),
            "a refusal says when to come back: {status:?}"
        );
        assert!(status.message().contains("busy"), "{status:?}");
        // Refused at once, not after waiting for the handler's second.
        assert!(*took < Duration::from_millis(900), "refused after {took:?}");
    }

    // The refusals are counted by client type.
    let text = metrics(admin).await;
    let counted = series(
        &text,
        "tailor_overload_refusals_total",
        &[
            "client_type=\"mobile\"",
            "reason=\"admission\"",
            "server=\"catalog\"",
        ],
    );
    assert_eq!(counted, refused.len() as f64, "{text}");
    assert_eq!(
        series(
            &text,
            "tailor_overload_refusals_total",
            &["client_type=\"web\""]
        ),
        0.0
    );
}

#[tokio::test]
async fn a_bff_sheds_calls_beyond_its_bound_at_once_and_health_still_answers() {
    let stack = Stack::start_with(StackOptions {
        catalog_latency: Some(Duration::from_millis(1_500)),
        ..StackOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let bff = Process::start_bff(
        "tailor-mobile-bff",
        data,
        &stack.downstream_urls(),
        &["--max-in-flight", "2"],
        &[],
        None,
    )
    .await;
    let channel = connect(bff.address).await;
    let list = |mut client: ShopServiceClient<tonic::transport::Channel>| {
        tokio::spawn(async move {
            let began = Instant::now();
            let answer = client
                .list_products(ListProductsRequest {
                    page_size: 2,
                    ..Default::default()
                })
                .await;
            match answer {
                Ok(_) => (Code::Ok, None, began.elapsed()),
                Err(status) => (status.code(), Some(status), began.elapsed()),
            }
        })
    };
    let first: Vec<_> = (0..2)
        .map(|_| list(ShopServiceClient::new(channel.clone())))
        .collect();
    // Let the first two reach the handler and its slow catalogue call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let more: Vec<_> = (0..8)
        .map(|_| list(ShopServiceClient::new(channel.clone())))
        .collect();
    let health = HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers while the BFF sheds")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let shed = outcomes(more).await;
    for (code, status, took) in &shed {
        assert_eq!(*code, Code::ResourceExhausted, "{status:?}");
        let status = status.as_ref().unwrap();
        assert!(
            status
                .get_details_retry_info()
                .is_some_and(|r| r.retry_delay.is_some()),
            "{status:?}"
        );
        // Refused at once, not queued behind the slow calls.
        assert!(*took < Duration::from_millis(1_000), "shed after {took:?}");
    }
    let served = outcomes(first).await;
    assert!(
        served.iter().all(|(code, _, _)| *code == Code::Ok),
        "{served:?}"
    );
    // With the load gone, calls are admitted again.
    let again = outcomes(vec![list(ShopServiceClient::new(channel))]).await;
    assert_eq!(again[0].0, Code::Ok, "{again:?}");
}

#[tokio::test]
async fn a_key_hammering_past_its_rate_limit_writes_a_log_of_bounded_size() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = create_key_with_cli(data, "acme", "trial").await;
    let log = dir.path().join("partner-bff.log");
    // One call a second after a burst of two.
    let partner = Process::start_bff(
        "tailor-partner-bff",
        data,
        &stack.downstream_urls(),
        &["--plan-limits", "trial=1:2:1000000"],
        &[],
        Some(&log),
    )
    .await;
    // Each hammer opens a new connection every few hundred calls: HTTP/2
    // (h2) closes a connection after 1,024 streams it reset itself, and a
    // refusal answered before the request's body was read is one.
    let address = partner.address;
    let hammering = Instant::now();
    let hammer: Vec<_> = (0..4)
        .map(|_| {
            let key = key.clone();
            tokio::spawn(async move {
                let (mut served, mut refused) = (0u64, 0u64);
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    let mut client = PartnerServiceClient::new(connect(address).await);
                    for _ in 0..400 {
                        let request = api_key(
                            &key,
                            BatchGetAvailabilityRequest {
                                product_ids: vec!["prod-000001".into()],
                            },
                        );
                        match client.batch_get_availability(request).await {
                            Ok(_) => served += 1,
                            Err(status) if status.code() == Code::ResourceExhausted => refused += 1,
                            Err(status) => return Err(status),
                        }
                    }
                }
                Ok((served, refused))
            })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for task in hammer {
        let (s, r) = task.await.unwrap().unwrap_or_else(|status| {
            panic!(
                "{status:?}; the log:\n{}",
                std::fs::read_to_string(&log).unwrap()
            )
        });
        served += s;
        refused += r;
    }
    // Two seconds, or longer on a busy machine: each hammer finishes its
    // batch of calls.
    let hammered = hammering.elapsed();
    assert!(refused >= 1_000, "only {refused} refusals to log");

    // Within a few seconds the summaries account for every refusal.
    let summarised = |text: &str| -> u64 {
        text.lines()
            .filter(|line| line.contains("refused calls"))
            .filter_map(|line| {
                line.split("refusals=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let waited = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if summarised(&text) >= refused || waited.elapsed() > Duration::from_secs(10) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(summarised(&text), refused, "{text}");
    println!(
        "{refused} refusals and {served} served calls: {} log lines, {} bytes",
        text.lines().count(),
        text.len()
    );
    let summaries = text.lines().filter(|l| l.contains("refused calls")).count();
    let calls = text.lines().filter(|l| l.contains(" call ")).count();
    // One summary a second while the hammering lasted (and one for the
    // second it ended in), plus one line per served call and a few lines
    // of start-up.
    let seconds = hammered.as_secs() + 3;
    assert!(
        summaries as u64 <= seconds,
        "{summaries} summary lines for {hammered:?} of hammering:\n{text}"
    );
    assert!(
        summaries as u64 + served + 20 >= text.lines().count() as u64,
        "{} lines for {served} served calls:\n{text}",
        text.lines().count()
    );
    assert!(
        calls as u64 <= served + 5,
        "{calls} call lines for {served} served"
    );
    assert!(
        text.len() < 16 * 1024,
        "{} bytes of log for {refused} refusals",
        text.len()
    );
    drop(partner);
}

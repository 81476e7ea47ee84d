//! Per-key rate limits and daily quotas on the partner BFF, through real
//! sockets: exact across connections under concurrent calls, with
//! RetryInfo saying when to come back, and one partner's flood not
//! reaching another partner.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tailor_e2e::{Server, Stack, all_scopes, api_key, downstream_args};
use tailor_interceptors::limits::{Plan, QuotaLedger};
use tailor_partner_bff::KeyStore;
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_runtime::ServeOptions;
use tailor_screens::Downstreams;
use tonic::Code;
use tonic_types::StatusExt;

/// A partner BFF over `stack`'s downstream services with `limits`.
async fn partner_with(stack: &Stack, limits: HashMap<String, Plan>) -> Server {
    let args = downstream_args(
        &stack.catalog.url(),
        &stack.inventory.url(),
        &stack.reviews.url(),
        &stack.orders.url(),
    );
    let server = tailor_partner_bff::build_server(
        Downstreams::connect(&args, &tailor_e2e::caller(tailor_partner_bff::NAME)).unwrap(),
        stack.keys.clone(),
        limits,
    )
    .await
    .unwrap();
    Server::start(server, ServeOptions::default()).await
}

async fn key(stack: &Stack, tenant: &str, plan: &str) -> String {
    stack
        .keys
        .create(tenant, "limits", &all_scopes(), plan)
        .await
        .unwrap()
        .0
        .token
}

/// The calls of `key_id` saved in the partner store today, once they
/// reach `expected` (or as they are after ten seconds).
async fn saved_calls(ledger: &KeyStore, key_id: &str, expected: u64) -> u64 {
    let waited = Instant::now();
    loop {
        let today = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400;
        let saved = ledger.load(today).await.unwrap();
        let calls = saved.get(key_id).copied().unwrap_or(0);
        if calls >= expected || waited.elapsed() > Duration::from_secs(10) {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn availability(key: &str) -> tonic::Request<BatchGetAvailabilityRequest> {
    api_key(
        key,
        BatchGetAvailabilityRequest {
            product_ids: vec!["prod-000001".into()],
        },
    )
}

#[tokio::test]
async fn concurrent_calls_on_many_connections_share_one_bucket_per_key() {
    let stack = Stack::start().await;
    // 1 call per second after a burst of 10: the race is decided by the burst.
    let limits = HashMap::from([(
        "trial".to_owned(),
        Plan {
            per_second: 1.0,
            burst: 10,
            daily_quota: 1_000,
        },
    )]);
    let partner = partner_with(&stack, limits).await;
    let trial = key(&stack, "racer", "trial").await;
    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..5 {
        // Five connections, eight calls on each.
        let channel = partner.channel().await;
        for _ in 0..8 {
            let mut client = PartnerServiceClient::new(channel.clone());
            let request = availability(&trial);
            calls.push(tokio::spawn(async move {
                client.batch_get_availability(request).await
            }));
        }
    }
    let mut ok = 0;
    let mut delays = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                let retry = status
                    .get_details_retry_info()
                    .expect("a refusal says when to come back");
                delays.push(retry.retry_delay.unwrap());
            }
        }
    }
    let refills = started.elapsed().as_secs() as usize;
    assert!(
        (10..=10 + refills).contains(&ok),
        "40 calls over 5 connections, burst 10: {ok} admitted"
    );
    assert_eq!(delays.len(), 40 - ok);
    assert!(
        delays
            .iter()
            .all(|d| *d > Duration::ZERO && *d <= Duration::from_secs(1)),
        "{delays:?}"
    );
    // After the advertised delay, the key is served again.
    tokio::time::sleep(*delays.iter().max().unwrap()).await;
    let mut client = PartnerServiceClient::new(partner.channel().await);
    client
        .batch_get_availability(availability(&trial))
        .await
        .unwrap();
    // Another key of the same plan has its own bucket.
    let other = key(&stack, "bystander", "trial").await;
    client
        .batch_get_availability(availability(&other))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_daily_quota_is_refused_with_retry_info_and_quota_failure() {
    let stack = Stack::start().await;
    let limits = HashMap::from([(
        "trial".to_owned(),
        Plan {
            per_second: 1_000.0,
            burst: 1_000,
            daily_quota: 5,
        },
    )]);
    let partner = partner_with(&stack, limits).await;
    let trial = key(&stack, "small", "trial").await;
    let mut client = PartnerServiceClient::new(partner.channel().await);
    let before = stack.inventory.stats.snapshot();
    for _ in 0..5 {
        client
            .batch_get_availability(availability(&trial))
            .await
            .unwrap();
    }
    let admitted = stack.inventory.stats.settled().await;
    assert_eq!(
        admitted.started - before.started,
        5,
        "each admitted call asked inventory once"
    );
    let refused = client
        .batch_get_availability(availability(&trial))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("daily quota of 5"),
        "{}",
        refused.message()
    );
    let retry = refused
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(86_400),
        "{retry:?}"
    );
    let quota = refused.get_details_quota_failure().unwrap();
    assert!(quota.violations[0].subject.starts_with("api-key:"));
    // A request the handler would turn down (too many ids) is refused by
    // the quota all the same: the handler never saw it.
    let too_many = api_key(
        &trial,
        BatchGetAvailabilityRequest {
            product_ids: (0..501).map(|i| format!("prod-{i:06}")).collect(),
        },
    );
    let refused = client.batch_get_availability(too_many).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    for _ in 0..8 {
        let refused = client
            .batch_get_availability(availability(&trial))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
    }
    // Ten refusals, and inventory was not called once more.
    assert_eq!(stack.inventory.stats.snapshot(), admitted);
    // The BFF answered every call: five served, ten refused.
    let served = partner.stats.settled().await;
    assert_eq!((served.succeeded, served.failed), (5, 10), "{served:?}");
}

/// Calls the steady partner makes in one run.
const STEADY_CALLS: u64 = 40;

/// What a steady partner saw over its calls.
#[derive(Debug, Default)]
struct SteadyRun {
    latencies: Vec<Duration>,
    refused: usize,
    failed: Vec<tonic::Status>,
}

/// The steady partner: 40 calls, one every 25 ms (well under its limit),
/// each with a 5 s deadline.
async fn steady_run(partner: &Server, key: &str) -> SteadyRun {
    let mut client = PartnerServiceClient::new(partner.channel().await);
    let mut run = SteadyRun::default();
    for _ in 0..STEADY_CALLS {
        let mut request = availability(key);
        request.set_timeout(Duration::from_secs(5));
        let started = Instant::now();
        match client.batch_get_availability(request).await {
            Ok(_) => {}
            Err(status) if status.code() == Code::ResourceExhausted => run.refused += 1,
            Err(status) => run.failed.push(status),
        }
        run.latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    run.latencies.sort();
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partner_flooding_does_not_slow_or_fail_another() {
    let stack = Stack::start().await;
    let plans = tailor_partner_bff::plans::limits();
    let trial = plans["trial"];
    let partner = partner_with(&stack, plans).await;
    let flooder = key(&stack, "flooder", "trial").await;
    let steady = key(&stack, "steady", "standard").await;

    let alone = steady_run(&partner, &steady).await;
    let before = stack.inventory.stats.settled().await;

    // Now the same while the flooder sends from 4 connections, each a call
    // every 5 ms: up to 800 calls a second against a plan of 5.
    let flood_started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut floods = Vec::new();
    for _ in 0..4 {
        let mut client = PartnerServiceClient::new(partner.channel().await);
        let flooder = flooder.clone();
        let stop = stop.clone();
        floods.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match client.batch_get_availability(availability(&flooder)).await {
                    Ok(_) => ok += 1,
                    Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
                    Err(s) => panic!("flooder saw {s:?}"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, refused)
        }));
    }
    let crowded = steady_run(&partner, &steady).await;
    stop.store(true, Ordering::Relaxed);
    let (mut flood_ok, mut flood_refused) = (0, 0);
    for flood in floods {
        let (ok, refused) = flood.await.unwrap();
        flood_ok += ok;
        flood_refused += refused;
    }
    let flood_time = flood_started.elapsed();
    let after = stack.inventory.stats.settled().await;

    let p50 = |l: &[Duration]| l[l.len() / 2];
    let p90 = |l: &[Duration]| l[l.len() * 9 / 10];
    println!(
        "fairness: steady partner alone p50 {:?} p90 {:?} max {:?}; while flooded p50 {:?} \
         p90 {:?} max {:?}; flooder admitted {flood_ok}, refused {flood_refused} in {flood_time:?}",
        p50(&alone.latencies),
        p90(&alone.latencies),
        alone.latencies.last().unwrap(),
        p50(&crowded.latencies),
        p90(&crowded.latencies),
        crowded.latencies.last().unwrap(),
    );
    // The steady partner is served every time, flood or not, each call
    // within its deadline.
    for run in [&alone, &crowded] {
        assert!(run.failed.is_empty(), "{:?}", run.failed);
        assert_eq!(run.refused, 0, "the steady partner was refused");
        assert_eq!(run.latencies.len() as u64, STEADY_CALLS);
    }
    // The flood is refused, and what it gets through stays within its
    // bucket: the burst plus the refill over the flood's time.
    assert!(flood_refused > flood_ok, "the flood was mostly refused");
    let bucket = f64::from(trial.burst) + trial.per_second * flood_time.as_secs_f64();
    assert!(
        (u64::from(trial.burst)..=bucket as u64).contains(&flood_ok),
        "the flooder got {flood_ok} calls through a bucket of {bucket:.1} in {flood_time:?}"
    );
    // Refusals never reach the downstream service: inventory saw at most
    // the admitted calls, the steady partner's and the flooder's (fewer
    // when identical concurrent reads of the flooder were coalesced).
    let seen = after.started - before.started;
    assert!(
        (STEADY_CALLS + 1..=STEADY_CALLS + flood_ok).contains(&seen),
        "inventory saw {seen} calls while flooded for {STEADY_CALLS} steady and {flood_ok} \
         admitted flood calls ({flood_refused} refusals)"
    );
    let served = partner.stats.settled().await;
    assert_eq!(
        (served.succeeded, served.failed),
        (2 * STEADY_CALLS + flood_ok, flood_refused),
        "{served:?}"
    );
}

#[tokio::test]
async fn the_daily_quota_outlives_a_restart_of_the_bff() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let key = tailor_e2e::create_key_with_cli(dir, "daily", "trial").await;
    let ledger = KeyStore::open(&data.path().join("partner.db")).unwrap();
    let key_id = ledger.list(Some("daily".into())).await.unwrap()[0]
        .key_id
        .clone();
    let inventory = stack.inventory.url();
    let start = || async {
        tailor_e2e::Process::start(
            "tailor-partner-bff",
            &[
                "--data-dir",
                dir,
                "--plan-limits",
                "trial=100:100:5",
                "--inventory-addr",
                &inventory,
            ],
        )
        .await
    };
    let first = start().await;
    let mut client = PartnerServiceClient::new(tailor_e2e::connect(first.address).await);
    for _ in 0..3 {
        client
            .batch_get_availability(availability(&key))
            .await
            .unwrap();
    }
    // The counts reach the store (every second); then the process stops.
    let saved = saved_calls(&ledger, &key_id, 3).await;
    assert_eq!(saved, 3);
    first.terminate();
    let mut first = first;
    let _ = first.child.wait().await;

    let second = start().await;
    let mut client = PartnerServiceClient::new(tailor_e2e::connect(second.address).await);
    for _ in 0..2 {
        client
            .batch_get_availability(availability(&key))
            .await
            .unwrap();
    }
    let refused = client
        .batch_get_availability(availability(&key))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("daily quota of 5"),
        "{}",
        refused.message()
    );
}

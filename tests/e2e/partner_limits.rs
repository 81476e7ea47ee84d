//! Per-key rate limits and daily quotas on the partner BFF, through real
//! sockets: exact across connections under concurrent calls, with
//! RetryInfo saying when to come back, and one partner's flood not
//! reaching another partner.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tailor_e2e::{Server, Stack, all_scopes, api_key, downstream_args};
use tailor_interceptors::limits::Plan;
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
        Downstreams::connect(&args, tailor_partner_bff::NAME).unwrap(),
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
    for _ in 0..5 {
        client
            .batch_get_availability(availability(&trial))
            .await
            .unwrap();
    }
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
    // Refusals are not counted as calls of the service.
    let served = partner.stats.snapshot();
    assert_eq!(served.succeeded, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partner_flooding_does_not_slow_or_fail_another() {
    let stack = Stack::start().await;
    let partner = partner_with(&stack, tailor_partner_bff::plans::limits()).await;
    let flooder = key(&stack, "flooder", "trial").await;
    let steady = key(&stack, "steady", "standard").await;

    // The steady partner: 40 calls, one every 25 ms (well under its limit).
    async fn steady_run(partner: &Server, key: &str) -> (Vec<Duration>, usize) {
        let mut client = PartnerServiceClient::new(partner.channel().await);
        let mut latencies = Vec::new();
        let mut errors = 0;
        for _ in 0..40 {
            let started = Instant::now();
            if client
                .batch_get_availability(availability(key))
                .await
                .is_err()
            {
                errors += 1;
            }
            latencies.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        latencies.sort();
        (latencies, errors)
    }
    let (alone, alone_errors) = steady_run(&partner, &steady).await;

    // Now the same while the flooder sends from 4 connections, each a call
    // every 5 ms: up to 800 calls a second against a plan of 5.
    let stop = Arc::new(AtomicBool::new(false));
    let mut floods = Vec::new();
    for _ in 0..4 {
        let mut client = PartnerServiceClient::new(partner.channel().await);
        let flooder = flooder.clone();
        let stop = stop.clone();
        floods.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
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
    let (crowded, crowded_errors) = steady_run(&partner, &steady).await;
    stop.store(true, Ordering::Relaxed);
    let (mut flood_ok, mut flood_refused) = (0, 0);
    for flood in floods {
        let (ok, refused) = flood.await.unwrap();
        flood_ok += ok;
        flood_refused += refused;
    }
    let p50 = |l: &[Duration]| l[l.len() / 2];
    let p90 = |l: &[Duration]| l[l.len() * 9 / 10];
    println!(
        "fairness: steady partner alone p50 {:?} p90 {:?} errors {alone_errors}; \
         while flooded p50 {:?} p90 {:?} errors {crowded_errors}; \
         flooder admitted {flood_ok}, refused {flood_refused}",
        p50(&alone),
        p90(&alone),
        p50(&crowded),
        p90(&crowded)
    );
    assert_eq!((alone_errors, crowded_errors), (0, 0));
    assert!(flood_refused > flood_ok, "the flood was mostly refused");
    // A small margin: the flood is turned away before any handler runs.
    assert!(
        p50(&crowded) <= p50(&alone) * 2 + Duration::from_millis(2),
        "steady p50 went from {:?} to {:?}",
        p50(&alone),
        p50(&crowded)
    );
}

#[tokio::test]
async fn the_daily_quota_outlives_a_restart_of_the_bff() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let key = tailor_e2e::create_key_with_cli(dir, "daily", "trial").await;
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
    // Counts are saved every second; then the process stops.
    tokio::time::sleep(Duration::from_millis(1500)).await;
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

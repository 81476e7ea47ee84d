//! The partner BFF's limits as an operator configures them: `--plan-limits`
//! on the command line or `TAILOR_PARTNER_PLAN_LIMITS` in the environment,
//! through the real binary, with keys created by its `keys create` command.

use std::time::Duration;

use tailor_e2e::{Process, Stack, api_key, create_key_with_cli};
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tonic::Code;
use tonic_types::StatusExt;

async fn partner_bff(stack: &Stack, data: &str, extra: &[&str], env: &[(&str, &str)]) -> Process {
    Process::start_bff(
        "tailor-partner-bff",
        data,
        &stack.downstream_urls(),
        extra,
        env,
        None,
    )
    .await
}

/// Codes of `calls` availability calls with `key`, one after another.
async fn codes(partner: &Process, key: &str, calls: usize) -> Vec<(Code, Option<tonic::Status>)> {
    let mut client = PartnerServiceClient::new(tailor_e2e::connect(partner.address).await);
    let mut seen = Vec::new();
    for _ in 0..calls {
        let request = api_key(
            key,
            BatchGetAvailabilityRequest {
                product_ids: vec!["prod-000001".into()],
            },
        );
        match client.batch_get_availability(request).await {
            Ok(_) => seen.push((Code::Ok, None)),
            Err(status) => seen.push((status.code(), Some(status))),
        }
    }
    seen
}

#[tokio::test]
async fn plan_limits_from_the_command_line_set_the_daily_quota() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = create_key_with_cli(data, "acme", "trial").await;
    let partner = partner_bff(&stack, data, &["--plan-limits", "trial=1000:1000:3"], &[]).await;
    let seen = codes(&partner, &key, 4).await;
    let only: Vec<Code> = seen.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        only,
        [Code::Ok, Code::Ok, Code::Ok, Code::ResourceExhausted]
    );
    let refused = seen[3].1.as_ref().unwrap();
    assert!(
        refused.message().contains("daily quota of 3"),
        "{refused:?}"
    );
    assert!(refused.get_details_quota_failure().is_some());
}

#[tokio::test]
async fn plan_limits_from_the_environment_set_the_rate() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = create_key_with_cli(data, "acme", "trial").await;
    // A burst of two and about one token an hour: the third call waits.
    let partner = partner_bff(
        &stack,
        data,
        &[],
        &[("TAILOR_PARTNER_PLAN_LIMITS", "trial=0.0003:2:1000")],
    )
    .await;
    let seen = codes(&partner, &key, 3).await;
    let only: Vec<Code> = seen.iter().map(|(code, _)| *code).collect();
    assert_eq!(only, [Code::Ok, Code::Ok, Code::ResourceExhausted]);
    let retry = seen[2]
        .1
        .as_ref()
        .unwrap()
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        retry > Duration::from_secs(60),
        "a token is an hour away: {retry:?}"
    );
}

#[tokio::test]
async fn a_malformed_plan_limit_stops_the_start_with_a_clear_message() {
    let output = tailor_e2e::command("tailor-partner-bff")
        .args(["--listen", "127.0.0.1:0", "--plan-limits", "trial=fast"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("<plan>=<per second>:<burst>:<per day>"),
        "{stderr}"
    );
}

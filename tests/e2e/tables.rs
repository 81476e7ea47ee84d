//! What strangers can make a BFF hold or do, tried the way an attacker
//! would: floods of made-up user names and API keys leave the real
//! process's memory where it was; sign-in attempts are slowed per client
//! address and per user name, and recover instead of locking anyone out.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tailor_e2e::{Process, Stack, api_key};
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::web::v1::SignInRequest;
use tailor_proto::web::v1::session_service_client::SessionServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// The resident memory of process `pid`, in KiB, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Resident memory once it has settled: the lowest of a few readings.
async fn settled_rss_kib(pid: u32) -> u64 {
    let mut lowest = u64::MAX;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        lowest = lowest.min(rss_kib(pid));
    }
    lowest
}

const MIB: u64 = 1024;

/// A BFF binary over `stack`, its files in `data`.
async fn bff(binary: &str, stack: &Stack, data: &Path, env: &[(&str, &str)]) -> Process {
    let data = data.to_str().unwrap();
    Process::start_bff(binary, data, &stack.downstream_urls(), &[], env, None).await
}

/// A channel to `server` from the loopback address `from` (127.0.0.0/8 is
/// all loopback, so tests can call from several addresses).
async fn channel_from(server: SocketAddr, from: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{server}"))
        .unwrap()
        .local_address(Some(from.parse::<IpAddr>().unwrap()))
        .connect()
        .await
        .unwrap()
}

/// The web BFF's data directory with user `ada` (password `lovelace`).
async fn web_data_with_ada() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let accounts =
        tailor_web_bff::Accounts::open(&data.path().join("web.db"), Duration::from_secs(3600))
            .unwrap();
    accounts.add_user("ada", "", "lovelace").await.unwrap();
    data
}

/// One sign-in from the loopback address `from`: OK or the status.
async fn sign_in(
    web: SocketAddr,
    from: &str,
    username: &str,
    password: &str,
) -> Result<(), tonic::Status> {
    let mut sessions = SessionServiceClient::new(channel_from(web, from).await);
    sessions
        .sign_in(SignInRequest {
            username: username.into(),
            password: password.into(),
        })
        .await
        .map(drop)
}

/// Asserts a refusal with RetryInfo naming `what`; returns the delay.
fn refused(result: Result<(), tonic::Status>, what: &str) -> Duration {
    let status = result.expect_err("the attempt is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(what), "{status:?}");
    let delay = status
        .get_details_retry_info()
        .and_then(|retry| retry.retry_delay)
        .expect("RetryInfo says when to come back");
    assert!(delay > Duration::ZERO, "{delay:?}");
    delay
}

#[tokio::test]
async fn a_hundred_one_megabyte_user_names_leave_the_web_bffs_memory_where_it_was() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let web = bff("tailor-web-bff", &stack, data.path(), &[]).await;
    let pid = web.child.id().unwrap();
    let mut sessions = SessionServiceClient::new(tailor_e2e::connect(web.address).await);
    let attempt = |username: String| SignInRequest {
        username,
        password: "secret".into(),
    };
    // The connection and the sign-in path as a caller first meets them.
    let warm_up = sessions.sign_in(attempt("nobody".into())).await;
    assert_eq!(warm_up.unwrap_err().code(), Code::Unauthenticated);
    let before = settled_rss_kib(pid).await;
    for n in 0..100u8 {
        let name = format!("{n:03}{}", "x".repeat((1 << 20) - 3));
        let status = sessions.sign_in(attempt(name)).await.unwrap_err();
        // Too long a name, or too large a message: refused either way.
        assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::ResourceExhausted
            ),
            "{status:?}"
        );
    }
    let after = settled_rss_kib(pid).await;
    println!(
        "web BFF RSS: {:.1} MiB before, {:.1} MiB after 100 sign-ins with 1 MB user names",
        before as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    assert!(
        after <= before + 10 * MIB,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn three_thousand_oversized_bogus_keys_leave_the_partner_bffs_memory_where_it_was() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let partner = bff("tailor-partner-bff", &stack, data.path(), &[]).await;
    let pid = partner.child.id().unwrap();
    let mut client = PartnerServiceClient::new(tailor_e2e::connect(partner.address).await);
    let call = |key: String| {
        api_key(
            &key,
            BatchGetAvailabilityRequest {
                product_ids: vec!["prod-000001".into()],
            },
        )
    };
    let warm_up = client
        .batch_get_availability(call(format!("tk_{:016x}_{}", 0, "ab".repeat(32))))
        .await;
    assert_eq!(warm_up.unwrap_err().code(), Code::Unauthenticated);
    let before = settled_rss_kib(pid).await;
    // Refused calls end their streams early; the server's HTTP/2 stack
    // closes a connection after about a thousand of those, so the flood
    // comes over a fresh connection every 500 calls, as an attacker's would.
    for n in 1..=3_000u64 {
        if n % 500 == 0 {
            client = PartnerServiceClient::new(tailor_e2e::connect(partner.address).await);
        }
        // A distinct key id each time, and a secret 60 times too long.
        let key = format!("tk_{n:016x}_{}", "ab".repeat(2_000));
        let status = client.batch_get_availability(call(key)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let oversized = settled_rss_kib(pid).await;
    // Well-formed keys with made-up ids reach the key store's cache.
    for n in 1..=3_000u64 {
        if n % 500 == 0 {
            client = PartnerServiceClient::new(tailor_e2e::connect(partner.address).await);
        }
        let key = format!("tk_{:016x}_{}", n << 20, "ab".repeat(32));
        let status = client.batch_get_availability(call(key)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let after = settled_rss_kib(pid).await;
    println!(
        "partner BFF RSS: {:.1} MiB before, {:.1} MiB after 3,000 oversized bogus keys, \
         {:.1} MiB after 3,000 more well-formed unknown ones",
        before as f64 / MIB as f64,
        oversized as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    assert!(
        oversized <= before + 10 * MIB,
        "RSS grew from {before} KiB to {oversized} KiB"
    );
    assert!(
        after <= before + 10 * MIB,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn one_password_sprayed_over_many_names_is_slowed_per_address() {
    let stack = Stack::start().await;
    let data = web_data_with_ada().await;
    // Four attempts at once per address, then one every 100 s.
    let env = [("TAILOR_WEB_SIGN_IN_ADDRESS_LIMITS", "0.01:4")];
    let web = bff("tailor-web-bff", &stack, data.path(), &env).await;
    let sprayer = "127.0.0.2";
    for name in ["alice", "bob", "carol", "dave"] {
        let status = sign_in(web.address, sprayer, name, "Summer2024!").await;
        assert_eq!(status.unwrap_err().code(), Code::Unauthenticated);
    }
    let delay = refused(
        sign_in(web.address, sprayer, "erin", "Summer2024!").await,
        "from this address",
    );
    assert!(delay <= Duration::from_secs(100), "{delay:?}");
    // Ada, elsewhere, signs in as usual.
    sign_in(web.address, "127.0.0.3", "ada", "lovelace")
        .await
        .expect("another address is not slowed");
}

#[tokio::test]
async fn guesses_at_one_name_are_slowed_and_the_user_gets_back_in() {
    let stack = Stack::start().await;
    let data = web_data_with_ada().await;
    // Two attempts at once per name, then one every 5 s.
    let env = [("TAILOR_WEB_SIGN_IN_LIMITS", "0.2:2")];
    let web = bff("tailor-web-bff", &stack, data.path(), &env).await;
    let (home, stranger, travelling) = ("127.0.0.3", "127.0.0.4", "127.0.0.5");
    sign_in(web.address, home, "ada", "lovelace").await.unwrap();
    // A stranger guesses Ada's password until the name's bucket is empty.
    let guess = sign_in(web.address, stranger, "ada", "guess-1").await;
    assert_eq!(guess.unwrap_err().code(), Code::Unauthenticated);
    refused(
        sign_in(web.address, stranger, "ada", "guess-2").await,
        "for this user",
    );
    // Where Ada signed in before, the stranger's guesses do not reach her.
    sign_in(web.address, home, "ada", "lovelace")
        .await
        .expect("a known address has its own allowance");
    // From a new address she waits too, but only seconds, not a day.
    let delay = refused(
        sign_in(web.address, travelling, "ada", "lovelace").await,
        "for this user",
    );
    assert!(delay <= Duration::from_secs(5), "{delay:?}");
    tokio::time::sleep(delay).await;
    sign_in(web.address, travelling, "ada", "lovelace")
        .await
        .expect("the limit recovers by itself");
}

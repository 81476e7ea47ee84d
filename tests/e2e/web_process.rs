//! The web BFF as its own process, configured the way an operator does it:
//! flags and environment variables, users added with `users add`, refusals
//! at start-up, the session store on disk and the log on stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use tailor_e2e::grpc_web::{self, Http, Mode};
use tailor_e2e::{Process, Stack};
use tailor_proto::web::v1::{
    GetSessionRequest, GetSessionResponse, ListProductsRequest, OrderLineInput, PlaceOrderRequest,
    SignInRequest, SignInResponse,
};
use tokio::io::AsyncWriteExt;
use tonic::Code;

const BINARY: &str = "tailor-web-bff";
const APP: &str = "http://app.test";
const LIST: &str = "/tailor.web.v1.ShopService/ListProducts";
const PLACE: &str = "/tailor.web.v1.ShopService/PlaceOrder";
const SIGN_IN: &str = "/tailor.web.v1.SessionService/SignIn";
const WHO: &str = "/tailor.web.v1.SessionService/GetSession";

/// `tailor-web-bff` on the data directory `data`.
fn command(data: &Path) -> tokio::process::Command {
    let mut command = tailor_e2e::command(BINARY);
    command.arg("--data-dir").arg(data);
    command
}

/// A running web BFF process with its data directory and its log.
struct WebBff {
    address: std::net::SocketAddr,
    data: tempfile::TempDir,
    log: PathBuf,
    _process: Process,
}

impl WebBff {
    /// Adds user `username` with `password` through `users add`, as an
    /// operator would, in a fresh data directory.
    async fn data_with_user(username: &str, password: &str) -> tempfile::TempDir {
        let data = tempfile::tempdir().unwrap();
        let mut child = command(data.path())
            .args(["users", "add", username])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert!(
            output.status.success(),
            "users add: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        data
    }

    /// Serves over the downstream services of `stack`, with `args` on the
    /// command line and `env` in the environment; waits until it listens.
    async fn start(
        stack: &Stack,
        data: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> WebBff {
        let log = data.path().join("stderr.log");
        let directory = data.path().to_str().unwrap().to_owned();
        let downstreams = stack.downstream_urls();
        let process =
            Process::start_bff(BINARY, &directory, &downstreams, args, env, Some(&log)).await;
        let address = process.address;
        WebBff {
            address,
            data,
            log,
            _process: process,
        }
    }

    /// A grpc-web call from the browser app at `origin` (with the CSRF
    /// header), with `cookie` when given.
    async fn call(
        &self,
        origin: &str,
        path: &str,
        message: &impl prost::Message,
        cookie: Option<&str>,
    ) -> grpc_web::Reply {
        let mut headers = vec![("origin", origin), ("x-tailor-csrf", "1")];
        if let Some(cookie) = cookie {
            headers.push(("cookie", cookie));
        }
        grpc_web::call(
            self.address,
            Http::One,
            Mode::Binary,
            path,
            message,
            &headers,
        )
        .await
    }

    /// Signs in from `origin`; the cookie to send back (`name=value`), the
    /// session handle in it and the session's end in Unix seconds.
    async fn sign_in(&self, origin: &str, username: &str, password: &str) -> (String, String, i64) {
        let request = SignInRequest {
            username: username.into(),
            password: password.into(),
        };
        let reply = self.call(origin, SIGN_IN, &request, None).await;
        assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
        let session = reply.decode::<SignInResponse>()[0].session.clone().unwrap();
        let set_cookie = reply.headers["set-cookie"].to_str().unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let handle = cookie
            .strip_prefix("tailor_session=")
            .unwrap_or_else(|| panic!("{set_cookie}"))
            .to_owned();
        (cookie, handle, session.expire_time.unwrap().seconds)
    }
}

/// A preflight of a grpc-web call from `origin`: the HTTP status and the
/// origin granted, if any.
async fn preflight(address: std::net::SocketAddr, origin: &str) -> (u16, Option<HeaderValue>) {
    let request = http::Request::options(format!("http://{address}{LIST}"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-tailor-csrf",
        )
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = grpc_web::open(address, Http::One, request).await;
    (
        response.status().as_u16(),
        response
            .headers()
            .get("access-control-allow-origin")
            .cloned(),
    )
}

fn order(key: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        idempotency_key: key.into(),
        lines: vec![OrderLineInput {
            product_id: "prod-000042".into(),
            quantity: 1,
        }],
    }
}

#[tokio::test]
async fn a_star_cors_origin_is_refused_at_start_up() {
    for (how, args, env) in [
        ("flag", &["--cors-origin", "*"][..], &[][..]),
        (
            "environment",
            &[][..],
            &[("TAILOR_WEB_CORS_ORIGINS", "*")][..],
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let run = command(data.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--jwt-hs256-secret",
                "a-real-secret",
            ])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the web BFF refused to start instead of serving")
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(!output.status.success(), "{how}: {:?}", output.status);
        assert!(!stdout.contains("listening on"), "{how}: {stdout}");
        assert!(
            stderr.contains("`*` is not an allowed origin"),
            "{how}: the refusal names the problem: {stderr}"
        );
    }
}

#[tokio::test]
async fn cors_origins_can_be_given_in_the_environment() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let web = WebBff::start(&stack, data, &[], &[("TAILOR_WEB_CORS_ORIGINS", APP)]).await;
    let (status, granted) = preflight(web.address, APP).await;
    assert_eq!(status, 204);
    assert_eq!(granted.unwrap(), APP);
    // The variable replaces the default origins, as the flag would.
    let (status, granted) = preflight(web.address, "http://localhost:8080").await;
    assert_eq!(status, 403);
    assert_eq!(granted, None);
}

#[tokio::test]
async fn sessions_end_after_the_configured_ttl() {
    let stack = Stack::start().await;
    let data = WebBff::data_with_user("ada", "lovelace").await;
    let web = WebBff::start(
        &stack,
        data,
        &["--cors-origin", APP, "--session-ttl-secs", "3"],
        &[],
    )
    .await;
    let (cookie, _, expires_at) = web.sign_in(APP, "ada", "lovelace").await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(
        (2..=3).contains(&(expires_at - now.as_secs() as i64)),
        "the session ends 3 s after it began: {expires_at} at {now:?}"
    );

    // Within its lifetime the cookie is the user.
    let reply = web
        .call(APP, WHO, &GetSessionRequest {}, Some(&cookie))
        .await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
    let session = reply.decode::<GetSessionResponse>()[0].session.clone();
    assert_eq!(session.unwrap().user_id, "user-ada");
    let reply = web.call(APP, PLACE, &order("ttl-1"), Some(&cookie)).await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");

    // Once the announced end has passed, it is no session at all.
    let end = UNIX_EPOCH + Duration::from_secs(expires_at as u64);
    while let Ok(left) = end.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    let reply = web
        .call(APP, WHO, &GetSessionRequest {}, Some(&cookie))
        .await;
    assert_eq!(reply.code(), Some(Code::Unauthenticated), "{reply:?}");
    let reply = web.call(APP, PLACE, &order("ttl-2"), Some(&cookie)).await;
    assert_eq!(reply.code(), Some(Code::Unauthenticated), "{reply:?}");
    // A stale cookie blocks nothing open to anonymous callers, nor signing
    // in again.
    let list = ListProductsRequest {
        page_size: 1,
        ..Default::default()
    };
    let reply = web.call(APP, LIST, &list, Some(&cookie)).await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
    let (fresh, _, _) = web.sign_in(APP, "ada", "lovelace").await;
    assert_ne!(fresh, cookie);
    let reply = web
        .call(APP, WHO, &GetSessionRequest {}, Some(&fresh))
        .await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
}

/// Every byte the web BFF's SQLite store holds on disk (the database and
/// its write-ahead log).
fn store_bytes(data: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        if name.starts_with("web.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_session_store_keeps_only_hashes_of_cookie_handles() {
    let stack = Stack::start().await;
    let data = WebBff::data_with_user("ada", "lovelace").await;
    let web = WebBff::start(&stack, data, &["--cors-origin", APP], &[]).await;
    let (cookie, handle, _) = web.sign_in(APP, "ada", "lovelace").await;
    let reply = web
        .call(APP, WHO, &GetSessionRequest {}, Some(&cookie))
        .await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");

    let stored = store_bytes(web.data.path());
    let hash = tailor_auth::hash_session_handle(&handle);
    assert!(
        contains(&stored, &hash),
        "the session is in the store, by the SHA-256 of its handle"
    );
    assert!(
        !contains(&stored, handle.as_bytes()),
        "the handle itself is not stored"
    );
    assert!(!contains(&stored, b"lovelace"), "nor is the password");
}

/// The JSON lines of the log at `log`, once one of them satisfies `done`
/// (the last line of a call is written just after its answer).
async fn json_log(
    log: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let read = async {
        loop {
            let text = std::fs::read_to_string(log).unwrap();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|line| {
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
                })
                .collect();
            if done(&lines) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the log lacks the expected lines:\n{}",
                std::fs::read_to_string(log).unwrap()
            )
        })
}

#[tokio::test]
async fn json_logs_chosen_in_the_environment_carry_every_calls_request_id() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let web = WebBff::start(&stack, data, &[], &[("TAILOR_LOG_FORMAT", "json")]).await;
    let list = ListProductsRequest {
        page_size: 1,
        ..Default::default()
    };
    // A call with the caller's id, one refused by auth with a minted id, and
    // one refused by CORS before the body is read.
    let given = grpc_web::call(
        web.address,
        Http::Two,
        Mode::Binary,
        LIST,
        &list,
        &[("x-request-id", "json-log-1")],
    )
    .await;
    assert_eq!(given.code(), Some(Code::Ok), "{given:?}");
    let refused = grpc_web::call(
        web.address,
        Http::One,
        Mode::Text,
        PLACE,
        &order("json-log"),
        &[],
    )
    .await;
    assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused:?}");
    let foreign = grpc_web::call(
        web.address,
        Http::One,
        Mode::Binary,
        LIST,
        &list,
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(foreign.code(), Some(Code::PermissionDenied), "{foreign:?}");
    let minted = |reply: &grpc_web::Reply| -> String {
        let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        assert!(!id.is_empty());
        id
    };
    let calls = [
        ("json-log-1".to_owned(), LIST, "OK"),
        (minted(&refused), PLACE, "Unauthenticated"),
        (minted(&foreign), LIST, "PermissionDenied"),
    ];

    let is_access = |line: &serde_json::Value| line["target"] == "access";
    let lines = json_log(&web.log, |lines| {
        lines.iter().filter(|line| is_access(line)).count() >= calls.len()
    })
    .await;
    let access: Vec<&serde_json::Value> = lines.iter().filter(|line| is_access(line)).collect();
    assert_eq!(access.len(), calls.len(), "one line per call: {access:#?}");
    for line in &access {
        let id = line["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "an access line without request_id: {line}");
    }
    for (id, method, status) in calls {
        let line = access
            .iter()
            .find(|line| line["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no access line for {id}: {access:#?}"));
        assert_eq!(line["method"], method, "{line}");
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["server"], "web-bff", "{line}");
    }
}

#[tokio::test]
async fn a_daily_sign_in_cap_is_refused_at_start_up() {
    // A per-day cap would let a stranger lock a user out until midnight, so
    // sign-in limits are rates only (`<per second>:<burst>`); the old
    // three-part form stops the start instead of being half understood.
    let data = tempfile::tempdir().unwrap();
    let run = command(data.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("TAILOR_WEB_SIGN_IN_LIMITS", "100:100:3")
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the web BFF refused to start instead of serving")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{:?}", output.status);
    assert!(
        stderr.contains("expected <per second>:<burst>"),
        "the refusal names the form: {stderr}"
    );
}

#[tokio::test]
async fn a_line_break_in_a_callers_name_cannot_forge_a_log_line() {
    let stack = Stack::start().await;
    let web = WebBff::start(&stack, tempfile::tempdir().unwrap(), &[], &[]).await;
    let forged = "mallory\nINFO access: call status=OK caller=admin";
    let token = tailor_auth::mint_hs256(
        tailor_e2e::SECRET,
        &tailor_e2e::claims(forged, tailor_web_bff::DEFAULT_AUDIENCE),
    );
    let mut client = tailor_proto::web::v1::shop_service_client::ShopServiceClient::new(
        tailor_e2e::connect(web.address).await,
    );
    client
        .list_products(tailor_e2e::bearer(&token, ListProductsRequest::default()))
        .await
        .unwrap();
    let mut text = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("mallory") {
        assert!(
            std::time::Instant::now() < deadline,
            "no access line: {text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = std::fs::read_to_string(&web.log).unwrap();
    }
    assert!(text.contains(r"mallory\nINFO"), "escaped in place: {text}");
    assert!(
        !text.lines().any(|line| line.starts_with("INFO access")),
        "a forged line: {text}"
    );
}

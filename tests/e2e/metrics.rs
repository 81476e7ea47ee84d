//! Metrics as an operator reads them: a real Prometheus (Debian's
//! `prometheus` package, which `tests/run.sh` installs) scrapes the running
//! stack with the repository's configuration (`deploy/prometheus`), and its
//! HTTP API answers how many calls each client type made, which failed, and
//! how the downstream services counted them; the Grafana dashboards
//! (`deploy/grafana`) parse and ask only for metrics the servers export; a
//! server process told where an OTLP collector is pushes the same metrics
//! there.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tailor_e2e::grpc_web::{self, Http, Mode};
use tailor_e2e::{Process, Stack, all_scopes, api_key};
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient as WebClient;
use tailor_proto::web::v1::{GetProductPageRequest, ListProductsRequest};
use tonic::Code;

/// The repository root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the Debian package puts Prometheus (`PROMETHEUS_PATH` overrides).
fn prometheus_binary() -> PathBuf {
    let path = std::env::var_os("PROMETHEUS_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.is_file(),
        "Prometheus is not installed at {}: tests/run.sh installs Debian's `prometheus` \
         package (or set PROMETHEUS_PATH to a prometheus binary)",
        path.display()
    );
    path
}

/// A plain HTTP GET of `path` at `address` over `http`: status and body.
async fn get(
    address: SocketAddr,
    http: Http,
    path: &str,
) -> (http::StatusCode, http::HeaderMap, String) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let io = TokioIo::new(tcp);
    let request = http::Request::get(format!("http://{address}{path}"))
        .header(http::header::HOST, address.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = match http {
        Http::One => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
        Http::Two => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every server's admin address as the targets file of `tailor up` lists
/// it: `server` on each, `client_type` on the BFFs.
fn targets_file(stack: &Stack) -> String {
    let targets: Vec<Value> = stack
        .servers()
        .iter()
        .map(|(name, server)| {
            let mut labels = serde_json::json!({ "server": name });
            if let Some(client) = name.strip_suffix("-bff") {
                labels["client_type"] = client.into();
            }
            serde_json::json!({ "targets": [server.admin.to_string()], "labels": labels })
        })
        .collect();
    serde_json::to_string_pretty(&targets).unwrap()
}

/// A Prometheus process on a free loopback port, with the repository's
/// configuration.
struct Prometheus {
    address: SocketAddr,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `deploy/prometheus/prometheus.yml`, laid out
    /// as in the repository (the targets file at the path it names,
    /// relative to it), scraping every second instead of every five.
    async fn start(targets: &str) -> Prometheus {
        let binary = prometheus_binary();
        let mut dir = tempfile::tempdir().unwrap();
        let original =
            std::fs::read_to_string(repository().join("deploy/prometheus/prometheus.yml")).unwrap();
        let mut config = original.clone();
        for (from, to) in [
            ("scrape_interval: 5s", "scrape_interval: 1s"),
            ("scrape_timeout: 4s", "scrape_timeout: 1s"),
            ("refresh_interval: 5s", "refresh_interval: 1s"),
        ] {
            assert!(config.contains(from), "the configuration sets {from}");
            config = config.replace(from, to);
        }
        let config_path = dir.path().join("deploy/prometheus/prometheus.yml");
        std::fs::create_dir_all(config_path.parent().unwrap()).unwrap();
        std::fs::write(&config_path, config).unwrap();
        // Where the configuration looks for the file `tailor up` writes.
        let targets_path = dir.path().join("data/prometheus/targets.json");
        assert!(original.contains("../../data/prometheus/targets.json"));
        std::fs::create_dir_all(targets_path.parent().unwrap()).unwrap();
        std::fs::write(&targets_path, targets).unwrap();

        // Prometheus does not say which port it bound, so it is given one
        // free a moment ago; another test may take it first, and then
        // Prometheus stops at once: it gets another.
        for attempt in 1.. {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let child = tokio::process::Command::new(&binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address={address}"))
                .arg("--log.level=warn")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            let mut prometheus = Prometheus {
                address,
                child,
                _dir: dir,
            };
            let started = Instant::now();
            loop {
                if let Ok(Some(status)) = prometheus.child.try_wait() {
                    let log = prometheus.log();
                    if attempt < 3 && log.contains("address already in use") {
                        break;
                    }
                    panic!("Prometheus exited at start ({status}):\n{log}");
                }
                if tokio::net::TcpStream::connect(address).await.is_ok()
                    && get(address, Http::One, "/-/ready").await.0 == http::StatusCode::OK
                {
                    return prometheus;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "Prometheus did not get ready in 10 s:\n{}",
                    prometheus.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            dir = prometheus._dir;
        }
        unreachable!("attempts are counted without end")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The result of the instant query `expr`: each series' labels and value.
    async fn query(&self, expr: &str) -> Vec<(HashMap<String, String>, f64)> {
        let (status, _, body) = get(
            self.address,
            Http::One,
            &format!("/api/v1/query?query={}", encode(expr)),
        )
        .await;
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status, http::StatusCode::OK, "{expr}: {body}");
        assert_eq!(answer["status"], "success", "{expr}: {body}");
        answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|series| {
                let labels = series["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// The value of `expr`, a query with one series or none (0).
    async fn value(&self, expr: &str) -> f64 {
        let result = self.query(expr).await;
        assert!(result.len() <= 1, "{expr} has several series: {result:?}");
        result.first().map_or(0.0, |(_, value)| *value)
    }

    /// `expr` by the value of `label`.
    async fn by(&self, label: &str, expr: &str) -> HashMap<String, f64> {
        self.query(expr)
            .await
            .into_iter()
            .map(|(labels, value)| (labels.get(label).cloned().unwrap_or_default(), value))
            .collect()
    }

    /// Waits until `expr` is `expected`: a scrape or two after the calls.
    async fn until(&self, expr: &str, expected: f64) {
        let started = Instant::now();
        loop {
            let value = self.value(expr).await;
            if value == expected {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{expr} is {value}, not {expected}, after 8 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

const WEB_LIST: &str = "tailor.web.v1.ShopService/ListProducts";
const WEB_PAGE: &str = "tailor.web.v1.ShopService/GetProductPage";
const MOBILE_PAGE: &str = "tailor.mobile.v1.ShopService/GetProductPage";
const PARTNER_AVAILABILITY: &str = "tailor.partner.v1.PartnerService/BatchGetAvailability";

async fn web_list(web: &mut WebClient<tonic::transport::Channel>) {
    web.list_products(ListProductsRequest {
        page_size: 3,
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn mobile_page(mobile: &mut MobileClient<tonic::transport::Channel>) {
    mobile
        .get_product_page(tailor_proto::mobile::v1::GetProductPageRequest {
            product_id: "prod-000042".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn partner_availability(
    partner: &mut PartnerServiceClient<tonic::transport::Channel>,
    key: &str,
) -> Result<(), tonic::Status> {
    partner
        .batch_get_availability(api_key(
            key,
            BatchGetAvailabilityRequest {
                product_ids: vec!["prod-000001".into(), "prod-000002".into()],
            },
        ))
        .await
        .map(drop)
}

/// A grpc-web ListProducts, as the browser app sends it.
async fn grpc_web_list(stack: &Stack) {
    let request = grpc_web::request(
        stack.web.address,
        &format!("/{WEB_LIST}"),
        Mode::Binary,
        grpc_web::body(
            Mode::Binary,
            &grpc_web::frame(&ListProductsRequest {
                page_size: 3,
                ..Default::default()
            }),
        ),
    );
    let response = grpc_web::open(stack.web.address, Http::One, request).await;
    let reply = grpc_web::read(Mode::Binary, response).await;
    assert_eq!(reply.code(), Some(Code::Ok), "{}", reply.message());
}

#[tokio::test]
async fn a_real_prometheus_sees_each_client_types_calls_errors_and_downstream_split() {
    let stack = Stack::start().await;
    let prometheus = Prometheus::start(&targets_file(&stack)).await;
    let mut web = WebClient::new(stack.web.channel().await);
    let mut mobile = MobileClient::new(stack.mobile.channel().await);
    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);
    let key = stack.partner_key.clone();

    // Every server is a target, up, labelled as the targets file says.
    prometheus
        .until(r#"count(up{job="tailor"} == 1)"#, 7.0)
        .await;
    let up = prometheus
        .by("server", r#"up{job="tailor", client_type="mobile"}"#)
        .await;
    assert_eq!(up, HashMap::from([("mobile-bff".to_owned(), 1.0)]));

    // One call of each client first, so that the series exist before the
    // calls whose rate is measured.
    web_list(&mut web).await;
    mobile_page(&mut mobile).await;
    partner_availability(&mut partner, &key).await.unwrap();
    let calls = |server: &str, method: &str| {
        format!(r#"sum(rpc_server_calls_total{{server="{server}", method="{method}"}})"#)
    };
    prometheus.until(&calls("web-bff", WEB_LIST), 1.0).await;
    prometheus
        .until(&calls("mobile-bff", MOBILE_PAGE), 1.0)
        .await;
    prometheus
        .until(&calls("partner-bff", PARTNER_AVAILABILITY), 1.0)
        .await;
    let rates = r#"sum by (client_type) (rate(rpc_server_calls_total{method!~"grpc[.].*"}[10s]))"#;
    // Quiet: every client type's rate is there, and 0 (a second scrape
    // with the same counts).
    let started = Instant::now();
    loop {
        let quiet = prometheus.by("client_type", rates).await;
        if quiet.len() == 3 && quiet.values().all(|r| *r == 0.0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "no quiet rates of the three client types: {quiet:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for _ in 0..20 {
        web_list(&mut web).await;
    }
    for _ in 0..5 {
        grpc_web_list(&stack).await;
    }
    for _ in 0..3 {
        let missing = web
            .get_product_page(GetProductPageRequest {
                product_id: "prod-999999".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    }
    for _ in 0..10 {
        mobile_page(&mut mobile).await;
    }
    for _ in 0..4 {
        partner_availability(&mut partner, &key).await.unwrap();
    }
    prometheus.until(&calls("web-bff", WEB_LIST), 26.0).await;
    prometheus
        .until(&calls("mobile-bff", MOBILE_PAGE), 11.0)
        .await;
    prometheus
        .until(&calls("partner-bff", PARTNER_AVAILABILITY), 5.0)
        .await;

    // The rate of calls moved, for each client type.
    let moved = prometheus.by("client_type", rates).await;
    for client in ["web", "mobile", "partner"] {
        assert!(
            moved.get(client).is_some_and(|r| *r > 0.0),
            "{client}: {moved:?}"
        );
    }
    let bff_rates = prometheus
        .by(
            "client_type",
            r#"sum by (client_type) (rate(rpc_server_calls_total{server=~".*-bff", method!~"grpc[.].*"}[10s]))"#,
        )
        .await;
    assert!(bff_rates["web"] > bff_rates["partner"], "{bff_rates:?}");

    // Errors under the right status and client type, at the BFF and at the
    // service that answered them.
    // Polled: a scrape may have come before the last error was counted.
    let expected = HashMap::from([("NOT_FOUND".to_owned(), 3.0)]);
    let mut statuses = HashMap::new();
    for _ in 0..40 {
        statuses = prometheus
            .by(
                "status",
                &format!(r#"sum by (status) (rpc_server_calls_total{{server="web-bff", method="{WEB_PAGE}"}})"#),
            )
            .await;
        if statuses == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(statuses, expected);
    // (A page asks the catalogue for the product and its relatives.)
    let answered = prometheus
        .value(r#"sum(rpc_client_calls_total{server="web-bff", target="catalog", status="NOT_FOUND"})"#)
        .await;
    assert!(answered >= 3.0, "{answered}");
    prometheus
        .until(
            r#"sum(rpc_server_calls_total{server="catalog", client_type="web", status="NOT_FOUND"})"#,
            answered,
        )
        .await;
    let not_found_at_catalog = prometheus
        .by(
            "client_type",
            r#"sum by (client_type) (rpc_server_calls_total{server="catalog", status="NOT_FOUND"})"#,
        )
        .await;
    assert_eq!(
        not_found_at_catalog,
        HashMap::from([("web".to_owned(), answered)])
    );

    // grpc-web and native gRPC apart.
    let protocols = prometheus
        .by(
            "protocol",
            &format!(r#"sum by (protocol) (rpc_server_calls_total{{server="web-bff", method="{WEB_LIST}"}})"#),
        )
        .await;
    assert_eq!(
        protocols,
        HashMap::from([("grpc".to_owned(), 21.0), ("grpc-web".to_owned(), 5.0)])
    );

    // Each downstream service counts under a client type exactly the calls
    // that client's BFF made to it (once its latest scrape is as late as
    // the BFF's).
    for target in ["catalog", "inventory", "reviews", "orders"] {
        for client in ["web", "mobile", "partner"] {
            let made = prometheus
                .value(&format!(
                    r#"sum(rpc_client_calls_total{{server="{client}-bff", target="{target}"}})"#
                ))
                .await;
            let served = format!(
                r#"sum(rpc_server_calls_total{{server="{target}", client_type="{client}", method!~"grpc[.].*"}})"#
            );
            prometheus.until(&served, made).await;
        }
    }
    let catalog = prometheus
        .by(
            "client_type",
            r#"sum by (client_type) (rpc_server_calls_total{server="catalog", method!~"grpc[.].*"})"#,
        )
        .await;
    assert!(catalog["web"] >= 24.0, "{catalog:?}");
    assert!(catalog["mobile"] >= 11.0, "{catalog:?}");
    assert!(
        !catalog.contains_key("unknown"),
        "every call at a downstream service is labelled with a client type: {catalog:?}"
    );
    let inventory = prometheus
        .by(
            "client_type",
            r#"sum by (client_type) (rpc_server_calls_total{server="inventory", method!~"grpc[.].*"})"#,
        )
        .await;
    assert!(inventory["partner"] >= 5.0, "{inventory:?}");

    // Latency histograms: every answered call is in the count.
    assert_eq!(
        prometheus
            .value(&format!(
                r#"sum(rpc_server_call_duration_seconds_count{{server="mobile-bff", method="{MOBILE_PAGE}"}})"#
            ))
            .await,
        11.0
    );
    let p99 = prometheus
        .value(&format!(
            r#"histogram_quantile(0.99, sum by (le) (rpc_server_call_duration_seconds_bucket{{server="mobile-bff", method="{MOBILE_PAGE}"}}))"#
        ))
        .await;
    assert!(p99 > 0.0 && p99 <= 10.0, "{p99}");

    // Every query of the dashboards is valid PromQL for this Prometheus.
    for (_, expr) in dashboard_queries() {
        prometheus
            .query(&expr.replace("$__rate_interval", "5s"))
            .await;
    }
}

/// A catalog of its own that admits one mobile call at a time and queues
/// none, each taking 300 ms: of three mobile calls at once, at least one is
/// refused at admission. Returns the catalog, which ends when dropped.
async fn admission_refusal(stack: &Stack) -> Process {
    let data = stack.dir.path().join("admission-catalog");
    std::fs::create_dir_all(&data).unwrap();
    let catalog = Process::start(
        "tailor-catalog",
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--products",
            "20",
            "--admission",
            "mobile=1:0",
            "--inject-latency-ms",
            "300",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let channel = tailor_e2e::connect_mesh(catalog.address, "catalog", "mobile-bff").await;
    let client =
        tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient::new(channel);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .get_product(tailor_proto::catalog::v1::GetProductRequest {
                        id: "prod-000001".into(),
                    })
                    .await
            })
        })
        .collect();
    let mut refused = 0;
    for call in calls {
        if let Err(status) = call.await.unwrap() {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            refused += 1;
        }
    }
    assert!(refused >= 1, "no call was refused at admission");
    catalog
}

/// Every `(dashboard file, query)` of `deploy/grafana`, after checking
/// each file is a Grafana dashboard with a Prometheus data source
/// variable that every panel uses.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(repository().join("deploy/grafana")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        found.insert(name.clone());
        assert!(
            dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{name}"
        );
        assert!(dashboard["title"].as_str().is_some(), "{name}");
        assert!(dashboard["schemaVersion"].as_u64().is_some(), "{name}");
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(
            variables.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{name} has a Prometheus data source variable"
        );
        let panels = dashboard["panels"].as_array().unwrap();
        let mut ids = BTreeSet::new();
        for panel in panels {
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{name}: panel ids are unique"
            );
            let grid = &panel["gridPos"];
            assert!(
                grid["w"].as_u64().is_some_and(|w| w <= 24),
                "{name}: {panel}"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {panel}"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {}", panel["title"]);
            for target in targets {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{name}");
                queries.push((name.clone(), target["expr"].as_str().unwrap().to_owned()));
            }
        }
    }
    assert_eq!(
        found,
        BTreeSet::from([
            "mobile-bff.json".to_owned(),
            "partner-bff.json".to_owned(),
            "web-bff.json".to_owned(),
        ])
    );
    queries
}

/// The metric names a PromQL expression reads: identifiers outside label
/// matchers, ranges, strings and `by (...)` lists that are not followed by
/// `(` (functions) and are not keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 10] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
    ];
    // Aggregations may be followed by `by (...)` before their `(`.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    // Blank out `{...}`, `[...]` and quoted strings.
    let mut plain = String::new();
    let mut depth = 0;
    let mut quoted = false;
    let mut escaped = false;
    for c in expr.chars() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            plain.push(' ');
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                plain.push(' ');
            }
            '{' | '[' => {
                depth += 1;
                plain.push(' ');
            }
            '}' | ']' => {
                depth -= 1;
                plain.push(' ');
            }
            _ if depth > 0 => plain.push(' '),
            _ => plain.push(c),
        }
    }
    let mut names = BTreeSet::new();
    let chars: Vec<char> = plain.chars().collect();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if KEYWORDS.contains(&word.as_str()) {
                after_grouping = matches!(word.as_str(), "by" | "without" | "on" | "ignoring");
            } else if next != Some(&'(') && !AGGREGATIONS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else if c == '(' && after_grouping {
            // Skip the label list of `by (...)`.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            after_grouping = false;
            i += 1;
        } else {
            if !c.is_whitespace() {
                after_grouping = false;
            }
            i += 1;
        }
    }
    names.retain(|n| n.parse::<f64>().is_err());
    names
}

/// The metric names `/metrics` of a server lists: each family, and for a
/// histogram its `_bucket`, `_sum` and `_count` series.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            } else {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, method) (rate(a_seconds_bucket{server="x", method!~"grpc[.].*"}[$__rate_interval]))) / on (job) group_left b_total or up{job="tailor"}"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_seconds_bucket".into(), "b_total".into(), "up".into()])
    );
}

#[tokio::test]
async fn the_dashboards_ask_only_for_metrics_the_servers_export() {
    let stack = Stack::start().await;
    let mut web = WebClient::new(stack.web.channel().await);
    let mut mobile = MobileClient::new(stack.mobile.channel().await);
    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);

    // Traffic that makes every series appear: calls of each client type,
    // grpc-web, an unknown method, a rate-limit refusal (a trial key's
    // burst is 10), an admission refusal, and, with the reviews service
    // gone, retries, calls refused by the open circuit and degraded parts.
    web_list(&mut web).await;
    grpc_web_list(&stack).await;
    mobile_page(&mut mobile).await;
    let (trial, _) = stack
        .keys
        .create("metrics", "trial", &all_scopes(), "trial")
        .await
        .unwrap();
    let mut refused = false;
    for _ in 0..30 {
        if let Err(status) = partner_availability(&mut partner, &trial.token).await {
            assert_eq!(status.code(), Code::ResourceExhausted);
            refused = true;
            break;
        }
    }
    assert!(refused, "the trial key's burst ran out");
    let mut unknown = tonic::client::Grpc::new(stack.web.channel().await);
    unknown.ready().await.unwrap();
    let status = unknown
        .unary::<ListProductsRequest, ListProductsRequest, _>(
            tonic::Request::new(ListProductsRequest::default()),
            http::uri::PathAndQuery::from_static("/tailor.web.v1.ShopService/NoSuchMethod"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let admission_catalog = admission_refusal(&stack).await;
    let reviews_admin = stack.reviews.admin;
    stack.reviews.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Pages at once: their reviews calls' failures open the circuit.
    let pages: Vec<_> = (0..16)
        .map(|n| {
            let mut web = web.clone();
            tokio::spawn(async move {
                web.get_product_page(GetProductPageRequest {
                    product_id: format!("prod-{:06}", 40 + n),
                })
                .await
                .unwrap()
                .into_inner()
            })
        })
        .collect();
    for page in pages {
        let page = page.await.unwrap();
        assert!(!page.degraded_sections.is_empty(), "{page:?}");
    }
    let page = web
        .get_product_page(GetProductPageRequest {
            product_id: "prod-000042".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!page.degraded_sections.is_empty(), "{page:?}");

    let mut exported = BTreeSet::new();
    for (name, server) in stack.servers() {
        if server.admin == reviews_admin {
            continue;
        }
        for http in [Http::One, Http::Two] {
            let (status, headers, text) = get(server.admin, http, "/metrics").await;
            assert_eq!(status, http::StatusCode::OK, "{name}");
            assert_eq!(
                headers[http::header::CONTENT_TYPE],
                "text/plain; version=0.0.4; charset=utf-8"
            );
            // Each server answers for its own series only.
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                assert!(
                    line.contains(&format!("server=\"{name}\"")),
                    "{name}: {line}"
                );
            }
            exported.extend(exported_names(&text));
        }
        let (status, _, text) = get(server.admin, Http::One, "/livez").await;
        assert_eq!((status, text.as_str()), (http::StatusCode::OK, "ok\n"));
    }
    let admission_admin = admission_catalog
        .admin
        .expect("the catalog announces its admin port");
    let (_, _, text) = get(admission_admin, Http::One, "/metrics").await;
    assert!(
        text.contains(r#"reason="admission""#),
        "the catalog counted its admission refusal:\n{text}"
    );
    exported.extend(exported_names(&text));
    // Prometheus adds `up` per target itself.
    exported.insert("up".to_owned());

    let (_, _, web_metrics) = get(stack.web.admin, Http::One, "/metrics").await;
    assert!(
        web_metrics
            .contains(r#"method="other",protocol="grpc",server="web-bff",status="UNIMPLEMENTED""#),
        "an unknown method is counted as `other`:\n{web_metrics}"
    );
    assert!(!web_metrics.contains("NoSuchMethod"));
    let (_, _, partner_metrics) = get(stack.partner.admin, Http::One, "/metrics").await;
    assert!(
        partner_metrics.contains(
            r#"tailor_rate_limit_refusals_total{client_type="partner",limit="rate",plan="trial",server="partner-bff"} 1"#
        ),
        "{partner_metrics}"
    );
    assert!(
        web_metrics.contains(
            r#"tailor_degraded_parts_total{client_type="web",section="reviews",server="web-bff"} 1"#
        ),
        "{web_metrics}"
    );

    let queries = dashboard_queries();
    assert!(queries.len() >= 30, "{} queries", queries.len());
    for (dashboard, expr) in queries {
        for name in metric_names(&expr) {
            assert!(
                exported.contains(&name),
                "{dashboard} asks for {name}, which no server exports: {expr}\nexported: {exported:?}"
            );
        }
    }
}

/// An OTLP/gRPC metrics collector on a loopback port, keeping every
/// request.
#[derive(Clone, Default)]
struct MetricsCollector {
    received: std::sync::Arc<
        std::sync::Mutex<
            Vec<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>,
        >,
    >,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService
    for MetricsCollector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse,
        >,
        tonic::Status,
    > {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

/// The string value of attribute `key` in `attributes`.
fn otlp_attribute(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    match attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        Any::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

impl MetricsCollector {
    /// The latest value pushed by service `service` of the counter `name`
    /// for the data point whose attributes include `labels`.
    fn counter(&self, service: &str, name: &str, labels: &[(&str, &str)]) -> Option<i64> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
        let received = self.received.lock().unwrap();
        let mut latest = None;
        for request in received.iter() {
            for resource in &request.resource_metrics {
                let attributes = resource.resource.as_ref().map(|r| &r.attributes[..]);
                if otlp_attribute(attributes.unwrap_or_default(), "service.name").as_deref()
                    != Some(service)
                {
                    continue;
                }
                for metric in resource.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    let Some(Data::Sum(sum)) = metric.data.as_ref().filter(|_| metric.name == name)
                    else {
                        continue;
                    };
                    for point in &sum.data_points {
                        let matches = labels.iter().all(|(key, value)| {
                            otlp_attribute(&point.attributes, key).as_deref() == Some(*value)
                        });
                        if let (true, Some(Number::AsInt(value))) = (matches, point.value) {
                            latest = Some(value);
                        }
                    }
                }
            }
        }
        latest
    }
}

#[tokio::test]
async fn a_server_pushes_its_metrics_to_the_otlp_collector_it_is_given() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let collector = MetricsCollector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer::new(
                    collector.clone(),
                ),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut catalog = Process::start_with(
        "tailor-catalog",
        &["--data-dir", data, "--products", "50"],
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ],
        None,
    )
    .await;
    let channel = tailor_e2e::connect_mesh(catalog.address, "catalog", "mobile-bff").await;
    let mut client =
        tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient::new(channel);
    for _ in 0..3 {
        client
            .get_product(tailor_proto::catalog::v1::GetProductRequest {
                id: "prod-000001".into(),
            })
            .await
            .unwrap();
    }
    let labels = [
        ("server", "catalog"),
        ("client_type", "mobile"),
        ("method", "tailor.catalog.v1.CatalogService/GetProduct"),
        ("status", "OK"),
        ("protocol", "grpc"),
    ];
    let started = Instant::now();
    while collector.counter("catalog", "rpc.server.calls", &labels) != Some(3) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the collector did not receive the three calls: {:?}",
            collector.counter("catalog", "rpc.server.calls", &labels)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last export at shutdown does not hold up the exit.
    catalog.terminate();
    let status = catalog.exited(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
}

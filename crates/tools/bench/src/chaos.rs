//! `tailor-bench chaos`: the isolation claims, measured. Starts a whole
//! stack of its own (loopback, free ports, a temporary data directory),
//! drives a steady open-loop load of web product pages through it from
//! start to end, and applies one fault after the other, each between a
//! phase before and a phase after it:
//!
//! - (a) the mobile BFF killed;
//! - (b) the mobile BFF flooded with ten times the pages it can serve;
//! - (c) a partner key flooding the partner BFF far past its rate limit;
//! - (d) the reviews service killed;
//! - (e) the inventory service slowed past the page's optional-part timeout;
//! - (f) the catalog failing every second call.
//!
//! For every phase it reports the web pages offered, answered, failed (by
//! status) and degraded, and their p50/p99 latency, counted from when each
//! call was due; then checks the targets: in (a)–(c) no web error and a
//! p99 at most 1.25 times the p99 without the fault (the lower of the
//! phases before and after it); in (d) and (e) every page answered and
//! marked degraded, with a p99 at most the optional-part timeout above
//! that (in (e) plus the timer's resolution); in (f) no web error, the web BFF's
//! retries to the catalog (within their budget, which bounds retries in
//! flight) making up for the failures. The report counts the retries, the
//! catalog calls and the retries the budget refused.
//!
//! **Separate hosts on one machine.** With two or more CPUs every process
//! is pinned (`taskset`): the mobile and partner BFFs and the flood
//! generators to CPU 1, as the hosts of the other client types; the web
//! BFF, the web load (this process) and the downstream services to CPU 0.
//! So a flood reaches the web side only where the system really shares
//! something, the downstream services, and their lanes (each client
//! type's calls on threads of its own) and fair admission are what keep
//! it from crowding out web calls. The services reserve each side's CPU
//! for that side's lane (`--lane-cpus`): their mobile and partner threads
//! run on CPU 1, beside the BFFs and floods they serve.
//!
//! The services cannot have a CPU of their own on two cores, so where they
//! share one, the niceness says who would not wait for whom on hosts of
//! their own: on CPU 0 the services run at niceness 5, so the web BFF and
//! the web load are served first; on CPU 1 the BFFs and the floods run at
//! niceness 10, so the services' mobile and partner threads are served
//! first ([`CLIENTS_NICE`] says what that mends). Both hold before and
//! during every fault alike. `--shared-lane-cpus` keeps every lane on
//! CPU 0 and the other side at niceness 0.
//!
//! Bounded: each phase lasts `--phase-secs`, the floods stop with their
//! phase, everything listens on 127.0.0.1 and is stopped at the end (and
//! exits by itself if this program dies). `--short` runs phases of a few
//! seconds with loose targets (for the test suite on a busy machine);
//! the table in the docs comes from the default long mode on a release
//! build.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tailor_proto::web::v1::GetProductPageRequest;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient as WebClient;
use tokio::process::{Child, Command};
use tonic::Code;
use tonic::transport::Channel;

use tailor_screens::OPTIONAL_PART_TIMEOUT;

/// Flags of `tailor-bench chaos`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the server binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Short mode: phases of a few seconds, loose targets.
    #[arg(long)]
    short: bool,
    /// Seconds per phase (default 10, or 3 in short mode).
    #[arg(long)]
    phase_secs: Option<f64>,
    /// Web product pages a second, offered whatever the answers do.
    #[arg(long, default_value_t = 100.0)]
    web_rate: f64,
    /// Products in the generated catalogue.
    #[arg(long, default_value_t = 1000)]
    products: u32,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// The downstream services' admission shares per client type
    /// (`--admission` of the services; their default when not given).
    #[arg(long)]
    admission: Option<String>,
    /// Let every lane of the downstream services run on the web side's
    /// CPU, instead of reserving the other CPU for the mobile and partner
    /// lanes (`--lane-cpus`).
    #[arg(long)]
    shared_lane_cpus: bool,
    /// Only these faults (letters a–f), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<char>,
}

/// One fault and how to apply and lift it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillMobile,
    FloodMobile,
    FloodPartner,
    KillReviews,
    SlowInventory,
    FlakyCatalog,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::KillMobile,
        Fault::FloodMobile,
        Fault::FloodPartner,
        Fault::KillReviews,
        Fault::SlowInventory,
        Fault::FlakyCatalog,
    ];

    fn letter(self) -> char {
        match self {
            Fault::KillMobile => 'a',
            Fault::FloodMobile => 'b',
            Fault::FloodPartner => 'c',
            Fault::KillReviews => 'd',
            Fault::SlowInventory => 'e',
            Fault::FlakyCatalog => 'f',
        }
    }

    fn label(self) -> &'static str {
        match self {
            Fault::KillMobile => "mobile BFF killed",
            Fault::FloodMobile => "mobile BFF flooded (10x its capacity)",
            Fault::FloodPartner => "partner key flooding",
            Fault::KillReviews => "reviews service killed",
            Fault::SlowInventory => "inventory slowed past its timeout",
            Fault::FlakyCatalog => "catalog failing every second call",
        }
    }
}

/// How late a timer may fire: tokio's timers run on a wheel of
/// millisecond ticks and round a deadline up to the next tick.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// Which CPUs each side runs on.
#[derive(Debug, Clone, Copy)]
struct Pinning {
    web: Option<&'static str>,
    clients: Option<&'static str>,
    /// The niceness of the other client types' BFFs and floods on their
    /// CPU: [`CLIENTS_NICE`] where the services' lanes share it with them.
    clients_nice: i32,
}

/// One server process of the stack, restartable on the same ports.
struct Server {
    name: &'static str,
    binary: &'static str,
    listen: SocketAddr,
    admin: SocketAddr,
    cpus: Option<&'static str>,
    /// Scheduling niceness on its CPU (0: the default).
    nice: i32,
    args: Vec<String>,
    child: Option<Child>,
}

/// The niceness of the downstream services where they share the web
/// side's CPU: on hosts of their own, the web BFF and the web load would
/// never wait for the CPU while the services work for another BFF, so
/// here the services yield it to them. Between the services, and between
/// the client types inside each service, nothing changes: that contention
/// is real, and lanes and fair admission are what answer it.
const SHARED_SERVICES_NICE: i32 = 5;

/// The niceness of the mobile and partner BFFs and the floods where the
/// services' mobile and partner lanes run on their CPU (`--lane-cpus`),
/// below the services' [`SHARED_SERVICES_NICE`]. On hosts of their own,
/// the services' threads would never be descheduled for a BFF's or a load
/// generator's; here one that was, while it held SQLite's lock on the WAL
/// index (one per database, in every process that opens it), held up the
/// web threads of its service for as long as the flood kept it waiting
/// for the CPU: 4 ms at the median, up to 17 ms in one traced flood.
const CLIENTS_NICE: i32 = 10;

/// The stack this program runs.
struct Stack {
    bin_dir: PathBuf,
    data: PathBuf,
    servers: Vec<Server>,
}

/// A loopback port free now and not handed out before by this program:
/// the kernel may give a port it just gave again once its listener is
/// closed, and two servers of the stack on one port would mistake one's
/// health for the other's.
fn free_port() -> Result<SocketAddr, String> {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&address.port()) {
            given.push(address.port());
            return Ok(address);
        }
    }
}

impl Stack {
    fn server(&mut self, name: &str) -> &mut Server {
        self.servers
            .iter_mut()
            .find(|s| s.name == name)
            .expect("a server of the stack")
    }

    fn address(&self, name: &str) -> SocketAddr {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .expect("a server of the stack")
            .listen
    }

    fn admin(&self, name: &str) -> SocketAddr {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .expect("a server of the stack")
            .admin
    }

    /// Starts `name` with its own flags and `extra`, and waits until its
    /// health says SERVING.
    async fn start(&mut self, name: &str, extra: &[&str]) -> Result<(), String> {
        let bin_dir = self.bin_dir.clone();
        let data = self.data.clone();
        let server = self.server(name);
        let binary = bin_dir.join(server.binary);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join(format!("{}.log", server.name)))
            .map_err(|e| e.to_string())?;
        let mut command = match server.cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus);
                if server.nice != 0 {
                    command.args(["nice", "-n", &server.nice.to_string()]);
                }
                command.arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        command
            .arg("--listen")
            .arg(server.listen.to_string())
            .arg("--admin-listen")
            .arg(server.admin.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--trust-dir")
            .arg(data.join("trust"))
            .args(&server.args)
            .args(extra)
            .env(
                tailor_runtime::shutdown::PARENT_PID_ENV,
                std::process::id().to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        server.child = Some(child);
        let admin = server.admin;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !serving(admin).await {
            if Instant::now() > deadline {
                return Err(format!("{name} did not become SERVING within 120 s"));
            }
            if let Some(child) = self.server(name).child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "{name} exited ({status}); see {}",
                    self.data.join(format!("{name}.log")).display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Kills `name` at once (SIGKILL), as a crash would.
    async fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.server(name).child.take() {
            let _ = child.kill().await;
        }
    }

    /// Restarts `name` with `extra` flags on the same ports.
    async fn restart(&mut self, name: &str, extra: &[&str]) -> Result<(), String> {
        self.kill(name).await;
        self.start(name, extra).await
    }

    async fn stop(&mut self) {
        for server in &mut self.servers {
            if let Some(pid) = server.child.as_ref().and_then(Child::id) {
                // SIGTERM: drain, as in production.
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take()
                && tokio::time::timeout(Duration::from_secs(15), child.wait())
                    .await
                    .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Whether the health service at `admin` answers SERVING.
async fn serving(admin: SocketAddr) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{admin}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
    else {
        return false;
    };
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_secs(1));
    HealthClient::new(channel)
        .check(request)
        .await
        .is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
}

/// Builds the stack's processes (not started yet).
fn stack(args: &Args, data: &Path, pinning: Pinning) -> Result<Stack, String> {
    let products = args.products.to_string();
    let admission: Vec<String> = args
        .admission
        .iter()
        .flat_map(|shares| ["--admission".to_owned(), shares.clone()])
        .collect();
    // The services' CPU for each client type: where the pinning puts a
    // side, the services run that side's lane.
    let mut reserved = Vec::new();
    if let (Some(web), Some(clients), false) = (pinning.web, pinning.clients, args.shared_lane_cpus)
    {
        reserved = vec![
            "--lane-cpus".to_owned(),
            format!("web={web},mobile={clients},partner={clients}"),
        ];
    }
    let mut servers = Vec::new();
    let mut add =
        |name, binary, cpus: Option<&'static str>, args: Vec<String>| -> Result<(), String> {
            servers.push(Server {
                name,
                binary,
                listen: free_port()?,
                admin: free_port()?,
                cpus,
                nice: if cpus.is_some() {
                    SHARED_SERVICES_NICE
                } else {
                    0
                },
                args,
                child: None,
            });
            Ok(())
        };
    let shared = pinning.web;
    for (name, binary) in [
        ("catalog", "tailor-catalog"),
        ("inventory", "tailor-inventory"),
        ("reviews", "tailor-reviews"),
    ] {
        let mut flags = vec!["--products".to_owned(), products.clone()];
        flags.extend(admission.clone());
        flags.extend(reserved.clone());
        add(name, binary, shared, flags)?;
    }
    add(
        "orders",
        "tailor-orders",
        shared,
        [admission, reserved].concat(),
    )?;
    let mut stack = Stack {
        bin_dir: args.bin_dir.clone(),
        data: data.to_owned(),
        servers,
    };
    let downstreams: Vec<String> = ["catalog", "inventory", "reviews", "orders"]
        .iter()
        .flat_map(|name| [format!("--{name}-addr"), stack.address(name).to_string()])
        .collect();
    let with = |extra: &[&str]| -> Vec<String> {
        downstreams
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| (*s).to_owned()))
            .collect()
    };
    for (name, binary, cpus, args) in [
        (
            "web-bff",
            "tailor-web-bff",
            pinning.web,
            with(&["--dev-secrets"]),
        ),
        (
            "mobile-bff",
            "tailor-mobile-bff",
            pinning.clients,
            with(&["--dev-secrets"]),
        ),
        (
            "partner-bff",
            "tailor-partner-bff",
            pinning.clients,
            with(&[]),
        ),
    ] {
        stack.servers.push(Server {
            name,
            binary,
            listen: free_port()?,
            admin: free_port()?,
            cpus,
            nice: if name == "web-bff" {
                0
            } else {
                pinning.clients_nice
            },
            args,
            child: None,
        });
    }
    Ok(stack)
}

/// One web page call's outcome.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Answered {
        degraded: bool,
    },
    Failed(Code),
    /// Not sent: the load's bound on calls in flight was reached.
    NotSent,
}

/// Every web page call of the run: when it was due, how long it took.
type Samples = Arc<Mutex<Vec<(Instant, Duration, Outcome)>>>;

/// The deadline of each web page call.
const WEB_DEADLINE: Duration = Duration::from_secs(2);

/// Offers `rate` web product pages a second until `stop`, at most 64 in
/// flight, each with [`WEB_DEADLINE`], recording every call.
async fn web_load(
    web: SocketAddr,
    rate: f64,
    products: u32,
    samples: Samples,
    stop: tailor_runtime::CancellationToken,
) -> Result<(), String> {
    let channel = Channel::from_shared(format!("http://{web}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("web BFF at {web}: {e}"))?;
    let client = WebClient::new(channel);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    for i in 0u64.. {
        let due = started + interval.mul_f64(i as f64);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(due.into()) => {}
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            samples
                .lock()
                .expect("samples")
                .push((due, Duration::ZERO, Outcome::NotSent));
            continue;
        };
        let mut client = client.clone();
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut request = tonic::Request::new(GetProductPageRequest {
                product_id: format!("prod-{:06}", i % u64::from(products) + 1),
            });
            request.set_timeout(WEB_DEADLINE);
            let outcome = match client.get_product_page(request).await {
                Ok(page) => Outcome::Answered {
                    degraded: !page.into_inner().degraded_sections.is_empty(),
                },
                Err(status) => Outcome::Failed(status.code()),
            };
            samples
                .lock()
                .expect("samples")
                .push((due, due.elapsed(), outcome));
            drop(permit);
        });
    }
    Ok(())
}

/// What the web side saw during one phase.
#[derive(Debug, Default, Clone)]
struct PhaseFigures {
    offered: u64,
    answered: u64,
    degraded: u64,
    failed: BTreeMap<String, u64>,
    not_sent: u64,
    p50: Duration,
    p99: Duration,
}

impl PhaseFigures {
    fn errors(&self) -> u64 {
        self.failed.values().sum::<u64>() + self.not_sent
    }
}

fn figures(samples: &Samples, from: Instant, to: Instant) -> PhaseFigures {
    let samples = samples.lock().expect("samples");
    let mut figures = PhaseFigures::default();
    let mut latencies = Vec::new();
    for (due, latency, outcome) in samples.iter().filter(|(due, ..)| *due >= from && *due < to) {
        let _ = due;
        figures.offered += 1;
        match outcome {
            Outcome::Answered { degraded } => {
                figures.answered += 1;
                figures.degraded += u64::from(*degraded);
                latencies.push(*latency);
            }
            Outcome::Failed(code) => {
                *figures.failed.entry(format!("{code:?}")).or_default() += 1;
                latencies.push(*latency);
            }
            Outcome::NotSent => figures.not_sent += 1,
        }
    }
    latencies.sort();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    figures.p50 = quantile(0.50);
    figures.p99 = quantile(0.99);
    figures
}

/// A load generator of this program's own `load` command, pinned to the
/// clients' CPU, for one phase.
fn flood(exe: &Path, pinning: Pinning, args: &[String]) -> Result<Child, String> {
    let mut command = match pinning.clients {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus);
            if pinning.clients_nice != 0 {
                command.args(["nice", "-n", &pinning.clients_nice.to_string()]);
            }
            command.arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .arg("load")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting a flood: {e}"))
}

/// The flags of a flood of `scenario` against `target` (its address
/// flags): 4 connections, 128 calls in flight, for `secs`, no warm-up.
fn flood_args(scenario: &str, target: &[&str], secs: &str, products: u32) -> Vec<String> {
    let products = products.to_string();
    let mut flags = vec!["--scenario", scenario];
    flags.extend_from_slice(target);
    flags.extend_from_slice(&[
        "--connections",
        "4",
        "--concurrency",
        "128",
        "--duration-secs",
        secs,
        "--warmup-secs",
        "0",
        "--products",
        &products,
    ]);
    flags.into_iter().map(str::to_owned).collect()
}

/// Calls/s and errors from a `load` report's level line.
fn load_summary(report: &str) -> String {
    report
        .lines()
        .find(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 7
                && fields[0].parse::<u64>().is_ok()
                && fields[1].parse::<u64>().is_ok()
        })
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            format!(
                "{} calls/s answered, errors: {}",
                fields[1],
                fields[6..].join(" ")
            )
        })
        .unwrap_or_else(|| "no report".to_owned())
}

/// The calls/s of a `load` report.
fn load_rate(report: &str) -> Option<f64> {
    report.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() >= 7 && fields[0].parse::<u64>().is_ok())
            .then(|| fields[1].parse::<f64>().ok())
            .flatten()
    })
}

/// A Prometheus text exposition from `admin`'s `/metrics`.
async fn metrics(admin: SocketAddr) -> Result<String, String> {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| format!("metrics at {admin}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, admin.to_string())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The sum of the samples of `metric` whose labels contain every one of
/// `labels` (`target="catalog"`).
fn metric_sum(exposition: &str, metric: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (up to 15 s) until the web BFF's circuit to `service` is closed
/// again after a restart of it: the gap of a restart is how this program
/// injects a fault, not part of the fault, and an open circuit would be
/// the gap's echo in the next phase.
async fn circuit_closed(web_admin: SocketAddr, service: &str) {
    let label = format!("target=\"{service}\"");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let exposition = metrics(web_admin).await.unwrap_or_default();
        if metric_sum(&exposition, "rpc_client_circuit_state", &[&label]) == 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One fault's three phases and what the targets say of them.
struct Row {
    fault: Fault,
    before: PhaseFigures,
    during: PhaseFigures,
    after: PhaseFigures,
    note: String,
    verdict: Result<(), String>,
}

/// The targets a fault is checked against.
#[derive(Debug, Clone, Copy)]
struct Targets {
    /// (a)–(c): the web p99 at most this many times the lower of the
    /// phases before and after ...
    p99_ratio: f64,
    /// ... plus this.
    p99_slack: Duration,
    /// (d), (e): at least this share of the pages answered degraded, and
    /// their p99 at most the optional-part timeout plus `p99_slack` above
    /// the same baseline.
    degraded_share: f64,
    /// (f): at most this share of the pages may fail.
    flaky_error_share: f64,
    /// (a)–(e), and every fault's phase after: at most this share of the
    /// pages may fail.
    error_share: f64,
}

impl Targets {
    /// The targets, for the long mode.
    const LONG: Targets = Targets {
        p99_ratio: 1.25,
        p99_slack: Duration::ZERO,
        degraded_share: 0.9,
        flaky_error_share: 0.0,
        error_share: 0.0,
    };

    /// Loose enough for phases of a few seconds on a shared machine, where
    /// a stall of the machine can cost a page or two: what they still
    /// catch is a fault that reaches the web side at all (more than a few
    /// web errors, latency near the deadline, pages not marked degraded, a
    /// web side that does not recover), and in (f) retries that stopped
    /// making up for the failures: a few pages in a hundred may fail (a
    /// read tried until its deadline loses about one in a million when
    /// every attempt has even odds; an open circuit or a spent budget
    /// fails most pages, three attempts one in eight).
    const SHORT: Targets = Targets {
        p99_ratio: 4.0,
        p99_slack: Duration::from_millis(1000),
        degraded_share: 0.5,
        flaky_error_share: 0.03,
        error_share: 0.03,
    };
}

/// The retries the web BFF made to the catalog during a phase, its calls
/// to it, and the retries its budget refused.
#[derive(Debug, Clone, Copy, Default)]
struct Retries {
    retries: f64,
    calls: f64,
    refused: f64,
}

/// Checks the targets of `fault`.
fn verdict(
    fault: Fault,
    before: &PhaseFigures,
    during: &PhaseFigures,
    after: &PhaseFigures,
    targets: Targets,
) -> Result<(), String> {
    let mut problems = Vec::new();
    let allowed =
        |figures: &PhaseFigures| (figures.offered as f64 * targets.error_share).floor() as u64;
    // Whatever the fault, the web side is whole again once it is lifted.
    if after.errors() > allowed(after) {
        problems.push(format!("{} web errors after the fault", after.errors()));
    }
    if during.answered == 0 && fault != Fault::FlakyCatalog {
        problems.push("no web page answered".to_owned());
    }
    // The web side's p99 without the fault: the lower of the phases before
    // and after it, so a stall of the machine in one of them does not
    // loosen the bound.
    let baseline = if after.answered > 0 {
        before.p99.min(after.p99)
    } else {
        before.p99
    };
    let p99_above = |bound: Duration, problems: &mut Vec<String>| {
        if during.p99 > bound {
            problems.push(format!(
                "p99 {:.1} ms above {:.1} ms",
                ms(during.p99),
                ms(bound)
            ));
        }
    };
    match fault {
        Fault::KillMobile | Fault::FloodMobile | Fault::FloodPartner => {
            if during.errors() > allowed(during) {
                problems.push(format!("{} web errors", during.errors()));
            }
            p99_above(
                baseline.mul_f64(targets.p99_ratio) + targets.p99_slack,
                &mut problems,
            );
        }
        Fault::KillReviews | Fault::SlowInventory => {
            if during.errors() > allowed(during) {
                problems.push(format!("{} web errors", during.errors()));
            }
            // A slowed part is given up when its timer fires, which the
            // runtime's millisecond timer does up to a tick late.
            let timer = if fault == Fault::SlowInventory {
                TIMER_RESOLUTION
            } else {
                Duration::ZERO
            };
            p99_above(
                baseline + OPTIONAL_PART_TIMEOUT + timer + targets.p99_slack,
                &mut problems,
            );
            if (during.degraded as f64) < during.answered as f64 * targets.degraded_share {
                problems.push(format!(
                    "only {} of {} pages marked degraded",
                    during.degraded, during.answered
                ));
            }
        }
        Fault::FlakyCatalog => {
            let allowed = (during.offered as f64 * targets.flaky_error_share).floor() as u64;
            if during.errors() > allowed {
                problems.push(format!(
                    "{} web errors of {} pages (at most {allowed})",
                    during.errors(),
                    during.offered
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the program; an error when the stack cannot run or a target is
/// missed.
pub async fn run(args: Args) -> Result<(), String> {
    let phase =
        Duration::from_secs_f64(
            args.phase_secs
                .unwrap_or(if args.short { 3.0 } else { 10.0 }),
        );
    let settle = Duration::from_secs(1);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinning = if args.no_pin || cpus < 2 {
        Pinning {
            web: None,
            clients: None,
            clients_nice: 0,
        }
    } else {
        // This process is the web side's load: CPU 0, all its threads.
        let pinned = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !pinned {
            return Err("taskset could not pin this process (util-linux); use --no-pin".into());
        }
        Pinning {
            web: Some("0"),
            clients: Some("1"),
            clients_nice: if args.shared_lane_cpus {
                0
            } else {
                CLIENTS_NICE
            },
        }
    };
    let faults: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| args.only.is_empty() || args.only.contains(&f.letter()))
        .collect();
    let dir = std::env::temp_dir().join(format!("tailor-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let outcome = drive(&args, &dir, pinning, phase, settle, &faults).await;
    let met = outcome
        .as_ref()
        .is_ok_and(|rows| rows.iter().all(|row| row.verdict.is_ok()));
    if met {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("chaos: the servers' logs are kept in {}", dir.display());
    }
    let rows = outcome?;
    print_rows(&rows, phase, pinning, args.web_rate);
    let missed: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            row.verdict
                .as_ref()
                .err()
                .map(|why| format!("({}) {}: {why}", row.fault.letter(), row.fault.label()))
        })
        .collect();
    if missed.is_empty() {
        println!("chaos: every target met ({} faults)", rows.len());
        Ok(())
    } else {
        Err(format!("targets missed:\n  {}", missed.join("\n  ")))
    }
}

async fn drive(
    args: &Args,
    dir: &Path,
    pinning: Pinning,
    phase: Duration,
    settle: Duration,
    faults: &[Fault],
) -> Result<Vec<Row>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let names = [
        "catalog",
        "inventory",
        "reviews",
        "orders",
        "web-bff",
        "mobile-bff",
        "partner-bff",
    ];
    tailor_trust::Authority::ensure_dir(&dir.join("trust"), &names).map_err(|e| e.to_string())?;
    let partner_key = {
        let output = std::process::Command::new(args.bin_dir.join("tailor-partner-bff"))
            .arg("--data-dir")
            .arg(dir)
            .args(["keys", "create", "--tenant", "chaos", "--name", "flood"])
            .output()
            .map_err(|e| format!("creating a partner key: {e}"))?;
        let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !key.starts_with("tk_") {
            return Err(format!(
                "creating a partner key: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        key
    };
    let mut stack = stack(args, dir, pinning)?;
    let result = drive_stack(
        args,
        &mut stack,
        &exe,
        &partner_key,
        pinning,
        phase,
        settle,
        faults,
    )
    .await;
    stack.stop().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive_stack(
    args: &Args,
    stack: &mut Stack,
    exe: &Path,
    partner_key: &str,
    pinning: Pinning,
    phase: Duration,
    settle: Duration,
    faults: &[Fault],
) -> Result<Vec<Row>, String> {
    for name in [
        "catalog",
        "inventory",
        "reviews",
        "orders",
        "web-bff",
        "mobile-bff",
        "partner-bff",
    ] {
        stack.start(name, &[]).await?;
    }
    println!(
        "chaos: stack up in {}; web load {} pages/s; phases of {:.0} s",
        stack.data.display(),
        args.web_rate,
        phase.as_secs_f64()
    );
    let mobile = stack.address("mobile-bff");
    let partner = stack.address("partner-bff");
    // The mobile BFF's capacity, measured alone, for the flood's rate.
    let capacity_args: Vec<String> = [
        "--scenario",
        "mobile-page",
        "--mobile",
        &mobile.to_string(),
        "--connections",
        "4",
        "--concurrency",
        "32",
        "--duration-secs",
        "2",
        "--warmup-secs",
        "1",
        "--products",
        &args.products.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let output = flood(exe, pinning, &capacity_args)?
        .wait_with_output()
        .await
        .map_err(|e| e.to_string())?;
    let capacity = load_rate(&String::from_utf8_lossy(&output.stdout)).unwrap_or(100.0);
    println!("chaos: the mobile BFF serves {capacity:.0} pages/s alone");

    let samples: Samples = Arc::default();
    let stop = tailor_runtime::CancellationToken::new();
    let load = tokio::spawn(web_load(
        stack.address("web-bff"),
        args.web_rate,
        args.products,
        samples.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(settle).await;
    let mut rows = Vec::new();
    for &fault in faults {
        let before_from = Instant::now();
        tokio::time::sleep(phase).await;
        let before_to = Instant::now();
        let web_admin = stack.admin("web-bff");
        let mut note = String::new();
        let mut flooding: Option<Child> = None;
        let flood_secs = format!("{:.1}", phase.as_secs_f64() + 0.5);
        match fault {
            Fault::KillMobile => stack.kill("mobile-bff").await,
            Fault::FloodMobile => {
                let rate = format!("{:.0}", capacity * 10.0);
                let target = ["--mobile", &mobile.to_string(), "--rate", &rate];
                let flood_args = flood_args("mobile-page", &target, &flood_secs, args.products);
                note = format!("offered {rate} mobile pages/s; ");
                flooding = Some(flood(exe, pinning, &flood_args)?);
            }
            Fault::FloodPartner => {
                let target = [
                    "--partner",
                    &partner.to_string(),
                    "--partner-key",
                    partner_key,
                ];
                let flood_args =
                    flood_args("partner-availability", &target, &flood_secs, args.products);
                flooding = Some(flood(exe, pinning, &flood_args)?);
            }
            Fault::KillReviews => stack.kill("reviews").await,
            Fault::SlowInventory => {
                let slow = (OPTIONAL_PART_TIMEOUT * 4).as_millis().to_string();
                stack
                    .restart("inventory", &["--inject-latency-ms", &slow])
                    .await?;
                note = format!("every inventory call delayed {slow} ms; ");
                tokio::time::sleep(settle).await;
                circuit_closed(web_admin, "inventory").await;
            }
            Fault::FlakyCatalog => {
                stack
                    .restart("catalog", &["--inject-unavailable-every", "2"])
                    .await?;
                tokio::time::sleep(settle).await;
                circuit_closed(web_admin, "catalog").await;
            }
        }
        let metrics_before = metrics(web_admin).await.unwrap_or_default();
        let retries_before = metric_sum(
            &metrics_before,
            "rpc_client_retries_total",
            &["target=\"catalog\""],
        );
        let calls_before = metric_sum(
            &metrics_before,
            "rpc_client_calls_total",
            &["target=\"catalog\""],
        );
        let refused_before = metric_sum(
            &metrics_before,
            "rpc_client_retries_refused_total",
            &["target=\"catalog\""],
        );
        let during_from = Instant::now();
        tokio::time::sleep(phase).await;
        let during_to = Instant::now();
        let metrics_during = metrics(web_admin).await.unwrap_or_default();
        let retries = Retries {
            retries: metric_sum(
                &metrics_during,
                "rpc_client_retries_total",
                &["target=\"catalog\""],
            ) - retries_before,
            calls: metric_sum(
                &metrics_during,
                "rpc_client_calls_total",
                &["target=\"catalog\""],
            ) - calls_before,
            refused: metric_sum(
                &metrics_during,
                "rpc_client_retries_refused_total",
                &["target=\"catalog\""],
            ) - refused_before,
        };
        if fault == Fault::FlakyCatalog {
            note = format!(
                "{:.0} retries for {:.0} catalog calls ({:.0}%), {:.0} refused by the budget; ",
                retries.retries,
                retries.calls,
                if retries.calls > 0.0 {
                    retries.retries * 100.0 / retries.calls
                } else {
                    0.0
                },
                retries.refused
            );
        }
        if let Some(child) = flooding.take() {
            let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
            note.push_str(&load_summary(&String::from_utf8_lossy(&output.stdout)));
        }
        // Every page due during the fault has its answer (or its deadline)
        // before the fault is lifted: lifting it restarts a server, and a
        // page caught in that restart is not the fault's doing. The pages
        // due meanwhile count in no phase.
        tokio::time::sleep(WEB_DEADLINE).await;
        match fault {
            Fault::KillMobile => stack.start("mobile-bff", &[]).await?,
            Fault::KillReviews => stack.start("reviews", &[]).await?,
            Fault::SlowInventory => stack.restart("inventory", &[]).await?,
            Fault::FlakyCatalog => stack.restart("catalog", &[]).await?,
            Fault::FloodMobile | Fault::FloodPartner => {}
        }
        tokio::time::sleep(settle).await;
        match fault {
            Fault::KillReviews => circuit_closed(web_admin, "reviews").await,
            Fault::SlowInventory => circuit_closed(web_admin, "inventory").await,
            Fault::FlakyCatalog => circuit_closed(web_admin, "catalog").await,
            _ => {}
        }
        let after_from = Instant::now();
        tokio::time::sleep(phase).await;
        let after_to = Instant::now();
        let before = figures(&samples, before_from, before_to);
        let during = figures(&samples, during_from, during_to);
        let after = figures(&samples, after_from, after_to);
        let targets = if args.short {
            Targets::SHORT
        } else {
            Targets::LONG
        };
        let verdict = verdict(fault, &before, &during, &after, targets);
        println!(
            "chaos: ({}) {}: {}",
            fault.letter(),
            fault.label(),
            verdict
                .as_ref()
                .map_or_else(|why| format!("MISSED: {why}"), |()| "met".to_owned())
        );
        rows.push(Row {
            fault,
            before,
            during,
            after,
            note: note.trim_end_matches("; ").to_owned(),
            verdict,
        });
    }
    stop.cancel();
    load.await.map_err(|e| e.to_string())??;
    Ok(rows)
}

fn print_rows(rows: &[Row], phase: Duration, pinning: Pinning, rate: f64) {
    println!();
    println!(
        "web product pages at {rate} pages/s, {:.0} s per phase, pinned: {}",
        phase.as_secs_f64(),
        match pinning.web {
            Some(web) => format!(
                "web BFF, web load and downstream services on CPU {web} (services at niceness {SHARED_SERVICES_NICE}), mobile and partner BFFs and floods on CPU {} (niceness {}){}",
                pinning.clients.unwrap_or("-"),
                pinning.clients_nice,
                if pinning.clients_nice != 0 {
                    ", with the services' mobile and partner lanes"
                } else {
                    ""
                },
            ),
            None => "no".to_owned(),
        }
    );
    println!();
    println!(
        "| fault | phase | pages offered | answered | degraded | errors | p50 ms | p99 ms | target |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        for (name, figures) in [
            ("before", &row.before),
            ("during", &row.during),
            ("after", &row.after),
        ] {
            let errors = if figures.errors() == 0 {
                "0".to_owned()
            } else {
                let mut parts: Vec<String> = figures
                    .failed
                    .iter()
                    .map(|(code, n)| format!("{n} {code}"))
                    .collect();
                if figures.not_sent > 0 {
                    parts.push(format!("{} not sent", figures.not_sent));
                }
                parts.join(", ")
            };
            let target = match (name, &row.verdict) {
                ("during", Ok(())) => "met".to_owned(),
                ("during", Err(why)) => format!("MISSED: {why}"),
                _ => String::new(),
            };
            println!(
                "| ({}) {} | {name} | {} | {} | {} | {errors} | {:.1} | {:.1} | {target} |",
                row.fault.letter(),
                row.fault.label(),
                figures.offered,
                figures.answered,
                figures.degraded,
                ms(figures.p50),
                ms(figures.p99),
            );
        }
        if !row.note.is_empty() {
            println!("|   | {} |  |  |  |  |  |  |  |", row.note);
        }
    }
}

//! Starting, watching and stopping the seven processes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::webapp;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// Flags of `tailor up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Where every process keeps its data and log files.
    #[arg(long, env = "TAILOR_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,

    /// Products in the generated catalogue (used on first start only).
    #[arg(long, default_value_t = 10_000)]
    products: u32,

    /// Milliseconds between two status changes of an order.
    #[arg(long, default_value_t = 3_000)]
    fulfilment_step_ms: u64,

    /// Let every server pick a free port instead of the defaults.
    #[arg(long, env = "TAILOR_ANY_PORTS", value_parser = clap::builder::BoolishValueParser::new())]
    any_ports: bool,

    /// Directory holding the server binaries.
    #[arg(long, default_value_os_t = crate::default_bin_dir())]
    bin_dir: PathBuf,

    /// Seconds a server may take to report SERVING.
    #[arg(long, default_value_t = 120)]
    ready_timeout_secs: u64,

    /// Servers log JSON instead of text.
    #[arg(long)]
    json_logs: bool,

    /// The built browser app to serve. When it is the default and not
    /// built yet, `tailor up` builds it (`npm ci` and `npm run build` in
    /// `clients/web`).
    #[arg(long, default_value = DEFAULT_WEB_DIR)]
    web_dir: PathBuf,
}

/// The browser app's sources and where its build lands.
const WEB_SOURCES: &str = "clients/web";
const DEFAULT_WEB_DIR: &str = "clients/web/dist";

/// Where the browser app is served unless `--any-ports`.
const WEB_APP_PORT: u16 = 8080;

/// One process of the stack.
struct Spec {
    name: &'static str,
    binary: &'static str,
    port: u16,
    args: Vec<String>,
}

struct Running {
    name: &'static str,
    pid: Pid,
    address: SocketAddr,
    /// The plaintext health port.
    admin: SocketAddr,
}

/// Every process of the stack, by the name its certificate bears.
pub const PROCESSES: [&str; 7] = [
    "catalog",
    "inventory",
    "reviews",
    "orders",
    "web-bff",
    "mobile-bff",
    "partner-bff",
];

/// Each server's plaintext health port is its API port plus this.
const ADMIN_PORT_OFFSET: u16 = 1000;

type Exits = mpsc::UnboundedSender<(&'static str, std::io::Result<ExitStatus>)>;

async fn start(
    spec: &Spec,
    args: &UpArgs,
    exits: &Exits,
    ready_by: Instant,
) -> Result<Running, String> {
    let binary = args.bin_dir.join(spec.binary);
    if !binary.exists() {
        return Err(format!(
            "{} not found; build the workspace first (cargo build --release)",
            binary.display()
        ));
    }
    let port = if args.any_ports { 0 } else { spec.port };
    let admin_port = if args.any_ports {
        0
    } else {
        spec.port + ADMIN_PORT_OFFSET
    };
    let logs = args.data_dir.join("logs");
    tailor_storage::private_dir(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let log_path = logs.join(format!("{}.log", spec.name));
    // Each run begins a fresh, private log; the server writes it
    // (`--log-file`) and rotates it by size.
    private_file_for_writing(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let mut child = Command::new(&binary)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&args.data_dir)
        .arg("--log-format")
        .arg(if args.json_logs { "json" } else { "text" })
        .arg("--log-file")
        .arg(&log_path)
        .arg("--trust-dir")
        .arg(args.data_dir.join(TRUST_DIR))
        // Gone with the launcher, even one killed without stopping them.
        .env(
            tailor_runtime::shutdown::PARENT_PID_ENV,
            std::process::id().to_string(),
        )
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{admin_port}"))
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // What a server says before its log is open (a bad flag, a port in
        // use) reaches the terminal, named.
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches the launcher
        // alone, which then stops the servers in order (BFFs first).
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let pid = Pid::from_raw(child.id().ok_or("process exited at once")? as i32);
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let stderr = child.stderr.take().expect("stderr is piped");
    let name = spec.name;
    tokio::spawn(async move {
        let mut said = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = said.next_line().await {
            eprintln!("{name}: {line}");
        }
    });

    let announced = tokio::time::timeout_at(ready_by.into(), async {
        let (mut api, mut admin) = (None, None);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, address)) = line.split_once(" listening on ") {
                api = address.trim().parse::<SocketAddr>().ok();
            } else if let Some((_, address)) = line.split_once(" admin (plaintext health) on ") {
                admin = address.trim().parse::<SocketAddr>().ok();
            }
            if let (Some(api), Some(admin)) = (api, admin) {
                return Some((api, admin));
            }
        }
        None
    })
    .await;
    let (address, admin) = match announced {
        Ok(Some(addresses)) => addresses,
        _ => {
            let _ = child.start_kill();
            return Err(format!(
                "{} did not start; see what it said above and {}",
                spec.name,
                log_path.display()
            ));
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let exits = exits.clone();
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = exits.send((name, status));
    });
    Ok(Running {
        name,
        pid,
        address,
        admin,
    })
}

/// Where `tailor up` keeps the stack's certificates, in its data directory.
const TRUST_DIR: &str = "trust";

/// Where `tailor up` lists every server's metrics address for Prometheus
/// (file-based service discovery), in its data directory;
/// `deploy/prometheus/prometheus.yml` reads it from the default one.
const PROMETHEUS_TARGETS: &str = "prometheus/targets.json";

/// Writes the Prometheus targets of `running`: each server's admin
/// address, labelled with its name (`server`) and, for a BFF, the client
/// type it serves. Written whole and then renamed into place, so
/// Prometheus, which watches the file, never reads half of it.
fn write_prometheus_targets(running: &[Running], data_dir: &Path) -> Result<(), String> {
    let path = data_dir.join(PROMETHEUS_TARGETS);
    let dir = path.parent().expect("the targets file is in a directory");
    tailor_storage::private_dir(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let targets: Vec<serde_json::Value> = running
        .iter()
        .map(|server| {
            let mut labels = serde_json::json!({ "server": server.name });
            let client_type = tailor_interceptors::context::client_type(server.name);
            if client_type != "unknown" {
                labels["client_type"] = client_type.into();
            }
            serde_json::json!({ "targets": [server.admin.to_string()], "labels": labels })
        })
        .collect();
    let text = serde_json::to_string_pretty(&targets).expect("JSON values serialise");
    let partial = path.with_extension("json.partial");
    private_file_for_writing(&partial)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Polls `grpc.health.v1.Health/Check` for `""` on the plaintext health
/// port until SERVING (the check `tailor probe` makes).
async fn wait_serving(name: &str, address: SocketAddr, ready_by: Instant) -> Result<(), String> {
    loop {
        if crate::probe::check(address, "", Duration::from_secs(2))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > ready_by {
            return Err(format!(
                "{name} at {address} did not report SERVING in time"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn downstream_specs(args: &UpArgs) -> Vec<Spec> {
    let products = args.products.to_string();
    vec![
        Spec {
            name: "catalog",
            binary: "tailor-catalog",
            port: 50051,
            args: vec!["--products".into(), products.clone()],
        },
        Spec {
            name: "inventory",
            binary: "tailor-inventory",
            port: 50052,
            args: vec!["--products".into(), products.clone()],
        },
        Spec {
            name: "reviews",
            binary: "tailor-reviews",
            port: 50053,
            args: vec!["--products".into(), products],
        },
        Spec {
            name: "orders",
            binary: "tailor-orders",
            port: 50054,
            args: vec![
                "--fulfilment-step-ms".into(),
                args.fulfilment_step_ms.to_string(),
            ],
        },
    ]
}

fn bff_specs(downstreams: &HashMap<&str, SocketAddr>, web_app: SocketAddr) -> Vec<Spec> {
    let addrs: Vec<String> = ["catalog", "inventory", "reviews", "orders"]
        .iter()
        .flat_map(|name| [format!("--{name}-addr"), downstreams[name].to_string()])
        .collect();
    vec![
        Spec {
            name: "web-bff",
            binary: "tailor-web-bff",
            port: 8081,
            args: [
                addrs.clone(),
                vec![
                    "--cors-origin".into(),
                    format!("http://localhost:{0},http://127.0.0.1:{0}", web_app.port()),
                    // The development app is served over plain HTTP.
                    "--insecure-cookies".into(),
                    // Tokens from `tailor token`.
                    "--dev-secrets".into(),
                ],
            ]
            .concat(),
        },
        Spec {
            name: "mobile-bff",
            binary: "tailor-mobile-bff",
            port: 8082,
            args: [addrs.clone(), vec!["--dev-secrets".into()]].concat(),
        },
        Spec {
            name: "partner-bff",
            binary: "tailor-partner-bff",
            port: 8083,
            args: addrs,
        },
    ]
}

/// The development user `demo` (password `demo`) of the web app.
async fn web_dev_user(args: &UpArgs) -> Result<(), String> {
    let mut child = Command::new(args.bin_dir.join("tailor-web-bff"))
        .process_group(0)
        .arg("--data-dir")
        .arg(&args.data_dir)
        .args(["users", "add", "demo", "--display-name", "Demo Shopper"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("creating the development user: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin
            .write_all(b"demo\n")
            .await
            .map_err(|e| format!("creating the development user: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("creating the development user: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || stderr.contains("already exists") {
        Ok(())
    } else {
        Err(format!("creating the development user failed: {stderr}"))
    }
}

/// The development partner key, created on first start and kept in the
/// data directory so the printed command keeps working across restarts.
async fn partner_dev_key(args: &UpArgs) -> Result<String, String> {
    let path = args.data_dir.join("partner-dev-key.txt");
    if let Ok(key) = std::fs::read_to_string(&path)
        && key.starts_with("tk_")
    {
        return Ok(key.trim().to_owned());
    }
    let output = Command::new(args.bin_dir.join("tailor-partner-bff"))
        .process_group(0)
        .arg("--data-dir")
        .arg(&args.data_dir)
        .args([
            "keys",
            "create",
            "--tenant",
            "demo",
            "--name",
            "development",
        ])
        .output()
        .await
        .map_err(|e| format!("creating the development partner key: {e}"))?;
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || !key.starts_with("tk_") {
        return Err(format!(
            "creating the development partner key failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    private_file_for_writing(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, key.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(key)
}

fn print_table(
    running: &[Running],
    web_app: SocketAddr,
    partner_key: &str,
    data_dir: &Path,
    started: Duration,
) {
    let tailor = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "tailor".into());
    println!();
    println!(
        "Tailor is up: all {} servers SERVING in {:.1}s",
        running.len(),
        started.as_secs_f64()
    );
    println!();
    println!(
        "  {:<12} {:<22} {:<22} {:<38} role",
        "server", "address", "health (plaintext)", "metrics (Prometheus text)"
    );
    for server in running {
        let role = if server.name.ends_with("-bff") {
            "BFF"
        } else {
            "downstream, mutual TLS only"
        };
        println!(
            "  {:<12} {:<22} {:<22} {:<38} {role}",
            server.name,
            server.address.to_string(),
            server.admin.to_string(),
            format!("http://{}/metrics", server.admin)
        );
    }
    println!(
        "  {:<12} {:<22} {:<22} {:<38} browser app",
        "web-app",
        web_app.to_string(),
        "",
        ""
    );
    let at = |name: &str| {
        running
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.address.to_string())
            .unwrap_or_default()
    };
    let (web, mobile, partner) = (at("web-bff"), at("mobile-bff"), at("partner-bff"));
    println!();
    println!(
        "Open the shop: http://127.0.0.1:{}/  (sign in as demo / demo)",
        web_app.port()
    );
    println!();
    println!("Try them (reflection is on, no .proto files needed):");
    println!();
    println!("  # web BFF: a page of product cards");
    println!(
        "  grpcurl -plaintext -d '{{\"page_size\": 3, \"query\": \"mug\"}}' {web} tailor.web.v1.ShopService/ListProducts"
    );
    println!(
        "  buf curl --protocol grpc --http2-prior-knowledge -d '{{\"product_id\": \"prod-000042\"}}' http://{web}/tailor.web.v1.ShopService/GetProductPage"
    );
    println!();
    println!("  # mobile BFF: the same screens, trimmed");
    println!(
        "  grpcurl -plaintext -d '{{\"product_id\": \"prod-000042\", \"screen\": {{\"width_points\": 390, \"density\": 3}}}}' {mobile} tailor.mobile.v1.ShopService/GetProductPage"
    );
    println!(
        "  buf curl --protocol grpc --http2-prior-knowledge -d '{{\"page_size\": 5}}' http://{mobile}/tailor.mobile.v1.ShopService/ListProducts"
    );
    println!();
    println!("  # placing orders needs a signed-in user: a development token");
    println!("  TOKEN=$({tailor} token --audience tailor-web --subject demo-user)");
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"idempotency_key\": \"try-1\", \"lines\": [{{\"product_id\": \"prod-000042\", \"quantity\": 1}}]}}' {web} tailor.web.v1.ShopService/PlaceOrder"
    );
    println!();
    println!("  # partner BFF: API key of the development tenant 'demo'");
    println!(
        "  grpcurl -plaintext -H 'x-api-key: {partner_key}' -d '{{\"product_ids\": [\"prod-000001\", \"prod-000002\"]}}' {partner} tailor.partner.v1.PartnerService/BatchGetAvailability"
    );
    println!(
        "  buf curl --protocol grpc --http2-prior-knowledge -H 'x-api-key: {partner_key}' http://{partner}/tailor.partner.v1.PartnerService/StreamCatalogFeed"
    );
    println!();
    println!("  # downstream services answer only the BFFs' certificates (mutual TLS)");
    let trust = data_dir.join(TRUST_DIR);
    println!(
        "  grpcurl -cacert {0}/ca.crt -cert {0}/web-bff.crt -key {0}/web-bff.key -d '{{\"id\": \"prod-000042\"}}' {1} tailor.catalog.v1.CatalogService/GetProduct",
        trust.display(),
        at("catalog")
    );
    println!();
    println!("  # metrics of every server, per client type: a Prometheus scraping the stack");
    println!(
        "  prometheus --config.file=deploy/prometheus/prometheus.yml   # targets: {}",
        data_dir.join(PROMETHEUS_TARGETS).display()
    );
    println!();
    println!(
        "Logs: {}/logs/<server>.log   Stop: Ctrl-C",
        data_dir.display()
    );
    println!();
}

fn signal_all(running: &[Running], signal: Signal) {
    for server in running {
        let _ = kill(server.pid, signal);
    }
}

/// Waits for `names` to exit, up to `limit`.
async fn await_exits(
    exits: &mut mpsc::UnboundedReceiver<(&'static str, std::io::Result<ExitStatus>)>,
    mut pending: Vec<&'static str>,
    limit: Duration,
) -> Vec<&'static str> {
    let deadline = tokio::time::Instant::now() + limit;
    while !pending.is_empty() {
        match tokio::time::timeout_at(deadline, exits.recv()).await {
            Ok(Some((name, _))) => pending.retain(|n| *n != name),
            Ok(None) | Err(_) => break,
        }
    }
    pending
}

/// Builds the browser app when it is missing from its default place and its
/// sources are here: a fresh clone then needs no extra command.
async fn build_web_app(args: &UpArgs) -> Result<(), String> {
    let sources = Path::new(WEB_SOURCES);
    if webapp::is_built(&args.web_dir)
        || args.web_dir != Path::new(DEFAULT_WEB_DIR)
        || !sources.join("package.json").is_file()
    {
        return Ok(());
    }
    eprintln!("tailor: building the browser app (npm ci and npm run build in {WEB_SOURCES})");
    for step in [&["ci", "--no-audit", "--no-fund"][..], &["run", "build"]] {
        let status = Command::new("npm")
            .arg("--prefix")
            .arg(sources)
            .args(step)
            .stdin(Stdio::null())
            // The server table is the launcher's stdout; npm talks on stderr.
            .stdout(Stdio::from(
                std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| e.to_string())?,
            ))
            .status()
            .await
            .map_err(|e| format!("running npm (is Node.js installed?): {e}"))?;
        if !status.success() {
            return Err(format!(
                "npm {} in {WEB_SOURCES} failed ({status})",
                step.join(" ")
            ));
        }
    }
    Ok(())
}

/// A file only its owner may read, emptied for writing: logs can hold
/// user names and request details, the development key is a secret.
fn private_file_for_writing(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode on open: make it private too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// `tailor up`.
pub async fn up(args: UpArgs) -> Result<(), String> {
    tailor_storage::private_dir(&args.data_dir)
        .map_err(|e| format!("creating {}: {e}", args.data_dir.display()))?;
    // The development authority and a certificate per server: downstream
    // services admit only the BFFs, over mutual TLS.
    tailor_trust::Authority::ensure_dir(&args.data_dir.join(TRUST_DIR), &PROCESSES)
        .map_err(|e| format!("creating the development certificates: {e}"))?;
    let shutdown = tailor_runtime::shutdown::on_signal();
    build_web_app(&args).await?;
    let began = Instant::now();
    let ready_by = began + Duration::from_secs(args.ready_timeout_secs);
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();

    let mut running: Vec<Running> = Vec::new();
    let mut result = start_group(
        downstream_specs(&args),
        &args,
        &exit_tx,
        ready_by,
        &mut running,
    )
    .await;
    let web_port = if args.any_ports { 0 } else { WEB_APP_PORT };
    let (web_app, web_app_address) = match webapp::bind(web_port).await {
        Ok(bound) => (Some(bound.0), bound.1),
        Err(error) => {
            result = result.and(Err(error));
            (None, SocketAddr::from(([127, 0, 0, 1], web_port)))
        }
    };
    if result.is_ok() {
        result = web_dev_user(&args).await;
    }
    if result.is_ok() {
        let addresses: HashMap<&str, SocketAddr> =
            running.iter().map(|r| (r.name, r.address)).collect();
        result = start_group(
            bff_specs(&addresses, web_app_address),
            &args,
            &exit_tx,
            ready_by,
            &mut running,
        )
        .await;
    }

    if let (Ok(()), Some(listener)) = (&result, web_app) {
        let web_bff = running.iter().find(|r| r.name == "web-bff");
        let port = web_bff.map_or(0, |r| r.address.port());
        if !webapp::is_built(&args.web_dir) {
            eprintln!(
                "tailor: the web app is not built in {}; run `npm ci --prefix clients/web && npm run build --prefix clients/web`",
                args.web_dir.display()
            );
        }
        webapp::serve(listener, args.web_dir.clone(), port);
    }

    if result.is_ok() {
        result = write_prometheus_targets(&running, &args.data_dir);
    }

    if result.is_ok() {
        match partner_dev_key(&args).await {
            Ok(key) => print_table(
                &running,
                web_app_address,
                &key,
                &args.data_dir,
                began.elapsed(),
            ),
            Err(error) => result = Err(error),
        }
    }

    if result.is_ok() {
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some((name, status)) = exit_rx.recv() => {
                    // Nobody asked it to stop: it crashed or was killed.
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    eprintln!("tailor: {name} exited ({status}); the other servers keep running");
                    running.retain(|r| r.name != name);
                    if running.is_empty() {
                        break;
                    }
                }
            }
        }
    }

    // BFFs first, so no new calls reach the downstream services while
    // they drain; then the downstream services. Each server bounds its own
    // drain (`--drain-timeout-ms`, 10 s); one that outlives it by far is
    // killed.
    eprintln!("tailor: stopping");
    let began_stopping = Instant::now();
    for tier in [true, false] {
        let (group, rest): (Vec<Running>, Vec<Running>) = running
            .into_iter()
            .partition(|r| r.name.ends_with("-bff") == tier);
        running = rest;
        signal_all(&group, Signal::SIGTERM);
        let names = group.iter().map(|r| r.name).collect();
        let stuck = await_exits(&mut exit_rx, names, STOP_GRACE).await;
        let stuck: Vec<Running> = group
            .into_iter()
            .filter(|r| stuck.contains(&r.name))
            .collect();
        signal_all(&stuck, Signal::SIGKILL);
    }
    eprintln!(
        "tailor: stopped in {:.1}s",
        began_stopping.elapsed().as_secs_f64()
    );
    result
}

/// How long a server may take to exit after SIGTERM: its drain timeout
/// (10 s by default) and a little more.
const STOP_GRACE: Duration = Duration::from_secs(12);

/// Starts a group of servers at once (catalogue seeding runs in parallel)
/// and waits until all are SERVING.
/// Whatever started is added to `running`, even on failure, so it is
/// stopped again.
async fn start_group(
    specs: Vec<Spec>,
    args: &UpArgs,
    exits: &Exits,
    ready_by: Instant,
    running: &mut Vec<Running>,
) -> Result<(), String> {
    let mut result = Ok(());
    let first = running.len();
    let starts = specs.iter().map(|spec| start(spec, args, exits, ready_by));
    for outcome in futures_util::future::join_all(starts).await {
        match outcome {
            Ok(server) => running.push(server),
            Err(error) => result = result.and(Err(error)),
        }
    }
    let waits = running[first..]
        .iter()
        .map(|server| wait_serving(server.name, server.admin, ready_by));
    let outcomes = futures_util::future::join_all(waits).await;
    result.and(outcomes.into_iter().collect())
}

//! `tailor-bench streams`: what long-lived streams cost a BFF, measured
//! against a running stack from outside, as clients would hold them.
//!
//! - `watch-orders`: signed-in users place orders through a BFF (the web
//!   BFF unless `--bff mobile`) and then watch every one of them at once
//!   (`WatchOrder`), spread round robin over `--connections` client
//!   connections (a BFF allows 256 streams on one client connection). Once
//!   every watch has had its first message (the order's current state),
//!   the watches are held open for `--hold-secs` and then closed. The
//!   resident memory and CPU of the BFF and of the orders service are read
//!   from `/proc` before the orders are placed, after, with the watches
//!   open (sampled every 250 ms, the peak kept) and after they closed.
//!   A BFF lets one user hold 8 watches and place as many orders as its
//!   order rate's burst at once, so the orders are spread over enough
//!   users that neither refuses. A watch ends when its order reaches its
//!   final status: the stack must run with a fulfilment step longer than
//!   the run (`tailor up --fulfilment-step-ms`); watches that end early are
//!   counted apart.
//! - `stalled-feeds`: partner catalogue feeds (`StreamCatalogFeed`), each
//!   on a connection of its own with the protocol's initial 64 KiB flow
//!   control windows, read for their first message and then not read at
//!   all. The partner BFF's resident memory is sampled every 250 ms for
//!   `--hold-secs`; reported: before the feeds, right after all stalled,
//!   at the end, and its slope over the hold. With flow control doing its
//!   work the BFF stops sending once a reader's window is full and fetches
//!   no more of the catalogue, so the slope is near zero.
//!
//! `--record <file>` appends the figures as records `tailor-bench report`
//! turns into the performance report's Streams section.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
use tailor_proto::partner::v1::StreamCatalogFeedRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient as WebClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::procs;

/// Order watches one user may hold open at once on either BFF
/// (`tailor_web_bff::WATCHES_PER_USER`, `tailor_mobile_bff::WATCHES_PER_USER`).
const WATCHES_PER_USER: u32 = 8;

/// Catalogue feeds one API key may hold open at once
/// (`tailor_partner_bff::FEEDS_PER_KEY`).
const FEEDS_PER_KEY: usize = 4;

/// A client connection's HTTP/2 flow-control windows for the stalled
/// feeds, stream and connection: the protocol's initial 64 KiB, as a
/// client that does not raise them has.
const FEED_WINDOW: u32 = 65_535;

/// Streams a BFF allows on one client connection
/// (`tailor_runtime::TransportLimits::max_concurrent_streams`).
const STREAMS_PER_CLIENT_CONNECTION: usize = 256;

/// How often resident memory is sampled while streams are held.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Open order watches on a BFF (see the module docs).
    WatchOrders,
    /// Partner catalogue feeds whose readers stopped reading.
    StalledFeeds,
}

/// The BFF the order watches are held on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bff {
    /// `tailor.web.v1.ShopService` (audience `tailor-web`).
    Web,
    /// `tailor.mobile.v1.ShopService` (audience `tailor-mobile`).
    Mobile,
}

impl Bff {
    fn process(self) -> &'static str {
        match self {
            Bff::Web => "tailor-web-bff",
            Bff::Mobile => "tailor-mobile-bff",
        }
    }

    fn audience(self) -> &'static str {
        match self {
            Bff::Web => "tailor-web",
            Bff::Mobile => "tailor-mobile",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bff::Web => "web",
            Bff::Mobile => "mobile",
        }
    }
}

/// Flags of `tailor-bench streams`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Streams to hold open at once.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Client connections the order watches are spread over, round robin
    /// (at most 256 streams each, as the BFF allows); by default as few
    /// as hold 200 streams each. Stalled feeds always use one connection
    /// each, so that one stalled reader's window never holds another's.
    #[arg(long)]
    connections: Option<usize>,
    /// The BFF the order watches are held on.
    #[arg(long, value_enum, default_value = "web")]
    bff: Bff,
    /// Web BFF address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    web: SocketAddr,
    /// Mobile BFF address.
    #[arg(long, default_value = "127.0.0.1:8082")]
    mobile: SocketAddr,
    /// Partner BFF address.
    #[arg(long, default_value = "127.0.0.1:8083")]
    partner: SocketAddr,
    /// Partner API keys, comma-separated: a key may hold 4 feeds open at
    /// once, so `stalled-feeds` needs one key for every 4 streams.
    #[arg(long, env = "TAILOR_PARTNER_KEY", value_delimiter = ',')]
    partner_key: Vec<String>,
    /// HS256 secret the users' tokens are minted with (the BFFs'
    /// development secret, which `tailor up` runs with, unless set).
    #[arg(long, env = "TAILOR_JWT_HS256_SECRET", default_value = tailor_auth::DEVELOPMENT_JWT_SECRET, hide_default_value = true)]
    secret: String,
    /// Measure only the servers this process (a `tailor up`) started;
    /// otherwise the one server of each kind on the machine.
    #[arg(long)]
    launcher_pid: Option<u32>,
    /// A server process to measure named by its pid, as `<binary>=<pid>`
    /// (`tailor-web-bff=4242`), for one started apart from the stack (under
    /// a profiler, say); may be repeated.
    #[arg(long = "server-pid", value_parser = parse_server_pid)]
    server_pids: Vec<(String, u32)>,
    /// Seconds the streams are held open once all are open.
    #[arg(long, default_value_t = 10.0)]
    hold_secs: f64,
    /// Seconds all streams may take to open and deliver their first
    /// message; those still waiting then are counted as without one.
    #[arg(long, default_value_t = 300.0)]
    open_timeout_secs: f64,
    /// Calls placing orders or opening streams in flight at once (a BFF
    /// sheds calls beyond 256 in flight).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// The burst of the BFF's per-user order rate (`--order-limits`; 10
    /// unless configured): a user places at most this many orders here,
    /// and at most 8, the watches a user may hold.
    #[arg(long, default_value_t = tailor_screens::order::DEFAULT_ORDER_RATE.burst)]
    order_burst: u32,
    /// Products the orders are spread over (the well-stocked ones among
    /// ids 1..=N).
    #[arg(long, default_value_t = 10_000)]
    products: u32,
    /// Append the figures to this file as tab-separated records, for
    /// `tailor-bench report`.
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    /// The run's name in the records (the scenario's, with the BFF for
    /// watches, unless set).
    #[arg(long)]
    label: Option<String>,
}

/// One server process watched during a run.
#[derive(Debug, Clone)]
struct Watched {
    name: &'static str,
    pid: u32,
}

fn parse_server_pid(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected <binary>=<pid>"))?;
    let pid = pid.parse().map_err(|_| format!("{pid:?} is not a pid"))?;
    Ok((name.to_owned(), pid))
}

impl Watched {
    fn find(name: &'static str, args: &Args) -> Result<Self, String> {
        if let Some((_, pid)) = args.server_pids.iter().find(|(n, _)| n == name) {
            return Ok(Self { name, pid: *pid });
        }
        let launcher = args.launcher_pid;
        let found: Vec<u32> = procs::servers(launcher)
            .into_iter()
            .filter(|(_, binary)| binary == name)
            .map(|(pid, _)| pid)
            .collect();
        match found.as_slice() {
            [pid] => Ok(Self { name, pid: *pid }),
            [] => Err(format!(
                "no {name} process found{}",
                launcher.map_or(String::new(), |l| format!(" among the children of {l}"))
            )),
            _ => Err(format!(
                "{} {name} processes on this machine ({found:?}): name the stack with --launcher-pid",
                found.len()
            )),
        }
    }

    fn rss_kib(&self) -> Result<u64, String> {
        procs::rss_kib(self.pid).ok_or_else(|| format!("{} (pid {}) is gone", self.name, self.pid))
    }

    fn cpu_seconds(&self) -> f64 {
        procs::cpu_ticks(self.pid).map_or(0.0, |t| t as f64 / procs::TICKS)
    }
}

/// Resident memory of some processes sampled every [`SAMPLE_EVERY`] until
/// stopped: (seconds since the start, KiB of each process).
struct RssTrace {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(f64, Vec<u64>)>>,
}

impl RssTrace {
    fn start(processes: &[Watched]) -> Self {
        let pids: Vec<u32> = processes.iter().map(|p| p.pid).collect();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let rss = pids
                    .iter()
                    .map(|pid| procs::rss_kib(*pid).unwrap_or(0))
                    .collect();
                samples.push((started.elapsed().as_secs_f64(), rss));
            }
            samples
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<(f64, Vec<u64>)> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

fn peak(samples: &[(f64, Vec<u64>)], process: usize) -> u64 {
    samples
        .iter()
        .filter_map(|(_, rss)| rss.get(process).copied())
        .max()
        .unwrap_or(0)
}

/// The least-squares slope of `(seconds, KiB)` points, KiB a second.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points
        .iter()
        .map(|(t, y)| (t - mean_t) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

async fn connect(address: SocketAddr, window: Option<u32>) -> Result<Channel, String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true);
    if let Some(window) = window {
        endpoint = endpoint
            .initial_stream_window_size(window)
            .initial_connection_window_size(window);
    }
    endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))
}

/// A shop client of either BFF.
#[derive(Clone)]
enum Shop {
    Web(WebClient<Channel>),
    Mobile(MobileClient<Channel>),
}

/// An open order watch on either BFF.
enum Watch {
    Web(Streaming<tailor_proto::web::v1::WatchOrderResponse>),
    Mobile(Streaming<tailor_proto::mobile::v1::WatchOrderResponse>),
}

impl Watch {
    /// The next message: `Some(())`, or `None` once the watch ended.
    async fn next(&mut self) -> Result<Option<()>, Status> {
        Ok(match self {
            Watch::Web(s) => s.message().await?.map(drop),
            Watch::Mobile(s) => s.message().await?.map(drop),
        })
    }
}

fn with_bearer<T>(message: T, bearer: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
}

impl Shop {
    fn new(bff: Bff, channel: Channel) -> Self {
        match bff {
            Bff::Web => Shop::Web(WebClient::new(channel)),
            Bff::Mobile => Shop::Mobile(MobileClient::new(channel)),
        }
    }

    /// Places one unit of `product`; the order's id.
    async fn place(
        &self,
        key: &str,
        product: &str,
        bearer: &MetadataValue<Ascii>,
    ) -> Result<String, Status> {
        let missing = || Status::internal("the BFF answered without an order");
        match self.clone() {
            Shop::Web(mut c) => {
                use tailor_proto::web::v1::{OrderLineInput, PlaceOrderRequest};
                let request = PlaceOrderRequest {
                    idempotency_key: key.to_owned(),
                    lines: vec![OrderLineInput {
                        product_id: product.to_owned(),
                        quantity: 1,
                    }],
                };
                let placed = c.place_order(with_bearer(request, bearer)).await?;
                Ok(placed.into_inner().order.ok_or_else(missing)?.id)
            }
            Shop::Mobile(mut c) => {
                use tailor_proto::mobile::v1::{OrderLineInput, PlaceOrderRequest};
                let request = PlaceOrderRequest {
                    idempotency_key: key.to_owned(),
                    lines: vec![OrderLineInput {
                        product_id: product.to_owned(),
                        quantity: 1,
                    }],
                };
                let placed = c.place_order(with_bearer(request, bearer)).await?;
                Ok(placed.into_inner().order.ok_or_else(missing)?.id)
            }
        }
    }

    async fn watch(&self, order_id: &str, bearer: &MetadataValue<Ascii>) -> Result<Watch, Status> {
        Ok(match self.clone() {
            Shop::Web(mut c) => {
                let request = tailor_proto::web::v1::WatchOrderRequest {
                    order_id: order_id.to_owned(),
                };
                Watch::Web(
                    c.watch_order(with_bearer(request, bearer))
                        .await?
                        .into_inner(),
                )
            }
            Shop::Mobile(mut c) => {
                let request = tailor_proto::mobile::v1::WatchOrderRequest {
                    order_id: order_id.to_owned(),
                };
                Watch::Mobile(
                    c.watch_order(with_bearer(request, bearer))
                        .await?
                        .into_inner(),
                )
            }
        })
    }
}

/// Whether a refusal says "busy, come back shortly" (shedding, downstream
/// admission), which a client retries after a pause.
fn busy(status: &Status) -> bool {
    matches!(status.code(), Code::ResourceExhausted | Code::Unavailable)
        && !status.message().contains("may be open at once")
}

/// Runs `call` until it succeeds, is refused for good, or was retried
/// `attempts - 1` times after a busy refusal; retries are counted.
async fn with_retries<T, F, Fut>(
    attempts: u32,
    retries: &AtomicUsize,
    mut call: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if attempt < attempts && busy(&status) => {
                retries.fetch_add(1, Ordering::Relaxed);
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            outcome => return outcome,
        }
    }
}

/// The seeded products with stock for many orders, among ids 1..=`products`.
fn stocked(products: u32) -> Vec<String> {
    (1..=products.max(1))
        .filter(|&index| {
            tailor_seed::stock(index)
                .iter()
                .map(|w| w.available)
                .sum::<i32>()
                >= 50
        })
        .map(|index| format!("prod-{index:06}"))
        .collect()
}

/// A bearer token for `subject` at `audience`, minted with `secret`, valid
/// for an hour.
pub(crate) fn mint(
    secret: &str,
    audience: &str,
    subject: String,
) -> Result<MetadataValue<Ascii>, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = tailor_auth::Claims {
        sub: subject,
        aud: audience.into(),
        // BFFs accept tokens valid for an hour at most.
        exp: now + 3600,
        iat: now,
        iss: String::new(),
        scope: String::new(),
    };
    let token = tailor_auth::mint_hs256(secret.as_bytes(), &claims);
    format!("Bearer {token}")
        .parse()
        .map_err(|_| "a minted token is not valid metadata".to_owned())
}

/// A name for this run, different from every earlier one.
pub(crate) fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{}-{now}", std::process::id())
}

fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let minute = secs % 86_400 / 60;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute / 60,
        minute % 60
    )
}

/// The orders service's fulfilment step in milliseconds, as its command
/// line or environment sets it (the binary's default, 3,000, otherwise);
/// `None` when its process cannot be read.
fn fulfilment_step_ms(pid: u32) -> Option<u64> {
    let read = |what: &str| -> Option<Vec<String>> {
        let raw = std::fs::read(format!("/proc/{pid}/{what}")).ok()?;
        Some(
            raw.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        )
    };
    let args = read("cmdline")?;
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--fulfilment-step-ms=") {
            return value.parse().ok();
        }
        if arg == "--fulfilment-step-ms" {
            return args.get(i + 1)?.parse().ok();
        }
    }
    let environment = read("environ").unwrap_or_default();
    if let Some(value) = environment
        .iter()
        .find_map(|v| v.strip_prefix("TAILOR_ORDERS_FULFILMENT_STEP_MS="))
    {
        return value.parse().ok();
    }
    Some(3000)
}

/// Memory and CPU of one process through a watch-orders run.
#[derive(Debug, Clone)]
struct WatchProcess {
    name: &'static str,
    before_kib: u64,
    placed_kib: u64,
    open_kib: u64,
    peak_kib: u64,
    closed_kib: u64,
    cpu_placing: f64,
    cpu_opening: f64,
    cpu_holding: f64,
}

/// What a watch-orders run measured.
#[derive(Debug)]
struct WatchRun {
    bff: Bff,
    streams: usize,
    connections: usize,
    users: usize,
    placed: usize,
    place_failed: usize,
    place_seconds: f64,
    first: usize,
    failed: usize,
    ended_early: usize,
    open_seconds: f64,
    hold_seconds: f64,
    retries: usize,
    /// The orders service's fulfilment step, ms, when it could be read.
    fulfilment_step_ms: Option<u64>,
    errors: std::collections::BTreeMap<String, usize>,
    /// The first failure, in full.
    first_error: Option<String>,
    processes: Vec<WatchProcess>,
}

/// How one watch went, as its task reports it.
enum Opened {
    First,
    Failed(Status),
}

/// How one watch ended, after the hold.
enum Held {
    Open,
    Ended,
    Failed,
    NeverOpened,
}

async fn watch_orders(args: &Args) -> Result<WatchRun, String> {
    let bff = args.bff;
    let streams = args.streams.max(1);
    let connections = args
        .connections
        .unwrap_or_else(|| streams.div_ceil(200))
        .max(1);
    if streams.div_ceil(connections) > STREAMS_PER_CLIENT_CONNECTION {
        return Err(format!(
            "{streams} streams over {connections} connections is more than the {STREAMS_PER_CLIENT_CONNECTION} \
             streams a BFF allows on one client connection: use --connections {} or more",
            streams.div_ceil(STREAMS_PER_CLIENT_CONNECTION)
        ));
    }
    let per_user = WATCHES_PER_USER.min(args.order_burst).max(1) as usize;
    let users = streams.div_ceil(per_user);
    let watched = [
        Watched::find(bff.process(), args)?,
        Watched::find("tailor-orders", args)?,
    ];
    let step = fulfilment_step_ms(watched[1].pid);
    let address = match bff {
        Bff::Web => args.web,
        Bff::Mobile => args.mobile,
    };
    let run = run_id();
    let bearers: Arc<Vec<MetadataValue<Ascii>>> = Arc::new(
        (0..users)
            .map(|u| mint(&args.secret, bff.audience(), format!("streams-{run}-{u}")))
            .collect::<Result<_, _>>()?,
    );
    let products = Arc::new(stocked(args.products));
    if products.is_empty() {
        return Err("no seeded product has stock to order".into());
    }
    let mut shops = Vec::with_capacity(connections);
    for _ in 0..connections {
        shops.push(Shop::new(bff, connect(address, None).await?));
    }
    let shops = Arc::new(shops);
    println!(
        "watch-orders on the {} BFF: {streams} watches over {connections} connection(s), \
         {users} users with at most {per_user} orders each; the orders service's fulfilment \
         step is {}",
        bff.name(),
        step.map_or("unknown".to_owned(), |ms| format!("{ms} ms"))
    );

    let before: Vec<u64> = watched
        .iter()
        .map(Watched::rss_kib)
        .collect::<Result<_, _>>()?;
    let cpu_start: Vec<f64> = watched.iter().map(Watched::cpu_seconds).collect();

    // Place the orders: order i by user i / per_user, so no user places
    // more than its burst nor watches more than its cap.
    let retries = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let placing = Instant::now();
    let mut placers = Vec::new();
    for _ in 0..args.in_flight.max(1).min(streams) {
        let (shops, bearers, products, next, retries, run) = (
            shops.clone(),
            bearers.clone(),
            products.clone(),
            next.clone(),
            retries.clone(),
            run.clone(),
        );
        placers.push(tokio::spawn(async move {
            let mut placed = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= streams {
                    return placed;
                }
                let shop = &shops[i % shops.len()];
                let bearer = &bearers[i / per_user];
                let key = format!("streams-{run}-{i}");
                let product = &products[i % products.len()];
                let outcome = with_retries(5, &retries, || shop.place(&key, product, bearer)).await;
                placed.push((i, outcome));
            }
        }));
    }
    let mut orders: Vec<Option<String>> = vec![None; streams];
    let mut errors = std::collections::BTreeMap::new();
    let mut first_error = None;
    for placer in placers {
        for (i, outcome) in placer.await.map_err(|e| e.to_string())? {
            match outcome {
                Ok(id) => orders[i] = Some(id),
                Err(status) => {
                    first_error.get_or_insert_with(|| format!("placing order {i}: {status:?}"));
                    *errors
                        .entry(format!("placing: {:?}", status.code()))
                        .or_default() += 1
                }
            }
        }
    }
    let place_seconds = placing.elapsed().as_secs_f64();
    let placed = orders.iter().filter(|o| o.is_some()).count();
    println!(
        "placed {placed} orders in {place_seconds:.1} s ({} failed)",
        streams - placed
    );
    // Let the allocator and the servers settle before the reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let placed_kib: Vec<u64> = watched
        .iter()
        .map(Watched::rss_kib)
        .collect::<Result<_, _>>()?;
    let cpu_placed: Vec<f64> = watched.iter().map(Watched::cpu_seconds).collect();

    // Open every watch, at most `in_flight` opening at once; each task
    // then holds its watch until told to stop.
    let trace = RssTrace::start(&watched);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::unbounded_channel();
    let opening_slots = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let opening = Instant::now();
    let mut holders = Vec::with_capacity(placed);
    for (i, order) in orders.iter().enumerate() {
        let Some(order) = order.clone() else { continue };
        let shop = shops[i % shops.len()].clone();
        let bearers = bearers.clone();
        let (opened_tx, mut stop_rx, slots, retries) = (
            opened_tx.clone(),
            stop_rx.clone(),
            opening_slots.clone(),
            retries.clone(),
        );
        holders.push(tokio::spawn(async move {
            let bearer = &bearers[i / per_user];
            let permit = slots.acquire_owned().await;
            let first = async {
                let mut watch = with_retries(3, &retries, || shop.watch(&order, bearer)).await?;
                match watch.next().await? {
                    Some(()) => Ok(watch),
                    None => Err(Status::aborted("the watch ended before its first message")),
                }
            };
            let mut watch = tokio::select! {
                outcome = first => match outcome {
                    Ok(watch) => watch,
                    Err(status) => {
                        let _ = opened_tx.send(Opened::Failed(status));
                        return Held::Failed;
                    }
                },
                _ = stop_rx.changed() => return Held::NeverOpened,
            };
            drop(permit);
            let _ = opened_tx.send(Opened::First);
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => return Held::Open,
                    next = watch.next() => match next {
                        Ok(Some(())) => continue,
                        Ok(None) => return Held::Ended,
                        Err(_) => return Held::Failed,
                    },
                }
            }
        }));
    }
    drop(opened_tx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.open_timeout_secs);
    let (mut first, mut failed) = (0, 0);
    while first + failed < placed {
        match tokio::time::timeout_at(deadline, opened_rx.recv()).await {
            Ok(Some(Opened::First)) => first += 1,
            Ok(Some(Opened::Failed(status))) => {
                failed += 1;
                *errors
                    .entry(format!("watching: {:?}", status.code()))
                    .or_default() += 1;
                first_error.get_or_insert_with(|| format!("watching: {status:?}"));
            }
            Ok(None) | Err(_) => break,
        }
    }
    let open_seconds = opening.elapsed().as_secs_f64();
    let unanswered = placed - first - failed;
    println!(
        "{first} of {placed} watches had their first message in {open_seconds:.1} s \
         ({failed} failed{})",
        if unanswered > 0 {
            format!(
                ", {unanswered} still waiting after {} s",
                args.open_timeout_secs
            )
        } else {
            String::new()
        }
    );
    let open_kib: Vec<u64> = watched
        .iter()
        .map(Watched::rss_kib)
        .collect::<Result<_, _>>()?;
    let cpu_opened: Vec<f64> = watched.iter().map(Watched::cpu_seconds).collect();

    let holding = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.hold_secs)).await;
    let hold_seconds = holding.elapsed().as_secs_f64();
    let cpu_held: Vec<f64> = watched.iter().map(Watched::cpu_seconds).collect();
    let samples = trace.finish().await;

    let _ = stop_tx.send(true);
    let mut ended_early = 0;
    for holder in holders {
        if let Held::Ended = holder.await.map_err(|e| e.to_string())? {
            ended_early += 1;
        }
    }
    drop(shops);
    // Give the servers a moment to see the streams and connections go.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let closed_kib: Vec<u64> = watched
        .iter()
        .map(Watched::rss_kib)
        .collect::<Result<_, _>>()?;

    let processes = watched
        .iter()
        .enumerate()
        .map(|(n, p)| WatchProcess {
            name: p.name,
            before_kib: before[n],
            placed_kib: placed_kib[n],
            open_kib: open_kib[n],
            peak_kib: peak(&samples, n).max(open_kib[n]),
            closed_kib: closed_kib[n],
            cpu_placing: cpu_placed[n] - cpu_start[n],
            cpu_opening: cpu_opened[n] - cpu_placed[n],
            cpu_holding: cpu_held[n] - cpu_opened[n],
        })
        .collect();
    Ok(WatchRun {
        bff,
        streams,
        connections,
        users,
        placed,
        place_failed: streams - placed,
        place_seconds,
        first,
        failed: failed + unanswered,
        ended_early,
        open_seconds,
        hold_seconds,
        retries: retries.load(Ordering::Relaxed),
        fulfilment_step_ms: step,
        errors,
        first_error,
        processes,
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_watches(run: &WatchRun) {
    println!(
        "held {} watches for {:.1} s; {} ended before the end of the hold (their order reached \
         its final status); {} busy refusals retried",
        run.first, run.hold_seconds, run.ended_early, run.retries
    );
    if !run.errors.is_empty() {
        let errors: Vec<String> = run.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("errors: {}", errors.join(", "));
    }
    if let Some(first) = &run.first_error {
        println!("first error: {first}");
    }
    println!();
    println!(
        "{:<18} {:>12} {:>12} {:>12} {:>10} {:>12} {:>14} {:>22}",
        "process",
        "before MiB",
        "placed MiB",
        "open MiB",
        "peak MiB",
        "closed MiB",
        "MiB/1k streams",
        "CPU s place/open/hold"
    );
    for p in &run.processes {
        println!(
            "{:<18} {:>12.1} {:>12.1} {:>12.1} {:>10.1} {:>12.1} {:>14.2} {:>22}",
            p.name,
            mib(p.before_kib),
            mib(p.placed_kib),
            mib(p.open_kib),
            mib(p.peak_kib),
            mib(p.closed_kib),
            per_thousand(p.open_kib, p.placed_kib, run.first),
            format!(
                "{:.2}/{:.2}/{:.2}",
                p.cpu_placing, p.cpu_opening, p.cpu_holding
            )
        );
    }
}

/// MiB a thousand streams add, from the memory with the streams open and
/// before they opened.
fn per_thousand(open_kib: u64, placed_kib: u64, streams: usize) -> f64 {
    if streams == 0 {
        return 0.0;
    }
    (open_kib as f64 - placed_kib as f64) / 1024.0 * 1000.0 / streams as f64
}

/// What a stalled-feeds run measured.
#[derive(Debug)]
struct FeedRun {
    streams: usize,
    stalled: usize,
    failed: usize,
    errors: std::collections::BTreeMap<String, usize>,
    open_seconds: f64,
    hold_seconds: f64,
    before_kib: u64,
    connected_kib: u64,
    stalled_kib: u64,
    end_kib: u64,
    peak_kib: u64,
    slope_kib_s: f64,
}

async fn stalled_feeds(args: &Args) -> Result<FeedRun, String> {
    let streams = args.streams.max(1);
    let keys: Vec<Arc<str>> = args
        .partner_key
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| Arc::from(k.as_str()))
        .collect();
    let needed = streams.div_ceil(FEEDS_PER_KEY);
    if keys.len() < needed {
        return Err(format!(
            "{streams} feeds need {needed} partner keys (a key holds {FEEDS_PER_KEY} feeds at once); \
             --partner-key gives {}",
            keys.len()
        ));
    }
    let partner = Watched::find("tailor-partner-bff", args)?;
    println!(
        "stalled-feeds: {streams} catalogue feeds, each on its own connection with \
         {FEED_WINDOW}-byte flow-control windows, read for one message and then stalled"
    );
    let before_kib = partner.rss_kib()?;
    // The connections first, so that what the feeds themselves cost is
    // told apart from what idle connections do.
    let mut channels = Vec::with_capacity(streams);
    for _ in 0..streams {
        channels.push(connect(args.partner, Some(FEED_WINDOW)).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected_kib = partner.rss_kib()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(args.in_flight.clamp(1, 16)));
    let opening = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    for (i, channel) in channels.into_iter().enumerate() {
        // Key n holds feeds 4n .. 4n + 3.
        let key = keys[i / FEEDS_PER_KEY].clone();
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = slots.acquire_owned().await;
            let mut request = tonic::Request::new(StreamCatalogFeedRequest::default());
            request
                .metadata_mut()
                .insert("x-api-key", key.parse().map_err(|_| Code::InvalidArgument)?);
            let mut feed = PartnerServiceClient::new(channel.clone())
                .stream_catalog_feed(request)
                .await
                .map_err(|s| s.code())?
                .into_inner();
            match feed.message().await {
                Ok(Some(_)) => Ok((channel, feed)),
                Ok(None) => Err(Code::OutOfRange),
                Err(status) => Err(status.code()),
            }
        }));
    }
    let mut held = Vec::with_capacity(streams);
    let mut errors = std::collections::BTreeMap::new();
    for task in tasks {
        match task.await.map_err(|e| e.to_string())? {
            Ok(feed) => held.push(feed),
            Err(code) => *errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }
    let open_seconds = opening.elapsed().as_secs_f64();
    let stalled = held.len();
    let trace = RssTrace::start(std::slice::from_ref(&partner));
    let stalled_kib = partner.rss_kib()?;
    println!("{stalled} feeds stalled after their first message in {open_seconds:.1} s");
    let holding = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.hold_secs)).await;
    let hold_seconds = holding.elapsed().as_secs_f64();
    let end_kib = partner.rss_kib()?;
    let samples = trace.finish().await;
    drop(held);
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|(t, rss)| Some((*t, *rss.first()? as f64)))
        .collect();
    Ok(FeedRun {
        streams,
        stalled,
        failed: streams - stalled,
        errors,
        open_seconds,
        hold_seconds,
        before_kib,
        connected_kib,
        stalled_kib,
        end_kib,
        peak_kib: peak(&samples, 0).max(end_kib).max(stalled_kib),
        slope_kib_s: slope(&points),
    })
}

fn print_feeds(run: &FeedRun) {
    if !run.errors.is_empty() {
        let errors: Vec<String> = run.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("failed feeds: {}", errors.join(", "));
    }
    let bound = run.stalled as u64 * u64::from(FEED_WINDOW) / 1024;
    println!(
        "partner BFF RSS: {:.1} MiB before, {:.1} MiB with the connections open, {:.1} MiB \
         with {} readers stalled (+{} KiB; their windows hold {} KiB), {:.1} MiB after {:.1} s \
         (peak {:.1} MiB); slope over the hold {:+.1} KiB/s",
        mib(run.before_kib),
        mib(run.connected_kib),
        mib(run.stalled_kib),
        run.stalled,
        run.stalled_kib.saturating_sub(run.connected_kib),
        bound,
        mib(run.end_kib),
        run.hold_seconds,
        mib(run.peak_kib),
        run.slope_kib_s
    );
}

fn label(args: &Args) -> String {
    args.label.clone().unwrap_or_else(|| match args.scenario {
        Scenario::WatchOrders => format!("watch-orders-{}", args.bff.name()),
        Scenario::StalledFeeds => "stalled-feeds".to_owned(),
    })
}

/// The records of a watch-orders run (the format `tailor-bench report`
/// reads): one `watches` line, one `watch-process` line per process.
fn watch_records(label: &str, run: &WatchRun, date: &str) -> String {
    let errors = if run.errors.is_empty() {
        "none".to_owned()
    } else {
        run.errors
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!(
        "watches\t{label}\t{}\t{}\t{}\t{}\t{}\t{:.3}\t{}\t{}\t{}\t{:.3}\t{:.3}\t{}\t{}\t{errors}\t{date}\n",
        run.bff.name(),
        run.streams,
        run.connections,
        run.users,
        run.placed,
        run.place_seconds,
        run.first,
        run.failed,
        run.ended_early,
        run.open_seconds,
        run.hold_seconds,
        run.retries,
        run.fulfilment_step_ms
            .map_or("unknown".to_owned(), |ms| ms.to_string()),
    );
    for p in &run.processes {
        out.push_str(&format!(
            "watch-process\t{label}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\n",
            p.name,
            p.before_kib,
            p.placed_kib,
            p.open_kib,
            p.peak_kib,
            p.closed_kib,
            p.cpu_placing,
            p.cpu_opening,
            p.cpu_holding
        ));
    }
    out
}

/// The record of a stalled-feeds run.
fn feed_record(label: &str, run: &FeedRun, date: &str) -> String {
    format!(
        "feeds\t{label}\t{}\t{}\t{}\t{:.3}\t{:.3}\t{}\t{}\t{}\t{}\t{}\t{:.3}\t{FEED_WINDOW}\t{date}\n",
        run.streams,
        run.stalled,
        run.failed,
        run.open_seconds,
        run.hold_seconds,
        run.before_kib,
        run.connected_kib,
        run.stalled_kib,
        run.end_kib,
        run.peak_kib,
        run.slope_kib_s
    )
}

fn append(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

pub async fn run(args: Args) -> Result<(), String> {
    let date = utc_now();
    let label = label(&args);
    let (record, complete) = match args.scenario {
        Scenario::WatchOrders => {
            let run = watch_orders(&args).await?;
            print_watches(&run);
            let complete = run.place_failed == 0 && run.first == run.streams;
            (watch_records(&label, &run, &date), complete)
        }
        Scenario::StalledFeeds => {
            let run = stalled_feeds(&args).await?;
            print_feeds(&run);
            (feed_record(&label, &run, &date), run.failed == 0)
        }
    };
    if let Some(path) = &args.record {
        append(path, &record)?;
    }
    if complete {
        Ok(())
    } else {
        Err("not every stream opened and had its first message (see above)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_of_a_line_is_its_rate() {
        let points: Vec<(f64, f64)> = (0..20)
            .map(|i| (f64::from(i) * 0.25, 1000.0 + 8.0 * f64::from(i) * 0.25))
            .collect();
        assert!((slope(&points) - 8.0).abs() < 1e-9);
        assert_eq!(slope(&[(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)]), 0.0);
        assert_eq!(slope(&[(0.0, 5.0)]), 0.0);
    }

    #[test]
    fn dates_are_civil_utc() {
        let date = utc_now();
        assert!(date.ends_with(" UTC") && date.len() == 20, "{date}");
        assert!(date.starts_with("20"), "{date}");
    }
}

//! `tailor-bench load`: a load generator for one scenario at a time.
//!
//! Closed loop (each of `concurrency` callers calls again as soon as its
//! answer arrives) or open loop (`--rate` calls a second, each started on
//! schedule whatever the answers do, its latency counted from when it was
//! due, so a stalled server shows as latency, not as fewer calls). A warm-up
//! runs first and is not counted. Reported: calls/s, p50/p90/p99/p99.9,
//! errors by status, and for every Tailor server process found on the
//! machine its CPU seconds, CPU per call and peak RSS during the run.
//!
//! `--concurrency 1,8,32,128` runs the levels one after the other, so the
//! table shows where the target saturates. `--record <file>` also appends
//! each level's figures to a file `tailor-bench report` turns into the
//! performance report; `--process <name>=<pid>` measures another process
//! beside the servers (the Node.js peer of the web BFF).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::catalog::v1::{GetProductRequest, ListRelatedProductsRequest};
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
use tailor_proto::mobile::v1::{OrderLineInput, PlaceOrderRequest};
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::partner::v1::{BatchGetAvailabilityRequest, StreamCatalogFeedRequest};
use tailor_proto::web::v1::shop_service_client::ShopServiceClient as WebClient;
use tailor_proto::web::v1::{GetProductPageRequest, ListProductsRequest};
use tonic::Code;
use tonic::transport::Channel;

use crate::procs::{ProcessUse, Sampler};

/// What is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The floor: one catalog `GetProduct`, straight to the catalog over
    /// mutual TLS with the web BFF's certificate.
    CatalogGet,
    /// The web page's costliest downstream call: the catalog's
    /// `ListRelatedProducts` as the web BFF asks for it (8 cards, the card
    /// fields), straight to the catalog with the web BFF's certificate.
    CatalogRelated,
    /// The web product page over native gRPC.
    WebPage,
    /// The web product page over grpc-web, binary, HTTP/1.1 (one
    /// connection per concurrent caller, as browsers do).
    WebPageGrpcWeb,
    /// The same over grpc-web text.
    WebPageGrpcWebText,
    /// The mobile product page with a read mask (title, price, stock).
    MobilePage,
    /// A page of 20 product cards on the web BFF.
    WebList,
    /// Partner availability of 20 products in one call.
    PartnerAvailability,
    /// The partner catalogue feed (`StreamCatalogFeed`) read to its end:
    /// one call is one whole feed.
    PartnerFeed,
    /// A mobile `PlaceOrder` of one unit of one well-stocked product (by
    /// the seed's stock, among the first `--products`), each call with a
    /// fresh idempotency key, as a signed-in user. Calls are spread over
    /// `--users` users (order n by `bench-user-<n % users>`), so the per-user order
    /// rate (10 at once, then one every 10 s) does not decide the
    /// throughput.
    OrderPlacement,
}

/// Flags of `tailor-bench load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to call.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Web BFF address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    web: SocketAddr,
    /// Mobile BFF address.
    #[arg(long, default_value = "127.0.0.1:8082")]
    mobile: SocketAddr,
    /// Partner BFF address.
    #[arg(long, default_value = "127.0.0.1:8083")]
    partner: SocketAddr,
    /// Catalog address (mutual TLS).
    #[arg(long, default_value = "127.0.0.1:50051")]
    catalog: SocketAddr,
    /// The stack's trust directory, for direct calls to the catalog.
    #[arg(long, env = "TAILOR_TRUST_DIR", default_value = "data/trust")]
    trust_dir: std::path::PathBuf,
    /// Partner API keys, comma-separated (`tailor up` prints the
    /// development one). `partner-feed` gives each caller one key in turn:
    /// a key may hold only a few feeds open at once, so high concurrency
    /// needs several keys.
    #[arg(long, env = "TAILOR_PARTNER_KEY", value_delimiter = ',')]
    partner_key: Vec<String>,
    /// HTTP/2 connections the calls are spread over (native gRPC).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Concurrent calls; several comma-separated levels run one after the
    /// other. In open loop, the most calls allowed in flight.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    concurrency: Vec<usize>,
    /// Open loop: calls a second. Closed loop when not given.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds measured per level.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Seconds of warm-up before each level, not counted.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// At most this many measured calls per level.
    #[arg(long, default_value_t = 10_000_000)]
    max_calls: u64,
    /// Products cycled through (ids 1..=N).
    #[arg(long, default_value_t = 1000)]
    products: u32,
    /// Measure only the servers this process (a `tailor up`) started;
    /// otherwise every Tailor server on the machine.
    #[arg(long)]
    launcher_pid: Option<u32>,
    /// Another process to measure beside the servers, as `<name>=<pid>`
    /// (for example a peer implementation of a BFF); may be repeated.
    #[arg(long = "process", value_parser = parse_process)]
    processes: Vec<(String, u32)>,
    /// Users the order calls are spread over (`order-placement`).
    #[arg(long, default_value_t = 1000)]
    users: u32,
    /// HS256 secret the users' tokens are minted with (the BFFs'
    /// development secret, which `tailor up` runs with, unless set).
    #[arg(long, env = "TAILOR_JWT_HS256_SECRET", default_value = tailor_auth::DEVELOPMENT_JWT_SECRET, hide_default_value = true)]
    secret: String,
    /// Also append each level's figures to this file as tab-separated
    /// records, for `tailor-bench report`.
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    /// The target's name in the records (the scenario's name unless set).
    #[arg(long)]
    label: Option<String>,
}

fn parse_process(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected <name>=<pid>"))?;
    let pid = pid.parse().map_err(|_| format!("{pid:?} is not a pid"))?;
    Ok((name.to_owned(), pid))
}

/// One scenario's way of making call number `i`.
#[derive(Clone)]
enum Caller {
    Catalog(Vec<CatalogServiceClient<Channel>>),
    CatalogRelated(Vec<CatalogServiceClient<Channel>>),
    Web(Vec<WebClient<Channel>>),
    WebList(Vec<WebClient<Channel>>),
    Mobile(Vec<MobileClient<Channel>>),
    Partner(Vec<PartnerServiceClient<Channel>>, Arc<str>),
    PartnerFeed(
        Vec<PartnerServiceClient<Channel>>,
        Arc<[Arc<str>]>,
        Arc<AtomicUsize>,
    ),
    Orders(Vec<MobileClient<Channel>>, Arc<OrderUsers>),
    GrpcWeb {
        address: SocketAddr,
        text: bool,
    },
}

fn product(i: u64, products: u32) -> String {
    format!("prod-{:06}", i % u64::from(products) + 1)
}

async fn connect(uri: String) -> Result<Channel, String> {
    tonic::transport::Endpoint::from_shared(uri.clone())
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connecting to {uri}: {e}"))
}

async fn channels(args: &Args, address: SocketAddr) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(connect(format!("http://{address}")).await?);
    }
    Ok(channels)
}

/// Clients straight to the catalog over mutual TLS, as the web BFF calls
/// it (with its certificate).
async fn catalog_clients(args: &Args) -> Result<Vec<CatalogServiceClient<Channel>>, String> {
    let credentials = tailor_trust::MeshCredentials::load(
        &tailor_trust::TrustFiles::new(&args.trust_dir),
        "web-bff",
    )
    .map_err(|e| e.to_string())?;
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", args.catalog))
            .map_err(|e| e.to_string())?
            .tls_config(credentials.client_tls("catalog"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("catalog at {}: {e}", args.catalog))?;
        clients.push(CatalogServiceClient::new(channel));
    }
    Ok(clients)
}

/// What the web BFF's product page asks the catalog for its related
/// products (`PAGE_RELATED` and `shape::CARD_FIELDS` in the web BFF).
fn related_request(product_id: String) -> ListRelatedProductsRequest {
    ListRelatedProductsRequest {
        product_id,
        page_size: 8,
        read_mask: Some(prost_types::FieldMask {
            paths: ["id", "title", "brand", "category_name", "price", "images"]
                .map(str::to_owned)
                .to_vec(),
        }),
    }
}

impl Caller {
    async fn new(args: &Args) -> Result<Caller, String> {
        Ok(match args.scenario {
            Scenario::CatalogGet => Caller::Catalog(catalog_clients(args).await?),
            Scenario::CatalogRelated => Caller::CatalogRelated(catalog_clients(args).await?),
            Scenario::WebPage => Caller::Web(
                channels(args, args.web)
                    .await?
                    .into_iter()
                    .map(WebClient::new)
                    .collect(),
            ),
            Scenario::WebList => Caller::WebList(
                channels(args, args.web)
                    .await?
                    .into_iter()
                    .map(WebClient::new)
                    .collect(),
            ),
            Scenario::MobilePage => Caller::Mobile(
                channels(args, args.mobile)
                    .await?
                    .into_iter()
                    .map(MobileClient::new)
                    .collect(),
            ),
            Scenario::PartnerAvailability | Scenario::PartnerFeed => {
                let keys: Vec<Arc<str>> = args
                    .partner_key
                    .iter()
                    .filter(|k| !k.is_empty())
                    .map(|k| Arc::from(k.as_str()))
                    .collect();
                let key = keys.first().cloned().ok_or(
                    "--partner-key (or TAILOR_PARTNER_KEY) is needed for partner scenarios",
                )?;
                let clients = channels(args, args.partner)
                    .await?
                    .into_iter()
                    .map(PartnerServiceClient::new)
                    .collect();
                if args.scenario == Scenario::PartnerFeed {
                    Caller::PartnerFeed(clients, keys.into(), Arc::default())
                } else {
                    Caller::Partner(clients, key)
                }
            }
            Scenario::OrderPlacement => Caller::Orders(
                channels(args, args.mobile)
                    .await?
                    .into_iter()
                    .map(MobileClient::new)
                    .collect(),
                Arc::new(OrderUsers::mint(args.users, &args.secret, args.products)?),
            ),
            Scenario::WebPageGrpcWeb => Caller::GrpcWeb {
                address: args.web,
                text: false,
            },
            Scenario::WebPageGrpcWebText => Caller::GrpcWeb {
                address: args.web,
                text: true,
            },
        })
    }

    /// A caller's own state: for grpc-web, its HTTP/1.1 connection.
    async fn worker(&self) -> Result<Worker, String> {
        Ok(match self {
            Caller::GrpcWeb { address, text } => {
                Worker::GrpcWeb(GrpcWebConnection::open(*address, *text).await?)
            }
            Caller::PartnerFeed(clients, keys, next) => {
                let key = keys[next.fetch_add(1, Ordering::Relaxed) % keys.len()].clone();
                Worker::Shared(Caller::PartnerFeed(
                    clients.clone(),
                    Arc::from([key]),
                    next.clone(),
                ))
            }
            other => Worker::Shared(other.clone()),
        })
    }
}

enum Worker {
    Shared(Caller),
    GrpcWeb(GrpcWebConnection),
}

fn pick<T: Clone>(clients: &[T], i: u64) -> T {
    clients[i as usize % clients.len()].clone()
}

impl Worker {
    async fn call(&mut self, i: u64, products: u32) -> Result<(), Code> {
        let id = product(i, products);
        let status = |e: tonic::Status| e.code();
        match self {
            Worker::Shared(Caller::Catalog(c)) => pick(c, i)
                .get_product(GetProductRequest { id })
                .await
                .map(drop)
                .map_err(status),
            Worker::Shared(Caller::CatalogRelated(c)) => pick(c, i)
                .list_related_products(related_request(id))
                .await
                .map(drop)
                .map_err(status),
            Worker::Shared(Caller::Web(c)) => pick(c, i)
                .get_product_page(GetProductPageRequest { product_id: id })
                .await
                .map(drop)
                .map_err(status),
            Worker::Shared(Caller::WebList(c)) => pick(c, i)
                .list_products(ListProductsRequest {
                    page_size: 20,
                    ..Default::default()
                })
                .await
                .map(drop)
                .map_err(status),
            Worker::Shared(Caller::Mobile(c)) => {
                let mut request =
                    tonic::Request::new(tailor_proto::mobile::v1::GetProductPageRequest {
                        product_id: id,
                        ..Default::default()
                    });
                request
                    .metadata_mut()
                    .insert("x-read-mask", "title price_minor stock".parse().unwrap());
                pick(c, i)
                    .get_product_page(request)
                    .await
                    .map(drop)
                    .map_err(status)
            }
            Worker::Shared(Caller::Partner(c, key)) => {
                let mut request = tonic::Request::new(BatchGetAvailabilityRequest {
                    product_ids: (0..20).map(|k| product(i * 20 + k, products)).collect(),
                });
                request
                    .metadata_mut()
                    .insert("x-api-key", key.parse().map_err(|_| Code::InvalidArgument)?);
                pick(c, i)
                    .batch_get_availability(request)
                    .await
                    .map(drop)
                    .map_err(status)
            }
            Worker::Shared(Caller::PartnerFeed(c, keys, _)) => {
                let key = &keys[0];
                let mut request = tonic::Request::new(StreamCatalogFeedRequest::default());
                request
                    .metadata_mut()
                    .insert("x-api-key", key.parse().map_err(|_| Code::InvalidArgument)?);
                let mut feed = pick(c, i)
                    .stream_catalog_feed(request)
                    .await
                    .map_err(status)?
                    .into_inner();
                while feed.message().await.map_err(status)?.is_some() {}
                Ok(())
            }
            Worker::Shared(Caller::Orders(c, users)) => {
                let order = users.next();
                let mut request = tonic::Request::new(PlaceOrderRequest {
                    idempotency_key: format!("bench-{}-{order}", users.run),
                    lines: vec![OrderLineInput {
                        product_id: users.product(order),
                        quantity: 1,
                    }],
                });
                request
                    .metadata_mut()
                    .insert("authorization", users.bearer(order).clone());
                pick(c, i)
                    .place_order(request)
                    .await
                    .map(drop)
                    .map_err(status)
            }
            Worker::Shared(Caller::GrpcWeb { .. }) => Err(Code::Internal),
            Worker::GrpcWeb(connection) => connection.page(id).await,
        }
    }
}

/// The signed-in users order calls are spread over: one bearer token
/// each, a sequence of order numbers (the idempotency keys, never used
/// before; order `n` is placed by user `n % users`), and the products
/// the seed stocked well, so orders are refused for lack of stock only
/// when a run has bought it all.
struct OrderUsers {
    bearers: Vec<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    stocked: Vec<String>,
    run: String,
    next_key: AtomicU64,
}

impl OrderUsers {
    /// Tokens for `bench-user-0` .. `bench-user-<users - 1>`, for the
    /// mobile BFF, valid for an hour.
    fn mint(users: u32, secret: &str, products: u32) -> Result<Self, String> {
        let bearers = (0..users.max(1))
            .map(|u| crate::streams::mint(secret, "tailor-mobile", format!("bench-user-{u}")))
            .collect::<Result<_, _>>()?;
        let stocked: Vec<String> = (1..=products.max(1))
            .filter(|&index| {
                tailor_seed::stock(index)
                    .iter()
                    .map(|w| w.available)
                    .sum::<i32>()
                    >= 50
            })
            .map(|index| format!("prod-{index:06}"))
            .collect();
        if stocked.is_empty() {
            return Err("no seeded product has stock to order".to_owned());
        }
        Ok(Self {
            bearers,
            stocked,
            // Keys of one run never meet another run's, even on the same
            // stack.
            run: crate::streams::run_id(),
            next_key: AtomicU64::new(0),
        })
    }

    fn bearer(&self, i: u64) -> &tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        &self.bearers[(i % self.bearers.len() as u64) as usize]
    }

    fn product(&self, i: u64) -> String {
        self.stocked[(i % self.stocked.len() as u64) as usize].clone()
    }

    /// The number of the next order: all callers share one sequence, so
    /// each user places one order in every `users`, however many callers.
    fn next(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }
}

/// One browser-like HTTP/1.1 keep-alive connection to the web BFF.
struct GrpcWebConnection {
    address: SocketAddr,
    text: bool,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl GrpcWebConnection {
    async fn open(address: SocketAddr, text: bool) -> Result<Self, String> {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(Self {
            address,
            text,
            sender,
        })
    }

    async fn page(&mut self, product_id: String) -> Result<(), Code> {
        let message = GetProductPageRequest { product_id }.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        let engine = base64::engine::general_purpose::STANDARD;
        let (body, content_type) = if self.text {
            (
                Bytes::from(engine.encode(&frame)),
                "application/grpc-web-text+proto",
            )
        } else {
            (Bytes::from(frame), "application/grpc-web+proto")
        };
        let request = http::Request::post(format!(
            "http://{}/tailor.web.v1.ShopService/GetProductPage",
            self.address
        ))
        .header(http::header::HOST, self.address.to_string())
        .header(http::header::CONTENT_TYPE, content_type)
        .header("x-grpc-web", "1")
        .body(Full::new(body))
        .map_err(|_| Code::Internal)?;
        if self.sender.is_closed() {
            // The server closed the connection (as it may after a
            // refusal): open another, as a browser would.
            *self = Self::open(self.address, self.text)
                .await
                .map_err(|_| Code::Unavailable)?;
        }
        self.sender.ready().await.map_err(|_| Code::Unavailable)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|_| Code::Unavailable)?;
        // A trailers-only answer (a refusal) carries its status in the
        // headers and no trailer frame.
        let in_headers = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
            .map(Code::from_i32);
        let raw = response
            .into_body()
            .collect()
            .await
            .map_err(|_| Code::Unavailable)?
            .to_bytes();
        let frames = if self.text {
            crate::grpc_web::decode_text(&raw).map_err(|_| Code::Internal)?
        } else {
            raw.to_vec()
        };
        match in_headers {
            Some(Code::Ok) | None => grpc_web_status(&frames),
            Some(code) => Err(code),
        }
    }
}

/// The status in a grpc-web answer's trailer frame.
fn grpc_web_status(mut frames: &[u8]) -> Result<(), Code> {
    while frames.len() >= 5 {
        let length = u32::from_be_bytes([frames[1], frames[2], frames[3], frames[4]]) as usize;
        let payload = frames.get(5..5 + length).ok_or(Code::Internal)?;
        if frames[0] & 0x80 != 0 {
            let code = String::from_utf8_lossy(payload)
                .split("\r\n")
                .find_map(|line| line.trim().strip_prefix("grpc-status:").map(str::to_owned))
                .and_then(|code| code.trim().parse::<i32>().ok())
                .map_or(Code::Unknown, Code::from_i32);
            return if code == Code::Ok { Ok(()) } else { Err(code) };
        }
        frames = &frames[5 + length..];
    }
    Err(Code::Internal)
}

/// What one level measured.
struct Level {
    concurrency: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    /// Open loop: calls not started because `concurrency` were in flight.
    not_sent: u64,
    processes: Vec<ProcessUse>,
}

/// Results gathered by the callers of one level.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, outcome: Result<(), Code>, latency: Duration) {
        match outcome {
            Ok(()) => self.latencies.push(latency),
            Err(code) => *self.errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
    }

    fn calls(&self) -> u64 {
        self.latencies.len() as u64 + self.errors.values().sum::<u64>()
    }
}

/// Closed loop: `concurrency` callers, each calling again at once, until
/// `until` or `budget` calls; only calls started after `measure_from` count.
async fn closed_loop(
    caller: &Caller,
    concurrency: usize,
    products: u32,
    measure_from: Instant,
    until: Instant,
    budget: u64,
) -> Result<Tally, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let mut worker = caller.worker().await?;
        let stop = stop.clone();
        let per_caller = budget.div_ceil(concurrency as u64);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            // Callers start evenly spaced over the products and advance
            // at about the same pace, so two rarely ask for the same
            // product at once (the BFFs share identical reads in flight).
            let mut i = c as u64 * u64::from(products) / concurrency as u64;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = worker.call(i, products).await;
                if started >= measure_from {
                    tally.record(outcome, started.elapsed());
                    if tally.calls() >= per_caller {
                        break;
                    }
                }
                i += 1;
            }
            tally
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.map_err(|e| e.to_string())?);
    }
    stop.store(true, Ordering::Relaxed);
    Ok(tally)
}

/// Open loop: a call due every `1 / rate` s whatever the answers do, at
/// most `concurrency` in flight (the rest are counted as not sent).
async fn open_loop(
    caller: &Caller,
    rate: f64,
    concurrency: usize,
    products: u32,
    measure_from: Instant,
    until: Instant,
    budget: u64,
) -> Result<(Tally, u64), String> {
    let (free_tx, mut free_rx) = tokio::sync::mpsc::channel(concurrency);
    for _ in 0..concurrency {
        free_tx
            .send(caller.worker().await?)
            .await
            .map_err(|e| e.to_string())?;
    }
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let runtime = tokio::runtime::Handle::current();
    // Calls are sent from a thread of their own that sleeps with the
    // kernel's high-resolution timers: the runtime's timer wheel rounds a
    // deadline up to its next millisecond tick, which would send calls in
    // bursts and count up to a millisecond of waiting in every latency.
    let sender = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut not_sent = 0;
        let mut scheduled = 0u64;
        let mut i = 0u64;
        loop {
            let due = started + interval.mul_f64(i as f64);
            if due >= until || scheduled >= budget {
                break;
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            i += 1;
            let Ok(mut worker) = free_rx.try_recv() else {
                if due >= measure_from {
                    not_sent += 1;
                }
                continue;
            };
            if due >= measure_from {
                scheduled += 1;
            }
            let (free_tx, done_tx) = (free_tx.clone(), done_tx.clone());
            let n = i;
            runtime.spawn(async move {
                let outcome = worker.call(n, products).await;
                // Counted from when the call was due, not from when it left.
                let _ = done_tx.send((due, outcome, due.elapsed()));
                let _ = free_tx.send(worker).await;
            });
        }
        not_sent
    });
    let mut tally = Tally::default();
    while let Some((due, outcome, latency)) = done_rx.recv().await {
        if due >= measure_from {
            tally.record(outcome, latency);
        }
    }
    let not_sent = sender.await.map_err(|e| e.to_string())?;
    Ok((tally, not_sent))
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

pub async fn run(args: Args) -> Result<(), String> {
    let caller = Caller::new(&args).await?;
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} calls/s"),
        None => "closed loop".to_owned(),
    };
    println!(
        "scenario {:?}, {mode}, {} HTTP/2 connection(s), {:.0} s per level after {:.0} s warm-up",
        args.scenario, args.connections, args.duration_secs, args.warmup_secs
    );
    let mut levels = Vec::new();
    for &concurrency in &args.concurrency {
        let concurrency = concurrency.max(1);
        let warmup = Duration::from_secs_f64(args.warmup_secs);
        let measured = Duration::from_secs_f64(args.duration_secs);
        let measure_from = Instant::now() + warmup;
        let until = measure_from + measured;
        let sampler = Sampler::start(measure_from, args.launcher_pid, &args.processes);
        let (tally, not_sent) = match args.rate {
            Some(rate) => {
                open_loop(
                    &caller,
                    rate,
                    concurrency,
                    args.products,
                    measure_from,
                    until,
                    args.max_calls,
                )
                .await?
            }
            None => (
                closed_loop(
                    &caller,
                    concurrency,
                    args.products,
                    measure_from,
                    until,
                    args.max_calls,
                )
                .await?,
                0,
            ),
        };
        let seconds = measure_from
            .elapsed()
            .as_secs_f64()
            .min(measured.as_secs_f64());
        let processes = sampler.finish().await;
        let mut latencies = tally.latencies;
        latencies.sort();
        levels.push(Level {
            concurrency,
            seconds,
            latencies,
            errors: tally.errors,
            not_sent,
            processes,
        });
    }
    print_levels(&levels);
    if let Some(path) = &args.record {
        let scenario = clap::ValueEnum::to_possible_value(&args.scenario)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        let label = args.label.clone().unwrap_or_else(|| scenario.clone());
        append_records(path, &label, &scenario, &levels)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Appends one `level` record per level and one `process` record per
/// process measured in it (the format `tailor-bench report` reads).
fn append_records(
    path: &std::path::Path,
    label: &str,
    scenario: &str,
    levels: &[Level],
) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = String::new();
    for level in levels {
        let ok = level.latencies.len() as u64;
        let errors: u64 = level.errors.values().sum();
        let calls = (ok + errors).max(1);
        let mean = if level.latencies.is_empty() {
            Duration::ZERO
        } else {
            level.latencies.iter().sum::<Duration>() / level.latencies.len() as u32
        };
        let described: Vec<String> = level
            .errors
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .chain((level.not_sent > 0).then(|| format!("not sent {}", level.not_sent)))
            .collect();
        out.push_str(&format!(
            "level\t{label}\t{scenario}\t{}\t{:.3}\t{ok}\t{errors}\t{:.1}\t{}\t{}\t{}\t{}\n",
            level.concurrency,
            level.seconds,
            ok as f64 / level.seconds,
            ms3(quantile(&level.latencies, 0.5)),
            ms3(quantile(&level.latencies, 0.99)),
            ms3(mean),
            if described.is_empty() {
                "none".to_owned()
            } else {
                described.join(", ")
            }
        ));
        for process in &level.processes {
            out.push_str(&format!(
                "process\t{label}\t{}\t{}\t{:.3}\t{:.4}\t{:.1}\n",
                level.concurrency,
                process.name,
                process.cpu_seconds,
                process.cpu_seconds * 1000.0 / calls as f64,
                process.peak_rss_kib as f64 / 1024.0
            ));
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(out.as_bytes())
}

fn ms3(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn print_levels(levels: &[Level]) {
    println!();
    println!(
        "{:>11} {:>10} {:>9} {:>9} {:>9} {:>9}  errors",
        "concurrency", "calls/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms"
    );
    for level in levels {
        let ok = level.latencies.len() as f64;
        let errors: Vec<String> = level
            .errors
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .chain((level.not_sent > 0).then(|| format!("not sent {}", level.not_sent)))
            .collect();
        println!(
            "{:>11} {:>10.0} {:>9} {:>9} {:>9} {:>9}  {}",
            level.concurrency,
            ok / level.seconds,
            ms(quantile(&level.latencies, 0.5)),
            ms(quantile(&level.latencies, 0.9)),
            ms(quantile(&level.latencies, 0.99)),
            ms(quantile(&level.latencies, 0.999)),
            if errors.is_empty() {
                "none".to_owned()
            } else {
                errors.join(", ")
            }
        );
    }
    println!();
    println!(
        "{:>11} {:<20} {:>10} {:>14} {:>14}",
        "concurrency", "process", "CPU s", "CPU ms/call", "peak RSS MiB"
    );
    for level in levels {
        let calls = (level.latencies.len() as u64 + level.errors.values().sum::<u64>()).max(1);
        for process in &level.processes {
            println!(
                "{:>11} {:<20} {:>10.2} {:>14.3} {:>14.1}",
                level.concurrency,
                process.name,
                process.cpu_seconds,
                process.cpu_seconds * 1000.0 / calls as f64,
                process.peak_rss_kib as f64 / 1024.0
            );
        }
    }
}

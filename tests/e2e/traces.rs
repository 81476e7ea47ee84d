//! One client call is one trace: the servers run as their own processes,
//! as users run them, with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an
//! OTLP/gRPC trace collector inside the test (the `opentelemetry-proto`
//! service), which receives what each process exports: the BFF's server
//! span, a client span per downstream call (the concurrent ones side by
//! side in time), each downstream's server span and its store queries,
//! linked parent to child; a grpc-web call that brings a `traceparent`
//! continues that trace; a mobile read mask that skips reviews makes no
//! reviews span.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tailor_e2e::grpc_web::{self, Http, Mode};
use tailor_e2e::{PRODUCTS, Process, api_key, bearer, create_key_with_cli, mobile_token};
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient as WebClient;
use tailor_proto::{mobile, partner, web};

/// One span as a collector received it, with the resource it came from.
#[derive(Debug, Clone)]
pub struct Received {
    /// The resource's `service.name`.
    pub service: String,
    /// The resource's attributes.
    pub resource: BTreeMap<String, String>,
    /// The span.
    pub span: Span,
}

impl Received {
    /// The span's attribute `key`, as text.
    pub fn attr(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }

    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    fn describe(&self) -> String {
        format!(
            "{} {:?} {:?} (span {} parent {})",
            self.service,
            self.kind(),
            self.span.name,
            hex(&self.span.span_id),
            hex(&self.span.parent_span_id)
        )
    }
}

fn status(received: &Received) -> StatusCode {
    received
        .span
        .status
        .as_ref()
        .and_then(|s| StatusCode::try_from(s.code).ok())
        .unwrap_or(StatusCode::Unset)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(match value.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// An OTLP/gRPC trace collector on a loopback port, keeping every span.
#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource: BTreeMap<String, String> = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter_map(|kv| {
                    Some((
                        kv.key.clone(),
                        attribute(std::slice::from_ref(kv), &kv.key)?,
                    ))
                })
                .collect();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        resource: resource.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves a collector on a free loopback port; returns it and its
    /// endpoint URL (`http://127.0.0.1:port`).
    pub async fn start() -> (Collector, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let collector = Collector::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        (collector, endpoint)
    }

    /// Every span received so far of the trace `trace_id`.
    pub fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|r| r.span.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// Every span received so far.
    pub fn all(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (at most ten seconds) until `done` holds for the trace
    /// `trace_id`, then returns its spans.
    pub async fn wait_for(
        &self,
        trace_id: &[u8],
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "never received {what}; got: {:#?}",
                spans.iter().map(Received::describe).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The servers as processes, exporting to a collector.
struct Traced {
    bffs: HashMap<&'static str, Process>,
    downstreams: Vec<Process>,
    _dir: tempfile::TempDir,
}

/// Starts the four downstream services and the BFFs `bffs`, each with
/// `env` (the OTLP endpoint among it) in its environment.
async fn start(bffs: &[&'static str], env: &[(&str, &str)]) -> Traced {
    start_in(tempfile::tempdir().unwrap(), bffs, env).await
}

/// [`start`], keeping every process's files in `dir`.
async fn start_in(dir: tempfile::TempDir, bffs: &[&'static str], env: &[(&str, &str)]) -> Traced {
    let data = dir.path().to_str().unwrap().to_owned();
    let products = PRODUCTS.to_string();
    let seeded = ["--data-dir", &data, "--products", &products];
    let catalog = Process::start_with("tailor-catalog", &seeded, env, None).await;
    let inventory = Process::start_with("tailor-inventory", &seeded, env, None).await;
    let reviews = Process::start_with("tailor-reviews", &seeded, env, None).await;
    let orders = Process::start_with("tailor-orders", &["--data-dir", &data], env, None).await;
    let urls = [catalog.url(), inventory.url(), reviews.url(), orders.url()];
    let mut started = HashMap::new();
    for &binary in bffs {
        let bff = Process::start_bff(binary, &data, &urls, &[], env, None).await;
        started.insert(binary, bff);
    }
    Traced {
        bffs: started,
        downstreams: vec![catalog, inventory, reviews, orders],
        _dir: dir,
    }
}

impl Traced {
    /// Stops every process with SIGTERM, as a supervisor would, and waits
    /// for each to exit.
    async fn stop(mut self) {
        let mut all: Vec<Process> = self.bffs.drain().map(|(_, p)| p).collect();
        all.append(&mut self.downstreams);
        for process in &all {
            process.terminate();
        }
        for process in &mut all {
            let status = process.exited(Duration::from_secs(20)).await;
            assert!(status.success(), "{status:?}");
        }
    }
}

/// What a page trace is made of, checked link by link: the BFF's server
/// span `root`, its client spans (exactly `calls`, named
/// `<package.Service>/<Method>`), each answered by one server span of the
/// downstream service in the same trace, each of which reads its store.
/// Returns the client spans.
fn assert_page_trace(
    spans: &[Received],
    root: &Received,
    bff: &str,
    client_type: &str,
    calls: &[(&str, &str)],
) -> Vec<Received> {
    let all = || spans.iter().map(Received::describe).collect::<Vec<_>>();
    assert_eq!(root.service, bff);
    assert_eq!(root.kind(), SpanKind::Server);
    assert_eq!(root.attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(root.attr("rpc.method").as_deref(), Some("GetProductPage"));
    assert_eq!(root.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(
        root.attr("tailor.client_type").as_deref(),
        Some(client_type)
    );
    assert_ne!(status(root), StatusCode::Error);
    let request_id = root.attr("tailor.request_id").expect("a request id");

    let clients: Vec<Received> = spans
        .iter()
        .filter(|s| s.span.parent_span_id == root.span.span_id)
        .cloned()
        .collect();
    let mut names: Vec<String> = clients.iter().map(|c| c.span.name.clone()).collect();
    names.sort();
    let mut expected: Vec<String> = calls
        .iter()
        .map(|(service, method)| format!("{service}/{method}"))
        .collect();
    expected.sort();
    assert_eq!(names, expected, "{:#?}", all());

    let mut counted = 1 + clients.len();
    for client in &clients {
        assert_eq!(client.service, bff);
        assert_eq!(client.kind(), SpanKind::Client, "{}", client.describe());
        assert_eq!(client.attr("rpc.grpc.status_code").as_deref(), Some("0"));
        let servers: Vec<&Received> = spans
            .iter()
            .filter(|s| s.span.parent_span_id == client.span.span_id)
            .collect();
        assert_eq!(servers.len(), 1, "{}: {:#?}", client.describe(), all());
        let server = servers[0];
        let downstream = client.attr("server.address").unwrap();
        assert_eq!(server.service, downstream, "{}", server.describe());
        assert_eq!(server.kind(), SpanKind::Server);
        assert_eq!(server.span.name, client.span.name);
        assert_eq!(
            server.attr("tailor.client_type").as_deref(),
            Some(client_type)
        );
        assert_eq!(
            server.attr("tailor.request_id").as_deref(),
            Some(request_id.as_str())
        );
        assert!(
            server.span.start_time_unix_nano >= client.span.start_time_unix_nano
                && server.span.end_time_unix_nano <= client.span.end_time_unix_nano,
            "{} lies within {}",
            server.describe(),
            client.describe()
        );
        let stores: Vec<&Received> = spans
            .iter()
            .filter(|s| s.span.parent_span_id == server.span.span_id)
            .collect();
        assert!(!stores.is_empty(), "{} reads its store", server.describe());
        for store in &stores {
            assert_eq!(store.service, downstream);
            assert_eq!(store.span.name, "sqlite read");
            assert_eq!(store.attr("db.system.name").as_deref(), Some("sqlite"));
            assert_eq!(
                store.attr("db.namespace").as_deref(),
                Some(downstream.as_str())
            );
        }
        counted += 1 + stores.len();
    }
    assert_eq!(counted, spans.len(), "no stray span: {:#?}", all());
    clients
}

const PAGE_CALLS: [(&str, &str); 5] = [
    ("tailor.catalog.v1.CatalogService", "GetProduct"),
    ("tailor.catalog.v1.CatalogService", "ListRelatedProducts"),
    ("tailor.inventory.v1.InventoryService", "GetStock"),
    ("tailor.reviews.v1.ReviewsService", "GetReviewSummary"),
    ("tailor.reviews.v1.ReviewsService", "ListReviews"),
];

fn page(product: &str) -> web::v1::GetProductPageRequest {
    web::v1::GetProductPageRequest {
        product_id: product.into(),
    }
}

#[tokio::test]
async fn a_web_product_page_is_one_trace_from_the_bff_to_every_store() {
    let (collector, endpoint) = Collector::start().await;
    // Spans are batched for a minute: they reach the collector only because
    // each process exports what it holds when it is stopped.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=e2e",
        ),
    ];
    let stack = start(&["tailor-web-bff"], &env).await;
    let mut client =
        WebClient::new(tailor_e2e::connect(stack.bffs["tailor-web-bff"].address).await);
    // A first page opens the connections to the downstream services.
    client.get_product_page(page("prod-000041")).await.unwrap();
    let mut request = tonic::Request::new(page("prod-000042"));
    request
        .metadata_mut()
        .insert("x-request-id", "traced-page-1".parse().unwrap());
    let answer = client.get_product_page(request).await.unwrap().into_inner();
    assert!(answer.degraded_sections.is_empty());
    stack.stop().await;

    let roots: Vec<Received> = collector
        .all()
        .into_iter()
        .filter(|s| s.attr("tailor.request_id").as_deref() == Some("traced-page-1"))
        .filter(|s| s.service == "web-bff")
        .collect();
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let root = &roots[0];
    assert!(root.span.parent_span_id.is_empty(), "a new trace");
    assert_eq!(root.span.name, "tailor.web.v1.ShopService/GetProductPage");
    assert_eq!(
        root.resource
            .get("deployment.environment.name")
            .map(String::as_str),
        Some("e2e")
    );
    let spans = collector.trace(&root.span.trace_id);
    let clients = assert_page_trace(&spans, root, "web-bff", "web", &PAGE_CALLS);

    // The five calls were made at once: there is an instant when all of
    // them are in flight.
    let last_start = clients.iter().map(|c| c.span.start_time_unix_nano).max();
    let first_end = clients.iter().map(|c| c.span.end_time_unix_nano).min();
    assert!(
        last_start < first_end,
        "the downstream calls overlap: {:#?}",
        clients
            .iter()
            .map(|c| (
                &c.span.name,
                c.span.start_time_unix_nano,
                c.span.end_time_unix_nano
            ))
            .collect::<Vec<_>>()
    );
    for span in &spans {
        assert!(
            span.span.start_time_unix_nano >= root.span.start_time_unix_nano
                && span.span.end_time_unix_nano <= root.span.end_time_unix_nano,
            "{} lies within the page",
            span.describe()
        );
    }
}

#[tokio::test]
async fn a_grpc_web_call_with_a_traceparent_continues_the_callers_trace() {
    let (collector, endpoint) = Collector::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let stack = start(&["tailor-web-bff"], &env).await;
    let address = stack.bffs["tailor-web-bff"].address;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let mut request = grpc_web::request(
        address,
        "/tailor.web.v1.ShopService/GetProductPage",
        Mode::Binary,
        grpc_web::body(Mode::Binary, &grpc_web::frame(&page("prod-000042"))),
    );
    let headers = request.headers_mut();
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-{parent}-01").parse().unwrap(),
    );
    headers.insert("tracestate", "shop=browser".parse().unwrap());
    let reply = grpc_web::read(
        Mode::Binary,
        grpc_web::open(address, Http::One, request).await,
    )
    .await;
    assert_eq!(reply.code(), Some(tonic::Code::Ok), "{}", reply.message());

    let id = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    // Each of the five downstream server spans has at least one store span.
    collector
        .wait_for(&id, "the whole page trace", |spans| {
            spans
                .iter()
                .filter(|s| s.span.name == "sqlite read")
                .count()
                >= 5
                && spans.iter().filter(|s| s.service == "web-bff").count() == 6
        })
        .await;
    // Stragglers of the same trace, if any, arrive with the next batch.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let spans = collector.trace(&id);
    assert!(spans.len() >= 16, "{spans:#?}");
    let root = spans
        .iter()
        .find(|s| {
            s.service == "web-bff" && s.attr("rpc.method").as_deref() == Some("GetProductPage")
        })
        .expect("the BFF's server span");
    assert_eq!(
        hex(&root.span.parent_span_id),
        parent,
        "the browser's span is the parent"
    );
    assert_eq!(root.span.trace_state, "shop=browser");
    assert_eq!(root.attr("tailor.grpc_web").as_deref(), Some("true"));
    assert_page_trace(&spans, root, "web-bff", "web", &PAGE_CALLS);
    stack.stop().await;
}

#[tokio::test]
async fn a_mobile_read_mask_that_skips_reviews_makes_no_reviews_span() {
    let (collector, endpoint) = Collector::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let stack = start(&["tailor-mobile-bff"], &env).await;
    let mut client =
        MobileClient::new(tailor_e2e::connect(stack.bffs["tailor-mobile-bff"].address).await);
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut request = bearer(
        &mobile_token("trace-user"),
        mobile::v1::GetProductPageRequest {
            product_id: "prod-000042".into(),
            read_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into(), "stock".into()],
            }),
            ..Default::default()
        },
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    let answer = client.get_product_page(request).await.unwrap().into_inner();
    assert!(!answer.title.is_empty());

    let id = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    collector
        .wait_for(&id, "the masked page trace", |spans| {
            spans
                .iter()
                .filter(|s| s.span.name == "sqlite read")
                .count()
                >= 2
                && spans
                    .iter()
                    .any(|s| s.service == "mobile-bff" && s.kind() == SpanKind::Server)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let spans = collector.trace(&id);
    let root = spans
        .iter()
        .find(|s| s.service == "mobile-bff" && s.kind() == SpanKind::Server)
        .unwrap();
    assert_page_trace(
        &spans,
        root,
        "mobile-bff",
        "mobile",
        &[
            ("tailor.catalog.v1.CatalogService", "GetProduct"),
            ("tailor.inventory.v1.InventoryService", "GetStock"),
        ],
    );
    assert!(
        spans.iter().all(|s| s.service != "reviews"
            && s.attr("rpc.service").as_deref() != Some("tailor.reviews.v1.ReviewsService")),
        "no reviews span"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_degraded_part_is_an_event_on_the_page_span_and_its_failed_calls_are_errors() {
    let (collector, endpoint) = Collector::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut stack = start(&["tailor-web-bff"], &env).await;
    // catalog, inventory, reviews, orders: the reviews service dies.
    let mut reviews = stack.downstreams.remove(2);
    reviews.crash().await;
    let mut client =
        WebClient::new(tailor_e2e::connect(stack.bffs["tailor-web-bff"].address).await);
    let mut request = tonic::Request::new(page("prod-000042"));
    request
        .metadata_mut()
        .insert("x-request-id", "degraded-page-1".parse().unwrap());
    let answer = client.get_product_page(request).await.unwrap().into_inner();
    assert_eq!(answer.degraded_sections, vec!["reviews".to_owned()]);

    let deadline = Instant::now() + Duration::from_secs(10);
    let root = loop {
        let found = collector.all().into_iter().find(|s| {
            s.service == "web-bff"
                && s.kind() == SpanKind::Server
                && s.attr("tailor.request_id").as_deref() == Some("degraded-page-1")
        });
        if let Some(root) = found {
            break root;
        }
        assert!(Instant::now() < deadline, "the page's span never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The page itself is answered: OK, with the degraded part as an event.
    assert_eq!(root.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_ne!(status(&root), StatusCode::Error);
    // The screen's two reviews parts (the summary and the newest reviews),
    // which the web page answers as one degraded section.
    let mut degraded: Vec<String> = root
        .span
        .events
        .iter()
        .filter(|e| e.name == "tailor.degraded")
        .filter_map(|e| attribute(&e.attributes, "tailor.section"))
        .collect();
    degraded.sort();
    assert_eq!(degraded, ["reviews", "summary"], "{:?}", root.span.events);
    let spans = collector.trace(&root.span.trace_id);
    let reviews: Vec<&Received> = spans
        .iter()
        .filter(|s| s.attr("rpc.service").as_deref() == Some("tailor.reviews.v1.ReviewsService"))
        .collect();
    assert!(!reviews.is_empty());
    for call in reviews {
        assert_eq!(call.kind(), SpanKind::Client, "{}", call.describe());
        assert_eq!(status(call), StatusCode::Error, "{}", call.describe());
        assert_eq!(
            call.attr("rpc.grpc.status_code").as_deref(),
            Some("14"),
            "UNAVAILABLE: {}",
            call.describe()
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_partner_call_names_its_tenant_and_never_its_key() {
    let (collector, endpoint) = Collector::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let key = create_key_with_cli(dir.path().to_str().unwrap(), "acme", "trial").await;
    let stack = start_in(dir, &["tailor-partner-bff"], &env).await;
    let mut client = PartnerServiceClient::new(
        tailor_e2e::connect(stack.bffs["tailor-partner-bff"].address).await,
    );
    let mut request = api_key(
        &key,
        partner::v1::BatchGetAvailabilityRequest {
            product_ids: vec!["prod-000001".into(), "prod-000002".into()],
        },
    );
    request
        .metadata_mut()
        .insert("x-request-id", "partner-traced-1".parse().unwrap());
    client.batch_get_availability(request).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let (root, spans) = loop {
        let root = collector.all().into_iter().find(|s| {
            s.service == "partner-bff"
                && s.kind() == SpanKind::Server
                && s.attr("tailor.request_id").as_deref() == Some("partner-traced-1")
        });
        if let Some(root) = root {
            let spans = collector.trace(&root.span.trace_id);
            let downstream = spans
                .iter()
                .filter(|s| s.service != "partner-bff" && s.kind() == SpanKind::Server)
                .count();
            if downstream >= 1 {
                break (root, spans);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the partner call's trace never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(root.attr("tailor.client_type").as_deref(), Some("partner"));
    assert_eq!(root.attr("tailor.tenant").as_deref(), Some("acme"));
    assert_eq!(
        root.attr("rpc.method").as_deref(),
        Some("BatchGetAvailability")
    );
    for span in spans
        .iter()
        .filter(|s| s.service != "partner-bff" && s.kind() == SpanKind::Server)
    {
        assert_eq!(
            span.attr("tailor.client_type").as_deref(),
            Some("partner"),
            "{}",
            span.describe()
        );
    }
    // Nothing a caller proves itself with is span data, anywhere.
    for received in collector.all() {
        let text = format!("{:?} {:?}", received.span, received.resource);
        assert!(
            !text.contains(&key),
            "the API key in {}",
            received.describe()
        );
        assert!(!text.to_ascii_lowercase().contains("x-api-key"));
        assert!(!text.contains("x-tailor-identity"));
    }
    stack.stop().await;
}

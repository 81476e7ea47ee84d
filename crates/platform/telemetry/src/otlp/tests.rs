//! The encoding is checked against `opentelemetry-proto`, the conversion
//! the OTLP exporter uses: decoded with its prost types, our bytes give
//! the same messages, and they are byte for byte what prost encodes. The
//! processor is checked against a real OTLP/gRPC receiver on loopback.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span as ProtoSpan};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanEvents, SpanLinks};
use prost::Message;

use super::encode::{self, EncodedResource, ScopePart};
use super::{ExportConfig, OtlpSpanProcessor, Pending};

fn at(nanos: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("tailor").build()
}

/// A span with every kind of field the SDK records: attributes of each
/// type and arrays of each, events with attributes, links (one to a
/// remote span with trace state), an error status, a remote parent, trace
/// state and dropped counts.
fn full_span() -> SpanData {
    let mut events = SpanEvents::default();
    events.events = vec![
        Event::new(
            "tailor.degraded",
            at(1_700_000_000_500_000_000),
            vec![
                KeyValue::new("tailor.part", "reviews"),
                KeyValue::new("retried", true),
            ],
            1,
        ),
        Event::new("empty", at(1_700_000_000_600_000_000), vec![], 0),
    ];
    events.dropped_count = 2;
    let mut links = SpanLinks::default();
    links.links = vec![
        Link::new(
            SpanContext::new(
                TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::SAMPLED,
                true,
                TraceState::from_key_value([("vendor", "linked"), ("other", "x")]).unwrap(),
            ),
            vec![KeyValue::new("link.kind", "follows")],
            3,
        ),
        Link::new(
            SpanContext::new(
                TraceId::from(7),
                SpanId::from(8),
                TraceFlags::default(),
                false,
                TraceState::default(),
            ),
            vec![],
            0,
        ),
    ];
    links.dropped_count = 4;
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b8),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap(),
        ),
        parent_span_id: SpanId::from(0x1122_3344_5566_7788),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: Cow::Borrowed("tailor.web.v1.ShopService/GetProductPage"),
        start_time: at(1_700_000_000_000_000_123),
        end_time: at(1_700_000_001_000_000_456),
        attributes: vec![
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("tailor.request_id", format!("{:032x}", 42)),
            KeyValue::new("empty", ""),
            KeyValue::new("rpc.grpc.status_code", 14_i64),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("negative", -3_i64),
            KeyValue::new("sampled", true),
            KeyValue::new("cached", false),
            KeyValue::new("ratio", 0.25_f64),
            KeyValue::new("nothing", 0.0_f64),
            KeyValue::new("flags", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ports", Value::Array(Array::I64(vec![443, -1, 0]))),
            KeyValue::new("weights", Value::Array(Array::F64(vec![1.5, -2.0]))),
            KeyValue::new(
                "parts",
                Value::Array(Array::String(vec![
                    StringValue::from("stock"),
                    StringValue::from(""),
                ])),
            ),
        ],
        dropped_attributes_count: 5,
        events,
        links,
        status: Status::error("reviews is unavailable"),
        instrumentation_scope: scope(),
    }
}

/// Spans with the other kinds, statuses and parents.
fn plain_spans() -> Vec<SpanData> {
    let kinds = [
        SpanKind::Internal,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
        SpanKind::Server,
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let mut span = full_span();
            span.span_kind = kind;
            span.span_context = SpanContext::new(
                TraceId::from(i as u128 + 1),
                SpanId::from(i as u64 + 1),
                if i % 2 == 0 {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                false,
                TraceState::default(),
            );
            span.parent_span_id = if i == 0 {
                SpanId::INVALID
            } else {
                SpanId::from(99)
            };
            span.parent_span_is_remote = false;
            span.name = Cow::Owned(format!("sqlite read {i}"));
            span.attributes.truncate(i);
            span.dropped_attributes_count = 0;
            span.events = SpanEvents::default();
            span.links = SpanLinks::default();
            span.status = if i % 2 == 0 {
                Status::Unset
            } else {
                Status::Ok
            };
            span
        })
        .collect()
}

/// Our bytes for `span`: a `ScopeSpans` holding it and nothing else.
fn encoded(span: &SpanData) -> Vec<u8> {
    let mut out = Vec::new();
    encode::encode_span(span, &mut out);
    out
}

#[test]
fn a_span_with_every_field_decodes_to_what_the_otlp_conversion_gives() {
    let span = full_span();
    let bytes = encoded(&span);
    let decoded = ScopeSpans::decode(bytes.as_slice()).expect("valid protobuf");
    assert_eq!(decoded.spans.len(), 1);
    let expected = ProtoSpan::from(span);
    assert_eq!(decoded.spans[0], expected);

    // The fields the conversion fills are really there, not both empty.
    let got = &decoded.spans[0];
    assert_eq!(got.flags, 0x301, "sampled, parent known to be remote");
    assert_eq!(got.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(got.links[0].trace_state, "vendor=linked,other=x");
    assert_eq!(got.links[0].flags, 0x301);
    assert_eq!(got.links[1].flags, 0x100);
    assert_eq!(got.status.as_ref().unwrap().code, 2);
    assert_eq!(
        got.status.as_ref().unwrap().message,
        "reviews is unavailable"
    );
    assert_eq!(got.events[0].attributes.len(), 2);
    assert_eq!(
        (
            got.dropped_attributes_count,
            got.dropped_events_count,
            got.dropped_links_count
        ),
        (5, 2, 4)
    );
    let zero = got.attributes.iter().find(|kv| kv.key == "zero").unwrap();
    assert_eq!(
        zero.value.as_ref().unwrap().value,
        Some(any_value::Value::IntValue(0)),
        "a default value inside the oneof is still sent"
    );
}

#[test]
fn spans_are_byte_for_byte_what_prost_encodes() {
    for span in std::iter::once(full_span()).chain(plain_spans()) {
        let ours = encoded(&span);
        let theirs = ScopeSpans {
            spans: vec![ProtoSpan::from(span.clone())],
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(ours, theirs, "{}", span.name);
    }
}

#[test]
fn every_kind_status_and_parent_decodes_as_converted() {
    for span in plain_spans() {
        let decoded = ScopeSpans::decode(encoded(&span).as_slice()).unwrap();
        assert_eq!(decoded.spans, vec![ProtoSpan::from(span)]);
    }
}

#[test]
fn a_batch_is_one_request_with_the_resource_and_each_scope_once() {
    let resource = Resource::builder_empty()
        .with_service_name("web-bff")
        .with_attributes([
            KeyValue::new("deployment.environment.name", "e2e"),
            KeyValue::new("host.cores", 2_i64),
        ])
        .with_schema_url(
            Vec::<KeyValue>::new(),
            "https://opentelemetry.io/schemas/1.26.0",
        )
        .build();
    let other_scope = InstrumentationScope::builder("tailor-storage")
        .with_version("0.1.0")
        .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
        .with_attributes([KeyValue::new("db.system", "sqlite")])
        .build();
    let mut spans = plain_spans();
    spans[1].instrumentation_scope = other_scope.clone();
    spans[3].instrumentation_scope = other_scope;
    spans.push(full_span());

    let mut pending = Pending::default();
    for span in &spans {
        pending.push(&span.instrumentation_scope, &encoded(span));
    }
    assert_eq!(pending.spans, spans.len());
    assert_eq!(pending.scopes.len(), 2);
    let parts: Vec<ScopePart<'_>> = pending
        .scopes
        .iter()
        .map(|s| ScopePart {
            head: &s.head,
            spans: &s.spans,
            tail: &s.tail,
        })
        .collect();
    let ours = encode::export_request(&EncodedResource::new(&resource), &parts);

    let theirs = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            spans,
            &ResourceAttributesWithSchema::from(&resource),
        ),
    };
    let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).unwrap();
    assert_eq!(decoded, theirs);
    assert_eq!(ours, theirs.encode_to_vec());
}

// --- the processor against a real receiver -----------------------------------

/// An OTLP/gRPC trace receiver keeping every request.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.requests.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Receiver::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        (receiver, endpoint)
    }

    /// Every span received, with its resource's `service.name` and scope.
    fn spans(&self) -> Vec<(String, String, ProtoSpan)> {
        let requests = self.requests.lock().unwrap();
        let mut spans = Vec::new();
        for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope_spans in &resource_spans.scope_spans {
                let scope = scope_spans.scope.as_ref().unwrap().name.clone();
                for span in &scope_spans.spans {
                    spans.push((service.clone(), scope.clone(), span.clone()));
                }
            }
        }
        spans
    }

    fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn provider(config: ExportConfig) -> (SdkTracerProvider, super::ExportStats) {
    let processor = OtlpSpanProcessor::new(config).unwrap();
    let stats = processor.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name("catalog").build())
        .build();
    (provider, stats)
}

/// A long schedule, so only flushes, shutdown or a full buffer export.
fn quiet(endpoint: &str) -> ExportConfig {
    let mut config = ExportConfig::new(endpoint);
    config.schedule_delay = Duration::from_secs(600);
    config
}

/// A server span with `children` store spans under it, made through the
/// SDK as the layers make them.
fn make_page(provider: &SdkTracerProvider, children: usize) {
    let tracer = provider.tracer("tailor");
    let server = tracer
        .span_builder("tailor.catalog.v1.CatalogService/GetProduct")
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("rpc.system", "grpc")])
        .start(&tracer);
    let cx = opentelemetry::Context::current_with_span(server);
    for _ in 0..children {
        let mut child = tracer
            .span_builder("sqlite read")
            .with_kind(SpanKind::Internal)
            .start_with_context(&tracer, &cx);
        opentelemetry::trace::Span::add_event(&mut child, "row", vec![KeyValue::new("n", 1_i64)]);
        opentelemetry::trace::Span::end(&mut child);
    }
    cx.span().set_status(Status::error("boom"));
    cx.span().end();
}

/// Runs a blocking SDK call off the test's runtime, which serves the
/// receiver.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test]
async fn flushed_spans_reach_the_receiver_with_their_resource_and_parents() {
    let (receiver, endpoint) = Receiver::start().await;
    let (provider, stats) = provider(quiet(&endpoint));
    make_page(&provider, 3);
    assert_eq!(receiver.requests(), 0, "nothing is sent before its time");

    let flushing = provider.clone();
    blocking(move || flushing.force_flush()).await.unwrap();
    let spans = receiver.spans();
    assert_eq!(receiver.requests(), 1, "one request for the batch");
    assert_eq!(spans.len(), 4);
    assert!(
        spans
            .iter()
            .all(|(service, scope, _)| service == "catalog" && scope == "tailor")
    );
    let server = &spans.iter().find(|(_, _, s)| s.kind == 2).unwrap().2;
    assert_eq!(server.name, "tailor.catalog.v1.CatalogService/GetProduct");
    assert_eq!(server.status.as_ref().unwrap().code, 2);
    let children: Vec<&ProtoSpan> = spans
        .iter()
        .map(|(_, _, s)| s)
        .filter(|s| s.name == "sqlite read")
        .collect();
    assert_eq!(children.len(), 3);
    for child in children {
        assert_eq!(child.parent_span_id, server.span_id);
        assert_eq!(child.trace_id, server.trace_id);
        assert_eq!(child.events[0].name, "row");
        assert!(child.start_time_unix_nano >= server.start_time_unix_nano);
    }
    assert_eq!(stats.exported(), 4);

    // Shutting down sends what is left, then nothing more is taken.
    make_page(&provider, 1);
    let stopping = provider.clone();
    blocking(move || stopping.shutdown()).await.unwrap();
    assert_eq!(receiver.spans().len(), 6);
    assert_eq!(
        (stats.exported(), stats.dropped(), stats.failed()),
        (6, 0, 0)
    );
}

#[tokio::test]
async fn a_full_batch_is_sent_before_its_schedule() {
    let (receiver, endpoint) = Receiver::start().await;
    let mut config = quiet(&endpoint);
    config.max_export_batch_size = 10;
    let (provider, stats) = provider(config);
    make_page(&provider, 9);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // The receiver holds the spans a moment before the exporter has its
    // answer and counts them.
    while receiver.spans().len() < 10 || stats.exported() < 10 {
        assert!(std::time::Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((receiver.requests(), stats.exported()), (1, 10));
    blocking(move || provider.shutdown()).await.unwrap();
}

#[tokio::test]
async fn beyond_the_queue_spans_are_dropped_and_counted() {
    let (receiver, endpoint) = Receiver::start().await;
    let mut config = quiet(&endpoint);
    config.max_queue_size = 3;
    let (provider, stats) = provider(config);
    make_page(&provider, 5);
    assert_eq!(stats.dropped(), 3);
    blocking(move || provider.shutdown()).await.unwrap();
    let names: Vec<String> = receiver
        .spans()
        .into_iter()
        .map(|(_, _, s)| s.name)
        .collect();
    assert_eq!(
        names, ["sqlite read"; 3],
        "the first three, the page span dropped"
    );
    assert_eq!(stats.exported(), 3);
}

#[tokio::test]
async fn a_failed_export_drops_its_spans_and_does_not_hang() {
    // A port that was free a moment ago: nobody answers there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = quiet(&endpoint);
    config.timeout = Duration::from_secs(2);
    let (provider, stats) = provider(config);
    make_page(&provider, 2);
    let started = std::time::Instant::now();
    let flushing = provider.clone();
    blocking(move || flushing.force_flush()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!((stats.exported(), stats.failed()), (0, 3));
    blocking(move || provider.shutdown()).await.unwrap();
    assert_eq!(stats.failed(), 3, "failed spans are not sent again");
}

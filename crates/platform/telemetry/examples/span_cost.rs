//! What one span costs in CPU, measured the way a server makes spans: a
//! server span with the RPC attributes the trace layer sets, started and
//! ended 100,000 times (`SPANS` to change it) at about 20,000 a second
//! (200 spans, then a 10 ms pause), as a busy BFF ends them.
//!
//! It reports CPU microseconds per span (user + system, from `/proc`):
//!
//! - *not sampled*: the provider Tailor installs when no OTLP endpoint is
//!   configured; spans still get ids but nothing is recorded;
//! - *exported*: recorded through `tailor_telemetry::otlp::OtlpSpanProcessor`
//!   and exported over OTLP/gRPC, the process's whole CPU (encoding, the
//!   exporter thread, gRPC) less the receiver's, with how many spans were
//!   delivered;
//! - *receiver*: what receiving cost, a tonic `TraceService` from
//!   `opentelemetry-proto` decoding every request as a collector would.
//!
//! Run it in release mode, on an otherwise idle machine:
//!
//! ```text
//! cargo run --release -p tailor-telemetry --example span_cost
//! ```
//!
//! By default the receiver runs in this process, on a thread and runtime
//! of its own, so its CPU is read separately. To export to a receiver
//! outside instead, give its endpoint in `SINK` (and its process id in
//! `SINK_PID` to read its CPU too):
//!
//! ```text
//! target/release/tailor-bench otlp-sink --listen 127.0.0.1:4999 &
//! SINK=http://127.0.0.1:4999 SINK_PID=$! cargo run --release -p tailor-telemetry --example span_cost
//! ```
//!
//! Without any receiver listening at `SINK`, every export fails: that
//! measures what spans cost when the collector is down.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tailor_telemetry::otlp::{ExportConfig, OtlpSpanProcessor};

/// CPU seconds (user + system) of the process, dead threads included.
fn process_cpu() -> f64 {
    stat_cpu("/proc/self/stat")
}

/// CPU seconds (user + system) from a `/proc/.../stat` file.
fn stat_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).expect("reading /proc");
    // Fields after the command name, which is in parentheses; utime and
    // stime are the 14th and 15th fields of the whole line.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// CPU seconds of the calling thread, to the nanosecond.
fn thread_cpu() -> f64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let nanos: f64 = schedstat
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    nanos / 1e9
}

/// Makes `n` server spans as the trace layer does.
fn make_spans(provider: &SdkTracerProvider, n: u64) {
    let tracer = provider.tracer("tailor");
    for i in 0..n {
        let parent = Context::new();
        let span = tracer
            .span_builder("tailor.catalog.v1.CatalogService/GetProduct")
            .with_kind(SpanKind::Server)
            .with_attributes(vec![
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", "tailor.catalog.v1.CatalogService".to_owned()),
                KeyValue::new("rpc.method", "GetProduct".to_owned()),
                KeyValue::new("tailor.request_id", format!("{i:032x}")),
                KeyValue::new("server.address", "127.0.0.1".to_owned()),
                KeyValue::new("server.port", 5000_i64),
            ])
            .start_with_context(&tracer, &parent);
        let cx = parent.with_span(span);
        cx.span()
            .set_attribute(KeyValue::new("rpc.grpc.status_code", 0_i64));
        cx.span().end();
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// CPU µs per span of making `n` spans with `provider`, shutdown (and so
/// the last export) included.
fn measure(provider: SdkTracerProvider, n: u64) -> f64 {
    let before = process_cpu();
    make_spans(&provider, n);
    provider.shutdown().expect("shutting the provider down");
    (process_cpu() - before) / n as f64 * 1e6
}

/// A receiver that decodes every request and counts its spans.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A receiver on a thread and runtime of its own.
struct InProcess {
    endpoint: String,
    spans: Arc<AtomicU64>,
    stop: tokio::sync::oneshot::Sender<()>,
    /// The receiving thread's CPU seconds, once it has stopped.
    cpu: std::sync::mpsc::Receiver<f64>,
}

impl InProcess {
    fn start() -> InProcess {
        let (ready, started) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (report, cpu) = std::sync::mpsc::channel();
        let receiver = Receiver::default();
        let spans = receiver.spans.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let before = thread_cpu();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready
                    .send(format!("http://{}", listener.local_addr().unwrap()))
                    .unwrap();
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(receiver))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                    .unwrap();
            });
            let _ = report.send(thread_cpu() - before);
        });
        InProcess {
            endpoint: started.recv().unwrap(),
            spans,
            stop,
            cpu,
        }
    }

    /// Stops the receiver; its CPU seconds and the spans it received.
    fn stop(self) -> (f64, u64) {
        let _ = self.stop.send(());
        let cpu = self.cpu.recv().unwrap();
        (cpu, self.spans.load(Ordering::Relaxed))
    }
}

fn main() {
    let n: u64 = std::env::var("SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);

    let off = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOff)
        .build();
    println!("not sampled: {:.2} µs CPU per span", measure(off, n));

    let external = std::env::var("SINK").ok();
    let in_process = external.is_none().then(InProcess::start);
    let endpoint = external
        .clone()
        .unwrap_or_else(|| in_process.as_ref().unwrap().endpoint.clone());
    let sink_pid = std::env::var("SINK_PID").ok();
    let sink_cpu = || {
        sink_pid
            .as_ref()
            .map(|pid| stat_cpu(&format!("/proc/{pid}/stat")))
    };
    let sink_before = sink_cpu();

    let processor = OtlpSpanProcessor::new(ExportConfig::new(endpoint)).unwrap();
    let stats = processor.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let exported = measure(provider, n);

    let receiver = match (in_process, sink_before) {
        (Some(receiver), _) => {
            let (cpu, received) = receiver.stop();
            assert_eq!(received, stats.exported(), "the receiver's count");
            Some(cpu)
        }
        (None, Some(before)) => sink_cpu().map(|after| after - before),
        (None, None) => None,
    };
    // The in-process receiver's CPU is the process's too: not the exporter's.
    let exporter = if external.is_none() {
        exported - receiver.unwrap_or(0.0) / n as f64 * 1e6
    } else {
        exported
    };
    println!(
        "exported over OTLP/gRPC: {exporter:.2} µs CPU per span ({} of {n} delivered, {} dropped, {} failed)",
        stats.exported(),
        stats.dropped(),
        stats.failed()
    );
    match receiver {
        Some(cpu) => println!("receiver: {:.2} µs CPU per span", cpu / n as f64 * 1e6),
        None => println!("receiver: not measured (give SINK_PID)"),
    }
}

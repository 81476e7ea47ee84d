//! The process's metrics: one OpenTelemetry meter provider, installed as
//! the global one, that every instrument in the platform crates records
//! into (`tailor_interceptors::metrics` names them), read two ways:
//!
//! - Prometheus text exposition 0.0.4, rendered on demand from a manual
//!   reader by [`Metrics::render`], which each server's admin port answers
//!   on `GET /metrics`. Always on.
//! - OTLP/gRPC, pushed by a periodic reader when the standard environment
//!   variables ask for it: `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (unless `OTEL_SDK_DISABLED=true` or
//!   `OTEL_METRICS_EXPORTER=none`), every `OTEL_METRIC_EXPORT_INTERVAL`
//!   milliseconds (60 s by default), under the resource of
//!   `OTEL_SERVICE_NAME`/`OTEL_RESOURCE_ATTRIBUTES` or the server's name.
//!
//! Both readers see the same instruments and report cumulative values, so
//! a Prometheus scrape and an OTLP collector agree.
//!
//! Prometheus names follow the usual translation of OpenTelemetry names:
//! dots become underscores, the unit is appended (`s` → `_seconds`, `By` →
//! `_bytes`; annotations such as `{call}` are dropped), and counters end in
//! `_total`. So `rpc.server.call.duration` in seconds is the histogram
//! `rpc_server_call_duration_seconds`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use opentelemetry::{KeyValue, Value};
use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, PeriodicReader, Pipeline, SdkMeterProvider, Temporality,
};

/// The content type of what [`Metrics::render`] returns.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's meter provider and its Prometheus reader.
#[derive(Debug)]
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: SharedReader,
    exporting: bool,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Whether the environment asks for metrics to be exported over OTLP.
pub fn export_configured() -> bool {
    crate::otlp_configured("METRICS")
}

/// Installs the process's meter provider as the global one, once: later
/// calls return the first. `service` names the OTLP resource unless the
/// environment does. Call it before any server builds its layers (the
/// runtime does, in `GrpcServer::new`): instruments made from the global
/// meter before are no-ops. When OTLP export is configured this must run
/// inside the Tokio runtime, where the exporter's channel lives; a
/// configuration the exporter refuses is logged and only Prometheus text
/// is served.
pub fn install(service: &str) -> &'static Metrics {
    METRICS.get_or_init(|| {
        let reader = SharedReader(Arc::new(ManualReader::builder().build()));
        let mut builder = SdkMeterProvider::builder().with_reader(reader.clone());
        let mut exporting = false;
        if export_configured() {
            match MetricExporter::builder()
                .with_tonic()
                .with_temporality(Temporality::Cumulative)
                .build()
            {
                Ok(exporter) => {
                    builder = builder
                        .with_reader(PeriodicReader::builder(exporter).build())
                        .with_resource(resource(service));
                    exporting = true;
                }
                Err(error) => {
                    tracing::error!(%error, "OTLP metrics export is not set up; serving Prometheus text only");
                }
            }
        }
        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        Metrics {
            provider,
            reader,
            exporting,
        }
    })
}

/// The installed metrics, if [`install`] ran.
pub fn installed() -> Option<&'static Metrics> {
    METRICS.get()
}

/// The resource OTLP metrics are reported under: what the SDK reads from
/// the environment, named `service` unless the environment names it.
fn resource(service: &str) -> Resource {
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|name: Value| name.as_str().starts_with("unknown_service"));
    if unnamed {
        Resource::builder()
            .with_service_name(service.to_owned())
            .build()
    } else {
        detected
    }
}

impl Metrics {
    /// Whether metrics are exported over OTLP too.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Every series now, as Prometheus text; only those labelled
    /// `server="<server>"` when `server` is given (servers sharing a
    /// process, as in tests, each answer for their own).
    pub fn render(&self, server: Option<&str>) -> String {
        let mut collected = ResourceMetrics::default();
        if let Err(error) = self.reader.collect(&mut collected) {
            tracing::warn!(%error, "collecting metrics failed");
            return String::new();
        }
        render(&collected, server)
    }

    /// Pushes what is recorded to the OTLP collector now (servers do when
    /// they have drained, so the last calls are reported). A no-op when
    /// not exporting.
    pub async fn flush(&'static self) {
        if !self.exporting {
            return;
        }
        let outcome = tokio::task::spawn_blocking(move || self.provider.force_flush()).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "flushing metrics"),
            Err(error) => tracing::warn!(%error, "flushing metrics"),
        }
    }

    /// Pushes what is recorded to the OTLP collector one last time and
    /// stops the exporter; call once the server has drained. A no-op when
    /// not exporting.
    pub async fn shutdown(&'static self) {
        if !self.exporting {
            return;
        }
        // The periodic reader exports on its own thread and blocks until
        // it is done, which needs this runtime's other threads.
        let outcome = tokio::task::spawn_blocking(move || {
            self.provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "flushing metrics at shutdown"),
            Err(error) => tracing::warn!(%error, "flushing metrics at shutdown"),
        }
    }
}

/// The manual reader, shared between the provider (which feeds it) and
/// [`Metrics::render`] (which reads it).
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// One metric family of the exposition: its type, help and sample lines.
#[derive(Default)]
struct Family {
    kind: &'static str,
    help: String,
    samples: Vec<String>,
}

/// `metrics` as Prometheus text exposition 0.0.4, families sorted by
/// name; see [`Metrics::render`] for `server`.
pub fn render(metrics: &ResourceMetrics, server: Option<&str>) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let (counter, kind) = match metric.data() {
                AggregatedMetrics::F64(data) => kind_of(data),
                AggregatedMetrics::U64(data) => kind_of(data),
                AggregatedMetrics::I64(data) => kind_of(data),
            };
            let Some(kind) = kind else { continue };
            let name = prometheus_name(metric.name(), metric.unit(), counter);
            let family = families.entry(name.clone()).or_default();
            family.kind = kind;
            family.help = metric.description().to_owned();
            let samples = &mut family.samples;
            match metric.data() {
                AggregatedMetrics::F64(data) => write_samples(&name, data, server, samples),
                AggregatedMetrics::U64(data) => write_samples(&name, data, server, samples),
                AggregatedMetrics::I64(data) => write_samples(&name, data, server, samples),
            }
        }
    }
    let mut out = String::new();
    for (name, family) in families {
        if family.samples.is_empty() {
            continue;
        }
        let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {}", family.kind);
        let mut samples = family.samples;
        samples.sort();
        for sample in samples {
            out.push_str(&sample);
        }
    }
    out
}

/// Whether `data` is a counter (monotonic sum), and its Prometheus type;
/// `None` for what the text format cannot carry (exponential histograms).
fn kind_of<T>(data: &MetricData<T>) -> (bool, Option<&'static str>) {
    match data {
        MetricData::Sum(sum) if sum.is_monotonic() => (true, Some("counter")),
        MetricData::Sum(_) | MetricData::Gauge(_) => (false, Some("gauge")),
        MetricData::Histogram(_) => (false, Some("histogram")),
        MetricData::ExponentialHistogram(_) => (false, None),
    }
}

/// A number as the text format writes it.
trait Sample: Copy {
    fn text(self) -> String;
}

impl Sample for u64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for i64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for f64 {
    fn text(self) -> String {
        float(self)
    }
}

fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

fn write_samples<T: Sample>(
    name: &str,
    data: &MetricData<T>,
    server: Option<&str>,
    out: &mut Vec<String>,
) {
    let wanted = |attributes: &[&KeyValue]| {
        server.is_none_or(|server| {
            attributes
                .iter()
                .any(|kv| kv.key.as_str() == "server" && kv.value.as_str() == server)
        })
    };
    // A counter's or gauge's point: one line.
    let single = |out: &mut Vec<String>, attributes: Vec<&KeyValue>, value: T| {
        if wanted(&attributes) {
            out.push(format!(
                "{name}{} {}\n",
                labels(&attributes, None),
                value.text()
            ));
        }
    };
    match data {
        MetricData::Sum(sum) => {
            for point in sum.data_points() {
                single(out, point.attributes().collect(), point.value());
            }
        }
        MetricData::Gauge(gauge) => {
            for point in gauge.data_points() {
                single(out, point.attributes().collect(), point.value());
            }
        }
        MetricData::Histogram(histogram) => {
            for point in histogram.data_points() {
                let attributes: Vec<&KeyValue> = point.attributes().collect();
                if !wanted(&attributes) {
                    continue;
                }
                // One string per point, so sorting keeps the buckets of a
                // series together and in order.
                let mut lines = String::new();
                let mut cumulative = 0u64;
                let mut counts = point.bucket_counts();
                for bound in point.bounds() {
                    cumulative += counts.next().unwrap_or(0);
                    let _ = writeln!(
                        lines,
                        "{name}_bucket{} {cumulative}",
                        labels(&attributes, Some(&float(bound)))
                    );
                }
                let _ = writeln!(
                    lines,
                    "{name}_bucket{} {}",
                    labels(&attributes, Some("+Inf")),
                    point.count()
                );
                let plain = labels(&attributes, None);
                let _ = writeln!(lines, "{name}_sum{plain} {}", point.sum().text());
                let _ = writeln!(lines, "{name}_count{plain} {}", point.count());
                out.push(lines);
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// `{key="value",...}` for `attributes` (sorted by key), with `le` last
/// when given; empty for no labels.
fn labels(attributes: &[&KeyValue], le: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| (label_name(kv.key.as_str()), kv.value.as_str().into_owned()))
        .collect();
    pairs.sort();
    if let Some(le) = le {
        pairs.push(("le".into(), le.into()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let value = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{key}=\"{value}\"");
    }
    out.push('}');
    out
}

/// A label name the text format accepts.
fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// The Prometheus name of an instrument; see the module docs.
pub fn prometheus_name(name: &str, unit: &str, counter: bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let suffix = match unit {
        "s" => Some("seconds"),
        "ms" => Some("milliseconds"),
        "By" => Some("bytes"),
        "1" => Some("ratio"),
        _ => None,
    };
    if let Some(suffix) = suffix
        && !out.ends_with(&format!("_{suffix}"))
    {
        out.push('_');
        out.push_str(suffix);
    }
    if counter && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;

    #[test]
    fn names_translate_as_prometheus_expects() {
        assert_eq!(
            prometheus_name("rpc.server.calls", "{call}", true),
            "rpc_server_calls_total"
        );
        assert_eq!(
            prometheus_name("rpc.server.call.duration", "s", false),
            "rpc_server_call_duration_seconds"
        );
        assert_eq!(
            prometheus_name("rpc.server.request.size", "By", true),
            "rpc_server_request_size_bytes_total"
        );
        assert_eq!(prometheus_name("a_total", "", true), "a_total");
    }

    #[test]
    fn counters_gauges_and_histograms_render_as_text_exposition() {
        let reader = SharedReader(Arc::new(ManualReader::builder().build()));
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .build();
        let meter = provider.meter("test");
        let calls = meter
            .u64_counter("rpc.server.calls")
            .with_unit("{call}")
            .build();
        let active = meter.i64_up_down_counter("rpc.server.active_calls").build();
        let latency = meter
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Time to answer")
            .with_boundaries(vec![0.01, 0.1])
            .build();
        let web = [
            KeyValue::new("server", "web-bff"),
            KeyValue::new("method", "a \"quoted\"\nname\\"),
        ];
        let mobile = [KeyValue::new("server", "mobile-bff")];
        calls.add(3, &web);
        calls.add(1, &mobile);
        active.add(2, &web);
        active.add(-1, &web);
        for seconds in [0.0078125, 0.0625, 0.0625, 3.0] {
            latency.record(seconds, &web);
        }
        let mut collected = ResourceMetrics::default();
        reader.collect(&mut collected).unwrap();

        let text = render(&collected, Some("web-bff"));
        let labels = r#"method="a \"quoted\"\nname\\",server="web-bff""#;
        let expected = format!(
            "# HELP rpc_server_active_calls \n\
             # TYPE rpc_server_active_calls gauge\n\
             rpc_server_active_calls{{{labels}}} 1\n\
             # HELP rpc_server_call_duration_seconds Time to answer\n\
             # TYPE rpc_server_call_duration_seconds histogram\n\
             rpc_server_call_duration_seconds_bucket{{{labels},le=\"0.01\"}} 1\n\
             rpc_server_call_duration_seconds_bucket{{{labels},le=\"0.1\"}} 3\n\
             rpc_server_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 4\n\
             rpc_server_call_duration_seconds_sum{{{labels}}} 3.1328125\n\
             rpc_server_call_duration_seconds_count{{{labels}}} 4\n\
             # HELP rpc_server_calls_total \n\
             # TYPE rpc_server_calls_total counter\n\
             rpc_server_calls_total{{{labels}}} 3\n"
        );
        assert_eq!(text, expected);

        let all = render(&collected, None);
        assert!(
            all.contains("rpc_server_calls_total{server=\"mobile-bff\"} 1\n"),
            "{all}"
        );
        let mobile_only = render(&collected, Some("mobile-bff"));
        assert!(!mobile_only.contains("histogram"), "{mobile_only}");
    }
}

//! Traces out of the process, configured the way every OpenTelemetry SDK
//! is, by the standard environment variables:
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
//!   for example `http://127.0.0.1:4317`: spans are batched and exported
//!   over OTLP/gRPC there. Unset, nothing is exported and nothing is
//!   recorded; calls still get trace and span ids (for log lines) and pass
//!   a caller's trace context on. `OTEL_SDK_DISABLED=true` or
//!   `OTEL_TRACES_EXPORTER=none` turn exporting off too.
//! - `OTEL_SERVICE_NAME`; default the server's name (`web-bff`, `catalog`).
//! - `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//!   `OTEL_TRACES_SAMPLER_ARG` (default: follow the caller's sampling
//!   decision, sample every new trace), the `OTEL_BSP_*` batch settings and
//!   `OTEL_EXPORTER_OTLP_TIMEOUT`/`_HEADERS`: the SDK and exporter read
//!   these themselves.
//!
//! Trace context travels in W3C `traceparent`/`tracestate`, baggage in
//! `baggage`. Only the gRPC protocol is built in; another
//! `OTEL_EXPORTER_OTLP_PROTOCOL` is reported and gRPC used.

use crate::env;
use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::{Value, global};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// Why traces could not be set up as the environment asks.
#[derive(Debug)]
pub struct TraceSetupError(String);

impl std::fmt::Display for TraceSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenTelemetry traces: {}", self.0)
    }
}

impl std::error::Error for TraceSetupError {}

/// The process's tracer provider; [`Traces::shutdown`] exports what is
/// still batched.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    exporting: bool,
}

/// Whether the environment asks for spans to be exported.
pub fn export_configured() -> bool {
    crate::otlp_configured("TRACES")
}

/// The resource spans are reported under: what the SDK reads from the
/// environment, named `service` unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` name it.
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

/// Installs the W3C propagators and the process's tracer provider as the
/// environment says (see the module docs), for the server `service`.
/// Must run inside the Tokio runtime: the exporter's channel lives there.
pub fn init(service: &str) -> Result<Traces, TraceSetupError> {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let exporting = export_configured();
    let provider = if exporting {
        let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(protocol) = protocol.filter(|p| p != "grpc") {
            tracing::warn!(
                protocol,
                "only the OTLP gRPC protocol is built in; exporting spans over gRPC"
            );
        }
        // Endpoint, timeout, headers and compression: the exporter reads
        // the OTEL_EXPORTER_OTLP_* variables itself.
        let exporter = SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TraceSetupError(e.to_string()))?;
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service))
            .build()
    } else {
        // Nothing is recorded, but calls still get ids for their log lines
        // and continue their callers' traces downstream.
        SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build()
    };
    global::set_tracer_provider(provider.clone());
    Ok(Traces {
        provider,
        exporting,
    })
}

impl Traces {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports the spans still batched and stops the exporter; call once
    /// the server has drained, so the last calls' spans are sent.
    pub async fn shutdown(self) {
        if !self.exporting {
            return;
        }
        let provider = self.provider;
        // The SDK's shutdown blocks until its batch thread has exported,
        // which needs this runtime's other threads: not on a worker.
        let outcome = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "flushing spans at shutdown"),
            Err(error) => tracing::warn!(%error, "flushing spans at shutdown"),
        }
    }
}

/// The service name spans of the server `service` are reported under, as
/// the environment and the default decide it.
pub fn service_name(service: &str) -> String {
    resource(service)
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default()
}

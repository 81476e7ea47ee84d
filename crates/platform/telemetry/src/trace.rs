//! Traces out of the process, configured the way every OpenTelemetry SDK
//! is, by the standard environment variables:
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
//!   for example `http://127.0.0.1:4317`: spans are batched and exported
//!   over OTLP/gRPC there by [`crate::otlp::OtlpSpanProcessor`]. Unset,
//!   nothing is exported and nothing is recorded; calls still get trace
//!   and span ids (for log lines) and pass a caller's trace context on.
//!   `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn
//!   exporting off too.
//! - `OTEL_SERVICE_NAME`; default the server's name (`web-bff`, `catalog`).
//! - `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//!   `OTEL_TRACES_SAMPLER_ARG` (default: follow the caller's sampling
//!   decision, sample every new trace): the SDK reads these.
//! - `OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_COMPRESSION` (and their
//!   `_TRACES_` forms) and `OTEL_BSP_SCHEDULE_DELAY` (1 s by default),
//!   `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
//!   `OTEL_BSP_EXPORT_TIMEOUT`: see [`crate::otlp::ExportConfig`].
//!
//! Trace context travels in W3C `traceparent`/`tracestate`, baggage in
//! `baggage`. Only the gRPC protocol, over plaintext HTTP/2, is built in;
//! another `OTEL_EXPORTER_OTLP_PROTOCOL` is reported and gRPC used.

use crate::env;
use crate::otlp::OtlpSpanProcessor;
use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::{Value, global};
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
/// Spans are exported from a thread of their own, so this may run
/// anywhere.
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
        let processor = OtlpSpanProcessor::from_env().map_err(TraceSetupError)?;
        SdkTracerProvider::builder()
            .with_span_processor(processor)
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
        // Shutting down blocks until the exporter thread has sent what is
        // buffered: not on a worker of this runtime.
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

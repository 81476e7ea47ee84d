//! Log and trace set-up shared by every binary.
//!
//! Logs: `tracing` to stderr, human-readable or JSON lines
//! (`--log-format json` / `TAILOR_LOG_FORMAT=json`), filtered by `RUST_LOG`
//! (default `info`). In JSON, every line written during a call carries the
//! call's `trace_id`, `span_id` and `request_id` (the trace layer's `call`
//! span, printed as `"span"`), the access line included; plain text keeps
//! its lines short and names the request id on the access line only.
//!
//! Traces: [`init_traces`] installs the process's OpenTelemetry tracer
//! provider as the standard `OTEL_*` environment variables say
//! (`tailor_telemetry::trace`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The `tracing` target of the span every call runs in (see
/// `tailor_interceptors::trace`).
const CALL_IDS_TARGET: &str = "call_ids";

/// Installs the global subscriber; a second call is a no-op.
pub fn init(json: bool) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if !json {
        // Text lines would repeat the call's ids as a prefix on every line.
        filter = filter.add_directive(
            format!("{CALL_IDS_TARGET}=off")
                .parse()
                .expect("a valid directive"),
        );
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Installs the W3C propagators and the tracer provider for the server
/// `server` (`web-bff`, `catalog`: the default service name), exporting
/// over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Run it before
/// the server's layers and channels are built: they keep the tracer that
/// is installed when they are made.
pub fn init_traces(server: &str) -> Result<tailor_telemetry::trace::Traces, String> {
    let traces = tailor_telemetry::trace::init(server).map_err(|e| e.to_string())?;
    if traces.exporting() {
        tracing::info!(
            service = %tailor_telemetry::trace::service_name(server),
            "exporting spans over OTLP"
        );
    }
    Ok(traces)
}

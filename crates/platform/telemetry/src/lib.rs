//! What every Tailor process reports to operators, set up once at start by
//! `tailor-runtime`: traces exported over OTLP when the standard
//! OpenTelemetry environment variables ask for it ([`trace`]), and
//! metrics, as Prometheus text for each server's admin port and over OTLP
//! when configured ([`metrics`]).
//!
//! What is *not* here: where spans start and end (the trace layer in
//! `tailor-interceptors`, client spans in `tailor-channel`, store spans in
//! `tailor-storage`, which use the `opentelemetry` API only), what is
//! counted (`tailor_interceptors::metrics`, `tailor-channel`), and log
//! set-up (`tailor-runtime::logging`).
//!
//! Spans leave through [`otlp`], this crate's own span processor, which
//! encodes each span into OTLP protobuf as it ends and exports batches
//! over gRPC; `opentelemetry-otlp` serves metrics only.

#![forbid(unsafe_code)]

pub mod metrics;
pub mod otlp;
pub mod trace;

/// An environment variable's value, if set and not blank.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the environment asks for `signal` (`TRACES`, `METRICS`) to be
/// exported over OTLP: an endpoint for it or for all signals, the SDK not
/// disabled, and its exporter not `none`.
pub(crate) fn otlp_configured(signal: &str) -> bool {
    let endpoint = env(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .is_some();
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let no_exporter =
        env(&format!("OTEL_{signal}_EXPORTER")).is_some_and(|v| v.eq_ignore_ascii_case("none"));
    endpoint && !disabled && !no_exporter
}

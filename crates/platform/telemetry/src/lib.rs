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

#![forbid(unsafe_code)]

pub mod metrics;
pub mod trace;

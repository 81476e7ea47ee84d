//! What a BFF counts of its calls to one downstream service: calls by
//! method and status, their latency (retries included), the retries and
//! hedges made and those the budget refused, calls refused here (circuit
//! open, bulkhead full; `rpc_client_refused_total` by `reason`) and the
//! circuit's state (`rpc_client_circuit_state`: 0 closed, 1 half-open,
//! 2 open), the adaptive window (`rpc_client_window`: calls let through
//! at once),
//! each labelled with the BFF (`server`), its client type and the service
//! called (`target`). Names and buckets are those of
//! `tailor_interceptors::metrics`; statuses are what the service answered,
//! or UNAVAILABLE when no answer came (a refused connection), or CANCELLED
//! when the BFF stopped waiting.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};
use tailor_interceptors::context::client_type;
use tailor_interceptors::metrics::{LATENCY_BUCKETS, code_name, meter, names};
use tonic::Code;

use crate::breaker::CircuitState;

/// Names of the instruments only downstream channels record (in
/// Prometheus text `rpc_client_retries_refused_total`,
/// `rpc_client_hedges_total`, `rpc_client_refused_total`,
/// `rpc_client_circuit_state`, `rpc_client_window`).
pub mod series {
    /// Retries and hedges the retry budget did not allow.
    pub const RETRIES_REFUSED: &str = "rpc.client.retries.refused";
    /// Reads sent a second time because the first answer was slow.
    pub const HEDGES: &str = "rpc.client.hedges";
    /// Calls refused in the BFF, by `reason` (`circuit_open`,
    /// `max_in_flight`, `window`).
    pub const REFUSED: &str = "rpc.client.refused";
    /// The circuit of each target: 0 closed, 1 half-open, 2 open.
    pub const CIRCUIT_STATE: &str = "rpc.client.circuit.state";
    /// The adaptive window of each target: calls let through at once.
    pub const WINDOW: &str = "rpc.client.window";
}

/// One downstream channel's series.
pub(crate) struct DownstreamMetrics {
    /// `server`, `client_type` and `target`.
    base: [KeyValue; 3],
    /// Made at the first call: a BFF builds its channels before the
    /// process's meter provider is installed.
    instruments: OnceLock<Instruments>,
}

struct Instruments {
    calls: Counter<u64>,
    duration: Histogram<f64>,
    retries: Counter<u64>,
    retries_refused: Counter<u64>,
    hedges: Counter<u64>,
    refused: Counter<u64>,
    circuit: Gauge<i64>,
    window: Gauge<i64>,
}

impl std::fmt::Debug for DownstreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownstreamMetrics")
            .field("base", &self.base)
            .finish()
    }
}

impl DownstreamMetrics {
    /// The series of the BFF `server` (`web-bff`) calling `target`.
    pub(crate) fn new(server: &str, target: &'static str) -> Arc<Self> {
        let server: Arc<str> = server.into();
        Arc::new(Self {
            base: [
                KeyValue::new("server", server.clone()),
                KeyValue::new("client_type", client_type(&server)),
                KeyValue::new("target", target),
            ],
            instruments: OnceLock::new(),
        })
    }

    fn instruments(&self) -> &Instruments {
        self.instruments.get_or_init(|| {
            let meter = meter();
            Instruments {
                calls: meter
                    .u64_counter(names::CLIENT_CALLS)
                    .with_unit("{call}")
                    .with_description("Downstream calls, by target service, method and status")
                    .build(),
                duration: meter
                    .f64_histogram(names::CLIENT_DURATION)
                    .with_unit("s")
                    .with_description("Time a downstream call took, retries included")
                    .with_boundaries(LATENCY_BUCKETS.to_vec())
                    .build(),
                retries: meter
                    .u64_counter(names::CLIENT_RETRIES)
                    .with_unit("{retry}")
                    .with_description("Downstream reads tried again after a transient failure")
                    .build(),
                retries_refused: meter
                    .u64_counter(series::RETRIES_REFUSED)
                    .with_unit("{retry}")
                    .with_description(
                        "Retries and hedges of downstream reads the retry budget refused",
                    )
                    .build(),
                hedges: meter
                    .u64_counter(series::HEDGES)
                    .with_unit("{call}")
                    .with_description(
                        "Downstream reads sent again because the first answer was slow",
                    )
                    .build(),
                refused: meter
                    .u64_counter(series::REFUSED)
                    .with_unit("{call}")
                    .with_description("Downstream calls refused in the BFF, by reason")
                    .build(),
                circuit: meter
                    .i64_gauge(series::CIRCUIT_STATE)
                    .with_description("Circuit of each downstream: 0 closed, 1 half-open, 2 open")
                    .build(),
                window: meter
                    .i64_gauge(series::WINDOW)
                    .with_unit("{call}")
                    .with_description(
                        "Calls to each downstream let through at once by the adaptive window",
                    )
                    .build(),
            }
        })
    }

    fn attributes(&self, path: &str) -> [KeyValue; 4] {
        let [server, client, target] = self.base.clone();
        let method = KeyValue::new("method", path.trim_start_matches('/').to_owned());
        [server, client, target, method]
    }

    /// Counts a retry of a call to `path`.
    pub(crate) fn retried(&self, path: &str) {
        self.instruments().retries.add(1, &self.attributes(path));
    }

    /// Counts a retry or hedge of a call to `path` the budget refused.
    pub(crate) fn retry_refused(&self, path: &str) {
        self.instruments()
            .retries_refused
            .add(1, &self.attributes(path));
    }

    /// Counts a hedge of a call to `path`.
    pub(crate) fn hedged(&self, path: &str) {
        self.instruments().hedges.add(1, &self.attributes(path));
    }

    /// Counts a call to `path` refused here for `reason`.
    pub(crate) fn refused(&self, path: &str, reason: &'static str) {
        let [server, client, target, method] = self.attributes(path);
        self.instruments().refused.add(
            1,
            &[
                server,
                client,
                target,
                method,
                KeyValue::new("reason", reason),
            ],
        );
    }

    /// Records the adaptive window's size.
    pub(crate) fn window(&self, limit: usize) {
        self.instruments().window.record(limit as i64, &self.base);
    }

    /// Records the circuit's state.
    pub(crate) fn circuit(&self, state: CircuitState) {
        self.instruments().circuit.record(state.gauge(), &self.base);
    }
}

/// A downstream call being timed; counted once, when it ends or is
/// dropped (CANCELLED).
pub(crate) struct CallTimer {
    metrics: Arc<DownstreamMetrics>,
    path: String,
    started: Instant,
    ended: bool,
}

impl CallTimer {
    /// Starts timing a call to `path`.
    pub(crate) fn start(metrics: Arc<DownstreamMetrics>, path: &str) -> Self {
        Self {
            metrics,
            path: path.to_owned(),
            started: Instant::now(),
            ended: false,
        }
    }

    /// The call ended with `code`.
    pub(crate) fn end(mut self, code: Code) {
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let instruments = self.metrics.instruments();
        let [server, client, target, method] = self.metrics.attributes(&self.path);
        instruments.duration.record(
            self.started.elapsed().as_secs_f64(),
            &[
                server.clone(),
                client.clone(),
                target.clone(),
                method.clone(),
            ],
        );
        instruments.calls.add(
            1,
            &[
                server,
                client,
                target,
                method,
                KeyValue::new("status", code_name(code)),
            ],
        );
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}

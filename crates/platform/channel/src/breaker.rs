//! A circuit breaker per downstream service. While the service fails, a
//! BFF that keeps calling it only adds load to something already down and
//! makes its own clients wait for timeouts; an open circuit answers
//! UNAVAILABLE at once instead, so a page whose optional part lives there
//! is served degraded without waiting.
//!
//! The circuit judges attempts (it stands below the retries): a transport
//! error, UNAVAILABLE (attempt timeouts included), UNKNOWN, INTERNAL or
//! DATA_LOSS is a failure; an answer about the request (NOT_FOUND,
//! INVALID_ARGUMENT, ...) is a success, since the service did its job.
//! DEADLINE_EXCEEDED from the *caller's* deadline is neither: a client
//! asking for absurdly short deadlines must not open the circuit for every
//! other client. Refusals made in this BFF (the bulkhead) are not counted.
//!
//! It opens when the share of failures over a sliding window reaches the
//! policy's rate (once the window holds enough attempts), or after N
//! failures in a row. Open, it refuses; after the open time, a few probe
//! calls go through (half-open), judged by the same rate: their failures
//! reaching it open the circuit again, their successes ruling it out close
//! it (with the defaults, 3 probes at a rate of 0.8: three failures
//! reopen, one success closes). An attempt is judged by the head of its answer (a
//! trailers-only status, or a transport error): a failure reported only in
//! the trailers of a streamed answer is not seen.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tailor_interceptors::{HttpRequest, HttpResponse, status_response};
use tokio::time::Instant;
use tonic::{Code, Status};
use tower::Service;

use crate::metrics::DownstreamMetrics;
use crate::policy::BreakerPolicy;

/// Marks an answer made in this BFF, not by the service (the circuit is
/// open, the bulkhead is full): not a failure of the service, not worth a
/// retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalRefusal;

/// An answer this BFF makes up to refuse a call to `service`.
pub(crate) fn local_refusal(service: &'static str, why: &str) -> HttpResponse {
    let mut response = status_response(Status::unavailable(format!(
        "{service} is unavailable: {why}"
    )));
    response.extensions_mut().insert(LocalRefusal);
    response
}

/// Whether the answer was made up in this BFF.
pub(crate) fn is_local_refusal(response: &HttpResponse) -> bool {
    response.extensions().get::<LocalRefusal>().is_some()
}

/// What a circuit does with the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// The open time has passed: a few probe calls go through.
    HalfOpen,
    /// Calls are refused at once.
    Open,
}

impl CircuitState {
    /// The value of the `rpc_client_circuit_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

/// How an attempt went, for the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    /// Says nothing about the service (the caller's deadline, a refusal
    /// made here, a call dropped before its answer).
    Neutral,
}

/// Judges an attempt's outcome as the module docs say.
pub(crate) fn verdict<E>(outcome: &Result<HttpResponse, E>) -> Verdict {
    let response = match outcome {
        Err(_) => return Verdict::Failure,
        Ok(response) => response,
    };
    if is_local_refusal(response) {
        return Verdict::Neutral;
    }
    match Status::from_header_map(response.headers()).map(|s| s.code()) {
        None | Some(Code::Ok) => Verdict::Success,
        Some(Code::Unavailable | Code::Unknown | Code::Internal | Code::DataLoss) => {
            Verdict::Failure
        }
        Some(Code::DeadlineExceeded | Code::Cancelled) => Verdict::Neutral,
        Some(_) => Verdict::Success,
    }
}

#[derive(Debug)]
enum Mode {
    Closed,
    Open {
        until: Instant,
    },
    /// Up to `half_open_probes` probe calls, judged together.
    HalfOpen {
        in_flight: u32,
        succeeded: u32,
        failed: u32,
    },
}

/// Attempts and failures of one slice of the window.
#[derive(Debug, Clone, Copy)]
struct Slice {
    started: Instant,
    calls: u32,
    failures: u32,
}

/// Slices of the sliding window.
const SLICES: u32 = 10;

#[derive(Debug)]
struct Inner {
    mode: Mode,
    in_a_row: u32,
    slices: std::collections::VecDeque<Slice>,
}

/// The state of one downstream's circuit, shared by every clone of its
/// channel and readable by readiness.
#[derive(Debug)]
pub struct Circuit {
    service: &'static str,
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
    metrics: Option<Arc<DownstreamMetrics>>,
    /// Whether the gauge has been set: at the first call, since the
    /// process's meter provider is installed after the channels are made.
    reported: std::sync::atomic::AtomicBool,
}

impl Circuit {
    /// A closed circuit for `service`.
    pub fn new(service: &'static str, policy: BreakerPolicy) -> Arc<Self> {
        Self::with_metrics(service, policy, None)
    }

    pub(crate) fn with_metrics(
        service: &'static str,
        policy: BreakerPolicy,
        metrics: Option<Arc<DownstreamMetrics>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            service,
            policy,
            inner: Mutex::new(Inner {
                mode: Mode::Closed,
                in_a_row: 0,
                slices: Default::default(),
            }),
            metrics,
            reported: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The service this circuit guards.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// What the circuit would do with a call now: an open circuit whose
    /// open time has passed reads as half-open.
    pub fn state(&self) -> CircuitState {
        let inner = self.lock();
        match inner.mode {
            Mode::Closed => CircuitState::Closed,
            Mode::Open { until } if Instant::now() < until => CircuitState::Open,
            Mode::Open { .. } | Mode::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, state: CircuitState) {
        if let Some(metrics) = &self.metrics {
            metrics.circuit(state);
        }
    }

    /// Lets a call through, or not.
    fn admit(self: &Arc<Self>) -> Option<Pass> {
        if !self
            .reported
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.report(self.state());
        }
        let mut inner = self.lock();
        let probe = match inner.mode {
            Mode::Closed => false,
            Mode::Open { until } if Instant::now() < until => return None,
            Mode::Open { .. } => {
                inner.mode = Mode::HalfOpen {
                    in_flight: 1,
                    succeeded: 0,
                    failed: 0,
                };
                drop(inner);
                tracing::info!(service = self.service, "circuit half-open: probing");
                self.report(CircuitState::HalfOpen);
                return Some(Pass::new(self, true));
            }
            Mode::HalfOpen {
                ref mut in_flight,
                succeeded,
                failed,
            } => {
                if *in_flight + succeeded + failed >= self.policy.half_open_probes {
                    return None;
                }
                *in_flight += 1;
                true
            }
        };
        Some(Pass::new(self, probe))
    }

    fn record(&self, probe: bool, verdict: Verdict) {
        let now = Instant::now();
        let mut inner = self.lock();
        if probe {
            let Mode::HalfOpen {
                in_flight,
                succeeded,
                failed,
            } = &mut inner.mode
            else {
                return;
            };
            *in_flight = in_flight.saturating_sub(1);
            match verdict {
                // Not judged: another probe may take its place.
                Verdict::Neutral => return,
                Verdict::Success => *succeeded += 1,
                Verdict::Failure => *failed += 1,
            }
            // The probes are judged by the same rate as the closed circuit:
            // it opens again once their failures alone reach the rate, and
            // closes once their successes leave no way to reach it. So a
            // service failing some calls, below the rate, closes it again
            // instead of keeping it open on one unlucky probe.
            let probes = f64::from(self.policy.half_open_probes.max(1));
            let failing_bound = self.policy.failure_rate * probes;
            let at_most_failed = probes - f64::from(*succeeded);
            let next = if f64::from(*failed) >= failing_bound {
                inner.mode = Mode::Open {
                    until: now + self.policy.open_for,
                };
                CircuitState::Open
            } else if at_most_failed < failing_bound {
                inner.mode = Mode::Closed;
                inner.in_a_row = 0;
                inner.slices.clear();
                CircuitState::Closed
            } else {
                return;
            };
            drop(inner);
            tracing::info!(service = self.service, state = ?next, "circuit probe answered");
            self.report(next);
            return;
        }
        if !matches!(inner.mode, Mode::Closed) || verdict == Verdict::Neutral {
            return;
        }
        let failed = verdict == Verdict::Failure;
        inner.in_a_row = if failed { inner.in_a_row + 1 } else { 0 };
        let slice_length = self.policy.window / SLICES;
        let window_start = now.checked_sub(self.policy.window);
        while inner
            .slices
            .front()
            .is_some_and(|s| window_start.is_some_and(|start| s.started < start))
        {
            inner.slices.pop_front();
        }
        match inner.slices.back_mut() {
            Some(slice) if now < slice.started + slice_length => {
                slice.calls += 1;
                slice.failures += u32::from(failed);
            }
            _ => inner.slices.push_back(Slice {
                started: now,
                calls: 1,
                failures: u32::from(failed),
            }),
        }
        let (calls, failures) = inner
            .slices
            .iter()
            .fold((0, 0), |(c, f), s| (c + s.calls, f + s.failures));
        let by_rate = calls >= self.policy.min_calls
            && f64::from(failures) >= self.policy.failure_rate * f64::from(calls);
        let in_a_row = inner.in_a_row >= self.policy.consecutive_failures;
        if failed && (by_rate || in_a_row) {
            inner.mode = Mode::Open {
                until: now + self.policy.open_for,
            };
            inner.in_a_row = 0;
            inner.slices.clear();
            drop(inner);
            tracing::warn!(
                service = self.service,
                calls,
                failures,
                "circuit opened: calls are refused for a while"
            );
            self.report(CircuitState::Open);
        }
    }
}

#[cfg(test)]
impl Circuit {
    /// Records an attempt's outcome as if a call had been made.
    pub(crate) fn record_for_test(&self, verdict: Verdict) {
        self.record(false, verdict);
    }
}

/// A call the circuit let through; judged when its answer comes, neutral
/// when dropped unjudged.
struct Pass {
    circuit: Arc<Circuit>,
    probe: bool,
    judged: bool,
}

impl Pass {
    fn new(circuit: &Arc<Circuit>, probe: bool) -> Self {
        Self {
            circuit: circuit.clone(),
            probe,
            judged: false,
        }
    }

    fn judge(mut self, verdict: Verdict) {
        self.judged = true;
        self.circuit.record(self.probe, verdict);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.judged {
            self.circuit.record(self.probe, Verdict::Neutral);
        }
    }
}

/// A downstream channel behind a [`Circuit`].
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    circuit: Arc<Circuit>,
}

impl<S> CircuitBreaker<S> {
    /// Calls `inner` while `circuit` allows.
    pub fn new(inner: S, circuit: Arc<Circuit>) -> Self {
        Self { inner, circuit }
    }

    /// The circuit.
    pub fn circuit(&self) -> &Arc<Circuit> {
        &self.circuit
    }
}

impl<S> Service<HttpRequest> for CircuitBreaker<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let Some(pass) = self.circuit.admit() else {
            let service = self.circuit.service;
            if let Some(metrics) = &self.circuit.metrics {
                metrics.refused(request.uri().path(), "circuit_open");
            }
            return Box::pin(async move { Ok(local_refusal(service, "circuit open")) });
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let outcome = response.await;
            pass.judge(verdict(&outcome));
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tower::ServiceExt;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_calls: 10,
            consecutive_failures: 4,
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }

    /// A fake service answering with `code` (shared, so a test can bring
    /// it back), counting the calls that reached it.
    fn fake(
        code: Arc<Mutex<Code>>,
        calls: Arc<AtomicU32>,
    ) -> impl Service<
        HttpRequest,
        Response = HttpResponse,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone {
        tower::service_fn(move |_: HttpRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            let code = *code.lock().unwrap();
            async move {
                Ok(match code {
                    Code::Ok => HttpResponse::new(tonic::body::Body::empty()),
                    code => status_response(Status::new(code, "fake")),
                })
            }
        })
    }

    async fn code_of<S>(channel: &mut S) -> Code
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = std::convert::Infallible>,
    {
        let response = channel
            .ready()
            .await
            .unwrap()
            .call(HttpRequest::new(tonic::body::Body::empty()))
            .await
            .unwrap();
        Status::from_header_map(response.headers()).map_or(Code::Ok, |s| s.code())
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_the_circuit_and_a_probe_closes_it() {
        let code = Arc::new(Mutex::new(Code::Unavailable));
        let calls = Arc::new(AtomicU32::new(0));
        let circuit = Circuit::new("reviews", policy());
        let mut channel = CircuitBreaker::new(fake(code.clone(), calls.clone()), circuit.clone());
        for _ in 0..4 {
            assert_eq!(code_of(&mut channel).await, Code::Unavailable);
        }
        assert_eq!(circuit.state(), CircuitState::Open);
        // Open: refused here, the service is not called.
        for _ in 0..5 {
            assert_eq!(code_of(&mut channel).await, Code::Unavailable);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4, "no call while open");

        // After the open time one probe goes through; it fails: open again.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(circuit.state(), CircuitState::HalfOpen);
        assert_eq!(code_of(&mut channel).await, Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 5, "one probe");
        assert_eq!(circuit.state(), CircuitState::Open);

        // The service is back: the next probe closes the circuit.
        *code.lock().unwrap() = Code::Ok;
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(code_of(&mut channel).await, Code::Ok);
        assert_eq!(circuit.state(), CircuitState::Closed);
        assert_eq!(code_of(&mut channel).await, Code::Ok);
        assert_eq!(calls.load(Ordering::SeqCst), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_over_the_window_opens_it_and_answers_about_the_request_do_not() {
        let code = Arc::new(Mutex::new(Code::NotFound));
        let calls = Arc::new(AtomicU32::new(0));
        let circuit = Circuit::new("catalog", policy());
        let mut channel = CircuitBreaker::new(fake(code.clone(), calls.clone()), circuit.clone());
        // NOT_FOUND, INVALID_ARGUMENT and the caller's deadline say nothing
        // about the service's health.
        for answer in [
            Code::NotFound,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
        ] {
            *code.lock().unwrap() = answer;
            for _ in 0..20 {
                assert_eq!(code_of(&mut channel).await, answer);
            }
        }
        assert_eq!(circuit.state(), CircuitState::Closed);

        // Alternating failures never make four in a row, but reach half of
        // the window's attempts.
        tokio::time::advance(Duration::from_secs(11)).await;
        let mut opened_after = None;
        for n in 1..=20 {
            *code.lock().unwrap() = if n % 2 == 0 { Code::Internal } else { Code::Ok };
            code_of(&mut channel).await;
            if circuit.state() == CircuitState::Open {
                opened_after = Some(n);
                break;
            }
        }
        assert_eq!(
            opened_after,
            Some(10),
            "opened once the window held 10 calls"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn probes_are_judged_by_the_rate_so_one_unlucky_probe_does_not_reopen_it() {
        let code = Arc::new(Mutex::new(Code::Unavailable));
        let calls = Arc::new(AtomicU32::new(0));
        let three = BreakerPolicy {
            half_open_probes: 3,
            failure_rate: 0.6,
            ..policy()
        };
        let circuit = Circuit::new("catalog", three);
        let mut channel = CircuitBreaker::new(fake(code.clone(), calls.clone()), circuit.clone());
        for _ in 0..4 {
            code_of(&mut channel).await;
        }
        assert_eq!(circuit.state(), CircuitState::Open);

        // A service failing one call in three: the first probe fails, the
        // next two succeed, and the circuit closes.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(code_of(&mut channel).await, Code::Unavailable);
        assert_eq!(circuit.state(), CircuitState::HalfOpen);
        *code.lock().unwrap() = Code::Ok;
        assert_eq!(code_of(&mut channel).await, Code::Ok);
        assert_eq!(circuit.state(), CircuitState::HalfOpen);
        assert_eq!(code_of(&mut channel).await, Code::Ok);
        assert_eq!(circuit.state(), CircuitState::Closed);

        // Still down: two failing probes of three open it again.
        *code.lock().unwrap() = Code::Unavailable;
        for _ in 0..4 {
            code_of(&mut channel).await;
        }
        assert_eq!(circuit.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        code_of(&mut channel).await;
        assert_eq!(circuit.state(), CircuitState::HalfOpen);
        code_of(&mut channel).await;
        assert_eq!(circuit.state(), CircuitState::Open);
    }
}

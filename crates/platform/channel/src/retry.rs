//! Retries of downstream reads on transient failures, within the caller's
//! deadline.
//!
//! Which calls may be retried is read from the contracts, not listed by
//! hand: a method whose descriptor says `idempotency_level =
//! NO_SIDE_EFFECTS` (a read) is retried when the call fails to connect or
//! answers UNAVAILABLE. `IDEMPOTENT` is not enough: such a method changes
//! state, and whether repeating it is safe is its caller's decision, made
//! with an idempotency key. Every other method, and every write in
//! particular, is sent exactly once: making a write safe to repeat is the
//! job of its idempotency key, decided by the caller, never by a retry
//! policy underneath it.
//!
//! A retry waits a short, growing, jittered pause (doubled each time up to a
//! cap) and only happens when the caller's deadline leaves room for it; the
//! last failure is returned as it came. Each retry is counted by target
//! service (`rpc_client_retries_total`).
//!
//! What ends a read's retries is, first, the caller's deadline, the budget
//! and the circuit breaker, not a small count of attempts: a service that
//! fails half of its answers at random loses one read in eight to three
//! attempts, one in a million to twenty. The count (20 by default) is only
//! a cap on one call's tries; the pause cap (50 ms) keeps a user's wait
//! short, and the budget, not the pause, keeps the load down.
//!
//! Retries are budgeted the way Envoy budgets them: retries (and hedges)
//! in flight to a service may be at most the policy's share of the
//! attempts in flight to it (a call pausing before its retry is not one),
//! or a small floor of retries at once, whichever is larger.
//! The budget is counted in work the service holds at once, not in calls
//! per second: when a service is slow because it is overloaded, calls pile
//! up and retries stay a tenth of them, so an outage is never met with
//! three times its load; when a service answers quickly but some of its
//! answers fail, retries cost it little and the floor lets each failure be
//! tried again. A service failing outright is the circuit breaker's to
//! stop, below this layer. A retry that finds the budget spent waits for a
//! place as long as the longest pause (`max-backoff`), so a burst of
//! retries is spread out rather than lost while the load on the service
//! stays within the budget; with no place by then, the failure is returned
//! and counted (`rpc_client_retries_refused_total`). Refusals made in
//! this BFF (an open circuit, a full bulkhead) are never retried: they
//! would be refused again.
//!
//! Hedging (off by default) sends a unary read a second time when no answer
//! came after a delay, and takes the first answer that is not a transient
//! failure: a tail-latency remedy for reads, paid from the same budget and
//! counted (`rpc_client_hedges_total`). Streams are never hedged.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use tower::{Service, ServiceExt};

use tailor_interceptors::context::CallContext;

use crate::breaker::is_local_refusal;
use crate::metrics::DownstreamMetrics;
use crate::policy::BudgetPolicy;
use tailor_interceptors::{HttpRequest, HttpResponse, status_response};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Pause before the first retry; doubled for each further one ...
    pub first_backoff: Duration,
    /// ... up to this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 20,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
        }
    }
}

/// The full paths (`/pkg.Service/Method`) of the methods an encoded
/// `FileDescriptorSet` marks as reads (`NO_SIDE_EFFECTS`).
pub fn read_methods(encoded_set: &[u8]) -> HashSet<String> {
    use prost_types::method_options::IdempotencyLevel;
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded_set) else {
        return HashSet::new();
    };
    let mut methods = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let level = method
                    .options
                    .as_ref()
                    .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
                        o.idempotency_level()
                    });
                if level == IdempotencyLevel::NoSideEffects {
                    methods.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    methods
}

/// The full paths of the methods an encoded `FileDescriptorSet` declares
/// streaming, either way: never coalesced, hedged or bounded per attempt.
pub fn streaming_methods(encoded_set: &[u8]) -> HashSet<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded_set) else {
        return HashSet::new();
    };
    let mut methods = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                if method.client_streaming() || method.server_streaming() {
                    methods.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    methods
}

/// The retry budget of one downstream channel, shared by its clones: the
/// calls and the retries in flight through it.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_concurrency: usize,
    calls: AtomicUsize,
    retries: AtomicUsize,
    freed: tokio::sync::Notify,
}

/// One call in flight; the count goes down when it is dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One retry or hedge in flight; its place is freed, and a retry waiting
/// for one woken, when it is dropped.
struct RetryPlace<'a>(&'a RetryBudget);

impl Drop for RetryPlace<'_> {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

impl RetryBudget {
    /// Allows retries in flight up to `policy.ratio` of the calls in
    /// flight, and never fewer than `policy.min_concurrency`.
    pub fn new(policy: BudgetPolicy) -> Self {
        Self {
            ratio: f64::from(policy.ratio).clamp(0.0, 1000.0),
            min_concurrency: policy.min_concurrency as usize,
            calls: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// Retries and hedges in flight now.
    pub fn retries_in_flight(&self) -> usize {
        self.retries.load(Ordering::Acquire)
    }

    /// Counts a call in flight until the guard is dropped.
    fn call(&self) -> InFlight<'_> {
        self.calls.fetch_add(1, Ordering::AcqRel);
        InFlight(&self.calls)
    }

    /// A place for one more retry or hedge, if the budget has one.
    fn retry(&self) -> Option<RetryPlace<'_>> {
        let calls = self.calls.load(Ordering::Acquire);
        let allowed = ((calls as f64 * self.ratio) as usize).max(self.min_concurrency);
        self.retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |retries| {
                (retries < allowed).then_some(retries + 1)
            })
            .ok()
            .map(|_| RetryPlace(self))
    }

    /// A place for one more retry, waiting up to `wait` for one to be freed.
    async fn retry_within(&self, wait: Duration) -> Option<RetryPlace<'_>> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking, so a place freed in between wakes it.
            freed.as_mut().enable();
            if let Some(place) = self.retry() {
                return Some(place);
            }
            if tokio::time::timeout_at(until, freed).await.is_err() {
                return None;
            }
        }
    }
}

/// Wraps a downstream channel with retries of idempotent calls.
#[derive(Debug, Clone)]
pub struct RetryReads<S> {
    inner: S,
    methods: Arc<HashSet<String>>,
    streaming: Arc<HashSet<String>>,
    policy: RetryPolicy,
    budget: Arc<RetryBudget>,
    hedge_after: Option<Duration>,
    metrics: Option<Arc<DownstreamMetrics>>,
}

impl<S> RetryReads<S> {
    /// Retries the calls of `inner` to `methods` as `policy` says, within
    /// the default budget.
    pub fn new(inner: S, methods: Arc<HashSet<String>>, policy: RetryPolicy) -> Self {
        Self {
            inner,
            methods,
            streaming: Arc::default(),
            policy,
            budget: Arc::new(RetryBudget::new(BudgetPolicy::default())),
            hedge_after: None,
            metrics: None,
        }
    }

    /// Spends `budget` on retries and hedges.
    pub fn with_budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Hedges unary reads (those not in `streaming`) after `delay`.
    pub fn with_hedging(
        mut self,
        delay: Option<Duration>,
        streaming: Arc<HashSet<String>>,
    ) -> Self {
        self.hedge_after = delay;
        self.streaming = streaming;
        self
    }

    /// Counts every retry in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<DownstreamMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// Whether an answer is worth another try: a trailers-only UNAVAILABLE
/// from the service (not a refusal made here).
fn unavailable(response: &HttpResponse) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"14")
        && !is_local_refusal(response)
}

fn transient<E>(outcome: &Result<HttpResponse, E>) -> bool {
    match outcome {
        Ok(response) => unavailable(response),
        Err(_) => true,
    }
}

/// The first of two attempts' outcomes that is not a transient failure;
/// the later one when both are.
async fn first_good<F, E>(first: F, second: F) -> Result<HttpResponse, E>
where
    F: Future<Output = Result<HttpResponse, E>>,
{
    use futures_util::future::{Either, select};
    let (first, second) = (std::pin::pin!(first), std::pin::pin!(second));
    match select(first, second).await {
        Either::Left((outcome, other)) | Either::Right((outcome, other)) => {
            if transient(&outcome) {
                other.await
            } else {
                outcome
            }
        }
    }
}

impl<S> Service<HttpRequest> for RetryReads<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
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
        if !self.methods.contains(request.uri().path()) {
            let budget = self.budget.clone();
            let call = self.inner.call(request);
            return Box::pin(async move {
                let _in_flight = budget.call();
                call.await
            });
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy;
        let metrics = self.metrics.clone();
        let budget = self.budget.clone();
        let hedge_after = self
            .hedge_after
            .filter(|_| !self.streaming.contains(request.uri().path()));
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // A unary request is one small message: keep it to send again.
            let body: Bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(status) => return Ok(status_response(status)),
            };
            let path = parts.uri.path().to_owned();
            let attempt_of = |inner: S| {
                let mut request = HttpRequest::new(tonic::body::Body::new(Full::new(body.clone())));
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = parts.uri.clone();
                *request.version_mut() = parts.version;
                *request.headers_mut() = parts.headers.clone();
                async move {
                    let mut inner = inner;
                    match inner.ready().await {
                        Ok(ready) => ready.call(request).await,
                        Err(error) => Err(error),
                    }
                }
            };
            let deadline = CallContext::current_deadline();
            let mut backoff = policy.first_backoff;
            let mut attempt = 1;
            // The place in the budget of the retry being made, if any.
            let mut _retry = None;
            loop {
                // Counted while an attempt is out, not while it pauses or
                // waits for a place: the budget is a share of the work the
                // service holds, so calls that are only waiting to retry
                // do not make room for more retries.
                let attempt_out = budget.call();
                let first = attempt_of(inner.clone());
                let outcome = match hedge_after {
                    Some(delay) if attempt < policy.max_attempts => {
                        let mut first = Box::pin(first);
                        tokio::select! {
                            outcome = &mut first => outcome,
                            () = tokio::time::sleep(delay) => {
                                let room = deadline.is_none_or(|d| !d.remaining().is_zero());
                                let place = room.then(|| budget.retry()).flatten();
                                if let Some(_hedge) = place {
                                    if let Some(metrics) = &metrics {
                                        metrics.hedged(&path);
                                    }
                                    attempt += 1;
                                    first_good(first, Box::pin(attempt_of(inner.clone()))).await
                                } else {
                                    if room && let Some(metrics) = &metrics {
                                        metrics.retry_refused(&path);
                                    }
                                    first.await
                                }
                            }
                        }
                    }
                    _ => first.await,
                };
                drop(attempt_out);
                // Full jitter: anywhere up to the pause, so retries from
                // many callers do not arrive together.
                let pause = backoff.mul_f64(rand::random::<f64>());
                // Room for the longest pause this retry may draw, and as
                // long again for the attempt.
                let room = deadline.is_none_or(|d| d.remaining() > backoff * 2);
                if !transient(&outcome) || attempt >= policy.max_attempts || !room {
                    return outcome;
                }
                drop(_retry.take());
                // The pause costs the service nothing: the budget counts
                // the retry from when it is sent.
                tokio::time::sleep(pause).await;
                let wait = deadline.map_or(policy.max_backoff, |d| {
                    policy.max_backoff.min(d.remaining() / 2)
                });
                let Some(place) = budget.retry_within(wait).await else {
                    tracing::debug!(method = %path, attempt, "retry budget spent, not retrying");
                    if let Some(metrics) = &metrics {
                        metrics.retry_refused(&path);
                    }
                    return outcome;
                };
                _retry = Some(place);
                tracing::debug!(
                    method = %path,
                    attempt,
                    "retrying an idempotent call after a transient failure"
                );
                if let Some(metrics) = &metrics {
                    metrics.retried(&path);
                }
                backoff = (backoff * 2).min(policy.max_backoff.max(policy.first_backoff));
                attempt += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_methods_the_contract_marks_as_reads_are_retried() {
        use prost_types::method_options::IdempotencyLevel;
        use prost_types::{
            FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto, MethodOptions,
            ServiceDescriptorProto,
        };
        let method = |name: &str, level: Option<IdempotencyLevel>| MethodDescriptorProto {
            name: Some(name.into()),
            options: level.map(|level| MethodOptions {
                idempotency_level: Some(level as i32),
                ..Default::default()
            }),
            ..Default::default()
        };
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                package: Some("shop.v1".into()),
                service: vec![ServiceDescriptorProto {
                    name: Some("Shop".into()),
                    method: vec![
                        method("Get", Some(IdempotencyLevel::NoSideEffects)),
                        method("Put", Some(IdempotencyLevel::Idempotent)),
                        method("Create", None),
                        method("Pay", Some(IdempotencyLevel::IdempotencyUnknown)),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let methods = read_methods(&set.encode_to_vec());
        let mut listed: Vec<_> = methods.into_iter().collect();
        listed.sort();
        assert_eq!(listed, ["/shop.v1.Shop/Get"], "only reads are retried");
    }

    use std::sync::atomic::{AtomicU32, Ordering};
    use tonic::{Code, Status};

    const GET: &str = "/shop.v1.Shop/Get";

    fn reads() -> Arc<HashSet<String>> {
        Arc::new(HashSet::from([GET.to_owned()]))
    }

    /// A fake service answering every call with what `answer` makes of
    /// the call's number (1, 2, ...), after `delay(n)`.
    fn fake(
        calls: Arc<AtomicU32>,
        answer: fn(u32) -> HttpResponse,
        delay: fn(u32) -> Duration,
    ) -> impl Service<
        HttpRequest,
        Response = HttpResponse,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |_: HttpRequest| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(delay(n)).await;
                Ok(answer(n))
            }
        })
    }

    fn unavailable_answer(_: u32) -> HttpResponse {
        status_response(Status::unavailable("down"))
    }

    fn ok(_: u32) -> HttpResponse {
        HttpResponse::new(tonic::body::Body::empty())
    }

    fn code(response: &HttpResponse) -> Code {
        Status::from_header_map(response.headers()).map_or(Code::Ok, |s| s.code())
    }

    async fn read<S>(channel: &RetryReads<S>) -> HttpResponse
    where
        S: Service<HttpRequest, Response = HttpResponse, Error = std::convert::Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let mut request = HttpRequest::new(tonic::body::Body::empty());
        *request.uri_mut() = GET.parse().unwrap();
        channel.clone().oneshot(request).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_in_flight_stay_within_their_share_of_the_calls_in_flight() {
        // A service that fails every call, called 100 times at once: the
        // first 50 attempts take 300 ms, every other 10 ms. Without a
        // budget 2,000 attempts. Calls numbered above 100 are retries;
        // count how many of them are in flight at once.
        #[derive(Default)]
        struct Counts {
            made: AtomicU32,
            retrying: AtomicU32,
            peak: AtomicU32,
        }
        let counts = Arc::new(Counts::default());
        let service = {
            let counts = counts.clone();
            tower::service_fn(move |_: HttpRequest| {
                let counts = counts.clone();
                async move {
                    let n = counts.made.fetch_add(1, Ordering::SeqCst) + 1;
                    if n > 100 {
                        let now = counts.retrying.fetch_add(1, Ordering::SeqCst) + 1;
                        counts.peak.fetch_max(now, Ordering::SeqCst);
                    }
                    let took = if n <= 50 { 300 } else { 10 };
                    tokio::time::sleep(Duration::from_millis(took)).await;
                    if n > 100 {
                        counts.retrying.fetch_sub(1, Ordering::SeqCst);
                    }
                    Ok::<_, std::convert::Infallible>(unavailable_answer(n))
                }
            })
        };
        let budget = Arc::new(RetryBudget::new(BudgetPolicy {
            ratio: 0.1,
            min_concurrency: 0,
        }));
        let channel =
            RetryReads::new(service, reads(), RetryPolicy::default()).with_budget(budget.clone());
        let reads: Vec<_> = (0..100).map(|_| read(&channel)).collect();
        let answers = futures_util::future::join_all(reads).await;
        assert!(answers.iter().all(|a| code(a) == Code::Unavailable));
        // While the 50 slow attempts are out, a tenth of them (and of the
        // retries out) may be retries; a call waiting to retry is not
        // work the service holds, so it makes no room. A retry waits a
        // pause for a place, then gives up; once every first attempt has
        // ended, no retry has room.
        let peak = counts.peak.load(Ordering::SeqCst);
        assert!((1..=6).contains(&peak), "{peak} retries in flight at once");
        let made = counts.made.load(Ordering::SeqCst);
        assert!((105..=300).contains(&made), "{made} attempts for 100 calls");
        assert_eq!(budget.retries_in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_for_a_place_in_the_budget_rather_than_failing() {
        // Room for one retry at a time; two calls fail together once and
        // retry about together: the second retry waits for the first one's
        // place and both reads are answered.
        let calls = Arc::new(AtomicU32::new(0));
        let first_two_fail = |n: u32| {
            if n <= 2 { unavailable_answer(n) } else { ok(n) }
        };
        let budget = Arc::new(RetryBudget::new(BudgetPolicy {
            ratio: 0.0,
            min_concurrency: 1,
        }));
        let channel = RetryReads::new(
            fake(calls.clone(), first_two_fail, |_| Duration::from_millis(5)),
            reads(),
            RetryPolicy {
                first_backoff: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
        )
        .with_budget(budget.clone());
        let (a, b) = tokio::join!(read(&channel), read(&channel));
        assert_eq!((code(&a), code(&b)), (Code::Ok, Code::Ok));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(budget.retries_in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_lets_a_quiet_caller_retry_every_failure() {
        // Every second call fails; one call at a time, so a share of the
        // calls in flight would allow no retry at all.
        let calls = Arc::new(AtomicU32::new(0));
        let every_second = |n: u32| {
            if n % 2 == 1 {
                unavailable_answer(n)
            } else {
                ok(n)
            }
        };
        let channel = RetryReads::new(
            fake(calls.clone(), every_second, |_| Duration::from_millis(1)),
            reads(),
            RetryPolicy::default(),
        )
        .with_budget(Arc::new(RetryBudget::new(BudgetPolicy::default())));
        for _ in 0..50 {
            assert_eq!(code(&read(&channel).await), Code::Ok);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_is_tried_until_it_succeeds_with_pauses_that_stop_growing() {
        // Nine failures in a row, then an answer: three attempts would
        // have lost it. Pauses of up to 20, 40, then 50 ms seven times
        // (each drawn between none and that).
        let calls = Arc::new(AtomicU32::new(0));
        let nine_failures = |n: u32| {
            if n <= 9 { unavailable_answer(n) } else { ok(n) }
        };
        let channel = RetryReads::new(
            fake(calls.clone(), nine_failures, |_| Duration::ZERO),
            reads(),
            RetryPolicy::default(),
        );
        let started = tokio::time::Instant::now();
        assert_eq!(code(&read(&channel).await), Code::Ok);
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        let paused = started.elapsed();
        let most = Duration::from_millis(20 + 40 + 7 * 50);
        assert!(
            paused > Duration::ZERO && paused <= most,
            "paused {paused:?} in all"
        );

        // The count is still a cap.
        let calls = Arc::new(AtomicU32::new(0));
        let capped = RetryReads::new(
            fake(calls.clone(), nine_failures, |_| Duration::ZERO),
            reads(),
            RetryPolicy {
                max_attempts: 4,
                ..RetryPolicy::default()
            },
        );
        assert_eq!(code(&read(&capped).await), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_made_in_the_bff_are_not_retried() {
        let calls = Arc::new(AtomicU32::new(0));
        let channel = RetryReads::new(
            fake(
                calls.clone(),
                |_| crate::breaker::local_refusal("catalog", "circuit open"),
                |_| Duration::ZERO,
            ),
            reads(),
            RetryPolicy::default(),
        );
        assert_eq!(code(&read(&channel).await), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_read_is_hedged_and_the_first_answer_wins() {
        // The first attempt takes a second, any later one 10 ms.
        let slow_first = |n: u32| {
            if n == 1 {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(10)
            }
        };
        let calls = Arc::new(AtomicU32::new(0));
        let hedged = RetryReads::new(
            fake(calls.clone(), ok, slow_first),
            reads(),
            RetryPolicy::default(),
        )
        .with_hedging(Some(Duration::from_millis(50)), Arc::default());
        let started = tokio::time::Instant::now();
        assert_eq!(code(&read(&hedged).await), Code::Ok);
        assert_eq!(started.elapsed(), Duration::from_millis(60));
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Off by default, and never for streams.
        let calls = Arc::new(AtomicU32::new(0));
        let plain = RetryReads::new(
            fake(calls.clone(), ok, slow_first),
            reads(),
            RetryPolicy::default(),
        );
        let started = tokio::time::Instant::now();
        read(&plain).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        let calls = Arc::new(AtomicU32::new(0));
        let stream = RetryReads::new(
            fake(calls.clone(), ok, slow_first),
            reads(),
            RetryPolicy::default(),
        )
        .with_hedging(Some(Duration::from_millis(50)), reads());
        read(&stream).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

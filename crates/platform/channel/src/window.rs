//! An adaptive window per downstream service: how many calls this BFF
//! keeps in flight to it, found from the service's answer times the way
//! TCP Vegas finds a congestion window. While answers come about as fast
//! as the quickest seen lately, the window grows by one for each window's
//! worth of answers; when an answer takes more than 1.5 times that plus
//! half a millisecond, the service is queueing work, and the window
//! shrinks by a fifth (at most once per 10 ms). Calls beyond the window wait here, in
//! order, until a place frees or the caller's deadline leaves no room; so a
//! flood of one client type waits in its own BFF, on its own CPU, instead
//! of in the services the BFFs share, where it would hold up every other
//! client type's calls.
//!
//! The quickest answer is kept per method, over the last 10 to 20 s, so a
//! listing that always takes longer than a point read is not read as
//! congestion. A call that is waiting longer than its deadline allows gets
//! UNAVAILABLE naming the service (a local refusal: not retried, not a
//! failure of the service). Streams take a place only until they have
//! started, as in the bulkhead. Off by default (`adaptive=on` per
//! downstream): in one report run with it on, the web product page at
//! concurrency 128 served 1,230 pages/s and the mobile page 2,704,
//! against 1,861 and 6,049 in the run before without it; on a machine
//! whose CPU every process shares, answers slow down for reasons other
//! than the service queueing, and the window reads that as congestion. The bulkhead above bounds the calls waiting
//! and in flight together (`max-in-flight`): beyond it a call is refused
//! at once, so the wait here never grows without bound.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tailor_interceptors::context::CallContext;
use tailor_interceptors::{HttpRequest, HttpResponse};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::Service;

use crate::breaker::{is_local_refusal, local_refusal};
use crate::metrics::DownstreamMetrics;

/// An answer slower than this many times the quickest ...
const TOLERANCE: f64 = 1.5;
/// ... plus this, is a sign the service is queueing.
const SLACK: Duration = Duration::from_micros(500);
/// Share of the window kept when it shrinks.
const SHRINK: f64 = 0.8;
/// At most one shrink in this long, so one burst of slow answers is read
/// as one sign.
const SHRINK_EVERY: Duration = Duration::from_millis(10);
/// The quickest answer of a method is the least of this long and the
/// period before.
const BASELINE_PERIOD: Duration = Duration::from_secs(10);
/// The window at start.
const INITIAL: f64 = 16.0;
/// Never fewer places than this.
const MINIMUM: f64 = 1.0;

/// The quickest answers of one method: this period's and the last one's.
#[derive(Debug, Clone, Copy)]
struct Quickest {
    current: Duration,
    previous: Duration,
    since: Instant,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    quickest: HashMap<String, Quickest>,
    last_shrink: Option<Instant>,
}

/// The window of one downstream service, shared by its channel's clones.
#[derive(Debug)]
pub struct Window {
    state: Mutex<State>,
    freed: Notify,
    max: f64,
}

impl Window {
    /// A window of at most `max` calls in flight.
    pub fn new(max: usize) -> Self {
        let max = (max as f64).max(MINIMUM);
        Self {
            state: Mutex::new(State {
                limit: INITIAL.min(max),
                in_flight: 0,
                quickest: HashMap::new(),
                last_shrink: None,
            }),
            freed: Notify::new(),
            max,
        }
    }

    /// The calls it lets through at once now.
    pub fn limit(&self) -> usize {
        self.state.lock().expect("window").limit as usize
    }

    fn try_enter(&self) -> bool {
        let mut state = self.state.lock().expect("window");
        if (state.in_flight as f64) < state.limit.floor().max(MINIMUM) {
            state.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// A place in the window, waiting until `until` at most.
    async fn enter(self: &Arc<Self>, until: Option<Instant>) -> Option<Place> {
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if self.try_enter() {
                return Some(Place {
                    window: self.clone(),
                });
            }
            match until {
                Some(until) => {
                    if tokio::time::timeout_at(until, freed).await.is_err() {
                        return None;
                    }
                }
                None => freed.await,
            }
        }
    }

    /// Learns from an answer to `path` that took `took`; the window's new
    /// size when it changed.
    fn answered(&self, path: &str, took: Duration, now: Instant) -> Option<usize> {
        let mut state = self.state.lock().expect("window");
        if !state.quickest.contains_key(path) {
            state.quickest.insert(
                path.to_owned(),
                Quickest {
                    current: took,
                    previous: took,
                    since: now,
                },
            );
        }
        let quickest = state.quickest.get_mut(path).expect("inserted above");
        if now.duration_since(quickest.since) >= BASELINE_PERIOD {
            quickest.previous = quickest.current;
            quickest.current = took;
            quickest.since = now;
        }
        quickest.current = quickest.current.min(took);
        let baseline = quickest.current.min(quickest.previous);
        if took > baseline.mul_f64(TOLERANCE) + SLACK {
            let due = state
                .last_shrink
                .is_none_or(|last| now.duration_since(last) >= SHRINK_EVERY);
            if due {
                let before = state.limit.floor();
                state.limit = (state.limit * SHRINK).max(MINIMUM);
                state.last_shrink = Some(now);
                return (state.limit.floor() < before).then_some(state.limit as usize);
            }
        } else if state.in_flight as f64 + 1.0 >= state.limit.floor() {
            // Grow only while the window is used, so an idle one does not
            // swell to the maximum.
            let grown = (state.limit + 1.0 / state.limit).min(self.max);
            let more = grown.floor() > state.limit.floor();
            state.limit = grown;
            if more {
                drop(state);
                self.freed.notify_one();
                return Some(grown as usize);
            }
        }
        None
    }

    fn leave(&self) {
        self.state.lock().expect("window").in_flight -= 1;
        self.freed.notify_one();
    }
}

/// A call's place in the window; freed when dropped.
struct Place {
    window: Arc<Window>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.window.leave();
    }
}

/// A downstream channel that keeps its calls within an adaptive window.
#[derive(Debug, Clone)]
pub struct Windowed<S> {
    inner: S,
    service: &'static str,
    window: Option<Arc<Window>>,
    metrics: Option<Arc<DownstreamMetrics>>,
}

impl<S> Windowed<S> {
    /// Keeps calls to `service` within `window`; `None` passes every call.
    pub fn new(inner: S, service: &'static str, window: Option<Arc<Window>>) -> Self {
        Self {
            inner,
            service,
            window,
            metrics: None,
        }
    }

    /// Counts refusals in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<DownstreamMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl<S> Service<HttpRequest> for Windowed<S>
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
        let Some(window) = self.window.clone() else {
            return Box::pin(self.inner.call(request));
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let service = self.service;
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let until = CallContext::current_deadline().map(|d| Instant::now() + d.remaining());
            let Some(place) = window.enter(until).await else {
                if let Some(metrics) = &metrics {
                    metrics.refused(request.uri().path(), "window");
                }
                return Ok(local_refusal(
                    service,
                    "calls waited for a place until their deadline",
                ));
            };
            let uri = request.uri().clone();
            let sent = Instant::now();
            let outcome = inner.call(request).await;
            let now = Instant::now();
            if let Ok(response) = &outcome
                && !is_local_refusal(response)
            {
                let resized = window.answered(uri.path(), now - sent, now);
                if let (Some(limit), Some(metrics)) = (resized, &metrics) {
                    metrics.window(limit);
                }
            }
            drop(place);
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use tonic::{Code, Status};
    use tower::ServiceExt;

    /// A service whose answers take `base` plus `per_call` for every call
    /// in flight at once: one that queues its work, as a busy CPU does.
    fn queueing(
        base: Duration,
        per_call: Duration,
        in_flight: Arc<AtomicU32>,
        peak: Arc<AtomicU32>,
    ) -> impl Service<
        HttpRequest,
        Response = HttpResponse,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |_: HttpRequest| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let in_flight = in_flight.clone();
            async move {
                tokio::time::sleep(base + per_call * now).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(HttpResponse::new(tonic::body::Body::empty()))
            }
        })
    }

    fn code(response: &HttpResponse) -> Code {
        Status::from_header_map(response.headers()).map_or(Code::Ok, |s| s.code())
    }

    #[tokio::test(start_paused = true)]
    async fn a_queueing_service_gets_fewer_calls_at_once_and_the_rest_wait_here() {
        // 200 callers in a closed loop against a service that slows by
        // 1 ms for each call it holds: the window shrinks until answers
        // come near the quickest, and no call is refused.
        let (in_flight, peak) = (Arc::default(), Arc::new(AtomicU32::new(0)));
        let window = Arc::new(Window::new(512));
        let channel = Windowed::new(
            queueing(
                Duration::from_micros(300),
                Duration::from_millis(1),
                in_flight,
                peak.clone(),
            ),
            "catalog",
            Some(window.clone()),
        );
        let answered = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(5);
        let callers: Vec<_> = (0..200)
            .map(|_| {
                let channel = channel.clone();
                let answered = answered.clone();
                tokio::spawn(async move {
                    while Instant::now() < until {
                        let response = channel
                            .clone()
                            .oneshot(HttpRequest::new(tonic::body::Body::empty()))
                            .await
                            .unwrap();
                        assert_eq!(code(&response), Code::Ok);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        let limit = window.limit();
        // One call answers in 1.3 ms, two at once in 2.3 ms, three in
        // 3.3 ms: past 1.5 × 1.3 + 0.5 ms.
        assert!((2..=4).contains(&limit), "the window stayed at {limit}");
        assert!(
            peak.load(Ordering::SeqCst) <= 16,
            "the initial window bounds the start"
        );
        assert!(answered.load(Ordering::SeqCst) > 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_service_opens_the_window_and_a_deadline_ends_the_wait() {
        // Answers that do not slow with load: the window grows past where
        // it started while callers keep it full.
        let (in_flight, peak) = (Arc::default(), Arc::new(AtomicU32::new(0)));
        let window = Arc::new(Window::new(64));
        let channel = Windowed::new(
            queueing(Duration::from_millis(1), Duration::ZERO, in_flight, peak),
            "catalog",
            Some(window.clone()),
        );
        let until = Instant::now() + Duration::from_secs(2);
        let callers: Vec<_> = (0..100)
            .map(|_| {
                let channel = channel.clone();
                tokio::spawn(async move {
                    while Instant::now() < until {
                        channel
                            .clone()
                            .oneshot(HttpRequest::new(tonic::body::Body::empty()))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        assert_eq!(window.limit(), 64);

        // A full window and a caller with 50 ms left: refused at its
        // deadline, as this BFF's refusal, naming the service.
        let window = Arc::new(Window::new(1));
        let slow = Windowed::new(
            queueing(
                Duration::from_secs(1),
                Duration::ZERO,
                Arc::default(),
                Arc::default(),
            ),
            "inventory",
            Some(window),
        );
        let holder = tokio::spawn(
            slow.clone()
                .oneshot(HttpRequest::new(tonic::body::Body::empty())),
        );
        tokio::task::yield_now().await;
        let context = CallContext {
            deadline: Some(tailor_interceptors::context::Deadline(
                std::time::Instant::now() + Duration::from_millis(50),
            )),
            ..CallContext::default()
        };
        let started = Instant::now();
        let response = context
            .scope(slow.oneshot(HttpRequest::new(tonic::body::Body::empty())))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("inventory"), "{status:?}");
        assert!(is_local_refusal(&response));
        assert_eq!(code(&holder.await.unwrap().unwrap()), Code::Ok);
    }
}

//! Load shedding at a BFF: once the server is handling as many calls as
//! its bound allows, a new call is refused at once instead of joining a
//! queue that only grows while the server is behind.
//!
//! The refusal is RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo`
//! detail, like every "too much, come back shortly" answer of Tailor
//! (rate limits, stream caps, downstream admission): clients that honour
//! RetryInfo wait before trying again, and no client library retries it
//! blindly as it may UNAVAILABLE, which would turn an overload into a
//! retry storm.
//!
//! A call counts from the moment it reaches this layer until its handler
//! has answered (the response head); a server stream's later messages do
//! not count, they are bounded per caller by `crate::streams`. Health and
//! reflection are never shed: probes must see the truth. The layer stands
//! below the access log, so every shed call is counted in the metrics
//! (`tailor.overload.refusals`, reason `shed`) and summarised in the log.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::access_log::CallNotes;
use crate::{BoxFuture, HttpRequest, HttpResponse, is_probe, status_response};

/// The bound on a BFF's calls in flight unless configured otherwise:
/// on two cores a product page takes a few milliseconds of work, so 256
/// calls at once is already well past what answers within a deadline.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// How long a shed client is told to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The reason shed calls are counted and summarised under.
pub const REASON: &str = "shed";

/// Adds [`ShedService`] to a stack; every clone shares one count, so
/// build one per server.
#[derive(Debug, Clone)]
pub struct ShedLayer {
    server: &'static str,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
}

impl ShedLayer {
    /// Sheds calls to `server` beyond `max_in_flight` at once.
    pub fn new(server: &'static str, max_in_flight: usize) -> Self {
        Self {
            server,
            max_in_flight,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The calls counted in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = ShedService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ShedService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ShedService<S> {
    inner: S,
    layer: ShedLayer,
}

/// One call in flight, however its handling ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> Service<HttpRequest> for ShedService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        if is_probe(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let max = self.layer.max_in_flight;
        let admitted = self
            .layer
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            if let Some(notes) = request.extensions().get::<CallNotes>() {
                notes.record_overload(REASON);
            }
            let status = Status::with_error_details(
                Code::ResourceExhausted,
                format!("{} is busy; retry shortly", self.layer.server),
                ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
            );
            let response = status_response(status);
            return Box::pin(async move { Ok(response) });
        }
        let in_flight = InFlight(self.layer.in_flight.clone());
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(in_flight);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_types::StatusExt;
    use tower::ServiceExt;

    use super::*;
    use crate::testing::slow;

    fn request(path: &str) -> HttpRequest {
        let mut request = http::Request::builder()
            .uri(path)
            .body(tonic::body::Body::empty())
            .unwrap();
        request.extensions_mut().insert(CallNotes::default());
        request
    }

    fn status(response: &HttpResponse) -> Status {
        Status::from_header_map(response.headers()).expect("a trailers-only status")
    }

    #[tokio::test]
    async fn calls_beyond_the_bound_are_refused_with_retry_info_and_probes_pass() {
        let release = Arc::new(tokio::sync::Notify::new());
        let layer = ShedLayer::new("web-bff", 2);
        let service = layer.layer(slow(release.clone()));
        let held: Vec<_> = (0..2)
            .map(|_| tokio::spawn(service.clone().oneshot(request("/a.B/C"))))
            .collect();
        while layer.in_flight() < 2 {
            tokio::task::yield_now().await;
        }
        let refused_request = request("/a.B/C");
        let notes = refused_request
            .extensions()
            .get::<CallNotes>()
            .unwrap()
            .clone();
        let refused = service.clone().oneshot(refused_request).await.unwrap();
        let refused = status(&refused);
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(
            refused.get_details_retry_info().unwrap().retry_delay,
            Some(RETRY_AFTER)
        );
        assert_eq!(notes.overload(), Some(REASON));
        // Health is answered by the (slow) handler rather than refused.
        let health = tokio::spawn(
            service
                .clone()
                .oneshot(request("/grpc.health.v1.Health/Check")),
        );
        release.notify_waiters();
        for call in held {
            assert_eq!(status(&call.await.unwrap().unwrap()).code(), Code::Ok);
        }
        tokio::time::timeout(Duration::from_secs(5), async {
            while !health.is_finished() {
                release.notify_waiters();
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(status(&health.await.unwrap().unwrap()).code(), Code::Ok);
        assert_eq!(layer.in_flight(), 0, "finished calls leave the count");
        // With room again, a call is admitted.
        let again = tokio::spawn(service.oneshot(request("/a.B/C")));
        tokio::time::timeout(Duration::from_secs(5), async {
            while !again.is_finished() {
                release.notify_waiters();
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(status(&again.await.unwrap().unwrap()).code(), Code::Ok);
    }

    #[tokio::test]
    async fn an_abandoned_call_leaves_the_count() {
        let release = Arc::new(tokio::sync::Notify::new());
        let layer = ShedLayer::new("web-bff", 1);
        let service = layer.layer(slow(release));
        let call = tokio::spawn(service.clone().oneshot(request("/a.B/C")));
        while layer.in_flight() < 1 {
            tokio::task::yield_now().await;
        }
        call.abort();
        let _ = call.await;
        assert_eq!(layer.in_flight(), 0);
    }
}

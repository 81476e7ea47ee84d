//! A bulkhead per downstream service: at most so many calls in flight to
//! it at once. When one service slows down, calls to it pile up; without a
//! bound they would hold the BFF's memory and tasks until every screen,
//! including those that never touch that service, suffers. Beyond the
//! bound a call is refused at once with UNAVAILABLE naming the service
//! (a local refusal: not a failure of the service, not retried), instead
//! of queueing behind the others.
//!
//! A call holds its place until the head of its answer arrives: for a
//! unary call that is when the service has answered; a stream (an order
//! being watched) gives its place back once it has started, so long
//! watches do not take the places of short reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tailor_interceptors::{HttpRequest, HttpResponse};
use tokio::sync::Semaphore;
use tower::Service;

use crate::breaker::local_refusal;
use crate::metrics::DownstreamMetrics;

/// A downstream channel with a bound on its calls in flight.
#[derive(Debug, Clone)]
pub struct Bulkhead<S> {
    inner: S,
    service: &'static str,
    places: Arc<Semaphore>,
    metrics: Option<Arc<DownstreamMetrics>>,
}

impl<S> Bulkhead<S> {
    /// Lets at most `max_in_flight` calls to `service` through `inner` at
    /// once.
    pub fn new(inner: S, service: &'static str, max_in_flight: usize) -> Self {
        Self {
            inner,
            service,
            places: Arc::new(Semaphore::new(max_in_flight)),
            metrics: None,
        }
    }

    /// Counts refusals in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<DownstreamMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl<S> Service<HttpRequest> for Bulkhead<S>
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
        let Ok(place) = self.places.clone().try_acquire_owned() else {
            if let Some(metrics) = &self.metrics {
                metrics.refused(request.uri().path(), "max_in_flight");
            }
            let service = self.service;
            return Box::pin(async move { Ok(local_refusal(service, "too many calls in flight")) });
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let outcome = response.await;
            drop(place);
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tonic::{Code, Status};
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_bound_are_refused_at_once_not_queued() {
        let reached = Arc::new(AtomicU32::new(0));
        let slow = {
            let reached = reached.clone();
            tower::service_fn(move |_: HttpRequest| {
                reached.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok::<_, std::convert::Infallible>(HttpResponse::new(tonic::body::Body::empty()))
                }
            })
        };
        let channel = Bulkhead::new(slow, "inventory", 2);
        let call = || {
            let channel = channel.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let response = channel
                    .oneshot(HttpRequest::new(tonic::body::Body::empty()))
                    .await
                    .unwrap();
                let status = Status::from_header_map(response.headers());
                (
                    status.map(|s| (s.code(), s.message().to_owned())),
                    started.elapsed(),
                )
            })
        };
        let first = call();
        let second = call();
        tokio::task::yield_now().await;
        let (refused, waited) = call().await.unwrap();
        let (code, message) = refused.expect("the third call was refused");
        assert_eq!(code, Code::Unavailable);
        assert!(message.contains("inventory"), "{message}");
        assert!(
            waited < Duration::from_millis(100),
            "refused at once, not after {waited:?}"
        );
        for call in [first, second] {
            let (status, took) = call.await.unwrap();
            assert!(status.is_none(), "the first two were served: {status:?}");
            assert!(took >= Duration::from_secs(1));
        }
        assert_eq!(reached.load(Ordering::SeqCst), 2);
        // Their places are free again.
        let (status, _) = call().await.unwrap();
        assert!(status.is_none());
    }
}

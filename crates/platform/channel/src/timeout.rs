//! A bound on each attempt of a unary downstream call. The caller's
//! deadline already bounds the whole call, but a call without one (or with
//! a generous one) could wait for ever on a service that hangs; and a
//! retry can only help if the attempt before it gave up in time.
//!
//! The attempt's bound goes out as `grpc-timeout` (`Outbound`, below, sends
//! the smaller of it and what is left of the caller's deadline), so the
//! service stops working on an attempt nobody waits for. When the bound is
//! the one that ends the attempt, the attempt reads as the service being
//! unavailable (a failure for the circuit, a transient one for retries),
//! not as the caller's deadline passing; when the caller's deadline is the
//! smaller, the answer is left as it comes (DEADLINE_EXCEEDED). Streams
//! (an order being watched) are not bounded: they are meant to last.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tailor_interceptors::context::CallContext;
use tailor_interceptors::deadline::{GRPC_TIMEOUT_HEADER, format_grpc_timeout, parse_grpc_timeout};
use tailor_interceptors::{HttpRequest, HttpResponse, status_response};
use tonic::{Code, Status};
use tower::Service;

/// A downstream channel that bounds every attempt of a unary call.
#[derive(Debug, Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    service: &'static str,
    timeout: Duration,
    streaming: Arc<HashSet<String>>,
}

impl<S> AttemptTimeout<S> {
    /// Bounds each attempt of the calls to `service` through `inner` by
    /// `timeout`, except calls to the `streaming` methods.
    pub fn new(
        inner: S,
        service: &'static str,
        timeout: Duration,
        streaming: Arc<HashSet<String>>,
    ) -> Self {
        Self {
            inner,
            service,
            timeout,
            streaming,
        }
    }
}

fn timed_out(service: &'static str) -> HttpResponse {
    status_response(Status::unavailable(format!(
        "{service} did not answer in time"
    )))
}

impl<S> Service<HttpRequest> for AttemptTimeout<S>
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

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        if self.streaming.contains(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let own = request
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let bound = own.map_or(self.timeout, |own| own.min(self.timeout));
        let remaining = CallContext::current_deadline().map(|d| d.remaining());
        // Whether this bound, not the caller's deadline, ends the attempt.
        let binding = remaining.is_none_or(|remaining| bound < remaining);
        if let Ok(value) = HeaderValue::from_str(&format_grpc_timeout(bound)) {
            request.headers_mut().insert(GRPC_TIMEOUT_HEADER, value);
        }
        let service = self.service;
        let response = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(bound, response).await {
                Err(_elapsed) if binding => Ok(timed_out(service)),
                Err(_elapsed) => Ok(status_response(Status::deadline_exceeded(
                    "deadline exceeded",
                ))),
                // The service (or the channel's own timer) gave up on the
                // bound it was told: this attempt timed out.
                Ok(Ok(response))
                    if binding
                        && Status::from_header_map(response.headers()).is_some_and(|s| {
                            matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled)
                        }) =>
                {
                    Ok(timed_out(service))
                }
                Ok(outcome) => outcome,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailor_interceptors::context::Deadline;
    use tower::ServiceExt;

    fn hanging()
    -> impl Service<
        HttpRequest,
        Response = HttpResponse,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone {
        tower::service_fn(|request: HttpRequest| {
            let told = request
                .headers()
                .get(GRPC_TIMEOUT_HEADER)
                .map(|v| v.to_str().unwrap().to_owned());
            async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                let _ = told;
                Ok(HttpResponse::new(tonic::body::Body::empty()))
            }
        })
    }

    async fn code(
        channel: AttemptTimeout<
            impl Service<
                HttpRequest,
                Response = HttpResponse,
                Error = std::convert::Infallible,
                Future: Send + 'static,
            >,
        >,
        path: &str,
    ) -> (Code, String) {
        let mut request = HttpRequest::new(tonic::body::Body::empty());
        *request.uri_mut() = path.parse().unwrap();
        let response = channel.oneshot(request).await.unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        (status.code(), status.message().to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_ends_as_unavailable_when_its_own_bound_is_the_smaller() {
        let channel = AttemptTimeout::new(
            hanging(),
            "catalog",
            Duration::from_millis(300),
            Arc::default(),
        );
        let started = tokio::time::Instant::now();
        let (code_, message) = code(channel.clone(), "/c.v1.C/Get").await;
        assert_eq!(code_, Code::Unavailable);
        assert!(message.contains("catalog"), "{message}");
        assert_eq!(started.elapsed(), Duration::from_millis(300));

        // A caller with 100 ms left: its deadline is the smaller, and it is
        // the deadline that passed.
        let context = CallContext {
            deadline: Some(Deadline(
                std::time::Instant::now() + Duration::from_millis(100),
            )),
            ..Default::default()
        };
        let (code_, _) = context.scope(code(channel, "/c.v1.C/Get")).await;
        assert_eq!(code_, Code::DeadlineExceeded);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bound_goes_out_as_grpc_timeout_and_streams_are_not_bounded() {
        let told = Arc::new(std::sync::Mutex::new(None));
        let seen = told.clone();
        let answering = tower::service_fn(move |request: HttpRequest| {
            *seen.lock().unwrap() = request
                .headers()
                .get(GRPC_TIMEOUT_HEADER)
                .map(|v| v.to_str().unwrap().to_owned());
            async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok::<_, std::convert::Infallible>(HttpResponse::new(tonic::body::Body::empty()))
            }
        });
        let streaming = Arc::new(HashSet::from(["/c.v1.C/Watch".to_owned()]));
        let channel = AttemptTimeout::new(answering, "catalog", Duration::from_secs(1), streaming);
        let mut request = HttpRequest::new(tonic::body::Body::empty());
        *request.uri_mut() = "/c.v1.C/Watch".parse().unwrap();
        let response = channel.clone().oneshot(request).await.unwrap();
        assert!(
            Status::from_header_map(response.headers()).is_none(),
            "the stream was not cut"
        );
        assert_eq!(*told.lock().unwrap(), None);

        let (code_, _) = code(channel, "/c.v1.C/Get").await;
        assert_eq!(code_, Code::Unavailable);
        let told = told.lock().unwrap().clone().unwrap();
        assert_eq!(parse_grpc_timeout(&told), Some(Duration::from_secs(1)));
    }
}

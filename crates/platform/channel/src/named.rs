//! The one place that decides what a BFF's client may read of a failed
//! downstream call. The channel knows which service it leads to, so the
//! mapping happens once, on every answer, instead of at each call site.
//! It also times every call and counts it by the status the service
//! answered, for the BFF's downstream metrics.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tailor_interceptors::context::CallContext;
use tailor_interceptors::{HttpRequest, HttpResponse, status_response};
use tonic::{Code, Status};
use tower::Service;

use crate::metrics::{CallTimer, DownstreamMetrics};

/// Maps the status of a failed call to `service` to what the BFF's client
/// sees. Statuses about the request itself (not found, invalid, failed
/// precondition, exhausted, deadline) pass through with their message,
/// which downstream services word for clients; statuses about the
/// downstream's health become UNAVAILABLE naming the service, never its
/// address or its error text (which go to the log).
pub fn name_failure(service: &'static str, status: Status) -> Status {
    match status.code() {
        Code::Ok
        | Code::NotFound
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::Aborted => status,
        Code::DeadlineExceeded => Status::deadline_exceeded("deadline exceeded"),
        Code::Cancelled => Status::cancelled("cancelled"),
        code => {
            let request_id = CallContext::current()
                .and_then(|c| c.request_id)
                .unwrap_or_default();
            tracing::warn!(%request_id, service, ?code, message = status.message(), "downstream call failed");
            Status::unavailable(format!("{service} is unavailable"))
        }
    }
}

/// Rewrites a status carried in `headers` (a trailers-only answer's
/// headers, or trailers) when it must not reach the client as it is.
fn rename(service: &'static str, headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let code = status.code();
    let message = status.message().to_owned();
    let named = name_failure(service, status);
    // An UNAVAILABLE keeps its code but not its text, which may name an
    // address or a transport error.
    if named.code() != code
        || named.message() != message
        || matches!(code, Code::DeadlineExceeded | Code::Cancelled)
    {
        headers.remove("grpc-status-details-bin");
        let _ = named.add_header(headers);
    }
}

/// A downstream channel that names its service in the failures it returns;
/// transport errors (refused connections, resets) become statuses too, so
/// the generated clients above it only ever see statuses.
#[derive(Debug, Clone)]
pub struct NamedChannel<S> {
    service: &'static str,
    inner: S,
    metrics: Option<Arc<DownstreamMetrics>>,
}

impl<S> NamedChannel<S> {
    /// Wraps the channel `inner` to `service`.
    pub fn new(service: &'static str, inner: S) -> Self {
        Self {
            service,
            inner,
            metrics: None,
        }
    }

    /// Times and counts every call in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<DownstreamMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The service this channel leads to.
    pub fn service(&self) -> &'static str {
        self.service
    }
}

impl<S> Service<HttpRequest> for NamedChannel<S>
where
    S: Service<HttpRequest, Response = HttpResponse>,
    S::Error: Into<tonic::codegen::StdError>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A channel that cannot become ready fails the call itself, below.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let service = self.service;
        let timer = self
            .metrics
            .clone()
            .map(|metrics| CallTimer::start(metrics, request.uri().path()));
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(mut response) => {
                    // A trailers-only answer ends the call here.
                    let timer = match (timer, Status::from_header_map(response.headers())) {
                        (Some(timer), Some(status)) => {
                            timer.end(status.code());
                            None
                        }
                        (timer, _) => timer,
                    };
                    if crate::breaker::is_local_refusal(&response) {
                        // Refused here (circuit open, bulkhead full): the
                        // circuit logs its changes, not every refusal.
                        let named = Status::unavailable(format!("{service} is unavailable"));
                        response.headers_mut().remove("grpc-status-details-bin");
                        let _ = named.add_header(response.headers_mut());
                    } else {
                        rename(service, response.headers_mut());
                    }
                    Ok(response.map(|inner| {
                        tonic::body::Body::new(NamedBody {
                            inner,
                            service,
                            timer,
                        })
                    }))
                }
                Err(error) => {
                    let status = Status::from_error(error.into());
                    if let Some(timer) = timer {
                        // No answer came: the service is not reachable.
                        timer.end(match status.code() {
                            Code::Unknown => Code::Unavailable,
                            code => code,
                        });
                    }
                    Ok(status_response(name_failure(service, status)))
                }
            }
        })
    }
}

pin_project_lite::pin_project! {
    struct NamedBody {
        #[pin]
        inner: tonic::body::Body,
        service: &'static str,
        timer: Option<CallTimer>,
    }
}

impl Body for NamedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let service = *this.service;
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        let ended = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| Status::from_header_map(trailers).map_or(Code::Ok, |s| s.code())),
            Some(Err(status)) => Some(status.code()),
            None => Some(Code::Unknown),
        };
        if let Some(code) = ended
            && let Some(timer) = this.timer.take()
        {
            timer.end(code);
        }
        Poll::Ready(frame.map(|frame| match frame {
            Ok(frame) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    rename(service, &mut trailers);
                    Ok(Frame::trailers(trailers))
                }
                Err(frame) => Ok(frame),
            },
            Err(status) => Err(name_failure(service, status)),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_service_not_the_address() {
        let status = name_failure(
            "reviews",
            Status::unknown("transport error: tcp connect 10.0.0.7:50053 refused"),
        );
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "reviews is unavailable");
        let kept = name_failure("catalog", Status::not_found("product prod-1 not found"));
        assert_eq!(kept.code(), Code::NotFound);
        assert_eq!(kept.message(), "product prod-1 not found");
    }

    #[tokio::test]
    async fn a_refused_connection_and_an_internal_trailer_both_read_as_unavailable() {
        let refused = tower::service_fn(|_: HttpRequest| async {
            Err::<HttpResponse, _>(std::io::Error::other("tcp connect 10.0.0.7:50053 refused"))
        });
        let mut channel = NamedChannel::new("reviews", refused);
        let response = channel
            .call(HttpRequest::new(tonic::body::Body::empty()))
            .await
            .unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "reviews is unavailable");

        let internal = tower::service_fn(|_: HttpRequest| async {
            Ok::<_, Infallible>(status_response(Status::internal("no such table: reviews")))
        });
        let response = NamedChannel::new("reviews", internal)
            .call(HttpRequest::new(tonic::body::Body::empty()))
            .await
            .unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("table"));

        let unavailable = tower::service_fn(|_: HttpRequest| async {
            Ok::<_, Infallible>(status_response(Status::unavailable(
                "tcp connect error 10.0.0.7:50053",
            )))
        });
        let response = NamedChannel::new("reviews", unavailable)
            .call(HttpRequest::new(tonic::body::Body::empty()))
            .await
            .unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "reviews is unavailable");

        let refused = tower::service_fn(|_: HttpRequest| async {
            Ok::<_, Infallible>(crate::breaker::local_refusal("reviews", "circuit open"))
        });
        let response = NamedChannel::new("reviews", refused)
            .call(HttpRequest::new(tonic::body::Body::empty()))
            .await
            .unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "reviews is unavailable");
    }
}

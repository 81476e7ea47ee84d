//! Error mapping: the one place that decides what a client may read in a
//! status. Handlers turn their own errors into statuses with [`internal`]
//! (failed downstream calls are named by `tailor_channel`);
//! [`ErrorMappingLayer`] is the safety net that scrubs
//! the message of any INTERNAL, UNKNOWN or DATA_LOSS status leaving the
//! server, so SQL, file paths and downstream addresses stay in the logs.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::access_log::CallNotes;
use crate::context::{CallContext, RequestId};
use crate::{HttpRequest, HttpResponse};

/// Logs `error` with the call's request id and returns the status a client
/// sees for it: INTERNAL with no detail but the request id to quote.
pub fn internal(error: impl Display) -> Status {
    let request_id = CallContext::current()
        .and_then(|c| c.request_id)
        .unwrap_or_default();
    tracing::error!(%request_id, error = %error, "internal error");
    Status::internal(public_message(&request_id))
}

fn public_message(request_id: &str) -> String {
    if request_id.is_empty() {
        "internal error".to_owned()
    } else {
        format!("internal error (request id {request_id})")
    }
}

fn needs_scrubbing(code: Code) -> bool {
    matches!(code, Code::Internal | Code::Unknown | Code::DataLoss)
}

/// Rewrites a status in `headers` (response headers of a trailers-only
/// answer, or trailers) when its message may leak internals, and notes it
/// as the call's final status.
fn scrub_and_note(headers: &mut HeaderMap, request_id: &str, notes: Option<&CallNotes>) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if let Some(notes) = notes {
        notes.record_status(status.code());
    }
    if !needs_scrubbing(status.code()) || status.message() == public_message(request_id) {
        return;
    }
    tracing::error!(%request_id, code = ?status.code(), message = status.message(), "scrubbed an error message");
    headers.remove("grpc-status-details-bin");
    let _ = Status::new(status.code(), public_message(request_id)).add_header(headers);
}

/// Adds [`ErrorMappingService`] to a stack.
#[derive(Debug, Clone, Default)]
pub struct ErrorMappingLayer;

impl<S> Layer<S> for ErrorMappingLayer {
    type Service = ErrorMappingService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ErrorMappingService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ErrorMappingService<S> {
    inner: S,
}

impl<S> Service<HttpRequest> for ErrorMappingService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        let notes = request.extensions().get::<CallNotes>().cloned();
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            scrub_and_note(response.headers_mut(), &request_id, notes.as_ref());
            Ok(response.map(|inner| {
                tonic::body::Body::new(ScrubbedBody {
                    inner,
                    request_id,
                    notes,
                })
            }))
        })
    }
}

pin_project_lite::pin_project! {
    struct ScrubbedBody {
        #[pin]
        inner: tonic::body::Body,
        request_id: String,
        notes: Option<CallNotes>,
    }
}

impl Body for ScrubbedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        Poll::Ready(frame.map(|frame| match frame {
            Ok(frame) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    scrub_and_note(&mut trailers, this.request_id, this.notes.as_ref());
                    Ok(Frame::trailers(trailers))
                }
                Err(frame) => Ok(frame),
            },
            Err(status) => {
                if let Some(notes) = this.notes.as_ref() {
                    notes.record_status(status.code());
                }
                if needs_scrubbing(status.code()) {
                    Err(Status::new(status.code(), public_message(this.request_id)))
                } else {
                    Err(status)
                }
            }
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
    fn scrubs_internal_messages_and_keeps_client_facing_ones() {
        let mut headers = HeaderMap::new();
        Status::internal("no such table: products at /var/lib/tailor/catalog.db")
            .add_header(&mut headers)
            .unwrap();
        scrub_and_note(&mut headers, "req-1", None);
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error (request id req-1)");

        let mut headers = HeaderMap::new();
        Status::not_found("product prod-9 not found")
            .add_header(&mut headers)
            .unwrap();
        scrub_and_note(&mut headers, "req-1", None);
        assert_eq!(
            Status::from_header_map(&headers).unwrap().message(),
            "product prod-9 not found"
        );
    }
}

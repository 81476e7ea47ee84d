//! Caps on the long-lived streams one caller may hold open at once (a
//! partner's catalogue feeds, a user's order watches). A stream costs its
//! server memory and a downstream call for as long as it is open; without
//! a cap one API key or one account could hold thousands.
//!
//! [`CappedStreams`] wraps a generated server: a call to the capped method
//! takes a slot of its caller ([`StreamCaps::open`]; the API key when the
//! caller used one, the user otherwise) before the handler runs, and the
//! slot travels with the response body, so it is freed when the body is
//! dropped: the stream ended or failed, or its client went away (a reset
//! HTTP/2 stream or a closed connection drops the body). A caller at its
//! cap gets RESOURCE_EXHAUSTED with RetryInfo, and the handler is not run.
//!
//! The table holds only callers with a stream open, so its size is bounded
//! by the open streams themselves, which the transport bounds per
//! connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::Service;

use crate::context::Identity;
use crate::{BoxFuture, HttpRequest, HttpResponse, status_response};

/// When a refused caller is told to try again: streams are long-lived, so
/// a slot frees when one of the caller's own streams ends.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How many streams of one kind each caller may hold open.
#[derive(Debug)]
pub struct StreamCaps {
    what: &'static str,
    per_caller: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl StreamCaps {
    /// Up to `per_caller` open streams of `what` (`catalogue feeds`) per
    /// caller.
    pub fn new(what: &'static str, per_caller: usize) -> Arc<Self> {
        Arc::new(Self {
            what,
            per_caller,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more stream of `caller` (an API key id, a user id),
    /// or RESOURCE_EXHAUSTED when the caller holds its cap already.
    pub fn open(self: &Arc<Self>, caller: &str) -> Result<StreamPermit, Status> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(caller.to_owned()).or_default();
        if *count >= self.per_caller {
            return Err(Status::with_error_details(
                Code::ResourceExhausted,
                format!(
                    "at most {} {} may be open at once for one caller; close one first",
                    self.per_caller, self.what
                ),
                ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
            ));
        }
        *count += 1;
        Ok(StreamPermit {
            caps: self.clone(),
            caller: caller.to_owned(),
        })
    }

    /// How many streams `caller` holds open.
    pub fn open_for(&self, caller: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(caller).copied().unwrap_or(0)
    }

    fn close(&self, caller: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(caller);
            }
        }
    }
}

/// One open stream's slot; freed when dropped.
#[derive(Debug)]
pub struct StreamPermit {
    caps: Arc<StreamCaps>,
    caller: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.caps.close(&self.caller);
    }
}

/// Wraps a generated server so that calls to one streaming method are
/// capped per caller; see the module docs.
#[derive(Debug, Clone)]
pub struct CappedStreams<S> {
    inner: S,
    method: &'static str,
    caps: Arc<StreamCaps>,
}

impl<S> CappedStreams<S> {
    /// Caps calls to `method` (a full path,
    /// `/tailor.partner.v1.PartnerService/StreamCatalogFeed`) with `caps`.
    pub fn new(inner: S, method: &'static str, caps: Arc<StreamCaps>) -> Self {
        Self {
            inner,
            method,
            caps,
        }
    }
}

impl<S: NamedService> NamedService for CappedStreams<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<HttpRequest> for CappedStreams<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        // The auth layer outside has established who calls; a method that
        // may be called anonymously is not capped per caller.
        let caller = (request.uri().path() == self.method)
            .then(|| request.extensions().get::<Identity>())
            .flatten()
            .map(|identity| {
                identity
                    .key_id
                    .as_ref()
                    .unwrap_or(&identity.subject)
                    .clone()
            });
        let Some(caller) = caller else {
            return Box::pin(self.inner.call(request));
        };
        let permit = match self.caps.open(&caller) {
            Ok(permit) => permit,
            Err(status) => return Box::pin(async move { Ok(status_response(status)) }),
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                tonic::body::Body::new(HeldBody {
                    inner: body,
                    _permit: permit,
                })
            }))
        })
    }
}

/// A response body holding its stream's slot until it is dropped.
struct HeldBody {
    inner: tonic::body::Body,
    _permit: StreamPermit,
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
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
    use tower::ServiceExt;

    use super::*;
    use crate::context::AuthMethod;

    const WATCH: &str = "/shop.v1.Shop/Watch";

    fn call(path: &str, subject: Option<&str>) -> HttpRequest {
        let mut request = http::Request::builder()
            .uri(path)
            .body(tonic::body::Body::empty())
            .unwrap();
        if let Some(subject) = subject {
            request.extensions_mut().insert(Identity {
                subject: subject.to_owned(),
                tenant: None,
                scopes: vec![],
                method: AuthMethod::Bearer,
                key_id: None,
                plan: None,
            });
        }
        request
    }

    fn refused(response: &HttpResponse) -> bool {
        response.headers().get("grpc-status").map(|v| v.as_bytes()) == Some(b"8")
    }

    #[tokio::test]
    async fn each_caller_holds_at_most_its_cap_until_a_stream_body_is_dropped() {
        let caps = StreamCaps::new("order watches", 2);
        // A handler answering with a stream that has not ended.
        let handler = tower::service_fn(|_: HttpRequest| async {
            let message = http_body_util::Full::new(Bytes::from_static(b"update"));
            Ok::<_, Infallible>(http::Response::new(tonic::body::Body::new(message)))
        });
        let service = CappedStreams::new(handler, WATCH, caps.clone());
        let open = |path: &'static str, subject: Option<&'static str>| {
            service.clone().oneshot(call(path, subject))
        };

        let first = open(WATCH, Some("ada")).await.unwrap();
        let second = open(WATCH, Some("ada")).await.unwrap();
        assert!(!refused(&first) && !refused(&second));
        let third = open(WATCH, Some("ada")).await.unwrap();
        assert!(refused(&third), "{third:?}");
        let status = Status::from_header_map(third.headers()).unwrap();
        assert!(status.message().contains("at most 2 order watches"));
        assert_eq!(
            status
                .get_error_details()
                .retry_info()
                .and_then(|r| r.retry_delay),
            Some(RETRY_AFTER)
        );
        // Other callers, other methods and anonymous calls are not held
        // to ada's cap.
        assert!(!refused(&open(WATCH, Some("bo")).await.unwrap()));
        assert!(!refused(
            &open("/shop.v1.Shop/List", Some("ada")).await.unwrap()
        ));
        assert!(!refused(&open(WATCH, None).await.unwrap()));

        // A stream whose body is dropped (ended, or its client left) frees
        // its slot.
        drop(first);
        assert_eq!(caps.open_for("ada"), 1);
        let again = open(WATCH, Some("ada")).await.unwrap();
        assert!(!refused(&again));
        drop((second, again));
        // Callers with nothing open leave nothing behind.
        assert!(caps.open.lock().unwrap().is_empty());
    }
}

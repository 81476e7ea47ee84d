//! Coalescing of identical reads. When many clients open the same product
//! page at once, a BFF would ask the catalog for the same product once per
//! client; here identical unary reads in flight at the same time (same
//! method, same request bytes, made for the same user) share one
//! downstream call, and its whole answer (headers, message, trailers) is
//! replayed to every caller waiting for it.
//!
//! Only reads (`NO_SIDE_EFFECTS` in the contracts) are coalesced, and never
//! streams. The user is part of what makes two reads identical: a service
//! may answer users differently, so one user never receives an answer made
//! for another. The shared call runs in the context (request id, deadline,
//! trace) of the caller that started it, and goes on while any caller
//! still waits for it; a caller joining it keeps its own deadline.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use tailor_interceptors::context::CallContext;
use tailor_interceptors::{HttpRequest, HttpResponse, status_response};
use tonic::Status;
use tower::Service;

/// What makes two reads the same: method, request bytes, user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    path: String,
    body: Bytes,
    user: Option<String>,
}

/// A whole answer, kept to be replayed.
#[derive(Debug)]
struct Answer {
    status: http::StatusCode,
    version: http::Version,
    headers: HeaderMap,
    message: Bytes,
    trailers: Option<HeaderMap>,
}

impl Answer {
    async fn read(response: HttpResponse) -> Result<Self, Status> {
        let (parts, body) = response.into_parts();
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        Ok(Self {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            message: collected.to_bytes(),
            trailers,
        })
    }

    fn replay(&self) -> HttpResponse {
        let body = Full::new(self.message.clone()).map_err(|never| match never {});
        let body = match &self.trailers {
            Some(trailers) => tonic::body::Body::new(body.with_trailers({
                let trailers = trailers.clone();
                async move { Some(Ok(trailers)) }
            })),
            None => tonic::body::Body::new(body),
        };
        let mut response = HttpResponse::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// The outcome of a shared call: its answer, or a status for everyone
/// (the call failed to connect, its body broke).
type Outcome = Result<Arc<Answer>, Status>;

type InFlight = Arc<Mutex<HashMap<Key, WeakShared<BoxFuture<'static, Outcome>>>>>;

/// A downstream channel that lets identical concurrent reads share one
/// call.
#[derive(Clone)]
pub struct Coalesce<S> {
    inner: S,
    reads: Arc<HashSet<String>>,
    streaming: Arc<HashSet<String>>,
    in_flight: InFlight,
    enabled: bool,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Coalesce<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesce")
            .field("inner", &self.inner)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl<S> Coalesce<S> {
    /// Coalesces the unary calls of `inner` to `reads` (those not in
    /// `streaming`) when `enabled`.
    pub fn new(
        inner: S,
        reads: Arc<HashSet<String>>,
        streaming: Arc<HashSet<String>>,
        enabled: bool,
    ) -> Self {
        Self {
            inner,
            reads,
            streaming,
            in_flight: Arc::default(),
            enabled,
        }
    }
}

/// Who a call is made for, as the downstream service will read it.
fn user_of(context: Option<&CallContext>) -> Option<String> {
    let identity = context?.identity.as_ref()?;
    Some(format!(
        "{}\u{0}{}\u{0}{}\u{0}{}",
        identity.subject,
        identity.tenant.as_deref().unwrap_or_default(),
        identity.scopes.join(" "),
        identity.key_id.as_deref().unwrap_or_default(),
    ))
}

impl<S> Service<HttpRequest> for Coalesce<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let path = request.uri().path();
        if !self.enabled || !self.reads.contains(path) || self.streaming.contains(path) {
            return Box::pin(self.inner.call(request));
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let in_flight = self.in_flight.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(status) => return Ok(status_response(status)),
            };
            let context = CallContext::current();
            let key = Key {
                path: parts.uri.path().to_owned(),
                body: body.clone(),
                user: user_of(context.as_ref()),
            };
            let shared = {
                let mut calls = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                match calls.get(&key).and_then(WeakShared::upgrade) {
                    Some(shared) => shared,
                    None => {
                        let request =
                            HttpRequest::from_parts(parts, tonic::body::Body::new(Full::new(body)));
                        let shared = shared_call(inner, request, context, key.clone(), &in_flight);
                        if let Some(weak) = shared.downgrade() {
                            calls.insert(key, weak);
                        }
                        shared
                    }
                }
            };
            let deadline =
                CallContext::current_deadline().map(|d| tokio::time::Instant::from_std(d.0));
            let outcome = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, shared).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Status::deadline_exceeded("deadline exceeded")),
                },
                None => shared.await,
            };
            Ok(match outcome {
                Ok(answer) => answer.replay(),
                Err(status) => status_response(status),
            })
        })
    }
}

/// Starts the one call every identical read waits for; it forgets its key
/// when it ends.
fn shared_call<S>(
    mut inner: S,
    request: HttpRequest,
    context: Option<CallContext>,
    key: Key,
    in_flight: &InFlight,
) -> Shared<BoxFuture<'static, Outcome>>
where
    S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    let in_flight = in_flight.clone();
    // `inner` was made ready by the caller's `poll_ready`; calling it here
    // keeps the caller's context for the layers below that read it now.
    let response = inner.call(request);
    let call = async move {
        let outcome = match response.await {
            Ok(response) => Answer::read(response).await.map(Arc::new),
            Err(error) => Err(Status::from_error(error.into())),
        };
        in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        outcome
    };
    // Whoever polls the shared call, it runs in its starter's context.
    let call: BoxFuture<'static, Outcome> = match context {
        Some(context) => context.scope(call).boxed(),
        None => call.boxed(),
    };
    call.shared()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tailor_interceptors::context::Identity;
    use tower::ServiceExt;

    const GET: &str = "/shop.v1.Shop/Get";
    const PUT: &str = "/shop.v1.Shop/Put";

    /// A fake service that answers after 100 ms with a message and
    /// trailers, echoing the request bytes; counts its calls.
    fn echo(
        calls: Arc<AtomicU32>,
    ) -> impl Service<
        HttpRequest,
        Response = HttpResponse,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone {
        tower::service_fn(move |request: HttpRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                trailers.insert("x-answer", "42".parse().unwrap());
                let body = Full::new(body)
                    .map_err(|never| match never {})
                    .with_trailers(async move { Some(Ok(trailers)) });
                let mut response = HttpResponse::new(tonic::body::Body::new(body));
                response
                    .headers_mut()
                    .insert("content-type", "application/grpc".parse().unwrap());
                Ok(response)
            }
        })
    }

    fn channel(
        calls: Arc<AtomicU32>,
    ) -> Coalesce<
        impl Service<
            HttpRequest,
            Response = HttpResponse,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
    > {
        let reads = Arc::new(HashSet::from([GET.to_owned()]));
        Coalesce::new(echo(calls), reads, Arc::default(), true)
    }

    fn user(subject: &str) -> CallContext {
        CallContext {
            identity: Some(Identity {
                subject: subject.into(),
                tenant: None,
                scopes: vec![],
                method: tailor_interceptors::context::AuthMethod::Bearer,
                key_id: None,
                plan: None,
            }),
            ..Default::default()
        }
    }

    /// Calls `path` with `body` as `context`'s user; the answer's message
    /// and `x-answer` trailer.
    async fn call(
        channel: Coalesce<
            impl Service<
                HttpRequest,
                Response = HttpResponse,
                Error = std::convert::Infallible,
                Future: Send + 'static,
            > + Clone
            + Send
            + 'static,
        >,
        context: CallContext,
        path: &'static str,
        body: &'static str,
    ) -> (Bytes, Option<String>) {
        context
            .scope(async move {
                let mut request = HttpRequest::new(tonic::body::Body::new(body.to_owned()));
                *request.uri_mut() = path.parse().unwrap();
                let response = channel.oneshot(request).await.unwrap();
                let collected = response.into_body().collect().await.unwrap();
                let trailer = collected
                    .trailers()
                    .and_then(|t| t.get("x-answer"))
                    .map(|v| v.to_str().unwrap().to_owned());
                (collected.to_bytes(), trailer)
            })
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn identical_concurrent_reads_share_one_call_and_each_gets_the_whole_answer() {
        let calls = Arc::new(AtomicU32::new(0));
        let channel = channel(calls.clone());
        let answers = futures_util::future::join_all(
            (0..5).map(|_| call(channel.clone(), user("ada"), GET, "prod-1")),
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one downstream call");
        for (message, trailer) in answers {
            assert_eq!(message, Bytes::from_static(b"prod-1"));
            assert_eq!(trailer.as_deref(), Some("42"), "trailers replayed");
        }
        // Once answered, the next read is a call of its own.
        call(channel.clone(), user("ada"), GET, "prod-1").await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn other_users_other_requests_and_writes_are_not_shared() {
        let calls = Arc::new(AtomicU32::new(0));
        let channel = channel(calls.clone());
        let answers = futures_util::join!(
            call(channel.clone(), user("ada"), GET, "prod-1"),
            call(channel.clone(), user("bob"), GET, "prod-1"),
            call(channel.clone(), user("ada"), GET, "prod-2"),
            call(channel.clone(), user("ada"), PUT, "prod-1"),
            call(channel.clone(), user("ada"), PUT, "prod-1"),
        );
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(answers.2.0, Bytes::from_static(b"prod-2"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_shared_call_goes_on_when_the_caller_that_started_it_gives_up() {
        let calls = Arc::new(AtomicU32::new(0));
        let channel = channel(calls.clone());
        let starter = tokio::spawn(call(channel.clone(), user("ada"), GET, "prod-1"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let joiner = tokio::spawn(call(channel.clone(), user("ada"), GET, "prod-1"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        starter.abort();
        let (message, _) = joiner.await.unwrap();
        assert_eq!(message, Bytes::from_static(b"prod-1"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

//! Context propagation, the way out: [`Outbound`] writes the current
//! call's request id, remaining deadline and caller (as an identity token
//! this BFF signs for the downstream service) into every downstream
//! request, and ends the call with DEADLINE_EXCEEDED when the caller's
//! deadline passes.
//!
//! Each downstream call (each attempt, when reads are retried) is a client
//! span, a child of the call's server span ([`CallContext::trace`]), named
//! `<package.Service>/<Method>` like the server span it leads to; its
//! context goes out as `traceparent`/`tracestate` (and the caller's
//! `baggage`), so the downstream service continues the same trace. Calls
//! made at once (`tokio::join!`) are sibling spans overlapping in time. The
//! span ends with the call's last frame, marked an error unless OK.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;
use tailor_interceptors::context::CallContext;
use tailor_interceptors::deadline::{GRPC_TIMEOUT_HEADER, format_grpc_timeout, parse_grpc_timeout};
use tailor_interceptors::request_id::REQUEST_ID_HEADER;
use tailor_interceptors::trace;
use tailor_interceptors::{HttpRequest, HttpResponse, status_response};
use tailor_trust::{IDENTITY_HEADER, IdentitySigner};
use tonic::Status;
use tower::Service;

/// Wraps a downstream channel so every call made through it carries the
/// current [`CallContext`] and ends with DEADLINE_EXCEEDED when the
/// caller's deadline passes (dropping the downstream call, which cancels
/// it on the downstream server too).
#[derive(Clone)]
pub struct Outbound<S> {
    inner: S,
    service: &'static str,
    signer: Arc<IdentitySigner>,
    tracer: Arc<opentelemetry::global::BoxedTracer>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Outbound<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("inner", &self.inner)
            .field("service", &self.service)
            .finish()
    }
}

impl<S> Outbound<S> {
    /// Wraps `inner`, a channel to the downstream `service` (`orders`);
    /// `signer` signs the caller's identity for it. Its spans go to the
    /// process's tracer as installed now.
    pub fn new(inner: S, service: &'static str, signer: Arc<IdentitySigner>) -> Self {
        Self {
            inner,
            service,
            signer,
            tracer: trace::tracer(),
        }
    }
}

fn set(request: &mut HttpRequest, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        request.headers_mut().insert(name, value);
    }
}

impl<S> Service<HttpRequest> for Outbound<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
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
        let context = CallContext::current().unwrap_or_default();
        if let Some(id) = &context.request_id {
            set(&mut request, REQUEST_ID_HEADER, id);
        }
        if let Some(identity) = &context.identity {
            match self.signer.token(self.service, identity) {
                Ok(token) => set(&mut request, IDENTITY_HEADER, &token),
                Err(status) => return Box::pin(async { Ok(status_response(status)) }),
            }
        }
        let span = trace::client_span(
            &self.tracer,
            request.uri().path(),
            self.service,
            &context.trace,
        );
        trace::inject(&span, request.headers_mut());
        let Some(deadline) = context.deadline else {
            let response = self.inner.call(request);
            return Box::pin(async move { trace::finish(span, response.await) });
        };
        let remaining = deadline.remaining();
        if remaining.is_zero() {
            let expired = status_response(expired_downstream());
            return Box::pin(async move { trace::finish(span, Ok(expired)) });
        }
        // A per-call timeout set by the handler may be shorter still.
        let own = request
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let budget = own.map_or(remaining, |own| own.min(remaining));
        set(
            &mut request,
            GRPC_TIMEOUT_HEADER,
            &format_grpc_timeout(budget),
        );
        let response = self.inner.call(request);
        Box::pin(async move {
            let deadline = tokio::time::Instant::from_std(deadline.0);
            let result = match tokio::time::timeout_at(deadline, response).await {
                // The channel's own timer (it honours `grpc-timeout` too) may
                // fire first and call the expiry CANCELLED; it is the deadline.
                Ok(Err(_)) if tokio::time::Instant::now() >= deadline => {
                    Ok(status_response(expired_downstream()))
                }
                Ok(result) => result,
                Err(_elapsed) => Ok(status_response(expired_downstream())),
            };
            trace::finish(span, result)
        })
    }
}

fn expired_downstream() -> Status {
    Status::deadline_exceeded("deadline exceeded")
}

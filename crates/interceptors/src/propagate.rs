//! Context propagation: what a call carries on to the downstream calls made
//! for it. On the way in, [`ContextLayer`] gathers the request id, deadline
//! and identity into a [`CallContext`] for the handler's task; on the way
//! out, [`Outbound`] (wrapped around every downstream channel) writes them
//! into the downstream request: `x-request-id`, the remaining time as
//! `grpc-timeout`, the caller as `x-tailor-subject`/`x-tailor-tenant`, and
//! the calling BFF as `x-tailor-client`. A handler never copies metadata by
//! hand.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use tonic::Status;
use tower::{Layer, Service};

use crate::context::{CallContext, Deadline, Identity, RequestId};
use crate::deadline::{GRPC_TIMEOUT_HEADER, format_grpc_timeout, parse_grpc_timeout};
use crate::request_id::REQUEST_ID_HEADER;
use crate::{HttpRequest, HttpResponse, status_response};

/// The subject a BFF calls on behalf of.
pub const SUBJECT_HEADER: &str = "x-tailor-subject";
/// The partner tenant a BFF calls on behalf of.
pub const TENANT_HEADER: &str = "x-tailor-tenant";
/// The name of the BFF making a downstream call.
pub const CLIENT_HEADER: &str = "x-tailor-client";

/// Adds [`ContextService`] to a stack; it must sit inside the request id,
/// deadline and auth layers so their extensions are there to gather.
#[derive(Debug, Clone, Default)]
pub struct ContextLayer;

impl<S> Layer<S> for ContextLayer {
    type Service = ContextService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ContextService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ContextService<S> {
    inner: S,
}

fn header(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl<S> Service<HttpRequest> for ContextService<S>
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
        let extensions = request.extensions();
        let context = CallContext {
            request_id: extensions.get::<RequestId>().map(|id| id.0.clone()),
            deadline: extensions.get::<Deadline>().copied(),
            identity: extensions.get::<Identity>().cloned(),
            on_behalf_of: header(&request, SUBJECT_HEADER),
            calling_client: header(&request, CLIENT_HEADER),
        };
        let response = self.inner.call(request);
        Box::pin(context.scope(response))
    }
}

/// Wraps a downstream channel so every call made through it carries the
/// current [`CallContext`] and ends with DEADLINE_EXCEEDED when the
/// caller's deadline passes (dropping the downstream call, which cancels
/// it on the downstream server too).
#[derive(Debug, Clone)]
pub struct Outbound<S> {
    inner: S,
    client: &'static str,
}

impl<S> Outbound<S> {
    /// Wraps `inner`; `client` names the calling server (`web-bff`).
    pub fn new(inner: S, client: &'static str) -> Self {
        Self { inner, client }
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
        set(&mut request, CLIENT_HEADER, self.client);
        if let Some(id) = &context.request_id {
            set(&mut request, REQUEST_ID_HEADER, id);
        }
        if let Some(identity) = &context.identity {
            set(&mut request, SUBJECT_HEADER, &identity.subject);
            if let Some(tenant) = &identity.tenant {
                set(&mut request, TENANT_HEADER, tenant);
            }
        }
        let Some(deadline) = context.deadline else {
            return Box::pin(self.inner.call(request));
        };
        let remaining = deadline.remaining();
        if remaining.is_zero() {
            return Box::pin(async { Ok(status_response(expired_downstream())) });
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
            match tokio::time::timeout_at(deadline, response).await {
                // The channel's own timer (it honours `grpc-timeout` too) may
                // fire first and call the expiry CANCELLED; it is the deadline.
                Ok(Err(_)) if tokio::time::Instant::now() >= deadline => {
                    Ok(status_response(expired_downstream()))
                }
                Ok(result) => result,
                Err(_elapsed) => Ok(status_response(expired_downstream())),
            }
        })
    }
}

fn expired_downstream() -> Status {
    Status::deadline_exceeded("deadline exceeded")
}

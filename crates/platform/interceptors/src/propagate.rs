//! Context propagation, the way in: [`ContextLayer`] gathers the request
//! id, deadline and identity into a [`CallContext`] for the handler's task.
//! The way out is `tailor_channel::Outbound`, wrapped around every
//! downstream channel, which writes them into the downstream request:
//! `x-request-id`, the remaining time as `grpc-timeout`, the caller as
//! `x-tailor-subject`/`x-tailor-tenant`, and the calling BFF as
//! `x-tailor-client`. A handler never copies metadata by hand.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::context::{CallContext, Deadline, Identity, RequestId};
use crate::{HttpRequest, HttpResponse};

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

//! Context propagation, the way in: [`ContextLayer`] gathers the request
//! id, deadline, identity, the call's trace (its server span) and (on a
//! downstream service) the calling BFF into a [`CallContext`] for the
//! handler's task. The way out is
//! `tailor_channel::Outbound`, wrapped around every downstream channel,
//! which writes them into the downstream request: `x-request-id`, the
//! remaining time as `grpc-timeout`, and the caller as an identity token
//! the BFF signs (`tailor-trust`), and a client span's `traceparent`. A
//! handler never copies metadata by hand.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::context::{CallContext, CallingClient, Deadline, Identity, RequestId, TraceContext};
use crate::{HttpRequest, HttpResponse};

/// Adds [`ContextService`] to a stack; it must sit inside the request id,
/// deadline and admission layers so their extensions are there to gather.
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
            calling_client: extensions.get::<CallingClient>().map(|c| c.0.clone()),
            trace: extensions
                .get::<TraceContext>()
                .map(|t| t.0.clone())
                .unwrap_or_default(),
        };
        let response = self.inner.call(request);
        Box::pin(context.scope(response))
    }
}

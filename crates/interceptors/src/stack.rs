//! The one place the layers are put in order. Every Tailor server, BFF or
//! downstream, is served through [`server_stack`]; requests pass the layers
//! top to bottom, responses bottom to top (the onion):
//!
//! 1. **request id** first, so every later layer, log line and error carries it;
//! 2. **access log**, which therefore sees the final status and full latency,
//!    including refusals by the layers below;
//! 3. **error mapping**, scrubbing internals from every status below it;
//! 4. **deadline**, so an expired call is answered even while auth or the
//!    handler is still busy;
//! 5. **auth** (BFFs only), refusing before any handler or downstream work;
//! 6. **limits** (where a BFF has them), per credential, after auth has
//!    said whose call it is;
//! 7. **context**, innermost, handing request id, deadline and identity to
//!    the handler's task for [`crate::propagate::Outbound`].

use std::convert::Infallible;
use std::sync::Arc;

use tower::ServiceBuilder;
use tower::util::BoxCloneService;

use crate::access_log::{AccessLogLayer, CallStats};
use crate::auth::AuthLayer;
use crate::deadline::DeadlineLayer;
use crate::error::ErrorMappingLayer;
use crate::limits::LimitLayer;
use crate::propagate::ContextLayer;
use crate::request_id::RequestIdLayer;
use crate::{HttpRequest, HttpResponse};

/// A server's whole request path behind one type.
pub type GrpcService = BoxCloneService<HttpRequest, HttpResponse, Infallible>;

/// Who may call, and how much: authentication and per-credential limits.
/// Downstream services have neither; they trust the BFFs in front.
#[derive(Clone, Default)]
pub struct Admission {
    /// Authentication and scopes.
    pub auth: Option<AuthLayer>,
    /// Rate limits and quotas.
    pub limits: Option<LimitLayer>,
}

/// Wraps a server's routes in the shared stack. `server` names it in logs.
pub fn server_stack<S>(
    routes: S,
    server: &'static str,
    stats: Arc<CallStats>,
    admission: Admission,
) -> GrpcService
where
    S: tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let inner: GrpcService = BoxCloneService::new(
        ServiceBuilder::new()
            .option_layer(admission.auth)
            .option_layer(admission.limits)
            .layer(ContextLayer)
            .service(routes),
    );
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(RequestIdLayer)
            .layer(AccessLogLayer::new(server, stats))
            .layer(ErrorMappingLayer)
            .layer(DeadlineLayer)
            .service(inner),
    )
}

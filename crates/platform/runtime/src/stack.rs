//! The one place the layers of a server are put in order. Every Tailor
//! server, BFF or downstream, is served through [`server_stack`]; requests
//! pass the layers top to bottom, answers bottom to top (the onion):
//!
//! | # | layer | where | why here |
//! |---|---|---|---|
//! | 1 | request id | every server | outermost, so every answer, refusals included, carries `x-request-id` and every log line and span below can name it |
//! | 2 | trace | every server | continues the caller's W3C trace context (grpc-web included) or starts one, and holds the call's server span until the call really ends; outside the access log so its line, and every log line of the call, can name the trace |
//! | 3 | access log and call stats | every server | sees every call's final status and full latency, refusals by any layer below included: one line and one count per call |
//! | 4 | CORS | browser BFFs | answers preflights and refuses foreign origins before anything reads the body |
//! | 5 | content type | every server | HTTP 415 for what is not gRPC (nor grpc-web where browsers are admitted), before any decoder sees it |
//! | 6 | grpc-web guard and translation | browser BFFs | malformed grpc-web gets a clear status; below here every call is native gRPC |
//! | 7 | load shedding | BFFs (and where `--max-in-flight` is set) | beyond the server's bound on calls in flight, a new call is RESOURCE_EXHAUSTED with RetryInfo at once, never queued; health and reflection never; inside the access log so shed calls are counted, below the grpc-web translation so a browser can read the refusal |
//! | 8 | message size | every server | metadata over 16 KiB, and a request message over the bound from its frame header (never buffered), are RESOURCE_EXHAUSTED, and a message not whole within 10 s of its first byte DEADLINE_EXCEEDED; below the grpc-web translation, so both wires meet the same bound |
//! | 9 | error mapping | every server | scrubs internals from every status produced below it, and notes the final status for the access log and the trace |
//! | 10 | deadline | every server | an expired call is answered even while auth, an admission queue or the handler is still busy |
//! | 11 | routing | every server | an unknown method is UNIMPLEMENTED for everyone, before credentials are asked for |
//! | 12 | callers (mutual TLS) or auth | downstream services / BFFs | a downstream admits only the BFFs its client certificates name, and takes the user from the identity token that BFF signed; a BFF authenticates its clients. Both refuse before any limit is spent or handler runs |
//! | 13 | fair admission | downstream services | each calling client type (web, mobile, partner) has its own share of calls at once and a bounded queue; beyond both, RESOURCE_EXHAUSTED with RetryInfo at once, so one BFF's flood never queues ahead of the others; after the callers layer has said which BFF calls |
//! | 14 | limits | partner BFF, sign-in | per credential, so after auth has said whose call it is; in process, or shared by every replica through the key store ([`tailor_interceptors::shared_limits`]) |
//! | 15 | context | every server | innermost of the policies: hands request id, deadline, identity and the call's span to the handler's task and its downstream calls |
//! | 16 | fault injection (latency, failures) | when configured | chaos hits the handler, never the layers that report it, nor health and reflection |
//!
//! Health and reflection pass every layer: they get ids and log lines, and
//! the shedding, auth, admission, limits and fault layers let them through
//! untouched; health
//! checks (and CORS preflights) are not traced.
//!
//! Request messages are bounded by [`Bounds`]: 256 KiB on the BFFs
//! (servers that authenticate their callers), 4 MiB on downstream services,
//! unless configured; on a BFF that admits browsers the smaller of that and
//! its grpc-web limit (`BrowserAccess::max_request_bytes`) applies to both
//! wires.
//!
//! How much load a server takes before refusing ([`Load`]: the admission
//! shares of downstream services, the BFFs' bound on calls in flight)
//! comes with its serve options (`--admission` and `--max-in-flight`);
//! servers given none get the defaults.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tailor_auth::AuthLayer;
use tailor_browser::{BrowserAccess, CorsLayer, GrpcWebGuardLayer};
use tailor_interceptors::access_log::{AccessLogLayer, CallStats};
use tailor_interceptors::admission::{AdmissionLayer, Shares};
use tailor_interceptors::deadline::DeadlineLayer;
use tailor_interceptors::error::ErrorMappingLayer;
use tailor_interceptors::fault::{InjectLatencyLayer, InjectUnavailableLayer};
use tailor_interceptors::limits::LimitLayer;
use tailor_interceptors::message_size::{
    BFF_MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGE_BYTES, MessageSizeLayer,
};
use tailor_interceptors::propagate::ContextLayer;
use tailor_interceptors::protocol::ContentTypeLayer;
use tailor_interceptors::request_id::RequestIdLayer;
use tailor_interceptors::routing::RoutingLayer;
use tailor_interceptors::shed::{DEFAULT_MAX_IN_FLIGHT, ShedLayer};
use tailor_interceptors::trace::TraceLayer;
use tailor_interceptors::{HttpRequest, HttpResponse};
use tailor_trust::CallerLayer;
use tower::ServiceBuilder;
use tower::util::BoxCloneService;

use tailor_interceptors::shared_limits::SharedLimitLayer;

/// A server's whole request path behind one type.
pub type GrpcService = BoxCloneService<HttpRequest, HttpResponse, Infallible>;

/// Who may call, and how much: on a BFF, authentication and per-credential
/// limits; on a downstream service, the BFFs its client certificates name.
#[derive(Clone, Default)]
pub struct Admission {
    /// The BFFs a downstream service admits (mutual TLS) and the users
    /// they sign for.
    pub callers: Option<CallerLayer>,
    /// Authentication and scopes.
    pub auth: Option<AuthLayer>,
    /// Rate limits and quotas.
    pub limits: Option<LimitLayer>,
    /// Rate limits and quotas counted in a store every replica shares.
    pub shared_limits: Option<SharedLimitLayer>,
    /// How large a message may be.
    pub bounds: Bounds,
}

/// Bounds on what one call may send.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// The largest request message, in bytes. `None`:
    /// [`BFF_MAX_MESSAGE_BYTES`] on a server that authenticates its callers
    /// (a BFF), [`DEFAULT_MAX_MESSAGE_BYTES`] on a downstream service.
    pub max_message_bytes: Option<usize>,
}

/// Chaos knobs; both off by default, and both may be on at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Delay added before every call to the served services.
    pub latency: Option<Duration>,
    /// Every n-th call to the served services answers UNAVAILABLE.
    pub unavailable_every: Option<u64>,
}

/// How much load the servers of a process take before they refuse calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// Each calling client type's share of a downstream service.
    pub shares: Shares,
    /// The bound on calls in flight. `None`: [`DEFAULT_MAX_IN_FLIGHT`] on
    /// a server that authenticates its callers (a BFF), none on a
    /// downstream service (its admission shares bound it); `Some(0)`: no
    /// bound.
    pub max_in_flight: Option<usize>,
}

/// Everything that decides a server's layers besides its routes.
pub struct StackConfig {
    /// The server's name in logs (`web-bff`, `catalog`).
    pub server: &'static str,
    /// Where the access log counts calls.
    pub stats: Arc<CallStats>,
    /// Browsers admitted (CORS, grpc-web), on BFFs that serve them.
    pub browser: Option<BrowserAccess>,
    /// The methods routed to handlers (full paths); health and reflection
    /// are always routed.
    pub methods: HashSet<String>,
    /// Authentication and limits.
    pub admission: Admission,
    /// Fault injection.
    pub faults: Faults,
    /// How much load the server takes before refusing calls.
    pub load: Load,
    /// Whether each calling client type's connections are served on
    /// threads of their own ([`crate::lanes`]): each then also has
    /// admission slots of its own.
    pub lanes: bool,
}

/// Wraps a server's routes in the whole chain, in the order of the module
/// docs' table.
pub fn server_stack<S>(routes: S, config: StackConfig) -> GrpcService
where
    S: tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let browser = config.browser.as_ref();
    let max_message = config
        .admission
        .bounds
        .max_message_bytes
        .unwrap_or(if config.admission.auth.is_some() {
            BFF_MAX_MESSAGE_BYTES
        } else {
            DEFAULT_MAX_MESSAGE_BYTES
        })
        .min(browser.map_or(usize::MAX, |b| b.max_request_bytes));
    let load = config.load;
    let is_bff = config.admission.auth.is_some();
    let max_in_flight =
        load.max_in_flight
            .unwrap_or(if is_bff { DEFAULT_MAX_IN_FLIGHT } else { 0 });
    let shed = (max_in_flight > 0).then(|| ShedLayer::new(config.server, max_in_flight));
    // Shares are per calling BFF, which only the callers layer knows.
    let fair = config.admission.callers.is_some().then(|| {
        let admission = AdmissionLayer::new(config.server, load.shares);
        if config.lanes {
            admission.with_slots_per_client_type()
        } else {
            admission
        }
    });
    // The admission and handler half, boxed so the browser layers above can
    // wrap one named type.
    let inner: GrpcService = BoxCloneService::new(
        ServiceBuilder::new()
            .option_layer(shed)
            .layer(MessageSizeLayer::new(max_message))
            .layer(ErrorMappingLayer)
            .layer(DeadlineLayer)
            .layer(RoutingLayer::new(config.methods))
            .option_layer(config.admission.callers)
            .option_layer(fair)
            .option_layer(config.admission.auth)
            .option_layer(config.admission.limits)
            .option_layer(config.admission.shared_limits)
            .layer(ContextLayer)
            .option_layer(config.faults.latency.map(InjectLatencyLayer))
            .option_layer(
                config
                    .faults
                    .unavailable_every
                    .map(InjectUnavailableLayer::new),
            )
            .service(routes),
    );
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(RequestIdLayer)
            .layer(TraceLayer::new(config.server))
            .layer(AccessLogLayer::new(config.server, config.stats))
            .option_layer(browser.map(|b| CorsLayer::new(b.origins.clone())))
            .layer(ContentTypeLayer::new(browser.is_some()))
            .option_layer(browser.map(|_| GrpcWebGuardLayer::new(max_message)))
            .option_layer(browser.map(|_| tonic_web::GrpcWebLayer::new()))
            .service(inner),
    )
}

//! The web BFF: the shop exactly as the browser app needs it. Answers are
//! rich and page-shaped (every picture size for `srcset`, display-ready
//! prices and stock texts, histograms), so the single-page app renders
//! without further calls.
//!
//! **Architecture invariant**: this crate holds only the web API and the
//! mapping of screens into it. It knows nothing about API keys, mobile
//! shapes or field masks; authentication, ids, deadlines, logging and error
//! mapping come from `tailor-interceptors`, screen assembly from
//! `tailor-screens`. The user and session store ([`accounts`]) is the web
//! BFF's own, because browser sign-in is a web concern; how cookies are
//! checked (origin, CSRF header) is the shared session authenticator's.

#![forbid(unsafe_code)]

pub mod accounts;
mod session;
mod shape;
mod shop;
pub mod throttle;

use std::sync::Arc;

use tailor_auth::{
    AuthLayer, AuthPolicy, CookiePolicy, FirstOf, JwtAuthenticator, SessionAuthenticator,
};
use tailor_browser::BrowserAccess;
use tailor_interceptors::streams::{CappedStreams, StreamCaps};
use tailor_proto::web::v1::session_service_server::SessionServiceServer;
use tailor_proto::web::v1::shop_service_server::ShopServiceServer;
use tailor_runtime::GrpcServer;
use tailor_screens::Downstreams;
use tailor_screens::order::OrderRate;
use tonic::codec::CompressionEncoding;

pub use accounts::Accounts;
pub use session::WebSessions;
pub use shop::WebShop;
pub use throttle::{DEFAULT_SIGN_IN_ATTEMPTS, SignInLimits};

/// The name this BFF goes by in logs and downstream metadata.
pub const NAME: &str = "web-bff";

/// The `aud` claim web tokens must carry.
pub const DEFAULT_AUDIENCE: &str = "tailor-web";

const SHOP: &str = "/tailor.web.v1.ShopService/";
const SESSIONS: &str = "/tailor.web.v1.SessionService/";
const WATCH_ORDER: &str = "/tailor.web.v1.ShopService/WatchOrder";

/// Order watches one user may hold open at once (several tabs, several
/// orders); one more is RESOURCE_EXHAUSTED until one ends.
pub const WATCHES_PER_USER: usize = 8;

/// Who may call what: browsing and signing in or out are open; orders and
/// "who am I" need a signed-in user.
pub fn auth_policy() -> AuthPolicy {
    AuthPolicy::new()
        .allow_anonymous(format!("{SHOP}ListProducts"))
        .allow_anonymous(format!("{SHOP}GetProductPage"))
        .allow_anonymous(format!("{SESSIONS}SignIn"))
        .allow_anonymous(format!("{SESSIONS}SignOut"))
}

/// How the web BFF meets browsers.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// CORS and grpc-web.
    pub browser: BrowserAccess,
    /// How the session cookie is set.
    pub cookie: CookiePolicy,
    /// Sign-in attempts allowed per user name and per client address.
    pub sign_in_attempts: SignInLimits,
    /// Orders each user may place ([`tailor_screens::order::DEFAULT_ORDER_RATE`]
    /// unless configured).
    pub orders_per_user: tailor_interceptors::limits::Plan,
}

/// The web BFF's server, ready to serve: native gRPC and grpc-web on one
/// port; callers authenticate with a bearer token or the session cookie.
pub fn build_server(
    downstreams: Downstreams,
    tokens: JwtAuthenticator,
    accounts: Accounts,
    options: WebOptions,
) -> GrpcServer {
    let sessions =
        SessionAuthenticator::new(Arc::new(accounts.clone()), options.browser.origins.clone());
    let authenticator = FirstOf(vec![Arc::new(tokens), Arc::new(sessions)]);
    GrpcServer::new(NAME)
        .add_service(CappedStreams::new(
            // Native callers may ask for compressed answers; browsers over
            // grpc-web do not send grpc-accept-encoding and get plain ones.
            ShopServiceServer::new(WebShop::new(
                downstreams,
                OrderRate::new(options.orders_per_user),
            ))
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip),
            WATCH_ORDER,
            StreamCaps::new("order watches", WATCHES_PER_USER),
        ))
        .add_service(SessionServiceServer::new(WebSessions::new(
            accounts,
            options.cookie,
            options.sign_in_attempts,
        )))
        .with_auth(AuthLayer::new(Arc::new(authenticator), auth_policy()))
        .with_browser(options.browser)
}

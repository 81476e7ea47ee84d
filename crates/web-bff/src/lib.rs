//! The web BFF: the shop exactly as the browser app needs it. Answers are
//! rich and page-shaped (every picture size for `srcset`, display-ready
//! prices and stock texts, histograms), so the single-page app renders
//! without further calls.
//!
//! **Architecture invariant**: this crate holds only the web API and the
//! mapping of screens into it. It knows nothing about API keys, mobile
//! shapes or field masks; authentication, ids, deadlines, logging and error
//! mapping come from `tailor-interceptors`, screen assembly from
//! `tailor-screens`.

#![forbid(unsafe_code)]

mod shape;
mod shop;

use std::sync::Arc;

use tailor_interceptors::auth::{AuthLayer, AuthPolicy, JwtAuthenticator};
use tailor_proto::web::v1::shop_service_server::ShopServiceServer;
use tailor_runtime::GrpcServer;
use tailor_screens::Downstreams;

pub use shop::WebShop;

/// The name this BFF goes by in logs and downstream metadata.
pub const NAME: &str = "web-bff";

/// The `aud` claim web tokens must carry.
pub const DEFAULT_AUDIENCE: &str = "tailor-web";

const SERVICE: &str = "/tailor.web.v1.ShopService/";

/// Who may call what: browsing is open, orders need a signed-in user.
pub fn auth_policy() -> AuthPolicy {
    AuthPolicy::new()
        .allow_anonymous(format!("{SERVICE}ListProducts"))
        .allow_anonymous(format!("{SERVICE}GetProductPage"))
}

/// The web BFF's server, ready to serve.
pub fn build_server(downstreams: Downstreams, tokens: JwtAuthenticator) -> GrpcServer {
    GrpcServer::new(NAME)
        .add_service(ShopServiceServer::new(WebShop::new(downstreams)))
        .with_auth(AuthLayer::new(Arc::new(tokens), auth_policy()))
}

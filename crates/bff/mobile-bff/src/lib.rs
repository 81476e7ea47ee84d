//! The mobile BFF: the shop as a phone app on a slow, flaky network needs
//! it. Cards carry one thumbnail chosen for the device's screen, prices in
//! minor units, a rounded rating and a coarse stock state; the product
//! screen carries a short description and a few trimmed reviews. Placing an
//! order requires an idempotency key so that retries after a lost response
//! are safe. Reads take a read mask (or a view) that also decides which
//! downstream calls are made, answers carry a version so an unchanged one
//! costs a few bytes, and large answers are compressed (gzip or zstd).
//!
//! **Architecture invariant**: this crate holds only the mobile API and the
//! mapping of screens into it. It knows nothing about grpc-web, cookies or
//! API keys; cross-cutting concerns come from `tailor-interceptors`, screen
//! assembly from `tailor-screens`.

#![forbid(unsafe_code)]

mod mask;
mod shape;
mod shop;
mod version;

use std::sync::Arc;

use tailor_auth::{AuthLayer, AuthPolicy, JwtAuthenticator};
use tailor_interceptors::compression::PlainStreams;
use tailor_interceptors::limits::Plan;
use tailor_interceptors::streams::{CappedStreams, StreamCaps};
use tailor_proto::mobile::v1::shop_service_server::ShopServiceServer;
use tailor_runtime::GrpcServer;
use tailor_screens::Downstreams;
use tailor_screens::order::OrderRate;
use tonic::codec::CompressionEncoding;

pub use shop::MobileShop;

/// The name this BFF goes by in logs and downstream metadata.
pub const NAME: &str = "mobile-bff";

/// The `aud` claim mobile tokens must carry.
pub const DEFAULT_AUDIENCE: &str = "tailor-mobile";

const SERVICE: &str = "/tailor.mobile.v1.ShopService/";
const WATCH_ORDER: &str = "/tailor.mobile.v1.ShopService/WatchOrder";

/// Order watches one user may hold open at once; one more is
/// RESOURCE_EXHAUSTED until one ends.
pub const WATCHES_PER_USER: usize = 8;

/// Who may call what: browsing is open, orders need a signed-in user.
pub fn auth_policy() -> AuthPolicy {
    AuthPolicy::new()
        .allow_anonymous(format!("{SERVICE}ListProducts"))
        .allow_anonymous(format!("{SERVICE}GetProductPage"))
}

/// The mobile BFF's server, ready to serve; each user places orders at
/// most as `orders_per_user` says
/// ([`tailor_screens::order::DEFAULT_ORDER_RATE`] unless configured).
pub fn build_server(
    downstreams: Downstreams,
    tokens: JwtAuthenticator,
    orders_per_user: Plan,
) -> GrpcServer {
    GrpcServer::new(NAME)
        .add_service(CappedStreams::new(
            PlainStreams::new(
                ShopServiceServer::new(MobileShop::new(
                    downstreams,
                    OrderRate::new(orders_per_user),
                ))
                .send_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Gzip),
                &[WATCH_ORDER],
            ),
            WATCH_ORDER,
            StreamCaps::new("order watches", WATCHES_PER_USER),
        ))
        .with_auth(AuthLayer::new(Arc::new(tokens), auth_policy()))
}

//! The partner BFF: the API third-party integrators build against once and
//! expect to stay put (`tailor.partner.v1` is frozen). Every call carries an
//! API key; keys belong to a tenant, carry scopes and a plan, and are kept
//! hashed in this BFF's own store ([`keys`]). A partner only ever sees its
//! own orders. Each key's plan sets its rate limit and daily quota. The
//! catalogue comes as a resumable server stream.
//!
//! **Architecture invariant**: this crate holds the partner API, its key
//! store and the mapping of screens into it. Key *verification* (hashing,
//! constant-time comparison) is the shared `tailor-interceptors` auth layer;
//! this crate only implements its [`tailor_auth::ApiKeyStore`]
//! seam. It knows nothing about JWTs, cookies or mobile shapes.

#![forbid(unsafe_code)]

mod feed;
pub mod keys;
mod partner;
pub mod plans;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tailor_auth::{ApiKeyAuthenticator, AuthLayer, AuthPolicy};
use tailor_interceptors::limits::{Limiter, Plan};
use tailor_interceptors::streams::{CappedStreams, StreamCaps};
use tailor_proto::partner::v1::partner_service_server::PartnerServiceServer;
use tailor_runtime::GrpcServer;
use tailor_screens::Downstreams;

pub use keys::{KeyStore, KeyStoreError, scopes};
pub use partner::Partner;

/// The name this BFF goes by in logs and downstream metadata.
pub const NAME: &str = "partner-bff";

const SERVICE: &str = "/tailor.partner.v1.PartnerService/";
const FEED: &str = "/tailor.partner.v1.PartnerService/StreamCatalogFeed";

/// Catalogue feeds one API key may hold open at once: a feed is resumable,
/// so an integration needs one, a few at most while it restarts; one more
/// is RESOURCE_EXHAUSTED until one ends.
pub const FEEDS_PER_KEY: usize = 4;

/// Which scope each method needs.
pub fn auth_policy() -> AuthPolicy {
    AuthPolicy::new()
        .require_scope(format!("{SERVICE}StreamCatalogFeed"), scopes::CATALOG_READ)
        .require_scope(
            format!("{SERVICE}BatchGetAvailability"),
            scopes::AVAILABILITY_READ,
        )
        .require_scope(format!("{SERVICE}PlaceOrder"), scopes::ORDERS_WRITE)
        .require_scope(format!("{SERVICE}GetOrder"), scopes::ORDERS_READ)
        .require_scope(format!("{SERVICE}ListOrders"), scopes::ORDERS_READ)
}

/// Quota counts reach the key store this often.
const SAVE_QUOTA_EVERY: Duration = Duration::from_secs(1);

/// The partner BFF's server, ready to serve: API keys, scopes, and each
/// key's rate limit and daily quota from its plan's `limits`
/// ([`plans::limits`] unless configured otherwise). With the key store in
/// PostgreSQL, the limits are counted there, shared by every replica;
/// with SQLite, in this process, today's quota counts read from the key
/// store and kept there.
pub async fn build_server(
    downstreams: Downstreams,
    keys: KeyStore,
    limits: HashMap<String, Plan>,
) -> Result<GrpcServer, String> {
    let shared = keys.shared_limits();
    let authenticator = ApiKeyAuthenticator::new(Arc::new(keys.clone()));
    let server = GrpcServer::new(NAME)
        .add_service(CappedStreams::new(
            PartnerServiceServer::new(Partner::new(downstreams)),
            FEED,
            StreamCaps::new("catalogue feeds", FEEDS_PER_KEY),
        ))
        .with_auth(AuthLayer::new(Arc::new(authenticator), auth_policy()));
    Ok(match shared {
        Some(shared) => server.with_shared_limits(limits, shared),
        None => {
            let ledger = Arc::new(keys);
            server.with_limits(Limiter::with_ledger(limits, ledger, SAVE_QUOTA_EVERY).await?)
        }
    })
}

//! Channels to downstream services. Every channel is wrapped in
//! [`Outbound`], so calls carry the caller's request id, identity and
//! remaining deadline without handlers doing anything.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tailor_interceptors::propagate::Outbound;
use tailor_interceptors::retry::{RetryIdempotent, RetryPolicy, idempotent_methods};
use tonic::transport::{Channel, Endpoint};

/// What generated clients are built on: idempotent calls (as the contracts
/// mark them) are retried on transient failures, each attempt carrying the
/// caller's context and what is left of its deadline.
pub type DownstreamChannel = RetryIdempotent<Outbound<Channel>>;

/// The methods of every Tailor contract marked safe to repeat.
static IDEMPOTENT: LazyLock<Arc<HashSet<String>>> =
    LazyLock::new(|| Arc::new(idempotent_methods(tailor_proto::FILE_DESCRIPTOR_SET)));

/// Error for a downstream address that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid downstream address {address:?}: {reason}")]
pub struct InvalidAddress {
    address: String,
    reason: String,
}

/// A lazily connecting channel to `address` (`http://127.0.0.1:50051` or
/// `127.0.0.1:50051`), used by the server named `client`. Connection
/// attempts fail fast so a dead downstream answers UNAVAILABLE promptly
/// instead of hanging, and HTTP/2 keepalive notices a peer that vanished.
pub fn channel(address: &str, client: &'static str) -> Result<DownstreamChannel, InvalidAddress> {
    let uri = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| InvalidAddress {
        address: address.to_owned(),
        reason: e.to_string(),
    })?;
    let channel = endpoint
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(RetryIdempotent::new(
        Outbound::new(channel, client),
        IDEMPOTENT.clone(),
        RetryPolicy::default(),
    ))
}

//! Calling downstream services. A BFF gets one [`ServiceChannel`] per
//! service it calls; every call made through it, from any handler:
//!
//! - travels over mutual TLS, with this BFF's certificate from the stack's
//!   authority ([`Caller`]);
//! - carries the caller's request id, what is left of the deadline and the
//!   user it is made for, as an identity token this BFF signs for that
//!   service ([`Outbound`]);
//! - is retried on transient failures when the contracts mark the method
//!   a read (`NO_SIDE_EFFECTS`, [`RetryReads`]);
//! - fails with a status a client may read: about the request (not found,
//!   invalid, ...) as the service said it, about the service's health as
//!   UNAVAILABLE naming the service, never its address ([`NamedChannel`]);
//! - is timed and counted by method and status, retries too, in the BFF's
//!   downstream metrics (`rpc_client_*`, by target service).
//!
//! Handlers therefore never map downstream errors, copy metadata or retry
//! by hand. What is *not* here: which services a BFF calls and what it
//! does with their answers (`tailor-screens`).

#![forbid(unsafe_code)]

mod metrics;
mod named;
mod outbound;
pub mod retry;

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use tailor_trust::MeshCredentials;
use tailor_trust::{IdentitySigner, TrustError};
use tonic::transport::{Channel, Endpoint};

pub use named::{NamedChannel, name_failure};
pub use outbound::Outbound;
pub use retry::{RetryPolicy, RetryReads, read_methods};

/// What generated clients are built on: one downstream service's channel,
/// as the module docs describe.
pub type ServiceChannel = NamedChannel<RetryReads<Outbound<Channel>>>;

/// The methods every Tailor contract marks as reads.
static READS: LazyLock<Arc<HashSet<String>>> =
    LazyLock::new(|| Arc::new(read_methods(tailor_proto::FILE_DESCRIPTOR_SET)));

/// Error for a downstream address that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid address {address:?} for {service}: {reason}")]
pub struct InvalidAddress {
    service: &'static str,
    address: String,
    reason: String,
}

/// A BFF as its downstream calls present it: its certificate, and the key
/// it signs its callers' identities with.
#[derive(Debug, Clone)]
pub struct Caller {
    credentials: MeshCredentials,
    signer: Arc<IdentitySigner>,
}

impl Caller {
    /// The BFF with `credentials` (from the stack's trust directory).
    pub fn new(credentials: MeshCredentials) -> Result<Self, TrustError> {
        let signer = Arc::new(credentials.signer()?);
        Ok(Self {
            credentials,
            signer,
        })
    }

    /// The BFF's name (`web-bff`).
    pub fn name(&self) -> &str {
        self.credentials.name()
    }
}

/// Why a downstream channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The address does not parse.
    #[error(transparent)]
    Address(#[from] InvalidAddress),
    /// The TLS set-up failed.
    #[error("TLS for {service}: {reason}")]
    Tls {
        /// The downstream service.
        service: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// A lazily connecting channel to the downstream `service` (`catalog`) at
/// `address` (`127.0.0.1:50051`; any scheme given is replaced by https),
/// over mutual TLS as `caller`. The service's certificate must name
/// `service`. Connection attempts fail fast so a dead downstream answers
/// UNAVAILABLE promptly instead of hanging, and HTTP/2 keepalive notices a
/// peer that vanished.
pub fn channel(
    service: &'static str,
    address: &str,
    caller: &Caller,
) -> Result<ServiceChannel, ChannelError> {
    let authority = address.split_once("://").map_or(address, |(_, rest)| rest);
    let endpoint =
        Endpoint::from_shared(format!("https://{authority}")).map_err(|e| InvalidAddress {
            service,
            address: address.to_owned(),
            reason: e.to_string(),
        })?;
    let endpoint = endpoint
        .tls_config(caller.credentials.client_tls(service))
        .map_err(|e| ChannelError::Tls {
            service,
            reason: e.to_string(),
        })?;
    let channel = endpoint
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy();
    let metrics = metrics::DownstreamMetrics::new(caller.name(), service);
    Ok(NamedChannel::new(
        service,
        RetryReads::new(
            Outbound::new(channel, service, caller.signer.clone()),
            READS.clone(),
            RetryPolicy::default(),
        )
        .with_metrics(metrics.clone()),
    )
    .with_metrics(metrics))
}

/// Where the downstream services listen; shared by every BFF binary.
#[derive(Debug, Clone, clap::Args)]
pub struct DownstreamArgs {
    /// Catalog service address.
    #[arg(long, env = "TAILOR_CATALOG_ADDR", default_value = "127.0.0.1:50051")]
    pub catalog_addr: String,
    /// Inventory service address.
    #[arg(long, env = "TAILOR_INVENTORY_ADDR", default_value = "127.0.0.1:50052")]
    pub inventory_addr: String,
    /// Reviews service address.
    #[arg(long, env = "TAILOR_REVIEWS_ADDR", default_value = "127.0.0.1:50053")]
    pub reviews_addr: String,
    /// Orders service address.
    #[arg(long, env = "TAILOR_ORDERS_ADDR", default_value = "127.0.0.1:50054")]
    pub orders_addr: String,
}

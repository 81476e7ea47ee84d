//! Calling downstream services. A BFF gets one [`ServiceChannel`] per
//! service it calls; every call made through it, from any handler:
//!
//! - travels over mutual TLS, with this BFF's certificate from the stack's
//!   authority ([`Caller`]);
//! - carries the caller's request id, what is left of the deadline and the
//!   user it is made for, as an identity token this BFF signs for that
//!   service ([`Outbound`]);
//! - obeys the service's [`CallPolicy`] (documented defaults, changed per
//!   BFF and service with `--downstream-policy`): a bound per attempt, reads
//!   retried within a budget and optionally hedged, a circuit breaker, a
//!   bound on calls in flight, identical reads coalesced;
//! - fails with a status a client may read: about the request (not found,
//!   invalid, ...) as the service said it, about the service's health as
//!   UNAVAILABLE naming the service, never its address ([`NamedChannel`]);
//! - is timed and counted by method and status, retries, hedges and
//!   refusals too, in the BFF's downstream metrics (`rpc_client_*`, by
//!   target service), with each circuit's state as a gauge.
//!
//! [`Readiness`] tells whether the services a BFF cannot work without are
//! reachable (their circuits and a health probe), for the BFF's health.
//!
//! # The order of the layers
//!
//! Outermost first (a call passes top to bottom, its answer bottom to top):
//!
//! | layer | why it stands here |
//! |---|---|
//! | [`NamedChannel`] | sees every answer, refusals made below included, so the client reads one wording; each client call is timed and counted once |
//! | [`Coalesce`] | above the retries, so callers sharing a call share its retries too, and one read costs the service one call, retries and all |
//! | [`RetryReads`] (budget, hedging) | above the circuit, so every attempt is judged by it and a retry never goes to an open circuit (its refusal is not retried) |
//! | [`CircuitBreaker`] | above the bulkhead and the window, so an open circuit refuses without taking a place, and places refused below do not count as the service failing |
//! | [`Bulkhead`] | counts attempts in flight, hedges included, up to the moment each answers or times out, and those waiting in the window below: its bound is on all a service's calls this BFF holds |
//! | [`Windowed`] (`adaptive=on`; off by default) | an adaptive window of the attempts that have left, learnt from answer times; the rest wait here; an attempt is timed from when it leaves, so the attempt timeout below does not run while it waits |
//! | [`AttemptTimeout`] | bounds the attempt just before it leaves, so a timed-out attempt frees its place and reads as a failure to the circuit above |
//! | [`Outbound`] | writes the context (and the smaller of the attempt's bound and the caller's deadline as `grpc-timeout`) per attempt, each attempt its own client span; ends the attempt when the caller's deadline passes |
//! | `tonic` `Channel` | the connection, over mutual TLS |
//!
//! Handlers therefore never map downstream errors, copy metadata or retry
//! by hand. What is *not* here: which services a BFF calls and what it
//! does with their answers (`tailor-screens`).

#![forbid(unsafe_code)]

mod breaker;
mod bulkhead;
mod coalesce;
mod metrics;
mod named;
mod outbound;
pub mod policy;
pub mod readiness;
pub mod retry;
mod timeout;
mod window;

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use tailor_trust::MeshCredentials;
use tailor_trust::{IdentitySigner, TrustError};
use tonic::transport::{Channel, Endpoint};

pub use breaker::{Circuit, CircuitBreaker, CircuitState};
pub use bulkhead::Bulkhead;
pub use coalesce::Coalesce;
pub use named::{NamedChannel, name_failure};
pub use outbound::Outbound;
pub use policy::{CallPolicy, Policies, PolicyError};
pub use readiness::{Readiness, ReadinessPolicy};
pub use retry::{RetryBudget, RetryPolicy, RetryReads, read_methods, streaming_methods};
pub use timeout::AttemptTimeout;
pub use window::{Window, Windowed};

/// What generated clients are built on: one downstream service's channel,
/// its layers in the order the module docs give and explain.
pub type ServiceChannel = NamedChannel<
    Coalesce<RetryReads<CircuitBreaker<Bulkhead<Windowed<AttemptTimeout<Outbound<Channel>>>>>>>,
>;

/// What readiness probes a service through: the same connection, around
/// the policies.
pub type ProbeChannel = NamedChannel<Outbound<Channel>>;

/// The methods every Tailor contract marks as reads.
static READS: LazyLock<Arc<HashSet<String>>> =
    LazyLock::new(|| Arc::new(read_methods(tailor_proto::FILE_DESCRIPTOR_SET)));

/// The methods of every Tailor contract that stream, either way.
static STREAMING: LazyLock<Arc<HashSet<String>>> =
    LazyLock::new(|| Arc::new(streaming_methods(tailor_proto::FILE_DESCRIPTOR_SET)));

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
    /// A `--downstream-policy` entry is refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `--required-downstreams` names a service a BFF does not call.
    #[error("required downstream {0:?} is not one of catalog, inventory, reviews, orders")]
    UnknownRequired(String),
}

/// One downstream service as a BFF holds it: the channel its calls take,
/// and what readiness reads of it.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The channel calls take.
    pub channel: ServiceChannel,
    /// Its circuit.
    pub circuit: Arc<Circuit>,
    /// Health checks take this, around the policies.
    pub probe: ProbeChannel,
}

/// A lazily connecting channel to the downstream `service` (`catalog`) at
/// `address`, over mutual TLS as `caller`, with the default policy; see
/// [`downstream`].
pub fn channel(
    service: &'static str,
    address: &str,
    caller: &Caller,
) -> Result<ServiceChannel, ChannelError> {
    Ok(downstream(service, address, caller, &CallPolicy::default())?.channel)
}

/// A lazily connecting channel to the downstream `service` (`catalog`) at
/// `address` (`127.0.0.1:50051`; any scheme given is replaced by https),
/// over mutual TLS as `caller`, its calls obeying `policy`. The service's
/// certificate must name `service`. Connection attempts fail fast so a
/// dead downstream answers UNAVAILABLE promptly instead of hanging, and
/// HTTP/2 keepalive notices a peer that vanished.
pub fn downstream(
    service: &'static str,
    address: &str,
    caller: &Caller,
    policy: &CallPolicy,
) -> Result<Downstream, ChannelError> {
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
    let connection = endpoint
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy();
    let metrics = metrics::DownstreamMetrics::new(caller.name(), service);
    let outbound = Outbound::new(connection, service, caller.signer.clone());
    let circuit = Circuit::with_metrics(service, policy.breaker, Some(metrics.clone()));
    let window = policy
        .adaptive
        .then(|| Arc::new(Window::new(policy.max_in_flight)));
    let attempts = CircuitBreaker::new(
        Bulkhead::new(
            Windowed::new(
                AttemptTimeout::new(
                    outbound.clone(),
                    service,
                    policy.attempt_timeout,
                    STREAMING.clone(),
                ),
                service,
                window,
            )
            .with_metrics(metrics.clone()),
            service,
            policy.max_in_flight,
        )
        .with_metrics(metrics.clone()),
        circuit.clone(),
    );
    let reads = RetryReads::new(attempts, READS.clone(), policy.retry)
        .with_budget(Arc::new(RetryBudget::new(policy.budget)))
        .with_hedging(policy.hedge_after, STREAMING.clone())
        .with_metrics(metrics.clone());
    let channel = NamedChannel::new(
        service,
        Coalesce::new(reads, READS.clone(), STREAMING.clone(), policy.coalesce),
    )
    .with_metrics(metrics);
    Ok(Downstream {
        channel,
        circuit,
        probe: NamedChannel::new(service, outbound),
    })
}

/// How a BFF treats its downstream services: their policies and which of
/// them it cannot work without. Flattened into [`DownstreamArgs`].
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Changes a downstream call policy: `<service>.<key>=<value>`, `*` for
    /// every service; repeatable or comma-separated. Keys: timeout (per
    /// attempt, 5s), attempts (20), backoff (20ms), max-backoff (50ms),
    /// retry-budget (0.1: retries
    /// in flight per call in flight), retry-min-concurrency (3), breaker-failure-rate (0.8),
    /// breaker-window (10s), breaker-min-calls (20), breaker-consecutive
    /// (10), breaker-open (5s), breaker-probes (3), max-in-flight (512),
    /// adaptive (off: an adaptive window of calls in flight), hedge (off,
    /// or a delay), coalesce (on).
    #[arg(
        long = "downstream-policy",
        env = "TAILOR_DOWNSTREAM_POLICY",
        value_delimiter = ','
    )]
    pub downstream_policy: Vec<String>,
    /// Downstream services this BFF cannot work without
    /// (comma-separated); while one is unreachable for the grace time the
    /// BFF's health says NOT_SERVING. Defaults to each BFF's own list.
    #[arg(
        long = "required-downstreams",
        env = "TAILOR_REQUIRED_DOWNSTREAMS",
        value_delimiter = ','
    )]
    pub required_downstreams: Option<Vec<String>>,
    /// How long a required downstream may be unreachable (or its circuit
    /// open) before the BFF reports NOT_SERVING, in milliseconds.
    #[arg(long, env = "TAILOR_READINESS_GRACE_MS", default_value_t = 3000)]
    pub readiness_grace_ms: u64,
    /// How often each required downstream's health is checked, in
    /// milliseconds.
    #[arg(long, env = "TAILOR_READINESS_PROBE_MS", default_value_t = 1000)]
    pub readiness_probe_ms: u64,
}

impl Default for PolicyArgs {
    fn default() -> Self {
        let readiness = ReadinessPolicy::default();
        Self {
            downstream_policy: Vec::new(),
            required_downstreams: None,
            readiness_grace_ms: readiness.grace.as_millis() as u64,
            readiness_probe_ms: readiness.probe_every.as_millis() as u64,
        }
    }
}

/// Where the downstream services listen and how they are called; shared by
/// every BFF binary.
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
    /// Call policies and readiness.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// The four downstream services of a BFF, connected as [`DownstreamArgs`]
/// say.
#[derive(Debug, Clone)]
pub struct Connected {
    /// Catalog.
    pub catalog: Downstream,
    /// Inventory.
    pub inventory: Downstream,
    /// Reviews.
    pub reviews: Downstream,
    /// Orders.
    pub orders: Downstream,
}

impl DownstreamArgs {
    /// Lazily connecting channels to the four services as `caller`, each
    /// with its policy; a refused policy entry is an error naming it.
    pub fn connect(&self, caller: &Caller) -> Result<Connected, ChannelError> {
        let policies = Policies::parse(&self.policy.downstream_policy)?;
        let connect = |service: &'static str, address: &str| {
            downstream(service, address, caller, &policies.of(service))
        };
        Ok(Connected {
            catalog: connect("catalog", &self.catalog_addr)?,
            inventory: connect("inventory", &self.inventory_addr)?,
            reviews: connect("reviews", &self.reviews_addr)?,
            orders: connect("orders", &self.orders_addr)?,
        })
    }

    /// The readiness policy the flags give.
    pub fn readiness_policy(&self) -> ReadinessPolicy {
        ReadinessPolicy {
            grace: Duration::from_millis(self.policy.readiness_grace_ms),
            probe_every: Duration::from_millis(self.policy.readiness_probe_ms.max(10)),
        }
    }
}

impl Connected {
    /// Starts judging readiness (on the current Tokio runtime) by the
    /// services `--required-downstreams` names, or else `default_required`
    /// (the BFF's own list).
    pub fn readiness(
        &self,
        args: &DownstreamArgs,
        default_required: &[&str],
    ) -> Result<Readiness, ChannelError> {
        let names: Vec<String> = match &args.policy.required_downstreams {
            Some(names) => names
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            None => default_required.iter().map(|n| (*n).to_owned()).collect(),
        };
        let mut required = Vec::new();
        for name in names {
            let downstream = match name.as_str() {
                "catalog" => &self.catalog,
                "inventory" => &self.inventory,
                "reviews" => &self.reviews,
                "orders" => &self.orders,
                _ => return Err(ChannelError::UnknownRequired(name)),
            };
            required.push(readiness::Required {
                circuit: downstream.circuit.clone(),
                probe: downstream.probe.clone(),
            });
        }
        if required.is_empty() {
            return Ok(Readiness::always());
        }
        Ok(Readiness::monitor(required, args.readiness_policy()))
    }
}

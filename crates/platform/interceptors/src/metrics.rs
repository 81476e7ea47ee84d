//! What every server counts of its calls, through the OpenTelemetry
//! metrics API: calls by method and gRPC status, latency, calls in flight,
//! bytes in and out, grpc-web against native gRPC, rate-limit refusals by
//! plan, refusals of a busy server by client type, and degraded screen
//! parts by section. Every series carries the server's name (`server`) and the client type it serves (`client_type`:
//! `web`, `mobile`, `partner`): on a BFF its own, on a downstream service
//! the calling BFF's, from the certificate of the connection ([`ClientType`]),
//! `unknown` when no BFF is named.
//!
//! The access log records these where it sees every call end (it stands
//! outside every layer that may refuse a call); `tailor-channel` records the
//! downstream side with the same names ([`names`]). `tailor-telemetry`
//! installs the SDK behind the API, renders Prometheus text for the admin
//! port and exports over OTLP when configured; without it every instrument
//! is a no-op.
//!
//! Recording is cheap: the attribute sets of a server's calls are bound
//! once, lazily, per method, client type and protocol (and status), so a
//! call costs a few atomic additions instead of hashing attribute lists.
//!
//! Labels are bounded whatever callers send: a method is named only when
//! the server routes it (or it is health or reflection), anything else is
//! `other`; a status is a gRPC code name (`NOT_FOUND`), a call its client
//! abandoned is `CANCELLED`; a plan is one the limiter knows.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    BoundCounter, BoundHistogram, BoundUpDownCounter, Counter, Histogram, Meter, UpDownCounter,
};
use tonic::Code;

use crate::context::{CLIENT_TYPES, client_type};

/// The instrumentation scope of every Tailor instrument.
pub const SCOPE: &str = "tailor";

/// Instrument names as OpenTelemetry knows them. In Prometheus text dots
/// become underscores, the unit is appended (`_seconds`, `_bytes`) and
/// counters end in `_total`: `rpc.server.calls` is `rpc_server_calls_total`.
pub mod names {
    /// Calls a server answered (counter): server, client_type, method,
    /// protocol, status.
    pub const SERVER_CALLS: &str = "rpc.server.calls";
    /// How long a server took to answer, to the end of the last message
    /// (histogram, seconds): server, client_type, method, protocol.
    pub const SERVER_DURATION: &str = "rpc.server.call.duration";
    /// Calls being answered now (up-down counter): server, client_type,
    /// method, protocol.
    pub const SERVER_ACTIVE: &str = "rpc.server.active_calls";
    /// Request bytes received, as on the wire (counter, bytes).
    pub const SERVER_REQUEST_SIZE: &str = "rpc.server.request.size";
    /// Response bytes sent, as on the wire (counter, bytes).
    pub const SERVER_RESPONSE_SIZE: &str = "rpc.server.response.size";
    /// Calls refused by a rate limit or daily quota (counter): server,
    /// client_type, plan, limit (`rate` or `quota`).
    pub const RATE_LIMIT_REFUSALS: &str = "tailor.rate_limit.refusals";
    /// Calls refused because the server was busy (counter): server,
    /// client_type, reason (`admission`: the client type's share of a
    /// downstream service was full; `shed`: a BFF's bound on calls in
    /// flight was reached).
    pub const OVERLOAD_REFUSALS: &str = "tailor.overload.refusals";
    /// Optional screen parts answered without their data (counter): server,
    /// client_type, section.
    pub const DEGRADED_PARTS: &str = "tailor.degraded_parts";
    /// Calls a BFF made to a downstream service (counter): server,
    /// client_type, target, method, status.
    pub const CLIENT_CALLS: &str = "rpc.client.calls";
    /// How long a downstream call took, retries included (histogram,
    /// seconds): server, client_type, target, method.
    pub const CLIENT_DURATION: &str = "rpc.client.call.duration";
    /// Downstream reads tried again after a transient failure (counter):
    /// server, client_type, target, method.
    pub const CLIENT_RETRIES: &str = "rpc.client.retries";
}

/// Bucket bounds of every latency histogram, in seconds: half a
/// millisecond (a cached read) to ten seconds (beyond any deadline).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The meter every Tailor instrument is made with, from the process's
/// meter provider (installed by `tailor-telemetry`).
pub fn meter() -> Meter {
    opentelemetry::global::meter(SCOPE)
}

/// The gRPC name of `code`, as metrics label statuses.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// On a downstream service: the client type the connection's client
/// certificate names (`web` for `web-bff`), as a request extension the
/// transport sets, so that every series of the call, the in-flight gauge
/// included, is labelled from its first moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientType(pub &'static str);

/// The wires a call may arrive on.
const PROTOCOLS: [&str; 2] = ["grpc", "grpc-web"];
/// The label of every method a server does not route.
const OTHER_METHOD: &str = "other";
/// Probes are routed on every server besides its own methods.
const PROBES: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

tokio::task_local! {
    /// The server and client type of the call being handled on this task.
    static CALL: (&'static str, &'static str);
}

/// Counts an optional `section` of a screen (`reviews`, `stock`) answered
/// without its data, under the server and client type of the call being
/// handled on this task.
pub fn degraded(section: &'static str) {
    static PARTS: OnceLock<Counter<u64>> = OnceLock::new();
    let (server, client) = CALL
        .try_with(|call| *call)
        .unwrap_or(("unknown", "unknown"));
    PARTS
        .get_or_init(|| {
            meter()
                .u64_counter(names::DEGRADED_PARTS)
                .with_unit("{part}")
                .with_description("Optional screen parts answered without their data")
                .build()
        })
        .add(
            1,
            &[
                KeyValue::new("server", server),
                KeyValue::new("client_type", client),
                KeyValue::new("section", section),
            ],
        );
}

/// Runs `future` (a call's handling) with `server` and `client` as the
/// labels [`degraded`] records under.
pub(crate) async fn scope<F: std::future::Future>(
    server: &'static str,
    client: &'static str,
    future: F,
) -> F::Output {
    CALL.scope((server, client), future).await
}

struct ServerInstruments {
    calls: Counter<u64>,
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    request_size: Counter<u64>,
    response_size: Counter<u64>,
    refusals: Counter<u64>,
    overload: Counter<u64>,
}

impl ServerInstruments {
    fn new(meter: &Meter) -> Self {
        Self {
            calls: meter
                .u64_counter(names::SERVER_CALLS)
                .with_unit("{call}")
                .with_description("Calls answered, by method and gRPC status")
                .build(),
            duration: meter
                .f64_histogram(names::SERVER_DURATION)
                .with_unit("s")
                .with_description("Time to answer a call, to the end of its last message")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter(names::SERVER_ACTIVE)
                .with_unit("{call}")
                .with_description("Calls being answered")
                .build(),
            request_size: meter
                .u64_counter(names::SERVER_REQUEST_SIZE)
                .with_unit("By")
                .with_description("Request bytes received, as on the wire")
                .build(),
            response_size: meter
                .u64_counter(names::SERVER_RESPONSE_SIZE)
                .with_unit("By")
                .with_description("Response bytes sent, as on the wire")
                .build(),
            refusals: meter
                .u64_counter(names::RATE_LIMIT_REFUSALS)
                .with_unit("{call}")
                .with_description("Calls refused by a rate limit or daily quota, by plan")
                .build(),
            overload: meter
                .u64_counter(names::OVERLOAD_REFUSALS)
                .with_unit("{call}")
                .with_description("Calls refused because the server was busy, by client type")
                .build(),
        }
    }
}

/// The bound series of one method, client type and protocol.
pub(crate) struct Bound {
    pub(crate) active: BoundUpDownCounter<i64>,
    pub(crate) duration: BoundHistogram<f64>,
    pub(crate) request_size: BoundCounter<u64>,
    pub(crate) response_size: BoundCounter<u64>,
}

#[derive(Default)]
struct Slot {
    bound: OnceLock<Bound>,
    /// Call counters by status, bound when a status first occurs.
    calls: [OnceLock<BoundCounter<u64>>; 17],
}

/// One server's call series; see the module docs.
pub(crate) struct ServerMetrics {
    server: &'static str,
    /// The client type of the server itself (BFFs), `unknown` on a
    /// downstream service.
    own_client_type: &'static str,
    /// Routed paths and their index in `method_labels`; index 0 is `other`.
    methods: HashMap<String, usize>,
    method_labels: Vec<opentelemetry::Value>,
    slots: Box<[Slot]>,
    instruments: ServerInstruments,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics")
            .field("server", &self.server)
            .field("methods", &self.methods.len())
            .finish()
    }
}

/// Which series of a server a call is counted in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotId(usize);

impl ServerMetrics {
    /// The series of `server`, naming the `routed` methods.
    pub(crate) fn new<'a>(server: &'static str, routed: impl IntoIterator<Item = &'a str>) -> Self {
        let mut methods = HashMap::new();
        let mut method_labels = vec![opentelemetry::Value::from(OTHER_METHOD)];
        for path in PROBES.into_iter().chain(routed) {
            if !methods.contains_key(path) {
                methods.insert(path.to_owned(), method_labels.len());
                let label: Arc<str> = path.trim_start_matches('/').into();
                method_labels.push(opentelemetry::Value::from(label));
            }
        }
        let slots = (0..method_labels.len() * CLIENT_TYPES.len() * PROTOCOLS.len())
            .map(|_| Slot::default())
            .collect();
        Self {
            server,
            own_client_type: client_type(server),
            methods,
            method_labels,
            slots,
            instruments: ServerInstruments::new(&meter()),
        }
    }

    /// The client type of a call: the connection's ([`ClientType`]) on a
    /// downstream service, the server's own on a BFF.
    pub(crate) fn client_type(&self, connection: Option<&ClientType>) -> &'static str {
        match connection {
            Some(ClientType(client)) if self.own_client_type == "unknown" => client,
            _ => self.own_client_type,
        }
    }

    /// The series of a call to `path` from `client` over grpc-web or not.
    pub(crate) fn slot(&self, path: &str, client: &'static str, grpc_web: bool) -> SlotId {
        let method = self.methods.get(path).copied().unwrap_or(0);
        let client = CLIENT_TYPES
            .iter()
            .position(|c| *c == client)
            .unwrap_or(CLIENT_TYPES.len() - 1);
        SlotId((method * CLIENT_TYPES.len() + client) * PROTOCOLS.len() + usize::from(grpc_web))
    }

    fn attributes(&self, SlotId(index): SlotId) -> Vec<KeyValue> {
        let protocol = index % PROTOCOLS.len();
        let client = (index / PROTOCOLS.len()) % CLIENT_TYPES.len();
        let method = index / PROTOCOLS.len() / CLIENT_TYPES.len();
        vec![
            KeyValue::new("server", self.server),
            KeyValue::new("client_type", CLIENT_TYPES[client]),
            KeyValue::new("method", self.method_labels[method].clone()),
            KeyValue::new("protocol", PROTOCOLS[protocol]),
        ]
    }

    /// The bound series of `slot`, bound on first use.
    pub(crate) fn bound(&self, slot: SlotId) -> &Bound {
        self.slots[slot.0].bound.get_or_init(|| {
            let attributes = self.attributes(slot);
            let i = &self.instruments;
            Bound {
                active: i.active.bind(&attributes),
                duration: i.duration.bind(&attributes),
                request_size: i.request_size.bind(&attributes),
                response_size: i.response_size.bind(&attributes),
            }
        })
    }

    /// Counts a call of `slot` that ended with `code`.
    pub(crate) fn count_call(&self, slot: SlotId, code: Code) {
        let index = (code as usize).min(16);
        self.slots[slot.0].calls[index]
            .get_or_init(|| {
                let mut attributes = self.attributes(slot);
                attributes.push(KeyValue::new("status", code_name(code)));
                self.instruments.calls.bind(&attributes)
            })
            .add(1);
    }

    /// Counts a call refused by `limit` (`rate`, `quota`) of `plan`.
    pub(crate) fn count_refusal(&self, client: &'static str, plan: &str, limit: &'static str) {
        self.instruments.refusals.add(
            1,
            &[
                KeyValue::new("server", self.server),
                KeyValue::new("client_type", client),
                KeyValue::new("plan", plan.to_owned()),
                KeyValue::new("limit", limit),
            ],
        );
    }
}

impl ServerMetrics {
    /// Counts a call from `client` refused because the server was busy,
    /// for `reason` (`admission`, `shed`).
    pub(crate) fn count_overload(&self, client: &'static str, reason: &'static str) {
        self.instruments.overload.add(
            1,
            &[
                KeyValue::new("server", self.server),
                KeyValue::new("client_type", client),
                KeyValue::new("reason", reason),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_grpc_name() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(
            Code::Unauthenticated as usize,
            16,
            "the call counters hold 17 codes"
        );
    }

    #[test]
    fn unrouted_paths_share_one_label_and_slots_decode_back() {
        let metrics = ServerMetrics::new("web-bff", ["/tailor.web.v1.ShopService/GetProductPage"]);
        let page = metrics.slot("/tailor.web.v1.ShopService/GetProductPage", "web", true);
        let made_up = metrics.slot("/x.Y/Z", "web", false);
        let other_made_up = metrics.slot("/a.B/C", "web", false);
        assert_eq!(made_up.0, other_made_up.0);
        let labels = |slot| {
            metrics
                .attributes(slot)
                .into_iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels(page),
            [
                ("server".into(), "web-bff".into()),
                ("client_type".into(), "web".into()),
                (
                    "method".into(),
                    "tailor.web.v1.ShopService/GetProductPage".into()
                ),
                ("protocol".into(), "grpc-web".into()),
            ]
        );
        assert_eq!(labels(made_up)[2].1, "other");
        assert_eq!(labels(made_up)[3].1, "grpc");
        let health = metrics.slot("/grpc.health.v1.Health/Check", "mobile", false);
        assert_eq!(labels(health)[1].1, "mobile");
        assert_eq!(labels(health)[2].1, "grpc.health.v1.Health/Check");
    }

    #[test]
    fn a_bff_labels_its_own_client_type_a_service_the_connections() {
        let bff = ServerMetrics::new("mobile-bff", []);
        assert_eq!(bff.client_type(None), "mobile");
        assert_eq!(bff.client_type(Some(&ClientType("web"))), "mobile");
        let service = ServerMetrics::new("catalog", []);
        assert_eq!(service.client_type(None), "unknown");
        assert_eq!(service.client_type(Some(&ClientType("partner"))), "partner");
    }
}

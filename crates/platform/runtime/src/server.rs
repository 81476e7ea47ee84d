use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tailor_auth::AuthLayer;
use tailor_browser::BrowserAccess;
use tailor_interceptors::access_log::CallStats;
use tailor_interceptors::limits::{LimitLayer, Limiter};
use tailor_interceptors::metrics::ClientType;
use tailor_interceptors::routing::methods_of;

use crate::stack::{Admission, Faults, GrpcService, StackConfig, server_stack};
use tailor_trust::tls::{Accepted, Connection, accept, acceptor, socket_of};
use tailor_trust::{CallerLayer, MeshCredentials};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service, ServiceExt};

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long in-flight calls may take to finish after shutdown begins;
    /// connections still open then are closed.
    pub drain_timeout: Duration,
    /// Delay added before every call to the served services (not health or
    /// reflection): a chaos knob for deadline and resilience tests.
    pub injected_latency: Option<Duration>,
    /// Every n-th call to the served services answers UNAVAILABLE: a chaos
    /// knob for retry tests.
    pub inject_unavailable_every: Option<u64>,
    /// Where to answer plaintext health checks (probes), `GET /metrics`
    /// (Prometheus text) and `GET /livez`, beside the API port; nothing
    /// else is served there.
    pub admin_listen: Option<SocketAddr>,
    /// Transport limits.
    pub transport: TransportLimits,
    /// Admission shares and the bound on calls in flight.
    pub load: crate::stack::Load,
    /// On a server that admits BFFs over mutual TLS, serve each client
    /// type's connections on threads of their own ([`crate::lanes`]).
    pub lanes: bool,
    /// CPUs reserved for some client types' lanes.
    pub lane_cpus: crate::lanes::LaneCpus,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
            injected_latency: None,
            inject_unavailable_every: None,
            admin_listen: None,
            transport: TransportLimits::default(),
            load: crate::stack::Load::default(),
            lanes: true,
            lane_cpus: crate::lanes::LaneCpus::default(),
        }
    }
}

/// What one client can hold of a server's connections and memory before
/// any call is decoded.
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    /// Open connections; a client beyond waits in the listen backlog.
    pub max_connections: usize,
    /// Concurrent streams (calls) per HTTP/2 connection from a client.
    pub max_concurrent_streams: u32,
    /// Concurrent streams per HTTP/2 connection from a BFF, on a server
    /// that admits only BFFs (mutual TLS): a BFF carries all its clients'
    /// calls to a service on one connection, their open order watches
    /// included, so it needs as many streams as it has clients watching.
    pub mesh_max_concurrent_streams: u32,
    /// Bytes of one HTTP/2 header block (metadata).
    pub max_header_list_bytes: u32,
    /// Bytes of an HTTP/1.1 request head (grpc-web over HTTP/1.1).
    pub max_http1_head_bytes: usize,
    /// A connection that starts no call for this long is closed gracefully
    /// (calls still running on it finish first).
    pub idle_timeout: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_concurrent_streams: 256,
            mesh_max_concurrent_streams: 65_536,
            // Above the 16 KiB metadata bound of the stack, so that a
            // larger header block gets its clear RESOURCE_EXHAUSTED there;
            // beyond these the transport refuses on its own.
            max_header_list_bytes: 64 * 1024,
            max_http1_head_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// One process's gRPC server: its own services, `grpc.health.v1.Health`
/// (overall `""` and per service, Check and Watch) and server reflection v1
/// and v1alpha advertising exactly the services served here.
pub struct GrpcServer {
    name: &'static str,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    health: HealthReporter,
    stats: Arc<CallStats>,
    admission: Admission,
    browser: Option<BrowserAccess>,
    tls: Option<Arc<rustls::ServerConfig>>,
    admin_routes: RoutesBuilder,
    readiness: Option<tokio::sync::watch::Receiver<bool>>,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("name", &self.name)
            .field("services", &self.service_names)
            .finish()
    }
}

const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

impl GrpcServer {
    /// A server named `name` in logs (`catalog`, `web-bff`). The process's
    /// metrics are set up with the first server (`tailor_telemetry::metrics`).
    pub fn new(name: &'static str) -> Self {
        tailor_telemetry::metrics::install(name);
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        let mut admin_routes = RoutesBuilder::default();
        admin_routes.add_service(health_service.clone());
        routes.add_service(health_service);
        Self {
            name,
            routes,
            service_names: Vec::new(),
            health,
            stats: Arc::new(CallStats::default()),
            admission: Admission::default(),
            browser: None,
            tls: None,
            admin_routes,
            readiness: None,
        }
    }

    /// The server's name in logs, and the name its certificate bears.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Serves `service` and reports it in health and reflection.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Authenticates calls to the served services (health and reflection
    /// stay open).
    pub fn with_auth(mut self, auth: AuthLayer) -> Self {
        self.admission.auth = Some(auth);
        self
    }

    /// Limits calls per credential (after authentication) with `limiter`,
    /// one for every connection.
    pub fn with_limits(mut self, limiter: Arc<Limiter>) -> Self {
        self.admission.limits = Some(LimitLayer::new(limiter));
        self
    }

    /// Limits calls per credential (after authentication) like
    /// [`with_limits`](Self::with_limits), counting in `limits`, a store
    /// every replica of the server shares.
    pub fn with_shared_limits(
        mut self,
        plans: std::collections::HashMap<String, tailor_interceptors::limits::Plan>,
        limits: Arc<dyn tailor_interceptors::shared_limits::SharedLimits>,
    ) -> Self {
        self.admission.shared_limits = Some(
            tailor_interceptors::shared_limits::SharedLimitLayer::new(plans, limits),
        );
        self
    }

    /// Admits browsers: CORS for `access.origins` and grpc-web (binary and
    /// text, HTTP/1.1 and HTTP/2) beside native gRPC on the same port.
    pub fn with_browser(mut self, access: BrowserAccess) -> Self {
        self.browser = Some(access);
        self
    }

    /// Serves the API over mutual TLS with `credentials` (this server's
    /// certificate from the stack's authority) and admits only the clients
    /// whose certificates name one of `callers` (`web-bff`); the user they
    /// call for comes from the identity token they sign. Plaintext calls
    /// and calls without a client certificate are refused with
    /// UNAUTHENTICATED, other certificates with PERMISSION_DENIED.
    pub fn with_mesh(
        mut self,
        credentials: &MeshCredentials,
        callers: impl IntoIterator<Item = String>,
    ) -> Result<Self, tailor_trust::TrustError> {
        self.tls = Some(credentials.server_config()?);
        self.admission.callers = Some(CallerLayer::new(self.name, callers));
        Ok(self)
    }

    /// Serves the API over TLS with `config` without asking clients for a
    /// certificate (a BFF's public listener).
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Reports the served services, and the overall `""` service, as
    /// SERVING only while `ready` holds true (a BFF's required downstream
    /// services are reachable), NOT_SERVING otherwise; `Watch` streams see
    /// every change. Shutdown makes them NOT_SERVING whatever `ready` says.
    pub fn with_readiness(mut self, ready: tokio::sync::watch::Receiver<bool>) -> Self {
        self.readiness = Some(ready);
        self
    }

    /// The health reporter, for services that change their own status.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Call counts by outcome.
    pub fn stats(&self) -> Arc<CallStats> {
        self.stats.clone()
    }

    fn reflection(&self) -> tonic_reflection::server::Builder<'static> {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(descriptors_for(&self.service_names))
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH)
            .with_service_name(REFLECTION_V1)
            .with_service_name(REFLECTION_V1ALPHA);
        for name in &self.service_names {
            builder = builder.with_service_name(*name);
        }
        builder
    }

    fn into_service(mut self, options: &ServeOptions) -> Prepared {
        let v1 = self
            .reflection()
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .build_v1()
            .expect("the embedded descriptor sets are valid");
        let v1alpha = self
            .reflection()
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .expect("the embedded descriptor sets are valid");
        self.routes.add_service(v1).add_service(v1alpha);
        let routes = self.routes.routes().prepare();
        let methods = methods_of(tailor_proto::FILE_DESCRIPTOR_SET, &self.service_names);
        self.stats.label_methods(methods.iter().cloned());
        let mesh = self.admission.callers.is_some();
        let config = StackConfig {
            server: self.name,
            stats: self.stats,
            browser: self.browser,
            methods,
            admission: self.admission,
            faults: Faults {
                latency: options.injected_latency,
                unavailable_every: options.inject_unavailable_every,
            },
            load: options.load,
            lanes: mesh && options.lanes,
        };
        Prepared {
            service: server_stack(routes, config),
            admin: self.admin_routes.routes().prepare(),
            service_names: self.service_names,
            health: self.health,
            tls: self.tls,
            readiness: self.readiness,
            mesh,
        }
    }

    /// Serves on `listener` until `shutdown` is cancelled, then reports
    /// NOT_SERVING, stops accepting, lets in-flight calls finish for up to
    /// the drain timeout, and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        options: ServeOptions,
    ) -> std::io::Result<()> {
        let admin = match options.admin_listen {
            Some(admin) => Some(TcpListener::bind(admin).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("binding the admin port {admin}: {e}"))
            })?),
            None => None,
        };
        self.serve_with_admin(listener, admin, shutdown, options)
            .await
    }

    /// Like [`GrpcServer::serve`], with the admin port already bound as
    /// `admin` (so a caller binding port 0 knows where it is);
    /// `options.admin_listen` is not used.
    pub async fn serve_with_admin(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: CancellationToken,
        options: ServeOptions,
    ) -> std::io::Result<()> {
        let name = self.name;
        let address = listener.local_addr()?;
        let prepared = self.into_service(&options);
        // Before anything is announced: lanes given CPUs this process may
        // not use refuse the start.
        let lanes = if prepared.mesh && options.lanes {
            Some(crate::lanes::Lanes::start(name, &options.lane_cpus)?)
        } else {
            None
        };
        let ready = prepared
            .readiness
            .as_ref()
            .is_none_or(|ready| *ready.borrow());
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        report(&prepared.health, &prepared.service_names, status).await;
        prepared
            .health
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        // Health turns NOT_SERVING first; only then do the ports stop.
        let stop_accepting = CancellationToken::new();
        let follower = tokio::spawn(follow_health(
            prepared.health.clone(),
            prepared.service_names.clone(),
            prepared.readiness.clone(),
            shutdown.clone(),
            stop_accepting.clone(),
            name,
        ));
        let shutdown = stop_accepting;
        let scheme = if prepared.tls.is_some() {
            "TLS"
        } else {
            "plaintext"
        };
        tracing::info!(server = name, %address, services = ?prepared.service_names, transport = scheme, "listening");
        // One line on stdout that the launcher (and people) can read.
        println!("{name} listening on {address}");

        let mut transport = options.transport;
        if prepared.mesh {
            transport.max_concurrent_streams = transport.mesh_max_concurrent_streams;
        }
        let mut connections = Connections::new(&transport);
        connections.lanes = lanes;
        let admin_task = admin.map(|admin| {
            let admin_address = admin.local_addr().ok();
            if let Some(admin_address) = admin_address {
                println!("{name} admin (plaintext health) on {admin_address}");
                println!("{name} metrics on http://{admin_address}/metrics");
            }
            let admin_service = admin_service(name, prepared.admin.clone());
            // Probes and scrapers have places of their own: a client holding
            // every API connection does not blind them, nor they it.
            let connections = Connections {
                slots: Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS)),
                lanes: None,
                ..connections.clone()
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                connections
                    .accept_loop(name, admin, None, admin_service, shutdown)
                    .await
            })
        });
        connections
            .accept_loop(
                name,
                listener,
                prepared.tls.map(acceptor),
                prepared.service,
                shutdown.clone(),
            )
            .await;
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        let _ = follower.await;
        tracing::info!(server = name, "draining in-flight calls");
        connections.tracker.close();
        tokio::select! {
            () = connections.tracker.wait() => tracing::info!(server = name, "drained, stopped"),
            () = tokio::time::sleep(options.drain_timeout) => {
                tracing::warn!(server = name, "drain timeout passed, closing remaining connections");
            }
        }
        // The last calls' metrics reach the OTLP collector too.
        if let Some(metrics) = tailor_telemetry::metrics::installed() {
            metrics.flush().await;
        }
        Ok(())
    }

    /// Binds `address` and serves on it; see [`GrpcServer::serve`].
    pub async fn bind_and_serve(
        self,
        address: SocketAddr,
        shutdown: CancellationToken,
        options: ServeOptions,
    ) -> std::io::Result<()> {
        let listener = TcpListener::bind(address).await?;
        self.serve(listener, shutdown, options).await
    }
}

/// The contract files that define `services`, with everything they import:
/// what a caller of this server needs to know, and nothing about the
/// services behind it (a BFF does not describe the downstream contracts).
fn descriptors_for(services: &[&'static str]) -> prost_types::FileDescriptorSet {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(tailor_proto::FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set is valid");
    let defines = |file: &prost_types::FileDescriptorProto| {
        file.service
            .iter()
            .any(|s| services.contains(&format!("{}.{}", file.package(), s.name()).as_str()))
    };
    let mut wanted: Vec<String> = set
        .file
        .iter()
        .filter(|f| defines(f))
        .map(|f| f.name().to_owned())
        .collect();
    let mut keep = std::collections::HashSet::new();
    while let Some(name) = wanted.pop() {
        if !keep.insert(name.clone()) {
            continue;
        }
        if let Some(file) = set.file.iter().find(|f| f.name() == name) {
            wanted.extend(file.dependency.iter().cloned());
        }
    }
    prost_types::FileDescriptorSet {
        file: set
            .file
            .into_iter()
            .filter(|f| keep.contains(f.name()))
            .collect(),
    }
}

/// What [`GrpcServer::into_service`] hands to the accept loops.
struct Prepared {
    service: GrpcService,
    admin: tonic::service::Routes,
    service_names: Vec<&'static str>,
    health: HealthReporter,
    tls: Option<Arc<rustls::ServerConfig>>,
    readiness: Option<tokio::sync::watch::Receiver<bool>>,
    /// Whether only BFFs call (mutual TLS).
    mesh: bool,
}

/// Sets every one of `services`, and the overall `""`, to `status`.
/// The health service name that is SERVING while the process serves,
/// whatever its downstream services do, until its drain ends: what a
/// liveness probe asks. (A BFF's own services and `""` follow its required
/// downstreams, for readiness; restarting a BFF would not bring a catalog
/// back.)
pub const LIVENESS: &str = "liveness";

async fn report(health: &HealthReporter, services: &[&'static str], status: ServingStatus) {
    for service_name in services {
        health.set_service_status(*service_name, status).await;
    }
    health.set_service_status("", status).await;
}

/// Keeps health as readiness says until `shutdown`; then reports
/// NOT_SERVING *before* cancelling `stop_accepting`, so a prober or a
/// watcher learns the server is going before its port closes, and ends
/// the `Watch` streams.
async fn follow_health(
    health: HealthReporter,
    services: Vec<&'static str>,
    mut readiness: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: CancellationToken,
    stop_accepting: CancellationToken,
    name: &'static str,
) {
    loop {
        let changed = async {
            match readiness.as_mut() {
                Some(ready) => ready.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            still = changed => {
                let Some(ready) = readiness.as_mut() else { continue };
                if !still {
                    // Nobody judges readiness any more: keep the last word.
                    readiness = None;
                    continue;
                }
                let serving = *ready.borrow_and_update();
                let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
                if serving {
                    tracing::info!(server = name, "required downstreams reachable: SERVING");
                } else {
                    tracing::warn!(server = name, "a required downstream is unreachable: NOT_SERVING");
                }
                report(&health, &services, status).await;
            }
        }
    }
    report(&health, &services, ServingStatus::NotServing).await;
    stop_accepting.cancel();
    // Watchers have been told; ending their streams lets the drain finish
    // without waiting for them (they could watch for ever). Connections
    // are closing, so no new check can ask in the meantime.
    tokio::task::yield_now().await;
    let mut health = health;
    for service_name in services.iter().copied().chain(["", LIVENESS]) {
        health.clear_service_status(service_name).await;
    }
}

/// Connections the admin port holds open at once (health probes,
/// Prometheus scrapes), apart from the API port's.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// The connections of one port of a server: how many may be open, how
/// each is served (and, with lanes, on which runtime), and the tasks that
/// serve them (shared by the API and admin ports), which shutdown closes
/// gracefully and drains.
#[derive(Clone)]
struct Connections {
    builder: auto::Builder<TokioExecutor>,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
    tracker: TaskTracker,
    lanes: Option<Arc<crate::lanes::Lanes>>,
}

impl Connections {
    fn new(limits: &TransportLimits) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(limits.max_http1_head_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(limits.max_header_list_bytes);
        Self {
            builder,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            idle_timeout: limits.idle_timeout,
            tracker: TaskTracker::new(),
            lanes: None,
        }
    }

    /// Accepts on `listener` until `shutdown`; every connection is served
    /// on its own task (the TLS handshake included, so a slow client holds
    /// up no one else).
    async fn accept_loop(
        &self,
        name: &'static str,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        service: GrpcService,
        shutdown: CancellationToken,
    ) {
        loop {
            let slot = tokio::select! {
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                () = shutdown.cancelled() => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(server = name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let service = service.clone();
            let tls = tls.clone();
            let shutdown = shutdown.clone();
            self.tracker.spawn(async move {
                let _slot = slot;
                if let Err(error) = this.serve_connection(stream, tls, service, shutdown).await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            });
        }
    }

    async fn serve_connection(
        &self,
        stream: TcpStream,
        tls: Option<tokio_rustls::TlsAcceptor>,
        service: GrpcService,
        shutdown: CancellationToken,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // A token of the connection's own: the connection looks at it every
        // time it wakes, and a token locks to be looked at. Shared by every
        // connection, that lock would make one lane's calls wait for a
        // thread of another that was descheduled holding it.
        let shutdown = shutdown.child_token();
        let last_call = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
        let addresses = connect_info(&stream);
        let (mut io, connection, service) = match tls {
            Some(tls) => match accept(&tls, stream, self.idle_timeout).await? {
                // Plaintext on a TLS port: every call is answered with why.
                (io, Connection::Plaintext) => (io, Connection::Plaintext, refuse_plaintext()),
                (io, connection) => (io, connection, service),
            },
            None => (
                tokio_util::either::Either::Right(stream.into()),
                Connection::Plaintext,
                service,
            ),
        };
        let client_type = match &connection {
            Connection::Tls(Some(peer)) => peer
                .names()
                .iter()
                .map(|name| tailor_interceptors::context::client_type(name))
                .find(|client| *client != "unknown")
                .map(ClientType),
            _ => None,
        };
        let hyper_service = hyper_service(
            service,
            connection,
            client_type,
            addresses,
            last_call.clone(),
        );
        let lane = client_type.and_then(|client| self.lanes.as_ref()?.of(client.0).cloned());
        let (builder, idle_timeout) = (self.builder.clone(), self.idle_timeout);
        let serve = move |io| {
            serve_http(
                builder,
                idle_timeout,
                io,
                hyper_service,
                last_call,
                shutdown,
            )
        };
        let Some(lane) = lane else {
            return serve(io).await;
        };
        // The handshake named the calling BFF: its lane serves the rest.
        socket_of(&mut io).detach()?;
        lane.spawn(async move {
            socket_of(&mut io).attach()?;
            serve(io).await
        })
        .await
        .unwrap_or_else(|stopped| Err(Box::new(stopped)))
    }
}

/// Serves HTTP on `io` until the client closes it, it goes idle, or
/// `shutdown`, on the runtime it is called in.
async fn serve_http<S>(
    builder: auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    io: Accepted,
    hyper_service: S,
    last_call: Arc<std::sync::Mutex<tokio::time::Instant>>,
    shutdown: CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder
        .serve_connection(TokioIo::new(io), hyper_service)
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        let idle_at = *last_call.lock().unwrap_or_else(|e| e.into_inner()) + idle_timeout;
        tokio::select! {
            result = conn.as_mut() => return result,
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_at), if !closing => {
                if *last_call.lock().unwrap_or_else(|e| e.into_inner()) + idle_timeout
                    <= tokio::time::Instant::now()
                {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The connection's addresses, as tonic's own server records them: a
/// handler reads the caller's address with `Request::remote_addr` (the web
/// BFF limits sign-in attempts per address).
fn connect_info(stream: &TcpStream) -> tonic::transport::server::TcpConnectInfo {
    tonic::transport::server::TcpConnectInfo {
        local_addr: stream.local_addr().ok(),
        remote_addr: stream.peer_addr().ok(),
    }
}

/// The admin port: `GET /metrics` (the server's series as Prometheus
/// text) and `GET /livez` (`ok` while the process serves) as plain HTTP,
/// over HTTP/1.1 or HTTP/2, chosen by path before anything asks for gRPC;
/// everything else is gRPC health behind the content-type check.
fn admin_service(name: &'static str, health: tonic::service::Routes) -> GrpcService {
    let grpc = tailor_interceptors::protocol::ContentTypeLayer::new(false).layer(health);
    tower::util::BoxCloneService::new(tower::service_fn(
        move |request: tailor_interceptors::HttpRequest| {
            let page = match request.uri().path() {
                "/metrics" => Some(true),
                "/livez" => Some(false),
                _ => None,
            };
            let grpc = grpc.clone();
            async move {
                let Some(metrics) = page else {
                    return grpc.oneshot(request).await;
                };
                if !matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
                    let mut response = http::Response::new(Body::empty());
                    *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
                    response.headers_mut().insert(
                        http::header::ALLOW,
                        http::HeaderValue::from_static("GET, HEAD"),
                    );
                    return Ok(response);
                }
                let (content_type, text) = if metrics {
                    let text = tailor_telemetry::metrics::installed()
                        .map(|m| m.render(Some(name)))
                        .unwrap_or_default();
                    (tailor_telemetry::metrics::PROMETHEUS_CONTENT_TYPE, text)
                } else {
                    ("text/plain; charset=utf-8", "ok\n".to_owned())
                };
                let mut response = http::Response::new(Body::new(text));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(content_type),
                );
                Ok(response)
            }
        },
    ))
}

/// What a TLS port answers a client that speaks plaintext to it.
fn refuse_plaintext() -> GrpcService {
    tower::util::BoxCloneService::new(tower::service_fn(|_request| async {
        Ok(tailor_interceptors::status_response(
            tonic::Status::unauthenticated(
                "this port accepts TLS only (plaintext health checks are served on the admin port)",
            ),
        ))
    }))
}

/// Adapts the tower service to hyper, one clone per connection; every
/// request carries what is known about its `connection` (and the client
/// type its certificate names, for metrics) and its `addresses`.
fn hyper_service(
    service: GrpcService,
    connection: Connection,
    client_type: Option<ClientType>,
    addresses: tonic::transport::server::TcpConnectInfo,
    last_call: Arc<std::sync::Mutex<tokio::time::Instant>>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        *last_call.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(connection.clone());
        request.extensions_mut().insert(addresses.clone());
        if let Some(client_type) = client_type {
            request.extensions_mut().insert(client_type);
        }
        service.clone().oneshot(request)
    })
}

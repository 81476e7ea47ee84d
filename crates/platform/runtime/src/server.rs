use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tailor_auth::AuthLayer;
use tailor_browser::BrowserAccess;
use tailor_interceptors::access_log::CallStats;
use tailor_interceptors::limits::{LimitLayer, Limiter};
use tailor_interceptors::routing::methods_of;

use crate::stack::{Admission, Faults, GrpcService, StackConfig, server_stack};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Service, ServiceExt};

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
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
            injected_latency: None,
            inject_unavailable_every: None,
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
    /// A server named `name` in logs (`catalog`, `web-bff`).
    pub fn new(name: &'static str) -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        Self {
            name,
            routes,
            service_names: Vec::new(),
            health,
            stats: Arc::new(CallStats::default()),
            admission: Admission::default(),
            browser: None,
        }
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

    /// Admits browsers: CORS for `access.origins` and grpc-web (binary and
    /// text, HTTP/1.1 and HTTP/2) beside native gRPC on the same port.
    pub fn with_browser(mut self, access: BrowserAccess) -> Self {
        self.browser = Some(access);
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

    fn into_service(
        mut self,
        options: &ServeOptions,
    ) -> (GrpcService, Vec<&'static str>, HealthReporter) {
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
        let config = StackConfig {
            server: self.name,
            stats: self.stats,
            browser: self.browser,
            methods: methods_of(tailor_proto::FILE_DESCRIPTOR_SET, &self.service_names),
            admission: self.admission,
            faults: Faults {
                latency: options.injected_latency,
                unavailable_every: options.inject_unavailable_every,
            },
        };
        (
            server_stack(routes, config),
            self.service_names,
            self.health,
        )
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
        let name = self.name;
        let address = listener.local_addr()?;
        let (service, service_names, health) = self.into_service(&options);
        for service_name in &service_names {
            health
                .set_service_status(*service_name, ServingStatus::Serving)
                .await;
        }
        health.set_service_status("", ServingStatus::Serving).await;
        tracing::info!(server = name, %address, services = ?service_names, "listening");
        // One line on stdout that the launcher (and people) can read.
        println!("{name} listening on {address}");

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .max_concurrent_streams(1024);
        let graceful = GracefulShutdown::new();

        loop {
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
            let connection = builder
                .serve_connection(TokioIo::new(stream), hyper_service(service.clone()))
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            });
        }

        for service_name in &service_names {
            health
                .set_service_status(*service_name, ServingStatus::NotServing)
                .await;
        }
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        drop(listener);
        tracing::info!(server = name, "draining in-flight calls");
        tokio::select! {
            () = graceful.shutdown() => tracing::info!(server = name, "drained, stopped"),
            () = tokio::time::sleep(options.drain_timeout) => {
                tracing::warn!(server = name, "drain timeout passed, closing remaining connections");
            }
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

/// Adapts the tower service to hyper, one clone per connection.
fn hyper_service(
    service: GrpcService,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        service.clone().oneshot(request.map(Body::new))
    })
}

//! How every Tailor process runs, BFF or downstream service alike: one
//! [`GrpcServer`] that serves the process's gRPC services beside
//! `grpc.health.v1` and server reflection (v1 and v1alpha) on one port,
//! over HTTP/2 and HTTP/1.1, through the shared interceptor stack, and
//! drains in-flight calls on SIGTERM or SIGINT; [`stack`], the one function
//! that puts every layer of every server in order; shared flags and logging
//! set-up.
//!
//! It holds no business logic and no cross-cutting policy of its own:
//! policies are layers in `tailor-interceptors`, `tailor-auth` and
//! `tailor-browser`.

#![forbid(unsafe_code)]

pub mod cli;
pub mod lanes;
pub mod logging;
mod server;
pub mod shutdown;
pub mod stack;

pub use server::{GrpcServer, LIVENESS, ServeOptions, TransportLimits};
pub use tokio_util::sync::CancellationToken;

/// Every process that links the runtime allocates through jemalloc. A call
/// allocates and frees many small buffers on several threads (headers,
/// decoded messages, encode buffers); glibc's allocator (malloc, free and
/// consolidating freed chunks) took about a fifth of the web BFF's CPU
/// and a sixth of the catalog's in `perf` profiles. With
/// jemalloc the stack served 1,514 web pages/s against 1,254, and the web
/// BFF spent 0.44 ms of CPU a page against 0.54 (`tailor-bench load
/// --scenario web-page`, concurrency 32), with a few MiB more RSS.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What a server binary is, which decides how its API is secured.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// A downstream service: mutual TLS only, admitting these BFFs.
    Service(&'a cli::CallerArgs),
    /// A BFF: plaintext, or TLS when `--tls-cert` is given.
    Bff,
}

/// The body of every server binary's `main`: logging and traces, build,
/// secure as `role` says, bind, serve until SIGTERM/SIGINT, then export the
/// spans still batched; a failure is one line on stderr and exit code 1.
/// `build` runs after traces are set up, so its layers and channels trace.
pub async fn serve_main<E: std::fmt::Display>(
    binary: &str,
    listen: std::net::SocketAddr,
    args: &cli::ServerArgs,
    role: Role<'_>,
    build: impl std::future::Future<Output = Result<GrpcServer, E>>,
) -> std::process::ExitCode {
    args.init_logging();
    // `tailor-web-bff` serves as `web-bff`, the default service name.
    let traces = match logging::init_traces(binary.strip_prefix("tailor-").unwrap_or(binary)) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("{binary}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown::on_signal();
    let run = async {
        let mut server = build.await.map_err(|e| e.to_string())?;
        server = match role {
            Role::Service(callers) => {
                let credentials = args.mesh_credentials(server.name())?;
                server
                    .with_mesh(&credentials, callers.allowed_callers.iter().cloned())
                    .map_err(|e| e.to_string())?
            }
            Role::Bff => match args.public_tls()? {
                Some(tls) => server.with_tls(tls),
                None => server,
            },
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("binding {listen}: {e}"))?;
        server
            .serve(listener, shutdown, args.serve_options())
            .await
            .map_err(|e| e.to_string())
    };
    let outcome = run.await;
    traces.shutdown().await;
    logging::flush();
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{binary}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

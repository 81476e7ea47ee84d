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
pub mod logging;
mod server;
pub mod shutdown;
pub mod stack;

pub use server::{GrpcServer, ServeOptions};
pub use tokio_util::sync::CancellationToken;

/// The body of every server binary's `main`: logging, build, bind, serve
/// until SIGTERM/SIGINT; a failure is one line on stderr and exit code 1.
pub async fn serve_main<E: std::fmt::Display>(
    binary: &str,
    listen: std::net::SocketAddr,
    args: &cli::ServerArgs,
    build: impl std::future::Future<Output = Result<GrpcServer, E>>,
) -> std::process::ExitCode {
    args.init_logging();
    let shutdown = shutdown::on_signal();
    let run = async {
        let server = build.await.map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("binding {listen}: {e}"))?;
        server
            .serve(listener, shutdown, args.serve_options())
            .await
            .map_err(|e| e.to_string())
    };
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{binary}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

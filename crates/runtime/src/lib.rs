//! How every Tailor process runs, BFF or downstream service alike: one
//! [`GrpcServer`] that serves the process's gRPC services beside
//! `grpc.health.v1` and server reflection (v1 and v1alpha) on one port,
//! over HTTP/2 and HTTP/1.1, through the shared interceptor stack, and
//! drains in-flight calls on SIGTERM or SIGINT; [`downstream`] channels
//! for calling other services; and logging set-up.
//!
//! It holds no business logic and no cross-cutting policy of its own:
//! policies are layers in `tailor-interceptors`.

#![forbid(unsafe_code)]

pub mod cli;
pub mod downstream;
pub mod logging;
mod server;
pub mod shutdown;

pub use server::{GrpcServer, ServeOptions};
pub use tokio_util::sync::CancellationToken;

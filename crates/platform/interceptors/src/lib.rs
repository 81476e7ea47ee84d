//! The server-side cross-cutting concerns of every Tailor server, written
//! once.
//!
//! The pattern's main risk is that each Backend for Frontend grows its own
//! copy of request ids, deadlines, logging, error mapping and limits. Here
//! each concern is one module holding a tower `Layer`, usable alone; the
//! one function that puts every server's layers in order is
//! `tailor_runtime::stack::server_stack`. The call's context, established
//! here by [`propagate::ContextLayer`], travels on to downstream calls
//! through `tailor-channel`.
//!
//! What is *not* here: credentials (`tailor-auth`), browsers
//! (`tailor-browser`), calling other services (`tailor-channel`), and
//! anything about one client type's API.

#![forbid(unsafe_code)]

pub mod access_log;
pub mod admission;
pub mod compression;
pub mod context;
pub mod deadline;
pub mod error;
pub mod fault;
pub mod input;
pub mod limits;
pub mod message_size;
pub mod metrics;
pub mod propagate;
pub mod protocol;
pub mod refusals;
pub mod request_id;
pub mod routing;
pub mod shared_limits;
pub mod shed;
pub mod streams;
#[cfg(test)]
mod testing;
pub mod trace;

pub use context::{CallContext, Identity};

/// The request and response types every layer here works on: plain HTTP
/// with tonic's body, so layers compose with tonic's routes directly.
pub type HttpRequest = http::Request<tonic::body::Body>;
/// See [`HttpRequest`].
pub type HttpResponse = http::Response<tonic::body::Body>;

/// A boxed future, as layers and stores that look things up return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A gRPC answer that carries only a status (a "trailers-only" response).
pub fn status_response(status: tonic::Status) -> HttpResponse {
    status.into_http()
}

/// Whether `path` is a health or reflection call. Probes and tools must
/// always get through and see the truth: no credentials, no limits, no
/// injected faults.
pub fn is_probe(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// The gRPC method of a request, `/package.Service/Method`.
pub fn grpc_method<B>(request: &http::Request<B>) -> &str {
    request.uri().path()
}

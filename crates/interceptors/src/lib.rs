//! The cross-cutting concerns of every Tailor server, written once.
//!
//! The pattern's main risk is that each Backend for Frontend grows its own
//! copy of authentication, request ids, deadlines, logging and error
//! mapping. Here each concern is one module holding a tower `Layer`, usable
//! alone; [`stack::server_stack`] composes them in the one documented order
//! that every BFF and downstream service uses, and [`propagate::Outbound`]
//! carries the call's context onto every downstream call.
//!
//! What is *not* here: anything about one client type's API. The partner
//! BFF's key store, the web BFF's pages, the mobile BFF's shapes live in
//! their own crates; this crate only defines the seams (for example
//! [`auth::ApiKeyStore`]) they plug into.

#![forbid(unsafe_code)]

pub mod access_log;
pub mod auth;
pub mod browser;
pub mod compression;
pub mod context;
pub mod deadline;
pub mod error;
pub mod fault;
pub mod limits;
pub mod propagate;
pub mod request_id;
pub mod retry;
pub mod stack;

pub use context::{CallContext, Identity};

/// The request and response types every layer here works on: plain HTTP
/// with tonic's body, so layers compose with tonic's routes directly.
pub type HttpRequest = http::Request<tonic::body::Body>;
/// See [`HttpRequest`].
pub type HttpResponse = http::Response<tonic::body::Body>;

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

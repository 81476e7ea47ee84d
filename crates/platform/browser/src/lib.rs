//! Browser access to a BFF on its own port, with no proxy in front:
//! [`cors`] grants allowed origins, [`grpc_web`] refuses malformed grpc-web
//! input with a clear status, and tonic's grpc-web translation turns
//! `application/grpc-web[-text]` calls (HTTP/1.1 or HTTP/2, unary and server
//! streaming) into native gRPC calls for the shared stack below, and their
//! answers back, trailers as the final frame of the body.
//!
//! `tailor_runtime::stack::server_stack` places these layers inside the
//! request id and access log (so browser refusals carry an id and a log
//! line like every other answer) and outside error mapping, deadline,
//! routing, auth and context, which therefore see the same native gRPC call
//! whichever wire format the client spoke.

#![forbid(unsafe_code)]

pub mod cors;
pub mod grpc_web;

pub use cors::{AllowedOrigins, CorsLayer, OriginError};
pub use grpc_web::GrpcWebGuardLayer;

/// The largest request message browsers may send by default. Shop requests
/// are a few hundred bytes; a limit far above that only invites abuse.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;

/// How a BFF admits browsers.
#[derive(Debug, Clone)]
pub struct BrowserAccess {
    /// Origins whose pages may call with the user's credentials.
    pub origins: AllowedOrigins,
    /// Largest request message accepted; the stack holds native gRPC
    /// calls to it too when it is below the server's own bound.
    pub max_request_bytes: usize,
}

impl BrowserAccess {
    /// Admits pages from `origins`, with the default request size limit.
    pub fn new(origins: AllowedOrigins) -> Self {
        Self {
            origins,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

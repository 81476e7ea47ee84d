//! Who may call whom behind the BFFs. Only a BFF may call a downstream
//! service, and the end user it calls for is verified, not asserted:
//!
//! - every process has a certificate from the stack's authority
//!   ([`authority`]), naming the process (`catalog`, `web-bff`);
//! - downstream services serve their API over mutual TLS only and learn
//!   which BFF calls from its client certificate ([`tls`]);
//! - a BFF sends the user it calls for as a short-lived token signed with
//!   its certificate's key, for one downstream service ([`identity`]);
//! - [`CallerLayer`] admits a call to a downstream service only from an
//!   allowed BFF, and turns a valid identity token into the call's
//!   [`Identity`](tailor_interceptors::context::Identity).
//!
//! Plaintext health checks (probes) are answered on a separate admin port
//! that serves nothing else.

#![forbid(unsafe_code)]

pub mod authority;
pub mod identity;
mod layer;
pub mod tls;

pub use authority::{Authority, TrustFiles};
pub use identity::{IDENTITY_HEADER, IdentitySigner, IdentityVerifier};
pub use layer::{CallerLayer, CallerService};
pub use tls::{Connection, MeshCredentials, Peer};

/// Why trust material could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A certificate or key is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

impl TrustError {
    fn invalid(what: impl std::fmt::Display) -> Self {
        TrustError::Invalid(what.to_string())
    }
}

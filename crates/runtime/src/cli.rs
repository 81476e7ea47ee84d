//! Flags every server binary shares. Each binary adds its own (listen
//! address, downstream addresses) next to these with `#[command(flatten)]`.

use std::path::PathBuf;
use std::time::Duration;

use tailor_interceptors::auth::{JwtAuthenticator, JwtKey};

use crate::ServeOptions;

/// The HS256 secret used when none is configured: fine for a laptop, never
/// for production (the BFFs log a warning when they run with it).
pub const DEVELOPMENT_JWT_SECRET: &str = "tailor-development-secret-change-me";

/// Shared server flags; every flag also reads an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Directory for this process's data files (created if missing).
    #[arg(long, env = "TAILOR_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Log format: `text` or `json`.
    #[arg(long, env = "TAILOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Milliseconds in-flight calls get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "TAILOR_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,

    /// Chaos knob: milliseconds of delay added to every call (0 = off).
    #[arg(long, env = "TAILOR_INJECT_LATENCY_MS", default_value_t = 0)]
    pub inject_latency_ms: u64,

    /// Chaos knob: every n-th call answers UNAVAILABLE (0 = off).
    #[arg(long, env = "TAILOR_INJECT_UNAVAILABLE_EVERY", default_value_t = 0)]
    pub inject_unavailable_every: u64,
}

impl ServerArgs {
    /// Installs logging as the flags say.
    pub fn init_logging(&self) {
        crate::logging::init(self.log_format == "json");
    }

    /// The serve options the flags describe.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            injected_latency: (self.inject_latency_ms > 0)
                .then(|| Duration::from_millis(self.inject_latency_ms)),
            inject_unavailable_every: (self.inject_unavailable_every > 0)
                .then_some(self.inject_unavailable_every),
        }
    }
}

/// How the web and mobile BFFs verify bearer tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct JwtArgs {
    /// HS256 shared secret (ignored when an RS256 public key is given).
    #[arg(long, env = "TAILOR_JWT_HS256_SECRET", default_value = DEVELOPMENT_JWT_SECRET, hide_default_value = true)]
    pub jwt_hs256_secret: String,

    /// PEM file with the RS256 public key of the token issuer.
    #[arg(long, env = "TAILOR_JWT_RS256_PUBLIC_KEY")]
    pub jwt_rs256_public_key: Option<PathBuf>,

    /// Required `iss` claim, if any.
    #[arg(long, env = "TAILOR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
}

impl JwtArgs {
    /// A verifier for tokens whose `aud` is `audience`.
    pub fn authenticator(&self, audience: &str) -> Result<JwtAuthenticator, String> {
        let key = match &self.jwt_rs256_public_key {
            Some(path) => JwtKey::Rs256Pem(
                std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?,
            ),
            None => {
                if self.jwt_hs256_secret == DEVELOPMENT_JWT_SECRET {
                    tracing::warn!("verifying tokens with the built-in development secret");
                }
                JwtKey::Hs256(self.jwt_hs256_secret.as_bytes().to_vec())
            }
        };
        JwtAuthenticator::new(&key, audience, self.jwt_issuer.as_deref())
    }
}

//! Flags every server binary shares. Each binary adds its own (listen
//! address, downstream addresses) next to these with `#[command(flatten)]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tailor_trust::{MeshCredentials, TrustFiles};

use crate::ServeOptions;

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

    /// The stack's trust directory: `ca.crt` (the authority every process
    /// trusts) and this process's `<name>.crt` and `<name>.key`. Downstream
    /// services serve their API over mutual TLS with it; BFFs call them
    /// with it. `tailor up` creates one in its data directory; `tailor
    /// trust init <dir>` creates one by hand.
    #[arg(long, env = "TAILOR_TRUST_DIR")]
    pub trust_dir: Option<PathBuf>,

    /// Address of a plaintext port that answers `grpc.health.v1` only, for
    /// probes that cannot present a client certificate.
    #[arg(long, env = "TAILOR_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Serve the API over TLS with this certificate chain (PEM); for a BFF's
    /// public listener. Needs `--tls-key`.
    #[arg(long, env = "TAILOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "TAILOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Which BFFs a downstream service admits.
#[derive(Debug, Clone, clap::Args)]
pub struct CallerArgs {
    /// The client certificate names admitted to the API, comma-separated.
    #[arg(
        long,
        env = "TAILOR_ALLOWED_CALLERS",
        value_delimiter = ',',
        default_value = "web-bff,mobile-bff,partner-bff"
    )]
    pub allowed_callers: Vec<String>,
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
            admin_listen: self.admin_listen,
            ..ServeOptions::default()
        }
    }

    /// The credentials of the process `name` from `--trust-dir`, which is
    /// required: the BFFs and the downstream services talk over mutual TLS
    /// only.
    pub fn mesh_credentials(&self, name: &str) -> Result<MeshCredentials, String> {
        let dir = self.trust_dir.as_ref().ok_or_else(|| {
            "--trust-dir (or TAILOR_TRUST_DIR) is required: BFFs and downstream services \
             talk over mutual TLS only; `tailor trust init <dir>` creates a development one"
                .to_owned()
        })?;
        MeshCredentials::load(&TrustFiles::new(dir), name).map_err(|e| e.to_string())
    }

    /// The public TLS configuration from `--tls-cert`/`--tls-key`, if given.
    pub fn public_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        tailor_trust::tls::server_config(&read(cert)?, &read(key)?, None)
            .map(Some)
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))
    }
}

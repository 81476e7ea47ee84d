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

    /// Write the log to this file instead of stderr, rotated by size
    /// (`<path>.1` the newest rotated, up to `--log-keep`); created 0600.
    /// What a process prints before its logging starts still goes to
    /// stderr.
    #[arg(long, env = "TAILOR_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// The size at which `--log-file` is rotated, in bytes.
    #[arg(long, env = "TAILOR_LOG_MAX_BYTES", default_value_t = crate::logging::DEFAULT_MAX_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_max_bytes: u64,

    /// Rotated files of `--log-file` kept (`<path>.1` .. `<path>.<n>`);
    /// 0 keeps none.
    #[arg(long, env = "TAILOR_LOG_KEEP", default_value_t = crate::logging::DEFAULT_KEEP)]
    pub log_keep: usize,

    /// Calls in flight beyond which new calls are refused at once
    /// (RESOURCE_EXHAUSTED with RetryInfo; health and reflection never).
    /// Default 256 on BFFs, none on downstream services (their
    /// `--admission` shares bound them); 0 turns shedding off.
    #[arg(long, env = "TAILOR_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,

    /// Downstream services: calls run at once (`slots=<n>`, default two
    /// per CPU) and each calling client type's share, as `<client
    /// type>=<calls at once>:<queue>`, comma-separated (e.g.
    /// `slots=4,web=16:64,mobile=2:32`). A freed slot goes to the client
    /// type with the fewest calls running; a call beyond its client type's
    /// queue is refused at once with RESOURCE_EXHAUSTED and RetryInfo.
    /// Client types left out may use any idle slot and queue 256 calls.
    #[arg(long, env = "TAILOR_ADMISSION", default_value = "")]
    pub admission: tailor_interceptors::admission::Shares,

    /// Downstream services: serve each calling BFF's connections on
    /// threads of their own, one set per client type (web, mobile,
    /// partner), so that one BFF's flood queues on its own threads and the
    /// others' calls are read and run without waiting behind it (`false`
    /// serves every connection on the same threads).
    #[arg(long, env = "TAILOR_LANES", default_value_t = true, action = clap::ArgAction::Set)]
    pub lanes: bool,

    /// Downstream services: CPUs reserved for client types' lanes, as
    /// `<client type>=<cpu>` or `=<first>-<last>`, comma-separated (e.g.
    /// `web=0-3,mobile=4-5,partner=6`). A lane's threads then run on its
    /// CPUs only, so a flood of one client type cannot take the CPU time
    /// of another's; a lane not named runs on any CPU. Default: none
    /// reserved.
    #[arg(long, env = "TAILOR_LANE_CPUS", default_value = "")]
    pub lane_cpus: crate::lanes::LaneCpus,

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
    /// Installs logging as the flags say. A log file that cannot be opened
    /// is said on stderr, and the log goes there instead.
    pub fn init_logging(&self) {
        let json = self.log_format == "json";
        let Some(path) = &self.log_file else {
            crate::logging::init(json);
            return;
        };
        match crate::logging::RotatingFile::open(path, self.log_max_bytes, self.log_keep) {
            Ok(file) => crate::logging::init_to_file(json, file),
            Err(error) => {
                eprintln!(
                    "cannot write the log to {}: {error}; logging to stderr",
                    path.display()
                );
                crate::logging::init(json);
            }
        }
    }

    /// How much load the flags let the servers take.
    pub fn load(&self) -> crate::stack::Load {
        crate::stack::Load {
            shares: self.admission,
            max_in_flight: self.max_in_flight,
        }
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
            load: self.load(),
            lanes: self.lanes,
            lane_cpus: self.lane_cpus.clone(),
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

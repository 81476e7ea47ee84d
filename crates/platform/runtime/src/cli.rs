//! Flags every server binary shares. Each binary adds its own (listen
//! address, downstream addresses) next to these with `#[command(flatten)]`.

use std::path::PathBuf;
use std::time::Duration;

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

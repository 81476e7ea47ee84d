//! Lanes: a downstream service serves each client type's connections on
//! threads of their own.
//!
//! Fair admission decides which calls a service runs, but a call's work
//! starts before it: reading the HTTP/2 frames, decrypting them, waking the
//! task. On one runtime, a web call arriving while a flooded mobile BFF
//! keeps the service busy waits behind every mobile task already queued,
//! however fairly its slot is then handed out. With lanes, the connection
//! is handed, once its TLS handshake has named the calling BFF, to a
//! runtime kept for that client type. The operating system then shares the
//! CPU between the client types' threads: a web thread that has slept
//! while the mobile one worked is run as soon as a web call arrives, and a
//! mobile flood queues on the mobile threads only.

use std::sync::Arc;

use tailor_interceptors::context::CLIENT_TYPES;
use tokio::runtime::{Handle, Runtime};

/// One runtime per client type, each with as many worker threads as the
/// process may use CPUs.
pub(crate) struct Lanes {
    lanes: Vec<(&'static str, Runtime)>,
}

impl Lanes {
    /// Starts the lanes of `server`, their threads named
    /// `<server>-<client type>`.
    pub(crate) fn start(server: &'static str) -> std::io::Result<Arc<Self>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Callers of no known client type (none in this stack) are served
        // where connections are accepted.
        let lanes = CLIENT_TYPES
            .iter()
            .filter(|&&client| client != "unknown")
            .map(|&client| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name(format!("{server}-{client}"))
                    .enable_all()
                    .build()?;
                Ok((client, runtime))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Arc::new(Self { lanes }))
    }

    /// The runtime that serves `client`'s connections.
    pub(crate) fn of(&self, client: &str) -> Option<&Handle> {
        self.lanes
            .iter()
            .find(|(name, _)| *name == client)
            .map(|(_, runtime)| runtime.handle())
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        // Dropped at the end of the server's drain, inside the runtime
        // that accepted connections: a lane does not block it.
        for (_, runtime) in self.lanes.drain(..) {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.lanes.iter().map(|(name, _)| name))
            .finish()
    }
}

//! Turning SIGTERM and SIGINT into a [`CancellationToken`] every part of a
//! process can watch; and, for a process a supervisor started, the death
//! of that supervisor.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Set by a supervisor (`tailor up`) to its own pid: the process drains and
/// exits when that parent is gone, even if it was killed without a chance
/// to stop its children.
pub const PARENT_PID_ENV: &str = "TAILOR_PARENT_PID";

/// A token cancelled on the first SIGTERM or SIGINT (Ctrl-C), or when the
/// parent named by [`PARENT_PID_ENV`] is gone.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    if let Some(parent) = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
    {
        let trigger = token.clone();
        tokio::spawn(async move {
            parent_gone(parent).await;
            trigger.cancel();
        });
    }
    token
}

/// Resolves once this process's parent is no longer `parent` (it died and
/// the process was handed to another).
async fn parent_gone(parent: u32) {
    #[cfg(unix)]
    loop {
        if std::os::unix::process::parent_id() != parent {
            tracing::warn!(parent, "the supervising process is gone, draining");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    #[cfg(not(unix))]
    {
        let _ = (parent, Duration::ZERO);
        std::future::pending::<()>().await
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, draining"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

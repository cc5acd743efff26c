//! Graceful stop: the first SIGINT or SIGTERM asks running work to stop at the next step
//! boundary (leases are released, state is written); a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether a stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Starts listening for SIGINT and SIGTERM (call once, inside the runtime).
pub fn listen() {
    tokio::spawn(async {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            let got = async {
                match term.as_mut() {
                    Some(t) => tokio::select! { _ = tokio::signal::ctrl_c() => "SIGINT", _ = t.recv() => "SIGTERM" },
                    None => tokio::signal::ctrl_c().await.map(|_| "SIGINT").unwrap_or("SIGINT"),
                }
            }
            .await;
            #[cfg(not(unix))]
            let got = tokio::signal::ctrl_c().await.map(|_| "interrupt").unwrap_or("interrupt");
            if REQUESTED.swap(true, Ordering::SeqCst) {
                eprintln!("tenantry: second {got}: exiting now");
                std::process::exit(130);
            }
            eprintln!("tenantry: {got}: finishing the steps in flight, then stopping (send again to exit at once)");
        }
    });
}

/// A stop was requested before `what` began: nothing of it was started.
#[derive(Debug, thiserror::Error)]
#[error("stopped by signal before: {what}; re-run to continue")]
pub struct Stopped {
    /// The work that was not started.
    pub what: String,
}

/// A boundary: errors with [`Stopped`] when a stop was requested, so that no new change (an
/// account creation, a change set, a stack operation) starts after the first signal.
pub fn check(what: impl std::fmt::Display) -> Result<(), Stopped> {
    if requested() {
        return Err(Stopped { what: what.to_string() });
    }
    Ok(())
}

//! Graceful stop: the first SIGINT or SIGTERM asks running work to stop at the next step
//! boundary ([`check`]) and ends every wait within [`POLL_MILLIS`] ms ([`bounded`]); leases are
//! released and state is written. A second one exits at once.

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
            eprintln!("tenantry: {got}: stopping: no new change starts, waits end now (what AWS was already asked to do goes on there); send again to exit at once");
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

/// A stop was requested while waiting for `what`: the wait ended early. What was waited for
/// (a stack operation, an account creation) goes on in AWS; the next run picks it up.
#[derive(Debug, thiserror::Error)]
#[error("{}", if *began { format!("stopped by signal while {what}; re-run to continue (what AWS was already asked to do goes on there)") } else { format!("stopped by signal before: {what}; re-run to continue") })]
pub struct Interrupted {
    /// What was being waited for.
    pub what: String,
    /// Whether the wait had begun (false: the stop was requested before it, so it never began).
    pub began: bool,
}

/// How often a wait looks for a stop request (milliseconds): the bound on how long any wait
/// outlives the first signal.
pub const POLL_MILLIS: u64 = 200;

/// Resolves once a stop was requested (looked at every [`POLL_MILLIS`] ms).
pub async fn stopping() {
    while !requested() {
        tokio::time::sleep(std::time::Duration::from_millis(POLL_MILLIS)).await;
    }
}

/// Runs `wait` (a waiter, a poll loop, a sleep) unless a stop is requested first: then it is
/// dropped within [`POLL_MILLIS`] ms and [`Interrupted`] names `what`. Use it only for waits,
/// never around a request that changes something (its answer would be lost).
pub async fn bounded<T>(
    what: impl std::fmt::Display,
    wait: impl std::future::Future<Output = T>,
) -> Result<T, Interrupted> {
    if requested() {
        return Err(Interrupted { what: what.to_string(), began: false });
    }
    tokio::select! {
        v = wait => Ok(v),
        _ = stopping() => Err(Interrupted { what: what.to_string(), began: true }),
    }
}

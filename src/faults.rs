//! Crash points for crash-safety tests. When `TENANTRY_CRASH_AT` names a point, the process
//! aborts there at once (no cleanup, no lease release, no state write), as `kill -9` would.
//! Unset in normal use; reading it costs one environment lookup per run.

use std::sync::OnceLock;

/// Aborts the process if `TENANTRY_CRASH_AT` equals `point`.
pub fn crash_point(point: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("TENANTRY_CRASH_AT").ok().filter(|s| !s.is_empty()));
    if target.as_deref() == Some(point) {
        eprintln!("tenantry: TENANTRY_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

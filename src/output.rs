//! Standard output that survives a closed pipe: `tenantry status | head -1` must not panic, and
//! `tenantry apply | head -1` must finish its work (and release its leases) after the reader has
//! gone. [`out!`](crate::out) writes one line to stdout; once the reader has closed the pipe, the
//! rest of the output is dropped and the command carries on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` and, if `newline`, a line feed to stdout, flushing it. A closed stdout (the
/// reader went away: `EPIPE`) ends all further output silently; other write errors are logged
/// once in the same way.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|_| if newline { stdout.write_all(b"\n") } else { Ok(()) })
        .and_then(|_| stdout.flush());
    if let Err(e) = written {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            tracing::warn!("standard output failed, output stops here: {e}");
        }
    }
}

/// `println!` for command output, which a closed pipe does not turn into a panic
/// ([`write`]).
#[macro_export]
macro_rules! out {
    () => { $crate::output::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*), true) };
}

/// `print!` for command output (no line feed), as [`out!`](crate::out).
#[macro_export]
macro_rules! out_nonl {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*), false) };
}

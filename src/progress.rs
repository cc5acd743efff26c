//! Progress display while waiting on AWS: spinners (indicatif) when stderr is a terminal, plain
//! log lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shared progress display for one run.
#[derive(Clone, Debug)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Spinners when stderr is a terminal and `enabled`; otherwise log lines only.
    pub fn new(enabled: bool) -> Progress {
        let multi = (enabled && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    /// Starts showing that `what` is being waited on. The returned handle clears the spinner
    /// when dropped or finished.
    pub fn wait(&self, what: String) -> Waiting {
        if self.multi.is_none() {
            tracing::info!("{what}");
        }
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Waiting { bar }
    }
}

/// A wait in progress; see [`Progress::wait`].
pub struct Waiting {
    bar: Option<ProgressBar>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

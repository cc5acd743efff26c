//! Polling until something finishes (a drift detection, a rollback, an account creation): one
//! look after another with exponential backoff, at most a total time, every pause bounded by a
//! stop signal ([`crate::shutdown::bounded`]).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// What one look found.
pub enum Look<T> {
    /// Finished, with this result.
    Done(T),
    /// Not yet: look again.
    NotYet,
}

enum Stop {
    NotYet,
    Failed(anyhow::Error),
}

/// Looks with `look` until it says [`Look::Done`], pausing between looks from `min_delay`
/// doubling up to `max_delay` (with jitter), for at most `total`. Errors: a look's error (at
/// once), `what` not finished within `total`, or [`crate::shutdown::Interrupted`] on a stop.
pub async fn until_done<T, F, Fut>(
    what: impl Display,
    (min_delay, max_delay): (Duration, Duration),
    total: Duration,
    look: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Look<T>>>,
{
    let mut look = look;
    let once = || {
        let next = look();
        async move {
            match next.await {
                Ok(Look::Done(v)) => Ok(v),
                Ok(Look::NotYet) => Err(Stop::NotYet),
                Err(e) => Err(Stop::Failed(e)),
            }
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(min_delay)
        .with_max_delay(max_delay)
        .with_jitter()
        .with_total_delay(Some(total))
        .without_max_times();
    let what = what.to_string();
    match crate::shutdown::bounded(&what, once.retry(backoff).when(|e| matches!(e, Stop::NotYet))).await? {
        Ok(v) => Ok(v),
        Err(Stop::Failed(e)) => Err(e),
        Err(Stop::NotYet) => Err(anyhow::anyhow!("{what}: not finished within {} s", total.as_secs())),
    }
}

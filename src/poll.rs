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

enum Stop<E> {
    NotYet,
    Failed(E),
}

/// What was waited for did not finish in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: not finished within {seconds} s")]
pub struct TimedOut {
    /// What was waited for.
    pub what: String,
    /// How long, in seconds.
    pub seconds: u64,
}

/// Looks with `look` until it says [`Look::Done`], pausing between looks from `min_delay`
/// doubling up to `max_delay` (with jitter), for at most `total`. Errors: a look's error (at
/// once), [`TimedOut`] when `what` did not finish within `total`, or
/// [`crate::shutdown::Interrupted`] on a stop.
pub async fn until_done<T, E, F, Fut>(
    what: impl Display,
    (min_delay, max_delay): (Duration, Duration),
    total: Duration,
    look: F,
) -> Result<T, E>
where
    E: From<TimedOut> + From<crate::shutdown::Interrupted>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Look<T>, E>>,
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
        Err(Stop::NotYet) => Err(TimedOut { what, seconds: total.as_secs() }.into()),
    }
}

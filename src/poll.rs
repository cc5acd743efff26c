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
/// doubling up to `max_delay` (with jitter), for at most `total` of wall-clock time (the looks
/// themselves included: a slow answer does not stretch the wait). Errors: a look's error (at
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
    let bounded = tokio::time::timeout(total, once.retry(backoff).when(|e| matches!(e, Stop::NotYet)));
    match crate::shutdown::bounded(&what, bounded).await? {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Stop::Failed(e))) => Err(e),
        Ok(Err(Stop::NotYet)) | Err(_) => Err(TimedOut { what, seconds: total.as_secs() }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{until_done, Look, TimedOut};
    use std::time::{Duration, Instant};

    #[derive(Debug)]
    enum E {
        TimedOut,
        Interrupted,
    }
    impl From<TimedOut> for E {
        fn from(_: TimedOut) -> E {
            E::TimedOut
        }
    }
    impl From<crate::shutdown::Interrupted> for E {
        fn from(_: crate::shutdown::Interrupted) -> E {
            E::Interrupted
        }
    }

    /// Slow looks count against the total: a wait of 0.5 s whose looks take 0.3 s each ends
    /// after about 0.5 s, not after the 0.5 s of pauses plus every look's time.
    #[tokio::test]
    async fn the_total_is_wall_clock_time_slow_looks_included() {
        let started = Instant::now();
        let r: Result<(), E> = until_done(
            "a stuck operation",
            (Duration::from_millis(10), Duration::from_millis(20)),
            Duration::from_millis(500),
            || async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(Look::NotYet)
            },
        )
        .await;
        assert!(matches!(r, Err(E::TimedOut)), "{r:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(900), "{took:?}");
    }
}

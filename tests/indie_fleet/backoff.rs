//! How long the indie fleet waits before retrying a failed speech request: exponential
//! backoff with jitter that honours `Retry-After` (what a careful fleet does), or a fixed
//! 150 ms loop that ignores it (the retry storm of the incident). Both give up at the same
//! deadline, so a scenario tells them apart by their shape alone.

use std::time::Duration;

/// The first backoff wait; each retry doubles it up to [`LONGEST`].
const FIRST: Duration = Duration::from_millis(250);
const LONGEST: Duration = Duration::from_secs(2);
/// Each backoff wait is moved by up to this share either way.
const JITTER: f64 = 0.2;
/// The constant loop's wait.
const CONSTANT: Duration = Duration::from_millis(150);
/// No retry is started once waiting for it would pass this, counted from the first attempt.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// 250 ms doubling to 2 s, ±20% jitter, never sooner than `Retry-After`.
    Backoff,
    /// Every 150 ms, no jitter, no growth, `Retry-After` ignored.
    Constant,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 is the first retry), or None to give up.
    /// `jitter` is a draw in -1.0..=1.0, `retry_after` what the failed answer asked for and
    /// `spent` the time since the first attempt.
    pub fn wait(
        self,
        retry: u32,
        retry_after: Option<Duration>,
        spent: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        let wait = match self {
            RetryPolicy::Backoff => {
                let doubled = FIRST
                    .saturating_mul(1 << retry.saturating_sub(1).min(16))
                    .min(LONGEST);
                let jittered = doubled.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0));
                jittered.max(retry_after.unwrap_or_default())
            }
            RetryPolicy::Constant => CONSTANT,
        };
        (spent + wait <= GIVE_UP_AFTER).then_some(wait)
    }
}

/// The waits a policy takes against a server that always fails, with the given jitter
/// draws and `Retry-After`, until it gives up.
#[cfg(test)]
fn waits(
    policy: RetryPolicy,
    retry_after: Option<Duration>,
    jitter: impl Fn(u32) -> f64,
) -> Vec<Duration> {
    let mut spent = Duration::ZERO;
    let mut waits = Vec::new();
    for retry in 1.. {
        let Some(wait) = policy.wait(retry, retry_after, spent, jitter(retry)) else {
            return waits;
        };
        spent += wait;
        waits.push(wait);
    }
    unreachable!()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values
            .iter()
            .map(|&value| Duration::from_millis(value))
            .collect()
    }

    #[test]
    fn backoff_doubles_from_250ms_and_gives_up_within_four_seconds() {
        assert_eq!(
            waits(RetryPolicy::Backoff, None, |_| 0.0),
            ms(&[250, 500, 1_000, 2_000])
        );
        assert_eq!(
            waits(RetryPolicy::Backoff, None, |_| -1.0),
            ms(&[200, 400, 800, 1_600]),
            "20% early at most"
        );
        assert_eq!(
            waits(RetryPolicy::Backoff, None, |_| 1.0),
            ms(&[300, 600, 1_200]),
            "20% late at most; the next 2.4 s would pass the deadline"
        );
    }

    #[test]
    fn backoff_never_retries_before_retry_after() {
        assert_eq!(
            waits(RetryPolicy::Backoff, Some(Duration::from_secs(1)), |_| -1.0),
            ms(&[1_000, 1_000, 1_000]),
            "the server's 1 s wins over 200, 400 and 800 ms"
        );
        let late = waits(
            RetryPolicy::Backoff,
            Some(Duration::from_millis(300)),
            |_| 0.5,
        );
        assert!(
            late.iter().all(|wait| *wait >= Duration::from_millis(300)),
            "{late:?}"
        );
        assert_eq!(
            late[1],
            Duration::from_millis(550),
            "past Retry-After, backoff rules"
        );
    }

    #[test]
    fn the_constant_loop_retries_every_150ms_whatever_it_is_told() {
        let storm = waits(RetryPolicy::Constant, Some(Duration::from_secs(2)), |_| 1.0);
        assert_eq!(storm.len(), 26, "26 × 150 ms fit in 4 s");
        assert!(storm.iter().all(|wait| *wait == Duration::from_millis(150)));
    }
}

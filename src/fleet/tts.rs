//! The fleet's TTS client: OpenAI-compatible `POST {TTS_BASE_URL}/audio/speech`, asking for
//! a WAV, with the retry policy that decides whether a 429 storm at the provider becomes a
//! retry storm from the fleet.
//!
//! - Fixed fleet ([`RetryPolicy::Backoff`]): exponential backoff with jitter (the delay
//!   before retry *n* is `min(cap, base·2ⁿ)` scaled by a random factor in 0.5..1), never
//!   sooner than the provider's `Retry-After`, and it gives up once the next wait would pass
//!   its time budget. The agent then plays a cached apology instead of going silent.
//! - `no-backoff` bug ([`RetryPolicy::Immediate`]): retries every 10 ms, ignores
//!   `Retry-After`, and never gives up while the call lasts.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::standin::openai::SpeechRequest;

/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A request that takes longer than this is counted slow (`tts_slow_total`, which raises
/// `TtsDegraded`): a reply that should take a few hundred milliseconds.
pub const SLOW: Duration = Duration::from_secs(2);
/// Largest audio accepted (about 2.8 minutes of 24 kHz 16-bit mono).
const MAX_AUDIO_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryPolicy {
    Backoff {
        base: Duration,
        cap: Duration,
        /// Total time from the first request after which no retry starts.
        budget: Duration,
    },
    /// Retry after a fixed, tiny delay for as long as the call lasts.
    Immediate { delay: Duration },
}

impl RetryPolicy {
    /// The fixed fleet's policy: 250 ms doubling to 2 s, within 4 s (less than the 8 s a
    /// caller waits before giving up on a turn).
    pub const FIXED: RetryPolicy = RetryPolicy::Backoff {
        base: Duration::from_millis(250),
        cap: Duration::from_secs(2),
        budget: Duration::from_secs(4),
    };
    pub const NO_BACKOFF: RetryPolicy = RetryPolicy::Immediate {
        delay: Duration::from_millis(10),
    };

    /// The wait before retry number `retry` (0 for the first retry), given the provider's
    /// `Retry-After`; None: give up. `jitter` is in 0..1.
    pub fn delay(
        &self,
        retry: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        match *self {
            RetryPolicy::Immediate { delay } => Some(delay),
            RetryPolicy::Backoff { base, cap, budget } => {
                let exponential = base.saturating_mul(1u32 << retry.min(16)).min(cap);
                let jittered = exponential.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
                let wait = jittered.max(retry_after.unwrap_or_default());
                (elapsed + wait <= budget).then_some(wait)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("gave up after {attempts} attempts; last: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("the call ended while waiting for TTS")]
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct TtsClient {
    http: reqwest::Client,
    url: String,
    policy: RetryPolicy,
}

/// One attempt's result.
enum Attempt {
    Audio(Bytes),
    /// Worth retrying (429, 5xx, timeout, connection error), with `Retry-After` if sent.
    Retry {
        label: String,
        retry_after: Option<Duration>,
    },
    /// Not worth retrying (4xx other than 429, oversized answer).
    Fail(String),
}

impl Attempt {
    /// The request or its answer broke off (a timeout or a connection error): worth a
    /// retry, with no `Retry-After` to honour.
    fn broken(error: &reqwest::Error) -> Attempt {
        let label = if error.is_timeout() {
            "timeout"
        } else {
            "error"
        };
        Attempt::Retry {
            label: label.into(),
            retry_after: None,
        }
    }
}

impl TtsClient {
    pub fn new(http: reqwest::Client, base_url: &str, policy: RetryPolicy) -> Self {
        TtsClient {
            http,
            url: format!("{}/audio/speech", base_url.trim_end_matches('/')),
            policy,
        }
    }

    /// Speaks `text`; `request_id` is sent as `X-Request-Id` on every attempt, so retries
    /// of one utterance can be told apart from new utterances.
    pub async fn speak(
        &self,
        text: &str,
        request_id: &str,
        cancelled: &CancellationToken,
        metrics: &Metrics,
    ) -> Result<Bytes, TtsError> {
        let request = SpeechRequest {
            model: "tts-1".into(),
            input: text.to_string(),
            voice: "alloy".into(),
            response_format: Some("wav".into()),
        };
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            if attempts > 0 {
                metrics
                    .tts_retries_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            attempts += 1;
            let sent = Instant::now();
            let attempt = tokio::select! {
                _ = cancelled.cancelled() => return Err(TtsError::Cancelled),
                attempt = self.attempt(&request, request_id) => attempt,
            };
            if sent.elapsed() > SLOW {
                metrics
                    .tts_slow_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let (label, retry_after) = match attempt {
                Attempt::Audio(audio) => {
                    metrics.tts_requests_total.add("200", 1);
                    return Ok(audio);
                }
                Attempt::Fail(label) => {
                    metrics.tts_requests_total.add(&label, 1);
                    return Err(TtsError::GaveUp {
                        attempts,
                        last: label,
                    });
                }
                Attempt::Retry { label, retry_after } => (label, retry_after),
            };
            metrics.tts_requests_total.add(&label, 1);
            let Some(wait) =
                self.policy
                    .delay(attempts - 1, started.elapsed(), retry_after, rand::random())
            else {
                return Err(TtsError::GaveUp {
                    attempts,
                    last: label,
                });
            };
            tokio::select! {
                _ = cancelled.cancelled() => return Err(TtsError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn attempt(&self, request: &SpeechRequest, request_id: &str) -> Attempt {
        let sent = self
            .http
            .post(&self.url)
            .timeout(REQUEST_TIMEOUT)
            .header("X-Request-Id", request_id)
            .json(request)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return Attempt::broken(&error),
        };
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Attempt::Retry {
                label: status.as_u16().to_string(),
                retry_after: retry_after(response.headers()),
            };
        }
        if !status.is_success() {
            return Attempt::Fail(status.as_u16().to_string());
        }
        let mut audio = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if audio.len() + chunk.len() > MAX_AUDIO_BYTES {
                        return Attempt::Fail("too_large".into());
                    }
                    audio.extend_from_slice(&chunk);
                }
                Ok(None) => return Attempt::Audio(Bytes::from(audio)),
                Err(error) => return Attempt::broken(&error),
            }
        }
    }
}

/// `Retry-After` in whole seconds (the HTTP-date form is not used by TTS providers).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stops_at_the_budget() {
        let policy = RetryPolicy::FIXED;
        let at = |retry, elapsed_ms, jitter| {
            policy.delay(retry, Duration::from_millis(elapsed_ms), None, jitter)
        };
        assert_eq!(at(0, 0, 1.0), Some(Duration::from_millis(250)));
        assert_eq!(at(1, 0, 1.0), Some(Duration::from_millis(500)));
        assert_eq!(at(2, 0, 1.0), Some(Duration::from_secs(1)));
        assert_eq!(at(5, 0, 1.0), Some(Duration::from_secs(2)));
        assert_eq!(at(0, 0, 0.0), Some(Duration::from_millis(125)));
        assert_eq!(at(3, 3000, 1.0), None, "would end past the 4 s budget");
    }

    #[test]
    fn backoff_honours_retry_after_and_the_bug_ignores_it() {
        let wait = RetryPolicy::FIXED.delay(0, Duration::ZERO, Some(Duration::from_secs(2)), 0.0);
        assert_eq!(wait, Some(Duration::from_secs(2)));
        let too_long =
            RetryPolicy::FIXED.delay(0, Duration::ZERO, Some(Duration::from_secs(30)), 0.0);
        assert_eq!(
            too_long, None,
            "a Retry-After beyond the budget means give up"
        );
        let storm = RetryPolicy::NO_BACKOFF.delay(
            50,
            Duration::from_secs(60),
            Some(Duration::from_secs(30)),
            0.5,
        );
        assert_eq!(storm, Some(Duration::from_millis(10)));
    }
}

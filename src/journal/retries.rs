//! How the fleet retried the TTS, as the journal's `tts_requests` records carry it: retry
//! chains by shape, and the run's totals the `no_retry_storm` SLO reads. The rules that
//! make a retry and judge a chain's shape are the TTS log's (`crate::chaos::tts_log`).

use serde::{Deserialize, Serialize};

/// The shape of a chain of two or more retries of one logical request, judged in this
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Every retry followed an answer with `Retry-After` and waited at least that long:
    /// paced by the server, right even at a constant interval.
    RetryAfter,
    /// The gaps average under [`crate::chaos::tts_log::IMMEDIATE`]: no backoff at all (a scheduler's hiccup in a
    /// tight loop does not make it one).
    Immediate,
    /// The gaps grow ([`crate::chaos::tts_log::GROWTH`]).
    Backoff,
    /// The gaps vary ([`crate::chaos::tts_log::VARIATION`]) without growing.
    Jittered,
    /// The same interval again and again: no backoff, no jitter.
    Constant,
}

/// Retry chains (of two or more retries) by [`Shape`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainCounts {
    pub retry_after: u64,
    pub immediate: u64,
    pub backoff: u64,
    pub jittered: u64,
    pub constant: u64,
}

impl ChainCounts {
    pub fn add(&mut self, shape: Shape) {
        *match shape {
            Shape::RetryAfter => &mut self.retry_after,
            Shape::Immediate => &mut self.immediate,
            Shape::Backoff => &mut self.backoff,
            Shape::Jittered => &mut self.jittered,
            Shape::Constant => &mut self.constant,
        } += 1;
    }

    pub fn merge(&mut self, other: &ChainCounts) {
        self.retry_after += other.retry_after;
        self.immediate += other.immediate;
        self.backoff += other.backoff;
        self.jittered += other.jittered;
        self.constant += other.constant;
    }

    pub fn total(&self) -> u64 {
        self.retry_after + self.immediate + self.backoff + self.jittered + self.constant
    }

    /// Chains with neither backoff nor jitter nor `Retry-After` to pace them: a storm.
    pub fn unpaced(&self) -> u64 {
        self.immediate + self.constant
    }
}

/// The whole run's retry behaviour, for the `no_retry_storm` SLO: the sum of the journal's
/// `tts_requests` windows ([`RetryTotals::add_window`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RetryTotals {
    /// Requests that came while a TTS fault was on, and the others.
    pub requests_during_fault: u64,
    pub requests_calm: u64,
    /// Requests a TTS fault hit: the sum of the clear notes' "N of M TTS requests faulted".
    pub requests_hit: u64,
    pub retries: u64,
    /// Retries less than [`crate::chaos::tts_log::IMMEDIATE`] after the failed answer.
    pub immediate_retries: u64,
    /// Logical requests that retried after being asked to wait, and those that retried
    /// sooner than asked.
    pub retry_after_asked: u64,
    pub retry_after_ignored: u64,
    /// Retry chains of two or more retries, by shape.
    pub chains: ChainCounts,
    /// Σ of the constant chains' mean gaps (ms).
    pub constant_gap_ms_sum: f64,
}

impl RetryTotals {
    /// Adds one `tts_requests` record, as [`crate::chaos::tts_log::TtsLog::take`] writes it (or as journals before
    /// chains were graded wrote it: `faulted` then counted the requests during a fault).
    pub fn add_window(&mut self, window: &serde_json::Value) {
        let count = |key: &str| window.get(key).and_then(serde_json::Value::as_u64);
        let requests = count("requests").unwrap_or(0);
        let during_fault = count("during_fault")
            .or_else(|| count("faulted"))
            .unwrap_or(0);
        self.requests_during_fault += during_fault;
        self.requests_calm += requests.saturating_sub(during_fault);
        self.requests_hit += count("hit").unwrap_or(0);
        self.retries += count("retries").unwrap_or(0);
        self.immediate_retries += count("immediate_retries").unwrap_or(0);
        self.retry_after_asked += count("retry_after_asked").unwrap_or(0);
        self.retry_after_ignored += count("retry_after_ignored").unwrap_or(0);
        if let Some(chains) = window
            .get("chains")
            .and_then(|chains| ChainCounts::deserialize(chains).ok())
        {
            self.chains.merge(&chains);
        }
        self.constant_gap_ms_sum += window
            .get("constant_gap_ms_sum")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
    }

    /// The mean interval of the constant chains, if any.
    pub fn constant_gap_ms(&self) -> Option<f64> {
        (self.chains.constant > 0).then(|| self.constant_gap_ms_sum / self.chains.constant as f64)
    }
}

//! The TTS stand-in's request log, aggregated for the journal: what the grader needs to
//! tell a retry storm from backoff, without a record per request. Every few seconds one
//! `tts_requests` record: requests by status, how many were retries (a request id seen
//! before: the reference fleet sends `<call sid>-<turn>` as `X-Request-Id` on every attempt
//! of one utterance; other fleets fall back to the text's hash), and the gaps before those
//! retries.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::journal::Journal;
use crate::load::aggregate::Percentiles;
use crate::standin::tts::{TtsControl, TtsRecord};

/// How often a `tts_requests` record is written (when there were requests).
pub const WINDOW: Duration = Duration::from_secs(5);
/// Utterances remembered for retry detection; the oldest are forgotten beyond this.
const REMEMBERED: usize = 50_000;
/// A request this long after the last attempt of the same utterance is a new try, not a
/// retry.
const RETRY_HORIZON: Duration = Duration::from_secs(60);

/// One window's aggregate.
#[derive(Debug)]
pub struct TtsWindow {
    by_status: BTreeMap<u16, u64>,
    requests: u64,
    /// Requests that came while a TTS fault was on.
    faulted: u64,
    retries: u64,
    immediate_retries: u64,
    /// Microseconds (as every latency histogram) from the previous attempt of the same
    /// utterance to a retry.
    retry_gap_ms: Histogram<u64>,
    /// Retries that came before the `Retry-After` the previous answer asked for.
    retry_after_ignored: u64,
}

impl Default for TtsWindow {
    fn default() -> Self {
        TtsWindow {
            by_status: BTreeMap::new(),
            requests: 0,
            faulted: 0,
            retries: 0,
            immediate_retries: 0,
            retry_gap_ms: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds"),
            retry_after_ignored: 0,
        }
    }
}

/// What is remembered of one utterance's last attempt.
#[derive(Debug, Clone, Copy)]
struct LastAttempt {
    at: SystemTime,
    /// The `Retry-After` its answer carried, if any.
    retry_after: Option<Duration>,
}

/// Folds records into windows.
#[derive(Debug, Default)]
pub struct TtsLog {
    window: TtsWindow,
    last: HashMap<String, LastAttempt>,
}

/// The whole run's retry behaviour, for the `no_retry_storm` SLO: the sum of the journal's
/// `tts_requests` windows ([`RetryTotals::add_window`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RetryTotals {
    /// Requests answered while a TTS fault was on, and the others.
    pub requests_faulted: u64,
    pub requests_calm: u64,
    pub retries: u64,
    /// Retries less than [`IMMEDIATE`] after the previous attempt.
    pub immediate_retries: u64,
    pub retry_after_ignored: u64,
}

impl RetryTotals {
    /// Adds one `tts_requests` record, as [`TtsLog::take`] writes it.
    pub fn add_window(&mut self, window: &serde_json::Value) {
        let count = |key: &str| {
            window
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let requests = count("requests");
        let faulted = count("faulted");
        self.requests_faulted += faulted;
        self.requests_calm += requests.saturating_sub(faulted);
        self.retries += count("retries");
        self.immediate_retries += count("immediate_retries");
        self.retry_after_ignored += count("retry_after_ignored");
    }
}

/// A retry sooner than this after the attempt before it is immediate: no backoff at all.
pub const IMMEDIATE: Duration = Duration::from_millis(100);

impl TtsLog {
    /// Takes one record; `retry_after` is what the stand-in asked for in that answer;
    /// `faulted`: a TTS fault was on when it came.
    pub fn add(&mut self, record: &TtsRecord, retry_after: Option<Duration>, faulted: bool) {
        let window = &mut self.window;
        window.requests += 1;
        window.faulted += u64::from(faulted);
        *window.by_status.entry(record.status).or_insert(0) += 1;
        let key = record
            .request_id
            .clone()
            .unwrap_or_else(|| format!("text-{:016x}", record.input_hash));
        if let Some(previous) = self.last.get(&key) {
            let gap = record.at.duration_since(previous.at).unwrap_or_default();
            if gap < RETRY_HORIZON {
                window.retries += 1;
                if gap < IMMEDIATE {
                    window.immediate_retries += 1;
                }
                let _ = window
                    .retry_gap_ms
                    .record((gap.as_micros() as u64).clamp(1, 3_600_000_000));
                if previous.retry_after.is_some_and(|asked| gap < asked) {
                    window.retry_after_ignored += 1;
                }
            }
        }
        if self.last.len() >= REMEMBERED && !self.last.contains_key(&key) {
            // Forget the utterances not heard from for longest.
            let horizon = record.at.checked_sub(RETRY_HORIZON);
            self.last
                .retain(|_, last| horizon.is_none_or(|horizon| last.at >= horizon));
            if self.last.len() >= REMEMBERED {
                self.last.clear();
            }
        }
        self.last.insert(
            key,
            LastAttempt {
                at: record.at,
                retry_after: if record.status == 429 {
                    retry_after
                } else {
                    None
                },
            },
        );
    }

    /// The window so far as a journal record's fields, and a fresh window; None if empty.
    pub fn take(&mut self) -> Option<serde_json::Value> {
        let window = std::mem::take(&mut self.window);
        (window.requests > 0).then(|| {
            json!({
                "window_s": WINDOW.as_secs_f64(),
                "requests": window.requests,
                "faulted": window.faulted,
                "immediate_retries": window.immediate_retries,
                "by_status": window.by_status.iter().map(|(status, count)| (status.to_string(), *count)).collect::<BTreeMap<_, _>>(),
                "retries": window.retries,
                "retry_gap_ms": Percentiles::of(&window.retry_gap_ms),
                "retry_after_ignored": window.retry_after_ignored,
            })
        })
    }
}

/// Journals `tts_requests` every [`WINDOW`] until `stop`.
pub async fn journal_tts_requests(
    control: std::sync::Arc<TtsControl>,
    journal: Journal,
    stop: CancellationToken,
) {
    let mut records = control.subscribe();
    let mut log = TtsLog::default();
    // Says the stand-in ran, so a run without a single TTS request still grades its retries.
    journal.record("tts_standin", json!({"window_s": WINDOW.as_secs_f64()}));
    let mut ticks = tokio::time::interval(WINDOW);
    ticks.tick().await;
    loop {
        tokio::select! {
            record = records.recv() => match record {
                Ok(record) => {
                    let fault = control.behaviour().fault;
                    let retry_after = match fault {
                        crate::standin::tts::TtsFault::RateLimited { retry_after } => retry_after,
                        _ => None,
                    };
                    let faulted = fault != crate::standin::tts::TtsFault::None;
                    log.add(&record, retry_after, faulted);
                }
                Err(RecvError::Lagged(lost)) => {
                    journal.record("tts_requests_lost", json!({"records": lost}));
                }
                Err(RecvError::Closed) => break,
            },
            _ = ticks.tick() => {
                if let Some(fields) = log.take() {
                    journal.record("tts_requests", fields);
                }
            }
            () = stop.cancelled() => break,
        }
    }
    if let Some(fields) = log.take() {
        journal.record("tts_requests", fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: u64, status: u16, id: &str) -> TtsRecord {
        TtsRecord {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
            status,
            request_id: Some(id.to_owned()),
            input_hash: 1,
            faulted: status == 429,
        }
    }

    #[test]
    fn retries_their_gaps_and_ignored_retry_after_are_counted() {
        let mut log = TtsLog::default();
        let after = Some(Duration::from_secs(1));
        // One utterance retried at once twice (a storm), then after 1.5 s (honoured).
        log.add(&record(0, 429, "CA1-1"), after, true);
        log.add(&record(10, 429, "CA1-1"), after, true);
        log.add(&record(20, 429, "CA1-1"), after, true);
        log.add(&record(1520, 200, "CA1-1"), after, false);
        // Another utterance, first try only.
        log.add(&record(30, 200, "CA2-1"), None, false);
        let window = log.take().unwrap();
        let mut totals = RetryTotals::default();
        totals.add_window(&window);
        assert_eq!(window["requests"], 5);
        assert_eq!(window["by_status"]["429"], 3);
        assert_eq!(window["by_status"]["200"], 2);
        assert_eq!(window["retries"], 3);
        assert_eq!(window["retry_after_ignored"], 2);
        assert_eq!(window["retry_gap_ms"]["count"], 3);
        assert!(log.take().is_none(), "a fresh window is empty");
        // Much later, the same id is a new try, not a retry.
        log.add(&record(600_000, 200, "CA1-1"), None, false);
        let later = log.take().unwrap();
        assert_eq!(later["retries"], 0);
        totals.add_window(&later);
        assert_eq!(
            totals,
            RetryTotals {
                requests_faulted: 3,
                requests_calm: 3,
                retries: 3,
                immediate_retries: 2,
                retry_after_ignored: 2,
            }
        );
    }
}

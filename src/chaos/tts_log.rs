//! The TTS stand-in's request log, aggregated for the journal: what the grader needs to
//! tell a retry storm from backoff, without a record per request. The log sees every
//! request in the stand-in's own request task ([`TtsObserver`]), so nothing is dropped
//! under load, and every [`WINDOW`] one `tts_requests` record sums it up.
//!
//! **A retry** is a request that follows a *failed* answer to the same logical request
//! within [`RETRY_HORIZON`]: an error status (anything but 2xx), or no answer at all (the
//! client gave up or the connection broke before the answer was sent; a `tts_timeout`
//! never answers). The logical request is the fleet's own id when it sends one
//! (`X-Request-Id`, else `Idempotency-Key`: the reference fleet sends `<call sid>-<turn>` on
//! every attempt of one utterance), else the same text on the same client connection (the
//! peer's address and port). A request after a success is never a retry, whatever its
//! text: two calls saying the same sentence are two requests. Nor is one that comes while
//! the attempt before is still being answered (a hedge or a duplicate). Limit: a fleet that
//! sends no id and retries on another connection (its pool picked another, or a client
//! timeout closed the failed one) has that retry counted as a fresh request: retries can be
//! missed, never invented.
//!
//! **The gap** before a retry runs from when the failed answer was handed to the connection
//! (or the client was seen to give up) to the retry's arrival: at least the wait the fleet
//! chose. `Retry-After` is the header as sent (whole seconds); a retry honours it when its
//! gap is at least that, less [`RETRY_AFTER_TOLERANCE`] for other runtimes' timers, which
//! may fire a clock tick early. Each logical request that retried after being asked to wait
//! is counted once, and once more if it retried sooner than asked.
//!
//! **Backoff shape**: the retries of one logical request until it succeeds (or is not heard
//! of for the retry horizon, or the run ends) are a chain; a chain of two or more retries
//! is classified by its gaps ([`Shape`]): paced by `Retry-After`, immediate, backoff,
//! jittered or constant. Each logical request keeps a few numbers (its last attempt, how
//! it ended, sums over its gaps), for at most [`REMEMBERED`] of them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::journal::Journal;
use crate::journal::calls::Percentiles;
use crate::standin::tts::{TtsAttempt, TtsControl, TtsEnding, TtsObserver, TtsRecord};

/// How often a `tts_requests` record is written (when there were requests).
pub const WINDOW: Duration = Duration::from_secs(5);
/// Logical requests remembered for retry detection; beyond this, those not heard of for the
/// retry horizon are forgotten, and if that is not enough, all of them.
pub const REMEMBERED: usize = 50_000;
/// A request this long after the failed answer before it is a new try, not a retry.
pub const RETRY_HORIZON: Duration = Duration::from_secs(60);
/// A retry sooner than this after the failed answer is immediate: no backoff at all.
pub const IMMEDIATE: Duration = Duration::from_millis(100);
/// How much sooner than `Retry-After` asked a retry may come and still honour it.
pub const RETRY_AFTER_TOLERANCE: Duration = Duration::from_millis(50);
/// A chain backs off when each gap is on average at least this many times the one before.
pub const GROWTH: f64 = 1.5;
/// A chain's gaps vary (jitter) when a gap differs from the one before, on average, by
/// more than this share of their mean plus [`TIMER_NOISE`].
pub const VARIATION: f64 = 0.05;
/// What timers and schedulers add to a gap on their own.
pub const TIMER_NOISE: Duration = Duration::from_millis(5);

pub use crate::journal::retries::{ChainCounts, RetryTotals, Shape};

/// One logical request, as retry detection knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Identity {
    /// The fleet's own id (`X-Request-Id` or `Idempotency-Key`).
    Id(String),
    /// No id: this text on this client connection.
    Text { peer: SocketAddr, input_hash: u64 },
}

impl Identity {
    /// None for a request with neither id nor known connection: never a retry.
    fn of(record: &TtsRecord) -> Option<Identity> {
        match (&record.request_id, record.peer) {
            (Some(id), _) => Some(Identity::Id(id.clone())),
            (None, Some(peer)) => Some(Identity::Text {
                peer,
                input_hash: record.input_hash,
            }),
            (None, None) => None,
        }
    }
}

/// The retries of one logical request so far, as a few sums over their gaps.
#[derive(Debug, Clone, Copy)]
struct Chain {
    retries: u32,
    last_gap: Duration,
    gap_total: Duration,
    /// Σ gap ÷ the gap before it, for growth.
    ratio_total: f64,
    /// Σ |gap − the gap before it|, for variation.
    step_total: Duration,
    /// Every retry so far followed a `Retry-After` and waited at least that long.
    paced: bool,
    /// Some retry followed a `Retry-After` (counted once per logical request).
    asked: bool,
    /// Some retry came sooner than its `Retry-After` allowed (counted once).
    early: bool,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            retries: 0,
            last_gap: Duration::ZERO,
            gap_total: Duration::ZERO,
            ratio_total: 0.0,
            step_total: Duration::ZERO,
            paced: true,
            asked: false,
            early: false,
        }
    }
}

/// What one retry changed in its chain's `Retry-After` record: first asked, first early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RetryAfterNews {
    first_asked: bool,
    first_early: bool,
}

impl Chain {
    /// Adds a retry `gap` after an answer that asked to wait `retry_after`.
    fn add(&mut self, gap: Duration, retry_after: Option<Duration>) -> RetryAfterNews {
        if self.retries > 0 {
            // A zero gap before would make the ratio infinite; a millisecond is the clock's
            // grain anyway.
            self.ratio_total += gap.as_secs_f64() / self.last_gap.as_secs_f64().max(0.001);
            self.step_total += gap.abs_diff(self.last_gap);
        }
        self.retries += 1;
        self.last_gap = gap;
        self.gap_total += gap;
        // `Retry-After: 0` asks for nothing.
        let asked = retry_after.filter(|asked| !asked.is_zero());
        let early = asked.is_some_and(|asked| gap + RETRY_AFTER_TOLERANCE < asked);
        self.paced &= asked.is_some() && !early;
        let news = RetryAfterNews {
            first_asked: asked.is_some() && !self.asked,
            first_early: early && !self.early,
        };
        self.asked |= asked.is_some();
        self.early |= early;
        news
    }

    fn mean_gap(&self) -> Duration {
        self.gap_total / self.retries.max(1)
    }

    /// None for fewer than two retries: one gap has no shape.
    fn shape(&self) -> Option<Shape> {
        if self.retries < 2 {
            return None;
        }
        let steps = f64::from(self.retries - 1);
        let mean_step = self.step_total.as_secs_f64() / steps;
        let noise = VARIATION * self.mean_gap().as_secs_f64() + TIMER_NOISE.as_secs_f64();
        Some(if self.paced {
            Shape::RetryAfter
        } else if self.mean_gap() < IMMEDIATE {
            Shape::Immediate
        } else if self.ratio_total / steps >= GROWTH {
            Shape::Backoff
        } else if mean_step > noise {
            Shape::Jittered
        } else {
            Shape::Constant
        })
    }
}

/// One logical request's latest attempt and its chain of retries.
#[derive(Debug)]
struct Utterance {
    /// The latest attempt's sequence number: the ending of an older one changes nothing.
    attempt: u64,
    arrived: Instant,
    /// How the latest attempt ended; None while it is being answered.
    ending: Option<TtsEnding>,
    chain: Chain,
}

impl Utterance {
    fn last_heard(&self) -> Instant {
        self.ending
            .map_or(self.arrived, |ending| ending.at.max(self.arrived))
    }
}

/// One window's aggregate.
#[derive(Debug)]
pub struct TtsWindow {
    by_status: BTreeMap<u16, u64>,
    requests: u64,
    /// Requests that came while a TTS fault was on (hit or not).
    during_fault: u64,
    /// Requests a TTS fault hit.
    hit: u64,
    retries: u64,
    immediate_retries: u64,
    /// Microseconds (as every latency histogram) from the failed answer to its retry.
    retry_gap_ms: Histogram<u64>,
    /// Logical requests that retried after an answer asked them to wait, and those of them
    /// that retried sooner than asked.
    retry_after_asked: u64,
    retry_after_ignored: u64,
    /// Chains that ended in this window, by shape.
    chains: ChainCounts,
    /// Σ of the constant chains' mean gaps, for the interval the verdict names.
    constant_gap_ms_sum: f64,
}

impl Default for TtsWindow {
    fn default() -> Self {
        TtsWindow {
            by_status: BTreeMap::new(),
            requests: 0,
            during_fault: 0,
            hit: 0,
            retries: 0,
            immediate_retries: 0,
            retry_gap_ms: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds"),
            retry_after_asked: 0,
            retry_after_ignored: 0,
            chains: ChainCounts::default(),
            constant_gap_ms_sum: 0.0,
        }
    }
}

impl TtsWindow {
    fn retry(&mut self, gap: Duration, retry_after: Option<Duration>, chain: &mut Chain) {
        self.retries += 1;
        self.immediate_retries += u64::from(gap < IMMEDIATE);
        let micros = u64::try_from(gap.as_micros()).unwrap_or(u64::MAX);
        let _ = self.retry_gap_ms.record(micros.clamp(1, 3_600_000_000));
        let news = chain.add(gap, retry_after);
        self.retry_after_asked += u64::from(news.first_asked);
        self.retry_after_ignored += u64::from(news.first_early);
    }

    /// Counts a chain that is over.
    fn close(&mut self, chain: &Chain) {
        if let Some(shape) = chain.shape() {
            self.chains.add(shape);
            if shape == Shape::Constant {
                self.constant_gap_ms_sum += chain.mean_gap().as_secs_f64() * 1000.0;
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.requests == 0 && self.chains.total() == 0
    }

    fn fields(&self) -> serde_json::Value {
        json!({
            "window_s": WINDOW.as_secs_f64(),
            "requests": self.requests,
            "during_fault": self.during_fault,
            "hit": self.hit,
            "by_status": self.by_status.iter().map(|(status, count)| (status.to_string(), *count)).collect::<BTreeMap<_, _>>(),
            "retries": self.retries,
            "immediate_retries": self.immediate_retries,
            "retry_gap_ms": Percentiles::of(&self.retry_gap_ms),
            "retry_after_asked": self.retry_after_asked,
            "retry_after_ignored": self.retry_after_ignored,
            "chains": self.chains,
            "constant_gap_ms_sum": crate::journal::round_ms(self.constant_gap_ms_sum),
        })
    }
}

/// Folds the stand-in's requests into windows.
#[derive(Debug, Default)]
pub struct TtsLog {
    window: TtsWindow,
    utterances: HashMap<Identity, Utterance>,
}

impl TtsLog {
    /// Takes a request as it arrives: counts it, and whether it retries a failed answer.
    pub fn arrived(&mut self, attempt: &TtsAttempt) {
        let TtsLog { window, utterances } = self;
        let record = &attempt.record;
        window.requests += 1;
        window.during_fault += u64::from(attempt.fault_on);
        window.hit += u64::from(record.faulted);
        *window.by_status.entry(record.status).or_insert(0) += 1;
        let Some(identity) = Identity::of(record) else {
            return;
        };
        let at = attempt.arrived;
        if let Some(utterance) = utterances.get_mut(&identity) {
            match utterance.ending {
                Some(ending)
                    if ending.failed && at.saturating_duration_since(ending.at) < RETRY_HORIZON =>
                {
                    let gap = at.saturating_duration_since(ending.at);
                    window.retry(gap, ending.retry_after, &mut utterance.chain);
                }
                // The attempt before is still being answered: a hedge or a duplicate, not
                // a retry; its chain goes on.
                None => {}
                // Too long after: a new try of the same text or id.
                Some(_) => {
                    window.close(&utterance.chain);
                    utterance.chain = Chain::default();
                }
            }
            utterance.attempt = attempt.sequence;
            utterance.arrived = at;
            utterance.ending = None;
            return;
        }
        if utterances.len() >= REMEMBERED {
            self.forget(at);
        }
        self.utterances.insert(
            identity,
            Utterance {
                attempt: attempt.sequence,
                arrived: at,
                ending: None,
                chain: Chain::default(),
            },
        );
    }

    /// Takes how the answer to `attempt` ended: a success ends its logical request.
    pub fn ended(&mut self, attempt: &TtsAttempt, ending: &TtsEnding) {
        let Some(identity) = Identity::of(&attempt.record) else {
            return;
        };
        let Some(utterance) = self.utterances.get_mut(&identity) else {
            return;
        };
        if utterance.attempt != attempt.sequence {
            return;
        }
        if ending.failed {
            utterance.ending = Some(*ending);
        } else if let Some(done) = self.utterances.remove(&identity) {
            // The same text or id again is a new logical request, never a retry.
            self.window.close(&done.chain);
        }
    }

    /// Forgets the logical requests not heard of for the retry horizon at `now` (their
    /// chains are over: the fleet gave up); if that leaves too many, all of them.
    fn forget(&mut self, now: Instant) {
        self.forget_idle(now);
        if self.utterances.len() >= REMEMBERED {
            self.close_all();
        }
    }

    fn forget_idle(&mut self, now: Instant) {
        let TtsLog { window, utterances } = self;
        utterances.retain(|_, utterance| {
            let heard = now.saturating_duration_since(utterance.last_heard()) < RETRY_HORIZON;
            if !heard {
                window.close(&utterance.chain);
            }
            heard
        });
    }

    /// Ends every chain (the run is ending) and forgets every logical request.
    pub fn close_all(&mut self) {
        for (_, utterance) in self.utterances.drain() {
            self.window.close(&utterance.chain);
        }
    }

    /// The window so far as a journal record's fields, and a fresh window; None if nothing
    /// happened. Chains not heard of for the retry horizon at `now` end in it.
    pub fn take(&mut self, now: Instant) -> Option<serde_json::Value> {
        self.forget_idle(now);
        let window = std::mem::take(&mut self.window);
        (!window.is_empty()).then(|| window.fields())
    }
}

impl TtsObserver for Mutex<TtsLog> {
    fn arrived(&self, attempt: &TtsAttempt) {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .arrived(attempt);
    }

    fn ended(&self, attempt: &TtsAttempt, ending: &TtsEnding) {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ended(attempt, ending);
    }
}

/// Journals `tts_requests` every [`WINDOW`] until `stop`. The log watches every request of
/// `control` from the call on (not from the first poll), so no request slips between.
pub fn journal_tts_requests(
    control: Arc<TtsControl>,
    journal: Journal,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let log = Arc::new(Mutex::new(TtsLog::default()));
    control.observe(Some(Arc::clone(&log) as Arc<dyn TtsObserver>));
    // Says the stand-in ran, so a run without a single TTS request still grades its retries.
    journal.record("tts_standin", json!({"window_s": WINDOW.as_secs_f64()}));
    let take = move |close: bool| {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        if close {
            log.close_all();
        }
        log.take(Instant::now())
    };
    async move {
        let mut ticks = tokio::time::interval(WINDOW);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Some(fields) = take(false) {
                        journal.record("tts_requests", fields);
                    }
                }
                () = stop.cancelled() => break,
            }
        }
        control.observe(None);
        if let Some(fields) = take(true) {
            journal.record("tts_requests", fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standin::tts::input_hash;

    const LOOPBACK: [u8; 4] = [127, 0, 0, 1];

    /// Hand-built requests against a log, on a clock of milliseconds from `start`.
    struct Requests {
        log: TtsLog,
        start: Instant,
        sequence: u64,
    }

    /// Who sends a request: an id, or none (then its connection's port tells).
    #[derive(Debug, Clone, Copy)]
    enum Sender<'a> {
        Id(&'a str),
        Connection(u16),
    }

    impl Requests {
        fn new() -> Self {
            Requests {
                log: TtsLog::default(),
                start: Instant::now(),
                sequence: 0,
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.start + Duration::from_millis(ms)
        }

        /// A request of `text` arriving at `at_ms`, answered `status` (`Retry-After:
        /// retry_after_s`) 5 ms later; status 0: the client gave up after 5 ms.
        fn send(
            &mut self,
            at_ms: u64,
            from: Sender<'_>,
            text: &str,
            status: u16,
            retry_after_s: Option<u64>,
        ) {
            let attempt = self.arrive(at_ms, from, text, status);
            self.log.ended(
                &attempt,
                &TtsEnding {
                    at: self.at(at_ms + 5),
                    failed: !(200..300).contains(&status),
                    retry_after: retry_after_s.map(Duration::from_secs),
                },
            );
        }

        /// A request arriving at `at_ms`, not answered yet.
        fn arrive(&mut self, at_ms: u64, from: Sender<'_>, text: &str, status: u16) -> TtsAttempt {
            self.sequence += 1;
            let (request_id, peer) = match from {
                Sender::Id(id) => (
                    Some(id.to_owned()),
                    Some(SocketAddr::from((LOOPBACK, 40000))),
                ),
                Sender::Connection(port) => (None, Some(SocketAddr::from((LOOPBACK, port)))),
            };
            let attempt = TtsAttempt {
                record: TtsRecord {
                    at: std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
                    status,
                    request_id,
                    input_hash: input_hash(text),
                    faulted: !(200..300).contains(&status),
                    peer,
                },
                sequence: self.sequence,
                arrived: self.at(at_ms),
                fault_on: status != 200,
            };
            self.log.arrived(&attempt);
            attempt
        }

        /// A chain for `id`: first try at `first_ms` answered `status`, then retries after
        /// each of `gaps_ms` (from the failed answer before), all answered `status`, the
        /// last one 200. Returns when the chain ended.
        fn chain(
            &mut self,
            id: &str,
            first_ms: u64,
            gaps_ms: &[u64],
            status: u16,
            retry_after_s: Option<u64>,
        ) -> u64 {
            self.send(first_ms, Sender::Id(id), "Hello", status, retry_after_s);
            let mut answered = first_ms + 5;
            for (index, gap) in gaps_ms.iter().enumerate() {
                let last = index + 1 == gaps_ms.len();
                let at = answered + gap;
                if last {
                    self.send(at, Sender::Id(id), "Hello", 200, None);
                } else {
                    self.send(at, Sender::Id(id), "Hello", status, retry_after_s);
                }
                answered = at + 5;
            }
            answered
        }

        /// The run's totals so far, as the grader sums the journal.
        fn totals(&mut self, now_ms: u64) -> RetryTotals {
            let mut totals = RetryTotals::default();
            if let Some(window) = self.log.take(self.at(now_ms)) {
                totals.add_window(&window);
            }
            totals
        }
    }

    #[test]
    fn the_same_text_from_other_connections_or_after_a_success_is_no_retry() {
        // Calm weather: 888 requests of the few sentences every call says, from 20 pooled
        // connections, every one answered 200.
        let mut requests = Requests::new();
        let sentences = [
            "Hello, how can I help?",
            "Your order has shipped.",
            "Goodbye.",
        ];
        for n in 0..888u64 {
            let text = sentences[(n % 3) as usize];
            requests.send(
                n * 40,
                Sender::Connection(50_000 + (n % 20) as u16),
                text,
                200,
                None,
            );
        }
        // A failure on one connection, then the same text on another: another call.
        requests.send(40_000, Sender::Connection(50_000), "Goodbye.", 503, None);
        requests.send(40_100, Sender::Connection(50_001), "Goodbye.", 200, None);
        let totals = requests.totals(41_000);
        assert_eq!(totals.retries, 0, "{totals:?}");
        assert_eq!(totals.requests_calm, 889);
        assert_eq!(totals.requests_during_fault, 1);
    }

    #[test]
    fn a_failed_answer_then_the_same_id_or_text_and_connection_is_a_retry() {
        let mut requests = Requests::new();
        // The same id after a 429, on whatever connection.
        requests.send(0, Sender::Id("CA1-1"), "Hello", 429, None);
        requests.send(300, Sender::Id("CA1-1"), "Hello", 200, None);
        // The same text on the same connection after a 503 (no id).
        requests.send(
            1000,
            Sender::Connection(50_000),
            "Your order has shipped.",
            503,
            None,
        );
        requests.send(
            1400,
            Sender::Connection(50_000),
            "Your order has shipped.",
            200,
            None,
        );
        // ... but not after a 200.
        requests.send(
            1500,
            Sender::Connection(50_000),
            "Your order has shipped.",
            200,
            None,
        );
        // A client that gave up (no answer) then asks again with its id: a retry.
        requests.send(2000, Sender::Id("CA2-1"), "Bye", 0, None);
        requests.send(2300, Sender::Id("CA2-1"), "Bye", 200, None);
        let window = requests.log.take(requests.at(3000)).unwrap();
        assert_eq!(window["retries"], 3, "{window}");
        assert_eq!(window["immediate_retries"], 0);
        assert_eq!(window["retry_gap_ms"]["count"], 3);
        assert_eq!(window["requests"], 7);
        assert_eq!(window["by_status"]["200"], 4);
        assert!(requests.log.take(requests.at(3000)).is_none(), "fresh");
    }

    #[test]
    fn a_request_while_the_attempt_before_is_answered_or_after_the_horizon_is_no_retry() {
        let mut requests = Requests::new();
        let hanging = requests.arrive(0, Sender::Id("CA1-1"), "Hello", 0);
        requests.send(100, Sender::Id("CA1-1"), "Hello", 200, None);
        // The old attempt's end changes nothing now.
        requests.log.ended(
            &hanging,
            &TtsEnding {
                at: requests.at(200),
                failed: true,
                retry_after: None,
            },
        );
        requests.send(300, Sender::Id("CA1-1"), "Hello", 200, None);
        requests.send(1000, Sender::Id("CA2-1"), "Hello", 503, None);
        let late = 1005 + RETRY_HORIZON.as_millis() as u64;
        requests.send(late, Sender::Id("CA2-1"), "Hello", 200, None);
        assert_eq!(requests.totals(late + 10).retries, 0);
    }

    #[test]
    fn a_window_journaled_before_chains_were_graded_still_adds_up() {
        let mut totals = RetryTotals::default();
        totals.add_window(&json!({
            "requests": 50, "faulted": 30, "retries": 12, "immediate_retries": 10,
            "retry_after_ignored": 4,
        }));
        assert_eq!(
            totals,
            RetryTotals {
                requests_during_fault: 30,
                requests_calm: 20,
                retries: 12,
                immediate_retries: 10,
                retry_after_ignored: 4,
                ..RetryTotals::default()
            }
        );
    }

    #[test]
    fn memory_is_bounded_by_the_logical_requests_remembered() {
        let mut requests = Requests::new();
        for n in 0..(REMEMBERED as u64 + 10) {
            requests.send(n / 100, Sender::Id(&format!("CA{n}-1")), "Hello", 503, None);
        }
        assert!(requests.log.utterances.len() <= REMEMBERED);
        // Those not heard of for the horizon are forgotten when a window is taken.
        let later = 1000 + RETRY_HORIZON.as_millis() as u64;
        assert!(requests.log.take(requests.at(later)).is_some());
        assert!(requests.log.utterances.is_empty());
    }

    fn shape_of(gaps_ms: &[u64], status: u16, retry_after_s: Option<u64>) -> ChainCounts {
        let mut requests = Requests::new();
        let end = requests.chain("CA1-1", 0, gaps_ms, status, retry_after_s);
        requests.totals(end + 10).chains
    }

    #[test]
    fn chains_are_classified_by_their_gaps() {
        let one = |shape| {
            let mut counts = ChainCounts::default();
            counts.add(shape);
            counts
        };
        assert_eq!(
            shape_of(&[150, 151, 149, 150, 152], 503, None),
            one(Shape::Constant)
        );
        assert_eq!(
            shape_of(&[10, 11, 10, 10], 503, None),
            one(Shape::Immediate)
        );
        // A scheduler's hiccup in a tight loop is no backoff.
        assert_eq!(
            shape_of(&[10, 12, 180, 10, 11, 10, 10], 503, None),
            one(Shape::Immediate)
        );
        assert_eq!(
            shape_of(&[250, 500, 1000, 2000], 503, None),
            one(Shape::Backoff)
        );
        assert_eq!(
            shape_of(&[800, 1150, 900, 1100], 503, None),
            one(Shape::Jittered)
        );
        // Waiting what Retry-After asked, at a constant interval, is right.
        assert_eq!(
            shape_of(&[2000, 2000, 2000], 429, Some(2)),
            one(Shape::RetryAfter)
        );
        // One retry has no shape.
        assert_eq!(shape_of(&[150], 503, None), ChainCounts::default());
    }

    #[test]
    fn a_chain_ends_on_success_when_idle_past_the_horizon_or_when_the_run_ends() {
        let mut requests = Requests::new();
        // Gives up after three tries: its chain ends once the horizon has passed.
        requests.send(0, Sender::Id("a"), "Hello", 503, None);
        requests.send(155, Sender::Id("a"), "Hello", 503, None);
        requests.send(310, Sender::Id("a"), "Hello", 503, None);
        assert_eq!(requests.totals(1000).chains.total(), 0, "may still retry");
        let idle = 400 + RETRY_HORIZON.as_millis() as u64;
        assert_eq!(requests.totals(idle).chains.constant, 1);
        // Still retrying when the run ends.
        requests.send(idle, Sender::Id("b"), "Hello", 503, None);
        requests.send(idle + 155, Sender::Id("b"), "Hello", 503, None);
        requests.send(idle + 310, Sender::Id("b"), "Hello", 503, None);
        requests.log.close_all();
        let totals = requests.totals(idle + 400);
        assert_eq!(totals.chains.constant, 1);
        assert_eq!(totals.constant_gap_ms(), Some(150.0));
    }

    #[test]
    fn retry_after_is_checked_once_per_logical_request_with_a_tolerance() {
        let asked = |gap_ms: u64| {
            let mut requests = Requests::new();
            requests.send(0, Sender::Id("a"), "Hello", 429, Some(2));
            requests.send(5 + gap_ms, Sender::Id("a"), "Hello", 429, Some(2));
            requests.send(10 + 2 * gap_ms, Sender::Id("a"), "Hello", 200, None);
            let totals = requests.totals(20 + 2 * gap_ms);
            (totals.retry_after_asked, totals.retry_after_ignored)
        };
        assert_eq!(asked(500), (1, 1), "twice early, one logical request");
        assert_eq!(asked(2000), (1, 0), "exactly the time asked");
        assert_eq!(asked(1950), (1, 0), "within the tolerance");
        assert_eq!(asked(1949), (1, 1), "beyond the tolerance");
    }

    /// Writes one speech request on `stream` (HTTP/1.1, kept alive) and reads the whole
    /// answer; its status.
    async fn post_on(stream: &mut tokio::net::TcpStream, text: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body =
            json!({"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"})
                .to_string();
        let request = format!(
            "POST /v1/audio/speech HTTP/1.1\r\nHost: standin\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .expect("a length")
            .trim()
            .parse()
            .unwrap();
        let mut answer = vec![0; length];
        stream.read_exact(&mut answer).await.unwrap();
        head[9..12].parse().unwrap()
    }

    /// Without an id, the stand-in tells one client connection from another: the same text
    /// after a failure is a retry on the same connection only, and never after a success.
    #[tokio::test]
    async fn the_same_text_is_a_retry_only_on_the_connection_that_failed() {
        use crate::standin::tts::{self, TtsBehaviour, TtsFault};
        let healthy = TtsBehaviour {
            min_audio: Duration::from_millis(20),
            max_audio: Duration::from_millis(20),
            ..TtsBehaviour::default()
        };
        let control = TtsControl::new(
            TtsBehaviour {
                fault: TtsFault::ServerError { code: 503 },
                ..healthy.clone()
            },
            1,
        );
        let log = Arc::new(Mutex::new(TtsLog::default()));
        control.observe(Some(Arc::clone(&log) as Arc<dyn TtsObserver>));
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = tts::spawn(listener, Arc::clone(&control), shutdown.clone())
            .await
            .unwrap();
        let connect = || tokio::net::TcpStream::connect(running.address);
        let (mut first, mut second) = (connect().await.unwrap(), connect().await.unwrap());
        assert_eq!(post_on(&mut first, "Hello").await, 503);
        assert_eq!(post_on(&mut second, "Hello").await, 503, "another call");
        assert_eq!(post_on(&mut first, "Hello").await, 503, "retry 1");
        control.set(healthy);
        assert_eq!(post_on(&mut first, "Hello").await, 200, "retry 2");
        assert_eq!(post_on(&mut first, "Hello").await, 200, "after a success");
        assert_eq!(post_on(&mut second, "Hello").await, 200, "retry 1");
        shutdown.cancel();
        let mut totals = RetryTotals::default();
        totals.add_window(&log.lock().unwrap().take(Instant::now()).expect("requests"));
        assert_eq!(totals.requests_during_fault, 3);
        assert_eq!(totals.retries, 3, "{totals:?}");
        // The first connection's two retries make a chain, ended by its success.
        assert_eq!(totals.chains.total(), 1, "{totals:?}");
    }
}

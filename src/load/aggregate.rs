//! The one actor that aggregates what calls report.
//!
//! Calls send [`CallEvent`]s; this actor folds them into run totals (HDR histograms, outcome
//! counts, a bounded list of failure examples) and into a per-interval window that feeds the
//! progress line and the journal. Its memory does not grow with calls or time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::call::{CallEvent, CallOutcome};
use crate::procinfo as process;

pub use crate::journal::calls::{
    CLOSE_KEYS, FAILURE_EXAMPLES, HarnessUsage, OTHER_CLOSES, Percentiles, Totals, record,
};

/// Adds a call's event to the totals (the record type lives in the journal, which knows
/// nothing of calls).
pub trait Apply {
    fn apply(&mut self, event: &CallEvent);
}

impl Apply for Totals {
    fn apply(&mut self, event: &CallEvent) {
        match event {
            CallEvent::Dropped => self.dropped += 1,
            CallEvent::Started => self.started += 1,
            CallEvent::Connected { connect } => {
                self.connected += 1;
                record(&mut self.connect, *connect);
            }
            CallEvent::FirstAudio { after } => record(&mut self.first_audio, *after),
            CallEvent::Reply { latency, dead_air } => {
                self.replies += 1;
                record(&mut self.response, *latency);
                record(&mut self.dead_air, *dead_air);
            }
            CallEvent::MarkEchoed { waited } => {
                self.marks_echoed += 1;
                record(&mut self.mark_wait, *waited);
            }
            CallEvent::Pacing(batch) => {
                for value in batch.iter_recorded() {
                    let _ = self.pacing.record_n(
                        value.value_iterated_to().clamp(1, self.pacing.high()),
                        value.count_at_value(),
                    );
                }
            }
            CallEvent::ProtocolError { kind } => {
                *self.protocol_errors.entry((*kind).to_owned()).or_default() += 1
            }
            CallEvent::Ended { outcome, close, .. } => {
                *self.outcomes.entry(*outcome).or_default() += 1;
                if let Some(close) = close {
                    self.count_closes(close.journal_key(), 1);
                }
            }
            // Waits and refusals are the aggregator's, per call or per interval, not totals.
            CallEvent::WaitingForReply { .. }
            | CallEvent::WaitOver { .. }
            | CallEvent::ConnectRefused => {}
        }
    }
}

/// A snapshot for the live progress line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub active: u64,
    pub started: u64,
    pub ended: u64,
    pub calls_per_second: f64,
    pub success_pct: Option<f64>,
    pub response_p95_ms: Option<f64>,
}

/// Receives every event of the run.
#[derive(Debug)]
pub struct Aggregator {
    totals: Totals,
    window: Totals,
    failure_examples: Vec<(CallOutcome, String)>,
    /// Calls waiting for the agent to start answering a turn, by call index, since when:
    /// at most one entry per call in progress.
    waits: HashMap<u64, Instant>,
    /// The host's CPU pressure counter when the current interval began, and when
    /// ([`process::cpu_pressure_total_us`]); None where the kernel has none.
    window_pressure: Option<(Instant, u64)>,
    /// Calls refused at connect in the current interval ([`CallEvent::ConnectRefused`]).
    window_refused: u64,
    /// How many of them went into interval records ([`Aggregator::take_interval_record`]).
    examples_taken: usize,
    run_start: Instant,
    window_start: Instant,
    harness: HarnessUsage,
    /// The first CPU reading, for the run's average.
    first_cpu: Option<(Instant, Duration)>,
    /// The reading the next peak is measured from.
    last_cpu: Option<(Instant, Duration)>,
}

impl Aggregator {
    pub fn new(run_start: Instant) -> Self {
        let mut aggregator = Aggregator {
            totals: Totals::default(),
            window: Totals::default(),
            failure_examples: Vec::new(),
            waits: HashMap::new(),
            window_refused: 0,
            window_pressure: process::cpu_pressure_total_us().map(|total| (run_start, total)),
            examples_taken: 0,
            run_start,
            window_start: run_start,
            harness: HarnessUsage::default(),
            first_cpu: None,
            last_cpu: None,
        };
        // The baseline is taken once the aggregator's own histograms exist, so what grows
        // from here is what the calls cost.
        let baseline = mib(process::sample(None).map(|s| s.rss_bytes).unwrap_or(0));
        aggregator.harness.rss_mib_baseline = baseline;
        aggregator.harness.rss_mib_max = baseline;
        aggregator
    }

    pub fn apply(&mut self, event: CallEvent) {
        if let CallEvent::Ended {
            outcome,
            detail: Some(detail),
            ..
        } = &event
            && outcome.is_graded()
            && *outcome != CallOutcome::Completed
            && self.failure_examples.len() < FAILURE_EXAMPLES
            && !self.failure_examples.iter().any(|(_, seen)| seen == detail)
        {
            self.failure_examples.push((*outcome, detail.clone()));
        }
        match event {
            CallEvent::WaitingForReply { call, since } => {
                self.waits.insert(call, since);
            }
            CallEvent::WaitOver { call } => {
                self.waits.remove(&call);
            }
            CallEvent::ConnectRefused => self.window_refused += 1,
            _ => {}
        }
        self.totals.apply(&event);
        self.window.apply(&event);
    }

    pub fn active(&self) -> u64 {
        self.totals.started - self.totals.ended()
    }

    /// The run's totals so far.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Samples the harness's own CPU and memory; called about once a second.
    pub fn sample_harness(&mut self, now: Instant) {
        let Ok(sample) = process::sample(None) else {
            return;
        };
        let active = self.active();
        let rss = mib(sample.rss_bytes);
        self.harness.rss_mib_max = self.harness.rss_mib_max.max(rss);
        if active >= self.harness.peak_active_calls && active > 0 {
            self.harness.peak_active_calls = active;
            let per_call = (rss - self.harness.rss_mib_baseline).max(0.0) * 1024.0 / active as f64;
            self.harness.rss_kib_per_call = Some((per_call * 10.0).round() / 10.0);
        }
        let first = *self.first_cpu.get_or_insert((now, sample.cpu_time));
        let percent = |(at, cpu): (Instant, Duration)| {
            let wall = now.saturating_duration_since(at).as_secs_f64();
            // /proc counts CPU in 10 ms ticks: shorter windows are noise.
            (wall >= 0.5).then(|| 100.0 * sample.cpu_time.saturating_sub(cpu).as_secs_f64() / wall)
        };
        if let Some(average) = percent(first) {
            self.harness.cpu_pct_avg = (average * 10.0).round() / 10.0;
        }
        match self.last_cpu.map(percent) {
            Some(None) => {} // too soon: keep measuring from the last sample
            Some(Some(recent)) => {
                self.harness.cpu_pct_max =
                    self.harness.cpu_pct_max.max((recent * 10.0).round() / 10.0);
                self.last_cpu = Some((now, sample.cpu_time));
            }
            None => self.last_cpu = Some((now, sample.cpu_time)),
        }
    }

    pub fn progress(&self, now: Instant) -> Progress {
        let window_s = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64();
        let response = &self.window.response;
        Progress {
            elapsed: now.saturating_duration_since(self.run_start),
            active: self.active(),
            started: self.totals.started,
            ended: self.totals.ended(),
            calls_per_second: if window_s > 0.0 {
                self.window.started as f64 / window_s
            } else {
                0.0
            },
            success_pct: self.totals.success_pct(),
            response_p95_ms: (!response.is_empty())
                .then(|| response.value_at_quantile(0.95) as f64 / 1000.0)
                .or_else(|| {
                    (!self.totals.response.is_empty())
                        .then(|| self.totals.response.value_at_quantile(0.95) as f64 / 1000.0)
                }),
        }
    }

    /// The calls waiting for the agent to start answering at `now`, and the longest of
    /// their waits so far.
    pub fn waiting(&self, now: Instant) -> (u64, Duration) {
        let longest = self
            .waits
            .values()
            .map(|since| now.saturating_duration_since(*since))
            .max()
            .unwrap_or_default();
        (self.waits.len() as u64, longest)
    }

    /// The share of the interval ending `now` in which some task on the host waited for a
    /// CPU, in percent (0.1 resolution), and starts the next interval's reading.
    fn host_cpu_pressure_pct(&mut self, now: Instant) -> Option<f64> {
        let total = process::cpu_pressure_total_us()?;
        let (since, before) = self.window_pressure.replace((now, total))?;
        let wall_us = now.saturating_duration_since(since).as_micros() as f64;
        (wall_us >= 500_000.0).then(|| {
            let pct = (100.0 * total.saturating_sub(before) as f64 / wall_us).min(100.0);
            (pct * 10.0).round() / 10.0
        })
    }

    /// Closes the current interval and returns its `interval` journal record: the window's
    /// calls ([`Totals::to_record`]), when it started (`from_s`), the calls active now, the
    /// calls waiting for an answer now (`waiting`, `longest_wait_ms`), the failure examples
    /// first seen in it, and the harness's usage so far.
    pub fn take_interval_record(&mut self, now: Instant) -> serde_json::Value {
        let from_s = crate::journal::round_ms(
            self.window_start
                .saturating_duration_since(self.run_start)
                .as_secs_f64(),
        );
        let from = self.examples_taken.min(self.failure_examples.len());
        self.examples_taken = self.failure_examples.len();
        let examples: Vec<serde_json::Value> = self.failure_examples[from..]
            .iter()
            .map(|(outcome, detail)| {
                serde_json::json!({"outcome": outcome.as_str(), "detail": detail})
            })
            .collect();
        self.window_start = now;
        let mut record = std::mem::take(&mut self.window).to_record();
        if let Some(fields) = record.as_object_mut() {
            fields.insert("from_s".into(), from_s.into());
            fields.insert("active".into(), self.active().into());
            let (waiting, longest) = self.waiting(now);
            fields.insert("waiting".into(), waiting.into());
            fields.insert(
                "longest_wait_ms".into(),
                (longest.as_millis() as u64).into(),
            );
            if !examples.is_empty() {
                fields.insert("failure_examples".into(), examples.into());
            }
            if let Some(pct) = self.host_cpu_pressure_pct(now) {
                fields.insert("host_cpu_pressure_pct".into(), pct.into());
            }
            let refused = std::mem::take(&mut self.window_refused);
            if refused > 0 {
                fields.insert("refused".into(), refused.into());
            }
            fields.insert(
                "harness".into(),
                serde_json::to_value(self.harness).unwrap_or_default(),
            );
        }
        record
    }
}

fn mib(bytes: u64) -> f64 {
    crate::units::mib(bytes as f64)
}

/// Receives events until every sender is dropped, calling `on_tick` about once a second
/// with the aggregator so the caller can draw progress and write interval records; the
/// last call, once every sender is gone, has `last` set. What the run measured is in
/// those records: the grader reads it back from the journal.
pub async fn run_aggregator(
    mut events: UnboundedReceiver<CallEvent>,
    run_start: Instant,
    mut on_tick: impl FnMut(&mut Aggregator, Instant, bool),
) {
    let mut aggregator = Aggregator::new(run_start);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => aggregator.apply(event),
                None => break,
            },
            now = ticker.tick() => {
                // The tick's own instant is when it was due; under load it fires late, and
                // CPU over the real wall time is what counts.
                aggregator.sample_harness(Instant::now());
                on_tick(&mut aggregator, now, false);
            }
        }
    }
    let now = Instant::now();
    aggregator.sample_harness(now);
    on_tick(&mut aggregator, now, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{StreamClose, pacing_histogram};

    fn ended(outcome: CallOutcome) -> CallEvent {
        CallEvent::Ended {
            outcome,
            duration: Duration::from_secs(1),
            detail: Some(format!("{outcome} happened")),
            close: Some(StreamClose::Caller),
        }
    }

    #[test]
    fn success_rate_excludes_cancelled_calls_and_counts_dropped_ones() {
        let mut aggregator = Aggregator::new(Instant::now());
        for _ in 0..4 {
            aggregator.apply(CallEvent::Started);
        }
        aggregator.apply(ended(CallOutcome::Completed));
        aggregator.apply(ended(CallOutcome::Completed));
        aggregator.apply(ended(CallOutcome::TurnTimeout));
        aggregator.apply(ended(CallOutcome::Cancelled));
        aggregator.apply(CallEvent::Dropped);
        let totals = &aggregator.totals;
        assert_eq!(totals.graded(), 4);
        assert_eq!(totals.success_pct(), Some(50.0));
        assert_eq!(totals.failed(), 2, "the turn timeout and the dropped call");
        assert_eq!(aggregator.active(), 0);
        let examples = aggregator.failure_examples;
        assert_eq!(
            examples.len(),
            1,
            "cancelled calls are not failures: {examples:?}"
        );
    }

    #[test]
    fn failure_examples_are_bounded_and_distinct() {
        let mut aggregator = Aggregator::new(Instant::now());
        for i in 0..100 {
            aggregator.apply(CallEvent::Ended {
                outcome: CallOutcome::ConnectFailed,
                duration: Duration::ZERO,
                detail: Some(format!("error {}", i % 20)),
                close: None,
            });
            aggregator.apply(ended(CallOutcome::ConnectFailed));
        }
        assert_eq!(aggregator.failure_examples.len(), FAILURE_EXAMPLES);
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut totals = Totals::default();
        for ms in 1..=100u64 {
            totals.apply(
                &(CallEvent::Reply {
                    latency: Duration::from_millis(ms),
                    dead_air: Duration::ZERO,
                }),
            );
        }
        let p = Percentiles::of(&totals.response);
        assert_eq!(p.count, 100);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p95 - 95.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.1, "{p:?}");
    }

    #[test]
    fn an_interval_record_rebuilds_its_totals() {
        let mut totals = Totals::default();
        totals.apply(&CallEvent::Started);
        totals.apply(&CallEvent::Started);
        totals.apply(&CallEvent::Connected {
            connect: Duration::from_millis(40),
        });
        for ms in [300, 500, 900] {
            totals.apply(&CallEvent::Reply {
                latency: Duration::from_millis(ms),
                dead_air: Duration::ZERO,
            });
        }
        totals.apply(&ended(CallOutcome::Completed));
        totals.apply(&ended(CallOutcome::TurnTimeout));
        totals.apply(&CallEvent::ProtocolError { kind: "bad_json" });
        totals.apply(&CallEvent::Dropped);
        let record = totals.to_record();
        assert_eq!(record["failed"], 2, "{record}");
        assert_eq!(record["outcomes"]["turn_timeout"], 1);
        // Two intervals' records add up to the sum of both.
        let mut rebuilt = Totals::default();
        rebuilt.add_record(&record).unwrap();
        rebuilt.add_record(&record).unwrap();
        assert_eq!(rebuilt.started, 4);
        assert_eq!(rebuilt.dropped, 2);
        assert_eq!(rebuilt.count(CallOutcome::Completed), 2);
        assert_eq!(rebuilt.protocol_errors["bad_json"], 2);
        assert_eq!(rebuilt.response.len(), 6);
        assert_eq!(rebuilt.response.max(), totals.response.max());
        assert_eq!(rebuilt.connect.len(), 2);
        let mut broken = record.clone();
        broken["hist"]["response"] = "not a histogram".into();
        broken["outcomes"]["exploded"] = 1.into();
        let error = Totals::default().add_record(&broken).unwrap_err();
        assert!(error.contains("unknown outcome \"exploded\""), "{error}");
        assert!(error.contains("histogram response"), "{error}");
    }

    #[test]
    fn closes_are_counted_by_who_and_code_and_bounded() {
        let mut totals = Totals::default();
        let close = |close: StreamClose| CallEvent::Ended {
            outcome: CallOutcome::FleetHungUp,
            duration: Duration::ZERO,
            detail: None,
            close: Some(close),
        };
        totals.apply(&close(StreamClose::fleet(Some(1000), "goodbye")));
        totals.apply(&close(StreamClose::fleet(Some(1000), "bye")));
        totals.apply(&close(StreamClose::fleet(None, "")));
        totals.apply(&close(StreamClose::Dropped {
            why: "reset".into(),
        }));
        totals.apply(&close(StreamClose::Caller));
        let record = totals.to_record();
        assert_eq!(
            record["closes"],
            serde_json::json!({"caller": 1, "fleet 1000": 2, "fleet none": 1, "fleet abrupt": 1})
        );
        // A fleet closing with a new code every call grows the map to its bound, no further.
        for code in 4000..4100 {
            totals.apply(&close(StreamClose::fleet(Some(code), "")));
        }
        assert_eq!(totals.closes.len(), CLOSE_KEYS + 1);
        assert_eq!(totals.closes[OTHER_CLOSES], 100 - (CLOSE_KEYS as u64 - 4));
        let mut rebuilt = Totals::default();
        rebuilt.add_record(&totals.to_record()).unwrap();
        assert_eq!(rebuilt.closes, totals.closes);
    }

    #[test]
    fn the_interval_record_shows_calls_waiting_for_an_answer() {
        let start = Instant::now();
        let mut aggregator = Aggregator::new(start);
        for call in 0..3 {
            aggregator.apply(CallEvent::Started);
            aggregator.apply(CallEvent::WaitingForReply {
                call,
                since: start + Duration::from_secs(call),
            });
        }
        // Call 1 heard its answer; call 2's wait started at 2 s.
        aggregator.apply(CallEvent::WaitOver { call: 1 });
        let record = aggregator.take_interval_record(start + Duration::from_secs(5));
        assert_eq!(record["waiting"], 2, "{record}");
        assert_eq!(record["longest_wait_ms"], 5000, "{record}");
        // A call that ends mid-wait reports the wait over (its ReplyWait's drop).
        aggregator.apply(CallEvent::WaitOver { call: 0 });
        aggregator.apply(ended(CallOutcome::TurnTimeout));
        let record = aggregator.take_interval_record(start + Duration::from_secs(10));
        assert_eq!(record["waiting"], 1, "{record}");
        assert_eq!(record["longest_wait_ms"], 8000, "{record}");
        aggregator.apply(CallEvent::WaitOver { call: 2 });
        let record = aggregator.take_interval_record(start + Duration::from_secs(15));
        assert_eq!(record["waiting"], 0, "{record}");
        assert_eq!(record["longest_wait_ms"], 0, "{record}");
    }

    #[test]
    fn pacing_batches_merge_into_the_run_histogram() {
        let mut totals = Totals::default();
        let mut batch = pacing_histogram();
        batch.record_n(500, 99).unwrap();
        batch.record(4_000).unwrap();
        totals.apply(&(CallEvent::Pacing(Box::new(batch))));
        assert_eq!(totals.pacing.len(), 100);
        let p99 = totals.pacing.value_at_quantile(0.995);
        assert!((3_500..=4_500).contains(&p99), "{p99}");
    }
}

//! What the calls measured, as the journal's `interval` records carry it and the grader and
//! the reports read it back: how calls ended, the run's totals and histograms, the
//! harness's own load.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// How a call ended. The names are a public contract (`summary.json` `calls.by_outcome`).
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The script ran to its end and the call hung up normally, or the fleet hung up as
    /// `[calls] fleet_may_hang_up` allows.
    Completed,
    /// The fleet closed the stream before the script ended (or dropped the connection),
    /// unless `[calls] fleet_may_hang_up` says that close ends the call well.
    FleetHungUp,
    /// The agent did not start replying within the turn timeout.
    TurnTimeout,
    /// Webhook, TwiML or WebSocket handshake failed or timed out.
    ConnectFailed,
    /// The fleet sent something Twilio would reject (invalid JSON, unknown event, wrong
    /// streamSid, a binary frame, an oversized message).
    ProtocolError,
    /// The fleet stopped reading: a frame could not be written for several seconds.
    SendStalled,
    /// The call ran past `max_call_duration`.
    MaxDuration,
    /// The run ended (time up, Ctrl-C) while the call was in progress. Not the fleet's fault:
    /// excluded from the success rate.
    Cancelled,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 8] = [
        CallOutcome::Completed,
        CallOutcome::FleetHungUp,
        CallOutcome::TurnTimeout,
        CallOutcome::ConnectFailed,
        CallOutcome::ProtocolError,
        CallOutcome::SendStalled,
        CallOutcome::MaxDuration,
        CallOutcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Completed => "completed",
            CallOutcome::FleetHungUp => "fleet_hung_up",
            CallOutcome::TurnTimeout => "turn_timeout",
            CallOutcome::ConnectFailed => "connect_failed",
            CallOutcome::ProtocolError => "protocol_error",
            CallOutcome::SendStalled => "send_stalled",
            CallOutcome::MaxDuration => "max_duration",
            CallOutcome::Cancelled => "cancelled",
        }
    }

    /// Whether the call counts in the success rate at all.
    pub fn is_graded(self) -> bool {
        self != CallOutcome::Cancelled
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failure examples kept for the report: enough to see what went wrong, bounded.
pub const FAILURE_EXAMPLES: usize = 10;

/// Distinct keys counted in `closes`: a fleet closing with a new code on every call must
/// not grow the record; the rest are counted under [`OTHER_CLOSES`].
pub const CLOSE_KEYS: usize = 16;
/// The `closes` key of the closes beyond [`CLOSE_KEYS`] distinct ones.
pub const OTHER_CLOSES: &str = "other";

/// The journal names of an interval's histograms (`hist`), in [`Totals`]' order.
pub const HISTOGRAMS: [&str; 6] = [
    "response",
    "first_audio",
    "connect",
    "dead_air",
    "mark_wait",
    "pacing",
];

/// Where [`Totals::add_record_into`] adds each of [`HISTOGRAMS`]: by bucket index, so a
/// journal's hundreds of thousands of histograms are added up fast.
#[derive(Debug, Default)]
pub struct HistogramSums {
    sums: [crate::journal::histogram::Sum; 6],
}

impl HistogramSums {
    /// The sum of one histogram (by its journal name).
    pub fn get(&self, name: &str) -> Option<&crate::journal::histogram::Sum> {
        let slot = HISTOGRAMS.iter().position(|known| *known == name)?;
        Some(&self.sums[slot])
    }

    /// Records everything added so far into `totals`' histograms.
    pub fn drain_into(&mut self, totals: &mut Totals) {
        for (slot, sum) in self.sums.iter_mut().enumerate() {
            sum.drain_into(totals.histogram_at(slot));
        }
    }
}

/// Latency histograms in microseconds, one significant figure more than the per-call ones.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// Everything measured over the run (or over one interval).
#[derive(Debug, Clone)]
pub struct Totals {
    pub started: u64,
    pub connected: u64,
    pub outcomes: BTreeMap<CallOutcome, u64>,
    pub dropped: u64,
    pub replies: u64,
    pub marks_echoed: u64,
    pub protocol_errors: BTreeMap<String, u64>,
    /// How media streams closed, by their journal key (`StreamClose::journal_key` in `call`): who closed
    /// (caller or fleet), cleanly with which code, or abruptly.
    pub closes: BTreeMap<String, u64>,
    pub connect: Histogram<u64>,
    pub first_audio: Histogram<u64>,
    pub response: Histogram<u64>,
    pub dead_air: Histogram<u64>,
    pub mark_wait: Histogram<u64>,
    pub pacing: Histogram<u64>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            started: 0,
            connected: 0,
            outcomes: BTreeMap::new(),
            dropped: 0,
            replies: 0,
            marks_echoed: 0,
            protocol_errors: BTreeMap::new(),
            closes: BTreeMap::new(),
            connect: latency_histogram(),
            first_audio: latency_histogram(),
            response: latency_histogram(),
            dead_air: latency_histogram(),
            mark_wait: latency_histogram(),
            pacing: latency_histogram(),
        }
    }
}

/// Records `value` in microseconds, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, value: Duration) {
    let micros = (value.as_micros() as u64).clamp(1, histogram.high());
    let _ = histogram.record(micros);
}

impl Totals {
    /// Counts `count` closes under `key`, at most [`CLOSE_KEYS`] distinct keys.
    pub fn count_closes(&mut self, key: String, count: u64) {
        let key = if self.closes.len() < CLOSE_KEYS || self.closes.contains_key(&key) {
            key
        } else {
            OTHER_CLOSES.to_owned()
        };
        add(self.closes.entry(key).or_default(), count);
    }

    pub fn ended(&self) -> u64 {
        self.outcomes
            .values()
            .fold(0, |sum, count| sum.saturating_add(*count))
    }

    pub fn count(&self, outcome: CallOutcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// Calls that count in the success rate: every ended call but the cancelled ones.
    pub fn graded(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(outcome, _)| outcome.is_graded())
            .fold(self.dropped, |sum, (_, count)| sum.saturating_add(*count))
    }

    /// Completed calls over graded calls, in percent; None before any call was graded.
    pub fn success_pct(&self) -> Option<f64> {
        let graded = self.graded();
        (graded > 0).then(|| 100.0 * self.count(CallOutcome::Completed) as f64 / graded as f64)
    }

    /// Graded calls that did not complete, dropped ones included: `completed + failed` is
    /// the success rate's denominator.
    pub fn failed(&self) -> u64 {
        self.graded() - self.count(CallOutcome::Completed)
    }

    /// The histograms by their journal name, in the order of [`HISTOGRAMS`].
    fn histograms(&self) -> [(&'static str, &Histogram<u64>); 6] {
        let [response, first_audio, connect, dead_air, mark_wait, pacing] = HISTOGRAMS;
        [
            (response, &self.response),
            (first_audio, &self.first_audio),
            (connect, &self.connect),
            (dead_air, &self.dead_air),
            (mark_wait, &self.mark_wait),
            (pacing, &self.pacing),
        ]
    }

    /// The histogram at `slot` of [`HISTOGRAMS`].
    fn histogram_at(&mut self, slot: usize) -> &mut Histogram<u64> {
        match slot {
            0 => &mut self.response,
            1 => &mut self.first_audio,
            2 => &mut self.connect,
            3 => &mut self.dead_air,
            4 => &mut self.mark_wait,
            _ => &mut self.pacing,
        }
    }

    /// This interval's calls as journal fields: counts, outcomes, percentiles for people
    /// with `jq`, and every histogram serialized (`hist`), so the run's totals can be
    /// rebuilt exactly from the journal ([`Totals::add_record`]).
    pub fn to_record(&self) -> serde_json::Value {
        let hist: serde_json::Map<String, serde_json::Value> = self
            .histograms()
            .into_iter()
            .filter_map(|(name, histogram)| {
                crate::journal::histogram::encode(histogram)
                    .map(|text| (name.to_owned(), text.into()))
            })
            .collect();
        serde_json::json!({
            "started": self.started,
            "connected": self.connected,
            "completed": self.count(CallOutcome::Completed),
            "failed": self.failed(),
            "dropped": self.dropped,
            "replies": self.replies,
            "marks_echoed": self.marks_echoed,
            "outcomes": self.outcomes.iter().map(|(outcome, count)| (outcome.as_str(), *count)).collect::<BTreeMap<_, _>>(),
            "protocol_errors": self.protocol_errors,
            "closes": self.closes,
            "response_ms": Percentiles::of(&self.response),
            "hist": hist,
        })
    }

    /// Adds an `interval` record's calls (written by [`Totals::to_record`]); a field that
    /// cannot be read is named in the error, and what could be read is kept.
    pub fn add_record(&mut self, record: &serde_json::Value) -> Result<(), String> {
        self.add_record_with(record, |_, text, into| {
            crate::journal::histogram::add_into(text, into)
        })
    }

    /// [`Totals::add_record`] for many records: each histogram goes into `sums` (see
    /// [`HistogramSums`]), which [`HistogramSums::drain_into`] adds to the totals once
    /// the last record is in.
    pub fn add_record_into(
        &mut self,
        record: &serde_json::Value,
        sums: &mut HistogramSums,
    ) -> Result<(), String> {
        self.add_record_with(record, |slot, text, _| sums.sums[slot].add(text))
    }

    fn add_record_with(
        &mut self,
        record: &serde_json::Value,
        mut add_histogram: impl FnMut(usize, &str, &mut Histogram<u64>) -> Result<(), String>,
    ) -> Result<(), String> {
        let count = |key: &str| {
            record
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        add(&mut self.started, count("started"));
        add(&mut self.connected, count("connected"));
        add(&mut self.dropped, count("dropped"));
        add(&mut self.replies, count("replies"));
        add(&mut self.marks_echoed, count("marks_echoed"));
        let mut problems = Vec::new();
        if let Some(outcomes) = record
            .get("outcomes")
            .and_then(serde_json::Value::as_object)
        {
            for (name, value) in outcomes {
                match CallOutcome::ALL
                    .iter()
                    .find(|outcome| outcome.as_str() == name)
                {
                    Some(outcome) => add(
                        self.outcomes.entry(*outcome).or_default(),
                        value.as_u64().unwrap_or(0),
                    ),
                    None => problems.push(format!("unknown outcome {name:?}")),
                }
            }
        }
        if let Some(errors) = record
            .get("protocol_errors")
            .and_then(serde_json::Value::as_object)
        {
            for (kind, value) in errors {
                add(
                    self.protocol_errors.entry(kind.clone()).or_default(),
                    value.as_u64().unwrap_or(0),
                );
            }
        }
        if let Some(closes) = record.get("closes").and_then(serde_json::Value::as_object) {
            for (key, value) in closes {
                self.count_closes(key.clone(), value.as_u64().unwrap_or(0));
            }
        }
        if let Some(hist) = record.get("hist").and_then(serde_json::Value::as_object) {
            for (name, text) in hist {
                let Some(slot) = HISTOGRAMS.iter().position(|known| known == name) else {
                    problems.push(format!("unknown histogram {name:?}"));
                    continue;
                };
                // Added bucket by bucket, never decoded into a histogram of its own: a
                // 72-hour journal holds 300,000 of them.
                let into = self.histogram_at(slot);
                match text.as_str().map(|text| add_histogram(slot, text, into)) {
                    Some(Ok(())) => {}
                    Some(Err(error)) => problems.push(format!("histogram {name}: {error}")),
                    None => problems.push(format!("histogram {name} is not a string")),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Adds a count read from a journal, which may say anything: saturating at `u64::MAX`.
fn add(total: &mut u64, count: u64) {
    *total = total.saturating_add(count);
}

/// Percentiles of a latency histogram in milliseconds, as `summary.json` carries them.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |micros: u64| (micros as f64 / 1000.0 * 100.0).round() / 100.0;
        Percentiles {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// The harness's own load: a harness that runs out of CPU cannot pace audio, and its verdict
/// would blame the fleet for its own lateness.
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq,
)]
#[serde(default)]
pub struct HarnessUsage {
    pub peak_active_calls: u64,
    pub rss_mib_baseline: f64,
    pub rss_mib_max: f64,
    /// RSS at peak concurrency minus the baseline, over the calls then active.
    pub rss_kib_per_call: Option<f64>,
    pub cpu_pct_avg: f64,
    pub cpu_pct_max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzz target `journal`: a journal's counts are read as `u64`, and two
    /// intervals near 2^64 overflowed their sum (a panic in a debug build, a wrong total
    /// in a release one). They saturate instead.
    #[test]
    fn counts_near_2_to_the_64_saturate_instead_of_overflowing() {
        let huge = u64::MAX - 1;
        let outcomes: BTreeMap<&str, u64> = CallOutcome::ALL
            .iter()
            .map(|outcome| (outcome.as_str(), huge))
            .collect();
        let record = serde_json::json!({
            "started": huge, "connected": huge, "dropped": huge, "replies": huge,
            "marks_echoed": huge, "outcomes": outcomes,
            "protocol_errors": {"invalid_json": huge}, "closes": {"fleet_1000": huge},
        });
        let mut totals = Totals::default();
        totals.add_record(&record).unwrap();
        totals.add_record(&record).unwrap();
        for count in [
            totals.started,
            totals.connected,
            totals.dropped,
            totals.replies,
            totals.marks_echoed,
            totals.count(CallOutcome::Completed),
            totals.protocol_errors["invalid_json"],
            totals.closes["fleet_1000"],
            totals.ended(),
            totals.graded(),
        ] {
            assert_eq!(count, u64::MAX);
        }
        assert_eq!(totals.failed(), 0);
        assert_eq!(totals.success_pct(), Some(100.0));
    }
}

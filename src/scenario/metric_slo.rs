//! `[[slo.metric]]`: SLOs on the fleet's own Prometheus series, for what no fixed key
//! covers (a dead-letter queue that must stay short, a fleet that must scale out under a
//! spike). Each names a series as `[observe] record` takes it and sets one or more bounds;
//! the series is journaled with the `record` series (one `metrics` record at most every
//! [`RECORD_EVERY`]) and graded from the journal alone.

use std::time::Duration;

use super::observe::RecordedSeries;

/// How often the scraped series (`[observe] record` and every metric SLO's) are journaled,
/// whatever the scrape interval: a 72-hour run keeps a bounded journal.
pub const RECORD_EVERY: Duration = Duration::from_secs(10);

/// `window` when a metric SLO with `rate_max` gives none.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);

/// The names of the built-in SLOs (and of the other `[slo]` keys): a metric SLO may not
/// take one, so every name in a report means one thing.
pub const BUILT_IN_NAMES: [&str; 15] = [
    "call_success",
    "response_p95",
    "response_p99",
    "first_audio_p95",
    "pacing_jitter_p99",
    "detect_within",
    "no_retry_storm",
    "recover_within",
    "stable_window",
    "uptime",
    "memory_growth",
    "temp_dir_growth",
    "max_crashes",
    "no_unprovoked_alerts",
    "metric",
];

/// The longest name a metric SLO may have: it is a column in the terminal summary and a
/// JUnit test case name.
pub const MAX_NAME_CHARS: usize = 64;

/// One `[[slo.metric]]` entry, validated: at least one bound is set.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSlo {
    /// Unique among the SLOs; letters, digits, `_`, `-` and `.` only.
    pub name: String,
    /// The series, as written (the key it is journaled under) and as a selector.
    pub series: RecordedSeries,
    /// Most value at any journaled sample.
    pub max: Option<f64>,
    /// Least value: after the warm-up, or only during the load's spike stages.
    pub min: Option<f64>,
    pub min_during: MinDuring,
    /// Most least-squares growth per hour of real time after the warm-up.
    pub growth_per_h: Option<f64>,
    /// Most per-second (real time) rate of increase over `window`, counter resets allowed
    /// for.
    pub rate_max: Option<f64>,
    /// The window `rate_max` is measured over (real time).
    pub window: Duration,
}

/// Where a metric SLO's `min` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinDuring {
    /// Every sample after the warm-up.
    #[default]
    Run,
    /// Samples inside the load's spike stages (`during = "spike"`).
    Spike,
}

/// Whether `name` may name a metric SLO: not empty, at most [`MAX_NAME_CHARS`], letters,
/// digits, `_`, `-` and `.` only.
pub fn name_allowed(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

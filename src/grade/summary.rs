//! `summary.json`'s types (a public contract, see DESIGN.md and `schema_version`): what the
//! grader fills from the journal. The report module writes and prints them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{SloVerdict, Verdict};
use crate::journal::calls::{CallOutcome, HarnessUsage, Percentiles, Totals};

/// Bumped whenever a field changes meaning or is removed; new fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// `summary.json`.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub run_id: String,
    pub scenario: String,
    pub scenario_path: String,
    pub seed: u64,
    /// How many times faster than written the schedule ran (`time_scale`; 1 is real
    /// time). Every time in this file is real time; multiply a fault's `injected_at_s`
    /// by it for the time as written.
    pub time_scale: f64,
    pub target: String,
    /// True in the reports rewritten while the run goes on (`report_every`): `verdict` is
    /// the verdict so far, `reason` says so. False once the run has ended.
    pub in_progress: bool,
    pub verdict: Verdict,
    /// Why the run ended as `error` or `aborted`.
    pub reason: Option<String>,
    pub started_at: String,
    pub ended_at: String,
    pub wall_s: f64,
    pub calls: CallCounts,
    pub latency_ms: LatencyBlock,
    pub pacing_jitter_ms: Percentiles,
    pub replies: u64,
    pub marks_echoed: u64,
    pub protocol_errors: BTreeMap<String, u64>,
    /// The first distinct reasons calls failed, for a person to read.
    pub failure_examples: Vec<FailureExample>,
    pub faults: Vec<crate::grade::FaultReport>,
    /// Each fault over its repeated injections: MTTD and MTTR with percentiles.
    pub fault_stats: Vec<FaultStats>,
    pub slos: Vec<SloVerdict>,
    /// Healthy share of the probed time outside faults and their recovery; null when nothing probed.
    pub uptime: Option<crate::grade::recovery::Uptime>,
    /// What the observers saw, counted: health probes (and how many were healthy), alerts
    /// received and refused (by reason), failed scrapes; null when the journal lacks it.
    pub observers: Option<crate::grade::replay::ObserverCounts>,
    pub fleet: FleetBlock,
    pub harness: HarnessUsage,
    /// Each time the harness died and `voxsoak resume` went on with the run: when (on
    /// the run's clock, which the time away is not on) and for how long it was away.
    /// That time is counted against no one: not in uptime, recovery or growth.
    pub harness_downtime: Vec<HarnessDowntime>,
    /// What the summary was rebuilt from.
    pub journal: JournalBlock,
}

/// One stretch the harness was away (`harness_downtime`).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct HarnessDowntime {
    /// Where the run went on, in seconds on the run's clock.
    pub at_s: f64,
    /// How long the harness was away, by the wall clock.
    pub down_s: f64,
    /// The wall clock of the killed harness's last record, and of the resume.
    pub from: String,
    pub to: String,
    /// Calls in progress when the harness died: never seen ending, so not graded.
    pub calls_lost: u64,
}

/// One fault name over its injections.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
pub struct FaultStats {
    pub name: String,
    pub kind: String,
    pub injected: usize,
    pub confirmed: usize,
    /// Confirmed injections detected by a signal that began after them.
    pub detected: usize,
    /// Confirmed injections that could not be detected: already signalling at injection,
    /// sharing an overlapping fault's signal, or the harness away. Neither detected nor
    /// missed: left out of `detect_within` and `time_to_detect_s`, so of the confirmed
    /// injections, `confirmed - not_detectable - detected` were missed.
    pub not_detectable: usize,
    pub recovered: usize,
    /// Over the confirmed injections that were detected (MTTD is its mean).
    pub time_to_detect_s: Option<crate::grade::recovery::Spread>,
    /// Over the confirmed injections that recovered (MTTR is its mean).
    pub time_to_recover_s: Option<crate::grade::recovery::Spread>,
    pub calls_failed: u64,
}

/// The journal the summary was built from.
#[derive(schemars::JsonSchema, Debug, Clone, Default, Serialize)]
pub struct JournalBlock {
    pub records: u64,
    /// The last line was cut short (the harness was killed while writing it).
    pub cut_short: bool,
    /// Lines or fields that could not be read, with their line and column.
    pub problems: Vec<String>,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
pub struct CallCounts {
    pub started: u64,
    pub completed: u64,
    /// Graded calls that did not complete, dropped ones included (cancelled calls are not
    /// failures): `completed + failed` is the success rate's denominator.
    pub failed: u64,
    pub cancelled: u64,
    /// Open model only: calls not placed because `max_concurrent` were running.
    pub dropped: u64,
    pub success_pct: Option<f64>,
    pub by_outcome: BTreeMap<&'static str, u64>,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
pub struct LatencyBlock {
    /// End of caller speech to first voiced agent audio heard.
    pub response: Percentiles,
    /// Stream start to the first voiced agent audio of the call.
    pub first_audio: Percentiles,
    /// Call start (webhook included) to WebSocket open.
    pub connect: Percentiles,
    /// Silent gaps inside replies, per reply.
    pub dead_air: Percentiles,
    /// How long each mark waited for its audio to play before it was echoed.
    pub mark_wait: Percentiles,
}

/// What is known of the fleet's process and temp dir (null where nothing was watched).
#[derive(schemars::JsonSchema, Debug, Clone, Default, Serialize)]
pub struct FleetBlock {
    pub rss_mib_max: Option<f64>,
    /// Least-squares slope after warm-up.
    pub rss_growth_mib_per_h: Option<f64>,
    /// Restarts by the harness: `process_kill` faults and restarts after crashes.
    pub restarts: Option<u64>,
    /// Exits the harness did not cause (the fleet the harness started).
    pub crashes: Option<u64>,
    /// Every exit, as `12.3s: killed by signal 9 (SIGKILL)`.
    pub exits: Vec<String>,
    pub temp_dir_mib_max: Option<f64>,
    pub temp_dir_growth_mib_per_h: Option<f64>,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
pub struct FailureExample {
    pub outcome: CallOutcome,
    pub detail: String,
}

/// Facts about the run that are not measurements.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub run_id: String,
    pub scenario: String,
    pub scenario_path: String,
    pub seed: u64,
    pub time_scale: f64,
    pub target: String,
    /// RFC 3339.
    pub started_at: String,
    pub ended_at: String,
    pub wall_s: f64,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        facts: RunFacts,
        totals: &Totals,
        failure_examples: &[(CallOutcome, String)],
        harness: HarnessUsage,
        slos: Vec<SloVerdict>,
        faults: Vec<crate::grade::FaultReport>,
        verdict: Verdict,
        reason: Option<String>,
    ) -> Self {
        let by_outcome = CallOutcome::ALL
            .iter()
            .map(|outcome| (outcome.as_str(), totals.count(*outcome)))
            .collect();
        Summary {
            schema_version: SCHEMA_VERSION,
            run_id: facts.run_id,
            scenario: facts.scenario,
            scenario_path: facts.scenario_path,
            seed: facts.seed,
            time_scale: facts.time_scale,
            target: facts.target,
            in_progress: false,
            verdict,
            reason,
            started_at: facts.started_at,
            ended_at: facts.ended_at,
            wall_s: (facts.wall_s * 1000.0).round() / 1000.0,
            calls: CallCounts {
                started: totals.started,
                completed: totals.count(CallOutcome::Completed),
                failed: totals.failed(),
                cancelled: totals.count(CallOutcome::Cancelled),
                dropped: totals.dropped,
                success_pct: totals
                    .success_pct()
                    .map(|pct| (pct * 100.0).round() / 100.0),
                by_outcome,
            },
            latency_ms: LatencyBlock {
                response: Percentiles::of(&totals.response),
                first_audio: Percentiles::of(&totals.first_audio),
                connect: Percentiles::of(&totals.connect),
                dead_air: Percentiles::of(&totals.dead_air),
                mark_wait: Percentiles::of(&totals.mark_wait),
            },
            pacing_jitter_ms: Percentiles::of(&totals.pacing),
            replies: totals.replies,
            marks_echoed: totals.marks_echoed,
            protocol_errors: totals.protocol_errors.clone(),
            failure_examples: failure_examples
                .iter()
                .map(|(outcome, detail)| FailureExample {
                    outcome: *outcome,
                    detail: detail.clone(),
                })
                .collect(),
            faults,
            fault_stats: Vec::new(),
            slos,
            uptime: None,
            observers: None,
            fleet: FleetBlock::default(),
            harness,
            harness_downtime: Vec::new(),
            journal: JournalBlock::default(),
        }
    }
}

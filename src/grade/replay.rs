//! Reads a run's journal back into what the grader needs: the plan, the calls per interval
//! and in total, every fault's injections, the fleet's signals, its process and temp dir.
//! The grader and the reports read only this, so `voxsoak report` re-creates every report
//! from the journal, and a journal cut short by a crash still grades what it holds.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::detect::plan::GradePlan;
use crate::detect::{Detector, Graded, Injection};
use crate::grade::during::{ResponseWindows, Window};
pub use crate::journal::StoppedBy;
use crate::journal::calls::CallOutcome;
use crate::journal::calls::{FAILURE_EXAMPLES, HarnessUsage, HistogramSums, Totals};
use crate::journal::retries::RetryTotals;
pub use crate::journal::signal::Signal;
use crate::journal::signal::str_of;
use crate::scenario::faults::FaultKind;

/// What happened to one injection, for `summary.json` `faults[]`: built from the journal's
/// fault events.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, PartialEq)]
pub struct FaultReport {
    pub kind: &'static str,
    pub name: String,
    /// 1 for the first injection of this fault, 2 for the next, …
    pub occurrence: u32,
    pub planned_at_s: f64,
    /// None: it was never injected (the run ended first, or injecting failed).
    pub injected_at_s: Option<f64>,
    pub cleared_at_s: Option<f64>,
    /// Whether it was seen to be in effect. A fault that is not is never graded as passed.
    pub confirmed: bool,
    /// When it was seen to be in effect.
    pub confirmed_at_s: Option<f64>,
    /// Undoing it failed (locks may still be held, the fleet not restarted): the run's
    /// verdict is `error`.
    pub clear_failed: bool,
    /// The harness died while it was in effect; `voxsoak resume` undid it and started the
    /// fleet again. What the harness could not watch (a detection it missed, the fleet's
    /// recovery) is not graded.
    pub harness_died: bool,
    /// How its detection went; null when it was not in effect.
    pub detection: Option<DetectionStatus>,
    /// From the injection to the first fleet signal that began after it and matches one
    /// of its `detect` rules; null when none did.
    pub detected_after_s: Option<f64>,
    pub detected_by: Option<String>,
    /// The `detect` rules whose signal was already showing when it was injected.
    pub signalling_at_injection: Vec<String>,
    /// The other faults it overlapped (in effect, or recovering, at the same time), as
    /// `tts_429 #3 from 16.0s`.
    pub overlapped: Vec<String>,
    /// How its recovery went; null when it was not in effect.
    pub recovery: Option<RecoveryStatus>,
    /// From `recovery_from_s` until the steady state held for the stable window; null
    /// when it never did (or could not be measured).
    pub recovered_after_s: Option<f64>,
    pub recover_from: Option<crate::scenario::faults::RecoverFrom>,
    /// Where time to recover counts from: its clear (or injection, per `recover_from`),
    /// or the later one of the faults it overlapped.
    pub recovery_from_s: Option<f64>,
    /// The scenario's `detect_within` it was graded against (null when it sets none): a
    /// detection after it, or none, fails this injection, by the difference.
    pub detect_within_s: Option<f64>,
    /// The scenario's `recover_within` it was graded against (null when it sets none): the
    /// steady state not back within it of `recovery_from_s` fails this injection.
    pub recover_within_s: Option<f64>,
    /// Impact: calls that failed in the journal intervals the fault overlapped, and the
    /// response p95 then against the p95 outside every fault window.
    pub calls_failed_during: Option<u64>,
    pub response_p95_during_ms: Option<f64>,
    pub response_p95_calm_ms: Option<f64>,
    pub notes: Vec<String>,
}

impl FaultReport {
    /// The report of an injection planned at `planned_at_s`, before anything happened.
    pub fn planned(kind: &'static str, name: String, occurrence: u32, planned_at_s: f64) -> Self {
        FaultReport {
            kind,
            name,
            occurrence,
            planned_at_s,
            injected_at_s: None,
            cleared_at_s: None,
            confirmed: false,
            confirmed_at_s: None,
            clear_failed: false,
            harness_died: false,
            detection: None,
            detected_after_s: None,
            detected_by: None,
            signalling_at_injection: Vec::new(),
            overlapped: Vec::new(),
            recovery: None,
            recovered_after_s: None,
            recover_from: None,
            recovery_from_s: None,
            detect_within_s: None,
            recover_within_s: None,
            calls_failed_during: None,
            response_p95_during_ms: None,
            response_p95_calm_ms: None,
            notes: Vec::new(),
        }
    }
}

/// How an injection's detection went (`summary.json` `faults[].detection`).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionStatus {
    /// A signal named by its `detect` rules began after it.
    Detected,
    /// None did: the fleet did not notice it.
    Undetected,
    /// None did, and a rule's signal was already showing when it was injected (an alert
    /// still firing, health already bad): there was no change to see. Not graded.
    AlreadySignalling,
    /// It overlapped an earlier fault whose signal it shares (the same alert, already
    /// raised for that one): one detection for both, counted once, for the earlier.
    SharedSignal,
    /// None was seen before the harness died while it was in effect: nobody watched the
    /// rest of it. Not graded.
    HarnessAway,
}

/// How an injection's recovery went (`summary.json` `faults[].recovery`).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStatus {
    Recovered,
    /// The steady state did not come back in time (or before the run ended, once the
    /// `recover_within` allowance had passed).
    NotRecovered,
    /// The run ended too soon after the clear to tell (or the fault was never cleared).
    /// Not graded.
    NotMeasured,
}

/// One journal interval's calls, enough to tell whether the steady state held then.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalPoint {
    pub from_s: f64,
    pub to_s: f64,
    pub completed: u64,
    pub failed: u64,
    /// Calls whose WebSocket opened in it, and calls whose connection was refused (nothing
    /// listened at the webhook or stream URL; absent in older journals: 0).
    pub connected: u64,
    pub refused: u64,
    /// Replies the agent finished in it.
    pub replies: u64,
    /// Calls waiting for the agent to start answering when it was written, and the
    /// longest of those waits (absent in older journals: 0).
    pub waiting: u64,
    pub longest_wait_ms: u64,
    /// Calls in progress when it was written (absent in older journals: None).
    pub active: Option<u64>,
    /// The interval's response latency percentiles; None when no response was measured.
    pub response_p50_ms: Option<f64>,
    pub response_p95_ms: Option<f64>,
    pub response_p99_ms: Option<f64>,
    /// How late the harness sent its frames in it, p99 in milliseconds: how starved of CPU
    /// the host was (see [`HOST_STARVED_PACING_MS`]).
    pub pacing_p99_ms: Option<f64>,
    /// The share of it in which some task on the host waited for a CPU, in percent
    /// (absent where the kernel has no pressure information, and in older journals).
    pub host_cpu_pressure_pct: Option<f64>,
}

/// An interval whose frames the harness sent this late (p99) ran on a starved host: the
/// harness and, on the same machine, the fleet and its stand-ins did not get the CPU they
/// needed. A quiet machine keeps this under 10 ms (20 ms frames); 100 ms means five frames'
/// worth of lateness, which no fleet bug causes in the harness's own scheduling.
pub const HOST_STARVED_PACING_MS: f64 = 100.0;

/// An interval in which some task on the host waited for a CPU this share of the time
/// (Linux's CPU pressure stall information, `/proc/pressure/cpu`) ran on a starved host
/// too: the fleet, on the same machine, could not run when it needed to, though the
/// harness's own frames kept time (a slow debug-built fleet under a parallel build).
pub const HOST_STARVED_CPU_PRESSURE_PCT: f64 = 75.0;

impl IntervalPoint {
    /// Whether the fleet's call endpoint was down in this interval: calls were refused
    /// at connect and none connected (the interval record's `refused`).
    pub fn calls_refused(&self) -> bool {
        self.refused > 0 && self.connected == 0
    }

    /// Whether the host was starved in this interval (see [`HOST_STARVED_PACING_MS`] and
    /// [`HOST_STARVED_CPU_PRESSURE_PCT`]).
    pub fn host_starved(&self) -> bool {
        self.pacing_p99_ms
            .is_some_and(|p99| p99 > HOST_STARVED_PACING_MS)
            || self
                .host_cpu_pressure_pct
                .is_some_and(|pct| pct >= HOST_STARVED_CPU_PRESSURE_PCT)
    }
}

/// One `tts_requests` window: the requests the TTS stand-in answered, by HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct TtsWindowPoint {
    /// When the window was journaled (its end).
    pub to_s: f64,
    pub window_s: f64,
    /// (status, requests), by status.
    pub by_status: Vec<(String, u64)>,
}

/// The fleet process exiting.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetExit {
    pub t_s: f64,
    /// As a shell shows it: `exit 1`, `killed by signal 9 (SIGKILL)`.
    pub status: String,
    /// The harness stopped or killed it (a `process_kill` fault, the end of the run).
    pub by_harness: bool,
}

/// How the run ended, from `run_ended`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub t_s: f64,
    pub at: String,
    /// Why it stopped early (a signal, an abort condition, the kill switch).
    pub stopped: Option<String>,
    pub stopped_by: Option<StoppedBy>,
}

/// An alert starting to fire.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertOnset {
    /// Its `startsAt` in run seconds, when the fleet gave one; else when it was seen.
    pub began_s: f64,
    pub seen_s: f64,
    pub name: String,
}

/// What the observers saw over the run, counted (the hub's `observed` record): the failed
/// probes, refused alert posts and failed scrapes a misbehaving fleet caused.
#[derive(schemars::JsonSchema, Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ObserverCounts {
    pub health_probes: u64,
    pub healthy_probes: u64,
    pub alerts_received: u64,
    /// Requests the alert receiver refused, by reason: `not_alerts`, `body_too_large`,
    /// `body_timeout`, `body_broken`.
    pub bad_alerts: std::collections::BTreeMap<String, u64>,
    pub scrapes_failed: u64,
    pub log_matches: u64,
}

impl ObserverCounts {
    /// What went wrong with the observers, in a line for the terminal summary (empty when
    /// nothing did): `health 3 of 10 probes failed, alerts refused 2 (body_too_large 1,
    /// not_alerts 1), scrapes failed 4`.
    pub fn problems_line(&self) -> String {
        let mut parts = Vec::new();
        let failed_probes = self.health_probes - self.healthy_probes.min(self.health_probes);
        if failed_probes > 0 {
            parts.push(format!(
                "health {failed_probes} of {} probes failed",
                self.health_probes
            ));
        }
        let refused: u64 = self.bad_alerts.values().sum();
        if refused > 0 {
            let reasons: Vec<String> = self
                .bad_alerts
                .iter()
                .map(|(reason, count)| format!("{reason} {count}"))
                .collect();
            parts.push(format!("alerts refused {refused} ({})", reasons.join(", ")));
        }
        if self.scrapes_failed > 0 {
            parts.push(format!("scrapes failed {}", self.scrapes_failed));
        }
        parts.join(", ")
    }
}

/// Everything the grader reads from a journal.
#[derive(Debug, Default)]
pub struct RunRecord {
    pub run_id: String,
    pub scenario: String,
    pub scenario_path: String,
    pub seed: u64,
    /// The schedule's compression (`time_scale`); 1 in journals written before it existed.
    pub time_scale: f64,
    pub target: String,
    pub started_at: String,
    pub planned_s: f64,
    pub plan: Option<GradePlan>,
    /// The harness started the fleet (embedded): its process was watched.
    pub fleet_spawned: bool,
    /// The fleet's process was sampled (`fleet_process`): the harness's own child, or an
    /// external fleet's through `[observe] process`.
    pub process_sampled: bool,
    /// The harness's own failures (a task of its own that panicked): the run could not be
    /// graded fully.
    pub harness_errors: Vec<String>,
    /// Each time the harness was away and the run was resumed (`harness_downtime`).
    pub harness_downtime: Vec<crate::grade::summary::HarnessDowntime>,
    pub totals: Totals,
    pub intervals: Vec<IntervalPoint>,
    /// The response p95 over the intervals in no fault's window, in milliseconds (each
    /// fault's own is its report's `response_p95_during_ms`): see `grade::during`.
    pub response_calm_p95_ms: Option<f64>,
    pub failure_examples: Vec<(CallOutcome, String)>,
    pub harness: HarnessUsage,
    pub faults: Vec<FaultReport>,
    /// Each injection's detection, from the journal's signals in journal order (the same
    /// engine the observers' hub ran live).
    pub detections: Vec<Graded>,
    /// (began_s, seen_s, name) of every alert that started firing (repeats left out).
    pub alert_onsets: Vec<AlertOnset>,
    /// (t_s, healthy) at each change of the health probe's answer.
    pub health: Vec<(f64, bool)>,
    /// (t_s, refused) at each change of whether anything listened at the health URL: a
    /// refused probe is the fleet down (crashed), not merely unhealthy.
    pub refused: Vec<(f64, bool)>,
    /// Where the fleet's RSS and temp-dir size come from (`observers` `rss_source`,
    /// `temp_dir_source`); None in journals from before they were said.
    pub rss_source: Option<String>,
    pub temp_dir_source: Option<String>,
    /// The observers said they watch the fleet's process (`observers` `process`).
    pub process_observed: bool,
    /// (t_s, bytes) of the fleet's RSS and temp dir, for growth slopes.
    pub rss: Vec<(f64, f64)>,
    pub rss_max_bytes: Option<f64>,
    pub temp_dir: Vec<(f64, f64)>,
    /// (t_s, value) of each series a metric SLO of the plan names, from the `metrics`
    /// records (a sample where the series was absent is left out), by the series' text.
    pub series: std::collections::BTreeMap<String, Vec<(f64, f64)>>,
    /// `metrics` records read: scrapes journaled, whichever series they held.
    pub metrics_records: u64,
    /// The TTS stand-in's requests by HTTP status, window by window (`tts_requests`), for
    /// the HTML report's timeline.
    pub tts_windows: Vec<TtsWindowPoint>,
    pub exits: Vec<FleetExit>,
    pub restarts: u64,
    pub retries: Option<RetryTotals>,
    /// The hub's `observed` record; None in a journal cut short before it, or from before it.
    pub observers: Option<ObserverCounts>,
    pub ended: Option<Ended>,
    /// The last record's time: where observation ends when `run_ended` is missing.
    pub last_t_s: f64,
    pub last_at: String,
    /// Lines and fields that could not be read, for the summary.
    pub problems: Vec<String>,
    pub records: u64,
    pub cut_short: bool,
}

impl RunRecord {
    /// When observation ended: `run_ended`, or the last record of a journal cut short.
    pub fn end_s(&self) -> f64 {
        self.ended.as_ref().map_or(self.last_t_s, |ended| ended.t_s)
    }

    /// Whether the fleet's process was watched, so its exits (crashes) were seen.
    pub fn process_watched(&self) -> bool {
        self.fleet_spawned
            || self.process_observed
            || self.process_sampled
            || !self.exits.is_empty()
    }
}

/// An interval record's pacing p99 in milliseconds, from the pacing histogram `sums` has
/// just added (it is recorded in microseconds).
fn pacing_p99_ms(record: &Value, sums: &HistogramSums) -> Option<f64> {
    record.get("hist")?.get("pacing")?;
    let pacing = sums.get("pacing")?.last_buckets();
    let micros = crate::journal::histogram::quantile(&pacing, 0.99)?;
    Some(micros as f64 / 1000.0)
}

/// Reads the journal at `path`.
pub fn read(path: &Path) -> std::io::Result<RunRecord> {
    let file = std::fs::File::open(path)?;
    read_from(std::io::BufReader::new(file), path)
}

/// Reads a journal's lines from `reader`, as [`read`] reads its file; `path` names it in
/// the problems. (The fuzz target `journal` comes in here: journal bytes to a summary
/// without a file.)
pub fn read_from(reader: impl std::io::BufRead, path: &Path) -> std::io::Result<RunRecord> {
    let mut run = RunRecord::default();
    let mut reading = Reading::default();
    let (unreadable, cut_short, records) =
        crate::journal::read_each_from(reader, path, |record| run.add(record, &mut reading))?;
    let Reading {
        detector,
        problems,
        mut sums,
        windows,
        responses,
    } = reading;
    sums.drain_into(&mut run.totals);
    if let Some(mut detector) = detector {
        run.detections.extend(detector.take_finished(true));
    }
    let p95s = responses.finish(&windows, run.end_s());
    run.response_calm_p95_ms = p95s.calm_ms;
    for (fault, p95) in p95s.during_ms {
        run.faults[fault].response_p95_during_ms = p95;
    }
    run.problems = unreadable;
    run.problems.extend(problems);
    run.cut_short = cut_short;
    run.records = records;
    run.faults.sort_by(|a, b| {
        a.planned_at_s
            .total_cmp(&b.planned_at_s)
            .then(a.name.cmp(&b.name))
            .then(a.occurrence.cmp(&b.occurrence))
    });
    Ok(run)
}

/// What reading a journal keeps beside the record it builds.
#[derive(Default)]
struct Reading {
    detector: Option<Detector>,
    problems: Vec<String>,
    /// The interval histograms, added up by bucket index.
    sums: HistogramSums,
    /// Each injected fault's window (by its index in `RunRecord::faults`), and the
    /// intervals' response latency put in them.
    windows: Vec<Window>,
    responses: ResponseWindows,
}

fn f64_of(record: &Value, key: &str) -> Option<f64> {
    record.get(key).and_then(Value::as_f64)
}

fn u64_of(record: &Value, key: &str) -> u64 {
    record.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl RunRecord {
    /// Takes in one journal record: each event goes to the method that reads it.
    fn add(&mut self, record: &Value, reading: &mut Reading) {
        let Reading {
            detector,
            problems,
            sums,
            windows,
            responses,
        } = reading;
        let event = record.get("event").and_then(Value::as_str).unwrap_or("");
        let t_s = f64_of(record, "t_s").unwrap_or(self.last_t_s);
        // An observation is timed when it was seen, which may be before it was journaled.
        let seen_s = f64_of(record, "seen_s").unwrap_or(t_s);
        self.last_t_s = self.last_t_s.max(t_s);
        if let Some(at) = record.get("at").and_then(Value::as_str) {
            self.last_at = at.to_owned();
        }
        let mut problem = |what: String| {
            if problems.len() < crate::journal::MAX_PROBLEMS {
                problems.push(format!("{event} at {t_s}s: {what}"));
            }
        };
        match event {
            "run_started" => self.add_run_started(record, &mut problem),
            "fleet" => self.fleet_spawned = record.get("pid").is_some_and(|pid| !pid.is_null()),
            "interval" => {
                self.add_interval(record, t_s, sums, &mut problem);
                self.put_in_windows(record, sums, windows, responses);
            }
            "fault_injected"
            | "fault_confirmed"
            | "fault_not_in_effect"
            | "fault_cleared"
            | "fault_clear_failed"
            | "fault_failed"
            | "fault_not_injected" => {
                let fault = self.add_fault_event(event, record, t_s);
                window_of(windows, fault, &self.faults[fault]);
                if event == "fault_injected" {
                    self.add_injection(record, t_s, detector);
                }
            }
            "chaos_error" => self.add_chaos_error(record),
            "observers" => self.add_observers(record),
            "alert" | "metric_condition" | "log_match" | "health" => {
                if let Some(signal) = Signal::of_record(event, record) {
                    self.add_signal(&signal, record, seen_s, detector);
                }
            }
            "harness_error" | "harness_downtime" => self.add_harness_record(event, record, t_s),
            "fleet_process" => self.add_process_sample(record, seen_s),
            "fleet_sample" => self.add_fleet_sample(record, seen_s),
            "temp_dir" => self.add_temp_dir_walk(record, seen_s),
            "metrics" => self.add_metrics(record, seen_s),
            "fleet_exited" => self.exits.push(FleetExit {
                t_s: seen_s,
                status: str_of(record, "status"),
                by_harness: record
                    .get("by_harness")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }),
            "fleet_restarted" => self.restarts += 1,
            "tts_requests" => self.add_tts_requests(record, t_s),
            "tts_standin" => {
                self.retries.get_or_insert_with(RetryTotals::default);
            }
            "observed" => match serde_json::from_value(record.clone()) {
                Ok(counts) => self.observers = Some(counts),
                Err(error) => problem(format!("observed record unreadable: {error}")),
            },
            "run_ended" => self.add_run_ended(record, t_s),
            _ => {}
        }
    }

    /// The harness's own troubles: a task that failed, time it was away (bounded).
    fn add_harness_record(&mut self, event: &str, record: &Value, t_s: f64) {
        let max = crate::journal::MAX_PROBLEMS;
        if event == "harness_error" && self.harness_errors.len() < max {
            self.harness_errors.push(format!(
                "{} at {t_s:.1}s: {}",
                str_of(record, "task"),
                str_of(record, "error")
            ));
        } else if event == "harness_downtime" && self.harness_downtime.len() < max {
            self.harness_downtime
                .push(crate::grade::summary::HarnessDowntime {
                    at_s: t_s,
                    down_s: f64_of(record, "down_s").unwrap_or(0.0),
                    from: str_of(record, "from"),
                    to: str_of(record, "to"),
                    calls_lost: u64_of(record, "calls_lost"),
                });
        }
    }

    /// The response latency of the interval just added goes to the fault windows it
    /// overlaps, or to the calm (`grade::during`).
    fn put_in_windows(
        &self,
        record: &Value,
        sums: &HistogramSums,
        windows: &[Window],
        responses: &mut ResponseWindows,
    ) {
        let Some(interval) = self.intervals.last() else {
            return;
        };
        let response = match record.get("hist").and_then(|hist| hist.get("response")) {
            Some(_) => sums.get("response").map_or(&[][..], |sum| sum.last()),
            None => &[],
        };
        responses.interval(interval.from_s, interval.to_s, response, windows);
    }

    /// `run_started`: what ran, and the grading plan it was run with.
    fn add_run_started(&mut self, record: &Value, problem: &mut impl FnMut(String)) {
        self.run_id = str_of(record, "run_id");
        self.scenario = str_of(record, "scenario");
        self.scenario_path = str_of(record, "scenario_path");
        self.seed = u64_of(record, "seed");
        self.time_scale = f64_of(record, "time_scale")
            .filter(|scale| scale.is_finite() && *scale >= 1.0)
            .unwrap_or(1.0);
        self.target = str_of(record, "target");
        self.started_at = str_of(record, "at");
        self.planned_s = f64_of(record, "planned_s").unwrap_or(0.0);
        match record
            .get("grading")
            .map(|plan| serde_json::from_value::<GradePlan>(plan.clone()))
        {
            Some(Ok(plan)) => {
                let (plan, unusable) = plan.sanitized();
                for what in unusable {
                    problem(what);
                }
                self.series = (plan.slo.metrics.iter())
                    .map(|metric| (metric.series.clone(), Vec::new()))
                    .collect();
                self.plan = Some(plan);
            }
            Some(Err(error)) => problem(format!("grading plan unreadable: {error}")),
            None => problem("no grading plan: default SLOs apply".into()),
        }
    }

    /// `fault_injected`: the detection engine starts watching for this injection.
    fn add_injection(&mut self, record: &Value, t_s: f64, detector: &mut Option<Detector>) {
        let detector = detector.get_or_insert_with(|| self.detector());
        detector.injected(Injection {
            fault: str_of(record, "fault"),
            kind: str_of(record, "kind"),
            occurrence: u64_of(record, "occurrence") as u32,
            injected_at_s: t_s,
        });
        self.detections.extend(detector.take_finished(false));
    }

    /// `chaos_error`: the fault's latest injection is not known to be in effect.
    fn add_chaos_error(&mut self, record: &Value) {
        let name = str_of(record, "fault");
        if let Some(report) = self
            .faults
            .iter_mut()
            .rev()
            .find(|report| report.name == name)
        {
            report.confirmed = false;
            report.notes.push(str_of(record, "error"));
        }
    }

    /// `observers`: where the fleet's RSS and temp-dir size come from, and whether its
    /// process is watched.
    fn add_observers(&mut self, record: &Value) {
        let source = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
        self.rss_source = source("rss_source");
        self.temp_dir_source = source("temp_dir_source");
        self.process_observed = record.get("process").is_some_and(|p| !p.is_null());
    }

    /// A fleet signal (alert, metric condition, log match, health): the health series, the
    /// detection engine, and alert onsets.
    fn add_signal(
        &mut self,
        signal: &Signal,
        record: &Value,
        seen_s: f64,
        detector: &mut Option<Detector>,
    ) {
        if let Signal::Unhealthy | Signal::Healthy = signal {
            self.health.push((seen_s, *signal == Signal::Healthy));
            let refused = record
                .get("refused")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if self
                .refused
                .last()
                .map_or(refused, |(_, was)| *was != refused)
            {
                self.refused.push((seen_s, refused));
            }
        }
        let began_s = Signal::began_s(record);
        let detector = detector.get_or_insert_with(|| self.detector());
        detector.signal(seen_s, began_s, signal);
        self.detections.extend(detector.take_finished(false));
        if let Signal::AlertFiring(name) = signal
            && detector.last_was_onset()
        {
            self.alert_onsets.push(AlertOnset {
                began_s: began_s.unwrap_or(seen_s).min(seen_s),
                seen_s,
                name: name.clone(),
            });
        }
    }

    /// `fleet_process`: the fleet's process was sampled; its RSS counts unless the observers
    /// said RSS comes from elsewhere.
    fn add_process_sample(&mut self, record: &Value, seen_s: f64) {
        self.process_sampled = true;
        if self
            .rss_source
            .as_deref()
            .is_none_or(|source| source == "process")
        {
            if let Some(rss) = f64_of(record, "rss_bytes") {
                self.rss.push((seen_s, rss));
            }
            let peak = f64_of(record, "rss_max_bytes").or(f64_of(record, "rss_bytes"));
            if let Some(peak) = peak {
                self.rss_max_bytes = Some(self.rss_max_bytes.map_or(peak, |max| max.max(peak)));
            }
        }
    }

    /// `fleet_sample`: the fleet's own gauges, from /metrics (`rss_metric`,
    /// `temp_dir_metric`): the series the observers said they grade by, never mixed with the
    /// process's.
    fn add_fleet_sample(&mut self, record: &Value, seen_s: f64) {
        let from_metrics = |source: &Option<String>, default: bool| {
            source
                .as_deref()
                .map_or(default, |source| source == "metrics")
        };
        if let Some(rss) = f64_of(record, "rss_bytes")
            && from_metrics(&self.rss_source, !self.fleet_spawned)
        {
            self.rss.push((seen_s, rss));
            self.rss_max_bytes = Some(self.rss_max_bytes.map_or(rss, |max| max.max(rss)));
        }
        if let Some(bytes) = f64_of(record, "temp_dir_bytes")
            && from_metrics(&self.temp_dir_source, false)
        {
            self.temp_dir.push((seen_s, bytes));
        }
    }

    /// `metrics`: one scrape's journaled series; the metric SLOs' are kept.
    fn add_metrics(&mut self, record: &Value, seen_s: f64) {
        self.metrics_records += 1;
        let Some(values) = record.get("values") else {
            return;
        };
        for (series, samples) in &mut self.series {
            if let Some(value) = f64_of(values, series).filter(|value| value.is_finite()) {
                samples.push((seen_s, value));
            }
        }
    }

    /// `temp_dir`: the temp dir's size by walking it, unless the observers said it comes
    /// from elsewhere.
    fn add_temp_dir_walk(&mut self, record: &Value, seen_s: f64) {
        if let Some(bytes) = f64_of(record, "bytes")
            && self
                .temp_dir_source
                .as_deref()
                .is_none_or(|source| source == "walk")
        {
            self.temp_dir.push((seen_s, bytes));
        }
    }

    /// `tts_requests`: one window of the TTS stand-in's requests, for retry totals and the
    /// timeline.
    fn add_tts_requests(&mut self, record: &Value, t_s: f64) {
        self.retries
            .get_or_insert_with(RetryTotals::default)
            .add_window(record);
        let by_status = record
            .get("by_status")
            .and_then(Value::as_object)
            .map(|statuses| {
                statuses
                    .iter()
                    .filter_map(|(status, count)| Some((status.clone(), count.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        self.tts_windows.push(TtsWindowPoint {
            to_s: t_s,
            window_s: f64_of(record, "window_s").unwrap_or(0.0),
            by_status,
        });
    }

    /// `run_ended`: when and why the run stopped.
    fn add_run_ended(&mut self, record: &Value, t_s: f64) {
        let stopped = record
            .get("stopped")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let stopped_by = record
            .get("stopped_by")
            .and_then(|by| serde_json::from_value(by.clone()).ok())
            // Journals from before `stopped_by`: an abort condition said so.
            .or_else(|| {
                stopped
                    .as_deref()
                    .filter(|why| why.starts_with("abort condition"))
                    .map(|_| StoppedBy::AbortCondition)
            });
        self.ended = Some(Ended {
            t_s,
            at: str_of(record, "at"),
            stopped,
            stopped_by,
        });
    }

    /// The detection engine for this journal's faults (none before `run_started`).
    fn detector(&self) -> Detector {
        Detector::new(
            self.plan
                .as_ref()
                .map(|plan| plan.faults.clone())
                .unwrap_or_default(),
        )
    }

    fn add_interval(
        &mut self,
        record: &Value,
        t_s: f64,
        sums: &mut HistogramSums,
        problem: &mut impl FnMut(String),
    ) {
        if let Err(error) = self.totals.add_record_into(record, sums) {
            problem(error);
        }
        if let Some(harness) = record.get("harness") {
            match serde_json::from_value::<HarnessUsage>(harness.clone()) {
                Ok(harness) => self.harness = harness,
                Err(error) => problem(format!("harness usage unreadable: {error}")),
            }
        }
        if let Some(examples) = record.get("failure_examples").and_then(Value::as_array) {
            for example in examples {
                let outcome = str_of(example, "outcome");
                let Some(outcome) = CallOutcome::ALL
                    .into_iter()
                    .find(|known| known.as_str() == outcome)
                else {
                    continue;
                };
                if self.failure_examples.len() < FAILURE_EXAMPLES {
                    self.failure_examples
                        .push((outcome, str_of(example, "detail")));
                }
            }
        }
        let response_ms = record
            .get("response_ms")
            .filter(|p| p.get("count").and_then(Value::as_u64).unwrap_or(0) > 0);
        self.intervals.push(IntervalPoint {
            from_s: f64_of(record, "from_s").unwrap_or(t_s),
            to_s: t_s,
            completed: u64_of(record, "completed"),
            failed: u64_of(record, "failed"),
            connected: u64_of(record, "connected"),
            refused: u64_of(record, "refused"),
            replies: u64_of(record, "replies"),
            waiting: u64_of(record, "waiting"),
            longest_wait_ms: u64_of(record, "longest_wait_ms"),
            active: record.get("active").and_then(Value::as_u64),
            response_p50_ms: response_ms.and_then(|p| f64_of(p, "p50")),
            response_p95_ms: response_ms.and_then(|p| f64_of(p, "p95")),
            response_p99_ms: response_ms.and_then(|p| f64_of(p, "p99")),
            // Pacing is recorded in microseconds.
            pacing_p99_ms: pacing_p99_ms(record, sums),
            host_cpu_pressure_pct: f64_of(record, "host_cpu_pressure_pct"),
        });
    }

    /// Builds each injection's report from its events, so a journal cut short mid-fault
    /// still shows the fault as injected (and never cleared).
    fn add_fault_event(&mut self, event: &str, record: &Value, t_s: f64) -> usize {
        let name = str_of(record, "fault");
        let occurrence = u64_of(record, "occurrence") as u32;
        let index = match self
            .faults
            .iter()
            .position(|report| report.name == name && report.occurrence == occurrence)
        {
            Some(index) => index,
            None => {
                let kind_name = str_of(record, "kind");
                let kind = FaultKind::ALL
                    .into_iter()
                    .find(|kind| kind.name() == kind_name)
                    .map_or("unknown", FaultKind::name);
                let planned = f64_of(record, "planned_at_s").unwrap_or(t_s);
                self.faults
                    .push(FaultReport::planned(kind, name, occurrence, planned));
                self.faults.len() - 1
            }
        };
        let report = &mut self.faults[index];
        let text = |key: &str| {
            record
                .get(key)
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        match event {
            "fault_injected" => report.injected_at_s = Some(t_s),
            "fault_confirmed" => {
                report.confirmed = true;
                report.confirmed_at_s = Some(t_s);
                report.notes.extend(text("evidence"));
            }
            "fault_not_in_effect" => report.notes.extend(text("evidence")),
            "fault_cleared" => {
                report.cleared_at_s = Some(t_s);
                report.harness_died |=
                    record.get("by_resume").and_then(Value::as_bool) == Some(true);
                report.notes.extend(text("note"));
            }
            "fault_clear_failed" => {
                report.clear_failed = true;
                report
                    .notes
                    .extend(text("error").map(|error| format!("clearing failed: {error}")));
            }
            "fault_failed" => report
                .notes
                .extend(text("error").map(|error| format!("not injected: {error}"))),
            _ => report
                .notes
                .push("not injected: the run ended before its time".into()),
        }
        index
    }
}

/// Keeps `windows`' entry for the fault at `index` as its report says: from its
/// injection to its clear.
fn window_of(windows: &mut Vec<Window>, index: usize, report: &FaultReport) {
    let Some(from) = report.injected_at_s else {
        return;
    };
    let window = Window {
        fault: index,
        from,
        to: report.cleared_at_s,
    };
    match windows.iter_mut().find(|window| window.fault == index) {
        Some(known) => *known = window,
        None => windows.push(window),
    }
}

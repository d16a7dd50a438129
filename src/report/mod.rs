//! Reporters: the run directory's `summary.json` (a public contract, see DESIGN.md) and the
//! summary printed at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::grade::replay::{DetectionStatus, RecoveryStatus};
use crate::grade::{SloStatus, SloVerdict, Verdict};
use crate::journal::calls::CallOutcome;
use crate::journal::calls::{HarnessUsage, Percentiles, Totals};

/// Bumped whenever a field changes meaning or is removed; new fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub run_id: String,
    pub scenario: String,
    pub scenario_path: String,
    pub seed: u64,
    pub target: String,
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
    /// What the summary was rebuilt from.
    pub journal: JournalBlock,
}

/// One fault name over its injections.
#[derive(Debug, Clone, Serialize)]
pub struct FaultStats {
    pub name: String,
    pub kind: String,
    pub injected: usize,
    pub confirmed: usize,
    pub detected: usize,
    pub recovered: usize,
    /// Over the confirmed injections that were detected (MTTD is its mean).
    pub time_to_detect_s: Option<crate::grade::recovery::Spread>,
    /// Over the confirmed injections that recovered (MTTR is its mean).
    pub time_to_recover_s: Option<crate::grade::recovery::Spread>,
    pub calls_failed: u64,
}

/// The journal the summary was built from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JournalBlock {
    pub records: u64,
    /// The last line was cut short (the harness was killed while writing it).
    pub cut_short: bool,
    /// Lines or fields that could not be read, with their line and column.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
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
            target: facts.target,
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
            journal: JournalBlock::default(),
        }
    }

    /// Re-creates the run directory's reports from its `journal.jsonl` alone (what
    /// `voxsoak report` does, and what `voxsoak run` does at its end).
    pub fn rebuild(dir: &Path) -> io::Result<Summary> {
        let run = crate::grade::replay::read(&dir.join("journal.jsonl"))?;
        let summary = crate::grade::evaluate(&run);
        summary.write(dir)?;
        Ok(summary)
    }

    /// Writes `summary.json` into `dir` atomically (a reader never sees half a file).
    /// Secrets are masked as in the journal ([`crate::redact::text`]): a journal written
    /// before that, or by hand, still gives a summary without them.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        let json = crate::escape::json(&crate::redact::text(&json)).into_owned();
        let temporary = dir.join(".summary.json.tmp");
        std::fs::write(&temporary, format!("{json}\n"))?;
        std::fs::rename(temporary, dir.join("summary.json"))
    }

    /// The summary printed at the end of a run (and by `voxsoak report`): every text from
    /// the fleet or the scenario is escaped ([`crate::escape::line`]) so it stays on its
    /// line and cannot draw on the terminal, and secrets are masked.
    pub fn render_text(&self) -> String {
        use crate::escape::line as shown;
        let mut out = String::new();
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
            Verdict::Aborted => "ABORTED",
        };
        let _ = writeln!(
            out,
            "voxsoak {}: {verdict} ({:.1} s)",
            shown(&self.scenario),
            self.wall_s
        );
        if let Some(reason) = &self.reason {
            let _ = writeln!(out, "  reason: {}", shown(reason));
        }
        let calls = &self.calls;
        let _ = writeln!(
            out,
            "  calls      {} started, {} completed, {} failed ({} of them dropped), {} cancelled; success {}",
            calls.started,
            calls.completed,
            calls.failed,
            calls.dropped,
            calls.cancelled,
            calls
                .success_pct
                .map_or("n/a".into(), |pct| format!("{pct:.2}%")),
        );
        let failed: Vec<String> = calls
            .by_outcome
            .iter()
            .filter(|(outcome, count)| {
                **count > 0 && !matches!(**outcome, "completed" | "cancelled")
            })
            .map(|(outcome, count)| format!("{outcome} {count}"))
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "  failures   {}", failed.join(", "));
        }
        let rows = [
            ("response", &self.latency_ms.response),
            ("first audio", &self.latency_ms.first_audio),
            ("connect", &self.latency_ms.connect),
            ("dead air", &self.latency_ms.dead_air),
            ("pacing", &self.pacing_jitter_ms),
        ];
        let _ = writeln!(
            out,
            "  {:<11}{:>8}{:>10}{:>10}{:>10}{:>10}",
            "ms", "count", "p50", "p95", "p99", "max"
        );
        for (name, p) in rows {
            let _ = writeln!(
                out,
                "  {:<11}{:>8}{:>10.1}{:>10.1}{:>10.1}{:>10.1}",
                name, p.count, p.p50, p.p95, p.p99, p.max
            );
        }
        if !self.protocol_errors.is_empty() {
            let errors: Vec<String> = self
                .protocol_errors
                .iter()
                .map(|(kind, count)| format!("{} {count}", shown(kind)))
                .collect();
            let _ = writeln!(out, "  protocol   {}", errors.join(", "));
        }
        for example in self.failure_examples.iter().take(3) {
            let _ = writeln!(
                out,
                "  e.g. {}: {}",
                example.outcome,
                shown(&example.detail)
            );
        }
        if let Some(observed) = &self.observers {
            let line = observed.problems_line();
            if !line.is_empty() {
                let _ = writeln!(out, "  observers  {}", shown(&line));
            }
        }
        let h = &self.harness;
        let _ = writeln!(
            out,
            "  harness    peak {} calls, RSS max {:.1} MiB ({} KiB/call), CPU avg {:.0}% max {:.0}%",
            h.peak_active_calls,
            h.rss_mib_max,
            h.rss_kib_per_call
                .map_or("n/a".into(), |kib| format!("{kib:.1}")),
            h.cpu_pct_avg,
            h.cpu_pct_max,
        );
        let fleet = &self.fleet;
        if fleet.rss_mib_max.is_some()
            || fleet.restarts.is_some()
            || fleet.temp_dir_mib_max.is_some()
        {
            let number = |value: Option<f64>, unit: &str| {
                value.map_or("n/a".to_owned(), |value| format!("{value:.1} {unit}"))
            };
            let _ = writeln!(
                out,
                "  fleet      RSS max {}, RSS growth {}, temp dir growth {}, restarts {}, crashes {}",
                number(fleet.rss_mib_max, "MiB"),
                number(fleet.rss_growth_mib_per_h, "MiB/h"),
                number(fleet.temp_dir_growth_mib_per_h, "MiB/h"),
                fleet
                    .restarts
                    .map_or("n/a".to_owned(), |restarts| restarts.to_string()),
                fleet
                    .crashes
                    .map_or("n/a".to_owned(), |crashes| crashes.to_string()),
            );
            for exit in &fleet.exits {
                let _ = writeln!(out, "  exit       {}", shown(exit));
            }
        }
        if let Some(uptime) = &self.uptime {
            let _ = writeln!(
                out,
                "  uptime     {:.2}% of {:.0}s probed outside faults and their recovery; {} outages, longest {:.1}s",
                uptime.pct, uptime.probed_s, uptime.outages, uptime.longest_outage_s
            );
        }
        for fault in &self.faults {
            let window = match (fault.injected_at_s, fault.cleared_at_s) {
                (Some(injected), Some(cleared)) => format!("{injected:.1}s–{cleared:.1}s"),
                (Some(injected), None) => format!("from {injected:.1}s"),
                _ => format!("planned at {:.1}s, not injected", fault.planned_at_s),
            };
            let state = if fault.clear_failed {
                "in effect, NOT UNDONE"
            } else if fault.confirmed {
                "in effect"
            } else {
                "NOT IN EFFECT"
            };
            let mut detected = match (fault.detection, &fault.detected_by, fault.detected_after_s) {
                (Some(DetectionStatus::SharedSignal), _, _) => {
                    "; shared signal with an overlapping fault".to_owned()
                }
                (Some(DetectionStatus::AlreadySignalling), _, _) => format!(
                    "; already signalling at injection ({})",
                    shown(&fault.signalling_at_injection.join(", "))
                ),
                (_, Some(by), Some(after)) => {
                    format!("; detected after {after:.1}s ({})", shown(by))
                }
                _ if fault.confirmed => "; no detection seen".to_owned(),
                _ => String::new(),
            };
            if fault.confirmed {
                let from = fault.recover_from.map_or("clear", |from| from.name());
                detected.push_str(&match (fault.recovery, fault.recovered_after_s) {
                    (Some(RecoveryStatus::Recovered), Some(after)) => {
                        format!("; recovered {after:.1}s after its {from}")
                    }
                    (Some(RecoveryStatus::NotMeasured), _) => "; recovery not measured".to_owned(),
                    _ => "; not recovered".to_owned(),
                });
            }
            if let Some(failed) = fault.calls_failed_during.filter(|failed| *failed > 0) {
                detected.push_str(&format!("; {failed} calls failed"));
            }
            let kind = if fault.kind == fault.name {
                String::new()
            } else {
                format!(" ({})", fault.kind)
            };
            let _ = writeln!(
                out,
                "  fault {} #{}{kind} {window}: {state}{detected}\n        {}",
                shown(&fault.name),
                fault.occurrence,
                shown(fault.notes.first().map_or("", String::as_str))
            );
        }
        for stats in self.fault_stats.iter().filter(|stats| stats.injected > 1) {
            let spread = |spread: &Option<crate::grade::recovery::Spread>| {
                spread.as_ref().map_or("n/a".to_owned(), |s| {
                    format!(
                        "mean {:.1}s p50 {:.1}s p95 {:.1}s max {:.1}s",
                        s.mean, s.p50, s.p95, s.max
                    )
                })
            };
            let _ = writeln!(
                out,
                "  {} ×{}: detect {}; recover {}",
                shown(&stats.name),
                stats.injected,
                spread(&stats.time_to_detect_s),
                spread(&stats.time_to_recover_s)
            );
        }
        if self.journal.cut_short || !self.journal.problems.is_empty() {
            let _ = writeln!(
                out,
                "  journal    {} records{}{}",
                self.journal.records,
                if self.journal.cut_short {
                    "; its last line was cut short"
                } else {
                    ""
                },
                self.journal
                    .problems
                    .first()
                    .map_or(String::new(), |problem| format!("; {}", shown(problem)))
            );
        }
        for slo in &self.slos {
            let _ = writeln!(
                out,
                "  SLO {:<18} {} measured {:<10} threshold {:<10} {}",
                slo.name,
                match slo.status {
                    SloStatus::Pass => "pass",
                    SloStatus::Fail => "FAIL",
                    SloStatus::NotMeasured => "NOT MEASURED",
                },
                shown(&slo.measured),
                shown(&slo.threshold),
                shown(&slo.why)
            );
        }
        crate::redact::text(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EVIL: &str = "\u{1b}[2J\u{202e}\n  SLO call_success pass";

    /// A journal written by hand, as a harness before redaction or a hostile fleet would
    /// leave it: credentials in URLs and hidden characters in every text.
    fn hostile_journal(dir: &Path) {
        let evil = |text: &str| format!("{text}{EVIL}");
        let fault = |event: &str, t_s: f64| {
            json!({"event": event, "t_s": t_s, "fault": evil("pool"), "kind": "db_pool_exhaustion",
                "occurrence": 1, "planned_at_s": 5.0,
                "evidence": evil("held by postgres://fleet:hunter2@db/orders?sslmode=x"),
                "note": evil("released")})
        };
        let records = [
            json!({"event": "run_started", "t_s": 0.0, "at": "2026-11-23T10:00:00.000Z",
                "run_id": "hostile-1", "scenario": evil("hostile"), "scenario_path": "h.toml",
                "seed": 1, "target": "http://user:secret@127.0.0.1:1/voice?token=abc123",
                "planned_s": 30.0,
                "grading": {"slo": {"call_success_min_pct": 99.0, "response_p95_max_s": null,
                    "response_p99_max_s": null, "first_audio_p95_max_s": null,
                    "pacing_jitter_p99_max_s": null, "detect_within_s": 10.0,
                    "no_retry_storm": false, "recover_within_s": null, "stable_window_s": 5.0,
                    "uptime_min_pct": null, "memory_growth_max_mib_h": null,
                    "temp_dir_growth_max_mib_h": null, "max_crashes": null,
                    "no_unprovoked_alerts": true},
                    "faults": [{"name": evil("pool"), "kind": "db_pool_exhaustion",
                        "detect": [{"alert": evil("Pool")}], "recover_from": "clear"}]}}),
            fault("fault_injected", 5.0),
            fault("fault_confirmed", 5.5),
            json!({"event": "alert", "t_s": 6.0, "name": evil("Pool"), "status": "firing"}),
            json!({"event": "alert", "t_s": 2.0, "name": evil("Other"), "status": "firing"}),
            fault("fault_cleared", 10.0),
            json!({"event": "interval", "t_s": 15.0, "from_s": 0.0, "started": 2, "completed": 1,
                "failed": 1, "outcomes": {"completed": 1, "fleet_hung_up": 1},
                "failure_examples": [{"outcome": "fleet_hung_up",
                    "detail": evil("closed by the fleet with 1000 \"bye http://u:pw@h/?k=v\"")}]}),
            json!({"event": "fleet_exited", "t_s": 20.0, "status": evil("exit 1"), "by_harness": false}),
            json!({"event": "run_ended", "t_s": 30.0, "at": "2026-11-23T10:00:30.000Z", "stopped": null}),
        ];
        let lines: Vec<String> = records.iter().map(|record| record.to_string()).collect();
        std::fs::write(dir.join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn the_summary_shows_outside_text_escaped_and_writes_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        hostile_journal(dir.path());
        let summary = Summary::rebuild(dir.path()).unwrap();
        let text = summary.render_text();
        assert_eq!(
            text.chars()
                .find(|&c| c != '\n' && crate::escape::is_hidden(c)),
            None,
            "{text}"
        );
        let shown = r"\x1b[2J\u{202e}\n  SLO call_success pass";
        for expected in [
            format!("voxsoak hostile{shown}: FAIL"),
            format!("fault pool{shown} #1"),
            format!("Pool{shown})"),
            format!("held by postgres://***@db/orders?sslmode=***{shown}"),
            format!("Other{shown} at 2.0s"),
            format!("exit 1{shown}"),
            format!(
                r#"e.g. fleet_hung_up: closed by the fleet with 1000 "bye http://***@h/?k=***"{shown}"#
            ),
        ] {
            assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
        }
        assert!(
            !text
                .lines()
                .any(|line| line.starts_with("  SLO call_success pass")),
            "no field forges a line of its own:\n{text}"
        );
        let written = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
        for secret in ["secret", "abc123", "hunter2", "u:pw"] {
            assert!(!text.contains(secret), "{secret} in\n{text}");
            assert!(!written.contains(secret), "{secret} in\n{written}");
        }
        assert_eq!(
            written
                .chars()
                .find(|&c| c != '\n' && crate::escape::is_hidden(c)),
            None,
            "{written}"
        );
        let written: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(written["target"], "http://***@127.0.0.1:1/voice?token=***");
        assert_eq!(
            written["scenario"],
            format!("hostile{EVIL}"),
            "summary.json keeps the text, JSON-escaped"
        );
    }
}

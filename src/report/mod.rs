//! Reporters: the run directory's `summary.json` (a public contract, see DESIGN.md),
//! `junit.xml` ([`junit`]), `report.md` ([`markdown`]) and `report.html` ([`html`], with
//! the run's series from [`timeline`]), and the summary printed at the end of a run. All of
//! them come from the [`Summary`] the grader makes from the journal alone (and the journal
//! as it read it), so `voxsoak report RUN_DIR` re-creates every one, also for a killed run.

pub mod html;
pub mod junit;
pub mod markdown;
mod story;
pub mod timeline;

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::grade::{SloStatus, Verdict};

pub use crate::grade::summary::{
    CallCounts, FailureExample, FaultStats, FleetBlock, JournalBlock, LatencyBlock, RunFacts,
    SCHEMA_VERSION, Summary,
};

impl Summary {
    /// Re-creates the run directory's reports from its `journal.jsonl` alone (what
    /// `voxsoak report` does, and what `voxsoak run` does at its end).
    pub fn rebuild(dir: &Path) -> io::Result<Summary> {
        let run = crate::grade::replay::read(&dir.join("journal.jsonl"))?;
        let summary = crate::grade::evaluate(&run);
        summary.write(&run, dir)?;
        Ok(summary)
    }

    /// Writes `summary.json`, `junit.xml`, `report.md` and `report.html` (drawing the
    /// series of `run`, the journal this summary was graded from) into `dir`, each
    /// atomically (a reader never sees half a file). Secrets are masked as in the journal
    /// ([`crate::redact::text`]): a journal written before that, or by hand, still gives
    /// reports without them.
    pub fn write(&self, run: &crate::grade::replay::RunRecord, dir: &Path) -> io::Result<()> {
        write_atomically(dir, html::REPORT_HTML, &html::render(self, run))?;
        let json = self.to_json()?;
        write_atomically(dir, "summary.json", &format!("{json}\n"))?;
        let junit = junit::render(self).map_err(io::Error::other)?;
        write_atomically(dir, junit::JUNIT_XML, &crate::redact::text(&junit))?;
        let markdown = markdown::render(self);
        write_atomically(dir, markdown::REPORT_MD, &crate::redact::text(&markdown))
    }

    /// What [`Summary::write`] puts in `summary.json`: pretty JSON, secrets masked, control
    /// characters escaped.
    pub fn to_json(&self) -> io::Result<String> {
        let json = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        Ok(crate::escape::json(&crate::redact::text(&json)).into_owned())
    }

    /// Where `at_s` (real seconds from the start) falls in the schedule as written, for a
    /// compressed run: `2h24m`; None at time scale 1.
    pub fn as_written(&self, at_s: Option<f64>) -> Option<String> {
        let at_s = at_s.filter(|_| self.time_scale > 1.0)?;
        let written = (at_s * self.time_scale).clamp(0.0, 1e12);
        Some(crate::units::format_duration(
            std::time::Duration::from_secs_f64(written.round()),
        ))
    }

    /// `time scale ×96: 15m real time ran 24h of schedule (…)`, for a compressed run.
    /// "1x after the harness died: …", for a run `voxsoak resume` went on with.
    pub fn resumed_line(&self) -> Option<String> {
        if self.harness_downtime.is_empty() {
            return None;
        }
        let away: f64 = self.harness_downtime.iter().map(|down| down.down_s).sum();
        let lost: u64 = self
            .harness_downtime
            .iter()
            .map(|down| down.calls_lost)
            .sum();
        Some(format!(
            "{}x after the harness died: away {away:.1}s in all, which is on no one's clock (not in uptime, recovery or growth); {lost} calls it had journaled as started and not ended were lost, not graded",
            self.harness_downtime.len()
        ))
    }

    pub fn time_scale_line(&self) -> Option<String> {
        (self.time_scale > 1.0).then(|| {
            let written = std::time::Duration::from_secs_f64(
                (self.wall_s * self.time_scale).clamp(0.0, 1e12),
            );
            let real = std::time::Duration::from_secs_f64(self.wall_s.clamp(0.0, 1e12));
            format!(
                "time scale {}: {} of real time ran {} of the schedule as written; times here are real (multiply by {} for the schedule's)",
                crate::units::format_time_scale(self.time_scale),
                crate::units::format_duration(real),
                crate::units::format_duration(written),
                self.time_scale
            )
        })
    }

    /// The summary printed at the end of a run (and by `voxsoak report`): every text from
    /// the fleet or the scenario is escaped ([`crate::escape::line`]) so it stays on its
    /// line and cannot draw on the terminal, and secrets are masked.
    pub fn render_text(&self) -> String {
        self.render_text_in(crate::console::Paint::Plain)
    }

    /// [`Summary::render_text`], the verdict and each SLO's result in colour with
    /// [`crate::console::Paint::Colour`] (for a terminal: see [`crate::console::colour_stdout`]).
    pub fn render_text_in(&self, paint: crate::console::Paint) -> String {
        let mut out = String::new();
        self.text_verdict(&mut out, paint);
        self.text_calls(&mut out);
        self.text_fleet(&mut out);
        self.text_faults(&mut out);
        self.text_journal_and_slos(&mut out, paint);
        crate::redact::text(&out).into_owned()
    }

    /// The headline: the scenario, its verdict and why.
    fn text_verdict(&self, out: &mut String, paint: crate::console::Paint) {
        use crate::escape::line as shown;
        let verdict = match self.verdict {
            Verdict::Pass => paint.good("PASS"),
            Verdict::Fail => paint.bad("FAIL"),
            Verdict::Error => paint.warn("ERROR"),
            Verdict::Aborted => paint.warn("ABORTED"),
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
        if let Some(line) = self.time_scale_line() {
            let _ = writeln!(out, "  {line}");
        }
    }

    /// The calls: counts, failures, latencies, protocol errors, examples, observer trouble.
    fn text_calls(&self, out: &mut String) {
        use crate::escape::line as shown;
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
    }

    /// What the harness and the fleet used, and the fleet's uptime.
    fn text_fleet(&self, out: &mut String) {
        use crate::escape::line as shown;
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
        if let Some(line) = self.resumed_line() {
            let _ = writeln!(out, "  resumed    {line}");
        }
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
    }

    /// Each injection's story, and the spread over faults injected more than once.
    fn text_faults(&self, out: &mut String) {
        use crate::escape::line as shown;
        for fault in &self.faults {
            let story = story::FaultStory::of(fault);
            let _ = writeln!(
                out,
                "  fault {} {}: {}\n        {}",
                story.label,
                story.window,
                story.outcome(),
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
                "  {} ×{}: {} detected{}; detect {}; recover {}",
                shown(&stats.name),
                stats.injected,
                stats.detected,
                not_detectable(stats),
                spread(&stats.time_to_detect_s),
                spread(&stats.time_to_recover_s)
            );
        }
    }

    /// Trouble reading the journal, and every SLO.
    fn text_journal_and_slos(&self, out: &mut String, paint: crate::console::Paint) {
        use crate::escape::line as shown;
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
                shown(&slo.name),
                match slo.status {
                    SloStatus::Pass => paint.good("pass"),
                    SloStatus::Fail => paint.bad("FAIL"),
                    SloStatus::NotMeasured => paint.warn("NOT MEASURED"),
                },
                shown(&slo.measured),
                shown(&slo.threshold),
                shown(&slo.why)
            );
        }
    }
}

/// Writes `name` in `dir` through a temporary file and a rename.
/// `", N not detectable"` for a fault some of whose injections could not be detected
/// (already signalling, a shared signal, the harness away), so "3 detected" of 4 does not
/// read as one missed; empty when there were none.
pub(crate) fn not_detectable(stats: &FaultStats) -> String {
    match stats.not_detectable {
        0 => String::new(),
        count => format!(", {count} not detectable"),
    }
}

fn write_atomically(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text)?;
    std::fs::rename(temporary, dir.join(name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EVIL: &str = "\u{1b}[2J\u{202e}\n  SLO call_success pass";

    /// `records` as the run's `journal.jsonl`, one a line.
    fn write_journal(dir: &Path, records: &[serde_json::Value]) {
        let lines: Vec<String> = records.iter().map(|record| record.to_string()).collect();
        std::fs::write(dir.join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
    }

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
        write_journal(dir, &records);
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
        // In colour, the only escapes are the harness's own colour codes around the
        // verdict and the SLO results; the fleet's text stays escaped.
        let coloured = summary.render_text_in(crate::console::Paint::Colour);
        assert_ne!(coloured, text);
        let stripped = coloured
            .replace("\x1b[1;32m", "")
            .replace("\x1b[1;31m", "")
            .replace("\x1b[1;33m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, text);
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

    /// junit.xml and report.md come with summary.json, from the journal alone: parsed back
    /// as JUnit, the failing SLO is a failure saying by how much, the fault a case of its
    /// own; neither file holds a secret or a hidden character.
    #[test]
    fn junit_and_markdown_are_written_with_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        hostile_journal(dir.path());
        Summary::rebuild(dir.path()).unwrap();
        let xml = std::fs::read_to_string(dir.path().join(junit::JUNIT_XML)).unwrap();
        let markdown = std::fs::read_to_string(dir.path().join(markdown::REPORT_MD)).unwrap();
        for (file, text) in [("junit.xml", &xml), ("report.md", &markdown)] {
            for secret in ["secret", "abc123", "hunter2", "u:pw"] {
                assert!(!text.contains(secret), "{secret} in {file}:\n{text}");
            }
            assert_eq!(
                text.chars()
                    .find(|&c| c != '\n' && crate::escape::is_hidden(c)),
                None,
                "{file}: {text}"
            );
        }
        let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        let case = |suite: &str, name: &str| {
            report
                .test_suites
                .iter()
                .find(|s| s.name.as_str() == suite)
                .and_then(|s| {
                    s.test_cases
                        .iter()
                        .find(|c| c.name.as_str().starts_with(name))
                })
                .unwrap_or_else(|| panic!("no case {suite}/{name} in {xml}"))
                .clone()
        };
        let success = case("slos", "call_success");
        match &success.status {
            quick_junit::TestCaseStatus::NonSuccess { kind, message, .. } => {
                assert_eq!(*kind, quick_junit::NonSuccessKind::Failure);
                let message = message.as_ref().unwrap().as_str();
                assert!(
                    message.contains("measured 50") && message.contains("99"),
                    "{message}"
                );
            }
            other => panic!("call_success should fail: {other:?}"),
        }
        let fault = case("faults", "pool");
        assert!(
            fault
                .system_out
                .as_ref()
                .unwrap()
                .as_str()
                .contains("detected after"),
            "{fault:?}"
        );
        assert!(report.failures >= 1, "{xml}");

        assert!(markdown.starts_with("## ❌ voxsoak hostile"), "{markdown}");
        assert!(
            markdown.contains("| call_success | **FAIL** |"),
            "{markdown}"
        );
        assert!(markdown.contains("### Faults"), "{markdown}");
        assert!(
            !markdown
                .lines()
                .any(|line| line.starts_with("  SLO call_success pass")),
            "no field forges a line of its own:\n{markdown}"
        );
    }

    /// A run whose `tts` fault was detected 15 s after its injection (detect_within 10 s),
    /// and whose `db` fault (50 s to 60 s) left health bad past recover_within 30 s. `tts`
    /// is in effect from 5 s to `tts_cleared_s`: past 50 s, the two overlap.
    fn late_journal(dir: &Path, tts_cleared_s: f64) {
        let fault = |event: &str, name: &str, kind: &str, t_s: f64, planned: f64| {
            json!({"event": event, "t_s": t_s, "fault": name, "kind": kind, "occurrence": 1,
                "planned_at_s": planned, "evidence": "seen", "note": "undone"})
        };
        let mut records = vec![
            json!({"event": "run_started", "t_s": 0.0, "at": "2026-11-23T10:00:00.000Z",
                "run_id": "late-1", "scenario": "late", "scenario_path": "late.toml",
                "seed": 1, "target": "embedded", "planned_s": 120.0,
                "grading": {"slo": {"call_success_min_pct": null, "response_p95_max_s": null,
                    "response_p99_max_s": null, "first_audio_p95_max_s": null,
                    "pacing_jitter_p99_max_s": null, "detect_within_s": 10.0,
                    "no_retry_storm": false, "recover_within_s": 30.0, "stable_window_s": 5.0,
                    "uptime_min_pct": null, "memory_growth_max_mib_h": null,
                    "temp_dir_growth_max_mib_h": null, "max_crashes": null,
                    "no_unprovoked_alerts": false},
                    "faults": [
                        {"name": "tts", "kind": "tts_429", "detect": [{"alert": "TtsRateLimited"}],
                            "recover_from": "clear"},
                        {"name": "db", "kind": "db_pool_exhaustion",
                            "detect": [{"health": "unhealthy"}], "recover_from": "clear"}]}}),
            json!({"event": "health", "t_s": 1.0, "healthy": true}),
            fault("fault_injected", "tts", "tts_429", 5.0, 5.0),
            fault("fault_confirmed", "tts", "tts_429", 5.5, 5.0),
            json!({"event": "alert", "t_s": 20.0, "name": "TtsRateLimited", "status": "firing"}),
            fault("fault_cleared", "tts", "tts_429", tts_cleared_s, 5.0),
            json!({"event": "alert", "t_s": 26.0, "name": "TtsRateLimited", "status": "resolved"}),
            fault("fault_injected", "db", "db_pool_exhaustion", 50.0, 50.0),
            fault("fault_confirmed", "db", "db_pool_exhaustion", 50.5, 50.0),
            json!({"event": "health", "t_s": 51.0, "healthy": false}),
            fault("fault_cleared", "db", "db_pool_exhaustion", 60.0, 50.0),
        ];
        for i in 1..=24 {
            let t_s = f64::from(i) * 5.0;
            records.push(json!({"event": "interval", "t_s": t_s, "from_s": t_s - 5.0,
                "started": 2, "completed": 2, "failed": 0, "outcomes": {"completed": 2}}));
        }
        records.push(json!({"event": "run_ended", "t_s": 120.0,
            "at": "2026-11-23T10:02:00.000Z", "stopped": null}));
        records.sort_by(|a, b| {
            a["t_s"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["t_s"].as_f64().unwrap())
        });
        write_journal(dir, &records);
    }

    /// A fault injection's own JUnit case fails when it missed detect_within or
    /// recover_within, saying by how much; report.md says the same.
    #[test]
    fn a_late_detection_or_recovery_fails_its_fault_case_by_how_much() {
        let dir = tempfile::tempdir().unwrap();
        late_journal(dir.path(), 25.0);
        let summary = Summary::rebuild(dir.path()).unwrap();
        let tts = &summary.faults[0];
        assert_eq!(tts.detected_after_s, Some(15.0), "{tts:?}");
        assert_eq!(
            tts.recovery,
            Some(crate::grade::replay::RecoveryStatus::Recovered),
            "{tts:?}"
        );
        let db = &summary.faults[1];
        assert_eq!(db.detected_after_s, Some(1.0), "{db:?}");
        assert_eq!(
            db.recovery,
            Some(crate::grade::replay::RecoveryStatus::NotRecovered),
            "{db:?}"
        );
        let xml = std::fs::read_to_string(dir.path().join(junit::JUNIT_XML)).unwrap();
        let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        let faults = report
            .test_suites
            .iter()
            .find(|suite| suite.name.as_str() == "faults")
            .unwrap_or_else(|| panic!("no faults suite in {xml}"));
        let failure = |name: &str| {
            let case = faults
                .test_cases
                .iter()
                .find(|case| case.name.as_str().starts_with(name))
                .unwrap_or_else(|| panic!("no case {name} in {xml}"));
            match &case.status {
                quick_junit::TestCaseStatus::NonSuccess {
                    kind: quick_junit::NonSuccessKind::Failure,
                    message,
                    ..
                } => message.as_ref().unwrap().to_string(),
                other => panic!("{name} should fail: {other:?}\n{xml}"),
            }
        };
        assert_eq!(
            failure("tts"),
            "tts #1 (tts_429): detected after 15.0s (alert TtsRateLimited), 5.0s over detect_within 10s"
        );
        assert_eq!(
            failure("db"),
            "db #1 (db_pool_exhaustion): steady state not back within recover_within 30s of its clear"
        );
        assert_eq!(faults.failures, 2, "{xml}");
        let markdown = std::fs::read_to_string(dir.path().join(markdown::REPORT_MD)).unwrap();
        assert!(
            markdown.contains("| 15.0 s, 5.0s over detect\\_within 10s |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| steady state not back within recover\\_within 30s of its clear |"),
            "{markdown}"
        );
        let text = summary.render_text();
        assert!(
            text.contains(
                "detected after 15.0s (alert TtsRateLimited), 5.0s over detect_within 10s"
            ),
            "{text}"
        );
    }

    /// A fault that overlapped another is graded from the group's later clear, and every
    /// report says so: not "of its clear", which would be a time it was never measured from.
    #[test]
    fn an_overlapped_fault_says_where_its_recovery_counts_from_in_every_report() {
        let dir = tempfile::tempdir().unwrap();
        late_journal(dir.path(), 55.0);
        let summary = Summary::rebuild(dir.path()).unwrap();
        let tts = &summary.faults[0];
        assert_eq!(tts.overlapped, ["db #1 from 50.0s"], "{tts:?}");
        assert_eq!(tts.recovery_from_s, Some(60.0), "{tts:?}");
        let late = "steady state not back within recover_within 30s of the overlapping faults' \
                    last clear at 60.0s";
        let xml = std::fs::read_to_string(dir.path().join(junit::JUNIT_XML)).unwrap();
        let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        let case = report
            .test_suites
            .iter()
            .flat_map(|suite| suite.test_cases.iter())
            .find(|case| case.name.as_str().starts_with("tts"))
            .unwrap_or_else(|| panic!("no tts case in {xml}"));
        match &case.status {
            quick_junit::TestCaseStatus::NonSuccess { message, .. } => {
                let message = message.as_ref().unwrap().to_string();
                assert!(message.ends_with(late), "{message}");
            }
            other => panic!("tts should fail: {other:?}\n{xml}"),
        }
        let out = case.system_out.as_ref().unwrap().to_string();
        assert!(out.contains("overlapped db #1 from 50.0s"), "{out}");
        let markdown = std::fs::read_to_string(dir.path().join(markdown::REPORT_MD)).unwrap();
        let late_md = late.replace("recover_within", "recover\\_within");
        assert!(
            markdown.contains(&format!("| {late_md}; overlapped db #1 from 50.0s |")),
            "{markdown}"
        );
        let text = summary.render_text();
        assert!(
            text.contains("overlapped db #1 from 50.0s; detected after 15.0s"),
            "{text}"
        );
        assert!(text.contains(late), "{text}");
        // The db fault cleared last: its own clear, as when alone.
        assert!(
            markdown.contains("recover\\_within 30s of its clear; overlapped tts #1 from 5.0s |"),
            "{markdown}"
        );
    }

    /// report.html comes with summary.json; every text from the fleet or the scenario in it
    /// is escaped: no tag, attribute or hidden character of theirs, no secret.
    #[test]
    fn html_is_written_with_the_summary_and_shows_outside_text_as_text() {
        let dir = tempfile::tempdir().unwrap();
        hostile_journal(dir.path());
        let mut journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        let script = r#"<script>document.title='pwned'</script><img src=x onerror="alert(1)">'"&"#;
        journal = journal.replace("\"Pool", &format!("\"{}Pool", script.replace('"', "\\\"")));
        std::fs::write(dir.path().join("journal.jsonl"), journal).unwrap();
        Summary::rebuild(dir.path()).unwrap();
        let html = std::fs::read_to_string(dir.path().join(html::REPORT_HTML)).unwrap();
        for secret in ["secret", "abc123", "hunter2", "u:pw"] {
            assert!(!html.contains(secret), "{secret} in report.html:\n{html}");
        }
        assert_eq!(
            html.chars()
                .find(|&c| c != '\n' && crate::escape::is_hidden(c)),
            None,
            "{html}"
        );
        assert!(!html.to_lowercase().contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains(
                "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&#39;&quot;&amp;Pool"
            ),
            "{html}"
        );
        assert!(html.contains(r"\x1b[2J\u{202e}\n  SLO call_success pass"));
        assert!(html.contains("<div class=\"word\" id=\"verdict\">FAIL</div>"));
        assert!(html.contains("<title>voxsoak hostile"));
    }

    /// A fault injected three times, the first while its alert was still firing: every
    /// report says 2 detected and 1 not detectable, not "2 of 3 detected".
    #[test]
    fn repeated_faults_show_the_injections_that_could_not_be_detected() {
        let dir = tempfile::tempdir().unwrap();
        let fault = |event: &str, occurrence: u32, t_s: f64| {
            json!({"event": event, "t_s": t_s, "fault": "tts", "kind": "tts_429",
                "occurrence": occurrence, "planned_at_s": t_s})
        };
        let alert = |t_s: f64, status: &str| {
            json!({"event": "alert", "t_s": t_s, "name": "TtsRateLimited", "status": status,
                "starts_s": t_s})
        };
        let mut records = vec![
            json!({"event": "run_started", "t_s": 0.0, "at": "2026-11-23T10:00:00.000Z",
                "run_id": "repeated-1", "scenario": "repeated", "target": "external",
                "grading": {"slo": {"call_success_min_pct": null, "response_p95_max_s": null,
                    "response_p99_max_s": null, "first_audio_p95_max_s": null,
                    "pacing_jitter_p99_max_s": null, "detect_within_s": 10.0,
                    "no_retry_storm": false, "recover_within_s": null, "stable_window_s": 5.0,
                    "uptime_min_pct": null, "memory_growth_max_mib_h": null,
                    "temp_dir_growth_max_mib_h": null, "max_crashes": null,
                    "no_unprovoked_alerts": false},
                    "faults": [{"name": "tts", "kind": "tts_429",
                        "detect": [{"alert": "TtsRateLimited"}], "recover_from": "clear"}]}}),
            alert(5.0, "firing"),
        ];
        for (occurrence, at) in [(1, 20.0), (2, 60.0), (3, 100.0)] {
            records.push(fault("fault_injected", occurrence, at));
            records.push(fault("fault_confirmed", occurrence, at + 0.5));
            if occurrence > 1 {
                records.push(alert(at + 2.0, "firing"));
            }
            records.push(fault("fault_cleared", occurrence, at + 5.0));
            records.push(alert(at + 10.0, "resolved"));
        }
        records.push(json!({"event": "run_ended", "t_s": 150.0,
            "at": "2026-11-23T10:02:30.000Z", "stopped": null}));
        let lines: Vec<String> = records.iter().map(|record| record.to_string()).collect();
        std::fs::write(dir.path().join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
        let summary = Summary::rebuild(dir.path()).unwrap();
        assert!(summary.journal.problems.is_empty(), "{:?}", summary.journal);
        let stats = &summary.fault_stats[0];
        assert_eq!((stats.detected, stats.not_detectable), (2, 1), "{stats:?}");
        let markdown = std::fs::read_to_string(dir.path().join(markdown::REPORT_MD)).unwrap();
        assert!(
            markdown.contains("- **tts** ×3: 2 detected, 1 not detectable, "),
            "{markdown}"
        );
        let html = std::fs::read_to_string(dir.path().join(html::REPORT_HTML)).unwrap();
        assert!(html.contains("<th>not detectable</th>"), "{html}");
        assert!(
            html.contains("<tr><td>tts</td><td>3</td><td>2</td><td>1</td>"),
            "{html}"
        );
        let text = summary.render_text();
        assert!(
            text.contains("tts ×3: 2 detected, 1 not detectable; detect "),
            "{text}"
        );
    }

    #[test]
    fn markdown_cells_cannot_add_columns_or_html() {
        let cell = markdown::cell("<script>alert(1)</script> | `x` *y*\nz");
        assert_eq!(
            cell,
            r"&lt;script&gt;alert(1)&lt;/script&gt; \| \`x\` \*y\*\\nz"
        );
    }
}

//! `report.md`: the run in a few lines and two tables, short enough for a CI job summary
//! (`cat report.md >> "$GITHUB_STEP_SUMMARY"`): the verdict, the SLO table, and the fault
//! table (kind, injected, detected after, by what, recovered after, impact). A long soak
//! lists its first [`MAX_FAULT_ROWS`] injections and a line per fault over all of them.
//!
//! Every text from the fleet or the scenario is escaped twice: as for a terminal
//! ([`crate::escape::line`]), then for Markdown, so a `|` cannot add a column, a newline
//! cannot end the table and `<script>` stays text in a renderer that allows HTML.

use std::fmt::Write as _;

use super::story::FaultStory;
use crate::grade::summary::Summary;
use crate::grade::{SloStatus, Verdict};

/// The file in the run directory.
pub const REPORT_MD: &str = "report.md";

/// Injections listed one per row; the rest are in the per-fault lines and summary.json.
pub const MAX_FAULT_ROWS: usize = 50;

/// `text` safe in a Markdown table cell.
pub(crate) fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in crate::escape::line(text).chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push_str("\\`"),
            '*' | '_' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |s| format!("{s:.1} s"))
}

/// The time, with how far over its SLO when it missed it (`15.0 s, 5.0s over detect_within
/// 10s`); else what became of it (`otherwise`).
fn timed(after: Option<f64>, over: Option<&str>, otherwise: &str) -> String {
    match (after, over) {
        (Some(_), Some(over)) => format!("{}, {over}", seconds(after)),
        (Some(_), None) => seconds(after),
        (None, _) => otherwise.to_owned(),
    }
}

/// The Markdown for `summary`.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let (word, mark) = match summary.verdict {
        Verdict::Pass => ("PASS", "✅"),
        Verdict::Fail => ("FAIL", "❌"),
        Verdict::Error => ("ERROR", "⚠️"),
        Verdict::Aborted => ("ABORTED", "⚠️"),
    };
    let _ = writeln!(
        out,
        "## {mark} voxsoak {}: {word}\n",
        cell(&summary.scenario)
    );
    let calls = &summary.calls;
    let _ = writeln!(
        out,
        "Exit {} · {:.0} s · {} calls started, {} completed, {} failed (success {}) · target {}\n",
        summary.verdict.exit_code(),
        summary.wall_s,
        calls.started,
        calls.completed,
        calls.failed,
        calls
            .success_pct
            .map_or("n/a".to_owned(), |pct| format!("{pct:.2}%")),
        cell(&summary.target),
    );
    if let Some(reason) = &summary.reason {
        let _ = writeln!(out, "**Reason:** {}\n", cell(reason));
    }
    if let Some(line) = summary.time_scale_line() {
        let _ = writeln!(out, "{}\n", cell(&line));
    }
    if let Some(line) = summary.resumed_line() {
        let _ = writeln!(out, "**Resumed** {}\n", cell(&line));
    }
    slo_table(summary, &mut out);
    fault_table(summary, &mut out);
    out
}

fn slo_table(summary: &Summary, out: &mut String) {
    if summary.slos.is_empty() {
        return;
    }
    out.push_str(
        "### SLOs\n\n| SLO | result | measured | threshold | why |\n|---|---|---|---|---|\n",
    );
    for slo in &summary.slos {
        let result = match slo.status {
            SloStatus::Pass => "pass",
            SloStatus::Fail => "**FAIL**",
            SloStatus::NotMeasured => "not measured",
        };
        let _ = writeln!(
            out,
            "| {} | {result} | {} | {} | {} |",
            // Built-in names and what a scenario (or a journal's plan) allows: letters,
            // digits, _ - . only, nothing to escape.
            slo.name,
            cell(&slo.measured),
            cell(&slo.threshold),
            cell(&slo.why)
        );
    }
    out.push('\n');
}

/// The "recovered after" cell: the time (and how far over `recover_within`); for a fault
/// that overlapped others, what its time counts from and which faults they were.
fn recovered_cell(fault: &crate::grade::FaultReport, story: &FaultStory) -> String {
    if story.overlapped.is_empty() {
        timed(
            fault.recovered_after_s,
            story.recovery_over.as_deref(),
            &story.recovery,
        )
    } else {
        format!("{}; {}", story.recovery, story.overlapped)
    }
}

fn fault_table(summary: &Summary, out: &mut String) {
    if summary.faults.is_empty() {
        return;
    }
    out.push_str(
        "### Faults\n\n| fault | kind | injected | detected after | by | recovered after | impact |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for fault in summary.faults.iter().take(MAX_FAULT_ROWS) {
        let story = FaultStory::of(fault);
        let detected = timed(
            fault.detected_after_s,
            story.detection_over.as_deref(),
            &story.detection,
        );
        let recovered = recovered_cell(fault, &story);
        let mut injected = match fault.injected_at_s {
            Some(at) if fault.confirmed => format!("{at:.1} s"),
            Some(at) => format!("{at:.1} s, {}", story.state),
            None => "not injected".to_owned(),
        };
        if let Some(written) = summary.as_written(fault.injected_at_s) {
            injected = format!("{injected} ({written} as written)");
        }
        let _ = writeln!(
            out,
            "| {} #{} | {} | {} | {} | {} | {} | {} |",
            cell(&fault.name),
            fault.occurrence,
            cell(fault.kind),
            cell(&injected),
            cell(&detected),
            cell(fault.detected_by.as_deref().unwrap_or("–")),
            cell(&recovered),
            cell(if story.impact.is_empty() {
                "–"
            } else {
                &story.impact
            }),
        );
    }
    if summary.faults.len() > MAX_FAULT_ROWS {
        let _ = writeln!(
            out,
            "\n{} more injections are in summary.json.",
            summary.faults.len() - MAX_FAULT_ROWS
        );
    }
    let repeated: Vec<_> = summary
        .fault_stats
        .iter()
        .filter(|stats| stats.injected > 1)
        .collect();
    if !repeated.is_empty() {
        out.push('\n');
    }
    for stats in repeated {
        let spread = |spread: &Option<crate::grade::recovery::Spread>| {
            spread.as_ref().map_or("n/a".to_owned(), |s| {
                format!("p50 {:.1} s, p95 {:.1} s, max {:.1} s", s.p50, s.p95, s.max)
            })
        };
        let _ = writeln!(
            out,
            "- **{}** ×{}: {} detected{}, {} recovered; time to detect {}; to recover {}",
            cell(&stats.name),
            stats.injected,
            stats.detected,
            crate::report::not_detectable(stats),
            stats.recovered,
            spread(&stats.time_to_detect_s),
            spread(&stats.time_to_recover_s),
        );
    }
}

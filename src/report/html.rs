//! `report.html`: the run for a person, in one self-contained file (no script, no font, no
//! stylesheet or image from anywhere; a Content-Security-Policy forbids them too). The
//! verdict first, big and coloured; then a timeline of the whole run as inline SVG (active
//! calls, call success, response latency p50/p95/p99, fleet RSS, temp-dir size, TTS
//! requests by status) with the fault windows shaded and each detection and recovery
//! marked on them; the SLO table; and a card per fault injection telling its story
//! (the `FaultStory` of `report.md` and the terminal).
//!
//! Every text from the fleet or the scenario passes through [`escape`] and nothing else
//! puts outside text in the page: secrets masked, hidden characters made visible
//! ([`crate::escape::line`]), then `& < > " '` as entities, so it is text in an element and
//! in a quoted attribute alike. The series are downsampled ([`super::timeline`]), so a
//! 72-hour run stays well under 2 MB.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::story::{FaultStory, Problem};
use super::timeline::{self, Panel};
use crate::grade::FaultReport;
use crate::grade::replay::RunRecord;
use crate::grade::summary::Summary;
use crate::grade::{SloStatus, Verdict};

/// The file in the run directory.
pub const REPORT_HTML: &str = "report.html";

/// Injections given a card each; the rest are counted (and all are in summary.json).
pub const MAX_FAULT_CARDS: usize = 500;

/// Injections numbered on the timeline, with their detection and recovery drawn across
/// every panel; above this many the numbers would overlap and the lines hide the series,
/// so detection and recovery are short marks above the first panel.
const MAX_NUMBERED_FAULTS: usize = 40;

/// `text` from outside (the fleet, the scenario, the journal) made safe anywhere in the
/// page, in an element or a quoted attribute: secrets masked ([`crate::redact::text`]),
/// hidden characters escaped as Rust writes them ([`crate::escape::line`]), and `&`, `<`,
/// `>`, `"` and `'` written as entities.
pub fn escape(text: &str) -> String {
    let masked = crate::redact::text(text);
    let shown = crate::escape::line(&masked);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The page for `summary`, with the series of `run` (the journal it was graded from).
pub fn render(summary: &Summary, run: &RunRecord) -> String {
    let clock = Clock::of(&summary.started_at);
    let mut out = String::with_capacity(256 * 1024);
    let word = verdict_word(summary.verdict);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>voxsoak {}: {word}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&summary.scenario)
    );
    verdict(summary, run, &clock, &mut out);
    out.push_str("<section>\n<h2>Timeline</h2>\n");
    let end_s = run.end_s().max(summary.wall_s).max(1e-3);
    timeline_svg(
        &timeline::panels(run),
        &summary.faults,
        end_s,
        &clock,
        &mut out,
    );
    out.push_str("</section>\n");
    slo_table(summary, &mut out);
    fault_cards(summary, &clock, &mut out);
    details(summary, &mut out);
    let _ = write!(
        out,
        "<footer>voxsoak report from journal.jsonl ({} records) · run {} · seed {} · scenario file {}</footer>\n</body>\n</html>\n",
        summary.journal.records,
        escape(&summary.run_id),
        summary.seed,
        escape(&summary.scenario_path)
    );
    out
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
        Verdict::Aborted => "ABORTED",
    }
}

fn verdict(summary: &Summary, run: &RunRecord, clock: &Clock, out: &mut String) {
    let class = match summary.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Error | Verdict::Aborted => "error",
    };
    let _ = write!(
        out,
        "<header class=\"verdict {class}\">\n<div class=\"word\" id=\"verdict\">{}</div>\n\
         <div><h1>voxsoak {}</h1>\n<p>{} · {} · exit {} · target {}</p>\n",
        verdict_word(summary.verdict),
        escape(&summary.scenario),
        escape(
            &clock
                .date_time(0.0)
                .unwrap_or_else(|| summary.started_at.clone())
        ),
        duration(summary.wall_s),
        summary.verdict.exit_code(),
        escape(&summary.target),
    );
    if let Some(reason) = &summary.reason {
        let _ = writeln!(out, "<p class=\"reason\">{}</p>", escape(reason));
    }
    if let Some(line) = summary.time_scale_line() {
        let _ = writeln!(out, "<p>{}</p>", escape(&line));
    }
    if !summary.in_progress && (run.ended.is_none() || summary.journal.cut_short) {
        let _ = writeln!(
            out,
            "<p class=\"reason\">The journal ends at {:.1} s without the run's end: the harness was stopped before it could finish (killed?). This is what it had written.</p>",
            run.end_s()
        );
    }
    out.push_str("</div>\n</header>\n");
    tiles(summary, out);
}

/// The headline figures under the verdict, one tile each.
fn tiles(summary: &Summary, out: &mut String) {
    out.push_str("<section class=\"tiles\">\n");
    let calls = &summary.calls;
    let tile = |out: &mut String, value: String, label: &str| {
        let _ = writeln!(
            out,
            "<div class=\"tile\"><b>{}</b><span>{}</span></div>",
            escape(&value),
            escape(label)
        );
    };
    tile(out, calls.started.to_string(), "calls started");
    tile(
        out,
        calls
            .success_pct
            .map_or("n/a".to_owned(), |pct| format!("{pct:.2}%")),
        &format!("success ({} failed)", calls.failed),
    );
    let response = &summary.latency_ms.response;
    tile(
        out,
        if response.count > 0 {
            format!("{:.0} ms", response.p95)
        } else {
            "n/a".to_owned()
        },
        "response p95",
    );
    tile(
        out,
        summary
            .fleet
            .rss_mib_max
            .map_or("n/a".to_owned(), |mib| format!("{mib:.0} MiB")),
        "fleet RSS max",
    );
    tile(
        out,
        summary.faults.len().to_string(),
        &format!(
            "fault injections ({} with a problem)",
            summary
                .faults
                .iter()
                .filter(|fault| FaultStory::of(fault).problem.is_some())
                .count()
        ),
    );
    if let Some(uptime) = &summary.uptime {
        tile(out, format!("{:.2}%", uptime.pct), "uptime outside faults");
    }
    out.push_str("</section>\n");
}

/// Seconds as `1 h 02 min`, `3 min 05 s` or `12.3 s`.
fn duration(seconds: f64) -> String {
    let seconds = if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    };
    let whole = seconds.round() as u64;
    if whole >= 3_600 {
        format!("{} h {:02} min", whole / 3_600, whole % 3_600 / 60)
    } else if whole >= 60 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{seconds:.1} s")
    }
}

/// Run seconds as wall-clock time (UTC), from the run's start.
struct Clock {
    start: Option<SystemTime>,
}

impl Clock {
    fn of(started_at: &str) -> Clock {
        Clock {
            start: humantime::parse_rfc3339(started_at)
                .or_else(|_| humantime::parse_rfc3339_weak(started_at))
                .ok(),
        }
    }

    fn rfc3339(&self, t_s: f64) -> Option<String> {
        let start = self.start?;
        let offset = Duration::try_from_secs_f64(t_s).ok()?;
        let at = start.checked_add(offset)?;
        Some(humantime::format_rfc3339_seconds(at).to_string())
    }

    /// `2026-11-23 14:02:10 UTC`.
    fn date_time(&self, t_s: f64) -> Option<String> {
        let text = self.rfc3339(t_s)?;
        Some(format!("{} {} UTC", text.get(..10)?, text.get(11..19)?))
    }

    /// `14:02:10`, or `+30.0 s` when the start is unknown.
    fn time(&self, t_s: f64) -> String {
        self.rfc3339(t_s)
            .and_then(|text| text.get(11..19).map(str::to_owned))
            .unwrap_or_else(|| format!("+{t_s:.1} s"))
    }

    /// An axis label: `14:02` (with seconds when `step_s` is under a minute, with the day
    /// when the run spans days).
    fn tick(&self, t_s: f64, step_s: f64, days: bool) -> String {
        let Some(text) = self.rfc3339(t_s) else {
            return duration(t_s);
        };
        let clock = if step_s < 60.0 {
            text.get(11..19)
        } else {
            text.get(11..16)
        }
        .unwrap_or("");
        if days {
            format!("{} {clock}", text.get(5..10).unwrap_or(""))
        } else {
            clock.to_owned()
        }
    }
}

// The timeline's geometry, in SVG user units (the SVG scales to the page's width).
const WIDTH: f64 = 1200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const PANEL_HEIGHT: f64 = 92.0;
const PANEL_GAP: f64 = 40.0;
const TOP: f64 = 50.0;
/// Where the fault numbers stand, above the first panel's title.
const NUMBERS: f64 = 14.0;

fn panel_top(index: usize) -> f64 {
    TOP + index as f64 * (PANEL_HEIGHT + PANEL_GAP)
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|ceiling| *ceiling >= value * 0.999_999)
        .unwrap_or(10.0 * power)
}

fn number(value: f64) -> String {
    if value.abs() >= 100.0 || value == value.round() {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn timeline_svg(
    panels: &[Panel],
    faults: &[FaultReport],
    end_s: f64,
    clock: &Clock,
    out: &mut String,
) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |t_s: f64| LEFT + (t_s.clamp(0.0, end_s) / end_s) * plot_width;
    let bottom = panel_top(panels.len().saturating_sub(1)) + PANEL_HEIGHT;
    let height = bottom + 30.0;
    let _ = writeln!(
        out,
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"timeline of the run\">"
    );
    // Time axis: a light line across every panel at each tick.
    let step = time_step(end_s);
    let days = end_s > 86_400.0;
    let mut tick = 0.0;
    while tick <= end_s + 1e-9 {
        let at = x(tick);
        // The last label ends at the right edge rather than past it.
        let anchor = if at > WIDTH - RIGHT - 40.0 {
            "end"
        } else {
            "middle"
        };
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{at:.1}\" y1=\"{TOP:.1}\" x2=\"{at:.1}\" y2=\"{bottom:.1}\"/>\
             <text class=\"tick\" x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            bottom + 16.0,
            escape(&clock.tick(tick, step, days))
        );
        tick += step;
    }
    fault_overlay(faults, end_s, &x, bottom, out);
    for (index, panel) in panels.iter().enumerate() {
        panel_svg(panel, panel_top(index), &x, out);
    }
    out.push_str(
        "</svg>\n<p class=\"legend\"><span class=\"key fw\"></span> fault in effect \
                  <span class=\"key det\"></span> detected \
                  <span class=\"key rec\"></span> steady state back · times UTC; \
                  each line is at most 1,000 points, keeping every spike</p>\n",
    );
}

/// A tick step giving at most about ten ticks.
fn time_step(end_s: f64) -> f64 {
    const STEPS: [f64; 20] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1_800.0, 3_600.0,
        7_200.0, 10_800.0, 21_600.0, 43_200.0, 86_400.0, 172_800.0, 604_800.0,
    ];
    STEPS
        .into_iter()
        .find(|step| end_s / step <= 10.0)
        .unwrap_or_else(|| (end_s / 10.0).ceil().max(1.0))
}

fn fault_overlay(
    faults: &[FaultReport],
    end_s: f64,
    x: &impl Fn(f64) -> f64,
    bottom: f64,
    out: &mut String,
) {
    let numbered = faults.len() <= MAX_NUMBERED_FAULTS;
    let marks_to = if numbered { bottom } else { TOP - 20.0 };
    for (index, fault) in faults.iter().enumerate() {
        let Some(injected) = fault.injected_at_s else {
            continue;
        };
        let story = FaultStory::of(fault);
        let cleared = fault.cleared_at_s.unwrap_or(end_s);
        let from = x(injected);
        let width = (x(cleared) - from).max(2.0);
        let label = escape(&format!(
            "{} {}: {}",
            story.label,
            story.window,
            story.outcome()
        ));
        let _ = writeln!(
            out,
            "<g class=\"fault\" aria-label=\"{label}\"><title>{label}</title>\
             <rect class=\"fw\" x=\"{from:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\"/>",
            NUMBERS - 10.0,
            bottom - NUMBERS + 10.0
        );
        if numbered {
            let _ = write!(
                out,
                "<text class=\"fnum\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                from + 2.0,
                NUMBERS,
                index + 1
            );
        }
        if let Some(after) = fault.detected_after_s {
            let at = x(injected + after);
            let _ = write!(
                out,
                "<line class=\"det\" x1=\"{at:.1}\" y1=\"{:.1}\" x2=\"{at:.1}\" y2=\"{marks_to:.1}\"><title>{}</title></line>",
                NUMBERS - 10.0,
                escape(&story.detection)
            );
        }
        if let (Some(from_s), Some(after)) = (fault.recovery_from_s, fault.recovered_after_s) {
            let at = x(from_s + after);
            let _ = write!(
                out,
                "<line class=\"rec\" x1=\"{at:.1}\" y1=\"{:.1}\" x2=\"{at:.1}\" y2=\"{marks_to:.1}\"><title>{}</title></line>",
                NUMBERS - 10.0,
                escape(&story.recovery)
            );
        }
        out.push_str("</g>\n");
    }
}

fn panel_svg(panel: &Panel, top: f64, x: &impl Fn(f64) -> f64, out: &mut String) {
    let max = panel
        .series
        .iter()
        .flat_map(|series| series.points.iter().map(|(_, value)| *value))
        .fold(panel.floor_max, f64::max);
    let ceiling = nice_ceiling(max);
    let y = |value: f64| top + PANEL_HEIGHT - (value.clamp(0.0, ceiling) / ceiling) * PANEL_HEIGHT;
    let _ = writeln!(
        out,
        "<text class=\"ptitle\" x=\"{LEFT}\" y=\"{:.1}\">{}{}</text>\
         <rect class=\"frame\" x=\"{LEFT}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{PANEL_HEIGHT}\"/>",
        top - 8.0,
        escape(panel.title),
        if panel.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", escape(panel.unit))
        },
        WIDTH - LEFT - RIGHT
    );
    for fraction in [0.0, 0.5, 1.0] {
        let value = ceiling * fraction;
        let _ = write!(
            out,
            "<text class=\"ylabel\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y(value) + 4.0,
            number(value)
        );
    }
    if panel.is_empty() {
        let _ = writeln!(
            out,
            "<text class=\"missing\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">not in the journal: {}</text>",
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            top + PANEL_HEIGHT / 2.0 + 4.0,
            escape(panel.missing)
        );
        return;
    }
    let mut legend_x = WIDTH - RIGHT;
    for (index, series) in panel.series.iter().enumerate().rev() {
        let _ = write!(
            out,
            "<text class=\"lg s{}\" x=\"{legend_x:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            index % 7,
            top - 8.0,
            escape(&series.name)
        );
        legend_x -= 12.0 + 8.0 * series.name.chars().count().min(24) as f64;
    }
    out.push('\n');
    // In order, so a higher percentile is drawn over a lower one it equals (dashed, so
    // both show).
    for (index, series) in panel.series.iter().enumerate() {
        if series.points.is_empty() {
            continue;
        }
        let _ = write!(out, "<polyline class=\"line s{}\" points=\"", index % 7);
        for (t_s, value) in &series.points {
            let _ = write!(out, "{:.1},{:.1} ", x(*t_s), y(*value));
        }
        out.push_str("\"/>\n");
    }
}

fn slo_table(summary: &Summary, out: &mut String) {
    out.push_str("<section>\n<h2>SLOs</h2>\n");
    if summary.slos.is_empty() {
        out.push_str("<p>No SLO was graded.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"slos\">\n<tr><th>SLO</th><th>result</th><th>measured</th><th>threshold</th><th>why</th></tr>\n",
    );
    for slo in &summary.slos {
        let (class, result) = match slo.status {
            SloStatus::Pass => ("pass", "pass"),
            SloStatus::Fail => ("fail", "FAIL"),
            SloStatus::NotMeasured => ("skip", "not measured"),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td><b>{result}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&slo.name),
            escape(&slo.measured),
            escape(&slo.threshold),
            escape(&slo.why)
        );
    }
    out.push_str("</table>\n</section>\n");
}

/// When a fault was injected and cleared, by the clock and from the start (and where
/// that falls in the schedule as written, on a compressed run).
fn fault_when(summary: &Summary, fault: &FaultReport, clock: &Clock) -> String {
    let when = match (fault.injected_at_s, fault.cleared_at_s) {
        (Some(injected), Some(cleared)) => format!(
            "injected {} ({injected:.1} s), cleared {} ({cleared:.1} s)",
            clock.time(injected),
            clock.time(cleared)
        ),
        (Some(injected), None) => format!(
            "injected {} ({injected:.1} s), never cleared",
            clock.time(injected)
        ),
        _ => format!(
            "planned at {} ({:.1} s), not injected",
            clock.time(fault.planned_at_s),
            fault.planned_at_s
        ),
    };
    match summary.as_written(fault.injected_at_s.or(Some(fault.planned_at_s))) {
        Some(written) => format!("{when}; {written} into the schedule as written"),
        None => when,
    }
}

fn fault_cards(summary: &Summary, clock: &Clock, out: &mut String) {
    if summary.faults.is_empty() {
        return;
    }
    out.push_str("<section>\n<h2>Faults</h2>\n<div class=\"cards\">\n");
    for (index, fault) in summary.faults.iter().enumerate().take(MAX_FAULT_CARDS) {
        let story = FaultStory::of(fault);
        let (class, problem) = match &story.problem {
            None => ("ok", None),
            Some(Problem::Fleet(text)) => ("fleet", Some(text)),
            Some(Problem::Harness(text)) => ("harness", Some(text)),
            Some(Problem::NotGraded(text)) => ("skip", Some(text)),
        };
        let _ = writeln!(
            out,
            "<article class=\"card {class}\">\n<h3><span class=\"n\">{}</span> {}</h3>",
            index + 1,
            escape(&story.label)
        );
        let when = fault_when(summary, fault, clock);
        let _ = writeln!(
            out,
            "<p class=\"when\">{}</p>\n<p class=\"story\">{}</p>",
            escape(&when),
            escape(&story.outcome())
        );
        if let Some(problem) = problem {
            let _ = writeln!(out, "<p class=\"problem\">{}</p>", escape(problem));
        }
        if let (Some(during), Some(calm)) =
            (fault.response_p95_during_ms, fault.response_p95_calm_ms)
        {
            let _ = writeln!(
                out,
                "<p>response p95 {during:.0} ms during it, {calm:.0} ms outside every fault</p>"
            );
        }
        if !fault.overlapped.is_empty() {
            let _ = writeln!(
                out,
                "<p>overlapped {}</p>",
                escape(&fault.overlapped.join(", "))
            );
        }
        if !fault.notes.is_empty() {
            out.push_str("<ul class=\"notes\">");
            for note in fault.notes.iter().take(3) {
                let _ = write!(out, "<li>{}</li>", escape(note));
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</article>\n");
    }
    out.push_str("</div>\n");
    if summary.faults.len() > MAX_FAULT_CARDS {
        let _ = writeln!(
            out,
            "<p>{} more injections are in summary.json.</p>",
            summary.faults.len() - MAX_FAULT_CARDS
        );
    }
    repeated_faults(summary, out);
    out.push_str("</section>\n");
}

/// Each fault injected more than once, over its injections: detections, recoveries and
/// their spread.
fn repeated_faults(summary: &Summary, out: &mut String) {
    let repeated: Vec<_> = summary
        .fault_stats
        .iter()
        .filter(|stats| stats.injected > 1)
        .collect();
    if !repeated.is_empty() {
        out.push_str("<table>\n<tr><th>fault</th><th>injected</th><th>detected</th><th>not detectable</th><th>recovered</th><th>time to detect</th><th>time to recover</th><th>calls failed</th></tr>\n");
        let spread = |spread: &Option<crate::grade::recovery::Spread>| {
            spread.as_ref().map_or("n/a".to_owned(), |s| {
                format!("p50 {:.1} s, p95 {:.1} s, max {:.1} s", s.p50, s.p95, s.max)
            })
        };
        for stats in repeated {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&stats.name),
                stats.injected,
                stats.detected,
                stats.not_detectable,
                stats.recovered,
                spread(&stats.time_to_detect_s),
                spread(&stats.time_to_recover_s),
                stats.calls_failed
            );
        }
        out.push_str("</table>\n");
    }
}

/// What a person looks at next: why calls failed, how the fleet exited, what the journal
/// could not say.
fn details(summary: &Summary, out: &mut String) {
    let mut items = Vec::new();
    for example in summary.failure_examples.iter().take(5) {
        items.push(format!(
            "call {}: {}",
            escape(example.outcome.as_str()),
            escape(&example.detail)
        ));
    }
    for exit in &summary.fleet.exits {
        items.push(format!("fleet exit {}", escape(exit)));
    }
    if let Some(observers) = &summary.observers {
        let line = observers.problems_line();
        if !line.is_empty() {
            items.push(format!("observers: {}", escape(&line)));
        }
    }
    if summary.journal.cut_short {
        items.push("journal: its last line was cut short".to_owned());
    }
    for problem in &summary.journal.problems {
        items.push(format!("journal: {}", escape(problem)));
    }
    if items.is_empty() {
        return;
    }
    out.push_str("<section>\n<h2>Details</h2>\n<ul class=\"details\">\n");
    for item in items {
        let _ = writeln!(out, "<li>{item}</li>");
    }
    out.push_str("</ul>\n</section>\n");
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1240px;padding:16px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px}h3{font-size:15px;margin:0 0 6px}
p{margin:4px 0}
.verdict{display:flex;gap:20px;align-items:center;border-radius:10px;padding:14px 20px;color:#fff}
.verdict .word{font-size:46px;font-weight:800;letter-spacing:1px}
.verdict.pass{background:#1a7f37}.verdict.fail{background:#cf222e}.verdict.error{background:#9a6700}
.verdict .reason{font-weight:600}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin-top:12px}
.tile{border:1px solid #d0d7de;border-radius:8px;padding:8px 14px;min-width:120px}
.tile b{display:block;font-size:21px}.tile span{color:#57606a;font-size:13px}
svg.timeline{width:100%;height:auto;display:block;font-size:12px}
.frame{fill:none;stroke:#d0d7de}.grid{stroke:#eaeef2}
.tick,.ylabel{fill:#57606a}.ptitle{font-weight:600;fill:#1b1f24}
.missing{fill:#8c959f;font-style:italic}
.line{fill:none;stroke-width:1.4;stroke-linejoin:round}
.s0{stroke:#0969da;fill:#0969da}.s1{stroke:#bf8700;fill:#bf8700}.s2{stroke:#cf222e;fill:#cf222e}
.s2.line{stroke-dasharray:6 3}.lg{stroke:none;font-weight:600}
.s3{stroke:#8250df;fill:#8250df}.s4{stroke:#1a7f37;fill:#1a7f37}.s5{stroke:#57606a;fill:#57606a}.s6{stroke:#e16f24;fill:#e16f24}
polyline.line{fill:none}
.fw{fill:#fb8f44;fill-opacity:.18}.fnum{fill:#bc4c00;font-weight:700;font-size:11px}
line.det{stroke:#cf222e;stroke-width:1.5;stroke-dasharray:4 3}line.rec{stroke:#1a7f37;stroke-width:1.5}
.legend{color:#57606a;font-size:13px}
.key{display:inline-block;width:14px;height:10px;margin-left:10px;vertical-align:middle}
.key.fw{background:#fb8f44;opacity:.4}.key.det{border-left:2px dashed #cf222e;width:2px}.key.rec{border-left:2px solid #1a7f37;width:2px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word}
td:first-child,td:nth-child(2){white-space:nowrap}
th{background:#f6f8fa}
tr.fail td{background:#ffebe9}tr.pass td:nth-child(2){color:#1a7f37}tr.skip td{color:#57606a}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:10px}
.card{border:1px solid #d0d7de;border-left:6px solid #1a7f37;border-radius:8px;padding:10px 12px;overflow-wrap:anywhere}
.card.fleet{border-left-color:#cf222e}.card.harness{border-left-color:#9a6700}.card.skip{border-left-color:#8c959f}
.card .n{display:inline-block;min-width:22px;padding:0 5px;border-radius:10px;background:#fff1e5;color:#bc4c00;text-align:center}
.card .when{color:#57606a;font-size:13px}.card .problem{color:#a40e26;font-weight:600}
.notes{margin:4px 0 0;padding-left:18px;color:#57606a;font-size:13px}
.details{overflow-wrap:anywhere}
footer{margin-top:24px;color:#8c959f;font-size:12px;overflow-wrap:anywhere}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_outside_text_inert_in_elements_and_attributes() {
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            escape(r#"a"b'c&d"#),
            "a&quot;b&#39;c&amp;d",
            "quotes cannot end an attribute"
        );
        assert_eq!(
            escape("x\u{1b}[2J\u{202e}\n<b>"),
            r"x\x1b[2J\u{202e}\n&lt;b&gt;",
            "hidden characters are shown, newlines too"
        );
        assert_eq!(escape("&amp;"), "&amp;amp;", "entities are text too");
        assert_eq!(
            escape("http://user:secret@db/x?token=abc123&a=1"),
            "http://***@db/x?token=***&amp;a=***",
            "secrets are masked before escaping"
        );
        assert_eq!(escape("plain 14:02 ünïcode"), "plain 14:02 ünïcode");
    }

    #[test]
    fn axes_pick_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
        assert_eq!(nice_ceiling(0.22), 0.25);
        assert_eq!(time_step(30.0), 5.0);
        assert_eq!(time_step(72.0 * 3_600.0), 43_200.0);
        assert_eq!(duration(3_725.0), "1 h 02 min");
        assert_eq!(duration(f64::NAN), "0.0 s");
    }

    #[test]
    fn wall_clock_comes_from_the_start() {
        let clock = Clock::of("2026-11-23T14:02:00.000Z");
        assert_eq!(clock.time(10.4), "14:02:10");
        assert_eq!(
            clock.date_time(0.0).as_deref(),
            Some("2026-11-23 14:02:00 UTC")
        );
        assert_eq!(clock.tick(3_600.0, 3_600.0, false), "15:02");
        assert_eq!(clock.tick(86_400.0, 43_200.0, true), "11-24 14:02");
        let unknown = Clock::of("not a time");
        assert_eq!(unknown.time(3.0), "+3.0 s");
        assert_eq!(Clock::of("2026-11-23T14:02:00.000Z").time(-1.0), "+-1.0 s");
    }

    /// A 72-hour soak as the harness journals it: an interval every 5 s, the fleet's RSS
    /// and TTS requests every 5 s, its temp dir every 30 s, a fault every 30 min with
    /// its alert, and an alert and a failure example on every interval.
    fn soak_journal(hours: u64, path: &std::path::Path) {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let end = hours * 3_600;
        writeln!(
            out,
            r#"{{"event":"run_started","t_s":0.0,"at":"2026-11-23T10:00:00.000Z","run_id":"soak-72h","scenario":"soak","scenario_path":"soak.toml","seed":1,"target":"embedded","planned_s":{end}.0,"grading":{{"slo":{{"call_success_min_pct":99.0,"response_p95_max_s":2.0,"response_p99_max_s":null,"first_audio_p95_max_s":null,"pacing_jitter_p99_max_s":null,"detect_within_s":10.0,"no_retry_storm":false,"recover_within_s":30.0,"stable_window_s":5.0,"uptime_min_pct":null,"memory_growth_max_mib_h":50.0,"temp_dir_growth_max_mib_h":null,"max_crashes":0,"no_unprovoked_alerts":true}},"faults":[{{"name":"tts","kind":"tts_429","detect":[{{"alert":"TtsRateLimited"}}],"recover_from":"clear"}}]}}}}"#
        )
        .unwrap();
        writeln!(out, r#"{{"event":"fleet","t_s":0.1,"pid":4242}}"#).unwrap();
        let mut occurrence = 0;
        for step in 1..=end / 5 {
            let t = step * 5;
            let failed = u64::from(t % 1_800 < 20);
            let p50 = 300 + t % 17;
            writeln!(
                out,
                r#"{{"event":"interval","t_s":{t}.0,"from_s":{}.0,"started":8,"completed":8,"failed":{failed},"active":{},"replies":16,"outcomes":{{"completed":8,"turn_timeout":{failed}}},"response_ms":{{"count":16,"p50":{p50}.0,"p95":{}.0,"p99":{}.0,"max":{}.0}},"failure_examples":[{{"outcome":"turn_timeout","detail":"no reply within 8s"}}]}}"#,
                t - 5,
                20 + t % 13,
                p50 + 200,
                p50 + 600,
                p50 + 900
            )
            .unwrap();
            writeln!(
                out,
                r#"{{"event":"fleet_process","t_s":{t}.0,"rss_bytes":{}}}"#,
                100_000_000 + t * 10
            )
            .unwrap();
            writeln!(
                out,
                r#"{{"event":"tts_requests","t_s":{t}.0,"window_s":5.0,"requests":20,"during_fault":0,"by_status":{{"200":18,"429":{},"500":1}}}}"#,
                1 + failed
            )
            .unwrap();
            if t % 30 == 0 {
                writeln!(
                    out,
                    r#"{{"event":"temp_dir","t_s":{t}.0,"bytes":{}}}"#,
                    1_000_000 + t
                )
                .unwrap();
            }
            if t % 1_800 == 0 && t + 30 < end {
                occurrence += 1;
                let fault = |event: &str, at: u64| {
                    format!(
                        r#"{{"event":"{event}","t_s":{at}.0,"fault":"tts","kind":"tts_429","occurrence":{occurrence},"planned_at_s":{t}.0,"evidence":"18 of 20 TTS requests faulted","note":"undone"}}"#
                    )
                };
                writeln!(out, "{}", fault("fault_injected", t)).unwrap();
                writeln!(out, "{}", fault("fault_confirmed", t + 1)).unwrap();
                writeln!(
                    out,
                    r#"{{"event":"alert","t_s":{}.0,"name":"TtsRateLimited","status":"firing"}}"#,
                    t + 2
                )
                .unwrap();
                writeln!(
                    out,
                    r#"{{"event":"alert","t_s":{}.0,"name":"TtsRateLimited","status":"resolved"}}"#,
                    t + 12
                )
                .unwrap();
                writeln!(out, "{}", fault("fault_cleared", t + 10)).unwrap();
            }
        }
        writeln!(
            out,
            r#"{{"event":"run_ended","t_s":{end}.0,"at":"2026-11-26T10:00:00.000Z","stopped":null}}"#
        )
        .unwrap();
    }

    /// A 72-hour run's report is drawn from at most 1,000 points a series and stays under
    /// 2 MB, with every injection on the timeline and in a card.
    #[test]
    fn a_72_hour_run_makes_a_report_under_2_mb() {
        let dir = tempfile::tempdir().unwrap();
        soak_journal(72, &dir.path().join("journal.jsonl"));
        let summary = Summary::rebuild(dir.path()).unwrap();
        let html = std::fs::read_to_string(dir.path().join(REPORT_HTML)).unwrap();
        eprintln!(
            "72 h journal: {} bytes, {} records; report.html: {} bytes",
            std::fs::metadata(dir.path().join("journal.jsonl"))
                .unwrap()
                .len(),
            summary.journal.records,
            html.len()
        );
        assert!(html.len() < 2_000_000, "{} bytes", html.len());
        assert_eq!(summary.faults.len(), 143);
        assert_eq!(html.matches("<article class=\"card").count(), 143);
        assert_eq!(html.matches("<rect class=\"fw\"").count(), 143);
        for polyline in html.split("<polyline").skip(1) {
            let points = polyline.split('"').nth(3).unwrap().split(' ');
            assert!(points.filter(|p| !p.is_empty()).count() <= timeline::MAX_POINTS);
        }
        assert!(html.contains("TTS requests by status"));
        assert!(
            !html.contains("not in the journal"),
            "every series is drawn"
        );
    }
}

//! The plan `voxsoak plan` prints: what a run would do, with nothing started. Plain text,
//! aligned, no colours, so it can be diffed and pasted into a ticket.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::units::format_byte_size;

use super::{
    ArrivalPattern, CallChoice, Endpoint, Load, PlannedStep, Scenario, ScriptBody, Stage, Step,
    Target, UtteranceRef, UtteranceSource,
};

/// Width of the label column.
const LABEL: usize = 19;
/// How many planned calls and arrivals the plan shows.
const SHOWN_CALLS: u64 = 5;
const SHOWN_ARRIVALS: usize = 10;

/// The plan text for `scenario`; deterministic for a given scenario and seed.
pub fn render_plan(scenario: &Scenario) -> String {
    let mut plan = Plan::default();
    plan.header(scenario);
    plan.target(scenario);
    plan.load(scenario);
    plan.calls(scenario);
    plan.scripts(scenario);
    plan.first_calls(scenario);
    plan.slo(scenario);
    plan.text
}

#[derive(Default)]
struct Plan {
    text: String,
}

impl Plan {
    fn section(&mut self, title: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(title);
        self.text.push('\n');
    }

    fn row(&mut self, label: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.text, "  {label:<LABEL$}{value}");
    }

    fn line(&mut self, indent: usize, text: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{:indent$}{text}", "");
    }

    fn header(&mut self, scenario: &Scenario) {
        self.section(&format!("scenario {}", scenario.name));
        self.row("file", scenario.path.display());
        if let Some(description) = &scenario.description {
            self.row("description", description.trim());
        }
        self.row("seed", scenario.seed);
    }

    fn target(&mut self, scenario: &Scenario) {
        self.section("target");
        match &scenario.target {
            Target::Sink(sink) => {
                self.row("fleet", "sink (voxsoak sink, started by the harness)");
                self.row("reply delay", format_duration(sink.reply_delay));
                self.row("reply length", format_duration(sink.reply_length));
            }
            Target::Embedded(fleet) => {
                self.row(
                    "fleet",
                    "embedded (voxsoak fleet, the reference fleet, started by the harness)",
                );
                let bugs = if fleet.bugs.is_empty() {
                    "none (the fixed fleet)".to_owned()
                } else {
                    let names: Vec<&str> = fleet.bugs.iter().map(|bug| bug.name()).collect();
                    names.join(", ")
                };
                self.row("bugs", bugs);
                let database = match &fleet.database_url_env {
                    Some(name) => format!("PostgreSQL from ${name}"),
                    None => "SQLite file in the run's temp dir".to_owned(),
                };
                self.row("database", database);
                self.row("db pool size", fleet.db_pool_size);
                self.row("orders", format!("{} rows seeded", fleet.orders));
                self.row("workers", fleet.workers);
                self.row(
                    "stall after",
                    format!(
                        "{} (the healer restarts a worker silent this long)",
                        format_duration(fleet.stall_after)
                    ),
                );
                let stall_calls = if fleet.bugs.contains(&crate::fleet::Bug::SilentStall) {
                    format!("{} jobs per worker (silent-stall)", fleet.stall_after_calls)
                } else {
                    format!("{} (only with silent-stall)", fleet.stall_after_calls)
                };
                self.row("stall after calls", stall_calls);
                let memory = match fleet.memory_limit {
                    Some(bytes) => format!("{} (SIGKILL above it)", format_byte_size(bytes)),
                    None => "none".to_owned(),
                };
                self.row("memory limit", memory);
                self.row("temp dir budget", format_byte_size(fleet.temp_dir_budget));
            }
            Target::External(external) => {
                match &external.endpoint {
                    Endpoint::Stream(url) => self.row("stream", url),
                    Endpoint::Webhook(url) => {
                        self.row("webhook", format!("{url} (POST, then <Connect><Stream>)"))
                    }
                }
                let signing = match &external.auth_token_env {
                    Some(name) => format!("signed with the token in ${name}"),
                    None => "unsigned".to_owned(),
                };
                self.row("requests", signing);
                if !external.custom_parameters.is_empty() {
                    let parameters: Vec<String> = external
                        .custom_parameters
                        .iter()
                        .map(|(key, value)| format!("{key}={value}"))
                        .collect();
                    self.row("custom parameters", parameters.join(", "));
                }
            }
        }
        self.row("allow hosts", scenario.allow_hosts.join(", "));
    }

    fn load(&mut self, scenario: &Scenario) {
        match &scenario.load {
            Load::Stages(stages) => self.stages(stages),
            Load::Arrival(rate) => {
                self.section("load: arrival rate (open model)");
                let gap = Duration::from_secs_f64(60.0 / rate.calls_per_minute);
                self.row(
                    "rate",
                    format!(
                        "{} calls/min (one every {} on average)",
                        rate.calls_per_minute,
                        format_duration(gap)
                    ),
                );
                let pattern = match rate.pattern {
                    ArrivalPattern::Uniform => "uniform (evenly spaced)",
                    ArrivalPattern::Poisson => "poisson (random gaps, seeded)",
                };
                self.row("arrivals", pattern);
                self.row("duration", format_duration(rate.duration));
                self.row(
                    "concurrency cap",
                    format!(
                        "{} (arrivals over it are dropped, not delayed)",
                        rate.max_concurrent
                    ),
                );
                let expected = rate.duration.as_secs_f64() * rate.calls_per_minute / 60.0;
                let expected = match rate.pattern {
                    ArrivalPattern::Uniform => format!("{}", expected.ceil()),
                    ArrivalPattern::Poisson => format!("about {}", expected.round()),
                };
                self.row("expected calls", expected);
                let first: Vec<String> = scenario
                    .arrival_offsets()
                    .take(SHOWN_ARRIVALS)
                    .map(|offset| format_offset(offset, true))
                    .collect();
                for (index, chunk) in first.chunks(5).enumerate() {
                    let label = if index == 0 { "first arrivals" } else { "" };
                    self.row(label, chunk.join("  "));
                }
            }
        }
    }

    fn stages(&mut self, stages: &[Stage]) {
        self.section("load: stages (closed model, target concurrency)");
        let millis = stages
            .iter()
            .scan(Duration::ZERO, |end, stage| {
                *end += stage.duration;
                Some(*end)
            })
            .any(|end| end.subsec_millis() != 0);
        let mut rows = Vec::new();
        let mut start = Duration::ZERO;
        let mut from = 0;
        for (index, stage) in stages.iter().enumerate() {
            let end = start + stage.duration;
            let (level, kind) = if stage.to == from {
                (format!("{from}"), "hold")
            } else {
                (format!("{from} → {}", stage.to), "ramp")
            };
            rows.push([
                format!("{}", index + 1),
                format!(
                    "{}–{}",
                    format_offset(start, millis),
                    format_offset(end, millis)
                ),
                kind.to_owned(),
                level,
                format_duration(stage.duration),
            ]);
            start = end;
            from = stage.to;
        }
        let header = ["#", "time", "", "calls", "duration"];
        let widths: Vec<usize> = (0..header.len())
            .map(|column| {
                rows.iter()
                    .map(|row| row[column].chars().count())
                    .chain([header[column].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in [header.map(String::from)].iter().chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &width)| format!("{cell:<width$}"))
                .collect();
            self.line(2, cells.join("  ").trim_end());
        }
        let load = Load::Stages(stages.to_vec());
        self.row("total duration", format_duration(load.duration()));
        self.row("peak concurrency", load.peak_concurrency());
    }

    fn calls(&mut self, scenario: &Scenario) {
        let calls = &scenario.calls;
        self.section("calls");
        self.row("from / to", format!("{} → {}", calls.from, calls.to));
        self.row("connect timeout", format_duration(calls.connect_timeout));
        self.row("turn timeout", format_duration(calls.turn_timeout));
        self.row("reply silence", format_duration(calls.reply_silence));
        self.row(
            "max call duration",
            format_duration(calls.max_call_duration),
        );
        self.row(
            "wait for greeting",
            if calls.wait_for_greeting { "yes" } else { "no" },
        );
        if calls.fixtures.is_empty() {
            self.row("fixtures", "none (synthetic speech only)");
        } else {
            self.row("fixtures", format!("{} files", calls.fixtures.len()));
            for (index, path) in calls.fixtures.iter().enumerate() {
                self.line(4, format!("[{index}] {}", path.display()));
            }
        }
        let pool = calls.synthetic;
        self.row(
            "synthetic pool",
            format!(
                "{} utterances, {} to {}",
                pool.count,
                format_duration(pool.min),
                format_duration(pool.max)
            ),
        );
        let specs: Vec<String> = scenario
            .synthetic_specs()
            .iter()
            .enumerate()
            .map(|(index, (length, _))| format!("#{index} {}", format_duration(*length)))
            .collect();
        for chunk in specs.chunks(8) {
            self.line(4, chunk.join("  "));
        }
    }

    fn scripts(&mut self, scenario: &Scenario) {
        self.section("scripts");
        let total: u64 = scenario
            .scripts
            .iter()
            .map(|script| u64::from(script.weight))
            .sum();
        let name_width = scenario
            .scripts
            .iter()
            .map(|script| script.name.chars().count())
            .max()
            .unwrap_or(0);
        for script in &scenario.scripts {
            let share = 100.0 * f64::from(script.weight) / total.max(1) as f64;
            let body = match &script.body {
                ScriptBody::Turns { min, max } if min == max => format!("{min} turns"),
                ScriptBody::Turns { min, max } => format!("{min}–{max} turns"),
                ScriptBody::Steps(steps) => steps
                    .iter()
                    .map(|step| describe_step(step, scenario))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            self.line(
                2,
                format!(
                    "{:<name_width$}  weight {:<4} {:>5.1}%  {body}",
                    script.name, script.weight, share
                ),
            );
        }
    }

    fn first_calls(&mut self, scenario: &Scenario) {
        self.section(&format!("first {SHOWN_CALLS} calls"));
        let specs = scenario.synthetic_specs();
        for index in 0..SHOWN_CALLS {
            let CallChoice { script, steps } = scenario.choose_call(index);
            self.line(
                2,
                format!("call {index}: {}", scenario.scripts[script].name),
            );
            for (number, step) in steps.iter().enumerate() {
                let text = match step {
                    PlannedStep::Say { utterance, listen } => {
                        let what = match utterance {
                            UtteranceSource::Fixture(fixture) => {
                                file_name(&scenario.calls.fixtures[*fixture])
                            }
                            UtteranceSource::Synthetic(synthetic) => match specs.get(*synthetic) {
                                Some((length, _)) => {
                                    format!("synthetic #{synthetic} ({})", format_duration(*length))
                                }
                                None => format!("synthetic #{synthetic}"),
                            },
                        };
                        format!("say {what}{}", listen_suffix(*listen))
                    }
                    PlannedStep::Dtmf { digits, listen } => {
                        format!("dtmf {digits}{}", listen_suffix(*listen))
                    }
                    PlannedStep::Pause(duration) => format!("pause {}", format_duration(*duration)),
                    PlannedStep::Hangup => "hang up".to_owned(),
                };
                self.line(4, format!("{}. {text}", number + 1));
            }
        }
    }

    fn slo(&mut self, scenario: &Scenario) {
        let slo = &scenario.slo;
        self.section("slo");
        if let Some(pct) = slo.call_success_min_pct {
            self.row("call success", format!(">= {pct}%"));
        }
        let latencies = [
            ("response p95", slo.response_p95_max),
            ("response p99", slo.response_p99_max),
            ("first audio p95", slo.first_audio_p95_max),
            ("pacing jitter p99", slo.pacing_jitter_p99_max),
        ];
        for (label, max) in latencies {
            if let Some(max) = max {
                self.row(label, format!("<= {}", format_duration(max)));
            }
        }
    }
}

fn listen_suffix(listen: bool) -> &'static str {
    if listen { ", listen" } else { "" }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

fn describe_step(step: &Step, scenario: &Scenario) -> String {
    match step {
        Step::Say { utterance, listen } => {
            let what = match utterance {
                UtteranceRef::Random => "random".to_owned(),
                UtteranceRef::Synthetic => "synthetic".to_owned(),
                UtteranceRef::Fixture(index) => file_name(&scenario.calls.fixtures[*index]),
            };
            format!("say {what}{}", listen_suffix(*listen))
        }
        Step::Dtmf { digits, listen } => format!("dtmf {digits}{}", listen_suffix(*listen)),
        Step::Pause(duration) => format!("pause {}", format_duration(*duration)),
        Step::Hangup => "hang up".to_owned(),
    }
}

/// A duration the way the file spells them: `300ms`, `1.5s`, `2m18s`, `1h30m`, `72h`.
pub(super) fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    if duration < Duration::from_millis(1) {
        return format!("{}us", duration.as_micros());
    }
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, minutes) = (millis / 3_600_000, millis / 60_000 % 60);
    let (seconds, fraction) = (millis / 1000 % 60, millis % 1000);
    let mut text = String::new();
    if hours > 0 {
        let _ = write!(text, "{hours}h");
    }
    if minutes > 0 {
        let _ = write!(text, "{minutes}m");
    }
    if seconds > 0 || fraction > 0 {
        let _ = write!(text, "{seconds}");
        if fraction > 0 {
            let digits = format!("{fraction:03}");
            let _ = write!(text, ".{}", digits.trim_end_matches('0'));
        }
        text.push('s');
    }
    text
}

/// An offset from the run start as `HH:MM:SS`, or `HH:MM:SS.mmm` with `millis`.
fn format_offset(offset: Duration, millis: bool) -> String {
    let total = offset.as_millis();
    let (hours, minutes, seconds) = (total / 3_600_000, total / 60_000 % 60, total / 1000 % 60);
    if millis {
        format!("{hours:02}:{minutes:02}:{seconds:02}.{:03}", total % 1000)
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    }
}

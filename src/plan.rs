//! The plan `voxsoak plan` prints: what a run would do, with nothing started. Plain text,
//! aligned, no colours, so it can be diffed and pasted into a ticket.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::observe::log_tail::LogWatch;
use crate::units::{format_byte_size, format_duration};

use crate::scenario::ObserveSettings;
use crate::scenario::faults::MetricCondition;
use crate::scenario::observe::ProcessWatch;
use crate::scenario::{
    ArrivalPattern, CallChoice, Endpoint, Load, PlannedStep, Scenario, ScriptBody, Stage, Step,
    Target, UtteranceRef, UtteranceSource,
};

/// Width of the label column.
const LABEL: usize = 19;
/// How many planned calls and arrivals the plan shows.
const SHOWN_CALLS: u64 = 5;
const SHOWN_ARRIVALS: usize = 10;
/// How many fault injections the plan lists.
const SHOWN_INJECTIONS: usize = 20;
/// What the plan says of what the harness points the embedded fleet at, or it at the fleet.
const WIRED: &str = "wired automatically";

/// The plan text for `scenario`; deterministic for a given scenario and seed.
pub fn render_plan(scenario: &Scenario) -> String {
    render_plan_for(scenario, scenario.load.duration())
}

/// The plan for a run cut (or held) at `run_for` (`--duration`).
pub fn render_plan_for(scenario: &Scenario, run_for: Duration) -> String {
    let mut plan = Plan::default();
    plan.header(scenario);
    plan.target(scenario);
    plan.load(scenario);
    plan.calls(scenario);
    plan.scripts(scenario);
    plan.first_calls(scenario);
    plan.faults(scenario, run_for);
    plan.observers(scenario);
    plan.abort(scenario);
    plan.slo(scenario);
    plan.text
}

#[derive(Default)]
struct Plan {
    text: String,
}

/// Every row and line is one line on the terminal: names and descriptions from the file
/// are escaped ([`crate::escape::line`]), so none can draw on the operator's screen.
impl Plan {
    fn section(&mut self, title: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(&crate::escape::line(title));
        self.text.push('\n');
    }

    fn row(&mut self, label: &str, value: impl std::fmt::Display) {
        let value = value.to_string();
        let value = crate::escape::line(&value);
        let _ = writeln!(self.text, "  {label:<LABEL$}{value}");
    }

    fn line(&mut self, indent: usize, text: impl std::fmt::Display) {
        let text = text.to_string();
        let text = crate::escape::line(&text);
        let _ = writeln!(self.text, "{:indent$}{text}", "");
    }

    fn header(&mut self, scenario: &Scenario) {
        self.section(&format!("scenario {}", scenario.name));
        self.row("file", scenario.path.display());
        if !scenario.includes.is_empty() {
            // The files it was composed from besides itself (`include`), as read.
            let files: Vec<String> = scenario
                .includes
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            self.row("includes", files.join(", "));
        }
        if let Some(description) = &scenario.description {
            self.row("description", description.trim());
        }
        self.row("seed", scenario.seed);
        if scenario.time_scale > 1.0 {
            let written = scenario.load.duration().mul_f64(scenario.time_scale);
            self.row(
                "time scale",
                format!(
                    "{}: the schedule runs {} times faster than written ({} as written takes {}); every time below is real time, each call's audio, detection and recovery too",
                    crate::units::format_time_scale(scenario.time_scale),
                    scenario.time_scale,
                    format_duration(written),
                    format_duration(scenario.load.duration())
                ),
            );
        }
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
                let stall_calls = if fleet
                    .bugs
                    .contains(&crate::contract::fleet::Bug::SilentStall)
                {
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
                    Endpoint::Stream(url) => self.row("stream", crate::redact::url(url)),
                    Endpoint::Webhook(url) => self.row(
                        "webhook",
                        format!("{} (POST, then <Connect><Stream>)", crate::redact::url(url)),
                    ),
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
                        // A parameter named like a secret (`token`) shows masked.
                        .map(|(key, value)| {
                            crate::redact::text(&format!("{key}={value}")).into_owned()
                        })
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
        self.row("fleet may hang up", calls.fleet_may_hang_up.name());
        if calls.fixtures.is_empty() {
            self.row("fixtures", "none (synthetic speech only)");
        } else {
            self.row("fixtures", format!("{} files", calls.fixtures.len()));
            for (index, fixture) in calls.fixtures.iter().enumerate() {
                self.line(
                    4,
                    format!(
                        "[{index}] {} ({})",
                        fixture.path.display(),
                        format_duration(fixture.duration())
                    ),
                );
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
                                file_name(&scenario.calls.fixtures[*fixture].path)
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

    fn faults(&mut self, scenario: &Scenario, run_for: Duration) {
        self.section("faults");
        if scenario.faults.is_empty() {
            self.line(2, "none: no fault is injected");
            return;
        }
        for fault in &scenario.faults {
            self.line(2, format!("{} ({})", fault.name, fault.kind));
            let embedded = matches!(scenario.target, Target::Embedded(_));
            self.row("  does", fault.fault.describe(embedded));
            let mut when = format!(
                "at {} for {}",
                format_duration(fault.at),
                format_duration(fault.duration)
            );
            if let Some(every) = fault.every {
                let _ = write!(when, ", every {}", format_duration(every.every));
                if !every.jitter.is_zero() {
                    let _ = write!(when, " ± {}", format_duration(every.jitter));
                }
            }
            self.row("  when", when);
            let rules: Vec<String> = fault.detect.iter().map(ToString::to_string).collect();
            self.row("  detected by", rules.join(" or "));
        }
        self.row(
            "confirm within",
            format!(
                "{}: each fault must show it is in effect by then; one not yet in effect at the end of its window is held on until it is (it met traffic), at most that long after its injection and never past the next one",
                format_duration(scenario.chaos.confirm_within)
            ),
        );
        let timeline = crate::scenario::faults::timeline(&scenario.faults, run_for, scenario.seed);
        self.line(
            2,
            format!(
                "timeline ({} injections in {}):",
                timeline.len(),
                format_duration(run_for)
            ),
        );
        for occurrence in timeline.iter().take(SHOWN_INJECTIONS) {
            let fault = &scenario.faults[occurrence.fault];
            self.line(
                4,
                format!(
                    "{} – {}  {} #{}{}",
                    format_offset(occurrence.at, scenario.time_scale > 1.0),
                    format_offset(occurrence.until, scenario.time_scale > 1.0),
                    fault.name,
                    occurrence.number,
                    as_written(scenario, occurrence.at)
                ),
            );
        }
        if timeline.len() > SHOWN_INJECTIONS {
            self.line(
                4,
                format!("… and {} more", timeline.len() - SHOWN_INJECTIONS),
            );
        }
        let planned = scenario.faults.len();
        let never = (0..planned)
            .filter(|index| !timeline.iter().any(|occurrence| occurrence.fault == *index))
            .map(|index| scenario.faults[index].name.clone())
            .collect::<Vec<_>>();
        if !never.is_empty() {
            self.line(
                4,
                format!(
                    "never injected (starts after the run ends, or too close to its end to be confirmed): {}",
                    never.join(", ")
                ),
            );
        }
    }

    /// What the run watches, as `observe::Watch` will resolve it: the scenario's
    /// `[observe]`, with the endpoints, dir and output of a fleet the harness starts filled
    /// in.
    fn observers(&mut self, scenario: &Scenario) {
        let settings = &scenario.observe;
        let embedded = matches!(scenario.target, Target::Embedded(_));
        let fleet = match scenario.target {
            Target::Embedded(_) => Some("the fleet's"),
            Target::Sink(_) => Some("the sink's"),
            Target::External(_) => None,
        };
        self.section("observers");
        let health = watched(
            settings
                .health_url
                .as_ref()
                .map(|url| format!("GET {}", crate::redact::url(url))),
            fleet.map(|fleet| format!("{fleet} /health")),
            "health_url",
            format!(
                "{}, timeout {}",
                every(settings.health_interval),
                format_duration(settings.health_timeout)
            ),
        );
        self.row("health", health);
        let metrics_watched = settings.metrics_url.is_some() || fleet.is_some();
        let metrics = watched(
            settings
                .metrics_url
                .as_ref()
                .map(|url| format!("GET {}", crate::redact::url(url))),
            fleet.map(|fleet| format!("{fleet} /metrics")),
            "metrics_url",
            every(settings.scrape_interval),
        );
        self.row("metrics", metrics);
        let fleet_log = Path::new("<run dir>").join(crate::observe::FLEET_LOG);
        let default_log =
            (settings.log_file.as_deref()).or(embedded.then_some(fleet_log.as_path()));
        let (conditions, logs) = crate::observe::detect_watches(scenario, default_log);
        if metrics_watched {
            self.scraped_series(&conditions, scenario);
        }
        self.row("alerts", alerts_observer(settings, embedded));
        self.row("temp dir", temp_dir_observer(scenario));
        self.row("memory", memory_observer(settings, fleet, metrics_watched));
        self.logs(&logs, default_log, embedded.then_some(fleet_log.as_path()));
        self.row("process", process_observer(settings, fleet));
        self.row("tts requests", tts_observer(scenario));
    }

    /// The metric conditions read on each scrape, and the series journaled (`record` and
    /// the metric SLOs').
    fn scraped_series(&mut self, conditions: &[MetricCondition], scenario: &Scenario) {
        let conditions: Vec<&str> = conditions.iter().map(|c| c.text.as_str()).collect();
        if !conditions.is_empty() {
            self.row("  conditions", conditions.join("; "));
        }
        let recorded = crate::observe::recorded_series(scenario);
        let record: Vec<&str> = recorded.iter().map(|r| r.text.as_str()).collect();
        if !record.is_empty() {
            self.row(
                "  record",
                format!(
                    "{} (journaled every {})",
                    record.join(", "),
                    format_duration(crate::scenario::metric_slo::RECORD_EVERY)
                ),
            );
        }
    }

    /// The log files the `{ log = "…" }` rules follow, with their patterns.
    fn logs(&mut self, logs: &[LogWatch], default_log: Option<&Path>, fleet_log: Option<&Path>) {
        let fleet_output = |file: &Path| {
            if Some(file) == fleet_log {
                format!(" (the fleet's stdout and stderr, {WIRED})")
            } else {
                String::new()
            }
        };
        if logs.is_empty() {
            let log = match default_log {
                Some(file) => format!(
                    "{}{}, not followed: no {{ log = … }} detect rule",
                    file.display(),
                    fleet_output(file)
                ),
                None => "none (no { log = … } detect rule)".to_owned(),
            };
            self.row("log", log);
        }
        for (index, watch) in logs.iter().enumerate() {
            let patterns: Vec<String> = watch.patterns.iter().map(|p| format!("/{p}/")).collect();
            let label = if index == 0 { "log" } else { "" };
            self.row(
                label,
                format!(
                    "{}{}: {}",
                    watch.file.display(),
                    fleet_output(&watch.file),
                    patterns.join(", ")
                ),
            );
        }
    }

    fn abort(&mut self, scenario: &Scenario) {
        let abort = &scenario.abort;
        self.section("abort");
        match abort.call_success_below_pct {
            Some(pct) => self.row(
                "call success",
                format!(
                    "below {pct}% over {} (at least {} calls) stops chaos and ends the run",
                    format_duration(abort.over),
                    abort.min_calls
                ),
            ),
            None => self.row("call success", "no threshold"),
        }
        let file = abort.kill_switch_file.as_ref().map_or_else(
            || crate::scenario::faults::KILL_SWITCH_FILE.to_owned(),
            |file| file.display().to_string(),
        );
        self.row("kill switch", format!("create {file} in the run directory"));
        if let Some(listen) = abort.kill_switch_listen {
            self.row("", format!("or POST http://{listen}/abort"));
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
        if let Some(within) = slo.detect_within {
            self.row("detect within", format!("<= {}", format_duration(within)));
        }
        if slo.no_retry_storm {
            self.row(
                "no retry storm",
                "no immediate TTS retries; Retry-After honoured",
            );
        }
        if let Some(within) = slo.recover_within {
            self.row(
                "recover within",
                format!(
                    "<= {} (steady for {})",
                    format_duration(within),
                    format_duration(slo.stable_window)
                ),
            );
        }
        if let Some(pct) = slo.uptime_min_pct {
            self.row(
                "uptime",
                format!(">= {pct}% outside faults and their recovery"),
            );
        }
        let growth = [
            ("memory growth", slo.memory_growth_max_mib_h),
            ("temp dir growth", slo.temp_dir_growth_max_mib_h),
        ];
        for (label, max) in growth {
            if let Some(max) = max {
                self.row(label, format!("<= {max}MiB/h"));
            }
        }
        if let Some(max) = slo.max_crashes {
            self.row("max crashes", max.to_string());
        }
        if slo.no_unprovoked_alerts {
            self.row(
                "unprovoked alerts",
                "none: no alert with no fault in effect",
            );
        }
        for metric in &slo.metrics {
            let plan = crate::detect::plan::MetricSloPlan::of(metric);
            self.row(
                "metric",
                format!("{}: {} {}", plan.name, plan.series, plan.threshold()),
            );
        }
    }
}

/// The scenario's setting, else the started fleet's own, else the key to set.
fn watched(given: Option<String>, fleet_own: Option<String>, key: &str, how: String) -> String {
    match (given, fleet_own) {
        (Some(given), _) => format!("{given} {how}"),
        (None, Some(own)) => format!("{own} {how} ({WIRED})"),
        (None, None) => format!("none (set [observe] {key})"),
    }
}

fn every(interval: Duration) -> String {
    format!("every {}", format_duration(interval))
}

fn from_metrics(series: &str) -> String {
    format!("{series} from /metrics")
}

/// Where the fleet's alerts are received.
fn alerts_observer(settings: &ObserveSettings, embedded: bool) -> String {
    match (settings.alerts_listen, embedded) {
        (_, true) => format!("receiver on a free loopback port the fleet posts to ({WIRED})"),
        (Some(listen), false) => format!(
            "receiver on http://{listen}/alerts (point the fleet's Alertmanager webhook there)"
        ),
        (None, false) => "none (set [observe] alerts_listen)".to_owned(),
    }
}

/// How the fleet's temp dir is measured.
fn temp_dir_observer(scenario: &Scenario) -> String {
    let settings = &scenario.observe;
    match (&settings.temp_dir, &scenario.target) {
        (Some(dir), _) => format!("{} {}", dir.display(), every(settings.temp_dir_interval)),
        (None, Target::Embedded(_)) => format!(
            "the fleet's audio temp dir {} ({WIRED})",
            every(settings.temp_dir_interval)
        ),
        (None, _) if settings.metrics_url.is_some() => format!(
            "{} (set [observe] temp_dir to walk a dir)",
            from_metrics(&settings.temp_dir_metric.text)
        ),
        (None, Target::Sink(_)) => {
            "none (the sink keeps no temp dir; set [observe] temp_dir)".to_owned()
        }
        (None, _) => "none (set [observe] temp_dir or metrics_url)".to_owned(),
    }
}

/// Where the fleet's memory is read from.
fn memory_observer(
    settings: &ObserveSettings,
    fleet: Option<&str>,
    metrics_watched: bool,
) -> String {
    match (&settings.process, fleet, metrics_watched) {
        (_, Some(fleet), _) => format!("{fleet} process RSS, from /proc"),
        (Some(ProcessWatch::PidFile(file)), None, _) => {
            format!("RSS of the process {} names, from /proc", file.display())
        }
        (_, None, true) => from_metrics(&settings.rss_metric.text),
        (_, None, false) => {
            "none (set [observe] process = { pid_file = … } or metrics_url)".to_owned()
        }
    }
}

/// How the fleet's process is watched: samples, exits, restarts.
fn process_observer(settings: &ObserveSettings, fleet: Option<&str>) -> String {
    let sampled = format!(
        "RSS and CPU (journaled every {})",
        format_duration(crate::observe::fleet_process::JOURNAL_EVERY)
    );
    match (&settings.process, fleet) {
        (_, Some(fleet)) => {
            format!("{fleet} {sampled} and exits; restarted after a crash")
        }
        (Some(ProcessWatch::PidFile(file)), None) => format!(
            "the process {} names, read every {}: {sampled}; its exit is a crash, a new pid a restart",
            file.display(),
            format_duration(crate::observe::pid_file::SAMPLE_EVERY)
        ),
        (Some(ProcessWatch::Health), None) => {
            "by health: refusing connections after answering is a crash, answering again a restart".to_owned()
        }
        (None, None) => {
            "none: crashes are not seen (set [observe] process = { pid_file = … } or { health = true })".to_owned()
        }
    }
}

/// Where the TTS requests are counted.
fn tts_observer(scenario: &Scenario) -> String {
    match (&scenario.target, scenario.chaos.tts_listen) {
        (Target::Embedded(_), _) => {
            format!("the TTS stand-in the fleet is pointed at ({WIRED})")
        }
        (Target::Sink(_), _) => "none (the sink calls no TTS)".to_owned(),
        (Target::External(_), Some(listen)) => {
            format!("the TTS stand-in on http://{listen}/v1 (point the fleet's TTS_BASE_URL there)")
        }
        (Target::External(_), None) => "none (set [chaos] tts_listen)".to_owned(),
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
                UtteranceRef::Fixture(index) => file_name(&scenario.calls.fixtures[*index].path),
            };
            format!("say {what}{}", listen_suffix(*listen))
        }
        Step::Dtmf { digits, listen } => format!("dtmf {digits}{}", listen_suffix(*listen)),
        Step::Pause(duration) => format!("pause {}", format_duration(*duration)),
        Step::Hangup => "hang up".to_owned(),
    }
}

/// An offset from the run start as `HH:MM:SS`, or `HH:MM:SS.mmm` with `millis`.
/// `  (as written 02:24:00)` for an offset of a compressed schedule, else nothing.
fn as_written(scenario: &Scenario, offset: Duration) -> String {
    if scenario.time_scale > 1.0 {
        format!(
            "  (as written {})",
            format_offset(offset.mul_f64(scenario.time_scale), false)
        )
    } else {
        String::new()
    }
}

fn format_offset(offset: Duration, millis: bool) -> String {
    let total = offset.as_millis();
    let (hours, minutes, seconds) = (total / 3_600_000, total / 60_000 % 60, total / 1000 % 60);
    if millis {
        format!("{hours:02}:{minutes:02}:{seconds:02}.{:03}", total % 1000)
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    }
}

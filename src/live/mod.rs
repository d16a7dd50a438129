//! The harness's own live metrics: while a run goes on, `GET /metrics` on `--metrics-listen`
//! (or the scenario's `metrics_listen`) serves the run so far in the Prometheus text format
//! (0.0.4), so a 72-hour run can be watched in Grafana.
//!
//! Everything on the page comes from what the grader reads, so the page and `summary.json`
//! agree: the journal's records, folded as they are written (a [`Tap`] on the journal). The
//! calls come from the `interval` records (every 5 s: the aggregator's totals, their HDR
//! histograms shown as Prometheus histograms with fixed buckets), the faults from the chaos
//! plane's and the observers' records, and the SLOs and recoveries from grading the journal
//! so far ([`crate::grade::evaluate_in_progress`]) every [`GRADE_EVERY`], or less often
//! when grading takes long (at most a [`GRADE_SHARE`]th of the time). The harness's RSS and
//! CPU are read at each scrape. Its memory is one run's totals: it does not grow with calls
//! or time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::grade::SloStatus;
use crate::grade::replay::RecoveryStatus;
use crate::grade::summary::Summary;
use crate::journal::Tap;
use crate::journal::calls::{CallOutcome, Totals};

/// The page's content type: the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the journal so far is graded for the SLOs and the recoveries, at most.
pub const GRADE_EVERY: Duration = Duration::from_secs(15);

/// Grading waits at least this many times as long as it last took: a 72-hour journal that
/// takes 5 s to grade is graded every 100 s, and grading never takes more than a twentieth
/// of a core.
pub const GRADE_SHARE: u32 = 20;

/// The most fault kinds counted: the registry's kinds, with room to spare; the page must
/// not grow with whatever a record says.
const MAX_KINDS: usize = 64;

/// A latency histogram of the run's totals, as a Prometheus histogram.
struct Family {
    name: &'static str,
    help: &'static str,
    /// Upper bounds in seconds, ascending; `+Inf` follows.
    bounds: &'static [f64],
    of: fn(&Totals) -> &Histogram<u64>,
}

const HISTOGRAMS: [Family; 4] = [
    Family {
        name: "voxsoak_response_latency_seconds",
        help: "End of caller speech to the first voiced agent audio heard, per reply.",
        bounds: &[
            0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 15.0, 30.0,
        ],
        of: |totals| &totals.response,
    },
    Family {
        name: "voxsoak_first_audio_seconds",
        help: "Stream start to the first voiced agent audio of the call.",
        bounds: &[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 15.0, 30.0, 60.0],
        of: |totals| &totals.first_audio,
    },
    Family {
        name: "voxsoak_connect_seconds",
        help: "Call start (webhook included) to the media stream's WebSocket open.",
        bounds: &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ],
        of: |totals| &totals.connect,
    },
    Family {
        name: "voxsoak_pacing_lateness_seconds",
        help: "How late the harness sent each 20 ms media frame (its own pacing, not the fleet's).",
        bounds: &[
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
        ],
        of: |totals| &totals.pacing,
    },
];

/// What the page says about the run itself.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub scenario: String,
    /// How long calls keep starting, in real time.
    pub planned_s: f64,
    pub time_scale: f64,
    /// Where the journal's `t_s` counts from.
    pub started: Instant,
}

/// The run so far, as the page shows it; shared by the journal's tap, the grading task and
/// the server.
#[derive(Debug, Clone)]
pub struct LiveMetrics {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    run: RunInfo,
    /// The run's calls, from its `interval` records.
    calls: Totals,
    /// Calls in progress at the last `interval` record.
    active: u64,
    faults: BTreeMap<String, FaultCounts>,
    /// SLO name → 1 pass, 0 fail, -1 not measured yet; empty before the first grading.
    slos: BTreeMap<String, i8>,
    /// When the SLOs were last graded (seconds into the run), and how long it took.
    graded: Option<(f64, Duration)>,
}

/// One fault kind's injections so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FaultCounts {
    injected: u64,
    in_effect: u64,
    confirmed: u64,
    detected: u64,
    /// As graded so far; never goes down.
    recovered: u64,
    inject_failed: u64,
    clear_failed: u64,
}

impl LiveMetrics {
    /// Nothing so far; the kinds of `faults` are on the page at zero from the start.
    pub fn new<'a>(run: RunInfo, faults: impl IntoIterator<Item = &'a str>) -> Self {
        let faults = faults
            .into_iter()
            .map(|kind| (kind.to_owned(), FaultCounts::default()))
            .collect();
        LiveMetrics {
            state: Arc::new(Mutex::new(State {
                run,
                calls: Totals::default(),
                active: 0,
                faults,
                slos: BTreeMap::new(),
                graded: None,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds every record the journal writes from now on ([`crate::journal::Journal::tap`]).
    pub fn tap(&self) -> Tap {
        let metrics = self.clone();
        Arc::new(move |record: &Value| metrics.take(record))
    }

    /// Folds one journal record: `interval` (calls) and the fault records; others are
    /// not on the page.
    pub fn take(&self, record: &Value) {
        let event = record.get("event").and_then(Value::as_str).unwrap_or("");
        let mut state = self.state();
        if event == "interval" {
            // A field that cannot be read is the grader's to report; the rest counts.
            let _ = state.calls.add_record(record);
            if let Some(active) = record.get("active").and_then(Value::as_u64) {
                state.active = active;
            }
            return;
        }
        let Some(kind) = record.get("kind").and_then(Value::as_str) else {
            return;
        };
        let Some(counts) = state.fault_counts(kind) else {
            return;
        };
        match event {
            "fault_injected" => {
                counts.injected += 1;
                counts.in_effect += 1;
            }
            "fault_confirmed" => counts.confirmed += 1,
            "fault_detected" => counts.detected += 1,
            "fault_cleared" => counts.in_effect = counts.in_effect.saturating_sub(1),
            "fault_clear_failed" => {
                counts.in_effect = counts.in_effect.saturating_sub(1);
                counts.clear_failed += 1;
            }
            "fault_failed" => counts.inject_failed += 1,
            _ => {}
        }
    }

    /// Takes what grading the journal so far found: each SLO's status, and the faults
    /// recovered by kind. `at_s` is when, in the run; `took` how long grading took.
    pub fn graded(&self, summary: &Summary, at_s: f64, took: Duration) {
        let mut state = self.state();
        state.slos.clear();
        for slo in &summary.slos {
            let status = match slo.status {
                SloStatus::Pass => 1,
                SloStatus::Fail => 0,
                SloStatus::NotMeasured => -1,
            };
            // Two SLOs of one name (none today) show the worse: a failure, else unmeasured.
            let shown = state.slos.entry(slo.name.to_owned()).or_insert(status);
            *shown = match (*shown, status) {
                (0, _) | (_, 0) => 0,
                (-1, _) | (_, -1) => -1,
                _ => 1,
            };
        }
        let mut recovered: BTreeMap<&str, u64> = BTreeMap::new();
        for fault in &summary.faults {
            if fault.recovery == Some(RecoveryStatus::Recovered) {
                *recovered.entry(fault.kind).or_default() += 1;
            }
        }
        for (kind, count) in recovered {
            if let Some(counts) = state.fault_counts(kind) {
                counts.recovered = counts.recovered.max(count);
            }
        }
        state.graded = Some((at_s, took));
    }

    /// The page: the run so far in the Prometheus text format.
    pub fn render(&self) -> String {
        let process = crate::procinfo::sample(None).ok();
        let state = self.state();
        let mut page = Page::default();
        state.render_run(&mut page);
        state.render_calls(&mut page);
        for family in &HISTOGRAMS {
            page.histogram(family, (family.of)(&state.calls));
        }
        state.render_faults(&mut page);
        state.render_slos(&mut page);
        drop(state);
        if let Some(process) = process {
            page.family(
                "process_resident_memory_bytes",
                "gauge",
                "The harness's resident memory.",
            );
            page.sample(
                "process_resident_memory_bytes",
                &[],
                process.rss_bytes as f64,
            );
            page.family(
                "process_cpu_seconds_total",
                "counter",
                "The harness's user and system CPU time.",
            );
            page.sample(
                "process_cpu_seconds_total",
                &[],
                process.cpu_time.as_secs_f64(),
            );
        }
        page.text
    }
}

impl State {
    /// The counts of `kind`, added at zero if new (at most [`MAX_KINDS`] kinds).
    fn fault_counts(&mut self, kind: &str) -> Option<&mut FaultCounts> {
        if !self.faults.contains_key(kind) && self.faults.len() >= MAX_KINDS {
            return None;
        }
        Some(self.faults.entry(kind.to_owned()).or_default())
    }

    fn render_run(&self, page: &mut Page) {
        let run = &self.run;
        page.family(
            "voxsoak_run_info",
            "gauge",
            "The run being watched (always 1).",
        );
        page.sample(
            "voxsoak_run_info",
            &[("run_id", &run.run_id), ("scenario", &run.scenario)],
            1.0,
        );
        let gauges = [
            (
                "voxsoak_run_elapsed_seconds",
                "Real time since the run started.",
                run.started.elapsed().as_secs_f64(),
            ),
            (
                "voxsoak_run_planned_seconds",
                "How long calls keep starting, in real time.",
                run.planned_s,
            ),
            (
                "voxsoak_run_time_scale",
                "How many times faster than written the schedule runs.",
                run.time_scale,
            ),
        ];
        for (name, help, value) in gauges {
            page.family(name, "gauge", help);
            page.sample(name, &[], value);
        }
    }

    fn render_calls(&self, page: &mut Page) {
        let calls = &self.calls;
        page.family(
            "voxsoak_calls_active",
            "gauge",
            "Calls in progress (as of the last 5 s interval).",
        );
        page.sample("voxsoak_calls_active", &[], self.active as f64);
        let counters = [
            (
                "voxsoak_calls_started_total",
                "Calls placed.",
                calls.started,
            ),
            (
                "voxsoak_calls_completed_total",
                "Calls that ran their script to its end.",
                calls.count(CallOutcome::Completed),
            ),
            (
                "voxsoak_calls_failed_total",
                "Graded calls that did not complete, dropped ones included.",
                calls.failed(),
            ),
            (
                "voxsoak_calls_dropped_total",
                "Calls not placed because max_concurrent were running (open model).",
                calls.dropped,
            ),
        ];
        for (name, help, value) in counters {
            page.family(name, "counter", help);
            page.sample(name, &[], value as f64);
        }
        page.family(
            "voxsoak_calls_ended_total",
            "counter",
            "Calls that ended, by outcome (summary.json calls.by_outcome).",
        );
        for outcome in CallOutcome::ALL {
            page.sample(
                "voxsoak_calls_ended_total",
                &[("outcome", outcome.as_str())],
                calls.count(outcome) as f64,
            );
        }
    }

    fn render_faults(&self, page: &mut Page) {
        type Field = fn(&FaultCounts) -> u64;
        let families: [(&str, &str, &str, Field); 7] = [
            (
                "voxsoak_faults_in_effect",
                "gauge",
                "Injections of the kind in effect now (injected, not yet cleared).",
                |counts| counts.in_effect,
            ),
            (
                "voxsoak_faults_injected_total",
                "counter",
                "Injections.",
                |counts| counts.injected,
            ),
            (
                "voxsoak_faults_confirmed_total",
                "counter",
                "Injections seen to be in effect.",
                |counts| counts.confirmed,
            ),
            (
                "voxsoak_faults_detected_total",
                "counter",
                "Injections the fleet's own signals detected.",
                |counts| counts.detected,
            ),
            (
                "voxsoak_faults_recovered_total",
                "counter",
                "Injections the fleet recovered from, as graded so far.",
                |counts| counts.recovered,
            ),
            (
                "voxsoak_fault_injections_failed_total",
                "counter",
                "Injections that could not be made.",
                |counts| counts.inject_failed,
            ),
            (
                "voxsoak_fault_clears_failed_total",
                "counter",
                "Injections that could not be undone (the run is graded error).",
                |counts| counts.clear_failed,
            ),
        ];
        if self.faults.is_empty() {
            return;
        }
        for (name, kind, help, field) in families {
            page.family(name, kind, help);
            for (fault_kind, counts) in &self.faults {
                page.sample(name, &[("kind", fault_kind)], field(counts) as f64);
            }
        }
    }

    fn render_slos(&self, page: &mut Page) {
        let Some((at_s, took)) = self.graded else {
            return;
        };
        if !self.slos.is_empty() {
            page.family(
                "voxsoak_slo_status",
                "gauge",
                "Each SLO so far: 1 pass, 0 fail, -1 not measured yet.",
            );
            for (name, status) in &self.slos {
                page.sample("voxsoak_slo_status", &[("slo", name)], f64::from(*status));
            }
        }
        let gauges = [
            (
                "voxsoak_slo_graded_at_seconds",
                "When, in the run, the SLOs and recoveries were last graded.",
                at_s,
            ),
            (
                "voxsoak_slo_grading_seconds",
                "How long that grading of the journal so far took.",
                took.as_secs_f64(),
            ),
        ];
        for (name, help, value) in gauges {
            page.family(name, "gauge", help);
            page.sample(name, &[], value);
        }
    }
}

/// A page of the text format being written.
#[derive(Debug, Default)]
struct Page {
    text: String,
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, text)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", label_value(text));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// `family` from an HDR histogram in microseconds: cumulative buckets at its bounds,
    /// `+Inf`, `_sum` and `_count`. Each recorded value counts at the middle of its HDR
    /// bucket, so `_sum` and the bucket edges are within 0.1 % of the calls' own values.
    fn histogram(&mut self, family: &Family, histogram: &Histogram<u64>) {
        let mut counts = vec![0u64; family.bounds.len()];
        let mut sum_s = 0.0;
        for value in histogram.iter_recorded() {
            let seconds = histogram.median_equivalent(value.value_iterated_to()) as f64 / 1e6;
            let count = value.count_at_value();
            sum_s += seconds * count as f64;
            if let Some(bucket) = family.bounds.iter().position(|bound| seconds <= *bound) {
                counts[bucket] += count;
            }
        }
        self.family(family.name, "histogram", family.help);
        let bucket = format!("{}_bucket", family.name);
        let mut cumulative = 0u64;
        for (bound, count) in family.bounds.iter().zip(counts) {
            cumulative += count;
            self.sample(&bucket, &[("le", &number(*bound))], cumulative as f64);
        }
        let total = histogram.len();
        self.sample(&bucket, &[("le", "+Inf")], total as f64);
        self.sample(&format!("{}_sum", family.name), &[], sum_s);
        self.sample(&format!("{}_count", family.name), &[], total as f64);
    }
}

/// A sample value or bound as the format writes it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// A label value (the scenario's name is from outside) with secrets masked and hidden
/// characters escaped as the reports show them ([`crate::escape::line`]: a newline is `\n`,
/// so a value stays on its line), then `\` and `"` escaped as the format requires.
fn label_value(text: &str) -> String {
    let masked = crate::redact::text(text);
    let shown = crate::escape::line(&masked);
    let mut escaped = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Binds where the page is served, before the run starts (a taken port is an error then,
/// not a run without its metrics); must be called within the runtime.
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a fixed port is free again at once after a run.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Serves `metrics` on `listener` and grades the journal at `journal` for it while the
/// run goes on, until `stop`.
pub fn serve(
    listener: TcpListener,
    metrics: LiveMetrics,
    journal: PathBuf,
    stop: CancellationToken,
) {
    let page = metrics.clone();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = page.render();
            async move { ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text) }
        }),
    );
    tokio::spawn(crate::http_serve::serve(listener, router, stop.clone()));
    tokio::spawn(grade_while_running(metrics, journal, stop));
}

/// Grades the journal so far every [`GRADE_EVERY`] (or [`GRADE_SHARE`] times as long as the
/// last grading took), off the async threads, until `stop`.
async fn grade_while_running(metrics: LiveMetrics, journal: PathBuf, stop: CancellationToken) {
    let started = metrics.state().run.started;
    loop {
        let began = Instant::now();
        let at_s = began.saturating_duration_since(started).as_secs_f64();
        let path = journal.clone();
        let graded = tokio::task::spawn_blocking(move || {
            crate::grade::replay::read(&path).map(|run| crate::grade::evaluate_in_progress(&run))
        })
        .await;
        let took = began.elapsed();
        match graded {
            Ok(Ok(summary)) => metrics.graded(&summary, at_s, took),
            Ok(Err(error)) => {
                tracing::warn!(%error, "live metrics: the journal could not be graded")
            }
            Err(error) => tracing::warn!(%error, "live metrics: grading failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(GRADE_EVERY.max(took * GRADE_SHARE)) => {}
        }
    }
}

#[cfg(test)]
mod tests;

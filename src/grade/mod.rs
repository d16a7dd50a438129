//! The verdict: every SLO of the scenario with its threshold, what was measured, pass or
//! fail, and one line a person understands.

use std::time::Duration;

use serde::Serialize;

use crate::load::aggregate::{Percentiles, Totals};
use crate::scenario::Slos;

/// One SLO's verdict, as `summary.json` `slos[]` carries it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SloVerdict {
    pub name: &'static str,
    pub threshold: String,
    pub measured: String,
    pub pass: bool,
    pub why: String,
}

/// The run's verdict. Names are a public contract (`summary.json` `verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// The run could not be carried out.
    Error,
    /// The run was stopped before its end (Ctrl-C, SIGTERM).
    Aborted,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => crate::exit::PASS,
            Verdict::Fail => crate::exit::SLO_FAILED,
            Verdict::Error | Verdict::Aborted => crate::exit::HARNESS_ERROR,
        }
    }
}

/// Grades the run totals against the scenario's SLOs.
pub fn grade(slos: &Slos, totals: &Totals) -> Vec<SloVerdict> {
    let mut verdicts = Vec::new();
    if let Some(min) = slos.call_success_min_pct {
        verdicts.push(call_success(min, totals));
    }
    let latency_slos = [
        (
            "response_p95",
            slos.response_p95_max,
            &totals.response,
            0.95,
            "response latency",
        ),
        (
            "response_p99",
            slos.response_p99_max,
            &totals.response,
            0.99,
            "response latency",
        ),
        (
            "first_audio_p95",
            slos.first_audio_p95_max,
            &totals.first_audio,
            0.95,
            "time to first agent audio",
        ),
        (
            "pacing_jitter_p99",
            slos.pacing_jitter_p99_max,
            &totals.pacing,
            0.99,
            "harness send-pacing jitter",
        ),
    ];
    for (name, max, histogram, quantile, what) in latency_slos {
        let Some(max) = max else { continue };
        verdicts.push(latency(name, max, histogram, quantile, what));
    }
    verdicts
}

fn call_success(min: f64, totals: &Totals) -> SloVerdict {
    let threshold = format!(">= {min}%");
    let Some(pct) = totals.success_pct() else {
        return SloVerdict {
            name: "call_success",
            threshold,
            measured: "no calls".into(),
            pass: false,
            why: "no call ended, so the success rate could not be measured".into(),
        };
    };
    let pass = pct >= min;
    let completed = totals.count(crate::call::CallOutcome::Completed);
    let graded = totals.graded();
    let mut failures: Vec<String> = totals
        .outcomes
        .iter()
        .filter(|(outcome, count)| {
            outcome.is_graded() && **outcome != crate::call::CallOutcome::Completed && **count > 0
        })
        .map(|(outcome, count)| format!("{count} {outcome}"))
        .collect();
    if totals.dropped > 0 {
        failures.push(format!("{} dropped", totals.dropped));
    }
    let why = if failures.is_empty() {
        format!("{completed} of {graded} calls completed")
    } else {
        format!(
            "{completed} of {graded} calls completed; {}",
            failures.join(", ")
        )
    };
    SloVerdict {
        name: "call_success",
        threshold,
        measured: format!("{pct:.2}%"),
        pass,
        why,
    }
}

fn latency(
    name: &'static str,
    max: Duration,
    histogram: &hdrhistogram::Histogram<u64>,
    quantile: f64,
    what: &str,
) -> SloVerdict {
    let threshold = format!("<= {}", format_ms(max.as_secs_f64() * 1000.0));
    if histogram.is_empty() {
        return SloVerdict {
            name,
            threshold,
            measured: "no samples".into(),
            pass: false,
            why: format!("no {what} was measured"),
        };
    }
    let measured_ms = histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let pass = measured_ms <= max.as_secs_f64() * 1000.0;
    let label = format!("p{}", (quantile * 100.0).round());
    SloVerdict {
        name,
        threshold,
        measured: format_ms(measured_ms),
        pass,
        why: format!(
            "{what} {label} {} over {} samples ({})",
            format_ms(measured_ms),
            Percentiles::of(histogram).count,
            if pass {
                "within the threshold"
            } else {
                "over the threshold"
            }
        ),
    }
}

fn format_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

/// Pass when every SLO passed.
pub fn verdict(slos: &[SloVerdict]) -> Verdict {
    if slos.iter().all(|slo| slo.pass) {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

/// The verdict once faults were injected: a fault the harness could not undo makes the run
/// `error` whatever else happened; then a failed SLO is the fleet's fault (`fail`); with
/// every SLO met, a fault that was never seen in effect means the run did not test what it
/// planned (`error`, with the faults named), never `pass`.
pub fn verdict_with_faults(
    slos: &[SloVerdict],
    faults: &[crate::chaos::FaultReport],
) -> (Verdict, Option<String>) {
    let not_undone: Vec<String> = faults
        .iter()
        .filter(|fault| fault.clear_failed)
        .map(|fault| format!("{} #{}", fault.name, fault.occurrence))
        .collect();
    if !not_undone.is_empty() {
        return (
            Verdict::Error,
            Some(format!(
                "faults could not be undone (see the journal's fault_clear_failed): {}",
                not_undone.join(", ")
            )),
        );
    }
    let verdict = verdict(slos);
    if verdict == Verdict::Fail {
        return (verdict, None);
    }
    let unconfirmed: Vec<String> = faults
        .iter()
        .filter(|fault| !fault.confirmed)
        .map(|fault| {
            let why = fault.notes.first().map_or("", String::as_str);
            format!("{} #{} ({why})", fault.name, fault.occurrence)
        })
        .collect();
    if unconfirmed.is_empty() {
        (verdict, None)
    } else {
        (
            Verdict::Error,
            Some(format!(
                "faults not in effect, so the fleet was not tested against them: {}",
                unconfirmed.join("; ")
            )),
        )
    }
}

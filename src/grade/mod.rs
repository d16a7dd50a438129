//! The verdict: every SLO of the scenario with its threshold, what was measured, pass or
//! fail, and one line a person understands.

use std::time::Duration;

use serde::Serialize;

use crate::journal::calls::{Percentiles, Totals};

pub use crate::detect;
pub mod during;
pub mod evaluate;
pub mod metric;
pub use crate::detect::plan;
pub mod recovery;
pub mod replay;
pub mod summary;

pub use replay::FaultReport;

pub use evaluate::{evaluate, evaluate_in_progress};
use plan::SloPlan;

/// One SLO's verdict, as `summary.json` `slos[]` carries it.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, PartialEq)]
pub struct SloVerdict {
    pub name: String,
    pub threshold: String,
    pub measured: String,
    /// Passed. False both when it failed and when it could not be measured (`status`
    /// tells which).
    pub pass: bool,
    pub status: SloStatus,
    pub why: String,
}

/// What became of one SLO.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SloStatus {
    Pass,
    /// Measured, and the fleet missed it.
    Fail,
    /// The run could not measure it: never blamed on the fleet (the verdict is `error`
    /// when nothing failed).
    NotMeasured,
}

impl SloVerdict {
    /// A measured SLO: passed or failed.
    pub fn measured(
        name: impl Into<String>,
        threshold: String,
        measured: String,
        pass: bool,
        why: String,
    ) -> Self {
        SloVerdict {
            name: name.into(),
            threshold,
            measured,
            pass,
            status: if pass {
                SloStatus::Pass
            } else {
                SloStatus::Fail
            },
            why,
        }
    }

    /// An SLO the run could not measure, and why.
    pub fn not_measured(name: impl Into<String>, threshold: String, why: String) -> Self {
        SloVerdict {
            name: name.into(),
            threshold,
            measured: "not measured".into(),
            pass: false,
            status: SloStatus::NotMeasured,
            why,
        }
    }

    pub fn failed(&self) -> bool {
        self.status == SloStatus::Fail
    }
}

/// `value` with enough decimals (from `decimals`, at most 6) that it does not print as
/// `threshold` does unless it equals it: a measured 99.695% against `>= 99.7%` must not
/// read "99.70% FAIL". Comparisons are always made on the unrounded value.
pub fn shown(value: f64, threshold: f64, decimals: usize) -> String {
    let mut places = decimals;
    while places < 6
        && value != threshold
        && format!("{value:.places$}") == format!("{threshold:.places$}")
    {
        places += 1;
    }
    format!("{value:.places$}")
}

/// The run's verdict. Names are a public contract (`summary.json` `verdict`).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
            Verdict::Fail => crate::exit::FAILED,
            Verdict::Error | Verdict::Aborted => crate::exit::HARNESS_ERROR,
        }
    }
}

/// Grades the run totals against the scenario's SLOs.
pub fn grade(slos: &SloPlan, totals: &Totals) -> Vec<SloVerdict> {
    let mut verdicts = Vec::new();
    if let Some(min) = slos.call_success_min_pct {
        verdicts.push(call_success(min, totals));
    }
    let latency_slos = [
        (
            "response_p95",
            slos.response_p95_max_s,
            &totals.response,
            0.95,
            "response latency",
        ),
        (
            "response_p99",
            slos.response_p99_max_s,
            &totals.response,
            0.99,
            "response latency",
        ),
        (
            "first_audio_p95",
            slos.first_audio_p95_max_s,
            &totals.first_audio,
            0.95,
            "time to first agent audio",
        ),
        (
            "pacing_jitter_p99",
            slos.pacing_jitter_p99_max_s,
            &totals.pacing,
            0.99,
            "harness send-pacing jitter",
        ),
    ];
    for (name, max, histogram, quantile, what) in latency_slos {
        let Some(max_s) = max else { continue };
        verdicts.push(latency(
            name,
            max_s * 1000.0,
            histogram,
            quantile,
            what,
            totals,
        ));
    }
    verdicts
}

fn call_success(min: f64, totals: &Totals) -> SloVerdict {
    let threshold = format!(">= {min}%");
    let Some(pct) = totals.success_pct() else {
        return SloVerdict::not_measured(
            "call_success",
            threshold,
            if totals.started == 0 {
                "no call was placed, so the success rate could not be measured".into()
            } else {
                format!(
                    "{} calls were placed and none ended before the run did (they were cancelled), so the success rate could not be measured",
                    totals.started
                )
            },
        );
    };
    let pass = pct >= min;
    let completed = totals.count(crate::journal::calls::CallOutcome::Completed);
    let graded = totals.graded();
    let mut failures: Vec<String> = totals
        .outcomes
        .iter()
        .filter(|(outcome, count)| {
            outcome.is_graded()
                && **outcome != crate::journal::calls::CallOutcome::Completed
                && **count > 0
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
    SloVerdict::measured(
        "call_success",
        threshold,
        format!("{}%", shown(pct, min, 2)),
        pass,
        why,
    )
}

fn latency(
    name: &'static str,
    max_ms: f64,
    histogram: &hdrhistogram::Histogram<u64>,
    quantile: f64,
    what: &str,
    totals: &Totals,
) -> SloVerdict {
    let threshold = format!("<= {}", format_ms(max_ms));
    if histogram.is_empty() {
        // Calls that failed without a single answer are the fleet's failure (the success
        // SLO says so); with none failed, there was nothing to time.
        let failed = totals.failed();
        return if failed > 0 && name != "pacing_jitter_p99" {
            SloVerdict::measured(
                name,
                threshold,
                "no answer".into(),
                false,
                format!(
                    "no {what} could be timed: the fleet never answered, and {failed} calls failed"
                ),
            )
        } else {
            SloVerdict::not_measured(name, threshold, format!("no {what} was measured"))
        };
    }
    let measured_ms = histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let pass = measured_ms <= max_ms;
    let label = format!("p{}", (quantile * 100.0).round());
    let measured = format_ms_against(measured_ms, max_ms);
    SloVerdict::measured(
        name,
        threshold,
        measured.clone(),
        pass,
        format!(
            "{what} {label} {measured} over {} samples ({})",
            Percentiles::of(histogram).count,
            if pass {
                "within the threshold"
            } else {
                "over the threshold"
            }
        ),
    )
}

/// A latency as [`format_ms`] writes it, with more decimals where it would otherwise
/// print as its threshold does.
fn format_ms_against(ms: f64, threshold_ms: f64) -> String {
    let plain = format_ms(ms);
    if ms == threshold_ms || plain != format_ms(threshold_ms) {
        return plain;
    }
    if ms >= 10_000.0 {
        format!("{}s", shown(ms / 1000.0, threshold_ms / 1000.0, 1))
    } else {
        format!("{}ms", shown(ms, threshold_ms, 1))
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

/// Pass when every SLO passed; fail when one failed; error when none failed but one could
/// not be measured.
pub fn verdict(slos: &[SloVerdict]) -> Verdict {
    if slos.iter().any(SloVerdict::failed) {
        Verdict::Fail
    } else if slos.iter().all(|slo| slo.pass) {
        Verdict::Pass
    } else {
        Verdict::Error
    }
}

/// The verdict of a run that went to its end, in this order:
/// 1. `error` when the harness itself failed (a task of its own panicked: what it should
///    have seen is missing) or a fault could not be undone;
/// 2. `fail` when an SLO failed (the fleet is at fault), with the failed SLOs named;
/// 3. `error` when an SLO could not be measured, or a fault never took effect (the fleet
///    was not tested against it), never `pass`;
/// 4. `pass`.
pub fn verdict_with_faults(
    slos: &[SloVerdict],
    faults: &[crate::grade::FaultReport],
    harness_errors: &[String],
) -> (Verdict, Option<String>) {
    if !harness_errors.is_empty() {
        return (
            Verdict::Error,
            Some(format!(
                "the harness failed, so the run could not be graded fully: {}",
                harness_errors.join("; ")
            )),
        );
    }
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
    let failed: Vec<&str> = slos
        .iter()
        .filter(|slo| slo.failed())
        .map(|slo| slo.name.as_str())
        .collect();
    if !failed.is_empty() {
        return (
            Verdict::Fail,
            Some(format!("SLOs failed: {}", failed.join(", "))),
        );
    }
    let mut missing: Vec<String> = slos
        .iter()
        .filter(|slo| slo.status == SloStatus::NotMeasured)
        .map(|slo| format!("{} ({})", slo.name, slo.why))
        .collect();
    let unconfirmed: Vec<String> = faults
        .iter()
        .filter(|fault| !fault.confirmed)
        .map(|fault| {
            let why = fault.notes.first().map_or("", String::as_str);
            format!("{} #{} ({why})", fault.name, fault.occurrence)
        })
        .collect();
    if !unconfirmed.is_empty() {
        missing.push(format!(
            "faults not in effect, so the fleet was not tested against them: {}",
            unconfirmed.join("; ")
        ));
    }
    if missing.is_empty() {
        (Verdict::Pass, None)
    } else {
        (
            Verdict::Error,
            Some(format!("not measured: {}", missing.join("; "))),
        )
    }
}

/// Least-squares slope of `(seconds, bytes)` samples in MiB per hour, over the samples from
/// `warm_up_s` on; None with fewer than 3 samples or less than a minute of them.
pub fn growth_mib_per_hour(samples: &[(f64, f64)], warm_up_s: f64) -> Option<f64> {
    growth_per_hour(samples, warm_up_s).map(|slope| slope / (1024.0 * 1024.0))
}

/// Least-squares slope of `(seconds, value)` samples per hour, over the samples from
/// `warm_up_s` on; None with fewer than 3 samples or less than a minute of them.
pub fn growth_per_hour(samples: &[(f64, f64)], warm_up_s: f64) -> Option<f64> {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warm_up_s)
        .collect();
    let (first, last) = (points.first()?.0, points.last()?.0);
    if points.len() < 3 || last - first < 60.0 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    let (covariance, variance) = points.iter().fold((0.0, 0.0), |(c, v), (t, y)| {
        (
            c + (t - mean_t) * (y - mean_y),
            v + (t - mean_t) * (t - mean_t),
        )
    });
    // Unrounded: the SLO compares this; the summary rounds it for people.
    (variance > 0.0).then(|| covariance / variance * 3600.0)
}

/// How long a run warms up before growth counts: a fifth of it, at most 5 minutes.
pub fn warm_up_s(run_s: f64) -> f64 {
    (run_s / 5.0).min(300.0)
}

#[cfg(test)]
mod growth_tests {
    use super::*;

    #[test]
    fn no_call_ended_is_not_measured_never_a_fleet_failure() {
        let slos = SloPlan {
            call_success_min_pct: Some(99.0),
            response_p95_max_s: Some(1.5),
            ..SloPlan::default()
        };
        let verdicts = grade(&slos, &Totals::default());
        assert!(
            verdicts
                .iter()
                .all(|slo| slo.status == SloStatus::NotMeasured),
            "{verdicts:?}"
        );
        assert_eq!(verdict(&verdicts), Verdict::Error);
        // Calls that failed without a single answer: the fleet never answered.
        let mut failed = Totals {
            started: 3,
            ..Totals::default()
        };
        failed
            .outcomes
            .insert(crate::journal::calls::CallOutcome::TurnTimeout, 3);
        let verdicts = grade(&slos, &failed);
        assert!(verdicts.iter().all(SloVerdict::failed), "{verdicts:?}");
        assert_eq!(verdict(&verdicts), Verdict::Fail);
    }

    #[test]
    fn slope_of_a_known_series() {
        // 10 MiB/h = 2912.7 bytes/s, sampled every 10 s for 10 minutes, after a start spike
        // the warm-up leaves out.
        let per_second = 10.0 * 1024.0 * 1024.0 / 3600.0;
        let mut samples: Vec<(f64, f64)> = (0..=60)
            .map(|i| {
                let t = f64::from(i) * 10.0;
                (t, 100e6 + per_second * t)
            })
            .collect();
        samples[0].1 = 900e6;
        let slope = growth_mib_per_hour(&samples, 60.0).unwrap();
        assert!((slope - 10.0).abs() < 1e-9, "{slope}");
        let flat: Vec<(f64, f64)> = (0..30).map(|i| (f64::from(i) * 10.0, 5e6)).collect();
        assert_eq!(growth_mib_per_hour(&flat, 0.0), Some(0.0));
        assert_eq!(
            growth_mib_per_hour(&flat[..2], 0.0),
            None,
            "too few samples"
        );
        assert_eq!(growth_mib_per_hour(&flat[..5], 0.0), None, "under a minute");
        assert_eq!(warm_up_s(180.0), 36.0);
        assert_eq!(warm_up_s(72.0 * 3600.0), 300.0);
    }
}

pub(crate) fn detect_within(within: Duration, faults: &[crate::grade::FaultReport]) -> SloVerdict {
    use replay::DetectionStatus;
    every_fault_within(
        Within {
            name: "detect_within",
            limit: within,
            after: |fault| fault.detected_after_s,
            graded: |fault| match fault.detection {
                Some(DetectionStatus::AlreadySignalling) => Grading::Ungradable(format!(
                    "already signalling at injection ({})",
                    fault.signalling_at_injection.join(", ")
                )),
                Some(DetectionStatus::HarnessAway) => Grading::Ungradable(
                    "the harness died while it was in effect, before any signal of it".into(),
                ),
                // Graded once, as the overlapping fault whose signal it shares.
                Some(DetectionStatus::SharedSignal) => {
                    Grading::Covered("overlapping, shared signal".into())
                }
                _ => Grading::Graded,
            },
            nothing: "no fault was in effect, so there was nothing to detect",
            missing: "undetected",
            late: "not detected in time",
            unmeasurable: "no injection of it had a detection that could be graded",
        },
        faults,
        |count| format!("all {count} faults were detected by the fleet's own signals in time"),
    )
}

/// Whether one confirmed injection counts towards a [`Within`] SLO.
pub(crate) enum Grading {
    Graded,
    /// Left out, because another injection's grade covers it (and why).
    Covered(String),
    /// Left out, because it could not be measured (and why).
    Ungradable(String),
}

/// An SLO that every confirmed fault meets within a limit: time to detect, time to recover.
pub(crate) struct Within {
    pub name: &'static str,
    pub limit: Duration,
    /// The fault's time, None when it never came.
    pub after: fn(&crate::grade::FaultReport) -> Option<f64>,
    /// Whether a confirmed fault is graded, or why not.
    pub graded: fn(&crate::grade::FaultReport) -> Grading,
    /// Why it passes with no fault in effect.
    pub nothing: &'static str,
    /// Measured when a fault never got there.
    pub missing: &'static str,
    /// What comes before the list of faults that were late.
    pub late: &'static str,
    /// Why a fault none of whose injections could be graded leaves the SLO unmeasured.
    pub unmeasurable: &'static str,
}

impl Within {
    /// `; not graded: …` naming the injections in effect that were not graded, and why;
    /// empty when all were.
    fn left_out(&self, confirmed: &[&crate::grade::FaultReport]) -> String {
        let left_out: Vec<String> = confirmed
            .iter()
            .filter_map(|fault| match (self.graded)(fault) {
                Grading::Graded => None,
                Grading::Covered(why) | Grading::Ungradable(why) => {
                    Some(format!("{} #{}: {why}", fault.name, fault.occurrence))
                }
            })
            .collect();
        if left_out.is_empty() {
            String::new()
        } else {
            format!("; not graded: {}", left_out.join(", "))
        }
    }

    /// The faults (by name) with injections in effect, none of which could be graded, nor
    /// covered by another's grade.
    fn ungraded_names<'a>(&self, confirmed: &[&'a crate::grade::FaultReport]) -> Vec<&'a str> {
        let mut ungraded_names: Vec<&str> = Vec::new();
        for fault in confirmed {
            let name = fault.name.as_str();
            let measured = confirmed.iter().any(|other| {
                other.name == name && !matches!((self.graded)(other), Grading::Ungradable(_))
            });
            if !measured && !ungraded_names.contains(&name) {
                ungraded_names.push(name);
            }
        }
        ungraded_names
    }

    /// The graded injections that came too late or never, as `tts_429 #2 after 12.5s`.
    fn late(&self, graded: &[&crate::grade::FaultReport]) -> Vec<String> {
        let limit = self.limit.as_secs_f64();
        let after = self.after;
        graded
            .iter()
            .filter(|fault| after(fault).is_none_or(|after| after > limit))
            .map(|fault| match after(fault) {
                Some(after) => format!(
                    "{} #{} after {}s",
                    fault.name,
                    fault.occurrence,
                    shown(after, limit, 1)
                ),
                None => format!("{} #{} never", fault.name, fault.occurrence),
            })
            .collect()
    }
}

/// Grades `within` over the confirmed faults; `in_time` says why it passed, given their
/// count. Injections that could not be graded are named; a fault none of whose
/// injections could be means the SLO was not measured for it.
pub(crate) fn every_fault_within(
    within: Within,
    faults: &[crate::grade::FaultReport],
    in_time: impl FnOnce(usize) -> String,
) -> SloVerdict {
    let threshold = format!("<= {}", humantime::format_duration(within.limit));
    let limit = within.limit.as_secs_f64();
    let confirmed: Vec<&crate::grade::FaultReport> =
        faults.iter().filter(|fault| fault.confirmed).collect();
    if confirmed.is_empty() {
        return SloVerdict::measured(
            within.name,
            threshold,
            "no fault".into(),
            true,
            within.nothing.into(),
        );
    }
    let graded_of = within.graded;
    let graded: Vec<&crate::grade::FaultReport> = confirmed
        .iter()
        .copied()
        .filter(|fault| matches!(graded_of(fault), Grading::Graded))
        .collect();
    let left_out_text = within.left_out(&confirmed);
    let ungraded_names = within.ungraded_names(&confirmed);
    let after = within.after;
    let late = within.late(&graded);
    if late.is_empty() && !ungraded_names.is_empty() {
        return SloVerdict::not_measured(
            within.name,
            threshold,
            format!(
                "{}: {}{left_out_text}",
                within.unmeasurable,
                ungraded_names.join(", ")
            ),
        );
    }
    let never = graded.iter().any(|fault| after(fault).is_none());
    let slowest = graded
        .iter()
        .filter_map(|fault| after(fault))
        .reduce(f64::max);
    let measured = match (never, slowest) {
        (false, Some(slowest)) => format!("{}s", shown(slowest, limit, 1)),
        _ => within.missing.to_owned(),
    };
    let pass = late.is_empty();
    SloVerdict::measured(
        within.name,
        threshold,
        measured,
        pass,
        if pass {
            format!("{}{left_out_text}", in_time(graded.len()))
        } else {
            format!("{}: {}{left_out_text}", within.late, late.join(", "))
        },
    )
}

/// The retry rule: a storm when most retry chains (of two or more retries of one logical
/// request) are unpaced (a constant interval with no backoff and no jitter, or immediate),
/// or when most logical requests asked to wait by `Retry-After` retried sooner. What counts
/// as a retry, a chain's shape and the `Retry-After` tolerance: the chaos plane's TTS log
/// (chaos/tts_log.rs), which writes the totals this reads.
pub(crate) fn no_retry_storm(
    retries: Option<&crate::journal::retries::RetryTotals>,
    faults: &[crate::grade::FaultReport],
    wall_s: f64,
) -> SloVerdict {
    let threshold = "true".to_owned();
    let Some(totals) = retries else {
        return SloVerdict::not_measured(
            "no_retry_storm",
            threshold,
            "the TTS stand-in did not run, so the fleet's retries could not be seen".into(),
        );
    };
    let faulted_s: f64 = faults
        .iter()
        .filter(|fault| fault.kind.starts_with("tts_"))
        .filter_map(|fault| Some(fault.cleared_at_s? - fault.injected_at_s?))
        .sum();
    let calm_s = (wall_s - faulted_s).max(1.0);
    let rate = |requests: u64, seconds: f64| requests as f64 / seconds.max(1.0);
    let faulted_rate = rate(totals.requests_during_fault, faulted_s);
    let calm_rate = rate(totals.requests_calm, calm_s);
    let chains = &totals.chains;
    let unpaced_storm = chains.unpaced() * 2 > chains.total();
    let ignored_storm = totals.retry_after_ignored * 2 > totals.retry_after_asked;
    let storm = unpaced_storm || ignored_storm;
    let measured = format!("{faulted_rate:.1} req/s in TTS fault windows vs {calm_rate:.1} calm");
    let mut shape = vec![chain_shapes(totals, unpaced_storm)];
    if totals.retry_after_asked > 0 || totals.retry_after_ignored > 0 {
        shape.push(if totals.retry_after_ignored == 0 {
            format!(
                "Retry-After honoured by all {} requests asked to wait",
                totals.retry_after_asked
            )
        } else {
            format!(
                "Retry-After ignored by {} of {} requests asked to wait",
                totals.retry_after_ignored, totals.retry_after_asked
            )
        });
    }
    let why = format!(
        "{}: {measured}; {}",
        if storm { "TTS retry storm" } else { "no storm" },
        shape.join("; ")
    );
    SloVerdict::measured("no_retry_storm", threshold, measured, !storm, why)
}

/// The retry chains in a few words: the unpaced ones first when they make the storm.
fn chain_shapes(totals: &crate::journal::retries::RetryTotals, unpaced_storm: bool) -> String {
    let chains = &totals.chains;
    let total = chains.total();
    if total == 0 {
        return match totals.retries {
            0 => "no retries".to_owned(),
            retries => format!("{retries} retries, no chain of 2 or more to judge by"),
        };
    }
    if unpaced_storm {
        let mut storms = Vec::new();
        if let Some(gap_ms) = totals.constant_gap_ms() {
            storms.push(format!(
                "{} of {total} retry chains at a constant {gap_ms:.0} ms (no backoff, no jitter)",
                chains.constant
            ));
        }
        if chains.immediate > 0 {
            storms.push(format!(
                "{} of {total} retry chains immediate (under 100 ms apart on average)",
                chains.immediate
            ));
        }
        return storms.join("; ");
    }
    let kinds: Vec<String> = [
        (chains.backoff, "backing off"),
        (chains.jittered, "jittered"),
        (chains.retry_after, "paced by Retry-After"),
        (chains.constant, "constant"),
        (chains.immediate, "immediate"),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, kind)| format!("{count} {kind}"))
    .collect();
    format!("{total} retry chains: {}", kinds.join(", "))
}

#[cfg(test)]
mod chaos_slo_tests {
    use super::*;
    use crate::grade::FaultReport;
    use crate::journal::retries::RetryTotals;

    fn tts_fault(detected: Option<f64>) -> FaultReport {
        FaultReport {
            injected_at_s: Some(20.0),
            cleared_at_s: Some(40.0),
            confirmed: true,
            detection: Some(if detected.is_some() {
                replay::DetectionStatus::Detected
            } else {
                replay::DetectionStatus::Undetected
            }),
            detected_after_s: detected,
            ..FaultReport::planned("tts_429", "tts_429".into(), 1, 20.0)
        }
    }

    #[test]
    fn detect_within_fails_on_a_late_or_missing_detection() {
        let within = Duration::from_secs(10);
        let ok = detect_within(within, &[tts_fault(Some(0.3))]);
        assert!(ok.pass, "{ok:?}");
        assert_eq!(ok.measured, "0.3s");
        let late = detect_within(within, &[tts_fault(Some(12.0))]);
        assert!(!late.pass);
        assert!(late.why.contains("tts_429 #1 after 12.0s"), "{late:?}");
        let never = detect_within(within, &[tts_fault(Some(1.0)), tts_fault(None)]);
        assert!(!never.pass);
        assert_eq!(never.measured, "undetected");
    }

    /// The verdict on hand-built request sequences, through the log and its journal
    /// windows as a run would write and read them.
    mod sequences {
        use std::net::SocketAddr;
        use std::time::{Duration, SystemTime};

        use tokio::time::Instant;

        use super::*;
        use crate::chaos::tts_log::TtsLog;
        use crate::standin::tts::{TtsAttempt, TtsEnding, TtsRecord};

        /// `calls` logical requests (ids `CA<n>-1`, 10 s apart), each failing with `status`
        /// (and `Retry-After`) and retried after each of `gaps(call)` ms, the last time
        /// with success; then the totals the journal would give.
        fn run(
            calls: u64,
            status: u16,
            retry_after_s: Option<u64>,
            gaps: impl Fn(u64) -> Vec<u64>,
        ) -> RetryTotals {
            let start = Instant::now();
            let mut log = TtsLog::default();
            let mut sequence = 0;
            let mut send = |log: &mut TtsLog, id: &str, at_ms: u64, status: u16| {
                sequence += 1;
                let attempt = TtsAttempt {
                    record: TtsRecord {
                        at: SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
                        status,
                        request_id: Some(id.to_owned()),
                        input_hash: 7,
                        faulted: status != 200,
                        peer: Some(SocketAddr::from(([127, 0, 0, 1], 40_000))),
                    },
                    sequence,
                    arrived: start + Duration::from_millis(at_ms),
                    fault_on: true,
                };
                log.arrived(&attempt);
                // Answered 5 ms after it came.
                log.ended(
                    &attempt,
                    &TtsEnding {
                        at: start + Duration::from_millis(at_ms + 5),
                        failed: status != 200,
                        retry_after: retry_after_s
                            .filter(|_| status != 200)
                            .map(Duration::from_secs),
                    },
                );
                at_ms + 5
            };
            let mut totals = RetryTotals::default();
            for call in 0..calls {
                let id = format!("CA{call}-1");
                let gaps = gaps(call);
                let mut answered = send(&mut log, &id, call * 10_000, status);
                for (index, gap) in gaps.iter().enumerate() {
                    let last = index + 1 == gaps.len();
                    answered = send(
                        &mut log,
                        &id,
                        answered + gap,
                        if last { 200 } else { status },
                    );
                }
                // A journal window every call, as the log writes one every 5 s.
                if let Some(window) = log.take(start + Duration::from_millis(answered)) {
                    totals.add_window(&window);
                }
            }
            totals
        }

        fn verdict(totals: &RetryTotals) -> SloVerdict {
            let fault = FaultReport {
                injected_at_s: Some(0.0),
                cleared_at_s: Some(60.0),
                confirmed: true,
                ..FaultReport::planned("tts_error", "tts_error".into(), 1, 0.0)
            };
            no_retry_storm(Some(totals), &[fault], 180.0)
        }

        /// A deterministic ±`share` jitter for retry `index` of call `call`.
        fn jitter(call: u64, index: u64, share: f64) -> f64 {
            let spread = ((call * 7 + index * 13) % 11) as f64 / 10.0; // 0..=1
            1.0 - share + 2.0 * share * spread
        }

        #[test]
        fn a_constant_150_ms_loop_is_a_storm() {
            let totals = run(14, 503, None, |call| {
                (0..6).map(|index| 150 + (call + index) % 3).collect()
            });
            let verdict = verdict(&totals);
            assert!(!verdict.pass, "{verdict:?}");
            assert!(verdict.why.starts_with("TTS retry storm"), "{verdict:?}");
            assert!(
                verdict
                    .why
                    .contains("14 of 14 retry chains at a constant 151 ms (no backoff, no jitter)"),
                "{verdict:?}"
            );
        }

        #[test]
        fn an_immediate_loop_is_a_storm() {
            let totals = run(5, 429, None, |_| vec![10; 40]);
            let verdict = verdict(&totals);
            assert!(!verdict.pass, "{verdict:?}");
            assert!(
                verdict.why.contains("5 of 5 retry chains immediate"),
                "{verdict:?}"
            );
        }

        #[test]
        fn exponential_backoff_with_jitter_passes() {
            // 250 ms doubling to 2 s, each ±20%.
            let totals = run(20, 503, None, |call| {
                [250.0, 500.0, 1000.0, 2000.0, 2000.0]
                    .iter()
                    .enumerate()
                    .map(|(index, base)| (base * jitter(call, index as u64, 0.2)) as u64)
                    .collect()
            });
            assert_eq!(totals.chains.total(), 20, "{totals:?}");
            assert_eq!(totals.chains.unpaced(), 0, "{totals:?}");
            let verdict = verdict(&totals);
            assert!(verdict.pass, "{verdict:?}");
            assert!(verdict.why.starts_with("no storm"), "{verdict:?}");
            assert!(verdict.why.contains("20 retry chains:"), "{verdict:?}");
        }

        #[test]
        fn retry_after_honoured_passes_even_at_a_constant_interval() {
            // `Retry-After: 2` as sent, waited exactly: constant, and right.
            let totals = run(10, 429, Some(2), |_| vec![2000, 2000, 2000]);
            assert_eq!(totals.chains.retry_after, 10, "{totals:?}");
            assert_eq!(
                (totals.retry_after_asked, totals.retry_after_ignored),
                (10, 0)
            );
            let verdict = verdict(&totals);
            assert!(verdict.pass, "{verdict:?}");
            assert!(
                verdict
                    .why
                    .contains("Retry-After honoured by all 10 requests asked to wait"),
                "{verdict:?}"
            );
        }

        #[test]
        fn a_retry_half_a_second_after_retry_after_2s_is_ignoring_it() {
            // Backing off nicely, but from 500 ms when the server asked for 2 s.
            let totals = run(6, 429, Some(2), |_| vec![500, 2000, 4000]);
            assert_eq!(
                (totals.retry_after_asked, totals.retry_after_ignored),
                (6, 6)
            );
            let verdict = verdict(&totals);
            assert!(!verdict.pass, "{verdict:?}");
            assert!(
                verdict
                    .why
                    .contains("Retry-After ignored by 6 of 6 requests asked to wait"),
                "{verdict:?}"
            );
        }

        #[test]
        fn retry_after_is_honoured_at_the_time_asked_less_the_tolerance() {
            let tolerance = crate::chaos::tts_log::RETRY_AFTER_TOLERANCE.as_millis() as u64;
            for (gap, honoured) in [
                (2000, true),
                (2000 - tolerance, true),
                (2000 - tolerance - 1, false),
            ] {
                let totals = run(4, 429, Some(2), |_| vec![gap, gap]);
                let verdict = verdict(&totals);
                assert_eq!(verdict.pass, honoured, "gap {gap} ms: {verdict:?}");
            }
        }

        #[test]
        fn single_retries_have_no_shape_and_pass() {
            let totals = run(8, 503, None, |_| vec![10]);
            assert_eq!(totals.retries, 8);
            let verdict = verdict(&totals);
            assert!(verdict.pass, "{verdict:?}");
            assert!(
                verdict.why.contains("8 retries, no chain of 2 or more"),
                "{verdict:?}"
            );
        }
    }

    #[test]
    fn without_the_stand_in_it_is_not_measured_and_without_retries_it_passes() {
        let faults = [tts_fault(Some(0.3))];
        assert!(!no_retry_storm(None, &faults, 180.0).pass);
        let calm = RetryTotals {
            requests_during_fault: 40,
            requests_calm: 160,
            ..RetryTotals::default()
        };
        let verdict = no_retry_storm(Some(&calm), &faults, 180.0);
        assert!(verdict.pass, "{verdict:?}");
        assert_eq!(
            verdict.measured,
            "2.0 req/s in TTS fault windows vs 1.0 calm"
        );
        assert!(verdict.why.ends_with("no retries"), "{verdict:?}");
    }
}

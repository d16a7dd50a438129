//! The verdict: every SLO of the scenario with its threshold, what was measured, pass or
//! fail, and one line a person understands.

use std::time::Duration;

use serde::Serialize;

use crate::load::aggregate::{Percentiles, Totals};

pub mod evaluate;
pub mod live;
pub mod plan;
pub mod recovery;
pub mod replay;

pub use replay::FaultReport;

pub use evaluate::evaluate;
use plan::{FaultPlan, RuleSpec, SloPlan};
use replay::Signal;

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
        let Some(max) = max else { continue };
        verdicts.push(latency(
            name,
            Duration::from_secs_f64(max),
            histogram,
            quantile,
            what,
        ));
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
    faults: &[crate::grade::FaultReport],
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

/// Whether `signal` is the one `rule` names.
pub fn signal_matches(signal: &Signal, rule: &RuleSpec) -> bool {
    match (signal, rule) {
        (Signal::AlertFiring(name), RuleSpec::Alert { alert }) => name == alert,
        (Signal::Unhealthy, RuleSpec::Health { .. }) => true,
        (Signal::ConditionHolds(text), RuleSpec::Metric { metric }) => text == metric,
        (
            Signal::LogMatched {
                pattern,
                file,
                default,
            },
            RuleSpec::Log { log, file: wanted },
        ) => {
            pattern == log
                && match wanted {
                    Some(wanted) => std::path::Path::new(wanted) == file,
                    None => *default,
                }
        }
        _ => false,
    }
}

/// The rule of `rules` by which a signal seen at `t_s` detects an injection whose window
/// is `from_s..until_s` (from the injection to the fault's next one).
pub fn detecting_rule<'a>(
    t_s: f64,
    signal: &Signal,
    rules: &'a [RuleSpec],
    from_s: f64,
    until_s: f64,
) -> Option<&'a RuleSpec> {
    if t_s < from_s || t_s >= until_s {
        return None;
    }
    rules.iter().find(|rule| signal_matches(signal, rule))
}

/// The first signal in `from_s..until_s` that one of `rules` names, and that rule.
pub fn first_match<'a, 's>(
    signals: impl IntoIterator<Item = &'s (f64, Signal)>,
    rules: &'a [RuleSpec],
    from_s: f64,
    until_s: f64,
) -> Option<(f64, &'a RuleSpec)> {
    signals.into_iter().find_map(|(t_s, signal)| {
        detecting_rule(*t_s, signal, rules, from_s, until_s).map(|rule| (*t_s, rule))
    })
}

/// Fills each fault's `detected_after_s` / `detected_by`: the first fleet signal matching
/// one of its `detect` rules at or after its injection and before its next injection.
pub fn detections(
    reports: &mut [crate::grade::FaultReport],
    faults: &[FaultPlan],
    signals: &[(f64, Signal)],
) {
    for index in 0..reports.len() {
        let Some(injected) = reports[index].injected_at_s else {
            continue;
        };
        let Some(fault) = faults
            .iter()
            .find(|fault| fault.name == reports[index].name)
        else {
            continue;
        };
        let next = reports
            .iter()
            .filter(|other| other.name == fault.name)
            .filter_map(|other| other.injected_at_s)
            .filter(|at| *at > injected)
            .fold(f64::INFINITY, f64::min);
        if let Some((t_s, rule)) = first_match(signals, &fault.detect, injected, next) {
            let report = &mut reports[index];
            report.detected_after_s = Some(crate::journal::round_ms(t_s - injected));
            report.detected_by = Some(rule.to_string());
        }
    }
}

#[cfg(test)]
mod detection_tests {
    use super::*;
    use crate::grade::FaultReport;
    use crate::scenario::faults::RecoverFrom;

    fn report(injected: f64, occurrence: u32) -> FaultReport {
        FaultReport {
            injected_at_s: Some(injected),
            cleared_at_s: Some(injected + 30.0),
            confirmed: true,
            confirmed_at_s: Some(injected + 1.0),
            ..FaultReport::planned("tts_429", "tts".into(), occurrence, injected)
        }
    }

    /// A `tts` fault detected by its alert or by health.
    pub(super) fn tts_fault() -> FaultPlan {
        FaultPlan {
            name: "tts".into(),
            kind: "tts_429".into(),
            detect: vec![
                RuleSpec::Alert {
                    alert: "TtsRateLimited".into(),
                },
                RuleSpec::Health {
                    health: "unhealthy".into(),
                },
            ],
            recover_from: RecoverFrom::Clear,
        }
    }

    #[test]
    fn each_injection_is_detected_by_the_first_matching_signal_after_it() {
        let fault = tts_fault();
        let signals = vec![
            // Before the first injection: not a detection.
            (5.0, Signal::AlertFiring("TtsRateLimited".into())),
            (12.5, Signal::AlertFiring("SomethingElse".into())),
            (14.25, Signal::Unhealthy),
            (16.0, Signal::AlertFiring("TtsRateLimited".into())),
        ];
        let mut reports = vec![report(10.0, 1), report(100.0, 2)];
        detections(&mut reports, &[fault], &signals);
        assert_eq!(reports[0].detected_after_s, Some(4.25));
        assert_eq!(reports[0].detected_by.as_deref(), Some("health unhealthy"));
        assert_eq!(
            reports[1].detected_after_s, None,
            "nothing after the second one"
        );
    }

    #[test]
    fn a_log_rule_without_a_file_matches_the_default_log() {
        let rule = RuleSpec::Log {
            log: "stalled".into(),
            file: None,
        };
        let signal = Signal::LogMatched {
            pattern: "stalled".into(),
            file: "/run/fleet.log".into(),
            default: true,
        };
        assert!(signal_matches(&signal, &rule));
        let elsewhere = RuleSpec::Log {
            log: "stalled".into(),
            file: Some("/other.log".into()),
        };
        assert!(!signal_matches(&signal, &elsewhere));
        let named = Signal::LogMatched {
            pattern: "stalled".into(),
            file: "/other.log".into(),
            default: false,
        };
        assert!(signal_matches(&named, &elsewhere));
        assert!(!signal_matches(&named, &rule), "not the default log");
    }
}

/// Least-squares slope of `(seconds, bytes)` samples in MiB per hour, over the samples from
/// `warm_up_s` on; None with fewer than 3 samples or less than a minute of them.
pub fn growth_mib_per_hour(samples: &[(f64, f64)], warm_up_s: f64) -> Option<f64> {
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
    (variance > 0.0).then(|| {
        let bytes_per_second = covariance / variance;
        (bytes_per_second * 3600.0 / (1024.0 * 1024.0) * 100.0).round() / 100.0
    })
}

/// How long a run warms up before growth counts: a fifth of it, at most 5 minutes.
pub fn warm_up_s(run_s: f64) -> f64 {
    (run_s / 5.0).min(300.0)
}

#[cfg(test)]
mod growth_tests {
    use super::*;

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
        assert_eq!(growth_mib_per_hour(&samples, 60.0), Some(10.0));
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
    every_fault_within(
        Within {
            name: "detect_within",
            limit: within,
            after: |fault| fault.detected_after_s,
            nothing: "no fault was in effect, so there was nothing to detect",
            missing: "undetected",
            late: "not detected in time",
        },
        faults,
        |count| format!("all {count} faults were detected by the fleet's own signals in time"),
    )
}

/// An SLO that every confirmed fault meets within a limit: time to detect, time to recover.
pub(crate) struct Within {
    pub name: &'static str,
    pub limit: Duration,
    /// The fault's time, None when it never came.
    pub after: fn(&crate::grade::FaultReport) -> Option<f64>,
    /// Why it passes with no fault in effect.
    pub nothing: &'static str,
    /// Measured when a fault never got there.
    pub missing: &'static str,
    /// What comes before the list of faults that were late.
    pub late: &'static str,
}

/// Grades `within` over the confirmed faults; `in_time` says why it passed, given their
/// count.
pub(crate) fn every_fault_within(
    within: Within,
    faults: &[crate::grade::FaultReport],
    in_time: impl FnOnce(usize) -> String,
) -> SloVerdict {
    let threshold = format!("<= {}", humantime::format_duration(within.limit));
    let limit = within.limit.as_secs_f64();
    let graded: Vec<&crate::grade::FaultReport> =
        faults.iter().filter(|fault| fault.confirmed).collect();
    if graded.is_empty() {
        return SloVerdict {
            name: within.name,
            threshold,
            measured: "no fault".into(),
            pass: true,
            why: within.nothing.into(),
        };
    }
    let after = within.after;
    let late: Vec<String> = graded
        .iter()
        .filter(|fault| after(fault).is_none_or(|after| after > limit))
        .map(|fault| match after(fault) {
            Some(after) => format!("{} #{} after {after:.1}s", fault.name, fault.occurrence),
            None => format!("{} #{} never", fault.name, fault.occurrence),
        })
        .collect();
    let never = graded.iter().any(|fault| after(fault).is_none());
    let slowest = graded
        .iter()
        .filter_map(|fault| after(fault))
        .reduce(f64::max);
    let measured = match (never, slowest) {
        (false, Some(slowest)) => format!("{slowest:.1}s"),
        _ => within.missing.to_owned(),
    };
    SloVerdict {
        name: within.name,
        threshold,
        measured,
        pass: late.is_empty(),
        why: if late.is_empty() {
            in_time(graded.len())
        } else {
            format!("{}: {}", within.late, late.join(", "))
        },
    }
}

/// The retry rule: a storm when most retry chains (of two or more retries of one logical
/// request) are unpaced (a constant interval with no backoff and no jitter, or immediate),
/// or when most logical requests asked to wait by `Retry-After` retried sooner. What counts
/// as a retry, a chain's shape and the `Retry-After` tolerance: [`crate::chaos::tts_log`].
pub(crate) fn no_retry_storm(
    retries: Option<&crate::chaos::tts_log::RetryTotals>,
    faults: &[crate::grade::FaultReport],
    wall_s: f64,
) -> SloVerdict {
    let threshold = "true".to_owned();
    let Some(totals) = retries else {
        return SloVerdict {
            name: "no_retry_storm",
            threshold,
            measured: "not measured".into(),
            pass: false,
            why: "the TTS stand-in did not run, so the fleet's retries could not be seen".into(),
        };
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
    SloVerdict {
        name: "no_retry_storm",
        threshold,
        pass: !storm,
        why: format!(
            "{}: {measured}; {}",
            if storm { "TTS retry storm" } else { "no storm" },
            shape.join("; ")
        ),
        measured,
    }
}

/// The retry chains in a few words: the unpaced ones first when they make the storm.
fn chain_shapes(totals: &crate::chaos::tts_log::RetryTotals, unpaced_storm: bool) -> String {
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
    use crate::chaos::tts_log::RetryTotals;
    use crate::grade::FaultReport;

    fn tts_fault(detected: Option<f64>) -> FaultReport {
        FaultReport {
            injected_at_s: Some(20.0),
            cleared_at_s: Some(40.0),
            confirmed: true,
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

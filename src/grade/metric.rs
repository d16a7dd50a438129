//! `[[slo.metric]]` graded from the journal: the series' samples (one every
//! [`crate::scenario::metric_slo::RECORD_EVERY`] at most, `(t_s, value)` in real time)
//! against each bound the SLO sets. One verdict per SLO: it passes when every bound does,
//! fails when one measured bound fails, and is not measured (never the fleet's failure)
//! when the series never showed or a bound had too few samples to judge.
//!
//! - `max`: the highest sample of the run.
//! - `min`: the lowest sample after the warm-up ([`super::warm_up_s`], as for
//!   memory_growth), or with `during = "spike"` the lowest inside the load's spike stages.
//! - `growth_per_h`: the least-squares slope after the warm-up, per hour of real time
//!   ([`super::growth_per_hour`], as memory_growth's).
//! - `rate_max`: the fastest rise per second over any `window`, between two samples at most
//!   `window` apart; a fall is taken as a counter reset (the fleet restarted), so the rise
//!   after it counts from zero, as Prometheus's `rate()` does.

use super::plan::{MetricSloPlan, window};
use super::{SloStatus, SloVerdict, shown};

/// What one bound came to.
enum Check {
    Measured {
        measured: String,
        pass: bool,
        why: String,
    },
    NotMeasured(String),
}

/// One bound: which, and what it came to.
struct Bound {
    name: &'static str,
    check: Check,
}

/// The run as far as metric SLOs go.
#[derive(Debug, Clone, Copy)]
pub struct MetricRun<'a> {
    /// `metrics` records in the journal: scrapes journaled.
    pub scrapes: u64,
    pub warm_up_s: f64,
    /// The load's spike stages, `[from_s, to_s]`.
    pub spikes_s: &'a [[f64; 2]],
    /// When observation ended.
    pub end_s: f64,
}

/// Grades one metric SLO on its series' samples.
pub fn grade(slo: &MetricSloPlan, samples: &[(f64, f64)], run: MetricRun<'_>) -> SloVerdict {
    let threshold = slo.threshold();
    let mut samples = samples.to_vec();
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    if samples.is_empty() {
        let why = if run.scrapes == 0 {
            format!(
                "no scrape of the fleet's /metrics was journaled, so {} could not be read",
                slo.series
            )
        } else {
            format!(
                "{} was in none of the {} scrapes of the fleet's /metrics journaled: the fleet does not expose it (check its name and labels)",
                slo.series, run.scrapes
            )
        };
        return SloVerdict::not_measured(slo.name.clone(), threshold, why);
    }
    let bounds = bounds(slo, &samples, run);
    combine(slo, threshold, bounds, samples.len())
}

/// Every bound the SLO sets, checked, in file-format order.
fn bounds(slo: &MetricSloPlan, samples: &[(f64, f64)], run: MetricRun<'_>) -> Vec<Bound> {
    let mut bounds = Vec::new();
    if let Some(max) = slo.max {
        bounds.push(Bound {
            name: "max",
            check: most(samples, max),
        });
    }
    if let Some(min) = slo.min {
        let check = if slo.min_during_spikes {
            least_in_spikes(samples, min, run)
        } else {
            least_after_warm_up(samples, min, run)
        };
        bounds.push(Bound { name: "min", check });
    }
    if let Some(max) = slo.growth_per_h {
        bounds.push(Bound {
            name: "growth",
            check: growth(samples, max, run.warm_up_s),
        });
    }
    if let Some(max) = slo.rate_max {
        bounds.push(Bound {
            name: "rate",
            check: rate(samples, max, slo.window_s),
        });
    }
    bounds
}

/// One verdict from the bounds: a measured failure fails it, else a bound not measured
/// leaves it not measured, else it passes.
fn combine(slo: &MetricSloPlan, threshold: String, bounds: Vec<Bound>, count: usize) -> SloVerdict {
    let mut measured = Vec::new();
    let mut whys = Vec::new();
    let (mut failed, mut unmeasured) = (false, false);
    for bound in bounds {
        match bound.check {
            Check::Measured {
                measured: value,
                pass,
                why,
            } => {
                failed |= !pass;
                measured.push(value);
                whys.push(why);
            }
            Check::NotMeasured(why) => {
                unmeasured = true;
                measured.push(format!("{} not measured", bound.name));
                whys.push(why);
            }
        }
    }
    let status = if failed {
        SloStatus::Fail
    } else if unmeasured {
        SloStatus::NotMeasured
    } else {
        SloStatus::Pass
    };
    SloVerdict {
        name: slo.name.clone(),
        threshold,
        measured: measured.join(", "),
        pass: status == SloStatus::Pass,
        status,
        why: format!("{} ({count} samples): {}", slo.series, whys.join("; ")),
    }
}

fn most(samples: &[(f64, f64)], max: f64) -> Check {
    let (at, peak) = samples
        .iter()
        .copied()
        .fold((0.0, f64::NEG_INFINITY), |best, sample| {
            if sample.1 > best.1 { sample } else { best }
        });
    let pass = peak <= max;
    let value = against(peak, max);
    Check::Measured {
        measured: format!("max {value}"),
        pass,
        why: if pass {
            format!("peaked at {value} at {at:.1}s")
        } else {
            format!("peaked at {value} at {at:.1}s, over the {max} allowed")
        },
    }
}

/// The lowest of `samples` against `min`, `where` saying which samples they were.
fn least(samples: &[(f64, f64)], min: f64, place: &str) -> Check {
    let (at, low) = samples
        .iter()
        .copied()
        .fold((0.0, f64::INFINITY), |best, sample| {
            if sample.1 < best.1 { sample } else { best }
        });
    let pass = low >= min;
    let value = against(low, min);
    Check::Measured {
        measured: format!("min {value}"),
        pass,
        why: if pass {
            format!("never under {value} {place} (lowest at {at:.1}s)")
        } else {
            format!("fell to {value} at {at:.1}s {place}, under the {min} required")
        },
    }
}

fn least_after_warm_up(samples: &[(f64, f64)], min: f64, run: MetricRun<'_>) -> Check {
    let after: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= run.warm_up_s)
        .collect();
    if after.is_empty() {
        return Check::NotMeasured(format!(
            "no sample after the {:.0}s warm-up to hold min to",
            run.warm_up_s
        ));
    }
    least(
        &after,
        min,
        &format!("after the {:.0}s warm-up", run.warm_up_s),
    )
}

fn least_in_spikes(samples: &[(f64, f64)], min: f64, run: MetricRun<'_>) -> Check {
    let spikes: Vec<[f64; 2]> = run
        .spikes_s
        .iter()
        .filter(|[from, _]| *from < run.end_s)
        .map(|[from, to]| [*from, to.min(run.end_s)])
        .collect();
    if spikes.is_empty() {
        return Check::NotMeasured(
            "no spike stage of the load ran before the run ended, so min during spikes could not be measured".into(),
        );
    }
    let inside: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| spikes.iter().any(|[from, to]| t >= from && t <= to))
        .collect();
    if inside.is_empty() {
        return Check::NotMeasured(format!(
            "no sample of the series fell inside the {} spike stages that ran",
            spikes.len()
        ));
    }
    least(
        &inside,
        min,
        &format!("during the {} spike stages", spikes.len()),
    )
}

fn growth(samples: &[(f64, f64)], max: f64, warm_up_s: f64) -> Check {
    let Some(slope) = super::growth_per_hour(samples, warm_up_s) else {
        return Check::NotMeasured(format!(
            "{} samples after the {warm_up_s:.0}s warm-up: a slope needs 3 or more over a minute",
            samples.iter().filter(|(t, _)| *t >= warm_up_s).count()
        ));
    };
    let pass = slope <= max;
    let value = against(slope, max);
    Check::Measured {
        measured: format!("growth {value}/h"),
        pass,
        why: format!(
            "grew {value} an hour (least squares after the {warm_up_s:.0}s warm-up){}",
            if pass { "" } else { ", faster than allowed" }
        ),
    }
}

/// The fastest rise per second between two samples at most `window_s` apart (`samples`
/// sorted by time), with when it ended; None without two such samples.
pub fn fastest_rise(samples: &[(f64, f64)], window_s: f64) -> Option<(f64, f64)> {
    // rises[k]: how much the series rose from the first sample to sample k, a fall being
    // a counter reset (the rise after it counts from zero).
    let mut rises = Vec::with_capacity(samples.len());
    let mut total = 0.0;
    for (index, (_, value)) in samples.iter().enumerate() {
        if index > 0 {
            let before = samples[index - 1].1;
            total += if *value >= before {
                value - before
            } else {
                *value
            };
        }
        rises.push(total);
    }
    let mut fastest: Option<(f64, f64)> = None;
    let mut first = 0;
    for (index, (t, _)) in samples.iter().enumerate() {
        while t - samples[first].0 > window_s {
            first += 1;
        }
        let span = t - samples[first].0;
        if first < index && span > 0.0 {
            let rate = (rises[index] - rises[first]) / span;
            if fastest.is_none_or(|(best, _)| rate > best) {
                fastest = Some((rate, *t));
            }
        }
    }
    fastest
}

fn rate(samples: &[(f64, f64)], max: f64, window_s: f64) -> Check {
    let Some((rate, at)) = fastest_rise(samples, window_s) else {
        return Check::NotMeasured(format!(
            "no two samples of the series within {} of each other, so no rate could be taken",
            window(window_s)
        ));
    };
    let pass = rate <= max;
    let value = against(rate, max);
    Check::Measured {
        measured: format!("rate {value}/s"),
        pass,
        why: format!(
            "rose at most {value}/s over {} (up to {at:.1}s){}",
            window(window_s),
            if pass { "" } else { ", faster than allowed" }
        ),
    }
}

/// `value` as a report shows it beside `bound`: whole numbers without decimals, others
/// with two, more where it would otherwise print as the bound does.
fn against(value: f64, bound: f64) -> String {
    let decimals = if value.fract() == 0.0 { 0 } else { 2 };
    shown(value, bound, decimals)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::grade::{SloStatus, SloVerdict, Verdict, evaluate, replay};

    /// A 600 s run: `slos` graded, the spike stage 200-300 s, a `metrics` record every
    /// 10 s from 5 s holding what `values` gives at that time.
    fn journal(slos: Value, values: impl Fn(f64) -> Value) -> Vec<Value> {
        let mut records = vec![json!({
            "event": "run_started", "t_s": 0.0, "at": "2026-11-23T10:00:00.000Z",
            "run_id": "metric-1", "scenario": "metric", "target": "embedded", "planned_s": 600.0,
            "grading": {
                "slo": {"call_success_min_pct": null, "response_p95_max_s": null,
                    "response_p99_max_s": null, "first_audio_p95_max_s": null,
                    "pacing_jitter_p99_max_s": null, "detect_within_s": null,
                    "no_retry_storm": false, "recover_within_s": null,
                    "stable_window_s": 20.0, "uptime_min_pct": null,
                    "memory_growth_max_mib_h": null, "temp_dir_growth_max_mib_h": null,
                    "max_crashes": null, "metrics": slos, "spikes_s": [[200.0, 300.0]]},
                "faults": []}
        })];
        for i in 0..60 {
            let t = f64::from(i) * 10.0 + 5.0;
            records.push(json!({"event": "metrics", "t_s": t, "seen_s": t, "values": values(t)}));
        }
        records.push(json!({"event": "run_ended", "t_s": 600.0, "at": "2026-11-23T10:10:00.000Z", "stopped": null}));
        records
    }

    fn slo(name: &str, series: &str, bounds: Value) -> Value {
        let mut slo = json!({"name": name, "series": series, "max": null, "min": null,
            "growth_per_h": null, "rate_max": null, "window_s": 60.0});
        for (key, value) in bounds.as_object().unwrap() {
            slo[key] = value.clone();
        }
        slo
    }

    fn graded(records: &[Value]) -> crate::grade::summary::Summary {
        let text: String = records.iter().map(|record| format!("{record}\n")).collect();
        let run = replay::read_from(text.as_bytes(), std::path::Path::new("journal.jsonl"))
            .expect("a journal in memory reads");
        evaluate(&run)
    }

    fn verdict<'a>(summary: &'a crate::grade::summary::Summary, name: &str) -> &'a SloVerdict {
        summary
            .slos
            .iter()
            .find(|slo| slo.name == name)
            .unwrap_or_else(|| panic!("no SLO {name}: {:#?}", summary.slos))
    }

    /// dead_letters: 0 until 100 s, then one more every 10 s (an hour's slope of 360) up to
    /// 37 at 465 s, back to 30 after; workers: 0 in the warm-up, 4 after, 8 in the spike, 1
    /// at 505 s; calls_total rising 1/s, reset to 0 by a restart at 400 s.
    fn series(t: f64) -> Value {
        let dead = if t < 100.0 {
            0.0
        } else if t <= 465.0 {
            ((t - 95.0) / 10.0).floor()
        } else {
            30.0
        };
        let workers = match t {
            t if t < 100.0 => 0.0,
            t if (200.0..=300.0).contains(&t) => 8.0,
            505.0 => 1.0,
            _ => 4.0,
        };
        let calls = if t < 400.0 { t } else { t - 400.0 };
        json!({"dead_letters": dead, "workers": workers, "calls_total": calls, "absent": null})
    }

    #[test]
    fn max_is_the_highest_sample_of_the_run() {
        let summary = graded(&journal(
            json!([
                slo("roomy", "dead_letters", json!({"max": 100})),
                slo("tight", "dead_letters", json!({"max": 30})),
            ]),
            series,
        ));
        let roomy = verdict(&summary, "roomy");
        assert_eq!(roomy.status, SloStatus::Pass, "{roomy:?}");
        assert_eq!(
            (roomy.threshold.as_str(), roomy.measured.as_str()),
            ("max <= 100", "max 37")
        );
        assert_eq!(
            roomy.why,
            "dead_letters (60 samples): peaked at 37 at 465.0s"
        );
        let tight = verdict(&summary, "tight");
        assert_eq!(tight.status, SloStatus::Fail);
        assert_eq!(
            tight.why,
            "dead_letters (60 samples): peaked at 37 at 465.0s, over the 30 allowed"
        );
        assert_eq!(summary.verdict, Verdict::Fail);
        assert_eq!(summary.reason.as_deref(), Some("SLOs failed: tight"));
    }

    #[test]
    fn min_leaves_out_the_warm_up_or_looks_only_at_the_spikes() {
        let summary = graded(&journal(
            json!([
                slo("after-warm-up", "workers", json!({"min": 1})),
                slo("always-two", "workers", json!({"min": 2})),
                slo(
                    "scaled-out",
                    "workers",
                    json!({"min": 6, "min_during_spikes": true})
                ),
                slo(
                    "scaled-far",
                    "workers",
                    json!({"min": 9, "min_during_spikes": true})
                ),
            ]),
            series,
        ));
        // The warm-up (a fifth of 600 s) leaves out the zeros before 100 s.
        let after = verdict(&summary, "after-warm-up");
        assert_eq!(after.status, SloStatus::Pass, "{after:?}");
        assert_eq!(after.measured, "min 1");
        let two = verdict(&summary, "always-two");
        assert_eq!(two.status, SloStatus::Fail);
        assert!(
            two.why
                .ends_with("fell to 1 at 505.0s after the 120s warm-up, under the 2 required"),
            "{two:?}"
        );
        let scaled = verdict(&summary, "scaled-out");
        assert_eq!(scaled.status, SloStatus::Pass, "{scaled:?}");
        assert_eq!(scaled.threshold, "min >= 6 during spikes");
        assert_eq!(scaled.measured, "min 8");
        assert!(
            scaled.why.contains("during the 1 spike stages"),
            "{scaled:?}"
        );
        assert_eq!(verdict(&summary, "scaled-far").status, SloStatus::Fail);
    }

    #[test]
    fn growth_is_the_least_squares_slope_per_hour_after_the_warm_up() {
        let summary = graded(&journal(
            json!([
                slo("slow", "dead_letters", json!({"growth_per_h": 500})),
                slo("leaking", "dead_letters", json!({"growth_per_h": 50})),
            ]),
            series,
        ));
        let slow = verdict(&summary, "slow");
        assert_eq!(slow.status, SloStatus::Pass, "{slow:?}");
        let rate: f64 = slow
            .measured
            .trim_start_matches("growth ")
            .trim_end_matches("/h")
            .parse()
            .unwrap();
        // One letter every 10 s to 465 s, then a fall: well under 360 an hour, over 50.
        assert!((50.0..360.0).contains(&rate), "{slow:?}");
        let leaking = verdict(&summary, "leaking");
        assert_eq!(leaking.status, SloStatus::Fail);
        assert!(leaking.why.contains("faster than allowed"), "{leaking:?}");
    }

    #[test]
    fn rate_is_the_fastest_rise_over_the_window_and_survives_a_counter_reset() {
        let summary = graded(&journal(
            json!([
                slo("calm", "calls_total", json!({"rate_max": 1.5})),
                slo(
                    "strict",
                    "calls_total",
                    json!({"rate_max": 0.5, "window_s": 30.0})
                ),
            ]),
            series,
        ));
        let calm = verdict(&summary, "calm");
        assert_eq!(calm.status, SloStatus::Pass, "{calm:?}");
        // 1/s throughout: the reset at 400 s (395 → 5) counts 5, not -390 or 395.
        assert_eq!(calm.measured, "rate 1/s");
        assert_eq!(calm.threshold, "rate <= 1.5/s over 1m");
        let strict = verdict(&summary, "strict");
        assert_eq!(strict.status, SloStatus::Fail);
        assert!(strict.why.contains("over 30s"), "{strict:?}");
        assert_eq!(
            super::fastest_rise(&[(0.0, 5.0), (10.0, 25.0), (100.0, 30.0)], 60.0),
            Some((2.0, 10.0)),
            "samples further apart than the window are never paired"
        );
        assert_eq!(super::fastest_rise(&[(0.0, 1.0)], 60.0), None);
    }

    #[test]
    fn a_series_never_seen_is_not_measured_and_the_run_an_error_not_a_fail() {
        let summary = graded(&journal(
            json!([
                slo("missing", "absent", json!({"max": 1})),
                slo("fine", "dead_letters", json!({"max": 100})),
            ]),
            series,
        ));
        let missing = verdict(&summary, "missing");
        assert_eq!(missing.status, SloStatus::NotMeasured);
        assert_eq!(missing.measured, "not measured");
        assert_eq!(
            missing.why,
            "absent was in none of the 60 scrapes of the fleet's /metrics journaled: the fleet does not expose it (check its name and labels)"
        );
        assert_eq!(summary.verdict, Verdict::Error);
        assert!(
            summary
                .reason
                .as_deref()
                .is_some_and(|reason| reason.starts_with("not measured: missing (absent was")),
            "{:?}",
            summary.reason
        );

        // No scrape journaled at all.
        let mut records = journal(
            json!([slo("dlq", "dead_letters", json!({"max": 1}))]),
            series,
        );
        records.retain(|record| record["event"] != "metrics");
        let summary = graded(&records);
        assert_eq!(
            verdict(&summary, "dlq").why,
            "no scrape of the fleet's /metrics was journaled, so dead_letters could not be read"
        );
    }

    #[test]
    fn a_bound_without_enough_samples_is_not_measured_but_a_failed_one_still_fails() {
        // The spike never ran (it was planned after the end), and the series was seen
        // only in the first 50 s.
        let mut records = journal(
            json!([
                slo(
                    "short",
                    "dead_letters",
                    json!({"growth_per_h": 10, "max": 100})
                ),
                slo(
                    "spiky",
                    "workers",
                    json!({"min": 1, "min_during_spikes": true, "max": -1})
                ),
            ]),
            |t| if t < 50.0 { series(t) } else { json!({}) },
        );
        records[0]["grading"]["slo"]["spikes_s"] = json!([[900.0, 1000.0]]);
        let summary = graded(&records);
        let short = verdict(&summary, "short");
        assert_eq!(short.status, SloStatus::NotMeasured, "{short:?}");
        assert_eq!(short.measured, "max 0, growth not measured");
        assert!(
            short.why.contains(
                "0 samples after the 120s warm-up: a slope needs 3 or more over a minute"
            ),
            "{short:?}"
        );
        let spiky = verdict(&summary, "spiky");
        assert_eq!(spiky.status, SloStatus::Fail, "max -1 failed: {spiky:?}");
        assert!(
            spiky
                .why
                .contains("no spike stage of the load ran before the run ended"),
            "{spiky:?}"
        );
    }

    #[test]
    fn a_plan_edited_into_nonsense_is_dropped_with_a_problem_never_a_panic() {
        let mut records = journal(
            json!([
                slo("call_success", "dead_letters", json!({"max": 1})),
                slo("bad name!", "dead_letters", json!({"max": 1})),
                slo("unbounded", "dead_letters", json!({})),
                slo(
                    "odd-window",
                    "calls_total",
                    json!({"rate_max": 2, "window_s": -5.0})
                ),
            ]),
            series,
        );
        records[0]["grading"]["slo"]["spikes_s"] = json!([[300.0, 200.0], [1.0, 2.0]]);
        let summary = graded(&records);
        let names: Vec<&str> = summary.slos.iter().map(|slo| slo.name.as_str()).collect();
        assert_eq!(names, ["odd-window"]);
        assert_eq!(
            verdict(&summary, "odd-window").threshold,
            "rate <= 2/s over 1m"
        );
        assert_eq!(
            summary.journal.problems.len(),
            5,
            "{:#?}",
            summary.journal.problems
        );
    }
}

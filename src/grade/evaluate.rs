//! The whole verdict from a journal read back ([`RunRecord`]): every fault's detection,
//! recovery and impact, the run-wide SLIs, every SLO with its reason, and the summary.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::plan::{GradePlan, SloPlan};
use super::recovery::{self, Span, Uptime};
use super::replay::RunRecord;
use super::{SloVerdict, Verdict};
use crate::grade::FaultReport;
use crate::report::{FaultStats, FleetBlock, JournalBlock, RunFacts, Summary};
use crate::scenario::faults::RecoverFrom;

/// Grades a run from its journal.
pub fn evaluate(run: &RunRecord) -> Summary {
    let plan = run.plan.clone().unwrap_or(GradePlan {
        slo: SloPlan::default(),
        faults: Vec::new(),
    });
    let end = run.end_s();
    let mut faults = run.faults.clone();
    super::detections(&mut faults, &plan.faults, &run.signals);
    let windows = fault_windows(&faults, end);
    let troubles = recovery::trouble_spans(run, &plan.slo);
    let calm = response_outside(run, &windows);
    let injections: Vec<f64> = faults.iter().filter_map(|f| f.injected_at_s).collect();
    for report in &mut faults {
        let from = plan
            .faults
            .iter()
            .find(|fault| fault.name == report.name)
            .map_or(RecoverFrom::Clear, |fault| fault.recover_from);
        recover_and_impact(report, from, run, &plan.slo, &troubles, calm, &injections);
    }
    // Uptime is the downtime nobody injected: each fault's window runs until the fleet
    // recovered from it (recover_within grades that part), or until its clear plus the
    // recover_within allowance when it never did.
    let recovering: Vec<Span> = faults
        .iter()
        .filter_map(|fault| {
            let from = fault.injected_at_s?;
            let cleared = fault.cleared_at_s.unwrap_or(end);
            let recovered = match (fault.recovered_after_s, fault.recover_from) {
                (Some(after), Some(RecoverFrom::Injection)) => from + after,
                (Some(after), _) => cleared + after,
                (None, _) => cleared + plan.slo.recover_within_s.unwrap_or(0.0),
            };
            Some(Span {
                from,
                to: recovered.max(cleared).min(end),
            })
        })
        .collect();
    let uptime = recovery::uptime(&run.health, end, &recovering);

    let mut slos = super::grade(&plan.slo, &run.totals);
    if let Some(within) = plan.slo.detect_within_s {
        slos.push(super::detect_within(
            Duration::from_secs_f64(within),
            &faults,
        ));
    }
    if let Some(within) = plan.slo.recover_within_s {
        slos.push(recover_within(within, plan.slo.stable_window_s, &faults));
    }
    if plan.slo.no_retry_storm {
        slos.push(super::no_retry_storm(run.retries.as_ref(), &faults, end));
    }
    if let Some(min) = plan.slo.uptime_min_pct {
        slos.push(uptime_slo(min, uptime.as_ref()));
    }
    let warm_up = super::warm_up_s(end);
    let rss_growth = super::growth_mib_per_hour(&run.rss, warm_up);
    let temp_growth = super::growth_mib_per_hour(&run.temp_dir, warm_up);
    if let Some(max) = plan.slo.memory_growth_max_mib_h {
        slos.push(growth_slo(
            "memory_growth",
            "fleet RSS",
            max,
            rss_growth,
            &run.rss,
            warm_up,
        ));
    }
    if let Some(max) = plan.slo.temp_dir_growth_max_mib_h {
        slos.push(growth_slo(
            "temp_dir_growth",
            "fleet temp dir",
            max,
            temp_growth,
            &run.temp_dir,
            warm_up,
        ));
    }
    if let Some(max) = plan.slo.max_crashes {
        slos.push(crashes_slo(max, run));
    }
    if plan.slo.no_unprovoked_alerts {
        slos.push(unprovoked_alerts(run, &windows, plan.slo.stable_window_s));
    }

    let (verdict, reason) = match &run.ended {
        None => (
            Verdict::Aborted,
            Some(format!(
                "the journal ends at {:.1}s without run_ended: the harness was killed before the run finished (graded from what was journaled)",
                run.last_t_s
            )),
        ),
        Some(ended) if ended.stopped.is_some() => (Verdict::Aborted, ended.stopped.clone()),
        Some(_) => super::verdict_with_faults(&slos, &faults),
    };
    let mib = crate::units::mib;
    let crashes = run.exits.iter().filter(|exit| !exit.by_harness).count() as u64;
    let fleet = FleetBlock {
        rss_mib_max: run.rss_max_bytes.map(mib),
        rss_growth_mib_per_h: rss_growth,
        restarts: run.fleet_spawned.then_some(run.restarts),
        crashes: run.fleet_spawned.then_some(crashes),
        exits: run
            .exits
            .iter()
            .map(|exit| {
                format!(
                    "{:.1}s: {}{}",
                    exit.t_s,
                    exit.status,
                    if exit.by_harness {
                        " (by the harness)"
                    } else {
                        ""
                    }
                )
            })
            .collect(),
        temp_dir_mib_max: run
            .temp_dir
            .iter()
            .map(|(_, bytes)| mib(*bytes))
            .reduce(f64::max),
        temp_dir_growth_mib_per_h: temp_growth,
    };
    let fault_stats = fault_stats(&faults);
    let mut summary = Summary::new(
        RunFacts {
            run_id: run.run_id.clone(),
            scenario: run.scenario.clone(),
            scenario_path: run.scenario_path.clone(),
            seed: run.seed,
            target: run.target.clone(),
            started_at: run.started_at.clone(),
            ended_at: run
                .ended
                .as_ref()
                .map_or(run.last_at.clone(), |ended| ended.at.clone()),
            wall_s: end,
        },
        &run.totals,
        &run.failure_examples,
        run.harness,
        slos,
        faults,
        verdict,
        reason,
    );
    summary.fleet = fleet;
    summary.uptime = uptime;
    summary.fault_stats = fault_stats;
    summary.journal = JournalBlock {
        records: run.records,
        cut_short: run.cut_short,
        problems: run.problems.clone(),
    };
    summary
}

/// Each injected fault's window, from injection to clear (or to the end, never cleared).
fn fault_windows(faults: &[FaultReport], end: f64) -> Vec<Span> {
    faults
        .iter()
        .filter_map(|fault| {
            let from = fault.injected_at_s?;
            Some(Span {
                from,
                to: fault.cleared_at_s.unwrap_or(end).max(from),
            })
        })
        .collect()
}

fn merged_response(run: &RunRecord, keep: impl Fn(&Span) -> bool) -> Option<Histogram<u64>> {
    let mut merged: Option<Histogram<u64>> = None;
    for interval in &run.intervals {
        let span = Span {
            from: interval.from_s,
            to: interval.to_s,
        };
        if !keep(&span) {
            continue;
        }
        let Some(histogram) = interval
            .response
            .as_deref()
            .and_then(|text| crate::journal::histogram::decode(text).ok())
        else {
            continue;
        };
        match merged.as_mut() {
            Some(merged) => {
                let _ = merged.add(&histogram);
            }
            None => merged = Some(histogram),
        }
    }
    merged
}

fn p95_ms(histogram: Option<Histogram<u64>>) -> Option<f64> {
    histogram
        .filter(|histogram| !histogram.is_empty())
        .map(|histogram| (histogram.value_at_quantile(0.95) as f64 / 1000.0).round())
}

fn overlaps(a: &Span, b: &Span) -> bool {
    a.from < b.to && b.from < a.to
}

/// The response p95 over the intervals that overlap no fault window.
fn response_outside(run: &RunRecord, windows: &[Span]) -> Option<f64> {
    p95_ms(merged_response(run, |span| {
        !windows.iter().any(|window| overlaps(span, window))
    }))
}

fn recover_and_impact(
    report: &mut FaultReport,
    from: RecoverFrom,
    run: &RunRecord,
    slo: &SloPlan,
    troubles: &[Span],
    calm_p95_ms: Option<f64>,
    injections: &[f64],
) {
    let Some(injected) = report.injected_at_s else {
        return;
    };
    let end = run.end_s();
    let window = Span {
        from: injected,
        to: report.cleared_at_s.unwrap_or(end).max(injected),
    };
    report.recover_from = Some(from);
    report.calls_failed_during = Some(
        run.intervals
            .iter()
            .filter(|interval| {
                overlaps(
                    &Span {
                        from: interval.from_s,
                        to: interval.to_s,
                    },
                    &window,
                )
            })
            .map(|interval| interval.failed)
            .sum(),
    );
    report.response_p95_during_ms = p95_ms(merged_response(run, |span| overlaps(span, &window)));
    report.response_p95_calm_ms = calm_p95_ms;
    if !report.confirmed {
        return;
    }
    let start = match from {
        RecoverFrom::Clear => report.cleared_at_s,
        RecoverFrom::Injection => Some(injected),
    };
    let Some(start) = start else {
        report
            .notes
            .push("never cleared, so recovery could not be measured".into());
        return;
    };
    let next = injections
        .iter()
        .copied()
        .filter(|at| *at > injected)
        .fold(f64::INFINITY, f64::min);
    report.recovered_after_s =
        recovery::time_to_recover(troubles, start, slo.stable_window_s, next, end);
    if report.recovered_after_s.is_none() {
        report.notes.push(format!(
            "not recovered: the steady state did not hold for {}s between the {} at {start:.1}s and the end at {end:.1}s",
            slo.stable_window_s,
            from.name()
        ));
    }
}

/// MTTD/MTTR over each fault's repeated injections.
fn fault_stats(faults: &[FaultReport]) -> Vec<FaultStats> {
    let mut names: Vec<&str> = Vec::new();
    for fault in faults {
        if !names.contains(&fault.name.as_str()) {
            names.push(&fault.name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let of: Vec<&FaultReport> = faults.iter().filter(|f| f.name == name).collect();
            let confirmed: Vec<&&FaultReport> = of.iter().filter(|f| f.confirmed).collect();
            let detect: Vec<f64> = confirmed
                .iter()
                .filter_map(|f| f.detected_after_s)
                .collect();
            let recover: Vec<f64> = confirmed
                .iter()
                .filter_map(|f| f.recovered_after_s)
                .collect();
            FaultStats {
                name: name.to_owned(),
                kind: of[0].kind.to_owned(),
                injected: of.iter().filter(|f| f.injected_at_s.is_some()).count(),
                confirmed: confirmed.len(),
                detected: detect.len(),
                recovered: recover.len(),
                time_to_detect_s: recovery::spread(&detect),
                time_to_recover_s: recovery::spread(&recover),
                calls_failed: of.iter().filter_map(|f| f.calls_failed_during).sum(),
            }
        })
        .collect()
}

fn recover_within(within_s: f64, window_s: f64, faults: &[FaultReport]) -> SloVerdict {
    super::every_fault_within(
        super::Within {
            name: "recover_within",
            limit: Duration::from_secs_f64(within_s),
            after: |fault| fault.recovered_after_s,
            nothing: "no fault was in effect, so there was nothing to recover from",
            missing: "not recovered",
            late: "not back in steady state in time",
        },
        faults,
        |count| {
            format!(
                "the fleet was back in steady state (health, call success, latency held for {window_s}s) after every one of {count} faults in time"
            )
        },
    )
}

fn uptime_slo(min: f64, uptime: Option<&Uptime>) -> SloVerdict {
    let threshold = format!(">= {min}%");
    let Some(uptime) = uptime else {
        return SloVerdict {
            name: "uptime",
            threshold,
            measured: "not measured".into(),
            pass: false,
            why: "no health probe answered or failed, so uptime could not be measured (set [observe] health_url)".into(),
        };
    };
    let pass = uptime.pct >= min;
    SloVerdict {
        name: "uptime",
        threshold,
        measured: format!("{:.2}%", uptime.pct),
        pass,
        why: if uptime.outages == 0 {
            format!(
                "healthy for all {:.0}s probed outside faults and their recovery ({:.0}s of faults and recovery left out)",
                uptime.probed_s, uptime.excluded_s
            )
        } else {
            format!(
                "unhealthy {:.1}s of {:.0}s probed outside faults and their recovery, in {} outages (longest {:.1}s); {:.0}s of faults and recovery left out",
                uptime.down_s,
                uptime.probed_s,
                uptime.outages,
                uptime.longest_outage_s,
                uptime.excluded_s
            )
        },
    }
}

fn growth_slo(
    name: &'static str,
    what: &str,
    max: f64,
    measured: Option<f64>,
    samples: &[(f64, f64)],
    warm_up: f64,
) -> SloVerdict {
    let threshold = format!("<= {max}MiB/h");
    let Some(slope) = measured else {
        return SloVerdict {
            name,
            threshold,
            measured: "not measured".into(),
            pass: false,
            why: format!(
                "{} {what} samples, {} after the {warm_up:.0}s warm-up: a slope needs 3 or more over a minute",
                samples.len(),
                samples.iter().filter(|(t, _)| *t >= warm_up).count()
            ),
        };
    };
    let mib = crate::units::mib;
    let first = samples
        .iter()
        .find(|(t, _)| *t >= warm_up)
        .map(|(_, b)| mib(*b));
    let last = samples.last().map(|(_, b)| mib(*b));
    let pass = slope <= max;
    SloVerdict {
        name,
        threshold,
        measured: format!("{slope:.1}MiB/h"),
        pass,
        why: format!(
            "{what} grew {slope:.1} MiB/h (least squares after {warm_up:.0}s warm-up; {:.1} MiB then, {:.1} MiB at the end){}",
            first.unwrap_or(0.0),
            last.unwrap_or(0.0),
            if pass { "" } else { ": a leak at this rate" }
        ),
    }
}

/// Alerts that fired with no fault in effect, nor within `grace` of a clear.
fn unprovoked_alerts(run: &RunRecord, windows: &[Span], grace: f64) -> SloVerdict {
    let threshold = "true".to_owned();
    let provoked = |t: f64| {
        windows
            .iter()
            .any(|window| t >= window.from && t <= window.to + grace)
    };
    let mut unprovoked: Vec<(String, Vec<f64>)> = Vec::new();
    let mut total = 0;
    for (t, signal) in &run.signals {
        let super::replay::Signal::AlertFiring(name) = signal else {
            continue;
        };
        total += 1;
        if provoked(*t) {
            continue;
        }
        match unprovoked.iter_mut().find(|(known, _)| known == name) {
            Some((_, times)) => times.push(*t),
            None => unprovoked.push((name.clone(), vec![*t])),
        }
    }
    let count: usize = unprovoked.iter().map(|(_, times)| times.len()).sum();
    SloVerdict {
        name: "no_unprovoked_alerts",
        threshold,
        measured: format!("{count} unprovoked"),
        pass: count == 0,
        why: if count == 0 {
            format!("all {total} alerts fired while a fault was in effect or just cleared")
        } else {
            let list: Vec<String> = unprovoked
                .iter()
                .map(|(name, times)| {
                    let shown: Vec<String> =
                        times.iter().take(5).map(|t| format!("{t:.1}s")).collect();
                    let more = if times.len() > 5 {
                        format!(" and {} more", times.len() - 5)
                    } else {
                        String::new()
                    };
                    format!("{name} at {}{more}", shown.join(", "))
                })
                .collect();
            format!("alerts fired with no fault in effect: {}", list.join("; "))
        },
    }
}

fn crashes_slo(max: u64, run: &RunRecord) -> SloVerdict {
    let threshold = format!("<= {max}");
    if !run.fleet_spawned {
        return SloVerdict {
            name: "max_crashes",
            threshold,
            measured: "not measured".into(),
            pass: false,
            why: "the harness did not start the fleet, so it could not see it exit".into(),
        };
    }
    let crashes: Vec<String> = run
        .exits
        .iter()
        .filter(|exit| !exit.by_harness)
        .map(|exit| format!("{} at {:.1}s", exit.status, exit.t_s))
        .collect();
    let pass = crashes.len() as u64 <= max;
    SloVerdict {
        name: "max_crashes",
        threshold,
        measured: crashes.len().to_string(),
        pass,
        why: if crashes.is_empty() {
            "the fleet never exited on its own".into()
        } else {
            format!(
                "the fleet exited on its own {}×: {}",
                crashes.len(),
                crashes.join("; ")
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use serde_json::{Value, json};

    use super::*;
    use crate::grade::replay;

    /// A run of 300 s with three faults, written by hand with known answers.
    fn journal() -> Vec<Value> {
        let mut records = vec![
            json!({"event": "run_started", "t_s": 0.0, "at": "2026-11-23T10:00:00.000Z",
            "run_id": "hand-1", "scenario": "hand", "scenario_path": "hand.toml", "seed": 7,
            "target": "embedded", "planned_s": 300.0,
            "grading": {
                "slo": {"call_success_min_pct": 99.0, "response_p95_max_s": null,
                    "response_p99_max_s": null, "first_audio_p95_max_s": null,
                    "pacing_jitter_p99_max_s": null, "detect_within_s": 10.0,
                    "no_retry_storm": false, "recover_within_s": 30.0,
                    "stable_window_s": 20.0, "uptime_min_pct": 99.0,
                    "memory_growth_max_mib_h": 50.0, "temp_dir_growth_max_mib_h": null,
                    "max_crashes": 0, "no_unprovoked_alerts": true},
                "faults": [
                    {"name": "tts", "kind": "tts_429", "detect": [{"alert": "TtsRateLimited"}], "recover_from": "clear"},
                    {"name": "db", "kind": "db_pool_exhaustion", "detect": [{"health": "unhealthy"}], "recover_from": "clear"},
                    {"name": "leak", "kind": "temp_file_leak", "detect": [{"alert": "TempDirGrowing"}], "recover_from": "clear"}
                ]}}),
            json!({"event": "fleet", "t_s": 0.1, "pid": 4242}),
            json!({"event": "health", "t_s": 1.0, "healthy": true}),
        ];
        for i in 0..30 {
            let from = f64::from(i) * 10.0;
            // 5 of 15 calls fail in 40-50 s, after the TTS 429s.
            let (completed, failed) = if i == 4 { (10, 5) } else { (10, 0) };
            let totals = crate::load::aggregate::Totals {
                started: completed + failed,
                ..Default::default()
            };
            let mut record = totals.to_record();
            record["event"] = "interval".into();
            record["t_s"] = (from + 10.0).into();
            record["from_s"] = from.into();
            record["completed"] = completed.into();
            record["failed"] = failed.into();
            record["outcomes"] = json!({"completed": completed, "turn_timeout": failed});
            records.push(record);
            // RSS growing 10 MiB/h exactly, sampled every 10 s.
            let rss = 100e6 + 10.0 * 1024.0 * 1024.0 / 3600.0 * (from + 5.0);
            records.push(json!({"event": "fleet_process", "t_s": from + 5.0, "rss_bytes": rss}));
        }
        let fault = |event: &str, name: &str, kind: &str, t_s: f64| {
            json!({"event": event, "t_s": t_s, "fault": name, "kind": kind, "occurrence": 1,
                "planned_at_s": t_s, "evidence": "seen", "note": "undone"})
        };
        records.extend([
            fault("fault_injected", "tts", "tts_429", 30.0),
            fault("fault_confirmed", "tts", "tts_429", 31.0),
            json!({"event": "alert", "t_s": 33.0, "seen_s": 32.5, "name": "TtsRateLimited", "status": "firing"}),
            fault("fault_cleared", "tts", "tts_429", 45.0),
            fault("fault_injected", "db", "db_pool_exhaustion", 100.0),
            fault("fault_confirmed", "db", "db_pool_exhaustion", 100.5),
            json!({"event": "health", "t_s": 101.25, "healthy": false}),
            fault("fault_cleared", "db", "db_pool_exhaustion", 120.0),
            json!({"event": "health", "t_s": 160.0, "healthy": true}),
            fault("fault_injected", "leak", "temp_file_leak", 200.0),
            fault("fault_confirmed", "leak", "temp_file_leak", 201.0),
            fault("fault_cleared", "leak", "temp_file_leak", 220.0),
            json!({"event": "health", "t_s": 230.0, "healthy": false}),
            json!({"event": "alert", "t_s": 80.0, "name": "WorkerStalled", "status": "firing"}),
            json!({"event": "alert", "t_s": 124.0, "name": "DbPoolSaturated", "status": "firing"}),
            json!({"event": "fleet_exited", "t_s": 250.0, "status": "killed by signal 9 (SIGKILL)", "by_harness": false}),
            json!({"event": "fleet_restarted", "t_s": 252.0, "pid": 4243}),
            json!({"event": "run_ended", "t_s": 300.0, "at": "2026-11-23T10:05:00.000Z", "stopped": null}),
        ]);
        records.sort_by(|a, b| {
            a["t_s"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["t_s"].as_f64().unwrap())
        });
        records
    }

    fn write(records: &[Value], tail: &str) -> (tempfile::TempDir, RunRecord) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut file = std::fs::File::create(&path).unwrap();
        for record in records {
            writeln!(file, "{record}").unwrap();
        }
        file.write_all(tail.as_bytes()).unwrap();
        drop(file);
        let run = replay::read(&path).unwrap();
        (dir, run)
    }

    fn slo<'a>(summary: &'a Summary, name: &str) -> &'a SloVerdict {
        summary
            .slos
            .iter()
            .find(|slo| slo.name == name)
            .unwrap_or_else(|| panic!("no SLO {name}: {:?}", summary.slos))
    }

    #[test]
    fn a_hand_built_journal_grades_to_known_answers() {
        let (_dir, run) = write(&journal(), "");
        let summary = evaluate(&run);
        let fault = |name: &str| summary.faults.iter().find(|f| f.name == name).unwrap();
        // Time to detect: the first matching signal after the injection.
        assert_eq!(fault("tts").detected_after_s, Some(2.5));
        assert_eq!(
            fault("tts").detected_by.as_deref(),
            Some("alert TtsRateLimited")
        );
        assert_eq!(fault("db").detected_after_s, Some(1.25));
        assert_eq!(fault("leak").detected_after_s, None, "undetected");
        // Time to recover: the failing interval 40-50 s ends the trouble after the clear
        // at 45 s; health is back only at 160 s after the DB clear at 120 s; after the leak
        // the fleet never is healthy again.
        assert_eq!(fault("tts").recovered_after_s, Some(5.0));
        assert_eq!(fault("db").recovered_after_s, Some(40.0));
        assert_eq!(fault("leak").recovered_after_s, None, "never recovered");
        assert!(
            fault("leak")
                .notes
                .iter()
                .any(|n| n.starts_with("not recovered"))
        );
        // Impact: the calls that failed in the intervals the fault overlapped.
        assert_eq!(fault("tts").calls_failed_during, Some(5));
        assert_eq!(fault("db").calls_failed_during, Some(0));

        let detect = slo(&summary, "detect_within");
        assert!(!detect.pass);
        assert_eq!(detect.measured, "undetected");
        assert_eq!(detect.why, "not detected in time: leak #1 never");
        let recover = slo(&summary, "recover_within");
        assert!(!recover.pass);
        assert_eq!(
            recover.why,
            "not back in steady state in time: db #1 after 40.0s, leak #1 never"
        );
        // Uptime leaves out each fault until it recovered (the leak, never recovered, until
        // its clear plus recover_within): 299 s probed less 20 + 60 + 50 s; down 250-300.
        let uptime = summary.uptime.unwrap();
        assert_eq!(uptime.probed_s, 169.0);
        assert_eq!(uptime.down_s, 50.0);
        assert_eq!(uptime.outages, 1);
        assert!(!slo(&summary, "uptime").pass);
        assert_eq!(slo(&summary, "uptime").measured, "70.41%");
        // A slope of exactly 10 MiB/h passes a 50 MiB/h limit.
        assert_eq!(summary.fleet.rss_growth_mib_per_h, Some(10.0));
        let memory = slo(&summary, "memory_growth");
        assert!(memory.pass, "{memory:?}");
        assert_eq!(memory.measured, "10.0MiB/h");
        let crashes = slo(&summary, "max_crashes");
        assert!(!crashes.pass);
        assert_eq!(
            crashes.why,
            "the fleet exited on its own 1×: killed by signal 9 (SIGKILL) at 250.0s"
        );
        assert_eq!(summary.fleet.restarts, Some(1));
        // WorkerStalled at 80 s came with no fault in effect; DbPoolSaturated at 124 s came
        // within the stable window after the DB fault's clear.
        let quiet = slo(&summary, "no_unprovoked_alerts");
        assert!(!quiet.pass);
        assert_eq!(
            quiet.why,
            "alerts fired with no fault in effect: WorkerStalled at 80.0s"
        );
        // Calls: 300 completed, 5 failed.
        assert_eq!(summary.calls.completed, 300);
        assert_eq!(summary.calls.failed, 5);
        assert!(!slo(&summary, "call_success").pass);
        assert_eq!(summary.verdict, Verdict::Fail);
        assert_eq!(summary.wall_s, 300.0);
        let stats = summary
            .fault_stats
            .iter()
            .find(|s| s.name == "tts")
            .unwrap();
        assert_eq!(stats.time_to_detect_s.unwrap().mean, 2.5);
        assert_eq!(summary.journal.problems, Vec::<String>::new());
    }

    #[test]
    fn a_journal_cut_short_by_a_kill_still_grades_what_it_holds() {
        let mut records = journal();
        // Killed at about 215 s, in the middle of writing a line.
        records.retain(|record| record["t_s"].as_f64().unwrap() <= 215.0);
        let (_dir, run) = write(&records, r#"{"event":"interval","t_s":22"#);
        assert!(run.cut_short);
        let summary = evaluate(&run);
        assert_eq!(summary.verdict, Verdict::Aborted);
        assert!(
            summary
                .reason
                .as_deref()
                .unwrap()
                .starts_with("the journal ends at 215.0s without run_ended"),
            "{:?}",
            summary.reason
        );
        assert!(summary.journal.cut_short);
        assert_eq!(summary.calls.completed, 210);
        let leak = summary.faults.iter().find(|f| f.name == "leak").unwrap();
        assert_eq!(leak.injected_at_s, Some(200.0));
        assert_eq!(leak.cleared_at_s, None, "killed before its clear");
        assert!(leak.notes.iter().any(|n| n.contains("never cleared")));
    }
}

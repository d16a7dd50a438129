//! The whole verdict from a journal read back ([`RunRecord`]): every fault's detection,
//! recovery and impact, the run-wide SLIs, every SLO with its reason, and the summary.

use std::time::Duration;

use super::detect::Outcome;
use super::plan::{GradePlan, SloPlan};
use super::recovery::{self, GroupRecovery, Member, Span, Uptime};
use super::replay::{DetectionStatus, RecoveryStatus, RunRecord};
use super::summary::{FaultStats, FleetBlock, JournalBlock, RunFacts, Summary};
use super::{SloVerdict, Verdict, shown};
use crate::grade::FaultReport;
use crate::scenario::faults::RecoverFrom;

/// Grades a run from its journal.
pub fn evaluate(run: &RunRecord) -> Summary {
    let plan = run.plan.clone().unwrap_or(GradePlan {
        slo: SloPlan::default(),
        faults: Vec::new(),
    });
    let end = run.end_s();
    let mut faults = run.faults.clone();
    apply_detections(&mut faults, run);
    let windows = fault_windows(&faults, end);
    let troubles = recovery::trouble_spans(run, &plan.slo);
    let groups = recover(&mut faults, &plan, &troubles, end);
    share_signals(&mut faults, &groups);
    let calm = run.response_calm_p95_ms;
    for report in &mut faults {
        impact(report, run, calm);
        // Each injection carries the limits it is held to, so the reports can say by how
        // much it missed them.
        report.detect_within_s = plan.slo.detect_within_s;
        report.recover_within_s = plan.slo.recover_within_s;
    }
    let uptime = run_uptime(run, &faults, &groups, end);
    let growth = Growth::of(run, end);
    let slos = grade_slos(
        run,
        &plan.slo,
        &faults,
        &windows,
        uptime.as_ref(),
        &growth,
        end,
    );
    let (verdict, reason) = run_verdict(run, &slos, &faults);
    let fleet = fleet_block(run, &growth);
    let fault_stats = fault_stats(&faults);
    let mut summary = Summary::new(
        run_facts(run, end),
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
    summary.observers = run.observers.clone();
    summary.fault_stats = fault_stats;
    summary.harness_downtime = run.harness_downtime.clone();
    summary.journal = JournalBlock {
        records: run.records,
        cut_short: run.cut_short,
        problems: run.problems.clone(),
    };
    summary
}

/// The fleet's uptime outside the faults and their recovery.
fn run_uptime(
    run: &RunRecord,
    faults: &[FaultReport],
    groups: &[GroupRecovery],
    end: f64,
) -> Option<Uptime> {
    // Uptime is the downtime nobody injected: each group of overlapping faults is left out
    // from its first injection until the fleet recovered from it (recover_within grades
    // that part), or until the recovery allowance ran out when it never did.
    // Nothing listening (a crash) is left out only where a fault takes the fleet down on
    // purpose (a process kill or stall).
    let mut recovering: Vec<Span> = Vec::new();
    let mut takes_down: Vec<Span> = Vec::new();
    for group in groups {
        let Some(from) = group
            .members
            .iter()
            .filter_map(|index| faults[*index].injected_at_s)
            .reduce(f64::min)
        else {
            continue;
        };
        let span = Span {
            from,
            to: group.excluded_until_s.max(from),
        };
        recovering.push(span);
        if group
            .members
            .iter()
            .any(|index| faults[*index].kind.starts_with("process_"))
        {
            takes_down.push(span);
        }
    }
    // Calls refused at connect are the fleet down too (a crashed call server behind a
    // health URL that still answers, or before the next probe).
    let refusing = recovery::calls_refused_spans(&run.intervals);
    recovery::uptime(
        &recovery::forced_within(&run.health, &refusing, false, None),
        &recovery::forced_within(&run.refused, &refusing, true, Some(false)),
        end,
        &recovering,
        &takes_down,
    )
}

/// How fast the fleet's RSS and temp dir grew after the warm-up.
struct Growth {
    warm_up_s: f64,
    rss_mib_per_h: Option<f64>,
    temp_dir_mib_per_h: Option<f64>,
}

impl Growth {
    fn of(run: &RunRecord, end: f64) -> Self {
        let warm_up_s = super::warm_up_s(end);
        Growth {
            warm_up_s,
            rss_mib_per_h: super::growth_mib_per_hour(&run.rss, warm_up_s),
            temp_dir_mib_per_h: super::growth_mib_per_hour(&run.temp_dir, warm_up_s),
        }
    }
}

/// Every SLO the plan sets, graded, in the plan's order.
fn grade_slos(
    run: &RunRecord,
    slo: &SloPlan,
    faults: &[FaultReport],
    windows: &[Span],
    uptime: Option<&Uptime>,
    growth: &Growth,
    end: f64,
) -> Vec<SloVerdict> {
    let mut slos = super::grade(slo, &run.totals);
    if let Some(within) = slo.detect_within_s {
        slos.push(super::detect_within(
            Duration::from_secs_f64(within),
            faults,
        ));
    }
    if let Some(within) = slo.recover_within_s {
        slos.push(recover_within(within, slo.stable_window_s, faults));
    }
    if slo.no_retry_storm {
        slos.push(super::no_retry_storm(run.retries.as_ref(), faults, end));
    }
    if let Some(min) = slo.uptime_min_pct {
        slos.push(uptime_slo(min, uptime));
    }
    if let Some(max) = slo.memory_growth_max_mib_h {
        slos.push(growth_slo(
            "memory_growth",
            "fleet RSS",
            max,
            growth.rss_mib_per_h,
            &run.rss,
            growth.warm_up_s,
        ));
    }
    if let Some(max) = slo.temp_dir_growth_max_mib_h {
        slos.push(growth_slo(
            "temp_dir_growth",
            "fleet temp dir",
            max,
            growth.temp_dir_mib_per_h,
            &run.temp_dir,
            growth.warm_up_s,
        ));
    }
    if let Some(max) = slo.max_crashes {
        slos.push(crashes_slo(max, run));
    }
    if slo.no_unprovoked_alerts {
        slos.push(unprovoked_alerts(run, windows, slo.stable_window_s));
    }
    let metric_run = super::metric::MetricRun {
        scrapes: run.metrics_records,
        warm_up_s: growth.warm_up_s,
        spikes_s: &slo.spikes_s,
        end_s: end,
    };
    for metric in &slo.metrics {
        let samples = run
            .series
            .get(&metric.series)
            .map_or(&[][..], Vec::as_slice);
        slos.push(super::metric::grade(metric, samples, metric_run));
    }
    slos
}

/// The fleet's block of the summary: memory, temp dir, restarts and crashes.
fn fleet_block(run: &RunRecord, growth: &Growth) -> FleetBlock {
    let mib = crate::units::mib;
    let crashes = run.exits.iter().filter(|exit| !exit.by_harness).count() as u64;
    let round2 = |value: f64| (value * 100.0).round() / 100.0;
    FleetBlock {
        rss_mib_max: run.rss_max_bytes.map(mib),
        rss_growth_mib_per_h: growth.rss_mib_per_h.map(round2),
        restarts: run.process_watched().then_some(run.restarts),
        crashes: run.process_watched().then_some(crashes),
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
        temp_dir_growth_mib_per_h: growth.temp_dir_mib_per_h.map(round2),
    }
}

/// What ran, when, for how long.
fn run_facts(run: &RunRecord, end: f64) -> RunFacts {
    RunFacts {
        run_id: run.run_id.clone(),
        scenario: run.scenario.clone(),
        scenario_path: run.scenario_path.clone(),
        seed: run.seed,
        time_scale: run.time_scale.max(1.0),
        target: run.target.clone(),
        started_at: run.started_at.clone(),
        ended_at: run
            .ended
            .as_ref()
            .map_or(run.last_at.clone(), |ended| ended.at.clone()),
        wall_s: end,
    }
}

/// The reports of a run still going (`report_every`), graded from its journal so far:
/// `in_progress`, and the verdict of what can be judged yet rather than `aborted` for a
/// journal without its end: an SLO not measurable yet (no call ended) and a fault still
/// in effect (no clear yet, so not confirmed or recovered yet) are left out of it, and
/// the reason says so. A harness failure or a measured SLO failure shows at once.
pub fn evaluate_in_progress(run: &RunRecord) -> Summary {
    let mut summary = evaluate(run);
    let measured: Vec<SloVerdict> = summary
        .slos
        .iter()
        .filter(|slo| slo.status != super::SloStatus::NotMeasured)
        .cloned()
        .collect();
    let settled: Vec<FaultReport> = summary
        .faults
        .iter()
        .filter(|fault| fault.cleared_at_s.is_some() || fault.clear_failed)
        .cloned()
        .collect();
    let (verdict, reason) = super::verdict_with_faults(&measured, &settled, &run.harness_errors);
    let so_far = format!(
        "in progress: graded from the journal at {:.0}s of {:.0}s planned, the verdict so far (SLOs not measurable yet and faults still in effect left out)",
        run.last_t_s, run.planned_s
    );
    summary.in_progress = true;
    summary.verdict = verdict;
    summary.reason = Some(match reason {
        Some(reason) => format!("{so_far}: {reason}"),
        None => so_far,
    });
    summary
}

/// The verdict and its reason. A run stopped before its end is `aborted` (it did not test
/// what it planned), except when an abort condition on the fleet's calls stopped it: then
/// the fleet failed its calls badly enough to stop the run, which is `fail`.
fn run_verdict(
    run: &RunRecord,
    slos: &[SloVerdict],
    faults: &[FaultReport],
) -> (Verdict, Option<String>) {
    let Some(ended) = &run.ended else {
        return (
            Verdict::Aborted,
            Some(format!(
                "the journal ends at {:.1}s without run_ended: the harness was killed before the run finished (graded from what was journaled)",
                run.last_t_s
            )),
        );
    };
    match (&ended.stopped, ended.stopped_by) {
        (Some(reason), Some(super::replay::StoppedBy::AbortCondition)) => {
            if !run.harness_errors.is_empty() {
                return super::verdict_with_faults(slos, faults, &run.harness_errors);
            }
            (
                Verdict::Fail,
                Some(format!(
                    "{reason} (the fleet's calls failed until the run was stopped)"
                )),
            )
        }
        (Some(reason), _) => (Verdict::Aborted, Some(reason.clone())),
        (None, _) => super::verdict_with_faults(slos, faults, &run.harness_errors),
    }
}

/// Each fault's detection, as the detection engine found it over the journal.
fn apply_detections(faults: &mut [FaultReport], run: &RunRecord) {
    for graded in &run.detections {
        let Some(report) = faults.iter_mut().find(|report| {
            report.name == graded.injection.fault
                && report.occurrence == graded.injection.occurrence
        }) else {
            continue;
        };
        match &graded.outcome {
            Outcome::Detected(detection) => {
                report.detected_after_s = Some(detection.after_s);
                report.detected_by = Some(detection.by.clone());
                report.detection = Some(DetectionStatus::Detected);
            }
            Outcome::AlreadySignalling { rules } => {
                report.signalling_at_injection = rules.clone();
                report.detection = Some(DetectionStatus::AlreadySignalling);
                report.notes.push(format!(
                    "already signalling at injection ({}), so its detection is not graded",
                    rules.join(", ")
                ));
            }
            Outcome::Undetected => report.detection = Some(DetectionStatus::Undetected),
        }
    }
    for report in faults.iter_mut() {
        if !report.confirmed {
            report.detection = None;
        } else if report.harness_died && !detected_before_clear(report) {
            report.detection = Some(DetectionStatus::HarnessAway);
            report.detected_after_s = None;
            report.detected_by = None;
            report.notes.push(
                "the harness died while it was in effect, before any signal of it was seen: \
                 nobody watched the rest of it, so its detection is not graded"
                    .into(),
            );
        } else if report.detection.is_none() && report.injected_at_s.is_some() {
            report.detection = Some(DetectionStatus::Undetected);
        }
    }
}

/// Whether a fault was detected before it was cleared: for one the harness died in, a
/// signal after the resume is the restarted fleet's, not this fault's.
fn detected_before_clear(report: &FaultReport) -> bool {
    report.detection == Some(DetectionStatus::Detected)
        && match (
            report.injected_at_s,
            report.detected_after_s,
            report.cleared_at_s,
        ) {
            (Some(injected), Some(after), Some(cleared)) => injected + after <= cleared,
            _ => true,
        }
}

/// Recovery of every fault in effect, overlapping ones together; the groups found.
fn recover(
    faults: &mut [FaultReport],
    plan: &GradePlan,
    troubles: &[Span],
    end: f64,
) -> Vec<GroupRecovery> {
    let slo = &plan.slo;
    let members = recovery_members(faults, plan, end);
    let allowance = slo.recover_within_s.unwrap_or(slo.stable_window_s);
    let groups = recovery::recover_groups(&members, troubles, slo.stable_window_s, allowance, end);
    for group in &groups {
        for &index in &group.members {
            let others = overlapped_by(faults, group, index);
            let report = &mut faults[index];
            record_recovery(report, group, others, slo.stable_window_s, allowance, end);
        }
    }
    groups
}

/// The injections whose recovery is measured (those in effect), each with where its
/// recovery counts from; every injected fault's `recover_from` is set on the way.
fn recovery_members(faults: &mut [FaultReport], plan: &GradePlan, end: f64) -> Vec<Member> {
    let mut members = Vec::new();
    for (index, report) in faults.iter_mut().enumerate() {
        let Some(injected) = report.injected_at_s else {
            continue;
        };
        let from = plan
            .faults
            .iter()
            .find(|fault| fault.name == report.name)
            .map_or(RecoverFrom::Clear, |fault| fault.recover_from);
        report.recover_from = Some(from);
        if !report.confirmed {
            continue;
        }
        let start = match from {
            RecoverFrom::Clear => report.cleared_at_s,
            RecoverFrom::Injection => Some(injected),
        };
        members.push(Member {
            index,
            injected,
            start: start.unwrap_or(end),
            cleared: report.cleared_at_s,
        });
    }
    members
}

/// The other members of `group`, as `tts_429 #3 from 16.0s`.
fn overlapped_by(faults: &[FaultReport], group: &GroupRecovery, index: usize) -> Vec<String> {
    group
        .members
        .iter()
        .filter(|other| **other != index)
        .map(|other| {
            let other = &faults[*other];
            format!(
                "{} #{} from {:.1}s",
                other.name,
                other.occurrence,
                other.injected_at_s.unwrap_or_default()
            )
        })
        .collect()
}

/// Writes `group`'s recovery into one member's report, with a note saying why when it was
/// not recovered or not measured.
fn record_recovery(
    report: &mut FaultReport,
    group: &GroupRecovery,
    others: Vec<String>,
    stable_window_s: f64,
    allowance: f64,
    end: f64,
) {
    if report.harness_died {
        // The harness started the fleet again at the resume: what followed is no recovery
        // of the fleet's.
        report.recovery = Some(RecoveryStatus::NotMeasured);
        report.notes.push(
            "recovery not graded: the harness died while it was in effect, and the fleet was \
             started again when the run was resumed"
                .into(),
        );
        return;
    }
    report.recovery = Some(group.status);
    report.recovery_from_s = Some(group.from_s);
    report.recovered_after_s = group
        .at_s
        .map(|at| crate::journal::round_ms(at - group.from_s));
    if !others.is_empty() {
        report.notes.push(format!(
            "overlapped {}; recovery counted from the later clear at {:.1}s",
            others.join(", "),
            group.from_s
        ));
        report.overlapped = others;
    }
    let from = report.recover_from.unwrap_or(RecoverFrom::Clear);
    match group.status {
        RecoveryStatus::Recovered => {}
        RecoveryStatus::NotRecovered => report.notes.push(format!(
            "not recovered: the steady state did not hold for {}s from the {} at {:.1}s within {allowance}s, nor before the end at {end:.1}s",
            stable_window_s,
            from.name(),
            group.from_s
        )),
        RecoveryStatus::NotMeasured if report.cleared_at_s.is_none() => report
            .notes
            .push("never cleared, so recovery could not be measured".into()),
        RecoveryStatus::NotMeasured => report.notes.push(format!(
            "recovery not measured: the run ended {:.1}s after the {} at {:.1}s, before the steady state could be seen to hold",
            end - group.from_s,
            from.name(),
            group.from_s
        )),
    }
}

/// An injection whose detection shows only because an overlapping earlier fault's signal
/// was already up (the same alert, the same bad health) shares that fault's detection: it
/// is said so, and counted once, for the earlier fault.
fn share_signals(faults: &mut [FaultReport], groups: &[GroupRecovery]) {
    for group in groups {
        for (position, &later) in group.members.iter().enumerate() {
            let earlier = group.members[..position].iter().find_map(|&earlier| {
                let (a, b) = (&faults[earlier], &faults[later]);
                let by = a.detected_by.as_ref()?;
                let shared = match b.detection {
                    Some(DetectionStatus::AlreadySignalling) => {
                        b.signalling_at_injection.contains(by)
                    }
                    Some(DetectionStatus::Detected) => {
                        let seen = |fault: &FaultReport| {
                            Some(fault.injected_at_s? + fault.detected_after_s?)
                        };
                        b.detected_by.as_ref() == Some(by)
                            && seen(a)
                                .zip(seen(b))
                                .is_some_and(|(x, y)| (x - y).abs() < 1e-6)
                    }
                    _ => false,
                };
                shared.then(|| format!("{} #{}", a.name, a.occurrence))
            });
            if let Some(earlier) = earlier {
                let report = &mut faults[later];
                let by = faults_detected_by(report);
                report.detection = Some(DetectionStatus::SharedSignal);
                report.notes.push(format!(
                    "overlapping {earlier}, shared signal{by}: counted once, for {earlier}"
                ));
            }
        }
    }
}

fn faults_detected_by(report: &FaultReport) -> String {
    report
        .detected_by
        .as_ref()
        .or(report.signalling_at_injection.first())
        .map_or(String::new(), |by| format!(" ({by})"))
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

fn overlaps(a: &Span, b: &Span) -> bool {
    a.from < b.to && b.from < a.to
}

/// Impact: the calls that failed in the intervals the fault overlapped, and the response
/// p95 then against the calm one.
fn impact(report: &mut FaultReport, run: &RunRecord, calm_p95_ms: Option<f64>) {
    let Some(injected) = report.injected_at_s else {
        return;
    };
    let window = Span {
        from: injected,
        to: report.cleared_at_s.unwrap_or(run.end_s()).max(injected),
    };
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
    // response_p95_during_ms was added up while the journal was read (grade::during).
    report.response_p95_calm_ms = calm_p95_ms;
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
                .filter(|f| f.detection == Some(DetectionStatus::Detected))
                .filter_map(|f| f.detected_after_s)
                .collect();
            let recover: Vec<f64> = confirmed
                .iter()
                .filter_map(|f| f.recovered_after_s)
                .collect();
            // As detect_within leaves them out (grade::detect_within).
            let not_detectable = confirmed
                .iter()
                .filter(|f| {
                    matches!(
                        f.detection,
                        Some(
                            DetectionStatus::AlreadySignalling
                                | DetectionStatus::SharedSignal
                                | DetectionStatus::HarnessAway
                        )
                    )
                })
                .count();
            FaultStats {
                name: name.to_owned(),
                kind: of[0].kind.to_owned(),
                injected: of.iter().filter(|f| f.injected_at_s.is_some()).count(),
                confirmed: confirmed.len(),
                detected: detect.len(),
                not_detectable,
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
            graded: |fault| match fault.recovery {
                Some(RecoveryStatus::NotMeasured) if fault.harness_died => {
                    super::Grading::Ungradable(
                        "the harness died while it was in effect (the fleet was started again)"
                            .into(),
                    )
                }
                Some(RecoveryStatus::NotMeasured) => super::Grading::Ungradable(
                    "recovery not measured (the run ended too soon after its clear)".into(),
                ),
                _ => super::Grading::Graded,
            },
            nothing: "no fault was in effect, so there was nothing to recover from",
            missing: "not recovered",
            late: "not back in steady state in time",
            unmeasurable: "no injection of it had a recovery that could be measured",
        },
        faults,
        |count| {
            format!(
                "the fleet was back in steady state (health, call success, latency held for {window_s}s) after every one of {count} faults in time"
            )
        },
    )
}

/// Less probed time than this outside faults and their recovery, and uptime is not
/// measured.
const MIN_UPTIME_PROBED_S: f64 = 1.0;

fn uptime_slo(min: f64, uptime: Option<&Uptime>) -> SloVerdict {
    let threshold = format!(">= {min}%");
    let Some(uptime) = uptime else {
        return SloVerdict::not_measured(
            "uptime",
            threshold,
            "no health probe answered or failed, so uptime could not be measured (set [observe] health_url)".into(),
        );
    };
    if uptime.probed_s < MIN_UPTIME_PROBED_S {
        // Faults and their recovery covered the whole run: nothing was left to measure, and
        // a pass on nothing would be a verdict the harness did not see.
        return SloVerdict::not_measured(
            "uptime",
            threshold,
            format!(
                "every probed second was inside a fault or the recovery from it ({:.0}s left \
                 out), so uptime could not be measured: space the faults out",
                uptime.excluded_s
            ),
        );
    }
    let pass = uptime.exact_pct >= min;
    SloVerdict::measured(
        "uptime",
        threshold,
        format!("{}%", shown(uptime.exact_pct, min, 2)),
        pass,
        if uptime.outages == 0 {
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
    )
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
        return SloVerdict::not_measured(
            name,
            threshold,
            format!(
                "{} {what} samples, {} after the {warm_up:.0}s warm-up: a slope needs 3 or more over a minute",
                samples.len(),
                samples.iter().filter(|(t, _)| *t >= warm_up).count()
            ),
        );
    };
    let mib = crate::units::mib;
    let first = samples
        .iter()
        .find(|(t, _)| *t >= warm_up)
        .map(|(_, b)| mib(*b));
    let last = samples.last().map(|(_, b)| mib(*b));
    let pass = slope <= max;
    let rate = shown(slope, max, 1);
    SloVerdict::measured(
        name,
        threshold,
        format!("{rate}MiB/h"),
        pass,
        format!(
            "{what} grew {rate} MiB/h (least squares after {warm_up:.0}s warm-up; {:.1} MiB then, {:.1} MiB at the end){}",
            first.unwrap_or(0.0),
            last.unwrap_or(0.0),
            if pass { "" } else { ": a leak at this rate" }
        ),
    )
}

/// Alerts that began firing with no fault in effect, nor within `grace` of a clear.
/// Repeats of an alert already firing are not counted again. An alert that began while the
/// host was starved (an interval whose frames the harness itself sent late, see
/// [`crate::grade::replay::HOST_STARVED_PACING_MS`], or in which tasks waited for a CPU most
/// of the time, [`crate::grade::replay::HOST_STARVED_CPU_PRESSURE_PCT`]), or within `grace`
/// after, was provoked
/// by the machine, not by the fleet: it is named, never counted against the fleet.
fn unprovoked_alerts(run: &RunRecord, windows: &[Span], grace: f64) -> SloVerdict {
    let threshold = "true".to_owned();
    let provoked = |t: f64| {
        windows
            .iter()
            .any(|window| t >= window.from && t <= window.to + grace)
    };
    let starved = |t: f64| {
        run.intervals.iter().any(|interval| {
            interval.host_starved() && t >= interval.from_s && t <= interval.to_s + grace
        })
    };
    let mut unprovoked: Vec<(String, Vec<f64>)> = Vec::new();
    let mut total = 0;
    let mut on_starved_host = 0;
    for onset in &run.alert_onsets {
        total += 1;
        if provoked(onset.began_s) || provoked(onset.seen_s) {
            continue;
        }
        if starved(onset.began_s) || starved(onset.seen_s) {
            on_starved_host += 1;
            continue;
        }
        match unprovoked
            .iter_mut()
            .find(|(known, _)| *known == onset.name)
        {
            Some((_, times)) => times.push(onset.seen_s),
            None => unprovoked.push((onset.name.clone(), vec![onset.seen_s])),
        }
    }
    let count: usize = unprovoked.iter().map(|(_, times)| times.len()).sum();
    SloVerdict::measured(
        "no_unprovoked_alerts",
        threshold,
        format!("{count} unprovoked"),
        count == 0,
        if count == 0 && on_starved_host > 0 {
            format!(
                "{} of {total} alerts fired while a fault was in effect or just cleared; \
                 {on_starved_host} while the host was starved of CPU (the harness's own frames \
                 late by more than {:.0} ms at p99, or a task waiting for a CPU {:.0}% of the \
                 time), not counted against the fleet",
                total - on_starved_host,
                crate::grade::replay::HOST_STARVED_PACING_MS,
                crate::grade::replay::HOST_STARVED_CPU_PRESSURE_PCT
            )
        } else if count == 0 {
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
    )
}

fn crashes_slo(max: u64, run: &RunRecord) -> SloVerdict {
    let threshold = format!("<= {max}");
    if !run.process_watched() {
        return SloVerdict::not_measured(
            "max_crashes",
            threshold,
            "the fleet's process was not watched (the harness did not start it, and [observe] process was not set), so its exits could not be seen".into(),
        );
    }
    let crashes: Vec<String> = run
        .exits
        .iter()
        .filter(|exit| !exit.by_harness)
        .map(|exit| format!("{} at {:.1}s", exit.status, exit.t_s))
        .collect();
    let pass = crashes.len() as u64 <= max;
    SloVerdict::measured(
        "max_crashes",
        threshold,
        crashes.len().to_string(),
        pass,
        if crashes.is_empty() {
            "the fleet never exited on its own".into()
        } else {
            format!(
                "the fleet exited on its own {}×: {}",
                crashes.len(),
                crashes.join("; ")
            )
        },
    )
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
            let mut totals = crate::journal::calls::Totals {
                started: completed + failed,
                ..Default::default()
            };
            // Responses take 100 ms, but 800 ms while the TTS fault is in (30-45 s), 500
            // in the DB one (100-120 s) and 300 in the leak (200-220 s).
            let response_ms = match i {
                3 | 4 => 800,
                10 | 11 => 500,
                20 | 21 => 300,
                _ => 100,
            };
            totals.response.record_n(response_ms * 1000, 20).unwrap();
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

    pub(super) fn slo<'a>(summary: &'a Summary, name: &str) -> &'a SloVerdict {
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
        // Impact: the calls that failed in the intervals the fault overlapped, and the
        // response p95 in them against the one outside every fault.
        assert_eq!(fault("tts").calls_failed_during, Some(5));
        assert_eq!(fault("db").calls_failed_during, Some(0));
        assert_eq!(fault("tts").response_p95_during_ms, Some(800.0));
        assert_eq!(fault("db").response_p95_during_ms, Some(500.0));
        assert_eq!(fault("leak").response_p95_during_ms, Some(300.0));
        assert!(
            summary
                .faults
                .iter()
                .all(|fault| fault.response_p95_calm_ms == Some(100.0))
        );

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

    /// The same journal read while the run goes on: the verdict so far, not `aborted`,
    /// and the fault still in effect has no recovery to grade yet.
    #[test]
    fn a_journal_of_a_run_still_going_gets_the_verdict_so_far() {
        let mut records = journal();
        records.retain(|record| record["t_s"].as_f64().unwrap() <= 215.0);
        let (_dir, run) = write(&records, "");
        let summary = evaluate_in_progress(&run);
        assert!(summary.in_progress);
        assert_ne!(summary.verdict, Verdict::Aborted);
        let reason = summary.reason.as_deref().unwrap();
        assert!(
            reason.starts_with("in progress: graded from the journal at 215s of 300s planned"),
            "{reason}"
        );
        let leak = summary.faults.iter().find(|f| f.name == "leak").unwrap();
        assert_eq!(leak.recovery, Some(RecoveryStatus::NotMeasured), "{leak:?}");
        assert!(
            !evaluate(&run).in_progress,
            "a final grading is not in progress"
        );
    }

    #[test]
    fn uptime_over_no_probed_time_is_not_measured_not_passed() {
        let covered = Uptime {
            pct: 100.0,
            exact_pct: 100.0,
            probed_s: 0.0,
            down_s: 0.0,
            excluded_s: 360.0,
            outages: 0,
            longest_outage_s: 0.0,
        };
        let verdict = uptime_slo(99.0, Some(&covered));
        assert_eq!(
            verdict.status,
            crate::grade::SloStatus::NotMeasured,
            "{verdict:?}"
        );
        assert!(verdict.why.contains("360s left out"), "{}", verdict.why);
        let probed = Uptime {
            probed_s: 29.0,
            excluded_s: 331.0,
            ..covered
        };
        assert_eq!(
            uptime_slo(99.0, Some(&probed)).status,
            crate::grade::SloStatus::Pass
        );
    }
}

/// The grading rules, each on a small journal built by hand with a known answer.
#[cfg(test)]
mod rules_tests {
    use std::io::Write as _;

    use serde_json::{Value, json};

    use super::tests::slo;
    use super::*;
    use crate::grade::SloStatus;
    use crate::grade::replay;

    /// A journal under construction: a run of `end` seconds with calls every 5 s.
    struct Journal {
        records: Vec<Value>,
    }

    impl Journal {
        /// `slo` and `faults` as `run_started`'s grading carries them.
        fn new(slo: Value, faults: Value, end: f64) -> Self {
            let mut grading_slo = json!({
                "call_success_min_pct": null, "response_p95_max_s": null,
                "response_p99_max_s": null, "first_audio_p95_max_s": null,
                "pacing_jitter_p99_max_s": null, "detect_within_s": null,
                "no_retry_storm": false, "recover_within_s": null, "stable_window_s": 10.0,
                "uptime_min_pct": null, "memory_growth_max_mib_h": null,
                "temp_dir_growth_max_mib_h": null, "max_crashes": null,
                "no_unprovoked_alerts": false});
            for (key, value) in slo.as_object().unwrap() {
                grading_slo[key] = value.clone();
            }
            let mut records = vec![
                json!({"event": "run_started", "t_s": 0.0, "at": "2026-12-01T10:00:00.000Z",
                    "run_id": "rules", "scenario": "rules", "target": "external",
                    "grading": {"slo": grading_slo, "faults": faults}}),
                json!({"event": "health", "t_s": 0.5, "healthy": true}),
            ];
            let mut from = 0.0;
            while from < end {
                records.push(interval(from, from + 5.0, 10, 0));
                from += 5.0;
            }
            records.push(json!({"event": "run_ended", "t_s": end, "at": "2026-12-01T10:10:00.000Z", "stopped": null}));
            Journal { records }
        }

        fn push(&mut self, record: Value) -> &mut Self {
            self.records.push(record);
            self
        }

        /// A fault injected at `at`, confirmed, cleared at `until`.
        fn fault(&mut self, name: &str, occurrence: u32, at: f64, until: f64) -> &mut Self {
            let base = json!({"fault": name, "kind": "tts_429", "occurrence": occurrence,
                "planned_at_s": at});
            for (event, t) in [
                ("fault_injected", at),
                ("fault_confirmed", at + 0.1),
                ("fault_cleared", until),
            ] {
                let mut record = base.clone();
                record["event"] = event.into();
                record["t_s"] = t.into();
                self.records.push(record);
            }
            self
        }

        fn alert(&mut self, t: f64, name: &str, firing: bool, starts_s: Option<f64>) -> &mut Self {
            self.push(
                json!({"event": "alert", "t_s": t, "seen_s": t, "name": name,
                "status": if firing { "firing" } else { "resolved" }, "starts_s": starts_s}),
            )
        }

        fn health(&mut self, t: f64, healthy: bool) -> &mut Self {
            self.push(json!({"event": "health", "t_s": t, "seen_s": t, "healthy": healthy}))
        }

        /// Makes the interval ending at `to` a failing one.
        fn failing(&mut self, to: f64) -> &mut Self {
            for record in &mut self.records {
                if record["event"] == "interval" && record["t_s"] == to {
                    *record = interval(to - 5.0, to, 2, 8);
                }
            }
            self
        }

        fn grade(&self) -> Summary {
            // Journal order: by time, a run_ended last (sorted by index: a 72-hour
            // journal is not copied).
            let key = |r: &Value| {
                (
                    r["event"] == "run_ended",
                    r["t_s"].as_f64().unwrap_or_default(),
                )
            };
            let mut order: Vec<usize> = (0..self.records.len()).collect();
            order.sort_by(|&a, &b| {
                let (x, y) = (key(&self.records[a]), key(&self.records[b]));
                x.0.cmp(&y.0).then(x.1.total_cmp(&y.1))
            });
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("journal.jsonl");
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            for index in order {
                writeln!(file, "{}", self.records[index]).unwrap();
            }
            drop(file);
            evaluate(&replay::read(&path).unwrap())
        }
    }

    fn interval(from: f64, to: f64, completed: u64, failed: u64) -> Value {
        json!({"event": "interval", "t_s": to, "from_s": from, "started": completed + failed,
            "completed": completed, "failed": failed,
            "outcomes": {"completed": completed, "turn_timeout": failed}})
    }

    fn alert_fault(name: &str, alert: &str) -> Value {
        json!({"name": name, "kind": "tts_429", "detect": [{"alert": alert}], "recover_from": "clear"})
    }

    fn fault<'a>(summary: &'a Summary, name: &str, occurrence: u32) -> &'a FaultReport {
        summary
            .faults
            .iter()
            .find(|f| f.name == name && f.occurrence == occurrence)
            .unwrap_or_else(|| panic!("no {name} #{occurrence}: {:#?}", summary.faults))
    }

    /// An interval record whose frames the harness sent `late_ms` late (every one).
    fn paced_interval(from: f64, to: f64, late_ms: u64) -> Value {
        // The bounds of the calls' pacing histograms (`call::pacing_histogram`), written
        // here: the grader's tests use nothing above the grader.
        let mut pacing = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 1).unwrap();
        pacing.record_n(late_ms * 1000, 100).unwrap();
        let mut record = interval(from, to, 10, 0);
        record["hist"] = json!({"pacing": crate::journal::histogram::encode(&pacing).unwrap()});
        record
    }

    /// A fault the harness died in, undone by `voxsoak resume` at 20 s: the alert that came
    /// at 25 s (from the restarted fleet, or the next fault) is not its detection, and
    /// neither its detection nor its recovery is graded; the next injection of the same
    /// fault is, so the SLOs stand on it. The time away is in the summary.
    #[test]
    fn a_fault_the_harness_died_in_is_not_held_against_the_fleet() {
        let slos = json!({"detect_within_s": 10.0, "recover_within_s": 20.0,
            "stable_window_s": 5.0});
        let mut journal = Journal::new(slos, json!([alert_fault("tts", "TtsRateLimited")]), 90.0);
        journal.fault("tts", 1, 18.0, 20.0);
        for record in &mut journal.records {
            if record["event"] == "fault_cleared" {
                record["by_resume"] = json!(true);
            }
        }
        journal
            .push(
                json!({"event": "harness_downtime", "t_s": 20.0, "down_s": 42.5,
                "from": "2026-12-01T10:00:20.000Z", "to": "2026-12-01T10:01:02.500Z",
                "calls_lost": 3}),
            )
            .alert(25.0, "TtsRateLimited", true, Some(25.0))
            .alert(27.0, "TtsRateLimited", false, None)
            .fault("tts", 2, 50.0, 55.0)
            .alert(51.0, "TtsRateLimited", true, Some(51.0))
            .alert(56.0, "TtsRateLimited", false, None);
        let graded = journal.grade();
        let died = fault(&graded, "tts", 1);
        assert!(died.harness_died);
        assert_eq!(
            died.detection,
            Some(DetectionStatus::HarnessAway),
            "{died:#?}"
        );
        assert_eq!(died.detected_after_s, None);
        assert_eq!(died.recovery, Some(RecoveryStatus::NotMeasured));
        let next = fault(&graded, "tts", 2);
        assert_eq!(next.detection, Some(DetectionStatus::Detected), "{next:#?}");
        assert_eq!(next.recovery, Some(RecoveryStatus::Recovered), "{next:#?}");
        for name in ["detect_within", "recover_within"] {
            let verdict = slo(&graded, name);
            assert!(verdict.pass, "{verdict:?}");
            assert!(verdict.why.contains("the harness died"), "{}", verdict.why);
        }
        assert_eq!(graded.verdict, Verdict::Pass, "{:?}", graded.reason);
        let stats = &graded.fault_stats[0];
        assert_eq!((stats.detected, stats.not_detectable), (1, 1), "{stats:?}");
        assert_eq!(graded.harness_downtime.len(), 1);
        assert_eq!(graded.harness_downtime[0].calls_lost, 3);
        assert_eq!(graded.harness_downtime[0].down_s, 42.5);
    }

    #[test]
    fn an_alert_on_a_starved_host_is_not_the_fleets() {
        let mut journal = Journal::new(json!({"no_unprovoked_alerts": true}), json!([]), 60.0);
        // 20-25 s: the harness's own frames 300 ms late, the host starved of CPU.
        journal.push(paced_interval(20.0, 25.0, 300));
        journal.push(paced_interval(25.0, 30.0, 2));
        journal.alert(24.0, "TtsDegraded", true, None);
        let graded = journal.grade();
        let quiet = slo(&graded, "no_unprovoked_alerts");
        assert!(quiet.pass, "{quiet:?}");
        assert!(
            quiet.why.contains("1 while the host was starved"),
            "{}",
            quiet.why
        );
        // The same alert where the harness kept time is the fleet's.
        journal.alert(45.0, "LlmDegraded", true, None);
        let graded = journal.grade();
        let quiet = slo(&graded, "no_unprovoked_alerts");
        assert!(!quiet.pass);
        assert_eq!(
            quiet.why,
            "alerts fired with no fault in effect: LlmDegraded at 45.0s"
        );
    }

    #[test]
    fn an_alert_while_tasks_waited_for_a_cpu_is_not_the_fleets() {
        let mut journal = Journal::new(json!({"no_unprovoked_alerts": true}), json!([]), 60.0);
        // The harness kept time (2 ms late at p99), but some task on the host waited for a
        // CPU 97% of 20-25 s (a debug-built fleet beside a parallel build), 40% of 40-45 s.
        let mut starved = paced_interval(20.0, 25.0, 2);
        starved["host_cpu_pressure_pct"] = json!(97.4);
        let mut busy = paced_interval(40.0, 45.0, 2);
        busy["host_cpu_pressure_pct"] = json!(40.0);
        journal.push(starved).push(busy);
        journal.alert(24.0, "TtsDegraded", true, None);
        let graded = journal.grade();
        let quiet = slo(&graded, "no_unprovoked_alerts");
        assert!(quiet.pass, "{quiet:?}");
        assert!(quiet.why.contains("waiting for a CPU"), "{}", quiet.why);
        // Busy but not starved: the alert is the fleet's.
        journal.alert(44.0, "LlmDegraded", true, None);
        let graded = journal.grade();
        let quiet = slo(&graded, "no_unprovoked_alerts");
        assert!(!quiet.pass, "{quiet:?}");
    }

    #[test]
    fn overlapping_faults_are_each_graded_and_recover_from_the_later_clear() {
        // The 45-minute soak's failure: tts #1 30-60 s and leak #1 50-80 s overlap; calls
        // fail 55-85 s. Before, the leak's injection inside the TTS fault's window cut the
        // TTS fault's recovery short, and it was "never" recovered.
        let mut journal = Journal::new(
            json!({"recover_within_s": 60.0, "detect_within_s": 10.0}),
            json!([
                alert_fault("tts", "TtsRateLimited"),
                alert_fault("leak", "TempDirGrowing")
            ]),
            300.0,
        );
        journal
            .fault("tts", 1, 30.0, 60.0)
            .fault("leak", 1, 50.0, 80.0)
            .alert(31.0, "TtsRateLimited", true, Some(30.8))
            .alert(52.0, "TempDirGrowing", true, Some(51.5))
            .failing(60.0)
            .failing(65.0)
            .failing(85.0);
        let summary = journal.grade();
        let (tts, leak) = (fault(&summary, "tts", 1), fault(&summary, "leak", 1));
        assert_eq!(tts.detected_after_s, Some(1.0));
        assert_eq!(leak.detected_after_s, Some(2.0));
        for report in [tts, leak] {
            assert_eq!(
                report.recovery,
                Some(RecoveryStatus::Recovered),
                "{report:#?}"
            );
            assert_eq!(report.recovery_from_s, Some(80.0));
            assert_eq!(report.recovered_after_s, Some(5.0));
        }
        assert_eq!(tts.overlapped, vec!["leak #1 from 50.0s".to_owned()]);
        assert_eq!(leak.overlapped, vec!["tts #1 from 30.0s".to_owned()]);
        assert!(slo(&summary, "recover_within").pass);
        assert_eq!(summary.verdict, Verdict::Pass, "{:?}", summary.reason);
    }

    #[test]
    fn repeated_injections_of_one_fault_stay_separate() {
        let mut journal = Journal::new(
            json!({"recover_within_s": 60.0, "detect_within_s": 10.0}),
            json!([alert_fault("tts", "TtsRateLimited")]),
            200.0,
        );
        journal
            .fault("tts", 1, 20.0, 30.0)
            .fault("tts", 2, 100.0, 110.0)
            .alert(21.0, "TtsRateLimited", true, None)
            .alert(36.0, "TtsRateLimited", false, None)
            .alert(103.0, "TtsRateLimited", true, None)
            .failing(115.0);
        let summary = journal.grade();
        assert_eq!(fault(&summary, "tts", 1).detected_after_s, Some(1.0));
        assert_eq!(fault(&summary, "tts", 2).detected_after_s, Some(3.0));
        assert_eq!(fault(&summary, "tts", 1).recovered_after_s, Some(0.0));
        assert_eq!(fault(&summary, "tts", 2).recovered_after_s, Some(5.0));
        assert!(fault(&summary, "tts", 1).overlapped.is_empty());
        let stats = &summary.fault_stats[0];
        assert_eq!((stats.injected, stats.detected, stats.recovered), (2, 2, 2));
    }

    #[test]
    fn a_signal_already_showing_at_injection_is_not_graded_as_detected_or_missed() {
        let mut journal = Journal::new(
            json!({"detect_within_s": 10.0}),
            json!([
                alert_fault("tts", "TtsRateLimited"),
                alert_fault("db", "DbPoolSaturated")
            ]),
            200.0,
        );
        journal
            // Firing since 5 s (not from any fault); repeated by Alertmanager at 45 s.
            .alert(5.0, "TtsRateLimited", true, Some(5.0))
            .fault("tts", 1, 40.0, 50.0)
            .alert(45.0, "TtsRateLimited", true, Some(5.0))
            // Another fault, detected properly, so the SLO is measured.
            .fault("db", 1, 100.0, 110.0)
            .alert(101.5, "DbPoolSaturated", true, Some(101.4));
        let summary = journal.grade();
        let tts = fault(&summary, "tts", 1);
        assert_eq!(tts.detection, Some(DetectionStatus::AlreadySignalling));
        assert_eq!(tts.detected_after_s, None, "a repeat is not a detection");
        assert_eq!(tts.signalling_at_injection, vec!["alert TtsRateLimited"]);
        let detect = slo(&summary, "detect_within");
        assert_eq!(detect.status, SloStatus::NotMeasured, "{detect:?}");
        assert!(
            detect.why.contains("tts") && detect.why.contains("already signalling"),
            "{detect:?}"
        );
        assert_eq!(summary.verdict, Verdict::Error, "never a fleet failure");
        // With a later injection of the same fault that is detected, the fault was graded.
        journal
            .alert(60.0, "TtsRateLimited", false, None)
            .fault("tts", 2, 150.0, 160.0)
            .alert(151.0, "TtsRateLimited", true, Some(150.9));
        let summary = journal.grade();
        let detect = slo(&summary, "detect_within");
        assert!(detect.pass, "{detect:?}");
        assert!(detect.why.contains("not graded: tts #1"), "{detect:?}");
        assert_eq!(summary.verdict, Verdict::Pass, "{:?}", summary.reason);
    }

    #[test]
    fn an_alert_that_began_before_the_injection_does_not_detect_it() {
        // startsAt 2 s before the injection, first heard of 3 s after it.
        let mut journal = Journal::new(
            json!({"detect_within_s": 10.0}),
            json!([alert_fault("tts", "TtsRateLimited")]),
            100.0,
        );
        journal
            .fault("tts", 1, 40.0, 50.0)
            .alert(43.0, "TtsRateLimited", true, Some(38.0));
        let summary = journal.grade();
        let tts = fault(&summary, "tts", 1);
        assert_eq!(tts.detection, Some(DetectionStatus::AlreadySignalling));
        assert_eq!(tts.detected_after_s, None);
    }

    #[test]
    fn overlapping_faults_sharing_a_signal_are_counted_once() {
        let mut journal = Journal::new(
            json!({"detect_within_s": 10.0}),
            json!([
                alert_fault("tts-error", "TtsDegraded"),
                alert_fault("tts-proxy", "TtsDegraded")
            ]),
            200.0,
        );
        journal
            .fault("tts-error", 1, 40.0, 60.0)
            .alert(41.0, "TtsDegraded", true, Some(40.9))
            .fault("tts-proxy", 1, 50.0, 70.0)
            .alert(76.0, "TtsDegraded", false, None);
        let summary = journal.grade();
        assert_eq!(
            fault(&summary, "tts-error", 1).detection,
            Some(DetectionStatus::Detected)
        );
        let proxy = fault(&summary, "tts-proxy", 1);
        assert_eq!(proxy.detection, Some(DetectionStatus::SharedSignal));
        assert!(
            proxy
                .notes
                .iter()
                .any(|note| note.contains("overlapping tts-error #1, shared signal")),
            "{proxy:#?}"
        );
        let detect = slo(&summary, "detect_within");
        assert!(detect.pass, "{detect:?}");
        let stats = summary
            .fault_stats
            .iter()
            .find(|s| s.name == "tts-proxy")
            .unwrap();
        assert_eq!(stats.detected, 0, "not double-counted");
        assert_eq!(stats.not_detectable, 1, "nor counted as missed");
    }

    /// A fault injected four times: once while its alert was still firing from before, twice
    /// detected, once missed. Its stats say 2 detected and 1 not detectable, so the one
    /// missed is the only one unaccounted for; the time to detect is over the two detected.
    #[test]
    fn fault_stats_count_injections_that_could_not_be_detected() {
        let mut journal = Journal::new(
            json!({"detect_within_s": 10.0}),
            json!([alert_fault("tts", "TtsRateLimited")]),
            200.0,
        );
        journal
            .alert(5.0, "TtsRateLimited", true, Some(5.0))
            .fault("tts", 1, 20.0, 25.0)
            .alert(30.0, "TtsRateLimited", false, None)
            .fault("tts", 2, 60.0, 65.0)
            .alert(62.0, "TtsRateLimited", true, Some(62.0))
            .alert(70.0, "TtsRateLimited", false, None)
            .fault("tts", 3, 100.0, 105.0)
            .alert(104.0, "TtsRateLimited", true, Some(104.0))
            .alert(110.0, "TtsRateLimited", false, None)
            .fault("tts", 4, 140.0, 145.0);
        let summary = journal.grade();
        let stats = &summary.fault_stats[0];
        assert_eq!(
            (
                stats.injected,
                stats.confirmed,
                stats.detected,
                stats.not_detectable
            ),
            (4, 4, 2, 1),
            "{stats:?}"
        );
        let detect = stats.time_to_detect_s.as_ref().unwrap();
        assert_eq!((detect.count, detect.max), (2, 4.0), "{detect:?}");
        let verdict = slo(&summary, "detect_within");
        assert!(!verdict.pass, "#4 was missed: {verdict:?}");
        assert!(verdict.why.contains("tts #4"), "{verdict:?}");
    }

    #[test]
    fn the_last_repeat_cleared_at_the_end_of_the_run_is_not_graded_unrecovered() {
        let mut journal = Journal::new(
            json!({"recover_within_s": 30.0}),
            json!([alert_fault("tts", "TtsRateLimited")]),
            100.0,
        );
        journal
            .fault("tts", 1, 20.0, 30.0)
            // The last repeat, cut short by the end of the run.
            .fault("tts", 2, 95.0, 99.5)
            .failing(100.0);
        let summary = journal.grade();
        assert_eq!(
            fault(&summary, "tts", 2).recovery,
            Some(RecoveryStatus::NotMeasured)
        );
        let recover = slo(&summary, "recover_within");
        assert!(recover.pass, "{recover:?}");
        assert!(recover.why.contains("not graded: tts #2"), "{recover:?}");
        assert_eq!(summary.verdict, Verdict::Pass, "{:?}", summary.reason);
    }

    #[test]
    fn thresholds_compare_unrounded_values() {
        // Down 0.305 s of 100 s probed: 99.695% is below 99.7% (and says so).
        let mut journal = Journal::new(json!({"uptime_min_pct": 99.7}), json!([]), 100.5);
        journal.health(50.0, false).health(50.305, true);
        let summary = journal.grade();
        let uptime = slo(&summary, "uptime");
        assert!(!uptime.pass, "{uptime:?}");
        assert_eq!(uptime.measured, "99.69%");
        // Exactly at the threshold passes.
        let mut journal = Journal::new(json!({"uptime_min_pct": 99.7}), json!([]), 100.5);
        journal.health(50.0, false).health(50.3, true);
        let summary = journal.grade();
        assert!(
            slo(&summary, "uptime").pass,
            "{:?}",
            slo(&summary, "uptime")
        );
        assert_eq!(crate::grade::shown(99.4951, 99.5, 2), "99.495");
        assert_eq!(crate::grade::shown(99.5, 99.5, 2), "99.50");
        assert_eq!(crate::grade::shown(97.123, 99.5, 2), "97.12");
    }

    /// Call success exactly at its threshold passes; a rate that prints as the threshold
    /// at two decimals but is below it fails, and is shown with the decimals that say so.
    #[test]
    fn call_success_compares_the_unrounded_rate() {
        let graded = |completed: u64, failed: u64| {
            let mut journal = Journal::new(json!({"call_success_min_pct": 99.5}), json!([]), 0.0);
            journal.push(interval(0.0, 5.0, completed, failed));
            journal.grade()
        };
        // 199 of 200: 99.5% exactly.
        let summary = graded(199, 1);
        let success = slo(&summary, "call_success");
        assert!(success.pass, "{success:?}");
        assert_eq!(success.measured, "99.50%");
        // 39,799 of 40,000: 99.4975%, which rounds to 99.50% but is below 99.5%.
        let summary = graded(39_799, 201);
        let success = slo(&summary, "call_success");
        assert!(!success.pass, "{success:?}");
        assert!(
            success.measured.starts_with("99.49") && success.measured != "99.50%",
            "{success:?}"
        );
    }

    /// `fleet_process` RSS samples at 40, 60, 80 and 100 s (after the 20 s warm-up of a
    /// 100 s run) growing `bytes_per_s`.
    fn rss_growing(bytes_per_s: f64, max_mib_h: f64) -> Summary {
        let mut journal = Journal::new(
            json!({"memory_growth_max_mib_h": max_mib_h}),
            json!([]),
            100.0,
        );
        for t in [40.0, 60.0, 80.0, 100.0] {
            journal.push(json!({"event": "fleet_process", "t_s": t, "seen_s": t,
                "rss_bytes": 100e6 + bytes_per_s * t}));
        }
        journal.grade()
    }

    /// A growth slope exactly at its threshold passes; one that prints as the threshold at
    /// one decimal but is past it fails.
    #[test]
    fn growth_compares_the_unrounded_slope() {
        // 65,536 B/s is 225 MiB/h exactly (and so is the least-squares slope of these
        // samples, in binary floating point).
        let summary = rss_growing(65_536.0, 225.0);
        let memory = slo(&summary, "memory_growth");
        assert!(memory.pass, "{memory:?}");
        assert_eq!(memory.measured, "225.0MiB/h");
        // 225.04 MiB/h: "225.0" at one decimal, past the threshold.
        let summary = rss_growing(225.04 * 1024.0 * 1024.0 / 3600.0, 225.0);
        let memory = slo(&summary, "memory_growth");
        assert!(!memory.pass, "{memory:?}");
        assert_eq!(memory.measured, "225.04MiB/h");
    }

    /// An external fleet watched through `[observe] rss_metric` alone (no pid file, no
    /// process): its RSS comes from `fleet_sample` records, and memory_growth is measured
    /// from them, passing or failing by their slope.
    #[test]
    fn memory_growth_is_graded_from_the_rss_metric_alone() {
        let graded = |bytes_per_s: f64| {
            let mut journal =
                Journal::new(json!({"memory_growth_max_mib_h": 50.0}), json!([]), 300.0);
            journal.push(json!({"event": "observers", "t_s": 0.2, "process": null,
                "metrics": {"url": "http://127.0.0.1:9/metrics", "interval_s": 10.0,
                    "rss_metric": "indie_memory_rss_bytes", "temp_dir_metric": null},
                "rss_source": "metrics", "temp_dir_source": null}));
            // Every 10 s, as the observers sample /metrics.
            for step in 1..=30 {
                let t = f64::from(step) * 10.0;
                journal.push(json!({"event": "fleet_sample", "t_s": t, "seen_s": t,
                    "rss_bytes": 200e6 + bytes_per_s * t, "temp_dir_bytes": null}));
            }
            journal.grade()
        };
        // 100 MiB/h: a leak.
        let summary = graded(100.0 * 1024.0 * 1024.0 / 3600.0);
        let memory = slo(&summary, "memory_growth");
        assert_eq!(memory.status, SloStatus::Fail, "{memory:?}");
        assert_eq!(memory.measured, "100.0MiB/h");
        assert!(memory.why.contains("a leak at this rate"), "{memory:?}");
        assert_eq!(summary.fleet.rss_growth_mib_per_h, Some(100.0));
        assert_eq!(summary.verdict, Verdict::Fail);
        // 10 MiB/h: within the 50 allowed.
        let summary = graded(10.0 * 1024.0 * 1024.0 / 3600.0);
        let memory = slo(&summary, "memory_growth");
        assert_eq!(memory.status, SloStatus::Pass, "{memory:?}");
        assert_eq!(memory.measured, "10.0MiB/h");
        assert_eq!(summary.verdict, Verdict::Pass, "{:?}", summary.reason);
    }

    #[test]
    fn what_the_run_could_not_measure_is_an_error_not_a_failure() {
        let journal = Journal::new(
            json!({"uptime_min_pct": 99.0, "max_crashes": 0, "memory_growth_max_mib_h": 10.0}),
            json!([]),
            100.0,
        );
        let mut records = journal.records.clone();
        records.retain(|record| record["event"] != "health");
        let summary = Journal { records }.grade();
        for name in ["uptime", "max_crashes", "memory_growth"] {
            let verdict = slo(&summary, name);
            assert_eq!(verdict.status, SloStatus::NotMeasured, "{verdict:?}");
            assert!(!verdict.pass);
        }
        assert_eq!(summary.verdict, Verdict::Error);
        let reason = summary.reason.unwrap();
        assert!(reason.starts_with("not measured: uptime"), "{reason}");
        assert_eq!(summary.verdict.exit_code(), crate::exit::HARNESS_ERROR);
    }

    #[test]
    fn an_abort_condition_is_the_fleets_failure_a_kill_switch_is_not() {
        let mut journal = Journal::new(json!({}), json!([]), 100.0);
        let ended = journal
            .records
            .iter_mut()
            .find(|record| record["event"] == "run_ended")
            .unwrap();
        ended["stopped"] = "abort condition: call success 12% over the last 60s".into();
        ended["stopped_by"] = "abort_condition".into();
        let summary = journal.grade();
        assert_eq!(summary.verdict, Verdict::Fail);
        assert!(summary.reason.unwrap().starts_with("abort condition"));
        let ended = journal
            .records
            .iter_mut()
            .find(|record| record["event"] == "run_ended")
            .unwrap();
        ended["stopped"] = "kill switch: ABORT appeared".into();
        ended["stopped_by"] = "kill_switch".into();
        assert_eq!(journal.grade().verdict, Verdict::Aborted);
    }

    #[test]
    fn a_harness_task_that_failed_makes_the_run_an_error() {
        let mut journal = Journal::new(
            json!({"detect_within_s": 10.0}),
            json!([alert_fault("tts", "TtsRateLimited")]),
            100.0,
        );
        // The hub died: the fault looks undetected, but that is the harness's doing.
        journal
            .fault("tts", 1, 20.0, 30.0)
            .push(json!({"event": "harness_error",
            "t_s": 25.0, "task": "observers' hub", "error": "it panicked: boom"}));
        let summary = journal.grade();
        assert!(!slo(&summary, "detect_within").pass);
        assert_eq!(summary.verdict, Verdict::Error);
        assert!(
            summary
                .reason
                .unwrap()
                .contains("observers' hub at 25.0s: it panicked: boom")
        );
    }

    #[test]
    fn a_journal_with_negative_and_absurd_values_grades_without_panicking() {
        let mut journal = Journal::new(
            json!({"detect_within_s": -5.0, "recover_within_s": -1.0, "stable_window_s": -3.0,
                "uptime_min_pct": -2.0, "call_success_min_pct": 99.0}),
            json!([alert_fault("tts", "TtsRateLimited")]),
            100.0,
        );
        journal
            .fault("tts", 1, -20.0, -30.0)
            .alert(-5.0, "TtsRateLimited", true, Some(-1e12))
            .health(-3.0, false)
            .push(json!({"event": "fleet_process", "t_s": -1.0, "rss_bytes": -5.0}))
            .push(json!({"event": "interval", "t_s": -4.0, "from_s": 10.0, "completed": 1}));
        let summary = journal.grade();
        // Each unusable threshold or duration is named, and its SLO is not graded (the
        // README's rule); the usable one still is.
        let problems = &summary.journal.problems;
        for named in [
            "detect_within_s = -5 is not a usable threshold",
            "recover_within_s = -1 is not a usable threshold",
            "uptime_min_pct = -2 is not a usable threshold",
            "stable_window_s = -3 is not usable; the default applies",
        ] {
            assert!(
                problems.iter().any(|problem| problem.contains(named)),
                "{named}: {problems:?}"
            );
        }
        for dropped in ["detect_within", "recover_within", "uptime"] {
            assert!(
                summary.slos.iter().all(|slo| slo.name != dropped),
                "{dropped}: {:?}",
                summary.slos
            );
        }
        assert!(summary.slos.iter().any(|slo| slo.name == "call_success"));
        let _ = summary.render_text();
    }

    #[test]
    fn detections_survive_a_72_hour_flapping_probe() {
        // Health flapping twice a second for 72 hours: 518,400 signals, more than the
        // 500,000 an earlier grader kept before dropping later ones (so this failed then);
        // the fault injected in the last hour is still detected.
        let end = 72.0 * 3600.0;
        let mut journal = Journal::new(
            json!({"detect_within_s": 10.0}),
            json!([{"name": "late", "kind": "tts_429", "detect": [{"alert": "Late"}], "recover_from": "clear"}]),
            0.0,
        );
        for second in 0..(72 * 3600) {
            journal.health(f64::from(second) + 0.25, false);
            journal.health(f64::from(second) + 0.75, true);
        }
        let ended = journal
            .records
            .iter_mut()
            .find(|record| record["event"] == "run_ended")
            .unwrap();
        ended["t_s"] = end.into();
        journal.fault("late", 1, end - 1800.0, end - 1700.0).alert(
            end - 1798.0,
            "Late",
            true,
            None,
        );
        let summary = journal.grade();
        assert_eq!(fault(&summary, "late", 1).detected_after_s, Some(2.0));
    }
}

//! Time to recover, impact and uptime, from the journal's intervals and health changes.
//!
//! The steady state is: health probes answer 2xx, and the calls that end meet the
//! scenario's `call_success` (each journal interval on its own), and the replies meet its
//! `response_p95` (when set). A fault is recovered from at the first moment after its clear
//! (or its injection, with `recover_from = "injection"`) from which the steady state holds
//! for `stable_window`. Calls are journaled every few seconds, so time to recover has that
//! resolution; health has the probe's.

use super::plan::SloPlan;
use super::replay::{IntervalPoint, RunRecord};

/// A stretch of time, in seconds since the run started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub from: f64,
    pub to: f64,
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        self.from < other.to && other.from < self.to
    }
}

/// The stretches in which the fleet's call endpoint was down: intervals whose calls were
/// refused at connect with none connecting, merged. Only what was seen: an interval with
/// no attempt (callers backing off while they redial, up to 30 s) says nothing, so a fleet
/// restarted after a kill is not held down until the next caller happens to dial.
pub fn calls_refused_spans(intervals: &[IntervalPoint]) -> Vec<Span> {
    let spans: Vec<Span> = intervals
        .iter()
        .filter(|interval| interval.calls_refused())
        .map(|interval| Span {
            from: interval.from_s,
            to: interval.to_s.max(interval.from_s),
        })
        .collect();
    merge(&spans)
}

/// `timeline` (a value at each change, holding until the next) with `value` forced inside
/// the `forced` stretches; before its first entry it is `before_first` (None: unknown, and
/// nothing is written there). Used to fold calls refused at connect into the health and
/// refused timelines that `uptime` reads: a fleet refusing calls is down and not listening.
pub fn forced_within(
    timeline: &[(f64, bool)],
    forced: &[Span],
    value: bool,
    before_first: Option<bool>,
) -> Vec<(f64, bool)> {
    if forced.is_empty() {
        return timeline.to_vec();
    }
    let mut times: Vec<f64> = timeline.iter().map(|(t, _)| *t).collect();
    times.extend(forced.iter().flat_map(|span| [span.from, span.to]));
    times.sort_by(f64::total_cmp);
    times.dedup();
    let mut out: Vec<(f64, bool)> = Vec::new();
    // Both are sorted: one pass with a cursor into each.
    let (mut entry, mut span) = (0, 0);
    for t in times {
        while entry < timeline.len() && timeline[entry].0 <= t {
            entry += 1;
        }
        while span < forced.len() && forced[span].to <= t {
            span += 1;
        }
        let base = entry
            .checked_sub(1)
            .map(|last| timeline[last].1)
            .or(before_first);
        let Some(base) = base else { continue };
        let now = if forced.get(span).is_some_and(|s| s.from <= t) {
            value
        } else {
            base
        };
        if out.last().is_none_or(|(_, last)| *last != now) {
            out.push((t, now));
        }
    }
    out
}

/// The health probe's unhealthy stretches, up to `end`.
pub fn unhealthy_spans(health: &[(f64, bool)], end: f64) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut down_since: Option<f64> = None;
    for &(t, healthy) in health {
        match (healthy, down_since) {
            (false, None) => down_since = Some(t),
            (true, Some(from)) => {
                spans.push(Span { from, to: t });
                down_since = None;
            }
            _ => {}
        }
    }
    if let Some(from) = down_since {
        spans.push(Span {
            from,
            to: end.max(from),
        });
    }
    spans
}

/// How long a call may wait for the agent to start answering, in an interval with no reply
/// at all, before the interval counts as a fleet that stopped answering: the response
/// threshold, or one journal interval when the scenario sets none.
const HANGING_AFTER_S: f64 = 5.0;

/// Why an interval breaks the steady state, if it does. Calls that end are graded by the
/// success threshold and their replies by the latency one; calls that do not end (the
/// fleet stopped answering, and the turn timeout is long) by how long they have waited.
pub fn interval_trouble(interval: &IntervalPoint, slo: &SloPlan) -> Option<String> {
    let hanging_after_ms = 1000.0 * slo.response_p95_max_s.unwrap_or(HANGING_AFTER_S);
    if interval.waiting > 0
        && interval.replies == 0
        && interval.longest_wait_ms as f64 > hanging_after_ms
    {
        return Some(format!(
            "{} calls waiting for the agent, the longest {:.1} s, and no reply",
            interval.waiting,
            interval.longest_wait_ms as f64 / 1000.0
        ));
    }
    let graded = interval.completed + interval.failed;
    let min_pct = slo.call_success_min_pct.unwrap_or(99.0);
    if graded > 0 && min_pct > 0.0 {
        let pct = 100.0 * interval.completed as f64 / graded as f64;
        if pct < min_pct {
            return Some(format!(
                "{} of {graded} calls failed ({pct:.0}% success)",
                interval.failed
            ));
        }
    }
    if let (Some(max_s), Some(p95_ms)) = (slo.response_p95_max_s, interval.response_p95_ms)
        && p95_ms > max_s * 1000.0
    {
        return Some(format!("response p95 {p95_ms:.0} ms"));
    }
    None
}

/// Every stretch the steady state did not hold, sorted by start.
pub fn trouble_spans(run: &RunRecord, slo: &SloPlan) -> Vec<Span> {
    let mut spans = unhealthy_spans(&run.health, run.end_s());
    spans.extend(
        run.intervals
            .iter()
            .filter(|interval| interval_trouble(interval, slo).is_some())
            .map(|interval| Span {
                from: interval.from_s,
                to: interval.to_s,
            }),
    );
    spans.sort_by(|a, b| a.from.total_cmp(&b.from));
    spans
}

/// Where a search for the steady state from a start ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found {
    /// It held from this moment for the whole stable window, or without a break until the
    /// next fault's injection (whose own trouble is not this fault's).
    Held(f64),
    /// The trouble lasted until the next fault's injection.
    TroubleAtNext,
    /// The run ended first; the steady state held from this moment to the end.
    RunEnded(f64),
}

/// The first moment from `start` on from which the steady state holds for `window`, or
/// until `next` if that comes first.
pub fn search(troubles: &[Span], start: f64, window: f64, next: f64, end: f64) -> Found {
    let mut candidate = start;
    for span in troubles {
        if span.to <= candidate {
            continue;
        }
        let held_until = (candidate + window).min(next);
        if span.from >= held_until {
            break;
        }
        candidate = span.to;
    }
    if candidate >= next {
        Found::TroubleAtNext
    } else if (candidate + window).min(next) <= end + 1e-9 {
        Found::Held(candidate)
    } else {
        Found::RunEnded(candidate.min(end))
    }
}

/// At least this much calm before the run's end counts as a recovery when a whole stable
/// window did not fit: one journal interval of calls seen succeeding.
const MIN_CALM_AT_END_S: f64 = 5.0;

/// One injection in effect, for grouping overlapping faults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// Its index in the caller's list.
    pub index: usize,
    pub injected: f64,
    /// Where its recovery counts from: its clear, or its injection (`recover_from`).
    pub start: f64,
    /// None: never cleared (the run ended while it was on).
    pub cleared: Option<f64>,
}

/// How a group of overlapping faults recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecovery {
    /// Indices of its members (the caller's), in injection order.
    pub members: Vec<usize>,
    /// Where recovery counts from: the latest start among the members.
    pub from_s: f64,
    pub status: super::replay::RecoveryStatus,
    /// When the steady state came back.
    pub at_s: Option<f64>,
    /// Until when its members' trouble is theirs: left out of uptime.
    pub excluded_until_s: f64,
}

/// Groups the faults in effect (`members`, any order) into those that overlapped and
/// finds each group's recovery. Faults overlap when one is injected before another was
/// cleared, or before the fleet recovered from it (its trouble lasted until the next
/// injection): then none of them can be told apart, and all recover together, counted from
/// the latest clear. `allowance` is how long recovery may take (`recover_within`, or the
/// stable window): past it without the steady state, a fault is not recovered even though
/// the run ended, and a fault injected after its allowance ran out does not join it (a
/// fleet that never recovers fails each fault, not one group that reaches the run's end).
pub fn recover_groups(
    members: &[Member],
    troubles: &[Span],
    window: f64,
    allowance: f64,
    end: f64,
) -> Vec<GroupRecovery> {
    use super::replay::RecoveryStatus;
    let mut sorted = members.to_vec();
    sorted.sort_by(|a, b| a.injected.total_cmp(&b.injected));
    let mut groups = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut group = vec![first.index];
        let mut from = first.start;
        let mut reach = first.cleared.unwrap_or(end);
        let mut never_cleared = first.cleared.is_none();
        let mut k = i + 1;
        let (status, at_s) = loop {
            while k < sorted.len() && sorted[k].injected <= reach {
                let member = sorted[k];
                group.push(member.index);
                from = from.max(member.start);
                reach = reach.max(member.cleared.unwrap_or(end));
                never_cleared |= member.cleared.is_none();
                k += 1;
            }
            if never_cleared {
                break (RecoveryStatus::NotMeasured, None);
            }
            let next = sorted
                .get(k)
                .map_or(f64::INFINITY, |member| member.injected);
            match search(troubles, from, window, next, end) {
                Found::Held(at) => break (RecoveryStatus::Recovered, Some(at)),
                Found::TroubleAtNext if next - from > allowance => {
                    // Still in trouble when its allowance ran out, before the next fault
                    // came: not recovered. The next fault does not rescue it (nor extend
                    // it to the end of the run); it is graded on its own.
                    break (RecoveryStatus::NotRecovered, None);
                }
                Found::TroubleAtNext => {
                    // Joined by the next fault: its injection came before this group was
                    // back (and within its allowance), so what follows is theirs together.
                    reach = reach.max(next);
                }
                Found::RunEnded(at) => {
                    break if at - from > allowance {
                        (RecoveryStatus::NotRecovered, None)
                    } else if end - at >= window.min(MIN_CALM_AT_END_S) {
                        (RecoveryStatus::Recovered, Some(at))
                    } else {
                        (RecoveryStatus::NotMeasured, None)
                    };
                }
            }
        };
        let excluded_until_s = match status {
            RecoveryStatus::Recovered => at_s.unwrap_or(from),
            RecoveryStatus::NotRecovered => from + allowance,
            RecoveryStatus::NotMeasured => end,
        }
        .max(reach.min(end))
        .min(end);
        groups.push(GroupRecovery {
            members: group,
            from_s: from,
            status,
            at_s,
            excluded_until_s,
        });
        i = k;
    }
    groups
}

/// Healthy share of the probed time outside `excluded` stretches (the fault windows).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Uptime {
    /// Rounded to 0.01 for people; the SLO compares `exact_pct`.
    pub pct: f64,
    #[serde(skip)]
    pub exact_pct: f64,
    /// Seconds between the first probe and the end, fault windows left out.
    pub probed_s: f64,
    pub down_s: f64,
    pub excluded_s: f64,
    /// Unhealthy stretches outside fault windows, and the longest of them.
    pub outages: u64,
    pub longest_outage_s: f64,
}

/// Healthy share of the probed time, leaving out `excluded` (the faults and the recovery
/// from them). A probe nothing listened for (`refused`: the fleet is down, crashed) is left
/// out only inside `down_excluded` (the faults that take the fleet down on purpose, such as
/// a process kill): a fleet that falls over while its TTS returns 429s was not meant to.
pub fn uptime(
    health: &[(f64, bool)],
    refused: &[(f64, bool)],
    end: f64,
    excluded: &[Span],
    down_excluded: &[Span],
) -> Option<Uptime> {
    let first = health.first()?.0;
    if end <= first {
        return None;
    }
    let whole = Span {
        from: first,
        to: end,
    };
    let clipped = |spans: &[Span]| {
        let mut spans: Vec<Span> = spans
            .iter()
            .filter(|span| span.overlaps(&whole))
            .map(|span| Span {
                from: span.from.max(first),
                to: span.to.min(end),
            })
            .collect();
        spans.sort_by(|a, b| a.from.total_cmp(&b.from));
        merge(&spans)
    };
    let merged = clipped(excluded);
    let merged_down = clipped(down_excluded);
    // A fold from 0.0: an empty f64 sum is -0.0, which would print as "-0s".
    let excluded_s = merged
        .iter()
        .map(|span| span.to - span.from)
        .fold(0.0, |total, length| total + length);
    let listening: Vec<(f64, bool)> = refused.iter().map(|(t, refused)| (*t, !refused)).collect();
    let down_spans = unhealthy_spans(&listening, end);
    let mut down_s = 0.0;
    // Refused time inside an exclusion that does not cover it: probed after all.
    let mut reclaimed_s = 0.0;
    let mut outages = 0;
    let mut longest: f64 = 0.0;
    for span in unhealthy_spans(health, end) {
        let mut counted = outside(span, &merged);
        for part in down_spans
            .iter()
            .filter_map(|down| intersection(span, *down))
        {
            let extra = outside(part, &merged_down) - outside(part, &merged);
            counted += extra;
            reclaimed_s += extra;
        }
        // Times are journaled to the millisecond: what float sums leave past an excluded
        // window's end is not an outage.
        if counted >= 0.001 {
            outages += 1;
            longest = longest.max(counted);
        }
        down_s += counted;
    }
    let probed_s = (end - first - excluded_s + reclaimed_s).max(0.0);
    let pct = if probed_s > 0.0 {
        100.0 * (probed_s - down_s).max(0.0) / probed_s
    } else {
        100.0
    };
    Some(Uptime {
        pct: (pct * 100.0).round() / 100.0,
        exact_pct: pct,
        probed_s: crate::journal::round_ms(probed_s),
        down_s: crate::journal::round_ms(down_s),
        excluded_s: crate::journal::round_ms(excluded_s - reclaimed_s),
        outages,
        longest_outage_s: crate::journal::round_ms(longest),
    })
}

/// Where two stretches overlap, if they do.
fn intersection(a: Span, b: Span) -> Option<Span> {
    let span = Span {
        from: a.from.max(b.from),
        to: a.to.min(b.to),
    };
    (span.to > span.from).then_some(span)
}

fn merge(sorted: &[Span]) -> Vec<Span> {
    let mut merged: Vec<Span> = Vec::new();
    for span in sorted {
        match merged.last_mut() {
            Some(last) if span.from <= last.to => last.to = last.to.max(span.to),
            _ => merged.push(*span),
        }
    }
    merged
}

/// How much of `span` lies outside the (merged, sorted) `excluded` stretches.
fn outside(span: Span, excluded: &[Span]) -> f64 {
    let covered: f64 = excluded
        .iter()
        .filter(|ex| ex.overlaps(&span))
        .map(|ex| ex.to.min(span.to) - ex.from.max(span.from))
        .sum();
    (span.to - span.from - covered).max(0.0)
}

/// Nearest-rank percentiles of a few values (times to detect or recover).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

pub fn spread(values: &[f64]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank =
        |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    let r = crate::journal::round_ms;
    Some(Spread {
        count: sorted.len(),
        mean: r(sorted.iter().sum::<f64>() / sorted.len() as f64),
        p50: r(rank(0.50)),
        p95: r(rank(0.95)),
        max: r(sorted[sorted.len() - 1]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(from: f64, to: f64) -> Span {
        Span { from, to }
    }

    #[test]
    fn recovery_is_the_start_of_the_first_stable_window() {
        let troubles = [span(10.0, 20.0), span(25.0, 30.0), span(70.0, 75.0)];
        // Cleared at 12: trouble until 20, again 25-30, then calm for 40 s.
        let none = f64::INFINITY;
        assert_eq!(
            search(&troubles, 12.0, 20.0, none, 200.0),
            Found::Held(30.0)
        );
        // A window of 50 s is broken by the trouble at 70.
        assert_eq!(
            search(&troubles, 12.0, 50.0, none, 200.0),
            Found::Held(75.0)
        );
        // ...unless the next fault is injected at 70: calm from 30 until then counts.
        assert_eq!(
            search(&troubles, 12.0, 50.0, 70.0, 200.0),
            Found::Held(30.0)
        );
        // Trouble until the next fault itself.
        assert_eq!(
            search(&troubles, 12.0, 20.0, 18.0, 200.0),
            Found::TroubleAtNext
        );
        // Calm from 20 until the next fault at 25: recovered, its trouble is its own.
        assert_eq!(
            search(&troubles, 12.0, 20.0, 25.0, 200.0),
            Found::Held(20.0)
        );
        // Calm from the start: recovered at once.
        assert_eq!(
            search(&troubles, 35.0, 20.0, none, 200.0),
            Found::Held(35.0)
        );
        // The run ends before a whole window of calm.
        assert_eq!(
            search(&troubles, 72.0, 20.0, none, 90.0),
            Found::RunEnded(75.0)
        );
        assert_eq!(search(&troubles, 72.0, 15.0, none, 90.0), Found::Held(75.0));
    }

    fn member(index: usize, injected: f64, cleared: f64) -> Member {
        Member {
            index,
            injected,
            start: cleared,
            cleared: Some(cleared),
        }
    }

    #[test]
    fn overlapping_faults_recover_together_from_the_later_clear() {
        use crate::grade::replay::RecoveryStatus::*;
        // A 10-30 and B 20-40 overlap; trouble 10-45; C 100-110 stands alone.
        let troubles = [span(10.0, 45.0), span(100.0, 112.0)];
        let members = [
            member(0, 10.0, 30.0),
            member(1, 20.0, 40.0),
            member(2, 100.0, 110.0),
        ];
        let groups = recover_groups(&members, &troubles, 20.0, 60.0, 300.0);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].members, vec![0, 1]);
        assert_eq!(groups[0].from_s, 40.0);
        assert_eq!((groups[0].status, groups[0].at_s), (Recovered, Some(45.0)));
        assert_eq!(groups[1].members, vec![2]);
        assert_eq!((groups[1].status, groups[1].at_s), (Recovered, Some(112.0)));
        assert_eq!(groups[1].excluded_until_s, 112.0);
    }

    #[test]
    fn a_fault_injected_after_the_allowance_ran_out_does_not_join_a_fleet_that_never_recovered() {
        use crate::grade::replay::RecoveryStatus::*;
        // A 10-20 and the fleet never comes back (trouble 10 to the end at 300); B is
        // injected at 100, after A's 60 s allowance ran out at 80; C at 200.
        let troubles = [span(10.0, 300.0)];
        let members = [
            member(0, 10.0, 20.0),
            member(1, 100.0, 110.0),
            member(2, 200.0, 210.0),
        ];
        let groups = recover_groups(&members, &troubles, 20.0, 60.0, 300.0);
        let shown: Vec<_> = groups
            .iter()
            .map(|group| (group.members.clone(), group.status))
            .collect();
        assert_eq!(
            shown,
            [
                (vec![0], NotRecovered),
                (vec![1], NotRecovered),
                (vec![2], NotRecovered)
            ],
            "{groups:?}"
        );
        assert_eq!(groups[0].excluded_until_s, 80.0);
        // Within the allowance, the next fault still joins: B at 70 (A's allowance runs
        // to 80), and the group's own allowance (from B's clear at 80) runs out at 140.
        let members = [member(0, 10.0, 20.0), member(1, 70.0, 80.0)];
        let groups = recover_groups(&members, &troubles, 20.0, 60.0, 300.0);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(
            (groups[0].members.clone(), groups[0].status),
            (vec![0, 1], NotRecovered)
        );
    }

    #[test]
    fn a_fault_injected_before_the_last_one_recovered_joins_it() {
        use crate::grade::replay::RecoveryStatus::*;
        // A 10-20, trouble until 35; B injected at 30 (A not back yet), cleared 40;
        // trouble until 50, then calm.
        let troubles = [span(10.0, 35.0), span(30.0, 50.0)];
        let groups = recover_groups(
            &[member(0, 10.0, 20.0), member(1, 30.0, 40.0)],
            &troubles,
            20.0,
            60.0,
            300.0,
        );
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].members, vec![0, 1]);
        assert_eq!(groups[0].from_s, 40.0);
        assert_eq!((groups[0].status, groups[0].at_s), (Recovered, Some(50.0)));
        // Calm from 25 until B's injection at 30: A recovered before B, alone.
        let calm = [span(10.0, 25.0), span(30.0, 50.0)];
        let groups = recover_groups(
            &[member(0, 10.0, 20.0), member(1, 30.0, 40.0)],
            &calm,
            20.0,
            60.0,
            300.0,
        );
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].at_s, Some(25.0));
    }

    #[test]
    fn at_the_end_of_the_run_recovery_is_graded_only_when_it_can_be_told() {
        use crate::grade::replay::RecoveryStatus::*;
        let grade = |troubles: &[Span], cleared: f64, end: f64| {
            let groups = recover_groups(&[member(0, 10.0, cleared)], troubles, 20.0, 30.0, end);
            (groups[0].status, groups[0].at_s)
        };
        // Cleared 2 s before the end, in trouble: too soon to tell.
        assert_eq!(
            grade(&[span(10.0, 100.0)], 98.0, 100.0),
            (NotMeasured, None)
        );
        // Calm 8 s before the end (a whole interval): recovered, though no full window.
        assert_eq!(
            grade(&[span(10.0, 92.0)], 90.0, 100.0),
            (Recovered, Some(92.0))
        );
        // In trouble for 40 s after the clear with 30 s allowed: not recovered.
        assert_eq!(
            grade(&[span(10.0, 100.0)], 60.0, 100.0),
            (NotRecovered, None)
        );
        // Never cleared: not measured.
        let never = Member {
            cleared: None,
            ..member(0, 10.0, 10.0)
        };
        let groups = recover_groups(&[never], &[], 20.0, 30.0, 100.0);
        assert_eq!(groups[0].status, NotMeasured);
    }

    #[test]
    fn uptime_leaves_fault_windows_out() {
        // Probed 0-100; down 10-20 (inside a fault 5-25) and 50-54 (outside).
        let health = [
            (0.0, true),
            (10.0, false),
            (20.0, true),
            (50.0, false),
            (54.0, true),
        ];
        let up = uptime(&health, &[], 100.0, &[span(5.0, 25.0)], &[]).unwrap();
        assert_eq!(up.probed_s, 80.0);
        assert_eq!(up.down_s, 4.0);
        assert_eq!(up.pct, 95.0);
        assert_eq!(up.outages, 1);
        assert_eq!(up.longest_outage_s, 4.0);
        // Down exactly while a fault was on, the window's end a float sum away: no outage.
        let window = Span {
            from: 0.1 + 0.2,
            to: 10.0 + 0.1 + 0.2,
        };
        let health = [(0.0, true), (0.3, false), (10.3, true)];
        let inside = uptime(&health, &[], 20.0, &[window], &[]).unwrap();
        assert_eq!((inside.outages, inside.pct), (0, 100.0), "{inside:?}");
        // Down at the end and never back: counted up to the end.
        let up = uptime(&[(0.0, true), (90.0, false)], &[], 100.0, &[], &[]).unwrap();
        assert_eq!(up.pct, 90.0);
        assert_eq!(uptime(&[], &[], 100.0, &[], &[]), None);
        let nothing_left_out = uptime(&[(0.0, true)], &[], 10.0, &[], &[]).unwrap();
        assert!(nothing_left_out.excluded_s.is_sign_positive(), "not -0");
    }

    #[test]
    fn a_fleet_down_inside_a_fault_that_does_not_take_it_down_is_an_outage() {
        // Unhealthy 10-40 inside a TTS fault's window 5-50; of that, nothing listened
        // 20-30 (it crashed and was restarted).
        let health = [(0.0, true), (10.0, false), (40.0, true)];
        let refused = [(0.0, false), (20.0, true), (30.0, false)];
        let tts = [span(5.0, 50.0)];
        let up = uptime(&health, &refused, 100.0, &tts, &[]).unwrap();
        assert_eq!(
            (up.down_s, up.outages, up.longest_outage_s),
            (10.0, 1, 10.0)
        );
        // Probed: 100 s less the 45 s fault window, plus the 10 s it was down within it.
        assert_eq!(up.probed_s, 65.0);
        assert_eq!(up.excluded_s, 35.0);
        // A process kill takes it down on purpose: left out.
        let up = uptime(&health, &refused, 100.0, &tts, &tts).unwrap();
        assert_eq!((up.down_s, up.outages, up.pct), (0.0, 0, 100.0));
        // Refused outside every fault counts once, not twice.
        let up = uptime(&health, &refused, 100.0, &[], &[]).unwrap();
        assert_eq!((up.down_s, up.outages, up.probed_s), (30.0, 1, 100.0));
    }

    #[test]
    fn calls_refused_at_connect_are_downtime_whatever_health_said() {
        let interval = |from_s: f64, connected, refused| IntervalPoint {
            from_s,
            to_s: from_s + 5.0,
            completed: connected,
            failed: refused,
            connected,
            refused,
            replies: 0,
            waiting: 0,
            longest_wait_ms: 0,
            active: None,
            response_p50_ms: None,
            response_p99_ms: None,
            response_p95_ms: None,
            pacing_p99_ms: None,
            host_cpu_pressure_pct: None,
        };
        // 20-30 s every call refused, 30-35 s one got through again: down 20-30 s.
        let intervals: Vec<IntervalPoint> = (0..8)
            .map(|i| {
                let from = f64::from(i) * 5.0;
                match i {
                    4 | 5 => interval(from, 0, 3),
                    6 => interval(from, 1, 2),
                    _ => interval(from, 2, 0),
                }
            })
            .collect();
        let refusing = calls_refused_spans(&intervals);
        assert_eq!(refusing, vec![span(20.0, 30.0)]);
        // An interval nobody dialled in (callers backing off) is not called down.
        let mut gap = intervals.clone();
        gap[5] = interval(25.0, 0, 0);
        assert_eq!(calls_refused_spans(&gap), vec![span(20.0, 25.0)]);
        // Health answered 200 throughout (another process serves it).
        let health = [(0.0, true)];
        let health = forced_within(&health, &refusing, false, None);
        assert_eq!(health, vec![(0.0, true), (20.0, false), (30.0, true)]);
        let refused = forced_within(&[], &refusing, true, Some(false));
        assert_eq!(refused, vec![(20.0, true), (30.0, false)]);
        let up = uptime(&health, &refused, 40.0, &[], &[]).unwrap();
        assert_eq!((up.down_s, up.outages), (10.0, 1));
        assert_eq!(up.pct, 75.0);
        // Inside a process kill it is the fault's doing: left out, not an outage.
        let killed = uptime(
            &health,
            &refused,
            40.0,
            &[span(18.0, 32.0)],
            &[span(18.0, 32.0)],
        );
        assert_eq!(killed.unwrap().outages, 0);
        // Inside a TTS fault it is not: a fleet that falls over under a 429 was not meant to.
        let tts = uptime(&health, &refused, 40.0, &[span(18.0, 32.0)], &[]).unwrap();
        assert_eq!((tts.down_s, tts.outages), (10.0, 1));
        // Before the first probe nothing is known: nothing written there.
        assert_eq!(
            forced_within(&[(25.0, true)], &refusing, false, None),
            vec![(25.0, false), (30.0, true)]
        );
        // Nothing refused: the timelines are untouched.
        assert_eq!(
            forced_within(&[(0.0, true)], &[], false, None),
            vec![(0.0, true)]
        );
    }

    #[test]
    fn an_interval_of_calls_left_waiting_is_trouble_though_none_ended() {
        let interval = |waiting, longest_wait_ms, replies| IntervalPoint {
            from_s: 0.0,
            to_s: 5.0,
            completed: 0,
            failed: 0,
            connected: 0,
            refused: 0,
            replies,
            waiting,
            longest_wait_ms,
            active: None,
            response_p50_ms: None,
            response_p95_ms: None,
            response_p99_ms: None,
            pacing_p99_ms: None,
            host_cpu_pressure_pct: None,
        };
        let slo = SloPlan::default();
        assert!(interval_trouble(&interval(2, 6_500, 0), &slo).is_some());
        // A wait shorter than the threshold, or replies coming: the fleet answers.
        assert!(interval_trouble(&interval(2, 4_000, 0), &slo).is_none());
        assert!(interval_trouble(&interval(2, 6_500, 3), &slo).is_none());
        let patient = SloPlan {
            response_p95_max_s: Some(10.0),
            ..SloPlan::default()
        };
        assert!(interval_trouble(&interval(1, 6_500, 0), &patient).is_none());
        assert_eq!(
            interval_trouble(&interval(1, 10_500, 0), &patient).as_deref(),
            Some("1 calls waiting for the agent, the longest 10.5 s, and no reply")
        );
    }

    #[test]
    fn spread_of_repeated_injections() {
        let s = spread(&[4.0, 1.0, 3.0, 2.0, 10.0]).unwrap();
        assert_eq!(
            (s.count, s.p50, s.p95, s.max, s.mean),
            (5, 3.0, 10.0, 10.0, 4.0)
        );
        assert_eq!(spread(&[]), None);
    }
}

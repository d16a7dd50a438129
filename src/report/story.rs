//! One fault injection told in words, the same in the terminal summary, `report.md` and
//! `junit.xml`. Text from the fleet or the scenario is escaped ([`crate::escape::line`]).

use crate::escape::line as shown;
use crate::grade::FaultReport;
use crate::grade::replay::{DetectionStatus, RecoveryStatus};
use crate::scenario::faults::RecoverFrom;

/// What the reports say about one injection.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStory {
    /// `tts #2 (tts_429)`; the kind only where the name is not the kind.
    pub label: String,
    /// `30.0s–45.0s`, `from 30.0s`, or `planned at 30.0s, not injected`.
    pub window: String,
    /// `in effect`, `NOT IN EFFECT` or `in effect, NOT UNDONE`.
    pub state: &'static str,
    /// `detected after 0.2s (alert TtsRateLimited)`, `no detection seen`, … or empty; with
    /// how far over `detect_within` when it missed it (`…, 5.0s over detect_within 10s`).
    pub detection: String,
    /// `recovered 5.0s after its clear`, `not recovered`, `recovery not measured`, or empty;
    /// `steady state not back within recover_within 1m of its clear` when it missed that.
    /// When it overlapped other faults, the time counts from the group's last clear, and the
    /// text says so: `recovered 5.0s after the overlapping faults' last clear at 46.0s`.
    pub recovery: String,
    /// `overlapped tts_429 #3 from 16.0s, …`, or empty.
    pub overlapped: String,
    /// `5.0s over detect_within 10s`: detected, but too late.
    pub detection_over: Option<String>,
    /// `5.0s over recover_within 1m`: recovered, but too late.
    pub recovery_over: Option<String>,
    /// `3 calls failed`, or empty.
    pub impact: String,
    /// What went wrong with it, if anything: the message of its failed JUnit case.
    pub problem: Option<Problem>,
}

/// Whether an injection counts against the fleet or against the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The fleet did not notice it, or did not recover from it.
    Fleet(String),
    /// It was not carried out as planned (never in effect, never undone): the harness's.
    Harness(String),
    /// Never injected, or nothing to grade (already signalling, shared signal).
    NotGraded(String),
}

impl FaultStory {
    pub fn of(fault: &FaultReport) -> FaultStory {
        let kind = if fault.kind == fault.name {
            String::new()
        } else {
            format!(" ({})", fault.kind)
        };
        let label = format!("{} #{}{kind}", shown(&fault.name), fault.occurrence);
        let window = match (fault.injected_at_s, fault.cleared_at_s) {
            (Some(injected), Some(cleared)) => format!("{injected:.1}s–{cleared:.1}s"),
            (Some(injected), None) => format!("from {injected:.1}s"),
            _ => format!("planned at {:.1}s, not injected", fault.planned_at_s),
        };
        let state = if fault.clear_failed {
            "in effect, NOT UNDONE"
        } else if fault.confirmed {
            "in effect"
        } else {
            "NOT IN EFFECT"
        };
        let detection = detection(fault);
        let recovery = recovery(fault);
        let impact = fault
            .calls_failed_during
            .filter(|failed| *failed > 0)
            .map_or(String::new(), |failed| format!("{failed} calls failed"));
        let problem = problem(fault, &label, &detection, &recovery);
        let overlapped = overlapped_with(&fault.overlapped);
        FaultStory {
            label,
            window,
            state,
            detection: detection.text,
            recovery: recovery.text,
            overlapped,
            detection_over: detection.over,
            recovery_over: recovery.over,
            impact,
            problem,
        }
    }

    /// `in effect; overlapped …; detected after …; recovered …; 3 calls failed`: the
    /// non-empty parts.
    pub fn outcome(&self) -> String {
        [
            self.state,
            self.overlapped.as_str(),
            self.detection.as_str(),
            self.recovery.as_str(),
            self.impact.as_str(),
        ]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
    }
}

/// One half of the story (detection or recovery), and whether the fleet missed it.
struct Part {
    text: String,
    /// `5.0s over detect_within 10s`: it came, but too late.
    over: Option<String>,
    missed: bool,
}

impl Part {
    fn said(text: String) -> Part {
        Part {
            text,
            over: None,
            missed: false,
        }
    }

    /// `text`, or `text, 5.0s over detect_within 10s` (missed) when `after` is over `limit`.
    fn timed(text: String, after: f64, limit: Option<f64>, slo: &str) -> Part {
        match limit.filter(|limit| after > *limit) {
            Some(limit) => {
                let over = format!("{:.1}s over {slo} {}", after - limit, within(limit));
                Part {
                    text: format!("{text}, {over}"),
                    over: Some(over),
                    missed: true,
                }
            }
            None => Part::said(text),
        }
    }
}

/// A limit as the SLO table writes it: `10s`, `1m 30s`, `500ms`.
fn within(limit: f64) -> String {
    humantime::format_duration(std::time::Duration::from_secs_f64(limit.max(0.0))).to_string()
}

fn detection(fault: &FaultReport) -> Part {
    match (fault.detection, &fault.detected_by, fault.detected_after_s) {
        (Some(DetectionStatus::SharedSignal), _, _) => {
            Part::said("shared signal with an overlapping fault".to_owned())
        }
        (Some(DetectionStatus::HarnessAway), _, _) => {
            Part::said("the harness died before any signal of it".to_owned())
        }
        (Some(DetectionStatus::AlreadySignalling), _, _) => Part::said(format!(
            "already signalling at injection ({})",
            shown(&fault.signalling_at_injection.join(", "))
        )),
        (_, Some(by), Some(after)) => {
            let text = format!("detected after {after:.1}s ({})", shown(by));
            Part::timed(text, after, fault.detect_within_s, "detect_within")
        }
        _ if fault.confirmed => Part {
            text: match fault.detect_within_s {
                Some(limit) => format!("no detection seen (detect_within {})", within(limit)),
                None => "no detection seen".to_owned(),
            },
            over: None,
            missed: fault.detection == Some(DetectionStatus::Undetected),
        },
        _ => Part::said(String::new()),
    }
}

fn recovery(fault: &FaultReport) -> Part {
    if !fault.confirmed {
        return Part::said(String::new());
    }
    let from = counted_from(fault);
    match (fault.recovery, fault.recovered_after_s) {
        (Some(RecoveryStatus::Recovered), Some(after)) => {
            let text = format!("recovered {after:.1}s after {from}");
            Part::timed(text, after, fault.recover_within_s, "recover_within")
        }
        (Some(RecoveryStatus::NotMeasured), _) => Part::said("recovery not measured".to_owned()),
        _ => Part {
            text: match fault.recover_within_s {
                Some(limit) => format!(
                    "steady state not back within recover_within {} of {from}",
                    within(limit)
                ),
                None => "not recovered".to_owned(),
            },
            over: None,
            missed: fault.recovery == Some(RecoveryStatus::NotRecovered),
        },
    }
}

/// How many of the faults an injection overlapped are named; summary.json has them all.
const OVERLAPPED_NAMED: usize = 3;

/// `overlapped tts_429 #3 from 16.0s, db #2 from 20.0s, leak #1 from 22.0s and 4 more` (in
/// a dense soak, a group of overlapping faults can hold dozens), or empty: it overlapped
/// none.
fn overlapped_with(others: &[String]) -> String {
    if others.is_empty() {
        return String::new();
    }
    let named = others[..others.len().min(OVERLAPPED_NAMED)].join(", ");
    let named = shown(&named);
    match others.len().saturating_sub(OVERLAPPED_NAMED) {
        0 => format!("overlapped {named}"),
        more => format!("overlapped {named} and {more} more"),
    }
}

/// What its recovery time counts from: `its clear` (or `its injection`), or, when it
/// overlapped other faults and the grader counted from a later clear of theirs,
/// `the overlapping faults' last clear at 46.0s`.
fn counted_from(fault: &FaultReport) -> String {
    let own_name = fault.recover_from.map_or("clear", |from| from.name());
    let own_at = match fault.recover_from {
        Some(RecoverFrom::Injection) => fault.injected_at_s,
        _ => fault.cleared_at_s,
    };
    match (fault.recovery_from_s, own_at) {
        (Some(from), Some(own)) if !fault.overlapped.is_empty() && from - own > 0.05 => {
            format!("the overlapping faults' last clear at {from:.1}s")
        }
        _ => format!("its {own_name}"),
    }
}

fn problem(fault: &FaultReport, label: &str, detection: &Part, recovery: &Part) -> Option<Problem> {
    if fault.injected_at_s.is_none() {
        return Some(Problem::NotGraded(format!("{label} was not injected")));
    }
    if fault.clear_failed {
        return Some(Problem::Harness(format!("{label} could not be undone")));
    }
    if !fault.confirmed {
        return Some(Problem::Harness(format!(
            "{label} was never seen in effect: {}",
            shown(fault.notes.first().map_or("", String::as_str))
        )));
    }
    if matches!(
        fault.detection,
        Some(
            DetectionStatus::AlreadySignalling
                | DetectionStatus::SharedSignal
                | DetectionStatus::HarnessAway
        )
    ) {
        return Some(Problem::NotGraded(format!("{label}: {}", detection.text)));
    }
    let missed: Vec<&str> = [detection, recovery]
        .into_iter()
        .filter(|part| part.missed)
        .map(|part| part.text.as_str())
        .collect();
    (!missed.is_empty()).then(|| Problem::Fleet(format!("{label}: {}", missed.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tts #1`, in effect from 10 s to 20 s, held to detect_within 10 s and recover_within
    /// 30 s, detected after `detected` and recovered (or not) after `recovered`.
    fn fault(detected: Option<f64>, recovered: Option<f64>) -> FaultReport {
        FaultReport {
            injected_at_s: Some(10.0),
            cleared_at_s: Some(20.0),
            confirmed: true,
            detection: Some(if detected.is_some() {
                DetectionStatus::Detected
            } else {
                DetectionStatus::Undetected
            }),
            detected_after_s: detected,
            detected_by: detected.map(|_| "alert TtsRateLimited".to_owned()),
            recovery: Some(if recovered.is_some() {
                RecoveryStatus::Recovered
            } else {
                RecoveryStatus::NotRecovered
            }),
            recovered_after_s: recovered,
            detect_within_s: Some(10.0),
            recover_within_s: Some(30.0),
            ..FaultReport::planned("tts_429", "tts".into(), 1, 10.0)
        }
    }

    fn fleet_problem(fault: &FaultReport) -> Option<String> {
        match FaultStory::of(fault).problem {
            Some(Problem::Fleet(message)) => Some(message),
            None => None,
            other => panic!("not the fleet's: {other:?}"),
        }
    }

    #[test]
    fn an_injection_within_its_limits_has_no_problem() {
        assert_eq!(fleet_problem(&fault(Some(10.0), Some(30.0))), None);
        // Without the SLOs, nothing is late.
        let unlimited = FaultReport {
            detect_within_s: None,
            recover_within_s: None,
            ..fault(Some(100.0), Some(100.0))
        };
        assert_eq!(fleet_problem(&unlimited), None);
    }

    #[test]
    fn an_injection_past_its_limits_says_by_how_much() {
        assert_eq!(
            fleet_problem(&fault(Some(15.0), Some(45.5))).unwrap(),
            "tts #1 (tts_429): detected after 15.0s (alert TtsRateLimited), 5.0s over \
             detect_within 10s; recovered 45.5s after its clear, 15.5s over recover_within 30s"
        );
        assert_eq!(
            fleet_problem(&fault(None, None)).unwrap(),
            "tts #1 (tts_429): no detection seen (detect_within 10s); steady state not back \
             within recover_within 30s of its clear"
        );
        let story = FaultStory::of(&fault(Some(15.0), Some(1.0)));
        assert_eq!(
            story.detection_over.as_deref(),
            Some("5.0s over detect_within 10s")
        );
        assert_eq!(story.recovery_over, None);
    }

    #[test]
    fn an_overlapped_injection_says_its_recovery_counts_from_the_groups_last_clear() {
        // Cleared at 20 s, but it overlapped `leak #2`, cleared at 46 s: the grader counted
        // its recovery from there.
        let overlapped = FaultReport {
            overlapped: vec!["leak #2 from 15.0s".into()],
            recovery_from_s: Some(46.0),
            ..fault(Some(2.0), Some(40.0))
        };
        let story = FaultStory::of(&overlapped);
        assert_eq!(
            story.recovery,
            "recovered 40.0s after the overlapping faults' last clear at 46.0s, 10.0s over \
             recover_within 30s"
        );
        assert_eq!(story.overlapped, "overlapped leak #2 from 15.0s");
        assert!(
            story
                .outcome()
                .starts_with("in effect; overlapped leak #2 from 15.0s; detected after 2.0s"),
            "{}",
            story.outcome()
        );
        let never = FaultReport {
            recovery: Some(RecoveryStatus::NotRecovered),
            recovered_after_s: None,
            ..overlapped.clone()
        };
        assert_eq!(
            fleet_problem(&never).unwrap(),
            "tts #1 (tts_429): steady state not back within recover_within 30s of the \
             overlapping faults' last clear at 46.0s"
        );
        // Overlapped, but its own clear was the group's last: "its clear", as alone.
        let last = FaultReport {
            recovery_from_s: Some(20.0),
            ..overlapped
        };
        assert_eq!(
            FaultStory::of(&last).recovery,
            "recovered 40.0s after its clear, 10.0s over recover_within 30s"
        );
        let many = FaultReport {
            overlapped: (1..=5).map(|n| format!("leak #{n} from {n}.0s")).collect(),
            ..last
        };
        assert_eq!(
            FaultStory::of(&many).overlapped,
            "overlapped leak #1 from 1.0s, leak #2 from 2.0s, leak #3 from 3.0s and 2 more"
        );
        // Alone, counted from its own clear.
        let alone = FaultStory::of(&fault(Some(2.0), Some(5.0)));
        assert_eq!(alone.recovery, "recovered 5.0s after its clear");
        assert_eq!(alone.overlapped, "");
    }

    #[test]
    fn what_the_harness_could_not_see_is_not_the_fleets_however_late() {
        let away = FaultReport {
            detection: Some(DetectionStatus::HarnessAway),
            recovery: Some(RecoveryStatus::NotMeasured),
            ..fault(None, None)
        };
        assert!(
            matches!(FaultStory::of(&away).problem, Some(Problem::NotGraded(_))),
            "{away:?}"
        );
        let unmeasured = FaultReport {
            recovery: Some(RecoveryStatus::NotMeasured),
            ..fault(Some(2.0), None)
        };
        assert_eq!(fleet_problem(&unmeasured), None);
    }
}

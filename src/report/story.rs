//! One fault injection told in words, the same in the terminal summary, `report.md` and
//! `junit.xml`. Text from the fleet or the scenario is escaped ([`crate::escape::line`]).

use crate::escape::line as shown;
use crate::grade::FaultReport;
use crate::grade::replay::{DetectionStatus, RecoveryStatus};

/// What the reports say about one injection.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStory {
    /// `tts #2 (tts_429)`; the kind only where the name is not the kind.
    pub label: String,
    /// `30.0s–45.0s`, `from 30.0s`, or `planned at 30.0s, not injected`.
    pub window: String,
    /// `in effect`, `NOT IN EFFECT` or `in effect, NOT UNDONE`.
    pub state: &'static str,
    /// `detected after 0.2s (alert TtsRateLimited)`, `no detection seen`, … or empty.
    pub detection: String,
    /// `recovered 5.0s after its clear`, `not recovered`, `recovery not measured`, or empty.
    pub recovery: String,
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
        let detection = match (fault.detection, &fault.detected_by, fault.detected_after_s) {
            (Some(DetectionStatus::SharedSignal), _, _) => {
                "shared signal with an overlapping fault".to_owned()
            }
            (Some(DetectionStatus::HarnessAway), _, _) => {
                "the harness died before any signal of it".to_owned()
            }
            (Some(DetectionStatus::AlreadySignalling), _, _) => format!(
                "already signalling at injection ({})",
                shown(&fault.signalling_at_injection.join(", "))
            ),
            (_, Some(by), Some(after)) => format!("detected after {after:.1}s ({})", shown(by)),
            _ if fault.confirmed => "no detection seen".to_owned(),
            _ => String::new(),
        };
        let recovery = if fault.confirmed {
            let from = fault.recover_from.map_or("clear", |from| from.name());
            match (fault.recovery, fault.recovered_after_s) {
                (Some(RecoveryStatus::Recovered), Some(after)) => {
                    format!("recovered {after:.1}s after its {from}")
                }
                (Some(RecoveryStatus::NotMeasured), _) => "recovery not measured".to_owned(),
                _ => "not recovered".to_owned(),
            }
        } else {
            String::new()
        };
        let impact = fault
            .calls_failed_during
            .filter(|failed| *failed > 0)
            .map_or(String::new(), |failed| format!("{failed} calls failed"));
        let problem = problem(fault, &label, &detection, &recovery);
        FaultStory {
            label,
            window,
            state,
            detection,
            recovery,
            impact,
            problem,
        }
    }

    /// `in effect; detected after …; recovered …; 3 calls failed`: the non-empty parts.
    pub fn outcome(&self) -> String {
        [
            self.state,
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

fn problem(fault: &FaultReport, label: &str, detection: &str, recovery: &str) -> Option<Problem> {
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
        return Some(Problem::NotGraded(format!("{label}: {detection}")));
    }
    let undetected = fault.detection == Some(DetectionStatus::Undetected);
    let unrecovered = fault.recovery == Some(RecoveryStatus::NotRecovered);
    match (undetected, unrecovered) {
        (false, false) => None,
        (true, false) => Some(Problem::Fleet(format!("{label}: {detection}"))),
        (false, true) => Some(Problem::Fleet(format!("{label}: {recovery}"))),
        (true, true) => Some(Problem::Fleet(format!("{label}: {detection}; {recovery}"))),
    }
}

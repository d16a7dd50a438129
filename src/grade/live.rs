//! Detections as they happen, for the journal's `fault_detected` records: the observers'
//! hub hands over every signal it journals and every injection the chaos plane announces,
//! and each injection is paired with the first signal that detects it by the grader's own
//! rules ([`super::detecting_rule`]: the same match, from the injection to the fault's next
//! one). The grade made from the journal afterwards ([`super::detections`]) stays the
//! source of truth; this only tells it earlier, and the two agree because they are the
//! same rules over the same journaled signals, in journal order.

use std::collections::{HashMap, VecDeque};

use super::plan::{FaultPlan, RuleSpec};
use super::replay::{MAX_SIGNALS, Signal};
use crate::journal::round_ms;

/// Signals kept for an injection announced after them: an injection counts from when the
/// chaos plane began it, and is announced once it is in place (a process seen dead, locks
/// granted), and in between the hub may journal signals seen after it began. Seconds at
/// most; the hub journals a signal only when something changed, far fewer than this.
const RECENT_SIGNALS: usize = 256;

/// How long an injection whose window closed (its fault was injected again) still takes a
/// signal seen inside the window but handed over late. An observation reaches the hub
/// within milliseconds of being seen; this is ample.
const LATE_SIGNAL_S: f64 = 60.0;

/// A fault injected, as the chaos plane journaled it.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    pub fault: String,
    pub kind: String,
    pub occurrence: u32,
    /// The `t_s` of its `fault_injected` record: where the grader counts from.
    pub injected_at_s: f64,
}

/// An injection and the signal that detected it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub injection: Injection,
    /// When the signal was seen (its `seen_s`).
    pub seen_s: f64,
    /// `seen_s` minus the injection, rounded as the summary's `detected_after_s`.
    pub after_s: f64,
    /// The rule that matched, as the summary's `detected_by`: `alert TtsRateLimited`.
    pub by: String,
}

/// An injection not detected yet.
#[derive(Debug)]
struct Watched {
    injection: Injection,
    /// The fault's next injection: signals from then on are that one's.
    until_s: f64,
}

/// Pairs injections with the signals that detect them, once each.
#[derive(Debug)]
pub struct LiveDetections {
    faults: Vec<FaultPlan>,
    watched: Vec<Watched>,
    /// The latest injection of each fault, to close the window of the one before.
    latest: HashMap<String, f64>,
    recent: VecDeque<(f64, Signal)>,
    /// Signals handed over so far: the grader reads at most [`MAX_SIGNALS`].
    signals: usize,
    /// The latest `seen_s` so far: the hub's clock, for letting closed windows go.
    now_s: f64,
}

impl LiveDetections {
    /// Watches for the faults of the grading plan (`run_started`'s `grading`).
    pub fn new(faults: Vec<FaultPlan>) -> Self {
        LiveDetections {
            faults,
            watched: Vec::new(),
            latest: HashMap::new(),
            recent: VecDeque::new(),
            signals: 0,
            now_s: f64::NEG_INFINITY,
        }
    }

    /// A fault was injected. Returns its detection when a signal already handed over
    /// detects it.
    pub fn injected(&mut self, injection: Injection) -> Option<Detection> {
        let at = injection.injected_at_s;
        for watched in &mut self.watched {
            if watched.injection.fault == injection.fault && watched.injection.injected_at_s < at {
                watched.until_s = watched.until_s.min(at);
            }
        }
        let latest = self.latest.entry(injection.fault.clone()).or_insert(at);
        let until_s = if *latest > at {
            *latest
        } else {
            *latest = at;
            f64::INFINITY
        };
        let rules = self.rules(&injection.fault);
        if rules.is_empty() {
            return None;
        }
        if let Some((seen_s, rule)) = super::first_match(&self.recent, rules, at, until_s) {
            let by = rule.to_string();
            return Some(Detection::of(injection, seen_s, by));
        }
        self.watched.push(Watched { injection, until_s });
        None
    }

    /// The hub journaled `signal`, seen at `seen_s`. Returns the injections it detects.
    pub fn signal(&mut self, seen_s: f64, signal: &Signal) -> Vec<Detection> {
        if self.signals >= MAX_SIGNALS {
            return Vec::new();
        }
        self.signals += 1;
        self.now_s = self.now_s.max(seen_s);
        if self.recent.len() == RECENT_SIGNALS {
            self.recent.pop_front();
        }
        self.recent.push_back((seen_s, signal.clone()));
        let now_s = self.now_s;
        let mut detections = Vec::new();
        let mut watched = std::mem::take(&mut self.watched);
        watched.retain(|watched| {
            let rules = self.rules(&watched.injection.fault);
            let from_s = watched.injection.injected_at_s;
            match super::detecting_rule(seen_s, signal, rules, from_s, watched.until_s) {
                Some(rule) => {
                    let by = rule.to_string();
                    detections.push(Detection::of(watched.injection.clone(), seen_s, by));
                    false
                }
                None => watched.until_s + LATE_SIGNAL_S >= now_s,
            }
        });
        self.watched = watched;
        detections
    }

    /// The fault's `detect` rules; none for a fault the plan does not name.
    fn rules(&self, fault: &str) -> &[RuleSpec] {
        self.faults
            .iter()
            .find(|plan| plan.name == fault)
            .map_or(&[], |plan| &plan.detect)
    }
}

impl Detection {
    fn of(injection: Injection, seen_s: f64, by: String) -> Self {
        let after_s = round_ms(seen_s - injection.injected_at_s);
        Detection {
            injection,
            seen_s,
            after_s,
            by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Vec<FaultPlan> {
        vec![super::super::detection_tests::tts_fault()]
    }

    fn injection(fault: &str, occurrence: u32, at: f64) -> Injection {
        Injection {
            fault: fault.into(),
            kind: "tts_429".into(),
            occurrence,
            injected_at_s: at,
        }
    }

    fn alert(name: &str) -> Signal {
        Signal::AlertFiring(name.into())
    }

    #[test]
    fn an_injection_is_detected_once_by_the_first_matching_signal() {
        let mut live = LiveDetections::new(plan());
        assert_eq!(live.injected(injection("tts", 1, 10.0)), None);
        assert!(live.signal(11.0, &alert("SomethingElse")).is_empty());
        assert!(live.signal(11.5, &Signal::Healthy).is_empty());
        let detected = live.signal(12.2505, &alert("TtsRateLimited"));
        assert_eq!(
            detected,
            vec![Detection {
                injection: injection("tts", 1, 10.0),
                seen_s: 12.2505,
                after_s: 2.251,
                by: "alert TtsRateLimited".into(),
            }]
        );
        assert!(live.signal(13.0, &alert("TtsRateLimited")).is_empty());
        assert!(live.signal(14.0, &Signal::Unhealthy).is_empty(), "once");
    }

    #[test]
    fn a_signal_before_the_injection_does_not_count() {
        let mut live = LiveDetections::new(plan());
        assert!(live.signal(9.0, &alert("TtsRateLimited")).is_empty());
        assert_eq!(live.injected(injection("tts", 1, 10.0)), None);
        // Seen before the injection, handed over after it was announced.
        assert!(live.signal(9.9, &Signal::Unhealthy).is_empty());
        let detected = live.signal(10.0, &Signal::Unhealthy);
        assert_eq!(detected.len(), 1, "at the injection counts");
        assert_eq!(detected[0].after_s, 0.0);
        assert_eq!(detected[0].by, "health unhealthy");
    }

    #[test]
    fn a_signal_journaled_before_the_injection_was_announced_detects_it() {
        let mut live = LiveDetections::new(plan());
        assert!(live.signal(9.5, &Signal::Unhealthy).is_empty());
        assert!(live.signal(10.004, &alert("TtsRateLimited")).is_empty());
        let detected = live.injected(injection("tts", 1, 10.0)).unwrap();
        assert_eq!(
            (detected.after_s, detected.by.as_str()),
            (0.004, "alert TtsRateLimited")
        );
        assert!(live.signal(11.0, &alert("TtsRateLimited")).is_empty());
    }

    #[test]
    fn an_undetected_injection_gives_nothing_and_its_window_ends_at_the_next_one() {
        let mut live = LiveDetections::new(plan());
        assert_eq!(live.injected(injection("tts", 1, 10.0)), None);
        assert!(live.signal(20.0, &alert("Other")).is_empty());
        assert_eq!(live.injected(injection("other", 1, 30.0)), None);
        assert_eq!(live.injected(injection("tts", 2, 100.0)), None);
        // Seen inside the first window, handed over late: still the first one's.
        let late = live.signal(99.0, &Signal::Unhealthy);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].injection.occurrence, 1);
        let detected = live.signal(101.0, &alert("TtsRateLimited"));
        assert_eq!(detected.len(), 1);
        assert_eq!(detected[0].injection.occurrence, 2);
        assert_eq!(detected[0].after_s, 1.0);
        assert_eq!(live.injected(injection("tts", 3, 200.0)), None);
        assert!(live.signal(500.0, &alert("Other")).is_empty());
        assert_eq!(live.watched.len(), 1, "only the third is still watched");
    }

    #[test]
    fn a_closed_window_is_let_go_once_no_late_signal_can_come() {
        let mut live = LiveDetections::new(plan());
        assert_eq!(live.injected(injection("tts", 1, 10.0)), None);
        assert_eq!(live.injected(injection("tts", 2, 20.0)), None);
        assert!(live.signal(80.0, &alert("Other")).is_empty());
        assert_eq!(
            live.watched.len(),
            2,
            "a signal seen before 20 s may still come"
        );
        assert!(live.signal(80.001, &alert("Other")).is_empty());
        assert_eq!(live.watched.len(), 1);
        assert_eq!(live.watched[0].injection.occurrence, 2);
    }

    #[test]
    fn the_live_detections_are_the_graders() {
        use crate::grade::FaultReport;
        let injections = [(10.0, 1), (100.0, 2), (200.0, 3)];
        let signals = vec![
            (5.0, alert("TtsRateLimited")),
            (12.5, alert("SomethingElse")),
            (14.25, Signal::Unhealthy),
            (16.0, alert("TtsRateLimited")),
            (201.5, Signal::Healthy),
            (203.125, alert("TtsRateLimited")),
        ];
        let mut live = LiveDetections::new(plan());
        let mut detected = Vec::new();
        let mut pending = injections.iter().peekable();
        for (seen_s, signal) in &signals {
            while let Some((at, occurrence)) = pending.next_if(|(at, _)| at <= seen_s) {
                detected.extend(live.injected(injection("tts", *occurrence, *at)));
            }
            detected.extend(live.signal(*seen_s, signal));
        }
        for (at, occurrence) in pending {
            detected.extend(live.injected(injection("tts", *occurrence, *at)));
        }
        let mut reports: Vec<FaultReport> = injections
            .iter()
            .map(|(at, occurrence)| FaultReport {
                injected_at_s: Some(*at),
                ..FaultReport::planned("tts_429", "tts".into(), *occurrence, *at)
            })
            .collect();
        super::super::detections(&mut reports, &plan(), &signals);
        let graded: Vec<(u32, f64, String)> = reports
            .iter()
            .filter_map(|report| {
                Some((
                    report.occurrence,
                    report.detected_after_s?,
                    report.detected_by.clone()?,
                ))
            })
            .collect();
        let live: Vec<(u32, f64, String)> = detected
            .into_iter()
            .map(|detection| {
                (
                    detection.injection.occurrence,
                    detection.after_s,
                    detection.by,
                )
            })
            .collect();
        assert_eq!(live, graded);
        assert_eq!(live.len(), 2, "the second injection is never detected");
    }
}

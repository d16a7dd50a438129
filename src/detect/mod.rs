//! Detection: for each injection, the first fleet signal that *changed* because of it.
//!
//! One engine, fed the journal's records in journal order, serves both the observers' hub
//! (which journals `fault_detected` as it happens) and the grader (which replays the
//! journal afterwards), so the live lines and the summary agree by construction.
//!
//! The rules:
//! - A signal detects an injection when it *begins* at or after the injection, before the
//!   same fault's next injection, and one of the fault's `detect` rules names it: an alert
//!   that starts firing (a repeat of an alert already firing is not a new one, and an alert
//!   whose `startsAt` is before the injection was already firing), health turning
//!   unhealthy, a metric condition starting to hold, a log line.
//! - A rule whose signal was already showing when the fault was injected cannot detect it
//!   by showing: the injection is "already signalling at injection" unless another of its
//!   rules (or the same one, after it stopped) begins afterwards. Such an injection is not
//!   detectable: it is neither detected nor missed.
//! - Injections are announced a little after they began (once in place), and signals are
//!   handed over a little after they were seen, so the engine keeps the changes of the
//!   last [`RECENT_S`] seconds and rolls the state back to the injection's time.
//!
//! Memory is bounded: the current state (alert names firing, health, conditions holding),
//! the recent changes, and the injections still open. Nothing is kept per signal for the
//! whole run, so a 72-hour run with a flapping probe grades every injection.

pub mod plan;

use std::collections::{HashMap, HashSet, VecDeque};

use self::plan::{FaultPlan, RuleSpec};
use crate::journal::round_ms;
use crate::journal::signal::Signal;

/// How long changes are kept for an injection announced after them, and how long an
/// injection whose window closed still takes a signal seen inside the window but handed
/// over late. Injections are announced within seconds of their start, observations within
/// milliseconds of being seen: ample.
pub const RECENT_S: f64 = 60.0;
/// At most this many recent changes are kept, whatever their age (a fleet flooding the
/// alert receiver must not grow the harness).
const RECENT_MAX: usize = 20_000;
/// Distinct alert names tracked as firing; a fleet inventing names cannot grow it further.
const MAX_ALERT_NAMES: usize = 10_000;
/// An alert whose `startsAt` is more than this before an injection was already firing when
/// it was injected. The fleet's clock and the harness's may differ a little.
pub const STARTS_AT_TOLERANCE_S: f64 = 1.0;

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

/// How an injection's detection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Detected(Detection),
    /// No rule's signal began after the injection, and these rules' signals were already
    /// showing when it was injected: not detectable.
    AlreadySignalling {
        rules: Vec<String>,
    },
    Undetected,
}

/// One injection's final outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Graded {
    pub injection: Injection,
    pub outcome: Outcome,
}

/// What a journaled signal changed.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    seen_s: f64,
    /// When the signal began: an alert's `startsAt` (in run seconds) when the fleet gave
    /// one, else when it was seen.
    began_s: f64,
    signal: Signal,
    /// It began to show (an alert starting to fire, health turning bad, a condition
    /// starting to hold, a log line).
    onset: bool,
    /// Whether its key was showing before this change.
    was_showing: bool,
}

/// An injection not finished yet.
#[derive(Debug)]
struct Watched {
    injection: Injection,
    /// The fault's next injection: signals from then on are that one's.
    until_s: f64,
    /// The rules whose signal was showing at the injection.
    showing: Vec<String>,
    detection: Option<Detection>,
}

/// Pairs injections with the signals that detect them, once each.
#[derive(Debug)]
pub struct Detector {
    faults: Vec<FaultPlan>,
    watched: Vec<Watched>,
    /// The latest injection of each fault, to close the window of the one before.
    latest: HashMap<String, f64>,
    recent: VecDeque<Change>,
    firing: HashSet<String>,
    unhealthy: bool,
    holding: HashSet<String>,
    /// The latest `seen_s` so far: the clock for letting closed windows go.
    now_s: f64,
    finished: Vec<Graded>,
    /// Whether the last signal handed over began to show (not a repeat, not a clearing).
    last_onset: bool,
}

impl Detector {
    /// Watches for the faults of the grading plan (`run_started`'s `grading`).
    pub fn new(faults: Vec<FaultPlan>) -> Self {
        Detector {
            faults,
            watched: Vec::new(),
            latest: HashMap::new(),
            recent: VecDeque::new(),
            firing: HashSet::new(),
            unhealthy: false,
            holding: HashSet::new(),
            now_s: f64::NEG_INFINITY,
            finished: Vec::new(),
            last_onset: false,
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
        let rules = self.rules(&injection.fault).to_vec();
        if rules.is_empty() {
            // Nothing can detect it: the grader says so from the plan.
            self.finished.push(Graded {
                injection,
                outcome: Outcome::Undetected,
            });
            return None;
        }
        let showing: Vec<String> = rules
            .iter()
            .filter(|rule| self.showing_at(rule, at))
            .map(RuleSpec::to_string)
            .collect();
        let mut watched = Watched {
            injection,
            until_s,
            showing,
            detection: None,
        };
        let found = self
            .recent
            .iter()
            .find_map(|change| detecting_rule(change, &rules, at, until_s));
        if let Some((seen_s, rule)) = found {
            let detection = Detection::of(watched.injection.clone(), seen_s, rule.to_string());
            watched.detection = Some(detection.clone());
            self.watched.push(watched);
            return Some(detection);
        }
        self.watched.push(watched);
        None
    }

    /// A signal was journaled, seen at `seen_s`; `began_s` is an alert's `startsAt` in run
    /// seconds, when known. Returns the injections it detects.
    pub fn signal(&mut self, seen_s: f64, began_s: Option<f64>, signal: &Signal) -> Vec<Detection> {
        self.now_s = self.now_s.max(seen_s);
        let change = self.apply(seen_s, began_s, signal);
        self.last_onset = change.onset;
        let mut detections = Vec::new();
        for index in 0..self.watched.len() {
            let rules = self.rules(&self.watched[index].injection.fault).to_vec();
            let watched = &mut self.watched[index];
            let from_s = watched.injection.injected_at_s;
            if watched.detection.is_none()
                && let Some((seen_s, rule)) =
                    detecting_rule(&change, &rules, from_s, watched.until_s)
            {
                let detection = Detection::of(watched.injection.clone(), seen_s, rule.to_string());
                watched.detection = Some(detection.clone());
                detections.push(detection);
            } else if began_before(&change, from_s) && change.seen_s >= from_s {
                // An alert heard of only now, firing since before the injection.
                for rule in rules.iter().filter(|rule| matches(&change.signal, rule)) {
                    let rule = rule.to_string();
                    if !watched.showing.contains(&rule) {
                        watched.showing.push(rule);
                    }
                }
            }
        }
        self.recent.push_back(change);
        self.forget(false);
        detections
    }

    /// Whether the last signal handed over began to show: an alert starting to fire, not
    /// a repeat of one already firing.
    pub fn last_was_onset(&self) -> bool {
        self.last_onset
    }

    /// Every injection's outcome, once no signal can change it any more (all of them when
    /// `all`: the journal is over).
    pub fn take_finished(&mut self, all: bool) -> Vec<Graded> {
        self.forget(all);
        std::mem::take(&mut self.finished)
    }

    /// Lets go of old changes and of injections no late signal can still detect.
    fn forget(&mut self, all: bool) {
        let horizon = self.now_s - RECENT_S;
        while self.recent.len() > RECENT_MAX
            || self
                .recent
                .front()
                .is_some_and(|change| change.seen_s < horizon)
        {
            self.recent.pop_front();
        }
        let mut open = Vec::new();
        for watched in std::mem::take(&mut self.watched) {
            // A detection is final; an undetected one waits for late signals.
            let closed = watched.detection.is_some() || watched.until_s + RECENT_S < self.now_s;
            if all || closed {
                self.finished.push(watched.finish());
            } else {
                open.push(watched);
            }
        }
        self.watched = open;
    }

    /// Updates the state with a journaled signal and says what it changed.
    fn apply(&mut self, seen_s: f64, began_s: Option<f64>, signal: &Signal) -> Change {
        let (was_showing, showing) = match signal {
            Signal::AlertFiring(name) => {
                let was = self.firing.contains(name);
                if self.firing.len() < MAX_ALERT_NAMES || was {
                    self.firing.insert(name.clone());
                }
                (was, true)
            }
            Signal::AlertResolved(name) => (self.firing.remove(name), false),
            Signal::Unhealthy => (std::mem::replace(&mut self.unhealthy, true), true),
            Signal::Healthy => (std::mem::replace(&mut self.unhealthy, false), false),
            Signal::ConditionHolds(text) => (!self.holding.insert(text.clone()), true),
            Signal::ConditionCleared(text) => (self.holding.remove(text), false),
            // A log line is an event, never a state.
            Signal::LogMatched { .. } => (false, true),
        };
        let began_s = match signal {
            Signal::AlertFiring(_) => began_s.unwrap_or(seen_s).min(seen_s),
            _ => seen_s,
        };
        Change {
            seen_s,
            began_s,
            signal: signal.clone(),
            onset: showing && !was_showing,
            was_showing,
        }
    }

    /// Whether `rule`'s signal was showing at `at_s`: the state now, rolled back over the
    /// changes seen since.
    fn showing_at(&self, rule: &RuleSpec, at_s: f64) -> bool {
        let rolled_back = self
            .recent
            .iter()
            .find(|change| change.seen_s >= at_s && same_key(&change.signal, rule));
        if let Some(change) = rolled_back {
            // An alert first heard of after the injection but firing since before it.
            return change.was_showing || began_before(change, at_s);
        }
        match rule {
            RuleSpec::Alert { alert } => self.firing.contains(alert),
            RuleSpec::Health { .. } => self.unhealthy,
            RuleSpec::Metric { metric } => self.holding.contains(metric),
            RuleSpec::Log { .. } => false,
        }
    }

    /// The fault's `detect` rules; none for a fault the plan does not name.
    fn rules(&self, fault: &str) -> &[RuleSpec] {
        self.faults
            .iter()
            .find(|plan| plan.name == fault)
            .map_or(&[], |plan| &plan.detect)
    }
}

impl Watched {
    fn finish(self) -> Graded {
        let outcome = match self.detection {
            Some(detection) => Outcome::Detected(detection),
            None if !self.showing.is_empty() => Outcome::AlreadySignalling {
                rules: self.showing,
            },
            None => Outcome::Undetected,
        };
        Graded {
            injection: self.injection,
            outcome,
        }
    }
}

/// An RFC 3339 time as Alertmanager (`2026-11-23T10:00:01.25Z`) or another fleet
/// (`2026-11-23T11:00:01+01:00`) writes it; None for anything else, and for Go's zero time
/// (`0001-01-01T00:00:00Z`, "unknown").
pub fn parse_wall_clock(text: &str) -> Option<std::time::SystemTime> {
    let text = text.trim();
    // The offset is the last 6 bytes, `+hh:mm`; where they would cut a character in two,
    // there is none.
    let offset_at = text
        .len()
        .checked_sub(6)
        .filter(|at| text.is_char_boundary(*at));
    let (base, offset_s) = match offset_at.map(|at| text.split_at(at)) {
        Some((base, offset))
            if (offset.starts_with('+') || offset.starts_with('-'))
                && offset.as_bytes()[3] == b':'
                && base.contains('T') =>
        {
            let hours: i64 = offset[1..3].parse().ok()?;
            let minutes: i64 = offset[4..6].parse().ok()?;
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            (base, sign * (hours * 3600 + minutes * 60))
        }
        _ => (text.strip_suffix('Z').or(text.strip_suffix('z'))?, 0),
    };
    let utc = humantime::parse_rfc3339_weak(base).ok()?;
    if utc < std::time::UNIX_EPOCH {
        return None;
    }
    let shift = std::time::Duration::from_secs(offset_s.unsigned_abs());
    if offset_s >= 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    }
}

/// An alert change whose firing began before `at_s` (beyond the clock tolerance).
fn began_before(change: &Change, at_s: f64) -> bool {
    matches!(change.signal, Signal::AlertFiring(_)) && change.began_s < at_s - STARTS_AT_TOLERANCE_S
}

/// The rule of `rules` by which `change` detects an injection whose window is
/// `from_s..until_s`, and when it was seen.
fn detecting_rule<'a>(
    change: &Change,
    rules: &'a [RuleSpec],
    from_s: f64,
    until_s: f64,
) -> Option<(f64, &'a RuleSpec)> {
    if !change.onset || change.seen_s < from_s || change.seen_s >= until_s {
        return None;
    }
    if began_before(change, from_s) {
        return None;
    }
    rules
        .iter()
        .find(|rule| matches(&change.signal, rule))
        .map(|rule| (change.seen_s, rule))
}

/// Whether `signal` is the one `rule` names showing.
pub fn matches(signal: &Signal, rule: &RuleSpec) -> bool {
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

/// Whether `signal` is about what `rule` watches, showing or not.
fn same_key(signal: &Signal, rule: &RuleSpec) -> bool {
    match (signal, rule) {
        (Signal::AlertFiring(name) | Signal::AlertResolved(name), RuleSpec::Alert { alert }) => {
            name == alert
        }
        (Signal::Unhealthy | Signal::Healthy, RuleSpec::Health { .. }) => true,
        (
            Signal::ConditionHolds(text) | Signal::ConditionCleared(text),
            RuleSpec::Metric { metric },
        ) => text == metric,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::faults::RecoverFrom;

    /// A `tts` fault detected by its alert or by health.
    pub(crate) fn tts_fault() -> FaultPlan {
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

    fn injection(fault: &str, occurrence: u32, at: f64) -> Injection {
        Injection {
            fault: fault.into(),
            kind: "tts_429".into(),
            occurrence,
            injected_at_s: at,
        }
    }

    fn firing(name: &str) -> Signal {
        Signal::AlertFiring(name.into())
    }

    fn resolved(name: &str) -> Signal {
        Signal::AlertResolved(name.into())
    }

    /// Every outcome of the `tts` fault, by occurrence.
    fn outcomes(detector: &mut Detector) -> Vec<(u32, Outcome)> {
        let mut all: Vec<(u32, Outcome)> = detector
            .take_finished(true)
            .into_iter()
            .filter(|graded| graded.injection.fault == "tts")
            .map(|graded| (graded.injection.occurrence, graded.outcome))
            .collect();
        all.sort_by_key(|(occurrence, _)| *occurrence);
        all
    }

    #[test]
    fn an_injection_is_detected_once_by_the_first_signal_that_begins_after_it() {
        let mut detector = Detector::new(vec![tts_fault()]);
        assert_eq!(detector.injected(injection("tts", 1, 10.0)), None);
        assert!(
            detector
                .signal(11.0, None, &firing("SomethingElse"))
                .is_empty()
        );
        assert!(detector.signal(11.5, None, &Signal::Healthy).is_empty());
        let detected = detector.signal(12.2505, None, &firing("TtsRateLimited"));
        assert_eq!(
            detected,
            vec![Detection {
                injection: injection("tts", 1, 10.0),
                seen_s: 12.2505,
                after_s: 2.251,
                by: "alert TtsRateLimited".into(),
            }]
        );
        assert!(
            detector.signal(14.0, None, &Signal::Unhealthy).is_empty(),
            "once"
        );
        assert!(matches!(
            outcomes(&mut detector)[..],
            [(1, Outcome::Detected(_))]
        ));
    }

    #[test]
    fn a_repeat_of_an_alert_already_firing_is_not_a_detection() {
        let mut detector = Detector::new(vec![tts_fault()]);
        // Firing before the injection, repeated after it (Alertmanager's repeat_interval).
        detector.signal(5.0, Some(5.0), &firing("TtsRateLimited"));
        assert_eq!(detector.injected(injection("tts", 1, 10.0)), None);
        assert!(
            detector
                .signal(12.0, Some(5.0), &firing("TtsRateLimited"))
                .is_empty()
        );
        assert_eq!(
            outcomes(&mut detector),
            vec![(
                1,
                Outcome::AlreadySignalling {
                    rules: vec!["alert TtsRateLimited".into()]
                }
            )]
        );
    }

    #[test]
    fn an_alert_first_heard_after_the_injection_counts_from_its_starts_at() {
        let mut detector = Detector::new(vec![tts_fault()]);
        assert_eq!(detector.injected(injection("tts", 1, 10.0)), None);
        // The fleet's alert started at 4 s (before the injection) and reached the receiver
        // at 12 s: it was already firing, not a detection.
        assert!(
            detector
                .signal(12.0, Some(4.0), &firing("TtsRateLimited"))
                .is_empty()
        );
        // Within the clock tolerance of the injection: the fault's own.
        let mut second = Detector::new(vec![tts_fault()]);
        second.injected(injection("tts", 1, 10.0));
        let detected = second.signal(12.0, Some(9.5), &firing("TtsRateLimited"));
        assert_eq!(detected.len(), 1);
        assert_eq!(
            detected[0].after_s, 2.0,
            "timed when it reached the harness"
        );
        assert!(matches!(
            outcomes(&mut detector)[..],
            [(1, Outcome::AlreadySignalling { .. })]
        ));
    }

    #[test]
    fn unhealthy_at_injection_is_already_signalling_until_it_turns_bad_again() {
        let mut detector = Detector::new(vec![tts_fault()]);
        detector.signal(3.0, None, &Signal::Unhealthy);
        detector.injected(injection("tts", 1, 10.0));
        detector.signal(100.0, None, &Signal::Unhealthy);
        detector.injected(injection("tts", 2, 200.0));
        // Healthy again, then bad again inside the second window: a change after it.
        detector.signal(201.0, None, &Signal::Healthy);
        let detected = detector.signal(203.0, None, &Signal::Unhealthy);
        assert_eq!(detected.len(), 1);
        assert_eq!(detected[0].injection.occurrence, 2);
        let all = outcomes(&mut detector);
        assert_eq!(
            all[0].1,
            Outcome::AlreadySignalling {
                rules: vec!["health unhealthy".into()]
            }
        );
        assert!(matches!(all[1].1, Outcome::Detected(_)));
    }

    #[test]
    fn the_state_is_rolled_back_to_an_injection_announced_late() {
        let mut detector = Detector::new(vec![tts_fault()]);
        detector.signal(5.0, None, &firing("TtsRateLimited"));
        // Resolved and firing again after the injection began, before it was announced.
        detector.signal(10.2, None, &resolved("TtsRateLimited"));
        detector.signal(10.5, None, &firing("TtsRateLimited"));
        // At 10 s the alert was firing: its onset at 10.5 s is a change after the
        // injection all the same, so it detects it.
        let detected = detector.injected(injection("tts", 1, 10.0)).unwrap();
        assert_eq!(
            (detected.after_s, detected.by.as_str()),
            (0.5, "alert TtsRateLimited")
        );
        // Healthy at 20 s, turned bad at 20.004 s, announced at 20 s: detected.
        let mut late = Detector::new(vec![tts_fault()]);
        late.signal(1.0, None, &Signal::Healthy);
        late.signal(20.004, None, &Signal::Unhealthy);
        let detected = late.injected(injection("tts", 1, 20.0)).unwrap();
        assert_eq!(detected.after_s, 0.004);
    }

    #[test]
    fn a_signal_before_the_injection_does_not_count_one_at_it_does() {
        let mut detector = Detector::new(vec![tts_fault()]);
        detector.signal(9.0, None, &firing("TtsRateLimited"));
        detector.signal(9.5, None, &resolved("TtsRateLimited"));
        assert_eq!(detector.injected(injection("tts", 1, 10.0)), None);
        let detected = detector.signal(10.0, None, &Signal::Unhealthy);
        assert_eq!(detected.len(), 1, "at the injection counts");
        assert_eq!(detected[0].after_s, 0.0);
    }

    #[test]
    fn windows_end_at_the_same_faults_next_injection() {
        let mut detector = Detector::new(vec![tts_fault()]);
        detector.injected(injection("tts", 1, 10.0));
        detector.signal(20.0, None, &firing("Other"));
        detector.injected(injection("other", 1, 30.0));
        detector.injected(injection("tts", 2, 100.0));
        // Seen inside the first window, handed over late: still the first one's.
        let late = detector.signal(99.0, None, &Signal::Unhealthy);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].injection.occurrence, 1);
        detector.signal(100.5, None, &Signal::Healthy);
        let detected = detector.signal(101.0, None, &firing("TtsRateLimited"));
        assert_eq!(detected.len(), 1);
        assert_eq!(detected[0].injection.occurrence, 2);
        assert_eq!(detected[0].after_s, 1.0);
        detector.injected(injection("tts", 3, 200.0));
        detector.signal(500.0, None, &firing("Other"));
        assert_eq!(detector.watched.len(), 1, "only the third is still open");
        let finished = detector.take_finished(true);
        // The fault the plan does not name, with no rules, is undetected.
        let other = finished
            .iter()
            .find(|graded| graded.injection.fault == "other");
        assert_eq!(other.unwrap().outcome, Outcome::Undetected);
        detector.finished = finished;
        let all = outcomes(&mut detector);
        assert_eq!(all.len(), 3, "{all:?}");
        // The alert that detected the second was still firing at the third.
        assert_eq!(
            all[2].1,
            Outcome::AlreadySignalling {
                rules: vec!["alert TtsRateLimited".into()]
            }
        );
    }

    #[test]
    fn starts_at_in_utc_or_with_an_offset() {
        let utc = parse_wall_clock("2026-11-23T10:00:01.250Z").unwrap();
        assert_eq!(parse_wall_clock("2026-11-23T11:00:01.250+01:00"), Some(utc));
        assert_eq!(parse_wall_clock("2026-11-23T07:30:01.250-02:30"), Some(utc));
        assert_eq!(
            utc.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            1_795_428_001_250
        );
        for unreadable in [
            "0001-01-01T00:00:00Z",
            "yesterday",
            "",
            "2026-11-23T10:00:01",
        ] {
            assert_eq!(parse_wall_clock(unreadable), None, "{unreadable:?}");
        }
    }

    /// Found by the fuzz target `wall_clock`: the offset was cut 6 bytes from the end,
    /// inside a character that is more than one byte long.
    #[test]
    fn a_start_time_with_multibyte_characters_is_unreadable_not_a_panic() {
        // A character of 2, 3 or 4 bytes, followed by 0 to 6 ASCII bytes: the offset's 6
        // bytes start at every position inside it.
        for prefix in ["", "2026-11-23T10:00:01"] {
            for character in ['é', '€', '😀'] {
                for tail in 0..=6 {
                    let text = format!("{prefix}{character}{}", &"+01:00"[..tail]);
                    assert_eq!(parse_wall_clock(&text), None, "{text:?}");
                }
            }
        }
        let utc = parse_wall_clock("2026-11-23T10:00:01.250Z");
        assert_eq!(parse_wall_clock(" 2026-11-23T11:00:01.250+01:00 "), utc);
    }

    #[test]
    fn memory_stays_bounded_over_a_flapping_probe() {
        let mut detector = Detector::new(vec![tts_fault()]);
        let mut detected = 0;
        // A probe flapping every second for 72 hours, an injection every 10 minutes.
        for second in 0..(72 * 3600) {
            let t = f64::from(second);
            if second % 600 == 0 {
                detected += usize::from(
                    detector
                        .injected(injection("tts", second / 600 + 1, t))
                        .is_some(),
                );
            }
            let signal = if second % 2 == 0 {
                Signal::Unhealthy
            } else {
                Signal::Healthy
            };
            detected += detector.signal(t + 0.5, None, &signal).len();
            assert!(detector.recent.len() <= 62, "{}", detector.recent.len());
            assert!(detector.watched.len() <= 2);
        }
        assert_eq!(
            detected,
            72 * 6,
            "every injection detected, the last as well"
        );
    }
}

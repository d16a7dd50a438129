//! The indie fleet's alerting: its own alert names, evaluated from conditions a few times a
//! second and posted, firing and resolved, in the Alertmanager webhook format (version 4).
//! How promptly they go out is one of the switchable behaviours: at once, never, or only
//! 40 s after the condition first held (a `for: 40s` rule that, once pending, fires anyway).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::time::Instant;

/// TTS answered 429.
pub const THROTTLED: &str = "SpeechBackendThrottled";
/// A tool call's arguments were refused.
pub const TOOL_REJECTED: &str = "ToolArgumentsRejected";
/// The scratch dir is over its budget.
pub const SCRATCH_FULL: &str = "ScratchDirFull";

/// When alerts go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Prompt,
    Never,
    /// Firing only this long after the condition first held.
    Late(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Quiet,
    /// The condition held from `since`; firing once [`Delivery::Late`] has passed.
    Pending {
        since: Instant,
    },
    Firing {
        starts_at: SystemTime,
    },
}

/// One alert to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub name: &'static str,
    pub firing: bool,
    pub starts_at: SystemTime,
    pub ends_at: Option<SystemTime>,
}

/// Every alert's state.
#[derive(Debug)]
pub struct AlertBook {
    delivery: Delivery,
    states: BTreeMap<&'static str, State>,
}

impl AlertBook {
    pub fn new(delivery: Delivery) -> Self {
        AlertBook {
            delivery,
            states: BTreeMap::new(),
        }
    }

    /// One evaluation at `now` (`wall` on the wall clock) of whether each alert's condition
    /// holds; the notifications to post.
    pub fn evaluate(
        &mut self,
        now: Instant,
        wall: SystemTime,
        conditions: &[(&'static str, bool)],
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        for &(name, holds) in conditions {
            let state = self.states.entry(name).or_insert(State::Quiet);
            let fire = |state: &mut State, out: &mut Vec<Notification>| {
                *state = State::Firing { starts_at: wall };
                out.push(Notification {
                    name,
                    firing: true,
                    starts_at: wall,
                    ends_at: None,
                });
            };
            match (*state, holds, self.delivery) {
                (State::Quiet, true, Delivery::Late(_)) => *state = State::Pending { since: now },
                (State::Quiet, true, _) => fire(state, &mut out),
                (State::Pending { since }, _, Delivery::Late(after)) if now - since >= after => {
                    fire(state, &mut out)
                }
                (State::Firing { starts_at }, false, _) => {
                    *state = State::Quiet;
                    out.push(Notification {
                        name,
                        firing: false,
                        starts_at,
                        ends_at: Some(wall),
                    });
                }
                _ => {}
            }
        }
        if self.delivery == Delivery::Never {
            out.clear();
        }
        out
    }

    /// Whether `name` is firing (delivered or not: the fleet's own view, for `/metrics`).
    pub fn firing(&self, name: &str) -> bool {
        matches!(self.states.get(name), Some(State::Firing { .. }))
    }
}

/// The Alertmanager webhook body (version 4) for one notification.
pub fn payload(notification: &Notification) -> Value {
    let status = if notification.firing {
        "firing"
    } else {
        "resolved"
    };
    let labels =
        json!({"alertname": notification.name, "service": "indie-fleet", "severity": "page"});
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", notification.name),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "voxsoak",
        "groupLabels": {"alertname": notification.name},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://indie-fleet.invalid",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": {"summary": format!("{} on the indie fleet", notification.name)},
            "startsAt": humantime::format_rfc3339_millis(notification.starts_at).to_string(),
            "endsAt": notification
                .ends_at
                .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |at| humantime::format_rfc3339_millis(at).to_string()),
            "generatorURL": "",
            "fingerprint": format!("{:016x}", super::agent::fnv1a(notification.name.as_bytes())),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Evaluates `book` at `seconds` after `start` with `THROTTLED` holding or not; the
    /// notifications as (firing, starts_at offset in seconds).
    fn at(
        book: &mut AlertBook,
        start: (Instant, SystemTime),
        seconds: u64,
        holds: bool,
    ) -> Vec<(bool, u64)> {
        let offset = Duration::from_secs(seconds);
        book.evaluate(start.0 + offset, start.1 + offset, &[(THROTTLED, holds)])
            .into_iter()
            .map(|n| {
                (
                    n.firing,
                    n.starts_at.duration_since(start.1).unwrap().as_secs(),
                )
            })
            .collect()
    }

    #[test]
    fn prompt_alerts_fire_once_and_resolve_once() {
        let start = (Instant::now(), SystemTime::now());
        let mut book = AlertBook::new(Delivery::Prompt);
        assert_eq!(at(&mut book, start, 0, false), []);
        assert_eq!(at(&mut book, start, 1, true), [(true, 1)]);
        assert_eq!(at(&mut book, start, 2, true), [], "no repeat while firing");
        assert!(book.firing(THROTTLED));
        assert_eq!(
            at(&mut book, start, 3, false),
            [(false, 1)],
            "resolved, with its start"
        );
        assert_eq!(at(&mut book, start, 4, false), []);
    }

    #[test]
    fn late_alerts_fire_forty_seconds_after_the_condition_even_if_it_passed() {
        let start = (Instant::now(), SystemTime::now());
        let mut book = AlertBook::new(Delivery::Late(40 * SECOND));
        assert_eq!(at(&mut book, start, 10, true), []);
        assert_eq!(at(&mut book, start, 15, false), [], "still pending");
        assert_eq!(at(&mut book, start, 49, false), []);
        assert_eq!(
            at(&mut book, start, 50, false),
            [(true, 50)],
            "startsAt is when it fired"
        );
        assert_eq!(at(&mut book, start, 51, false), [(false, 50)]);
    }

    #[test]
    fn silent_books_post_nothing_but_know_what_fires() {
        let start = (Instant::now(), SystemTime::now());
        let mut book = AlertBook::new(Delivery::Never);
        assert_eq!(at(&mut book, start, 1, true), []);
        assert!(book.firing(THROTTLED));
        assert_eq!(at(&mut book, start, 2, false), []);
        assert!(!book.firing(THROTTLED));
    }

    #[test]
    fn the_payload_is_an_alertmanager_v4_webhook() {
        let starts_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let body = payload(&Notification {
            name: SCRATCH_FULL,
            firing: false,
            starts_at,
            ends_at: Some(starts_at + SECOND),
        });
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "resolved");
        let alert = &body["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], SCRATCH_FULL);
        assert_eq!(alert["status"], "resolved");
        assert_eq!(alert["startsAt"], "2027-01-15T08:00:00.000Z");
        assert_eq!(alert["endsAt"], "2027-01-15T08:00:01.000Z");
    }
}

//! One task receives every observation, journals what changed (never every probe), and
//! keeps the transitions the grader matches against each fault's `detect` rules.

use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{Observation, Signal};
use crate::journal::{Journal, round_ms};
use crate::scenario::faults::{DetectionRule, MetricCondition};

/// Most transitions kept; a fleet flapping every second for 72 hours stays far below.
const MAX_TRANSITIONS: usize = 500_000;
/// How often a `fleet_sample` (RSS, temp dir) is journaled.
const SAMPLE_EVERY_S: f64 = 10.0;

/// A change the fleet showed, at `t_s` seconds since the run started.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub t_s: f64,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    AlertFiring(String),
    AlertResolved(String),
    Unhealthy,
    Healthy,
    /// The condition (its text) started to hold.
    ConditionHolds(String),
    ConditionCleared(String),
}

impl Change {
    /// Whether this change is the signal `rule` names.
    pub fn matches(&self, rule: &DetectionRule) -> bool {
        match (self, rule) {
            (Change::AlertFiring(name), DetectionRule::Alert { name: wanted }) => name == wanted,
            (Change::Unhealthy, DetectionRule::Unhealthy) => true,
            (Change::ConditionHolds(text), DetectionRule::Metric(condition)) => {
                *text == condition.text
            }
            _ => false,
        }
    }
}

/// What the observers saw over the run.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub transitions: Vec<Transition>,
    pub health_probes: u64,
    pub healthy_probes: u64,
    pub alerts_received: u64,
    pub bad_alerts: u64,
    pub scrapes_failed: u64,
    /// (t_s, bytes) samples every ~10 s, for growth slopes.
    pub rss_samples: Vec<(f64, f64)>,
    pub temp_dir_samples: Vec<(f64, f64)>,
}

impl Observed {
    /// The first transition at or after `from_s` (and before `until_s`) matching any rule.
    pub fn first_match<'a>(
        &'a self,
        rules: &'a [DetectionRule],
        from_s: f64,
        until_s: f64,
    ) -> Option<(&'a Transition, &'a DetectionRule)> {
        self.transitions
            .iter()
            .filter(|transition| transition.t_s >= from_s && transition.t_s < until_s)
            .find_map(|transition| {
                rules
                    .iter()
                    .find(|rule| transition.change.matches(rule))
                    .map(|rule| (transition, rule))
            })
    }

    fn push(&mut self, t_s: f64, change: Change) {
        if self.transitions.len() < MAX_TRANSITIONS {
            self.transitions.push(Transition { t_s, change });
        }
    }
}

/// Runs until every sender is gone, or `stop` (then what is already queued is still taken);
/// `conditions` are the metric conditions the scrapers evaluate, by index.
pub async fn run_hub(
    mut observations: UnboundedReceiver<Observation>,
    journal: Journal,
    conditions: Vec<MetricCondition>,
    stop: tokio_util::sync::CancellationToken,
) -> Observed {
    let start = journal.started();
    let mut observed = Observed::default();
    let mut healthy: Option<bool> = None;
    let mut holding = vec![false; conditions.len()];
    let mut scrape_ok = true;
    let mut last_sample_s = f64::NEG_INFINITY;
    loop {
        let observation = tokio::select! {
            biased;
            observation = observations.recv() => observation,
            () = stop.cancelled() => observations.try_recv().ok(),
        };
        let Some(observation) = observation else {
            break;
        };
        let t_s = round_ms(
            observation
                .at
                .saturating_duration_since(start)
                .as_secs_f64(),
        );
        match observation.signal {
            Signal::Alert { name, firing } => {
                observed.alerts_received += 1;
                journal.record(
                    "alert",
                    json!({"name": name, "status": if firing { "firing" } else { "resolved" }, "seen_s": t_s}),
                );
                observed.push(
                    t_s,
                    if firing {
                        Change::AlertFiring(name)
                    } else {
                        Change::AlertResolved(name)
                    },
                );
            }
            Signal::BadAlert => {
                observed.bad_alerts += 1;
                if observed.bad_alerts == 1 {
                    journal.record("alert_unreadable", json!({"seen_s": t_s}));
                }
            }
            Signal::Health {
                healthy: now,
                status,
                detail,
            } => {
                observed.health_probes += 1;
                observed.healthy_probes += u64::from(now);
                if healthy != Some(now) {
                    healthy = Some(now);
                    journal.record(
                        "health",
                        json!({"healthy": now, "status": status, "detail": detail, "seen_s": t_s}),
                    );
                    observed.push(
                        t_s,
                        if now {
                            Change::Healthy
                        } else {
                            Change::Unhealthy
                        },
                    );
                }
            }
            Signal::Condition {
                index,
                holds,
                value,
            } => {
                let Some(was) = holding.get_mut(index) else {
                    continue;
                };
                if *was != holds {
                    *was = holds;
                    let text = conditions[index].text.clone();
                    journal.record(
                        "metric_condition",
                        json!({"condition": text, "holds": holds, "value": value, "seen_s": t_s}),
                    );
                    observed.push(
                        t_s,
                        if holds {
                            Change::ConditionHolds(text)
                        } else {
                            Change::ConditionCleared(text)
                        },
                    );
                }
                scrape_ok = true;
            }
            Signal::Gauges {
                rss_bytes,
                temp_dir_bytes,
            } => {
                scrape_ok = true;
                if t_s - last_sample_s >= SAMPLE_EVERY_S {
                    last_sample_s = t_s;
                    journal.record(
                        "fleet_sample",
                        json!({"rss_bytes": rss_bytes, "temp_dir_bytes": temp_dir_bytes, "seen_s": t_s}),
                    );
                    if let Some(rss) = rss_bytes {
                        observed.rss_samples.push((t_s, rss));
                    }
                    if let Some(bytes) = temp_dir_bytes {
                        observed.temp_dir_samples.push((t_s, bytes));
                    }
                }
            }
            Signal::ScrapeFailed { reason } => {
                observed.scrapes_failed += 1;
                if scrape_ok {
                    scrape_ok = false;
                    journal.record("scrape_failed", json!({"reason": reason, "seen_s": t_s}));
                }
            }
        }
    }
    observed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Observation;
    use std::time::Duration;
    use tokio::time::Instant;

    #[tokio::test]
    async fn only_changes_are_journaled_and_matched() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let journal = Journal::create(&dir.path().join("j.jsonl"), start).unwrap();
        let condition =
            crate::scenario::faults::parse_metric_condition("db_pool_in_use > 3").unwrap();
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let at = |s: u64| start + Duration::from_secs(s);
        let health = |healthy| Signal::Health {
            healthy,
            status: Some(if healthy { 200 } else { 503 }),
            detail: String::new(),
        };
        for (s, signal) in [
            (1, health(true)),
            (2, health(true)),
            (3, health(false)),
            (4, health(false)),
            (
                5,
                Signal::Condition {
                    index: 0,
                    holds: true,
                    value: Some(4.0),
                },
            ),
            (
                6,
                Signal::Alert {
                    name: "DbPoolSaturated".into(),
                    firing: true,
                },
            ),
            (7, health(true)),
        ] {
            sender.send(Observation { at: at(s), signal }).unwrap();
        }
        drop(sender);
        let observed = run_hub(
            receiver,
            journal,
            vec![condition.clone()],
            tokio_util::sync::CancellationToken::new(),
        )
        .await;
        assert_eq!(observed.health_probes, 5);
        assert_eq!(observed.healthy_probes, 3);
        assert_eq!(observed.transitions.len(), 5, "{:?}", observed.transitions);
        let rules = [
            DetectionRule::Alert {
                name: "DbPoolSaturated".into(),
            },
            DetectionRule::Metric(condition),
        ];
        let (first, rule) = observed.first_match(&rules, 4.0, 100.0).unwrap();
        assert_eq!(first.t_s, 5.0);
        assert!(matches!(rule, DetectionRule::Metric(_)));
        assert!(
            observed
                .first_match(&[DetectionRule::Unhealthy], 3.5, 100.0)
                .is_none()
        );
        let text = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
        assert_eq!(text.matches("\"event\":\"health\"").count(), 3);
    }
}

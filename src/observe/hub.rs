//! One task receives every observation and journals what changed (never every probe).
//! The grader reads the transitions back from the journal (`grade::replay`); the hub keeps
//! only counters, so its memory does not grow with the run. It also journals each fault's
//! detection as it happens (`fault_detected`), pairing the injections the chaos plane
//! announces with the signals it journals by the grader's own engine ([`Detector`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{Observation, Signal};
use crate::console::LiveLines;
use crate::detect::plan::FaultPlan;
use crate::detect::{self, Detection, Detector, Injection};
use crate::journal::signal::Signal as Journaled;
use crate::journal::{Journal, round_ms};
use crate::scenario::faults::MetricCondition;

/// How often a `fleet_sample` (RSS, temp dir) is journaled.
const SAMPLE_EVERY_S: f64 = 10.0;
/// How often the `record` series (and the metric SLOs') are journaled (one `metrics`
/// record), whatever the scrape interval.
pub(crate) const RECORD_EVERY_S: f64 = crate::scenario::metric_slo::RECORD_EVERY.as_secs_f64();
/// A pattern matching again in the same file within this is counted, not journaled: a
/// chatty log must not turn the journal into a copy of itself.
const LOG_MATCH_EVERY_S: f64 = 1.0;
/// How much of a matching line is journaled.
const LOG_LINE_CHARS: usize = 200;

/// What the observers saw over the run.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub health_probes: u64,
    pub healthy_probes: u64,
    pub alerts_received: u64,
    /// Requests the alert receiver refused, by reason ([`Signal::BadAlert`]).
    pub bad_alerts: BTreeMap<&'static str, u64>,
    pub scrapes_failed: u64,
    /// Lines that matched a log pattern, journaled or not.
    pub log_matches: u64,
}

/// What the hub needs to know to read the observations.
#[derive(Debug, Clone, Default)]
pub struct HubSettings {
    /// The metric conditions the scraper evaluates, by index.
    pub conditions: Vec<MetricCondition>,
    /// The log `{ log = "…" }` rules naming no file read.
    pub default_log_file: Option<PathBuf>,
    /// `[observe] process = { health = true }`: the health URL refusing connections after
    /// it answered is journaled as the fleet's exit (`fleet_exited`), answering again as its
    /// restart.
    pub crash_by_health: bool,
    /// The faults and their `detect` rules, as the grader reads them from `run_started`.
    pub faults: Vec<FaultPlan>,
    /// Where a detection is told as it happens (`--quiet`: nowhere).
    pub lines: LiveLines,
}

/// Journals `fault_detected` once per injection, at the first journaled signal that
/// detects it, and tells it on the terminal.
#[derive(Debug)]
struct Detections {
    live: Detector,
    journal: Journal,
    lines: LiveLines,
}

impl Detections {
    fn injected(&mut self, injection: Injection) {
        if let Some(detection) = self.live.injected(injection) {
            self.detected(&detection);
        }
    }

    /// Journals a record that carries a fleet signal (seen at `seen_s`), and pairs the
    /// signal, as the grader will read it back, with the injections it detects.
    fn record(&mut self, event: &str, fields: serde_json::Value, seen_s: f64) {
        let signal = Journaled::of_record(event, &fields);
        let began_s = Journaled::began_s(&fields);
        self.journal.record(event, fields);
        if let Some(signal) = signal {
            for detection in self.live.signal(seen_s, began_s, &signal) {
                self.detected(&detection);
            }
            // Outcomes are the grader's to report; the hub only tells detections.
            let _ = self.live.take_finished(false);
        }
    }

    fn detected(&self, detection: &Detection) {
        let injection = &detection.injection;
        self.journal.record(
            "fault_detected",
            json!({
                "fault": injection.fault, "kind": injection.kind,
                "occurrence": injection.occurrence, "injected_at_s": injection.injected_at_s,
                "after_s": detection.after_s, "by": detection.by, "seen_s": detection.seen_s,
            }),
        );
        self.lines.say(&format!(
            "{}  fault {} #{} detected {:.1}s after its injection, by {}",
            crate::console::clock(std::time::Duration::from_secs_f64(
                detection.seen_s.max(0.0)
            )),
            injection.fault,
            injection.occurrence,
            detection.after_s,
            detection.by
        ));
    }
}

/// Runs until every sender is gone, or `stop` (then what is already queued is still taken).
pub async fn run_hub(
    mut observations: UnboundedReceiver<Observation>,
    journal: Journal,
    settings: HubSettings,
    stop: tokio_util::sync::CancellationToken,
) -> Observed {
    let start = journal.started();
    let mut hub = Hub::new(journal, settings);
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
        hub.take(observation, t_s);
    }
    hub.journal.record("observed", hub.observed.to_json());
    hub.observed
}

/// The hub's state between observations: the counters, and what was last journaled of each
/// series so only changes are journaled again.
struct Hub {
    journal: Journal,
    conditions: Vec<MetricCondition>,
    default_log_file: Option<PathBuf>,
    detector: Detections,
    observed: Observed,
    /// Whether the health URL is listening, when its refusing is the fleet's exit.
    listening: Option<super::health::Listening>,
    restarts: u64,
    healthy: Option<bool>,
    was_refused: bool,
    /// Whether each metric condition held at the last scrape.
    holding: Vec<bool>,
    /// The last scrape succeeded: only the first failure of a run of them is journaled.
    scrape_ok: bool,
    last_sample_s: f64,
    last_recorded_s: f64,
    last_log_match: HashMap<(String, PathBuf), f64>,
}

impl Hub {
    fn new(journal: Journal, settings: HubSettings) -> Self {
        let HubSettings {
            conditions,
            default_log_file,
            crash_by_health,
            faults,
            lines,
        } = settings;
        Hub {
            detector: Detections {
                live: Detector::new(faults),
                journal: journal.clone(),
                lines,
            },
            journal,
            holding: vec![false; conditions.len()],
            conditions,
            default_log_file,
            observed: Observed::default(),
            listening: crash_by_health.then(super::health::Listening::default),
            restarts: 0,
            healthy: None,
            was_refused: false,
            scrape_ok: true,
            last_sample_s: f64::NEG_INFINITY,
            last_recorded_s: f64::NEG_INFINITY,
            last_log_match: HashMap::new(),
        }
    }

    /// Takes one observation, made `t_s` into the run.
    fn take(&mut self, observation: Observation, t_s: f64) {
        match observation.signal {
            Signal::Alert {
                name,
                firing,
                starts_at,
            } => self.alert(&name, firing, starts_at, observation.at, t_s),
            Signal::BadAlert { reason } => {
                let count = self.observed.bad_alerts.entry(reason).or_default();
                *count += 1;
                // The first of each reason; `observed` at the end has them all.
                if *count == 1 {
                    self.journal
                        .record("alert_unreadable", json!({"reason": reason, "seen_s": t_s}));
                }
            }
            Signal::Health {
                healthy,
                status,
                detail,
                refused,
            } => self.health(healthy, status, detail, refused, t_s),
            Signal::Condition {
                index,
                holds,
                value,
            } => self.condition(index, holds, value, t_s),
            Signal::Gauges {
                rss_bytes,
                temp_dir_bytes,
            } => self.gauges(rss_bytes, temp_dir_bytes, t_s),
            Signal::Recorded { values } => self.recorded(values, t_s),
            Signal::TempDir {
                bytes,
                files,
                capped,
            } => {
                let mut record = json!({"bytes": bytes, "files": files, "seen_s": t_s});
                if capped {
                    record["capped"] = json!(true);
                }
                self.journal.record("temp_dir", record);
            }
            Signal::LogMatch {
                pattern,
                file,
                line,
            } => self.log_match(pattern, file, &line, t_s),
            Signal::LogUnreadable { file, reason } => {
                self.journal.record(
                    "log_unreadable",
                    json!({"file": file.display().to_string(), "reason": reason, "seen_s": t_s}),
                );
            }
            Signal::FaultInjected(injection) => self.detector.injected(injection),
            Signal::ScrapeFailed { reason } => {
                self.observed.scrapes_failed += 1;
                if self.scrape_ok {
                    self.scrape_ok = false;
                    self.journal
                        .record("scrape_failed", json!({"reason": reason, "seen_s": t_s}));
                }
            }
        }
    }

    /// The fleet's RSS and temp-dir gauges from a scrape: journaled every
    /// [`SAMPLE_EVERY_S`].
    fn gauges(&mut self, rss_bytes: Option<f64>, temp_dir_bytes: Option<f64>, t_s: f64) {
        self.scrape_ok = true;
        if t_s - self.last_sample_s >= SAMPLE_EVERY_S {
            self.last_sample_s = t_s;
            self.journal.record(
                "fleet_sample",
                json!({"rss_bytes": rss_bytes, "temp_dir_bytes": temp_dir_bytes, "seen_s": t_s}),
            );
        }
    }

    /// The `record` series from a scrape: journaled every [`RECORD_EVERY_S`].
    fn recorded(&mut self, values: Vec<(String, Option<f64>)>, t_s: f64) {
        if t_s - self.last_recorded_s >= RECORD_EVERY_S {
            self.last_recorded_s = t_s;
            let values: serde_json::Map<String, serde_json::Value> = values
                .into_iter()
                .map(|(text, value)| (text, json!(value)))
                .collect();
            self.journal
                .record("metrics", json!({"values": values, "seen_s": t_s}));
        }
    }

    /// An alert posted by the fleet (seen at `at`, `t_s` into the run).
    fn alert(
        &mut self,
        name: &str,
        firing: bool,
        starts_at: Option<String>,
        at: tokio::time::Instant,
        t_s: f64,
    ) {
        self.observed.alerts_received += 1;
        // `startsAt` on the journal's clock: when the fleet says the alert began,
        // which tells a new alert from one firing since before an injection.
        let starts_s = starts_at
            .as_deref()
            .and_then(detect::parse_wall_clock)
            .map(|began| {
                let seen = std::time::SystemTime::now()
                    - tokio::time::Instant::now().saturating_duration_since(at);
                match seen.duration_since(began) {
                    Ok(ago) => round_ms(t_s - ago.as_secs_f64()),
                    Err(ahead) => round_ms(t_s + ahead.duration().as_secs_f64()),
                }
            });
        self.detector.record(
            "alert",
            json!({
                "name": name, "status": if firing { "firing" } else { "resolved" },
                "starts_at": starts_at, "starts_s": starts_s, "seen_s": t_s,
            }),
            t_s,
        );
    }

    /// A health probe's answer: journaled when it changed, and (with `crash_by_health`)
    /// the health URL refusing or answering again as the fleet's exit or restart.
    fn health(&mut self, now: bool, status: Option<u16>, detail: String, refused: bool, t_s: f64) {
        self.observed.health_probes += 1;
        self.observed.healthy_probes += u64::from(now);
        // A change of answer, or from a bad answer to none at all (nothing
        // listens: the fleet is down, not just unhealthy).
        if self.healthy != Some(now) || self.was_refused != refused {
            self.healthy = Some(now);
            self.was_refused = refused;
            self.detector.record(
                "health",
                json!({"healthy": now, "status": status, "detail": detail, "refused": refused, "seen_s": t_s}),
                t_s,
            );
        }
        match self
            .listening
            .as_mut()
            .and_then(|listening| listening.probe(status.is_some(), refused))
        {
            Some(super::health::ListeningChange::Stopped) => self.journal.record(
                "fleet_exited",
                json!({
                    "pid": null, "status": "stopped listening (connection refused)",
                    "code": null, "signal": null, "by_harness": false,
                    "watched": "health", "seen_s": t_s,
                }),
            ),
            Some(super::health::ListeningChange::Resumed) => {
                self.restarts += 1;
                self.journal.record(
                    "fleet_restarted",
                    json!({"pid": null, "restarts": self.restarts, "watched": "health", "seen_s": t_s}),
                );
            }
            None => {}
        }
    }

    /// A metric condition evaluated on a scrape: journaled when it starts or stops holding.
    fn condition(&mut self, index: usize, holds: bool, value: Option<f64>, t_s: f64) {
        let Some(was) = self.holding.get_mut(index) else {
            return;
        };
        if *was != holds {
            *was = holds;
            let text = &self.conditions[index].text;
            self.detector.record(
                "metric_condition",
                json!({"condition": text, "holds": holds, "value": value, "seen_s": t_s}),
                t_s,
            );
        }
        self.scrape_ok = true;
    }

    /// A log line matching a pattern: counted always, journaled at most once a
    /// [`LOG_MATCH_EVERY_S`] per pattern and file.
    fn log_match(&mut self, pattern: String, file: PathBuf, line: &str, t_s: f64) {
        self.observed.log_matches += 1;
        let key = (pattern, file);
        if self
            .last_log_match
            .get(&key)
            .is_some_and(|last| t_s - last < LOG_MATCH_EVERY_S)
        {
            return;
        }
        self.last_log_match.insert(key.clone(), t_s);
        let (pattern, file) = key;
        let line: String = line.chars().take(LOG_LINE_CHARS).collect();
        // `default`: the file rules naming none read, so a replay of the journal
        // pairs the match with the same rules as the hub.
        let default = self.default_log_file.as_ref() == Some(&file);
        self.detector.record(
            "log_match",
            json!({"pattern": pattern, "file": file.display().to_string(), "default": default, "line": line, "seen_s": t_s}),
            t_s,
        );
    }
}

impl Observed {
    /// The `observed` record: what the observers saw over the whole run, counted.
    fn to_json(&self) -> serde_json::Value {
        json!({
            "health_probes": self.health_probes,
            "healthy_probes": self.healthy_probes,
            "alerts_received": self.alerts_received,
            "bad_alerts": self.bad_alerts,
            "scrapes_failed": self.scrapes_failed,
            "log_matches": self.log_matches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::plan::RuleSpec;
    use crate::observe::Observation;
    use crate::scenario::faults::DetectionRule;
    use std::time::Duration;
    use tokio::time::Instant;

    /// The signals the journal carries, in journal order, as the grader reads them.
    fn signals(path: &std::path::Path) -> Vec<(f64, Journaled)> {
        crate::journal::read(path)
            .unwrap()
            .records
            .iter()
            .filter_map(|record| {
                let event = record["event"].as_str()?;
                let signal = Journaled::of_record(event, record)?;
                Some((record["seen_s"].as_f64()?, signal))
            })
            .collect()
    }

    /// When the first signal from `from` on that one of `rules` names was seen.
    fn first_match(signals: &[(f64, Journaled)], rules: &[RuleSpec], from: f64) -> Option<f64> {
        signals
            .iter()
            .find(|(at, signal)| {
                *at >= from && rules.iter().any(|rule| detect::matches(signal, rule))
            })
            .map(|(at, _)| *at)
    }

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
            refused: false,
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
                    starts_at: None,
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
            HubSettings {
                conditions: vec![condition.clone()],
                default_log_file: None,
                ..HubSettings::default()
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .await;
        assert_eq!(observed.health_probes, 5);
        assert_eq!(observed.healthy_probes, 3);
        let signals = signals(&dir.path().join("j.jsonl"));
        assert_eq!(signals.len(), 5, "{signals:?}");
        let rules = [
            RuleSpec::Alert {
                alert: "DbPoolSaturated".into(),
            },
            RuleSpec::from(&DetectionRule::Metric(condition)),
        ];
        assert_eq!(first_match(&signals, &rules, 4.0), Some(5.0));
        assert_eq!(first_match(&signals, &rules[1..], 4.0), Some(5.0));
        assert_eq!(
            first_match(&signals, &[RuleSpec::from(&DetectionRule::Unhealthy)], 3.5),
            None
        );
        let text = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
        assert_eq!(text.matches("\"event\":\"health\"").count(), 3);
    }

    #[tokio::test]
    async fn temp_dir_metrics_and_log_matches_are_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let journal = Journal::create(&dir.path().join("j.jsonl"), start).unwrap();
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let default_log = PathBuf::from("/run/fleet.log");
        let other_log = PathBuf::from("/var/log/other.log");
        let matched = |file: &PathBuf, line: &str| Signal::LogMatch {
            pattern: "alert firing".into(),
            file: file.clone(),
            line: line.into(),
        };
        let recorded = |value| Signal::Recorded {
            values: vec![("db_pool_in_use".into(), value), ("absent".into(), None)],
        };
        for (ms, signal) in [
            (
                1_000,
                Signal::TempDir {
                    bytes: 10,
                    files: 1,
                    capped: false,
                },
            ),
            (1_500, recorded(Some(3.0))),
            (2_000, matched(&default_log, &"x".repeat(1000))),
            // Within a second of the last match of the same pattern and file: counted only.
            (2_500, matched(&default_log, "again")),
            (2_600, matched(&other_log, "elsewhere")),
            (
                3_000,
                Signal::TempDir {
                    bytes: 30,
                    files: 2,
                    capped: true,
                },
            ),
            (5_000, recorded(Some(4.0))),
            (11_500, recorded(Some(5.0))),
            (12_000, matched(&default_log, "later")),
            (
                12_100,
                Signal::LogUnreadable {
                    file: other_log.clone(),
                    reason: "Permission denied".into(),
                },
            ),
        ] {
            sender.send(Observation { at: at(ms), signal }).unwrap();
        }
        drop(sender);
        let observed = run_hub(
            receiver,
            journal,
            HubSettings {
                conditions: Vec::new(),
                default_log_file: Some(default_log.clone()),
                ..HubSettings::default()
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .await;
        assert_eq!(observed.log_matches, 4);
        let journaled = signals(&dir.path().join("j.jsonl"));
        assert_eq!(journaled.len(), 3, "{journaled:?}");

        let log_rule = |file: Option<&PathBuf>| {
            RuleSpec::from(&DetectionRule::Log {
                pattern: "alert firing".into(),
                file: file.cloned(),
            })
        };
        let default_rule = [log_rule(None)];
        let other_rule = [log_rule(Some(&other_log))];
        let named_default = [log_rule(Some(&default_log))];
        let other_pattern = [RuleSpec::from(&DetectionRule::Log {
            pattern: "alert".into(),
            file: None,
        })];
        let first = |rules: &[RuleSpec], from: f64| first_match(&journaled, rules, from);
        assert_eq!(first(&default_rule, 0.0), Some(2.0));
        assert_eq!(first(&default_rule, 2.1), Some(12.0));
        assert_eq!(first(&named_default, 0.0), Some(2.0));
        assert_eq!(first(&other_rule, 0.0), Some(2.6));
        assert_eq!(first(&other_rule, 3.0), None);
        assert_eq!(first(&other_pattern, 0.0), None);

        let text = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let of = |event: &str| -> Vec<&serde_json::Value> {
            records.iter().filter(|r| r["event"] == event).collect()
        };
        let temp_dir = of("temp_dir");
        assert_eq!(temp_dir.len(), 2);
        assert_eq!(
            (&temp_dir[0]["seen_s"], &temp_dir[1]["seen_s"]),
            (&json!(1.0), &json!(3.0))
        );
        assert_eq!(temp_dir[0]["bytes"], 10);
        assert_eq!(temp_dir[0]["files"], 1);
        assert!(temp_dir[0].get("capped").is_none());
        assert_eq!(temp_dir[1]["capped"], true);
        let metrics = of("metrics");
        assert_eq!(metrics.len(), 2, "at most one every 10 s: {metrics:?}");
        assert_eq!(metrics[0]["values"]["db_pool_in_use"], 3.0);
        assert!(metrics[0]["values"]["absent"].is_null());
        assert_eq!(metrics[1]["values"]["db_pool_in_use"], 5.0);
        let matches = of("log_match");
        assert_eq!(matches.len(), 3);
        assert_eq!(matches[0]["pattern"], "alert firing");
        assert_eq!(matches[0]["file"], "/run/fleet.log");
        assert_eq!(matches[0]["line"].as_str().unwrap().chars().count(), 200);
        assert_eq!(matches[0]["default"], true);
        assert_eq!(matches[1]["line"], "elsewhere");
        assert_eq!(matches[1]["default"], false);
        assert_eq!(of("log_unreadable").len(), 1);
    }

    /// The records the hub journals from `signals` (each seen `s` seconds after the start).
    async fn journaled(
        signals: Vec<(u64, Signal)>,
        settings: HubSettings,
    ) -> Vec<serde_json::Value> {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let journal = Journal::create(&dir.path().join("j.jsonl"), start).unwrap();
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        for (s, signal) in signals {
            let at = start + Duration::from_secs(s);
            sender.send(Observation { at, signal }).unwrap();
        }
        drop(sender);
        run_hub(receiver, journal, settings, Default::default()).await;
        std::fs::read_to_string(dir.path().join("j.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `process = { health = true }`: the health URL refusing connections after it answered
    /// is the fleet's exit, once; answering again its restart. A refusal before it ever
    /// answered, or a timeout, is neither.
    #[tokio::test]
    async fn refusals_after_answers_are_exits_when_health_watches_the_process() {
        let answered = |status: u16| Signal::Health {
            healthy: status == 200,
            status: Some(status),
            detail: String::new(),
            refused: false,
        };
        let refused = || Signal::Health {
            healthy: false,
            status: None,
            detail: "connection refused".into(),
            refused: true,
        };
        let timed_out = Signal::Health {
            healthy: false,
            status: None,
            detail: "no answer within 2s".into(),
            refused: false,
        };
        let signals = vec![
            (1, refused()),
            (2, answered(200)),
            (3, answered(503)),
            (4, refused()),
            (5, refused()),
            (6, timed_out),
            (7, answered(200)),
            (8, refused()),
        ];
        let by_health = HubSettings {
            crash_by_health: true,
            ..HubSettings::default()
        };
        let records = journaled(signals, by_health).await;
        let of = |event: &str| -> Vec<(f64, &serde_json::Value)> {
            records
                .iter()
                .filter(|r| r["event"] == event)
                .map(|r| (r["seen_s"].as_f64().unwrap(), r))
                .collect()
        };
        let exits = of("fleet_exited");
        assert_eq!(
            exits.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [4.0, 8.0]
        );
        assert_eq!(exits[0].1["by_harness"], false);
        assert_eq!(
            exits[0].1["status"],
            "stopped listening (connection refused)"
        );
        let restarts = of("fleet_restarted");
        assert_eq!(restarts.len(), 1);
        assert_eq!(restarts[0].0, 7.0);
        assert_eq!(restarts[0].1["restarts"], 1);
        let health = of("health");
        assert_eq!(health[0].1["refused"], true);
        assert_eq!(health[0].1["detail"], "connection refused");
        assert_eq!(health[1].1["refused"], false);

        // Without the setting, refusals are only unhealthy probes.
        let plain = journaled(
            vec![(1, answered(200)), (2, refused())],
            HubSettings::default(),
        )
        .await;
        assert!(
            !plain.iter().any(|r| r["event"] == "fleet_exited"),
            "{plain:?}"
        );
    }
}

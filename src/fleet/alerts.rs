//! The fleet's alerts, evaluated from its own state twice a second and sent, firing and
//! resolved, to `ALERT_WEBHOOK_URL` in the Alertmanager webhook format (version 4), as an
//! Alertmanager in front of a real fleet would send them. Every transition is also written
//! to the `events` table and printed as a log line, so a fleet can be watched through any of
//! the three.
//!
//! An alert fires as soon as its condition holds and resolves once the condition has been
//! false for the alert's hold-down ([`AlertName::resolve_after`]), so a flapping condition
//! does not flood the receiver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::db::Database;
use super::metrics::Metrics;

/// The alerts the fleet can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertName {
    /// The TTS provider answered 429 in the last few seconds.
    TtsRateLimited,
    /// The TTS provider failed otherwise (5xx, a timeout, a dropped connection) or was slow.
    TtsDegraded,
    /// The LLM failed (an error status, a timeout, a truncated or broken stream) or was slow.
    LlmDegraded,
    /// The database pool is at 95% or more, or a wait for a connection or for a lock
    /// timed out.
    DbPoolSaturated,
    /// The healer keeps restarting workers, or gave up on a job.
    WorkerStalled,
    /// The audio temp dir is over its budget.
    TempDirGrowing,
    /// RSS is above 80% of the memory limit, or grew fast.
    MemoryGrowth,
    /// A tool call from the LLM was refused by validation.
    ToolCallRejected,
}

impl AlertName {
    pub const ALL: [AlertName; 8] = [
        AlertName::TtsRateLimited,
        AlertName::TtsDegraded,
        AlertName::LlmDegraded,
        AlertName::DbPoolSaturated,
        AlertName::WorkerStalled,
        AlertName::TempDirGrowing,
        AlertName::MemoryGrowth,
        AlertName::ToolCallRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::TtsRateLimited => "TtsRateLimited",
            AlertName::TtsDegraded => "TtsDegraded",
            AlertName::LlmDegraded => "LlmDegraded",
            AlertName::DbPoolSaturated => "DbPoolSaturated",
            AlertName::WorkerStalled => "WorkerStalled",
            AlertName::TempDirGrowing => "TempDirGrowing",
            AlertName::MemoryGrowth => "MemoryGrowth",
            AlertName::ToolCallRejected => "ToolCallRejected",
        }
    }

    fn severity(self) -> &'static str {
        match self {
            AlertName::WorkerStalled | AlertName::DbPoolSaturated | AlertName::MemoryGrowth => {
                "critical"
            }
            _ => "warning",
        }
    }

    /// How long the condition must stay false before the alert resolves.
    pub fn resolve_after(self) -> Duration {
        match self {
            AlertName::TtsRateLimited
            | AlertName::TtsDegraded
            | AlertName::LlmDegraded
            | AlertName::DbPoolSaturated => Duration::from_secs(5),
            AlertName::WorkerStalled | AlertName::ToolCallRejected => Duration::from_secs(15),
            AlertName::TempDirGrowing | AlertName::MemoryGrowth => Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default)]
struct AlertState {
    firing_since: Option<SystemTime>,
    last_true: Option<Instant>,
    summary: String,
}

/// One notification to send.
#[derive(Debug)]
struct Notification {
    name: AlertName,
    firing: bool,
    summary: String,
    starts_at: SystemTime,
    ends_at: Option<SystemTime>,
}

/// The alert states and the queue that delivers their transitions in order.
#[derive(Debug)]
pub struct Alerts {
    states: Mutex<BTreeMap<AlertName, AlertState>>,
    outbox: mpsc::UnboundedSender<Notification>,
}

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct AlertSink {
    pub webhook_url: Option<String>,
    /// `http://ADDR` of the fleet, for `externalURL` and `generatorURL`.
    pub external_url: String,
    pub http: reqwest::Client,
    pub db: Database,
    pub metrics: Arc<Metrics>,
}

impl Alerts {
    /// The alert table and its delivery task (which ends when the table is dropped).
    pub fn start(sink: AlertSink) -> Arc<Alerts> {
        let (outbox, queue) = mpsc::unbounded_channel();
        tokio::spawn(deliver(queue, sink));
        Arc::new(Alerts {
            states: Mutex::new(BTreeMap::new()),
            outbox,
        })
    }

    /// Records the latest evaluation of `name`'s condition at `now`; fires or resolves it.
    /// `summary` is only built when the alert fires.
    pub fn observe(
        &self,
        name: AlertName,
        condition: bool,
        now: Instant,
        summary: impl FnOnce() -> String,
    ) {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let state = states.entry(name).or_default();
        if condition {
            state.last_true = Some(now);
            if state.firing_since.is_none() {
                let starts_at = SystemTime::now();
                state.firing_since = Some(starts_at);
                state.summary = summary();
                let _ = self.outbox.send(Notification {
                    name,
                    firing: true,
                    summary: state.summary.clone(),
                    starts_at,
                    ends_at: None,
                });
            }
        } else if let Some(starts_at) = state.firing_since {
            let quiet = state
                .last_true
                .is_none_or(|at| now.saturating_duration_since(at) >= name.resolve_after());
            if quiet {
                state.firing_since = None;
                let _ = self.outbox.send(Notification {
                    name,
                    firing: false,
                    summary: std::mem::take(&mut state.summary),
                    starts_at,
                    ends_at: Some(SystemTime::now()),
                });
            }
        }
    }

    pub fn is_firing(&self, name: AlertName) -> bool {
        let states = self
            .states
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        states
            .get(&name)
            .is_some_and(|state| state.firing_since.is_some())
    }

    /// Every alert with whether it fires, for `/metrics`.
    pub fn firing(&self) -> BTreeMap<&'static str, bool> {
        AlertName::ALL
            .into_iter()
            .map(|name| (name.as_str(), self.is_firing(name)))
            .collect()
    }
}

/// Sends notifications one at a time, in order: log line, webhook POST; the `events` row is
/// written beside the queue.
async fn deliver(mut queue: mpsc::UnboundedReceiver<Notification>, sink: AlertSink) {
    while let Some(notification) = queue.recv().await {
        let status = if notification.firing {
            "firing"
        } else {
            "resolved"
        };
        let name = notification.name.as_str();
        crate::console::outln(format_args!(
            "voxsoak fleet: alert {status} {name}: {}",
            notification.summary
        ));
        // The webhook first: an alert about the database must not wait behind a write to
        // it (the events row below waits for a connection when the pool is exhausted).
        if let Some(url) = &sink.webhook_url {
            let body = alertmanager_payload(&notification, &sink.external_url);
            for attempt in 0..3u32 {
                let sent = sink
                    .http
                    .post(url)
                    .timeout(Duration::from_secs(2))
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if sent {
                    sink.metrics.alerts_sent_total.add(name, 1);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
        let kind = if notification.firing {
            "alert_firing"
        } else {
            "alert_resolved"
        };
        let detail = format!("{name}: {}", notification.summary);
        // Apart from the queue: with the pool exhausted this write waits for a connection,
        // and the next alert must not wait behind it.
        let (db, metrics) = (sink.db.clone(), Arc::clone(&sink.metrics));
        tokio::spawn(async move {
            if db.log_event(kind, None, None, &detail).await.is_err() {
                metrics.db_errors_total.add("log_event", 1);
            }
        });
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The Alertmanager webhook body (version 4) for one alert's transition.
fn alertmanager_payload(notification: &Notification, external_url: &str) -> serde_json::Value {
    let name = notification.name.as_str();
    let status = if notification.firing {
        "firing"
    } else {
        "resolved"
    };
    let labels = serde_json::json!({
        "alertname": name,
        "severity": notification.name.severity(),
        "service": "voxsoak-fleet",
    });
    let annotations = serde_json::json!({ "summary": notification.summary });
    let ends_at = notification
        .ends_at
        .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339);
    serde_json::json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "voxsoak",
        "groupLabels": { "alertname": name },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(notification.starts_at),
            "endsAt": ends_at,
            "generatorURL": format!("{external_url}/metrics"),
            "fingerprint": format!("{:016x}", fingerprint(name)),
        }],
    })
}

/// A stable id for the alert's label set (FNV-1a of its name: the labels follow from it).
fn fingerprint(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_alertmanager_v4_shape() {
        let notification = Notification {
            name: AlertName::TtsRateLimited,
            firing: true,
            summary: "TTS answered 429".into(),
            starts_at: SystemTime::UNIX_EPOCH,
            ends_at: None,
        };
        let body = alertmanager_payload(&notification, "http://127.0.0.1:1");
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["alerts"][0]["labels"]["alertname"], "TtsRateLimited");
        assert_eq!(body["alerts"][0]["startsAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(body["commonAnnotations"]["summary"], "TTS answered 429");
        assert_eq!(body["groupLabels"]["alertname"], "TtsRateLimited");
    }
}

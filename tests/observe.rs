//! The observers against a fleet the harness did not start: the reference fleet run by
//! hand, watched only through what `[observe]` names (health and metrics URLs, an alert
//! receiver it posts to, its temp dir, and the log its stdout goes to).

use std::time::Duration;

use serde_json::Value;

use crate::chaos::{LiveRun, free_port};
use crate::fleet_util::{Backend, FleetProcess, TestDb};
use crate::util::fixtures_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_external_fleet_is_observed_and_a_log_line_detects_the_fault() {
    let db = TestDb::create(Backend::Sqlite, "observe").await.unwrap();
    let (tts, alerts) = (free_port(), free_port());
    let log_dir = tempfile::tempdir().unwrap();
    let log_file = log_dir.path().join("fleet.log");
    let fleet = FleetProcess::start_logged(
        &db,
        &[
            "--orders".into(),
            "2000".into(),
            "--tts-base-url".into(),
            format!("http://127.0.0.1:{tts}/v1"),
            "--alert-webhook-url".into(),
            format!("http://127.0.0.1:{alerts}/alerts"),
        ],
        Some(&log_file),
    )
    .await;
    let base = format!("http://{}", fleet.address);
    let toml = format!(
        r#"
name = "external-observe"
[target]
stream_url = "{stream}"
[load]
stages = [{{ ramp_to = 2, over = "1s" }}, {{ hold = "14s" }}]
[calls]
turn_timeout = "8s"
fixtures = ["{fixtures}/*.wav"]
[[scripts]]
name = "talk"
turns = 3
[slo]
call_success = ">= 0%"
[chaos]
tts_listen = "127.0.0.1:{tts}"
[observe]
health_url = "{base}/health"
health_interval = "500ms"
metrics_url = "{base}/metrics"
scrape_interval = "1s"
record = ["db_pool_in_use", 'tts_requests_total{{status="429"}}']
alerts_listen = "127.0.0.1:{alerts}"
temp_dir = "{audio}"
temp_dir_interval = "1s"
log_file = "{log}"
[[faults]]
kind = "tts_429"
at = "3s"
for = "6s"
detect = {{ log = "alert firing TtsRateLimited" }}
"#,
        stream = fleet.stream_url(),
        fixtures = fixtures_dir().display(),
        audio = fleet.audio_dir.display(),
        log = log_file.display(),
    );
    let live = LiveRun::start(&toml, &[]);
    let outcome = live.finish().await;
    let journal = std::fs::read_to_string(outcome.out_dir.join("journal.jsonl")).unwrap();
    let records: Vec<Value> = journal
        .lines()
        .map(|line| serde_json::from_str(line).expect("a journal line is JSON"))
        .collect();
    let first = |event: &str| {
        records
            .iter()
            .find(|record| record["event"] == event)
            .unwrap_or_else(|| {
                panic!(
                    "no {event} record in the journal; the fleet printed:\n{}",
                    fleet.printed()
                )
            })
    };
    assert_eq!(first("health")["healthy"], true);
    assert_eq!(first("alert")["name"], "TtsRateLimited");
    let temp_dir = first("temp_dir");
    assert!(temp_dir["bytes"].is_u64() && temp_dir["files"].is_u64());
    let metrics = first("metrics");
    assert!(metrics["values"]["db_pool_in_use"].is_number(), "{metrics}");
    assert!(
        metrics["values"]
            .as_object()
            .unwrap()
            .contains_key(r#"tts_requests_total{status="429"}"#),
        "{metrics}"
    );
    let matched = first("log_match");
    assert_eq!(matched["pattern"], "alert firing TtsRateLimited");
    assert_eq!(matched["file"], log_file.display().to_string());
    assert!(
        matched["line"]
            .as_str()
            .unwrap()
            .contains("alert firing TtsRateLimited"),
        "{matched}"
    );

    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(outcome.out_dir.join("summary.json")).unwrap(),
    )
    .unwrap();
    let fault = &summary["faults"][0];
    assert_eq!(fault["kind"], "tts_429");
    assert_eq!(fault["confirmed"], true, "{fault}");
    assert_eq!(
        fault["detected_by"], "log /alert firing TtsRateLimited/",
        "{fault}"
    );
    let detected_after = fault["detected_after_s"].as_f64().expect("detected");
    assert!(
        (0.0..6.0).contains(&detected_after),
        "detected within the fault's window: {fault}"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(10), fleet.stop())
            .await
            .is_ok()
    );
    db.remove().await;
}

/// The live hub and the grader find the same detection in the same journal: the hub
/// journals it once, at the time the grader computes from the signals.
mod hub_and_grader {
    use std::time::Duration;

    use serde_json::json;
    use tokio::time::Instant;
    use voxsoak::detect::Injection;
    use voxsoak::detect::plan::{FaultPlan, RuleSpec};
    use voxsoak::journal::Journal;
    use voxsoak::observe::hub::{HubSettings, run_hub};
    use voxsoak::observe::{Observation, Signal};
    use voxsoak::scenario::faults::RecoverFrom;

    fn fault(name: &str, alert: &str) -> FaultPlan {
        FaultPlan {
            name: name.into(),
            kind: "tts_429".into(),
            detect: vec![RuleSpec::Alert {
                alert: alert.into(),
            }],
            recover_from: RecoverFrom::Clear,
        }
    }

    #[tokio::test]
    async fn a_detection_is_journaled_once_as_the_grader_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        // The run started 10 s ago, so the faults are injected at about 10 s.
        let start = Instant::now() - Duration::from_secs(10);
        let journal = Journal::create(&path, start).unwrap();
        let faults = vec![
            fault("tts", "TtsRateLimited"),
            fault("db", "DbPoolSaturated"),
        ];
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let send = |s: f64, signal| {
            sender
                .send(Observation {
                    at: start + Duration::from_secs_f64(s),
                    signal,
                })
                .unwrap();
        };
        let alert = |name: &str| Signal::Alert {
            name: name.into(),
            firing: true,
            starts_at: None,
        };
        let resolved = |name: &str| Signal::Alert {
            name: name.into(),
            firing: false,
            starts_at: None,
        };
        let inject = |fault: &str| {
            let injected_at_s = journal.elapsed_s();
            journal.record_at(
                "fault_injected",
                injected_at_s,
                json!({"fault": fault, "kind": "tts_429", "occurrence": 1}),
            );
            let injection = Injection {
                fault: fault.into(),
                kind: "tts_429".into(),
                occurrence: 1,
                injected_at_s,
            };
            (injected_at_s, Signal::FaultInjected(injection))
        };
        journal.record(
            "run_started",
            json!({"grading": voxsoak::detect::plan::GradePlan {
                slo: voxsoak::detect::plan::SloPlan::default(),
                faults: faults.clone(),
            }}),
        );
        let (tts_at, tts) = inject("tts");
        // Seen (and resolved) before the injection: not a detection.
        send(tts_at - 0.5, alert("TtsRateLimited"));
        send(tts_at - 0.25, resolved("TtsRateLimited"));
        send(tts_at, tts);
        send(tts_at + 1.0, alert("SomethingElse"));
        send(tts_at + 2.5, alert("TtsRateLimited"));
        // A repeat of the firing alert: not a second detection.
        send(tts_at + 3.0, alert("TtsRateLimited"));
        // Never detected (its alert never began): nothing is journaled for it.
        let (db_at, db) = inject("db");
        send(db_at, db);
        send(db_at + 4.0, alert("TtsRateLimited"));
        drop(sender);
        run_hub(
            receiver,
            journal,
            HubSettings {
                faults: faults.clone(),
                ..HubSettings::default()
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .await;

        let records = voxsoak::journal::read(&path).unwrap().records;
        let detected: Vec<&serde_json::Value> = records
            .iter()
            .filter(|record| record["event"] == "fault_detected")
            .collect();
        assert_eq!(detected.len(), 1, "{records:#?}");
        let record = detected[0];
        assert_eq!(record["fault"], "tts");
        assert_eq!(record["kind"], "tts_429");
        assert_eq!(record["occurrence"], 1);
        assert_eq!(record["injected_at_s"], tts_at);
        assert_eq!(record["by"], "alert TtsRateLimited");
        let after_s = record["after_s"].as_f64().unwrap();
        assert!((after_s - 2.5).abs() <= 0.001, "{record}");
        assert!(record["t_s"].is_f64() && record["at"].is_string());

        let run = voxsoak::grade::replay::read(&path).unwrap();
        let summary = voxsoak::grade::evaluate(&run);
        let graded = |name: &str| {
            let report = summary
                .faults
                .iter()
                .find(|fault| fault.name == name)
                .unwrap();
            report.detected_after_s
        };
        assert_eq!(graded("tts"), Some(after_s));
        assert_eq!(graded("db"), None);
    }
}

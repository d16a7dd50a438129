//! The reference fleet, observed from outside as the harness would observe any fleet: real
//! calls over Media Streams, `/metrics`, `/health`, Alertmanager webhooks, its `events`
//! table, its temp dir and its process exit. Each production bug must change the behaviour
//! it names, and the fixed fleet must not show it. Every test runs on SQLite and on
//! PostgreSQL (skipped, with a message, when none is reachable).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use voxsoak::call::CallOutcome;
use voxsoak::fleet::tempdir;
use voxsoak::standin::{llm, tts};
use voxsoak::twilio::signature;

use crate::fleet_util::{AlertReceiver, Backend, FleetProcess, TestDb, calls_scenario, eventually};
use crate::on_both_databases;
use crate::util::{ScenarioFile, within};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}

/// An in-process stand-in (real HTTP on loopback) the test controls.
async fn tts_standin(behaviour: tts::TtsBehaviour) -> (Arc<tts::TtsControl>, String) {
    let control = tts::TtsControl::new(behaviour, 3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = tts::spawn(listener, Arc::clone(&control), Default::default())
        .await
        .unwrap();
    (control, running.base_url())
}

async fn llm_standin(behaviour: llm::LlmBehaviour) -> (Arc<llm::LlmControl>, String) {
    let control = llm::LlmControl::new(behaviour, 3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = llm::spawn(listener, Arc::clone(&control), Default::default())
        .await
        .unwrap();
    (control, running.base_url())
}

/// Calls from the harness get real turns: caller audio → LLM (with a tool call that reads
/// the database) → TTS → agent audio, and the fixed fleet deletes every temp file.
async fn serves_real_turns(backend: Backend) {
    let Some(db) = TestDb::create(backend, "turns").await else {
        return;
    };
    let fleet = FleetProcess::start(&db, &args(&["--orders", "2000", "--workers", "4"])).await;
    let (status, body) = fleet.health().await;
    assert_eq!((status, &body["status"]), (200, &serde_json::json!("ok")));

    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 3, "8s", 2, "8s"));
    let summary = within(Duration::from_secs(120), scenario.run()).await;
    let calls = &summary.calls;
    assert!(
        calls.completed >= 3,
        "{calls:?} {:?}\n{}",
        summary.failure_examples,
        fleet.printed()
    );
    assert_eq!(calls.failed, 0, "{calls:?} {:?}", summary.failure_examples);
    assert!(summary.latency_ms.response.count >= calls.completed * 2);

    let metrics = fleet.metrics().await;
    let turns = metrics.get("turns_total");
    assert!(turns >= (calls.completed * 2) as f64, "{}", metrics.text);
    assert!(
        metrics.get("tool_calls_total") >= turns,
        "every turn looks orders up"
    );
    assert!(metrics.get("tts_requests_total{status=\"200\"}") >= turns);
    assert!(metrics.get("llm_requests_total{status=\"200\"}") >= 2.0 * turns);
    assert_eq!(
        metrics.value("tool_calls_rejected_total{reason=\"missing_required\"}"),
        None
    );
    assert_eq!(metrics.get("db_pool_size"), 10.0);
    assert!(metrics.get("response_latency_seconds_count") >= turns - 3.0);

    // Each reply's file is deleted once its mark comes back (calls cut off by the end of
    // the load may still be finishing).
    let audio_dir = fleet.audio_dir.clone();
    let emptied = eventually(Duration::from_secs(10), || {
        let audio_dir = audio_dir.clone();
        async move { tempdir::usage(&audio_dir).files == 0 }
    })
    .await;
    assert!(
        emptied,
        "temp files left: {:?}",
        tempdir::usage(&fleet.audio_dir)
    );
    assert!(fleet.metrics().await.get("temp_files_deleted_total") >= turns - 3.0);

    let events = db.connect().await.recent_events(50).await.unwrap();
    assert!(
        events.iter().any(|event| event.kind == "fleet_started"),
        "{events:?}"
    );
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(serves_real_turns);

/// `temp-leak`: every reply's audio file stays in the temp dir.
async fn temp_leak_keeps_every_reply_file(backend: Backend) {
    let Some(db) = TestDb::create(backend, "leak").await else {
        return;
    };
    let fleet = FleetProcess::start(&db, &args(&["--orders", "1000", "--bug", "temp-leak"])).await;
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 2, "5s", 2, "8s"));
    let summary = within(Duration::from_secs(90), scenario.run()).await;
    assert!(summary.calls.completed >= 2, "{:?}", summary.calls);
    let metrics = fleet.metrics().await;
    let turns = metrics.get("turns_total");
    let usage = tempdir::usage(&fleet.audio_dir);
    assert!(
        usage.files as f64 >= turns - 2.0 && usage.files >= 4,
        "{usage:?} after {turns} turns"
    );
    assert_eq!(metrics.get("temp_files_deleted_total"), 0.0);
    let measured = eventually(Duration::from_secs(5), || async {
        fleet.metrics().await.get("temp_dir_bytes") > 0.0
    })
    .await;
    assert!(measured, "temp_dir_bytes is exported");
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(temp_leak_keeps_every_reply_file);

/// Requests the TTS stand-in got, grouped by `X-Request-Id` (one group per utterance).
fn tts_requests_by_utterance(
    control: &tts::TtsControl,
) -> BTreeMap<String, Vec<std::time::SystemTime>> {
    let mut groups: BTreeMap<String, Vec<std::time::SystemTime>> = BTreeMap::new();
    for record in control.recent() {
        if let Some(id) = record.request_id {
            groups.entry(id).or_default().push(record.at);
        }
    }
    groups
}

/// The fixed fleet meets a TTS answering 429 with `Retry-After: 1`: it waits at least that
/// long between tries, gives up within its budget, plays the cached apology (the call goes
/// on) and raises `TtsRateLimited`.
async fn tts_429_fixed_fleet_backs_off(backend: Backend) {
    let Some(db) = TestDb::create(backend, "backoff").await else {
        return;
    };
    let (control, tts_url) = tts_standin(tts::TtsBehaviour {
        fault: tts::TtsFault::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
        },
        ..Default::default()
    })
    .await;
    let alerts = AlertReceiver::start().await;
    let fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "1000",
            "--tts-base-url",
            &tts_url,
            "--alert-webhook-url",
            &alerts.url,
        ]),
    )
    .await;
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 1, "1s", 1, "8s"));
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    assert_eq!(
        summary.calls.failed, 0,
        "the apology keeps the call going: {:?}",
        summary.failure_examples
    );
    let groups = tts_requests_by_utterance(&control);
    assert!(!groups.is_empty());
    for (id, times) in &groups {
        assert!(
            times.len() <= 6,
            "{id}: {} tries within the budget",
            times.len()
        );
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]).unwrap_or_default();
            assert!(
                gap >= Duration::from_millis(900),
                "{id}: Retry-After ignored, gap {gap:?}"
            );
        }
    }
    let fallbacks = fleet.metrics().await.get("tts_fallbacks_total");
    assert!(fallbacks >= 1.0, "{}", fleet.metrics().await.text);
    // Every turn that played the apology is a row in the dead-letter table.
    let metrics = fleet
        .metrics_once("dead_letters", fallbacks, Duration::from_secs(10))
        .await;
    assert_eq!(metrics.get("dead_letters"), fallbacks, "{}", metrics.text);
    assert!(metrics.get("tts_requests_total{status=\"429\"}") >= 2.0);
    assert!(
        alerts
            .wait_for("TtsRateLimited", "firing", Duration::from_secs(5))
            .await
    );
    let (status, body) = fleet.health().await;
    assert!(
        status == 503
            || alerts
                .names("resolved")
                .contains(&"TtsRateLimited".to_string()),
        "{body}"
    );
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(tts_429_fixed_fleet_backs_off);

/// `no-backoff`: the same 429s turn into a retry storm, and the caller hears nothing.
async fn tts_429_no_backoff_storms(backend: Backend) {
    let Some(db) = TestDb::create(backend, "storm").await else {
        return;
    };
    let (control, tts_url) = tts_standin(tts::TtsBehaviour {
        fault: tts::TtsFault::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
        },
        ..Default::default()
    })
    .await;
    let fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "1000",
            "--tts-base-url",
            &tts_url,
            "--bug",
            "no-backoff",
        ]),
    )
    .await;
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 1, "1s", 1, "3s"));
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    assert!(
        summary
            .calls
            .by_outcome
            .get(CallOutcome::TurnTimeout.as_str())
            .copied()
            .unwrap_or(0)
            >= 1,
        "the caller waits in vain: {:?}",
        summary.calls
    );
    let groups = tts_requests_by_utterance(&control);
    let (id, times) = groups
        .iter()
        .max_by_key(|(_, times)| times.len())
        .expect("requests");
    assert!(
        times.len() >= 50,
        "{id}: only {} tries in a 3 s turn",
        times.len()
    );
    let first = times[0];
    let last = times[times.len() - 1];
    let mean_gap = last.duration_since(first).unwrap_or_default() / (times.len() as u32 - 1);
    assert!(
        mean_gap < Duration::from_millis(100),
        "retries are immediate: mean gap {mean_gap:?}"
    );
    assert!(fleet.metrics().await.get("tts_retries_total") >= 50.0);
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(tts_429_no_backoff_storms);

/// The fixed fleet refuses `search_orders({})` with a tool error, the call goes on, and
/// `ToolCallRejected` fires (also written to `events`).
async fn empty_tool_params_are_rejected(backend: Backend) {
    let Some(db) = TestDb::create(backend, "reject").await else {
        return;
    };
    let (control, llm_url) = llm_standin(llm::LlmBehaviour {
        fault: llm::LlmFault::EmptyToolParams,
        ..Default::default()
    })
    .await;
    let alerts = AlertReceiver::start().await;
    let mut fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "1000",
            "--llm-base-url",
            &llm_url,
            "--alert-webhook-url",
            &alerts.url,
        ]),
    )
    .await;
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 1, "1s", 2, "8s"));
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    assert!(
        summary.calls.completed >= 1,
        "{:?} {:?}",
        summary.calls,
        summary.failure_examples
    );
    assert_eq!(summary.calls.failed, 0, "{:?}", summary.failure_examples);
    assert!(control.faulted() >= 2);
    let metrics = fleet.metrics().await;
    assert!(
        metrics.get("tool_calls_rejected_total{reason=\"missing_required\"}") >= 2.0,
        "{}",
        metrics.text
    );
    assert!(
        alerts
            .wait_for("ToolCallRejected", "firing", Duration::from_secs(5))
            .await
    );
    let events = db.connect().await.recent_events(100).await.unwrap();
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "tool_call_rejected")
        .collect();
    assert!(!rejected.is_empty(), "{events:?}");
    assert!(
        rejected[0].detail.contains("missing_required"),
        "{:?}",
        rejected[0]
    );
    assert!(
        fleet.exited(Duration::ZERO).await.is_none(),
        "still serving"
    );
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(empty_tool_params_are_rejected);

/// A TTS that is slow and an LLM that fails: the fixed fleet says the apology (so the call
/// goes on) and raises `TtsDegraded` and `LlmDegraded`, the alerts that detect every TTS and
/// LLM fault kind but 429s and bad tool calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_slow_dependencies_raise_degraded_alerts() {
    let Some(db) = TestDb::create(Backend::Sqlite, "degraded").await else {
        return;
    };
    let (_tts, tts_url) = tts_standin(tts::TtsBehaviour {
        fault: tts::TtsFault::Slow {
            delay: Duration::from_millis(2500),
        },
        ..Default::default()
    })
    .await;
    let (llm_control, llm_url) = llm_standin(llm::LlmBehaviour {
        fault: llm::LlmFault::Status {
            code: 503,
            retry_after: None,
        },
        ..Default::default()
    })
    .await;
    let alerts = AlertReceiver::start().await;
    let fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "1000",
            "--tts-base-url",
            &tts_url,
            "--llm-base-url",
            &llm_url,
            "--alert-webhook-url",
            &alerts.url,
        ]),
    )
    .await;
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 1, "1s", 1, "10s"));
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    assert_eq!(summary.calls.failed, 0, "{:?}", summary.failure_examples);
    assert!(llm_control.faulted() >= 1);
    for alert in ["TtsDegraded", "LlmDegraded"] {
        assert!(
            alerts
                .wait_for(alert, "firing", Duration::from_secs(5))
                .await,
            "{alert}: {:?}\n{}",
            alerts.names("firing"),
            fleet.printed()
        );
    }
    // Every turn the LLM failed is a dead letter (one each, whatever TTS then did).
    let metrics = fleet
        .metrics_once("dead_letters", 1.0, Duration::from_secs(10))
        .await;
    assert!(metrics.get("dead_letters") >= 1.0, "{}", metrics.text);
    assert!(
        metrics.get("dead_letters") <= metrics.get("turns_total"),
        "{}",
        metrics.text
    );
    assert!(metrics.get("tts_slow_total") >= 1.0, "{}", metrics.text);
    assert!(
        metrics.get("llm_requests_total{status=\"503\"}") >= 1.0,
        "{}",
        metrics.text
    );
    assert!(
        !alerts
            .names("firing")
            .contains(&"TtsRateLimited".to_string()),
        "a slow TTS is not a rate-limited one"
    );
    fleet.stop().await;
    db.remove().await;
}

/// `unvalidated-tool-params` with a 1,000,000-row table and a 512 MiB limit: one `{}` tool
/// call loads every order and the process dies as an OOM-killed pod does (SIGKILL, 137).
async fn empty_tool_params_kill_the_unvalidated_fleet(backend: Backend) {
    let Some(db) = TestDb::create(backend, "oom").await else {
        return;
    };
    let (_control, llm_url) = llm_standin(llm::LlmBehaviour {
        fault: llm::LlmFault::EmptyToolParams,
        ..Default::default()
    })
    .await;
    let mut fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "1000000",
            "--memory-limit",
            "512MiB",
            "--llm-base-url",
            &llm_url,
            "--bug",
            "unvalidated-tool-params",
        ]),
    )
    .await;
    let baseline = fleet.metrics().await.get("process_resident_memory_bytes");
    assert!(
        baseline < 256.0 * 1024.0 * 1024.0,
        "starts well under the limit: {baseline}"
    );
    // The caller waits as long as it takes: on a busy machine loading a million rows in a
    // debug build can outlast a short turn timeout, and a caller who hangs up ends the turn.
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 1, "1s", 1, "240s"));
    let run = tokio::spawn(async move { scenario.run().await });
    let status = fleet
        .exited(Duration::from_secs(240))
        .await
        .expect("the fleet dies");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{status:?}\n{}",
        fleet.printed()
    );
    assert!(
        fleet.printed().contains("memory limit exceeded"),
        "{}",
        fleet.printed()
    );
    let summary = within(Duration::from_secs(60), run).await.unwrap();
    assert_eq!(summary.calls.completed, 0, "{:?}", summary.calls);
    db.remove().await;
}
on_both_databases!(empty_tool_params_kill_the_unvalidated_fleet);

/// Samples `db_pool_in_use` every 100 ms while `run` runs; returns the share of samples
/// (0..1) at which all `size` connections were in use.
async fn share_of_time_pool_full<F: std::future::Future>(
    fleet: &FleetProcess,
    size: f64,
    run: F,
) -> (f64, F::Output) {
    tokio::pin!(run);
    let (mut full, mut samples) = (0u32, 0u32);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            output = &mut run => return (f64::from(full) / f64::from(samples.max(1)), output),
            _ = tick.tick() => {
                samples += 1;
                if fleet.metrics().await.get("db_pool_in_use") >= size {
                    full += 1;
                }
            }
        }
    }
}

/// `long-transactions`: holding a transaction (and its connection) across each turn
/// exhausts a pool of 3 under 8 concurrent calls; `DbPoolSaturated` fires. The fixed fleet
/// under the same load keeps connections for milliseconds and never saturates.
async fn long_transactions_exhaust_the_pool(backend: Backend) {
    let Some(db) = TestDb::create(backend, "pool").await else {
        return;
    };
    for bug in [true, false] {
        let alerts = AlertReceiver::start().await;
        let mut list = vec![
            "--orders",
            "1000",
            "--db-pool-size",
            "3",
            "--alert-webhook-url",
            &alerts.url,
        ];
        if bug {
            list.extend(["--bug", "long-transactions"]);
        }
        let fleet = FleetProcess::start(&db, &args(&list)).await;
        let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 8, "8s", 3, "6s"));
        let (full, summary) =
            share_of_time_pool_full(&fleet, 3.0, within(Duration::from_secs(90), scenario.run()))
                .await;
        eprintln!(
            "long-transactions bug {bug}: pool full {:.0}% of the time",
            full * 100.0
        );
        if bug {
            assert!(
                full >= 0.5,
                "the pool is exhausted most of the time ({full:.2})"
            );
            assert!(
                alerts
                    .wait_for("DbPoolSaturated", "firing", Duration::from_secs(5))
                    .await,
                "received: {:?}",
                alerts.names("firing")
            );
        } else {
            assert_eq!(summary.calls.failed, 0, "{:?}", summary.failure_examples);
            assert!(
                full <= 0.25,
                "the fixed fleet kept its pool full ({full:.2})"
            );
            assert!(
                !alerts
                    .names("firing")
                    .contains(&"DbPoolSaturated".to_string())
            );
        }
        fleet.stop().await;
    }
    db.remove().await;
}
on_both_databases!(long_transactions_exhaust_the_pool);

/// `silent-stall`: the worker stalls after one job, silently. The healer finds it through
/// `health_checks` within `stall_after` plus one healer interval, restarts it, retries its
/// job (the calls still complete) and logs the intervention to `events`.
async fn healer_restarts_stalled_workers(backend: Backend) {
    let Some(db) = TestDb::create(backend, "heal").await else {
        return;
    };
    let fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "1000",
            "--workers",
            "1",
            "--bug",
            "silent-stall",
            "--stall-after-calls",
            "1",
            "--stall-after",
            "1s",
            "--heal-interval",
            "250ms",
        ]),
    )
    .await;
    // One worker and one caller: every turn after the first meets exactly one stall (about
    // 1.3 s), and the restarted worker, fresh, serves the retried turn. With more of either,
    // a retried turn can land on a worker that already served and stall again, and a third
    // stall abandons it without audio: a race in the test, not the healer failing to act.
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 1, "4s", 3, "15s"));
    let summary = within(Duration::from_secs(90), scenario.run()).await;
    assert_eq!(
        summary.calls.failed,
        0,
        "{:?}\n{}",
        summary.failure_examples,
        fleet.printed()
    );
    let metrics = fleet.metrics().await;
    assert!(
        metrics.get("healer_restarts_total") >= 1.0,
        "{}",
        metrics.text
    );
    let events = db.connect().await.recent_events(200).await.unwrap();
    let restarts: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "worker_restarted")
        .collect();
    assert!(!restarts.is_empty(), "{events:?}");
    for restart in &restarts {
        // "silent for 1.3s; generation …"
        let silent: f64 = restart
            .detail
            .strip_prefix("silent for ")
            .and_then(|rest| rest.split('s').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("unexpected detail {:?}", restart.detail));
        assert!(
            silent <= 1.0 + 0.25 + 1.0,
            "restarted {silent}s after its last sign of life (stall_after 1s, interval 250ms)"
        );
    }
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(healer_restarts_stalled_workers);

/// A process frozen as a whole (SIGSTOP, a paused VM) is not a stalled worker: when it
/// resumes, every worker's last ping is old, and the fixed fleet's healer gives them a round
/// to ping again instead of restarting them all (and raising `WorkerStalled`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_process_is_not_a_stalled_worker() {
    use voxsoak::chaos::process::{ProcessStallFault, ProcessTarget};
    let Some(db) = TestDb::create(Backend::Sqlite, "frozen").await else {
        return;
    };
    let fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "1000",
            "--workers",
            "8",
            "--stall-after",
            "1s",
            "--heal-interval",
            "250ms",
        ]),
    )
    .await;
    // Busy when it freezes, as a fleet under load is: on resume, the calls' tasks and the
    // healer are all due at once.
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 6, "8s", 3, "15s"));
    let calls = tokio::spawn(async move { scenario.run().await });
    let busy = eventually(Duration::from_secs(20), || async {
        fleet.metrics().await.get("turns_total") >= 2.0
    })
    .await;
    assert!(busy, "{}", fleet.printed());
    let stall = ProcessStallFault::inject(ProcessTarget::Pid(fleet.pid()))
        .await
        .unwrap();
    // The fault itself: three stall_afters of standing still.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stall.clear().await.unwrap();
    let pinging = eventually(Duration::from_secs(10), || async {
        fleet.metrics().await.get("workers_silent") == 0.0
    })
    .await;
    assert!(pinging, "{}", fleet.metrics().await.text);
    // Ten more healer rounds: a restart would have happened in the first.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let metrics = fleet.metrics().await;
    assert_eq!(
        metrics.get("healer_restarts_total"),
        0.0,
        "{}\n{}",
        metrics.text,
        fleet.printed()
    );
    assert_eq!(fleet.health().await.0, 200);
    within(Duration::from_secs(60), calls).await.unwrap();
    fleet.stop().await;
    db.remove().await;
}

/// `no-healer` with `silent-stall`: nobody restarts the stalled workers; callers wait in
/// vain and `/health` says which workers went silent.
async fn without_the_healer_the_fleet_stops_answering(backend: Backend) {
    let Some(db) = TestDb::create(backend, "noheal").await else {
        return;
    };
    let fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "1000",
            "--workers",
            "2",
            "--bug",
            "silent-stall",
            "--bug",
            "no-healer",
            "--stall-after-calls",
            "1",
            "--stall-after",
            "1s",
            "--heal-interval",
            "250ms",
        ]),
    )
    .await;
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 2, "4s", 3, "3s"));
    let summary = within(Duration::from_secs(90), scenario.run()).await;
    let timeouts = summary
        .calls
        .by_outcome
        .get(CallOutcome::TurnTimeout.as_str())
        .copied()
        .unwrap_or(0);
    assert!(timeouts >= 1, "{:?}", summary.calls);
    let metrics = fleet.metrics().await;
    assert_eq!(metrics.get("healer_restarts_total"), 0.0);
    assert_eq!(metrics.get("workers_silent"), 2.0, "{}", metrics.text);
    let (status, body) = fleet.health().await;
    assert_eq!(status, 503, "{body}");
    assert!(body["reasons"].to_string().contains("silent"), "{body}");
    let events = db.connect().await.recent_events(200).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "worker_restarted"));
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(without_the_healer_the_fleet_stops_answering);

/// With an auth token the webhook and the stream handshake need a valid
/// `X-Twilio-Signature`; a signed webhook gets `<Connect><Stream>` TwiML. And a temp dir
/// over budget shows on `/health` and as `TempDirGrowing`.
async fn signatures_and_temp_dir_budget(backend: Backend) {
    let Some(db) = TestDb::create(backend, "ops").await else {
        return;
    };
    let alerts = AlertReceiver::start().await;
    let fleet = FleetProcess::start(
        &db,
        &args(&[
            "--orders",
            "100",
            "--twilio-auth-token",
            "s3cret",
            "--temp-dir-budget",
            "1MiB",
            "--alert-webhook-url",
            &alerts.url,
        ]),
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/voice", fleet.address);
    let params = vec![
        ("CallSid".to_string(), "CA0123".to_string()),
        ("From".to_string(), "+1555".to_string()),
    ];
    let unsigned = http.post(&url).form(&params).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    let good = signature::compute("s3cret", &url, &params);
    let signed = http
        .post(&url)
        .header(signature::HEADER, good)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 200);
    let twiml = signed.text().await.unwrap();
    let target = voxsoak::twilio::twiml::parse_connect_stream(&twiml).unwrap();
    assert_eq!(target.url, fleet.stream_url());
    let upgrade = http
        .get(fleet.stream_url().replace("ws://", "http://"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(upgrade.status().as_u16(), 403);
    assert_eq!(fleet.metrics().await.get("signature_rejections_total"), 2.0);

    std::fs::write(fleet.audio_dir.join("leaked.wav"), vec![0u8; 2 << 20]).unwrap();
    assert!(
        alerts
            .wait_for("TempDirGrowing", "firing", Duration::from_secs(10))
            .await
    );
    let (status, body) = fleet.health().await;
    assert_eq!(status, 503);
    assert!(
        body["reasons"].to_string().contains("temp dir over budget"),
        "{body}"
    );
    std::fs::remove_file(fleet.audio_dir.join("leaked.wav")).unwrap();
    assert!(
        alerts
            .wait_for("TempDirGrowing", "resolved", Duration::from_secs(15))
            .await
    );
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(signatures_and_temp_dir_budget);

/// Each fault kind's default detection is a signal the reference fleet really gives: one of
/// its alerts, or its health (a proxy's default is the alert on the dependency behind it;
/// the process faults are seen on health).
#[test]
fn default_detections_are_signals_the_reference_fleet_gives() {
    use voxsoak::fleet::alerts::AlertName;
    use voxsoak::scenario::faults::{DetectionRule, FaultKind};
    let raised: Vec<&str> = AlertName::ALL.iter().map(|alert| alert.as_str()).collect();
    for kind in FaultKind::ALL {
        match kind.default_detection() {
            DetectionRule::Alert { name } => {
                assert!(raised.contains(&name.as_str()), "{kind}: {name}")
            }
            DetectionRule::Unhealthy => assert!(
                matches!(
                    kind,
                    FaultKind::Proxy | FaultKind::ProcessStall | FaultKind::ProcessKill
                ),
                "{kind} has an alert of its own"
            ),
            other => panic!("{kind}: {other:?}"),
        }
    }
}

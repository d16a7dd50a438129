//! Fleets voxsoak did not write, watched through what `[observe]` names: their own metric
//! names, their process through a pid file, their health URL going silent, and the
//! stand-ins they are wired to with no fault in the scenario. And the sink the harness
//! starts, watched like the embedded fleet.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use voxsoak::sink::{self, SinkOptions};

use crate::chaos::{LiveRun, free_port};
use crate::util::fixtures_dir;

/// The RSS and temp-dir bytes the ops server reports, under its own names.
const RSS_BYTES: f64 = 123_456_789.0;
const TMP_BYTES: f64 = 4242.0;

/// A fleet's operations endpoints, apart from its calls: `/health` and a `/metrics` page
/// whose series have the fleet's own names.
struct OpsServer {
    address: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl OpsServer {
    async fn start() -> OpsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let page = format!(
            "# TYPE myfleet_memory_bytes gauge\nmyfleet_memory_bytes{{kind=\"rss\"}} {RSS_BYTES}\nmyfleet_memory_bytes{{kind=\"heap\"}} 7\nmyfleet_tmp_bytes {TMP_BYTES}\n"
        );
        // A connection per request, as a probe of a process that just died would find:
        // none is kept open in the harness's pool once the server is gone.
        let router = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/metrics", get(move || async move { page }))
            .layer(axum::middleware::map_response(
                |mut response: axum::response::Response| async move {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                    response
                },
            ));
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .unwrap();
        });
        OpsServer {
            address,
            stop,
            task,
        }
    }

    /// Stops listening, as a crashed process would: once this returns, connections are
    /// refused.
    async fn shut_down(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the ops server stops")
            .unwrap();
    }
}

/// Two calls of two turns, held for `hold`, against `target` (a `[target]` body), with
/// `rest` (`[slo]`, `[chaos]`, `[observe]`) after.
fn two_calls(name: &str, target: &str, hold: &str, rest: &str) -> String {
    format!(
        r#"
name = "{name}"
[target]
{target}
[load]
stages = [{{ ramp_to = 2, over = "1s" }}, {{ hold = "{hold}" }}]
[calls]
turn_timeout = "8s"
fixtures = ["{fixtures}/*.wav"]
[[scripts]]
name = "talk"
turns = 2
{rest}"#,
        fixtures = fixtures_dir().display(),
    )
}

/// Every record of a run's journal.
fn journal(out_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(out_dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a journal line is JSON"))
        .collect()
}

/// A process standing in for the fleet's: `sleep`, its pid written to `pid_file` as a
/// daemon writes its own.
fn start_process(pid_file: &Path) -> std::process::Child {
    let child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("spawn sleep");
    std::fs::write(pid_file, format!("{}\n", child.id())).unwrap();
    child
}

/// Against an external fleet: `fleet_sample` carries the values of the series
/// `rss_metric` and `temp_dir_metric` name; the process a pid file names is sampled, its
/// death (a kill the harness did not do) is `fleet_exited` with `by_harness: false`, and a
/// new pid in the file is `fleet_restarted`; a health URL whose server is gone is journaled
/// as refused, not as "error sending request".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_external_fleet_is_watched_by_its_own_names_pid_file_and_refusals() {
    let calls = CancellationToken::new();
    let fleet = sink::spawn(SinkOptions::default(), calls.clone())
        .await
        .unwrap();
    let ops = OpsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("fleet.pid");
    let mut first = start_process(&pid_file);
    let toml = two_calls(
        "external-watch",
        &format!("stream_url = \"ws://{}/stream\"", fleet.address),
        "24s",
        &format!(
            r#"[slo]
call_success = ">= 0%"
[observe]
health_url = "http://{ops}/health"
health_interval = "200ms"
metrics_url = "http://{ops}/metrics"
scrape_interval = "500ms"
rss_metric = 'myfleet_memory_bytes{{kind="rss"}}'
temp_dir_metric = "myfleet_tmp_bytes"
process = {{ pid_file = "{pid_file}" }}
"#,
            ops = ops.address,
            pid_file = pid_file.display(),
        ),
    );
    let live = LiveRun::start(&toml, &[]);
    let limit = Duration::from_secs(30);

    let observers = live
        .event(limit, |record| record["event"] == "observers")
        .await;
    assert_eq!(
        observers["process"],
        serde_json::json!({"watch": "pid_file", "pid_file": pid_file.display().to_string(), "interval_s": 1.0}),
        "{observers}"
    );
    assert_eq!(observers["rss_source"], "process");
    assert_eq!(observers["temp_dir_source"], "metrics");
    assert_eq!(
        observers["metrics"]["rss_metric"],
        r#"myfleet_memory_bytes{kind="rss"}"#
    );
    let sample = live
        .event(limit, |record| record["event"] == "fleet_sample")
        .await;
    assert_eq!(sample["rss_bytes"].as_f64(), Some(RSS_BYTES), "{sample}");
    assert_eq!(
        sample["temp_dir_bytes"].as_f64(),
        Some(TMP_BYTES),
        "{sample}"
    );
    let healthy = live
        .event(limit, |record| record["event"] == "health")
        .await;
    assert_eq!(healthy["healthy"], true, "{healthy}");

    // The fleet's process dies of something the harness did not do.
    let first_pid = first.id();
    first.kill().unwrap();
    first.wait().unwrap();
    let exited = live
        .event(limit, |record| record["event"] == "fleet_exited")
        .await;
    assert_eq!(
        exited["pid"].as_u64(),
        Some(u64::from(first_pid)),
        "{exited}"
    );
    assert_eq!(exited["by_harness"], false, "{exited}");
    assert_eq!(exited["status"], "exited", "{exited}");

    // Its supervisor starts it again and rewrites the pid file.
    let mut second = start_process(&pid_file);
    let restarted = live
        .event(limit, |record| record["event"] == "fleet_restarted")
        .await;
    assert_eq!(
        restarted["pid"].as_u64(),
        Some(u64::from(second.id())),
        "{restarted}"
    );

    // The health endpoint goes away: refused, said as such.
    ops.shut_down().await;
    let refused = live
        .event(limit, |record| {
            record["event"] == "health" && record["healthy"] == false
        })
        .await;
    assert_eq!(refused["refused"], true, "{refused}");
    assert_eq!(refused["detail"], "connection refused", "{refused}");

    let outcome = live.finish().await;
    let records = journal(&outcome.out_dir);
    let sampled = records
        .iter()
        .find(|record| record["event"] == "fleet_process")
        .unwrap_or_else(|| panic!("no fleet_process record: {records:#?}"));
    assert!(
        sampled["rss_bytes"].as_u64().is_some_and(|rss| rss > 0),
        "{sampled}"
    );
    assert_eq!(
        records
            .iter()
            .filter(|record| record["event"] == "fleet_exited")
            .count(),
        1,
        "the one death, once"
    );
    second.kill().unwrap();
    second.wait().unwrap();
    calls.cancel();
}

/// An external fleet wired to `[chaos] tts_listen` / `llm_listen`, in a scenario with no
/// fault at all: the stand-ins serve it (its calls complete, the TTS stand-in answers 200),
/// and `no_retry_storm` is measured from what the stand-in saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stand_ins_serve_a_fleet_wired_to_them_with_no_fault() {
    use crate::fleet_util::{Backend, FleetProcess, TestDb};
    let db = TestDb::create(Backend::Sqlite, "standins").await.unwrap();
    let (tts, llm) = (free_port(), free_port());
    let fleet = FleetProcess::start_wired(&db, tts, llm).await;
    let toml = two_calls(
        "external-baseline",
        &format!("stream_url = \"{}\"", fleet.stream_url()),
        "8s",
        &format!(
            r#"[slo]
call_success = ">= 100%"
no_retry_storm = true
[chaos]
tts_listen = "127.0.0.1:{tts}"
llm_listen = "127.0.0.1:{llm}"
"#
        ),
    );
    let live = LiveRun::start(&toml, &[]);
    let outcome = live.finish().await;
    let calls = &outcome.summary.calls;
    assert!(calls.started >= 2, "{calls:?}");
    assert_eq!(
        calls.completed,
        calls.started,
        "every call completes through the stand-ins: {calls:?} {:?}; the fleet printed:\n{}",
        outcome.summary.failure_examples,
        fleet.printed()
    );
    let records = journal(&outcome.out_dir);
    assert!(
        records
            .iter()
            .any(|record| record["event"] == "tts_standin"),
        "the TTS stand-in ran"
    );
    let answered: u64 = records
        .iter()
        .filter(|record| record["event"] == "tts_requests")
        .filter_map(|record| record["by_status"]["200"].as_u64())
        .sum();
    assert!(answered > 0, "the TTS stand-in answered 200s: {records:#?}");
    let storm = outcome
        .summary
        .slos
        .iter()
        .find(|slo| slo.name == "no_retry_storm")
        .expect("no_retry_storm graded");
    assert!(storm.pass, "{storm:?}");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), fleet.stop())
            .await
            .is_ok()
    );
    db.remove().await;
}

/// The sink the harness starts: its process is watched (a `fleet` record with its pid,
/// `fleet_process` samples) and its `/health` probed, so `max_crashes` and `uptime` are
/// measured, and pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_is_watched_like_a_fleet_the_harness_started() {
    let toml = two_calls(
        "sink-watched",
        "fleet = \"sink\"",
        "11s",
        "[slo]\ncall_success = \">= 100%\"\nmax_crashes = 0\nuptime = \">= 99%\"\n",
    );
    let live = LiveRun::start(&toml, &[]);
    let fleet = live
        .event(Duration::from_secs(60), |record| record["event"] == "fleet")
        .await;
    assert_eq!(fleet["what"], "voxsoak sink", "{fleet}");
    assert!(fleet["pid"].as_u64().is_some(), "{fleet}");
    let outcome = live.finish().await;
    let records = journal(&outcome.out_dir);
    for event in ["fleet_process", "health"] {
        assert!(
            records.iter().any(|record| record["event"] == event),
            "no {event} record: {records:#?}"
        );
    }
    for name in ["max_crashes", "uptime"] {
        let slo = outcome
            .summary
            .slos
            .iter()
            .find(|slo| slo.name == name)
            .unwrap_or_else(|| panic!("{name} graded"));
        assert!(slo.pass, "{slo:?}");
    }
}

/// An external fleet whose call server dies while its health URL (another process) still
/// answers 200: calls refused at connect are the fleet down, so `uptime` counts the outage
/// instead of reporting 100% behind a healthy probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_refused_at_connect_are_downtime_though_health_answers() {
    let calls = CancellationToken::new();
    let fleet = sink::spawn(SinkOptions::default(), calls.clone())
        .await
        .unwrap();
    let ops = OpsServer::start().await;
    let toml = two_calls(
        "external-refusing",
        &format!("stream_url = \"ws://{}/stream\"", fleet.address),
        "30s",
        &format!(
            r#"[slo]
call_success = ">= 0%"
uptime = ">= 99%"
[observe]
health_url = "http://{ops}/health"
health_interval = "200ms"
"#,
            ops = ops.address,
        ),
    );
    let live = LiveRun::start(&toml, &[]);
    let limit = Duration::from_secs(60);
    live.event(limit, |record| {
        record["event"] == "interval" && record["connected"].as_u64().unwrap_or(0) > 0
    })
    .await;
    // The call server goes away; health goes on answering 200.
    calls.cancel();
    let refusing = live
        .event(limit, |record| {
            record["event"] == "interval"
                && record["refused"].as_u64().unwrap_or(0) > 0
                && record["connected"] == 0
        })
        .await;
    assert!(refusing["failed"].as_u64().unwrap_or(0) > 0, "{refusing}");

    let outcome = live.finish().await;
    let records = journal(&outcome.out_dir);
    assert!(
        records
            .iter()
            .filter(|record| record["event"] == "health")
            .all(|record| record["healthy"] == true),
        "health answered 200 throughout"
    );
    let uptime = outcome.summary.uptime.expect("uptime measured");
    assert!(uptime.outages >= 1, "{uptime:?}");
    assert!(uptime.down_s >= 4.0, "{uptime:?}");
    let slo = outcome
        .summary
        .slos
        .iter()
        .find(|slo| slo.name == "uptime")
        .expect("uptime graded");
    assert!(!slo.pass, "{slo:?}");
    ops.shut_down().await;
}

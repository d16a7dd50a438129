//! The chaos plane against the real reference fleet: each fault is injected by a real
//! `voxsoak run`, confirmed, seen in the fleet's own metrics or health, and undone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voxsoak::fleet::Bug;
use voxsoak::grade::Verdict;
use voxsoak::run::{RunError, RunOptions, RunOutcome, run};

use crate::fleet_util::{Metrics, eventually};
use crate::util::{ScenarioFile, fixtures_dir, voxsoak_exe, within};

/// A `voxsoak run` going on in this process.
pub struct LiveRun {
    task: JoinHandle<Result<RunOutcome, RunError>>,
    pub out: PathBuf,
    pub shutdown: CancellationToken,
    _scenario: ScenarioFile,
    http: reqwest::Client,
}

impl LiveRun {
    pub fn start(toml: &str, bugs: &[Bug]) -> LiveRun {
        let scenario = ScenarioFile::new(toml);
        let out = scenario.out_dir();
        let shutdown = CancellationToken::new();
        let options = RunOptions {
            scenario: scenario.path.clone(),
            out: Some(out.clone()),
            duration: None,
            time_scale: None,
            grace: None,
            report_every: None,
            seed: None,
            progress: false,
            exe: voxsoak_exe(),
            fleet_bugs: bugs.to_vec(),
            resume: None,
            metrics_listen: None,
        };
        let task = tokio::spawn(run(options, shutdown.clone()));
        LiveRun {
            task,
            out,
            shutdown,
            _scenario: scenario,
            http: reqwest::Client::new(),
        }
    }

    /// The first journal record for which `matches` holds, waiting up to `limit` for it.
    pub async fn event(&self, limit: Duration, matches: impl Fn(&Value) -> bool) -> Value {
        journal_event(&self.out.join("journal.jsonl"), limit, matches).await
    }

    /// The record of `event` for the fault named `fault`.
    pub async fn fault_event(&self, event: &str, fault: &str, limit: Duration) -> Value {
        self.event(limit, |record| {
            record["event"] == event && record["fault"] == fault
        })
        .await
    }

    /// `http://127.0.0.1:PORT/` of the embedded fleet.
    pub async fn fleet_http(&self) -> String {
        let fleet = self
            .event(Duration::from_secs(90), |record| record["event"] == "fleet")
            .await;
        fleet["http"].as_str().expect("fleet http").to_owned()
    }

    pub async fn metrics(&self, http: &str) -> Metrics {
        Metrics::scrape(&self.http, &format!("{http}metrics")).await
    }

    /// The health status, or None when the fleet does not answer within 2 s.
    pub async fn health(&self, http: &str) -> Option<u16> {
        self.http
            .get(format!("{http}health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16())
    }

    pub async fn finish(self) -> FinishedRun {
        let outcome = within(Duration::from_secs(180), self.task)
            .await
            .expect("the run task does not panic")
            .unwrap_or_else(|error| panic!("the run failed: {error}"));
        FinishedRun {
            outcome,
            _scenario: self._scenario,
        }
    }
}

/// A finished run; its run directory lives as long as this.
pub struct FinishedRun {
    pub outcome: RunOutcome,
    _scenario: ScenarioFile,
}

impl std::ops::Deref for FinishedRun {
    type Target = RunOutcome;

    fn deref(&self) -> &RunOutcome {
        &self.outcome
    }
}

/// Polls a journal file for a record.
pub async fn journal_event(
    path: &Path,
    limit: Duration,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            // The last line may be half-written: only whole lines are read.
            for line in text.lines() {
                if let Ok(record) = serde_json::from_str::<Value>(line)
                    && matches(&record)
                {
                    return record;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such journal record within {limit:?}; the journal:\n{}",
            std::fs::read_to_string(path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sums of `fields` over every `event` record of a journal.
fn journal_sum(path: &Path, event: &str, fields: &[&str; 2]) -> (f64, f64) {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["event"] == event)
        .fold((0.0, 0.0), |(a, b), record| {
            (
                a + record[fields[0]].as_f64().unwrap_or(0.0),
                b + record[fields[1]].as_f64().unwrap_or(0.0),
            )
        })
}

/// An embedded-fleet scenario with `faults` appended: `concurrency` calls held for `hold`.
pub fn embedded_scenario(extra_target: &str, concurrency: u32, hold: &str, faults: &str) -> String {
    format!(
        r#"
name = "chaos-test"
seed = 11
[target]
fleet = "embedded"
orders = 5000
{extra_target}
[load]
stages = [{{ ramp_to = {concurrency}, over = "1s" }}, {{ hold = "{hold}" }}]
[calls]
turn_timeout = "8s"
fixtures = ["{fixtures}/*.wav"]
[[scripts]]
name = "talk"
turns = 3
[slo]
call_success = ">= 0%"
{faults}
"#,
        fixtures = fixtures_dir().display()
    )
}

fn fault<'a>(outcome: &'a RunOutcome, name: &str) -> &'a voxsoak::grade::FaultReport {
    outcome
        .summary
        .faults
        .iter()
        .find(|fault| fault.name == name)
        .unwrap_or_else(|| panic!("no fault {name} in {:#?}", outcome.summary.faults))
}

/// TTS 429s are served for real: the fleet's own metrics count them while the fault is on,
/// and it gets 200s again once it is cleared. The buggy fleet (no backoff) sends many more
/// requests into the same window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tts_429_is_served_confirmed_seen_by_the_fleet_and_cleared() {
    let faults = r#"
[[faults]]
kind = "tts_429"
at = "3s"
for = "8s"
retry_after = "1s"
"#;
    let mut requests_429 = Vec::new();
    for bugs in [vec![], vec![Bug::NoBackoff]] {
        let toml = embedded_scenario("", 3, "16s", faults).replace(
            "call_success = \">= 0%\"",
            "call_success = \">= 0%\"\nno_retry_storm = true\ndetect_within = \"10s\"",
        );
        let live = LiveRun::start(&toml, &bugs);
        let http = live.fleet_http().await;
        live.fault_event("fault_confirmed", "tts_429", Duration::from_secs(30))
            .await;
        let seen = eventually(Duration::from_secs(10), || async {
            live.metrics(&http)
                .await
                .get(r#"tts_requests_total{status="429"}"#)
                > 0.0
        })
        .await;
        assert!(seen, "the fleet counts the 429s it got");
        live.fault_event("fault_cleared", "tts_429", Duration::from_secs(30))
            .await;
        let ok_at_clear = live
            .metrics(&http)
            .await
            .get(r#"tts_requests_total{status="200"}"#);
        let recovered = eventually(Duration::from_secs(15), || async {
            live.metrics(&http)
                .await
                .get(r#"tts_requests_total{status="200"}"#)
                > ok_at_clear
        })
        .await;
        assert!(recovered, "TTS answers 200 again after the clear");
        let during = live
            .metrics(&http)
            .await
            .get(r#"tts_requests_total{status="429"}"#);
        let outcome = live.finish().await;
        let report = fault(&outcome, "tts_429");
        assert!(report.confirmed, "{report:?}");
        let (injected, cleared) = (report.injected_at_s.unwrap(), report.cleared_at_s.unwrap());
        assert!((2.9..4.5).contains(&injected), "{report:?}");
        assert!((cleared - injected - 8.0).abs() < 1.5, "{report:?}");
        assert!(
            report.notes.iter().any(|note| note.contains("× 429")),
            "{report:?}"
        );
        // The harness's own receiver got the fleet's alert: that is the detection.
        assert_eq!(
            report.detected_by.as_deref(),
            Some("alert TtsRateLimited"),
            "{report:?}"
        );
        assert!(report.detected_after_s.unwrap() < 8.0, "{report:?}");
        // The run journaled the detection as it happened, as the grader found it afterwards.
        let detected = journal_event(
            &outcome.out_dir.join("journal.jsonl"),
            Duration::ZERO,
            |record| record["event"] == "fault_detected" && record["fault"] == "tts_429",
        )
        .await;
        assert_eq!(detected["occurrence"], 1, "{detected}");
        assert_eq!(detected["by"], "alert TtsRateLimited", "{detected}");
        let journaled = detected["after_s"].as_f64().expect("after_s");
        assert!(
            (journaled - report.detected_after_s.unwrap()).abs() <= 0.001,
            "journaled {detected} vs summary {report:?}"
        );
        requests_429.push(during);
        // The verdict: the retry-storm SLO fails the buggy fleet only (exit 1), and both
        // fleets noticed the 429s within 10 s.
        let slo = |name: &str| {
            outcome
                .summary
                .slos
                .iter()
                .find(|slo| slo.name == name)
                .unwrap_or_else(|| panic!("no SLO {name}: {:?}", outcome.summary.slos))
                .clone()
        };
        assert!(slo("detect_within").pass, "{:?}", slo("detect_within"));
        let storm = slo("no_retry_storm");
        if bugs.is_empty() {
            assert!(storm.pass, "{storm:?}");
            assert_eq!(outcome.summary.verdict, Verdict::Pass);
        } else {
            assert!(!storm.pass, "{storm:?}");
            assert!(storm.why.starts_with("TTS retry storm"), "{storm:?}");
            assert_eq!(outcome.summary.verdict, Verdict::Fail);
            assert_eq!(outcome.summary.verdict.exit_code(), voxsoak::exit::FAILED);
        }
        // The journal has the stand-in's view: utterances asked to wait by Retry-After
        // that retried, and those that retried sooner.
        let (asked, ignored) = journal_sum(
            &outcome.out_dir.join("journal.jsonl"),
            "tts_requests",
            &["retry_after_asked", "retry_after_ignored"],
        );
        if bugs.is_empty() {
            assert_eq!(
                ignored, 0.0,
                "the fixed fleet honours Retry-After ({asked} utterances asked to wait)"
            );
        } else {
            assert!(
                ignored >= 1.0 && ignored == asked,
                "no-backoff ignores Retry-After: {ignored} of {asked} utterances asked to wait"
            );
        }
    }
    let (fixed, storm) = (requests_429[0], requests_429[1]);
    assert!(
        storm >= 5.0 * fixed,
        "no-backoff sends at least 5× the 429'd requests: fixed {fixed}, buggy {storm}"
    );
}

/// Leaked files land in the fleet's temp dir (its own metric sees them) and the harness's
/// files are gone once the run is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temp_file_leak_fills_the_fleet_temp_dir() {
    let faults = r#"
[[faults]]
kind = "temp_file_leak"
at = "2s"
for = "4s"
file_size = "512KiB"
rate = "2MiB/s"
"#;
    let live = LiveRun::start(&embedded_scenario("", 1, "8s", faults), &[Bug::TempLeak]);
    let http = live.fleet_http().await;
    let fleet = live
        .event(Duration::from_secs(30), |record| record["event"] == "fleet")
        .await;
    let audio_dir = PathBuf::from(fleet["audio_tmp_dir"].as_str().unwrap());
    live.fault_event("fault_confirmed", "temp_file_leak", Duration::from_secs(30))
        .await;
    let grew = eventually(Duration::from_secs(15), || async {
        live.metrics(&http).await.get("temp_dir_bytes") >= 2.0 * 512.0 * 1024.0
    })
    .await;
    assert!(grew, "the fleet's temp_dir_bytes counts the leaked files");
    let leaked = || {
        std::fs::read_dir(&audio_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| {
                        entry
                            .file_name()
                            .to_string_lossy()
                            .starts_with("voxsoak-leak-")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(leaked() >= 2);
    let outcome = live.finish().await;
    assert!(fault(&outcome, "temp_file_leak").confirmed);
    assert_eq!(leaked(), 0, "every file the harness wrote is gone");
}

/// `{}` tool calls reach the fleet: the fixed fleet rejects them (its metric counts them),
/// the buggy one runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_tool_params_are_rejected_by_the_fixed_fleet_only() {
    let faults = r#"
[[faults]]
kind = "empty_tool_params"
at = "2s"
for = "10s"
"#;
    for bugs in [vec![], vec![Bug::UnvalidatedToolParams]] {
        let live = LiveRun::start(&embedded_scenario("", 2, "14s", faults), &bugs);
        let http = live.fleet_http().await;
        live.fault_event(
            "fault_confirmed",
            "empty_tool_params",
            Duration::from_secs(30),
        )
        .await;
        let hit = live
            .event(Duration::from_secs(5), |record| {
                record["event"] == "llm_fault_hit"
            })
            .await;
        assert!(
            hit["call"]
                .as_str()
                .is_some_and(|sid| sid.starts_with("CA")),
            "{hit}"
        );
        live.fault_event(
            "fault_cleared",
            "empty_tool_params",
            Duration::from_secs(30),
        )
        .await;
        let rejected = live.metrics(&http).await.sum("tool_calls_rejected_total");
        let outcome = live.finish().await;
        assert!(fault(&outcome, "empty_tool_params").confirmed);
        if bugs.is_empty() {
            assert!(rejected >= 1.0, "the fixed fleet rejects {{}}: {rejected}");
        } else {
            assert_eq!(rejected, 0.0, "the buggy fleet runs the tool with {{}}");
        }
    }
}

/// SIGSTOP freezes the fleet (health does not answer) until SIGCONT; SIGKILL takes it down
/// and it is started again on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_stall_and_kill_take_the_fleet_down_and_it_comes_back() {
    let faults = r#"
[[faults]]
kind = "process_stall"
at = "2s"
for = "4s"
[[faults]]
kind = "process_kill"
at = "9s"
for = "2s"
"#;
    let live = LiveRun::start(&embedded_scenario("", 1, "16s", faults), &[]);
    let http = live.fleet_http().await;
    assert_eq!(live.health(&http).await, Some(200));
    live.fault_event("fault_confirmed", "process_stall", Duration::from_secs(30))
        .await;
    if live.health(&http).await.is_some() {
        // A loaded machine can read the confirmation only after the fault's window: then
        // its clear is journaled already. Otherwise a stopped fleet answers nothing.
        live.fault_event("fault_cleared", "process_stall", Duration::from_secs(2))
            .await;
    }
    live.fault_event("fault_cleared", "process_stall", Duration::from_secs(30))
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            live.health(&http).await == Some(200)
        })
        .await
    );
    live.fault_event("fault_confirmed", "process_kill", Duration::from_secs(30))
        .await;
    if live.health(&http).await.is_some() {
        // A loaded machine can read the confirmation only after the fault's window: then
        // its clear is journaled already. Otherwise a killed fleet answers nothing.
        live.fault_event("fault_cleared", "process_kill", Duration::from_secs(2))
            .await;
    }
    let cleared = live
        .fault_event("fault_cleared", "process_kill", Duration::from_secs(60))
        .await;
    assert!(
        cleared["note"].as_str().unwrap().contains("started again"),
        "{cleared}"
    );
    assert_eq!(
        live.health(&http).await,
        Some(200),
        "the same port answers again"
    );
    let outcome = live.finish().await;
    assert!(fault(&outcome, "process_stall").confirmed);
    assert!(fault(&outcome, "process_kill").confirmed);
    let fleet = &outcome.summary.fleet;
    assert_eq!(fleet.restarts, Some(1), "{fleet:?}");
    assert!(fleet.rss_mib_max.is_some_and(|mib| mib > 1.0), "{fleet:?}");
    assert_eq!(
        outcome.summary.verdict,
        Verdict::Pass,
        "{:?}",
        outcome.summary.reason
    );
}

/// A fault that never takes effect is reported as such, and the run is not a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fault_that_never_takes_effect_is_not_a_pass() {
    // No calls place no LLM requests: the tool-call fault can never hit anything.
    let toml = embedded_scenario(
        "",
        1,
        "4s",
        r#"
[chaos]
confirm_within = "2s"
[[faults]]
kind = "llm_error"
at = "1s"
for = "2s"
"#,
    )
    .replace(
        r#"turns = 3"#,
        "steps = [{ pause = \"6s\" }, { hangup = true }]",
    );
    let live = LiveRun::start(&toml, &[]);
    let record = live
        .fault_event("fault_not_in_effect", "llm_error", Duration::from_secs(60))
        .await;
    assert!(
        record["evidence"].as_str().unwrap().contains("0 of 0"),
        "{record}"
    );
    let outcome = live.finish().await;
    assert!(!fault(&outcome, "llm_error").confirmed);
    assert_eq!(outcome.summary.verdict, Verdict::Error);
    assert!(
        outcome
            .summary
            .reason
            .as_deref()
            .unwrap()
            .contains("not in effect"),
        "{:?}",
        outcome.summary.reason
    );
}

/// A fault whose window ends before any traffic reached it is held on until some does (at
/// most `confirm_within` after its injection), so a short window on a quiet fleet still
/// tests the fleet: here the callers wait 5 s before they speak, and a 1 s TTS fault at 1 s
/// meets the fleet's first TTS request seconds after its planned end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_fault_is_held_until_traffic_reaches_it() {
    let toml = embedded_scenario(
        "",
        1,
        "25s",
        r#"
[chaos]
confirm_within = "20s"
[[faults]]
kind = "tts_429"
at = "1s"
for = "1s"
"#,
    )
    .replace(
        r#"turns = 3"#,
        r#"steps = [{ pause = "5s" }, { say = "order-status" }, { pause = "8s" }, { hangup = true }]"#,
    );
    let live = LiveRun::start(&toml, &[]);
    let cleared = live
        .fault_event("fault_cleared", "tts_429", Duration::from_secs(90))
        .await;
    let held = cleared["held_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("not held: {cleared}"));
    assert!(held > 2.0, "{cleared}");
    let outcome = live.finish().await;
    let tts = fault(&outcome, "tts_429");
    assert!(tts.confirmed, "{tts:#?}");
    let window = tts.cleared_at_s.unwrap() - tts.injected_at_s.unwrap();
    assert!(window > 3.0 && window < 21.0, "{tts:#?}");
}

/// However a run ends, its faults are undone: `voxsoak run` gets SIGTERM while every fault
/// is on, clears each one (journaled as cleared early), removes the files it leaked, and
/// ends as aborted (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_stopped_by_sigterm_mid_fault_undoes_every_fault() {
    let leak_dir = tempfile::tempdir().unwrap();
    let faults = format!(
        r#"
[[faults]]
kind = "tts_429"
at = "1s"
for = "5m"
[[faults]]
kind = "temp_file_leak"
at = "1s"
for = "5m"
file_size = "64KiB"
rate = "1MiB/s"
dir = "{dir}"
[[faults]]
kind = "process_stall"
at = "2s"
for = "5m"
[[faults]]
kind = "proxy"
upstream = "llm"
down = true
at = "1s"
for = "5m"
[chaos]
writable_dirs = ["{dir}"]
"#,
        dir = leak_dir.path().display()
    );
    let scenario = ScenarioFile::new(&embedded_scenario("", 2, "10m", &faults));
    let out = scenario.out_dir();
    let child = tokio::process::Command::new(voxsoak_exe())
        .arg("run")
        .arg(&scenario.path)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start voxsoak run");
    let journal = out.join("journal.jsonl");
    for name in ["tts_429", "temp_file_leak", "process_stall", "proxy"] {
        journal_event(&journal, Duration::from_secs(90), |record| {
            record["event"] == "fault_confirmed" && record["fault"] == name
        })
        .await;
    }
    let fleet = journal_event(&journal, Duration::from_secs(5), |record| {
        record["event"] == "fleet"
    })
    .await;
    let fleet_pid = fleet["pid"].as_u64().unwrap();
    let leaked = |dir: &Path| std::fs::read_dir(dir).unwrap().count();
    assert!(leaked(leak_dir.path()) > 0);

    // SAFETY: kill(2) on our own child with a valid signal.
    unsafe {
        libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM);
    }
    let output = within(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "aborted runs exit 2; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["verdict"], "aborted");
    for fault in summary["faults"].as_array().unwrap() {
        assert_eq!(fault["confirmed"], true, "{fault}");
        assert!(fault["cleared_at_s"].as_f64().is_some(), "{fault}");
    }
    let text = std::fs::read_to_string(&journal).unwrap();
    let cleared: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["event"] == "fault_cleared")
        .collect();
    assert_eq!(cleared.len(), 4, "{text}");
    assert!(
        cleared.iter().all(|record| record["early"] == true),
        "{text}"
    );
    let proxy = cleared
        .iter()
        .find(|record| record["fault"] == "proxy")
        .unwrap();
    assert!(
        proxy["note"]
            .as_str()
            .unwrap()
            .contains("reached the upstream"),
        "the proxy passes traffic again before it stops: {proxy}"
    );
    assert_eq!(leaked(leak_dir.path()), 0, "the harness's files are gone");
    // The stalled fleet was resumed and then stopped: its pid is gone.
    assert!(
        !Path::new(&format!("/proc/{fleet_pid}")).exists(),
        "the fleet process is gone"
    );
}

/// Ctrl-C in-process (the shutdown token) and the kill-switch file both end the run as
/// aborted with the reason, faults cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_kill_switch_file_aborts_the_run_and_clears_faults() {
    let faults = r#"
[[faults]]
kind = "tts_error"
at = "1s"
for = "5m"
"#;
    let live = LiveRun::start(&embedded_scenario("", 1, "10m", faults), &[]);
    live.fault_event("fault_confirmed", "tts_error", Duration::from_secs(60))
        .await;
    std::fs::write(live.out.join("ABORT"), b"").unwrap();
    let token = live.shutdown.clone();
    let outcome = live.finish().await;
    assert!(!token.is_cancelled(), "the kill switch is not a signal");
    assert_eq!(outcome.summary.verdict, Verdict::Aborted);
    assert!(
        outcome
            .summary
            .reason
            .as_deref()
            .unwrap()
            .contains("kill switch"),
        "{:?}",
        outcome.summary.reason
    );
    let report = fault(&outcome, "tts_error");
    assert!(report.cleared_at_s.is_some(), "{report:?}");
}

/// A run on the real PostgreSQL, cancelled (as Ctrl-C does) while the DB locks are held, a
/// TTS fault is on and files are leaking: afterwards nothing of the harness holds a lock,
/// a fresh session can lock every table at once, and the leaked files are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_cancelled_mid_fault_releases_postgres_locks_and_files() {
    use crate::support::postgres::TestPostgres;
    let Some(postgres) = TestPostgres::create("chaos_interrupt").await else {
        return;
    };
    let variable = "VOXSOAK_TEST_CHAOS_INTERRUPT_DB";
    // SAFETY: set once before the run reads it; no other test uses this name.
    unsafe {
        std::env::set_var(variable, &postgres.url);
    }
    let leak_dir = tempfile::tempdir().unwrap();
    let faults = format!(
        r#"
[[faults]]
kind = "db_pool_exhaustion"
at = "1s"
for = "5m"
holders = 2
[[faults]]
kind = "tts_429"
at = "1s"
for = "5m"
[[faults]]
kind = "temp_file_leak"
at = "1s"
for = "5m"
file_size = "64KiB"
rate = "1MiB/s"
dir = "{dir}"
[chaos]
writable_dirs = ["{dir}"]
"#,
        dir = leak_dir.path().display()
    );
    let toml = embedded_scenario(
        &format!("database_url_env = \"{variable}\"\ndb_pool_size = 4"),
        2,
        "10m",
        &faults,
    );
    let live = LiveRun::start(&toml, &[]);
    for name in ["db_pool_exhaustion", "tts_429", "temp_file_leak"] {
        live.fault_event("fault_confirmed", name, Duration::from_secs(90))
            .await;
    }
    let http = live.fleet_http().await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            live.health(&http).await == Some(503)
        })
        .await,
        "the fleet's pool fills up behind the locks"
    );
    live.shutdown.cancel();
    let outcome = live.finish().await;
    assert_eq!(outcome.summary.verdict, Verdict::Aborted);
    for report in &outcome.summary.faults {
        assert!(
            report.confirmed && report.cleared_at_s.is_some(),
            "{report:?}"
        );
    }
    assert_eq!(std::fs::read_dir(leak_dir.path()).unwrap().count(), 0);

    // Nothing holds a lock on the fleet's tables: all of them can be locked at once, now.
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&postgres.url)
        .await
        .unwrap();
    sqlx::query("SET lock_timeout = '1s'")
        .execute(&mut connection)
        .await
        .unwrap();
    let mut transaction = sqlx::Connection::begin(&mut connection).await.unwrap();
    sqlx::query("LOCK TABLE orders, turns, events, health_checks IN ACCESS EXCLUSIVE MODE NOWAIT")
        .execute(&mut *transaction)
        .await
        .expect("no lock is left behind");
    transaction.rollback().await.unwrap();
    let (others,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(others, 0, "no session of the harness or the fleet is left");
    drop(connection);
    postgres.drop_database().await;
}

/// A fault proxy in front of the TTS stand-in: while it is down the fleet's TTS requests
/// fail (its own metrics say so), and once cleared they succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_in_front_of_the_tts_takes_it_down_and_gives_it_back() {
    let faults = r#"
[[faults]]
kind = "proxy"
upstream = "tts"
down = true
at = "3s"
for = "6s"
"#;
    let live = LiveRun::start(&embedded_scenario("", 3, "16s", faults), &[]);
    let http = live.fleet_http().await;
    let ok = |metrics: &Metrics| metrics.get(r#"tts_requests_total{status="200"}"#);
    let failed = |metrics: &Metrics| metrics.sum("tts_requests_total") - ok(metrics);
    live.fault_event("fault_confirmed", "proxy", Duration::from_secs(30))
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            failed(&live.metrics(&http).await) > 0.0
        })
        .await,
        "the fleet sees its TTS fail behind the proxy"
    );
    let cleared = live
        .fault_event("fault_cleared", "proxy", Duration::from_secs(30))
        .await;
    assert!(
        cleared["note"]
            .as_str()
            .unwrap()
            .contains("reached the upstream"),
        "{cleared}"
    );
    let ok_at_clear = ok(&live.metrics(&http).await);
    assert!(
        eventually(Duration::from_secs(15), || async {
            ok(&live.metrics(&http).await) > ok_at_clear
        })
        .await,
        "TTS works again through the proxy"
    );
    let outcome = live.finish().await;
    assert!(fault(&outcome, "proxy").confirmed);
}

/// A port that was free a moment ago (for a fleet that must be told where the stand-ins
/// will listen before they do).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Against a fleet the harness did not start (the reference fleet run by hand, pointed at
/// `[chaos] tts_listen` / `llm_listen`): the stand-in faults, the database fault through
/// `database_url_env` and a leak into the fleet's dir all take effect and are undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_against_an_external_fleet_pointed_at_the_stand_ins() {
    use crate::fleet_util::{Backend, FleetProcess, TestDb};
    let db = TestDb::create(Backend::Sqlite, "external").await.unwrap();
    let (tts, llm) = (free_port(), free_port());
    let fleet = FleetProcess::start_wired(&db, tts, llm).await;
    let variable = "VOXSOAK_TEST_EXTERNAL_FLEET_DB";
    // SAFETY: set once before the run reads it; no other test uses this name.
    unsafe {
        std::env::set_var(variable, db.url());
    }
    let toml = format!(
        r#"
name = "external-chaos"
[target]
stream_url = "{stream}"
[load]
stages = [{{ ramp_to = 2, over = "1s" }}, {{ hold = "12s" }}]
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
llm_listen = "127.0.0.1:{llm}"
writable_dirs = ["{audio}"]
[[faults]]
kind = "tts_429"
at = "2s"
for = "4s"
[[faults]]
kind = "db_pool_exhaustion"
database_url_env = "{variable}"
at = "2s"
for = "4s"
[[faults]]
kind = "temp_file_leak"
dir = "{audio}"
file_size = "64KiB"
rate = "1MiB/s"
at = "2s"
for = "3s"
"#,
        stream = fleet.stream_url(),
        fixtures = fixtures_dir().display(),
        audio = fleet.audio_dir.display(),
    );
    let live = LiveRun::start(&toml, &[]);
    let outcome = live.finish().await;
    for name in ["tts_429", "db_pool_exhaustion", "temp_file_leak"] {
        let report = fault(&outcome, name);
        assert!(report.confirmed, "{report:?}");
        assert!(report.cleared_at_s.is_some(), "{report:?}");
    }
    assert!(
        outcome.summary.calls.completed >= 2,
        "calls reached the fleet through its stand-ins: {:?}",
        outcome.summary.calls
    );
    let leaked = std::fs::read_dir(&fleet.audio_dir)
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("voxsoak-leak-")
        })
        .count();
    assert_eq!(
        leaked, 0,
        "the harness removed its files from the fleet's dir"
    );
    // The fleet keeps running after the run, healthy again (the lock is gone).
    assert!(
        eventually(Duration::from_secs(15), || async {
            fleet.health().await.0 == 200
        })
        .await
    );
    fleet.stop().await;
}

/// A short run against the sink with one `temp_file_leak` into `dir`, declared writable in
/// `[chaos] writable_dirs`; `leak` adds keys to the fault.
fn sink_leak_scenario(dir: &Path, leak: &str) -> String {
    format!(
        r#"
name = "leak-test"
seed = 3
[target]
fleet = "sink"
[load]
stages = [{{ ramp_to = 1, over = "1s" }}, {{ hold = "5s" }}]
[slo]
call_success = ">= 0%"
[chaos]
writable_dirs = ["{dir}"]
confirm_within = "2s"
[[faults]]
kind = "temp_file_leak"
dir = "{dir}"
at = "1s"
for = "3s"
file_size = "64KiB"
rate = "1MiB/s"
detect = {{ health = "unhealthy" }}
{leak}
"#,
        dir = dir.display()
    )
}

/// With its free-space floor above what is free, a leak writes nothing, journals why it
/// stopped (`leak_stopped`), and is reported not in effect: the run ends `error`, never as
/// the fleet's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_at_its_free_space_floor_writes_nothing_says_why_and_is_not_in_effect() {
    let dir = tempfile::tempdir().unwrap();
    let live = LiveRun::start(&sink_leak_scenario(dir.path(), "min_free = \"100%\""), &[]);
    let stopped = live
        .fault_event("leak_stopped", "temp_file_leak", Duration::from_secs(30))
        .await;
    assert_eq!(stopped["reason"], "free_space", "{stopped}");
    assert_eq!(stopped["files"], 0, "{stopped}");
    assert!(
        stopped["floor_bytes"].as_u64().unwrap() > stopped["free_bytes"].as_u64().unwrap(),
        "{stopped}"
    );
    let outcome = live.finish().await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let leak = fault(&outcome, "temp_file_leak");
    assert!(!leak.confirmed, "{leak:#?}");
    assert!(
        leak.notes
            .iter()
            .any(|note| note.starts_with("wrote no file into") && note.contains("(min_free)")),
        "{leak:#?}"
    );
    assert_eq!(outcome.summary.verdict, Verdict::Error);
}

/// At the end of a run the harness removes the files it leaked and nothing else: a file
/// of the fleet's named as leaked files once were (`voxsoak-leak-<run>-1-1-000001.wav`) and
/// another written while the leak is on both stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_files_the_harness_created_are_removed_when_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let live = LiveRun::start(&sink_leak_scenario(dir.path(), ""), &[]);
    let started = live
        .event(Duration::from_secs(30), |record| {
            record["event"] == "run_started"
        })
        .await;
    let run_id = started["run_id"].as_str().unwrap();
    let look_alike = dir
        .path()
        .join(format!("voxsoak-leak-{run_id}-1-1-000001.wav"));
    std::fs::write(&look_alike, b"the fleet's").unwrap();
    live.fault_event("fault_confirmed", "temp_file_leak", Duration::from_secs(30))
        .await;
    let during = dir.path().join("reply-CA1-1.wav");
    std::fs::write(&during, b"the fleet's too").unwrap();
    let ours = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|entry| entry.path() != look_alike && entry.path() != during)
            .count()
    };
    assert!(ours() >= 1, "the leak wrote files");
    let outcome = live.finish().await;
    assert!(fault(&outcome, "temp_file_leak").confirmed);
    assert_eq!(ours(), 0, "every file the harness wrote is gone");
    assert_eq!(std::fs::read(&look_alike).unwrap(), b"the fleet's");
    assert_eq!(std::fs::read(&during).unwrap(), b"the fleet's too");
    let removed = journal_event(
        &outcome.out_dir.join("journal.jsonl"),
        Duration::from_secs(1),
        |record| record["event"] == "harness_files_removed",
    )
    .await;
    assert!(removed["files"].as_u64().unwrap() >= 1, "{removed}");
}

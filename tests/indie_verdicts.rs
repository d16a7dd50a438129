//! voxsoak's verdicts on a fleet it did not write: the indie fleet (`indie_fleet`), run as
//! its own process, graded by the real `voxsoak` binary as an external fleet. Each behaviour
//! gets the verdict a person would give: the healthy fleet passes (5 runs out of 5), and each
//! broken one fails the SLO that names what it breaks, and nothing it does not break.
//!
//! The scenarios are written here. The fleet is wired to voxsoak's stand-ins
//! (`[chaos] tts_listen`/`llm_listen`), posts its own alerts to `[observe] alerts_listen`,
//! and is watched through its own health, metrics and scratch dir; every `detect` rule names
//! the indie fleet's own signals. Ports are chosen at test time, so runs go side by side;
//! at most three at a time in this test binary.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::chaos::free_port;
use crate::indie_fleet::Behaviour;
use crate::indie_fleet::process::{IndieFleet, Wiring};
use crate::util::{ScenarioFile, fixtures_dir, voxsoak_exe};

/// What every scenario here shares: three callers at a time, each call two to four turns of
/// the fixture utterances; the stand-ins; the fleet's health, metrics and alerts.
/// `@…@` are filled in per run.
const HEAD: &str = r#"
name = "indie-@BEHAVIOUR@"
seed = @SEED@

[target]
@TARGET@

[load]
stages = [{ ramp_to = 3, over = "2s" }, { hold = "@HOLD@" }]

[calls]
turn_timeout = "8s"
fixtures = ["@FIXTURES@/*.wav"]

[[scripts]]
name = "order-status"
turns = { min = 2, max = 4 }

[chaos]
tts_listen = "127.0.0.1:@TTS@"
llm_listen = "127.0.0.1:@LLM@"

[observe]
health_url = "http://@FLEET@/health"
health_interval = "500ms"
metrics_url = "http://@FLEET@/metrics"
scrape_interval = "1s"
record = ['indie_tts_status_total{code="429"}', "indie_tts_retries_total", "indie_calls_handled_total", "indie_memory_rss_bytes"]
alerts_listen = "127.0.0.1:@ALERTS@"
"#;

/// Every fault kind the indie fleet has a signal for, in 100 s: TTS 429s recurring every
/// 35 s (±2 s) without `Retry-After` and once with it, `{}` tool calls, and files leaked
/// into its scratch dir (which its sweep removes ten seconds later). Each fault is apart
/// from the others, with room to recover before the next. A TTS or LLM fault lasts 5 to 6 s:
/// each of the three callers asks for speech every 3.5 to 6.5 s (its utterance, the 500 ms
/// end of turn, the answer played back), so the fault certainly meets traffic.
const ALL_FAULTS: &str = r#"
temp_dir = "@SCRATCH@"
temp_dir_interval = "2s"
rss_metric = "indie_memory_rss_bytes"
process = { pid_file = "@PID_FILE@" }

[[faults]]
name = "throttle"
kind = "tts_429"
at = "8s"
for = "6s"
every = "35s"
every_jitter = "2s"
detect = { alert = "SpeechBackendThrottled" }

[[faults]]
name = "throttle-retry-after"
kind = "tts_429"
retry_after = "1s"
at = "22s"
for = "5s"
detect = { alert = "SpeechBackendThrottled" }

[[faults]]
name = "bad-tool-call"
kind = "empty_tool_params"
at = "30s"
for = "5s"
detect = { alert = "ToolArgumentsRejected" }

[[faults]]
name = "scratch-leak"
kind = "temp_file_leak"
dir = "@SCRATCH@"
file_size = "256KiB"
rate = "1MiB/s"
at = "56s"
for = "3s"
detect = [{ alert = "ScratchDirFull" }, { health = "unhealthy" }]

[slo]
call_success = ">= 90%"
response_p95 = "<= 6s"
detect_within = "10s"
recover_within = "30s"
stable_window = "5s"
no_retry_storm = true
uptime = ">= 99%"
temp_dir_growth = "<= 20MiB/h"
memory_growth = "<= 200MiB/h"
max_crashes = 0
no_unprovoked_alerts = true
"#;

/// One TTS 429 window, long enough after it for an alert sent 40 s late to arrive.
const ONE_THROTTLE: &str = r#"
[[faults]]
name = "throttle"
kind = "tts_429"
at = "10s"
for = "6s"
detect = { alert = "SpeechBackendThrottled" }

[slo]
call_success = ">= 90%"
response_p95 = "<= 6s"
detect_within = "10s"
recover_within = "30s"
stable_window = "5s"
no_retry_storm = true
"#;

/// TTS 429s every 20 s (±2 s) without `Retry-After`: a fleet's retries can only be told
/// from backoff by their shape (growth, jitter).
const RECURRING_THROTTLES: &str = r#"
[[faults]]
name = "throttle"
kind = "tts_429"
at = "8s"
for = "6s"
every = "20s"
every_jitter = "2s"
detect = { alert = "SpeechBackendThrottled" }

[slo]
call_success = ">= 90%"
response_p95 = "<= 6s"
detect_within = "10s"
recover_within = "30s"
stable_window = "5s"
no_retry_storm = true
no_unprovoked_alerts = true
"#;

/// `{}` tool calls, with the fleet's process watched through its pid file.
const BAD_TOOL_CALLS: &str = r#"
process = { pid_file = "@PID_FILE@" }

[[faults]]
name = "bad-tool-call"
kind = "empty_tool_params"
at = "10s"
for = "5s"
detect = { alert = "ToolArgumentsRejected" }

[slo]
call_success = ">= 90%"
detect_within = "10s"
uptime = ">= 99%"
max_crashes = 0
"#;

/// No faults at all: the fleet's scratch dir graded through its own metric.
const NO_FAULTS: &str = r#"
temp_dir_metric = "indie_scratch_dir_bytes"

[slo]
call_success = ">= 90%"
response_p95 = "<= 3s"
temp_dir_growth = "<= 20MiB/h"
"#;

/// One scenario for one behaviour.
struct Run<'a> {
    behaviour: Behaviour,
    seed: u64,
    /// After [`HEAD`]: the rest of `[observe]`, the faults and the SLOs.
    body: &'a str,
    /// The load's hold after the 2 s ramp.
    hold_s: u64,
    /// A stream URL instead of the voice webhook.
    stream: bool,
}

/// How a run went.
struct Outcome {
    code: i32,
    summary: Value,
    fleet_exit: Option<ExitStatus>,
    fleet_output: String,
    voxsoak_output: String,
    took: Duration,
}

impl Outcome {
    fn label(&self, run: &Run) -> String {
        format!("{} (seed {})", run.behaviour.name(), run.seed)
    }

    fn slos(&self) -> &[Value] {
        self.summary["slos"].as_array().map_or(&[], Vec::as_slice)
    }

    fn failed(&self) -> BTreeSet<String> {
        self.slos()
            .iter()
            .filter(|slo| slo["pass"] == false)
            .filter_map(|slo| slo["name"].as_str().map(str::to_owned))
            .collect()
    }

    fn faults(&self) -> &[Value] {
        self.summary["faults"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The verdict lines a person reads, and the run's output when something is off.
    fn report(&self, run: &Run) -> String {
        let mut text = format!(
            "indie {}: exit {} in {:.0} s, verdict {}, reason {}, calls {}\n",
            self.label(run),
            self.code,
            self.took.as_secs_f64(),
            self.summary["verdict"],
            self.summary["reason"],
            self.summary["calls"],
        );
        for slo in self.slos() {
            text.push_str(&format!(
                "  {} {} threshold {} measured {} — {}\n",
                if slo["pass"] == true { "PASS" } else { "FAIL" },
                slo["name"].as_str().unwrap_or("?"),
                slo["threshold"],
                slo["measured"],
                slo["why"].as_str().unwrap_or("?"),
            ));
        }
        for fault in self.faults() {
            text.push_str(&format!(
                "  fault {} #{}: injected {} cleared {} confirmed {} detected after {} by {} recovered after {} notes {}\n",
                fault["name"].as_str().unwrap_or("?"),
                fault["occurrence"],
                fault["injected_at_s"],
                fault["cleared_at_s"],
                fault["confirmed"],
                fault["detected_after_s"],
                fault["detected_by"],
                fault["recovered_after_s"],
                fault["notes"],
            ));
        }
        text.push_str(&format!(
            "  fleet {}, uptime {}\n",
            self.summary["fleet"], self.summary["uptime"]
        ));
        text
    }

    fn details(&self) -> String {
        format!(
            "fleet exit {:?}; the fleet said:\n{}\nvoxsoak said:\n{}",
            self.fleet_exit, self.fleet_output, self.voxsoak_output
        )
    }
}

/// Runs that may go at once in this test binary: each is a fleet and a voxsoak process on a
/// machine that may have two cores.
const AT_ONCE: usize = 3;

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// A place among the [`AT_ONCE`] runs; given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut running = RUNNING.lock().unwrap_or_else(|poison| poison.into_inner());
        while *running >= AT_ONCE {
            running = FREED
                .wait(running)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(|poison| poison.into_inner()) -= 1;
        FREED.notify_one();
    }
}

/// Starts the fleet, runs voxsoak against it and stops the fleet.
fn run(run: &Run) -> Outcome {
    let _slot = Slot::take();
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    let pid_file = dir.path().join("fleet.pid");
    let (tts, llm, alerts) = (free_port(), free_port(), free_port());
    let mut fleet = IndieFleet::start(
        run.behaviour,
        &Wiring {
            llm_url: format!("http://127.0.0.1:{llm}/v1"),
            tts_url: format!("http://127.0.0.1:{tts}/v1"),
            alert_url: Some(format!("http://127.0.0.1:{alerts}/alerts")),
            scratch_dir: scratch.clone(),
            scratch_budget: Some(2 << 20),
            pid_file: Some(pid_file.clone()),
        },
    );
    let target = if run.stream {
        format!(r#"stream_url = "ws://{}/stream""#, fleet.address)
    } else {
        format!(r#"webhook_url = "http://{}/voice""#, fleet.address)
    };
    let toml = format!("{HEAD}{}", run.body)
        .replace("@TARGET@", &target)
        .replace("@BEHAVIOUR@", run.behaviour.name())
        .replace("@SEED@", &run.seed.to_string())
        .replace("@HOLD@", &format!("{}s", run.hold_s))
        .replace("@FIXTURES@", &fixtures_dir().display().to_string())
        .replace("@TTS@", &tts.to_string())
        .replace("@LLM@", &llm.to_string())
        .replace("@ALERTS@", &alerts.to_string())
        .replace("@FLEET@", &fleet.address.to_string())
        .replace("@SCRATCH@", &scratch.display().to_string())
        .replace("@PID_FILE@", &pid_file.display().to_string());
    let scenario = ScenarioFile::new(&toml);
    let out = scenario.out_dir();
    let log = dir.path().join("voxsoak.log");
    let started = Instant::now();
    let code = voxsoak(
        &scenario.path,
        &out,
        &log,
        Duration::from_secs(run.hold_s + 150),
    );
    let took = started.elapsed();
    let fleet_exit = fleet.exit_status();
    let fleet_output = fleet.output();
    drop(fleet);
    let voxsoak_output = std::fs::read_to_string(&log).unwrap_or_default();
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| {
            panic!(
                "no summary.json from {} (exit {code}):\n{voxsoak_output}\nscenario:\n{toml}",
                run.behaviour.name()
            )
        });
    Outcome {
        code,
        summary,
        fleet_exit,
        fleet_output,
        voxsoak_output,
        took,
    }
}

/// `voxsoak run SCENARIO --quiet --out OUT`, its output to `log`; its exit code. Killed (and
/// the test failed) if it outlives `limit`.
fn voxsoak(scenario: &Path, out: &Path, log: &Path, limit: Duration) -> i32 {
    let output = std::fs::File::create(log).unwrap();
    let mut child = Command::new(voxsoak_exe())
        .arg("run")
        .arg(scenario)
        .arg("--quiet")
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .expect("start voxsoak");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "voxsoak ran past {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What is wrong with `outcome`: its exit code is not `code`, an SLO of `fails` passed (or
/// failed without being measured: that blames the fleet for what the harness did not see),
/// or (when `only` is set) an SLO not in `fails` failed.
fn problems(run: &Run, outcome: &Outcome, code: i32, fails: &[&str], only: bool) -> Vec<String> {
    let label = outcome.label(run);
    let failed = outcome.failed();
    let mut problems = Vec::new();
    if outcome.code != code {
        problems.push(format!("{label}: exit {}, expected {code}", outcome.code));
    }
    for slo in fails {
        if !failed.contains(*slo) {
            problems.push(format!("{label}: {slo} passed, it should fail"));
        }
    }
    for slo in outcome.slos() {
        if slo["pass"] == false && slo["measured"] == "not measured" {
            problems.push(format!(
                "{label}: {} failed unmeasured: {}",
                slo["name"], slo["why"]
            ));
        }
    }
    if only {
        for slo in failed.iter().filter(|slo| !fails.contains(&slo.as_str())) {
            problems.push(format!(
                "{label}: {slo} failed, it has nothing to do with the fault"
            ));
        }
    }
    problems
}

/// Runs every one of `runs` (at most [`AT_ONCE`] at a time), prints each report, and fails
/// with everything `check` finds wrong.
fn run_all(runs: &[Run], check: impl Fn(&Run, &Outcome) -> Vec<String> + Sync) {
    let found = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for each in runs {
            let (found, check) = (&found, &check);
            scope.spawn(move || {
                let outcome = run(each);
                println!("{}", outcome.report(each));
                let mut wrong = check(each, &outcome);
                if outcome
                    .fleet_output
                    .contains(crate::indie_fleet::LLM_FAILED)
                {
                    // Its LLM is voxsoak's stand-in: a fleet that could not reach it was
                    // never tested (it apologised to every caller without a word of TTS).
                    wrong.push(format!(
                        "{}: the fleet could not reach the LLM stand-in",
                        outcome.label(each)
                    ));
                }
                if !wrong.is_empty() {
                    let mut found = found.lock().unwrap();
                    found.extend(wrong);
                    found.push(outcome.report(each));
                    found.push(outcome.details());
                }
            });
        }
    });
    let found = found.into_inner().unwrap();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Every fault of a run was confirmed in effect and detected.
fn every_fault_confirmed_and_detected(run: &Run, outcome: &Outcome) -> Vec<String> {
    outcome
        .faults()
        .iter()
        .filter(|fault| fault["confirmed"] != true || fault["detected_after_s"].is_null())
        .map(|fault| {
            format!(
                "{}: fault not confirmed or not detected: {fault}",
                outcome.label(run)
            )
        })
        .collect()
}

#[test]
fn healthy_indie_fleet_passes_five_runs_of_five() {
    let runs: Vec<Run> = (1..=5)
        .map(|seed| Run {
            behaviour: Behaviour::Healthy,
            seed,
            body: ALL_FAULTS,
            hold_s: 98,
            stream: false,
        })
        .collect();
    run_all(&runs, |run, outcome| {
        let mut wrong = problems(run, outcome, 0, &[], true);
        wrong.extend(every_fault_confirmed_and_detected(run, outcome));
        wrong
    });
}

#[test]
fn constant_retries_ignoring_retry_after_fail_no_retry_storm_and_nothing_else() {
    let body = ALL_FAULTS.to_owned();
    let runs = [Run {
        behaviour: Behaviour::ConstantRetries,
        seed: 11,
        body: &body,
        hold_s: 98,
        stream: false,
    }];
    run_all(&runs, |run, outcome| {
        problems(run, outcome, 1, &["no_retry_storm"], true)
    });
}

/// Without `Retry-After`, 150 ms between retries is neither immediate nor disobedient: only
/// its shape (no growth, no jitter) gives the storm away. The healthy fleet's backoff on the
/// same scenario passes.
#[test]
fn constant_retries_fail_no_retry_storm_by_their_shape_alone() {
    let runs = [
        Run {
            behaviour: Behaviour::ConstantRetries,
            seed: 17,
            body: RECURRING_THROTTLES,
            hold_s: 63,
            stream: false,
        },
        Run {
            behaviour: Behaviour::Healthy,
            seed: 17,
            body: RECURRING_THROTTLES,
            hold_s: 63,
            stream: false,
        },
    ];
    run_all(&runs, |run, outcome| match run.behaviour {
        Behaviour::Healthy => problems(run, outcome, 0, &[], true),
        _ => problems(run, outcome, 1, &["no_retry_storm"], true),
    });
}

#[test]
fn silent_fleet_fails_detect_within_undetected() {
    let body = ALL_FAULTS.to_owned();
    let runs = [Run {
        behaviour: Behaviour::NoAlerts,
        seed: 12,
        body: &body,
        hold_s: 98,
        stream: false,
    }];
    run_all(&runs, |run, outcome| {
        let mut wrong = problems(run, outcome, 1, &["detect_within"], true);
        for fault in outcome.faults() {
            let by_health = fault["detected_by"]
                .as_str()
                .is_some_and(|by| by.starts_with("health"));
            if !fault["detected_after_s"].is_null() && !by_health {
                wrong.push(format!(
                    "{}: detected with no alert sent: {fault}",
                    outcome.label(run)
                ));
            }
        }
        wrong
    });
}

#[test]
fn late_alerts_fail_detect_within_with_the_time_they_took() {
    let runs = [Run {
        behaviour: Behaviour::LateAlerts,
        seed: 13,
        body: ONE_THROTTLE,
        hold_s: 63,
        stream: true,
    }];
    run_all(&runs, |run, outcome| {
        let mut wrong = problems(run, outcome, 1, &["detect_within"], true);
        let after = outcome
            .faults()
            .first()
            .and_then(|fault| fault["detected_after_s"].as_f64());
        if !after.is_some_and(|after| (35.0..50.0).contains(&after)) {
            wrong.push(format!(
                "{}: detected after {after:?}, expected about 40 s",
                outcome.label(run)
            ));
        }
        wrong
    });
}

#[test]
fn crash_on_bad_input_fails_max_crashes() {
    let runs = [Run {
        behaviour: Behaviour::CrashOnBadInput,
        seed: 14,
        body: BAD_TOOL_CALLS,
        hold_s: 38,
        stream: false,
    }];
    run_all(&runs, |run, outcome| {
        let mut wrong = problems(run, outcome, 1, &["max_crashes"], false);
        if outcome.fleet_exit.and_then(|status| status.code()) != Some(1) {
            wrong.push(format!(
                "{}: the fleet should have exited with status 1 on {{}}: {:?}",
                outcome.label(run),
                outcome.fleet_exit
            ));
        }
        wrong
    });
}

#[test]
fn never_recovering_fleet_fails_recover_within() {
    let body = ALL_FAULTS.to_owned();
    let runs = [Run {
        behaviour: Behaviour::NeverRecovers,
        seed: 15,
        body: &body,
        hold_s: 98,
        stream: false,
    }];
    run_all(&runs, |run, outcome| {
        problems(run, outcome, 1, &["recover_within"], false)
    });
}

#[test]
fn leaking_fleet_fails_temp_dir_growth_where_the_healthy_one_passes() {
    let runs = [
        Run {
            behaviour: Behaviour::LeaksTempFiles,
            seed: 16,
            body: NO_FAULTS,
            hold_s: 88,
            stream: false,
        },
        Run {
            behaviour: Behaviour::Healthy,
            seed: 16,
            body: NO_FAULTS,
            hold_s: 88,
            stream: false,
        },
    ];
    run_all(&runs, |run, outcome| match run.behaviour {
        Behaviour::Healthy => problems(run, outcome, 0, &[], true),
        _ => problems(run, outcome, 1, &["temp_dir_growth"], false),
    });
}

//! Proving the verdicts: `scenarios/smoke.toml` against the reference fleet, fixed and with
//! each production bug. The fixed fleet passes every SLO; each bug fails the SLO that names
//! it and leaves alone the ones it has nothing to do with. The times to detect are checked
//! against the fleet's own alert times (`startsAt`).
//!
//! `no-healer` needs workers that stall: it runs on `scenarios/faults/worker-stall.toml`,
//! which switches the fleet's `silent-stall` condition on, so the healer is what is graded.
//!
//! Eight runs of 1.5 to 3 minutes, two at a time: about 13 minutes in a release build, too long for
//! every `cargo test`, so it is ignored there. Run it with
//! `cargo test --release --test tests verdicts -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::voxsoak_exe;

/// A scenario, a bug, the SLOs it must fail, and the SLOs it must not fail.
struct Expectation {
    scenario: &'static str,
    bug: Option<&'static str>,
    fails: &'static [&'static str],
    passes: &'static [&'static str],
}

const EXPECTATIONS: &[Expectation] = &[
    Expectation {
        scenario: "smoke",
        bug: None,
        fails: &[],
        passes: &[
            "call_success",
            "response_p95",
            "first_audio_p95",
            "detect_within",
            "no_retry_storm",
            "recover_within",
            "uptime",
            "temp_dir_growth",
            "max_crashes",
            "no_unprovoked_alerts",
        ],
    },
    Expectation {
        scenario: "smoke",
        bug: Some("no-backoff"),
        fails: &["no_retry_storm"],
        passes: &["temp_dir_growth", "max_crashes"],
    },
    Expectation {
        scenario: "smoke",
        bug: Some("unvalidated-tool-params"),
        fails: &["max_crashes"],
        passes: &["no_retry_storm", "temp_dir_growth"],
    },
    Expectation {
        scenario: "smoke",
        bug: Some("temp-leak"),
        fails: &["temp_dir_growth"],
        passes: &["no_retry_storm", "max_crashes", "call_success"],
    },
    Expectation {
        scenario: "smoke",
        bug: Some("long-transactions"),
        fails: &["uptime", "no_unprovoked_alerts"],
        passes: &["no_retry_storm", "max_crashes", "temp_dir_growth"],
    },
    Expectation {
        scenario: "faults/worker-stall",
        bug: None,
        fails: &[],
        passes: &["call_success", "response_p95", "uptime"],
    },
    Expectation {
        scenario: "faults/worker-stall",
        bug: Some("no-healer"),
        fails: &["call_success", "uptime"],
        passes: &[],
    },
    Expectation {
        scenario: "smoke",
        bug: Some("silent-stall"),
        fails: &["no_unprovoked_alerts"],
        passes: &["no_retry_storm", "max_crashes", "temp_dir_growth"],
    },
];

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scenarios/{name}.toml"))
}

/// Runs `scenario` with `bug` into `out`; its exit code and summary.
fn run(name: &str, bug: Option<&str>, out: &Path) -> (i32, serde_json::Value) {
    let mut command = Command::new(voxsoak_exe());
    command
        .arg("run")
        .arg(scenario(name))
        .arg("--quiet")
        .arg("--out")
        .arg(out);
    if let Some(bug) = bug {
        command.args(["--fleet-bug", bug]);
    }
    let status = command.status().expect("run voxsoak");
    let summary = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json is JSON");
    (status.code().unwrap_or(-1), summary)
}

fn wall_s(at: &str) -> f64 {
    humantime::parse_rfc3339(at)
        .expect("an RFC 3339 time")
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every alert-detected fault's time to detect is within one health-probe interval (1 s)
/// of the time the fleet says its alert started (its `startsAt`).
fn detection_matches_the_fleets_own_alert(out: &Path, summary: &serde_json::Value) {
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = journal
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let started = records
        .iter()
        .find(|r| r["event"] == "run_started")
        .expect("run_started");
    // The journal's clock: wall time at t_s = 0.
    let origin = wall_s(started["at"].as_str().unwrap()) - started["t_s"].as_f64().unwrap();
    for fault in summary["faults"].as_array().unwrap() {
        let Some(by) = fault["detected_by"].as_str() else {
            continue;
        };
        let Some(name) = by.strip_prefix("alert ") else {
            continue;
        };
        let injected = fault["injected_at_s"].as_f64().unwrap();
        let detected = fault["detected_after_s"].as_f64().unwrap();
        let own = records
            .iter()
            .filter(|r| r["event"] == "alert" && r["name"] == name && r["status"] == "firing")
            .filter_map(|r| r["starts_at"].as_str().map(wall_s))
            .map(|at| at - origin - injected)
            .find(|after| *after >= -0.5)
            .unwrap_or_else(|| panic!("no startsAt for {name}"));
        assert!(
            (detected - own).abs() <= 1.0,
            "{}: detected after {detected:.3}s, the fleet's own alert after {own:.3}s",
            fault["name"]
        );
    }
}

#[test]
#[ignore = "eight runs of 1.5 to 3 minutes; see the module doc"]
fn every_bug_fails_the_slo_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let results: Vec<(usize, i32, serde_json::Value)> = std::thread::scope(|scope| {
        let mut results = Vec::new();
        let indexed: Vec<(usize, &Expectation)> = EXPECTATIONS.iter().enumerate().collect();
        for pair in indexed.chunks(2) {
            let handles: Vec<_> = pair
                .iter()
                .map(|&(index, expectation)| {
                    let out = dir.path().join(format!("run-{index}"));
                    scope.spawn(move || {
                        let (code, summary) = run(expectation.scenario, expectation.bug, &out);
                        detection_matches_the_fleets_own_alert(&out, &summary);
                        (index, code, summary)
                    })
                })
                .collect();
            results.extend(handles.into_iter().map(|handle| handle.join().unwrap()));
        }
        results
    });
    let mut problems = Vec::new();
    for (index, code, summary) in results {
        let expectation = &EXPECTATIONS[index];
        let bug = format!(
            "{} on {}",
            expectation.bug.unwrap_or("no bug"),
            expectation.scenario
        );
        let failed: BTreeSet<&str> = summary["slos"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|slo| slo["pass"] == false)
            .map(|slo| slo["name"].as_str().unwrap())
            .collect();
        println!("bug {bug}: exit {code}, failed {failed:?}");
        let want_code = if expectation.bug.is_none() { 0 } else { 1 };
        if code != want_code {
            problems.push(format!(
                "bug {bug}: exit {code}, expected {want_code}: {}",
                summary["reason"]
            ));
        }
        for slo in expectation.fails {
            if !failed.contains(slo) {
                problems.push(format!("bug {bug}: {slo} passed, it should fail"));
            }
        }
        for slo in expectation.passes {
            if failed.contains(slo) {
                let why = summary["slos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["name"] == *slo)
                    .map(|s| s["why"].to_string())
                    .unwrap_or_default();
                problems.push(format!("bug {bug}: {slo} failed, it should not: {why}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

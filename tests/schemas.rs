//! The JSON Schemas in `schemas/` are generated from the Rust types (schemars): the
//! committed files must match the code; what a real run writes, and every scenario the
//! parser takes, must validate.
//!
//! After changing a report type, a key of the scenario format or a fault kind, regenerate
//! them with `VOXSOAK_BLESS=1 cargo test --test tests schemas::` and commit the result.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{ScenarioFile, fixtures_dir, voxsoak_exe};

fn committed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name)
}

/// The schema as the code gives it, pretty-printed with a final newline.
fn generated(schema: &schemars::Schema) -> String {
    serde_json::to_string_pretty(schema).unwrap() + "\n"
}

/// Compares `schema` with the committed file (or writes it, with VOXSOAK_BLESS=1).
fn check_committed(name: &str, schema: &schemars::Schema) {
    let path = committed(name);
    let now = generated(schema);
    if std::env::var("VOXSOAK_BLESS").is_ok_and(|value| value == "1") {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        before == now,
        "{} does not match the code; regenerate it with \
         `VOXSOAK_BLESS=1 cargo test --test tests schemas::` and commit it",
        path.display()
    );
}

#[test]
fn the_summary_schema_is_the_codes() {
    check_committed(
        "summary.schema.json",
        &schemars::schema_for!(voxsoak::report::Summary),
    );
}

/// The committed summary schema, ready to validate with.
fn summary_validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed("summary.schema.json")).unwrap())
            .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// What the schema says of `summary`: each error with where it is.
fn summary_errors(validator: &jsonschema::Validator, summary: &serde_json::Value) -> Vec<String> {
    validator
        .iter_errors(summary)
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect()
}

/// A real run's summary.json validates against the committed schema.
#[test]
fn a_real_summary_validates() {
    let scenario = ScenarioFile::new(&format!(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{{ ramp_to = 2, over = \"1s\" }}, {{ hold = \"2s\" }}]\n\
         [calls]\nfixtures = [\"{}/*.wav\"]\n[[scripts]]\nname = \"one\"\nturns = 1\n",
        fixtures_dir().display()
    ));
    let output = Command::new(voxsoak_exe())
        .args(["run", scenario.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(scenario.out_dir())
        .output()
        .unwrap();
    assert!(
        output.status.code() == Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scenario.out_dir().join("summary.json")).unwrap(),
    )
    .unwrap();
    let validator = summary_validator();
    let errors = summary_errors(&validator, &summary);
    assert!(errors.is_empty(), "{errors:#?}");
    // And the schema is not vacuous: a summary without its verdict does not validate.
    let mut broken = summary.clone();
    broken.as_object_mut().unwrap().remove("verdict");
    assert!(!validator.is_valid(&broken));
}

/// A 300 s run written by hand with everything a summary can hold: a fault injected twice
/// (detected) and one never detected, the harness away once, metric SLOs on a series
/// that grows, health probes, the fleet's RSS and a crash.
fn full_journal(dir: &std::path::Path) {
    use serde_json::json;
    let slo_metric = |name: &str, bounds: serde_json::Value| {
        let mut slo = json!({"name": name, "series": "dead_letters", "max": null, "min": null,
            "growth_per_h": null, "rate_max": null, "window_s": 60.0});
        for (key, value) in bounds.as_object().unwrap() {
            slo[key] = value.clone();
        }
        slo
    };
    let mut records = vec![
        json!({"event": "run_started", "t_s": 0.0,
        "at": "2026-11-23T10:00:00.000Z", "run_id": "full-1", "scenario": "full",
        "scenario_path": "full.toml", "seed": 3, "target": "embedded", "planned_s": 300.0,
        "grading": {"slo": {"call_success_min_pct": 99.0, "response_p95_max_s": 2.0,
            "response_p99_max_s": null, "first_audio_p95_max_s": null,
            "pacing_jitter_p99_max_s": null, "detect_within_s": 10.0,
            "no_retry_storm": false, "recover_within_s": 30.0, "stable_window_s": 5.0,
            "uptime_min_pct": 99.0, "memory_growth_max_mib_h": 50.0,
            "temp_dir_growth_max_mib_h": null, "max_crashes": 0,
            "no_unprovoked_alerts": true,
            "metrics": [slo_metric("dead_letters_max", json!({"max": 10.0})),
                slo_metric("dead_letters_growth", json!({"growth_per_h": 1.0}))],
            "spikes_s": []},
            "faults": [
                {"name": "tts", "kind": "tts_429", "detect": [{"alert": "TtsRateLimited"}],
                    "recover_from": "clear"},
                {"name": "db", "kind": "db_pool_exhaustion",
                    "detect": [{"alert": "DbPoolSaturated"}], "recover_from": "clear"}]}}),
        json!({"event": "fleet", "t_s": 0.1, "pid": 4242}),
    ];
    for step in 1..=60u32 {
        let t = f64::from(step) * 5.0;
        records.push(
            json!({"event": "interval", "t_s": t, "from_s": t - 5.0, "started": 4,
            "completed": 4, "failed": 0, "active": 4, "replies": 8,
            "outcomes": {"completed": 4},
            "response_ms": {"count": 8, "p50": 400.0, "p95": 700.0, "p99": 900.0, "max": 950.0}}),
        );
        records.push(json!({"event": "health", "t_s": t - 2.5, "healthy": true}));
        records.push(json!({"event": "fleet_process", "t_s": t, "rss_bytes": 150e6 + t * 1e3}));
        records.push(json!({"event": "metrics", "t_s": t, "seen_s": t,
            "values": {"dead_letters": t / 10.0}}));
    }
    let fault = |event: &str, name: &str, kind: &str, occurrence: u32, t_s: f64| {
        json!({"event": event, "t_s": t_s, "fault": name, "kind": kind,
            "occurrence": occurrence, "planned_at_s": t_s, "evidence": "seen", "note": "undone"})
    };
    for (occurrence, at) in [(1, 30.0), (2, 100.0)] {
        records.extend([
            fault("fault_injected", "tts", "tts_429", occurrence, at),
            fault("fault_confirmed", "tts", "tts_429", occurrence, at + 0.5),
            json!({"event": "alert", "t_s": at + 1.0 + f64::from(occurrence),
                "name": "TtsRateLimited", "status": "firing"}),
            fault("fault_cleared", "tts", "tts_429", occurrence, at + 15.0),
            json!({"event": "alert", "t_s": at + 16.0, "name": "TtsRateLimited",
                "status": "resolved"}),
        ]);
    }
    records.extend([
        json!({"event": "harness_downtime", "t_s": 150.0, "down_s": 12.5,
            "from": "2026-11-23T10:02:30.000Z", "to": "2026-11-23T10:02:42.500Z",
            "calls_lost": 2}),
        fault("fault_injected", "db", "db_pool_exhaustion", 1, 200.0),
        fault("fault_confirmed", "db", "db_pool_exhaustion", 1, 200.5),
        fault("fault_cleared", "db", "db_pool_exhaustion", 1, 220.0),
        json!({"event": "fleet_exited", "t_s": 250.0, "status": "exit 1", "by_harness": false}),
        json!({"event": "fleet_restarted", "t_s": 251.0, "pid": 4243}),
        json!({"event": "run_ended", "t_s": 300.0, "at": "2026-11-23T10:05:00.000Z",
            "stopped": null}),
    ]);
    let time = |record: &serde_json::Value| record["t_s"].as_f64().unwrap();
    records.sort_by(|a, b| time(a).total_cmp(&time(b)));
    let lines: Vec<String> = records.iter().map(ToString::to_string).collect();
    std::fs::write(dir.join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// `voxsoak report` on a journal with faults, their spread, the harness away and metric
/// SLOs: every part of the summary that a run without faults leaves empty validates too.
#[test]
fn a_summary_with_faults_downtime_and_metric_slos_validates() {
    let dir = tempfile::tempdir().unwrap();
    full_journal(dir.path());
    let output = Command::new(voxsoak_exe())
        .args(["report", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(voxsoak::exit::FAILED),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    // What this test is for is there: otherwise it would validate empty arrays again.
    let array = |key: &str| summary[key].as_array().unwrap().clone();
    assert_eq!(array("faults").len(), 3, "{summary:#}");
    let stats = array("fault_stats");
    assert!(
        stats
            .iter()
            .any(|stats| stats["name"] == "tts" && stats["time_to_detect_s"].is_object()),
        "{stats:#?}"
    );
    assert_eq!(array("harness_downtime").len(), 1, "{summary:#}");
    let slos = array("slos");
    for name in [
        "dead_letters_max",
        "dead_letters_growth",
        "uptime",
        "detect_within",
    ] {
        assert!(
            slos.iter().any(|slo| slo["name"] == name),
            "no SLO {name}: {slos:#?}"
        );
    }
    assert!(summary["uptime"].is_object(), "{summary:#}");
    let errors = summary_errors(&summary_validator(), &summary);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_scenario_schema_is_the_codes() {
    check_committed("scenario.schema.json", &voxsoak::scenario::json_schema());
}

/// The committed scenario schema, ready to validate with.
fn scenario_validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed("scenario.schema.json")).unwrap())
            .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// A scenario file as the schema sees it: its TOML as JSON, as Taplo hands it over.
fn as_json(source: &str) -> serde_json::Value {
    let table: toml::Table = toml::from_str(source).unwrap();
    serde_json::to_value(table).unwrap()
}

/// What the schema says of `source`: each error with where it is.
fn schema_errors(validator: &jsonschema::Validator, source: &str) -> Vec<String> {
    validator
        .iter_errors(&as_json(source))
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect()
}

/// Every scenario file in `dir` (and below), sorted.
fn toml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(toml_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every scenario we ship, and every test scenario the parser accepts, validates against
/// the committed schema: an editor never flags a file `voxsoak validate` takes.
#[test]
fn every_valid_scenario_file_validates_against_the_schema() {
    let validator = scenario_validator();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shipped = toml_files(&root.join("scenarios"));
    let test_files = toml_files(&root.join("tests/scenario_files"));
    assert!(shipped.len() >= 10, "{shipped:?}");
    // A file shipped to be included (a shared fleet description) need not be a scenario on
    // its own, but one that includes it must validate; an editor checks it all the same.
    let included: Vec<PathBuf> = shipped
        .iter()
        .filter_map(|path| voxsoak::scenario::load(path).ok())
        .flat_map(|scenario| scenario.includes)
        .map(|path| path.canonicalize().unwrap())
        .collect();
    let mut checked = 0;
    for path in shipped.iter().chain(&test_files) {
        let a_part = included.contains(&path.canonicalize().unwrap());
        let accepted = a_part || voxsoak::scenario::load(path).is_ok();
        // What we ship must be valid; a test file may be invalid on purpose.
        assert!(
            accepted || !shipped.contains(path),
            "{} does not validate",
            path.display()
        );
        if !accepted {
            continue;
        }
        let errors = schema_errors(&validator, &std::fs::read_to_string(path).unwrap());
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        checked += 1;
    }
    assert!(checked >= shipped.len() + 3, "only {checked} files checked");
}

/// A scenario both the parser and the schema accept; each mistake below breaks it once.
const BASE: &str = r#"
name = "base"
[target]
fleet = "embedded"
[load]
stages = [{ ramp_to = 2, over = "5s" }, { hold = "10s" }]
[calls]
turn_timeout = "10s"
[[scripts]]
name = "one"
turns = { min = 1, max = 2 }
[slo]
call_success = ">= 99%"
response_p95 = "<= 1500ms"
memory_growth = "<= 50MiB/h"
[[faults]]
kind = "tts_slow"
at = "2s"
for = "5s"
delay = "2s"
detect = { alert = "TtsDegraded" }
[[faults]]
kind = "temp_file_leak"
at = "8s"
for = "3s"
file_size = "64KiB"
rate = "1MiB/s"
max_total = "1MiB"
"#;

/// Typical mistakes: the schema flags each one, as `voxsoak validate` does, so an editor
/// shows what the parser would say.
#[test]
fn the_schema_rejects_what_the_parser_rejects() {
    let validator = scenario_validator();
    let errors = schema_errors(&validator, BASE);
    assert!(errors.is_empty(), "the base scenario: {errors:#?}");
    voxsoak::scenario::parse(BASE, std::path::Path::new("base.toml")).unwrap();
    // (mistake, text in BASE, replaced by, where the schema reports it)
    let mistakes: [(&str, &str, &str, &str); 15] = [
        (
            "an unknown top-level key",
            "name = \"base\"",
            "nmae = \"base\"",
            "",
        ),
        (
            "a typo in a fault key",
            "delay = \"2s\"",
            "delay = \"2s\"\ndetcet = { alert = \"X\" }",
            "/faults/0",
        ),
        (
            "an unknown fault kind",
            "kind = \"tts_slow\"",
            "kind = \"tts_slowly\"",
            "/faults/0/kind",
        ),
        (
            "a missing required parameter",
            "delay = \"2s\"\n",
            "",
            "/faults/0",
        ),
        ("a missing for", "for = \"5s\"\ndelay", "delay", "/faults/0"),
        (
            "another kind's parameter",
            "delay = \"2s\"",
            "delay = \"2s\"\nholders = 3",
            "/faults/0",
        ),
        (
            "a string where a number goes",
            "ramp_to = 2",
            "ramp_to = \"2\"",
            "/load/stages/0/ramp_to",
        ),
        (
            "a negative concurrency",
            "ramp_to = 2",
            "ramp_to = -2",
            "/load/stages/0/ramp_to",
        ),
        (
            "a bare number for a duration",
            "turn_timeout = \"10s\"",
            "turn_timeout = 10",
            "/calls/turn_timeout",
        ),
        (
            "a duration without a unit",
            "turn_timeout = \"10s\"",
            "turn_timeout = \"10\"",
            "/calls/turn_timeout",
        ),
        (
            "a size for a rate",
            "rate = \"1MiB/s\"",
            "rate = \"1MiB\"",
            "/faults/1/rate",
        ),
        (
            "a percentage without %",
            "call_success = \">= 99%\"",
            "call_success = \"99\"",
            "/slo/call_success",
        ),
        (
            "a minimum written as a maximum",
            "call_success = \">= 99%\"",
            "call_success = \"<= 99%\"",
            "/slo/call_success",
        ),
        (
            "a wrong fleet name",
            "fleet = \"embedded\"",
            "fleet = \"embeded\"",
            "/target/fleet",
        ),
        (
            "an unknown detect form",
            "{ alert = \"TtsDegraded\" }",
            "{ alarm = \"TtsDegraded\" }",
            "/faults/0/detect",
        ),
    ];
    for (mistake, from, to, at) in mistakes {
        assert!(
            BASE.contains(from),
            "{mistake}: {from:?} is not in the base"
        );
        let source = BASE.replacen(from, to, 1);
        let found: Vec<String> = validator
            .iter_errors(&as_json(&source))
            .map(|error| error.instance_path().to_string())
            .collect();
        assert!(
            found.iter().any(|path| path == at),
            "the schema does not flag {mistake} at {at:?} (it flags {found:?}):\n{source}"
        );
        let parsed = voxsoak::scenario::parse(&source, std::path::Path::new("mistake.toml"));
        assert!(parsed.is_err(), "the parser takes {mistake}:\n{source}");
    }
}

/// `include` is a top-level list of files, and a file that includes others need not have
/// `[target]` or `[load]` itself (nor one that is included): the schema cannot see the other
/// files, so it leaves that to `voxsoak validate`.
#[test]
fn the_schema_takes_include_and_parts_of_a_scenario() {
    let validator = scenario_validator();
    for part in [
        "include = [\"fleet.toml\", \"../shared/slos.toml\"]\n[load]\nstages = [{ hold = \"5s\" }]\n",
        "[target]\nfleet = \"embedded\"\n[calls]\nfixtures = [\"audio/*.wav\"]\n",
    ] {
        let errors = schema_errors(&validator, part);
        assert!(errors.is_empty(), "{part}: {errors:#?}");
    }
    for (mistake, at) in [
        ("include = \"fleet.toml\"\n", "/include"),
        ("include = [3]\n", "/include/0"),
        ("[target]\ninclude = [\"fleet.toml\"]\n", "/target"),
    ] {
        let found: Vec<String> = validator
            .iter_errors(&as_json(mistake))
            .map(|error| error.instance_path().to_string())
            .collect();
        assert!(found.iter().any(|path| path == at), "{mistake}: {found:?}");
    }
}

//! How long `voxsoak report` takes to re-grade a 72-hour journal, and how big that journal
//! is: a journal written as `scenarios/autonomy-72h.toml` as written would write it with
//! 1,000 calls (an interval record every 5 s with six dense histograms, the TTS log every
//! 5 s, process, metrics and temp-dir samples every 10 s, every fault of its timeline
//! injected, confirmed, detected by an alert and cleared, health changing with them).
//! Not a criterion benchmark: one re-grade takes seconds. Run with
//!
//! ```text
//! cargo bench --bench report_72h
//! ```

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

const HOURS: f64 = 72.0;
const INTERVAL_S: f64 = 5.0;
const SAMPLE_S: f64 = 10.0;

fn main() {
    let scenario = voxsoak::scenario::load(Path::new("scenarios/autonomy-72h.toml"))
        .expect("scenarios/autonomy-72h.toml loads (run from the crate's root)");
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let bytes = write_journal(&scenario, &dir.path().join("journal.jsonl"));
    println!(
        "72 h journal: {:.1} MB ({:.2} MB per hour), written in {:.1?}",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / HOURS,
        started.elapsed()
    );
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let run = voxsoak::grade::replay::read(&dir.path().join("journal.jsonl")).expect("read");
        let read = started.elapsed();
        let summary = voxsoak::grade::evaluate(&run);
        let graded = started.elapsed();
        summary.write(&run, dir.path()).expect("reports written");
        times.push(started.elapsed());
        println!(
            "  read {read:.2?}, graded {:.2?}, reports written {:.2?}",
            graded - read,
            started.elapsed() - graded
        );
        assert_eq!(summary.faults.len(), fault_count(&scenario));
    }
    times.sort();
    println!(
        "voxsoak report on it (summary.json, junit.xml, report.md, report.html): best {:.2?}, median {:.2?}, worst {:.2?}",
        times[0], times[1], times[2]
    );
    let html = std::fs::metadata(dir.path().join("report.html")).map_or(0, |m| m.len());
    println!("report.html: {:.2} MB", html as f64 / 1e6);
}

fn fault_count(scenario: &voxsoak::scenario::Scenario) -> usize {
    voxsoak::scenario::faults::timeline(&scenario.faults, run_for(), scenario.seed).len()
}

fn run_for() -> Duration {
    Duration::from_secs_f64(HOURS * 3600.0)
}

/// Writes the journal; its size in bytes.
fn write_journal(scenario: &voxsoak::scenario::Scenario, path: &Path) -> u64 {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut line = |record: Value| {
        serde_json::to_writer(&mut out, &record).unwrap();
        out.write_all(b"\n").unwrap();
    };
    let faults = voxsoak::scenario::faults::timeline(&scenario.faults, run_for(), scenario.seed);
    line(
        json!({"event": "run_started", "t_s": 0.0, "at": "2026-12-01T00:00:00.000Z",
        "run_id": "autonomy-72h-bench", "scenario": scenario.name, "seed": scenario.seed,
        "target": "reference fleet", "time_scale": 1.0, "planned_s": HOURS * 3600.0,
        "faults_planned": faults.len(),
        "grading": voxsoak::detect::plan::GradePlan::from_scenario(scenario)}),
    );
    let interval = interval_record();
    let tts = tts_record();
    let mut next_fault = 0;
    let mut t = INTERVAL_S;
    while t <= HOURS * 3600.0 {
        while next_fault < faults.len() && faults[next_fault].at.as_secs_f64() < t {
            fault_records(scenario, &faults[next_fault], &mut line);
            next_fault += 1;
        }
        let mut record = interval.clone();
        record["t_s"] = json!(t);
        record["from_s"] = json!(t - INTERVAL_S);
        line(record);
        let mut record = tts.clone();
        record["t_s"] = json!(t);
        line(record);
        if t % SAMPLE_S == 0.0 {
            let rss = 40_000_000 + (t as u64 % 3600) * 100;
            line(
                json!({"event": "fleet_process", "t_s": t, "seen_s": t, "pid": 4242,
                "rss_bytes": rss, "rss_max_bytes": rss, "cpu_pct": 31.5}),
            );
            line(json!({"event": "fleet_sample", "t_s": t, "seen_s": t,
                "rss_bytes": rss, "temp_dir_bytes": 1_048_576}));
            line(
                json!({"event": "temp_dir", "t_s": t, "seen_s": t, "bytes": 1_048_576,
                "files": 3}),
            );
        }
        t += INTERVAL_S;
    }
    line(
        json!({"event": "run_ended", "t_s": HOURS * 3600.0 + 1.0, "stopped": null,
        "hurried": false, "wall_s": HOURS * 3600.0 + 1.0}),
    );
    out.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// One occurrence: injected, confirmed, its alert firing then resolved (health with it),
/// cleared.
fn fault_records(
    scenario: &voxsoak::scenario::Scenario,
    occurrence: &voxsoak::scenario::faults::Occurrence,
    line: &mut impl FnMut(Value),
) {
    let fault = &scenario.faults[occurrence.fault];
    let (at, until) = (occurrence.at.as_secs_f64(), occurrence.until.as_secs_f64());
    let identity = json!({"fault": fault.name, "kind": fault.kind.name(),
        "occurrence": occurrence.number});
    let with = |event: &str, t: f64, extra: Value| {
        let mut record = identity.clone();
        record["event"] = json!(event);
        record["t_s"] = json!(t);
        for (key, value) in extra.as_object().unwrap() {
            record[key] = value.clone();
        }
        record
    };
    let alert = voxsoak::detect::plan::GradePlan::from_scenario(scenario)
        .faults
        .iter()
        .find(|plan| plan.name == fault.name)
        .and_then(|plan| plan.detect.first())
        .map(|rule| serde_json::to_value(rule).unwrap()["alert"].clone())
        .and_then(|name| name.as_str().map(str::to_owned))
        .unwrap_or_else(|| "TtsRateLimited".to_owned());
    line(with(
        "fault_injected",
        at,
        json!({"planned_at_s": at, "until_s": until,
        "target": "the reference fleet"}),
    ));
    line(with(
        "fault_confirmed",
        at + 0.2,
        json!({"evidence": "seen in effect"}),
    ));
    line(
        json!({"event": "alert", "t_s": at + 2.0, "seen_s": at + 2.0, "name": alert,
        "status": "firing", "starts_s": at + 1.9}),
    );
    line(
        json!({"event": "health", "t_s": at + 2.5, "seen_s": at + 2.5, "healthy": false,
        "status": 503}),
    );
    line(with(
        "fault_cleared",
        until,
        json!({"early": false, "note": "undone"}),
    ));
    line(
        json!({"event": "alert", "t_s": until + 3.0, "seen_s": until + 3.0, "name": alert,
        "status": "resolved", "starts_s": at + 1.9}),
    );
    line(
        json!({"event": "health", "t_s": until + 3.5, "seen_s": until + 3.5,
        "healthy": true, "status": 200}),
    );
}

/// An interval of 1,000 calls: six histograms of many distinct values.
fn interval_record() -> Value {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for value in 0..5_000u64 {
        histogram.record(1_000 + value * 7919 % 4_000_000).unwrap();
    }
    let encoded = voxsoak::journal::histogram::encode(&histogram).unwrap();
    json!({"event": "interval", "active": 1000, "started": 70, "connected": 70,
        "completed": 70, "failed": 0, "dropped": 0, "replies": 1400, "marks_echoed": 1400,
        "outcomes": {"completed": 70}, "closes": {"caller": 70},
        "waiting": 12, "longest_wait_ms": 1830,
        "response_ms": {"count": 1400, "p50": 612.0, "p95": 901.0, "p99": 1402.0, "max": 2210.0},
        "hist": {"response": encoded, "first_audio": encoded, "connect": encoded,
            "dead_air": encoded, "mark_wait": encoded, "pacing": encoded},
        "harness": {"cpu_pct_avg": 52.0, "cpu_pct_max": 61.0, "peak_active_calls": 1000,
            "rss_kib_per_call": 24.0, "rss_mib_baseline": 26.1, "rss_mib_max": 50.2}})
}

/// Five seconds of the TTS stand-in's log at 1,000 calls.
fn tts_record() -> Value {
    json!({"event": "tts_requests", "requests": 280, "during_fault": 0, "hit": 0,
        "by_status": {"200": 280}, "retries": 0, "immediate_retries": 0,
        "retry_gap_ms": null, "retry_after_asked": 0, "retry_after_ignored": 0,
        "chains": {"retry_after": 0, "immediate": 0, "backoff": 0, "jittered": 0,
            "constant": 0}, "constant_gap_ms_sum": 0})
}

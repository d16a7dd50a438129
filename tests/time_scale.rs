//! `time_scale` and `--time-scale`: a schedule written in hours runs in seconds, while the
//! calls, detection and recovery stay in real time; `plan` shows both clocks.

use std::process::Command;
use std::time::Duration;

use crate::util::{ScenarioFile, fixtures_dir, voxsoak_exe, within};

/// Half an hour as written: a diurnal-free ramp and hold, and a leak every 15 minutes.
fn half_hour(time_scale: Option<u32>) -> String {
    format!(
        r#"
name = "compressed"
{}
[target]
fleet = "embedded"
orders = 2000
temp_dir_budget = "64MiB"
[load]
stages = [{{ ramp_to = 2, over = "1m" }}, {{ hold = "29m" }}]
[calls]
turn_timeout = "8s"
fixtures = ["{}/*.wav"]
[[scripts]]
name = "talk"
turns = 1
[[faults]]
kind = "temp_file_leak"
at = "10m"
for = "4m"
every = "15m"
file_size = "64KiB"
rate = "256KiB/s"
"#,
        time_scale.map_or(String::new(), |scale| format!("time_scale = {scale}")),
        fixtures_dir().display()
    )
}

#[test]
fn plan_shows_the_compressed_timeline_beside_the_schedule_as_written() {
    let scenario = ScenarioFile::new(&half_hour(None));
    let output = Command::new(voxsoak_exe())
        .args(["plan", "--time-scale", "60"])
        .arg(&scenario.path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("time scale")
            && text.contains(
                "×60: the schedule runs 60 times faster than written (30m as written takes 30s)"
            ),
        "{text}"
    );
    assert!(
        text.contains("00:00:10.000 – 00:00:14.000  temp_file_leak #1  (as written 00:10:00)"),
        "{text}"
    );
    assert!(
        text.contains("00:00:25.000 – 00:00:29.000  temp_file_leak #2  (as written 00:25:00)"),
        "{text}"
    );

    // Without it the plan is in real time and says nothing of a scale.
    let output = Command::new(voxsoak_exe())
        .arg("plan")
        .arg(&scenario.path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("time scale") && text.contains("00:10:00 – 00:14:00  temp_file_leak #1"),
        "{text}"
    );

    for bad in ["0.5", "fast", "20000"] {
        let output = Command::new(voxsoak_exe())
            .args(["plan", "--time-scale", bad])
            .arg(&scenario.path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "--time-scale {bad}");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(
            error.contains("expected a number from 1 (real time) to 10000"),
            "{error}"
        );
    }
}

/// Half an hour of schedule in 30 s: the faults come at their compressed times, and every
/// report says the run was compressed and by how much.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_run_keeps_the_schedule_and_says_so_in_every_report() {
    let scenario = ScenarioFile::new(&half_hour(Some(60)));
    let summary = within(Duration::from_secs(300), scenario.run()).await;
    assert_eq!(summary.time_scale, 60.0);
    assert!(
        summary.wall_s < 300.0,
        "30 minutes of schedule took {} s: not compressed",
        summary.wall_s
    );
    let leaks: Vec<_> = summary.faults.iter().collect();
    assert_eq!(leaks.len(), 2, "{leaks:#?}");
    for (fault, planned) in leaks.iter().zip([10.0, 25.0]) {
        assert!((fault.planned_at_s - planned).abs() < 0.01, "{fault:#?}");
        let injected = fault.injected_at_s.expect("injected");
        assert!(injected >= planned - 0.01, "{fault:#?}");
        assert!(fault.confirmed, "{fault:#?}");
    }
    assert_ne!(
        summary.verdict,
        voxsoak::grade::Verdict::Error,
        "{:?}",
        summary.reason
    );
    assert!(summary.calls.completed > 0);

    let journal = std::fs::read_to_string(scenario.out_dir().join("journal.jsonl")).unwrap();
    let started: serde_json::Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    assert_eq!(started["time_scale"], 60.0);
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scenario.out_dir().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["time_scale"], 60.0);
    let markdown = std::fs::read_to_string(scenario.out_dir().join("report.md")).unwrap();
    assert!(markdown.contains("time scale ×60"), "{markdown}");
    assert!(markdown.contains("(10m as written)"), "{markdown}");
    let html = std::fs::read_to_string(scenario.out_dir().join("report.html")).unwrap();
    assert!(html.contains("10m into the schedule as written"));
    assert!(summary.render_text().contains("time scale ×60"));
}

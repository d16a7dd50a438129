//! `[[slo.metric]]` against the reference fleet: its series are scraped, journaled and
//! graded; a bound it keeps passes, an impossible one fails with the reason, and a series
//! it does not expose is not measured; every report lists them.

use std::process::Command;
use std::time::Duration;

use voxsoak::grade::{SloStatus, Verdict};

use crate::util::{ScenarioFile, fixtures_dir, voxsoak_exe, within};

fn scenario_text() -> String {
    format!(
        r#"
name = "metric-slos"
[target]
fleet = "embedded"
orders = 2000
[load]
stages = [{{ ramp_to = 2, over = "5s" }}, {{ hold = "35s" }}]
[calls]
turn_timeout = "8s"
fixtures = ["{}/*.wav"]
[[scripts]]
name = "talk"
turns = 2
[slo]
call_success = ">= 0%"

[[slo.metric]]
name = "dlq"
series = "dead_letters"
max = 10

[[slo.metric]]
name = "calls"
series = "calls_total"
max = 1000
rate_max = 50
window = "20s"

[[slo.metric]]
name = "impossible"
series = "calls_total"
min = 1000000

[[slo.metric]]
name = "missing"
series = 'no_such_series{{kind="x"}}'
max = 1
"#,
        fixtures_dir().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_slos_grade_the_fleets_own_series_in_every_report() {
    let scenario = ScenarioFile::new(&scenario_text());
    let summary = within(Duration::from_secs(300), scenario.run()).await;
    let slo = |name: &str| {
        summary
            .slos
            .iter()
            .find(|slo| slo.name == name)
            .unwrap_or_else(|| panic!("no SLO {name}: {:#?}", summary.slos))
    };
    assert!(summary.calls.completed > 0, "{:?}", summary.calls);
    // The fixed fleet with nothing failing abandons no turn.
    let dlq = slo("dlq");
    assert_eq!(dlq.status, SloStatus::Pass, "{dlq:?}");
    assert_eq!(dlq.measured, "max 0");
    assert!(dlq.why.starts_with("dead_letters ("), "{dlq:?}");
    let calls = slo("calls");
    assert_eq!(calls.status, SloStatus::Pass, "{calls:?}");
    assert_eq!(calls.threshold, "max <= 1000, rate <= 50/s over 20s");
    let impossible = slo("impossible");
    assert_eq!(impossible.status, SloStatus::Fail, "{impossible:?}");
    assert!(
        impossible.why.contains("under the 1000000 required"),
        "{impossible:?}"
    );
    let missing = slo("missing");
    assert_eq!(missing.status, SloStatus::NotMeasured, "{missing:?}");
    assert!(
        missing
            .why
            .starts_with(r#"no_such_series{kind="x"} was in none of the "#),
        "{missing:?}"
    );
    assert_eq!(summary.verdict, Verdict::Fail, "{:?}", summary.reason);
    assert_eq!(summary.reason.as_deref(), Some("SLOs failed: impossible"));

    // Journaled with the scrapes, at most one record every 10 s.
    let journal = std::fs::read_to_string(scenario.out_dir().join("journal.jsonl")).unwrap();
    let metrics: Vec<serde_json::Value> = journal
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["event"] == "metrics")
        .collect();
    assert!(
        (2..=6).contains(&metrics.len()),
        "{} metrics records",
        metrics.len()
    );
    assert!(
        metrics
            .iter()
            .all(|record| record["values"]["dead_letters"] == 0.0)
    );

    // Every report lists them.
    let out = scenario.out_dir();
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&read("summary.json")).unwrap();
    let names: Vec<&str> = json["slos"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|slo| slo["name"].as_str())
        .collect();
    for name in ["dlq", "calls", "impossible", "missing"] {
        assert!(names.contains(&name), "summary.json: {names:?}");
    }
    let junit = read("junit.xml");
    assert!(junit.contains(r#"<testcase name="impossible""#), "{junit}");
    assert!(junit.contains("under the 1000000 required"), "{junit}");
    assert!(read("report.md").contains("| impossible | **FAIL** |"));
    assert!(read("report.html").contains("<td>dlq</td>"));
    let text = summary.render_text();
    assert!(text.contains("SLO missing"), "{text}");
}

#[test]
fn plan_lists_them_and_validate_points_at_a_bad_one() {
    let scenario = ScenarioFile::new(&scenario_text());
    let output = Command::new(voxsoak_exe())
        .arg("plan")
        .arg(&scenario.path)
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{plan}");
    assert!(
        plan.contains(
            "  metric             calls: calls_total max <= 1000, rate <= 50/s over 20s\n"
        ),
        "{plan}"
    );
    // Journaled with the scrapes, whether or not `record` lists them.
    assert!(
        plan.contains(
            "dead_letters, calls_total, no_such_series{kind=\"x\"} (journaled every 10s)"
        ),
        "{plan}"
    );

    let bad = ScenarioFile::new(&scenario_text().replace("max = 10\n", "maxx = 10\n"));
    let output = Command::new(voxsoak_exe())
        .arg("validate")
        .arg(&bad.path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains(&format!(
            "{}:20:1: unknown field `maxx`, expected one of `name`, `series`, `max`",
            bad.path.display()
        )),
        "{errors}"
    );
    assert_eq!(errors.matches(": unknown field").count(), 1, "{errors}");
    assert!(!errors.contains("needs a bound"), "{errors}");
}

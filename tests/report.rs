//! `voxsoak report RUN_DIR`: every report comes from the journal alone, so a report made
//! afterwards matches the run's, and a harness killed with `kill -9` leaves a journal that
//! still grades.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voxsoak::exit;

use crate::util::{ScenarioFile, fixtures_dir, voxsoak_exe};

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `voxsoak sink` on a free port, started by the test (so killing the harness leaves no
/// orphan behind); its stream URL.
fn start_sink() -> (Killed, String) {
    let mut child = Command::new(voxsoak_exe())
        .args(["sink", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the sink");
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    // Keep reading, so the sink never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let address = first
        .split_whitespace()
        .find(|word| word.parse::<std::net::SocketAddr>().is_ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    (Killed(child), format!("ws://{address}/stream"))
}

fn scenario(stream_url: &str, hold: &str) -> ScenarioFile {
    ScenarioFile::new(&format!(
        "[target]\nstream_url = \"{stream_url}\"\n[load]\nstages = [{{ ramp_to = 4, over = \"1s\" }}, {{ hold = \"{hold}\" }}]\n[calls]\nfixtures = [\"{}/*.wav\"]\n[[scripts]]\nname = \"short\"\nturns = 1\n[slo]\ncall_success = \">= 50%\"\n",
        fixtures_dir().display()
    ))
}

fn interval_records(journal: &Path) -> usize {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(r#""event":"interval""#))
        .count()
}

fn report(dir: &Path) -> (i32, String, serde_json::Value) {
    let output = Command::new(voxsoak_exe())
        .args(["report", dir.to_str().unwrap()])
        .output()
        .expect("run voxsoak report");
    let summary = serde_json::from_str(
        &std::fs::read_to_string(dir.join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json is JSON");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        summary,
    )
}

#[test]
fn a_report_made_afterwards_is_the_runs_own() {
    let (_sink, url) = start_sink();
    let scenario = scenario(&url, "6s");
    let status = Command::new(voxsoak_exe())
        .args(["run", scenario.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(scenario.out_dir())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(exit::PASS));
    let written = std::fs::read_to_string(scenario.out_dir().join("summary.json")).unwrap();
    std::fs::remove_file(scenario.out_dir().join("summary.json")).unwrap();
    let html = std::fs::read_to_string(scenario.out_dir().join("report.html")).unwrap();
    std::fs::remove_file(scenario.out_dir().join("report.html")).unwrap();
    let (code, stdout, rebuilt) = report(&scenario.out_dir());
    assert_eq!(
        std::fs::read_to_string(scenario.out_dir().join("report.html")).unwrap(),
        html,
        "report.html rebuilt from the journal differs"
    );
    assert_eq!(code, exit::PASS, "{stdout}");
    assert!(stdout.contains(": PASS"), "{stdout}");
    let written: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(
        rebuilt, written,
        "the report rebuilt from the journal differs"
    );
    assert!(rebuilt["calls"]["completed"].as_u64().unwrap() >= 1);
    assert!(rebuilt["latency_ms"]["response"]["count"].as_u64().unwrap() >= 1);
}

#[test]
fn a_harness_killed_with_kill_9_leaves_a_journal_that_still_grades() {
    let (_sink, url) = start_sink();
    let scenario = scenario(&url, "10m");
    let harness = Killed(
        Command::new(voxsoak_exe())
            .args(["run", scenario.path.to_str().unwrap(), "--quiet", "--out"])
            .arg(scenario.out_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let journal = scenario.out_dir().join("journal.jsonl");
    // Two intervals journaled (about 10 s of calls), then kill -9.
    let deadline = Instant::now() + Duration::from_secs(120);
    while interval_records(&journal) < 2 {
        assert!(Instant::now() < deadline, "no intervals journaled");
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(harness.0.id() as libc::pid_t, libc::SIGKILL);
    }
    drop(harness);
    assert!(
        !scenario.out_dir().join("summary.json").exists(),
        "a killed run wrote no summary"
    );
    let (code, stdout, summary) = report(&scenario.out_dir());
    assert_eq!(code, exit::HARNESS_ERROR, "{stdout}");
    assert!(stdout.contains(": ABORTED"), "{stdout}");
    assert_eq!(summary["verdict"], "aborted");
    let reason = summary["reason"].as_str().unwrap();
    assert!(reason.contains("without run_ended"), "{reason}");
    assert!(
        summary["calls"]["started"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(summary["wall_s"].as_f64().unwrap() >= 10.0, "{summary}");
    assert!(
        summary["slos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|slo| slo["name"] == "call_success")
    );
    assert!(summary["journal"]["records"].as_u64().unwrap() >= 3);
    let html = std::fs::read_to_string(scenario.out_dir().join("report.html")).unwrap();
    assert!(html.contains("id=\"verdict\">ABORTED</div>"), "{html}");
    assert!(html.contains("without the run's end"), "{html}");
    assert!(html.contains("<polyline"), "the calls so far are drawn");
    killed_run_junit_and_markdown(&scenario.out_dir());
}

/// junit.xml and report.md of a killed run, rebuilt by `voxsoak report`: JUnit that
/// parses, with the run an error saying why and the SLOs graded as far as the journal
/// goes; Markdown whose heading says ABORTED and whose tables have every row whole.
fn killed_run_junit_and_markdown(dir: &Path) {
    use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    let report = Report::deserialize_from_str(&xml)
        .unwrap_or_else(|error| panic!("junit.xml does not parse: {error}\n{xml}"));
    let suite = |name: &str| {
        report
            .test_suites
            .iter()
            .find(|suite| suite.name.as_str() == name)
            .unwrap_or_else(|| panic!("no suite {name} in {xml}"))
    };
    match &suite("run").test_cases[0].status {
        TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Error,
            message,
            ..
        } => {
            let message = message.as_ref().map_or("", |message| message.as_str());
            assert!(message.starts_with("run aborted: "), "{message}");
            assert!(message.contains("without run_ended"), "{message}");
        }
        other => panic!("the killed run is no error in junit.xml: {other:?}\n{xml}"),
    }
    assert!(
        suite("slos")
            .test_cases
            .iter()
            .any(|case| case.name.as_str() == "call_success"),
        "{xml}"
    );

    let markdown = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    let heading = markdown.lines().next().unwrap_or_default();
    assert!(
        heading.starts_with("## ") && heading.ends_with(": ABORTED"),
        "{markdown}"
    );
    assert!(markdown.contains("the harness was killed"), "{markdown}");
    assert!(markdown.contains("| call_success |"), "{markdown}");
    // Each table's rows have as many cells as its heading row.
    let tables: Vec<&str> = markdown
        .split("\n\n")
        .filter(|block| block.starts_with('|'))
        .collect();
    assert!(!tables.is_empty(), "no table in:\n{markdown}");
    for table in tables {
        let cells = |row: &str| row.matches(" | ").count();
        let mut rows = table.lines();
        let columns = cells(rows.next().unwrap());
        for row in rows.skip(1) {
            assert!(
                row.starts_with("| ") && row.ends_with(" |") && cells(row) == columns,
                "a broken row {row:?} in:\n{markdown}"
            );
        }
    }
}

#[test]
fn report_on_a_directory_without_a_journal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(voxsoak_exe())
        .args(["report", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has no journal.jsonl"), "{stderr}");
}

/// `--report-every`: while the run goes on, the run directory already holds every report,
/// graded from the journal so far and saying so (`in_progress`); the final ones replace
/// them when it ends.
#[test]
fn the_reports_are_rewritten_while_the_run_goes_on() {
    let (_sink, url) = start_sink();
    let scenario = scenario(&url, "20s");
    let out = scenario.out_dir();
    let run = Killed(
        Command::new(voxsoak_exe())
            .args([
                "run",
                scenario.path.to_str().unwrap(),
                "--quiet",
                "--report-every",
                "2s",
                "--out",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start voxsoak run"),
    );
    // The reports are files another process reads: look for them as it would.
    let deadline = Instant::now() + Duration::from_secs(60);
    let interim = loop {
        if let Ok(summary) = std::fs::read_to_string(out.join("summary.json")) {
            let summary: serde_json::Value =
                serde_json::from_str(&summary).expect("whole JSON, never half a file");
            if summary["calls"]["completed"].as_u64() > Some(0) {
                break summary;
            }
            assert_eq!(
                summary["verdict"], "pass",
                "nothing judged yet is no error: {summary}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "no interim summary.json with an ended call within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(interim["in_progress"], true, "{interim}");
    assert_eq!(interim["verdict"], "pass", "{interim}");
    assert!(
        interim["reason"]
            .as_str()
            .unwrap()
            .starts_with("in progress: graded from the journal at"),
        "{interim}"
    );
    for report in ["junit.xml", "report.md", "report.html"] {
        assert!(
            out.join(report).is_file(),
            "{report} written with the interim summary"
        );
    }
    let mut run = run;
    let status = run.0.wait().unwrap();
    assert_eq!(status.code(), Some(exit::PASS));
    let last: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(last["in_progress"], false, "{last}");
    assert_eq!(last["reason"], serde_json::Value::Null, "{last}");
    assert!(last["calls"]["completed"].as_u64() > interim["calls"]["completed"].as_u64());
}

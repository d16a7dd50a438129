//! `voxsoak run --metrics-listen ADDR`: the harness's own metrics, served while the run goes
//! on, scraped as Prometheus would, and consistent with the run's final `summary.json`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;
use voxsoak::exit;
use voxsoak::observe::prometheus;

use crate::util::{ScenarioFile, fixtures_dir, voxsoak_exe, within};

/// A short run against the reference fleet: three calls at a time for 20 s, with TTS 429s
/// from 4 s to 10 s.
fn scenario() -> ScenarioFile {
    ScenarioFile::new(&format!(
        r#"
name = "live-metrics"
[target]
fleet = "embedded"
orders = 2000
[load]
stages = [{{ ramp_to = 3, over = "1s" }}, {{ hold = "19s" }}]
[calls]
turn_timeout = "8s"
fixtures = ["{}/*.wav"]
[[scripts]]
name = "talk"
turns = 1
[[faults]]
kind = "tts_429"
at = "4s"
for = "6s"
retry_after = "1s"
[slo]
call_success = ">= 50%"
detect_within = "30s"
"#,
        fixtures_dir().display()
    ))
}

/// One scrape: the samples by `name{label="value"}` (labels as the page writes them).
type Page = BTreeMap<String, f64>;

async fn scrape(client: &reqwest::Client, url: &str) -> Option<Page> {
    let response = client.get(url).send().await.ok()?;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.ok()?;
    Some(
        prometheus::parse(&text)
            .into_iter()
            .map(|sample| {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|(name, value)| format!("{name}=\"{value}\""))
                    .collect();
                (
                    format!("{}{{{}}}", sample.name, labels.join(",")),
                    sample.value,
                )
            })
            .collect(),
    )
}

/// Every counter of `later` is at least what it was in `earlier`.
fn assert_counters_never_go_down(earlier: &Page, later: &Page) {
    for (series, before) in earlier {
        let counter =
            series.contains("_total{") || series.contains("_bucket{") || series.contains("_count{");
        if counter && !series.starts_with("process_") {
            let after = later.get(series).copied().unwrap_or(0.0);
            assert!(after >= *before, "{series} went from {before} to {after}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_own_metrics_are_served_while_it_goes_on_and_agree_with_its_summary() {
    let scenario = scenario();
    let out = scenario.out_dir();
    let mut child = Command::new(voxsoak_exe())
        .args(["run", scenario.path.to_str().unwrap(), "--quiet"])
        .args(["--metrics-listen", "127.0.0.1:0", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start voxsoak run");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The address is said on stderr as the run starts.
    let url = within(Duration::from_secs(60), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("stderr ended first");
            if let Some(url) = line.strip_prefix("voxsoak: metrics at ") {
                break url.to_owned();
            }
        }
    })
    .await;
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );
    // The rest of stderr, for the messages below (and so the harness never blocks on it).
    let stderr = Arc::new(Mutex::new(String::new()));
    let into = Arc::clone(&stderr);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });

    let client = reqwest::Client::new();
    let (first, last) = scrape_until_the_run_ends(&client, &url, &stderr).await;
    let status = within(Duration::from_secs(60), child.wait()).await.unwrap();
    assert!(
        matches!(status.code(), Some(exit::PASS | exit::FAILED)),
        "{status:?}: {}",
        stderr.lock().unwrap()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_agrees_with_the_summary(&first, &last, &summary);
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(r#""event":"metrics_listen""#)
            && journal.contains(&format!(r#""url":"{url}""#)),
        "the address is journaled"
    );
}

/// Scrapes while the run goes on: until calls have started and the fault is in effect
/// (the first page returned), then until the server stops with the run (the last page).
async fn scrape_until_the_run_ends(
    client: &reqwest::Client,
    url: &str,
    stderr: &Mutex<String>,
) -> (Page, Page) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first = None;
    let mut last: Option<Page> = None;
    loop {
        let Some(page) = scrape(client, url).await else {
            if first.is_some() {
                break;
            }
            panic!("no answer from {url}: {}", stderr.lock().unwrap());
        };
        if let Some(last) = &last {
            assert_counters_never_go_down(last, &page);
        }
        let started = page["voxsoak_calls_started_total{}"];
        let in_effect = page["voxsoak_faults_in_effect{kind=\"tts_429\"}"];
        if first.is_none() && started > 0.0 && in_effect == 1.0 {
            first = Some(page.clone());
        }
        last = Some(page);
        assert!(
            Instant::now() < deadline,
            "the run did not end within 120 s: {}",
            stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (first.unwrap(), last.unwrap())
}

fn assert_agrees_with_the_summary(first: &Page, last: &Page, summary: &serde_json::Value) {
    let calls = &summary["calls"];
    let started = calls["started"].as_f64().unwrap();
    let seen = |page: &Page, series: &str| {
        *page
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {page:#?}"))
    };
    assert!(seen(first, "voxsoak_calls_started_total{}") > 0.0);
    assert!(seen(first, "voxsoak_calls_active{}") > 0.0, "{first:#?}");
    assert!(seen(last, "voxsoak_calls_started_total{}") <= started);
    for (outcome, count) in calls["by_outcome"].as_object().unwrap() {
        let series = format!("voxsoak_calls_ended_total{{outcome=\"{outcome}\"}}");
        assert!(seen(last, &series) <= count.as_f64().unwrap(), "{series}");
    }
    let completed = "voxsoak_calls_completed_total{}";
    assert!(seen(last, completed) <= calls["completed"].as_f64().unwrap());
    assert!(seen(last, completed) > 0.0, "{last:#?}");
    let replies = summary["latency_ms"]["response"]["count"].as_f64().unwrap();
    let counted = seen(last, "voxsoak_response_latency_seconds_count{}");
    assert!(
        counted > 0.0 && counted <= replies,
        "{counted} of {replies}"
    );
    assert_eq!(
        seen(last, "voxsoak_response_latency_seconds_bucket{le=\"+Inf\"}"),
        counted
    );
    // The fault: in effect at the first page, injected once, and cleared by the end.
    let injected = summary["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|fault| fault["injected_at_s"].is_number())
        .count() as f64;
    assert_eq!(injected, 1.0);
    assert_eq!(
        seen(last, "voxsoak_faults_injected_total{kind=\"tts_429\"}"),
        injected
    );
    assert_eq!(
        seen(last, "voxsoak_faults_in_effect{kind=\"tts_429\"}"),
        0.0
    );
    // The SLOs so far, graded from the journal as it stood.
    let call_success = seen(last, "voxsoak_slo_status{slo=\"call_success\"}");
    assert!([-1.0, 0.0, 1.0].contains(&call_success));
    assert!(seen(last, "process_resident_memory_bytes{}") > 1e6);
}

/// A non-loopback `--metrics-listen` the scenario's allow_hosts does not name is refused
/// before anything starts: exit 2, a clear message, no run directory.
#[test]
fn a_metrics_address_off_loopback_is_refused_before_the_run_starts() {
    let scenario = ScenarioFile::new(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n",
    );
    let out = scenario.out_dir();
    let output = std::process::Command::new(voxsoak_exe())
        .args(["run", scenario.path.to_str().unwrap(), "--quiet"])
        .args(["--metrics-listen", "0.0.0.0:0", "--out"])
        .arg(&out)
        .output()
        .expect("run voxsoak");
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "--metrics-listen 0.0.0.0:0: not a loopback address, and the scenario's [target] allow_hosts does not name 0.0.0.0"
        ),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing ran");
}

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::journal::Journal;
use crate::journal::calls::record;

/// Reads `page` as strictly as the format allows and returns every sample, keyed
/// `name{label="value",…}` as written. Panics (naming the line) on anything a Prometheus
/// server would refuse or misread: a sample outside its family, a family declared twice,
/// HELP or TYPE missing, a counter not named `_total` or negative, a duplicate series, a
/// histogram whose buckets are not cumulative, do not end in `+Inf`, or whose `+Inf`
/// differs from its `_count`.
fn check_page(page: &str) -> BTreeMap<String, f64> {
    let mut helped = BTreeSet::new();
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut series = BTreeMap::new();
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    assert!(page.ends_with('\n'), "the page ends with a newline");
    for (number, line) in page.lines().enumerate() {
        let at = format!("line {}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect(&at);
            assert!(valid_name(name) && !help.trim().is_empty(), "{at}");
            assert!(helped.insert(name.to_owned()), "HELP twice: {at}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(&at);
            assert!(helped.contains(name), "TYPE without HELP first: {at}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{at}");
            assert!(kind != "counter" || name.ends_with("_total"), "{at}");
            let fresh = declared.insert(name.to_owned(), kind.to_owned()).is_none();
            assert!(fresh, "family declared twice: {at}");
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#') && !line.trim().is_empty(), "{at}");
        let (name, labels, value) = parse_sample(line).unwrap_or_else(|| panic!("{at}"));
        let (family, kind) = current.clone().unwrap_or_else(|| panic!("no TYPE: {at}"));
        if kind == "histogram" {
            let suffix = name.strip_prefix(family.as_str()).unwrap_or("");
            assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{at}");
        } else {
            assert_eq!(name, family, "a sample outside its family: {at}");
        }
        assert!(kind != "counter" || value >= 0.0, "{at}");
        if name.ends_with("_bucket") {
            let le = labels.iter().find(|(label, _)| label == "le").expect(&at);
            let bound = parse_value(&le.1).expect(&at);
            buckets.entry(family).or_default().push((bound, value));
        }
        let key = format!(
            "{name}{{{}}}",
            labels
                .iter()
                .map(|(label, text)| format!("{label}={text:?}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(series.insert(key, value).is_none(), "a series twice: {at}");
    }
    for (family, kind) in &declared {
        if kind != "histogram" {
            continue;
        }
        let buckets = &buckets[family];
        assert!(
            buckets.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "{family} bounds"
        );
        assert!(
            buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
            "{family} cumulative"
        );
        let (last_bound, last_count) = *buckets.last().unwrap();
        assert_eq!(last_bound, f64::INFINITY, "{family} ends in +Inf");
        assert_eq!(
            last_count,
            series[&format!("{family}_count{{}}")],
            "{family}"
        );
        assert!(
            series.contains_key(&format!("{family}_sum{{}}")),
            "{family}_sum"
        );
    }
    series
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        number => number.parse().ok(),
    }
}

/// A sample's name, its labels (values unescaped) and its value.
type Sample = (String, Vec<(String, String)>, f64);

/// `name{label="value",…} value`, no timestamp.
fn parse_sample(line: &str) -> Option<Sample> {
    let end = line.find(['{', ' '])?;
    let name = &line[..end];
    if !valid_name(name) {
        return None;
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            let (label, after) = inner.split_once("=\"")?;
            if !valid_name(label) || label.contains(':') {
                return None;
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return None,
                    },
                    (at, '"') => break at,
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            let after = &after[close + 1..];
            if let Some(tail) = after.strip_prefix('}') {
                rest = tail;
                break;
            }
            inner = after.strip_prefix(',')?;
        }
    }
    let value = rest.strip_prefix(' ')?;
    if value.contains(' ') {
        return None;
    }
    Some((name.to_owned(), labels, parse_value(value)?))
}

fn run_info() -> RunInfo {
    RunInfo {
        run_id: "smoke-20261201T100000Z".into(),
        scenario: "smoke".into(),
        planned_s: 180.0,
        time_scale: 1.0,
        started: Instant::now(),
    }
}

/// An `interval` record of `replies` with these latencies, all calls completed.
fn interval(latencies_ms: &[u64]) -> Value {
    let mut totals = Totals {
        started: latencies_ms.len() as u64,
        ..Totals::default()
    };
    totals
        .outcomes
        .insert(CallOutcome::Completed, totals.started);
    for ms in latencies_ms {
        record(&mut totals.response, Duration::from_millis(*ms));
        record(&mut totals.connect, Duration::from_millis(40));
        record(&mut totals.pacing, Duration::from_micros(700));
    }
    let mut record = totals.to_record();
    record["event"] = "interval".into();
    record["active"] = 3.into();
    record
}

#[test]
fn the_page_is_strict_exposition_text_with_cumulative_histograms() {
    let metrics = LiveMetrics::new(run_info(), ["tts_429", "db_pool_exhaustion"]);
    metrics.take(&interval(&[300, 300, 1200]));
    metrics.take(&interval(&[300, 1200, 40_000]));
    let fault = |event: &str| json!({"event": event, "kind": "tts_429", "fault": "tts"});
    metrics.take(&fault("fault_injected"));
    metrics.take(&fault("fault_confirmed"));
    metrics.take(&fault("fault_detected"));
    let page = metrics.render();
    let series = check_page(&page);
    assert_eq!(series["voxsoak_calls_started_total{}"], 6.0, "{page}");
    assert_eq!(series["voxsoak_calls_active{}"], 3.0);
    assert_eq!(
        series["voxsoak_calls_ended_total{outcome=\"completed\"}"],
        6.0
    );
    assert_eq!(
        series["voxsoak_calls_ended_total{outcome=\"turn_timeout\"}"],
        0.0
    );
    let bucket =
        |le: &str| series[&format!("voxsoak_response_latency_seconds_bucket{{le={le:?}}}")];
    assert_eq!(bucket("0.25"), 0.0);
    assert_eq!(bucket("0.5"), 3.0);
    assert_eq!(bucket("1"), 3.0);
    assert_eq!(bucket("1.5"), 5.0);
    assert_eq!(bucket("30"), 5.0, "40 s is past the last bound");
    assert_eq!(bucket("+Inf"), 6.0);
    let sum = series["voxsoak_response_latency_seconds_sum{}"];
    assert!((sum - 43.3).abs() < 43.3 * 0.001, "{sum}");
    assert_eq!(series["voxsoak_connect_seconds_bucket{le=\"0.05\"}"], 6.0);
    assert_eq!(
        series["voxsoak_pacing_lateness_seconds_bucket{le=\"0.0005\"}"],
        0.0
    );
    assert_eq!(
        series["voxsoak_pacing_lateness_seconds_bucket{le=\"0.001\"}"],
        6.0
    );
    // Faults: a planned kind not injected yet is there at zero.
    assert_eq!(series["voxsoak_faults_in_effect{kind=\"tts_429\"}"], 1.0);
    assert_eq!(
        series["voxsoak_faults_detected_total{kind=\"tts_429\"}"],
        1.0
    );
    assert_eq!(
        series["voxsoak_faults_injected_total{kind=\"db_pool_exhaustion\"}"],
        0.0
    );
    metrics.take(&fault("fault_cleared"));
    let series = check_page(&metrics.render());
    assert_eq!(series["voxsoak_faults_in_effect{kind=\"tts_429\"}"], 0.0);
    assert_eq!(
        series["voxsoak_faults_injected_total{kind=\"tts_429\"}"],
        1.0
    );
    assert!(series["process_resident_memory_bytes{}"] > 1e6);
    assert!(series.contains_key("process_cpu_seconds_total{}"));
    // Not graded yet: no SLO is shown rather than a guess.
    assert!(!page.contains("voxsoak_slo_status"), "{page}");
}

#[test]
fn label_values_are_escaped() {
    let mut run = run_info();
    run.scenario = "a \"quoted\" \\ name\non two lines \u{202e}reversed".into();
    let page = LiveMetrics::new(run, []).render();
    // Read back: `a "quoted" \ name\non two lines \u{202e}reversed`, on one line, the
    // hidden characters visible as every report shows them.
    assert!(
        page.contains(r#"scenario="a \"quoted\" \\ name\\non two lines \\u{202e}reversed""#),
        "{page}"
    );
    let series = check_page(&page);
    assert_eq!(
        series.len(),
        page.lines().filter(|l| !l.starts_with('#')).count()
    );
}

#[test]
fn an_empty_run_is_a_valid_page() {
    let page = LiveMetrics::new(run_info(), []).render();
    let series = check_page(&page);
    assert_eq!(series["voxsoak_response_latency_seconds_count{}"], 0.0);
    assert_eq!(
        series["voxsoak_response_latency_seconds_bucket{le=\"+Inf\"}"],
        0.0
    );
    assert!(
        !page.contains("voxsoak_faults_"),
        "no fault planned: {page}"
    );
}

/// The records a journal writes reach the page through its tap, and grading the journal so
/// far gives each SLO's status and the recoveries.
#[tokio::test]
async fn the_journal_tap_and_grading_so_far_fill_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let journal = Journal::create(&path, Instant::now()).unwrap();
    let metrics = LiveMetrics::new(run_info(), ["tts_429"]);
    journal.tap(metrics.tap());
    write_graded_journal(&journal);
    let run = crate::grade::replay::read(&path).unwrap();
    let summary = crate::grade::evaluate_in_progress(&run);
    metrics.graded(&summary, 95.0, Duration::from_millis(3));
    let page = metrics.render();
    let series = check_page(&page);
    let slo = |name: &str| series[&format!("voxsoak_slo_status{{slo={name:?}}}")];
    assert_eq!(slo("call_success"), 1.0, "{page}\n{:?}", summary.slos);
    assert_eq!(slo("response_p95"), 0.0, "15% slow: {:?}", summary.slos);
    assert_eq!(slo("uptime"), -1.0, "no health probe: {:?}", summary.slos);
    assert_eq!(series["voxsoak_slo_graded_at_seconds{}"], 95.0);
    assert_eq!(series["voxsoak_calls_started_total{}"], 60.0);
    assert_eq!(
        series["voxsoak_faults_injected_total{kind=\"tts_429\"}"],
        1.0
    );
    let recovered = summary
        .faults
        .iter()
        .filter(|fault| fault.recovery == Some(RecoveryStatus::Recovered))
        .count();
    assert_eq!(recovered, 1, "{:?}", summary.faults);
    assert_eq!(
        series["voxsoak_faults_recovered_total{kind=\"tts_429\"}"],
        1.0
    );
    // A later grading that sees fewer recoveries never takes the counter back.
    let mut fewer = summary.clone();
    fewer.faults.clear();
    metrics.graded(&fewer, 125.0, Duration::from_millis(3));
    let series = check_page(&metrics.render());
    assert_eq!(
        series["voxsoak_faults_recovered_total{kind=\"tts_429\"}"],
        1.0
    );
}

/// 100 s of calls (every 5 s, 3 calls) with one TTS 429 fault from 10 s to 20 s, detected by
/// an alert at 12 s; the replies take 1.2 s from 10 s to 25 s (too many for the run's p95),
/// 0.3 s otherwise. No health probe.
fn write_graded_journal(journal: &Journal) {
    journal.record_at(
        "run_started",
        0.0,
        json!({"run_id": "live-1", "scenario": "live", "scenario_path": "live.toml",
            "seed": 1, "target": "sink", "planned_s": 100.0,
            "grading": {
                "slo": {"call_success_min_pct": 99.0, "response_p95_max_s": 1.0,
                    "response_p99_max_s": null, "first_audio_p95_max_s": null,
                    "pacing_jitter_p99_max_s": null, "detect_within_s": 10.0,
                    "no_retry_storm": false, "recover_within_s": 60.0,
                    "stable_window_s": 10.0, "uptime_min_pct": 99.0,
                    "memory_growth_max_mib_h": null, "temp_dir_growth_max_mib_h": null,
                    "max_crashes": null, "no_unprovoked_alerts": false},
                "faults": [{"name": "tts", "kind": "tts_429",
                    "detect": [{"alert": "TtsRateLimited"}], "recover_from": "clear"}]}}),
    );
    let fault = |event: &str, t_s: f64| {
        journal.record_at(
            event,
            t_s,
            json!({"fault": "tts", "kind": "tts_429", "occurrence": 1, "planned_at_s": 10.0,
                "until_s": 20.0, "evidence": "429s served", "note": "undone"}),
        );
    };
    for step in 0..20 {
        let t_s = f64::from(step) * 5.0;
        if step == 2 {
            fault("fault_injected", 10.0);
            fault("fault_confirmed", 10.5);
            journal.record_at(
                "alert",
                12.0,
                json!({"name": "TtsRateLimited", "status": "firing", "seen_s": 12.0}),
            );
        }
        if step == 4 {
            fault("fault_cleared", 20.0);
        }
        let slow = (10.0..25.0).contains(&t_s);
        let mut record = interval(if slow { &[1200; 3] } else { &[300; 3] });
        record["from_s"] = t_s.into();
        if let Some(fields) = record.as_object_mut() {
            fields.remove("event");
        }
        journal.record_at("interval", t_s + 5.0, record);
    }
}

/// The checker above refuses what a Prometheus server would: it is no use otherwise.
#[test]
fn the_checker_refuses_broken_pages() {
    let histogram = |buckets: &str, count: u64| {
        format!(
            "# HELP h_seconds h\n# TYPE h_seconds histogram\n{buckets}h_seconds_sum 1\nh_seconds_count {count}\n"
        )
    };
    let good = histogram(
        "h_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n",
        2,
    );
    check_page(&good);
    let broken = [
        histogram(
            "h_seconds_bucket{le=\"1\"} 3\nh_seconds_bucket{le=\"+Inf\"} 2\n",
            2,
        ),
        histogram(
            "h_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n",
            3,
        ),
        histogram(
            "h_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"2\"} 2\n",
            2,
        ),
        "# HELP c c\n# TYPE c counter\nc 1\n".to_owned(),
        "# TYPE g gauge\ng 1\n".to_owned(),
        "# HELP g g\n# TYPE g gauge\ng{a=\"x} 1\n".to_owned(),
        "# HELP g g\n# TYPE g gauge\ng 1\ng 2\n".to_owned(),
        "# HELP g g\n# TYPE g gauge\nother 1\n".to_owned(),
    ];
    for page in broken {
        let refused = std::panic::catch_unwind(|| check_page(&page));
        assert!(refused.is_err(), "accepted:\n{page}");
    }
}

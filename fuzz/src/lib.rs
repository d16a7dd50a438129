//! The fuzz harness: one function per `cargo fuzz` target. Each takes its input as voxsoak
//! meets it (a scenario file's bytes, a WebSocket text frame, an HTTP body, a journal) and
//! sends it down the path voxsoak itself takes, so a crash here is a crash of `voxsoak`.
//! Every input must come back as a value or an error: these functions panic only when
//! voxsoak does, or when a property below says voxsoak got something wrong.
//!
//! `fuzz/fuzz_targets/*.rs` call these; `tests/fuzz_corpus.rs` includes this file and runs
//! every committed corpus file and regression input through them under plain `cargo test`.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A target: its name under `fuzz/corpus/` and `fuzz/regressions/`, and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 10] = [
    ("scenario", scenario),
    ("twilio_messages", twilio_messages),
    ("twiml", twiml),
    ("prometheus", prometheus),
    ("alertmanager", alertmanager),
    ("journal", journal),
    ("histogram", histogram),
    ("wall_clock", wall_clock),
    ("byte_size", byte_size),
    ("metric_condition", metric_condition),
];

/// Where the fuzzed scenario file "is": a directory that does not exist, so every fixture
/// path relative to it is missing (and must be an error, not a panic).
const SCENARIO_PATH: &str = "/nonexistent-voxsoak-fuzz/scenario.toml";

/// A scenario file's bytes, as `voxsoak validate` and `voxsoak plan` take them: decoded
/// (non-UTF-8 gets a position), parsed, validated, then its warnings and its plan.
pub fn scenario(data: &[u8]) {
    if globs_outside(data) {
        return;
    }
    let path = Path::new(SCENARIO_PATH);
    match voxsoak::scenario::parse_bytes(data, path) {
        Ok(scenario) => {
            for warning in scenario.warnings(scenario.load.duration()).lines() {
                assert!(warning.starts_with(SCENARIO_PATH), "{warning}");
            }
            let plan = voxsoak::plan::render_plan(&scenario);
            assert!(!plan.is_empty());
        }
        Err(voxsoak::scenario::ScenarioError::Invalid { diagnostics, .. }) => {
            assert!(
                !diagnostics.is_empty(),
                "an invalid scenario without a problem"
            );
            for diagnostic in &diagnostics {
                assert!(
                    diagnostic.line >= 1 && diagnostic.column >= 1,
                    "{diagnostic:?}"
                );
            }
        }
        Err(error) => panic!("parsing bytes cannot fail to read: {error}"),
    }
}

/// Whether the scenario has a fixture glob from the root (`"/**/*.wav"`): validating it
/// would walk (and decode) the fuzzing machine's files. Any string value counts, however
/// it is escaped; a file TOML cannot parse never gets as far as its fixtures. (Relative
/// paths, `..` included, stay inside [`SCENARIO_PATH`]'s missing directory.)
fn globs_outside(data: &[u8]) -> bool {
    let Ok(source) = std::str::from_utf8(data) else {
        return false;
    };
    let (document, errors) = toml::de::DeTable::parse_recoverable(source);
    errors.is_empty()
        && document
            .get_ref()
            .values()
            .any(|value| globs(value.get_ref()))
}

fn globs(value: &toml::de::DeValue<'_>) -> bool {
    match value {
        toml::de::DeValue::String(text) => {
            text.trim_start().starts_with('/') && text.contains(['*', '?', '['])
        }
        toml::de::DeValue::Array(items) => items.iter().any(|item| globs(item.get_ref())),
        toml::de::DeValue::Table(table) => table.values().any(|item| globs(item.get_ref())),
        _ => false,
    }
}

/// A WebSocket text frame: what a fleet reads from Twilio (the fleet and the sink), and
/// what the call driver reads from a fleet, with its media payload decoded as the driver
/// does. What voxsoak writes, it reads back as it was.
pub fn twilio_messages(data: &[u8]) {
    use voxsoak::twilio::messages::{self, FleetMessage};
    // tungstenite hands on only UTF-8 text frames.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match messages::parse_twilio_event(text) {
        Ok(event) => {
            let again = messages::parse_twilio_event(&event.to_json());
            assert_eq!(again.as_ref().ok(), Some(&event), "{}", event.to_json());
        }
        Err(error) => drop((error.kind(), error.to_string())),
    }
    let _ = messages::inbound_media_payload(text);
    match messages::parse_fleet_message(text) {
        Ok(FleetMessage::Media {
            stream_sid,
            payload,
        }) => {
            let _ = BASE64.decode(payload.as_bytes());
            let json = messages::fleet_media_json(&stream_sid, &payload);
            assert_eq!(
                messages::parse_fleet_message(&json).ok(),
                Some(FleetMessage::Media {
                    stream_sid,
                    payload
                })
            );
        }
        Ok(FleetMessage::Mark { stream_sid, name }) => {
            let json = messages::fleet_mark_json(&stream_sid, &name);
            assert_eq!(
                messages::parse_fleet_message(&json).ok(),
                Some(FleetMessage::Mark { stream_sid, name })
            );
        }
        Ok(FleetMessage::Clear { stream_sid }) => {
            let json = messages::fleet_clear_json(&stream_sid);
            assert_eq!(
                messages::parse_fleet_message(&json).ok(),
                Some(FleetMessage::Clear { stream_sid })
            );
        }
        Err(error) => drop((error.kind(), error.to_string())),
    }
}

/// A voice webhook's answer, read as the call driver reads it (lossy UTF-8). A stream the
/// driver finds is the one the fleet's own TwiML writer ([`connect_stream`]) would describe
/// with the same URL and parameters.
///
/// [`connect_stream`]: voxsoak::twilio::twiml::connect_stream
pub fn twiml(data: &[u8]) {
    use voxsoak::twilio::twiml;
    let body = String::from_utf8_lossy(data);
    match twiml::parse_connect_stream(&body) {
        Ok(target) => {
            let _ = voxsoak::redact::text(&target.url);
            let written = twiml::connect_stream(&target.url, &target.parameters);
            assert_eq!(
                twiml::parse_connect_stream(&written).as_ref(),
                Ok(&target),
                "{written}"
            );
        }
        Err(error) => drop(error.to_string()),
    }
}

/// A `/metrics` page, read as the scraper reads it (lossy UTF-8), then what the scraper
/// does with it on every scrape: the default memory and temp-dir gauges, and conditions
/// like the ones scenarios name.
pub fn prometheus(data: &[u8]) {
    use voxsoak::observe::prometheus;
    use voxsoak::scenario::faults::parse_metric_condition;
    let page = String::from_utf8_lossy(data);
    let samples = prometheus::parse(&page);
    let observe = voxsoak::scenario::ObserveSettings::default();
    let _ = prometheus::select(&samples, &observe.rss_metric.selector);
    let _ = prometheus::select(&samples, &observe.temp_dir_metric.selector);
    let record = [observe.rss_metric, observe.temp_dir_metric];
    assert_eq!(prometheus::recorded(&samples, &record).len(), 2);
    for text in [
        "db_pool_in_use / db_pool_size > 0.95",
        r#"tts_requests_total{status="429"} >= 1"#,
        "temp_dir_bytes > 0",
    ] {
        let condition = parse_metric_condition(text).expect("a condition that parses");
        if let Some(value) = prometheus::evaluate(&samples, &condition) {
            let _ = condition.comparison.holds(value, condition.threshold);
        }
    }
}

/// An alert receiver's request body, and each alert's `startsAt` read as the observers'
/// hub reads it.
pub fn alertmanager(data: &[u8]) {
    let Some(alerts) = voxsoak::observe::alerts::parse(data) else {
        return;
    };
    for alert in alerts {
        assert!(alert.name.chars().count() <= 200, "{:?}", alert.name);
        let _ = voxsoak::escape::line(&alert.name);
        if let Some(starts_at) = alert.starts_at.as_deref() {
            assert!(starts_at.chars().count() <= 40, "{starts_at:?}");
            let _ = voxsoak::detect::parse_wall_clock(starts_at);
        }
    }
}

/// A run's `journal.jsonl`, as `voxsoak report` reads it: replayed, graded, and rendered
/// into `summary.json`, the terminal summary and `report.html`.
pub fn journal(data: &[u8]) {
    let run = voxsoak::grade::replay::read_from(data, Path::new("journal.jsonl"))
        .expect("reading from memory cannot fail");
    let summary = voxsoak::grade::evaluate(&run);
    let json = summary.to_json().expect("a summary serializes");
    assert!(json.starts_with('{'));
    let _ = summary.render_text();
    // report.html: whatever the journal holds, no tag of its own reaches the page.
    let html = voxsoak::report::html::render(&summary, &run);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.to_ascii_lowercase().contains("<script"));
}

/// A histogram from a journal's `hist` (the binary HdrHistogram V2 form; base64 on the
/// way in, as the journal holds it), read back and merged as the grader does.
pub fn histogram(data: &[u8]) {
    let text = BASE64.encode(data);
    if let Ok(histogram) = voxsoak::journal::histogram::decode(&text) {
        let _ = voxsoak::journal::calls::Percentiles::of(&histogram);
    }
    let mut totals = voxsoak::journal::calls::Totals::default();
    let record = serde_json::json!({"hist": {"response": text, "connect": text}});
    let _ = totals.add_record(&record);
    let _ = totals.add_record(&record);
    let _ = voxsoak::journal::calls::Percentiles::of(&totals.response);
}

/// An alert's `startsAt`.
pub fn wall_clock(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = voxsoak::detect::parse_wall_clock(text);
    }
}

/// A byte size (`max_total = "1GiB"`, `--memory-limit`): what parses shows as a size.
pub fn byte_size(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(bytes) = voxsoak::units::parse_byte_size(text)
    {
        assert!(!voxsoak::units::format_byte_size(bytes).is_empty());
    }
}

/// A `{ metric = "…" }` detect rule or an `[observe] record` entry, evaluated on a page.
pub fn metric_condition(data: &[u8]) {
    use voxsoak::observe::prometheus;
    use voxsoak::scenario::faults::{parse_metric_condition, parse_series_selector};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let samples = prometheus::parse(
        "db_pool_in_use 19\ndb_pool_size 20\ntts_requests_total{status=\"429\"} 7\n",
    );
    if let Ok(condition) = parse_metric_condition(text) {
        assert!(condition.threshold.is_finite());
        if let Some(value) = prometheus::evaluate(&samples, &condition) {
            let _ = condition.comparison.holds(value, condition.threshold);
        }
    }
    if let Ok(selector) = parse_series_selector(text) {
        assert!(!selector.name.is_empty());
        let _ = prometheus::select(&samples, &selector);
    }
}

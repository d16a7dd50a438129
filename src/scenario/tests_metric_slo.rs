//! `[[slo.metric]]`: parsing, defaults, the spike windows `during = "spike"` reads, and
//! every error with its position.

use std::time::Duration;

use super::faults::SeriesSelector;
use super::metric_slo::{DEFAULT_RATE_WINDOW, MetricSlo, MinDuring};
use super::observe::RecordedSeries;
use super::tests::{diagnostics as errors, parse_ok};
use super::tests_faults::{EMBEDDED, EXTERNAL};
use super::{ScheduleWindow, Slos};

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

#[test]
fn every_key_parses_and_spikes_are_placed_in_the_schedule() {
    let scenario = parse_ok(
        r#"
[target]
fleet = "embedded"
[load]
stages = [{ ramp_to = 4, over = "1m" }, { spike_to = 12, for = "5m" }, { hold = "10m" }, { spike_to = 20, for = "2m" }]

[[slo.metric]]
name = "dlq"
series = "dead_letters"
max = 100
growth_per_h = 50.5

[[slo.metric]]
name = "scale-out"
series = 'workers{pool="turns"}'
min = 3
during = "spike"

[[slo.metric]]
name = "tts.retries"
series = "tts_retries_total"
rate_max = 2.0
window = "2m"
min = 0
"#,
    );
    assert_eq!(
        scenario.spikes,
        [
            ScheduleWindow {
                at: secs(60),
                duration: secs(300)
            },
            ScheduleWindow {
                at: secs(960),
                duration: secs(120)
            },
        ]
    );
    let metrics = &scenario.slo.metrics;
    assert_eq!(
        metrics[0],
        MetricSlo {
            name: "dlq".into(),
            series: RecordedSeries::named("dead_letters"),
            max: Some(100.0),
            min: None,
            min_during: MinDuring::Run,
            growth_per_h: Some(50.5),
            rate_max: None,
            window: DEFAULT_RATE_WINDOW,
        }
    );
    assert_eq!(
        metrics[1].series,
        RecordedSeries {
            text: r#"workers{pool="turns"}"#.into(),
            selector: SeriesSelector {
                name: "workers".into(),
                labels: vec![("pool".into(), "turns".into())],
            },
        }
    );
    assert_eq!(
        (metrics[1].min, metrics[1].min_during),
        (Some(3.0), MinDuring::Spike)
    );
    assert_eq!(
        (metrics[2].rate_max, metrics[2].window, metrics[2].min),
        (Some(2.0), secs(120), Some(0.0))
    );
    // The built-in SLOs keep their defaults.
    assert_eq!(
        Slos {
            metrics: Vec::new(),
            ..scenario.slo.clone()
        },
        Slos::default()
    );
}

#[test]
fn spikes_are_compressed_with_the_schedule() {
    let scenario = parse_ok(
        r#"
time_scale = 60
[target]
fleet = "embedded"
[load]
stages = [{ ramp_to = 4, over = "10m" }, { spike_to = 12, for = "30m" }]
[[slo.metric]]
name = "scale"
series = "workers"
min = 3
during = "spike"
"#,
    );
    assert_eq!(
        scenario.spikes,
        [ScheduleWindow {
            at: secs(10),
            duration: secs(30)
        }]
    );
    let back = scenario.with_time_scale(1.0);
    assert_eq!(back.spikes[0].at, secs(600));
}

#[test]
fn a_metric_slo_without_a_bound_or_with_a_bad_one_is_an_error_at_its_key() {
    let source = format!(
        r#"{EMBEDDED}
[[slo.metric]]
name = "nothing"
series = "dead_letters"

[[slo.metric]]
name = "words"
series = "dead_letters"
max = "a lot"
growth_per_h = nan

[[slo.metric]]
name = "upside-down"
series = "dead_letters"
min = 10
max = 5

[[slo.metric]]
name = "falling"
series = "dead_letters"
rate_max = -1
"#
    );
    assert_eq!(
        errors(&source),
        [
            "6:1: a metric SLO needs a bound to grade: add max = N, min = N, growth_per_h = N or rate_max = N",
            "13:7: max: expected a number such as 100 or 2.5, found \"a lot\"",
            "14:16: growth_per_h: expected a number such as 100 or 2.5, found NaN",
            "19:7: min (10) is over max (5): no value could pass",
            "25:12: rate_max is the fastest rise per second allowed, 0 or more, found -1",
        ]
    );
}

#[test]
fn names_must_be_given_unique_plain_and_not_a_built_in_slos() {
    let source = format!(
        r#"{EMBEDDED}
[[slo.metric]]
series = "a"
max = 1

[[slo.metric]]
name = "memory_growth"
series = "a"
max = 1

[[slo.metric]]
name = "dead letters"
series = "a"
max = 1

[[slo.metric]]
name = "dlq"
series = "a"
max = 1

[[slo.metric]]
name = "dlq"
series = "b"
max = 1
"#
    );
    assert_eq!(
        errors(&source),
        [
            r#"6:1: a metric SLO needs name = "…": what reports call it (e.g. name = "dlq")"#,
            r#"11:8: name "memory_growth" is a built-in SLO's (or an [slo] key); pick another, e.g. "memory_growth_metric""#,
            r#"16:8: name "dead letters": expected 1 to 64 letters, digits, _, - or . (it names the SLO in every report)"#,
            r#"26:8: name "dlq" is taken by another [[slo.metric]]; each needs its own"#,
        ]
    );
}

#[test]
fn series_during_and_window_are_checked() {
    let source = format!(
        r#"{EMBEDDED}
[[slo.metric]]
name = "no-series"
max = 1

[[slo.metric]]
name = "bad-series"
series = "dead letters"
max = 1

[[slo.metric]]
name = "no-spike"
series = "a"
min = 1
during = "spike"

[[slo.metric]]
name = "during-what"
series = "a"
max = 1
during = "night"

[[slo.metric]]
name = "window-alone"
series = "a"
max = 1
window = "1m"

[[slo.metric]]
name = "short-window"
series = "a"
rate_max = 1
window = "5s"
"#
    );
    assert_eq!(
        errors(&source),
        [
            r#"6:1: a metric SLO needs series = "NAME" (or 'NAME{label="value"}'): the fleet's series it bounds"#,
            r#"12:10: series: expected a series such as "dead_letters" or 'mem_bytes{kind="rss"}': expected a metric name, found "dead letters""#,
            r#"19:10: during = "spike" needs a spike stage in [load] stages, e.g. { spike_to = 60, for = "10m" }"#,
            r#"25:10: during: expected "spike" (min is then graded only during the load's spike stages), found "night""#,
            "31:10: window applies to rate_max only: add rate_max = N, or drop window",
            "37:10: window must be at least 20s (the series is journaled every 10s, and a rate needs two samples in the window), found 5s",
        ]
    );
}

#[test]
fn unknown_keys_are_reported_and_the_table_is_not_blamed_for_them() {
    let source = format!(
        r#"{EMBEDDED}
[[slo.metric]]
name = "dlq"
series = "dead_letters"
maximum = 100
"#
    );
    let found = errors(&source);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .starts_with("9:1: unknown field `maximum`, expected one of `name`, `series`, `max`"),
        "{found:#?}"
    );
}

#[test]
fn an_external_fleet_needs_metrics_url_and_a_rate_two_scrapes() {
    let without = format!(
        r#"{EXTERNAL}
[[slo.metric]]
name = "dlq"
series = "dead_letters"
max = 100
"#
    );
    assert_eq!(
        errors(&without),
        [
            r#"8:10: a metric SLO needs the fleet's /metrics, and an external fleet has no default: add [observe] metrics_url = "http://HOST:PORT/metrics""#
        ]
    );
    let slow_scrapes = format!(
        r#"{EXTERNAL}
[observe]
metrics_url = "http://127.0.0.1:8080/metrics"
scrape_interval = "1m"
[[slo.metric]]
name = "retries"
series = "tts_retries_total"
rate_max = 1
"#
    );
    assert_eq!(
        errors(&slow_scrapes),
        ["12:12: window (1m) must be at least two scrapes long: [observe] scrape_interval is 1m"]
    );
    let scraped = parse_ok(&format!(
        r#"{EXTERNAL}
[observe]
metrics_url = "http://127.0.0.1:8080/metrics"
[[slo.metric]]
name = "dlq"
series = "dead_letters"
max = 100
"#
    ));
    assert_eq!(scraped.slo.metrics.len(), 1);
}

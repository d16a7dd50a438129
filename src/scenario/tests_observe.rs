//! `[observe]`: parsing, defaults, errors with positions, and how the faults' `detect` rules
//! are checked against it.

use std::path::PathBuf;
use std::time::Duration;

use super::faults::{DetectionRule, SeriesSelector};
use super::observe::{ObserveSettings, ProcessWatch, RecordedSeries};
use super::tests::{diagnostics as errors, parse_ok};
use super::tests_faults::{EMBEDDED, EXTERNAL};

const SINK: &str =
    "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n";

#[test]
fn every_key_parses_for_an_external_fleet() {
    let scenario = parse_ok(&format!(
        r#"{EXTERNAL}
[observe]
health_url = "http://127.0.0.1:8080/health"
health_interval = "500ms"
health_timeout = "3s"
metrics_url = "http://localhost:8080/metrics"
scrape_interval = "5s"
record = ["db_pool_in_use", 'tts_requests_total{{status="429"}}']
alerts_listen = "127.0.0.1:9093"
temp_dir = "/var/tmp/fleet-audio"
temp_dir_interval = "30s"
log_file = "/var/log/fleet.log"
rss_metric = 'myfleet_memory_bytes{{kind="rss"}}'
temp_dir_metric = "myfleet_tmp_bytes"
process = {{ pid_file = "/run/fleet.pid" }}
"#
    ));
    let observe = scenario.observe;
    assert_eq!(
        observe.rss_metric,
        RecordedSeries {
            text: r#"myfleet_memory_bytes{kind="rss"}"#.into(),
            selector: SeriesSelector {
                name: "myfleet_memory_bytes".into(),
                labels: vec![("kind".into(), "rss".into())]
            }
        }
    );
    assert_eq!(
        observe.temp_dir_metric,
        RecordedSeries::named("myfleet_tmp_bytes")
    );
    assert_eq!(
        observe.process,
        Some(ProcessWatch::PidFile(PathBuf::from("/run/fleet.pid")))
    );
    assert_eq!(
        observe.health_url.as_ref().map(url::Url::as_str),
        Some("http://127.0.0.1:8080/health")
    );
    assert_eq!(observe.health_interval, Duration::from_millis(500));
    assert_eq!(observe.health_timeout, Duration::from_secs(3));
    assert_eq!(
        observe.metrics_url.as_ref().map(url::Url::as_str),
        Some("http://localhost:8080/metrics")
    );
    assert_eq!(observe.scrape_interval, Duration::from_secs(5));
    assert_eq!(
        observe.record,
        vec![
            RecordedSeries {
                text: "db_pool_in_use".into(),
                selector: SeriesSelector {
                    name: "db_pool_in_use".into(),
                    labels: vec![]
                }
            },
            RecordedSeries {
                text: r#"tts_requests_total{status="429"}"#.into(),
                selector: SeriesSelector {
                    name: "tts_requests_total".into(),
                    labels: vec![("status".into(), "429".into())]
                }
            },
        ]
    );
    assert_eq!(
        observe.alerts_listen,
        Some("127.0.0.1:9093".parse().unwrap())
    );
    assert_eq!(
        observe.temp_dir,
        Some(PathBuf::from("/var/tmp/fleet-audio"))
    );
    assert_eq!(observe.temp_dir_interval, Duration::from_secs(30));
    assert_eq!(observe.log_file, Some(PathBuf::from("/var/log/fleet.log")));
}

#[test]
fn defaults_without_the_table() {
    assert_eq!(parse_ok(EMBEDDED).observe, ObserveSettings::default());
    let defaults = ObserveSettings::default();
    assert_eq!(defaults.health_interval, Duration::from_secs(1));
    assert_eq!(defaults.health_timeout, Duration::from_secs(2));
    assert_eq!(defaults.scrape_interval, Duration::from_secs(2));
    assert_eq!(defaults.temp_dir_interval, Duration::from_secs(10));
    assert!(defaults.health_url.is_none() && defaults.metrics_url.is_none());
    assert_eq!(
        defaults.rss_metric,
        RecordedSeries::named("process_resident_memory_bytes")
    );
    assert_eq!(
        defaults.temp_dir_metric,
        RecordedSeries::named("temp_dir_bytes")
    );
    assert_eq!(defaults.process, None);
    // The embedded fleet's intervals can be tuned without naming its URLs.
    let tuned = parse_ok(&format!(
        "{EMBEDDED}[observe]\nhealth_interval = \"2s\"\nscrape_interval = \"250ms\"\ntemp_dir_interval = \"1s\"\n"
    ));
    assert_eq!(tuned.observe.health_interval, Duration::from_secs(2));
    assert_eq!(tuned.observe.scrape_interval, Duration::from_millis(250));
    assert_eq!(tuned.observe.temp_dir_interval, Duration::from_secs(1));
}

#[test]
fn unknown_keys_are_refused_with_their_position() {
    let found = errors(&format!("{EMBEDDED}[observe]\nhealth_urls = \"x\"\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("6:1: unknown field `health_urls`"),
        "{found:?}"
    );
    assert!(found[0].contains("expected one of"), "{found:?}");
}

#[test]
fn urls_must_be_http_and_on_allowed_hosts() {
    let found = errors(&format!(
        r#"{EXTERNAL}[observe]
health_url = "http://fleet.internal:8080/health"
metrics_url = "https://127.0.0.1/metrics"
"#
    ));
    assert_eq!(
        found,
        vec![
            r#"6:14: host "fleet.internal" is not in allow_hosts (loopback only by default); add it to [target] allow_hosts to allow it"#,
            "7:15: metrics_url: TLS (https://) is not supported by this build yet; use http:// (targets are on loopback or your own network)",
        ]
    );
    let found = errors(&format!(
        "{EXTERNAL}[observe]\nhealth_url = \"ws://127.0.0.1/health\"\nmetrics_url = \"not a url\"\n"
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("6:14: health_url must be a http:// or https:// URL"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("7:15: metrics_url is not a valid URL"),
        "{found:?}"
    );
    // A host named in allow_hosts is fine.
    let scenario = parse_ok(
        "[target]\nstream_url = \"ws://fleet.internal:8080/stream\"\nallow_hosts = [\"fleet.internal\"]\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n[observe]\nhealth_url = \"http://fleet.internal:8080/health\"\n",
    );
    assert_eq!(
        scenario.observe.health_url.unwrap().host_str(),
        Some("fleet.internal")
    );
}

#[test]
fn bad_values_point_at_the_value() {
    let found = errors(&format!(
        r#"{EXTERNAL}[observe]
health_url = "http://127.0.0.1:8080/health"
metrics_url = "http://127.0.0.1:8080/metrics"
health_interval = "10ms"
health_timeout = "0s"
scrape_interval = 2
record = ["db_pool_in_use", "9bad", "up{{job=x}}", "db_pool_in_use"]
alerts_listen = "0.0.0.0:9093"
temp_dir = ""
temp_dir_interval = "500ms"
log_file = "fleet.log"
"#
    ));
    assert_eq!(
        found,
        vec![
            "8:19: health_interval must be at least 100ms, found 10ms",
            r#"9:18: health_timeout must be longer than zero, found "0s""#,
            r#"10:19: expected a duration such as "30s" or "1m30s", found 2"#,
            r#"11:29: record: expected a series such as "db_pool_in_use" or "tts_requests_total{status=\"429\"}": expected a metric name, found "9bad""#,
            r#"11:37: record: expected a series such as "db_pool_in_use" or "tts_requests_total{status=\"429\"}": label values are quoted: {job=x}"#,
            r#"11:50: record lists "db_pool_in_use" twice; list each series once"#,
            "12:17: alerts_listen must be a loopback address (127.0.0.1:PORT or [::1]:PORT); the harness never listens on 0.0.0.0",
            "13:12: temp_dir must not be empty",
            "14:21: temp_dir_interval must be at least 1s, found 500ms",
        ]
    );
    let found = errors(&format!(
        "{EXTERNAL}[observe]\nalerts_listen = \"localhost\"\n"
    ));
    assert_eq!(
        found,
        vec![r#"6:17: alerts_listen: expected "127.0.0.1:PORT", found "localhost""#]
    );
}

#[test]
fn alerts_listen_is_for_external_fleets_only() {
    let found = errors(&format!(
        "{EMBEDDED}[observe]\nalerts_listen = \"127.0.0.1:9093\"\n"
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("6:17: alerts_listen is for an external fleet"),
        "{found:?}"
    );
}

#[test]
fn tuning_keys_need_what_they_tune_unless_the_harness_starts_the_fleet() {
    let tuning = r#"[observe]
health_interval = "2s"
health_timeout = "1s"
scrape_interval = "2s"
record = ["up"]
temp_dir_interval = "5s"
rss_metric = "mem"
temp_dir_metric = "tmp"
"#;
    let found = errors(&format!("{EXTERNAL}{tuning}"));
    assert_eq!(
        found,
        vec![
            "6:19: health_interval needs [observe] health_url with this fleet (only a fleet the harness starts has a default)",
            "7:18: health_timeout needs [observe] health_url with this fleet (only a fleet the harness starts has a default)",
            "8:19: scrape_interval needs [observe] metrics_url with this fleet (only a fleet the harness starts has a default)",
            "9:10: record needs [observe] metrics_url with this fleet (only a fleet the harness starts has a default)",
            r#"10:21: temp_dir_interval needs [observe] temp_dir with this fleet (only fleet = "embedded" has a default temp_dir)"#,
            "11:14: rss_metric needs [observe] metrics_url with this fleet (only a fleet the harness starts has a default)",
            "12:19: temp_dir_metric needs [observe] metrics_url with this fleet (only a fleet the harness starts has a default)",
        ]
    );
    // The sink has a /health and a /metrics the harness probes, but no temp dir.
    let found = errors(&format!("{SINK}{tuning}"));
    assert_eq!(
        found,
        vec![
            r#"10:21: temp_dir_interval needs [observe] temp_dir with this fleet (only fleet = "embedded" has a default temp_dir)"#
        ]
    );
    parse_ok(&format!("{EMBEDDED}{tuning}"));
}

/// `rss_metric` and `temp_dir_metric` take the fleet's own series, as `record` does.
#[test]
fn metric_names_are_series_selectors_with_positions() {
    let found = errors(&format!(
        r#"{EXTERNAL}[observe]
metrics_url = "http://127.0.0.1:8080/metrics"
rss_metric = "9rss"
temp_dir_metric = 'tmp{{dir=x}}'
"#
    ));
    assert_eq!(
        found,
        vec![
            r#"7:14: rss_metric: expected a series such as "myfleet_rss_bytes" or 'mem_bytes{kind="rss"}': expected a metric name, found "9rss""#,
            r#"8:19: temp_dir_metric: expected a series such as "myfleet_tmp_bytes" or 'mem_bytes{kind="rss"}': label values are quoted: {dir=x}"#,
        ]
    );
}

#[test]
fn process_watches_a_fleet_the_harness_did_not_start() {
    let by_health = parse_ok(&format!(
        "{EXTERNAL}[observe]\nhealth_url = \"http://127.0.0.1:8080/health\"\nprocess = {{ health = true }}\n"
    ));
    assert_eq!(by_health.observe.process, Some(ProcessWatch::Health));
    let cases = [
        (
            format!("{EMBEDDED}[observe]\nprocess = {{ pid_file = \"/run/fleet.pid\" }}\n"),
            r#"6:11: process is for a fleet the harness did not start: it already watches the process of fleet = "embedded" it started (its RSS, CPU and exits); drop process"#,
        ),
        (
            format!("{SINK}[observe]\nprocess = {{ health = true }}\n"),
            r#"6:11: process is for a fleet the harness did not start: it already watches the process of fleet = "sink" it started (its RSS, CPU and exits); drop process"#,
        ),
        (
            format!(
                "{EXTERNAL}[observe]\nhealth_url = \"http://127.0.0.1:8080/health\"\nprocess = {{ pid_file = \"/run/fleet.pid\", health = true }}\n"
            ),
            r#"7:51: process takes one of pid_file or health, not both: process = { pid_file = "/run/fleet.pid" } or process = { health = true }"#,
        ),
        (
            format!("{EXTERNAL}[observe]\nprocess = {{}}\n"),
            r#"6:11: process is empty: process = { pid_file = "/run/fleet.pid" } or process = { health = true }"#,
        ),
        (
            format!("{EXTERNAL}[observe]\nprocess = {{ health = false }}\n"),
            "6:22: process = { health = false } watches nothing; write health = true or remove process",
        ),
        (
            format!("{EXTERNAL}[observe]\nprocess = {{ health = true }}\n"),
            r#"6:22: process = { health = true } needs [observe] health_url = "http://HOST:PORT/health": a crash is that URL refusing connections after it answered"#,
        ),
        (
            format!("{EXTERNAL}[observe]\nprocess = {{ pid_file = \"\" }}\n"),
            "6:24: pid_file must not be empty",
        ),
    ];
    for (source, expected) in cases {
        assert_eq!(errors(&source), vec![expected.to_owned()], "{source}");
    }
    let unknown = errors(&format!("{EXTERNAL}[observe]\nprocess = {{ pid = 3 }}\n"));
    assert!(
        unknown[0].starts_with("6:13: unknown field `pid`"),
        "{unknown:?}"
    );
    let not_a_table = errors(&format!(
        "{EXTERNAL}[observe]\nprocess = \"/run/fleet.pid\"\n"
    ));
    assert!(
        not_a_table[0].starts_with("6:11: invalid type: string \"/run/fleet.pid\", expected a table such as { pid_file = \"/run/fleet.pid\" } or { health = true }"),
        "{not_a_table:?}"
    );
}

/// An SLO the scenario gives no way to measure is refused before anything runs, each at
/// its key, all at once: never a failure blamed on the fleet at the end of the run.
#[test]
fn slos_nobody_can_measure_are_refused_at_their_keys() {
    let slos = r#"[slo]
max_crashes = 0
uptime = ">= 99%"
memory_growth = "<= 50MiB/h"
temp_dir_growth = "<= 10MiB/h"
no_retry_storm = true
"#;
    assert_eq!(
        errors(&format!("{EXTERNAL}{slos}")),
        vec![
            r#"6:15: max_crashes needs the fleet's process watched, and the harness did not start this one: add [observe] process = { pid_file = "/run/fleet.pid" } (its exit, read from /proc, is a crash) or process = { health = true } (with health_url: the URL refusing connections after it answered is a crash)"#,
            r#"7:10: uptime needs health probes, and an external fleet has no default: add [observe] health_url = "http://HOST:PORT/health""#,
            r#"8:17: memory_growth needs the fleet's resident memory, and the harness did not start this fleet: add [observe] process = { pid_file = "/run/fleet.pid" } (its RSS from /proc) or metrics_url = "http://HOST:PORT/metrics" (the series rss_metric names, default process_resident_memory_bytes)"#,
            r#"9:19: temp_dir_growth needs the fleet's temp dir, and an external fleet's temp dir has no default: add [observe] temp_dir = "/path/to/its/temp/dir" (walked) or metrics_url = "http://HOST:PORT/metrics" (the series temp_dir_metric names, default temp_dir_bytes)"#,
            r#"10:18: no_retry_storm needs the TTS stand-in, which sees every TTS request of the fleet: add [chaos] tts_listen = "127.0.0.1:PORT" and point the fleet's TTS_BASE_URL at http://127.0.0.1:PORT/v1"#,
        ]
    );
    // Each, measured one way or another.
    for observed in [
        "[observe]\nhealth_url = \"http://127.0.0.1:8080/health\"\nprocess = { health = true }\nmetrics_url = \"http://127.0.0.1:8080/metrics\"\n[chaos]\ntts_listen = \"127.0.0.1:9100\"\n",
        "[observe]\nhealth_url = \"http://127.0.0.1:8080/health\"\nprocess = { pid_file = \"/run/fleet.pid\" }\ntemp_dir = \"/srv/audio\"\n[[faults]]\nkind = \"tts_429\"\nfor = \"1m\"\n[chaos]\ntts_listen = \"127.0.0.1:9100\"\n",
    ] {
        parse_ok(&format!("{EXTERNAL}{slos}{observed}"));
    }
    // A TTS fault does not serve the fleet's TTS without tts_listen either.
    let found = errors(&format!(
        "{EXTERNAL}[slo]\nno_retry_storm = true\n[[faults]]\nkind = \"tts_429\"\nfor = \"1m\"\n"
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("6:18: no_retry_storm needs the TTS stand-in"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("7:1: tts_429 against an external fleet needs [chaos] tts_listen"),
        "{found:?}"
    );
    // Off, or not parsed: nothing to measure.
    parse_ok(&format!("{EXTERNAL}[slo]\nno_retry_storm = false\n"));
    assert_eq!(
        errors(&format!("{EXTERNAL}[slo]\nmax_crashes = -1\n")).len(),
        1,
        "only the value's own error"
    );
    parse_ok(&format!("{EMBEDDED}{slos}"));
}

/// The sink the harness starts: its process (crashes, memory) and its /health are watched;
/// it has no temp dir and calls no TTS.
#[test]
fn the_sink_measures_what_it_has() {
    parse_ok(&format!(
        "{SINK}[slo]\nmax_crashes = 0\nuptime = \">= 99%\"\nmemory_growth = \"<= 50MiB/h\"\n"
    ));
    assert_eq!(
        errors(&format!(
            "{SINK}[slo]\ntemp_dir_growth = \"<= 10MiB/h\"\nno_retry_storm = true\n[chaos]\ntts_listen = \"127.0.0.1:9100\"\n"
        )),
        vec![
            r#"6:19: temp_dir_growth needs the fleet's temp dir, and the sink keeps no temp dir: add [observe] temp_dir = "/path/to/its/temp/dir" (walked) or metrics_url = "http://HOST:PORT/metrics" (the series temp_dir_metric names, default temp_dir_bytes)"#,
            r#"7:18: no_retry_storm grades how a fleet retries its TTS, and the sink calls no TTS; drop it, or use fleet = "embedded" or an external fleet with [chaos] tts_listen"#,
        ]
    );
}

#[test]
fn a_log_rule_without_a_file_needs_log_file_unless_embedded() {
    let fault = "[[faults]]\nkind = \"temp_file_leak\"\ndir = \"/tmp/x\"\nfor = \"1m\"\ndetect = { log = \"disk full\" }\n[chaos]\nwritable_dirs = [\"/tmp/x\"]\n";
    let found = errors(&format!("{EXTERNAL}{fault}"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            r#"9:10: temp_file_leak's detect rule { log = "…" } names no file: only the embedded fleet's own output is read by default; with an external fleet add file = "/path/to/fleet.log" to the rule or set [observe] log_file"#
        ),
        "{found:?}"
    );
    // The same with fleet = "sink", whose output is not kept.
    let sink = "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n";
    let found = errors(&format!("{sink}{fault}"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(r#"with fleet = "sink" add file"#),
        "{found:?}"
    );

    // With [observe] log_file, with a file in the rule, or against the embedded fleet: fine.
    let with_log_file = parse_ok(&format!(
        "{EXTERNAL}[observe]\nlog_file = \"/var/log/fleet.log\"\n{fault}"
    ));
    assert_eq!(
        with_log_file.faults[0].detect,
        vec![DetectionRule::Log {
            pattern: "disk full".into(),
            file: None
        }]
    );
    parse_ok(&format!(
        "{EXTERNAL}[[faults]]\nkind = \"temp_file_leak\"\ndir = \"/tmp/x\"\nfor = \"1m\"\ndetect = {{ log = \"disk full\", file = \"/var/log/x.log\" }}\n[chaos]\nwritable_dirs = [\"/tmp/x\"]\n"
    ));
    parse_ok(&format!(
        "{EMBEDDED}[[faults]]\nkind = \"temp_file_leak\"\nfor = \"1m\"\ndetect = {{ log = \"disk full\" }}\n"
    ));
}

#[test]
fn health_and_metric_rules_need_their_urls_against_an_external_fleet() {
    let faults = r#"[chaos]
tts_listen = "127.0.0.1:9100"
[[faults]]
kind = "proxy"
upstream = "127.0.0.1:6379"
listen = "127.0.0.1:9101"
latency = "2s"
for = "1m"
[[faults]]
kind = "tts_429"
for = "1m"
at = "5m"
detect = [{ alert = "TtsRateLimited" }, { metric = "tts_requests_total{status=\"429\"} > 0" }]
"#;
    let found = errors(&format!("{EXTERNAL}{faults}"));
    assert_eq!(
        found,
        vec![
            r#"7:1: proxy's default detect rule health = "unhealthy" needs [observe] health_url = "http://HOST:PORT/health" against an external fleet: the harness must know where to probe"#,
            r#"17:10: tts_429's detect rule { metric = "…" } needs [observe] metrics_url = "http://HOST:PORT/metrics" against an external fleet: the harness must know where to scrape"#,
        ]
    );
    let scenario = parse_ok(&format!(
        "{EXTERNAL}[observe]\nhealth_url = \"http://127.0.0.1:8080/health\"\nmetrics_url = \"http://127.0.0.1:8080/metrics\"\n{faults}"
    ));
    assert_eq!(scenario.faults.len(), 2);
    // The embedded fleet has both by default.
    parse_ok(&format!(
        "{EMBEDDED}[[faults]]\nkind = \"tts_slow\"\ndelay = \"2s\"\nfor = \"1m\"\n"
    ));
}

/// `voxsoak plan` lists what the run will watch: the embedded fleet's own endpoints, dir
/// and output, wired by the harness, or what `[observe]` gives for an external fleet.
#[test]
fn the_plan_lists_the_observers() {
    let plan = |source: &str| {
        let text = crate::plan::render_plan(&parse_ok(source));
        let from = text.find("\nobservers\n").expect("an observers section");
        let section = &text[from + 1..];
        let to = section.find("\n\n").unwrap_or(section.len());
        section[..to].to_owned()
    };
    let leak = "[[faults]]\nkind = \"temp_file_leak\"\nfor = \"1m\"\ndetect = [{ log = \"disk full\" }, { metric = \"temp_dir_bytes > 1000\" }]\n";
    assert_eq!(
        plan(&format!("{EMBEDDED}{leak}")),
        "observers
  health             the fleet's /health every 1s, timeout 2s (wired automatically)
  metrics            the fleet's /metrics every 2s (wired automatically)
    conditions       temp_dir_bytes > 1000
  alerts             receiver on a free loopback port the fleet posts to (wired automatically)
  temp dir           the fleet's audio temp dir every 10s (wired automatically)
  memory             the fleet's process RSS, from /proc
  log                <run dir>/fleet.log (the fleet's stdout and stderr, wired automatically): /disk full/
  process            the fleet's RSS and CPU (journaled every 10s) and exits; restarted after a crash
  tts requests       the TTS stand-in the fleet is pointed at (wired automatically)"
    );
    assert!(
        plan(EMBEDDED).contains("  log                <run dir>/fleet.log (the fleet's stdout and stderr, wired automatically), not followed: no { log = … } detect rule"),
        "{}",
        plan(EMBEDDED)
    );

    let configured = format!(
        r#"{EXTERNAL}
[observe]
health_url = "http://127.0.0.1:8080/healthz"
health_interval = "3s"
metrics_url = "http://127.0.0.1:8080/metrics"
scrape_interval = "5s"
record = ["db_pool_in_use"]
alerts_listen = "127.0.0.1:9093"
temp_dir = "/var/tmp/fleet-audio"
temp_dir_interval = "30s"
log_file = "/var/log/fleet.log"
rss_metric = 'mem_bytes{{kind="rss"}}'
[[faults]]
kind = "temp_file_leak"
dir = "/var/tmp/fleet-audio"
for = "1m"
detect = [{{ log = "disk full" }}, {{ log = "cleanup", file = "/var/log/cleaner.log" }}]
"#
    );
    assert_eq!(
        plan(&configured),
        "observers
  health             GET http://127.0.0.1:8080/healthz every 3s, timeout 2s
  metrics            GET http://127.0.0.1:8080/metrics every 5s
    record           db_pool_in_use (journaled every 10s)
  alerts             receiver on http://127.0.0.1:9093/alerts (point the fleet's Alertmanager webhook there)
  temp dir           /var/tmp/fleet-audio every 30s
  memory             mem_bytes{kind=\"rss\"} from /metrics
  log                /var/log/fleet.log: /disk full/
                     /var/log/cleaner.log: /cleanup/
  process            none: crashes are not seen (set [observe] process = { pid_file = … } or { health = true })
  tts requests       none (set [chaos] tts_listen)"
    );
    assert_eq!(
        plan(EXTERNAL),
        "observers
  health             none (set [observe] health_url)
  metrics            none (set [observe] metrics_url)
  alerts             none (set [observe] alerts_listen)
  temp dir           none (set [observe] temp_dir or metrics_url)
  memory             none (set [observe] process = { pid_file = … } or metrics_url)
  log                none (no { log = … } detect rule)
  process            none: crashes are not seen (set [observe] process = { pid_file = … } or { health = true })
  tts requests       none (set [chaos] tts_listen)"
    );
    let watched = format!(
        r#"{EXTERNAL}[observe]
metrics_url = "http://127.0.0.1:8080/metrics"
temp_dir_metric = "myfleet_tmp_bytes"
process = {{ pid_file = "/run/fleet.pid" }}
[chaos]
tts_listen = "127.0.0.1:9100"
"#
    );
    assert_eq!(
        plan(&watched),
        "observers
  health             none (set [observe] health_url)
  metrics            GET http://127.0.0.1:8080/metrics every 2s
  alerts             none (set [observe] alerts_listen)
  temp dir           myfleet_tmp_bytes from /metrics (set [observe] temp_dir to walk a dir)
  memory             RSS of the process /run/fleet.pid names, from /proc
  log                none (no { log = … } detect rule)
  process            the process /run/fleet.pid names, read every 1s: RSS and CPU (journaled every 10s); its exit is a crash, a new pid a restart
  tts requests       the TTS stand-in on http://127.0.0.1:9100/v1 (point the fleet's TTS_BASE_URL there)"
    );
    let by_health = format!(
        "{EXTERNAL}[observe]\nhealth_url = \"http://127.0.0.1:8080/health\"\nprocess = {{ health = true }}\n"
    );
    assert!(
        plan(&by_health).contains("  process            by health: refusing connections after answering is a crash, answering again a restart"),
        "{}",
        plan(&by_health)
    );
    assert_eq!(
        plan(SINK),
        "observers
  health             the sink's /health every 1s, timeout 2s (wired automatically)
  metrics            the sink's /metrics every 2s (wired automatically)
  alerts             none (set [observe] alerts_listen)
  temp dir           none (the sink keeps no temp dir; set [observe] temp_dir)
  memory             the sink's process RSS, from /proc
  log                none (no { log = … } detect rule)
  process            the sink's RSS and CPU (journaled every 10s) and exits; restarted after a crash
  tts requests       none (the sink calls no TTS)"
    );
}

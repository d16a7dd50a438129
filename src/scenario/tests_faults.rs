//! `[[faults]]`, `[chaos]` and `[abort]`: parsing, defaults, errors with positions, and the
//! timeline.

use std::time::Duration;

use super::faults::*;
use super::tests::{diagnostics as errors, parse_ok};
use super::*;
use crate::contract::standin::{LlmFault, TtsFault};

pub(super) const EMBEDDED: &str = "[target]\nfleet = \"embedded\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }, { hold = \"10m\" }]\n";
pub(super) const EXTERNAL: &str = "[target]\nstream_url = \"ws://127.0.0.1:9/stream\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }, { hold = \"10m\" }]\n";

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

#[test]
fn every_seed_fault_parses_with_its_parameters_and_default_detection() {
    let scenario = parse_ok(&format!(
        r#"{EMBEDDED}
[[faults]]
kind = "tts_429"
at = "30s"
for = "90s"
retry_after = "2s"
fraction = 0.5

[[faults]]
kind = "db_pool_exhaustion"
name = "pool"
at = "3m"
for = "1m"
holders = 3
detect = {{ metric = "db_pool_in_use / db_pool_size > 0.95" }}

[[faults]]
kind = "empty_tool_params"
at = "5m"
for = "30s"
detect = [{{ alert = "ToolCallRejected" }}, {{ health = "unhealthy" }}]

[[faults]]
kind = "temp_file_leak"
at = "6m"
for = "1m"
file_size = "2MiB"
rate = "8MiB/s"
every = "2m"
every_jitter = "10s"
"#
    ));
    let faults = &scenario.faults;
    assert_eq!(faults.len(), 4);
    assert_eq!(faults[0].name, "tts_429");
    assert_eq!(faults[0].line, 6);
    assert_eq!(
        faults[0].fault,
        FaultSpec::Tts {
            fault: TtsFault::RateLimited {
                retry_after: Some(secs(2))
            },
            fraction: 0.5
        }
    );
    assert_eq!((faults[0].at, faults[0].duration), (secs(30), secs(90)));
    assert_eq!(
        faults[0].detect,
        vec![DetectionRule::Alert {
            name: "TtsRateLimited".into()
        }]
    );
    assert_eq!(faults[1].name, "pool");
    assert_eq!(
        faults[1].fault,
        FaultSpec::DbPoolExhaustion(DbPoolExhaustion {
            method: DbPoolMethod::HoldLocks { holders: 3 },
            database_url_env: None
        })
    );
    let DetectionRule::Metric(condition) = &faults[1].detect[0] else {
        panic!("{:?}", faults[1].detect)
    };
    assert_eq!(condition.threshold, 0.95);
    assert_eq!(
        faults[2].fault,
        FaultSpec::Llm {
            fault: LlmFault::EmptyToolParams,
            fraction: 1.0,
            latency: Duration::ZERO
        }
    );
    assert_eq!(faults[2].detect.len(), 2);
    assert_eq!(faults[2].detect[1], DetectionRule::Unhealthy);
    assert_eq!(
        faults[3].fault,
        FaultSpec::TempFileLeak(TempFileLeak {
            file_size: 2 << 20,
            bytes_per_second: 8 << 20,
            max_total: 1 << 30,
            dir: LeakDir::FleetTempDir,
            min_free: FreeSpaceFloor::Default,
        })
    );
    assert_eq!(
        faults[3].every,
        Some(Recurrence {
            every: secs(120),
            jitter: secs(10)
        })
    );
}

#[test]
fn wrong_parameters_are_named_with_their_position() {
    let found = errors(&format!(
        r#"{EMBEDDED}
[[faults]]
kind = "tts_429"
for = "1m"
holders = 3

[[faults]]
kind = "tts_4299"
for = "1m"

[[faults]]
kind = "proxy"
for = "1m"
upstream = "tts"

[[faults]]
kind = "db_pool_exhaustion"
for = "1m"
method = "take_slots"
"#
    ));
    assert_eq!(
        found,
        vec![
            "9:11: tts_429 does not take holders; it takes fraction, retry_after",
            "12:8: unknown fault kind \"tts_4299\"; expected one of tts_429, tts_error, tts_slow, tts_timeout, empty_tool_params, malformed_tool_params, llm_truncated_stream, llm_slow, llm_error, db_pool_exhaustion, temp_file_leak, proxy, process_stall, process_kill",
            "15:1: proxy needs at least one toxic: latency, jitter, bandwidth, stall, reset, slice_size or down",
            "23:10: method = \"take_slots\" needs PostgreSQL (SQLite has no connection slots); set [target] database_url_env, or use method = \"hold_locks\"",
        ]
    );
}

#[test]
fn missing_for_overlapping_recurrence_and_bad_detect_rules() {
    let found = errors(&format!(
        r#"{EMBEDDED}
[[faults]]
kind = "process_stall"

[[faults]]
kind = "process_kill"
for = "1m"
every = "1m"

[[faults]]
kind = "tts_error"
for = "1m"
detect = {{ metric = "db_pool_in_use >" }}

[[faults]]
kind = "tts_slow"
for = "1m"
delay = "5s"
detect = {{ log = "(unclosed" }}
"#
    ));
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].starts_with("6:1: process_stall needs for"),
        "{}",
        found[0]
    );
    assert!(
        found[1].starts_with("12:9: every must be longer than for"),
        "{}",
        found[1]
    );
    assert!(
        found[2].starts_with("17:10: detect metric \"db_pool_in_use >\": expected a number"),
        "{}",
        found[2]
    );
    assert!(
        found[3].starts_with("23:10: detect log: not a valid regex"),
        "{}",
        found[3]
    );
}

#[test]
fn external_fleets_must_say_where_stand_ins_listen_and_cannot_be_signalled() {
    let found = errors(&format!(
        r#"{EXTERNAL}
[[faults]]
kind = "tts_429"
for = "1m"

[[faults]]
kind = "process_kill"
for = "1m"

[[faults]]
kind = "temp_file_leak"
for = "1m"
"#
    ));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].contains("[chaos] tts_listen"), "{}", found[0]);
    assert!(
        found[1].contains("cannot signal an external fleet"),
        "{}",
        found[1]
    );
    assert!(
        found[2].contains("temp_file_leak needs dir"),
        "{}",
        found[2]
    );

    let scenario = parse_ok(&format!(
        r#"{EXTERNAL}
[chaos]
tts_listen = "127.0.0.1:9100"
[observe]
health_url = "http://127.0.0.1:9/health"
[[faults]]
kind = "tts_429"
for = "1m"
[[faults]]
kind = "proxy"
for = "1m"
upstream = "127.0.0.1:5432"
listen = "127.0.0.1:15432"
latency = "200ms"
jitter = "50ms"
"#
    ));
    assert_eq!(
        scenario.chaos.tts_listen,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    let FaultSpec::Proxy(proxy) = &scenario.faults[1].fault else {
        panic!()
    };
    assert_eq!(
        proxy.upstream,
        ProxyUpstream::Address("127.0.0.1:5432".into())
    );
    assert_eq!(proxy.toxics.latency, Duration::from_millis(200));

    let found = errors(&format!(
        r#"{EXTERNAL}
[chaos]
tts_listen = "0.0.0.0:9100"
[[faults]]
kind = "proxy"
for = "1m"
upstream = "db.example.com:5432"
listen = "127.0.0.1:15432"
down = true
detect = {{ alert = "DbDown" }}
"#
    ));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].contains("must be a loopback address"),
        "{}",
        found[0]
    );
    assert!(found[1].contains("not in allow_hosts"), "{}", found[1]);
}

#[test]
fn abort_conditions_parse_and_default() {
    let scenario = parse_ok(EMBEDDED);
    assert_eq!(scenario.abort, AbortConditions::default());
    let scenario = parse_ok(&format!(
        r#"{EMBEDDED}
[abort]
call_success_below = "50%"
over = "30s"
min_calls = 5
kill_switch_file = "STOP"
kill_switch_listen = "127.0.0.1:0"
"#
    ));
    assert_eq!(scenario.abort.call_success_below_pct, Some(50.0));
    assert_eq!(scenario.abort.over, secs(30));
    assert_eq!(scenario.abort.min_calls, 5);
    assert_eq!(
        scenario.abort.kill_switch_file,
        Some(std::path::PathBuf::from("STOP"))
    );
    let found = errors(&format!("{EMBEDDED}\n[abort]\ncall_success_below = 50\n"));
    assert!(
        found[0].starts_with("7:22: call_success_below: expected a percentage"),
        "{found:?}"
    );
}

#[test]
fn the_timeline_recurs_with_seeded_jitter_and_stops_at_the_end() {
    let scenario = parse_ok(&format!(
        r#"{EMBEDDED}
[[faults]]
kind = "tts_429"
at = "1m"
for = "30s"
every = "2m"
every_jitter = "20s"

[[faults]]
kind = "process_stall"
at = "9m40s"
for = "1m"

[[faults]]
kind = "process_kill"
at = "11m"
for = "1m"

[[faults]]
kind = "temp_file_leak"
at = "9m50s"
for = "1m"
"#
    ));
    let run_for = secs(600);
    let timeline = timeline(&scenario.faults, run_for, scenario.seed);
    assert_eq!(
        timeline,
        super::faults::timeline(&scenario.faults, run_for, scenario.seed)
    );
    let tts: Vec<&Occurrence> = timeline.iter().filter(|o| o.fault == 0).collect();
    assert_eq!(tts.len(), 5, "{timeline:#?}");
    for (index, occurrence) in tts.iter().enumerate() {
        let nominal = 60 + 120 * index as i64;
        let at = occurrence.at.as_secs_f64() as i64;
        assert!((at - nominal).abs() <= 20 || index == 0, "{occurrence:?}");
        assert_eq!(occurrence.until - occurrence.at, secs(30));
        assert_eq!(occurrence.number as usize, index + 1);
    }
    assert_eq!(tts[0].at, secs(60), "the first one is on time");
    let other_seed = super::faults::timeline(&scenario.faults, run_for, scenario.seed + 1);
    assert_ne!(timeline, other_seed, "jitter depends on the seed");
    // The stall is cut at the end of the run; the kill starts after it and never happens;
    // the leak would have 10 s left, too little to be confirmed, and is not planned.
    let stall = timeline.iter().find(|o| o.fault == 1).unwrap();
    assert_eq!((stall.at, stall.until), (secs(580), run_for));
    assert!(!timeline.iter().any(|o| o.fault == 2));
    assert!(!timeline.iter().any(|o| o.fault == 3));
    assert!(timeline.windows(2).all(|pair| pair[0].at <= pair[1].at));
    // A fault not yet in effect may be held on until the next injection, at most.
    for pair in timeline.windows(2) {
        assert_eq!(pair[0].hold_until, pair[1].at, "{pair:?}");
    }
    assert_eq!(timeline.last().unwrap().hold_until, run_for);
}

#[test]
fn chaos_slos_parse() {
    let scenario = parse_ok(&format!(
        "{EMBEDDED}\n[slo]\ndetect_within = \"2m18s\"\nno_retry_storm = true\n"
    ));
    assert_eq!(scenario.slo.detect_within, Some(secs(138)));
    assert!(scenario.slo.no_retry_storm);
    assert!(!parse_ok(EMBEDDED).slo.no_retry_storm);
    let found = errors(&format!("{EMBEDDED}\n[slo]\ndetect_within = \">= 1m\"\n"));
    assert!(found[0].contains("detect_within is a maximum"), "{found:?}");
}

#[test]
fn recovery_uptime_growth_and_crash_slos_parse() {
    let scenario = parse_ok(&format!(
        "{EMBEDDED}\n[slo]\nrecover_within = \"5m\"\nstable_window = \"45s\"\nuptime = \">= 99.7%\"\nmemory_growth = \"<= 50MiB/h\"\ntemp_dir_growth = \"1GiB/h\"\nmax_crashes = 0\nno_unprovoked_alerts = true\n"
    ));
    let slo = &scenario.slo;
    assert_eq!(slo.recover_within, Some(secs(300)));
    assert_eq!(slo.stable_window, secs(45));
    assert_eq!(slo.uptime_min_pct, Some(99.7));
    assert_eq!(slo.memory_growth_max_mib_h, Some(50.0));
    assert_eq!(slo.temp_dir_growth_max_mib_h, Some(1024.0));
    assert_eq!(slo.max_crashes, Some(0));
    assert!(slo.no_unprovoked_alerts);
    assert_eq!(parse_ok(EMBEDDED).slo.stable_window, DEFAULT_STABLE_WINDOW);
    let found = errors(&format!(
        "{EMBEDDED}\n[slo]\nuptime = \"<= 99%\"\nmemory_growth = \"50MiB\"\nmax_crashes = -1\nstable_window = \"soon\"\n"
    ));
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        found[0].starts_with("7:10: uptime is a minimum: write it as >= VALUE"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("8:17: memory_growth: expected a growth rate such as \"<= 50MiB/h\""),
        "{found:?}"
    );
    assert!(
        found[2].contains("max_crashes: expected a whole number"),
        "{found:?}"
    );
    assert!(
        found[3].contains("stable_window: expected a duration"),
        "{found:?}"
    );
}

#[test]
fn recover_from_defaults_by_kind_and_can_be_set() {
    let scenario = parse_ok(&format!(
        "{EMBEDDED}\n[[faults]]\nkind = \"empty_tool_params\"\nfor = \"10s\"\n[[faults]]\nkind = \"tts_429\"\nfor = \"10s\"\n[[faults]]\nkind = \"tts_error\"\nfor = \"10s\"\nrecover_from = \"injection\"\n"
    ));
    let from: Vec<RecoverFrom> = scenario.faults.iter().map(|f| f.recover_from).collect();
    assert_eq!(
        from,
        [
            RecoverFrom::Injection,
            RecoverFrom::Clear,
            RecoverFrom::Injection
        ]
    );
    let found = errors(&format!(
        "{EMBEDDED}\n[[faults]]\nkind = \"tts_429\"\nfor = \"10s\"\nrecover_from = \"later\"\n"
    ));
    assert!(
        found[0].ends_with(r#"recover_from: expected "clear" or "injection", found "later""#),
        "{found:?}"
    );
}

/// A proxy is noticed by the alert on the dependency behind it. (That each kind's default
/// detection is a signal the reference fleet really gives is checked against the fleet in
/// tests/fleet.rs: the model does not import the fleet.)
#[test]
fn a_proxy_is_detected_by_the_alert_on_the_dependency_behind_it() {
    let scenario = parse_ok(&format!(
        r#"{EMBEDDED}
[[faults]]
kind = "proxy"
upstream = "tts"
latency = "1s"
for = "10s"
[[faults]]
kind = "proxy"
upstream = "llm"
reset = true
for = "10s"
"#
    ));
    let alerts: Vec<String> = scenario
        .faults
        .iter()
        .map(|fault| fault.detect[0].to_string())
        .collect();
    assert_eq!(alerts, ["alert TtsDegraded", "alert LlmDegraded"]);
}

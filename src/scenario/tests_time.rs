//! `time_scale` (the schedule compressed) and the shaped stages (`diurnal`, `spike_to`).

use std::time::Duration;

use super::tests::{diagnostics, parse_ok};
use super::tests_faults::EMBEDDED;

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

const RECURRING: &str = r#"
[[faults]]
kind = "tts_429"
at = "10m"
for = "2m"
every = "1h"
every_jitter = "4m"
"#;

#[test]
fn time_scale_divides_the_schedule_and_nothing_else() {
    let written = parse_ok(&format!("{EMBEDDED}{RECURRING}"));
    let scaled = parse_ok(&format!("time_scale = 60\n{EMBEDDED}{RECURRING}"));
    assert_eq!(written.time_scale, 1.0);
    assert_eq!(scaled.time_scale, 60.0);
    // Load: 1s + 10m as written is 1/60 of it, to the nanosecond.
    let expected = (secs(1) + secs(600)) / 60;
    assert!(scaled.load.duration().abs_diff(expected) < Duration::from_micros(1));
    let (fault, written_fault) = (&scaled.faults[0], &written.faults[0]);
    assert_eq!(fault.at, secs(10));
    assert_eq!(fault.duration, secs(2));
    let every = fault.every.unwrap();
    assert_eq!((every.every, every.jitter), (secs(60), secs(4)));
    // Calls and SLOs keep their real-time values.
    assert_eq!(scaled.calls, written.calls);
    assert_eq!(scaled.slo, written.slo);
    assert_eq!(fault.fault, written_fault.fault);
    assert_eq!(scaled.real_time(secs(3600)), secs(60));
}

#[test]
fn with_time_scale_replaces_the_files_scale_rather_than_compounding_it() {
    let from_file = parse_ok(&format!("time_scale = 60\n{EMBEDDED}{RECURRING}"));
    let replaced = from_file.clone().with_time_scale(30.0);
    let direct = parse_ok(&format!("time_scale = 30\n{EMBEDDED}{RECURRING}"));
    assert_eq!(replaced.time_scale, 30.0);
    assert_eq!(replaced.faults[0].at, direct.faults[0].at);
    assert!(replaced.load.duration().abs_diff(direct.load.duration()) < Duration::from_micros(1));
    let back = replaced.with_time_scale(1.0);
    assert_eq!(back.faults[0].at, secs(600));
}

#[test]
fn a_time_scale_outside_one_to_the_maximum_is_an_error_with_its_position() {
    for (value, shown) in [("0.5", "0.5"), ("0", "0"), ("20000", "20000"), ("-3", "-3")] {
        let found = diagnostics(&format!("time_scale = {value}\n{EMBEDDED}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("1:14: time_scale must be from 1 (real time) to 10000")
                && found[0].ends_with(&format!("found {shown}")),
            "{found:?}"
        );
    }
    let found = diagnostics(&format!("time_scale = \"fast\"\n{EMBEDDED}"));
    assert!(found[0].starts_with("1:14:"), "{found:?}");
}

#[test]
fn a_fault_compressed_under_two_seconds_is_warned_about_with_its_position() {
    let source = format!("time_scale = 100\n{EMBEDDED}{RECURRING}");
    let scenario = parse_ok(&source);
    let warnings: Vec<String> = scenario
        .warnings(scenario.load.duration())
        .lines()
        .filter(|warning| warning.contains("time_scale"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(":7:1: warning: at time_scale 100 fault \"tts_429\" lasts 1.2s in real time (2m as written)"),
        "{warnings:?}"
    );
    let gentle = parse_ok(&format!("time_scale = 60\n{EMBEDDED}{RECURRING}"));
    let warnings = gentle.warnings(gentle.load.duration());
    assert!(
        !warnings
            .lines()
            .any(|warning| warning.contains("time_scale"))
    );
}

#[test]
fn a_diurnal_stage_expands_into_the_days_ramps() {
    let scenario = parse_ok(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{ diurnal = \"48h\", base = 20 }]\n",
    );
    let load = &scenario.load;
    assert_eq!(load.duration(), secs(48 * 3600));
    assert_eq!(
        load.peak_concurrency(),
        60,
        "three times the base by default"
    );
    assert_eq!(load.concurrency_at(secs(3 * 3600)), 5, "a quarter at night");
    assert_eq!(
        load.concurrency_at(secs(33 * 3600)),
        60,
        "the second morning"
    );

    let explicit = parse_ok(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{ diurnal = \"24h\", base = 10, peak = 15, trough = 2 }]\n",
    );
    assert_eq!(explicit.load.concurrency_at(secs(9 * 3600)), 15);
    assert_eq!(explicit.load.concurrency_at(secs(2 * 3600)), 2);
}

#[test]
fn a_spike_stage_jumps_from_the_level_before_it_and_back() {
    let scenario = parse_ok(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 10, over = \"10s\" }, { spike_to = 30, for = \"1m\" }, { hold = \"10s\" }]\n",
    );
    let load = &scenario.load;
    assert_eq!(load.duration(), secs(80));
    assert_eq!(load.concurrency_at(secs(40)), 30);
    assert_eq!(
        load.concurrency_at(secs(75)),
        10,
        "back to the level before"
    );
}

#[test]
fn shaped_stages_compress_with_the_schedule() {
    let scenario = parse_ok(
        "time_scale = 96\n[target]\nfleet = \"sink\"\n[load]\nstages = [{ diurnal = \"24h\", base = 8 }]\n",
    );
    assert_eq!(scenario.load.duration(), secs(15 * 60));
    // 09:00 as written is 5m37.5s into the compressed day: the peak.
    assert_eq!(
        scenario.load.concurrency_at(Duration::from_millis(337_500)),
        24
    );
}

#[test]
fn a_stage_that_mixes_shapes_or_misses_a_key_says_which_and_where() {
    let load = |stage: &str| format!("[target]\nfleet = \"sink\"\n[load]\nstages = [{stage}]\n");
    let found = diagnostics(&load(r#"{ diurnal = "24h", base = 5, hold = "1m" }"#));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("4:47: hold cannot be combined with diurnal; a stage is"),
        "{found:?}"
    );

    let found = diagnostics(&load(r#"{ spike_to = 5, for = "1m", base = 3 }"#));
    assert!(
        found[0].starts_with("4:46: base cannot be combined with spike_to"),
        "{found:?}"
    );

    let found = diagnostics(&load(r#"{ diurnal = "24h" }"#));
    assert!(
        found[0].starts_with("4:11: a diurnal stage needs diurnal = \"D\""),
        "{found:?}"
    );

    let found = diagnostics(&load(r#"{ spike_to = 5 }"#));
    assert!(
        found[0].starts_with("4:11: a spike stage needs spike_to = N"),
        "{found:?}"
    );

    let found = diagnostics(&load(r#"{ diurnal = "24h", base = 10, peak = 5 }"#));
    assert!(
        found[0].starts_with("4:48: peak must be at least base (10), found 5"),
        "{found:?}"
    );

    let found = diagnostics(&load(r#"{ diurnal = "24h", base = 10, trough = 11 }"#));
    assert!(
        found[0].starts_with("4:50: trough must be at most base (10), found 11"),
        "{found:?}"
    );

    let found = diagnostics(&load(r#"{ diurnal = "0s", base = 0 }"#));
    assert_eq!(found.len(), 2, "both problems at once: {found:?}");
}

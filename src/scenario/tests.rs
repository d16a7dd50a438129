use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const SINK: &str = "[target]\nfleet = \"sink\"\n";
const STAGES: &str = "[load]\nstages = [{ ramp_to = 2, over = \"1s\" }]\n";

pub(super) fn parse_ok(source: &str) -> Scenario {
    parse(source, Path::new("/nowhere/test.toml")).unwrap_or_else(|error| panic!("{error}"))
}

/// Every diagnostic as `line:column: message`.
pub(super) fn diagnostics(source: &str) -> Vec<String> {
    match parse(source, Path::new("/nowhere/test.toml")) {
        Ok(_) => panic!("expected errors for:\n{source}"),
        Err(ScenarioError::Invalid { diagnostics, .. }) => diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
        Err(error) => panic!("unexpected error {error:?}"),
    }
}

fn single(source: &str) -> String {
    let found = diagnostics(source);
    assert_eq!(found.len(), 1, "expected one diagnostic, got {found:#?}");
    found.into_iter().next().unwrap()
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn millis(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

// ---- valid files ------------------------------------------------------------------------

const FULL_SINK: &str = r#"name = "full"
description = "everything"
seed = 7

[target]
fleet = "sink"
reply_delay = "650ms"
reply_length = "1s"

[load]
stages = [
  { ramp_to = 50, over = "5s" },
  { hold = "20s" },
  { ramp_to = 0, over = "5s" },
]

[calls]
connect_timeout = "3s"
turn_timeout = "8s"
reply_silence = "1.2s"
wait_for_greeting = true
fleet_may_hang_up = "after_last_turn"
max_call_duration = "2m18s"
fixtures = ["../fixtures/*.wav", "../fixtures/greeting.wav"]
synthetic = { count = 4, min = "500ms", max = "1s" }
from = "+15550001"
to = "+15550002"

[[scripts]]
name = "conversation"
weight = 3
turns = { min = 2, max = 4 }

[[scripts]]
name = "menu"
steps = [
  { say = "order-status" },
  { dtmf = "12a#" },
  { pause = "2s" },
  { say = "random", listen = false },
  { say = "synthetic" },
  { hangup = true },
]

[slo]
call_success = ">= 99.5%"
response_p95 = "<= 1500ms"
response_p99 = "3s"
first_audio_p95 = "<= 2s"
pacing_jitter_p99 = "<= 5ms"
"#;

/// A temp tree `scenarios/` + `fixtures/{greeting,order-status}.wav` (+ a .txt).
fn fixture_tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    fs::create_dir(root.join("scenarios")).unwrap();
    fs::create_dir(root.join("fixtures")).unwrap();
    for name in ["greeting.wav", "order-status.wav"] {
        write_wav(&root.join("fixtures").join(name), millis(300));
    }
    fs::write(root.join("fixtures").join("notes.txt"), b"not audio").unwrap();
    let fixtures = root.join("fixtures");
    (dir, root.join("scenarios"), fixtures)
}

/// A WAV file of `duration` of speech-like audio, 8 kHz mono 16-bit.
pub(super) fn write_wav(path: &Path, duration: Duration) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: crate::audio::SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for sample in crate::audio::synth::speech_like(1, duration) {
        writer.write_sample(sample).unwrap();
    }
    writer.finalize().unwrap();
}

/// The fixture validation makes of the WAV file at `path`.
fn fixture(path: PathBuf) -> Fixture {
    let samples = crate::audio::wav::load_wav(&path).unwrap();
    Fixture {
        path,
        samples: samples.into(),
    }
}

#[test]
fn full_sink_file_with_stages() {
    let (_dir, scenarios, fixtures) = fixture_tree();
    let path = scenarios.join("full.toml");
    fs::write(&path, FULL_SINK).unwrap();
    let scenario = load(&path).unwrap_or_else(|error| panic!("{error}"));
    let expected = Scenario {
        name: "full".into(),
        description: Some("everything".into()),
        path: path.clone(),
        includes: Vec::new(),
        composed: None,
        seed: 7,
        target: Target::Sink(SinkOptions {
            reply_delay: millis(650),
            reply_length: secs(1),
        }),
        allow_hosts: vec!["127.0.0.1".into(), "localhost".into(), "::1".into()],
        load: Load::Stages(vec![
            Stage {
                to: 50,
                duration: secs(5),
            },
            Stage {
                to: 50,
                duration: secs(20),
            },
            Stage {
                to: 0,
                duration: secs(5),
            },
        ]),
        spikes: Vec::new(),
        calls: CallSettings {
            connect_timeout: secs(3),
            turn_timeout: secs(8),
            reply_silence: millis(1200),
            max_call_duration: secs(138),
            wait_for_greeting: true,
            fleet_may_hang_up: HangUpPolicy::AfterLastTurn,
            fixtures: vec![
                fixture(fixtures.join("greeting.wav")),
                fixture(fixtures.join("order-status.wav")),
            ],
            synthetic: SyntheticPool {
                count: 4,
                min: millis(500),
                max: secs(1),
            },
            from: "+15550001".into(),
            to: "+15550002".into(),
        },
        scripts: vec![
            CallScript {
                name: "conversation".into(),
                weight: 3,
                body: ScriptBody::Turns { min: 2, max: 4 },
            },
            CallScript {
                name: "menu".into(),
                weight: 1,
                body: ScriptBody::Steps(vec![
                    Step::Say {
                        utterance: UtteranceRef::Fixture(1),
                        listen: true,
                    },
                    Step::Dtmf {
                        digits: "12A#".into(),
                        listen: true,
                    },
                    Step::Pause(secs(2)),
                    Step::Say {
                        utterance: UtteranceRef::Random,
                        listen: false,
                    },
                    Step::Say {
                        utterance: UtteranceRef::Synthetic,
                        listen: true,
                    },
                    Step::Hangup,
                ]),
            },
        ],
        slo: Slos {
            call_success_min_pct: Some(99.5),
            response_p95_max: Some(millis(1500)),
            response_p99_max: Some(secs(3)),
            first_audio_p95_max: Some(secs(2)),
            pacing_jitter_p99_max: Some(millis(5)),
            detect_within: None,
            no_retry_storm: false,
            ..Slos::default()
        },
        faults: Vec::new(),
        chaos: ChaosSettings {
            confirm_within: super::faults::DEFAULT_CONFIRM_WITHIN,
            ..ChaosSettings::default()
        },
        abort: AbortConditions::default(),
        observe: ObserveSettings::default(),
        time_scale: 1.0,
        report_every: DEFAULT_REPORT_EVERY,
        metrics_listen: None,
    };
    assert_eq!(scenario, expected);
    assert_eq!(scenario.load.duration(), secs(30));
    assert_eq!(scenario.load.peak_concurrency(), 50);
}

#[test]
fn full_external_file_with_arrival_rate() {
    let source = r#"
[target]
stream_url = "ws://Voice.Example.com/stream"
auth_token_env = "TWILIO_AUTH_TOKEN"
custom_parameters = { tenant = "acme" }
allow_hosts = ["voice.example.com"]

[load]
calls_per_minute = 120
duration = "5m"
arrivals = "poisson"
max_concurrent = 1000
"#;
    let scenario = parse(source, Path::new("scenarios/open-rate.toml")).unwrap();
    assert_eq!(scenario.name, "open-rate");
    assert_eq!(scenario.seed, 1);
    assert_eq!(
        scenario.target,
        Target::External(ExternalTarget {
            endpoint: Endpoint::Stream("ws://voice.example.com/stream".parse().unwrap()),
            auth_token_env: Some("TWILIO_AUTH_TOKEN".into()),
            custom_parameters: BTreeMap::from([("tenant".into(), "acme".into())]),
        })
    );
    assert_eq!(
        scenario.load,
        Load::Arrival(ArrivalRate {
            calls_per_minute: 120.0,
            duration: secs(300),
            pattern: ArrivalPattern::Poisson,
            max_concurrent: 1000,
        })
    );
    assert_eq!(scenario.load.peak_concurrency(), 1000);
    assert_eq!(scenario.load.concurrency_at(secs(10)), 0);
    // Defaults everywhere else.
    assert_eq!(scenario.calls.connect_timeout, secs(5));
    assert_eq!(scenario.calls.turn_timeout, secs(10));
    assert_eq!(scenario.calls.reply_silence, millis(1500));
    assert_eq!(scenario.calls.max_call_duration, secs(600));
    assert_eq!(scenario.calls.fleet_may_hang_up, HangUpPolicy::Never);
    assert!(scenario.calls.fixtures.is_empty());
    assert_eq!(
        scenario.calls.synthetic,
        SyntheticPool {
            count: 8,
            min: secs(1),
            max: millis(2500)
        }
    );
    assert_eq!(
        scenario.scripts,
        vec![CallScript {
            name: "conversation".into(),
            weight: 1,
            body: ScriptBody::Turns { min: 2, max: 3 },
        }]
    );
    assert_eq!(scenario.slo, Slos::default());
    assert_eq!(scenario.slo.call_success_min_pct, Some(99.0));
}

#[test]
fn webhook_target_and_uniform_default() {
    let source = "[target]\nwebhook_url = \"http://localhost:8080/voice\"\n\
                  [load]\ncalls_per_minute = 60.5\nduration = \"1m\"\n";
    let scenario = parse_ok(source);
    let Target::External(external) = &scenario.target else {
        panic!("external expected")
    };
    assert_eq!(
        external.endpoint,
        Endpoint::Webhook("http://localhost:8080/voice".parse().unwrap())
    );
    let Load::Arrival(rate) = &scenario.load else {
        panic!("arrival expected")
    };
    assert_eq!(rate.pattern, ArrivalPattern::Uniform);
    assert_eq!(rate.max_concurrent, 10_000);
}

#[test]
fn durations_parse_with_units() {
    for (text, expected) in [
        ("300ms", millis(300)),
        ("5s", secs(5)),
        ("1.5s", millis(1500)),
        ("2m18s", secs(138)),
        ("1h30m", secs(5400)),
        ("72h", secs(72 * 3600)),
    ] {
        let source = format!("{SINK}[load]\nstages = [{{ ramp_to = 1, over = \"{text}\" }}]\n");
        assert_eq!(parse_ok(&source).load.duration(), expected, "{text}");
        assert_eq!(
            validate::parse_duration(&crate::units::format_duration(expected)),
            Some(expected)
        );
    }
}

#[test]
fn host_allowed_ignores_case_and_brackets() {
    let scenario = parse_ok(&format!("{SINK}{STAGES}"));
    assert!(scenario.host_allowed("LOCALHOST"));
    assert!(scenario.host_allowed("[::1]"));
    assert!(scenario.host_allowed("::1"));
    assert!(scenario.host_allowed("127.0.0.1"));
    assert!(!scenario.host_allowed("example.com"));
    let source = "[target]\nstream_url = \"ws://[::1]:9000/s\"\n\
                  allow_hosts = [\"[::1]\"]\n[load]\ncalls_per_minute = 1\nduration = \"1s\"\n";
    assert!(parse_ok(source).host_allowed("::1"));
}

/// `metrics_listen`: the harness's metrics page is on loopback unless allow_hosts names the
/// address it listens on; 0.0.0.0 (every interface) only when named too.
#[test]
fn metrics_listen_is_loopback_unless_allow_hosts_names_it() {
    let scenario = parse_ok(&format!("metrics_listen = \"127.0.0.1:0\"\n{SINK}{STAGES}"));
    assert_eq!(
        scenario.metrics_listen,
        Some("127.0.0.1:0".parse().unwrap())
    );
    let ipv6 = parse_ok(&format!("metrics_listen = \"[::1]:9464\"\n{SINK}{STAGES}"));
    assert_eq!(ipv6.metrics_listen, Some("[::1]:9464".parse().unwrap()));
    assert_eq!(parse_ok(&format!("{SINK}{STAGES}")).metrics_listen, None);
    assert_eq!(
        single(&format!(
            "metrics_listen = \"0.0.0.0:9464\"\n{SINK}{STAGES}"
        )),
        "1:18: metrics_listen must be a loopback address (127.0.0.1:PORT or [::1]:PORT) unless [target] allow_hosts names 0.0.0.0; add it there to serve the metrics beyond this machine"
    );
    assert_eq!(
        single(&format!(
            "metrics_listen = \"localhost:9464\"\n{SINK}{STAGES}"
        )),
        r#"1:18: metrics_listen: expected "127.0.0.1:PORT", found "localhost:9464""#
    );
    let named = "metrics_listen = \"10.1.2.3:9464\"\n[target]\nfleet = \"sink\"\n\
                 allow_hosts = [\"127.0.0.1\", \"10.1.2.3\"]\n";
    let scenario = parse_ok(&format!("{named}{STAGES}"));
    assert_eq!(
        scenario.metrics_listen,
        Some("10.1.2.3:9464".parse().unwrap())
    );
    assert!(listen_allowed(
        &scenario.allow_hosts,
        "10.1.2.3:1".parse().unwrap()
    ));
    assert!(!listen_allowed(
        &scenario.allow_hosts,
        "10.1.2.4:1".parse().unwrap()
    ));
    assert!(!listen_allowed(
        &scenario.allow_hosts,
        "0.0.0.0:1".parse().unwrap()
    ));
}

// ---- errors: positions and messages -----------------------------------------------------

#[test]
fn not_toml() {
    assert_eq!(
        single("[target]\nfleet = sink\n"),
        "2:9: string values must be quoted, expected literal string"
    );
    let found = single("name = \"open\n[target]\n");
    assert!(found.starts_with("1:13: "), "{found}");
}

#[test]
fn unknown_keys_top_level_and_nested() {
    let found = single(&format!("seed = 3\ncolour = \"red\"\n{SINK}{STAGES}"));
    assert!(
        found.starts_with("2:1: unknown field `colour`, expected one of `name`"),
        "{found}"
    );
    let source =
        format!("{SINK}[load]\nstages = [\n  {{ ramp_to = 2, over = \"1s\", jitter = 3 }},\n]\n");
    assert_eq!(
        single(&source),
        "5:31: unknown field `jitter`, expected one of `ramp_to`, `over`, `hold`, `diurnal`, `base`, `peak`, `trough`, `spike_to`, `for`"
    );
    let source =
        format!("{SINK}{STAGES}[[scripts]]\nname = \"a\"\nturns = {{ min = 1, most = 2 }}\n");
    assert_eq!(
        single(&source),
        "7:20: unknown field `most`, expected `min` or `max`"
    );
    let source = format!("{SINK}{STAGES}[calls]\nsynthetic = {{ count = 2, lenght = \"1s\" }}\n");
    let found = single(&source);
    assert!(found.starts_with("6:26: unknown field `lenght`"), "{found}");
}

#[test]
fn negative_duration() {
    let source = format!("{SINK}[load]\nstages = [\n  {{ ramp_to = 5, over = \"-5s\" }},\n]\n");
    assert_eq!(
        single(&source),
        r#"5:25: expected a duration such as "30s" or "1m30s", found "-5s""#
    );
}

#[test]
fn fleet_may_hang_up_takes_three_policies() {
    for (policy, name) in HangUpPolicy::ALL {
        let source = format!("{SINK}{STAGES}[calls]\nfleet_may_hang_up = \"{name}\"\n");
        assert_eq!(parse_ok(&source).calls.fleet_may_hang_up, policy);
        assert_eq!(policy.name(), name);
    }
    let source = format!("{SINK}{STAGES}[calls]\nfleet_may_hang_up = \"sometimes\"\n");
    assert_eq!(
        single(&source),
        r#"6:21: unknown fleet_may_hang_up "sometimes"; expected "never", "after_last_turn" or "any""#
    );
}

#[test]
fn integer_or_unitless_where_duration_expected() {
    let source = format!("{SINK}{STAGES}[calls]\nturn_timeout = 10\nreply_silence = \"1.5\"\n");
    assert_eq!(
        diagnostics(&source),
        vec![
            r#"6:16: expected a duration such as "30s" or "1m30s", found 10"#,
            r#"7:17: expected a duration such as "30s" or "1m30s", found "1.5""#,
        ]
    );
}

#[test]
fn zero_durations_where_they_make_no_sense() {
    let source = format!(
        "{SINK}[load]\nstages = [{{ ramp_to = 1, over = \"0s\" }}, {{ hold = \"0ms\" }}]\n"
    );
    assert_eq!(
        diagnostics(&source),
        vec![
            r#"4:33: over must be longer than zero, found "0s""#,
            r#"4:50: hold must be longer than zero, found "0ms""#,
        ]
    );
}

#[test]
fn both_load_models() {
    let source = format!(
        "{SINK}[load]\nstages = [{{ ramp_to = 2, over = \"1s\" }}]\ncalls_per_minute = 60\n"
    );
    let found = single(&source);
    assert!(
        found.starts_with("5:20: calls_per_minute cannot be combined with stages"),
        "{found}"
    );
}

#[test]
fn neither_load_model() {
    let found = single(&format!("{SINK}[load]\nmax_concurrent = 5\n"));
    assert!(found.starts_with("3:1: [load] needs stages"), "{found}");
}

#[test]
fn open_model_needs_duration_and_rejects_stage_keys() {
    let found = single(&format!("{SINK}[load]\ncalls_per_minute = 60\n"));
    assert!(
        found.starts_with("4:20: calls_per_minute needs duration"),
        "{found}"
    );
    let found = single(&format!("{SINK}{STAGES}duration = \"5m\"\n"));
    assert!(
        found.starts_with("5:12: duration only applies to calls_per_minute"),
        "{found}"
    );
    assert_eq!(
        diagnostics(&format!(
            "{SINK}[load]\ncalls_per_minute = 0\nduration = \"1m\"\narrivals = \"burst\"\n"
        )),
        vec![
            "4:20: calls_per_minute must be between 0.001 and 6000000, found 0",
            r#"6:12: unknown arrivals "burst"; expected "uniform" or "poisson""#,
        ]
    );
}

#[test]
fn missing_tables() {
    let found = diagnostics("seed = 3\n");
    assert_eq!(found.len(), 2);
    assert!(
        found[0].starts_with("1:1: missing [target] table"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("1:1: missing [load] table"),
        "{found:?}"
    );
}

#[test]
fn bad_url_scheme() {
    let source = format!("[target]\nstream_url = \"http://127.0.0.1:8080/stream\"\n{STAGES}");
    assert_eq!(
        single(&source),
        r#"2:14: stream_url must be a ws:// or wss:// URL, found "http://127.0.0.1:8080/stream""#
    );
    let source = format!("[target]\nwebhook_url = \"ws://127.0.0.1/voice\"\n{STAGES}");
    assert!(single(&source).starts_with("2:15: webhook_url must be a http:// or https:// URL"));
    let source = format!("[target]\nstream_url = \"not a url\"\n{STAGES}");
    assert!(single(&source).starts_with("2:14: stream_url is not a valid URL"));
}

#[test]
fn tls_targets_are_refused_until_supported() {
    let source = format!("[target]\nstream_url = \"wss://127.0.0.1/s\"\n{STAGES}");
    assert!(single(&source).starts_with("2:14: stream_url: TLS (wss://) is not supported"));
    let source = format!("[target]\nwebhook_url = \"https://127.0.0.1/voice\"\n{STAGES}");
    assert!(single(&source).starts_with("2:15: webhook_url: TLS (https://) is not supported"));
}

#[test]
fn host_not_allowed() {
    let source = format!("[target]\nwebhook_url = \"http://fleet.example.com/voice\"\n{STAGES}");
    assert_eq!(
        single(&source),
        r#"2:15: host "fleet.example.com" is not in allow_hosts (loopback only by default); add it to [target] allow_hosts to allow it"#
    );
}

#[test]
fn stream_and_webhook_are_exclusive() {
    let source = format!(
        "[target]\nstream_url = \"ws://localhost/s\"\nwebhook_url = \"http://localhost/v\"\n{STAGES}"
    );
    assert_eq!(
        single(&source),
        "3:15: stream_url and webhook_url are mutually exclusive; give one"
    );
    let source = format!("[target]\nfleet = \"sink\"\nstream_url = \"ws://localhost/s\"\n{STAGES}");
    assert!(single(&source).starts_with("3:14: stream_url cannot be combined with fleet"));
}

#[test]
fn unknown_fleet() {
    let source = format!("[target]\nfleet = \"cloud\"\n{STAGES}");
    assert_eq!(
        single(&source),
        r#"2:9: unknown fleet "cloud"; expected "sink" or "embedded""#
    );
}

// ---- the embedded reference fleet -------------------------------------------------------

const FULL_EMBEDDED: &str = r#"[target]
fleet = "embedded"
bugs = ["no-backoff", "silent-stall"]
database_url_env = "VOXSOAK_PG_URL"
db_pool_size = 4
orders = 20000
workers = 3
stall_after = "2s"
stall_after_calls = 5
memory_limit = "512MiB"
temp_dir_budget = "64MiB"
allow_hosts = ["127.0.0.1"]

[load]
stages = [{ ramp_to = 2, over = "1s" }]
"#;

#[test]
fn embedded_fleet_with_every_key() {
    let scenario = parse_ok(FULL_EMBEDDED);
    assert_eq!(
        scenario.target,
        Target::Embedded(EmbeddedFleet {
            bugs: vec![
                crate::contract::fleet::Bug::NoBackoff,
                crate::contract::fleet::Bug::SilentStall
            ],
            database_url_env: Some("VOXSOAK_PG_URL".into()),
            db_pool_size: 4,
            orders: 20_000,
            workers: 3,
            stall_after: secs(2),
            stall_after_calls: 5,
            memory_limit: Some(512 << 20),
            temp_dir_budget: 64 << 20,
        })
    );
    assert_eq!(scenario.allow_hosts, ["127.0.0.1"]);
}

#[test]
fn embedded_fleet_defaults() {
    let scenario = parse_ok(&format!("[target]\nfleet = \"embedded\"\n{STAGES}"));
    assert_eq!(scenario.target, Target::Embedded(EmbeddedFleet::default()));
    let fleet = crate::contract::fleet::FleetOptions::default();
    let Target::Embedded(embedded) = scenario.target else {
        unreachable!()
    };
    assert!(embedded.bugs.is_empty());
    assert_eq!(embedded.database_url_env, None);
    assert_eq!(embedded.orders, fleet.orders);
    assert_eq!(embedded.workers, fleet.workers);
    assert_eq!(embedded.memory_limit, None);
    assert_eq!(embedded.temp_dir_budget, fleet.temp_dir_budget);
    // The bounds themselves are accepted; an empty bug list is the fixed fleet.
    parse_ok(&format!(
        "[target]\nfleet = \"embedded\"\nbugs = []\ndb_pool_size = 1000\norders = 50000000\n\
         workers = 1\nstall_after_calls = 1\nmemory_limit = \"16MiB\"\ntemp_dir_budget = \"1GB\"\n{STAGES}"
    ));
}

#[test]
fn embedded_fleet_bad_values_point_at_the_value() {
    let all_bugs = "no-backoff, unvalidated-tool-params, temp-leak, long-transactions, no-healer, silent-stall";
    let cases: Vec<(&str, String)> = vec![
        (
            r#"bugs = ["no-backof"]"#,
            format!(r#"3:9: unknown bug "no-backof"; expected one of {all_bugs}"#),
        ),
        (
            r#"bugs = ["temp-leak", "temp-leak"]"#,
            r#"3:22: bug "temp-leak" is listed twice; list each bug once"#.into(),
        ),
        (
            "db_pool_size = 0",
            "3:16: db_pool_size must be at least 1, found 0".into(),
        ),
        (
            "db_pool_size = 1001",
            "3:16: db_pool_size must be at most 1000, found 1001".into(),
        ),
        (
            "orders = 0",
            "3:10: orders must be at least 1, found 0".into(),
        ),
        (
            "orders = 50000001",
            "3:10: orders must be at most 50000000, found 50000001".into(),
        ),
        (
            "workers = 0",
            "3:11: workers must be at least 1, found 0".into(),
        ),
        (
            "workers = 1001",
            "3:11: workers must be at most 1000, found 1001".into(),
        ),
        (
            r#"stall_after = "0s""#,
            r#"3:15: stall_after must be longer than zero, found "0s""#.into(),
        ),
        (
            "stall_after = 5",
            r#"3:15: expected a duration such as "30s" or "1m30s", found 5"#.into(),
        ),
        (
            "stall_after_calls = 0",
            "3:21: stall_after_calls must be at least 1, found 0".into(),
        ),
        (
            r#"memory_limit = "1MiB""#,
            r#"3:16: memory_limit must be at least 16MiB (the fleet needs that much to start), found "1MiB""#.into(),
        ),
        (
            "memory_limit = 536870912",
            r#"3:16: memory_limit: expected a size such as "512MiB" or "1GiB", found 536870912"#.into(),
        ),
        (
            r#"memory_limit = "lots""#,
            r#"3:16: memory_limit: expected a size such as "512MiB" or "1GiB", found "lots""#.into(),
        ),
        (
            r#"temp_dir_budget = "5 parsecs""#,
            r#"3:19: temp_dir_budget: expected a size such as "512MiB" or "1GiB", found "5 parsecs""#.into(),
        ),
    ];
    for (line, expected) in cases {
        let source = format!("[target]\nfleet = \"embedded\"\n{line}\n{STAGES}");
        assert_eq!(single(&source), expected, "for {line}");
    }
}

#[test]
fn database_url_env_never_echoes_the_url() {
    for value in [
        "postgres://voxsoak:hunter2@db.internal:5432/fleet",
        "hunter2 hunter2",
        "0123456789abcdef0123456789abcdef",
    ] {
        let source =
            format!("[target]\nfleet = \"embedded\"\ndatabase_url_env = \"{value}\"\n{STAGES}");
        let found = single(&source);
        assert_eq!(
            found,
            "3:20: database_url_env is the NAME of the environment variable holding the PostgreSQL URL (such as DATABASE_URL), not the URL itself"
        );
        assert!(!found.contains("hunter2") && !found.contains("0123456789"));
    }
}

#[test]
fn embedded_only_keys_on_other_targets() {
    let source = format!("{SINK}bugs = [\"no-backoff\"]\nmemory_limit = \"1GiB\"\n{STAGES}");
    assert_eq!(
        diagnostics(&source),
        [
            r#"3:8: bugs only applies to fleet = "embedded" (the reference fleet the harness starts), not to fleet = "sink""#,
            r#"4:16: memory_limit only applies to fleet = "embedded" (the reference fleet the harness starts), not to fleet = "sink""#,
        ]
    );
    let source = format!(
        "[target]\nstream_url = \"ws://127.0.0.1/s\"\norders = 5\ndatabase_url_env = \"PG\"\n{STAGES}"
    );
    assert_eq!(
        diagnostics(&source),
        [
            r#"3:10: orders only applies to fleet = "embedded" (the reference fleet the harness starts), not to an external target (stream_url or webhook_url)"#,
            r#"4:20: database_url_env only applies to fleet = "embedded" (the reference fleet the harness starts), not to an external target (stream_url or webhook_url)"#,
        ]
    );
    // ...and the sink's and external targets' keys are refused on the embedded fleet.
    let source = format!(
        "[target]\nfleet = \"embedded\"\nreply_delay = \"600ms\"\nauth_token_env = \"T\"\n{STAGES}"
    );
    assert_eq!(
        diagnostics(&source),
        [
            r#"3:15: reply_delay only applies to fleet = "sink"; the reference fleet replies at its own pace"#,
            r#"4:18: auth_token_env only applies to an external target (stream_url or webhook_url), not to fleet = "embedded""#,
        ]
    );
}

#[test]
fn sink_options_with_external_target() {
    let source =
        format!("[target]\nstream_url = \"ws://127.0.0.1/s\"\nreply_delay = \"300ms\"\n{STAGES}");
    assert_eq!(
        single(&source),
        r#"3:15: reply_delay only applies to fleet = "sink"; an external fleet replies at its own pace"#
    );
    let source = format!("{SINK}auth_token_env = \"TOKEN\"\n{STAGES}");
    assert!(single(&source).starts_with("3:18: auth_token_env only applies to an external target"));
}

#[test]
fn auth_token_env_never_echoes_a_secret() {
    let secret = "0123456789abcdef0123456789abcdef";
    let source = format!(
        "[target]\nstream_url = \"ws://127.0.0.1/s\"\nauth_token_env = \"{secret}\"\n{STAGES}"
    );
    let found = single(&source);
    assert!(
        found.starts_with("3:18: auth_token_env is the NAME"),
        "{found}"
    );
    assert!(!found.contains(secret));
}

#[test]
fn fixture_glob_that_matches_nothing() {
    let (_dir, scenarios, _fixtures) = fixture_tree();
    let source = format!(
        "{SINK}{STAGES}[calls]\nfixtures = [\"../fixtures/*.wav\", \"../missing/*.wav\"]\n"
    );
    let error = parse(&source, &scenarios.join("x.toml")).unwrap_err();
    let ScenarioError::Invalid { diagnostics, .. } = error else {
        panic!("invalid expected")
    };
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!((diagnostics[0].line, diagnostics[0].column), (6, 34));
    assert!(
        diagnostics[0]
            .message
            .starts_with(r#"fixture glob "../missing/*.wav" matches no files"#),
        "{}",
        diagnostics[0].message
    );
    let source = format!("{SINK}{STAGES}[calls]\nfixtures = [\"../fixtures/nope.wav\"]\n");
    let error = parse(&source, &scenarios.join("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(r#":6:13: fixture "../fixtures/nope.wav" does not exist"#),
        "{error}"
    );
}

#[test]
fn unknown_fixture_stem_in_say() {
    let (_dir, scenarios, _fixtures) = fixture_tree();
    let source = format!(
        "{SINK}{STAGES}[calls]\nfixtures = [\"../fixtures/*.wav\"]\n\
         [[scripts]]\nname = \"menu\"\nsteps = [{{ say = \"order-staus\" }}]\n"
    );
    let error = parse(&source, &scenarios.join("x.toml")).unwrap_err();
    let ScenarioError::Invalid { diagnostics, .. } = error else {
        panic!("invalid expected")
    };
    assert_eq!(diagnostics.len(), 1);
    assert_eq!((diagnostics[0].line, diagnostics[0].column), (9, 18));
    assert_eq!(
        diagnostics[0].message,
        r#"no fixture named "order-staus"; fixtures (by file name without extension): greeting, order-status; or use "random" / "synthetic""#
    );
    // Without fixtures at all the message says so.
    let source =
        format!("{SINK}{STAGES}[[scripts]]\nname = \"menu\"\nsteps = [{{ say = \"hello\" }}]\n");
    assert!(
        single(&source).starts_with(r#"7:18: no fixture named "hello": [calls] fixtures is empty"#)
    );
}

#[test]
fn bad_dtmf_digit_points_at_the_digit() {
    let source =
        format!("{SINK}{STAGES}[[scripts]]\nname = \"menu\"\nsteps = [{{ dtmf = \"12x4\" }}]\n");
    assert_eq!(
        single(&source),
        r#"7:22: invalid DTMF digit 'x' in "12x4"; expected 0-9, *, #, A-D"#
    );
}

#[test]
fn weight_zero() {
    let source = format!("{SINK}{STAGES}[[scripts]]\nname = \"a\"\nweight = 0\nturns = 2\n");
    assert_eq!(single(&source), "7:10: weight must be at least 1, found 0");
}

#[test]
fn turns_min_greater_than_max() {
    let source =
        format!("{SINK}{STAGES}[[scripts]]\nname = \"a\"\nturns = {{ min = 4, max = 2 }}\n");
    assert_eq!(
        single(&source),
        "7:9: turns min (4) is greater than max (2)"
    );
}

#[test]
fn script_shape_errors() {
    let source = format!(
        "{SINK}{STAGES}[[scripts]]\nname = \"a\"\nturns = 2\nsteps = [{{ pause = \"1s\" }}]\n\
         [[scripts]]\nname = \"a\"\nsteps = [{{ hangup = true }}, {{ say = \"random\", dtmf = \"1\" }}, {{ pause = \"1s\", listen = true }}]\n"
    );
    assert_eq!(
        diagnostics(&source),
        vec![
            "8:9: turns and steps are mutually exclusive; a script has one or the other",
            r#"10:8: duplicate script name "a"; script names must be unique"#,
            "11:29: steps after hangup never run; hangup must be the last step",
            "11:29: a step does one thing, found say and dtmf; split it into separate steps",
            "11:61: steps after hangup never run; hangup must be the last step",
            "11:86: listen only applies to say and dtmf steps, not to pause",
        ]
    );
}

#[test]
fn slo_thresholds() {
    let source = format!(
        "{SINK}{STAGES}[slo]\ncall_success = \"<= 99%\"\nresponse_p95 = \">= 1s\"\nresponse_p99 = 3\nfirst_audio_p95 = \"soon\"\n"
    );
    assert_eq!(
        diagnostics(&source),
        vec![
            r#"6:16: call_success is a minimum: write it as >= VALUE, found "<= 99%""#,
            r#"7:16: response_p95 is a maximum: write it as <= VALUE, found ">= 1s""#,
            r#"8:16: expected a threshold such as "<= 1500ms", found 3"#,
            r#"9:19: expected a threshold such as "<= 1500ms", found "soon""#,
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let source = "[target]\nfleet = \"embedded\"\nbugs = [\"no-healer\", \"oops\"]\n\
                  [load]\nstages = [{ ramp_to = 5, over = 5 }]\n\
                  [[scripts]]\nname = \"a\"\nweight = 0\nturns = 1\n";
    let found = diagnostics(source);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("3:22: unknown bug"), "{found:#?}");
    assert!(found[1].starts_with("5:33: "));
    assert!(found[2].starts_with("8:10: "));
}

#[test]
fn error_display_is_one_line_per_diagnostic() {
    let source = format!(
        "{SINK}[load]\nstages = [{{ hold = \"-5s\" }}, {{ ramp_to = -1, over = \"1s\" }}]\n"
    );
    let error = parse(&source, Path::new("scenarios/x.toml")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "scenarios/x.toml:4:20: expected a duration such as \"30s\" or \"1m30s\", found \"-5s\"\n\
         scenarios/x.toml:4:41: ramp_to must be at least 0, found -1"
    );
}

#[test]
fn missing_file_is_a_read_error() {
    let error = load(Path::new("/nowhere/at/all.toml")).unwrap_err();
    assert!(matches!(error, ScenarioError::Read { .. }));
    assert!(error.to_string().contains("/nowhere/at/all.toml"));
}

// ---- determinism ------------------------------------------------------------------------

const MIXED: &str = r#"
seed = 42
[target]
fleet = "sink"
[load]
calls_per_minute = 600
duration = "1000s"
arrivals = "poisson"
[[scripts]]
name = "talk"
weight = 3
turns = { min = 1, max = 5 }
[[scripts]]
name = "menu"
steps = [{ say = "synthetic" }, { dtmf = "1" }, { say = "random", listen = false }]
"#;

#[test]
fn same_seed_same_schedule_different_seed_different() {
    let first = parse_ok(MIXED);
    let second = parse_ok(MIXED);
    let calls = |scenario: &Scenario| {
        (0..200)
            .map(|i| scenario.choose_call(i))
            .collect::<Vec<_>>()
    };
    let arrivals = |scenario: &Scenario| scenario.arrival_offsets().take(500).collect::<Vec<_>>();
    assert_eq!(calls(&first), calls(&second));
    assert_eq!(arrivals(&first), arrivals(&second));
    assert_eq!(first.synthetic_specs(), second.synthetic_specs());

    let other = parse_ok(MIXED).with_seed(43);
    assert_eq!(other.seed, 43);
    assert_ne!(calls(&first), calls(&other));
    assert_ne!(arrivals(&first), arrivals(&other));
    assert_ne!(first.synthetic_specs(), other.synthetic_specs());
}

#[test]
fn choose_call_does_not_depend_on_order() {
    let scenario = parse_ok(MIXED);
    let forward: Vec<_> = (0..100).map(|i| scenario.choose_call(i)).collect();
    let mut backward: Vec<_> = (0..100).rev().map(|i| scenario.choose_call(i)).collect();
    backward.reverse();
    assert_eq!(forward, backward);
    assert_eq!(scenario.choose_call(77), scenario.choose_call(77));
}

#[test]
fn planned_steps_follow_the_script() {
    let scenario = parse_ok(MIXED);
    let synthetic = scenario.calls.synthetic.count as usize;
    for index in 0..500 {
        let choice = scenario.choose_call(index);
        match &scenario.scripts[choice.script].body {
            ScriptBody::Turns { min, max } => {
                assert!((*min as usize..=*max as usize).contains(&choice.steps.len()));
                for step in &choice.steps {
                    let PlannedStep::Say {
                        utterance: UtteranceSource::Synthetic(i),
                        listen: true,
                    } = step
                    else {
                        panic!("turns are synthetic say + listen without fixtures: {step:?}")
                    };
                    assert!(*i < synthetic);
                }
            }
            ScriptBody::Steps(_) => {
                assert_eq!(choice.steps.len(), 3);
                assert!(
                    matches!(choice.steps[1], PlannedStep::Dtmf { ref digits, listen: true } if digits == "1")
                );
                assert!(matches!(
                    choice.steps[2],
                    PlannedStep::Say { listen: false, .. }
                ));
            }
        }
    }
}

#[test]
fn random_resolves_to_fixtures_when_there_are_some() {
    let (_dir, scenarios, _fixtures) = fixture_tree();
    let source = format!("{SINK}{STAGES}[calls]\nfixtures = [\"../fixtures/*.wav\"]\n");
    let scenario = parse(&source, &scenarios.join("x.toml")).unwrap();
    let mut seen = [false; 2];
    for index in 0..100 {
        for step in scenario.choose_call(index).steps {
            let PlannedStep::Say {
                utterance: UtteranceSource::Fixture(i),
                ..
            } = step
            else {
                panic!("fixture expected, got {step:?}")
            };
            seen[i] = true;
        }
    }
    assert_eq!(seen, [true, true]);
}

#[test]
fn weights_are_respected() {
    let scenario = parse_ok(MIXED);
    let talk = (0..10_000)
        .filter(|&i| scenario.choose_call(i).script == 0)
        .count();
    let share = talk as f64 / 10_000.0;
    assert!((0.72..0.78).contains(&share), "talk share {share}");
}

#[test]
fn poisson_mean_gap_matches_rate() {
    let scenario = parse_ok(MIXED);
    let offsets: Vec<Duration> = scenario.arrival_offsets().collect();
    assert!(offsets.windows(2).all(|pair| pair[0] <= pair[1]));
    assert!(offsets.iter().all(|offset| *offset < secs(1000)));
    let mean_gap = offsets.last().unwrap().as_secs_f64() / offsets.len() as f64;
    assert!((mean_gap - 0.1).abs() < 0.005, "mean gap {mean_gap}");
}

#[test]
fn uniform_offsets_are_evenly_spaced() {
    let scenario = parse_ok(&format!(
        "{SINK}[load]\ncalls_per_minute = 600\nduration = \"1000s\"\n"
    ));
    let offsets: Vec<Duration> = scenario.arrival_offsets().collect();
    assert_eq!(offsets.len(), 10_000);
    assert_eq!(&offsets[..3], &[Duration::ZERO, millis(100), millis(200)]);
    let last = offsets.last().unwrap().as_secs_f64();
    assert!((last - 999.9).abs() < 1e-6, "{last}");
    assert_eq!(
        parse_ok(&format!("{SINK}{STAGES}"))
            .arrival_offsets()
            .count(),
        0
    );
}

#[test]
fn synthetic_specs_are_whole_frames_in_range() {
    let scenario = parse_ok(&format!(
        "{SINK}{STAGES}[calls]\nsynthetic = {{ count = 50, min = \"1s\", max = \"2.5s\" }}\n"
    ));
    let specs = scenario.synthetic_specs();
    assert_eq!(specs.len(), 50);
    for (length, _) in &specs {
        assert_eq!(length.as_millis() % 20, 0);
        assert!((secs(1)..=millis(2500)).contains(length), "{length:?}");
    }
    let seeds: std::collections::HashSet<u64> = specs.iter().map(|(_, seed)| *seed).collect();
    assert_eq!(seeds.len(), 50);
}

#[test]
fn concurrency_at_interpolates() {
    let load = Load::Stages(vec![
        Stage {
            to: 50,
            duration: secs(5),
        },
        Stage {
            to: 50,
            duration: secs(20),
        },
        Stage {
            to: 0,
            duration: secs(5),
        },
    ]);
    for (at, expected) in [
        (millis(0), 0),
        (millis(1000), 10),
        (millis(2500), 25),
        (millis(5000), 50),
        (millis(15_000), 50),
        (millis(27_500), 25),
        (millis(30_000), 0),
        (secs(100), 0),
    ] {
        assert_eq!(load.concurrency_at(at), expected, "at {at:?}");
    }
    assert_eq!(load.duration(), secs(30));
}

// ---- plan -------------------------------------------------------------------------------

#[test]
fn plan_shows_the_timeline_and_first_calls() {
    let (_dir, scenarios, _fixtures) = fixture_tree();
    let path = scenarios.join("full.toml");
    fs::write(&path, FULL_SINK).unwrap();
    let plan = crate::plan::render_plan(&load(&path).unwrap());
    for expected in [
        "scenario full",
        "seed               7",
        "sink (voxsoak sink, started by the harness)",
        "reply delay        650ms",
        "00:00:00–00:00:05  ramp  0 → 50",
        "00:00:05–00:00:25  hold  50",
        "00:00:25–00:00:30  ramp  50 → 0",
        "total duration     30s",
        "peak concurrency   50",
        "max call duration  2m18s",
        "fleet may hang up  after_last_turn",
        "greeting.wav",
        "order-status.wav",
        "4 utterances, 500ms to 1s",
        "conversation  weight 3     75.0%  2–4 turns",
        "say order-status.wav, listen; dtmf 12A#, listen; pause 2s; say random; say synthetic, listen; hang up",
        "call 0:",
        "call 4:",
        "call success       >= 99.5%",
        "response p95       <= 1.5s",
    ] {
        assert!(plan.contains(expected), "missing {expected:?} in\n{plan}");
    }
}

#[test]
fn plan_shows_the_embedded_fleet() {
    let plan = crate::plan::render_plan(&parse_ok(FULL_EMBEDDED));
    for expected in [
        "fleet              embedded (voxsoak fleet, the reference fleet, started by the harness)",
        "bugs               no-backoff, silent-stall",
        "database           PostgreSQL from $VOXSOAK_PG_URL",
        "db pool size       4",
        "orders             20000 rows seeded",
        "workers            3",
        "stall after        2s (the healer restarts a worker silent this long)",
        "stall after calls  5 jobs per worker (silent-stall)",
        "memory limit       512.0 MiB (SIGKILL above it)",
        "temp dir budget    64.0 MiB",
        "allow hosts        127.0.0.1",
    ] {
        assert!(plan.contains(expected), "missing {expected:?} in\n{plan}");
    }
    let plan = crate::plan::render_plan(&parse_ok(&format!(
        "[target]\nfleet = \"embedded\"\n{STAGES}"
    )));
    for expected in [
        "bugs               none (the fixed fleet)",
        "database           SQLite file in the run's temp dir",
        "db pool size       10",
        "orders             1000000 rows seeded",
        "stall after calls  20 (only with silent-stall)",
        "memory limit       none",
        "temp dir budget    256.0 MiB",
    ] {
        assert!(plan.contains(expected), "missing {expected:?} in\n{plan}");
    }
}

#[test]
fn plan_for_open_model_lists_arrivals() {
    let plan = crate::plan::render_plan(&parse_ok(
        "[target]\nstream_url = \"ws://127.0.0.1:8080/stream\"\n\
         [load]\ncalls_per_minute = 120\nduration = \"5m\"\nmax_concurrent = 1000\n",
    ));
    for expected in [
        "stream             ws://127.0.0.1:8080/stream",
        "120 calls/min (one every 500ms on average)",
        "expected calls     600",
        "concurrency cap    1000",
        "first arrivals     00:00:00.000  00:00:00.500  00:00:01.000",
        "00:00:04.500",
    ] {
        assert!(plan.contains(expected), "missing {expected:?} in\n{plan}");
    }
}

// ---- sample files -----------------------------------------------------------------------

#[test]
fn sample_files_stay_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenario_files");
    for name in ["sink-baseline.toml", "open-rate.toml", "embedded.toml"] {
        let scenario = load(&dir.join(name)).unwrap_or_else(|error| panic!("{error}"));
        assert!(!crate::plan::render_plan(&scenario).is_empty());
    }
    let embedded = load(&dir.join("embedded.toml")).unwrap();
    assert!(
        crate::plan::render_plan(&embedded).contains("bugs               no-backoff, temp-leak")
    );
    let error = load(&dir.join("invalid.toml")).unwrap_err();
    let ScenarioError::Invalid { diagnostics, .. } = error else {
        panic!("invalid expected")
    };
    let positions: Vec<(usize, usize)> = diagnostics.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        positions,
        [
            (5, 23),
            (6, 1),
            (10, 26),
            (11, 12),
            (15, 1),
            (16, 13),
            (20, 10),
            (21, 22),
            (22, 1)
        ]
    );
}

#[test]
fn absurd_sizes_are_refused_before_they_can_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.toml");
    for (source, needle) in [
        (
            "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 5, over = \"400000000000y\" }]\n",
            "30 days",
        ),
        (
            "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 4000000000, over = \"1s\" }]\n",
            "at most 1000000",
        ),
        (
            "[target]\nfleet = \"sink\"\n[load]\ncalls_per_minute = 1e-300\nduration = \"1m\"\n",
            "between",
        ),
        (
            "[target]\nfleet = \"sink\"\nreply_delay = \"100ms\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n",
            "at least 500ms",
        ),
        (
            "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n[calls]\nsynthetic = { count = 5000 }\n",
            "at most 1000",
        ),
    ] {
        let error = parse(source, &file).unwrap_err().to_string();
        assert!(error.contains(needle), "{needle:?} not in {error}");
    }
}

use std::time::Duration;

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn parse_at(source: &str, dir: &Path) -> Result<Scenario, ScenarioError> {
    parse(source, &dir.join("scenario.toml"))
}

fn ok(source: &str) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    parse_at(source, dir.path()).unwrap_or_else(|error| panic!("{error}"))
}

/// The diagnostics of an invalid scenario, as (line, column, message).
fn problems(source: &str) -> Vec<(usize, usize, String)> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.wav"), b"").unwrap();
    match parse_at(source, dir.path()) {
        Ok(_) => panic!("expected errors for:\n{source}"),
        Err(ScenarioError::Invalid { diagnostics, .. }) => diagnostics
            .into_iter()
            .map(|d| (d.line, d.column, d.message))
            .collect(),
        Err(other) => panic!("{other}"),
    }
}

fn one_problem(source: &str, line: usize, column: usize, needle: &str) {
    let found = problems(source);
    assert!(
        found
            .iter()
            .any(|(l, c, m)| *l == line && *c == column && m.contains(needle)),
        "expected {line}:{column} containing {needle:?}, got {found:?}"
    );
}

const SINK: &str = "[target]\nfleet = \"sink\"\n";

#[test]
fn a_full_closed_model_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("audio")).unwrap();
    for name in ["hello.wav", "bye.wav", "notes.txt"] {
        std::fs::write(dir.path().join("audio").join(name), b"").unwrap();
    }
    let source = r#"
name = "full"
description = "everything"
seed = 42
[target]
fleet = "sink"
reply_delay = "250ms"
[load]
stages = [{ ramp_to = 10, over = "10s" }, { hold = "1m" }, { ramp_to = 0, over = "5s" }]
[calls]
turn_timeout = "4s"
wait_for_greeting = true
fixtures = ["audio/*.wav", "audio/hello.wav"]
synthetic = { count = 3, min = "1s", max = "2s" }
[[scripts]]
name = "chat"
weight = 3
turns = { min = 2, max = 4 }
[[scripts]]
name = "menu"
steps = [{ say = "hello" }, { dtmf = "12#" }, { pause = "2s" }, { say = "random", listen = false }, { hangup = true }]
[slo]
call_success = ">= 99.5%"
response_p95 = "<= 1500ms"
"#;
    let scenario = parse_at(source, dir.path()).unwrap();
    assert_eq!(scenario.name, "full");
    assert_eq!(scenario.seed, 42);
    assert!(matches!(&scenario.target, Target::Sink(s) if s.reply_delay == MS(250)));
    assert_eq!(
        scenario.load,
        Load::Stages(vec![
            Stage {
                to: 10,
                duration: Duration::from_secs(10)
            },
            Stage {
                to: 10,
                duration: Duration::from_secs(60)
            },
            Stage {
                to: 0,
                duration: Duration::from_secs(5)
            },
        ])
    );
    assert_eq!(scenario.load.duration(), Duration::from_secs(75));
    assert_eq!(scenario.load.peak_concurrency(), 10);
    assert_eq!(
        scenario.calls.fixtures.len(),
        2,
        "de-duplicated, .txt excluded"
    );
    assert!(scenario.calls.fixtures[0].ends_with("audio/bye.wav"));
    assert!(scenario.calls.fixtures[0].is_absolute());
    assert!(scenario.calls.wait_for_greeting);
    assert_eq!(scenario.scripts.len(), 2);
    assert_eq!(
        scenario.scripts[1].body,
        ScriptBody::Steps(vec![
            Step::Say {
                utterance: UtteranceRef::Fixture(1),
                listen: true
            },
            Step::Dtmf {
                digits: "12#".into(),
                listen: true
            },
            Step::Pause(Duration::from_secs(2)),
            Step::Say {
                utterance: UtteranceRef::Random,
                listen: false
            },
            Step::Hangup,
        ])
    );
    assert_eq!(scenario.slo.call_success_min_pct, Some(99.5));
    assert_eq!(scenario.slo.response_p95_max, Some(MS(1500)));
    assert_eq!(scenario.synthetic_specs().len(), 3);
}

#[test]
fn an_open_model_file_and_defaults() {
    let scenario = ok(r#"
[target]
webhook_url = "http://localhost:9000/voice"
auth_token_env = "TOKEN"
[load]
calls_per_minute = 120
duration = "30s"
arrivals = "poisson"
max_concurrent = 7
"#);
    assert_eq!(scenario.name, "scenario");
    assert_eq!(scenario.seed, 1);
    let Load::Arrival(rate) = &scenario.load else {
        panic!()
    };
    assert_eq!(rate.calls_per_minute, 120.0);
    assert_eq!(rate.pattern, ArrivalPattern::Poisson);
    assert_eq!(rate.max_concurrent, 7);
    let Target::External(external) = &scenario.target else {
        panic!()
    };
    assert!(matches!(&external.endpoint, Endpoint::Webhook(url) if url.port() == Some(9000)));
    assert_eq!(external.auth_token_env.as_deref(), Some("TOKEN"));
    assert_eq!(scenario.calls.turn_timeout, Duration::from_secs(10));
    assert_eq!(
        scenario.scripts[0].body,
        ScriptBody::Turns { min: 2, max: 3 }
    );
    assert_eq!(scenario.slo.call_success_min_pct, Some(99.0));
    assert!(scenario.host_allowed("LOCALHOST") && scenario.host_allowed("[::1]"));
    assert!(!scenario.host_allowed("example.com"));
}

#[test]
fn not_toml() {
    one_problem("name = \"x\"\nthis is [not toml\n", 2, 6, "");
}

#[test]
fn unknown_keys_at_the_key() {
    one_problem(
        &format!("{SINK}colour = \"red\"\n[load]\nstages = [{{ hold = \"1s\" }}]\n"),
        3,
        1,
        "colour",
    );
    one_problem(
        &format!("{SINK}[load]\nstages = [{{ ramp_to = 5, over = \"5s\", bogus = 1 }}]\n"),
        4,
        39,
        "bogus",
    );
}

#[test]
fn durations_point_at_the_value() {
    one_problem(
        &format!("{SINK}[load]\nstages = [{{ hold = \"-5s\" }}]\n"),
        4,
        20,
        "\"-5s\"",
    );
    one_problem(
        &format!("{SINK}[load]\nstages = [{{ hold = 5 }}]\n"),
        4,
        20,
        "the number 5",
    );
    one_problem(
        &format!("{SINK}[load]\nstages = [{{ hold = \"0s\" }}]\n"),
        4,
        20,
        "longer than zero",
    );
}

#[test]
fn load_needs_one_model() {
    let both = format!("{SINK}[load]\nstages = [{{ hold = \"1s\" }}]\ncalls_per_minute = 5\n");
    assert!(problems(&both)[0].2.contains("exactly one"));
    assert!(
        problems(&format!("{SINK}[load]\n"))[0]
            .2
            .contains("exactly one")
    );
    assert!(
        problems(&format!("{SINK}[load]\ncalls_per_minute = 5\n"))[0]
            .2
            .contains("duration")
    );
}

#[test]
fn target_errors() {
    let load = "[load]\nstages = [{ hold = \"1s\" }]\n";
    one_problem(
        &format!("[target]\nstream_url = \"http://127.0.0.1/x\"\n{load}"),
        2,
        14,
        "ws://",
    );
    one_problem(
        &format!("[target]\nstream_url = \"ws://example.com/x\"\n{load}"),
        2,
        14,
        "allow_hosts",
    );
    one_problem(
        &format!("[target]\nfleet = \"embedded\"\n{load}"),
        2,
        9,
        "not available",
    );
    one_problem(
        &format!("[target]\nstream_url = \"ws://127.0.0.1/x\"\nreply_delay = \"1s\"\n{load}"),
        3,
        15,
        "fleet = \"sink\"",
    );
    // allow_hosts opens a host up.
    ok(&format!(
        "[target]\nstream_url = \"ws://fleet.internal/x\"\nallow_hosts = [\"fleet.internal\"]\n{load}"
    ));
}

#[test]
fn script_errors() {
    let head = format!(
        "{SINK}[load]\nstages = [{{ hold = \"1s\" }}]\n[calls]\nfixtures = [\"hello.wav\"]\n"
    );
    one_problem(
        &format!("{head}[[scripts]]\nsteps = [{{ say = \"nope\" }}]\n"),
        8,
        18,
        "hello",
    );
    one_problem(
        &format!("{head}[[scripts]]\nsteps = [{{ dtmf = \"12x\" }}]\n"),
        8,
        19,
        "0-9",
    );
    one_problem(
        &format!("{head}[[scripts]]\nweight = 0\nturns = 2\n"),
        8,
        10,
        "weight",
    );
    one_problem(
        &format!("{head}[[scripts]]\nturns = {{ min = 3, max = 2 }}\n"),
        8,
        9,
        "min <= max",
    );
    one_problem(
        &format!("{SINK}[load]\nstages = [{{ hold = \"1s\" }}]\n[calls]\nfixtures = [\"*.mp3\"]\n"),
        6,
        13,
        "no fixture",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let found = problems(&format!(
        "{SINK}[load]\nstages = [{{ hold = \"-1s\" }}, {{ ramp_to = 3, over = \"x\" }}]\n[calls]\nturn_timeout = 5\n"
    ));
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn concurrency_follows_the_stages() {
    let scenario = ok(&format!(
        "{SINK}[load]\nstages = [{{ ramp_to = 10, over = \"10s\" }}, {{ hold = \"5s\" }}, {{ ramp_to = 0, over = \"10s\" }}]\n"
    ));
    let at = |s: f64| scenario.load.concurrency_at(Duration::from_secs_f64(s));
    assert_eq!(at(0.0), 0);
    assert_eq!(at(5.0), 5);
    assert_eq!(at(12.0), 10);
    assert_eq!(at(20.0), 5);
    assert_eq!(at(30.0), 0);
}

#[test]
fn choices_are_seeded_and_independent_of_order() {
    let source = format!(
        "{SINK}[load]\nstages = [{{ hold = \"1s\" }}]\n[[scripts]]\nname = \"a\"\nweight = 3\nturns = {{ min = 1, max = 5 }}\n[[scripts]]\nname = \"b\"\nturns = 1\n"
    );
    let scenario = ok(&source);
    let forward: Vec<_> = (0..50).map(|i| scenario.choose_call(i)).collect();
    let backward: Vec<_> = (0..50).rev().map(|i| scenario.choose_call(i)).collect();
    assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
    let reseeded = scenario.clone().with_seed(2);
    assert_ne!(
        forward,
        (0..50).map(|i| reseeded.choose_call(i)).collect::<Vec<_>>()
    );
    // Weights 3:1, within a loose bound over 10,000 calls.
    let a = (0..10_000)
        .filter(|i| scenario.choose_call(*i).script == 0)
        .count();
    assert!((7_200..=7_800).contains(&a), "{a}");
    assert_eq!(
        scenario.synthetic_specs(),
        scenario.clone().synthetic_specs()
    );
}

#[test]
fn arrivals_uniform_and_poisson() {
    let uniform = ok(&format!(
        "{SINK}[load]\ncalls_per_minute = 60\nduration = \"5s\"\n"
    ));
    let offsets: Vec<_> = uniform.arrival_offsets().collect();
    assert_eq!(offsets, (0..5).map(Duration::from_secs).collect::<Vec<_>>());
    let poisson = ok(&format!(
        "{SINK}[load]\ncalls_per_minute = 600\nduration = \"1h\"\narrivals = \"poisson\"\n"
    ));
    let offsets: Vec<_> = poisson.arrival_offsets().collect();
    let mean_gap = offsets.last().unwrap().as_secs_f64() / (offsets.len() - 1) as f64;
    assert!((mean_gap - 0.1).abs() < 0.005, "{mean_gap}");
    assert_eq!(offsets, poisson.arrival_offsets().collect::<Vec<_>>());
    assert_ne!(
        offsets,
        poisson
            .clone()
            .with_seed(9)
            .arrival_offsets()
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let error = load(Path::new("no/such/file.toml")).unwrap_err();
    assert!(error.to_string().contains("no/such/file.toml"));
}

#[test]
fn plan_text_names_what_will_happen() {
    let scenario = ok(&format!(
        "{SINK}[load]\nstages = [{{ ramp_to = 10, over = \"10s\" }}, {{ hold = \"5s\" }}]\n"
    ));
    let text = render_plan(&scenario);
    assert!(text.contains("ramp 0 -> 10 calls"), "{text}");
    assert!(text.contains("hold 10 calls"), "{text}");
    assert!(text.contains("00:00:10-00:00:15"), "{text}");
    assert!(text.contains("#0 conversation"), "{text}");
}

//! Starting the embedded reference fleet (`[target] fleet = "embedded"`), with a fake
//! `voxsoak` (a shell script) in place of the real one: the flags it gets, the environment
//! it does not inherit, its temp dir, and how its failures are reported.
//!
//! The environment tests need the *harness* process to have `DATABASE_URL` & co. set, and
//! setting variables in this (multi-threaded) test process would race with every other
//! test. So [`scrubbed_variables_never_reach_the_fleet`] runs the test binary again, with
//! the variables set on that child's command line, and has it run just
//! [`the_fleet_gets_its_flags_and_its_temp_dir`] (which checks the environment its fake
//! fleet saw). Run alone, that test checks the same things with a clean environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use tempfile::TempDir;
use voxsoak::call::CallEndpoint;
use voxsoak::cli::{Cli, Command};
use voxsoak::fleet::Bug;
use voxsoak::scenario::{EmbeddedFleet, Target};
use voxsoak::target::{
    FleetDatabase, FleetWiring, ResolvedTarget, SCRUBBED_ENV, TargetError, preflight, resolve,
};

/// Set by [`scrubbed_variables_never_reach_the_fleet`] in the environment of the test
/// binary it runs again, next to the scrubbed variables.
const POLLUTED: &str = "VOXSOAK_TEST_POLLUTED_ENV";
/// A PostgreSQL URL for [`a_postgres_url_reaches_the_fleet_through_its_environment`], set
/// the same way.
const PG_URL_VAR: &str = "VOXSOAK_TEST_FLEET_PG_URL";
const PG_URL: &str = "postgres://voxsoak:hunter2@127.0.0.1:5432/fleet";

/// What the fake fleet received, written before it does anything else.
const RECORD: &str = r#"record="$(dirname "$0")/received"
{
  for arg in "$@"; do printf 'arg %s\n' "$arg"; done
  for name in DATABASE_URL LLM_BASE_URL TTS_BASE_URL ALERT_WEBHOOK_URL AUDIO_TMP_DIR TWILIO_AUTH_TOKEN; do
    eval "value=\${$name-unset}"
    printf 'env %s=%s\n' "$name" "$value"
  done
} > "$record.tmp" && mv "$record.tmp" "$record""#;

/// A fake `voxsoak` in its own temp dir: records what it received, then runs `body`.
struct FakeVoxsoak {
    dir: TempDir,
    exe: PathBuf,
}

impl FakeVoxsoak {
    fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("voxsoak");
        std::fs::write(&exe, format!("#!/bin/sh\n{RECORD}\n{body}\n")).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeVoxsoak { dir, exe }
    }

    /// A fake that reports `port` the way `voxsoak fleet` does, then runs until stopped.
    fn listening(port: u16) -> Self {
        FakeVoxsoak::new(&format!(
            "echo 'voxsoak fleet: seeding orders'\n\
             echo 'voxsoak fleet listening on 127.0.0.1:{port}'\n\
             exec sleep 600"
        ))
    }

    fn received(&self) -> Received {
        let text = std::fs::read_to_string(self.dir.path().join("received"))
            .expect("the fake fleet recorded what it received");
        let mut received = Received::default();
        for line in text.lines() {
            if let Some(arg) = line.strip_prefix("arg ") {
                received.args.push(arg.to_owned());
            } else if let Some(env) = line.strip_prefix("env ") {
                received.env.push(env.to_owned());
            }
        }
        received
    }

    async fn resolve(
        &self,
        target: &Target,
        fleet_bugs: &[Bug],
    ) -> Result<ResolvedTarget, TargetError> {
        // A script just written can be "busy" for a moment when another test's fork still
        // holds the file descriptor it was written through (ETXTBSY): try again.
        for _ in 0..20 {
            match resolve(target, &self.exe, fleet_bugs, &FleetWiring::default()).await {
                Err(TargetError::Spawn { source, .. })
                    if source.raw_os_error() == Some(libc::ETXTBSY) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
        resolve(target, &self.exe, fleet_bugs, &FleetWiring::default()).await
    }
}

#[derive(Debug, Default)]
struct Received {
    args: Vec<String>,
    /// `NAME=value`, `value` being `unset` when the variable was not set.
    env: Vec<String>,
}

fn embedded(fleet: EmbeddedFleet) -> Target {
    Target::Embedded(fleet)
}

/// The fleet's flags, parsed by the real `voxsoak fleet` command line.
fn parse_fleet_args(args: &[String]) -> voxsoak::fleet::FleetOptions {
    let cli =
        Cli::try_parse_from(std::iter::once("voxsoak".to_owned()).chain(args.iter().cloned()))
            .unwrap_or_else(|error| panic!("voxsoak fleet would refuse {args:?}: {error}"));
    let Command::Fleet(fleet) = cli.command else {
        panic!("not the fleet subcommand: {args:?}")
    };
    fleet.into_options()
}

#[tokio::test]
async fn the_fleet_gets_its_flags_and_its_temp_dir() {
    let polluted = std::env::var_os(POLLUTED).is_some();
    if polluted {
        // The parent test really did put the variables into this harness's environment.
        for name in SCRUBBED_ENV {
            assert!(
                std::env::var_os(name).is_some(),
                "{name} not set by the parent"
            );
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = FakeVoxsoak::listening(port);
    let target = embedded(EmbeddedFleet {
        bugs: vec![Bug::TempLeak],
        db_pool_size: 4,
        orders: 1000,
        workers: 2,
        stall_after: Duration::from_secs(3),
        stall_after_calls: 7,
        memory_limit: Some(64 << 20),
        temp_dir_budget: 1 << 20,
        ..EmbeddedFleet::default()
    });
    let started = Instant::now();
    let resolved = fake
        .resolve(&target, &[Bug::NoBackoff, Bug::TempLeak])
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(started.elapsed() < Duration::from_secs(30));

    let stream = format!("ws://127.0.0.1:{port}/stream");
    assert_eq!(
        resolved.description,
        format!("reference fleet (started by voxsoak, bugs: temp-leak, no-backoff) {stream}")
    );
    let CallEndpoint::Stream {
        url,
        custom_parameters,
    } = &resolved.endpoint
    else {
        panic!("calls go to the stream: {:?}", resolved.endpoint)
    };
    assert_eq!(url.as_str(), stream);
    assert!(custom_parameters.is_empty());
    assert_eq!(resolved.auth_token, None);
    preflight(&resolved.endpoint).await.unwrap();

    let info = resolved.embedded.clone().expect("embedded fleet info");
    assert_eq!(info.http_base.as_str(), format!("http://127.0.0.1:{port}/"));
    assert_eq!(info.bugs, [Bug::TempLeak, Bug::NoBackoff]);
    assert!(info.temp_dir.is_absolute() && info.temp_dir.is_dir());
    assert_eq!(info.audio_tmp_dir, info.temp_dir.join("audio"));
    assert!(info.audio_tmp_dir.is_dir());
    let db = info.temp_dir.join("fleet.db");
    assert_eq!(info.database, FleetDatabase::Sqlite { path: db.clone() });
    assert_eq!(info.database_url, format!("sqlite://{}", db.display()));
    let fleet = resolved.fleet.expect("the harness owns the fleet");
    assert_eq!(fleet.what(), "voxsoak fleet");
    assert!(fleet.pid().is_some() && fleet.pid() == info.pid);

    let received = fake.received();
    let expected: Vec<String> = [
        "fleet",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &info.database_url,
        "--audio-tmp-dir",
        info.audio_tmp_dir.to_str().unwrap(),
        "--db-pool-size",
        "4",
        "--orders",
        "1000",
        "--workers",
        "2",
        "--stall-after",
        "3s",
        "--stall-after-calls",
        "7",
        "--temp-dir-budget",
        "1048576",
        "--memory-limit",
        "67108864",
        "--bug",
        "temp-leak",
        "--bug",
        "no-backoff",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(received.args, expected);
    // The real `voxsoak fleet` accepts exactly these flags, and reads what was meant.
    let options = parse_fleet_args(&received.args);
    assert_eq!(options.listen.port(), 0);
    assert_eq!(options.bugs, [Bug::TempLeak, Bug::NoBackoff]);
    assert_eq!(
        options.database_url.as_deref(),
        Some(info.database_url.as_str())
    );
    assert_eq!(
        options.audio_tmp_dir.as_deref(),
        Some(info.audio_tmp_dir.as_path())
    );
    assert_eq!(options.db_pool_size, 4);
    assert_eq!(options.orders, 1000);
    assert_eq!(options.workers, 2);
    assert_eq!(options.stall_after, Duration::from_secs(3));
    assert_eq!(options.stall_after_calls, 7);
    assert_eq!(options.memory_limit, Some(64 << 20));
    assert_eq!(options.temp_dir_budget, 1 << 20);

    // None of the user's variables reached the fleet, whether or not this process had them.
    let unset: Vec<String> = SCRUBBED_ENV
        .iter()
        .map(|name| format!("{name}=unset"))
        .collect();
    assert_eq!(received.env, unset);

    fleet.stop().await;
    assert!(
        !info.temp_dir.exists(),
        "stopping the fleet removes its temp dir"
    );
    drop(listener);
    println!(
        "checked with the scrubbed variables {}",
        if polluted { "set" } else { "unset" }
    );
}

/// Runs the test binary again with every scrubbed variable set in its environment, so the
/// harness inside it has them to (not) pass on; see the module docs.
#[test]
fn scrubbed_variables_never_reach_the_fleet() {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "embedded_target::the_fleet_gets_its_flags_and_its_temp_dir",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(POLLUTED, "1");
    for name in SCRUBBED_ENV {
        command.env(name, format!("leaked-{name}"));
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success()
            && stdout.contains("1 passed")
            && stdout.contains("checked with the scrubbed variables set"),
        "the inner test failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn a_postgres_url_reaches_the_fleet_through_its_environment() {
    let Ok(url) = std::env::var(PG_URL_VAR) else {
        println!("skipped: run by postgres_urls_stay_off_the_command_line with {PG_URL_VAR} set");
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = FakeVoxsoak::listening(listener.local_addr().unwrap().port());
    let target = embedded(EmbeddedFleet {
        database_url_env: Some(PG_URL_VAR.to_owned()),
        ..EmbeddedFleet::default()
    });
    let resolved = fake
        .resolve(&target, &[])
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let info = resolved.embedded.clone().unwrap();
    assert_eq!(
        info.database,
        FleetDatabase::Postgres {
            env: PG_URL_VAR.to_owned()
        }
    );
    assert_eq!(info.database_url, url);
    assert!(
        resolved.description.contains("bugs: none"),
        "{}",
        resolved.description
    );
    assert!(
        !format!("{resolved:?}").contains("hunter2"),
        "the password is never printed"
    );

    let received = fake.received();
    assert!(
        !received
            .args
            .iter()
            .any(|arg| arg.contains("hunter2") || arg == "--database-url")
    );
    assert!(
        !received
            .args
            .iter()
            .any(|arg| arg == "--bug" || arg == "--memory-limit")
    );
    assert_eq!(received.env[0], format!("DATABASE_URL={url}"));
    assert!(
        received.env[1..]
            .iter()
            .all(|line| line.ends_with("=unset")),
        "{:?}",
        received.env
    );
    // What the fleet makes of it: its DATABASE_URL variable, as `voxsoak fleet` reads it.
    assert_eq!(received.args[..3], ["fleet", "--listen", "127.0.0.1:0"]);
    resolved.fleet.unwrap().stop().await;
    assert!(!info.temp_dir.exists());
    println!("checked the PostgreSQL URL");
}

#[test]
fn postgres_urls_stay_off_the_command_line() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "embedded_target::a_postgres_url_reaches_the_fleet_through_its_environment",
            "--nocapture",
        ])
        .env(PG_URL_VAR, PG_URL)
        .env("DATABASE_URL", "postgres://someone-else@elsewhere/db")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("checked the PostgreSQL URL"),
        "the inner test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fleet that dies while starting (bad database, port taken, …) is reported at once with
/// its exit status and the end of its stderr, not after the 60 s start-up timeout.
#[tokio::test]
async fn a_fleet_that_dies_before_listening_is_reported_at_once() {
    let fake = FakeVoxsoak::new(
        "i=0\n\
         while [ $i -lt 30 ]; do echo \"noise $i\" >&2; i=$((i+1)); done\n\
         echo 'voxsoak fleet: database: could not connect: disk full' >&2\n\
         exit 3",
    );
    let started = Instant::now();
    let error = fake
        .resolve(&embedded(EmbeddedFleet::default()), &[])
        .await
        .expect_err("the fleet exited");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let message = error.to_string();
    assert!(matches!(error, TargetError::Exited { .. }), "{error:?}");
    assert!(
        message.contains("voxsoak fleet exited (exit status: 3)"),
        "{message}"
    );
    assert!(
        message.contains("database: could not connect: disk full"),
        "{message}"
    );
    // Its first lines and its last are kept, not the noise between them.
    assert!(
        message.contains("  noise 4\n  [6 lines omitted]\n  noise 11\n"),
        "{message}"
    );
    assert!(!message.contains("noise 10\n"), "{message}");
    assert_eq!(message.lines().count(), 1 + 5 + 1 + 20, "{message}");
    // Its temp dir is gone with it.
    let received = fake.received();
    let audio = received
        .args
        .iter()
        .skip_while(|arg| *arg != "--audio-tmp-dir")
        .nth(1)
        .expect("--audio-tmp-dir");
    assert!(!Path::new(audio).exists(), "{audio} is left behind");
}

#[tokio::test]
async fn a_garbled_address_is_an_error() {
    let fake = FakeVoxsoak::new("echo 'voxsoak fleet listening on somewhere'\nexec sleep 600");
    let error = fake
        .resolve(&embedded(EmbeddedFleet::default()), &[])
        .await
        .expect_err("not an address");
    assert!(
        error.to_string().contains(r#"not IP:PORT: "somewhere""#),
        "{error}"
    );
}

#[tokio::test]
async fn database_url_variable_problems_are_named_not_shown() {
    let fake = FakeVoxsoak::new("exit 1");
    let missing = embedded(EmbeddedFleet {
        database_url_env: Some("VOXSOAK_TEST_SURELY_UNSET_7F3A".into()),
        ..EmbeddedFleet::default()
    });
    let error = fake.resolve(&missing, &[]).await.expect_err("unset");
    assert_eq!(
        error.to_string(),
        "the database URL variable VOXSOAK_TEST_SURELY_UNSET_7F3A named by [target] database_url_env is not set"
    );
    // PATH is set, but not to a postgres:// URL; its value is not repeated.
    let wrong = embedded(EmbeddedFleet {
        database_url_env: Some("PATH".into()),
        ..EmbeddedFleet::default()
    });
    let error = fake.resolve(&wrong, &[]).await.expect_err("not postgres");
    assert_eq!(
        error.to_string(),
        "the variable PATH named by [target] database_url_env does not hold a postgres:// URL"
    );
    assert!(
        !fake.dir.path().join("received").exists(),
        "nothing was started"
    );
}

#[tokio::test]
async fn fleet_bugs_need_the_embedded_fleet() {
    let fake = FakeVoxsoak::new("exit 1");
    let sink = Target::Sink(voxsoak::scenario::SinkOptions {
        reply_delay: Duration::from_millis(600),
        reply_length: Duration::from_millis(800),
    });
    let error = fake
        .resolve(&sink, &[Bug::NoBackoff])
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        r#"--fleet-bug needs [target] fleet = "embedded"; the scenario targets fleet = "sink""#
    );
    assert!(
        !fake.dir.path().join("received").exists(),
        "nothing was started"
    );
}

/// `voxsoak run` on a scenario with `fleet = "embedded"` starts the real reference fleet,
/// its calls get real turns, the journal names it, and when the run is over the fleet is
/// stopped. (That stopping removes its temp dir is shown with a fake fleet above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_the_embedded_fleet_gets_real_turns_and_cleans_up() {
    let scenario = crate::util::ScenarioFile::new(&format!(
        r#"
name = "embedded-e2e"
[target]
fleet = "embedded"
orders = 5000
[load]
stages = [{{ ramp_to = 3, over = "1s" }}, {{ hold = "6s" }}]
[calls]
turn_timeout = "8s"
fixtures = ["{}/*.wav"]
[[scripts]]
name = "talk"
turns = 2
[slo]
call_success = ">= 100%"
response_p95 = "<= 1500ms"
"#,
        crate::util::fixtures_dir().display()
    ));
    let options = voxsoak::run::RunOptions {
        scenario: scenario.path.clone(),
        out: Some(scenario.out_dir()),
        duration: None,
        time_scale: None,
        grace: None,
        report_every: None,
        seed: None,
        progress: false,
        exe: crate::util::voxsoak_exe(),
        fleet_bugs: vec![voxsoak::fleet::Bug::TempLeak],
        resume: None,
        metrics_listen: None,
    };
    let outcome = crate::util::within(
        std::time::Duration::from_secs(120),
        voxsoak::run::run(options, Default::default()),
    )
    .await
    .expect("the run is carried out");
    let summary = outcome.summary;
    assert!(
        summary.calls.completed >= 3,
        "{:?} {:?}",
        summary.calls,
        summary.failure_examples
    );
    assert_eq!(summary.calls.failed, 0, "{:?}", summary.failure_examples);
    assert!(summary.latency_ms.response.count >= 2 * summary.calls.completed);
    assert!(summary.target.contains("temp-leak"), "{}", summary.target);
    assert_eq!(
        summary.verdict,
        voxsoak::grade::Verdict::Pass,
        "{:?}",
        summary.slos
    );
    let journal = std::fs::read_to_string(scenario.out_dir().join("journal.jsonl")).unwrap();
    let started: serde_json::Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    let target = started["target"].as_str().unwrap_or_default();
    assert!(target.contains("reference fleet"), "{target}");
    // No fleet process is left: nothing listens where it did.
    let address = summary
        .target
        .rsplit("ws://")
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("the target names its address")
        .to_string();
    assert!(
        tokio::net::TcpStream::connect(&address).await.is_err(),
        "the fleet at {address} was stopped"
    );
}

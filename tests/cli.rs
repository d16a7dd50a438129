//! The command line, end to end (the real binary) and in-process (`Cli::try_parse_from`).

use std::path::Path;
use std::process::{Command, Output};

use clap::Parser;
use voxsoak::cli::Cli;
use voxsoak::exit;

use crate::util::{ScenarioFile, voxsoak_exe};

fn voxsoak(args: &[&str]) -> Output {
    Command::new(voxsoak_exe())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run voxsoak")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn shipped_scenarios_validate_and_plan() {
    let shipped = [
        "sink-baseline",
        "smoke",
        "faults/tts-429",
        "faults/db-pool-exhaustion",
        "faults/empty-tool-params",
        "faults/temp-file-leak",
        "faults/proxy",
        "faults/process",
        "faults/worker-stall",
        "composed-tts-429",
        "soak-recurring-spaced",
    ];
    let in_dir: Vec<String> = std::fs::read_dir("scenarios/faults")
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        in_dir.len(),
        7,
        "one scenario per fault kind family, and the healer's: {in_dir:?}"
    );
    for name in shipped {
        let file = format!("scenarios/{name}.toml");
        let validated = voxsoak(&["validate", &file]);
        assert_eq!(
            validated.status.code(),
            Some(exit::PASS),
            "{}",
            stderr(&validated)
        );
        let planned = voxsoak(&["plan", &file]);
        assert_eq!(
            planned.status.code(),
            Some(exit::PASS),
            "{}",
            stderr(&planned)
        );
        let text = String::from_utf8_lossy(&planned.stdout);
        let stem = name.rsplit('/').next().unwrap();
        assert!(text.contains(stem), "{text}");
        if name.starts_with("faults/") && name != "faults/worker-stall" {
            assert!(!text.contains("none: no fault is injected"), "{text}");
        }
    }
}

/// `run --dry-run` prints the plan with its faults, where and when, and starts nothing.
#[test]
fn dry_run_prints_the_faults_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = voxsoak(&[
        "run",
        "scenarios/faults/process.toml",
        "--dry-run",
        "--out",
        path_str(&out),
        "--duration",
        "70s",
    ]);
    assert_eq!(
        output.status.code(),
        Some(exit::PASS),
        "{}",
        stderr(&output)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("SIGSTOP to the fleet process"), "{text}");
    assert!(
        text.contains("00:00:20 – 00:00:35  process_stall #1"),
        "{text}"
    );
    assert!(
        text.contains("00:01:00 – 00:01:05  process_kill #1"),
        "{text}"
    );
    assert!(text.contains("dry run: nothing was started"), "{text}");
    assert!(!out.exists(), "a dry run writes no run directory");
}

/// Each bad scenario exits 2 with `file:line:column: what was expected`.
#[test]
fn bad_scenarios_name_file_line_and_column() {
    let cases = [
        ("this is [not toml", 1, "", ""),
        (
            "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 5, over = \"5s\", bogus = 1 }]\n",
            4,
            "bogus",
            "",
        ),
        (
            "[target]\nfleet = \"sink\"\n[load]\nstages = [{ hold = \"-5s\" }]\n",
            4,
            "duration",
            "-5s",
        ),
        (
            "[target]\nfleet = \"sink\"\ncolour = \"red\"\n[load]\nstages = [{ hold = \"5s\" }]\n",
            3,
            "colour",
            "",
        ),
    ];
    for (toml, line, mention, also) in cases {
        let scenario = ScenarioFile::new(toml);
        let output = voxsoak(&["validate", path_str(&scenario.path)]);
        assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR), "{toml}");
        let message = stderr(&output);
        let prefix = format!("{}:{line}:", scenario.path.display());
        assert!(
            message.contains(&prefix),
            "expected {prefix} in {message:?} for {toml}"
        );
        assert!(
            message.contains(mention) && message.contains(also),
            "{message:?}"
        );
        // line:column: both numbers present.
        let rest = &message[message.find(&prefix).unwrap() + prefix.len()..];
        let column: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        assert!(
            !column.is_empty() && rest[column.len()..].starts_with(':'),
            "{message:?}"
        );
        // And `run` refuses it the same way, without running anything.
        let run = voxsoak(&[
            "run",
            path_str(&scenario.path),
            "--out",
            path_str(&scenario.out_dir()),
        ]);
        assert_eq!(run.status.code(), Some(exit::HARNESS_ERROR));
        assert!(!scenario.out_dir().join("summary.json").exists());
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let output = voxsoak(&["validate", "no/such/scenario.toml"]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert!(
        stderr(&output).contains("no/such/scenario.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreachable_target_exits_2_before_any_call() {
    // Bind then drop: the port is closed for the length of this test, almost surely.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scenario = ScenarioFile::new(&format!(
        "[target]\nstream_url = \"ws://127.0.0.1:{port}/stream\"\n[load]\nstages = [{{ ramp_to = 2, over = \"1s\" }}]\n"
    ));
    let output = voxsoak(&[
        "run",
        path_str(&scenario.path),
        "--out",
        path_str(&scenario.out_dir()),
        "--quiet",
    ]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert!(
        stderr(&output).contains("unreachable"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_host_outside_allow_hosts_is_refused() {
    let scenario = ScenarioFile::new(
        "[target]\nstream_url = \"ws://fleet.example.com/stream\"\n[load]\nstages = [{ hold = \"1s\" }]\n",
    );
    let output = voxsoak(&["validate", path_str(&scenario.path)]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert!(
        stderr(&output).contains("allow_hosts"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_cli_runs_in_process() {
    let scenario = ScenarioFile::new(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }, { hold = \"0s\" }]\n",
    );
    let cli = Cli::try_parse_from(["voxsoak", "validate", path_str(&scenario.path)]).unwrap();
    assert_eq!(
        voxsoak::cli::main(cli),
        exit::HARNESS_ERROR,
        "a zero hold is refused"
    );
    assert!(
        Cli::try_parse_from(["voxsoak", "run"]).is_err(),
        "run needs a scenario"
    );
    assert!(Cli::try_parse_from(["voxsoak", "run", "x.toml", "--duration", "soon"]).is_err());
}

/// SIGTERM mid-run: calls end, the sink the harness started is stopped, and the reports are
/// still written, with the verdict `aborted` (exit 2).
#[test]
fn sigterm_ends_the_run_and_still_writes_the_reports() {
    let scenario = sink_run_scenario();
    let mut child = start_until_calls_run(&scenario, &[]);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(exit::HARNESS_ERROR));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scenario.out_dir().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["verdict"], "aborted");
    assert!(summary["calls"]["started"].as_u64().unwrap() >= 1);
    let target = summary["target"].as_str().unwrap();
    let port = target
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/stream");
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "the sink the harness started is still listening ({target})"
    );
}

/// A sink run of 5 calls held for 10 minutes: ended by the test.
fn sink_run_scenario() -> ScenarioFile {
    ScenarioFile::new(&format!(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{{ ramp_to = 5, over = \"1s\" }}, {{ hold = \"10m\" }}]\n[calls]\nfixtures = [\"{}/*.wav\"]\n",
        crate::util::fixtures_dir().display()
    ))
}

/// Starts `voxsoak run` on `scenario` without the `remove` variables in its environment
/// and returns once it reports active calls; a watchdog kills it after 2 minutes.
fn start_until_calls_run(scenario: &ScenarioFile, remove: &[&str]) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut command = Command::new(voxsoak_exe());
    for name in remove {
        command.env_remove(name);
    }
    let mut child = command
        .args([
            "run",
            path_str(&scenario.path),
            "--out",
            path_str(&scenario.out_dir()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A watchdog: a regression must fail this test, not hang CI.
    let pid = child.id() as libc::pid_t;
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(120));
        // SAFETY: kill(2); if the run already ended the pid is gone or reaped (ESRCH).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    });
    // Not a terminal: progress comes as plain lines on stderr; wait until calls are running.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let running = lines.by_ref().map_while(Result::ok).find(|line| {
        line.split_whitespace()
            .skip_while(|word| *word != "active")
            .nth(1)
            .and_then(|count| count.parse::<u32>().ok())
            .is_some_and(|active| active > 0)
    });
    assert!(running.is_some(), "the run never reported active calls");
    // The rest of stderr is drained, so the run never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// The harness keeps to `procinfo::MALLOC_ARENAS` glibc malloc arenas: with one per
/// thread (glibc's default) its RSS rose on long runs with a flat live heap. glibc maps each
/// arena but the main one as a 64 MiB-aligned heap of 64 MiB (usable part, then the
/// reserved rest): those are counted in `/proc/PID/maps` while calls run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_run_keeps_to_two_malloc_arenas() {
    let scenario = sink_run_scenario();
    let mut child = start_until_calls_run(&scenario, &["MALLOC_ARENA_MAX", "GLIBC_TUNABLES"]);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
    // SAFETY: kill(2) on our own child: SIGTERM, so it stops the sink it started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
    let arena_heaps = glibc_arena_heaps(&maps);
    assert!(
        arena_heaps < voxsoak::procinfo::MALLOC_ARENAS as usize,
        "{arena_heaps} arenas besides the main one; the limit is {} in all:\n{maps}",
        voxsoak::procinfo::MALLOC_ARENAS
    );
}

/// Anonymous mappings that start on a 64 MiB boundary, read-write, and span 64 MiB with the
/// reserved (`---p`) mapping right after them: glibc's non-main arena heaps.
fn glibc_arena_heaps(maps: &str) -> usize {
    const HEAP: u64 = 64 << 20;
    let rows: Vec<(u64, u64, &str, bool)> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let named = fields.nth(3).is_some();
            let hex = |text| u64::from_str_radix(text, 16).ok();
            Some((hex(start)?, hex(end)?, perms, named))
        })
        .collect();
    rows.iter()
        .enumerate()
        .filter(|(index, (start, end, perms, named))| {
            let reserved_end = rows
                .get(index + 1)
                .filter(|next| next.0 == *end && next.2 == "---p" && !next.3)
                .map_or(*end, |next| next.1);
            !named && *perms == "rw-p" && start % HEAP == 0 && reserved_end - start == HEAP
        })
        .count()
}

/// `--duration` cuts a long timeline short; `--seed` replaces the scenario's.
#[test]
fn duration_and_seed_override_the_scenario() {
    let scenario = ScenarioFile::new(&format!(
        "seed = 5\n[target]\nfleet = \"sink\"\n[load]\nstages = [{{ ramp_to = 3, over = \"1s\" }}, {{ hold = \"1h\" }}]\n[calls]\nfixtures = [\"{}/*.wav\"]\n[[scripts]]\nname = \"one\"\nturns = 1\n",
        crate::util::fixtures_dir().display()
    ));
    let output = voxsoak(&[
        "run",
        path_str(&scenario.path),
        "--out",
        path_str(&scenario.out_dir()),
        "--duration",
        "3s",
        "--seed",
        "99",
        "--quiet",
    ]);
    assert_eq!(
        output.status.code(),
        Some(exit::PASS),
        "{}",
        stderr(&output)
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scenario.out_dir().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["seed"], 99);
    assert!(
        summary["wall_s"].as_f64().unwrap() < 60.0,
        "an hour-long hold was cut at 3 s: {summary}"
    );
    assert!(summary["calls"]["completed"].as_u64().unwrap() >= 3);
    // The run directory keeps the harness's own log: its steps, at info, with no flag.
    let log = std::fs::read_to_string(scenario.out_dir().join("harness.log")).unwrap();
    for step in [
        "run prepared",
        "target ready",
        "load started",
        "load done",
        "graded",
    ] {
        assert!(
            log.contains(step),
            "{step:?} missing from harness.log:\n{log}"
        );
    }
    assert!(
        !stderr(&output).contains("run prepared"),
        "stderr shows warnings only by default: {}",
        stderr(&output)
    );
}

/// `--log-level` takes a level or targets with levels, and refuses anything else before
/// anything runs.
#[test]
fn log_level_is_checked() {
    let output = voxsoak(&["validate", "scenarios/smoke.toml", "--log-level", "loud"]);
    assert_exit(&output, exit::HARNESS_ERROR);
    assert!(
        stderr(&output).contains("expected a level"),
        "{}",
        stderr(&output)
    );
    let output = voxsoak(&[
        "--log-level",
        "warn,voxsoak=debug",
        "validate",
        "scenarios/smoke.toml",
    ]);
    assert_exit(&output, exit::PASS);
}

/// `--fleet-bug` switches bugs on in the reference fleet the harness starts; with any
/// other target it is refused before anything runs.
#[test]
fn fleet_bugs_need_the_embedded_fleet() {
    let scenario = ScenarioFile::new(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n",
    );
    let output = voxsoak(&[
        "run",
        path_str(&scenario.path),
        "--out",
        path_str(&scenario.out_dir()),
        "--quiet",
        "--fleet-bug",
        "no-backoff",
    ]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert_eq!(
        stderr(&output).trim(),
        format!(
            r#"voxsoak: --fleet-bug needs [target] fleet = "embedded"; {} targets fleet = "sink""#,
            scenario.path.display()
        )
    );
    assert!(!scenario.out_dir().exists(), "nothing ran");

    // In-process too, and an unknown bug name is refused by the command line itself.
    let cli = Cli::try_parse_from([
        "voxsoak",
        "run",
        path_str(&scenario.path),
        "--fleet-bug",
        "temp-leak",
    ])
    .unwrap();
    assert_eq!(voxsoak::cli::main(cli), exit::HARNESS_ERROR);
    let error = Cli::try_parse_from(["voxsoak", "run", "x.toml", "--fleet-bug", "no-such-bug"])
        .unwrap_err();
    assert!(error.to_string().contains("no-backoff"), "{error}");
}

#[test]
fn embedded_targets_validate_and_plan() {
    let scenario = ScenarioFile::new(
        "[target]\nfleet = \"embedded\"\nbugs = [\"no-backoff\", \"long-transactions\"]\n\
         database_url_env = \"VOXSOAK_PG\"\ndb_pool_size = 5\norders = 100000\nworkers = 4\n\
         stall_after = \"3s\"\nstall_after_calls = 10\nmemory_limit = \"512MiB\"\n\
         temp_dir_budget = \"64MiB\"\n[load]\nstages = [{ ramp_to = 3, over = \"5s\" }]\n",
    );
    let validated = voxsoak(&["validate", path_str(&scenario.path)]);
    assert_eq!(
        validated.status.code(),
        Some(exit::PASS),
        "{}",
        stderr(&validated)
    );
    let planned = voxsoak(&["plan", path_str(&scenario.path)]);
    assert_eq!(planned.status.code(), Some(exit::PASS));
    let plan = String::from_utf8_lossy(&planned.stdout);
    for expected in [
        "bugs               no-backoff, long-transactions",
        "database           PostgreSQL from $VOXSOAK_PG",
        "db pool size       5",
        "memory limit       512.0 MiB",
    ] {
        assert!(plan.contains(expected), "missing {expected:?} in\n{plan}");
    }

    let bad = ScenarioFile::new(
        "[target]\nfleet = \"embedded\"\nbugs = [\"no-backoff\", \"no-backof\"]\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n",
    );
    let output = voxsoak(&["validate", path_str(&bad.path)]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert_eq!(
        stderr(&output).trim(),
        format!(
            r#"{}:3:23: unknown bug "no-backof"; expected one of no-backoff, unvalidated-tool-params, temp-leak, long-transactions, no-healer, silent-stall"#,
            bad.path.display()
        )
    );
}

/// The exit code is `code`; stderr is shown when it is not.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", stderr(output));
}

/// `path:line:column:` at the start of one of `output`'s stderr lines, for each position.
fn assert_positions(output: &Output, path: &Path, positions: &[(usize, usize)]) {
    let text = stderr(output);
    for (line, column) in positions {
        let prefix = format!("{}:{line}:{column}: ", path.display());
        assert!(
            text.lines().any(|found| found.starts_with(&prefix)),
            "no line starting {prefix:?} in\n{text}"
        );
    }
}

/// `voxsoak run SCENARIO --out OUT --quiet` with `env` added to its environment.
fn run_quietly(scenario: &ScenarioFile, env: &[(&str, &str)]) -> Output {
    Command::new(voxsoak_exe())
        .args([
            "run",
            path_str(&scenario.path),
            "--out",
            path_str(&scenario.out_dir()),
            "--quiet",
        ])
        .envs(env.iter().copied())
        .output()
        .expect("run voxsoak")
}

/// `run` refuses the scenario before anything starts: exit 2, no run directory.
fn assert_run_refused(scenario: &ScenarioFile, env: &[(&str, &str)]) -> Output {
    let output = run_quietly(scenario, env);
    assert_exit(&output, exit::HARNESS_ERROR);
    assert!(
        !scenario.out_dir().exists(),
        "nothing may start, not even the run directory"
    );
    output
}

#[test]
fn fixtures_that_cannot_be_played_are_refused_at_their_entries() {
    let scenario = ScenarioFile::new(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"2s\" }]\n\
         [calls]\nfixtures = [\n  \"fixtures/notes.wav\",\n  \"fixtures/greetings\",\n  \
         \"fixtures/huge.wav\",\n  \"fixtures/none/*.wav\",\n]\n",
    );
    let fixtures = scenario.dir.path().join("fixtures");
    std::fs::create_dir_all(fixtures.join("greetings")).unwrap();
    std::fs::write(fixtures.join("notes.wav"), "a shopping list").unwrap();
    // 200 MB, sparse: refused by its size before a byte of it is read.
    std::fs::File::create(fixtures.join("huge.wav"))
        .unwrap()
        .set_len(200_000_000)
        .unwrap();
    let output = voxsoak(&["validate", path_str(&scenario.path)]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert_positions(&output, &scenario.path, &[(7, 3), (8, 3), (9, 3), (10, 3)]);
    let text = stderr(&output);
    for expected in [
        "notes.wav is not a WAV file",
        "greetings is a directory, not a WAV file",
        "huge.wav is 190.7 MiB, over the limit of 50.0 MiB for a fixture",
        r#"fixture glob "fixtures/none/*.wav" matches no files"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let run = assert_run_refused(&scenario, &[]);
    assert_positions(&run, &scenario.path, &[(7, 3), (8, 3), (9, 3), (10, 3)]);
}

#[test]
fn a_fault_never_injected_is_a_warning_with_its_position() {
    let scenario = ScenarioFile::new(
        "[target]\nfleet = \"embedded\"\n[load]\nstages = [{ ramp_to = 2, over = \"10s\" }]\n\
         [[faults]]\nkind = \"tts_429\"\nat = \"10h\"\nfor = \"1m\"\n",
    );
    let warning = format!(
        "{}:5:1: warning: fault \"tts_429\" is never injected in a run of 10s: it starts at 10h, after the run ends",
        scenario.path.display()
    );
    for args in [
        vec!["validate", path_str(&scenario.path)],
        vec!["plan", path_str(&scenario.path)],
        vec!["run", path_str(&scenario.path), "--dry-run"],
    ] {
        let output = voxsoak(&args);
        assert_eq!(
            output.status.code(),
            Some(exit::PASS),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).lines().any(|line| line == warning),
            "{args:?}: expected {warning:?} in\n{}",
            stderr(&output)
        );
    }
    // With --duration 11h the fault is injected, and nothing is said.
    let longer = voxsoak(&[
        "run",
        path_str(&scenario.path),
        "--dry-run",
        "--duration",
        "11h",
    ]);
    assert!(!stderr(&longer).contains("warning"), "{}", stderr(&longer));
}

#[test]
fn a_run_prints_the_warnings_before_it_starts() {
    let scenario = ScenarioFile::new(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\n\
         [calls]\nturn_timeout = \"3s\"\n[[scripts]]\nname = \"hello\"\nturns = 1\n\
         [[faults]]\nkind = \"process_stall\"\nat = \"10h\"\nfor = \"1s\"\n",
    );
    let output = run_quietly(&scenario, &[]);
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "{}:10:1: warning: fault \"process_stall\" is never injected",
            scenario.path.display()
        )),
        "{text}"
    );
    // A warning changes nothing about the verdict.
    assert!(
        scenario.out_dir().join("summary.json").exists(),
        "the run went ahead: {text}"
    );
}

#[test]
fn every_unknown_key_is_reported_with_its_position() {
    let scenario = ScenarioFile::new(
        "[target]\nfleet = \"sink\"\ncolour = \"red\"\n[load]\n\
         stages = [{ ramp_to = 1, over = \"1s\", jitter = \"1s\" }]\n\
         [calls]\nturn_timout = \"5s\"\n",
    );
    let output = voxsoak(&["validate", path_str(&scenario.path)]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert_positions(&output, &scenario.path, &[(3, 1), (5, 39), (7, 1)]);
    let text = stderr(&output);
    for key in ["`colour`", "`jitter`", "`turn_timout`"] {
        assert!(text.contains(key), "missing {key} in\n{text}");
    }
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn invalid_utf8_is_reported_at_its_position() {
    let scenario = ScenarioFile::new("");
    std::fs::write(
        &scenario.path,
        b"[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"1s\" }]\nname = \"caf\xe9\"\n",
    )
    .unwrap();
    let output = voxsoak(&["validate", path_str(&scenario.path)]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert_positions(&output, &scenario.path, &[(5, 12)]);
    assert!(stderr(&output).contains("invalid UTF-8 (byte 0xE9)"));
}

#[test]
fn a_directory_given_as_log_file_is_said_to_be_one() {
    let scenario = ScenarioFile::new("");
    std::fs::write(
        &scenario.path,
        format!(
            "[target]\nstream_url = \"ws://127.0.0.1:9/stream\"\n[load]\nstages = [{{ hold = \"1s\" }}]\n\
             [observe]\nlog_file = {:?}\n",
            path_str(scenario.dir.path())
        ),
    )
    .unwrap();
    let output = voxsoak(&["validate", path_str(&scenario.path)]);
    assert_eq!(output.status.code(), Some(exit::HARNESS_ERROR));
    assert_positions(&output, &scenario.path, &[(6, 12)]);
    let text = stderr(&output);
    assert!(text.contains("is a directory; expected a file"), "{text}");
    assert!(!text.contains("does not exist"), "{text}");
}

#[test]
fn a_database_outside_allow_hosts_is_refused_before_anything_starts() {
    const VARIABLE: &str = "VOXSOAK_TEST_REMOTE_DATABASE_URL";
    const URL: &str = "postgres://fleet:hunter2@db.example.com:5432/orders";
    let embedded = ScenarioFile::new(&format!(
        "[target]\nfleet = \"embedded\"\ndatabase_url_env = \"{VARIABLE}\"\n\
         [load]\nstages = [{{ ramp_to = 1, over = \"1s\" }}]\n"
    ));
    let run = assert_run_refused(&embedded, &[(VARIABLE, URL)]);
    let text = stderr(&run);
    assert!(
        text.contains(&format!(
            "the database URL in {VARIABLE} (named by [target] database_url_env) connects to db.example.com, which is not in [target] allow_hosts"
        )),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "the password was printed: {text}"
    );

    // `validate` checks it when the variable is set, and lets it be when it is not.
    let validate = |env: &[(&str, &str)], scenario: &ScenarioFile| {
        Command::new(voxsoak_exe())
            .args(["validate", path_str(&scenario.path)])
            .env_remove(VARIABLE)
            .envs(env.iter().copied())
            .output()
            .expect("run voxsoak")
    };
    let set = validate(&[(VARIABLE, URL)], &embedded);
    assert_eq!(set.status.code(), Some(exit::HARNESS_ERROR));
    assert!(!stderr(&set).contains("hunter2"));
    assert_eq!(validate(&[], &embedded).status.code(), Some(exit::PASS));

    // A fault's database is held to the same rule, also when the URL hides the host in
    // its query; naming the host in allow_hosts lets it through.
    let fault = |allow: &str| {
        ScenarioFile::new(&format!(
            "[target]\nstream_url = \"ws://127.0.0.1:9/stream\"\n{allow}\
             [load]\nstages = [{{ ramp_to = 1, over = \"1m\" }}]\n\
             [[faults]]\nkind = \"db_pool_exhaustion\"\ndatabase_url_env = \"{VARIABLE}\"\nat = \"5s\"\nfor = \"10s\"\n"
        ))
    };
    let hidden = "postgres://fleet:hunter2@127.0.0.1/orders?host=db.example.com";
    let refused = validate(&[(VARIABLE, hidden)], &fault(""));
    assert_exit(&refused, exit::HARNESS_ERROR);
    assert!(
        stderr(&refused).contains(&format!(
            "the database URL in {VARIABLE} (named by database_url_env of fault \"db_pool_exhaustion\") connects to db.example.com"
        )),
        "{}",
        stderr(&refused)
    );
    let allowed = validate(
        &[(VARIABLE, hidden)],
        &fault("allow_hosts = [\"127.0.0.1\", \"db.example.com\"]\n"),
    );
    assert_exit(&allowed, exit::PASS);
}

/// A scenario composed with `include`: `validate` and `plan` take it, a problem in the
/// included file is reported at that file's line and column, and a run keeps the composed
/// scenario in its run directory, which `report` grades and `validate` takes.
#[test]
fn composed_scenarios_validate_plan_run_and_point_into_the_included_file() {
    let scenario = ScenarioFile::new(
        "include = [\"../shared/fleet.toml\"]\n\
         [load]\nstages = [{ ramp_to = 2, over = \"1s\" }, { hold = \"2s\" }]\n",
    );
    // The soak lives in soaks/, the fleet file it shares in shared/.
    let soak = scenario.dir.path().join("soaks/soak.toml");
    std::fs::create_dir_all(soak.parent().unwrap()).unwrap();
    std::fs::rename(&scenario.path, &soak).unwrap();
    let fleet = scenario.dir.path().join("shared/fleet.toml");
    std::fs::create_dir_all(fleet.parent().unwrap()).unwrap();
    let fleet_text = "name = \"composed\"\n[target]\nfleet = \"sink\"\n\
                      [[scripts]]\nname = \"one\"\nturns = 1\n";
    std::fs::write(&fleet, fleet_text).unwrap();
    let validated = voxsoak(&["validate", path_str(&soak)]);
    assert_exit(&validated, exit::PASS);
    let planned = voxsoak(&["plan", path_str(&soak)]);
    assert_exit(&planned, exit::PASS);
    let plan = String::from_utf8_lossy(&planned.stdout);
    let included = scenario.dir.path().join("soaks/../shared/fleet.toml");
    assert!(
        plan.lines()
            .any(|line| line.contains("includes") && line.ends_with(path_str(&included))),
        "{plan}"
    );

    let out = scenario.out_dir();
    let run = voxsoak(&["run", path_str(&soak), "--quiet", "--out", path_str(&out)]);
    assert_exit(&run, exit::PASS);
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let started: serde_json::Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    assert_eq!(
        started["scenario_files"],
        serde_json::json!([path_str(&soak), path_str(&included)])
    );
    let kept = out.join("scenario.toml");
    let validated = voxsoak(&["validate", path_str(&kept)]);
    assert_exit(&validated, exit::PASS);
    assert!(
        String::from_utf8_lossy(&validated.stdout).contains("ok (composed, 1 script(s))"),
        "{}",
        String::from_utf8_lossy(&validated.stdout)
    );
    assert_exit(&voxsoak(&["report", path_str(&out)]), exit::PASS);

    // A mistake in the fleet file is reported there, and `run` refuses it.
    std::fs::write(
        &fleet,
        fleet_text.replace("turns = 1", "turns = 1\nturnz = 2"),
    )
    .unwrap();
    let refused = voxsoak(&["validate", path_str(&soak)]);
    assert_exit(&refused, exit::HARNESS_ERROR);
    assert_positions(&refused, &included, &[(7, 1)]);
    assert!(
        stderr(&refused).contains("unknown field `turnz`"),
        "{}",
        stderr(&refused)
    );
    assert_exit(&voxsoak(&["plan", path_str(&soak)]), exit::HARNESS_ERROR);
}

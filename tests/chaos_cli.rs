//! `voxsoak chaos KIND --for D`: one fault by hand against things already running (a
//! directory, a process, a SQLite database, a client of the stand-in), end to end with the
//! real binary, and the subcommand's parsing in-process.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use sqlx::{Connection, SqliteConnection};
use voxsoak::cli::{Cli, Command as Subcommand};
use voxsoak::exit;

use crate::util::voxsoak_exe;

/// Longest a `voxsoak chaos --for 3s` may take, start to exit.
const SHORT_RUN_LIMIT: Duration = Duration::from_secs(30);

fn chaos(args: &[&str]) -> Command {
    let mut command = Command::new(voxsoak_exe());
    command
        .arg("chaos")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn spawn(args: &[&str]) -> Child {
    chaos(args).spawn().expect("start voxsoak chaos")
}

/// Waits for `child` to exit within `limit` (killing it if it does not) and returns its
/// output.
fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("poll child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "voxsoak chaos did not exit within {limit:?}\nstdout: {}\nstderr: {}",
                text(&output.stdout),
                text(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Polls `condition` every 20 ms until it holds, or panics after `limit`.
fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The scheduler state of a process (`T` stopped, `S` sleeping, `R` running).
fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process exists");
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.trim_start().chars().next().unwrap()
}

/// A free port on loopback (bound, then released for the command to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn temp_file_leak_writes_files_during_the_run_and_removes_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&[
        "temp_file_leak",
        "--dir",
        path_str(dir.path()),
        "--for",
        "3s",
        "--set",
        "file_size=64KiB",
        "--set",
        "rate=1MiB/s",
    ]);
    wait_for("leaked files appear", Duration::from_secs(10), || {
        files_in(dir.path()) >= 2
    });
    let output = finish(child, SHORT_RUN_LIMIT);
    assert_eq!(
        output.status.code(),
        Some(exit::PASS),
        "{}",
        describe(&output)
    );
    assert_eq!(files_in(dir.path()), 0, "every leaked file is removed");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("temp_file_leak injected into"), "{stdout}");
    assert!(
        stdout.contains("cleared: stopped writing after"),
        "{stdout}"
    );
    assert!(stdout.contains("removed "), "{stdout}");
    // Not a terminal: plain progress lines on stderr.
    let stderr = text(&output.stderr);
    assert!(stderr.contains(" / 00:00:03  in effect "), "{stderr}");
}

#[test]
fn process_stall_stops_the_process_during_and_resumes_it_after() {
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("start sleep");
    let pid = sleeper.id();
    let pid_text = pid.to_string();
    let child = spawn(&["process_stall", "--pid", &pid_text, "--for", "3s"]);
    wait_for("the process is stopped", Duration::from_secs(10), || {
        process_state(pid) == 'T'
    });
    let output = finish(child, SHORT_RUN_LIMIT);
    let state = process_state(pid);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(
        output.status.code(),
        Some(exit::PASS),
        "{}",
        describe(&output)
    );
    assert_ne!(state, 'T', "the process runs again after the stall");
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!("pid {pid} resumed (SIGCONT)")),
        "{stdout}"
    );
}

#[test]
fn sigterm_mid_way_undoes_the_fault_and_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&[
        "temp_file_leak",
        "--dir",
        path_str(dir.path()),
        "--for",
        "5m",
        "--set",
        "file_size=64KiB",
        "--set",
        "rate=1MiB/s",
    ]);
    wait_for("leaked files appear", Duration::from_secs(10), || {
        files_in(dir.path()) >= 2
    });
    // Let one confirmation see them, then stop it as a supervisor or a CI timeout would.
    std::thread::sleep(Duration::from_millis(1200));
    let signalled = Instant::now();
    // SAFETY: kill(2) with our own child's pid and SIGTERM.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let output = finish(child, Duration::from_secs(10));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        signalled.elapsed()
    );
    assert_eq!(
        output.status.code(),
        Some(exit::PASS),
        "{}",
        describe(&output)
    );
    assert_eq!(files_in(dir.path()), 0, "every leaked file is removed");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("stopped early"), "{stdout}");
    assert!(stdout.contains("cleared: "), "{stdout}");
}

/// Whether a writer can take the database's write lock right now (no busy wait).
async fn write_lock_free(url: &str) -> bool {
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
    let mut connection = SqliteConnection::connect_with(&options.busy_timeout(Duration::ZERO))
        .await
        .unwrap();
    let free = sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut connection)
        .await
        .is_ok();
    if free {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut connection)
            .await
            .unwrap();
    }
    let _ = connection.close().await;
    free
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_pool_exhaustion_holds_the_sqlite_write_lock_and_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fleet.db").display());
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
    let mut connection = SqliteConnection::connect_with(&options.create_if_missing(true))
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();

    let child = chaos(&[
        "db_pool_exhaustion",
        "--database-url-env",
        "VOXSOAK_TEST_FLEET_DB",
        "--for",
        "3s",
    ])
    .env("VOXSOAK_TEST_FLEET_DB", &url)
    .spawn()
    .expect("start voxsoak chaos");
    let deadline = Instant::now() + Duration::from_secs(10);
    while write_lock_free(&url).await {
        assert!(Instant::now() < deadline, "the write lock was never taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = tokio::task::spawn_blocking(move || finish(child, SHORT_RUN_LIMIT))
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(exit::PASS),
        "{}",
        describe(&output)
    );
    assert!(
        write_lock_free(&url).await,
        "the write lock is free afterwards"
    );
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!all.contains(&url), "the URL is never printed: {all}");
}

/// POSTs one speech request; the status, or None when nothing answers yet.
async fn speak(http: &reqwest::Client, port: u16) -> Option<u16> {
    http.post(format!("http://127.0.0.1:{port}/v1/audio/speech"))
        .json(&serde_json::json!({
            "model": "tts-1",
            "input": "Your order has shipped.",
            "voice": "alloy",
            "response_format": "wav",
        }))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|response| response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_429_is_served_on_the_listen_address_and_confirmed_by_the_calls() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = spawn(&["tts_429", "--listen", &listen, "--for", "3s"]);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut statuses = Vec::new();
    // Call through the window, as a fleet pointed at the stand-in would.
    while Instant::now() < deadline {
        match speak(&http, port).await {
            Some(status) => statuses.push(status),
            None if statuses.is_empty() => {}
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = tokio::task::spawn_blocking(move || finish(child, SHORT_RUN_LIMIT))
        .await
        .unwrap();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        output.status.code(),
        Some(exit::PASS),
        "{}",
        describe(&output)
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "TTS_BASE_URL must already point at http://{listen}/v1"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("the TTS stand-in answers normally again"),
        "{stdout}"
    );
    assert!(
        speak(&http, port).await.is_none(),
        "the stand-in is stopped"
    );
}

#[test]
fn a_fault_nobody_meets_never_took_effect_and_exits_1() {
    let listen = format!("127.0.0.1:{}", free_port());
    let output = finish(
        spawn(&["tts_429", "--listen", &listen, "--for", "2s"]),
        SHORT_RUN_LIMIT,
    );
    assert_eq!(
        output.status.code(),
        Some(exit::FAILED),
        "{}",
        describe(&output)
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains("never took effect"), "{stdout}");
    assert!(
        text(&output.stderr).contains("NOT in effect  no TTS request reached the stand-in"),
        "{}",
        describe(&output)
    );
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let dir = path_str(dir.path());
    let cases: [(&[&str], &str); 7] = [
        (
            &["tts_4299", "--for", "3s"],
            "voxsoak chaos: KIND: unknown fault kind \"tts_4299\"",
        ),
        (
            &[
                "db_pool_exhaustion",
                "--database-url-env",
                "PATH",
                "--for",
                "3s",
                "--set",
                "holders=0",
            ],
            "voxsoak chaos: --set holders: holders must be at least 1, found 0",
        ),
        (
            &["process_stall", "--for", "3s"],
            "voxsoak chaos: --pid: process_stall needs --pid N",
        ),
        (
            &["temp_file_leak", "--for", "3s"],
            "voxsoak chaos: --dir: temp_file_leak needs --dir DIR",
        ),
        (
            &["llm_error", "--for", "3s"],
            "voxsoak chaos: --listen: llm_error needs --listen 127.0.0.1:PORT",
        ),
        (
            &[
                "temp_file_leak",
                "--dir",
                dir,
                "--for",
                "3s",
                "--set",
                "rate",
            ],
            "voxsoak chaos: --set: expected key=value",
        ),
        (&["temp_file_leak", "--dir", dir, "--for", "soon"], "--for"),
    ];
    for (args, expected) in cases {
        let output = finish(spawn(args), SHORT_RUN_LIMIT);
        assert_eq!(
            output.status.code(),
            Some(exit::HARNESS_ERROR),
            "{args:?}: {}",
            describe(&output)
        );
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("voxsoak chaos:1:"),
            "no synthetic line:column: {stderr}"
        );
    }
}

#[test]
fn chaos_parses_in_process() {
    let cli = Cli::try_parse_from([
        "voxsoak",
        "chaos",
        "proxy",
        "--for",
        "5m",
        "--set",
        "upstream=db.internal:5432",
        "--set",
        "listen=127.0.0.1:15432",
        "--set",
        "latency=200ms",
        "--allow-host",
        "db.internal",
        "--seed",
        "9",
    ])
    .unwrap();
    let Subcommand::Chaos(args) = cli.command else {
        panic!("not chaos: {cli:?}");
    };
    assert_eq!(args.kind, "proxy");
    assert_eq!(args.duration, Duration::from_secs(300));
    assert_eq!(
        args.settings,
        [
            "upstream=db.internal:5432",
            "listen=127.0.0.1:15432",
            "latency=200ms"
        ]
    );
    assert_eq!(args.allow_hosts, ["db.internal"]);
    assert_eq!(args.seed, 9);
    assert_eq!(args.pid, None);

    let cli = Cli::try_parse_from([
        "voxsoak",
        "chaos",
        "process_kill",
        "--pid",
        "42",
        "--for",
        "1s",
    ])
    .unwrap();
    let Subcommand::Chaos(args) = cli.command else {
        panic!("not chaos");
    };
    assert_eq!((args.pid, args.seed), (Some(42), 1));

    // --for is required and must be a duration.
    assert!(Cli::try_parse_from(["voxsoak", "chaos", "process_kill", "--pid", "42"]).is_err());
    assert!(Cli::try_parse_from(["voxsoak", "chaos", "tts_429", "--for", "5"]).is_err());
    assert!(
        Cli::try_parse_from([
            "voxsoak",
            "chaos",
            "process_kill",
            "--pid",
            "-1",
            "--for",
            "1s"
        ])
        .is_err()
    );

    // Checked before anything starts: the in-process run refuses it at once.
    let cli = Cli::try_parse_from(["voxsoak", "chaos", "temp_file_leak", "--for", "1s"]).unwrap();
    assert_eq!(voxsoak::cli::main(cli), exit::HARNESS_ERROR);

    // --help lists the kinds and what each needs.
    let help = Cli::try_parse_from(["voxsoak", "chaos", "--help"])
        .unwrap_err()
        .to_string();
    for needs in [
        "tts_429",
        "process_kill",
        "--database-url-env NAME",
        "--set upstream=HOST:PORT",
        "not restarted",
        "Exit status",
    ] {
        assert!(help.contains(needs), "{needs}: {help}");
    }
}

/// `voxsoak` (not `chaos`) with `args`, its output collected.
fn voxsoak(args: &[&str]) -> Output {
    Command::new(voxsoak_exe())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run voxsoak")
}

/// By hand, `--dir` declares the dir writable, but never a system directory, however it is
/// reached: refused before anything is written, exit 2.
#[test]
fn temp_file_leak_by_hand_refuses_system_dirs_however_reached() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("etc-link");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let up = "../".repeat(40);
    for target in ["/etc", "/", "/usr/lib", path_str(&link), up.as_str()] {
        let output = finish(
            spawn(&[
                "temp_file_leak",
                "--dir",
                target,
                "--for",
                "3s",
                "--set",
                "file_size=64KiB",
            ]),
            SHORT_RUN_LIMIT,
        );
        assert_eq!(
            output.status.code(),
            Some(exit::HARNESS_ERROR),
            "{target}: {}",
            describe(&output)
        );
        let stderr = text(&output.stderr);
        assert!(
            stderr.starts_with("voxsoak chaos: --dir: ")
                && stderr.contains("system directory")
                && stderr.contains("a fault never writes there"),
            "{target}: {stderr}"
        );
        assert!(
            !text(&output.stdout).contains("injected"),
            "{target}: {}",
            describe(&output)
        );
    }
    let leaked = std::fs::read_dir("/etc").unwrap().flatten().any(|entry| {
        entry
            .file_name()
            .to_string_lossy()
            .starts_with("voxsoak-leak-")
    });
    assert!(!leaked, "nothing was written into /etc");
}

/// More than the 10 GiB ceiling by hand needs `--allow-large-leaks`; with it the leak runs
/// (and stops at its free-space floor, here above what is free, so it writes nothing and
/// the command says the fault never took effect: exit 1).
#[test]
fn a_large_leak_by_hand_needs_its_flag_and_still_stops_at_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "temp_file_leak",
        "--dir",
        path_str(dir.path()),
        "--for",
        "2s",
        "--set",
        "max_total=1000TiB",
        "--set",
        "file_size=1GiB",
        "--set",
        "min_free=100%",
    ];
    let refused = finish(spawn(&args), SHORT_RUN_LIMIT);
    assert_eq!(
        refused.status.code(),
        Some(exit::HARNESS_ERROR),
        "{}",
        describe(&refused)
    );
    assert!(
        text(&refused.stderr).contains(
            "voxsoak chaos: --set max_total: max_total (1000.0 TiB) is over the 10.0 GiB ceiling for leaked files; add --allow-large-leaks"
        ),
        "{}",
        describe(&refused)
    );
    let mut allowed = args.to_vec();
    allowed.push("--allow-large-leaks");
    let output = finish(spawn(&allowed), SHORT_RUN_LIMIT);
    assert_eq!(
        output.status.code(),
        Some(exit::FAILED),
        "{}",
        describe(&output)
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "into {} (at most 1000.0 TiB, over the 10.0 GiB ceiling by allow_large_leaks; stops before free space there falls below 100% of the filesystem)",
            dir.path().canonicalize().unwrap().display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("wrote no file into"), "{stdout}");
    assert_eq!(files_in(dir.path()), 0);
}

/// `voxsoak validate` refuses every leak that would write outside the dirs the scenario
/// declares or into a system directory, each at its position, all at once (exit 2); and
/// with the opt-in a leak over the ceiling validates and `voxsoak plan` shows where it
/// writes and its caps.
#[test]
fn validate_refuses_leaks_outside_declared_dirs_with_their_positions() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let allowed = root_path.join("a/b/c");
    std::fs::create_dir_all(&allowed).unwrap();
    std::os::unix::fs::symlink("/etc", allowed.join("etc-link")).unwrap();
    let leak = |dir: &str, extra: &str| {
        format!("[[faults]]\nkind = \"temp_file_leak\"\nfor = \"1m\"\ndir = \"{dir}\"\n{extra}")
    };
    let head = format!(
        "[target]\nstream_url = \"ws://127.0.0.1:9/stream\"\n[load]\nstages = [{{ ramp_to = 1, over = \"1s\" }}, {{ hold = \"10m\" }}]\n[chaos]\nwritable_dirs = [\"{}\"]\n",
        allowed.display()
    );
    let bad = [
        leak("/etc", ""),
        leak("/", ""),
        leak(&format!("{}/../../..", allowed.display()), ""),
        leak(&format!("{}/etc-link", allowed.display()), ""),
        leak(
            path_str(&allowed),
            "max_total = \"1000TiB\"\nfile_size = \"1GiB\"\n",
        ),
    ];
    let file = root.path().join("leaks.toml");
    std::fs::write(&file, format!("{head}{}", bad.concat())).unwrap();
    let output = voxsoak(&["validate", path_str(&file)]);
    assert_eq!(
        output.status.code(),
        Some(exit::HARNESS_ERROR),
        "{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let at = |line: usize, column: usize| format!("{}:{line}:{column}: ", file.display());
    let expected = [
        (at(10, 7), "the system directory /etc"),
        (at(14, 7), "the system directory /"),
        (at(18, 7), "outside every dir a fault may write into"),
        (at(22, 7), "the system directory /etc"),
        (at(27, 13), "over the 10.0 GiB ceiling"),
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, (position, message)) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(&position) && line.contains(message),
            "{line:?} should start {position:?} and say {message:?}"
        );
    }

    let large = root.path().join("large.toml");
    std::fs::write(
        &large,
        format!(
            "{head}allow_large_leaks = true\n{}",
            leak(
                &format!("{}/x/../audio", allowed.display()),
                "max_total = \"1000TiB\"\nfile_size = \"1GiB\"\n"
            )
        ),
    )
    .unwrap();
    let validated = voxsoak(&["validate", path_str(&large)]);
    assert_eq!(
        validated.status.code(),
        Some(exit::PASS),
        "{}",
        describe(&validated)
    );
    let plan = voxsoak(&["plan", path_str(&large)]);
    assert_eq!(plan.status.code(), Some(exit::PASS), "{}", describe(&plan));
    let plan = text(&plan.stdout);
    assert!(
        plan.contains(&format!(
            "writes 1.0 GiB files at 4.0 MiB/s into {}/audio (within {}) (at most 1000.0 TiB, over the 10.0 GiB ceiling by allow_large_leaks; stops before free space there falls below 5% of the filesystem or 2.0 GiB, whichever is larger)",
            allowed.display(),
            allowed.display()
        )),
        "{plan}"
    );
}

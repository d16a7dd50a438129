//! A harness that leaves nothing behind: the fleets it starts die with it (also after a
//! `kill -9`), `voxsoak clean` and the next run remove what a killed run left, and signals
//! end a run the way the README says (SIGHUP like SIGTERM; a second Ctrl-C at once, with
//! every fault still undone). End to end, with the real binary as a subprocess.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::voxsoak_exe;

/// Polls `condition` every 50 ms until it holds; panics after `limit`.
fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `limit` for `child` to exit; kills it (and fails) if it does not.
fn wait_exit(child: &mut Child, what: &str, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a positive pid of a process this test started.
    let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal})");
}

/// Whether a process with this pid exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..].trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// Reads lines from a child's stdout until one starts with `prefix`; returns the rest of
/// it, or None when the pipe closes first.
fn line_after(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    prefix: &str,
) -> Option<String> {
    lines
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
}

/// `voxsoak fleet` or `voxsoak sink` with both pipes to this test; returns the child and its
/// stdout, read up to the last line it prints at start.
fn start_server(subcommand: &str) -> (Child, BufReader<ChildStdout>) {
    let mut command = Command::new(voxsoak_exe());
    command.arg(subcommand).args(["--listen", "127.0.0.1:0"]);
    if subcommand == "fleet" {
        command.args(["--orders", "200"]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start voxsoak");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // The fleet prints a few lines after its address; the last says where its audio goes.
    let last = if subcommand == "fleet" {
        "voxsoak fleet: audio temp dir "
    } else {
        "voxsoak sink listening on "
    };
    let mut lines = (&mut stdout).lines();
    assert!(
        line_after(&mut lines, last).is_some(),
        "voxsoak {subcommand} never printed {last:?}"
    );
    (child, stdout)
}

/// Run orphaned by a harness that died, a fleet's stdout and stderr are pipes nobody reads:
/// writing the "stopping" message there fails (EPIPE). It must still stop on SIGTERM and
/// SIGINT.
#[test]
fn the_fleet_and_the_sink_stop_on_sigterm_and_sigint_with_their_pipes_closed() {
    for subcommand in ["sink", "fleet"] {
        for (name, number) in [("SIGTERM", libc::SIGTERM), ("SIGINT", libc::SIGINT)] {
            let (mut child, stdout) = start_server(subcommand);
            drop(stdout);
            drop(child.stderr.take());
            signal(child.id(), number);
            let status = wait_exit(
                &mut child,
                &format!("voxsoak {subcommand} after {name} with its pipes closed"),
                Duration::from_secs(30),
            );
            assert!(
                status.success(),
                "voxsoak {subcommand} after {name}: {status}"
            );
        }
    }
}

/// A `voxsoak run` started as a subprocess, with its own `TMPDIR` (so its temp roots, and
/// those of the runs it cleans after, are this test's alone) and its stderr read line by
/// line on a thread.
struct RunningHarness {
    child: Child,
    out_dir: PathBuf,
    stderr: std::sync::mpsc::Receiver<String>,
    /// Dropped with this: the watchdog stands down.
    _watchdog: std::sync::mpsc::Sender<()>,
}

/// A scenario, its run directory and a private `TMPDIR`, in one temp dir.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        std::fs::create_dir(setup.tmpdir()).unwrap();
        setup
    }

    fn tmpdir(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// Where the runs keep their temp roots: `$TMPDIR/voxsoak-<uid>`.
    fn base(&self) -> PathBuf {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        self.tmpdir().join(format!("voxsoak-{uid}"))
    }

    /// The temp roots under the base.
    fn roots(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.base()) {
            Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn voxsoak(&self, args: &[&str]) -> Command {
        let mut command = Command::new(voxsoak_exe());
        command
            .args(args)
            .env("TMPDIR", self.tmpdir())
            .stdin(Stdio::null());
        command
    }

    fn start_run(&self, name: &str, toml: &str) -> RunningHarness {
        self.start_run_with(name, toml, &[])
    }

    /// `voxsoak run` with further arguments.
    fn start_run_with(&self, name: &str, toml: &str, args: &[&str]) -> RunningHarness {
        let scenario = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&scenario, toml).unwrap();
        let out_dir = self.dir.path().join(name);
        let mut child = self
            .voxsoak(
                &[
                    "run",
                    scenario.to_str().unwrap(),
                    "--out",
                    out_dir.to_str().unwrap(),
                ]
                .into_iter()
                .chain(args.iter().copied())
                .collect::<Vec<_>>(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start voxsoak run");
        // A watchdog: a hung harness must fail its test, not hang CI. It stands down when
        // the test drops the harness (its pid may be another process's by then).
        let watched = child.id();
        let (watchdog, stand_down) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stand_down.recv_timeout(Duration::from_secs(300))
            {
                // SAFETY: kill(2) on the harness, which the test has not reaped.
                unsafe { libc::kill(watched as libc::pid_t, libc::SIGKILL) };
            }
        });
        let (lines, stderr) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        RunningHarness {
            child,
            out_dir,
            stderr,
            _watchdog: watchdog,
        }
    }

    /// Runs `voxsoak clean ARGS…` to its end; its stdout.
    fn clean(&self, args: &[&str]) -> String {
        let output = self
            .voxsoak(&[&["clean"], args].concat())
            .output()
            .expect("run voxsoak clean");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "voxsoak clean {args:?}: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Pids of the processes whose environment holds this setup's `TMPDIR`, under its temp
    /// roots: every process a run started (the fleet and the sink get `TMPDIR=<root>`).
    fn started_processes(&self) -> Vec<u32> {
        let needle = format!("TMPDIR={}", self.base().display());
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                    environ
                        .split(|byte| *byte == 0)
                        .any(|variable| variable.starts_with(needle.as_bytes()))
                })
            })
            .filter(|pid| alive(*pid))
            .collect()
    }
}

impl RunningHarness {
    fn journal(&self) -> String {
        std::fs::read_to_string(self.out_dir.join("journal.jsonl")).unwrap_or_default()
    }

    /// The journal's records of `event`.
    fn records(&self, event: &str) -> Vec<serde_json::Value> {
        self.journal()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|record| record["event"] == event)
            .collect()
    }

    fn wait_for_record(&mut self, event: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(record) = self.records(event).into_iter().next() {
                return record;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the run ended ({status}) before journaling {event}");
            }
            assert!(Instant::now() < deadline, "no {event} within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a line on its stderr that contains `text`.
    fn wait_for_line(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {text:?} within {limit:?}"),
            }
        }
    }

    /// The fleet's pid, from `fleet.pid` in the run directory, checked against the
    /// journal's `fleet` record.
    fn fleet_pid(&mut self) -> u32 {
        let journaled = self.wait_for_record("fleet", Duration::from_secs(120));
        let pid_file: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.out_dir.join("fleet.pid")).expect("fleet.pid"),
        )
        .unwrap();
        let pid = pid_file["pid"].as_u64().unwrap() as u32;
        assert_eq!(journaled["pid"].as_u64(), Some(u64::from(pid)));
        pid
    }
}

/// A scenario against the embedded fleet with one long fault, on from the first second.
fn embedded_with_fault(fault: &str) -> String {
    format!(
        r#"
[target]
fleet = "embedded"
orders = 2000
[load]
stages = [{{ ramp_to = 2, over = "1s" }}, {{ hold = "10m" }}]
[calls]
fixtures = ["{}/*.wav"]
[[faults]]
{fault}
at = "1s"
for = "10m"
"#,
        crate::util::fixtures_dir().display()
    )
}

/// Kills the harness with SIGKILL once `fault` is confirmed in effect; checks that the
/// fleet it started dies with it and that nothing it started survives; returns the setup
/// with what the killed run left, and the run.
fn kill_the_harness_mid_fault(fault: &str) -> (Setup, RunningHarness, u32) {
    let setup = Setup::new();
    let mut run = setup.start_run("killed", &embedded_with_fault(fault));
    let confirmed = run.wait_for_record("fault_confirmed", Duration::from_secs(120));
    let fleet = run.fleet_pid();
    assert!(
        alive(fleet),
        "the fleet runs while the fault is on: {confirmed}"
    );
    assert_eq!(
        setup.started_processes(),
        vec![fleet],
        "the run started one process"
    );
    signal(run.child.id(), libc::SIGKILL);
    run.child.wait().unwrap();
    wait_for(
        "the fleet dies with the harness",
        Duration::from_secs(30),
        || !alive(fleet),
    );
    assert_eq!(
        setup.started_processes(),
        Vec::<u32>::new(),
        "a process the run started survived it"
    );
    (setup, run, fleet)
}

/// What a run killed with SIGKILL leaves: its temp root, with the fleet's temp dir (its
/// SQLite file, its audio dir and the files leaked into it).
fn assert_left_behind(setup: &Setup) -> PathBuf {
    let roots = setup.roots();
    assert_eq!(roots.len(), 1, "{roots:?}");
    let fleet_dirs: Vec<_> = std::fs::read_dir(&roots[0])
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("voxsoak-fleet-")
        })
        .collect();
    assert!(
        !fleet_dirs.is_empty(),
        "the fleet's temp dir is in the root"
    );
    roots[0].clone()
}

/// `kill -9` of the harness while a temp_file_leak fills the embedded fleet's temp dir:
/// the fleet dies with it (the death signal), and `voxsoak clean` removes the temp root the
/// run left, leaked files and all; a dry run first only says so.
#[test]
fn sigkill_mid_leak_leaves_no_process_and_clean_removes_what_is_left() {
    let (setup, run, fleet) = kill_the_harness_mid_fault(
        "kind = \"temp_file_leak\"\nfile_size = \"64KiB\"\nrate = \"1MiB/s\"\nmax_total = \"8MiB\"",
    );
    let root = assert_left_behind(&setup);
    let leaked = walk_files(&root)
        .iter()
        .filter(|path| path.to_string_lossy().contains("voxsoak-leak-"))
        .count();
    assert!(leaked > 0, "the leak had written files before the kill");

    let said = setup.clean(&["--dry-run"]);
    assert!(
        said.contains("would remove") && said.contains(root.to_str().unwrap()),
        "{said}"
    );
    assert!(root.exists(), "a dry run removes nothing");

    let said = setup.clean(&[]);
    assert!(
        said.contains("removed") && said.contains(root.to_str().unwrap()),
        "{said}"
    );
    assert_eq!(setup.roots(), Vec::<PathBuf>::new(), "{said}");
    assert!(!run.out_dir.join("fleet.pid").exists() || !alive(fleet));
    // Again: nothing left to do.
    let said = setup.clean(&[]);
    assert!(said.contains("nothing to clean"), "{said}");
}

/// `kill -9` of the harness while a temp_file_leak fills the temp dir of a fleet it did not
/// start (here the sink's target, with a dir of its own as `[observe] temp_dir`): the files
/// are outside the run's temp root, written down in its ledger as they were created, and
/// `voxsoak clean` removes exactly those, never the fleet's own files beside them.
#[test]
fn sigkill_mid_leak_into_an_external_dir_and_clean_removes_only_the_leaked_files() {
    let setup = Setup::new();
    let fleet_dir = setup.dir.path().join("fleet-audio");
    std::fs::create_dir(&fleet_dir).unwrap();
    std::fs::write(fleet_dir.join("the-fleets-own.wav"), b"audio").unwrap();
    let scenario = sink_scenario(&format!(
        "[observe]\ntemp_dir = \"{dir}\"\n[[faults]]\nkind = \"temp_file_leak\"\ndir = \"{dir}\"\nfile_size = \"64KiB\"\nrate = \"1MiB/s\"\nmax_total = \"8MiB\"\nmin_free = \"1MiB\"\nat = \"1s\"\nfor = \"10m\"\n",
        dir = fleet_dir.display()
    ));
    let mut run = setup.start_run("leaky", &scenario);
    run.wait_for_record("fault_confirmed", Duration::from_secs(120));
    signal(run.child.id(), libc::SIGKILL);
    run.child.wait().unwrap();
    let leaked = || {
        walk_files(&fleet_dir)
            .into_iter()
            .filter(|path| path.to_string_lossy().contains("voxsoak-leak-"))
            .count()
    };
    assert!(leaked() > 0, "the leak had written files before the kill");
    let said = setup.clean(&[]);
    assert!(
        said.contains(&format!("removed {}", fleet_dir.display())),
        "{said}"
    );
    assert_eq!(leaked(), 0, "{said}");
    assert!(fleet_dir.join("the-fleets-own.wav").exists(), "{said}");
    assert_eq!(setup.roots(), Vec::<PathBuf>::new(), "{said}");
}

/// `kill -9` of the harness while its fleet is frozen by process_stall (SIGSTOP): a stopped
/// process acts on no signal but SIGKILL until continued, and SIGKILL is the death signal,
/// so it dies too. The next `voxsoak run` removes what the killed one left.
#[test]
fn sigkill_mid_stall_kills_the_frozen_fleet_and_the_next_run_cleans_up() {
    let (setup, _run, _fleet) = kill_the_harness_mid_fault("kind = \"process_stall\"");
    let root = assert_left_behind(&setup);

    let mut next = setup.start_run(
        "next",
        &format!(
            "[target]\nfleet = \"sink\"\n[load]\nstages = [{{ ramp_to = 1, over = \"1s\" }}, {{ hold = \"1s\" }}]\n[calls]\nfixtures = [\"{}/*.wav\"]\n",
            crate::util::fixtures_dir().display()
        ),
    );
    next.wait_for_line(
        &format!("after an earlier run: removed {}", root.display()),
        Duration::from_secs(60),
    );
    let status = wait_exit(&mut next.child, "the next run", Duration::from_secs(120));
    assert!(status.code().is_some(), "{status}");
    assert_eq!(
        setup.roots(),
        Vec::<PathBuf>::new(),
        "the next run removed its own root too"
    );
    assert_eq!(setup.started_processes(), Vec::<u32>::new());
}

/// Every regular file under `dir`, without following symlinks.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// A sink scenario with calls for ten minutes, and optionally a fault.
fn sink_scenario(fault: &str) -> String {
    format!(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{{ ramp_to = 3, over = \"1s\" }}, {{ hold = \"10m\" }}]\n[calls]\nfixtures = [\"{}/*.wav\"]\n{fault}",
        crate::util::fixtures_dir().display()
    )
}

/// A run a signal ended: exit 2, verdict `aborted` in the summary.json it wrote, its sink
/// stopped (and its pid file gone), its temp root removed. Its `run_ended` record.
fn assert_aborted_leaving_nothing(
    setup: &Setup,
    run: &RunningHarness,
    status: std::process::ExitStatus,
    sink: u32,
) -> serde_json::Value {
    assert_eq!(
        status.code(),
        Some(voxsoak::exit::HARNESS_ERROR),
        "{status}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["verdict"], "aborted", "{summary}");
    assert!(!alive(sink), "the sink was stopped");
    assert!(
        !run.out_dir.join("fleet.pid").exists(),
        "removed with the sink"
    );
    assert_eq!(setup.roots(), Vec::<PathBuf>::new());
    let ended = run.records("run_ended");
    assert_eq!(ended[0]["stopped_by"], "signal", "{ended:?}");
    ended[0].clone()
}

/// A closed terminal or a dropped ssh session (SIGHUP) ends a run as SIGTERM does: calls
/// end, the sink it started is stopped, its temp root goes, and the reports are written
/// (verdict `aborted`, exit 2), where the default action would kill it with no summary.
#[test]
fn sighup_ends_the_run_as_aborted_with_its_reports() {
    let setup = Setup::new();
    let mut run = setup.start_run("hangup", &sink_scenario(""));
    run.wait_for_record("interval", Duration::from_secs(60));
    let sink = run.fleet_pid();
    signal(run.child.id(), libc::SIGHUP);
    let status = wait_exit(
        &mut run.child,
        "voxsoak run after SIGHUP",
        Duration::from_secs(60),
    );
    let ended = assert_aborted_leaving_nothing(&setup, &run, status, sink);
    assert_eq!(ended["hurried"], false, "{ended}");
}

/// A stop gives the calls in progress their `--grace`: after SIGTERM no call starts, and
/// with a minute of grace every call in progress ends on its own (completed, none
/// cancelled); with none they are cancelled at once. Either way the reports are written.
#[test]
fn a_stop_gives_calls_in_progress_their_grace() {
    let setup = Setup::new();
    for (grace, cut) in [("60s", false), ("0s", true)] {
        let mut run = setup.start_run_with(
            &format!("grace-{grace}"),
            &sink_scenario(""),
            &["--grace", grace],
        );
        let sink = run.fleet_pid();
        // Calls in progress: an interval that saw three active.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !run
            .records("interval")
            .iter()
            .any(|interval| interval["active"].as_u64() >= Some(3))
        {
            assert!(
                Instant::now() < deadline,
                "never three calls active: {}",
                run.journal()
            );
            assert!(
                run.child.try_wait().unwrap().is_none(),
                "the run ended early"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        signal(run.child.id(), libc::SIGTERM);
        let status = wait_exit(
            &mut run.child,
            "voxsoak run after SIGTERM",
            Duration::from_secs(120),
        );
        assert_aborted_leaving_nothing(&setup, &run, status, sink);
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run.out_dir.join("summary.json")).unwrap(),
        )
        .unwrap();
        let calls = &summary["calls"];
        let cancelled = calls["cancelled"].as_u64().unwrap();
        if cut {
            assert!(
                cancelled >= 1,
                "--grace 0s: calls in progress are cancelled: {calls}"
            );
        } else {
            assert_eq!(
                cancelled, 0,
                "--grace 60s: every call in progress ended on its own: {calls}"
            );
            assert_eq!(calls["failed"], 0, "{calls}");
            assert!(calls["completed"].as_u64().unwrap() >= 3, "{calls}");
        }
    }
}

/// A second Ctrl-C ends the run at once, and still undoes its faults: the sink frozen by
/// process_stall is continued (journaled as cleared) and stopped.
#[test]
fn a_second_sigint_ends_at_once_and_still_clears_the_faults() {
    let setup = Setup::new();
    let mut run = setup.start_run(
        "hurried",
        &sink_scenario("[[faults]]\nkind = \"process_stall\"\nat = \"1s\"\nfor = \"10m\"\n"),
    );
    run.wait_for_record("fault_confirmed", Duration::from_secs(60));
    let sink = run.fleet_pid();
    signal(run.child.id(), libc::SIGINT);
    run.wait_for_line("voxsoak: stopping (SIGINT)", Duration::from_secs(30));
    let second = Instant::now();
    signal(run.child.id(), libc::SIGINT);
    let status = wait_exit(
        &mut run.child,
        "voxsoak run after a second SIGINT",
        Duration::from_secs(60),
    );
    let took = second.elapsed();
    assert!(
        took < voxsoak::run::HURRY_DEADLINE + Duration::from_secs(10),
        "ended {took:?} after the second SIGINT"
    );
    let cleared = run.records("fault_cleared");
    assert_eq!(cleared.len(), 1, "{}", run.journal());
    assert_eq!(cleared[0]["kind"], "process_stall");
    let ended = assert_aborted_leaving_nothing(&setup, &run, status, sink);
    assert_eq!(ended["hurried"], true, "{ended}");
}

/// A fleet started again after a process_kill is started the same way as the first (from
/// a chaos task, where the first was started by the run): it dies with the harness too,
/// and `fleet.pid` names it.
#[test]
fn sigkill_after_a_restart_kills_the_restarted_fleet() {
    let setup = Setup::new();
    let mut run = setup.start_run(
        "restarted",
        &embedded_with_fault("kind = \"process_kill\"").replace("for = \"10m\"", "for = \"2s\""),
    );
    let first = run.fleet_pid();
    let restarted = run.wait_for_record("fleet_restarted", Duration::from_secs(120));
    let second = restarted["pid"].as_u64().unwrap() as u32;
    assert_ne!(first, second);
    let pid_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.out_dir.join("fleet.pid")).unwrap())
            .unwrap();
    assert_eq!(pid_file["pid"].as_u64(), Some(u64::from(second)));
    assert!(alive(second));
    signal(run.child.id(), libc::SIGKILL);
    run.child.wait().unwrap();
    wait_for(
        "the restarted fleet dies with the harness",
        Duration::from_secs(30),
        || !alive(second),
    );
    assert_eq!(setup.started_processes(), Vec::<u32>::new());
    assert_left_behind(&setup);
    setup.clean(&[]);
    assert_eq!(setup.roots(), Vec::<PathBuf>::new());
}

/// A run to resume: a leak on from 2 s to 8 s (the harness is killed in it) and again
/// every 30 s, and a TTS 429 storm at 45 s, 95 s in all (room for the last leak's
/// recovery on a busy machine).
fn resumable() -> String {
    let leak = "kind = \"temp_file_leak\"\nfile_size = \"256KiB\"\nrate = \"1MiB/s\"\nmax_total = \"4MiB\"";
    format!(
        r#"
name = "resumable"
seed = 5
[target]
fleet = "embedded"
orders = 2000
temp_dir_budget = "2MiB"
[load]
stages = [{{ ramp_to = 3, over = "1s" }}, {{ hold = "94s" }}]
[calls]
turn_timeout = "8s"
fixtures = ["{}/*.wav"]
[[scripts]]
name = "talk"
turns = {{ min = 2, max = 3 }}
[[faults]]
{leak}
at = "2s"
for = "6s"
every = "30s"
[[faults]]
kind = "tts_429"
at = "45s"
for = "5s"
retry_after = "1s"
[slo]
call_success = ">= 90%"
detect_within = "20s"
recover_within = "30s"
stable_window = "4s"
uptime = ">= 99%"
max_crashes = 0
no_unprovoked_alerts = true
"#,
        crate::util::fixtures_dir().display()
    )
}

/// Records of the journal in `run_dir`.
fn journal_records(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("whole JSON lines"))
        .collect()
}

/// `voxsoak resume RUN_DIR` to its end: its exit code, and its stderr then stdout.
fn resume(setup: &Setup, run_dir: &Path) -> (Option<i32>, String) {
    let stderr_path = setup.dir.path().join("resume.stderr");
    let stdout_path = setup.dir.path().join("resume.stdout");
    let mut child = setup
        .voxsoak(&["resume", run_dir.to_str().unwrap(), "--quiet"])
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start voxsoak resume");
    let status = wait_exit(&mut child, "voxsoak resume", Duration::from_secs(300));
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    (status.code(), read(&stderr_path) + &read(&stdout_path))
}

/// SIGKILL of the harness in the middle of a fault, then `voxsoak resume`: what the killed
/// run left is gone (its temp root with the leaked files, its fleet), the schedule goes on
/// from where the journal stopped with a fleet started again, the fault it left in effect
/// is undone and not held against the fleet, the next fault is injected and graded, the
/// time away is journaled as harness downtime, and the summary covers the whole schedule.
#[test]
fn a_run_killed_mid_fault_is_resumed_to_the_end_of_its_schedule() {
    let setup = Setup::new();
    let mut run = setup.start_run("resumable", &resumable());
    run.wait_for_record("fault_confirmed", Duration::from_secs(120));
    let fleet = run.fleet_pid();
    let killed_root = assert_left_behind(&setup);
    signal(run.child.id(), libc::SIGKILL);
    run.child.wait().unwrap();
    wait_for(
        "the fleet dies with the harness",
        Duration::from_secs(30),
        || !alive(fleet),
    );
    let leaked: Vec<PathBuf> = walk_files(&killed_root)
        .into_iter()
        .filter(|path| path.to_string_lossy().contains("voxsoak-leak-"))
        .collect();
    assert!(
        !leaked.is_empty(),
        "the leak had written files before the kill"
    );
    let killed_at = journal_records(&run.out_dir)
        .iter()
        .filter_map(|record| record["t_s"].as_f64())
        .fold(0.0, f64::max);

    let (code, said) = resume(&setup, &run.out_dir);
    assert_eq!(code, Some(0), "resume: {said}");
    assert!(said.contains("goes on at"), "{said}");
    assert!(
        said.contains("resumed    1x after the harness died"),
        "{said}"
    );
    assert!(!killed_root.exists(), "the killed run's temp root is gone");
    assert!(
        leaked.iter().all(|path| !path.exists()),
        "leaked files are gone"
    );
    assert_eq!(
        setup.roots(),
        Vec::<PathBuf>::new(),
        "nothing left in TMPDIR"
    );
    assert_eq!(
        setup.started_processes(),
        Vec::<u32>::new(),
        "no process left"
    );

    let records = journal_records(&run.out_dir);
    let count = |event: &str| records.iter().filter(|r| r["event"] == event).count();
    assert_eq!(
        (
            count("run_started"),
            count("run_resumed"),
            count("run_ended")
        ),
        (1, 1, 1)
    );
    let times: Vec<f64> = records.iter().filter_map(|r| r["t_s"].as_f64()).collect();
    assert!(
        times.windows(2).all(|pair| pair[1] >= pair[0] - 1.0),
        "the run's clock goes on, not back"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.out_dir.join("summary.json")).unwrap())
            .unwrap();
    let downtime = summary["harness_downtime"].as_array().unwrap();
    assert_eq!(downtime.len(), 1, "{summary:#}");
    assert!((downtime[0]["at_s"].as_f64().unwrap() - killed_at).abs() < 1.0);
    assert!(downtime[0]["down_s"].as_f64().unwrap() >= 0.0);
    let ended = records.iter().find(|r| r["event"] == "run_ended").unwrap();
    assert!(
        ended["t_s"].as_f64().unwrap() >= 95.0,
        "the whole schedule ran: {ended}"
    );
    let faults = summary["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 4, "every fault of the schedule: {faults:#?}");
    let leak = &faults[0];
    assert_eq!(
        (&leak["kind"], &leak["occurrence"]),
        (&"temp_file_leak".into(), &1.into())
    );
    assert_eq!(leak["harness_died"], true, "{leak:#}");
    assert!(
        leak["cleared_at_s"].as_f64().unwrap() >= killed_at - 0.001,
        "{leak:#}"
    );
    for later in &faults[1..] {
        assert!(
            later["injected_at_s"].as_f64().unwrap() > killed_at,
            "{later:#}"
        );
        // The third leak may find the second's TempDirGrowing still firing on a busy
        // machine (the fleet sweeps its files 20 s after they were written): "already
        // signalling" is then the honest answer. Never undetected.
        assert!(
            ["detected", "already_signalling"].contains(&later["detection"].as_str().unwrap()),
            "{later:#}"
        );
        assert_ne!(later["recovery"], "not_recovered", "{later:#}");
    }
    // The first leak and the storm after the resume are detected: the restarted fleet's
    // signals are watched again.
    assert_eq!(faults[1]["detection"], "detected", "{:#}", faults[1]);
    assert_eq!(faults[2]["detection"], "detected", "{:#}", faults[2]);
    // The second leak's and the storm's recovery was seen (the third's may end too
    // close to the end of the run to be).
    assert_eq!(faults[1]["recovery"], "recovered", "{:#}", faults[1]);
    assert_eq!(faults[2]["recovery"], "recovered", "{:#}", faults[2]);
    assert_eq!(summary["verdict"], "pass", "{summary:#}");

    // Ended: nothing more to resume.
    let (code, stderr) = resume(&setup, &run.out_dir);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nothing to resume"), "{stderr}");
}

//! The fleet under test: an external URL, or a fleet the harness starts itself as a child
//! process on a free port (and always stops).
//!
//! Two fleets can be started: `voxsoak sink` (`fleet = "sink"`) and the reference fleet
//! `voxsoak fleet` (`fleet = "embedded"`). Both are started the same way: in their own
//! process group, with both pipes drained, the variables in [`SCRUBBED_ENV`] removed from
//! their environment, and their address read from their first line of output. The
//! embedded fleet's output is also appended to a file ([`FleetWiring::output_log`]), for
//! the log observer.
//!
//! A child never outlives the harness, however the harness dies:
//! - On Linux it is started with a death signal: `PR_SET_PDEATHSIG(SIGKILL)`, set between
//!   fork and exec. SIGKILL, not SIGTERM: a fleet frozen by a `process_stall` acts on no
//!   other signal until it is continued. The kernel sends it when the *thread* that forked
//!   the child exits, not the process, and tokio forks on the calling thread (a worker,
//!   or a blocking-pool thread that exits when idle); so every child is forked by one
//!   thread kept for the life of the process (`spawn_child`). Should the harness die
//!   between the fork and the `prctl`, the child sees that its parent changed and does not
//!   start.
//! - Its pid and start time go to the run directory's `fleet.pid`
//!   ([`FleetWiring::pid_file`], rewritten after a restart), where `voxsoak clean` finds a
//!   survivor the death signal did not reach (another platform).
//! - Its `TMPDIR` is the run's temp root ([`FleetWiring::temp_root`]), where the embedded
//!   fleet's own temp dir is made too, so whatever it leaves there goes with the root.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use url::Url;

use crate::call::CallEndpoint;
use crate::cleanup::PidFile;
use crate::contract::fleet::Bug;
use crate::scenario::{EmbeddedFleet, Endpoint, Scenario, SinkOptions, Target};

/// A fleet process the run, the chaos plane and the observers share.
pub type SharedFleet = std::sync::Arc<tokio::sync::Mutex<SpawnedFleet>>;

/// How long `voxsoak sink` may take to print the address it listens on.
const SINK_SPAWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `voxsoak fleet` may take: it seeds up to a million rows before it listens.
const FLEET_SPAWN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the target may take to accept a TCP connection before the run starts.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a child that closed its stdout without an address may take to exit.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How long a stopped child may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long the rest of a dead child's stderr may take to arrive.
const STDERR_WAIT: Duration = Duration::from_secs(2);
/// How much of a child's stderr is kept for messages: its first lines (a panic message,
/// before a backtrace) and its last.
const STDERR_HEAD_LINES: usize = 5;
const STDERR_TAIL_LINES: usize = 20;
/// Longer lines (from a child's stdout or stderr) are cut, so memory stays bounded.
const MAX_LINE_BYTES: usize = 2048;
/// The embedded fleet's output log is rotated when a line would take it past this (to
/// `fleet.log.1`, replacing the one before), so a 72-hour run keeps at most about twice
/// this on disk.
const OUTPUT_LOG_MAX_BYTES: u64 = 64 << 20;

/// The first line a spawned `voxsoak sink` prints: `voxsoak sink listening on ADDR`.
pub const LISTENING_PREFIX: &str = "voxsoak sink listening on ";

/// Variables a fleet the harness starts never inherits from the harness's environment:
/// everything it needs is on its command line, and a stray `DATABASE_URL` or
/// `TWILIO_AUTH_TOKEN` in the user's shell would quietly change what is being tested.
pub const SCRUBBED_ENV: [&str; 6] = [
    "DATABASE_URL",
    "LLM_BASE_URL",
    "TTS_BASE_URL",
    "ALERT_WEBHOOK_URL",
    "AUDIO_TMP_DIR",
    "TWILIO_AUTH_TOKEN",
];

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("could not start {what} ({exe}): {source}", exe = exe.display())]
    Spawn {
        what: &'static str,
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not report its address within {timeout:?}{}", stderr_hint(.stderr))]
    NoAddress {
        what: &'static str,
        timeout: Duration,
        /// The last lines of its stderr.
        stderr: String,
    },
    #[error("{what} exited ({status}) before reporting its address{}", stderr_hint(.stderr))]
    Exited {
        what: &'static str,
        /// How it ended, e.g. `exit status: 3`.
        status: String,
        /// The last lines of its stderr.
        stderr: String,
    },
    #[error("{what} reported an address that is not IP:PORT: {address:?}")]
    BadAddress { what: &'static str, address: String },
    #[error("could not prepare the embedded fleet's temp dir: {source}")]
    TempDir {
        #[source]
        source: std::io::Error,
    },
    #[error("could not write the pid file {}: {source}", path.display())]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not open {} for the embedded fleet's output: {source}", path.display())]
    OutputLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("target {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the auth token variable {name} named by [target] auth_token_env is not set")]
    MissingToken { name: String },
    #[error("the database URL variable {name} named by {key} is not set")]
    MissingDatabaseUrl {
        name: String,
        /// Where the scenario names it: `[target] database_url_env`, or a fault's.
        key: String,
    },
    /// The value itself is never shown: it may hold a password.
    #[error(
        "the variable {name} named by {key} does not hold a database URL (postgres://… or sqlite://…)"
    )]
    NotDatabaseUrl { name: String, key: String },
    /// Only the host is shown, never the URL: it may hold a password.
    #[error(
        "the database URL in {name} (named by {key}) connects to {host}, which is not in [target] allow_hosts (loopback only by default); add it there to allow connections to it"
    )]
    DatabaseHostNotAllowed {
        name: String,
        key: String,
        host: String,
    },
    /// The value itself is never shown: it may hold a password.
    #[error(
        "the variable {name} named by [target] database_url_env does not hold a postgres:// URL"
    )]
    NotPostgresUrl { name: String },
    #[error(
        "--fleet-bug needs [target] fleet = \"embedded\"; {} targets {targets}",
        scenario_label(.scenario)
    )]
    FleetBugNeedsEmbedded {
        /// The scenario file, when known.
        scenario: Option<PathBuf>,
        /// What the scenario targets instead, e.g. `fleet = "sink"`.
        targets: String,
    },
}

fn stderr_hint(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else if stderr.contains('\n') {
        let indented: Vec<String> = stderr.lines().map(|line| format!("  {line}")).collect();
        format!("; its stderr:\n{}", indented.join("\n"))
    } else {
        format!("; it said: {stderr}")
    }
}

fn scenario_label(scenario: &Option<PathBuf>) -> String {
    match scenario {
        Some(path) => path.display().to_string(),
        None => "the scenario".to_owned(),
    }
}

/// What a target is, for messages: `fleet = "sink"`, `an external fleet at ws://…`.
fn target_label(target: &Target) -> String {
    match target {
        Target::Sink(_) => r#"fleet = "sink""#.to_owned(),
        Target::Embedded(_) => r#"fleet = "embedded""#.to_owned(),
        Target::External(external) => {
            format!(
                "an external fleet at {}",
                crate::redact::url(external.endpoint.url())
            )
        }
    }
}

/// `--fleet-bug` only makes sense for the reference fleet the harness starts; refuse it for
/// any other target before anything runs.
pub fn check_fleet_bugs(scenario: &Scenario, fleet_bugs: &[Bug]) -> Result<(), TargetError> {
    if fleet_bugs.is_empty() || matches!(scenario.target, Target::Embedded(_)) {
        return Ok(());
    }
    Err(TargetError::FleetBugNeedsEmbedded {
        scenario: Some(scenario.path.clone()),
        targets: target_label(&scenario.target),
    })
}

/// Where the embedded fleet's database variable is named, for messages.
const TARGET_DATABASE_KEY: &str = "[target] database_url_env";

/// Whether [`check_database_hosts`] refuses a variable that is not set: `run` needs every
/// one, `validate` (often run without the secrets) checks those it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsetVariable {
    Refuse,
    Skip,
}

/// The databases the scenario names through variables (the embedded fleet's
/// `database_url_env`, each `db_pool_exhaustion` fault's) must be on hosts in
/// `allow_hosts`, loopback by default. Checked before anything starts, so neither the fleet
/// nor a fault ever connects to a database nobody allowed. The URLs are read from their
/// variables and never shown (they may hold a password); an error names the variable and
/// the host.
pub fn check_database_hosts(scenario: &Scenario, unset: UnsetVariable) -> Result<(), TargetError> {
    let mut named: Vec<(&str, String)> = Vec::new();
    if let Target::Embedded(EmbeddedFleet {
        database_url_env: Some(name),
        ..
    }) = &scenario.target
    {
        named.push((name, TARGET_DATABASE_KEY.to_owned()));
    }
    for fault in &scenario.faults {
        if let crate::scenario::FaultSpec::DbPoolExhaustion(db) = &fault.fault
            && let Some(name) = &db.database_url_env
        {
            named.push((name, format!("database_url_env of fault {:?}", fault.name)));
        }
    }
    for (name, key) in named {
        let Ok(text) = std::env::var(name) else {
            if unset == UnsetVariable::Skip {
                continue;
            }
            return Err(TargetError::MissingDatabaseUrl {
                name: name.to_owned(),
                key,
            });
        };
        let not_a_url = || TargetError::NotDatabaseUrl {
            name: name.to_owned(),
            key: key.clone(),
        };
        let url = Url::parse(&text).map_err(|_| not_a_url())?;
        match url.scheme() {
            "postgres" | "postgresql" => {}
            // A file on this machine.
            "sqlite" => continue,
            _ => return Err(not_a_url()),
        }
        let pghost = std::env::var("PGHOST").ok();
        for host in postgres_hosts(&url, pghost.as_deref()) {
            if !scenario.host_allowed(&host) {
                return Err(TargetError::DatabaseHostNotAllowed {
                    name: name.to_owned(),
                    key,
                    host,
                });
            }
        }
    }
    Ok(())
}

/// Every host a PostgreSQL URL connects to, read as the fleet and the harness (sqlx) read
/// it: the URL's host, and any `host` or `hostaddr` in its query (which win); with none of
/// them, `PGHOST` (which the fleet inherits), else localhost. A Unix socket (a path) is on
/// this machine and left out.
fn postgres_hosts(url: &Url, pghost: Option<&str>) -> Vec<String> {
    let decoded = |host: &str| {
        url::form_urlencoded::parse(format!("h={host}").as_bytes())
            .next()
            .map_or_else(|| host.to_owned(), |(_, value)| value.into_owned())
    };
    let mut hosts: Vec<String> = url
        .host_str()
        .filter(|host| !host.is_empty())
        .map(decoded)
        .into_iter()
        .collect();
    hosts.extend(
        url.query_pairs()
            .filter(|(key, _)| key == "host" || key == "hostaddr")
            .map(|(_, value)| value.into_owned()),
    );
    if hosts.is_empty() {
        hosts.push(pghost.unwrap_or("localhost").to_owned());
    }
    hosts
        .into_iter()
        .flat_map(|host| {
            // libpq's list form, `host=a,b`.
            host.split(',')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|host| !host.is_empty() && !host.starts_with('/'))
        .collect()
}

/// What a child wrote to its stderr, kept for error messages while it runs: its first 5
/// lines (where a panic message sits, before its backtrace) and its last 20, each cut to
/// 2 KiB; the lines between are only counted.
#[derive(Debug, Clone, Default)]
pub struct StderrExcerpt(Arc<Mutex<ExcerptLines>>);

#[derive(Debug, Default)]
struct ExcerptLines {
    head: Vec<String>,
    tail: VecDeque<String>,
    omitted: u64,
}

impl StderrExcerpt {
    fn lines(&self) -> std::sync::MutexGuard<'_, ExcerptLines> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, line: String) {
        let mut lines = self.lines();
        if lines.head.len() < STDERR_HEAD_LINES {
            lines.head.push(line);
            return;
        }
        if lines.tail.len() == STDERR_TAIL_LINES {
            lines.tail.pop_front();
            lines.omitted += 1;
        }
        lines.tail.push_back(line);
    }

    /// The kept lines, oldest first, one per line, with `[N lines omitted]` where lines
    /// were dropped.
    pub fn text(&self) -> String {
        let lines = self.lines();
        let mut text: Vec<String> = lines.head.clone();
        if lines.omitted > 0 {
            text.push(format!("[{} lines omitted]", lines.omitted));
        }
        text.extend(lines.tail.iter().cloned());
        text.join("\n")
    }
}

/// A file a started fleet's stdout and stderr are both appended to, a whole line at a
/// time (so lines from the two pipes never mix), rotated like logrotate's `create` (rename
/// to `NAME.1`, start a new file), which the log observer follows. Write errors are
/// ignored: the fleet's output is kept for the log observer, never at the cost of draining
/// its pipes.
#[derive(Debug, Clone)]
struct OutputLog(Arc<Mutex<OutputFile>>);

#[derive(Debug)]
struct OutputFile {
    path: PathBuf,
    file: std::fs::File,
    /// Its size: what is appended, from what it held when opened.
    bytes: u64,
    max_bytes: u64,
}

impl OutputLog {
    fn open(path: &Path) -> std::io::Result<OutputLog> {
        OutputLog::open_capped(path, OUTPUT_LOG_MAX_BYTES)
    }

    /// Rotated when a line would take it past `max_bytes`.
    fn open_capped(path: &Path, max_bytes: u64) -> std::io::Result<OutputLog> {
        let file = append_to(path)?;
        Ok(OutputLog(Arc::new(Mutex::new(OutputFile {
            path: path.to_path_buf(),
            bytes: file.metadata()?.len(),
            file,
            max_bytes,
        }))))
    }

    fn write_line(&self, line: &str) {
        use std::io::Write;
        let mut output = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if output.bytes > 0 && output.bytes + bytes.len() as u64 > output.max_bytes {
            output.rotate();
        }
        if output.file.write_all(&bytes).is_ok() {
            output.bytes += bytes.len() as u64;
        }
    }
}

impl OutputFile {
    /// `NAME` becomes `NAME.1` (replacing it) and a new `NAME` is started; should that
    /// fail, `NAME` is emptied instead, so the cap holds either way.
    fn rotate(&mut self) {
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(".1");
        let renewed = std::fs::rename(&self.path, &rotated).and_then(|()| append_to(&self.path));
        match renewed {
            Ok(file) => self.file = file,
            Err(_) => {
                let _ = self.file.set_len(0);
            }
        }
        self.bytes = 0;
    }
}

fn append_to(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Lines from a child's pipe, each cut to [`MAX_LINE_BYTES`], so a child that never
/// prints a newline cannot make the harness buffer without bound; each also goes to the
/// output log, if there is one.
struct PipeLines<R> {
    reader: BufReader<R>,
    log: Option<OutputLog>,
}

impl<R: AsyncRead + Unpin> PipeLines<R> {
    fn new(pipe: R, log: Option<OutputLog>) -> Self {
        PipeLines {
            reader: BufReader::new(pipe),
            log,
        }
    }

    /// The next line without its line ending; None at the end of the pipe (or on an error).
    async fn next_line(&mut self) -> Option<String> {
        let line = self.read_line().await?;
        if let Some(log) = &self.log {
            log.write_line(&line);
        }
        Some(line)
    }

    async fn read_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        loop {
            let chunk = match self.reader.fill_buf().await {
                Ok(chunk) => chunk,
                Err(_) => return None,
            };
            if chunk.is_empty() {
                return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned());
            }
            let newline = chunk.iter().position(|&byte| byte == b'\n');
            let end = newline.unwrap_or(chunk.len());
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            line.extend_from_slice(&chunk[..end.min(room)]);
            self.reader.consume(newline.map_or(end, |at| at + 1));
            if newline.is_some() {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }

    /// Reads and drops everything until the pipe closes.
    async fn drain(mut self) {
        while self.next_line().await.is_some() {}
    }
}

/// A fleet process the harness started; killed when dropped, however the run ends. For
/// the embedded fleet it also owns the run's temp dir, removed once the fleet has exited.
#[derive(Debug)]
pub struct SpawnedFleet {
    // Declared before `temp_dir`, so dropping kills the fleet before its files go.
    child: Child,
    what: &'static str,
    pid: Option<u32>,
    stderr: StderrExcerpt,
    /// How it was started, to start it again on the same address ([`SpawnedFleet::restart`]).
    recipe: Recipe,
    address: SocketAddr,
    prefix: &'static str,
    timeout: Duration,
    restarts: u32,
    /// The harness sent it SIGKILL or SIGTERM (a fault, or stopping it): its exit is not a
    /// crash.
    stopped_by_harness: bool,
    /// Where its output is also kept (again after a restart).
    log: Option<OutputLog>,
    /// Where its pid is kept (again after a restart).
    pid_file: Option<PathBuf>,
    temp_dir: Option<TempDir>,
}

/// A child's command line and environment, kept to start it again. Its `Debug` names the
/// variables but never shows their values (the database URL may hold a password).
#[derive(Clone)]
struct Recipe {
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    env: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
}

impl fmt::Debug for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipe")
            .field("program", &self.program)
            .field("args", &self.args)
            .field(
                "env",
                &self
                    .env
                    .iter()
                    .map(|(key, value)| (key, if value.is_some() { "set" } else { "removed" }))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Recipe {
    fn of(command: &Command) -> Recipe {
        let std = command.as_std();
        Recipe {
            program: std.get_program().to_owned(),
            args: std.get_args().map(ToOwned::to_owned).collect(),
            env: std
                .get_envs()
                .map(|(key, value)| (key.to_owned(), value.map(ToOwned::to_owned)))
                .collect(),
        }
    }

    /// The same command, listening on `address` instead of what it first asked for.
    fn command_on(&self, address: SocketAddr) -> Command {
        let mut command = Command::new(&self.program);
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            command.arg(arg);
            if arg == "--listen" {
                args.next();
                command.arg(address.to_string());
            }
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }
}

impl SpawnedFleet {
    /// `voxsoak sink` or `voxsoak fleet`.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The process id, for observers (memory, CPU); a new one after a restart.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Where it listens (the same address after a restart).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// How many times [`SpawnedFleet::restart`] started it again.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Whether its exit (if it exited) was the harness's doing: it sent SIGKILL or SIGTERM.
    pub fn stopped_by_harness(&self) -> bool {
        self.stopped_by_harness
    }

    /// Sends `signal` to the process, if it is still running.
    pub fn signal(&mut self, signal: libc::c_int) -> std::io::Result<()> {
        match (self.child.try_wait()?, self.child.id()) {
            (None, Some(pid)) => {
                if matches!(signal, libc::SIGKILL | libc::SIGTERM) {
                    self.stopped_by_harness = true;
                }
                // SAFETY: kill(2) with the pid of our own child, which has not been reaped
                // (try_wait just saw it running), and a signal number from libc.
                let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
                if result == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            }
            _ => Err(std::io::Error::other("the process has exited")),
        }
    }

    /// Waits up to `timeout` for the process to exit; its status if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Whether it has exited, and how.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Starts it again with the same command line and environment, on the same address,
    /// once the old process has exited (it is killed first if it has not). The temp dir and
    /// its database are kept.
    pub async fn restart(&mut self) -> Result<(), TargetError> {
        if self.exit_status().is_none() {
            let _ = self.child.kill().await;
        }
        let command = self.recipe.command_on(self.address);
        let listening = spawn_listening(
            command,
            self.what,
            self.prefix,
            self.timeout,
            self.log.clone(),
            self.pid_file.clone(),
        )
        .await?;
        self.child = listening.child;
        self.pid = listening.pid;
        self.stderr = listening.stderr;
        self.address = listening.address;
        self.restarts += 1;
        self.stopped_by_harness = false;
        Ok(())
    }

    /// The first and the last lines the fleet wrote to its stderr (see [`StderrExcerpt`]).
    pub fn stderr_excerpt(&self) -> String {
        self.stderr.text()
    }

    /// Stops the fleet: SIGTERM, then SIGKILL if it does not exit within a few seconds.
    /// Then removes its temp dir, if it has one.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    /// [`SpawnedFleet::stop`] for a fleet shared with the chaos plane.
    pub async fn stop_in_place(&mut self) {
        self.stopped_by_harness = true;
        if let Ok(None) = self.child.try_wait()
            && let Some(pid) = self.child.id()
        {
            // SAFETY: kill(2) with the pid of our own child, which has not been reaped
            // (try_wait just saw it running), and a valid signal number.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
                // A stopped process (a `process_stall` whose clear did not run) acts on
                // SIGTERM only once continued.
                libc::kill(pid as libc::pid_t, libc::SIGCONT);
            }
        }
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        self.forget().await;
    }

    /// Kills the fleet (SIGKILL) without the grace [`SpawnedFleet::stop_in_place`] gives it,
    /// for a run told to end at once (a second Ctrl-C). Then removes its temp dir.
    pub async fn kill_in_place(&mut self) {
        self.stopped_by_harness = true;
        let _ = self.child.kill().await;
        self.forget().await;
    }

    /// Once it has exited: its pid file and temp dir go.
    async fn forget(&mut self) {
        if let Some(path) = &self.pid_file {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = self.temp_dir.take() {
            // A million-row SQLite file: unlink it off the async threads.
            let _ = tokio::task::spawn_blocking(move || dir.close()).await;
        }
    }
}

/// Where the harness points the embedded fleet's dependencies: its own stand-ins (the chaos
/// plane's, through a fault proxy if the scenario has one) and its alert receiver. `None`:
/// the fleet's own default (a built-in stand-in; no alerts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetWiring {
    pub llm_base_url: Option<String>,
    pub tts_base_url: Option<String>,
    pub alert_webhook_url: Option<String>,
    /// A file the embedded fleet's stdout and stderr are appended to, line by line (each
    /// cut to 2 KiB), kept across restarts: the run directory's `fleet.log`, which the log
    /// observer follows. Rotated to `fleet.log.1` at 64 MiB.
    pub output_log: Option<PathBuf>,
    /// The run's temp root (see [`crate::cleanup`]): the child's `TMPDIR`, and where the
    /// embedded fleet's temp dir is made. None: the system's temp dir.
    pub temp_root: Option<PathBuf>,
    /// Where the child's pid is written ([`crate::cleanup::PidFile`]), again after each
    /// restart; removed once it is stopped. None: nowhere.
    pub pid_file: Option<PathBuf>,
}

/// Where the embedded fleet keeps its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetDatabase {
    /// A SQLite file in the run's temp dir (removed with it).
    Sqlite { path: PathBuf },
    /// The PostgreSQL whose URL is in the named environment variable.
    Postgres { env: String },
}

/// What the chaos plane and the observers need to know about the embedded fleet.
#[derive(Clone)]
pub struct EmbeddedFleetInfo {
    /// `http://127.0.0.1:PORT/`: `/health`, `/metrics`, `/voice`.
    pub http_base: Url,
    /// The run's temp dir (holds the SQLite file and `audio/`); removed when the fleet is
    /// stopped.
    pub temp_dir: PathBuf,
    /// The fleet's `AUDIO_TMP_DIR` (`<temp_dir>/audio`).
    pub audio_tmp_dir: PathBuf,
    pub database: FleetDatabase,
    /// `sqlite:///…/fleet.db`, or the PostgreSQL URL: that one may hold a password, so
    /// never print it (this type's `Debug` hides it).
    pub database_url: String,
    /// The bugs it was started with: the scenario's, then `--fleet-bug`'s, each once.
    pub bugs: Vec<Bug>,
    pub pid: Option<u32>,
}

impl fmt::Debug for EmbeddedFleetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let database_url = match &self.database {
            FleetDatabase::Sqlite { .. } => self.database_url.as_str(),
            FleetDatabase::Postgres { .. } => "<hidden>",
        };
        f.debug_struct("EmbeddedFleetInfo")
            .field("http_base", &self.http_base)
            .field("temp_dir", &self.temp_dir)
            .field("audio_tmp_dir", &self.audio_tmp_dir)
            .field("database", &self.database)
            .field("database_url", &database_url)
            .field("bugs", &self.bugs)
            .field("pid", &self.pid)
            .finish()
    }
}

/// The endpoint calls go to, and the process behind it when the harness started it. Its
/// `Debug` never shows the auth token.
pub struct ResolvedTarget {
    pub endpoint: CallEndpoint,
    pub auth_token: Option<String>,
    pub fleet: Option<SpawnedFleet>,
    /// Set for `fleet = "embedded"`.
    pub embedded: Option<EmbeddedFleetInfo>,
    /// A short description for the summary (`sink (started by voxsoak) ws://…`,
    /// `reference fleet (started by voxsoak, bugs: none) ws://…`, or the URL with its
    /// credentials masked).
    pub description: String,
}

impl ResolvedTarget {
    /// `http://127.0.0.1:PORT/` of the fleet the harness started (the embedded fleet or the
    /// sink), where its `/health` and `/metrics` answer; None for a fleet someone else runs.
    pub fn http_base(&self) -> Option<Url> {
        match (&self.embedded, &self.fleet) {
            (Some(info), _) => Some(info.http_base.clone()),
            (None, Some(fleet)) => Url::parse(&format!("http://{}/", fleet.address())).ok(),
            (None, None) => None,
        }
    }
}

impl fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedTarget")
            .field("endpoint", &self.endpoint)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "…"))
            .field("fleet", &self.fleet)
            .field("embedded", &self.embedded)
            .field("description", &self.description)
            .finish()
    }
}

/// Resolves the scenario's target, starting the fleet when the scenario asks for one.
/// `exe` is the voxsoak binary to start (`std::env::current_exe()` from the CLI).
/// `fleet_bugs` (`--fleet-bug`) are switched on in an embedded fleet on top of the
/// scenario's; with any other target they are an error ([`check_fleet_bugs`] says so with
/// the file name).
pub async fn resolve(
    target: &Target,
    exe: &Path,
    fleet_bugs: &[Bug],
    wiring: &FleetWiring,
) -> Result<ResolvedTarget, TargetError> {
    if !fleet_bugs.is_empty() && !matches!(target, Target::Embedded(_)) {
        return Err(TargetError::FleetBugNeedsEmbedded {
            scenario: None,
            targets: target_label(target),
        });
    }
    match target {
        Target::Sink(options) => {
            let fleet = spawn_sink(exe, options, wiring).await?;
            let url = stream_url(fleet.address);
            Ok(ResolvedTarget {
                description: format!("sink (started by voxsoak) {url}"),
                endpoint: CallEndpoint::Stream {
                    url,
                    custom_parameters: Default::default(),
                },
                auth_token: None,
                fleet: Some(fleet.into_spawned(None)),
                embedded: None,
            })
        }
        Target::Embedded(fleet) => spawn_embedded(exe, fleet, fleet_bugs, wiring).await,
        Target::External(external) => {
            let auth_token = match &external.auth_token_env {
                Some(name) => Some(
                    std::env::var(name)
                        .map_err(|_| TargetError::MissingToken { name: name.clone() })?,
                ),
                None => None,
            };
            let (endpoint, description) = match &external.endpoint {
                Endpoint::Stream(url) => (
                    CallEndpoint::Stream {
                        url: url.clone(),
                        custom_parameters: external.custom_parameters.clone(),
                    },
                    crate::redact::url(url),
                ),
                Endpoint::Webhook(url) => (
                    CallEndpoint::Webhook { url: url.clone() },
                    crate::redact::url(url),
                ),
            };
            Ok(ResolvedTarget {
                endpoint,
                auth_token,
                fleet: None,
                embedded: None,
                description,
            })
        }
    }
}

fn stream_url(address: SocketAddr) -> Url {
    Url::parse(&format!("ws://{address}/stream")).expect("a socket address makes a valid URL")
}

/// `exe SUBCOMMAND`, with the environment it must not inherit removed and its `TMPDIR` the
/// run's temp root. Callers add flags (and may set scrubbed variables deliberately, after
/// this).
fn child_command(exe: &Path, subcommand: &str, wiring: &FleetWiring) -> Command {
    let mut command = Command::new(exe);
    command.arg(subcommand);
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    if let Some(root) = &wiring.temp_root {
        command.env("TMPDIR", root);
    }
    command
}

async fn spawn_sink(
    exe: &Path,
    options: &SinkOptions,
    wiring: &FleetWiring,
) -> Result<Listening, TargetError> {
    let mut command = child_command(exe, "sink", wiring);
    command
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--reply-delay")
        .arg(humantime::format_duration(options.reply_delay).to_string())
        .arg("--reply-length")
        .arg(humantime::format_duration(options.reply_length).to_string());
    spawn_listening(
        command,
        "voxsoak sink",
        LISTENING_PREFIX,
        SINK_SPAWN_TIMEOUT,
        None,
        wiring.pid_file.clone(),
    )
    .await
}

/// Starts the reference fleet with the scenario's settings: the bugs to switch on, its
/// database (checked first, so a missing variable leaves nothing behind), its output log
/// and a temp dir of its own; then waits for it to say where it listens.
async fn spawn_embedded(
    exe: &Path,
    fleet: &EmbeddedFleet,
    extra_bugs: &[Bug],
    wiring: &FleetWiring,
) -> Result<ResolvedTarget, TargetError> {
    let bugs = fleet_bugs(fleet, extra_bugs);
    let postgres = postgres_from_env(fleet)?;
    let output_log = match &wiring.output_log {
        Some(path) => Some(
            OutputLog::open(path).map_err(|source| TargetError::OutputLog {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let dirs = FleetDirs::make(wiring)?;
    let (command, database) = fleet_command(exe, fleet, wiring, &bugs, postgres, &dirs);
    let listening = spawn_listening(
        command,
        "voxsoak fleet",
        crate::contract::fleet::LISTENING_PREFIX,
        FLEET_SPAWN_TIMEOUT,
        output_log,
        wiring.pid_file.clone(),
    )
    .await?;
    Ok(embedded_target(listening, dirs, database, bugs))
}

/// The scenario's bugs, then `--fleet-bug`'s, each once.
fn fleet_bugs(fleet: &EmbeddedFleet, extra_bugs: &[Bug]) -> Vec<Bug> {
    let mut bugs = fleet.bugs.clone();
    for bug in extra_bugs {
        if !bugs.contains(bug) {
            bugs.push(*bug);
        }
    }
    bugs
}

/// The PostgreSQL URL the scenario names a variable for (the variable's name and its
/// value), or None for the fleet's own SQLite file.
fn postgres_from_env(fleet: &EmbeddedFleet) -> Result<Option<(String, String)>, TargetError> {
    let Some(name) = &fleet.database_url_env else {
        return Ok(None);
    };
    let url = std::env::var(name).map_err(|_| TargetError::MissingDatabaseUrl {
        name: name.clone(),
        key: TARGET_DATABASE_KEY.to_owned(),
    })?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(TargetError::NotPostgresUrl { name: name.clone() });
    }
    Ok(Some((name.clone(), url)))
}

/// The embedded fleet's temp dir (in the run's temp root when there is one) and the
/// `audio/` folder inside it.
struct FleetDirs {
    /// Removes the folder when the fleet is stopped.
    temp_dir: TempDir,
    /// The temp dir's absolute path.
    root: PathBuf,
    /// The fleet's `AUDIO_TMP_DIR`.
    audio_tmp_dir: PathBuf,
}

impl FleetDirs {
    fn make(wiring: &FleetWiring) -> Result<FleetDirs, TargetError> {
        let temp_error = |source| TargetError::TempDir { source };
        let mut temp_dir = tempfile::Builder::new();
        temp_dir.prefix("voxsoak-fleet-");
        let temp_dir = match &wiring.temp_root {
            Some(root) => temp_dir.tempdir_in(root),
            None => temp_dir.tempdir(),
        }
        .map_err(temp_error)?;
        let root = std::path::absolute(temp_dir.path()).map_err(temp_error)?;
        let audio_tmp_dir = root.join("audio");
        std::fs::create_dir(&audio_tmp_dir).map_err(temp_error)?;
        Ok(FleetDirs {
            temp_dir,
            root,
            audio_tmp_dir,
        })
    }
}

/// The fleet's database as the chaos plane sees it, and its URL.
struct DatabaseChoice {
    database: FleetDatabase,
    /// May hold a password when it is PostgreSQL's: never printed.
    url: String,
}

/// `voxsoak fleet` with the scenario's settings as flags. A PostgreSQL URL goes through the
/// environment, not argv: a command line is readable by every user of the machine (`ps`),
/// and the URL may hold a password.
fn fleet_command(
    exe: &Path,
    fleet: &EmbeddedFleet,
    wiring: &FleetWiring,
    bugs: &[Bug],
    postgres: Option<(String, String)>,
    dirs: &FleetDirs,
) -> (Command, DatabaseChoice) {
    let mut command = child_command(exe, "fleet", wiring);
    command.arg("--listen").arg("127.0.0.1:0");
    let database = match postgres {
        Some((env, url)) => {
            command.env("DATABASE_URL", &url);
            DatabaseChoice {
                database: FleetDatabase::Postgres { env },
                url,
            }
        }
        None => {
            let path = dirs.root.join("fleet.db");
            let url = format!("sqlite://{}", path.display());
            command.arg("--database-url").arg(&url);
            DatabaseChoice {
                database: FleetDatabase::Sqlite { path },
                url,
            }
        }
    };
    command
        .arg("--audio-tmp-dir")
        .arg(&dirs.audio_tmp_dir)
        .arg("--db-pool-size")
        .arg(fleet.db_pool_size.to_string())
        .arg("--orders")
        .arg(fleet.orders.to_string())
        .arg("--workers")
        .arg(fleet.workers.to_string())
        .arg("--stall-after")
        .arg(humantime::format_duration(fleet.stall_after).to_string())
        .arg("--stall-after-calls")
        .arg(fleet.stall_after_calls.to_string())
        .arg("--temp-dir-budget")
        .arg(fleet.temp_dir_budget.to_string());
    if let Some(limit) = fleet.memory_limit {
        command.arg("--memory-limit").arg(limit.to_string());
    }
    for bug in bugs {
        command.arg("--bug").arg(bug.name());
    }
    for (flag, url) in [
        ("--llm-base-url", &wiring.llm_base_url),
        ("--tts-base-url", &wiring.tts_base_url),
        ("--alert-webhook-url", &wiring.alert_webhook_url),
    ] {
        if let Some(url) = url {
            command.arg(flag).arg(url);
        }
    }
    (command, database)
}

/// The started fleet as a target: where calls go, what the chaos plane and observers need
/// to know of it, and a description naming its bugs.
fn embedded_target(
    listening: Listening,
    dirs: FleetDirs,
    database: DatabaseChoice,
    bugs: Vec<Bug>,
) -> ResolvedTarget {
    let address = listening.address;
    let url = stream_url(address);
    let bug_names = if bugs.is_empty() {
        "none".to_owned()
    } else {
        bugs.iter()
            .map(|bug| bug.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let info = EmbeddedFleetInfo {
        http_base: Url::parse(&format!("http://{address}/"))
            .expect("a socket address makes a valid URL"),
        temp_dir: dirs.root,
        audio_tmp_dir: dirs.audio_tmp_dir,
        database: database.database,
        database_url: database.url,
        bugs,
        pid: listening.pid,
    };
    ResolvedTarget {
        description: format!("reference fleet (started by voxsoak, bugs: {bug_names}) {url}"),
        endpoint: CallEndpoint::Stream {
            url,
            custom_parameters: Default::default(),
        },
        auth_token: None,
        fleet: Some(listening.into_spawned(Some(dirs.temp_dir))),
        embedded: Some(info),
    }
}

/// A started child that reported its address.
struct Listening {
    child: Child,
    what: &'static str,
    pid: Option<u32>,
    address: SocketAddr,
    stderr: StderrExcerpt,
    recipe: Recipe,
    prefix: &'static str,
    timeout: Duration,
    log: Option<OutputLog>,
    pid_file: Option<PathBuf>,
}

impl Listening {
    fn into_spawned(self, temp_dir: Option<TempDir>) -> SpawnedFleet {
        SpawnedFleet {
            child: self.child,
            what: self.what,
            pid: self.pid,
            stderr: self.stderr,
            recipe: self.recipe,
            address: self.address,
            prefix: self.prefix,
            timeout: self.timeout,
            restarts: 0,
            stopped_by_harness: false,
            log: self.log,
            pid_file: self.pid_file,
            temp_dir,
        }
    }
}

/// Starts `command` (a voxsoak subcommand) and waits up to `timeout` for the line
/// `prefix ADDR` on its stdout. The child gets its own process group (Ctrl-C in the
/// terminal reaches the harness, which ends the calls and then stops the fleet, instead of
/// killing the fleet under live calls), is killed if the handle is dropped, and has both
/// pipes drained for as long as it lives (so it never blocks on a full one); the last
/// lines of its stderr are kept for messages, and both pipes' lines go to `log` if given.
/// A child that exits before printing its address is reported at once, with its exit
/// status and stderr. It dies with the harness (see the module docs), and its pid is
/// written to `pid_file` as soon as it is started (removed again if it fails to start).
async fn spawn_listening(
    command: Command,
    what: &'static str,
    prefix: &'static str,
    timeout: Duration,
    log: Option<OutputLog>,
    pid_file: Option<PathBuf>,
) -> Result<Listening, TargetError> {
    let recipe = Recipe::of(&command);
    let mut child = start_child(command, what, pid_file.as_deref()).await?;
    let pid = child.id();
    let (stderr, stderr_done) = keep_stderr(&mut child, log.clone());
    let mut stdout = PipeLines::new(child.stdout.take().expect("stdout is piped"), log.clone());
    let deadline = Instant::now() + timeout;
    let failure = match read_address(&mut stdout, prefix, deadline).await {
        Ok(Some(address)) => match address.parse::<SocketAddr>() {
            Ok(address) => {
                tokio::spawn(stdout.drain());
                return Ok(Listening {
                    child,
                    what,
                    pid,
                    address,
                    stderr,
                    recipe,
                    prefix,
                    timeout,
                    log,
                    pid_file,
                });
            }
            Err(_) => {
                let _ = child.kill().await;
                StartFailure::BadAddress(address)
            }
        },
        // Its stdout closed: it exited (or is about to), so say why now rather than at
        // the timeout.
        Ok(None) => StartFailure::Exited(exit_status(&mut child, deadline).await),
        Err(_) => {
            let _ = child.kill().await;
            StartFailure::Timeout
        }
    };
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    // The child is gone: the rest of its stderr is on its way.
    let _ = tokio::time::timeout(STDERR_WAIT, stderr_done).await;
    Err(failure.into_error(what, timeout, stderr.text()))
}

/// Starts the child in its own process group with both pipes captured, and writes its pid
/// to `pid_file` (dropping the child on that error kills it).
async fn start_child(
    mut command: Command,
    what: &'static str,
    pid_file: Option<&Path>,
) -> Result<Child, TargetError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    die_with_harness(&mut command);
    let exe = PathBuf::from(command.as_std().get_program());
    let child = spawn_child(command)
        .await
        .map_err(|source| TargetError::Spawn { what, exe, source })?;
    if let (Some(path), Some(pid)) = (pid_file, child.id()) {
        PidFile::for_child(pid, what)
            .write(path)
            .map_err(|source| TargetError::PidFile {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok(child)
}

/// Drains the child's stderr for as long as it lives, keeping its last lines (and writing
/// every line to `log`); the task ends when the pipe closes.
fn keep_stderr(
    child: &mut Child,
    log: Option<OutputLog>,
) -> (StderrExcerpt, tokio::task::JoinHandle<()>) {
    let stderr = StderrExcerpt::default();
    let stderr_pipe = child.stderr.take().expect("stderr is piped");
    let tail = stderr.clone();
    let done = tokio::spawn(async move {
        let mut lines = PipeLines::new(stderr_pipe, log);
        while let Some(line) = lines.next_line().await {
            tail.push(line);
        }
    });
    (stderr, done)
}

/// The text after `prefix` on the first stdout line that starts with it; None when stdout
/// closes first, an error when `deadline` passes first.
async fn read_address(
    stdout: &mut PipeLines<tokio::process::ChildStdout>,
    prefix: &str,
    deadline: Instant,
) -> Result<Option<String>, tokio::time::error::Elapsed> {
    tokio::time::timeout_at(deadline, async {
        while let Some(line) = stdout.next_line().await {
            if let Some(address) = line.strip_prefix(prefix) {
                return Some(address.trim().to_owned());
            }
        }
        None
    })
    .await
}

/// How a child that closed its stdout ended: its exit status, or (still running after a
/// short wait) killed.
async fn exit_status(child: &mut Child, deadline: Instant) -> String {
    let wait_until = deadline.min(Instant::now() + EXIT_WAIT);
    match tokio::time::timeout_at(wait_until, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(error)) => format!("status unknown: {error}"),
        Err(_) => {
            let _ = child.kill().await;
            "it closed its stdout and was killed".to_owned()
        }
    }
}

/// Why a child did not come to listen.
enum StartFailure {
    BadAddress(String),
    Exited(String),
    Timeout,
}

impl StartFailure {
    fn into_error(self, what: &'static str, timeout: Duration, stderr: String) -> TargetError {
        match self {
            StartFailure::BadAddress(address) => TargetError::BadAddress { what, address },
            StartFailure::Exited(status) => TargetError::Exited {
                what,
                status,
                stderr,
            },
            StartFailure::Timeout => TargetError::NoAddress {
                what,
                timeout,
                stderr,
            },
        }
    }
}

/// Makes the child die with the harness (Linux): `PR_SET_PDEATHSIG(SIGKILL)` between fork
/// and exec; should the harness already be gone by then (its parent is no longer the
/// harness), the child does not start. Elsewhere the pid file is what is left.
fn die_with_harness(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid has no preconditions.
        let harness = unsafe { libc::getpid() };
        let set_death_signal = move || {
            // SAFETY: prctl and getppid are async-signal-safe, as the code between fork and
            // exec must be; nothing here allocates or takes a lock.
            unsafe {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != harness {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            Ok(())
        };
        // SAFETY: the closure only makes async-signal-safe calls (above).
        unsafe {
            command.pre_exec(set_death_signal);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// A job for the spawner thread.
type SpawnJob = Box<dyn FnOnce() + Send>;

/// Starts `command` from the one thread that forks every child ([`spawner`]), in the
/// calling runtime (which reaps it and drives its pipes).
async fn spawn_child(mut command: Command) -> std::io::Result<Child> {
    let runtime = tokio::runtime::Handle::current();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: SpawnJob = Box::new(move || {
        let _runtime = runtime.enter();
        let _ = reply.send(command.spawn());
    });
    spawner()?
        .send(job)
        .map_err(|_| std::io::Error::other("the thread that starts child processes is gone"))?;
    answer
        .await
        .map_err(|_| std::io::Error::other("the thread that starts child processes is gone"))?
}

/// The thread every child is forked from. The death signal set in the child fires when the
/// thread that forked it exits; this one waits for jobs for as long as the process lives
/// (its sender is never dropped), so a child dies with the harness, not with a thread.
fn spawner() -> std::io::Result<&'static std::sync::mpsc::Sender<SpawnJob>> {
    static SPAWNER: std::sync::OnceLock<std::sync::mpsc::Sender<SpawnJob>> =
        std::sync::OnceLock::new();
    if let Some(sender) = SPAWNER.get() {
        return Ok(sender);
    }
    let (sender, jobs) = std::sync::mpsc::channel::<SpawnJob>();
    std::thread::Builder::new()
        .name("voxsoak-spawner".into())
        .spawn(move || {
            for job in jobs {
                job();
            }
        })?;
    // Two first callers at once: the loser's thread ends when its sender is dropped here,
    // having forked nothing.
    Ok(SPAWNER.get_or_init(|| sender))
}

/// Checks that the target accepts TCP connections before any call is placed, so an
/// unreachable target is a harness error (exit 2), not thousands of failed calls.
pub async fn preflight(endpoint: &CallEndpoint) -> Result<(), TargetError> {
    let url = match endpoint {
        CallEndpoint::Stream { url, .. } | CallEndpoint::Webhook { url } => url,
    };
    let unreachable = |reason: String| TargetError::Unreachable {
        url: crate::redact::url(url),
        reason,
    };
    let host = url
        .host_str()
        .ok_or_else(|| unreachable("the URL has no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| unreachable("the URL has no port".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(PREFLIGHT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable(format!(
            "no TCP answer within {PREFLIGHT_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipe_lines_are_bounded_and_split() {
        let long = "x".repeat(MAX_LINE_BYTES * 3);
        let input = format!("first\r\n{long}\nlast without newline");
        let mut lines = PipeLines::new(input.as_bytes(), None);
        assert_eq!(lines.next_line().await.as_deref(), Some("first"));
        assert_eq!(lines.next_line().await.unwrap().len(), MAX_LINE_BYTES);
        assert_eq!(
            lines.next_line().await.as_deref(),
            Some("last without newline")
        );
        assert_eq!(lines.next_line().await, None);
    }

    #[tokio::test]
    async fn pipe_lines_go_to_the_output_log_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.log");
        std::fs::write(&path, "from an earlier start\n").unwrap();
        let log = OutputLog::open(&path).unwrap();
        let mut stdout = PipeLines::new("one\r\ntwo".as_bytes(), Some(log.clone()));
        let mut stderr = PipeLines::new("oops\n".as_bytes(), Some(log));
        assert_eq!(stdout.next_line().await.as_deref(), Some("one"));
        assert_eq!(stderr.next_line().await.as_deref(), Some("oops"));
        stdout.drain().await;
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "from an earlier start\none\noops\ntwo\n"
        );
    }

    /// A `{ log = "…" }` rule on the embedded fleet's output still matches once the log has
    /// been rotated: the log observer follows the new file.
    #[test]
    fn the_output_log_rotates_at_its_cap_and_the_log_observer_follows() {
        use crate::observe::log_tail::{LogEvent, LogTail, LogWatch};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.log");
        let rotated = dir.path().join("fleet.log.1");
        let log = OutputLog::open_capped(&path, 100).unwrap();
        let mut tail = LogTail::start(&[LogWatch {
            file: path.clone(),
            patterns: vec!["alert firing TtsRateLimited".into()],
        }]);
        let filler = |index: usize| format!("worker {index}: nothing to report here");
        for index in 0..2 {
            log.write_line(&filler(index));
        }
        assert!(tail.poll().is_empty());
        assert!(!rotated.exists(), "under the cap");
        // This line would take it past 100 bytes: it starts the new file.
        log.write_line("alert firing TtsRateLimited: 3 429s");
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            format!("{}\n{}\n", filler(0), filler(1))
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "alert firing TtsRateLimited: 3 429s\n"
        );
        let events = tail.poll();
        assert!(
            matches!(&events[..], [LogEvent::Match { line, .. }] if line.ends_with("3 429s")),
            "{events:?}"
        );
        // Rotated again: the older `.1` is replaced, and at most twice the cap is kept.
        log.write_line(&filler(2));
        log.write_line("alert firing TtsRateLimited: again");
        let kept =
            std::fs::metadata(&path).unwrap().len() + std::fs::metadata(&rotated).unwrap().len();
        assert!(kept <= 200, "{kept} bytes kept");
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            format!("alert firing TtsRateLimited: 3 429s\n{}\n", filler(2))
        );
        let events = tail.poll();
        assert!(
            matches!(&events[..], [LogEvent::Match { line, .. }] if line.ends_with("again")),
            "{events:?}"
        );
    }

    #[test]
    fn stderr_excerpt_keeps_the_first_and_last_lines() {
        let excerpt = StderrExcerpt::default();
        for index in 0..3 {
            excerpt.push(format!("line {index}"));
        }
        assert_eq!(excerpt.text(), "line 0\nline 1\nline 2");
        for index in 3..50 {
            excerpt.push(format!("line {index}"));
        }
        let text = excerpt.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), STDERR_HEAD_LINES + 1 + STDERR_TAIL_LINES);
        assert_eq!(
            lines[..5],
            ["line 0", "line 1", "line 2", "line 3", "line 4"]
        );
        assert_eq!(lines[5], "[25 lines omitted]");
        assert_eq!(lines[6], "line 30");
        assert_eq!(lines[25], "line 49");
    }

    #[test]
    fn stderr_hints_read_well() {
        assert_eq!(stderr_hint("  \n"), "");
        assert_eq!(stderr_hint("boom\n"), "; it said: boom");
        assert_eq!(stderr_hint("one\ntwo"), "; its stderr:\n  one\n  two");
    }

    #[test]
    fn postgres_urls_stay_out_of_debug_output() {
        let info = EmbeddedFleetInfo {
            http_base: Url::parse("http://127.0.0.1:1/").unwrap(),
            temp_dir: PathBuf::from("/tmp/x"),
            audio_tmp_dir: PathBuf::from("/tmp/x/audio"),
            database: FleetDatabase::Postgres { env: "PG".into() },
            database_url: "postgres://u:hunter2@db/x".into(),
            bugs: vec![],
            pid: None,
        };
        assert!(!format!("{info:?}").contains("hunter2"));
    }

    #[test]
    fn every_host_a_postgres_url_connects_to_is_checked() {
        let hosts =
            |url: &str, pghost: Option<&str>| postgres_hosts(&Url::parse(url).unwrap(), pghost);
        assert_eq!(
            hosts("postgres://u:pw@db.example.com:5432/orders", None),
            ["db.example.com"]
        );
        // sqlx lets `host` in the query win over the URL's.
        assert_eq!(
            hosts("postgres://u@127.0.0.1/x?host=db.example.com", None),
            ["127.0.0.1", "db.example.com"]
        );
        assert_eq!(
            hosts("postgresql://u@[::1]/x?hostaddr=10.1.2.3", None),
            ["[::1]", "10.1.2.3"]
        );
        // No host at all: PGHOST, which the fleet inherits, else localhost.
        assert_eq!(hosts("postgres:///x", Some("db.internal")), ["db.internal"]);
        assert_eq!(hosts("postgres:///x", None), ["localhost"]);
        // A Unix socket is on this machine.
        assert!(hosts("postgres://u@%2Fvar%2Frun%2Fpostgresql/x", None).is_empty());
        assert!(hosts("postgres:///x?host=/var/run/postgresql", None).is_empty());
        // libpq's list form.
        assert_eq!(hosts("postgres://u@a,b/x", None), ["a", "b"]);
    }
}

//! Subcommands, kept in the library so tests can drive the CLI in-process
//! (`Cli::try_parse_from` then [`main`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::console::{errln, out, outln};
use crate::exit;
use crate::fleet::{Bug, FleetOptions};
use crate::run::{RunOptions, Shutdown, run_until};
use crate::scenario;
use crate::sink::{self, SinkOptions};
use crate::target::LISTENING_PREFIX;

/// Chaos and soak testing for real-time voice-agent fleets.
#[derive(Debug, Parser)]
#[command(name = "voxsoak", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// The harness's own log on stderr (and, for `run`, in the run directory's
    /// harness.log): off, error, warn, info, debug, trace, or targets with levels
    /// (warn,voxsoak::chaos=debug). Overrides RUST_LOG. [default: warn on stderr; the run
    /// directory's log also keeps voxsoak's info]
    #[arg(long, global = true, value_name = "FILTER", value_parser = crate::logging::parse_filter)]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and grade the fleet. Exit 0: every SLO passed; 1: an SLO failed;
    /// 2: the run could not be carried out.
    Run(RunArgs),
    /// Check a scenario file; errors give file:line:column. Nothing runs.
    Validate { scenario: PathBuf },
    /// Print the scenario's timeline (stages, arrivals, scripts, SLOs). Nothing runs.
    Plan {
        scenario: PathBuf,
        /// Compress the schedule this many times (replaces the scenario's time_scale).
        #[arg(long, value_name = "X", value_parser = parse_time_scale)]
        time_scale: Option<f64>,
    },
    /// Re-create a run directory's reports (summary.json) from its journal.jsonl alone, and
    /// print the verdict. Works on the journal of a run that was killed (verdict
    /// `aborted`). Exit codes as for `run`.
    Report {
        /// The run directory (it holds journal.jsonl).
        run_dir: PathBuf,
    },
    /// Go on with a run whose harness died (SIGKILL, an OOM kill, a lost machine): what
    /// the killed harness left is cleaned up first (its fleet, temp files, leaked files;
    /// faults it left in effect are undone), the fleet is started again, and the schedule
    /// goes on from where the journal stops. The time the harness was away is journaled as
    /// harness downtime, never counted against the fleet. Exit codes as for `run`.
    Resume(ResumeArgs),
    /// A minimal Twilio-speaking echo fleet for tests and benchmarks.
    Sink(SinkArgs),
    /// The reference fleet: a real small voice-agent server (Twilio Media Streams, LLM with a
    /// tool, database, TTS, workers and a self-healer) with switchable production bugs.
    Fleet(FleetArgs),
    /// Inject one fault by hand against a fleet that is already running, with a live view,
    /// and undo it on exit (the duration passes, Ctrl-C, SIGTERM).
    #[command(after_help = crate::chaos::by_hand::KINDS_HELP.as_str())]
    Chaos(ChaosArgs),
    /// Remove what runs killed with `kill -9` (or an OOM kill, a reboot) left behind: their
    /// temp dirs under $TMPDIR/voxsoak-UID/ (SQLite file, audio, leaked files) and any fleet
    /// or sink that outlived them. Only runs whose harness is gone are touched. Every
    /// `voxsoak run` does this as it starts.
    Clean(CleanArgs),
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Say what would be removed and killed; remove and kill nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run directories to clean after as well (their journal names their temp dir, which
    /// may be under another $TMPDIR; their fleet.pid names the fleet they started).
    #[arg(value_name = "RUN_DIR")]
    pub run_dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// The fault kind, as a scenario's `[[faults]]` kind names it (listed below).
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// How long the fault stays on (e.g. 30s, 5m).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Duration,
    /// A parameter of the kind, as in a `[[faults]]` entry (repeatable): a number or bool is
    /// read as such, anything else as a string, e.g. --set rate=4MiB/s --set holders=3.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// process_stall / process_kill: the process to signal.
    #[arg(long)]
    pub pid: Option<u32>,
    /// db_pool_exhaustion: the NAME of the variable holding the fleet's database URL.
    #[arg(long, value_name = "NAME")]
    pub database_url_env: Option<String>,
    /// temp_file_leak: the fleet's temp dir, which naming it declares writable (never a
    /// system directory, resolved through `..` and symlinks).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// temp_file_leak: allow max_total above the 10 GiB ceiling (writing still stops
    /// before free space falls below min_free).
    #[arg(long)]
    pub allow_large_leaks: bool,
    /// Stand-in kinds (tts_*, llm_*, *_tool_params): where the stand-in serves, e.g.
    /// 127.0.0.1:9100; the fleet must already be pointed at it.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A host a proxy's upstream may be on, besides loopback (repeatable).
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Seeds the draws of fraction and toxicity.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl ChaosArgs {
    pub fn into_request(self) -> crate::chaos::by_hand::ByHandRequest {
        crate::chaos::by_hand::ByHandRequest {
            kind: self.kind,
            duration: self.duration,
            settings: self.settings,
            pid: self.pid,
            database_url_env: self.database_url_env,
            dir: self.dir,
            allow_large_leaks: self.allow_large_leaks,
            listen: self.listen,
            allow_hosts: self.allow_hosts,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run directory of the run to go on with (it holds journal.jsonl).
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub controls: RunControls,
}

/// How a run is watched and stopped: the same for `run` and `resume`.
#[derive(Debug, Args)]
pub struct RunControls {
    /// After Ctrl-C, SIGTERM, SIGHUP or an abort condition: how long calls in progress may
    /// go on (no new call starts) before they are cancelled. A second signal cancels them
    /// at once.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Rewrite the reports from the journal this often while the run goes on (replaces
    /// the scenario's report_every, default 15m; 0s: only at the end).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub report_every: Option<Duration>,
    /// Serve the harness's own metrics during the run at http://ADDR/metrics (Prometheus
    /// text: calls, latency histograms, faults in effect, SLO status so far, RSS and CPU),
    /// e.g. 127.0.0.1:9464; port 0 picks a free one, printed on stderr. Loopback only
    /// unless the scenario's `[target] allow_hosts` names the address. Replaces the
    /// scenario's metrics_listen. (A resumed harness's counters start from zero.)
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// No live progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub scenario: PathBuf,
    /// Run directory for summary.json and journal.jsonl [default: reports/RUN_ID/]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the scenario's load duration (e.g. 90s, 2h): the timeline is cut there, or
    /// its last level is held until then.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Run the schedule X times faster than written (replaces the scenario's time_scale):
    /// load stages, arrivals and fault times are compressed, while each call's audio,
    /// detection and recovery stay in real time. 96 runs a 24 h schedule in 15 minutes.
    #[arg(long, value_name = "X", value_parser = parse_time_scale)]
    pub time_scale: Option<f64>,
    /// Replace the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub controls: RunControls,
    /// Start the embedded reference fleet with this production bug switched on
    /// (repeatable; only with `[target] fleet = "embedded"`).
    #[arg(long = "fleet-bug", value_name = "BUG")]
    pub fleet_bugs: Vec<Bug>,
    /// Print what would run and be injected, where and when (the plan), and stop: nothing
    /// is started, nothing is injected.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Delay from the end of the caller's speech to the reply (never less than the 500 ms of
    /// silence that ends a caller turn).
    #[arg(long, default_value = "600ms", value_parser = parse_duration)]
    pub reply_delay: Duration,
    /// Length of each reply.
    #[arg(long, default_value = "800ms", value_parser = parse_duration)]
    pub reply_length: Duration,
    /// Greet the caller when the stream starts.
    #[arg(long)]
    pub greeting: bool,
    /// Require X-Twilio-Signature on webhooks and stream handshakes.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Switch on a production bug (repeatable).
    #[arg(long = "bug", value_name = "BUG")]
    pub bugs: Vec<Bug>,
    /// sqlite://PATH or postgres://USER@HOST/DB [default: a SQLite file in a temp dir,
    /// removed at exit]
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections in the database pool.
    #[arg(long, default_value_t = 10)]
    pub db_pool_size: u32,
    /// Rows seeded into the orders table.
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: u64,
    /// Workers serving agent turns.
    #[arg(long, default_value_t = 8)]
    pub workers: u32,
    /// The healer restarts a worker silent for longer than this.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub stall_after: Duration,
    /// How often the healer looks for silent workers.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub heal_interval: Duration,
    /// With --bug silent-stall: jobs a worker serves before it stalls.
    #[arg(long, default_value_t = 20)]
    pub stall_after_calls: u32,
    /// Die like an OOM-killed pod (SIGKILL, exit status 137) when RSS passes this, e.g. 1GiB.
    #[arg(long, value_parser = crate::units::parse_byte_size)]
    pub memory_limit: Option<u64>,
    /// Where TTS audio is written [default: a temp dir, removed at exit]
    #[arg(long, env = "AUDIO_TMP_DIR")]
    pub audio_tmp_dir: Option<PathBuf>,
    /// Temp dir size above which /health is 503 and TempDirGrowing fires.
    #[arg(long, default_value = "256MiB", value_parser = crate::units::parse_byte_size)]
    pub temp_dir_budget: u64,
    /// OpenAI-compatible LLM base URL, e.g. http://127.0.0.1:9000/v1 [default: a built-in
    /// stand-in]
    #[arg(long, env = "LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// OpenAI-compatible TTS base URL [default: a built-in stand-in]
    #[arg(long, env = "TTS_BASE_URL")]
    pub tts_base_url: Option<String>,
    /// Where alerts are POSTed, in the Alertmanager webhook format.
    #[arg(long, env = "ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
    /// Require X-Twilio-Signature on /voice and /stream.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// Greet the caller when the stream starts.
    #[arg(long)]
    pub greeting: bool,
}

impl FleetArgs {
    pub fn into_options(self) -> FleetOptions {
        FleetOptions {
            listen: self.listen,
            bugs: self.bugs,
            database_url: self.database_url,
            db_pool_size: self.db_pool_size,
            orders: self.orders,
            workers: self.workers,
            stall_after: self.stall_after,
            heal_interval: self.heal_interval,
            stall_after_calls: self.stall_after_calls,
            memory_limit: self.memory_limit,
            audio_tmp_dir: self.audio_tmp_dir,
            temp_dir_budget: self.temp_dir_budget,
            llm_base_url: self.llm_base_url,
            tts_base_url: self.tts_base_url,
            alert_webhook_url: self.alert_webhook_url,
            twilio_auth_token: self.twilio_auth_token,
            greeting: self.greeting,
        }
    }
}

fn parse_time_scale(text: &str) -> Result<f64, String> {
    let max = scenario::MAX_TIME_SCALE;
    match text.parse::<f64>() {
        Ok(scale) if scenario::time_scale_allowed(scale) => Ok(scale),
        _ => Err(format!(
            "expected a number from 1 (real time) to {max}, e.g. 96 to run 24 h of schedule in 15 minutes"
        )),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{error} (expected e.g. 300ms, 30s, 1m30s)"))
}

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    crate::logging::init(cli.log_level.as_deref());
    match cli.command {
        Command::Validate { scenario } => validate_command(&scenario),
        Command::Plan {
            scenario,
            time_scale,
        } => match scenario::load(&scenario) {
            Ok(loaded) => {
                let loaded = match time_scale {
                    Some(scale) => loaded.with_time_scale(scale),
                    None => loaded,
                };
                print_warnings(&loaded, loaded.load.duration());
                out(crate::escape::terminal(&crate::plan::render_plan(&loaded)));
                exit::PASS
            }
            Err(error) => {
                errln(format_args!("{}", chain(&error)));
                exit::HARNESS_ERROR
            }
        },
        Command::Report { run_dir } => report_command(&run_dir),
        Command::Run(args) => with_runtime(&RUN_STOPS, |shutdown| async move {
            run_command(args, shutdown).await
        }),
        Command::Resume(args) => with_runtime(&RUN_STOPS, |shutdown| async move {
            resume_command(args, shutdown).await
        }),
        Command::Sink(args) => with_runtime(&SERVER_STOPS, |shutdown| async move {
            sink_command(args, shutdown.stop).await
        }),
        Command::Chaos(args) => chaos_command(args),
        Command::Fleet(args) => with_runtime(&SERVER_STOPS, |shutdown| async move {
            match crate::fleet::run(args.into_options(), shutdown.stop).await {
                Ok(()) => exit::PASS,
                Err(error) => {
                    errln(format_args!("voxsoak fleet: {}", chain(&error)));
                    exit::HARNESS_ERROR
                }
            }
        }),
        Command::Clean(args) => clean_command(&args),
    }
}

/// `voxsoak validate`: everything `run` would refuse before starting, except what needs
/// the target itself (reachable, its TwiML): the file, its fixtures, and the database
/// hosts of the variables that are set (`validate` often runs without the secrets).
fn validate_command(path: &std::path::Path) -> i32 {
    let loaded = match scenario::load(path) {
        Ok(loaded) => loaded,
        Err(error) => {
            errln(chain(&error));
            return exit::HARNESS_ERROR;
        }
    };
    if let Err(error) =
        crate::target::check_database_hosts(&loaded, crate::target::UnsetVariable::Skip)
    {
        errln(format_args!("voxsoak: {}", chain(&error)));
        return exit::HARNESS_ERROR;
    }
    print_warnings(&loaded, loaded.load.duration());
    let ok = format!(
        "{}: ok ({}, {} script(s))",
        path.display(),
        loaded.name,
        loaded.scripts.len()
    );
    // The name is the scenario's own text: a URL pasted into it is masked as `plan` masks it.
    outln(crate::escape::terminal_line(&ok));
    exit::PASS
}

/// The scenario's warnings for a run of `run_for`, on stderr: they never change the exit
/// code.
fn print_warnings(loaded: &scenario::Scenario, run_for: Duration) {
    for warning in loaded.warnings(run_for).lines() {
        errln(&warning);
    }
}

/// `voxsoak clean`: one line per thing removed, killed or kept; exit 2 if something could
/// not be cleaned.
fn clean_command(args: &CleanArgs) -> i32 {
    let base = crate::cleanup::base_dir();
    let mut cleaned = crate::cleanup::clean_run_dirs(&args.run_dirs, args.dry_run);
    cleaned.extend(crate::cleanup::sweep(&base, args.dry_run));
    for item in &cleaned {
        outln(item.describe(args.dry_run));
    }
    if !cleaned.iter().any(crate::cleanup::Cleaned::acted) {
        outln(format_args!(
            "nothing to clean in {} (left by runs whose harness is gone)",
            base.display()
        ));
    }
    if cleaned
        .iter()
        .any(|item| matches!(item, crate::cleanup::Cleaned::Failed { .. }))
    {
        exit::HARNESS_ERROR
    } else {
        exit::PASS
    }
}

/// How long the runtime may take to end its tasks once the command is done (a blocking
/// task that hangs must not keep the process alive).
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

/// What a command says when a signal stops it: after the first, and after the second.
#[derive(Debug)]
struct StopMessages {
    first: &'static str,
    second: &'static str,
}

const RUN_STOPS: StopMessages = StopMessages {
    first: "ending calls, undoing faults, writing reports; a second Ctrl-C ends at once \
            (faults are still undone)",
    second: "no longer waiting for calls; undoing faults and stopping the fleet, within 10s",
};
const CHAOS_STOPS: StopMessages = StopMessages {
    first: "undoing the fault",
    second: "still undoing the fault",
};
const SERVER_STOPS: StopMessages = StopMessages {
    first: "closing its connections",
    second: "still closing its connections",
};

fn with_runtime<F, Fut>(messages: &'static StopMessages, body: F) -> i32
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let _ = crate::procinfo::raise_open_file_limit();
    // Before the runtime's threads exist: each would otherwise take an arena of its own.
    crate::procinfo::limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            errln(format_args!(
                "voxsoak: could not start the async runtime: {error}"
            ));
            return exit::HARNESS_ERROR;
        }
    };
    // A panic here is caught before the runtime is dropped, so it still shuts down within
    // its deadline (faults undone in their `Drop`, the fleet killed) and the exit is 2.
    let run = || {
        runtime.block_on(async {
            let shutdown = Shutdown::default();
            // Before anything starts: from here on these signals end the command in order.
            match StopSignals::register() {
                Ok(signals) => {
                    tokio::spawn(signals.cancel(shutdown.clone(), messages));
                }
                Err(error) => errln(format_args!(
                    "voxsoak: could not handle SIGINT, SIGTERM and SIGHUP: {error}"
                )),
            }
            body(shutdown).await
        })
    };
    let code = exit::unless_panicked(run, &mut std::io::stderr());
    // What is left (a task past its deadline) is dropped here: faults undo themselves in
    // their `Drop`, and a fleet the harness started is killed with its handle.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    code
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP (a closed terminal, a dropped ssh session): each
/// stops the command the same way.
#[derive(Debug)]
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn register() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }

    /// The first signal stops the command (a run ends its calls, undoes its faults, stops
    /// its fleet and writes its reports); a second hurries it (see [`Shutdown`]). Each is
    /// acted on before anything is written: the message goes to a stderr that may be a
    /// closed pipe or a hung-up terminal, and the write's failure is ignored.
    async fn cancel(mut self, shutdown: Shutdown, messages: &StopMessages) {
        let first = self.next().await;
        shutdown.stop.cancel();
        errln(format_args!(
            "voxsoak: stopping ({first}): {}",
            messages.first
        ));
        let second = self.next().await;
        shutdown.hurry.cancel();
        errln(format_args!(
            "voxsoak: ending at once ({second}): {}",
            messages.second
        ));
        loop {
            let more = self.next().await;
            errln(format_args!("voxsoak: already ending ({more})"));
        }
    }
}

fn report_command(run_dir: &std::path::Path) -> i32 {
    let journal = run_dir.join("journal.jsonl");
    if !journal.is_file() {
        errln(format_args!(
            "voxsoak report: {} has no journal.jsonl (expected a run directory written by voxsoak run)",
            run_dir.display()
        ));
        return exit::HARNESS_ERROR;
    }
    match crate::report::Summary::rebuild(run_dir) {
        Ok(summary) => {
            for problem in &summary.journal.problems {
                errln(format_args!(
                    "voxsoak report: skipped {}",
                    crate::escape::line(problem)
                ));
            }
            out(summary.render_text_in(crate::console::colour_stdout()));
            outln(format_args!("  reports    {}", run_dir.display()));
            summary.verdict.exit_code()
        }
        Err(error) => {
            errln(format_args!(
                "voxsoak report: could not rebuild the reports of {}: {error}",
                run_dir.display()
            ));
            exit::HARNESS_ERROR
        }
    }
}

async fn run_command(args: RunArgs, shutdown: Shutdown) -> i32 {
    if args.dry_run {
        return dry_run(&args);
    }
    let Some(exe) = own_exe() else {
        return exit::HARNESS_ERROR;
    };
    let options = RunOptions {
        scenario: args.scenario,
        out: args.out,
        duration: args.duration,
        time_scale: args.time_scale,
        grace: Some(args.controls.grace),
        report_every: args.controls.report_every,
        seed: args.seed,
        progress: !args.controls.quiet,
        exe,
        fleet_bugs: args.fleet_bugs,
        resume: None,
        metrics_listen: args.controls.metrics_listen,
    };
    run_and_report(options, shutdown).await
}

/// The voxsoak binary, to start child fleets with; None (said on stderr) if not found.
fn own_exe() -> Option<PathBuf> {
    std::env::current_exe()
        .inspect_err(|error| {
            errln(format_args!(
                "voxsoak: cannot find its own executable: {error}"
            ));
        })
        .ok()
}

/// `voxsoak resume`: cleans after the killed harness, then goes on with its run.
async fn resume_command(args: ResumeArgs, shutdown: Shutdown) -> i32 {
    let point = match crate::journal::resume::read(&args.run_dir) {
        Ok(point) => point,
        Err(error) => {
            errln(format_args!("voxsoak resume: {}", chain(&error)));
            return exit::HARNESS_ERROR;
        }
    };
    let run_dirs = [args.run_dir.clone()];
    // Looked at before anything is touched: a run that is still going is left alone.
    let found = crate::cleanup::clean_run_dirs(&run_dirs, true);
    if let Some(going) = crate::cleanup::still_going(&found) {
        errln(format_args!(
            "voxsoak resume: {} is not a run whose harness died: {}",
            args.run_dir.display(),
            going.describe(true)
        ));
        return exit::HARNESS_ERROR;
    }
    let cleaned: Vec<String> = crate::cleanup::clean_run_dirs(&run_dirs, false)
        .iter()
        .map(|item| item.describe(false))
        .collect();
    for line in &cleaned {
        errln(format_args!("voxsoak resume: {line}"));
    }
    let down = point.downtime(std::time::SystemTime::now());
    errln(format_args!(
        "voxsoak resume: run {} goes on at {} of {} (real time), after the harness was away {}; {} fault(s) it left in effect undone",
        crate::escape::terminal(&point.run_id),
        humantime::format_duration(Duration::from_secs(point.last_t_s as u64)),
        humantime::format_duration(Duration::from_secs(point.planned_s as u64)),
        humantime::format_duration(Duration::from_secs(down.as_secs())),
        point.open_faults.len()
    ));
    let Some(exe) = own_exe() else {
        return exit::HARNESS_ERROR;
    };
    let fleet_bugs = point
        .fleet_bugs
        .iter()
        .filter_map(|name| Bug::from_name(name))
        .collect();
    let options = RunOptions {
        scenario: point.scenario_path.clone(),
        out: Some(args.run_dir),
        duration: None,
        time_scale: None,
        grace: Some(args.controls.grace),
        report_every: args.controls.report_every,
        seed: None,
        progress: !args.controls.quiet,
        exe,
        fleet_bugs,
        resume: Some(crate::run::Resume { point, cleaned }),
        metrics_listen: args.controls.metrics_listen,
    };
    run_and_report(options, shutdown).await
}

/// Runs, prints the summary and says where the reports are; the exit code of the verdict.
async fn run_and_report(options: RunOptions, shutdown: Shutdown) -> i32 {
    // The terminal may be gone by now (SIGHUP): the summary is written whatever happens
    // to these lines.
    match run_until(options, shutdown).await {
        Ok(outcome) => {
            out(outcome
                .summary
                .render_text_in(crate::console::colour_stdout()));
            outln(format_args!("  reports    {}", outcome.out_dir.display()));
            outcome.summary.verdict.exit_code()
        }
        // `file:line:column: …` lines, as `validate` prints them.
        Err(error @ crate::run::RunError::Scenario(_)) => {
            errln(format_args!("{}", chain(&error)));
            exit::HARNESS_ERROR
        }
        Err(error) => {
            errln(format_args!("voxsoak: {}", chain(&error)));
            exit::HARNESS_ERROR
        }
    }
}

/// `voxsoak run --dry-run`: the plan with the run's overrides, and nothing else.
fn dry_run(args: &RunArgs) -> i32 {
    let loaded = match scenario::load(&args.scenario) {
        Ok(loaded) => loaded,
        Err(error) => {
            errln(format_args!("{}", chain(&error)));
            return exit::HARNESS_ERROR;
        }
    };
    let checked = crate::target::check_fleet_bugs(&loaded, &args.fleet_bugs).and_then(|()| {
        crate::target::check_database_hosts(&loaded, crate::target::UnsetVariable::Skip)
    });
    if let Err(error) = checked {
        errln(format_args!("voxsoak: {}", chain(&error)));
        return exit::HARNESS_ERROR;
    }
    let loaded = match args.seed {
        Some(seed) => loaded.with_seed(seed),
        None => loaded,
    };
    let loaded = match args.time_scale {
        Some(scale) => loaded.with_time_scale(scale),
        None => loaded,
    };
    let run_for = args.duration.map_or_else(
        || loaded.load.duration(),
        |written| loaded.real_time(written),
    );
    print_warnings(&loaded, run_for);
    out(crate::escape::terminal(&crate::plan::render_plan_for(
        &loaded, run_for,
    )));
    if !args.fleet_bugs.is_empty() {
        let bugs: Vec<&str> = args.fleet_bugs.iter().map(|bug| bug.name()).collect();
        outln(format_args!("\n  --fleet-bug        {}", bugs.join(", ")));
    }
    outln(format_args!(
        "\ndry run: nothing was started and nothing was injected"
    ));
    exit::PASS
}

/// An error and its causes on one line: "cannot read x: No such file or directory". Safe
/// to print: secrets masked, the fleet's text escaped ([`crate::escape::terminal`]).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    crate::escape::terminal(&text).into_owned()
}

/// `voxsoak chaos`: arguments are checked before anything starts; the fault is undone
/// before this returns, however it ends.
fn chaos_command(args: ChaosArgs) -> i32 {
    use crate::chaos::by_hand;
    let checked = match by_hand::check(&args.into_request()) {
        Ok(checked) => checked,
        Err(error) => {
            errln(format_args!("voxsoak chaos: {}", chain(&error)));
            return exit::HARNESS_ERROR;
        }
    };
    with_runtime(&CHAOS_STOPS, |shutdown| async move {
        match by_hand::run(checked, shutdown.stop).await {
            Ok(outcome) => {
                out(format_args!("{}", by_hand::render_outcome(&outcome)));
                outcome.exit_code()
            }
            Err(error) => {
                errln(format_args!("voxsoak chaos: {}", chain(&error)));
                exit::HARNESS_ERROR
            }
        }
    })
}

async fn sink_command(args: SinkArgs, shutdown: CancellationToken) -> i32 {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            errln(format_args!(
                "voxsoak sink: cannot listen on {}: {error}",
                args.listen
            ));
            return exit::HARNESS_ERROR;
        }
    };
    match listener.local_addr() {
        Ok(address) => outln(format_args!("{LISTENING_PREFIX}{address}")),
        Err(error) => {
            errln(format_args!("voxsoak sink: {error}"));
            return exit::HARNESS_ERROR;
        }
    }
    let options = SinkOptions {
        reply_delay: args.reply_delay,
        reply_length: args.reply_length,
        greeting: args.greeting,
        auth_token: args.auth_token,
    };
    match sink::serve(listener, options, shutdown).await {
        Ok(()) => exit::PASS,
        Err(error) => {
            errln(format_args!("voxsoak sink: {error}"));
            exit::HARNESS_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_run_says_the_deadline_it_keeps() {
        let deadline = humantime::format_duration(crate::run::HURRY_DEADLINE).to_string();
        assert!(
            super::RUN_STOPS
                .second
                .ends_with(&format!("within {deadline}")),
            "{}",
            super::RUN_STOPS.second
        );
    }
}

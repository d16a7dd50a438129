//! `voxsoak run`: scenario → target → load → aggregate → verdict → run directory.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use indicatif::ProgressBar;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audio::vad::VoiceActivity;
use crate::call::CallContext;
use crate::chaos::abort::{AbortSwitch, SuccessWatch, serve_kill_switch, watch_kill_switch_file};
use crate::chaos::process::ProcessTarget;
use crate::chaos::{ChaosOutcome, ChaosPlane, ChaosRun, ChaosTargets, FaultError};
use crate::cleanup::{self, CleanupError, TempRoot};
use crate::grade;
use crate::journal::Journal;
use crate::load::aggregate::{Aggregator, Progress, run_aggregator};
use crate::load::{LoadShaper, UtteranceBank};
use crate::logging::RunLog;
use crate::observe;
use crate::report::Summary;
use crate::scenario::faults::KILL_SWITCH_FILE;
use crate::scenario::{self, ScenarioError};
use crate::target::{self, TargetError};
use crate::twilio::sid;

/// How `voxsoak run` was asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: PathBuf,
    /// The run directory; default `reports/<run-id>/`.
    pub out: Option<PathBuf>,
    /// Replaces the scenario's load duration (in the schedule's time, as written).
    pub duration: Option<Duration>,
    /// Replaces the scenario's `time_scale` (`--time-scale`).
    pub time_scale: Option<f64>,
    /// How long calls in progress may go on after a signal or an abort before they are
    /// cancelled (`--grace`); default [`crate::load::DEFAULT_GRACE`].
    pub grace: Option<Duration>,
    /// Replaces the scenario's `report_every` (`--report-every`).
    pub report_every: Option<Duration>,
    pub seed: Option<u64>,
    /// Draw the live progress line (on a terminal) or print a line every 10 s (otherwise).
    pub progress: bool,
    /// The voxsoak binary to start child fleets with.
    pub exe: PathBuf,
    /// Production bugs to switch on in the embedded reference fleet (`--fleet-bug`).
    pub fleet_bugs: Vec<crate::contract::fleet::Bug>,
    /// Go on with a run whose harness died (`voxsoak resume`): its scenario, seed, time
    /// scale, schedule and run directory come from here, and the schedule goes on from
    /// where its journal stops. What the killed run left must be cleaned up first.
    pub resume: Option<Resume>,
    /// Where to serve the harness's own metrics during the run (`--metrics-listen`);
    /// replaces the scenario's `metrics_listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// What `voxsoak resume` hands the run: where the killed run stopped, and what was done
/// about what it left.
#[derive(Debug, Clone)]
pub struct Resume {
    pub point: crate::journal::resume::ResumePoint,
    /// What the cleanup of the killed run removed or stopped, one line each.
    pub cleaned: Vec<String>,
}

/// Why a run could not be carried out (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("could not write the run directory {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("could not start the chaos plane: {0}")]
    Chaos(#[source] FaultError),
    #[error("could not start the {what}: {source}")]
    Observer {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    TempRoot(#[from] CleanupError),
    #[error("could not serve the kill switch on {listen}: {source}")]
    KillSwitch {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--metrics-listen {listen}: not a loopback address, and the scenario's [target] allow_hosts does not name {}; add it there to serve the metrics beyond this machine",
        listen.ip()
    )]
    MetricsListenRefused { listen: std::net::SocketAddr },
    #[error("could not serve the harness's metrics on {listen}: {source}")]
    MetricsListen {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: Summary,
    pub out_dir: PathBuf,
}

/// How a run is told to end early. `stop` (a first signal) ends the calls, undoes every
/// fault, stops the fleet and writes the reports. `hurry` (a second signal, after `stop`)
/// ends it at once: calls and observers are no longer waited for, but every fault's clear
/// still runs and the fleet is still stopped (killed), within [`HURRY_DEADLINE`]; what is
/// not undone by then is undone, as far as it can be without waiting, as the harness
/// exits (each fault's `Drop`), and the fleet dies with the harness.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub stop: CancellationToken,
    pub hurry: CancellationToken,
}

/// How long after `hurry` the run waits for fault clears and the fleet's stop.
pub const HURRY_DEADLINE: Duration = Duration::from_secs(10);

/// Runs a scenario to its end (or until `shutdown` is cancelled) and writes its run
/// directory. Errors are runs that could not be carried out.
pub async fn run(options: RunOptions, shutdown: CancellationToken) -> Result<RunOutcome, RunError> {
    run_until(
        options,
        Shutdown {
            stop: shutdown,
            hurry: CancellationToken::new(),
        },
    )
    .await
}

/// [`run`], which can also be hurried (see [`Shutdown`]).
///
/// The run's story, one step per function: `prepare` the scenario and the run directory;
/// start the `Controls` that can stop it early; start the chaos plane's servers and the
/// target (`start_target`); open the journal (`open_journal`); start the `Observers`;
/// start the chaos schedule (`start_chaos`); drive the load (`drive_load`); stop what is
/// `Running` (undo every fault first, then the observers and the fleet); and grade from
/// the journal alone (`finish`).
pub async fn run_until(options: RunOptions, shutdown: Shutdown) -> Result<RunOutcome, RunError> {
    let mut prepared = prepare(&options)?;
    tracing::info!(run_id = %prepared.run_id, out = %prepared.out_dir.display(), "run prepared");
    let controls = Controls::start(&prepared, &shutdown.stop).await?;
    let chaos = ChaosPlane::prepare(&prepared.scenario, &prepared.run_id)
        .await
        .map_err(RunError::Chaos)?;
    let (observations, observed) = mpsc::unbounded_channel();
    let mut target =
        start_target(&options, &prepared, &chaos, &controls, observations.clone()).await?;
    tracing::info!(target = %target.resolved.description, "target ready");
    let context = call_context(&prepared, &target)?;
    let journal = open_journal(&options, &prepared, &target, controls.kill_switch_url)?;
    let _metrics_served = serve_live_metrics(&mut prepared, &journal);
    controls.watch_kill_switch_file();
    let display = ProgressDisplay::new(
        options.progress,
        prepared.run_for,
        prepared.scenario.time_scale,
    );
    let channel = (observations.clone(), observed);
    let observers = Observers::start(&prepared, &mut target, &journal, &display, channel);
    let interim = InterimReports::start(
        &journal,
        &prepared.out_dir,
        options
            .report_every
            .unwrap_or(prepared.scenario.report_every),
    );
    let chaos_stop = controls.stop.child_token();
    let chaos_run = start_chaos(
        chaos,
        &prepared,
        &target,
        &observers,
        &journal,
        observations,
        chaos_stop.clone(),
    );
    let hurry = Hurry::start(shutdown.hurry.clone());
    tracing::info!(run_for = %humantime::format_duration(prepared.run_for), "load started");
    let aggregation = drive_load(&prepared, context, &journal, &controls, display, &hurry).await;
    let running = Running {
        chaos_stop,
        chaos_run,
        aggregation,
        interim,
        observers,
    };
    running.stop(&journal, &controls, &hurry).await;
    remove_temp_root(prepared.temp_root).await;
    finish(
        &journal,
        &controls,
        &shutdown.stop,
        &hurry,
        prepared.out_dir,
    )
}

/// What runs while the load is driven, stopped in order by [`Running::stop`].
struct Running {
    /// Ends the chaos schedule once the load is done.
    chaos_stop: CancellationToken,
    chaos_run: ChaosRun,
    /// The task that aggregates the calls' reports; it ends once every call has reported.
    aggregation: tokio::task::JoinHandle<()>,
    interim: Option<InterimReports>,
    observers: Observers,
}

impl Running {
    /// The load is done (or stopped): clears every fault before anything else stops, then
    /// waits for the aggregator, stops the interim reports (none may land after the final
    /// one), the watchers, the observers and the fleet, and removes the files the harness
    /// leaked.
    async fn stop(self, journal: &Journal, controls: &Controls, hurry: &Hurry) {
        tracing::info!("load done: undoing faults, then stopping the observers and the fleet");
        self.chaos_stop.cancel();
        let chaos_outcome = undo_faults(journal, hurry, self.chaos_run).await;
        // A task of the harness's own that failed leaves a hole in what was seen: it is
        // journaled, and the verdict is `error`, never the fleet's failure.
        if let Some(aggregated) = hurry.skip(self.aggregation).await {
            journal.task_ended("aggregator", aggregated);
        }
        if let Some(interim) = self.interim {
            interim.stop().await;
        }
        controls.watchers.cancel();
        self.observers.stop(journal, hurry).await;
        if let Some(chaos_outcome) = &chaos_outcome {
            let removed = chaos_outcome.tear_down();
            if removed > 0 {
                journal.record(
                    "harness_files_removed",
                    serde_json::json!({"files": removed}),
                );
            }
        }
    }
}

/// What [`prepare`] settles before anything starts.
struct Prepared {
    scenario: Arc<scenario::Scenario>,
    bank: Arc<UtteranceBank>,
    vad: VoiceActivity,
    run_id: String,
    /// How long calls keep starting.
    run_for: Duration,
    /// How long calls in progress may go on after a stop (`--grace`).
    grace: Duration,
    out_dir: PathBuf,
    temp_root: TempRoot,
    /// Where the schedule starts: zero, or where a resumed run goes on from.
    resume_at: Duration,
    /// The index of the first call this harness places.
    first_call: u64,
    /// Where the harness's own metrics will be served, bound (`--metrics-listen`).
    metrics: Option<(tokio::net::TcpListener, std::net::SocketAddr)>,
    /// Keeps the run directory's harness.log open for the run.
    _log: RunLog,
}

/// Loads and checks the scenario (what the target needs is checked before anything
/// starts), loads its audio, and makes the run directory and the run's temp root.
fn prepare(options: &RunOptions) -> Result<Prepared, RunError> {
    let resume = options.resume.as_ref().map(|resume| &resume.point);
    let path = resume.map_or(options.scenario.as_path(), |point| &point.scenario_path);
    let mut scenario = scenario::load(path)?;
    target::check_fleet_bugs(&scenario, &options.fleet_bugs)?;
    target::check_database_hosts(&scenario, target::UnsetVariable::Refuse)?;
    let metrics = bind_metrics(&scenario, options.metrics_listen)?;
    if let Some(seed) = resume.map(|point| point.seed).or(options.seed) {
        scenario = scenario.with_seed(seed);
    }
    if let Some(scale) = resume.map(|point| point.time_scale).or(options.time_scale) {
        scenario = scenario.with_time_scale(scale);
    }
    let run_for = match (resume, options.duration) {
        (Some(point), _) => Duration::from_secs_f64(point.planned_s),
        (None, Some(written)) => scenario.real_time(written),
        (None, None) => scenario.load.duration(),
    };
    for warning in scenario.warnings(run_for).lines() {
        // Never a panic on a closed stderr.
        let _ = writeln!(std::io::stderr(), "{warning}");
    }
    let scenario = Arc::new(scenario);
    let vad = VoiceActivity::default();
    let bank = Arc::new(UtteranceBank::load(&scenario, &vad));
    let (run_id, out_dir) = match resume {
        Some(point) => (point.run_id.clone(), point.run_dir.clone()),
        None => {
            let run_id = run_id(&scenario.name, SystemTime::now());
            let out_dir = options
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("reports").join(&run_id));
            (run_id, out_dir)
        }
    };
    let output_error = |source| RunError::Output {
        path: out_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&out_dir).map_err(output_error)?;
    if resume.is_none() {
        write_composed(&scenario, &out_dir).map_err(output_error)?;
    }
    let log = RunLog::open(&out_dir).map_err(output_error)?;
    // What earlier runs killed with `kill -9` left; off the way of this one's start.
    tokio::spawn(clean_after_earlier_runs());
    let temp_root = TempRoot::create(&run_id, &out_dir)?;
    Ok(Prepared {
        scenario,
        bank,
        vad,
        run_id,
        run_for,
        grace: options.grace.unwrap_or(crate::load::DEFAULT_GRACE),
        out_dir,
        temp_root,
        resume_at: resume.map_or(Duration::ZERO, |point| point.at()),
        first_call: resume.map_or(0, |point| point.calls_started),
        metrics,
        _log: log,
    })
}

/// Every file a composed scenario was read from, the scenario file first (as named,
/// relative to `cwd` when relative); null for a scenario in one file.
fn scenario_files(scenario: &scenario::Scenario) -> Option<Vec<String>> {
    (!scenario.includes.is_empty()).then(|| {
        std::iter::once(&scenario.path)
            .chain(&scenario.includes)
            .map(|path| path.display().to_string())
            .collect()
    })
}

/// The run directory's copy of a scenario composed of several files (`include`), so the
/// run directory says what ran whatever becomes of the files: [`COMPOSED_SCENARIO`]. A
/// scenario in one file is named by `run_started`'s `scenario_path`.
fn write_composed(scenario: &scenario::Scenario, out_dir: &Path) -> std::io::Result<()> {
    match scenario.composed_toml() {
        Some(text) => std::fs::write(out_dir.join(COMPOSED_SCENARIO), text),
        None => Ok(()),
    }
}

/// Where the run directory keeps a composed scenario as it ran.
pub const COMPOSED_SCENARIO: &str = "scenario.toml";

/// Checks and binds where the harness serves its own metrics (`--metrics-listen`, else the
/// scenario's `metrics_listen`) before anything starts: an address the scenario does not
/// allow, or a port taken, is an error then, never a run without its metrics.
fn bind_metrics(
    scenario: &scenario::Scenario,
    flag: Option<std::net::SocketAddr>,
) -> Result<Option<(tokio::net::TcpListener, std::net::SocketAddr)>, RunError> {
    let Some(listen) = flag.or(scenario.metrics_listen) else {
        return Ok(None);
    };
    if !scenario::listen_allowed(&scenario.allow_hosts, listen) {
        return Err(RunError::MetricsListenRefused { listen });
    }
    let bound = crate::live::bind(listen).and_then(|listener| {
        let address = listener.local_addr()?;
        Ok((listener, address))
    });
    bound
        .map(Some)
        .map_err(|source| RunError::MetricsListen { listen, source })
}

/// Serves the harness's own metrics while the run goes on, when asked: the journal's
/// records folded as they are written. Says where on stderr and in the journal
/// (`metrics_listen`); the server stops when the returned guard is dropped, with the run.
fn serve_live_metrics(
    prepared: &mut Prepared,
    journal: &Journal,
) -> Option<tokio_util::sync::DropGuard> {
    let (listener, address) = prepared.metrics.take()?;
    let scenario = &prepared.scenario;
    let metrics = crate::live::LiveMetrics::new(
        crate::live::RunInfo {
            run_id: prepared.run_id.clone(),
            scenario: scenario.name.clone(),
            planned_s: prepared.run_for.as_secs_f64(),
            time_scale: scenario.time_scale,
            started: journal.started(),
        },
        scenario.faults.iter().map(|fault| fault.kind.name()),
    );
    journal.tap(metrics.tap());
    let stop = CancellationToken::new();
    let journal_path = prepared.out_dir.join("journal.jsonl");
    crate::live::serve(listener, metrics, journal_path, stop.clone());
    let url = format!("http://{address}/metrics");
    crate::console::errln(format_args!("voxsoak: metrics at {url}"));
    journal.record("metrics_listen", serde_json::json!({"url": url}));
    Some(stop.drop_guard())
}

/// What can end the run early, and the tasks that watch for it.
struct Controls {
    /// Ends the run early: a signal (through the caller's token), an abort condition or
    /// the kill switch. The chaos plane also stops when the load is done.
    stop: CancellationToken,
    abort: AbortSwitch,
    /// Ends the kill switch's server and file watch, and the alert receiver.
    watchers: CancellationToken,
    kill_switch_file: PathBuf,
    kill_switch_url: Option<std::net::SocketAddr>,
}

impl Controls {
    async fn start(
        prepared: &Prepared,
        shutdown: &CancellationToken,
    ) -> Result<Controls, RunError> {
        let scenario = &prepared.scenario;
        let stop = shutdown.child_token();
        let abort = AbortSwitch::new(stop.clone());
        let watchers = CancellationToken::new();
        let kill_switch_file = prepared.out_dir.join(
            scenario
                .abort
                .kill_switch_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(KILL_SWITCH_FILE)),
        );
        // A switch left over from an earlier run in this directory must not abort this one.
        let _ = std::fs::remove_file(&kill_switch_file);
        let kill_switch_url = match scenario.abort.kill_switch_listen {
            Some(listen) => Some(
                serve_kill_switch(listen, abort.clone(), watchers.clone())
                    .await
                    .map_err(|source| RunError::KillSwitch { listen, source })?,
            ),
            None => None,
        };
        Ok(Controls {
            stop,
            abort,
            watchers,
            kill_switch_file,
            kill_switch_url,
        })
    }

    fn watch_kill_switch_file(&self) {
        tokio::spawn(watch_kill_switch_file(
            self.kill_switch_file.clone(),
            self.abort.clone(),
            self.watchers.clone(),
        ));
    }

    /// Why the run stopped before the end of its schedule, if it did.
    fn stopped(&self, shutdown: &CancellationToken) -> Option<(crate::journal::StoppedBy, String)> {
        if let Some(stopped) = self.abort.reason() {
            Some(stopped)
        } else if shutdown.is_cancelled() {
            Some((
                crate::journal::StoppedBy::Signal,
                "stopped by a signal before the end of the scenario".to_string(),
            ))
        } else {
            None
        }
    }
}

/// The fleet under test, ready for calls, and what the observers need to reach it.
struct StartedTarget {
    resolved: target::ResolvedTarget,
    /// Where the alert receiver listens.
    alerts: Option<std::net::SocketAddr>,
    fleet_log: PathBuf,
}

/// Starts the alert receiver (before the fleet: the embedded fleet is pointed at it), then
/// the target itself, wired to the chaos plane's stand-ins, and checks that it answers.
async fn start_target(
    options: &RunOptions,
    prepared: &Prepared,
    chaos: &ChaosPlane,
    controls: &Controls,
    observations: mpsc::UnboundedSender<observe::Observation>,
) -> Result<StartedTarget, RunError> {
    let scenario = &prepared.scenario;
    let mut wiring = chaos.wiring();
    let alerts = observe::serve_alerts(scenario, observations, controls.watchers.clone())
        .await
        .map_err(|source| RunError::Observer {
            what: "alert receiver",
            source,
        })?;
    // The embedded fleet keeps its output in the run directory for the log observer.
    let fleet_log = prepared.out_dir.join(observe::FLEET_LOG);
    if matches!(scenario.target, scenario::Target::Embedded(_)) {
        wiring.alert_webhook_url = alerts.map(|receiver| format!("http://{receiver}/alerts"));
        wiring.output_log = Some(fleet_log.clone());
    }
    wiring.temp_root = Some(prepared.temp_root.path().to_path_buf());
    wiring.pid_file = Some(prepared.out_dir.join(cleanup::PID_FILE));
    let resolved =
        target::resolve(&scenario.target, &options.exe, &options.fleet_bugs, &wiring).await?;
    if let Err(error) = target::preflight(&resolved.endpoint).await {
        if let Some(fleet) = resolved.fleet {
            fleet.stop().await;
        }
        return Err(error.into());
    }
    // Also with no fault: a fleet wired to `[chaos] tts_listen` is served by the stand-ins.
    if resolved.embedded.is_none() && options.progress {
        for line in chaos.describe() {
            crate::console::errln(format_args!("voxsoak: {line}"));
        }
    }
    Ok(StartedTarget {
        resolved,
        alerts,
        fleet_log,
    })
}

/// Opens the journal and writes what the run is: the scenario, the grading plan, the
/// target, and where `voxsoak clean RUN_DIR` finds what the run leaves should it be killed.
fn open_journal(
    options: &RunOptions,
    prepared: &Prepared,
    target: &StartedTarget,
    kill_switch_url: Option<std::net::SocketAddr>,
) -> Result<Journal, RunError> {
    let (scenario, run_for) = (&prepared.scenario, prepared.run_for);
    let resolved = &target.resolved;
    let path = prepared.out_dir.join("journal.jsonl");
    let output_error = |source| RunError::Output {
        path: prepared.out_dir.clone(),
        source,
    };
    let journal = match &options.resume {
        Some(resume) => {
            let journal =
                Journal::append(&path, resumed_origin(&resume.point)?).map_err(output_error)?;
            journal_resumption(&journal, resume);
            journal
        }
        None => {
            let journal = Journal::create(&path, Instant::now()).map_err(output_error)?;
            journal.record(
                "run_started",
                serde_json::json!({
                    "run_id": prepared.run_id, "scenario": scenario.name,
                    "scenario_path": options.scenario.display().to_string(),
                    "scenario_files": scenario_files(scenario),
                    "cwd": std::env::current_dir().ok().map(|cwd| cwd.display().to_string()),
                    "seed": scenario.seed, "target": resolved.description,
                    "time_scale": scenario.time_scale,
                    "fleet_bugs": options.fleet_bugs.iter().map(|bug| bug.name()).collect::<Vec<_>>(),
                    "grading": grade::plan::GradePlan::from_scenario(scenario),
                    "planned_s": run_for.as_secs_f64(),
                    "faults_planned": crate::scenario::faults::timeline(&scenario.faults, run_for, scenario.seed).len(),
                }),
            );
            journal
        }
    };
    journal.record(
        "temp_root",
        serde_json::json!({"path": prepared.temp_root.path().display().to_string()}),
    );
    if let (None, Some(sink), Some(http)) =
        (&resolved.embedded, &resolved.fleet, resolved.http_base())
    {
        journal.record(
            "fleet",
            serde_json::json!({"http": http.as_str(), "pid": sink.pid(), "what": sink.what()}),
        );
    }
    if let Some(info) = &resolved.embedded {
        journal.record(
            "fleet",
            serde_json::json!({
                "http": info.http_base.as_str(),
                "pid": info.pid,
                "audio_tmp_dir": info.audio_tmp_dir,
                "database": match info.database {
                    target::FleetDatabase::Sqlite { .. } => "sqlite",
                    target::FleetDatabase::Postgres { .. } => "postgres",
                },
                "bugs": info.bugs.iter().map(|bug| bug.name()).collect::<Vec<_>>(),
            }),
        );
    }
    if let Some(address) = kill_switch_url {
        journal.record(
            "kill_switch",
            serde_json::json!({"url": format!("http://{address}/abort")}),
        );
    }
    Ok(journal)
}

/// The instant a resumed run's `t_s` counts from: its clock goes on from the killed
/// harness's last record, so the time it was away is on no one's clock (see
/// [`crate::journal::resume`]).
fn resumed_origin(point: &crate::journal::resume::ResumePoint) -> Result<Instant, RunError> {
    Instant::now()
        .checked_sub(point.at())
        .ok_or_else(|| RunError::Output {
            path: point.run_dir.clone(),
            source: std::io::Error::other(format!(
                "this machine's monotonic clock cannot go back {:.0} s",
                point.last_t_s
            )),
        })
}

/// Journals that the run goes on: how long the harness was away (`harness_downtime`),
/// what the cleanup of the killed run did, and each fault it left in effect as cleared
/// (the cleanup undid it: its files removed, its locks and sessions gone with the killed
/// process, the fleet it stopped killed with it), so recovery counts from here.
fn journal_resumption(journal: &Journal, resume: &Resume) {
    let point = &resume.point;
    let now = SystemTime::now();
    let down = point.downtime(now);
    journal.record(
        "harness_downtime",
        serde_json::json!({
            "from": point.last_at.map(|at| humantime::format_rfc3339_millis(at).to_string()),
            "to": humantime::format_rfc3339_millis(now).to_string(),
            "down_s": crate::journal::round_ms(down.as_secs_f64()),
            "calls_lost": point.calls_lost(),
            "why": "the harness was not running (killed, or its machine lost); \
                    `voxsoak resume` went on from its last record",
        }),
    );
    journal.record(
        "run_resumed",
        serde_json::json!({
            "resumes": point.resumes + 1,
            "schedule_at_s": point.last_t_s,
            "calls_started_before": point.calls_started,
            "cleaned": resume.cleaned,
        }),
    );
    for open in &point.open_faults {
        journal.record(
            "fault_cleared",
            serde_json::json!({
                "fault": open.fault, "kind": open.kind, "occurrence": open.occurrence,
                "early": false, "by_resume": true,
                "note": "undone by `voxsoak resume`: the harness died while it was in effect; \
                         the cleanup of the killed run removed its files, its locks and \
                         sessions ended with the killed process, and a fleet it stopped \
                         was killed with it",
            }),
        );
    }
}

/// The observers' hub and, for a fleet the harness started, the watch over its process
/// (memory, CPU, exits, a restart after a crash, as its supervisor would).
struct Observers {
    hub: tokio::task::JoinHandle<observe::hub::Observed>,
    stop: CancellationToken,
    /// The fleet the harness started (embedded or sink), shared with the chaos plane.
    fleet: Option<target::SharedFleet>,
    fleet_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Observers {
    fn start(
        prepared: &Prepared,
        target: &mut StartedTarget,
        journal: &Journal,
        display: &ProgressDisplay,
        channel: (
            mpsc::UnboundedSender<observe::Observation>,
            mpsc::UnboundedReceiver<observe::Observation>,
        ),
    ) -> Observers {
        let stop = CancellationToken::new();
        let fleet_http = target.resolved.http_base();
        let hub = observe::start(
            &prepared.scenario,
            target.resolved.embedded.as_ref(),
            observe::RunContext {
                run_id: &prepared.run_id,
                fleet_log: Some(&target.fleet_log),
                alerts: target.alerts,
                fleet_http: fleet_http.as_ref(),
                lines: &display.lines(),
            },
            journal.clone(),
            channel,
            stop.clone(),
        );
        let fleet = target
            .resolved
            .fleet
            .take()
            .map(|fleet| Arc::new(tokio::sync::Mutex::new(fleet)));
        let fleet_watch = fleet.as_ref().map(|fleet| {
            tokio::spawn(observe::fleet_process::watch(
                Arc::clone(fleet),
                journal.clone(),
                true,
                stop.clone(),
            ))
        });
        Observers {
            hub,
            stop,
            fleet,
            fleet_watch,
        }
    }

    /// Stops the observers, then the fleet (so its shutdown is not an outage): killed at
    /// once when hurried.
    async fn stop(self, journal: &Journal, hurry: &Hurry) {
        self.stop.cancel();
        if let Some(hub) = hurry.bounded(self.hub).await {
            journal.task_ended("observers' hub", hub);
        }
        if let Some(watch) = self.fleet_watch
            && let Some(watched) = hurry.bounded(watch).await
        {
            journal.task_ended("fleet process watcher", watched);
        }
        let Some(fleet) = &self.fleet else {
            return;
        };
        let stopped = hurry
            .bounded(async {
                let mut fleet = fleet.lock().await;
                if hurry.hurried() {
                    fleet.kill_in_place().await;
                } else {
                    fleet.stop_in_place().await;
                }
            })
            .await;
        if stopped.is_none() {
            journal.record(
                "harness_error",
                serde_json::json!({
                    "task": "fleet",
                    "error": "told to end at once, the fleet could not be stopped in time; \
                              it is killed as the harness exits",
                }),
            );
        }
    }
}

/// Starts the fault schedule against what the run started: the fleet's process, its
/// database and temp dir, the run's temp root.
fn start_chaos(
    chaos: ChaosPlane,
    prepared: &Prepared,
    target: &StartedTarget,
    observers: &Observers,
    journal: &Journal,
    injections: mpsc::UnboundedSender<observe::Observation>,
    stop: CancellationToken,
) -> ChaosRun {
    let embedded = target.resolved.embedded.as_ref();
    chaos.resume_at(prepared.resume_at).start(
        ChaosTargets {
            fleet: observers.fleet.clone().map(ProcessTarget::Spawned),
            database_url: embedded.map(|info| info.database_url.clone()),
            audio_tmp_dir: embedded.map(|info| info.audio_tmp_dir.clone()),
            temp_root: Some(prepared.temp_root.clone()),
        },
        journal.clone(),
        Some(injections),
        prepared.run_for,
        prepared.scenario.seed,
        stop,
    )
}

/// How calls reach the target, shared by every call.
fn call_context(prepared: &Prepared, target: &StartedTarget) -> Result<Arc<CallContext>, RunError> {
    let scenario = &prepared.scenario;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(scenario.seed);
    let allow = Arc::clone(scenario);
    Ok(Arc::new(CallContext {
        endpoint: target.resolved.endpoint.clone(),
        auth_token: target.resolved.auth_token.clone(),
        settings: scenario.calls.clone(),
        account_sid: sid::new_sid(sid::ACCOUNT, &mut rng),
        seed: scenario.seed,
        http: reqwest::Client::builder()
            .timeout(scenario.calls.connect_timeout)
            // A redirect could lead outside allow_hosts; Twilio does not follow them either.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(crate::http_serve::CLIENT_POOL_IDLE)
            .build()
            .map_err(RunError::Http)?,
        vad: prepared.vad,
        host_allowed: Box::new(move |host| allow.host_allowed(host)),
    }))
}

/// Places the calls until the load is done or the run is stopped, while one aggregating
/// task journals their totals every [`JOURNAL_INTERVAL`], draws the progress line and
/// trips the abort switch on the success condition. Returns the aggregating task, which
/// ends once every call has reported.
async fn drive_load(
    prepared: &Prepared,
    context: Arc<CallContext>,
    journal: &Journal,
    controls: &Controls,
    mut display: ProgressDisplay,
    hurry: &Hurry,
) -> tokio::task::JoinHandle<()> {
    let shaper = LoadShaper {
        scenario: Arc::clone(&prepared.scenario),
        bank: Arc::clone(&prepared.bank),
        context,
        run_for: prepared.run_for,
        grace: prepared.grace,
        resume_at: prepared.resume_at,
        first_index: prepared.first_call,
        journal: journal.clone(),
    };
    let (events, receiver) = mpsc::unbounded_channel();
    let interval_journal = journal.clone();
    let mut success_watch = SuccessWatch::new(&prepared.scenario.abort);
    let abort = controls.abort.clone();
    let run_start = journal.started();
    let aggregation = tokio::spawn(async move {
        let mut last_interval = run_start;
        run_aggregator(
            receiver,
            run_start,
            |aggregator: &mut Aggregator, now, last| {
                display.update(aggregator.progress(now));
                if let Some(watch) = success_watch.as_mut() {
                    let totals = aggregator.totals();
                    let completed = totals.count(crate::call::CallOutcome::Completed);
                    if let Some(reason) = watch.observe(now, completed, totals.graded()) {
                        abort.trip(
                            crate::journal::StoppedBy::AbortCondition,
                            format!("abort condition: {reason}"),
                        );
                    }
                }
                if last || now.saturating_duration_since(last_interval) >= JOURNAL_INTERVAL {
                    last_interval = now;
                    let record = aggregator.take_interval_record(now);
                    interval_journal.record("interval", record);
                    interval_journal.sync();
                }
            },
        )
        .await;
        display.finish();
    });
    hurry.skip(shaper.run(events, controls.stop.clone())).await;
    aggregation
}

/// Waits for the chaos plane to clear every fault; hurried, for [`HURRY_DEADLINE`] at most.
async fn undo_faults(
    journal: &Journal,
    hurry: &Hurry,
    chaos_run: ChaosRun,
) -> Option<ChaosOutcome> {
    let outcome = hurry.bounded(chaos_run.finish()).await;
    if outcome.is_none() {
        journal.record(
            "harness_error",
            serde_json::json!({
                "task": "chaos plane",
                "error": format!(
                    "told to end at once, its faults were not all cleared within {}; what is \
                     left is undone as far as it can be as the harness exits",
                    humantime::format_duration(HURRY_DEADLINE)
                ),
            }),
        );
    }
    outcome
}

/// Journals how the run ended and grades it: the verdict and every report come from the
/// journal alone, as `voxsoak report` makes them.
fn finish(
    journal: &Journal,
    controls: &Controls,
    shutdown: &CancellationToken,
    hurry: &Hurry,
    out_dir: PathBuf,
) -> Result<RunOutcome, RunError> {
    let (stopped_by, stopped) = controls.stopped(shutdown).unzip();
    journal.record(
        "run_ended",
        serde_json::json!({
            "stopped": stopped,
            "stopped_by": stopped_by,
            "hurried": hurry.hurried(),
            "wall_s": journal.elapsed_s(),
        }),
    );
    journal.sync();
    let summary = Summary::rebuild(&out_dir).map_err(|source| RunError::Output {
        path: out_dir.clone(),
        source,
    })?;
    tracing::info!(verdict = ?summary.verdict, "graded");
    Ok(RunOutcome { summary, out_dir })
}

/// The waits of a run's end, once it is told to hurry (see [`Shutdown`]): a wait that only
/// makes the record fuller is skipped at once ([`Hurry::skip`]); one that undoes something
/// is cut [`HURRY_DEADLINE`] after the hurry ([`Hurry::bounded`]).
#[derive(Debug)]
struct Hurry {
    now: CancellationToken,
    give_up: CancellationToken,
    /// Ends the deadline's timer with the run.
    _timer: tokio_util::sync::DropGuard,
}

impl Hurry {
    fn start(now: CancellationToken) -> Hurry {
        let give_up = CancellationToken::new();
        let done = CancellationToken::new();
        tokio::spawn({
            let (now, give_up, done) = (now.clone(), give_up.clone(), done.clone());
            async move {
                tokio::select! {
                    () = now.cancelled() => {}
                    () = done.cancelled() => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(HURRY_DEADLINE) => give_up.cancel(),
                    () = done.cancelled() => {}
                }
            }
        });
        Hurry {
            now,
            give_up,
            _timer: done.drop_guard(),
        }
    }

    fn hurried(&self) -> bool {
        self.now.is_cancelled()
    }

    /// `work`'s output, or None once hurried.
    async fn skip<F: std::future::Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            output = work => Some(output),
            () = self.now.cancelled() => None,
        }
    }

    /// `work`'s output, or None at the deadline after the hurry.
    async fn bounded<F: std::future::Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            output = work => Some(output),
            () = self.give_up.cancelled() => None,
        }
    }
}

/// Removes the run's temp root (and what it claimed), off the async threads: it may hold a
/// million-row SQLite file.
async fn remove_temp_root(root: TempRoot) {
    let removed = tokio::task::spawn_blocking(move || root.remove()).await;
    for cleaned in removed.unwrap_or_default() {
        if let cleanup::Cleaned::Failed { .. } = cleaned {
            crate::console::errln(format_args!("voxsoak: {}", cleaned.describe(false)));
        }
    }
}

/// What earlier runs left when they were killed (`kill -9`, an OOM kill, a reboot): their
/// temp roots, and any fleet that survived them. Said on stderr when there was any.
async fn clean_after_earlier_runs() {
    let cleaned = tokio::task::spawn_blocking(|| cleanup::sweep(&cleanup::base_dir(), false)).await;
    for cleaned in cleaned.unwrap_or_default() {
        if cleaned.acted() || matches!(cleaned, cleanup::Cleaned::Failed { .. }) {
            crate::console::errln(format_args!(
                "voxsoak: after an earlier run: {}",
                cleaned.describe(false)
            ));
        }
    }
}

/// How often call aggregates are journaled: the resolution of time to recover, and the
/// most a harness killed with `kill -9` loses.
const JOURNAL_INTERVAL: Duration = Duration::from_secs(5);

/// `<scenario>-<UTC timestamp>`, safe as a directory name.
fn run_id(name: &str, at: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{name}-{stamp}")
}

/// The reports rewritten from the journal every `report_every` while the run goes on
/// ([`crate::grade::evaluate_in_progress`]), each file atomically, so a person or a
/// dashboard can read a 72-hour run's state at any time.
struct InterimReports {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl InterimReports {
    /// None when `every` is zero (reports only at the end).
    fn start(journal: &Journal, out_dir: &Path, every: Duration) -> Option<Self> {
        if every.is_zero() {
            return None;
        }
        let stop = CancellationToken::new();
        let (journal, dir, stopped) = (journal.clone(), out_dir.to_path_buf(), stop.clone());
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                journal.sync();
                let dir = dir.clone();
                let written = tokio::task::spawn_blocking(move || {
                    let run = crate::grade::replay::read(&dir.join("journal.jsonl"))?;
                    crate::grade::evaluate_in_progress(&run).write(&run, &dir)
                })
                .await;
                match written {
                    Ok(Ok(())) => tracing::debug!("interim reports written"),
                    Ok(Err(error)) => tracing::warn!(%error, "interim reports not written"),
                    Err(error) => tracing::warn!(%error, "interim reports task failed"),
                }
            }
        });
        Some(InterimReports { stop, task })
    }

    /// Stops the rewriting; returns once no interim write is under way.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The live progress line: indicatif on a terminal, otherwise (CI) a plain line every
/// 10 s, or every minute on runs over an hour ([`plain_every`]).
#[derive(Debug)]
struct ProgressDisplay {
    bar: Option<ProgressBar>,
    plain: bool,
    total: Duration,
    /// The schedule's compression: the line shows the schedule's clock too.
    time_scale: f64,
    last_plain: Option<Instant>,
}

/// How often the plain progress line is printed on a run of `total`.
fn plain_every(total: Duration) -> Duration {
    if total > Duration::from_secs(3600) {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(10)
    }
}

impl ProgressDisplay {
    fn new(enabled: bool, total: Duration, time_scale: f64) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (enabled && terminal).then(crate::console::live_bar);
        ProgressDisplay {
            bar,
            plain: enabled && !terminal,
            total,
            time_scale,
            last_plain: None,
        }
    }

    /// Where lines about the run go while this is drawn (above it, on a terminal).
    fn lines(&self) -> crate::console::LiveLines {
        crate::console::LiveLines::new(self.bar.clone(), self.plain)
    }

    fn line(&self, progress: &Progress) -> String {
        let remaining = self.total.saturating_sub(progress.elapsed);
        let schedule = if self.time_scale > 1.0 {
            format!(
                "  (schedule {} / {} at {})",
                crate::console::clock(progress.elapsed.mul_f64(self.time_scale)),
                crate::console::clock(self.total.mul_f64(self.time_scale)),
                crate::units::format_time_scale(self.time_scale)
            )
        } else {
            String::new()
        };
        format!(
            "{} / {}, {} left{schedule}  active {:>5}  started {:>6}  {:>6.1} calls/s  success {}  p95 response {}",
            crate::console::clock(progress.elapsed),
            crate::console::clock(self.total),
            crate::console::clock(remaining),
            progress.active,
            progress.started,
            progress.calls_per_second,
            progress
                .success_pct
                .map_or("  n/a".into(), |pct| format!("{pct:5.1}%")),
            progress
                .response_p95_ms
                .map_or("n/a".into(), |ms| format!("{ms:.0} ms")),
        )
    }

    fn update(&mut self, progress: Progress) {
        if let Some(bar) = &self.bar {
            bar.set_message(self.line(&progress));
            bar.tick();
        } else if self.plain {
            let now = Instant::now();
            if self
                .last_plain
                .is_none_or(|at| now.saturating_duration_since(at) >= plain_every(self.total))
            {
                self.last_plain = Some(now);
                crate::console::errln(self.line(&progress));
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(elapsed: Duration) -> Progress {
        Progress {
            elapsed,
            active: 7,
            started: 120,
            ended: 113,
            calls_per_second: 1.5,
            success_pct: Some(99.0),
            response_p95_ms: Some(840.0),
        }
    }

    #[test]
    fn the_progress_line_says_what_is_left_and_the_schedules_clock_when_compressed() {
        let real = ProgressDisplay::new(false, Duration::from_secs(900), 1.0);
        let line = real.line(&progress(Duration::from_secs(300)));
        assert!(
            line.starts_with("00:05:00 / 00:15:00, 00:10:00 left  active     7"),
            "{line}"
        );
        assert!(!line.contains("schedule"), "{line}");

        let compressed = ProgressDisplay::new(false, Duration::from_secs(900), 96.0);
        let line = compressed.line(&progress(Duration::from_secs(300)));
        assert!(
            line.starts_with(
                "00:05:00 / 00:15:00, 00:10:00 left  (schedule 08:00:00 / 24:00:00 at ×96)  active"
            ),
            "{line}"
        );
    }

    #[test]
    fn runs_over_an_hour_print_a_plain_line_every_minute() {
        assert_eq!(
            plain_every(Duration::from_secs(600)),
            Duration::from_secs(10)
        );
        assert_eq!(
            plain_every(Duration::from_secs(3600)),
            Duration::from_secs(10)
        );
        assert_eq!(
            plain_every(Duration::from_secs(3601)),
            Duration::from_secs(60)
        );
        assert_eq!(
            plain_every(Duration::from_secs(72 * 3600)),
            Duration::from_secs(60)
        );
    }
}

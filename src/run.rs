//! `voxsoak run`: scenario → target → load → aggregate → verdict → run directory.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audio::AudioError;
use crate::audio::vad::VoiceActivity;
use crate::call::CallContext;
use crate::grade::{self, Verdict};
use crate::load::aggregate::{Aggregator, Percentiles, Progress, run_aggregator};
use crate::load::{LoadShaper, UtteranceBank};
use crate::report::{RunFacts, Summary};
use crate::scenario::{self, ScenarioError};
use crate::target::{self, TargetError};
use crate::twilio::sid;

/// How `voxsoak run` was asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: PathBuf,
    /// The run directory; default `reports/<run-id>/`.
    pub out: Option<PathBuf>,
    /// Replaces the scenario's load duration.
    pub duration: Option<Duration>,
    pub seed: Option<u64>,
    /// Draw the live progress line (on a terminal) or print a line every 10 s (otherwise).
    pub progress: bool,
    /// The voxsoak binary to start child fleets with.
    pub exe: PathBuf,
    /// Production bugs to switch on in the embedded reference fleet (`--fleet-bug`).
    pub fleet_bugs: Vec<crate::fleet::Bug>,
}

/// Why a run could not be carried out (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("could not load audio: {0}")]
    Audio(#[from] AudioError),
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
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: Summary,
    pub out_dir: PathBuf,
}

/// Runs a scenario to its end (or until `shutdown` is cancelled) and writes its run
/// directory. Errors are runs that could not be carried out.
pub async fn run(options: RunOptions, shutdown: CancellationToken) -> Result<RunOutcome, RunError> {
    let mut scenario = scenario::load(&options.scenario)?;
    target::check_fleet_bugs(&scenario, &options.fleet_bugs)?;
    if let Some(seed) = options.seed {
        scenario = scenario.with_seed(seed);
    }
    let scenario = Arc::new(scenario);
    let vad = VoiceActivity::default();
    let bank = Arc::new(UtteranceBank::load(&scenario, &vad)?);
    let started_at = SystemTime::now();
    let run_id = run_id(&scenario.name, started_at);
    let out_dir = options
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&run_id));
    std::fs::create_dir_all(&out_dir).map_err(|source| RunError::Output {
        path: out_dir.clone(),
        source,
    })?;

    let resolved = target::resolve(&scenario.target, &options.exe, &options.fleet_bugs).await?;
    if let Err(error) = target::preflight(&resolved.endpoint).await {
        if let Some(fleet) = resolved.fleet {
            fleet.stop().await;
        }
        return Err(error.into());
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(scenario.seed);
    let allow = Arc::clone(&scenario);
    let context = Arc::new(CallContext {
        endpoint: resolved.endpoint.clone(),
        auth_token: resolved.auth_token.clone(),
        settings: scenario.calls.clone(),
        account_sid: sid::new_sid(sid::ACCOUNT, &mut rng),
        seed: scenario.seed,
        http: reqwest::Client::builder()
            .timeout(scenario.calls.connect_timeout)
            // A redirect could lead outside allow_hosts; Twilio does not follow them either.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(RunError::Http)?,
        vad,
        host_allowed: Box::new(move |host| allow.host_allowed(host)),
    });
    let run_for = options.duration.unwrap_or_else(|| scenario.load.duration());
    let shaper = LoadShaper {
        scenario: Arc::clone(&scenario),
        bank,
        context,
        run_for,
    };

    let mut journal =
        Journal::create(&out_dir.join("journal.jsonl")).map_err(|source| RunError::Output {
            path: out_dir.clone(),
            source,
        })?;
    journal.write(&serde_json::json!({
        "event": "run_started", "run_id": run_id, "scenario": scenario.name,
        "seed": scenario.seed, "target": resolved.description,
        "at": humantime::format_rfc3339_millis(started_at).to_string(),
        "planned_s": run_for.as_secs_f64(),
    }));

    let run_start = Instant::now();
    let (events, receiver) = mpsc::unbounded_channel();
    let mut display = ProgressDisplay::new(options.progress, run_for);
    let aggregation = tokio::spawn(async move {
        let mut last_interval = run_start;
        let aggregate = run_aggregator(receiver, run_start, |aggregator: &mut Aggregator, now| {
            display.update(aggregator.progress(now));
            if now.saturating_duration_since(last_interval) >= JOURNAL_INTERVAL {
                last_interval = now;
                let progress = aggregator.progress(now);
                let window = aggregator.take_window(now);
                journal.write(&serde_json::json!({
                    "event": "interval",
                    "t_s": round3(progress.elapsed.as_secs_f64()),
                    "active": progress.active,
                    "started": window.started,
                    "ended": window.ended(),
                    "completed": window.count(crate::call::CallOutcome::Completed),
                    "failed": window.failed(),
                    "response_ms": Percentiles::of(&window.response),
                    "pacing_jitter_ms": Percentiles::of(&window.pacing),
                }));
            }
        })
        .await;
        display.finish();
        (aggregate, journal)
    });
    let stopped_early = shutdown.clone();
    shaper.run(events, shutdown).await;
    let (aggregate, mut journal) = aggregation
        .await
        .expect("the aggregator task does not panic");
    if let Some(fleet) = resolved.fleet {
        fleet.stop().await;
    }

    let ended_at = SystemTime::now();
    let slos = grade::grade(&scenario.slo, &aggregate.totals);
    let (verdict, reason) = if stopped_early.is_cancelled() {
        (
            Verdict::Aborted,
            Some("stopped by a signal before the end of the scenario".to_string()),
        )
    } else {
        (grade::verdict(&slos), None)
    };
    let summary = Summary::new(
        RunFacts {
            run_id,
            scenario: scenario.name.clone(),
            scenario_path: options.scenario.display().to_string(),
            seed: scenario.seed,
            target: resolved.description,
            started_at,
            ended_at,
            wall_s: run_start.elapsed().as_secs_f64(),
        },
        &aggregate,
        slos,
        verdict,
        reason,
    );
    journal.write(&serde_json::json!({
        "event": "run_ended", "verdict": summary.verdict, "wall_s": summary.wall_s,
        "at": summary.ended_at,
    }));
    summary.write(&out_dir).map_err(|source| RunError::Output {
        path: out_dir.clone(),
        source,
    })?;
    Ok(RunOutcome { summary, out_dir })
}

const JOURNAL_INTERVAL: Duration = Duration::from_secs(10);

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

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

/// The run's journal: JSON lines, flushed line by line so a killed run keeps what it wrote.
#[derive(Debug)]
struct Journal {
    file: std::io::BufWriter<std::fs::File>,
}

impl Journal {
    fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Journal {
            file: std::io::BufWriter::new(std::fs::File::create(path)?),
        })
    }

    fn write(&mut self, record: &serde_json::Value) {
        // A full disk must not stop the run; the summary still reports it.
        let _ = serde_json::to_writer(&mut self.file, record);
        let _ = self.file.write_all(b"\n");
        let _ = self.file.flush();
    }
}

/// The live progress line: indicatif on a terminal, a plain line every 10 s otherwise (CI).
#[derive(Debug)]
struct ProgressDisplay {
    bar: Option<ProgressBar>,
    plain: bool,
    total: Duration,
    last_plain: Option<Instant>,
}

impl ProgressDisplay {
    fn new(enabled: bool, total: Duration) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (enabled && terminal).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
            );
            bar
        });
        ProgressDisplay {
            bar,
            plain: enabled && !terminal,
            total,
            last_plain: None,
        }
    }

    fn line(&self, progress: &Progress) -> String {
        format!(
            "{} / {}  active {:>5}  started {:>6}  {:>6.1} calls/s  success {}  p95 response {}",
            clock(progress.elapsed),
            clock(self.total),
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
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(10))
            {
                self.last_plain = Some(now);
                eprintln!("{}", self.line(&progress));
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

//! Watching the fleet from the outside, the way an operator would: its health endpoint,
//! its Prometheus metrics, the alerts it sends, its temp dir, its log and its process (the
//! one the harness started, or one named by a pid file).
//! Observers send [`Observation`]s to one hub ([`hub::run_hub`]), which journals what
//! changed and keeps the transitions the grader needs to tell when the fleet noticed a
//! fault.
//!
//! A run starts them in two steps: [`serve_alerts`] before the fleet starts (the embedded
//! fleet is told where to post), then [`start`] once the journal exists, which resolves
//! what to watch ([`Watch`]: the scenario's `[observe]`, with the embedded fleet's defaults)
//! and starts everything else, for an embedded and an external fleet alike.

pub mod alerts;
pub mod fleet_process;
pub mod health;
pub mod hub;
pub mod log_tail;
pub mod pid_file;
pub mod prometheus;
pub mod temp_dir;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::console::LiveLines;
use crate::journal::Journal;
use crate::scenario::faults::{DetectionRule, MetricCondition};
use crate::scenario::observe::{ProcessWatch, RecordedSeries};
use crate::scenario::{Scenario, Target};
use crate::target::EmbeddedFleetInfo;
use hub::{HubSettings, Observed};
use log_tail::{LogTail, LogWatch};

/// The file in the run directory the embedded fleet's stdout and stderr are kept in, line
/// by line: what `{ log = "…" }` rules naming no file read for the embedded fleet.
pub const FLEET_LOG: &str = "fleet.log";

/// One reading of one observer.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub at: Instant,
    pub signal: Signal,
}

/// Runs `observe` every `interval` until `stop` (also while one is under way), and sends
/// each signal it returns to the hub; ends when the hub is gone. The pollers' one loop.
pub(crate) async fn every<F, Fut>(
    interval: Duration,
    observations: UnboundedSender<Observation>,
    stop: CancellationToken,
    mut observe: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<Signal>>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let signals = tokio::select! {
            signals = observe() => signals,
            () = stop.cancelled() => return,
        };
        for signal in signals {
            if observations.send(Observation::now(signal)).is_err() {
                return;
            }
        }
    }
}

impl Observation {
    pub fn now(signal: Signal) -> Self {
        Observation {
            at: Instant::now(),
            signal,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An alert reached the receiver.
    Alert {
        name: String,
        firing: bool,
        /// When the fleet says it started firing (Alertmanager `startsAt`), as sent.
        starts_at: Option<String>,
    },
    /// A request the receiver refused; `reason`: `not_alerts` (not JSON, or not an alert
    /// payload), `body_too_large`, `body_timeout` or `body_broken`.
    BadAlert { reason: &'static str },
    /// One health probe: 2xx is healthy; no answer (`status` None) is not.
    Health {
        healthy: bool,
        status: Option<u16>,
        /// Why, in a line: the first 200 characters of the body, or the error and its
        /// causes.
        detail: String,
        /// Nothing listened: the connection was refused (the fleet is down, not slow).
        refused: bool,
    },
    /// A metric condition of a fault's `detect` rule, evaluated on one scrape.
    Condition {
        index: usize,
        holds: bool,
        value: Option<f64>,
    },
    /// A scrape of the fleet's gauges that matter over long runs.
    Gauges {
        rss_bytes: Option<f64>,
        temp_dir_bytes: Option<f64>,
    },
    /// `/metrics` did not answer or was not Prometheus text.
    ScrapeFailed { reason: String },
    /// The `[observe] record` series on one scrape, by their text as written; None: no
    /// sample of that series.
    Recorded { values: Vec<(String, Option<f64>)> },
    /// One walk of the fleet's temp dir, without the harness's own leaked files.
    TempDir {
        bytes: u64,
        files: u64,
        /// The walk stopped at its entry limit: the real numbers are larger.
        capped: bool,
    },
    /// A line of a followed log file matched a `{ log = "…" }` detect rule's pattern.
    LogMatch {
        pattern: String,
        file: PathBuf,
        /// Cut at 8 KiB.
        line: String,
    },
    /// A followed log file exists but cannot be read.
    LogUnreadable { file: PathBuf, reason: String },
    /// Not the fleet's: the chaos plane injected a fault, and the hub watches for the
    /// signal that detects it.
    FaultInjected(crate::detect::Injection),
}

/// Starts the alert receiver, if this run has one: for the embedded fleet on a free port
/// of 127.0.0.1 (the fleet is pointed at it), for another fleet on `[observe]
/// alerts_listen` when the scenario gives it. Returns where it listens.
pub async fn serve_alerts(
    scenario: &Scenario,
    observations: UnboundedSender<Observation>,
    stop: CancellationToken,
) -> std::io::Result<Option<SocketAddr>> {
    let listen = match scenario.target {
        Target::Embedded(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        _ => match scenario.observe.alerts_listen {
            Some(listen) => listen,
            None => return Ok(None),
        },
    };
    alerts::serve(listen, observations, stop).await.map(Some)
}

/// What [`start`] needs to know about the run, beyond its scenario.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    /// The run id: the chaos plane's leaked files carry it, and the temp-dir sampler
    /// leaves them out.
    pub run_id: &'a str,
    /// Where the embedded fleet's output is kept ([`FLEET_LOG`] in the run directory).
    pub fleet_log: Option<&'a Path>,
    /// Where the alert receiver listens ([`serve_alerts`]), to journal it.
    pub alerts: Option<SocketAddr>,
    /// `http://127.0.0.1:PORT/` of the fleet the harness started (the embedded fleet or the
    /// sink): its `/health` and `/metrics` are watched unless `[observe]` says otherwise.
    pub fleet_http: Option<&'a url::Url>,
    /// Where a fault's detection is told as it happens.
    pub lines: &'a LiveLines,
}

/// The health probe of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthWatch {
    pub url: url::Url,
    pub interval: Duration,
    pub timeout: Duration,
}

/// The `/metrics` scrape of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsWatch {
    pub url: url::Url,
    pub interval: Duration,
    /// The series the fleet's resident memory is read from (`rss_metric`).
    pub rss: RecordedSeries,
    /// The series the bytes in its temp dir are read from (`temp_dir_metric`).
    pub temp_dir: RecordedSeries,
}

/// How the fleet's process is watched in one run: its memory, and its crashes.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessWatching {
    /// The fleet the harness started, as its supervisor (`fleet_process::watch`, which the
    /// run starts with the process in hand).
    Child,
    /// `[observe] process = { pid_file }`: [`pid_file::watch`].
    PidFile(PathBuf),
    /// `[observe] process = { health = true }`: the health probe's refusals, in the hub.
    Health(url::Url),
}

/// The temp-dir sampling of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct TempDirWatch {
    pub dir: PathBuf,
    pub interval: Duration,
    /// Files whose names start with this are the harness's own (see
    /// [`crate::scenario::faults::leak_prefix`]).
    pub excluded_prefix: String,
}

/// What the observers watch in one run: the scenario's `[observe]`, with the embedded
/// fleet's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub health: Option<HealthWatch>,
    pub metrics: Option<MetricsWatch>,
    /// Every metric condition of the faults' `detect` rules, once each.
    pub conditions: Vec<MetricCondition>,
    pub record: Vec<RecordedSeries>,
    pub temp_dir: Option<TempDirWatch>,
    /// Each log file the faults' `{ log = "…" }` rules read, once, with its patterns.
    pub logs: Vec<LogWatch>,
    /// The file rules naming no file read.
    pub default_log_file: Option<PathBuf>,
    pub process: Option<ProcessWatching>,
}

impl Watch {
    pub fn resolve(
        scenario: &Scenario,
        embedded: Option<&EmbeddedFleetInfo>,
        run: RunContext<'_>,
    ) -> Watch {
        let settings = &scenario.observe;
        let fleet_url = |path: &str| run.fleet_http.and_then(|base| base.join(path).ok());
        let health = settings
            .health_url
            .clone()
            .or_else(|| fleet_url("health"))
            .map(|url| HealthWatch {
                url,
                interval: settings.health_interval,
                timeout: settings.health_timeout,
            });
        let metrics = settings
            .metrics_url
            .clone()
            .or_else(|| fleet_url("metrics"))
            .map(|url| MetricsWatch {
                url,
                interval: settings.scrape_interval,
                rss: settings.rss_metric.clone(),
                temp_dir: settings.temp_dir_metric.clone(),
            });
        let temp_dir = settings
            .temp_dir
            .clone()
            .or_else(|| embedded.map(|info| info.audio_tmp_dir.clone()))
            .map(|dir| TempDirWatch {
                dir,
                interval: settings.temp_dir_interval,
                excluded_prefix: crate::scenario::faults::leak_prefix(run.run_id),
            });
        let default_log_file = settings.log_file.clone().or_else(|| {
            embedded
                .is_some()
                .then(|| run.fleet_log.map(Path::to_path_buf))
                .flatten()
        });
        let (conditions, logs) = detect_watches(scenario, default_log_file.as_deref());
        let process = match (&scenario.target, &settings.process) {
            (Target::External(_), Some(ProcessWatch::PidFile(file))) => {
                Some(ProcessWatching::PidFile(file.clone()))
            }
            (Target::External(_), Some(ProcessWatch::Health)) => health
                .as_ref()
                .map(|health| ProcessWatching::Health(health.url.clone())),
            (Target::External(_), None) => None,
            _ => Some(ProcessWatching::Child),
        };
        Watch {
            health,
            metrics,
            conditions,
            record: recorded_series(scenario),
            temp_dir,
            logs,
            default_log_file,
            process,
        }
    }

    /// Where the fleet's resident memory comes from: `process` (its `fleet_process`
    /// records) or `metrics` (`fleet_sample.rss_bytes`); None: nowhere.
    fn rss_source(&self) -> Option<&'static str> {
        match (&self.process, &self.metrics) {
            (Some(ProcessWatching::Child | ProcessWatching::PidFile(_)), _) => Some("process"),
            (_, Some(_)) => Some("metrics"),
            _ => None,
        }
    }

    /// Where the bytes in the fleet's temp dir come from: `walk` (`temp_dir` records) or
    /// `metrics` (`fleet_sample.temp_dir_bytes`); None: nowhere.
    fn temp_dir_source(&self) -> Option<&'static str> {
        match (&self.temp_dir, &self.metrics) {
            (Some(_), _) => Some("walk"),
            (None, Some(_)) => Some("metrics"),
            (None, None) => None,
        }
    }

    /// The `observers` journal record: what is watched, where (URLs without their
    /// credentials).
    fn describe(&self, alerts: Option<SocketAddr>) -> serde_json::Value {
        json!({
            "health": self.health.as_ref().map(|health| json!({
                "url": crate::redact::url(&health.url),
                "interval_s": health.interval.as_secs_f64(),
                "timeout_s": health.timeout.as_secs_f64(),
            })),
            "metrics": self.metrics.as_ref().map(|metrics| json!({
                "url": crate::redact::url(&metrics.url),
                "interval_s": metrics.interval.as_secs_f64(),
                "conditions": self.conditions.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
                "record": self.record.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
                "rss_metric": metrics.rss.text,
                "temp_dir_metric": metrics.temp_dir.text,
            })),
            "alerts": alerts.map(|address| format!("http://{address}/alerts")),
            "temp_dir": self.temp_dir.as_ref().map(|temp_dir| json!({
                "dir": temp_dir.dir.display().to_string(),
                "interval_s": temp_dir.interval.as_secs_f64(),
            })),
            "logs": self.logs.iter().map(|log| json!({
                "file": log.file.display().to_string(),
                "patterns": log.patterns,
            })).collect::<Vec<_>>(),
            "process": self.process.as_ref().map(|process| match process {
                ProcessWatching::Child => json!({"watch": "child"}),
                ProcessWatching::PidFile(file) => json!({
                    "watch": "pid_file", "pid_file": file.display().to_string(),
                    "interval_s": pid_file::SAMPLE_EVERY.as_secs_f64(),
                }),
                ProcessWatching::Health(url) => {
                    json!({"watch": "health", "url": crate::redact::url(url)})
                }
            }),
            "rss_source": self.rss_source(),
            "temp_dir_source": self.temp_dir_source(),
        })
    }
}

/// The series journaled in `metrics` records: `[observe] record`, then each metric SLO's
/// (`[[slo.metric]] series`) not already there, so the grader finds it in the journal.
pub fn recorded_series(scenario: &Scenario) -> Vec<RecordedSeries> {
    let mut series = scenario.observe.record.clone();
    for slo in &scenario.slo.metrics {
        if !series.iter().any(|known| known.text == slo.series.text) {
            series.push(slo.series.clone());
        }
    }
    series
}

/// What the faults' `detect` rules need watched: every metric condition, and each log file
/// with its patterns, once each. Rules naming no file read `default_log_file`; with none,
/// they are not followed.
pub fn detect_watches(
    scenario: &Scenario,
    default_log_file: Option<&Path>,
) -> (Vec<MetricCondition>, Vec<LogWatch>) {
    let mut conditions: Vec<MetricCondition> = Vec::new();
    let mut logs: Vec<LogWatch> = Vec::new();
    for rule in scenario.faults.iter().flat_map(|fault| &fault.detect) {
        match rule {
            DetectionRule::Metric(condition) => {
                if !conditions.iter().any(|known| known.text == condition.text) {
                    conditions.push(condition.clone());
                }
            }
            DetectionRule::Log { pattern, file } => {
                let Some(file) = file.as_deref().or(default_log_file) else {
                    continue;
                };
                match logs.iter_mut().find(|watch| watch.file == file) {
                    Some(watch) => {
                        if !watch.patterns.contains(pattern) {
                            watch.patterns.push(pattern.clone());
                        }
                    }
                    None => logs.push(LogWatch {
                        file: file.to_path_buf(),
                        patterns: vec![pattern.clone()],
                    }),
                }
            }
            DetectionRule::Alert { .. } | DetectionRule::Unhealthy => {}
        }
    }
    (conditions, logs)
}

/// Starts every observer of the run but the alert receiver ([`serve_alerts`]), for the
/// embedded fleet or any other, and the hub they report to; journals what they watch (an
/// `observers` record). Observers stop at `stop`; the hub then takes what is already queued
/// and returns what it saw. `observations` is the senders' side of `received` (the alert
/// receiver holds another).
pub fn start(
    scenario: &Scenario,
    embedded: Option<&EmbeddedFleetInfo>,
    run: RunContext<'_>,
    journal: Journal,
    (observations, received): (UnboundedSender<Observation>, UnboundedReceiver<Observation>),
    stop: CancellationToken,
) -> JoinHandle<Observed> {
    let watch = Watch::resolve(scenario, embedded, run);
    journal.record("observers", watch.describe(run.alerts));
    // One client for every probe; a redirect could lead outside allow_hosts.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(crate::http_serve::CLIENT_POOL_IDLE)
        .build()
        .unwrap_or_default();
    if let Some(health) = &watch.health {
        tokio::spawn(health::poll(
            http.clone(),
            health.clone(),
            observations.clone(),
            stop.clone(),
        ));
    }
    if let Some(metrics) = &watch.metrics {
        tokio::spawn(prometheus::scrape(
            http,
            prometheus::ScrapeSettings {
                url: metrics.url.to_string(),
                interval: metrics.interval,
                conditions: watch.conditions.clone(),
                record: watch.record.clone(),
                rss: metrics.rss.selector.clone(),
                temp_dir: metrics.temp_dir.selector.clone(),
            },
            observations.clone(),
            stop.clone(),
        ));
    }
    if let Some(temp_dir) = &watch.temp_dir {
        tokio::spawn(temp_dir::sample(
            temp_dir.dir.clone(),
            temp_dir.excluded_prefix.clone(),
            temp_dir.interval,
            observations.clone(),
            stop.clone(),
        ));
    }
    if !watch.logs.is_empty() {
        // Opened here, so each file is followed from its end as it is now.
        tokio::spawn(log_tail::follow(
            LogTail::start(&watch.logs),
            log_tail::POLL_EVERY,
            observations.clone(),
            stop.clone(),
        ));
    }
    if let Some(ProcessWatching::PidFile(file)) = &watch.process {
        tokio::spawn(pid_file::watch(file.clone(), journal.clone(), stop.clone()));
    }
    drop(observations);
    tokio::spawn(hub::run_hub(
        received,
        journal,
        HubSettings {
            conditions: watch.conditions,
            default_log_file: watch.default_log_file,
            crash_by_health: matches!(watch.process, Some(ProcessWatching::Health(_))),
            faults: crate::detect::plan::GradePlan::from_scenario(scenario).faults,
            lines: run.lines.clone(),
        },
        stop,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::FleetDatabase;

    fn scenario(toml: &str) -> Scenario {
        crate::scenario::parse(toml, Path::new("/nowhere/watch.toml"))
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn embedded_info() -> EmbeddedFleetInfo {
        EmbeddedFleetInfo {
            http_base: url::Url::parse("http://127.0.0.1:4000/").unwrap(),
            temp_dir: PathBuf::from("/tmp/fleet"),
            audio_tmp_dir: PathBuf::from("/tmp/fleet/audio"),
            database: FleetDatabase::Sqlite {
                path: PathBuf::from("/tmp/fleet/fleet.db"),
            },
            database_url: "sqlite:///tmp/fleet/fleet.db".into(),
            bugs: Vec::new(),
            pid: None,
        }
    }

    const FAULTS: &str = r#"
[[faults]]
kind = "temp_file_leak"
dir = "/tmp/x"
for = "1m"
detect = [{ log = "disk full" }, { log = "cleanup", file = "/var/log/cleaner.log" }, { metric = "temp_dir_bytes > 1000" }]
[[faults]]
kind = "temp_file_leak"
dir = "/tmp/x"
at = "5m"
for = "1m"
detect = [{ log = "disk full" }, { log = "TempDirGrowing" }, { metric = "temp_dir_bytes > 1000" }]
[chaos]
writable_dirs = ["/tmp/x"]
"#;

    #[test]
    fn the_embedded_fleet_is_watched_by_default() {
        let scenario = scenario(&format!(
            "[target]\nfleet = \"embedded\"\n[load]\nstages = [{{ ramp_to = 1, over = \"10m\" }}]\n{FAULTS}"
        ));
        let info = embedded_info();
        let watch = Watch::resolve(
            &scenario,
            Some(&info),
            RunContext {
                run_id: "run-1",
                fleet_log: Some(Path::new("/runs/r/fleet.log")),
                alerts: None,
                fleet_http: Some(&info.http_base),
                lines: &LiveLines::default(),
            },
        );
        assert_eq!(
            watch.health,
            Some(HealthWatch {
                url: url::Url::parse("http://127.0.0.1:4000/health").unwrap(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
            })
        );
        assert_eq!(
            watch.metrics,
            Some(MetricsWatch {
                url: url::Url::parse("http://127.0.0.1:4000/metrics").unwrap(),
                interval: Duration::from_secs(2),
                rss: RecordedSeries::named("process_resident_memory_bytes"),
                temp_dir: RecordedSeries::named("temp_dir_bytes"),
            })
        );
        assert_eq!(watch.process, Some(ProcessWatching::Child));
        let described = watch.describe(None);
        assert_eq!(described["process"], json!({"watch": "child"}));
        assert_eq!(described["rss_source"], "process");
        assert_eq!(described["temp_dir_source"], "walk");
        assert_eq!(watch.conditions.len(), 1, "each condition once");
        assert_eq!(
            watch.temp_dir,
            Some(TempDirWatch {
                dir: PathBuf::from("/tmp/fleet/audio"),
                interval: Duration::from_secs(10),
                excluded_prefix: "voxsoak-leak-run-1-".into(),
            })
        );
        assert_eq!(
            watch.default_log_file,
            Some(PathBuf::from("/runs/r/fleet.log"))
        );
        assert_eq!(
            watch.logs,
            vec![
                LogWatch {
                    file: PathBuf::from("/runs/r/fleet.log"),
                    patterns: vec!["disk full".into(), "TempDirGrowing".into()],
                },
                LogWatch {
                    file: PathBuf::from("/var/log/cleaner.log"),
                    patterns: vec!["cleanup".into()],
                },
            ]
        );
    }

    #[test]
    fn an_external_fleet_is_watched_where_the_scenario_says() {
        let bare = scenario(
            "[target]\nstream_url = \"ws://127.0.0.1:9/stream\"\n[load]\nstages = [{ ramp_to = 1, over = \"10m\" }]\n",
        );
        let run = RunContext {
            run_id: "run-2",
            fleet_log: Some(Path::new("/runs/r/fleet.log")),
            alerts: None,
            fleet_http: None,
            lines: &LiveLines::default(),
        };
        let watch = Watch::resolve(&bare, None, run);
        assert_eq!(
            watch,
            Watch {
                health: None,
                metrics: None,
                conditions: Vec::new(),
                record: Vec::new(),
                temp_dir: None,
                logs: Vec::new(),
                default_log_file: None,
                process: None,
            },
            "nothing to watch, and never the embedded fleet's log"
        );
        let described = watch.describe(None);
        assert!(described["process"].is_null() && described["rss_source"].is_null());
        let configured = scenario(&format!(
            r#"[target]
stream_url = "ws://127.0.0.1:9/stream"
[load]
stages = [{{ ramp_to = 1, over = "10m" }}]
[observe]
health_url = "http://127.0.0.1:8080/healthz"
health_interval = "3s"
metrics_url = "http://127.0.0.1:8080/metrics"
record = ["db_pool_in_use"]
temp_dir = "/srv/audio"
temp_dir_interval = "1m"
log_file = "/var/log/fleet.log"
{FAULTS}"#
        ));
        let watch = Watch::resolve(&configured, None, run);
        let described = watch.describe(None);
        assert_eq!(described["rss_source"], "metrics");
        assert_eq!(described["temp_dir_source"], "walk");
        assert_eq!(
            watch.health.unwrap().url.as_str(),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(watch.metrics.unwrap().interval, Duration::from_secs(2));
        assert_eq!(watch.record[0].text, "db_pool_in_use");
        assert_eq!(
            watch.temp_dir.unwrap(),
            TempDirWatch {
                dir: PathBuf::from("/srv/audio"),
                interval: Duration::from_secs(60),
                excluded_prefix: "voxsoak-leak-run-2-".into(),
            }
        );
        assert_eq!(watch.logs[0].file, PathBuf::from("/var/log/fleet.log"));
        assert_eq!(
            watch.default_log_file,
            Some(PathBuf::from("/var/log/fleet.log"))
        );
        assert_eq!(watch.process, None);
    }

    #[test]
    fn a_metric_slos_series_is_journaled_with_the_record_series_once() {
        let scenario = scenario(
            r#"[target]
fleet = "sink"
[load]
stages = [{ ramp_to = 1, over = "10m" }]
[observe]
record = ["db_pool_in_use", "dead_letters"]
[[slo.metric]]
name = "dlq"
series = "dead_letters"
max = 100
[[slo.metric]]
name = "retries"
series = 'tts_requests_total{status="429"}'
rate_max = 1
"#,
        );
        let texts: Vec<String> = recorded_series(&scenario)
            .into_iter()
            .map(|series| series.text)
            .collect();
        assert_eq!(
            texts,
            [
                "db_pool_in_use",
                "dead_letters",
                r#"tts_requests_total{status="429"}"#
            ]
        );
        let base = url::Url::parse("http://127.0.0.1:4100/").unwrap();
        let watch = Watch::resolve(
            &scenario,
            None,
            RunContext {
                run_id: "run-5",
                fleet_log: None,
                alerts: None,
                fleet_http: Some(&base),
                lines: &LiveLines::default(),
            },
        );
        assert_eq!(watch.record.len(), 3);
        assert_eq!(
            watch.describe(None)["metrics"]["record"][2],
            r#"tts_requests_total{status="429"}"#
        );
    }

    #[test]
    fn the_sink_is_watched_at_its_own_endpoints() {
        let sink = scenario(
            "[target]\nfleet = \"sink\"\n[load]\nstages = [{ ramp_to = 1, over = \"10m\" }]\n",
        );
        let base = url::Url::parse("http://127.0.0.1:4100/").unwrap();
        let watch = Watch::resolve(
            &sink,
            None,
            RunContext {
                run_id: "run-4",
                fleet_log: Some(Path::new("/runs/r/fleet.log")),
                alerts: None,
                fleet_http: Some(&base),
                lines: &LiveLines::default(),
            },
        );
        assert_eq!(
            watch.health.unwrap().url.as_str(),
            "http://127.0.0.1:4100/health"
        );
        assert_eq!(
            watch.metrics.unwrap().url.as_str(),
            "http://127.0.0.1:4100/metrics"
        );
        assert_eq!(watch.temp_dir, None, "the sink keeps no temp dir");
        assert_eq!(watch.default_log_file, None);
        assert_eq!(watch.process, Some(ProcessWatching::Child));
    }

    #[test]
    fn an_external_fleet_maps_its_own_names_and_process() {
        let external = |observe: &str| {
            scenario(&format!(
                "[target]\nstream_url = \"ws://127.0.0.1:9/stream\"\n[load]\nstages = [{{ ramp_to = 1, over = \"10m\" }}]\n[observe]\n{observe}"
            ))
        };
        let run = RunContext {
            run_id: "run-3",
            fleet_log: None,
            alerts: None,
            fleet_http: None,
            lines: &LiveLines::default(),
        };
        let named = external(
            "metrics_url = \"http://127.0.0.1:8080/metrics\"\nrss_metric = 'mem_bytes{kind=\"rss\"}'\ntemp_dir_metric = \"myfleet_tmp_bytes\"\nprocess = { pid_file = \"/run/fleet.pid\" }\n",
        );
        let watch = Watch::resolve(&named, None, run);
        let metrics = watch.metrics.clone().unwrap();
        assert_eq!(metrics.rss.text, r#"mem_bytes{kind="rss"}"#);
        assert_eq!(
            metrics.rss.selector.labels,
            vec![("kind".to_owned(), "rss".to_owned())]
        );
        assert_eq!(metrics.temp_dir, RecordedSeries::named("myfleet_tmp_bytes"));
        assert_eq!(
            watch.process,
            Some(ProcessWatching::PidFile(PathBuf::from("/run/fleet.pid")))
        );
        let described = watch.describe(None);
        assert_eq!(
            described["metrics"]["rss_metric"],
            r#"mem_bytes{kind="rss"}"#
        );
        assert_eq!(described["metrics"]["temp_dir_metric"], "myfleet_tmp_bytes");
        assert_eq!(
            described["process"],
            json!({"watch": "pid_file", "pid_file": "/run/fleet.pid", "interval_s": 1.0})
        );
        assert_eq!(described["rss_source"], "process");
        assert_eq!(described["temp_dir_source"], "metrics");

        let by_health = external(
            "health_url = \"http://127.0.0.1:8080/health\"\nprocess = { health = true }\n",
        );
        let watch = Watch::resolve(&by_health, None, run);
        assert_eq!(
            watch.describe(None)["process"],
            json!({"watch": "health", "url": "http://127.0.0.1:8080/health"})
        );
        assert_eq!(watch.describe(None)["rss_source"], serde_json::Value::Null);
    }
}

//! Phase 2 for `[observe]`, and the checks that tie to it what the scenario asks to be
//! seen: the faults' `detect` rules, and the SLOs only an observer can measure.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::faults::parse_series_selector;
use super::{Validator, Zero};
use crate::scenario::faults::{ActsOn, DetectionRule, FaultKind};
use crate::scenario::observe::{ObserveSettings, ProcessWatch, RecordedSeries};
use crate::scenario::raw::{RawObserve, RawProcessWatch, RawSlo, RawValue};
use crate::scenario::{Slos, Target};

/// More series than anyone reads in one journal record; keeps a record small.
const MAX_RECORDED: usize = 100;
/// Probing or scraping faster than this measures the harness, not the fleet.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A walk of up to 100,000 entries is not something to do many times a second.
const MIN_TEMP_DIR_INTERVAL: Duration = Duration::from_secs(1);

/// What a path key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathKind {
    File,
    Directory,
}

impl Validator<'_> {
    pub(super) fn observe(
        &mut self,
        raw: Option<Spanned<RawObserve>>,
        target: &Target,
        allow_hosts: &[String],
    ) -> ObserveSettings {
        let mut settings = ObserveSettings::default();
        let Some(raw) = raw else {
            return settings;
        };
        let raw = raw.into_inner();
        let embedded = matches!(target, Target::Embedded(_));
        let url = |validator: &mut Self, value: &Option<Spanned<String>>, key| {
            value.as_ref().and_then(|value| {
                validator.endpoint_url(value, key, ["http", "https"], allow_hosts)
            })
        };
        settings.health_url = url(self, &raw.health_url, "health_url");
        settings.metrics_url = url(self, &raw.metrics_url, "metrics_url");
        self.poll_intervals(&raw, &mut settings);
        if let Some(record) = &raw.record {
            settings.record = self.record(record);
        }
        if let Some(listen) = &raw.alerts_listen {
            if embedded {
                self.error(
                    listen.span(),
                    "alerts_listen is for an external fleet; the embedded fleet's alerts go to a free loopback port the harness wires itself, so drop alerts_listen",
                );
            } else {
                settings.alerts_listen = self.listen_address(listen, "alerts_listen");
            }
        }
        settings.temp_dir = raw
            .temp_dir
            .as_ref()
            .map(|dir| self.path(dir, "temp_dir", PathKind::Directory));
        settings.log_file = raw
            .log_file
            .as_ref()
            .map(|file| self.path(file, "log_file", PathKind::File));
        if let Some(text) = &raw.rss_metric {
            settings.rss_metric = self.series(text, "rss_metric", r#""myfleet_rss_bytes""#);
        }
        if let Some(text) = &raw.temp_dir_metric {
            settings.temp_dir_metric =
                self.series(text, "temp_dir_metric", r#""myfleet_tmp_bytes""#);
        }
        if let Some(process) = &raw.process {
            settings.process = self.process_watch(process, target, raw.health_url.is_some());
        }
        self.tuning_without_observer(&raw, target);
        settings
    }

    /// How often (and how patiently) health, metrics and the temp dir are polled.
    fn poll_intervals(&mut self, raw: &RawObserve, settings: &mut ObserveSettings) {
        settings.health_interval = self.interval(
            raw.health_interval.as_ref(),
            "health_interval",
            MIN_POLL_INTERVAL,
            settings.health_interval,
        );
        settings.health_timeout = self.duration_or(
            raw.health_timeout.as_ref(),
            "health_timeout",
            Zero::Rejected,
            settings.health_timeout,
        );
        settings.scrape_interval = self.interval(
            raw.scrape_interval.as_ref(),
            "scrape_interval",
            MIN_POLL_INTERVAL,
            settings.scrape_interval,
        );
        settings.temp_dir_interval = self.interval(
            raw.temp_dir_interval.as_ref(),
            "temp_dir_interval",
            MIN_TEMP_DIR_INTERVAL,
            settings.temp_dir_interval,
        );
    }

    /// A key that tunes an observer nobody asked for (and that has no default to tune)
    /// is an error, not silently ignored.
    fn tuning_without_observer(&mut self, raw: &RawObserve, target: &Target) {
        let embedded = matches!(target, Target::Embedded(_));
        // The embedded fleet and the sink have a /health and a /metrics the harness knows.
        let started = !matches!(target, Target::External(_));
        let needs = [
            (
                "health_interval",
                raw.health_interval.as_ref().map(Spanned::span),
                "health_url",
                raw.health_url.is_some() || started,
            ),
            (
                "health_timeout",
                raw.health_timeout.as_ref().map(Spanned::span),
                "health_url",
                raw.health_url.is_some() || started,
            ),
            (
                "scrape_interval",
                raw.scrape_interval.as_ref().map(Spanned::span),
                "metrics_url",
                raw.metrics_url.is_some() || started,
            ),
            (
                "record",
                raw.record.as_ref().map(Spanned::span),
                "metrics_url",
                raw.metrics_url.is_some() || started,
            ),
            (
                "rss_metric",
                raw.rss_metric.as_ref().map(Spanned::span),
                "metrics_url",
                raw.metrics_url.is_some() || started,
            ),
            (
                "temp_dir_metric",
                raw.temp_dir_metric.as_ref().map(Spanned::span),
                "metrics_url",
                raw.metrics_url.is_some() || started,
            ),
            (
                "temp_dir_interval",
                raw.temp_dir_interval.as_ref().map(Spanned::span),
                "temp_dir",
                raw.temp_dir.is_some() || embedded,
            ),
        ];
        for (key, span, needed, present) in needs {
            if let (Some(span), false) = (span, present) {
                let which = if needed == "temp_dir" {
                    r#"only fleet = "embedded" has a default temp_dir"#
                } else {
                    "only a fleet the harness starts has a default"
                };
                self.error(
                    span,
                    format!("{key} needs [observe] {needed} with this fleet ({which})"),
                );
            }
        }
    }

    /// `rss_metric = 'mem_bytes{kind="rss"}'`: a series selector, as `record` takes.
    pub(super) fn series(
        &mut self,
        text: &Spanned<String>,
        key: &str,
        example: &str,
    ) -> RecordedSeries {
        let written = text.get_ref().trim();
        match parse_series_selector(written) {
            Ok(selector) => RecordedSeries {
                text: written.to_owned(),
                selector,
            },
            Err(message) => {
                self.error(
                    text.span(),
                    format!(
                        r#"{key}: expected a series such as {example} or 'mem_bytes{{kind="rss"}}': {message}"#
                    ),
                );
                RecordedSeries::named(written)
            }
        }
    }

    /// `process = { pid_file = "…" }` or `{ health = true }`, for a fleet the harness did
    /// not start.
    fn process_watch(
        &mut self,
        raw: &Spanned<RawProcessWatch>,
        target: &Target,
        health_url: bool,
    ) -> Option<ProcessWatch> {
        const EXPECTED: &str =
            r#"process = { pid_file = "/run/fleet.pid" } or process = { health = true }"#;
        if !matches!(target, Target::External(_)) {
            let fleet = match target {
                Target::Sink(_) => r#"fleet = "sink""#,
                _ => r#"fleet = "embedded""#,
            };
            self.error(
                raw.span(),
                format!(
                    "process is for a fleet the harness did not start: it already watches the process of {fleet} it started (its RSS, CPU and exits); drop process"
                ),
            );
            return None;
        }
        let watch = raw.get_ref();
        match (&watch.pid_file, &watch.health) {
            (Some(_), Some(health)) => {
                self.error(
                    health.span(),
                    format!("process takes one of pid_file or health, not both: {EXPECTED}"),
                );
                None
            }
            (None, None) => {
                self.error(raw.span(), format!("process is empty: {EXPECTED}"));
                None
            }
            (Some(pid_file), None) => Some(ProcessWatch::PidFile(self.path(
                pid_file,
                "pid_file",
                PathKind::File,
            ))),
            (None, Some(health)) if !*health.get_ref() => {
                self.error(
                    health.span(),
                    "process = { health = false } watches nothing; write health = true or remove process",
                );
                None
            }
            (None, Some(health)) => {
                if !health_url {
                    self.error(
                        health.span(),
                        r#"process = { health = true } needs [observe] health_url = "http://HOST:PORT/health": a crash is that URL refusing connections after it answered"#,
                    );
                }
                Some(ProcessWatch::Health)
            }
        }
    }

    /// A duration of at least `min`.
    fn interval(
        &mut self,
        value: Option<&RawValue>,
        key: &str,
        min: Duration,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else {
            return default;
        };
        match self.duration(value, key, Zero::Rejected) {
            Some(duration) if duration < min => {
                self.error(
                    value.span(),
                    format!(
                        "{key} must be at least {}, found {}",
                        humantime::format_duration(min),
                        humantime::format_duration(duration)
                    ),
                );
                default
            }
            Some(duration) => duration,
            None => default,
        }
    }

    /// `record = ["db_pool_in_use", "tts_requests_total{status=\"429\"}"]`.
    fn record(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Vec<RecordedSeries> {
        const EXPECTED: &str = r#"record: expected a series such as "db_pool_in_use" or "tts_requests_total{status=\"429\"}""#;
        if raw.get_ref().len() > MAX_RECORDED {
            self.error(
                raw.span(),
                format!(
                    "record lists at most {MAX_RECORDED} series, found {}",
                    raw.get_ref().len()
                ),
            );
            return Vec::new();
        }
        let mut series: Vec<RecordedSeries> = Vec::new();
        for entry in raw.get_ref() {
            let text = entry.get_ref().trim();
            match parse_series_selector(text) {
                Ok(selector) => {
                    if series.iter().any(|known| known.text == text) {
                        self.error(
                            entry.span(),
                            format!("record lists {text:?} twice; list each series once"),
                        );
                    } else {
                        series.push(RecordedSeries {
                            text: text.to_owned(),
                            selector,
                        });
                    }
                }
                Err(message) => {
                    self.error(entry.span(), format!("{EXPECTED}: {message}"));
                }
            }
        }
        series
    }

    /// The SLOs only an observer can measure, against what this scenario watches: one
    /// nobody can measure would fail the fleet at the end of every run for what the harness
    /// could not see. `raw` gives the keys' positions; `slos` what was parsed from them.
    pub(super) fn slos_measurable(
        &mut self,
        raw: Option<&RawSlo>,
        slos: &Slos,
        context: &super::faults::FaultContext<'_>,
    ) {
        let Some(raw) = raw else {
            return;
        };
        let super::faults::FaultContext {
            target,
            chaos,
            observe,
            ..
        } = *context;
        let (external, sink) = match target {
            Target::Embedded(_) => return,
            Target::Sink(_) => (false, true),
            Target::External(_) => (true, false),
        };
        if external {
            self.external_process_slos_measurable(raw, slos, observe);
        }
        if let (Some(span), Some(_)) = (
            raw.temp_dir_growth.as_ref().map(Spanned::span),
            slos.temp_dir_growth_max_mib_h,
        ) && observe.temp_dir.is_none()
            && observe.metrics_url.is_none()
        {
            let fleet = if sink {
                "the sink keeps no temp dir"
            } else {
                "an external fleet's temp dir has no default"
            };
            self.error(
                span,
                format!(
                    r#"temp_dir_growth needs the fleet's temp dir, and {fleet}: add [observe] temp_dir = "/path/to/its/temp/dir" (walked) or metrics_url = "http://HOST:PORT/metrics" (the series temp_dir_metric names, default {})"#,
                    crate::scenario::observe::DEFAULT_TEMP_DIR_METRIC
                ),
            );
        }
        if let Some(flag) = &raw.no_retry_storm
            && slos.no_retry_storm
        {
            // Also with a TTS fault: against an external fleet it needs tts_listen too.
            if sink {
                self.error(
                    flag.span(),
                    r#"no_retry_storm grades how a fleet retries its TTS, and the sink calls no TTS; drop it, or use fleet = "embedded" or an external fleet with [chaos] tts_listen"#,
                );
            } else if chaos.tts_listen.is_none() {
                self.error(
                    flag.span(),
                    r#"no_retry_storm needs the TTS stand-in, which sees every TTS request of the fleet: add [chaos] tts_listen = "127.0.0.1:PORT" and point the fleet's TTS_BASE_URL at http://127.0.0.1:PORT/v1"#,
                );
            }
        }
    }

    /// The SLOs on the fleet's process (crashes, uptime, memory growth) against a fleet
    /// the harness did not start: each needs the [observe] setting that sees it.
    fn external_process_slos_measurable(
        &mut self,
        raw: &RawSlo,
        slos: &Slos,
        observe: &ObserveSettings,
    ) {
        let span = |value: &Option<RawValue>| value.as_ref().map(Spanned::span);
        let pid_file = matches!(observe.process, Some(ProcessWatch::PidFile(_)));
        if let (Some(span), Some(_)) = (span(&raw.max_crashes), slos.max_crashes)
            && observe.process.is_none()
        {
            self.error(
                span,
                r#"max_crashes needs the fleet's process watched, and the harness did not start this one: add [observe] process = { pid_file = "/run/fleet.pid" } (its exit, read from /proc, is a crash) or process = { health = true } (with health_url: the URL refusing connections after it answered is a crash)"#,
            );
        }
        if let (Some(span), Some(_)) = (span(&raw.uptime), slos.uptime_min_pct)
            && observe.health_url.is_none()
        {
            self.error(
                span,
                r#"uptime needs health probes, and an external fleet has no default: add [observe] health_url = "http://HOST:PORT/health""#,
            );
        }
        if let (Some(span), Some(_)) = (span(&raw.memory_growth), slos.memory_growth_max_mib_h)
            && !pid_file
            && observe.metrics_url.is_none()
        {
            self.error(
                span,
                format!(
                    r#"memory_growth needs the fleet's resident memory, and the harness did not start this fleet: add [observe] process = {{ pid_file = "/run/fleet.pid" }} (its RSS from /proc) or metrics_url = "http://HOST:PORT/metrics" (the series rss_metric names, default {})"#,
                    crate::scenario::observe::DEFAULT_RSS_METRIC
                ),
            );
        }
    }

    fn path(&mut self, value: &Spanned<String>, key: &str, kind: PathKind) -> PathBuf {
        self.not_empty(value, key);
        let path = PathBuf::from(value.get_ref());
        self.path_kind(&path, value.span(), key, kind);
        path
    }

    /// A path that need not exist yet (a log file, a pid file, a temp dir appear when the
    /// fleet starts) but, if it does, must be what the key expects: a directory where a
    /// file is expected would otherwise only show up as "unreadable" during the run.
    pub(super) fn path_kind(
        &mut self,
        path: &std::path::Path,
        span: Range<usize>,
        key: &str,
        kind: PathKind,
    ) {
        let Ok(metadata) = std::fs::metadata(path) else {
            return;
        };
        let problem = match kind {
            PathKind::File if metadata.is_dir() => "is a directory; expected a file",
            PathKind::Directory if !metadata.is_dir() => "is not a directory",
            _ => return,
        };
        self.error(
            span,
            format!("{key} {:?} {problem}", path.display().to_string()),
        );
    }

    /// A fault's `detect` rules against what is observed: a rule whose signal nobody
    /// watches would leave the fault undetected for a reason that is not the fleet's.
    /// `detect` is the rule's span when the file names it (else the kind's default rule
    /// applies and the error points at the fault).
    pub(super) fn detection_observed(
        &mut self,
        kind: FaultKind,
        rules: &[DetectionRule],
        detect: Option<Range<usize>>,
        fault: Range<usize>,
        target: &Target,
        observe: &ObserveSettings,
    ) {
        let span = detect.clone().unwrap_or(fault);
        let which = if detect.is_some() {
            format!("{kind}'s detect rule")
        } else {
            format!("{kind}'s default detect rule")
        };
        let fleet = match target {
            Target::Embedded(_) => return,
            // Refused on their own: they need a fleet the harness started.
            Target::External(_) if kind.acts_on() == ActsOn::FleetProcess => return,
            Target::Sink(_) => r#"fleet = "sink""#,
            Target::External(_) => "an external fleet",
        };
        let log_without_file = rules
            .iter()
            .any(|rule| matches!(rule, DetectionRule::Log { file: None, .. }));
        if log_without_file && observe.log_file.is_none() {
            self.error(
                span.clone(),
                format!(
                    r#"{which} {{ log = "…" }} names no file: only the embedded fleet's own output is read by default; with {fleet} add file = "/path/to/fleet.log" to the rule or set [observe] log_file = "/path/to/fleet.log""#
                ),
            );
        }
        if !matches!(target, Target::External(_)) {
            return;
        }
        let unhealthy = rules
            .iter()
            .any(|rule| matches!(rule, DetectionRule::Unhealthy));
        if unhealthy && observe.health_url.is_none() {
            self.error(
                span.clone(),
                format!(
                    r#"{which} health = "unhealthy" needs [observe] health_url = "http://HOST:PORT/health" against an external fleet: the harness must know where to probe"#
                ),
            );
        }
        let metric = rules
            .iter()
            .any(|rule| matches!(rule, DetectionRule::Metric(_)));
        if metric && observe.metrics_url.is_none() {
            self.error(
                span,
                format!(
                    r#"{which} {{ metric = "…" }} needs [observe] metrics_url = "http://HOST:PORT/metrics" against an external fleet: the harness must know where to scrape"#
                ),
            );
        }
    }
}

//! Phase 2 for `[observe]`, and the checks that tie the faults' `detect` rules to it.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::faults::parse_series_selector;
use super::{Validator, Zero};
use crate::scenario::Target;
use crate::scenario::faults::{DetectionRule, FaultKind};
use crate::scenario::observe::{ObserveSettings, RecordedSeries};
use crate::scenario::raw::{RawObserve, RawValue};

/// More series than anyone reads in one journal record; keeps a record small.
const MAX_RECORDED: usize = 100;
/// Probing or scraping faster than this measures the harness, not the fleet.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A walk of up to 100,000 entries is not something to do many times a second.
const MIN_TEMP_DIR_INTERVAL: Duration = Duration::from_secs(1);

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
        settings.temp_dir = raw.temp_dir.as_ref().map(|dir| self.path(dir, "temp_dir"));
        settings.log_file = raw
            .log_file
            .as_ref()
            .map(|file| self.path(file, "log_file"));

        // Without the embedded fleet's defaults, a key that tunes an observer nobody asked
        // for would be silently ignored.
        if !embedded {
            let needs = [
                (
                    "health_interval",
                    raw.health_interval.as_ref().map(Spanned::span),
                    "health_url",
                    raw.health_url.is_some(),
                ),
                (
                    "health_timeout",
                    raw.health_timeout.as_ref().map(Spanned::span),
                    "health_url",
                    raw.health_url.is_some(),
                ),
                (
                    "scrape_interval",
                    raw.scrape_interval.as_ref().map(Spanned::span),
                    "metrics_url",
                    raw.metrics_url.is_some(),
                ),
                (
                    "record",
                    raw.record.as_ref().map(Spanned::span),
                    "metrics_url",
                    raw.metrics_url.is_some(),
                ),
                (
                    "temp_dir_interval",
                    raw.temp_dir_interval.as_ref().map(Spanned::span),
                    "temp_dir",
                    raw.temp_dir.is_some(),
                ),
            ];
            for (key, span, needed, present) in needs {
                if let (Some(span), false) = (span, present) {
                    self.error(
                        span,
                        format!(
                            "{key} needs [observe] {needed} when the fleet is not embedded (only the embedded fleet has a default {needed})"
                        ),
                    );
                }
            }
        }
        settings
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

    fn path(&mut self, value: &Spanned<String>, key: &str) -> PathBuf {
        self.not_empty(value, key);
        PathBuf::from(value.get_ref())
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
            Target::External(_)
                if matches!(kind, FaultKind::ProcessStall | FaultKind::ProcessKill) =>
            {
                return;
            }
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

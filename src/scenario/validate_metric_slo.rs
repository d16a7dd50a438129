//! Phase 2 for `[[slo.metric]]`: each entry's name, series and bounds, and (once
//! `[observe]` is known) whether the harness can scrape its series at all.

use std::collections::HashSet;
use std::time::Duration;

use toml::Spanned;

use super::faults::FaultContext;
use super::{Validator, Zero, describe};
use crate::scenario::metric_slo::{
    BUILT_IN_NAMES, DEFAULT_RATE_WINDOW, MAX_NAME_CHARS, MetricSlo, MinDuring, RECORD_EVERY,
    name_allowed,
};
use crate::scenario::raw::{RawMetricSlo, RawSlo, RawValue};
use crate::scenario::{ScheduleWindow, Target};

/// More metric SLOs than anyone reads in one report; keeps a `metrics` record small.
const MAX_METRIC_SLOS: usize = 100;
const BOUNDS: &str = "max = N, min = N, growth_per_h = N or rate_max = N";

/// A metric SLO's bounds, as numbers.
struct Bounds {
    max: Option<f64>,
    min: Option<f64>,
    growth_per_h: Option<f64>,
    rate_max: Option<f64>,
}

impl Validator<'_> {
    /// `[[slo.metric]]`, in file order; `spikes` are the load's spike stages (for
    /// `during = "spike"`).
    pub(super) fn metric_slos(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawMetricSlo>>>,
        spikes: &[ScheduleWindow],
    ) -> Vec<MetricSlo> {
        if raw.get_ref().len() > MAX_METRIC_SLOS {
            self.error(
                raw.span(),
                format!(
                    "[[slo.metric]] may appear at most {MAX_METRIC_SLOS} times, found {}",
                    raw.get_ref().len()
                ),
            );
            return Vec::new();
        }
        let mut names = HashSet::new();
        let mut slos = Vec::new();
        for entry in raw.get_ref() {
            if let Some(slo) = self.metric_slo(entry, spikes, &mut names) {
                slos.push(slo);
            }
        }
        slos
    }

    /// One entry; None when it is wrong (every problem reported).
    fn metric_slo(
        &mut self,
        entry: &Spanned<RawMetricSlo>,
        spikes: &[ScheduleWindow],
        names: &mut HashSet<String>,
    ) -> Option<MetricSlo> {
        let raw = entry.get_ref();
        let name = self.metric_slo_name(entry, names);
        let series = match &raw.series {
            Some(series) => Some(self.series(series, "series", r#""dead_letters""#)),
            None => {
                self.error(
                    entry.span(),
                    r#"a metric SLO needs series = "NAME" (or 'NAME{label="value"}'): the fleet's series it bounds"#,
                );
                None
            }
        };
        let bounds = self.metric_bounds(entry);
        let min_during = self.min_during(raw, spikes);
        let window = self.rate_window(raw);
        let bounds = bounds?;
        Some(MetricSlo {
            name: name?,
            series: series?,
            max: bounds.max,
            min: bounds.min,
            min_during: min_during?,
            growth_per_h: bounds.growth_per_h,
            rate_max: bounds.rate_max,
            window: window?,
        })
    }

    /// `name`: given, allowed, not a built-in SLO's, not taken by another entry.
    fn metric_slo_name(
        &mut self,
        entry: &Spanned<RawMetricSlo>,
        names: &mut HashSet<String>,
    ) -> Option<String> {
        let Some(name) = &entry.get_ref().name else {
            self.error(
                entry.span(),
                r#"a metric SLO needs name = "…": what reports call it (e.g. name = "dlq")"#,
            );
            return None;
        };
        let text = name.get_ref().trim();
        let problem = if !name_allowed(text) {
            format!(
                "name {text:?}: expected 1 to {MAX_NAME_CHARS} letters, digits, _, - or . (it names the SLO in every report)"
            )
        } else if BUILT_IN_NAMES.contains(&text) {
            format!(
                "name {text:?} is a built-in SLO's (or an [slo] key); pick another, e.g. \"{text}_metric\""
            )
        } else if !names.insert(text.to_owned()) {
            format!("name {text:?} is taken by another [[slo.metric]]; each needs its own")
        } else {
            return Some(text.to_owned());
        };
        self.error(name.span(), problem);
        None
    }

    /// max, min, growth_per_h and rate_max: numbers, at least one of them, min not over
    /// max. None when one is wrong or none is given.
    fn metric_bounds(&mut self, entry: &Spanned<RawMetricSlo>) -> Option<Bounds> {
        let raw = entry.get_ref();
        let mut number = |value: &Option<RawValue>, key: &str| match value {
            Some(value) => self.metric_number(value, key).map(Some),
            None => Some(None),
        };
        let (max, min) = (number(&raw.max, "max"), number(&raw.min, "min"));
        let growth_per_h = number(&raw.growth_per_h, "growth_per_h");
        let rate_max = number(&raw.rate_max, "rate_max");
        let bounds = Bounds {
            max: max?,
            min: min?,
            growth_per_h: growth_per_h?,
            rate_max: rate_max?,
        };
        if let Some(rate) = bounds.rate_max.filter(|rate| *rate < 0.0)
            && let Some(value) = &raw.rate_max
        {
            self.error(
                value.span(),
                format!("rate_max is the fastest rise per second allowed, 0 or more, found {rate}"),
            );
            return None;
        }
        if let (Some(min), Some(max), Some(value)) = (bounds.min, bounds.max, &raw.min)
            && min > max
        {
            self.error(
                value.span(),
                format!("min ({min}) is over max ({max}): no value could pass"),
            );
            return None;
        }
        let none = [bounds.max, bounds.min, bounds.growth_per_h, bounds.rate_max]
            .iter()
            .all(Option::is_none);
        if none {
            self.error(
                entry.span(),
                format!("a metric SLO needs a bound to grade: add {BOUNDS}"),
            );
            return None;
        }
        Some(bounds)
    }

    /// A finite number, integer or not.
    fn metric_number(&mut self, value: &RawValue, key: &str) -> Option<f64> {
        let number = match value.get_ref() {
            toml::Value::Integer(number) => Some(*number as f64),
            toml::Value::Float(number) if number.is_finite() => Some(*number),
            _ => None,
        };
        if number.is_none() {
            self.error(
                value.span(),
                format!(
                    "{key}: expected a number such as 100 or 2.5, found {}",
                    describe(value.get_ref())
                ),
            );
        }
        number
    }

    /// `during = "spike"`: with `min`, and a load that has spike stages.
    fn min_during(&mut self, raw: &RawMetricSlo, spikes: &[ScheduleWindow]) -> Option<MinDuring> {
        let Some(during) = &raw.during else {
            return Some(MinDuring::Run);
        };
        let problem = if during.get_ref().trim() != "spike" {
            format!(
                r#"during: expected "spike" (min is then graded only during the load's spike stages), found {:?}"#,
                during.get_ref()
            )
        } else if raw.min.is_none() {
            r#"during applies to min only: add min = N, or drop during"#.to_owned()
        } else if spikes.is_empty() {
            r#"during = "spike" needs a spike stage in [load] stages, e.g. { spike_to = 60, for = "10m" }"#.to_owned()
        } else {
            return Some(MinDuring::Spike);
        };
        self.error(during.span(), problem);
        None
    }

    /// `window`: with `rate_max`, long enough for two journaled samples.
    fn rate_window(&mut self, raw: &RawMetricSlo) -> Option<Duration> {
        let Some(value) = &raw.window else {
            return Some(DEFAULT_RATE_WINDOW);
        };
        let window = self.duration(value, "window", Zero::Rejected)?;
        let shortest = RECORD_EVERY * 2;
        let problem = if raw.rate_max.is_none() {
            "window applies to rate_max only: add rate_max = N, or drop window".to_owned()
        } else if window < shortest {
            format!(
                "window must be at least {} (the series is journaled every {}, and a rate needs two samples in the window), found {}",
                humantime::format_duration(shortest),
                humantime::format_duration(RECORD_EVERY),
                humantime::format_duration(window)
            )
        } else {
            return Some(window);
        };
        self.error(value.span(), problem);
        None
    }

    /// Every metric SLO against what this scenario scrapes: an external fleet is scraped
    /// only at `[observe] metrics_url`, and a rate needs two scrapes in its window.
    pub(super) fn metric_slos_measurable(
        &mut self,
        raw: Option<&RawSlo>,
        context: &FaultContext<'_>,
    ) {
        let Some(entries) = raw.and_then(|raw| raw.metric.as_ref()) else {
            return;
        };
        let observe = context.observe;
        let unscraped =
            matches!(context.target, Target::External(_)) && observe.metrics_url.is_none();
        for entry in entries.get_ref() {
            let raw = entry.get_ref();
            if unscraped && let Some(series) = &raw.series {
                self.error(
                    series.span(),
                    r#"a metric SLO needs the fleet's /metrics, and an external fleet has no default: add [observe] metrics_url = "http://HOST:PORT/metrics""#,
                );
            }
            let shortest = observe.scrape_interval * 2;
            let window = raw.window.as_ref().or(raw.rate_max.as_ref());
            let length = raw
                .window
                .as_ref()
                .and_then(|value| value.get_ref().as_str())
                .and_then(super::parse_duration)
                .unwrap_or(DEFAULT_RATE_WINDOW);
            if let Some(value) = window
                && raw.rate_max.is_some()
                && length < shortest
            {
                self.error(
                    value.span(),
                    format!(
                        "window ({}) must be at least two scrapes long: [observe] scrape_interval is {}",
                        humantime::format_duration(length),
                        humantime::format_duration(observe.scrape_interval)
                    ),
                );
            }
        }
    }
}

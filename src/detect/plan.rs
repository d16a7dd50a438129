//! What the grader needs from the scenario, written into the journal's `run_started`
//! record (`grading`), so `voxsoak report` grades a run from its journal alone, even where
//! the scenario file and its fixtures are gone or have changed since.

use serde::{Deserialize, Serialize};

use crate::scenario::faults::{DetectionRule, RecoverFrom};
use crate::scenario::metric_slo::{BUILT_IN_NAMES, DEFAULT_RATE_WINDOW, name_allowed};
use crate::scenario::{MetricSlo, MinDuring, Scenario, Slos};

/// The SLOs and the faults' detection rules, in plain units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradePlan {
    pub slo: SloPlan,
    pub faults: Vec<FaultPlan>,
}

/// `[slo]`, with durations in seconds and growth in MiB per hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloPlan {
    pub call_success_min_pct: Option<f64>,
    pub response_p95_max_s: Option<f64>,
    pub response_p99_max_s: Option<f64>,
    pub first_audio_p95_max_s: Option<f64>,
    pub pacing_jitter_p99_max_s: Option<f64>,
    pub detect_within_s: Option<f64>,
    pub no_retry_storm: bool,
    pub recover_within_s: Option<f64>,
    pub stable_window_s: f64,
    pub uptime_min_pct: Option<f64>,
    pub memory_growth_max_mib_h: Option<f64>,
    pub temp_dir_growth_max_mib_h: Option<f64>,
    pub max_crashes: Option<u64>,
    #[serde(default)]
    pub no_unprovoked_alerts: bool,
    /// `[[slo.metric]]` (absent in journals from before them).
    #[serde(default)]
    pub metrics: Vec<MetricSloPlan>,
    /// The load's spike stages as `[from_s, to_s]` of the run (real time): where a metric
    /// SLO's `min` with `during = "spike"` is graded.
    #[serde(default)]
    pub spikes_s: Vec<[f64; 2]>,
}

/// One `[[slo.metric]]`, in plain units: rates per second and growth per hour of real time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSloPlan {
    pub name: String,
    /// The series as written: its key in the journal's `metrics` records.
    pub series: String,
    pub max: Option<f64>,
    pub min: Option<f64>,
    /// `min` only during the spike stages (`spikes_s`); else after the warm-up.
    #[serde(default)]
    pub min_during_spikes: bool,
    pub growth_per_h: Option<f64>,
    pub rate_max: Option<f64>,
    pub window_s: f64,
}

/// A window in seconds as people read it: `60` → `1m`.
pub fn window(window_s: f64) -> String {
    crate::units::format_duration(std::time::Duration::from_secs_f64(window_s.clamp(0.0, 1e9)))
}

impl MetricSloPlan {
    pub fn of(slo: &MetricSlo) -> Self {
        MetricSloPlan {
            name: slo.name.clone(),
            series: slo.series.text.clone(),
            max: slo.max,
            min: slo.min,
            min_during_spikes: slo.min_during == MinDuring::Spike,
            growth_per_h: slo.growth_per_h,
            rate_max: slo.rate_max,
            window_s: slo.window.as_secs_f64(),
        }
    }

    /// Its threshold as reports show it: every bound, in file-format order, e.g.
    /// `max <= 100, growth <= 50/h`.
    pub fn threshold(&self) -> String {
        let mut parts = Vec::new();
        if let Some(max) = self.max {
            parts.push(format!("max <= {max}"));
        }
        if let Some(min) = self.min {
            let during = if self.min_during_spikes {
                " during spikes"
            } else {
                ""
            };
            parts.push(format!("min >= {min}{during}"));
        }
        if let Some(max) = self.growth_per_h {
            parts.push(format!("growth <= {max}/h"));
        }
        if let Some(max) = self.rate_max {
            parts.push(format!("rate <= {max}/s over {}", window(self.window_s)));
        }
        parts.join(", ")
    }

    /// What of it a grader can use: a bound that is not a finite number is dropped, a
    /// window that is not positive gets the default; None when its name is not one a
    /// scenario allows (or a built-in's) or no bound is left. Each change is named.
    fn sanitized(mut self, unusable: &mut Vec<String>) -> Option<Self> {
        let name = self.name.clone();
        if !name_allowed(&name) || BUILT_IN_NAMES.contains(&name.as_str()) {
            unusable.push(format!(
                "grading plan: metric SLO name {name:?} is not one a scenario allows; that SLO is not graded"
            ));
            return None;
        }
        for (key, value) in [
            ("max", &mut self.max),
            ("min", &mut self.min),
            ("growth_per_h", &mut self.growth_per_h),
            ("rate_max", &mut self.rate_max),
        ] {
            if let Some(number) = *value
                && !number.is_finite()
            {
                unusable.push(format!(
                    "grading plan: metric SLO {name} {key} = {number} is not a usable bound; it is not graded"
                ));
                *value = None;
            }
        }
        if !(self.window_s.is_finite() && self.window_s > 0.0) {
            unusable.push(format!(
                "grading plan: metric SLO {name} window_s = {} is not usable; the default applies",
                self.window_s
            ));
            self.window_s = DEFAULT_RATE_WINDOW.as_secs_f64();
        }
        let bounded = [self.max, self.min, self.growth_per_h, self.rate_max]
            .iter()
            .any(Option::is_some);
        if !bounded {
            unusable.push(format!(
                "grading plan: metric SLO {name} has no usable bound; it is not graded"
            ));
        }
        bounded.then_some(self)
    }
}

/// One `[[faults]]` entry, as far as grading goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    pub name: String,
    pub kind: String,
    pub detect: Vec<RuleSpec>,
    pub recover_from: RecoverFrom,
}

/// A `detect` rule, spelled as in the scenario: `{"alert": "Name"}`,
/// `{"health": "unhealthy"}`, `{"metric": "a / b > 0.95"}` or `{"log": "regex", "file": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RuleSpec {
    Alert {
        alert: String,
    },
    Health {
        health: String,
    },
    Metric {
        metric: String,
    },
    Log {
        log: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
}

impl std::fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleSpec::Alert { alert } => write!(f, "alert {alert}"),
            RuleSpec::Health { health } => write!(f, "health {health}"),
            RuleSpec::Metric { metric } => write!(f, "metric {metric}"),
            RuleSpec::Log {
                log,
                file: Some(file),
            } => write!(f, "log /{log}/ in {file}"),
            RuleSpec::Log { log, file: None } => write!(f, "log /{log}/"),
        }
    }
}

impl From<&DetectionRule> for RuleSpec {
    fn from(rule: &DetectionRule) -> Self {
        match rule {
            DetectionRule::Alert { name } => RuleSpec::Alert {
                alert: name.clone(),
            },
            DetectionRule::Unhealthy => RuleSpec::Health {
                health: "unhealthy".into(),
            },
            DetectionRule::Metric(condition) => RuleSpec::Metric {
                metric: condition.text.clone(),
            },
            DetectionRule::Log { pattern, file } => RuleSpec::Log {
                log: pattern.clone(),
                file: file.as_ref().map(|file| file.display().to_string()),
            },
        }
    }
}

impl SloPlan {
    pub fn from_slos(slos: &Slos) -> Self {
        let s = |duration: Option<std::time::Duration>| duration.map(|d| d.as_secs_f64());
        SloPlan {
            call_success_min_pct: slos.call_success_min_pct,
            response_p95_max_s: s(slos.response_p95_max),
            response_p99_max_s: s(slos.response_p99_max),
            first_audio_p95_max_s: s(slos.first_audio_p95_max),
            pacing_jitter_p99_max_s: s(slos.pacing_jitter_p99_max),
            detect_within_s: s(slos.detect_within),
            no_retry_storm: slos.no_retry_storm,
            recover_within_s: s(slos.recover_within),
            stable_window_s: slos.stable_window.as_secs_f64(),
            uptime_min_pct: slos.uptime_min_pct,
            memory_growth_max_mib_h: slos.memory_growth_max_mib_h,
            temp_dir_growth_max_mib_h: slos.temp_dir_growth_max_mib_h,
            max_crashes: slos.max_crashes,
            no_unprovoked_alerts: slos.no_unprovoked_alerts,
            metrics: slos.metrics.iter().map(MetricSloPlan::of).collect(),
            spikes_s: Vec::new(),
        }
    }
}

impl Default for SloPlan {
    fn default() -> Self {
        SloPlan::from_slos(&Slos::default())
    }
}

impl GradePlan {
    /// The plan with every threshold a grader can use: a journal is a file anyone can
    /// edit, and a negative or non-finite time or limit would make nonsense (or a panic) of
    /// the grading. Such a threshold is dropped (its SLO is not graded) and named.
    pub fn sanitized(mut self) -> (GradePlan, Vec<String>) {
        let mut unusable = Vec::new();
        let slo = &mut self.slo;
        for (name, value) in [
            ("call_success_min_pct", &mut slo.call_success_min_pct),
            ("response_p95_max_s", &mut slo.response_p95_max_s),
            ("response_p99_max_s", &mut slo.response_p99_max_s),
            ("first_audio_p95_max_s", &mut slo.first_audio_p95_max_s),
            ("pacing_jitter_p99_max_s", &mut slo.pacing_jitter_p99_max_s),
            ("detect_within_s", &mut slo.detect_within_s),
            ("recover_within_s", &mut slo.recover_within_s),
            ("uptime_min_pct", &mut slo.uptime_min_pct),
            ("memory_growth_max_mib_h", &mut slo.memory_growth_max_mib_h),
            (
                "temp_dir_growth_max_mib_h",
                &mut slo.temp_dir_growth_max_mib_h,
            ),
        ] {
            if let Some(number) = *value
                && !(number.is_finite() && number >= 0.0)
            {
                unusable.push(format!(
                    "grading plan: {name} = {number} is not a usable threshold; that SLO is not graded"
                ));
                *value = None;
            }
        }
        if !(slo.stable_window_s.is_finite() && slo.stable_window_s >= 0.0) {
            unusable.push(format!(
                "grading plan: stable_window_s = {} is not usable; the default applies",
                slo.stable_window_s
            ));
            slo.stable_window_s = SloPlan::default().stable_window_s;
        }
        slo.metrics = std::mem::take(&mut slo.metrics)
            .into_iter()
            .filter_map(|metric| metric.sanitized(&mut unusable))
            .collect();
        let spikes = slo.spikes_s.len();
        slo.spikes_s
            .retain(|[from, to]| from.is_finite() && to.is_finite() && from <= to);
        if slo.spikes_s.len() < spikes {
            unusable.push(format!(
                "grading plan: {} spike windows are not usable and are left out",
                spikes - slo.spikes_s.len()
            ));
        }
        (self, unusable)
    }

    pub fn from_scenario(scenario: &Scenario) -> Self {
        let mut slo = SloPlan::from_slos(&scenario.slo);
        slo.spikes_s = scenario
            .spikes
            .iter()
            .map(|spike| {
                let from = spike.at.as_secs_f64();
                [from, from + spike.duration.as_secs_f64()]
            })
            .collect();
        GradePlan {
            slo,
            faults: scenario
                .faults
                .iter()
                .map(|fault| FaultPlan {
                    name: fault.name.clone(),
                    kind: fault.kind.name().to_owned(),
                    detect: fault.detect.iter().map(RuleSpec::from).collect(),
                    recover_from: fault.recover_from,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_back_as_they_were_written() {
        let rules = vec![
            RuleSpec::Alert {
                alert: "TtsRateLimited".into(),
            },
            RuleSpec::Health {
                health: "unhealthy".into(),
            },
            RuleSpec::Metric {
                metric: "db_pool_in_use / db_pool_size > 0.95".into(),
            },
            RuleSpec::Log {
                log: "stall(ed)?".into(),
                file: None,
            },
            RuleSpec::Log {
                log: "x".into(),
                file: Some("/var/log/fleet.log".into()),
            },
        ];
        let json = serde_json::to_string(&rules).unwrap();
        assert!(
            json.starts_with(r#"[{"alert":"TtsRateLimited"},{"health":"unhealthy"}"#),
            "{json}"
        );
        let back: Vec<RuleSpec> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rules);
        assert_eq!(back[3].to_string(), "log /stall(ed)?/");
    }
}

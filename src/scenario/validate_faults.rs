//! Phase 2 for `[[faults]]`, `[chaos]` and `[abort]`.

//! What every kind shares lives here: the entry's common keys (`name`, `at`, `for`,
//! `every`, `detect`, `recover_from`), the check of its keys against its kind's
//! parameters and of what the fleet must offer, and the value checks kinds share. Each
//! kind's own parameters are checked in its file under `scenario/faults/` (see
//! [`crate::scenario::faults::KindSpec`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::{Validator, Zero, describe};
use crate::scenario::faults::{
    AbortConditions, ActsOn, ChaosSettings, Comparison, DEFAULT_CONFIRM_WITHIN, DetectionRule,
    FaultKind, FaultSpec, KindEntry, MetricCondition, RecoverFrom, Recurrence, ScheduledFault,
    SeriesSelector,
};
use crate::scenario::observe::ObserveSettings;
use crate::scenario::raw::{RawAbort, RawChaos, RawFault, RawValue};
use crate::scenario::{Diagnostic, Target, writable};

const MAX_FAULTS: usize = 1000;
/// Every gap between two occurrences of a recurring fault is at least this.
const MIN_EVERY: Duration = Duration::from_secs(1);

/// What a `[[faults]]` entry is checked against: the rest of the scenario.
pub(in crate::scenario) struct FaultContext<'a> {
    pub target: &'a Target,
    pub allow_hosts: &'a [String],
    pub chaos: &'a ChaosSettings,
    pub observe: &'a ObserveSettings,
}

impl Validator<'_> {
    pub(super) fn faults(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawFault>>>>,
        context: &FaultContext<'_>,
    ) -> Vec<ScheduledFault> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        if raw.get_ref().len() > MAX_FAULTS {
            self.error(
                raw.span(),
                format!(
                    "at most {MAX_FAULTS} [[faults]] entries, found {}",
                    raw.get_ref().len()
                ),
            );
            return Vec::new();
        }
        let entries = raw.into_inner();
        // Unnamed faults are called by their kind, numbered when the kind repeats.
        let mut kinds: std::collections::HashMap<String, usize> = Default::default();
        for entry in &entries {
            if let Some(kind) = &entry.get_ref().kind {
                *kinds.entry(kind.get_ref().clone()).or_default() += 1;
            }
        }
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let mut faults = Vec::new();
        let mut names = std::collections::HashSet::new();
        for entry in entries {
            let span = entry.span();
            let entry = entry.into_inner();
            let default_name = entry.kind.as_ref().map(|kind| {
                let kind = kind.get_ref();
                let number = seen.entry(kind.clone()).or_default();
                *number += 1;
                if kinds.get(kind).copied().unwrap_or(0) > 1 {
                    format!("{kind}-{number}")
                } else {
                    kind.clone()
                }
            });
            if let Some(fault) = self.fault(entry, default_name.unwrap_or_default(), span, context)
            {
                if !names.insert(fault.name.clone()) {
                    self.error_at(
                        self.offset_of_line(fault.line),
                        format!(
                            "two faults are named {:?}; names must be unique",
                            fault.name
                        ),
                    );
                }
                faults.push(fault);
            }
        }
        faults
    }

    fn offset_of_line(&self, line: usize) -> usize {
        self.source
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum()
    }

    fn fault(
        &mut self,
        raw: RawFault,
        default_name: String,
        span: std::ops::Range<usize>,
        context: &FaultContext<'_>,
    ) -> Option<ScheduledFault> {
        let FaultContext {
            target, observe, ..
        } = *context;
        let kind = self.fault_kind(&raw, &span)?;
        let position = Diagnostic::at(self.source, span.start, "");
        let before = self.diagnostics.len();
        self.fault_keys_taken(kind, &raw);
        let name = match &raw.name {
            Some(name) => {
                self.not_empty(name, "name");
                name.get_ref().trim().to_owned()
            }
            None => default_name,
        };
        let at = self.duration_or(raw.at.as_ref(), "at", Zero::Allowed, Duration::ZERO);
        let duration = match &raw.duration {
            Some(value) => self.duration(value, "for", Zero::Rejected),
            None => {
                self.error(
                    span.clone(),
                    format!(r#"{kind} needs for = "…", how long the fault lasts (e.g. "60s")"#),
                );
                None
            }
        };
        let every = self.recurrence(&raw, duration);
        let fault = self.fault_spec(kind, &raw, &span, context);
        let detect = match (&raw.detect, &fault) {
            (Some(value), _) => self.detection_rules(value),
            (None, Some(spec)) => vec![spec.default_detection(kind)],
            (None, None) => vec![kind.default_detection()],
        };
        self.detection_observed(
            kind,
            &detect,
            raw.detect.as_ref().map(Spanned::span),
            span.clone(),
            target,
            observe,
        );
        let recover_from = self.recover_from(&raw, kind);
        if self.diagnostics.len() > before {
            return None;
        }
        Some(ScheduledFault {
            name,
            kind,
            fault: fault?,
            at,
            duration: duration?,
            every,
            detect,
            recover_from,
            file: None,
            line: position.line,
            column: position.column,
        })
    }

    /// The entry's `kind`, one of the kinds there are.
    fn fault_kind(&mut self, raw: &RawFault, span: &std::ops::Range<usize>) -> Option<FaultKind> {
        let Some(kind_text) = &raw.kind else {
            self.error(
                span.clone(),
                format!("[[faults]] entry needs kind = one of {}", kind_list()),
            );
            return None;
        };
        let Some(kind) = FaultKind::from_name(kind_text.get_ref()) else {
            self.error(
                kind_text.span(),
                format!(
                    "unknown fault kind {:?}; expected one of {}",
                    kind_text.get_ref(),
                    kind_list()
                ),
            );
            return None;
        };
        Some(kind)
    }

    /// Every parameter given is one the kind takes.
    fn fault_keys_taken(&mut self, kind: FaultKind, raw: &RawFault) {
        for (key, key_span) in raw.parameter_keys() {
            if !kind.parameters().contains(&key) {
                let takes = kind.parameters();
                let takes = if takes.is_empty() {
                    "no parameters".to_owned()
                } else {
                    takes.join(", ")
                };
                self.error(
                    key_span,
                    format!("{kind} does not take {key}; it takes {takes}"),
                );
            }
        }
    }

    /// `recover_from`: `clear` or `injection`, the kind's own default when not given.
    fn recover_from(&mut self, raw: &RawFault, kind: FaultKind) -> RecoverFrom {
        match &raw.recover_from {
            None => kind.default_recover_from(),
            Some(value) => match value.get_ref().as_str() {
                "clear" => RecoverFrom::Clear,
                "injection" => RecoverFrom::Injection,
                other => {
                    self.error(
                        value.span(),
                        format!(
                            r#"recover_from: expected "clear" or "injection", found {other:?}"#
                        ),
                    );
                    RecoverFrom::Clear
                }
            },
        }
    }

    fn recurrence(&mut self, raw: &RawFault, duration: Option<Duration>) -> Option<Recurrence> {
        let every_value = raw.every.as_ref();
        let Some(every_value) = every_value else {
            if let Some(jitter) = &raw.every_jitter {
                self.error(jitter.span(), "every_jitter needs every = \"…\"");
            }
            return None;
        };
        let every = self.duration(every_value, "every", Zero::Rejected)?;
        let jitter = self.duration_or(
            raw.every_jitter.as_ref(),
            "every_jitter",
            Zero::Allowed,
            Duration::ZERO,
        );
        let duration = duration?;
        // Occurrences of one fault never overlap: the next starts after this one ends.
        if every.saturating_sub(jitter * 2) < duration + MIN_EVERY {
            self.error(
                every_value.span(),
                format!(
                    "every must be longer than for + 2 × every_jitter + 1s so occurrences never overlap; found every = {}, for = {}, every_jitter = {}",
                    humantime::format_duration(every),
                    humantime::format_duration(duration),
                    humantime::format_duration(jitter)
                ),
            );
            return None;
        }
        Some(Recurrence { every, jitter })
    }

    fn fault_spec(
        &mut self,
        kind: FaultKind,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        context: &FaultContext<'_>,
    ) -> Option<FaultSpec> {
        let FaultContext { target, chaos, .. } = *context;
        let fraction = raw
            .fraction
            .as_ref()
            .and_then(|value| self.fraction(value, "fraction"))
            .unwrap_or(1.0);
        let external = matches!(target, Target::External(_));
        let acts_on = kind.acts_on();
        let uses_tts = acts_on == ActsOn::TtsStandIn;
        let uses_llm = acts_on == ActsOn::LlmStandIn;
        if external && uses_tts && chaos.tts_listen.is_none() {
            self.error(
                span.clone(),
                format!(
                    "{kind} against an external fleet needs [chaos] tts_listen = \"127.0.0.1:PORT\": the TTS stand-in listens there and the fleet's TTS_BASE_URL must point at it"
                ),
            );
        }
        if external && uses_llm && chaos.llm_listen.is_none() {
            self.error(
                span.clone(),
                format!(
                    "{kind} against an external fleet needs [chaos] llm_listen = \"127.0.0.1:PORT\": the LLM stand-in listens there and the fleet's LLM_BASE_URL must point at it"
                ),
            );
        }
        if matches!(target, Target::Sink(_))
            && (uses_tts || uses_llm || acts_on == ActsOn::Database)
        {
            self.error(
                span.clone(),
                format!("{kind} needs a fleet with a TTS, an LLM and a database; the sink has none (use fleet = \"embedded\")"),
            );
        }
        let entry = KindEntry {
            kind,
            raw,
            span,
            context,
            fraction,
        };
        (kind.spec().validate)(self, &entry)
    }

    pub(in crate::scenario) fn required_duration(
        &mut self,
        value: Option<&RawValue>,
        kind: FaultKind,
        key: &str,
        span: &std::ops::Range<usize>,
    ) -> Option<Duration> {
        match value {
            Some(value) => self.duration(value, key, Zero::Rejected),
            None => {
                self.error(
                    span.clone(),
                    format!(r#"{kind} needs {key} = "…" (e.g. "2s")"#),
                );
                None
            }
        }
    }

    pub(in crate::scenario) fn status_code(
        &mut self,
        code: Option<&Spanned<i64>>,
        range: std::ops::RangeInclusive<i64>,
        default: u16,
    ) -> Option<u16> {
        let Some(code) = code else {
            return Some(default);
        };
        let number = self.ranged(code, "code", range)?;
        u16::try_from(number).ok()
    }

    /// `"4MiB/s"` → bytes per second.
    pub(in crate::scenario) fn byte_rate(&mut self, value: &RawValue, key: &str) -> Option<u64> {
        let expected = format!(r#"{key}: expected a rate such as "4MiB/s""#);
        let toml::Value::String(text) = value.get_ref() else {
            self.error(
                value.span(),
                format!("{expected}, found {}", describe(value.get_ref())),
            );
            return None;
        };
        let Some(size) = text.trim().strip_suffix("/s") else {
            self.error(value.span(), format!("{expected}, found {text:?}"));
            return None;
        };
        match crate::units::parse_byte_size(size) {
            Ok(0) => {
                self.error(
                    value.span(),
                    format!("{key} must be more than 0 bytes per second"),
                );
                None
            }
            Ok(bytes) => Some(bytes),
            Err(message) => {
                self.error(value.span(), format!("{key}: {message}"));
                None
            }
        }
    }

    /// A number in 0..=1 (an integer 0 or 1 is fine too).
    pub(in crate::scenario) fn fraction(&mut self, value: &RawValue, key: &str) -> Option<f64> {
        let number = match value.get_ref() {
            toml::Value::Float(number) => *number,
            toml::Value::Integer(number) => *number as f64,
            other => {
                self.error(
                    value.span(),
                    format!(
                        "{key}: expected a number from 0 to 1, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        if !(0.0..=1.0).contains(&number) {
            self.error(
                value.span(),
                format!("{key} must be from 0 to 1, found {number}"),
            );
            return None;
        }
        Some(number)
    }

    /// A listening address of the harness's (stand-ins, kill switch, alert receiver): on
    /// loopback only.
    pub(in crate::scenario) fn listen_address(
        &mut self,
        value: &Spanned<String>,
        key: &str,
    ) -> Option<SocketAddr> {
        match value.get_ref().trim().parse::<SocketAddr>() {
            Ok(address) if address.ip().is_loopback() => Some(address),
            Ok(address) => {
                self.error(
                    value.span(),
                    format!(
                        "{key} must be a loopback address (127.0.0.1:PORT or [::1]:PORT); the harness never listens on {}",
                        address.ip()
                    ),
                );
                None
            }
            Err(_) => {
                self.error(
                    value.span(),
                    format!(
                        r#"{key}: expected "127.0.0.1:PORT", found {:?}"#,
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    // ---- detect -------------------------------------------------------------------------

    fn detection_rules(&mut self, value: &RawValue) -> Vec<DetectionRule> {
        let rules: Vec<DetectionRule> = match value.get_ref() {
            toml::Value::Array(items) => items
                .iter()
                .filter_map(|item| self.detection_rule(item, value.span()))
                .collect(),
            other => self
                .detection_rule(other, value.span())
                .into_iter()
                .collect(),
        };
        if rules.is_empty()
            && matches!(value.get_ref(), toml::Value::Array(items) if items.is_empty())
        {
            self.error(value.span(), "detect is empty; name at least one signal");
        }
        rules
    }

    fn detection_rule(
        &mut self,
        value: &toml::Value,
        span: std::ops::Range<usize>,
    ) -> Option<DetectionRule> {
        const EXPECTED: &str = r#"detect: expected { alert = "Name" }, { health = "unhealthy" }, { metric = "a / b > 0.95" } or { log = "regex", file = "…" }"#;
        let toml::Value::Table(table) = value else {
            self.error(span, format!("{EXPECTED}, found {}", describe(value)));
            return None;
        };
        let text = |key: &str| table.get(key).and_then(toml::Value::as_str);
        if !self.detection_form(table, &span, EXPECTED) {
            return None;
        }
        if let Some(name) = text("alert") {
            if name.trim().is_empty() {
                self.error(span, "detect: the alert name must not be empty");
                return None;
            }
            return Some(DetectionRule::Alert {
                name: name.trim().to_owned(),
            });
        }
        if let Some(health) = text("health") {
            if health != "unhealthy" {
                self.error(
                    span,
                    format!(
                        r#"detect: health = "unhealthy" is the only health rule, found {health:?}"#
                    ),
                );
                return None;
            }
            return Some(DetectionRule::Unhealthy);
        }
        if let Some(expression) = text("metric") {
            return match parse_metric_condition(expression) {
                Ok(condition) => Some(DetectionRule::Metric(condition)),
                Err(message) => {
                    self.error(span, format!("detect metric {expression:?}: {message}"));
                    None
                }
            };
        }
        if let Some(pattern) = text("log") {
            return self.log_rule(pattern, text("file"), span);
        }
        self.error(span, format!("{EXPECTED}; the value must be a string"));
        None
    }

    /// A detection rule's table has only known keys, and exactly one form (`file` only
    /// with `log`).
    fn detection_form(
        &mut self,
        table: &toml::Table,
        span: &std::ops::Range<usize>,
        expected: &str,
    ) -> bool {
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let unknown: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|key| !["alert", "health", "metric", "log", "file"].contains(key))
            .collect();
        if !unknown.is_empty() {
            self.error(
                span.clone(),
                format!("{expected}; unknown key {}", unknown.join(", ")),
            );
            return false;
        }
        let forms = ["alert", "health", "metric", "log"]
            .iter()
            .filter(|key| table.contains_key(**key))
            .count();
        if forms != 1 || (table.contains_key("file") && !table.contains_key("log")) {
            self.error(span.clone(), format!("{expected} (exactly one of them)"));
            return false;
        }
        true
    }

    /// `{ log = "regex", file = "…" }`: a valid regex, and a file that can be a file.
    fn log_rule(
        &mut self,
        pattern: &str,
        file: Option<&str>,
        span: std::ops::Range<usize>,
    ) -> Option<DetectionRule> {
        if let Err(error) = regex::Regex::new(pattern) {
            let first = error.to_string();
            let first = first.lines().last().unwrap_or_default().trim().to_owned();
            self.error(
                span,
                format!("detect log: not a valid regex {pattern:?}: {first}"),
            );
            return None;
        }
        let file = file.map(PathBuf::from);
        if let Some(file) = &file {
            self.path_kind(file, span, "detect file", super::observe::PathKind::File);
        }
        Some(DetectionRule::Log {
            pattern: pattern.to_owned(),
            file,
        })
    }

    // ---- [chaos] and [abort] ------------------------------------------------------------

    pub(super) fn chaos(&mut self, raw: Option<Spanned<RawChaos>>) -> ChaosSettings {
        let mut settings = ChaosSettings {
            confirm_within: DEFAULT_CONFIRM_WITHIN,
            ..ChaosSettings::default()
        };
        let Some(raw) = raw else {
            return settings;
        };
        let raw = raw.into_inner();
        settings.tts_listen = raw
            .tts_listen
            .as_ref()
            .and_then(|value| self.listen_address(value, "tts_listen"));
        settings.llm_listen = raw
            .llm_listen
            .as_ref()
            .and_then(|value| self.listen_address(value, "llm_listen"));
        settings.confirm_within = self.duration_or(
            raw.confirm_within.as_ref(),
            "confirm_within",
            Zero::Rejected,
            DEFAULT_CONFIRM_WITHIN,
        );
        if let Some(dirs) = &raw.writable_dirs {
            settings.writable_dirs = dirs
                .get_ref()
                .iter()
                .filter_map(|dir| self.writable_dir(dir))
                .collect();
        }
        settings.allow_large_leaks = raw
            .allow_large_leaks
            .as_ref()
            .is_some_and(|flag| *flag.get_ref());
        settings
    }

    /// One `[chaos] writable_dirs` entry, resolved: never a system directory, nor a file.
    fn writable_dir(&mut self, dir: &Spanned<String>) -> Option<PathBuf> {
        self.not_empty(dir, "writable_dirs");
        let written = Path::new(dir.get_ref());
        let resolved = match writable::resolve(written) {
            Ok(resolved) => resolved,
            Err(error) => {
                self.error(
                    dir.span(),
                    format!(
                        "writable_dirs: cannot resolve {}: {error}",
                        written.display()
                    ),
                );
                return None;
            }
        };
        if let Some(what) = writable::system_dir(&resolved) {
            self.error(
                dir.span(),
                format!(
                    "writable_dirs: {:?} resolves to {}, {what}; a fault never writes there",
                    dir.get_ref(),
                    resolved.display()
                ),
            );
            return None;
        }
        if resolved.exists() && !resolved.is_dir() {
            self.error(
                dir.span(),
                format!(
                    "writable_dirs: {:?} resolves to {}, which is not a directory",
                    dir.get_ref(),
                    resolved.display()
                ),
            );
            return None;
        }
        Some(resolved)
    }

    pub(super) fn abort(&mut self, raw: Option<Spanned<RawAbort>>) -> AbortConditions {
        let mut conditions = AbortConditions::default();
        let Some(raw) = raw else {
            return conditions;
        };
        let raw = raw.into_inner();
        if let Some(value) = &raw.call_success_below {
            conditions.call_success_below_pct = self.below_percent(value);
        }
        conditions.over =
            self.duration_or(raw.over.as_ref(), "over", Zero::Rejected, conditions.over);
        if let Some(min_calls) = &raw.min_calls {
            conditions.min_calls = self
                .count(min_calls, "min_calls", 1)
                .unwrap_or(conditions.min_calls);
        }
        if let Some(file) = &raw.kill_switch_file {
            self.not_empty(file, "kill_switch_file");
            conditions.kill_switch_file = Some(PathBuf::from(file.get_ref()));
        }
        conditions.kill_switch_listen = raw
            .kill_switch_listen
            .as_ref()
            .and_then(|value| self.listen_address(value, "kill_switch_listen"));
        conditions
    }

    /// `"50%"` or `"< 50%"` → 50.0.
    fn below_percent(&mut self, value: &RawValue) -> Option<f64> {
        const EXPECTED: &str = r#"call_success_below: expected a percentage such as "50%""#;
        self.percent(value, "<", "call_success_below is a floor", EXPECTED)
    }
}

fn kind_list() -> String {
    FaultKind::ALL
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `series [/ series] OP number`.
pub fn parse_metric_condition(text: &str) -> Result<MetricCondition, String> {
    let operators = [
        (">=", Comparison::GreaterOrEqual),
        ("<=", Comparison::LessOrEqual),
        ("==", Comparison::Equal),
        (">", Comparison::Greater),
        ("<", Comparison::Less),
    ];
    let (position, operator, comparison) = operators
        .iter()
        .filter_map(|(operator, comparison)| {
            text.find(operator)
                .map(|position| (position, *operator, *comparison))
        })
        .min_by_key(|(position, operator, _)| (*position, usize::MAX - operator.len()))
        .ok_or("expected a comparison (>, >=, <, <=, ==) and a number")?;
    let left = text[..position].trim();
    let right = text[position + operator.len()..].trim();
    let threshold: f64 = right
        .parse()
        .map_err(|_| format!("expected a number after {operator}, found {right:?}"))?;
    if !threshold.is_finite() {
        return Err(format!(
            "the threshold must be a finite number, found {right:?}"
        ));
    }
    let (numerator, denominator) = match split_outside_braces(left, '/') {
        Some((numerator, denominator)) => (
            parse_selector(numerator.trim())?,
            Some(parse_selector(denominator.trim())?),
        ),
        None => (parse_selector(left)?, None),
    };
    Ok(MetricCondition {
        numerator,
        denominator,
        comparison,
        threshold,
        text: text.trim().to_owned(),
    })
}

fn split_outside_braces(text: &str, separator: char) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 && !quoted => {
                return Some((&text[..index], &text[index + c.len_utf8()..]));
            }
            _ => {}
        }
    }
    None
}

/// Parses a series selector: `name` or `name{label="value",…}` (the left side of a metric
/// condition, or a `[observe] record` entry).
pub fn parse_series_selector(text: &str) -> Result<SeriesSelector, String> {
    parse_selector(text.trim())
}

/// `name` or `name{label="value",…}`.
fn parse_selector(text: &str) -> Result<SeriesSelector, String> {
    let (name, labels) = match text.split_once('{') {
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .ok_or_else(|| format!("expected }} at the end of {text:?}"))?;
            (name.trim(), parse_labels(body)?)
        }
        None => (text, Vec::new()),
    };
    let valid_name = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid_name {
        return Err(format!("expected a metric name, found {name:?}"));
    }
    Ok(SeriesSelector {
        name: name.to_owned(),
        labels,
    })
}

fn parse_labels(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected label=\"value\" in {{{body}}}"))?;
        let after = after.trim_start();
        let after = after
            .strip_prefix('"')
            .ok_or_else(|| format!("label values are quoted: {{{body}}}"))?;
        let end = after
            .find('"')
            .ok_or_else(|| format!("unterminated label value in {{{body}}}"))?;
        labels.push((name.trim().to_owned(), after[..end].to_owned()));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_conditions_parse() {
        let condition = parse_metric_condition("db_pool_in_use / db_pool_size > 0.95").unwrap();
        assert_eq!(condition.numerator.name, "db_pool_in_use");
        assert_eq!(condition.denominator.unwrap().name, "db_pool_size");
        assert_eq!(condition.comparison, Comparison::Greater);
        assert_eq!(condition.threshold, 0.95);

        let condition =
            parse_metric_condition(r#"tts_requests_total{status="429", x="a/b"} >= 1"#).unwrap();
        assert_eq!(
            condition.numerator.labels,
            vec![
                ("status".to_owned(), "429".to_owned()),
                ("x".to_owned(), "a/b".to_owned())
            ]
        );
        assert!(condition.denominator.is_none());
        assert_eq!(condition.comparison, Comparison::GreaterOrEqual);

        assert!(parse_metric_condition("up").is_err());
        assert!(parse_metric_condition("up > x").is_err());
        assert!(parse_metric_condition("9up > 1").is_err());
        assert!(parse_metric_condition("a{b=c} > 1").is_err());
    }
}

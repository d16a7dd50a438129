//! Phase 2: raw types to the validated model. Every check records a [`Diagnostic`] and
//! carries on with a harmless fallback value, so one pass reports every problem it can.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::compose::Sources;
use super::raw::{
    RawCalls, RawLoad, RawScenario, RawScript, RawSlo, RawStage, RawStep, RawTarget, RawTurns,
    RawValue,
};
use super::{
    ArrivalPattern, ArrivalRate, CallScript, CallSettings, DEFAULT_ALLOW_HOSTS, Diagnostic,
    EmbeddedFleet, Endpoint, ExternalTarget, Fixture, HangUpPolicy, Load, Scenario, ScheduleWindow,
    ScriptBody, SinkOptions, Slos, Stage, Step, SyntheticPool, Target, UtteranceRef,
    normalize_host,
};
use crate::contract::fleet::Bug;

#[path = "validate_faults.rs"]
pub(super) mod faults;
#[path = "validate_metric_slo.rs"]
mod metric_slo;
#[path = "validate_observe.rs"]
mod observe;

/// Longer than any soak; keeps every `Instant + duration` in range.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// More than one harness process can drive; keeps a typo from spawning billions of tasks.
const MAX_COUNT: u32 = 1_000_000;
const MIN_CALLS_PER_MINUTE: f64 = 0.001;
const MAX_CALLS_PER_MINUTE: f64 = 6_000_000.0;

/// What a `stages` entry can be, for messages.
const STAGE_SHAPES: &str = r#"a stage is { ramp_to = N, over = "D" }, { hold = "D" }, { diurnal = "D", base = N } or { spike_to = N, for = "D" }"#;
const DURATION_EXPECTED: &str = r#"expected a duration such as "30s" or "1m30s""#;
/// A turn count this high is a typo, and would make every planned call huge.
const MAX_TURNS: i64 = 1000;
const DEFAULT_MAX_CONCURRENT: u32 = 10_000;
const DEFAULT_SEED: u64 = 1;
/// Limits for the embedded reference fleet: beyond them a value is a typo, not a test.
const MAX_DB_POOL_SIZE: i64 = 1000;
const MAX_ORDERS: i64 = 50_000_000;
const MAX_WORKERS: i64 = 1000;
/// Below this the fleet cannot even start; a limit under it only measures the OOM killer.
const MIN_MEMORY_LIMIT: u64 = 16 << 20;
/// Most audio a scenario's fixtures may hold together: each is held in memory for the
/// whole run (about 3.5 bytes a sample once encoded for the wire), besides the
/// per-fixture limits of [`crate::audio::wav::FixtureLimits::DEFAULT`].
pub(super) const MAX_FIXTURES_AUDIO: Duration = Duration::from_secs(600);

/// Phase 2 on the composed document `raw`, whose spans are in `sources`' text: the
/// scenario, or every problem at its position there.
pub(super) fn validate(
    raw: RawScenario,
    sources: &Sources,
    path: &Path,
) -> Result<Scenario, Vec<Diagnostic>> {
    let mut validator = Validator {
        source: &sources.text,
        sources,
        diagnostics: Vec::new(),
    };
    let mut scenario = validator.scenario(raw, path);
    let mut diagnostics = validator.diagnostics;
    if diagnostics.is_empty() {
        scenario.includes = sources.included();
        for fault in &mut scenario.faults {
            let (file, line) = sources.file_line(fault.line);
            fault.line = line;
            fault.file = (file > 0).then(|| sources.files[file].path.clone());
        }
        Ok(scenario)
    } else {
        diagnostics.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
        Err(diagnostics)
    }
}

/// Whether a zero duration makes sense for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Zero {
    Allowed,
    Rejected,
}

/// The resolved fixtures as `say` steps can name them.
struct FixtureIndex {
    /// File stem → indices into the fixture list (more than one: ambiguous).
    by_stem: BTreeMap<String, Vec<usize>>,
    fixtures: Vec<Fixture>,
    /// False when a fixture pattern failed, so unknown stems are not reported twice.
    complete: bool,
}

pub(super) struct Validator<'a> {
    /// The composed text every span is in.
    pub(super) source: &'a str,
    /// Which file each part of it is.
    sources: &'a Sources,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl Validator<'_> {
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.error_at(span.start, message);
    }

    fn error_at(&mut self, offset: usize, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::at(self.source, offset, message));
    }

    fn scenario(&mut self, raw: RawScenario, path: &Path) -> Scenario {
        let name = match raw.name {
            Some(name) => {
                if name.get_ref().trim().is_empty() {
                    self.error(name.span(), "name must not be empty");
                }
                name.into_inner()
            }
            None => path.file_stem().map_or_else(
                || "scenario".to_owned(),
                |stem| stem.to_string_lossy().into_owned(),
            ),
        };
        let (target, allow_hosts) = self.target(raw.target);
        let (load, spikes) = self.load(raw.load);
        let (calls, fixtures) = self.calls(raw.calls);
        let scripts = self.scripts(raw.scripts, &fixtures);
        let slo = self.slo(raw.slo.as_ref(), &spikes);
        let chaos = self.chaos(raw.chaos);
        let observe = self.observe(raw.observe, &target, &allow_hosts);
        let context = faults::FaultContext {
            target: &target,
            allow_hosts: &allow_hosts,
            chaos: &chaos,
            observe: &observe,
        };
        let faults = self.faults(raw.faults, &context);
        self.slos_measurable(raw.slo.as_ref(), &slo, &context);
        self.metric_slos_measurable(raw.slo.as_ref(), &context);
        let abort = self.abort(raw.abort);
        let time_scale = self.time_scale(raw.time_scale.as_ref());
        let report_every = self.duration_or(
            raw.report_every.as_ref(),
            "report_every",
            Zero::Allowed,
            super::DEFAULT_REPORT_EVERY,
        );
        let metrics_listen = raw
            .metrics_listen
            .as_ref()
            .and_then(|listen| self.metrics_listen(listen, &allow_hosts));
        Scenario {
            name,
            description: raw.description,
            path: path.to_path_buf(),
            includes: Vec::new(),
            composed: None,
            seed: raw.seed.unwrap_or(DEFAULT_SEED),
            target,
            allow_hosts,
            load,
            spikes,
            calls,
            scripts,
            slo,
            faults,
            chaos,
            abort,
            observe,
            time_scale: 1.0,
            report_every,
            metrics_listen,
        }
        .with_time_scale(time_scale)
    }

    /// `metrics_listen`: an address the harness may listen on for others
    /// ([`super::listen_allowed`]).
    fn metrics_listen(
        &mut self,
        value: &Spanned<String>,
        allow_hosts: &[String],
    ) -> Option<SocketAddr> {
        let Ok(address) = value.get_ref().trim().parse::<SocketAddr>() else {
            self.error(
                value.span(),
                format!(
                    r#"metrics_listen: expected "127.0.0.1:PORT", found {:?}"#,
                    value.get_ref()
                ),
            );
            return None;
        };
        if super::listen_allowed(allow_hosts, address) {
            return Some(address);
        }
        self.error(
            value.span(),
            format!(
                "metrics_listen must be a loopback address (127.0.0.1:PORT or [::1]:PORT) unless [target] allow_hosts names {}; add it there to serve the metrics beyond this machine",
                address.ip()
            ),
        );
        None
    }

    /// `time_scale`: 1 (real time) when absent or wrong (the error is reported).
    fn time_scale(&mut self, raw: Option<&Spanned<f64>>) -> f64 {
        let Some(raw) = raw else {
            return 1.0;
        };
        let scale = *raw.get_ref();
        if super::time_scale_allowed(scale) {
            return scale;
        }
        self.error(
            raw.span(),
            format!(
                "time_scale must be from 1 (real time) to {} (the schedule runs that many times faster; calls stay in real time), found {scale}",
                super::MAX_TIME_SCALE
            ),
        );
        1.0
    }

    // ---- values -------------------------------------------------------------------------

    pub(super) fn duration(&mut self, value: &RawValue, key: &str, zero: Zero) -> Option<Duration> {
        let toml::Value::String(text) = value.get_ref() else {
            self.error(
                value.span(),
                format!("{DURATION_EXPECTED}, found {}", describe(value.get_ref())),
            );
            return None;
        };
        let Some(duration) = parse_duration(text) else {
            self.error(value.span(), format!("{DURATION_EXPECTED}, found {text:?}"));
            return None;
        };
        if duration > MAX_DURATION {
            self.error(
                value.span(),
                format!("{key} must be at most 30 days, found {text:?}"),
            );
            return None;
        }
        if zero == Zero::Rejected && duration.is_zero() {
            self.error(
                value.span(),
                format!("{key} must be longer than zero, found {text:?}"),
            );
            return None;
        }
        Some(duration)
    }

    fn duration_or(
        &mut self,
        value: Option<&RawValue>,
        key: &str,
        zero: Zero,
        default: Duration,
    ) -> Duration {
        value
            .and_then(|value| self.duration(value, key, zero))
            .unwrap_or(default)
    }

    /// A whole number in `min..=MAX_COUNT`.
    fn count(&mut self, value: &Spanned<i64>, key: &str, min: u32) -> Option<u32> {
        let number = *value.get_ref();
        if number > i64::from(MAX_COUNT) {
            self.error(
                value.span(),
                format!("{key} must be at most {MAX_COUNT}, found {number}"),
            );
            return None;
        }
        if number < i64::from(min) {
            self.error(
                value.span(),
                format!("{key} must be at least {min}, found {number}"),
            );
            return None;
        }
        match u32::try_from(number) {
            Ok(number) => Some(number),
            Err(_) => {
                self.error(
                    value.span(),
                    format!("{key} must be at most {}, found {number}", u32::MAX),
                );
                None
            }
        }
    }

    pub(super) fn not_empty(&mut self, value: &Spanned<String>, key: &str) {
        if value.get_ref().trim().is_empty() {
            self.error(value.span(), format!("{key} must not be empty"));
        }
    }

    // ---- [target] -----------------------------------------------------------------------

    fn target(&mut self, raw: Option<Spanned<RawTarget>>) -> (Target, Vec<String>) {
        let default_hosts: Vec<String> = DEFAULT_ALLOW_HOSTS.map(String::from).to_vec();
        let fallback = Target::Sink(SinkOptions {
            reply_delay: crate::contract::sink::DEFAULT_REPLY_DELAY,
            reply_length: Duration::from_millis(800),
        });
        let Some(raw) = raw else {
            self.error_at(
                0,
                r#"missing [target] table; add one with fleet = "sink", stream_url = "ws://..." or webhook_url = "http://...""#,
            );
            return (fallback, default_hosts);
        };
        let table_span = raw.span();
        let raw = raw.into_inner();
        let allow_hosts = match &raw.allow_hosts {
            Some(hosts) => self.allow_hosts(hosts),
            None => default_hosts,
        };

        let forms: Vec<(&str, Range<usize>)> = [
            ("fleet", raw.fleet.as_ref().map(Spanned::span)),
            ("stream_url", raw.stream_url.as_ref().map(Spanned::span)),
            ("webhook_url", raw.webhook_url.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(key, span)| span.map(|span| (key, span)))
        .collect();
        let Some((first, _)) = forms.first().cloned() else {
            self.error(
                table_span,
                r#"[target] needs one of fleet = "sink", stream_url = "ws://..." or webhook_url = "http://...""#,
            );
            return (fallback, allow_hosts);
        };
        for (key, span) in forms.iter().skip(1) {
            let message = if first == "stream_url" && *key == "webhook_url" {
                "stream_url and webhook_url are mutually exclusive; give one".to_owned()
            } else {
                format!(
                    "{key} cannot be combined with {first}; [target] takes exactly one of fleet, stream_url or webhook_url"
                )
            };
            self.error(span.clone(), message);
        }

        let target = match &raw.fleet {
            Some(fleet) => self.fleet_target(fleet, &raw),
            None => self.external_target(&raw, &allow_hosts),
        };
        (target.unwrap_or(fallback), allow_hosts)
    }

    fn allow_hosts(&mut self, hosts: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        if hosts.get_ref().is_empty() {
            self.error(
                hosts.span(),
                "allow_hosts is empty, so no target could be reached; list at least one host",
            );
        }
        let mut allowed = Vec::new();
        for host in hosts.get_ref() {
            let text = host.get_ref().trim();
            let bare = text
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(text);
            let has_port = bare.contains(':') && bare.parse::<Ipv6Addr>().is_err();
            if text.is_empty() || text.contains('/') || has_port {
                self.error(
                    host.span(),
                    format!(
                        "allow_hosts entries are bare host names or IP addresses (no scheme, port or path), found {text:?}"
                    ),
                );
            } else {
                allowed.push(text.to_owned());
            }
        }
        allowed
    }

    fn fleet_target(&mut self, fleet: &Spanned<String>, raw: &RawTarget) -> Option<Target> {
        let name = fleet.get_ref().as_str();
        let external_only = [
            (
                "auth_token_env",
                raw.auth_token_env.as_ref().map(Spanned::span),
            ),
            (
                "custom_parameters",
                raw.custom_parameters.as_ref().map(Spanned::span),
            ),
        ];
        for (key, span) in external_only {
            if let Some(span) = span {
                self.error(
                    span,
                    format!(
                        "{key} only applies to an external target (stream_url or webhook_url), not to fleet = {name:?}"
                    ),
                );
            }
        }
        match name {
            "sink" => {
                self.reject_embedded_keys(raw, r#"fleet = "sink""#);
                Some(Target::Sink(self.sink_options(raw)))
            }
            "embedded" => {
                self.reject_sink_keys(raw, "the reference fleet replies at its own pace");
                Some(Target::Embedded(self.embedded_fleet(raw)))
            }
            other => {
                self.error(
                    fleet.span(),
                    format!(r#"unknown fleet {other:?}; expected "sink" or "embedded""#),
                );
                None
            }
        }
    }

    fn sink_options(&mut self, raw: &RawTarget) -> SinkOptions {
        let options = SinkOptions {
            reply_delay: self.duration_or(
                raw.reply_delay.as_ref(),
                "reply_delay",
                Zero::Allowed,
                crate::contract::sink::DEFAULT_REPLY_DELAY,
            ),
            reply_length: self.duration_or(
                raw.reply_length.as_ref(),
                "reply_length",
                Zero::Rejected,
                Duration::from_millis(800),
            ),
        };
        if let Some(value) = &raw.reply_delay
            && options.reply_delay < crate::contract::sink::END_OF_TURN
        {
            self.error(
                value.span(),
                format!(
                    "reply_delay must be at least 500ms: the sink waits that much silence to know the caller's turn ended, found {:?}",
                    crate::units::format_duration(options.reply_delay)
                ),
            );
        }
        options
    }

    /// `reply_delay`/`reply_length` on a target that is not the sink; `why` says why they
    /// mean nothing there.
    fn reject_sink_keys(&mut self, raw: &RawTarget, why: &str) {
        for (key, value) in [
            ("reply_delay", &raw.reply_delay),
            ("reply_length", &raw.reply_length),
        ] {
            if let Some(value) = value {
                self.error(
                    value.span(),
                    format!(r#"{key} only applies to fleet = "sink"; {why}"#),
                );
            }
        }
    }

    /// The reference fleet's keys on another target (`target` names it).
    fn reject_embedded_keys(&mut self, raw: &RawTarget, target: &str) {
        for (key, span) in raw.embedded_keys() {
            self.error(
                span,
                format!(
                    r#"{key} only applies to fleet = "embedded" (the reference fleet the harness starts), not to {target}"#
                ),
            );
        }
    }

    fn embedded_fleet(&mut self, raw: &RawTarget) -> EmbeddedFleet {
        let defaults = EmbeddedFleet::default();
        let bugs = raw
            .bugs
            .as_ref()
            .map(|bugs| self.bugs(bugs))
            .unwrap_or_default();
        if let Some(name) = &raw.database_url_env {
            self.env_var_name(
                name,
                "database_url_env is the NAME of the environment variable holding the PostgreSQL URL (such as DATABASE_URL), not the URL itself",
            );
        }
        let mut number = |value: &Option<Spanned<i64>>, key: &str, range: RangeInclusive<i64>| {
            value
                .as_ref()
                .and_then(|value| self.ranged(value, key, range))
        };
        let db_pool_size = number(&raw.db_pool_size, "db_pool_size", 1..=MAX_DB_POOL_SIZE)
            .map_or(defaults.db_pool_size, |n| n as u32);
        let orders =
            number(&raw.orders, "orders", 1..=MAX_ORDERS).map_or(defaults.orders, |n| n as u64);
        let workers =
            number(&raw.workers, "workers", 1..=MAX_WORKERS).map_or(defaults.workers, |n| n as u32);
        let stall_after_calls = number(
            &raw.stall_after_calls,
            "stall_after_calls",
            1..=i64::from(MAX_COUNT),
        )
        .map_or(defaults.stall_after_calls, |n| n as u32);
        let stall_after = self.duration_or(
            raw.stall_after.as_ref(),
            "stall_after",
            Zero::Rejected,
            defaults.stall_after,
        );
        let memory_limit = match &raw.memory_limit {
            Some(value) => self.byte_size(value, "memory_limit").and_then(|bytes| {
                if bytes < MIN_MEMORY_LIMIT {
                    self.error(
                        value.span(),
                        format!(
                            "memory_limit must be at least 16MiB (the fleet needs that much to start), found {}",
                            describe(value.get_ref())
                        ),
                    );
                    return None;
                }
                Some(bytes)
            }),
            None => defaults.memory_limit,
        };
        let temp_dir_budget = raw
            .temp_dir_budget
            .as_ref()
            .and_then(|value| self.byte_size(value, "temp_dir_budget"))
            .unwrap_or(defaults.temp_dir_budget);
        EmbeddedFleet {
            bugs,
            database_url_env: raw
                .database_url_env
                .as_ref()
                .map(|name| name.get_ref().clone()),
            db_pool_size,
            orders,
            workers,
            stall_after,
            stall_after_calls,
            memory_limit,
            temp_dir_budget,
        }
    }

    /// `bugs = ["no-backoff", ...]`: known names, each once.
    fn bugs(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Vec<Bug> {
        let mut bugs = Vec::new();
        for name in raw.get_ref() {
            let text = name.get_ref();
            match Bug::from_name(text) {
                Some(bug) if bugs.contains(&bug) => self.error(
                    name.span(),
                    format!("bug {text:?} is listed twice; list each bug once"),
                ),
                Some(bug) => bugs.push(bug),
                None => {
                    let valid: Vec<&str> = Bug::ALL.iter().map(|bug| bug.name()).collect();
                    self.error(
                        name.span(),
                        format!("unknown bug {text:?}; expected one of {}", valid.join(", ")),
                    );
                }
            }
        }
        bugs
    }

    /// A whole number in `range`.
    pub(super) fn ranged(
        &mut self,
        value: &Spanned<i64>,
        key: &str,
        range: RangeInclusive<i64>,
    ) -> Option<i64> {
        let number = *value.get_ref();
        if number < *range.start() {
            self.error(
                value.span(),
                format!("{key} must be at least {}, found {number}", range.start()),
            );
            return None;
        }
        if number > *range.end() {
            self.error(
                value.span(),
                format!("{key} must be at most {}, found {number}", range.end()),
            );
            return None;
        }
        Some(number)
    }

    /// A size string such as `"512MiB"` (see [`crate::units::parse_byte_size`]).
    pub(super) fn byte_size(&mut self, value: &RawValue, key: &str) -> Option<u64> {
        let toml::Value::String(text) = value.get_ref() else {
            self.error(
                value.span(),
                format!(
                    r#"{key}: expected a size such as "512MiB" or "1GiB", found {}"#,
                    describe(value.get_ref())
                ),
            );
            return None;
        };
        match crate::units::parse_byte_size(text) {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                self.error(value.span(), format!("{key}: {message}"));
                None
            }
        }
    }

    fn external_target(&mut self, raw: &RawTarget, allow_hosts: &[String]) -> Option<Target> {
        self.reject_sink_keys(raw, "an external fleet replies at its own pace");
        self.reject_embedded_keys(raw, "an external target (stream_url or webhook_url)");
        if let Some(name) = &raw.auth_token_env {
            self.env_var_name(
                name,
                "auth_token_env is the NAME of the environment variable holding the auth token (such as TWILIO_AUTH_TOKEN), not the token itself",
            );
        }
        let endpoint = if let Some(url) = &raw.stream_url {
            self.endpoint_url(url, "stream_url", ["ws", "wss"], allow_hosts)
                .map(Endpoint::Stream)
        } else if let Some(url) = &raw.webhook_url {
            if let Some(parameters) = &raw.custom_parameters {
                self.error(
                    parameters.span(),
                    "custom_parameters only apply to stream_url; with webhook_url the fleet's TwiML <Parameter>s are sent",
                );
            }
            self.endpoint_url(url, "webhook_url", ["http", "https"], allow_hosts)
                .map(Endpoint::Webhook)
        } else {
            None
        }?;
        Some(Target::External(ExternalTarget {
            endpoint,
            auth_token_env: raw
                .auth_token_env
                .as_ref()
                .map(|name| name.get_ref().clone()),
            custom_parameters: raw
                .custom_parameters
                .as_ref()
                .map(|parameters| parameters.get_ref().clone())
                .unwrap_or_default(),
        }))
    }

    /// `name` must be an environment variable's name; `message` (which never echoes the
    /// value) otherwise. If someone pasted the secret itself (a token, a URL with a
    /// password), it must not end up in CI logs.
    pub(super) fn env_var_name(&mut self, name: &Spanned<String>, message: &str) {
        let text = name.get_ref();
        let mut chars = text.chars();
        let is_name = chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        let looks_like_token = text.len() >= 32 && text.chars().all(|c| c.is_ascii_hexdigit());
        if !is_name || looks_like_token {
            self.error(name.span(), message);
        }
    }

    fn endpoint_url(
        &mut self,
        raw: &Spanned<String>,
        key: &str,
        schemes: [&str; 2],
        allow_hosts: &[String],
    ) -> Option<url::Url> {
        let text = raw.get_ref();
        let url = match url::Url::parse(text) {
            Ok(url) => url,
            Err(error) => {
                self.error(
                    raw.span(),
                    format!("{key} is not a valid URL ({error}), found {text:?}"),
                );
                return None;
            }
        };
        if !schemes.contains(&url.scheme()) {
            self.error(
                raw.span(),
                format!(
                    "{key} must be a {}:// or {}:// URL, found {text:?}",
                    schemes[0], schemes[1]
                ),
            );
            return None;
        }
        if matches!(url.scheme(), "wss" | "https") {
            self.error(
                raw.span(),
                format!(
                    "{key}: TLS ({}://) is not supported by this build yet; use {}:// (targets are on loopback or your own network)",
                    url.scheme(),
                    schemes[0]
                ),
            );
            return None;
        }
        let Some(host) = url.host_str() else {
            self.error(raw.span(), format!("{key} has no host, found {text:?}"));
            return None;
        };
        if !host_in(allow_hosts, host) {
            self.error(
                raw.span(),
                format!(
                    "host {host:?} is not in allow_hosts (loopback only by default); add it to [target] allow_hosts to allow it"
                ),
            );
            return None;
        }
        Some(url)
    }

    // ---- [load] -------------------------------------------------------------------------

    /// `[load]`, and where its spike stages are.
    fn load(&mut self, raw: Option<Spanned<RawLoad>>) -> (Load, Vec<ScheduleWindow>) {
        let fallback = (
            Load::Stages(vec![Stage {
                to: 1,
                duration: Duration::from_secs(1),
            }]),
            Vec::new(),
        );
        let Some(raw) = raw else {
            self.error_at(
                0,
                r#"missing [load] table; add one with stages = [...] or calls_per_minute = N and duration = "...""#,
            );
            return fallback;
        };
        let table_span = raw.span();
        let raw = raw.into_inner();
        match (&raw.stages, &raw.calls_per_minute) {
            (Some(stages), Some(rate)) => {
                self.error(
                    rate.span(),
                    "calls_per_minute cannot be combined with stages; [load] takes one model: stages (target concurrency) or calls_per_minute (arrival rate)",
                );
                self.stages(stages).unwrap_or(fallback)
            }
            (Some(stages), None) => {
                let open_only = [
                    ("duration", raw.duration.as_ref().map(Spanned::span)),
                    ("arrivals", raw.arrivals.as_ref().map(Spanned::span)),
                    (
                        "max_concurrent",
                        raw.max_concurrent.as_ref().map(Spanned::span),
                    ),
                ];
                for (key, span) in open_only {
                    if let Some(span) = span {
                        self.error(
                            span,
                            format!(
                                "{key} only applies to calls_per_minute (the open model); stages set their own durations and levels"
                            ),
                        );
                    }
                }
                self.stages(stages).unwrap_or(fallback)
            }
            (None, Some(rate)) => self
                .arrival(rate, &raw)
                .map_or(fallback, |load| (load, Vec::new())),
            (None, None) => {
                self.error(
                    table_span,
                    r#"[load] needs stages = [{ ramp_to = N, over = "D" }, ...] (target concurrency) or calls_per_minute = N with duration = "D" (arrival rate)"#,
                );
                fallback
            }
        }
    }

    /// The stages, expanded, and where the spikes among them are.
    fn stages(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawStage>>>,
    ) -> Option<(Load, Vec<ScheduleWindow>)> {
        if raw.get_ref().is_empty() {
            self.error(
                raw.span(),
                r#"stages is empty; add at least one { ramp_to = N, over = "D" }"#,
            );
            return None;
        }
        let errors_before = self.diagnostics.len();
        let mut level = 0;
        let mut stages = Vec::new();
        let mut spikes = Vec::new();
        let mut at = Duration::ZERO;
        for stage in raw.get_ref() {
            if let Some(expanded) = self.stage(stage, level) {
                level = expanded.last().map_or(level, |stage| stage.to);
                let duration = expanded.iter().map(|stage| stage.duration).sum();
                if stage.get_ref().spike_to.is_some() {
                    spikes.push(ScheduleWindow { at, duration });
                }
                at += duration;
                stages.extend(expanded);
            }
        }
        if self.diagnostics.len() > errors_before {
            return None;
        }
        if stages.iter().all(|stage| stage.to == 0) {
            self.error(
                raw.span(),
                "stages never go above 0 concurrent calls, so no call would run",
            );
            return None;
        }
        Some((Load::Stages(stages), spikes))
    }

    /// One `stages` entry as the plain stages it stands for: a ramp or a hold is one; a
    /// diurnal day or a spike is several ([`super::load_shapes`]).
    fn stage(&mut self, stage: &Spanned<RawStage>, level: u32) -> Option<Vec<Stage>> {
        let raw = stage.get_ref();
        let shaped = raw.diurnal.is_some()
            || raw.spike_to.is_some()
            || raw.spike_for.is_some()
            || raw.base.is_some()
            || raw.peak.is_some()
            || raw.trough.is_some();
        if shaped {
            return self.shaped_stage(stage, level);
        }
        self.ramp_or_hold(stage, level).map(|stage| vec![stage])
    }

    fn ramp_or_hold(&mut self, stage: &Spanned<RawStage>, level: u32) -> Option<Stage> {
        let raw = stage.get_ref();
        match (&raw.ramp_to, &raw.over, &raw.hold) {
            (Some(to), Some(over), None) => {
                let to = self.count(to, "ramp_to", 0);
                let duration = self.duration(over, "over", Zero::Rejected);
                Some(Stage {
                    to: to?,
                    duration: duration?,
                })
            }
            (None, None, Some(hold)) => Some(Stage {
                to: level,
                duration: self.duration(hold, "hold", Zero::Rejected)?,
            }),
            (Some(_), None, None) => {
                self.error(
                    stage.span(),
                    r#"ramp_to needs over = "D", how long the ramp takes"#,
                );
                None
            }
            (None, Some(_), None) => {
                self.error(stage.span(), "over needs ramp_to = N, the level to ramp to");
                None
            }
            (None, None, None) => {
                self.error(stage.span(), STAGE_SHAPES);
                None
            }
            (_, _, Some(hold)) => {
                self.error(
                    hold.span(),
                    format!("hold cannot be combined with ramp_to or over; {STAGE_SHAPES}"),
                );
                None
            }
        }
    }

    /// A `diurnal` or `spike_to` stage, checked and expanded.
    fn shaped_stage(&mut self, stage: &Spanned<RawStage>, level: u32) -> Option<Vec<Stage>> {
        let raw = stage.get_ref();
        let plain = [
            ("ramp_to", raw.ramp_to.as_ref().map(Spanned::span)),
            ("over", raw.over.as_ref().map(Spanned::span)),
            ("hold", raw.hold.as_ref().map(Spanned::span)),
        ];
        let diurnal_keys = [
            ("diurnal", raw.diurnal.as_ref().map(Spanned::span)),
            ("base", raw.base.as_ref().map(Spanned::span)),
            ("peak", raw.peak.as_ref().map(Spanned::span)),
            ("trough", raw.trough.as_ref().map(Spanned::span)),
        ];
        let spike_keys = [
            ("spike_to", raw.spike_to.as_ref().map(Spanned::span)),
            ("for", raw.spike_for.as_ref().map(Spanned::span)),
        ];
        let is_diurnal = raw.diurnal.is_some() || (raw.spike_to.is_none() && raw.base.is_some());
        let (own, foreign) = if is_diurnal {
            ("diurnal", plain.iter().chain(&spike_keys))
        } else {
            ("spike_to", plain.iter().chain(&diurnal_keys))
        };
        let mut mixed = false;
        for (key, span) in foreign {
            if let Some(span) = span {
                mixed = true;
                self.error(
                    span.clone(),
                    format!("{key} cannot be combined with {own}; {STAGE_SHAPES}"),
                );
            }
        }
        if mixed {
            return None;
        }
        if is_diurnal {
            self.diurnal_stage(stage)
        } else {
            self.spike_stage(stage, level)
        }
    }

    fn diurnal_stage(&mut self, stage: &Spanned<RawStage>) -> Option<Vec<Stage>> {
        let raw = stage.get_ref();
        let (Some(length), Some(base)) = (&raw.diurnal, &raw.base) else {
            self.error(
                stage.span(),
                r#"a diurnal stage needs diurnal = "D" (how long, e.g. "24h") and base = N (the daytime level)"#,
            );
            return None;
        };
        let length = self.duration(length, "diurnal", Zero::Rejected);
        let base = self.count(base, "base", 1);
        let peak = raw.peak.as_ref().map(|peak| self.count(peak, "peak", 0));
        let trough = raw
            .trough
            .as_ref()
            .map(|trough| self.count(trough, "trough", 0));
        let (length, base) = (length?, base?);
        // Some(None): given and wrong, already reported.
        if matches!(peak, Some(None)) || matches!(trough, Some(None)) {
            return None;
        }
        let levels =
            super::load_shapes::DayLevels::with_defaults(base, peak.flatten(), trough.flatten());
        if let Some(peak) = raw.peak.as_ref().filter(|_| levels.peak < base) {
            self.error(
                peak.span(),
                format!("peak must be at least base ({base}), found {}", levels.peak),
            );
            return None;
        }
        if let Some(trough) = raw.trough.as_ref().filter(|_| levels.trough > base) {
            self.error(
                trough.span(),
                format!(
                    "trough must be at most base ({base}), found {}",
                    levels.trough
                ),
            );
            return None;
        }
        Some(super::load_shapes::diurnal(levels, length))
    }

    fn spike_stage(&mut self, stage: &Spanned<RawStage>, level: u32) -> Option<Vec<Stage>> {
        let raw = stage.get_ref();
        let (Some(to), Some(length)) = (&raw.spike_to, &raw.spike_for) else {
            self.error(
                stage.span(),
                r#"a spike stage needs spike_to = N (the level to jump to) and for = "D" (how long it lasts)"#,
            );
            return None;
        };
        let to = self.count(to, "spike_to", 0);
        let length = self.duration(length, "for", Zero::Rejected);
        Some(super::load_shapes::spike(level, to?, length?))
    }

    fn arrival(&mut self, rate: &Spanned<f64>, raw: &RawLoad) -> Option<Load> {
        let calls_per_minute = *rate.get_ref();
        let rate_ok = calls_per_minute.is_finite()
            && (MIN_CALLS_PER_MINUTE..=MAX_CALLS_PER_MINUTE).contains(&calls_per_minute);
        if !rate_ok {
            self.error(
                rate.span(),
                format!(
                    "calls_per_minute must be between {MIN_CALLS_PER_MINUTE} and {MAX_CALLS_PER_MINUTE}, found {calls_per_minute}"
                ),
            );
        }
        let duration = match &raw.duration {
            Some(duration) => self.duration(duration, "duration", Zero::Rejected),
            None => {
                self.error(
                    rate.span(),
                    r#"calls_per_minute needs duration = "D" in [load], how long calls keep arriving"#,
                );
                None
            }
        };
        let pattern = match &raw.arrivals {
            None => Some(ArrivalPattern::Uniform),
            Some(arrivals) => match arrivals.get_ref().as_str() {
                "uniform" => Some(ArrivalPattern::Uniform),
                "poisson" => Some(ArrivalPattern::Poisson),
                other => {
                    self.error(
                        arrivals.span(),
                        format!(r#"unknown arrivals {other:?}; expected "uniform" or "poisson""#),
                    );
                    None
                }
            },
        };
        let max_concurrent = match &raw.max_concurrent {
            Some(cap) => self.count(cap, "max_concurrent", 1),
            None => Some(DEFAULT_MAX_CONCURRENT),
        };
        Some(Load::Arrival(ArrivalRate {
            calls_per_minute: rate_ok.then_some(calls_per_minute)?,
            duration: duration?,
            pattern: pattern?,
            max_concurrent: max_concurrent?,
        }))
    }

    // ---- [calls] ------------------------------------------------------------------------

    fn calls(&mut self, raw: Option<RawCalls>) -> (CallSettings, FixtureIndex) {
        let raw = raw.unwrap_or(RawCalls {
            connect_timeout: None,
            turn_timeout: None,
            reply_silence: None,
            wait_for_greeting: None,
            max_call_duration: None,
            fleet_may_hang_up: None,
            fixtures: None,
            synthetic: None,
            from: None,
            to: None,
        });
        let fixtures = self.fixtures(raw.fixtures.as_deref().unwrap_or_default());
        let synthetic = self.synthetic(&raw);
        for (key, number) in [("from", &raw.from), ("to", &raw.to)] {
            if let Some(number) = number {
                self.not_empty(number, key);
            }
        }
        let settings = CallSettings {
            connect_timeout: self.duration_or(
                raw.connect_timeout.as_ref(),
                "connect_timeout",
                Zero::Rejected,
                Duration::from_secs(5),
            ),
            turn_timeout: self.duration_or(
                raw.turn_timeout.as_ref(),
                "turn_timeout",
                Zero::Rejected,
                Duration::from_secs(10),
            ),
            reply_silence: self.duration_or(
                raw.reply_silence.as_ref(),
                "reply_silence",
                Zero::Rejected,
                Duration::from_millis(1500),
            ),
            max_call_duration: self.duration_or(
                raw.max_call_duration.as_ref(),
                "max_call_duration",
                Zero::Rejected,
                Duration::from_secs(600),
            ),
            wait_for_greeting: raw.wait_for_greeting.unwrap_or(false),
            fleet_may_hang_up: self.hang_up_policy(raw.fleet_may_hang_up.as_ref()),
            fixtures: fixtures.fixtures.clone(),
            synthetic,
            from: raw
                .from
                .map_or_else(|| "+15005550006".to_owned(), Spanned::into_inner),
            to: raw
                .to
                .map_or_else(|| "+15005550001".to_owned(), Spanned::into_inner),
        };
        (settings, fixtures)
    }

    fn hang_up_policy(&mut self, raw: Option<&Spanned<String>>) -> HangUpPolicy {
        let Some(raw) = raw else {
            return HangUpPolicy::default();
        };
        let text = raw.get_ref().as_str();
        match HangUpPolicy::ALL.iter().find(|(_, name)| *name == text) {
            Some((policy, _)) => *policy,
            None => {
                self.error(
                    raw.span(),
                    format!(
                        r#"unknown fleet_may_hang_up {text:?}; expected "never", "after_last_turn" or "any""#
                    ),
                );
                HangUpPolicy::default()
            }
        }
    }

    fn synthetic(&mut self, raw: &RawCalls) -> SyntheticPool {
        let mut pool = SyntheticPool {
            count: 8,
            min: Duration::from_secs(1),
            max: Duration::from_millis(2500),
        };
        let Some(synthetic) = &raw.synthetic else {
            return pool;
        };
        let span = synthetic.span();
        let synthetic = synthetic.get_ref();
        if let Some(count) = &synthetic.count {
            pool.count = self
                .count(count, "synthetic count", 1)
                .unwrap_or(pool.count);
            if pool.count > 1000 {
                self.error(
                    count.span(),
                    "synthetic count must be at most 1000 (the pool is held in memory)",
                );
            }
        }
        let mut both_ok = true;
        for (value, key, slot) in [
            (&synthetic.min, "synthetic min", &mut pool.min),
            (&synthetic.max, "synthetic max", &mut pool.max),
        ] {
            if let Some(value) = value {
                match self.duration(value, key, Zero::Rejected) {
                    Some(duration) => *slot = duration,
                    None => both_ok = false,
                }
            }
        }
        if pool.max > Duration::from_secs(60) {
            let at = synthetic
                .max
                .as_ref()
                .map_or(span.clone(), |value| value.span());
            self.error(
                at,
                "synthetic max must be at most 60s (one caller utterance)",
            );
        }
        if both_ok && pool.min > pool.max {
            self.error(
                span,
                format!(
                    "synthetic min ({}) is longer than max ({})",
                    crate::units::format_duration(pool.min),
                    crate::units::format_duration(pool.max)
                ),
            );
        }
        pool
    }

    /// Resolves paths and globs relative to the directory of the file that names them (the
    /// scenario file, or a file it includes), so a scenario means the same thing whatever
    /// directory `voxsoak` is started from, and decodes every fixture: a run plays what
    /// validation read, so it cannot fail later on a fixture.
    fn fixtures(&mut self, patterns: &[Spanned<String>]) -> FixtureIndex {
        let mut complete = true;
        // Each file with the entry that named it first, for its diagnostics.
        let mut found: Vec<(PathBuf, Range<usize>)> = Vec::new();
        for pattern in patterns {
            let parent = self.sources.dir_at(pattern.span().start);
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            let dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
            match self.resolve_fixture(pattern, &dir) {
                Some(paths) => found.extend(
                    paths
                        .into_iter()
                        .map(|path| (path.canonicalize().unwrap_or(path), pattern.span())),
                ),
                None => complete = false,
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|later, first| later.0 == first.0);
        let mut fixtures: Vec<Fixture> = Vec::new();
        let mut total = Duration::ZERO;
        for (path, span) in found {
            match crate::audio::wav::load_wav(&path) {
                Ok(samples) => {
                    let fixture = Fixture {
                        path,
                        samples: samples.into(),
                    };
                    let before = total;
                    total += fixture.duration();
                    if before <= MAX_FIXTURES_AUDIO && total > MAX_FIXTURES_AUDIO {
                        complete = false;
                        self.error(
                            span,
                            format!(
                                "fixtures add up to more than {} of audio (with {}), the limit for a scenario: every fixture is kept in memory for the whole run",
                                crate::units::format_duration(MAX_FIXTURES_AUDIO),
                                fixture.path.display()
                            ),
                        );
                    }
                    fixtures.push(fixture);
                }
                Err(error) => {
                    complete = false;
                    let mut message = format!("fixture {}", error);
                    if let Some(source) = std::error::Error::source(&error) {
                        message.push_str(&format!(": {source}"));
                    }
                    self.error(span, message);
                }
            }
        }
        let mut by_stem: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, fixture) in fixtures.iter().enumerate() {
            by_stem.entry(fixture.stem()).or_default().push(index);
        }
        FixtureIndex {
            by_stem,
            fixtures,
            complete,
        }
    }

    fn resolve_fixture(&mut self, pattern: &Spanned<String>, dir: &Path) -> Option<Vec<PathBuf>> {
        let text = pattern.get_ref().as_str();
        if text.trim().is_empty() {
            self.error(pattern.span(), "fixture path must not be empty");
            return None;
        }
        let relative = Path::new(text);
        if !text.contains(['*', '?', '[']) {
            let full = dir.join(relative);
            // Whatever is there is decoded next, which says what is wrong with it (a
            // directory, not a WAV file, too large); only a missing file is said here.
            return match std::fs::metadata(&full) {
                Ok(_) => Some(vec![full]),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    self.error(
                        pattern.span(),
                        format!(
                            "fixture {text:?} does not exist (looked for {})",
                            full.display()
                        ),
                    );
                    None
                }
                Err(error) => {
                    self.error(
                        pattern.span(),
                        format!("fixture {text:?}: cannot read {}: {error}", full.display()),
                    );
                    None
                }
            };
        }
        let full_pattern = if relative.is_absolute() {
            text.to_owned()
        } else {
            let Some(dir_text) = dir.to_str() else {
                self.error(
                    pattern.span(),
                    "cannot resolve a fixture glob: the scenario's directory is not valid UTF-8",
                );
                return None;
            };
            format!("{}/{text}", glob::Pattern::escape(dir_text))
        };
        let matches = match glob::glob(&full_pattern) {
            Ok(matches) => matches,
            Err(error) => {
                self.error(
                    pattern.span(),
                    format!("invalid fixture glob {text:?}: {}", error.msg),
                );
                return None;
            }
        };
        let files: Vec<PathBuf> = matches
            .filter_map(Result::ok)
            .filter(|path| path.is_file())
            .collect();
        if files.is_empty() {
            self.error(
                pattern.span(),
                format!(
                    "fixture glob {text:?} matches no files (relative to {})",
                    dir.display()
                ),
            );
            return None;
        }
        Some(files)
    }

    // ---- [[scripts]] --------------------------------------------------------------------

    fn scripts(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawScript>>>>,
        fixtures: &FixtureIndex,
    ) -> Vec<CallScript> {
        let default = || {
            vec![CallScript {
                name: "conversation".to_owned(),
                weight: 1,
                body: ScriptBody::Turns { min: 2, max: 3 },
            }]
        };
        let Some(raw) = raw else {
            return default();
        };
        if raw.get_ref().is_empty() {
            self.error(
                raw.span(),
                "scripts is empty; remove it to use the default script or add [[scripts]] tables",
            );
            return default();
        }
        let mut names = HashSet::new();
        let mut scripts = Vec::new();
        for (index, script) in raw.get_ref().iter().enumerate() {
            let script = self.script(script, index, fixtures);
            if !names.insert(script.0.name.clone())
                && let Some(span) = script.1
            {
                self.error(
                    span,
                    format!(
                        "duplicate script name {:?}; script names must be unique",
                        script.0.name
                    ),
                );
            }
            scripts.push(script.0);
        }
        scripts
    }

    /// The script, and the span of its name for the duplicate check.
    fn script(
        &mut self,
        script: &Spanned<RawScript>,
        index: usize,
        fixtures: &FixtureIndex,
    ) -> (CallScript, Option<Range<usize>>) {
        let raw = script.get_ref();
        let name = match &raw.name {
            Some(name) => {
                self.not_empty(name, "script name");
                name.get_ref().clone()
            }
            None => {
                self.error(script.span(), r#"a script needs name = "...""#);
                format!("script-{}", index + 1)
            }
        };
        let weight = raw
            .weight
            .as_ref()
            .and_then(|weight| self.count(weight, "weight", 1))
            .unwrap_or(1);
        let body = match (&raw.turns, &raw.steps) {
            (Some(turns), steps) => {
                if let Some(steps) = steps {
                    self.error(
                        steps.span(),
                        "turns and steps are mutually exclusive; a script has one or the other",
                    );
                }
                self.turns(turns)
            }
            (None, Some(steps)) => ScriptBody::Steps(self.steps(steps, fixtures)),
            (None, None) => {
                self.error(
                    script.span(),
                    format!(
                        "script {name:?} needs turns = N (or {{ min = N, max = M }}) or steps = [...]"
                    ),
                );
                ScriptBody::Turns { min: 1, max: 1 }
            }
        };
        let name_span = raw.name.as_ref().map(Spanned::span);
        (CallScript { name, weight, body }, name_span)
    }

    fn turns(&mut self, turns: &Spanned<RawTurns>) -> ScriptBody {
        let fallback = ScriptBody::Turns { min: 1, max: 1 };
        let bounded = |validator: &mut Self, value: &Spanned<i64>, key: &str| {
            let count = validator.count(value, key, 1)?;
            if i64::from(count) > MAX_TURNS {
                validator.error(
                    value.span(),
                    format!("{key} must be at most {MAX_TURNS}, found {count}"),
                );
                return None;
            }
            Some(count)
        };
        match turns.get_ref() {
            RawTurns::Exactly(count) => {
                let value = Spanned::new(turns.span(), *count);
                match bounded(self, &value, "turns") {
                    Some(count) => ScriptBody::Turns {
                        min: count,
                        max: count,
                    },
                    None => fallback,
                }
            }
            RawTurns::Range(range) => {
                let (Some(min), Some(max)) = (&range.min, &range.max) else {
                    self.error(
                        turns.span(),
                        "turns needs both min and max, such as { min = 2, max = 4 }",
                    );
                    return fallback;
                };
                let min = bounded(self, min, "turns min");
                let max = bounded(self, max, "turns max");
                let (Some(min), Some(max)) = (min, max) else {
                    return fallback;
                };
                if min > max {
                    self.error(
                        turns.span(),
                        format!("turns min ({min}) is greater than max ({max})"),
                    );
                    return fallback;
                }
                ScriptBody::Turns { min, max }
            }
        }
    }

    fn steps(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawStep>>>,
        fixtures: &FixtureIndex,
    ) -> Vec<Step> {
        if raw.get_ref().is_empty() {
            self.error(
                raw.span(),
                "steps is empty; add at least one step such as { say = \"random\" }",
            );
        }
        let mut steps = Vec::new();
        let mut hung_up = false;
        for step in raw.get_ref() {
            if hung_up {
                self.error(
                    step.span(),
                    "steps after hangup never run; hangup must be the last step",
                );
            }
            if let Some(step) = self.step(step, fixtures) {
                hung_up |= step == Step::Hangup;
                steps.push(step);
            }
        }
        steps
    }

    fn step(&mut self, step: &Spanned<RawStep>, fixtures: &FixtureIndex) -> Option<Step> {
        let raw = step.get_ref();
        let actions: Vec<&str> = [
            ("say", raw.say.is_some()),
            ("dtmf", raw.dtmf.is_some()),
            ("pause", raw.pause.is_some()),
            ("hangup", raw.hangup.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        match actions.as_slice() {
            [] => {
                self.error(
                    step.span(),
                    "a step needs one of say, dtmf, pause or hangup",
                );
                return None;
            }
            [_] => {}
            _ => {
                self.error(
                    step.span(),
                    format!(
                        "a step does one thing, found {}; split it into separate steps",
                        actions.join(" and ")
                    ),
                );
                return None;
            }
        }
        let listen = raw.listen.as_ref();
        let reject_listen = |validator: &mut Self, key: &str| {
            if let Some(listen) = listen {
                validator.error(
                    listen.span(),
                    format!("listen only applies to say and dtmf steps, not to {key}"),
                );
            }
        };
        let listen_flag = listen.is_none_or(|listen| *listen.get_ref());
        if let Some(say) = &raw.say {
            let utterance = self.utterance(say, fixtures)?;
            Some(Step::Say {
                utterance,
                listen: listen_flag,
            })
        } else if let Some(dtmf) = &raw.dtmf {
            let digits = self.dtmf(dtmf)?;
            Some(Step::Dtmf {
                digits,
                listen: listen_flag,
            })
        } else if let Some(pause) = &raw.pause {
            reject_listen(self, "pause");
            Some(Step::Pause(self.duration(
                pause,
                "pause",
                Zero::Rejected,
            )?))
        } else {
            reject_listen(self, "hangup");
            let hangup = raw.hangup.as_ref()?;
            if !*hangup.get_ref() {
                self.error(
                    hangup.span(),
                    "hangup = false does nothing; write hangup = true or remove the step",
                );
                return None;
            }
            Some(Step::Hangup)
        }
    }

    fn utterance(
        &mut self,
        say: &Spanned<String>,
        fixtures: &FixtureIndex,
    ) -> Option<UtteranceRef> {
        let stem = say.get_ref().as_str();
        match stem {
            "random" => return Some(UtteranceRef::Random),
            "synthetic" => return Some(UtteranceRef::Synthetic),
            _ => {}
        }
        match fixtures.by_stem.get(stem).map(Vec::as_slice) {
            Some([index]) => Some(UtteranceRef::Fixture(*index)),
            Some(indices) => {
                let files: Vec<String> = indices
                    .iter()
                    .map(|&index| fixtures.fixtures[index].path.display().to_string())
                    .collect();
                self.error(
                    say.span(),
                    format!(
                        "fixture name {stem:?} is ambiguous: {}; rename one of the files",
                        files.join(", ")
                    ),
                );
                None
            }
            None if !fixtures.complete => None,
            None if fixtures.fixtures.is_empty() => {
                self.error(
                    say.span(),
                    format!(
                        r#"no fixture named {stem:?}: [calls] fixtures is empty; use say = "random" or "synthetic""#
                    ),
                );
                None
            }
            None => {
                const SHOWN: usize = 10;
                let mut known: Vec<&str> = fixtures
                    .by_stem
                    .keys()
                    .take(SHOWN)
                    .map(String::as_str)
                    .collect();
                if fixtures.by_stem.len() > SHOWN {
                    known.push("...");
                }
                self.error(
                    say.span(),
                    format!(
                        r#"no fixture named {stem:?}; fixtures (by file name without extension): {}; or use "random" / "synthetic""#,
                        known.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn dtmf(&mut self, dtmf: &Spanned<String>) -> Option<String> {
        let digits = dtmf.get_ref();
        if digits.is_empty() {
            self.error(
                dtmf.span(),
                "dtmf needs at least one digit (0-9, *, #, A-D)",
            );
            return None;
        }
        let valid = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d');
        let Some((index, bad)) = digits.char_indices().find(|&(_, c)| !valid(c)) else {
            return Some(digits.to_ascii_uppercase());
        };
        // Point at the digit itself when the file spells the string without escapes.
        let span = dtmf.span();
        let literal = self.source.get(span.start + 1..span.end.saturating_sub(1));
        let offset = if literal == Some(digits.as_str()) {
            span.start + 1 + index
        } else {
            span.start
        };
        self.error_at(
            offset,
            format!("invalid DTMF digit {bad:?} in {digits:?}; expected 0-9, *, #, A-D"),
        );
        None
    }

    // ---- [slo] --------------------------------------------------------------------------

    fn slo(&mut self, raw: Option<&RawSlo>, spikes: &[ScheduleWindow]) -> Slos {
        let mut slos = Slos::default();
        let Some(raw) = raw else {
            return slos;
        };
        if let Some(value) = &raw.call_success
            && let Some(pct) = self.percent_threshold(value)
        {
            slos.call_success_min_pct = Some(pct);
        }
        slos.response_p95_max = raw
            .response_p95
            .as_ref()
            .and_then(|value| self.latency_threshold(value, "response_p95"));
        slos.response_p99_max = raw
            .response_p99
            .as_ref()
            .and_then(|value| self.latency_threshold(value, "response_p99"));
        slos.first_audio_p95_max = raw
            .first_audio_p95
            .as_ref()
            .and_then(|value| self.latency_threshold(value, "first_audio_p95"));
        slos.pacing_jitter_p99_max = raw
            .pacing_jitter_p99
            .as_ref()
            .and_then(|value| self.latency_threshold(value, "pacing_jitter_p99"));
        slos.detect_within = raw
            .detect_within
            .as_ref()
            .and_then(|value| self.latency_threshold(value, "detect_within"));
        slos.no_retry_storm = raw
            .no_retry_storm
            .as_ref()
            .is_some_and(|flag| *flag.get_ref());
        slos.recover_within = raw
            .recover_within
            .as_ref()
            .and_then(|value| self.latency_threshold(value, "recover_within"));
        if let Some(window) = raw
            .stable_window
            .as_ref()
            .and_then(|v| self.stable_window(v))
        {
            slos.stable_window = window;
        }
        if let Some(value) = &raw.uptime {
            slos.uptime_min_pct = self.percent(
                value,
                ">=",
                "uptime is a minimum",
                r#"expected a threshold such as ">= 99.7%""#,
            );
        }
        slos.memory_growth_max_mib_h = raw
            .memory_growth
            .as_ref()
            .and_then(|value| self.growth_threshold(value, "memory_growth"));
        slos.temp_dir_growth_max_mib_h = raw
            .temp_dir_growth
            .as_ref()
            .and_then(|value| self.growth_threshold(value, "temp_dir_growth"));
        slos.no_unprovoked_alerts = raw
            .no_unprovoked_alerts
            .as_ref()
            .is_some_and(|flag| *flag.get_ref());
        slos.max_crashes = raw.max_crashes.as_ref().and_then(|v| self.max_crashes(v));
        if let Some(metric) = &raw.metric {
            slos.metrics = self.metric_slos(metric, spikes);
        }
        slos
    }

    /// `stable_window = "20s"`: at least a second.
    fn stable_window(&mut self, value: &RawValue) -> Option<Duration> {
        match value.get_ref() {
            toml::Value::String(text) => match parse_duration(text) {
                Some(window) if window >= Duration::from_secs(1) => Some(window),
                _ => {
                    self.error(
                        value.span(),
                        format!(r#"stable_window: expected a duration of at least 1s such as "30s", found {text:?}"#),
                    );
                    None
                }
            },
            other => {
                self.error(
                    value.span(),
                    format!(
                        r#"stable_window: expected a duration such as "30s", found {}"#,
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// `max_crashes = 0`: a whole number, 0 or more.
    fn max_crashes(&mut self, value: &RawValue) -> Option<u64> {
        match value.get_ref() {
            toml::Value::Integer(count) if *count >= 0 => Some(*count as u64),
            other => {
                self.error(
                    value.span(),
                    format!(
                        "max_crashes: expected a whole number of crashes, 0 or more, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// `"<= 50MiB/h"` → 50.0 (MiB per hour).
    fn growth_threshold(&mut self, value: &RawValue, key: &str) -> Option<f64> {
        const EXPECTED: &str = r#"expected a growth rate such as "<= 50MiB/h""#;
        let rest = self.threshold_operand(value, "<=", &format!("{key} is a maximum"), EXPECTED)?;
        let bytes = rest
            .strip_suffix("/h")
            .and_then(|size| crate::units::parse_byte_size(size.trim()).ok());
        match bytes {
            Some(bytes) => Some(bytes as f64 / (1024.0 * 1024.0)),
            None => {
                self.error(value.span(), format!("{key}: {EXPECTED}, found {rest:?}"));
                None
            }
        }
    }

    /// `">= 99.5%"` (or `"99.5%"`) → 99.5.
    fn percent_threshold(&mut self, value: &RawValue) -> Option<f64> {
        const EXPECTED: &str = r#"expected a threshold such as ">= 99.5%""#;
        self.percent(value, ">=", "call_success is a minimum", EXPECTED)
    }

    /// A percentage from 0% to 100% after an optional `operator`.
    fn percent(
        &mut self,
        value: &RawValue,
        operator: &str,
        direction: &str,
        expected: &str,
    ) -> Option<f64> {
        let rest = self.threshold_operand(value, operator, direction, expected)?;
        let pct = rest
            .strip_suffix('%')
            .and_then(|number| number.trim().parse::<f64>().ok())
            .filter(|pct| (0.0..=100.0).contains(pct));
        if pct.is_none() {
            self.error(
                value.span(),
                format!(
                    "{expected} (0% to 100%), found {}",
                    describe(value.get_ref())
                ),
            );
        }
        pct
    }

    /// `"<= 1500ms"` (or `"1500ms"`) → 1.5 s.
    fn latency_threshold(&mut self, value: &RawValue, key: &str) -> Option<Duration> {
        const EXPECTED: &str = r#"expected a threshold such as "<= 1500ms""#;
        let rest = self.threshold_operand(value, "<=", &format!("{key} is a maximum"), EXPECTED)?;
        let duration = parse_duration(&rest);
        if duration.is_none() {
            self.error(
                value.span(),
                format!("{EXPECTED}, found {}", describe(value.get_ref())),
            );
        }
        duration
    }

    /// The text after the comparison operator, which must be `operator` if present.
    fn threshold_operand(
        &mut self,
        value: &RawValue,
        operator: &str,
        direction: &str,
        expected: &str,
    ) -> Option<String> {
        let toml::Value::String(text) = value.get_ref() else {
            self.error(
                value.span(),
                format!("{expected}, found {}", describe(value.get_ref())),
            );
            return None;
        };
        let text = text.trim();
        if let Some(rest) = text.strip_prefix(operator) {
            return Some(rest.trim().to_owned());
        }
        if text.starts_with(['<', '>', '=', '!']) {
            self.error(
                value.span(),
                format!("{direction}: write it as {operator} VALUE, found {text:?}"),
            );
            return None;
        }
        Some(text.to_owned())
    }
}

/// Durations as people write them: `"300ms"`, `"1.5s"`, `"2m18s"`, `"1h30m"`, `"72h"`.
/// A sign or a bare number is refused (humantime does both).
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// A value as the file spells it, for "found ..." in messages.
pub(super) fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("{text:?}"),
        toml::Value::Integer(number) => number.to_string(),
        toml::Value::Float(number) => number.to_string(),
        toml::Value::Boolean(flag) => flag.to_string(),
        toml::Value::Datetime(datetime) => datetime.to_string(),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

/// Whether `host` is one of `allowed`, compared the way [`Scenario::host_allowed`] does.
pub(super) fn host_in(allowed: &[String], host: &str) -> bool {
    let wanted = normalize_host(host);
    allowed.iter().any(|entry| normalize_host(entry) == wanted)
}

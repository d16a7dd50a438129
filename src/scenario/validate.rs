//! Phase two: raw values into the model, collecting every problem with its position.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::model::*;
use super::raw::*;

/// A problem at a byte range of the file.
#[derive(Debug)]
pub struct Problem {
    pub span: Range<usize>,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    fn add(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.0.push(Problem {
            span,
            message: message.into(),
        });
    }
}

const DURATION_HINT: &str = r#"expected a duration such as "30s" or "1m30s""#;

/// Parses `"300ms"`, `"2m18s"`, `"1h30m"`, `"72h"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty()
        || trimmed.starts_with('-')
        || !trimmed.chars().any(|c| c.is_ascii_alphabetic())
    {
        return Err(format!("{DURATION_HINT}, found {text:?}"));
    }
    humantime::parse_duration(trimmed).map_err(|_| format!("{DURATION_HINT}, found {text:?}"))
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("{text:?}"),
        toml::Value::Integer(number) => {
            format!("the number {number} (write a unit, e.g. \"{number}s\")")
        }
        toml::Value::Float(number) => {
            format!("the number {number} (write a unit, e.g. \"{number}s\")")
        }
        other => format!("a {}", other.type_str()),
    }
}

impl Problems {
    fn duration(&mut self, value: &Value, allow_zero: bool) -> Option<Duration> {
        let parsed = match value.get_ref() {
            toml::Value::String(text) => parse_duration(text),
            other => Err(format!("{DURATION_HINT}, found {}", describe(other))),
        };
        match parsed {
            Ok(duration) if duration.is_zero() && !allow_zero => {
                self.add(value.span(), "must be longer than zero");
                None
            }
            Ok(duration) => Some(duration),
            Err(message) => {
                self.add(value.span(), message);
                None
            }
        }
    }

    fn duration_or(&mut self, value: &Option<Value>, default: Duration) -> Duration {
        value
            .as_ref()
            .and_then(|value| self.duration(value, false))
            .unwrap_or(default)
    }

    fn count(&mut self, value: &Spanned<i64>, min: i64, what: &str) -> Option<u32> {
        let number = *value.get_ref();
        if number < min || number > i64::from(u32::MAX) {
            self.add(
                value.span(),
                format!("{what} must be at least {min}, found {number}"),
            );
            return None;
        }
        Some(number as u32)
    }
}

pub fn validate(raw: RawScenario, path: &Path) -> Result<Scenario, Problems> {
    let mut problems = Problems::default();
    let name = raw.name.map(Spanned::into_inner).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let seed = match raw.seed {
        Some(seed) if *seed.get_ref() < 0 => {
            problems.add(seed.span(), "seed must be zero or more");
            1
        }
        Some(seed) => *seed.get_ref() as u64,
        None => 1,
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let allow_hosts = raw
        .target
        .as_ref()
        .and_then(|target| target.get_ref().allow_hosts.clone())
        .unwrap_or_else(|| vec!["127.0.0.1".into(), "localhost".into(), "::1".into()]);
    let target = match raw.target {
        Some(target) => validate_target(target, &allow_hosts, &mut problems),
        None => {
            problems.add(0..0, "missing [target]: fleet = \"sink\", or stream_url / webhook_url of a running fleet");
            None
        }
    };
    let load = match raw.load {
        Some(load) => validate_load(load, &mut problems),
        None => {
            problems.add(
                0..0,
                "missing [load]: stages = [...] or calls_per_minute + duration",
            );
            None
        }
    };
    let (calls, fixture_stems) = validate_calls(raw.calls, base, &mut problems);
    let scripts = validate_scripts(raw.scripts, &fixture_stems, &mut problems);
    let slo = validate_slo(raw.slo, &mut problems);
    match (target, load) {
        (Some(target), Some(load)) if problems.0.is_empty() => Ok(Scenario {
            name,
            description: raw.description,
            path: path.to_path_buf(),
            seed,
            target,
            allow_hosts,
            load,
            calls,
            scripts,
            slo,
        }),
        _ => Err(problems),
    }
}

fn validate_target(
    target: Spanned<RawTarget>,
    allow_hosts: &[String],
    problems: &mut Problems,
) -> Option<Target> {
    let span = target.span();
    let target = target.into_inner();
    let forms = [
        target.fleet.is_some(),
        target.stream_url.is_some(),
        target.webhook_url.is_some(),
    ];
    if forms.iter().filter(|given| **given).count() != 1 {
        problems.add(
            span,
            "[target] needs exactly one of fleet = \"sink\", stream_url, or webhook_url",
        );
        return None;
    }
    if let Some(fleet) = &target.fleet {
        for (key, given) in [
            (
                "auth_token_env",
                target.auth_token_env.as_ref().map(Spanned::span),
            ),
            (
                "custom_parameters",
                target.custom_parameters.as_ref().map(Spanned::span),
            ),
        ] {
            if let Some(at) = given {
                problems.add(at, format!("{key} is for an external fleet (stream_url / webhook_url), not fleet = {:?}", fleet.get_ref()));
            }
        }
        return match fleet.get_ref().as_str() {
            "sink" => Some(Target::Sink(SinkOptions {
                reply_delay: problems.duration_or(&target.reply_delay, Duration::from_millis(600)),
                reply_length: problems
                    .duration_or(&target.reply_length, Duration::from_millis(800)),
            })),
            "embedded" => {
                problems.add(
                    fleet.span(),
                    "the embedded reference fleet is not available in this build; use fleet = \"sink\" or stream_url / webhook_url",
                );
                None
            }
            other => {
                problems.add(
                    fleet.span(),
                    format!("expected fleet = \"sink\", found {other:?}"),
                );
                None
            }
        };
    }
    for (key, given) in [
        ("reply_delay", &target.reply_delay),
        ("reply_length", &target.reply_length),
    ] {
        if let Some(value) = given {
            problems.add(
                value.span(),
                format!("{key} is for fleet = \"sink\"; an external fleet answers as it does"),
            );
        }
    }
    let endpoint = if let Some(stream) = &target.stream_url {
        Endpoint::Stream(checked_url(
            stream,
            ["ws", "wss"],
            "stream_url",
            allow_hosts,
            problems,
        )?)
    } else {
        let webhook = target.webhook_url.as_ref()?;
        if let Some(params) = &target.custom_parameters {
            problems.add(
                params.span(),
                "custom_parameters go with stream_url; with webhook_url the fleet's TwiML <Parameter>s are used",
            );
        }
        Endpoint::Webhook(checked_url(
            webhook,
            ["http", "https"],
            "webhook_url",
            allow_hosts,
            problems,
        )?)
    };
    Some(Target::External(ExternalTarget {
        endpoint,
        auth_token_env: target.auth_token_env.map(Spanned::into_inner),
        custom_parameters: target
            .custom_parameters
            .map(Spanned::into_inner)
            .unwrap_or_default(),
    }))
}

pub(super) fn host_in(allow_hosts: &[String], host: &str) -> bool {
    let bare = |h: &str| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    allow_hosts
        .iter()
        .any(|allowed| bare(allowed) == bare(host))
}

fn checked_url(
    value: &Spanned<String>,
    schemes: [&str; 2],
    what: &str,
    allow_hosts: &[String],
    problems: &mut Problems,
) -> Option<url::Url> {
    let parsed = match url::Url::parse(value.get_ref()) {
        Ok(parsed) => parsed,
        Err(error) => {
            problems.add(
                value.span(),
                format!("{what} is not a URL ({error}): {:?}", value.get_ref()),
            );
            return None;
        }
    };
    if !schemes.contains(&parsed.scheme()) {
        problems.add(
            value.span(),
            format!(
                "{what} must start with {}:// or {}://, found {:?}",
                schemes[0],
                schemes[1],
                value.get_ref()
            ),
        );
        return None;
    }
    let host = parsed.host_str().unwrap_or_default().to_string();
    if !host_in(allow_hosts, &host) {
        problems.add(
            value.span(),
            format!("host {host:?} is not in allow_hosts (loopback only by default); add it to [target] allow_hosts to allow it"),
        );
        return None;
    }
    Some(parsed)
}

fn validate_load(load: Spanned<RawLoad>, problems: &mut Problems) -> Option<Load> {
    let span = load.span();
    let load = load.into_inner();
    match (&load.stages, &load.calls_per_minute) {
        (Some(_), Some(_)) | (None, None) => {
            problems.add(span, "[load] needs exactly one of stages = [...] (closed model) or calls_per_minute (open model)");
            return None;
        }
        _ => {}
    }
    if let Some(stages) = load.stages {
        for (key, given) in [
            ("duration", load.duration.as_ref().map(Spanned::span)),
            ("arrivals", load.arrivals.as_ref().map(Spanned::span)),
            (
                "max_concurrent",
                load.max_concurrent.as_ref().map(Spanned::span),
            ),
        ] {
            if let Some(at) = given {
                problems.add(at, format!("{key} is for the open model (calls_per_minute); stages set their own length"));
            }
        }
        if stages.get_ref().is_empty() {
            problems.add(
                stages.span(),
                "stages is empty: add e.g. { ramp_to = 10, over = \"10s\" }",
            );
            return None;
        }
        let mut level = 0u32;
        let mut result = Vec::new();
        for stage in stages.into_inner() {
            let span = stage.span();
            let stage = stage.into_inner();
            match (&stage.ramp_to, &stage.over, &stage.hold) {
                (Some(to), Some(over), None) => {
                    let to = problems.count(to, 0, "ramp_to");
                    let over = problems.duration(over, false);
                    if let (Some(to), Some(over)) = (to, over) {
                        level = to;
                        result.push(Stage { to, duration: over });
                    }
                }
                (None, None, Some(hold)) => {
                    if let Some(duration) = problems.duration(hold, false) {
                        result.push(Stage {
                            to: level,
                            duration,
                        });
                    }
                }
                _ => problems.add(
                    span,
                    "a stage is either { ramp_to = N, over = \"30s\" } or { hold = \"1m\" }",
                ),
            }
        }
        return Some(Load::Stages(result));
    }
    let rate_value = load.calls_per_minute?;
    let rate = match rate_value.get_ref() {
        toml::Value::Integer(n) => Some(*n as f64),
        toml::Value::Float(n) => Some(*n),
        other => {
            problems.add(
                rate_value.span(),
                format!(
                    "calls_per_minute must be a number, found {}",
                    describe(other)
                ),
            );
            None
        }
    };
    let rate = rate.filter(|rate| {
        let ok = rate.is_finite() && *rate > 0.0;
        if !ok {
            problems.add(rate_value.span(), "calls_per_minute must be more than zero");
        }
        ok
    });
    let duration = match &load.duration {
        Some(value) => problems.duration(value, false),
        None => {
            problems.add(
                span,
                "calls_per_minute needs duration = \"...\" (how long calls keep arriving)",
            );
            None
        }
    };
    let pattern = match load
        .arrivals
        .as_ref()
        .map(|a| (a.get_ref().as_str(), a.span()))
    {
        None | Some(("uniform", _)) => ArrivalPattern::Uniform,
        Some(("poisson", _)) => ArrivalPattern::Poisson,
        Some((other, at)) => {
            problems.add(
                at,
                format!("expected arrivals = \"uniform\" or \"poisson\", found {other:?}"),
            );
            ArrivalPattern::Uniform
        }
    };
    let max_concurrent = match &load.max_concurrent {
        Some(value) => problems.count(value, 1, "max_concurrent")?,
        None => 10_000,
    };
    Some(Load::Arrival(ArrivalRate {
        calls_per_minute: rate?,
        duration: duration?,
        pattern,
        max_concurrent,
    }))
}

/// Resolves `fixtures` patterns (a `*` wildcard in the file name) relative to `base`.
fn resolve_fixtures(
    patterns: Vec<Spanned<String>>,
    base: &Path,
    problems: &mut Problems,
) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for pattern in patterns {
        let path = base.join(pattern.get_ref());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base.to_path_buf());
        let before = found.len();
        if name.contains('*') {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    if wildcard_match(&name, &file) && entry.path().is_file() {
                        found.push(entry.path().canonicalize().unwrap_or(entry.path()));
                    }
                }
            }
        } else if path.is_file() {
            found.push(path.canonicalize().unwrap_or(path.clone()));
        }
        if found.len() == before {
            problems.add(
                pattern.span(),
                format!(
                    "no fixture file matches {:?} (looked in {})",
                    pattern.get_ref(),
                    dir.display()
                ),
            );
        }
    }
    found.sort();
    found.dedup();
    found
}

fn wildcard_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(tail) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|at| tail.is_char_boundary(*at))
                .any(|at| wildcard_match(rest, &tail[at..]))
        }
    }
}

fn validate_calls(
    calls: RawCalls,
    base: &Path,
    problems: &mut Problems,
) -> (CallSettings, BTreeMap<String, usize>) {
    let fixtures = calls
        .fixtures
        .map(|patterns| resolve_fixtures(patterns, base, problems))
        .unwrap_or_default();
    let stems = fixtures
        .iter()
        .enumerate()
        .filter_map(|(index, path)| Some((path.file_stem()?.to_string_lossy().into_owned(), index)))
        .collect();
    let mut synthetic = SyntheticPool {
        count: 8,
        min: Duration::from_secs(1),
        max: Duration::from_millis(2500),
    };
    if let Some(raw) = calls.synthetic {
        if let Some(count) = &raw.count {
            synthetic.count = problems.count(count, 1, "synthetic count").unwrap_or(1);
        }
        synthetic.min = problems.duration_or(&raw.min, synthetic.min);
        synthetic.max = problems.duration_or(&raw.max, synthetic.min.max(synthetic.max));
        if synthetic.min > synthetic.max {
            let at = raw.min.as_ref().map(Spanned::span).unwrap_or(0..0);
            problems.add(at, "synthetic min is longer than max");
        }
    }
    let settings = CallSettings {
        connect_timeout: problems.duration_or(&calls.connect_timeout, Duration::from_secs(5)),
        turn_timeout: problems.duration_or(&calls.turn_timeout, Duration::from_secs(10)),
        reply_silence: problems.duration_or(&calls.reply_silence, Duration::from_millis(1500)),
        max_call_duration: problems.duration_or(&calls.max_call_duration, Duration::from_secs(600)),
        wait_for_greeting: calls.wait_for_greeting.unwrap_or(false),
        fixtures,
        synthetic,
        from: calls.from.unwrap_or_else(|| "+15005550006".into()),
        to: calls.to.unwrap_or_else(|| "+15005550001".into()),
    };
    (settings, stems)
}

fn validate_scripts(
    scripts: Vec<Spanned<RawScript>>,
    stems: &BTreeMap<String, usize>,
    problems: &mut Problems,
) -> Vec<CallScript> {
    if scripts.is_empty() {
        return vec![CallScript {
            name: "conversation".into(),
            weight: 1,
            body: ScriptBody::Turns { min: 2, max: 3 },
        }];
    }
    let mut result = Vec::new();
    for (index, script) in scripts.into_iter().enumerate() {
        let span = script.span();
        let script = script.into_inner();
        let name = script
            .name
            .unwrap_or_else(|| format!("script-{}", index + 1));
        let weight = match &script.weight {
            Some(weight) => problems.count(weight, 1, "weight").unwrap_or(1),
            None => 1,
        };
        let body = match (&script.turns, script.steps) {
            (Some(turns), None) => validate_turns(turns, problems),
            (None, Some(steps)) => validate_steps(steps, stems, problems),
            _ => {
                problems.add(
                    span,
                    format!("script {name:?} needs exactly one of turns or steps"),
                );
                None
            }
        };
        if let Some(body) = body {
            result.push(CallScript { name, weight, body });
        }
    }
    result
}

fn validate_turns(turns: &Value, problems: &mut Problems) -> Option<ScriptBody> {
    let range = match turns.get_ref() {
        toml::Value::Integer(n) => Some((*n, *n)),
        toml::Value::Table(table) => match (table.get("min"), table.get("max")) {
            (Some(toml::Value::Integer(min)), Some(toml::Value::Integer(max)))
                if table.len() == 2 =>
            {
                Some((*min, *max))
            }
            _ => None,
        },
        _ => None,
    };
    match range {
        Some((min, max)) if min >= 1 && min <= max && max <= i64::from(u32::MAX) => {
            Some(ScriptBody::Turns {
                min: min as u32,
                max: max as u32,
            })
        }
        Some((min, max)) => {
            problems.add(
                turns.span(),
                format!("turns must be at least 1 with min <= max, found min {min}, max {max}"),
            );
            None
        }
        None => {
            problems.add(
                turns.span(),
                "expected turns = 3 or turns = { min = 2, max = 4 }",
            );
            None
        }
    }
}

fn validate_steps(
    steps: Vec<Spanned<RawStep>>,
    stems: &BTreeMap<String, usize>,
    problems: &mut Problems,
) -> Option<ScriptBody> {
    let mut result = Vec::new();
    for step in steps {
        let span = step.span();
        let step = step.into_inner();
        let listen = step.listen.unwrap_or(true);
        let kinds = [
            step.say.is_some(),
            step.dtmf.is_some(),
            step.pause.is_some(),
            step.hangup.is_some(),
        ];
        if kinds.iter().filter(|given| **given).count() != 1 {
            problems.add(span, "a step is one of { say = \"...\" }, { dtmf = \"12#\" }, { pause = \"1s\" }, { hangup = true }");
            continue;
        }
        if step.listen.is_some() && step.say.is_none() && step.dtmf.is_none() {
            problems.add(span.clone(), "listen goes with say or dtmf");
        }
        if let Some(say) = step.say {
            let utterance = match say.get_ref().as_str() {
                "random" => Some(UtteranceRef::Random),
                "synthetic" => Some(UtteranceRef::Synthetic),
                stem => match stems.get(stem) {
                    Some(index) => Some(UtteranceRef::Fixture(*index)),
                    None => {
                        let known: Vec<&str> = stems.keys().map(String::as_str).collect();
                        problems.add(
                            say.span(),
                            format!(
                                "no fixture named {stem:?}; expected \"random\", \"synthetic\" or one of [{}]",
                                known.join(", ")
                            ),
                        );
                        None
                    }
                },
            };
            if let Some(utterance) = utterance {
                result.push(Step::Say { utterance, listen });
            }
        } else if let Some(dtmf) = step.dtmf {
            let digits = dtmf.get_ref();
            let valid = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D');
            if digits.is_empty() || !digits.chars().all(valid) {
                problems.add(
                    dtmf.span(),
                    format!("dtmf digits are 0-9, *, # and A-D; found {digits:?}"),
                );
            } else {
                result.push(Step::Dtmf {
                    digits: digits.clone(),
                    listen,
                });
            }
        } else if let Some(pause) = &step.pause {
            if let Some(pause) = problems.duration(pause, false) {
                result.push(Step::Pause(pause));
            }
        } else if step.hangup == Some(true) {
            result.push(Step::Hangup);
        } else {
            problems.add(span, "hangup = false does nothing; remove the step");
        }
    }
    Some(ScriptBody::Steps(result))
}

fn validate_slo(slo: Option<RawSlo>, problems: &mut Problems) -> Slos {
    let Some(slo) = slo else {
        return Slos {
            call_success_min_pct: Some(99.0),
            ..Slos::default()
        };
    };
    let percent = |problems: &mut Problems, value: &Spanned<String>| -> Option<f64> {
        let text = value.get_ref().trim();
        let number = text
            .strip_prefix(">=")
            .map(str::trim)
            .and_then(|rest| rest.strip_suffix('%'));
        match number.and_then(|n| n.trim().parse::<f64>().ok()) {
            Some(pct) if (0.0..=100.0).contains(&pct) => Some(pct),
            _ => {
                problems.add(
                    value.span(),
                    format!("expected a percentage such as \">= 99.5%\", found {text:?}"),
                );
                None
            }
        }
    };
    let at_most = |problems: &mut Problems, value: &Spanned<String>| -> Option<Duration> {
        let text = value.get_ref().trim();
        match text
            .strip_prefix("<=")
            .map(|rest| parse_duration(rest.trim()))
        {
            Some(Ok(duration)) => Some(duration),
            _ => {
                problems.add(
                    value.span(),
                    format!("expected a bound such as \"<= 1500ms\", found {text:?}"),
                );
                None
            }
        }
    };
    Slos {
        call_success_min_pct: slo.call_success.as_ref().and_then(|v| percent(problems, v)),
        response_p95_max: slo.response_p95.as_ref().and_then(|v| at_most(problems, v)),
        response_p99_max: slo.response_p99.as_ref().and_then(|v| at_most(problems, v)),
        first_audio_p95_max: slo
            .first_audio_p95
            .as_ref()
            .and_then(|v| at_most(problems, v)),
        pacing_jitter_p99_max: slo
            .pacing_jitter_p99
            .as_ref()
            .and_then(|v| at_most(problems, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("2m18s"), Ok(Duration::from_secs(138)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        for bad in ["-5s", "5", "", "soon", "5 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.wav", "a.wav"));
        assert!(wildcard_match("order-*.wav", "order-status.wav"));
        assert!(!wildcard_match("*.wav", "a.wave"));
        assert!(wildcard_match("*", "anything"));
    }
}

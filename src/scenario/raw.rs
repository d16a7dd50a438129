//! Phase 1: serde types that mirror the file. They only reject what serde can see (unknown
//! keys, wrong TOML types); every value phase 2 checks keeps its span so its diagnostic can
//! point at it. Values whose type phase 2 wants to explain itself (durations, thresholds)
//! are kept as [`toml::Value`].
//!
//! serde stops at the first error it meets (`deny_unknown_fields` included), so one pass
//! would show one mistake at a time. [`parse`] parses the document once, with the TOML
//! parser's own error recovery for syntax, then deserializes it again and again, each time
//! without the key or value the previous error was about, until it deserializes cleanly:
//! every unknown key and every wrongly typed value is reported, each with its position,
//! and serde's messages (with the keys a table takes) are kept.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::Diagnostic;

/// Any TOML value with its span; phase 2 decides what it may be.
pub(super) type RawValue = Spanned<toml::Value>;

/// Past this many problems phase 1 stops looking: the file is not a scenario.
const MAX_PROBLEMS: usize = 100;

/// What phase 1 made of a file.
pub(super) enum Parsed {
    /// The raw scenario, and the unknown keys it had (left out of it), for phase 2 to report
    /// with its own problems.
    Raw {
        raw: Box<RawScenario>,
        unknown_keys: Vec<Diagnostic>,
        /// Where each table that had an unknown key starts (the top level aside). What
        /// phase 2 says of such a table as a whole ("needs both min and max") is most
        /// likely the unknown key's doing (`most` for `max`), so it is left out.
        tables_with_unknown_keys: Vec<Diagnostic>,
    },
    /// Syntax errors, or values of the wrong TOML type (phase 2 would only report those
    /// values as missing), with any unknown keys: nothing more can be checked.
    Invalid(Vec<Diagnostic>),
}

/// Parses the TOML text into raw types, finding every syntax error, unknown key and
/// wrongly typed value in one go.
pub(super) fn parse(source: &str) -> Parsed {
    let (mut document, syntax) = DeTable::parse_recoverable(source);
    if !syntax.is_empty() {
        let mut found: Vec<Diagnostic> = syntax
            .iter()
            .map(|error| diagnostic(source, error))
            .collect();
        found.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
        // The parser's recovery can stumble again on the rest of a broken line; its first
        // error there is the one to fix.
        found.dedup_by_key(|diagnostic| diagnostic.line);
        found.truncate(MAX_PROBLEMS);
        return Parsed::Invalid(found);
    }
    let mut unknown_keys = Vec::new();
    let mut tables_with_unknown_keys = Vec::new();
    let mut mistyped = Vec::new();
    loop {
        let attempt = RawScenario::deserialize(toml::de::Deserializer::from(document.clone()));
        let error = match attempt {
            Ok(raw) if mistyped.is_empty() => {
                return Parsed::Raw {
                    raw: Box::new(raw),
                    unknown_keys,
                    tables_with_unknown_keys,
                };
            }
            Ok(_) => break,
            Err(error) => error,
        };
        let found = diagnostic(source, &error);
        let Some(table) = error
            .span()
            .and_then(|span| remove_at(document.get_mut(), None, span.start))
        else {
            mistyped.push(found);
            break;
        };
        // serde's wording for `deny_unknown_fields`; any other error is about a value.
        if error.message().starts_with("unknown field") {
            unknown_keys.push(found);
            if let Some(start) = table {
                tables_with_unknown_keys.push(Diagnostic::at(source, start, ""));
            }
        } else {
            mistyped.push(found);
        }
        if unknown_keys.len() + mistyped.len() >= MAX_PROBLEMS {
            break;
        }
    }
    unknown_keys.append(&mut mistyped);
    unknown_keys.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
    Parsed::Invalid(unknown_keys)
}

fn diagnostic(source: &str, error: &toml::de::Error) -> Diagnostic {
    let offset = error.span().map_or(0, |span| span.start);
    Diagnostic::at(source, offset, core_message(error.message()))
}

/// Removes the entry whose key or value starts at byte `start` (or the array element that
/// does), looking at the innermost tables first so an error inside a table never removes
/// the table itself. Some(where the table it was removed from starts; None for the top
/// level, whose start is `table_start`), or None when nothing starts there.
fn remove_at(
    table: &mut DeTable<'_>,
    table_start: Option<usize>,
    start: usize,
) -> Option<Option<usize>> {
    for (_, value) in table.iter_mut() {
        let value_start = value.span().start;
        if let Some(found) = remove_in_value(value.get_mut(), value_start, start) {
            return Some(found);
        }
    }
    let key = table
        .iter()
        .find(|(key, value)| key.span().start == start || value.span().start == start)
        .map(|(key, _)| key.clone())?;
    table.remove(&key).map(|_| table_start)
}

fn remove_in_value(
    value: &mut DeValue<'_>,
    value_start: usize,
    start: usize,
) -> Option<Option<usize>> {
    match value {
        DeValue::Table(table) => remove_at(table, Some(value_start), start),
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                let item_start = item.span().start;
                if let Some(found) = remove_in_value(item.get_mut(), item_start, start) {
                    return Some(found);
                }
            }
            let before = items.len();
            *items = std::mem::replace(items, DeArray::new())
                .into_iter()
                .filter(|item| item.span().start != start)
                .collect();
            (items.len() < before).then_some(Some(value_start))
        }
        _ => None,
    }
}

/// toml's messages are already one line; keep only the first in case that changes, so a
/// diagnostic stays `file:line:column: message`.
fn core_message(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    pub seed: Option<u64>,
    pub time_scale: Option<Spanned<f64>>,
    pub target: Option<Spanned<RawTarget>>,
    pub load: Option<Spanned<RawLoad>>,
    pub calls: Option<RawCalls>,
    pub scripts: Option<Spanned<Vec<Spanned<RawScript>>>>,
    pub slo: Option<RawSlo>,
    pub faults: Option<Spanned<Vec<Spanned<RawFault>>>>,
    pub chaos: Option<Spanned<RawChaos>>,
    pub abort: Option<Spanned<RawAbort>>,
    pub observe: Option<Spanned<RawObserve>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub fleet: Option<Spanned<String>>,
    pub reply_delay: Option<RawValue>,
    pub reply_length: Option<RawValue>,
    pub stream_url: Option<Spanned<String>>,
    pub webhook_url: Option<Spanned<String>>,
    pub auth_token_env: Option<Spanned<String>>,
    pub custom_parameters: Option<Spanned<BTreeMap<String, String>>>,
    pub allow_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    // fleet = "embedded" only:
    pub bugs: Option<Spanned<Vec<Spanned<String>>>>,
    pub database_url_env: Option<Spanned<String>>,
    pub db_pool_size: Option<Spanned<i64>>,
    pub orders: Option<Spanned<i64>>,
    pub workers: Option<Spanned<i64>>,
    pub stall_after: Option<RawValue>,
    pub stall_after_calls: Option<Spanned<i64>>,
    pub memory_limit: Option<RawValue>,
    pub temp_dir_budget: Option<RawValue>,
}

impl RawTarget {
    /// The keys only `fleet = "embedded"` takes, with their spans, in file-format order.
    pub(super) fn embedded_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        [
            ("bugs", self.bugs.as_ref().map(Spanned::span)),
            (
                "database_url_env",
                self.database_url_env.as_ref().map(Spanned::span),
            ),
            (
                "db_pool_size",
                self.db_pool_size.as_ref().map(Spanned::span),
            ),
            ("orders", self.orders.as_ref().map(Spanned::span)),
            ("workers", self.workers.as_ref().map(Spanned::span)),
            ("stall_after", self.stall_after.as_ref().map(Spanned::span)),
            (
                "stall_after_calls",
                self.stall_after_calls.as_ref().map(Spanned::span),
            ),
            (
                "memory_limit",
                self.memory_limit.as_ref().map(Spanned::span),
            ),
            (
                "temp_dir_budget",
                self.temp_dir_budget.as_ref().map(Spanned::span),
            ),
        ]
        .into_iter()
        .filter_map(|(key, span)| span.map(|span| (key, span)))
        .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    pub stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
    pub calls_per_minute: Option<Spanned<f64>>,
    pub duration: Option<RawValue>,
    pub arrivals: Option<Spanned<String>>,
    pub max_concurrent: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub ramp_to: Option<Spanned<i64>>,
    pub over: Option<RawValue>,
    pub hold: Option<RawValue>,
    pub diurnal: Option<RawValue>,
    pub base: Option<Spanned<i64>>,
    pub peak: Option<Spanned<i64>>,
    pub trough: Option<Spanned<i64>>,
    pub spike_to: Option<Spanned<i64>>,
    #[serde(rename = "for")]
    pub spike_for: Option<RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalls {
    pub connect_timeout: Option<RawValue>,
    pub turn_timeout: Option<RawValue>,
    pub reply_silence: Option<RawValue>,
    pub wait_for_greeting: Option<bool>,
    pub max_call_duration: Option<RawValue>,
    pub fleet_may_hang_up: Option<Spanned<String>>,
    pub fixtures: Option<Vec<Spanned<String>>>,
    pub synthetic: Option<Spanned<RawSynthetic>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSynthetic {
    pub count: Option<Spanned<i64>>,
    pub min: Option<RawValue>,
    pub max: Option<RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScript {
    pub name: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub turns: Option<Spanned<RawTurns>>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
}

/// `turns = 3` or `turns = { min = 2, max = 4 }`. Written by hand rather than as an
/// untagged enum so unknown keys in the table still get their own position.
#[derive(Debug)]
pub(super) enum RawTurns {
    Exactly(i64),
    Range(RawTurnRange),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTurnRange {
    pub min: Option<Spanned<i64>>,
    pub max: Option<Spanned<i64>>,
}

impl<'de> Deserialize<'de> for RawTurns {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TurnsVisitor;

        impl<'de> Visitor<'de> for TurnsVisitor {
            type Value = RawTurns;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of turns such as 3, or { min = 2, max = 4 }")
            }

            fn visit_i64<E: de::Error>(self, turns: i64) -> Result<RawTurns, E> {
                Ok(RawTurns::Exactly(turns))
            }

            fn visit_u64<E: de::Error>(self, turns: u64) -> Result<RawTurns, E> {
                Ok(RawTurns::Exactly(i64::try_from(turns).unwrap_or(i64::MAX)))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTurns, A::Error> {
                RawTurnRange::deserialize(MapAccessDeserializer::new(map)).map(RawTurns::Range)
            }
        }

        deserializer.deserialize_any(TurnsVisitor)
    }
}

/// One step; which keys may be combined is checked in phase 2 so the message can say why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub say: Option<Spanned<String>>,
    pub dtmf: Option<Spanned<String>>,
    pub pause: Option<RawValue>,
    pub hangup: Option<Spanned<bool>>,
    pub listen: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    pub call_success: Option<RawValue>,
    pub response_p95: Option<RawValue>,
    pub response_p99: Option<RawValue>,
    pub first_audio_p95: Option<RawValue>,
    pub pacing_jitter_p99: Option<RawValue>,
    pub detect_within: Option<RawValue>,
    pub no_retry_storm: Option<Spanned<bool>>,
    pub recover_within: Option<RawValue>,
    pub stable_window: Option<RawValue>,
    pub uptime: Option<RawValue>,
    pub memory_growth: Option<RawValue>,
    pub temp_dir_growth: Option<RawValue>,
    pub max_crashes: Option<RawValue>,
    pub no_unprovoked_alerts: Option<Spanned<bool>>,
}

/// One `[[faults]]` entry. Every kind's parameters are listed here; phase 2 refuses the
/// ones its kind does not take, with the kind in the message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub kind: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub at: Option<RawValue>,
    #[serde(rename = "for")]
    pub duration: Option<RawValue>,
    pub every: Option<RawValue>,
    pub every_jitter: Option<RawValue>,
    pub detect: Option<RawValue>,
    pub recover_from: Option<Spanned<String>>,
    // Stand-ins (tts_*, llm_*, *_tool_params).
    pub fraction: Option<RawValue>,
    pub retry_after: Option<RawValue>,
    pub code: Option<Spanned<i64>>,
    pub delay: Option<RawValue>,
    pub variant: Option<Spanned<String>>,
    pub bytes: Option<Spanned<i64>>,
    pub tool: Option<Spanned<String>>,
    // db_pool_exhaustion
    pub method: Option<Spanned<String>>,
    pub holders: Option<Spanned<i64>>,
    pub leave: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub database_url_env: Option<Spanned<String>>,
    // temp_file_leak
    pub file_size: Option<RawValue>,
    pub rate: Option<RawValue>,
    pub max_total: Option<RawValue>,
    pub dir: Option<Spanned<String>>,
    pub min_free: Option<RawValue>,
    // proxy
    pub upstream: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub latency: Option<RawValue>,
    pub jitter: Option<RawValue>,
    pub bandwidth: Option<RawValue>,
    pub stall: Option<Spanned<bool>>,
    pub reset: Option<Spanned<bool>>,
    pub slice_size: Option<Spanned<i64>>,
    pub slice_delay: Option<RawValue>,
    pub down: Option<Spanned<bool>>,
    pub toxicity: Option<RawValue>,
}

impl RawFault {
    /// The kind-specific keys present, with their spans, in file-format order.
    pub(super) fn parameter_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        fn span<T>(value: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
            value.as_ref().map(Spanned::span)
        }
        [
            ("fraction", span(&self.fraction)),
            ("retry_after", span(&self.retry_after)),
            ("code", span(&self.code)),
            ("delay", span(&self.delay)),
            ("variant", span(&self.variant)),
            ("bytes", span(&self.bytes)),
            ("tool", span(&self.tool)),
            ("method", span(&self.method)),
            ("holders", span(&self.holders)),
            ("leave", span(&self.leave)),
            ("max_connections", span(&self.max_connections)),
            ("database_url_env", span(&self.database_url_env)),
            ("file_size", span(&self.file_size)),
            ("rate", span(&self.rate)),
            ("max_total", span(&self.max_total)),
            ("dir", span(&self.dir)),
            ("min_free", span(&self.min_free)),
            ("upstream", span(&self.upstream)),
            ("listen", span(&self.listen)),
            ("latency", span(&self.latency)),
            ("jitter", span(&self.jitter)),
            ("bandwidth", span(&self.bandwidth)),
            ("stall", span(&self.stall)),
            ("reset", span(&self.reset)),
            ("slice_size", span(&self.slice_size)),
            ("slice_delay", span(&self.slice_delay)),
            ("down", span(&self.down)),
            ("toxicity", span(&self.toxicity)),
        ]
        .into_iter()
        .filter_map(|(key, span)| span.map(|span| (key, span)))
        .collect()
    }
}

/// `[chaos]`: where the stand-ins listen (an external fleet must be pointed at them), and
/// where faults may write.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChaos {
    pub tts_listen: Option<Spanned<String>>,
    pub llm_listen: Option<Spanned<String>>,
    pub confirm_within: Option<RawValue>,
    pub writable_dirs: Option<Spanned<Vec<Spanned<String>>>>,
    pub allow_large_leaks: Option<Spanned<bool>>,
}

/// `[abort]`: when chaos stops at once and the run ends as aborted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAbort {
    pub call_success_below: Option<RawValue>,
    pub over: Option<RawValue>,
    pub min_calls: Option<Spanned<i64>>,
    pub kill_switch_file: Option<Spanned<String>>,
    pub kill_switch_listen: Option<Spanned<String>>,
}

/// `[observe]`: where and how often the observers watch the fleet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawObserve {
    pub health_url: Option<Spanned<String>>,
    pub health_interval: Option<RawValue>,
    pub health_timeout: Option<RawValue>,
    pub metrics_url: Option<Spanned<String>>,
    pub scrape_interval: Option<RawValue>,
    pub record: Option<Spanned<Vec<Spanned<String>>>>,
    pub alerts_listen: Option<Spanned<String>>,
    pub temp_dir: Option<Spanned<String>>,
    pub temp_dir_interval: Option<RawValue>,
    pub log_file: Option<Spanned<String>>,
    pub rss_metric: Option<Spanned<String>>,
    pub temp_dir_metric: Option<Spanned<String>>,
    pub process: Option<Spanned<RawProcessWatch>>,
}

/// `[observe] process = { pid_file = "…" }` or `{ health = true }`; which one is checked in
/// phase 2.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = r#"a table such as { pid_file = "/run/fleet.pid" } or { health = true }"#
)]
pub(super) struct RawProcessWatch {
    pub pid_file: Option<Spanned<String>>,
    pub health: Option<Spanned<bool>>,
}

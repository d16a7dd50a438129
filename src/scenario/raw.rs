//! Phase 1: serde types that mirror the file. They only reject what serde can see (unknown
//! keys, wrong TOML types); every value phase 2 checks keeps its span so its diagnostic can
//! point at it. Values whose type phase 2 wants to explain itself (durations, thresholds)
//! are kept as [`toml::Value`].
//!
//! serde stops at the first error it meets (`deny_unknown_fields` included), so one pass
//! would show one mistake at a time. [`document`] parses each file once, with the TOML
//! parser's own error recovery for syntax; `compose` merges the files' documents; [`parse`]
//! then deserializes the result again and again, each time without the key or value the
//! previous error was about, until it deserializes cleanly: every unknown key and every
//! wrongly typed value is reported, each with its position, and serde's messages (with the
//! keys a table takes) are kept.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::{Diagnostic, schema};

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

/// Parses one file's TOML text, `file` of the composed `source` (see `compose`): the
/// document with spans in `source`, or every syntax error (the first on each line), each at
/// its position in `source`.
pub(super) fn document<'s>(
    source: &'s str,
    file: std::ops::Range<usize>,
) -> Result<Spanned<DeTable<'s>>, Vec<Diagnostic>> {
    let (document, syntax) = DeTable::parse_recoverable(&source[file.clone()]);
    if syntax.is_empty() {
        return Ok(document);
    }
    let mut found: Vec<Diagnostic> = syntax
        .iter()
        .map(|error| {
            let offset = file.start + error.span().map_or(0, |span| span.start);
            Diagnostic::at(source, offset, core_message(error.message()))
        })
        .collect();
    found.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
    // The parser's recovery can stumble again on the rest of a broken line; its first
    // error there is the one to fix.
    found.dedup_by_key(|diagnostic| diagnostic.line);
    found.truncate(MAX_PROBLEMS);
    Err(found)
}

/// Deserializes the (composed) document into raw types, finding every unknown key and
/// wrongly typed value in one go; `source` is the text its spans are in.
pub(super) fn parse(source: &str, mut document: Spanned<DeTable<'_>>) -> Parsed {
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

// The types below are also the scenario's JSON Schema (`schema.rs`): their doc comments
// are what an editor shows on hover, so they speak to whoever writes a scenario.
// `#[schemars(with = …)]` gives the plain value for a `Spanned` one, and what a
// `RawValue` may be.

/// A voxsoak scenario file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    /// Shown in plans and reports; default: the file name without its extension.
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// Shown by `voxsoak plan`.
    pub description: Option<String>,
    /// Seeds everything random about a run (default 1); `--seed` overrides it.
    pub seed: Option<u64>,
    /// Run the schedule this many times faster than written (1 to 10000, default 1): load
    /// stages, arrivals and fault times; calls and SLOs stay in real time. `--time-scale`
    /// overrides it.
    #[schemars(with = "Option<f64>", range(min = 1.0, max = 10000.0))]
    pub time_scale: Option<Spanned<f64>>,
    /// Rewrite the run directory's reports from the journal this often while the run goes
    /// on (real time; default 15m, "0s": only at the end). `--report-every` overrides it.
    #[schemars(with = "Option<schema::Duration>")]
    pub report_every: Option<RawValue>,
    /// Serve the harness's own metrics (Prometheus text, GET /metrics) here while the run
    /// goes on, "127.0.0.1:PORT" (port 0: a free one, printed at the start); on loopback
    /// unless [target] allow_hosts names its address. `--metrics-listen` overrides it.
    #[schemars(with = "Option<String>")]
    pub metrics_listen: Option<Spanned<String>>,
    /// The fleet under test: exactly one of `fleet`, `stream_url` or `webhook_url`.
    /// Required, in this file or one it includes.
    #[schemars(with = "Option<RawTarget>")]
    pub target: Option<Spanned<RawTarget>>,
    /// The load: `stages` (target concurrency over time) or `calls_per_minute` (arrival
    /// rate). Required, in this file or one it includes.
    #[schemars(with = "Option<RawLoad>")]
    pub load: Option<Spanned<RawLoad>>,
    /// How each call behaves (timeouts, fixtures, caller numbers).
    pub calls: Option<RawCalls>,
    /// What callers do; default: one script "conversation" of 2 to 3 turns.
    #[schemars(with = "Option<Vec<RawScript>>")]
    pub scripts: Option<Spanned<Vec<Spanned<RawScript>>>>,
    /// The service levels the run is graded against; default: call_success = ">= 99%".
    pub slo: Option<RawSlo>,
    /// Faults to inject: what, when, for how long, and which fleet signal detects it.
    #[schemars(with = "Option<schema::FaultEntries>")]
    pub faults: Option<Spanned<Vec<Spanned<RawFault>>>>,
    /// Where the stand-ins listen, and where faults may write.
    #[schemars(with = "Option<RawChaos>")]
    pub chaos: Option<Spanned<RawChaos>>,
    /// When chaos stops at once and the run ends early: an abort condition on the
    /// fleet's calls grades it `fail` (exit 1, the condition as its reason), the kill
    /// switch `aborted` (exit 2).
    #[schemars(with = "Option<RawAbort>")]
    pub abort: Option<Spanned<RawAbort>>,
    /// Where and how often the observers watch the fleet.
    #[schemars(with = "Option<RawObserve>")]
    pub observe: Option<Spanned<RawObserve>>,
    /// Files merged under this one, relative to it: tables merge key by key, this file's
    /// values win, and [[faults]], [[scripts]] and [[slo.metric]] entries are appended
    /// after the included files' (see `voxsoak::scenario`, "Composing scenarios").
    #[expect(
        dead_code,
        reason = "compose reads it and takes it out of the document: here for the schema"
    )]
    pub include: Option<Vec<String>>,
}

/// `[target]`: the fleet under test.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    /// A fleet the harness starts itself: "sink" (`voxsoak sink`) or "embedded" (the
    /// reference fleet, `voxsoak fleet`).
    #[schemars(with = "Option<schema::FleetName>")]
    pub fleet: Option<Spanned<String>>,
    /// fleet = "sink" only (default 600ms): end of caller speech to the sink's reply.
    #[schemars(with = "Option<schema::Duration>")]
    pub reply_delay: Option<RawValue>,
    /// fleet = "sink" only (default 800ms): length of each sink reply.
    #[schemars(with = "Option<schema::Duration>")]
    pub reply_length: Option<RawValue>,
    /// An external fleet's media stream, ws:// or wss://, connected to directly.
    #[schemars(with = "Option<String>")]
    pub stream_url: Option<Spanned<String>>,
    /// An external fleet's voice webhook, http:// or https://; the harness POSTs it and
    /// follows `<Connect><Stream>`.
    #[schemars(with = "Option<String>")]
    pub webhook_url: Option<Spanned<String>>,
    /// External fleets: the NAME of the environment variable holding the auth token
    /// requests are signed with; never the secret itself.
    #[schemars(with = "Option<String>")]
    pub auth_token_env: Option<Spanned<String>>,
    /// stream_url only: the stream's `start.customParameters`.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub custom_parameters: Option<Spanned<BTreeMap<String, String>>>,
    /// The hosts the fleet and its URLs may be on; default: loopback only.
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    // fleet = "embedded" only:
    /// fleet = "embedded" only: production bugs to switch on.
    #[schemars(with = "Option<Vec<schema::BugName>>")]
    pub bugs: Option<Spanned<Vec<Spanned<String>>>>,
    /// fleet = "embedded" only: the NAME of the environment variable holding a
    /// postgres:// URL; default: a SQLite file in the run's temp dir.
    #[schemars(with = "Option<String>")]
    pub database_url_env: Option<Spanned<String>>,
    /// fleet = "embedded" only: connections in the fleet's database pool (default 10).
    #[schemars(with = "Option<i64>", range(min = 1, max = 1000))]
    pub db_pool_size: Option<Spanned<i64>>,
    /// fleet = "embedded" only: rows seeded into `orders` before it listens.
    #[schemars(with = "Option<i64>", range(min = 1, max = 50_000_000))]
    pub orders: Option<Spanned<i64>>,
    /// fleet = "embedded" only: workers serving agent turns (default 8).
    #[schemars(with = "Option<i64>", range(min = 1, max = 1000))]
    pub workers: Option<Spanned<i64>>,
    /// fleet = "embedded" only: the healer restarts a worker silent for this long.
    #[schemars(with = "Option<schema::Duration>")]
    pub stall_after: Option<RawValue>,
    /// fleet = "embedded" only: with bugs = ["silent-stall"], jobs before a worker stalls.
    #[schemars(with = "Option<i64>", range(min = 1, max = 1_000_000))]
    pub stall_after_calls: Option<Spanned<i64>>,
    /// fleet = "embedded" only (at least 16MiB): the fleet SIGKILLs itself above this RSS,
    /// like an OOM-killed pod; default none.
    #[schemars(with = "Option<schema::ByteSize>")]
    pub memory_limit: Option<RawValue>,
    /// fleet = "embedded" only: temp dir size above which /health is 503.
    #[schemars(with = "Option<schema::ByteSize>")]
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

/// `[load]`: `stages` (closed model) or `calls_per_minute` (open model).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    /// Closed model: target concurrency over time, from 0, e.g.
    /// [{ ramp_to = 50, over = "5s" }, { hold = "20s" }].
    #[schemars(with = "Option<Vec<RawStage>>")]
    pub stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
    /// Open model: calls started per minute (needs `duration`).
    #[schemars(with = "Option<f64>", range(min = 0.001, max = 6_000_000.0))]
    pub calls_per_minute: Option<Spanned<f64>>,
    /// With calls_per_minute: how long calls keep arriving.
    #[schemars(with = "Option<schema::Duration>")]
    pub duration: Option<RawValue>,
    /// With calls_per_minute: "uniform" (default) or "poisson".
    #[schemars(with = "Option<schema::Arrivals>")]
    pub arrivals: Option<Spanned<String>>,
    /// With calls_per_minute (default 10000): calls over the cap are dropped (counted),
    /// never delayed.
    #[schemars(with = "Option<i64>", range(min = 1, max = 1_000_000))]
    pub max_concurrent: Option<Spanned<i64>>,
}

/// A stage: `{ ramp_to = N, over = "D" }`, `{ hold = "D" }`, `{ diurnal = "D", base = N }`
/// or `{ spike_to = N, for = "D" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    /// Concurrency reached at the end of the stage, linearly from the previous level.
    #[schemars(with = "Option<i64>", range(min = 0, max = 1_000_000))]
    pub ramp_to: Option<Spanned<i64>>,
    /// How long the ramp takes.
    #[schemars(with = "Option<schema::Duration>")]
    pub over: Option<RawValue>,
    /// Keep the previous level this long.
    #[schemars(with = "Option<schema::Duration>")]
    pub hold: Option<RawValue>,
    /// A day of load from midnight this long (longer repeats the day): night trough,
    /// `base` by 07:00, `peak` 08:00-10:00, `base` until 18:00, down by midnight.
    #[schemars(with = "Option<schema::Duration>")]
    pub diurnal: Option<RawValue>,
    /// The diurnal day's level (concurrent calls).
    #[schemars(with = "Option<i64>", range(min = 1, max = 1_000_000))]
    pub base: Option<Spanned<i64>>,
    /// The diurnal morning peak (default 3x base).
    #[schemars(with = "Option<i64>", range(min = 0, max = 1_000_000))]
    pub peak: Option<Spanned<i64>>,
    /// The diurnal night level (default a quarter of base, at least 1).
    #[schemars(with = "Option<i64>", range(min = 0, max = 1_000_000))]
    pub trough: Option<Spanned<i64>>,
    /// Jump to this level for `for`, then back to the level before.
    #[schemars(with = "Option<i64>", range(min = 0, max = 1_000_000))]
    pub spike_to: Option<Spanned<i64>>,
    /// How long a spike lasts.
    #[serde(rename = "for")]
    #[schemars(with = "Option<schema::Duration>")]
    pub spike_for: Option<RawValue>,
}

/// `[calls]`: how each call behaves.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalls {
    /// Default 5s.
    #[schemars(with = "Option<schema::Duration>")]
    pub connect_timeout: Option<RawValue>,
    /// Longest wait for the agent to START replying (default 10s).
    #[schemars(with = "Option<schema::Duration>")]
    pub turn_timeout: Option<RawValue>,
    /// A reply is over after this much silence, or a mark (default 1.5s).
    #[schemars(with = "Option<schema::Duration>")]
    pub reply_silence: Option<RawValue>,
    /// Listen for the agent's greeting before the first step (default false).
    pub wait_for_greeting: Option<bool>,
    /// Hard stop per call (default 10m).
    #[schemars(with = "Option<schema::Duration>")]
    pub max_call_duration: Option<RawValue>,
    /// When a WebSocket close from the fleet ends a call well: "never" (default),
    /// "after_last_turn" or "any".
    #[schemars(with = "Option<schema::HangUp>")]
    pub fleet_may_hang_up: Option<Spanned<String>>,
    /// WAV files: paths or globs relative to this file's directory; none: synthetic
    /// speech only.
    #[schemars(with = "Option<Vec<String>>")]
    pub fixtures: Option<Vec<Spanned<String>>>,
    /// Seeded synthetic utterances (default { count = 8, min = "1s", max = "2.5s" }).
    #[schemars(with = "Option<RawSynthetic>")]
    pub synthetic: Option<Spanned<RawSynthetic>>,
    /// The caller's number (default "+15005550006").
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    /// The number called (default "+15005550001").
    #[schemars(with = "Option<String>")]
    pub to: Option<Spanned<String>>,
}

/// The pool of synthetic utterances.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSynthetic {
    /// How many utterances (default 8).
    #[schemars(with = "Option<i64>", range(min = 1, max = 1000))]
    pub count: Option<Spanned<i64>>,
    /// Shortest utterance (default 1s).
    #[schemars(with = "Option<schema::Duration>")]
    pub min: Option<RawValue>,
    /// Longest utterance (default 2.5s, at most 60s).
    #[schemars(with = "Option<schema::Duration>")]
    pub max: Option<RawValue>,
}

/// `[[scripts]]`: what a caller does.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScript {
    /// Unique.
    #[schemars(with = "String")]
    pub name: Option<Spanned<String>>,
    /// Relative share of calls (default 1).
    #[schemars(with = "Option<i64>", range(min = 1, max = 1_000_000))]
    pub weight: Option<Spanned<i64>>,
    /// `turns = 3` or `turns = { min = 2, max = 4 }`; a turn is say "random", then
    /// listen. `turns` or `steps`, not both.
    #[schemars(with = "Option<RawTurns>")]
    pub turns: Option<Spanned<RawTurns>>,
    /// The caller's steps, in order. `turns` or `steps`, not both.
    #[schemars(with = "Option<Vec<RawStep>>")]
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
}

/// `turns = 3` or `turns = { min = 2, max = 4 }`. Written by hand rather than as an
/// untagged enum so unknown keys in the table still get their own position.
#[derive(Debug)]
pub(super) enum RawTurns {
    Exactly(i64),
    Range(RawTurnRange),
}

/// A random number of turns in `min..=max`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTurnRange {
    #[schemars(with = "i64", range(min = 1, max = 1000))]
    pub min: Option<Spanned<i64>>,
    #[schemars(with = "i64", range(min = 1, max = 1000))]
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

/// One step: one of `say`, `dtmf`, `pause` or `hangup`.
// Which keys may be combined is checked in phase 2 so the message can say why.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    /// A fixture by file stem, "random" or "synthetic"; listens afterwards unless
    /// listen = false.
    #[schemars(with = "Option<String>")]
    pub say: Option<Spanned<String>>,
    /// Digits 0-9 * # A-D; listens afterwards unless listen = false.
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9*#A-Da-d]+$"))]
    pub dtmf: Option<Spanned<String>>,
    /// The caller stays silent this long.
    #[schemars(with = "Option<schema::Duration>")]
    pub pause: Option<RawValue>,
    /// The caller hangs up; must be the last step.
    #[schemars(with = "Option<bool>")]
    pub hangup: Option<Spanned<bool>>,
    /// With say or dtmf: whether to listen for the agent's reply afterwards (default true).
    #[schemars(with = "Option<bool>")]
    pub listen: Option<Spanned<bool>>,
}

/// `[slo]`: the service levels the run is graded against.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    /// Share of calls completed, always checked (default ">= 99%"; ">= 0%" switches it off).
    #[schemars(with = "Option<schema::AtLeastPercent>")]
    pub call_success: Option<RawValue>,
    /// End of caller speech to first agent audio, 95th percentile.
    #[schemars(with = "Option<schema::LatencyThreshold>")]
    pub response_p95: Option<RawValue>,
    /// End of caller speech to first agent audio, 99th percentile.
    #[schemars(with = "Option<schema::LatencyThreshold>")]
    pub response_p99: Option<RawValue>,
    /// Connect to first agent audio, 95th percentile.
    #[schemars(with = "Option<schema::LatencyThreshold>")]
    pub first_audio_p95: Option<RawValue>,
    /// The harness's own media pacing, 99th percentile.
    #[schemars(with = "Option<schema::LatencyThreshold>")]
    pub pacing_jitter_p99: Option<RawValue>,
    /// Every injected fault detected within this.
    #[schemars(with = "Option<schema::LatencyThreshold>")]
    pub detect_within: Option<RawValue>,
    /// TTS retries back off or jitter, and Retry-After is honoured.
    #[schemars(with = "Option<bool>")]
    pub no_retry_storm: Option<Spanned<bool>>,
    /// Every fault recovered from within this: from its clear (or injection, see
    /// recover_from) until the steady state holds for stable_window.
    #[schemars(with = "Option<schema::LatencyThreshold>")]
    pub recover_within: Option<RawValue>,
    /// How long the steady state must hold to count as recovered (at least 1s).
    #[schemars(with = "Option<schema::Duration>")]
    pub stable_window: Option<RawValue>,
    /// Healthy share of probed time outside fault windows.
    #[schemars(with = "Option<schema::AtLeastPercent>")]
    pub uptime: Option<RawValue>,
    /// Fleet RSS slope after warm-up.
    #[schemars(with = "Option<schema::GrowthThreshold>")]
    pub memory_growth: Option<RawValue>,
    /// The fleet's temp-dir growth, the harness's own leaked files left out.
    #[schemars(with = "Option<schema::GrowthThreshold>")]
    pub temp_dir_growth: Option<RawValue>,
    /// Most fleet exits the harness did not cause.
    #[schemars(with = "Option<u64>")]
    pub max_crashes: Option<RawValue>,
    /// No alert fires with no fault in effect.
    #[schemars(with = "Option<bool>")]
    pub no_unprovoked_alerts: Option<Spanned<bool>>,
    /// SLOs on the fleet's own series (`[[slo.metric]]`), each with a name, a series and
    /// one or more of max, min, growth_per_h, rate_max.
    #[schemars(with = "Option<Vec<RawMetricSlo>>")]
    pub metric: Option<Spanned<Vec<Spanned<RawMetricSlo>>>>,
}

/// `[[slo.metric]]`: bounds on one of the fleet's scraped series.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetricSlo {
    /// The SLO's name in reports: unique, not a built-in SLO's; letters, digits, _ - .
    #[schemars(with = "String", regex(pattern = r"^[A-Za-z0-9_.-]{1,64}$"))]
    pub name: Option<Spanned<String>>,
    /// A series as `[observe] record` takes it, e.g. 'dead_letters' or
    /// 'tts_requests_total{status="429"}' (matching samples summed).
    #[schemars(with = "String")]
    pub series: Option<Spanned<String>>,
    /// Most value at any journaled sample.
    #[schemars(with = "Option<f64>")]
    pub max: Option<RawValue>,
    /// Least value after the warm-up (with during = "spike": in the spike stages).
    #[schemars(with = "Option<f64>")]
    pub min: Option<RawValue>,
    /// With min: "spike", only during the load's spike stages.
    #[schemars(with = "Option<schema::MinDuring>")]
    pub during: Option<Spanned<String>>,
    /// Most least-squares growth per hour (real time) after the warm-up.
    #[schemars(with = "Option<f64>")]
    pub growth_per_h: Option<RawValue>,
    /// Most per-second rate of increase over `window` (counters; resets allowed for).
    #[schemars(with = "Option<f64>", range(min = 0.0))]
    pub rate_max: Option<RawValue>,
    /// With rate_max: the window the rate is taken over (default 1m, at least 20s).
    #[schemars(with = "Option<schema::Duration>")]
    pub window: Option<RawValue>,
}

/// A `[[faults]]` entry: its `kind`, when and for how long, and the kind's parameters.
// Every kind's parameters are listed here; phase 2 refuses the ones its kind does not
// take, with the kind in the message. The schema gives each kind only its own
// (`schema::FaultEntries`, from the registry).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    /// The fault kind.
    #[schemars(with = "Option<String>")]
    pub kind: Option<Spanned<String>>,
    /// Unique; default: the kind (numbered when it repeats).
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// First injection, from the start of the run (default 0s).
    #[schemars(with = "Option<schema::Duration>")]
    pub at: Option<RawValue>,
    /// How long each injection lasts (more than 0).
    #[serde(rename = "for")]
    #[schemars(with = "Option<schema::Duration>")]
    pub duration: Option<RawValue>,
    /// Inject again this often; longer than for + 2 × every_jitter + 1s.
    #[schemars(with = "Option<schema::Duration>")]
    pub every: Option<RawValue>,
    /// With every: each injection moves by a seeded draw in -jitter..=jitter.
    #[schemars(with = "Option<schema::Duration>")]
    pub every_jitter: Option<RawValue>,
    /// The fleet signal(s) that count as detecting the fault; default per kind.
    #[schemars(with = "Option<schema::Detect>")]
    pub detect: Option<RawValue>,
    /// Where time to recover counts from: "clear" or "injection" (default per kind).
    #[schemars(with = "Option<super::faults::RecoverFrom>")]
    pub recover_from: Option<Spanned<String>>,
    // Stand-ins (tts_*, llm_*, *_tool_params).
    /// Share of requests faulted (default 1).
    #[schemars(with = "Option<schema::Fraction>")]
    pub fraction: Option<RawValue>,
    /// The Retry-After sent with a 429; none by default.
    #[schemars(with = "Option<schema::Duration>")]
    pub retry_after: Option<RawValue>,
    /// The status answered: 500..=599 for tts_error (default 503), 400..=599 for
    /// llm_error (default 500).
    #[schemars(with = "Option<i64>", range(min = 400, max = 599))]
    pub code: Option<Spanned<i64>>,
    /// How late every answer comes.
    #[schemars(with = "Option<schema::Duration>")]
    pub delay: Option<RawValue>,
    /// How the tool call is malformed (default "missing_required").
    #[schemars(with = "Option<schema::MalformedVariant>")]
    pub variant: Option<Spanned<String>>,
    /// variant = "oversized": bytes of each oversized value (default 1MiB).
    #[schemars(with = "Option<i64>", range(min = 1, max = 3_145_728))]
    pub bytes: Option<Spanned<i64>>,
    /// variant = "unknown_tool": the tool named (default "delete_all_orders").
    #[schemars(with = "Option<String>")]
    pub tool: Option<Spanned<String>>,
    // db_pool_exhaustion
    /// "hold_locks" (default: transactions hold the locks the fleet's queries need) or
    /// "take_slots" (take the server's connection slots; PostgreSQL only).
    #[schemars(with = "Option<schema::DbMethod>")]
    pub method: Option<Spanned<String>>,
    /// hold_locks: transactions holding locks.
    #[schemars(with = "Option<i64>", range(min = 1, max = 1000))]
    pub holders: Option<Spanned<i64>>,
    /// take_slots: connection slots left free (default 0).
    #[schemars(with = "Option<i64>", range(min = 0, max = 10_000))]
    pub leave: Option<Spanned<i64>>,
    /// take_slots: most connections taken.
    #[schemars(with = "Option<i64>", range(min = 1, max = 10_000))]
    pub max_connections: Option<Spanned<i64>>,
    /// External fleets: the NAME of the environment variable holding the fleet's
    /// database URL.
    #[schemars(with = "Option<String>")]
    pub database_url_env: Option<Spanned<String>>,
    // temp_file_leak
    /// Size of each leaked file (default 1MiB, at most 1GiB).
    #[schemars(with = "Option<schema::ByteSize>")]
    pub file_size: Option<RawValue>,
    /// Bytes leaked per second (default 4MiB/s).
    #[schemars(with = "Option<schema::ByteRate>")]
    pub rate: Option<RawValue>,
    /// Most bytes leaked per injection (default 1GiB; over 10GiB only with [chaos]
    /// allow_large_leaks).
    #[schemars(with = "Option<schema::ByteSize>")]
    pub max_total: Option<RawValue>,
    /// Where to leak: [observe] temp_dir, a [chaos] writable_dirs entry or below one;
    /// default: the embedded fleet's temp dir.
    #[schemars(with = "Option<String>")]
    pub dir: Option<Spanned<String>>,
    /// Free space to leave on the dir's filesystem (default 5% or 2GiB, whichever is
    /// larger).
    #[schemars(with = "Option<schema::FreeSpace>")]
    pub min_free: Option<RawValue>,
    // proxy
    /// What the proxy stands in front of: "tts", "llm" or "host:port" (on allow_hosts).
    #[schemars(with = "Option<schema::Upstream>")]
    pub upstream: Option<Spanned<String>>,
    /// host:port upstreams: where the proxy listens, "127.0.0.1:PORT"; the fleet must be
    /// pointed at it.
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
    /// Toxic: added latency.
    #[schemars(with = "Option<schema::Duration>")]
    pub latency: Option<RawValue>,
    /// Toxic: latency varies by up to this.
    #[schemars(with = "Option<schema::Duration>")]
    pub jitter: Option<RawValue>,
    /// Toxic: bytes per second, each direction.
    #[schemars(with = "Option<schema::ByteRate>")]
    pub bandwidth: Option<RawValue>,
    /// Toxic: connections stall (no bytes pass).
    #[schemars(with = "Option<bool>")]
    pub stall: Option<Spanned<bool>>,
    /// Toxic: connections are reset.
    #[schemars(with = "Option<bool>")]
    pub reset: Option<Spanned<bool>>,
    /// Toxic: data passes in slices of this many bytes, slice_delay apart.
    #[schemars(with = "Option<i64>", range(min = 1, max = 1_048_576))]
    pub slice_size: Option<Spanned<i64>>,
    /// With slice_size: the pause between slices.
    #[schemars(with = "Option<schema::Duration>")]
    pub slice_delay: Option<RawValue>,
    /// Toxic: the dependency is down (connections refused).
    #[schemars(with = "Option<bool>")]
    pub down: Option<Spanned<bool>>,
    /// Share of connections affected (default 1).
    #[schemars(with = "Option<schema::Fraction>")]
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
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChaos {
    /// Where the TTS stand-in listens, "127.0.0.1:PORT" (loopback only); needed for TTS
    /// faults against an external fleet.
    #[schemars(with = "Option<String>")]
    pub tts_listen: Option<Spanned<String>>,
    /// Where the LLM stand-in listens, "127.0.0.1:PORT" (loopback only); needed for LLM
    /// faults against an external fleet.
    #[schemars(with = "Option<String>")]
    pub llm_listen: Option<Spanned<String>>,
    /// How long a fault has to show it is in effect before it is reported as not
    /// (default 15s).
    #[schemars(with = "Option<schema::Duration>")]
    pub confirm_within: Option<RawValue>,
    /// Directories a temp_file_leak may write into (or below), besides the fleet's temp
    /// dir; never a system directory.
    #[schemars(with = "Option<Vec<String>>")]
    pub writable_dirs: Option<Spanned<Vec<Spanned<String>>>>,
    /// A leak's max_total may be over 10GiB.
    #[schemars(with = "Option<bool>")]
    pub allow_large_leaks: Option<Spanned<bool>>,
}

/// `[abort]`: when chaos stops at once and the run ends early: an abort condition on the
/// fleet's calls grades it `fail` (exit 1, the condition as its reason), the kill switch
/// `aborted` (exit 2).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAbort {
    /// Abort when call success over the last `over` falls below this.
    #[schemars(with = "Option<schema::BelowPercent>")]
    pub call_success_below: Option<RawValue>,
    /// The window call_success_below looks at (default 60s).
    #[schemars(with = "Option<schema::Duration>")]
    pub over: Option<RawValue>,
    /// Calls that must have ended in the window before its success rate counts
    /// (default 10).
    #[schemars(with = "Option<i64>", range(min = 1, max = 1_000_000))]
    pub min_calls: Option<Spanned<i64>>,
    /// A file whose appearance aborts the run (default ABORT; relative to the run
    /// directory).
    #[schemars(with = "Option<String>")]
    pub kill_switch_file: Option<Spanned<String>>,
    /// Where POST /abort aborts the run, "127.0.0.1:PORT" (loopback only).
    #[schemars(with = "Option<String>")]
    pub kill_switch_listen: Option<Spanned<String>>,
}

/// `[observe]`: where and how often the observers watch the fleet.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawObserve {
    /// GET; 2xx is healthy. Default: the embedded fleet's /health, none for an external
    /// fleet.
    #[schemars(with = "Option<String>")]
    pub health_url: Option<Spanned<String>>,
    /// How often health is probed (default 1s, at least 100ms).
    #[schemars(with = "Option<schema::Duration>")]
    pub health_interval: Option<RawValue>,
    /// No answer in time is unhealthy (default 2s).
    #[schemars(with = "Option<schema::Duration>")]
    pub health_timeout: Option<RawValue>,
    /// Prometheus text. Default: the embedded fleet's /metrics, none for an external
    /// fleet.
    #[schemars(with = "Option<String>")]
    pub metrics_url: Option<Spanned<String>>,
    /// How often /metrics is scraped (default 2s, at least 100ms).
    #[schemars(with = "Option<schema::Duration>")]
    pub scrape_interval: Option<RawValue>,
    /// Series journaled at most every 10 s, e.g. 'tts_requests_total{status="429"}'.
    #[schemars(with = "Option<Vec<String>>")]
    pub record: Option<Spanned<Vec<Spanned<String>>>>,
    /// External fleets, loopback only: where the alert receiver listens
    /// ("127.0.0.1:9093"; point the fleet's Alertmanager webhook at /alerts there).
    #[schemars(with = "Option<String>")]
    pub alerts_listen: Option<Spanned<String>>,
    /// The fleet's temp dir, walked every temp_dir_interval; default: the embedded
    /// fleet's audio temp dir.
    #[schemars(with = "Option<String>")]
    pub temp_dir: Option<Spanned<String>>,
    /// How often temp_dir is walked (default 10s, at least 1s).
    #[schemars(with = "Option<schema::Duration>")]
    pub temp_dir_interval: Option<RawValue>,
    /// Read like `tail -F` by log detect rules that name no file.
    #[schemars(with = "Option<String>")]
    pub log_file: Option<Spanned<String>>,
    /// The series giving the fleet's resident memory (default
    /// process_resident_memory_bytes).
    #[schemars(with = "Option<String>")]
    pub rss_metric: Option<Spanned<String>>,
    /// The series giving its temp dir's bytes (default temp_dir_bytes).
    #[schemars(with = "Option<String>")]
    pub temp_dir_metric: Option<Spanned<String>>,
    /// External fleets only: the fleet process, { pid_file = "…" } or { health = true }.
    #[schemars(with = "Option<RawProcessWatch>")]
    pub process: Option<Spanned<RawProcessWatch>>,
}

/// `[observe] process = { pid_file = "…" }` or `{ health = true }`; which one is checked in
/// phase 2.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = r#"a table such as { pid_file = "/run/fleet.pid" } or { health = true }"#
)]
pub(super) struct RawProcessWatch {
    /// A file naming the fleet's pid (read every second); its exit is a crash, a new pid
    /// a restart.
    #[schemars(with = "Option<String>")]
    pub pid_file: Option<Spanned<String>>,
    /// health_url refusing connections after it answered is a crash, answering again a
    /// restart.
    #[schemars(with = "Option<bool>")]
    pub health: Option<Spanned<bool>>,
}

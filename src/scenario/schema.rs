//! The scenario file format as a JSON Schema (draft 7, what Taplo / Even Better TOML read
//! best), generated from the phase 1 types in `raw` so editors complete and check scenario
//! files with the keys the parser takes. `schemas/scenario.schema.json` is this, committed.
//!
//! The schema is as strict as phase 1 (an unknown key anywhere is an error, as is a value
//! of the wrong TOML type), and takes over what can be said without reading anything: the
//! shapes of durations, sizes and thresholds, ranges, the names a string must be, and which
//! keys each fault kind takes and needs. What phase 2 checks against the rest of the file
//! or the machine (a fixture exists, a host is allowed, a combination of keys makes sense)
//! stays with `voxsoak validate`.
//!
//! The types below exist only to be named in `#[schemars(with = "…")]`: phase 1 keeps such
//! values as [`toml::Value`] for phase 2 to explain, and the schema says what they may be.

use std::borrow::Cow;
use std::collections::BTreeSet;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

use super::HangUpPolicy;
use super::faults::{ActsOn, DefaultDetection, FaultKind};
use super::raw::{RawFault, RawScenario, RawTurnRange, RawTurns};
use crate::contract::fleet::Bug;

/// The keys every `[[faults]]` entry must have, whatever its kind.
const FAULT_REQUIRED: [&str; 2] = ["kind", "for"];

/// The JSON Schema of a scenario file, as committed in `schemas/scenario.schema.json`.
pub fn json_schema() -> Schema {
    let mut schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RawScenario>();
    schema.insert("title".to_owned(), "voxsoak scenario".into());
    schema.insert(
        "description".to_owned(),
        "A voxsoak scenario: the fleet under test, the load, the calls, the SLOs and the faults. `voxsoak validate FILE` checks what this schema cannot (fixtures, hosts, combinations of keys)."
            .into(),
    );
    let mut value = schema.to_value();
    drop_null(&mut value);
    Schema::try_from(value).expect("a schema stays an object")
}

/// TOML has no null: an optional key is one that may be left out, never one that may be
/// null, so the `null` schemars adds for `Option` would only mislead an editor.
fn drop_null(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(types)) = object.get_mut("type") {
                types.retain(|name| name != "null");
                if let [single] = &types[..] {
                    let single = single.clone();
                    object.insert("type".to_owned(), single);
                }
            }
            if let Some(Value::Array(branches)) = object.get_mut("anyOf") {
                branches.retain(|branch| branch != &json!({ "type": "null" }));
                if let [single] = &branches[..]
                    && let Value::Object(single) = single.clone()
                {
                    object.remove("anyOf");
                    if single.contains_key("$ref") {
                        // Draft 7 ignores the siblings of a `$ref`, such as the
                        // description an editor shows.
                        object.insert("allOf".to_owned(), json!([single]));
                    } else {
                        for (key, value) in single {
                            object.entry(key).or_insert(value);
                        }
                    }
                }
            }
            object.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// A schema type named in `#[schemars(with = "…")]`, with a definition of its own.
macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident, |$generator:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(super) enum $name {}

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema($generator: &mut SchemaGenerator) -> Schema {
                $body
            }
        }
    };
}

/// A duration as `humantime` parses it (see `validate::parse_duration`).
pub(super) const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\s*)+$";
/// A size as `crate::units::parse_byte_size` parses it.
const SIZE: &str = r"\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*([bB]|[kKmMgGtT]([iI]?[bB])?)?\s*";
/// A percentage, 0 to 100, without its sign.
const PERCENT: &str = r"\s*[0-9]+(\.[0-9]+)?\s*%\s*";

pub(super) fn size_pattern() -> String {
    format!("^{SIZE}$")
}

pub(super) fn rate_pattern() -> String {
    format!("^{SIZE}/s\\s*$")
}

/// A threshold: `operator` (optional) and what `body` matches (a pattern without anchors).
fn threshold_pattern(operator: &str, body: &str) -> String {
    format!(r"^\s*({operator})?{body}$")
}

/// The duration pattern without its anchors, to build thresholds from.
fn duration_body() -> &'static str {
    DURATION_PATTERN
        .strip_prefix('^')
        .and_then(|pattern| pattern.strip_suffix('$'))
        .expect("anchored")
}

pub(super) fn latency_threshold_pattern() -> String {
    threshold_pattern("<=", duration_body())
}

pub(super) fn growth_threshold_pattern() -> String {
    threshold_pattern("<=", &format!("{SIZE}/h\\s*"))
}

pub(super) fn at_least_percent_pattern() -> String {
    threshold_pattern(">=", PERCENT)
}

pub(super) fn below_percent_pattern() -> String {
    threshold_pattern("<", PERCENT)
}

pub(super) fn free_space_pattern() -> String {
    format!("^({SIZE}|{PERCENT})$")
}

schema_type!(
    /// `"30s"`, `"1m30s"`, `"1.5s"`, `"72h"`.
    Duration,
    |_generator| json_schema!({
        "type": "string",
        "pattern": DURATION_PATTERN,
        "description": "A duration with units: \"300ms\", \"5s\", \"1.5s\", \"2m18s\", \"1h30m\", \"72h\" (also us, min, d). Not a bare number.",
        "examples": ["30s", "1m30s", "500ms"],
    })
);

schema_type!(
    /// `"512MiB"`, `"1GiB"`, `"1.5GB"`.
    ByteSize,
    |_generator| json_schema!({
        "type": "string",
        "pattern": size_pattern(),
        "description": "A size with units: \"512MiB\", \"1GiB\" (powers of 1024), \"1.5GB\" (powers of 1000). Not a bare number.",
        "examples": ["64KiB", "512MiB", "1GiB"],
    })
);

schema_type!(
    /// `"4MiB/s"`.
    ByteRate,
    |_generator| json_schema!({
        "type": "string",
        "pattern": rate_pattern(),
        "description": "Bytes per second: a size with units, then /s.",
        "examples": ["4MiB/s", "100KiB/s"],
    })
);

schema_type!(
    /// A share from 0 to 1.
    Fraction,
    |_generator| json_schema!({
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "A share from 0 to 1 (1: all of them).",
    })
);

schema_type!(
    /// `">= 99.5%"`.
    AtLeastPercent,
    |_generator| json_schema!({
        "type": "string",
        "pattern": at_least_percent_pattern(),
        "description": "A minimum percentage, 0% to 100%: \">= 99.5%\" (the operator may be left out).",
        "examples": [">= 99.5%"],
    })
);

schema_type!(
    /// `"50%"` or `"< 50%"`.
    BelowPercent,
    |_generator| json_schema!({
        "type": "string",
        "pattern": below_percent_pattern(),
        "description": "A floor percentage, 0% to 100%: \"50%\" or \"< 50%\".",
        "examples": ["50%"],
    })
);

schema_type!(
    /// `"<= 1500ms"`.
    LatencyThreshold,
    |_generator| json_schema!({
        "type": "string",
        "pattern": latency_threshold_pattern(),
        "description": "A maximum duration: \"<= 1500ms\" (the operator may be left out).",
        "examples": ["<= 1500ms", "<= 3s"],
    })
);

schema_type!(
    /// `"<= 50MiB/h"`.
    GrowthThreshold,
    |_generator| json_schema!({
        "type": "string",
        "pattern": growth_threshold_pattern(),
        "description": "A maximum growth per hour: \"<= 50MiB/h\" (the operator may be left out).",
        "examples": ["<= 50MiB/h"],
    })
);

schema_type!(
    /// `"5%"` or `"2GiB"`.
    FreeSpace,
    |_generator| json_schema!({
        "type": "string",
        "pattern": free_space_pattern(),
        "description": "Free space to leave on the filesystem: a size (\"2GiB\") or a share of it (\"5%\").",
        "examples": ["5%", "2GiB"],
    })
);

schema_type!(
    /// `fleet = "sink"` or `"embedded"`.
    FleetName,
    |_generator| json_schema!({
        "type": "string",
        "enum": ["sink", "embedded"],
    })
);

schema_type!(
    /// A production bug of the reference fleet.
    BugName,
    |_generator| json_schema!({
        "type": "string",
        "enum": Bug::ALL.map(Bug::name),
    })
);

schema_type!(
    /// `arrivals` of the open model.
    Arrivals,
    |_generator| json_schema!({
        "type": "string",
        "enum": ["uniform", "poisson"],
    })
);

schema_type!(
    /// `fleet_may_hang_up`.
    HangUp,
    |_generator| json_schema!({
        "type": "string",
        "enum": HangUpPolicy::ALL.map(|(_, name)| name),
    })
);

schema_type!(
    /// A metric SLO's `during`.
    MinDuring,
    |_generator| json_schema!({
        "type": "string",
        "enum": ["spike"],
    })
);

schema_type!(
    /// `db_pool_exhaustion`'s `method`.
    DbMethod,
    |_generator| json_schema!({
        "type": "string",
        "enum": ["hold_locks", "take_slots"],
    })
);

schema_type!(
    /// `malformed_tool_params`'s `variant`.
    MalformedVariant,
    |_generator| json_schema!({
        "type": "string",
        "enum": ["missing_required", "wrong_types", "oversized", "unknown_tool"],
    })
);

schema_type!(
    /// A proxy's `upstream`.
    Upstream,
    |_generator| json_schema!({
        "type": "string",
        "anyOf": [
            { "enum": ["tts", "llm"] },
            { "pattern": r"^\s*\S+:[0-9]+\s*$" },
        ],
        "examples": ["tts", "llm", "127.0.0.1:5432"],
    })
);

schema_type!(
    /// One detection rule, or a list of them.
    Detect,
    |generator| {
        let rule = generator.subschema_for::<DetectionRule>();
        json_schema!({
            "anyOf": [
                rule,
                { "type": "array", "items": rule, "minItems": 1 },
            ],
        })
    }
);

schema_type!(
    /// `{ alert = "Name" }`, `{ health = "unhealthy" }`, `{ metric = "…" }` or
    /// `{ log = "regex", file = "…" }`.
    DetectionRule,
    |_generator| {
        let rule = |key: &str, value: Value, description: &str, extra: Value| {
            let mut properties = Map::new();
            properties.insert(key.to_owned(), value);
            if let Value::Object(extra) = extra {
                properties.extend(extra);
            }
            json!({
                "type": "object",
                "description": description,
                "properties": properties,
                "required": [key],
                "additionalProperties": false,
            })
        };
        json_schema!({
            "description": "A fleet signal that counts as the fleet having noticed the fault.",
            "oneOf": [
                rule("alert", json!({ "type": "string", "minLength": 1 }),
                    "An alert with this name reaches the harness's receiver, firing.", Value::Null),
                rule("health", json!({ "const": "unhealthy" }),
                    "A health probe fails.", Value::Null),
                rule("metric", json!({ "type": "string", "minLength": 1 }),
                    "A condition on the fleet's /metrics: `series [/ series] OP number`, e.g. \"db_pool_in_use / db_pool_size > 0.95\".",
                    Value::Null),
                rule("log", json!({ "type": "string", "minLength": 1 }),
                    "A line of the fleet's log matches this regex (in `file`, else [observe] log_file or the embedded fleet's output).",
                    json!({ "file": { "type": "string" } })),
            ],
        })
    }
);

impl JsonSchema for RawTurns {
    fn schema_name() -> Cow<'static, str> {
        "Turns".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let range = generator.subschema_for::<RawTurnRange>();
        json_schema!({
            "description": "How many turns (say \"random\", then listen): a number, or { min, max } for a random number in that range.",
            "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": 1000 },
                range,
            ],
        })
    }
}

schema_type!(
    /// `[[faults]]`: one branch per kind in the registry, each with the common keys and
    /// that kind's own parameters.
    FaultEntries,
    |generator| {
        let entry = fault_entry(generator);
        json_schema!({
            "type": "array",
            "items": entry,
        })
    }
);

/// A `[[faults]]` entry: `kind` names one of the registry's kinds, and a branch per kind
/// (`oneOf`) takes the common keys and that kind's parameters, needing its required ones.
/// The parameters' schemas are [`RawFault`]'s fields, so the registry and the raw type are
/// the only places a kind or a parameter is declared.
fn fault_entry(generator: &mut SchemaGenerator) -> Value {
    let raw = RawFault::json_schema(generator).to_value();
    let properties = raw["properties"].clone();
    let properties = properties.as_object().expect("RawFault is a struct");
    let parameters: BTreeSet<&str> = FaultKind::ALL
        .iter()
        .flat_map(|kind| kind.parameters().iter().copied())
        .collect();
    let common: Map<String, Value> = properties
        .iter()
        .filter(|(key, _)| !parameters.contains(key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let branches: Vec<Value> = FaultKind::ALL
        .iter()
        .map(|&kind| {
            let spec = kind.spec();
            let mut branch_properties = common.clone();
            branch_properties.insert(
                "kind".to_owned(),
                json!({ "const": spec.name, "description": describe_kind(kind) }),
            );
            for parameter in spec.parameters {
                branch_properties.insert((*parameter).to_owned(), properties[*parameter].clone());
            }
            let required: Vec<&str> = FAULT_REQUIRED
                .iter()
                .chain(spec.required)
                .copied()
                .collect();
            json!({
                "type": "object",
                "title": spec.name,
                "properties": branch_properties,
                "required": required,
                "additionalProperties": false,
            })
        })
        .collect();
    // Every key of every kind, besides the branches: an editor names a key no kind takes
    // (a typo) or a kind that does not exist, where a `oneOf` alone only says that no
    // branch matched.
    let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
    let mut every_key = Value::Object(properties.clone());
    every_key["kind"]["enum"] = json!(names);
    json!({
        "type": "object",
        "description": raw.get("description").cloned().unwrap_or(Value::Null),
        "properties": every_key,
        "required": FAULT_REQUIRED,
        "additionalProperties": false,
        "oneOf": branches,
    })
}

/// What an editor shows for `kind = "…"`: what the kind acts on, how it is detected by
/// default, and the parameters it takes.
fn describe_kind(kind: FaultKind) -> String {
    let spec = kind.spec();
    let acts_on = match spec.acts_on {
        ActsOn::TtsStandIn => "voxsoak's TTS stand-in, which the fleet is pointed at",
        ActsOn::LlmStandIn => "voxsoak's LLM stand-in, which the fleet is pointed at",
        ActsOn::Database => "the fleet's database",
        ActsOn::TempDir => "the fleet's temp dir",
        ActsOn::Proxy => "a TCP proxy in front of one of the fleet's dependencies",
        ActsOn::FleetProcess => "the fleet process, which the harness signals",
    };
    let detection = match spec.detection {
        DefaultDetection::Alert(name) => format!("the alert {name}"),
        DefaultDetection::Unhealthy => "the fleet's health".to_owned(),
    };
    let takes = match spec.parameters {
        [] => "no parameters".to_owned(),
        parameters => parameters.join(", "),
    };
    let needs = match spec.required {
        [] => String::new(),
        required => format!(" (needs {})", required.join(", ")),
    };
    format!(
        "{}: acts on {acts_on}; detected by default by {detection}. Takes {takes}{needs}.",
        spec.name
    )
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;

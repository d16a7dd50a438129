//! The fleet's signals as the journal holds them (`alert`, `health`, `metric_condition`,
//! `log_match` records): the one reading of them, shared by the detection engine, the
//! observers' hub and the grader.

use std::path::PathBuf;

use serde_json::Value;

/// A change the fleet showed, as the observers' hub journaled it.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    AlertFiring(String),
    AlertResolved(String),
    Unhealthy,
    Healthy,
    /// A metric condition (its text) started to hold.
    ConditionHolds(String),
    ConditionCleared(String),
    /// A line of `file` matched `pattern`; `default` when `file` is the log that rules
    /// naming no file read (`[observe] log_file`, or the embedded fleet's output).
    LogMatched {
        pattern: String,
        file: PathBuf,
        default: bool,
    },
}

impl Signal {
    /// The signal a journal record carries (`alert`, `health`, `metric_condition`,
    /// `log_match`); None for any other record. The one reading of them: the grader's, and
    /// the hub's as it journals them (its live `fault_detected`).
    /// When an alert's firing began, in run seconds (`starts_s`: its `startsAt` as the hub
    /// read it against the journal's clock); None when the fleet gave none.
    pub fn began_s(record: &Value) -> Option<f64> {
        record
            .get("starts_s")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite())
    }

    pub fn of_record(event: &str, record: &Value) -> Option<Signal> {
        let flag = |key: &str| record.get(key).and_then(Value::as_bool).unwrap_or(false);
        let signal = match event {
            "alert" => {
                let name = str_of(record, "name");
                if record.get("status").and_then(Value::as_str) == Some("firing") {
                    Signal::AlertFiring(name)
                } else {
                    Signal::AlertResolved(name)
                }
            }
            "health" if flag("healthy") => Signal::Healthy,
            "health" => Signal::Unhealthy,
            "metric_condition" => {
                let text = str_of(record, "condition");
                if flag("holds") {
                    Signal::ConditionHolds(text)
                } else {
                    Signal::ConditionCleared(text)
                }
            }
            "log_match" => Signal::LogMatched {
                pattern: str_of(record, "pattern"),
                file: PathBuf::from(str_of(record, "file")),
                default: flag("default"),
            },
            _ => return None,
        };
        Some(signal)
    }
}

/// A record's string field, or empty when it has none.
pub fn str_of(record: &Value, key: &str) -> String {
    record
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

//! The run journal: one JSON object per line, appended as things happen, flushed line by
//! line so a harness killed with `kill -9` keeps everything but the line it was writing.
//!
//! Every record has `event` (its type), `t_s` (seconds since the run started, from a
//! monotonic clock) and `at` (the wall clock, RFC 3339 with milliseconds); the rest of its
//! fields depend on the event. Writers share one [`Journal`] handle; a line is written
//! whole under a lock, so lines from different tasks never interleave.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde_json::{Map, Value};
use tokio::time::Instant;

/// A shared handle on the run's `journal.jsonl`.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
    started: Instant,
}

#[derive(Debug)]
struct Inner {
    file: Option<std::io::BufWriter<std::fs::File>>,
    /// Write errors so far (a full disk must not stop the run; the summary says so).
    failed_writes: u64,
}

impl Journal {
    /// Creates (truncates) the journal at `path`; `t_s` counts from `started`.
    pub fn create(path: &Path, started: Instant) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(Self::with_writer(
            Some(std::io::BufWriter::new(file)),
            started,
        ))
    }

    /// A journal that writes nowhere (for `voxsoak chaos`, which has no run directory).
    pub fn discard(started: Instant) -> Self {
        Self::with_writer(None, started)
    }

    fn with_writer(file: Option<std::io::BufWriter<std::fs::File>>, started: Instant) -> Self {
        Journal {
            inner: Arc::new(Mutex::new(Inner {
                file,
                failed_writes: 0,
            })),
            started,
        }
    }

    /// The instant `t_s` counts from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Seconds since the run started, rounded to milliseconds.
    pub fn elapsed_s(&self) -> f64 {
        round_ms(self.started.elapsed().as_secs_f64())
    }

    /// Appends `{"event": event, "t_s": …, "at": …, ...fields}`. `fields` must be a JSON
    /// object (anything else is recorded under `"value"`).
    pub fn record(&self, event: &str, fields: Value) {
        let mut record = Map::new();
        record.insert("event".into(), Value::from(event));
        record.insert("t_s".into(), Value::from(self.elapsed_s()));
        record.insert(
            "at".into(),
            Value::from(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
        );
        match fields {
            Value::Object(fields) => {
                for (key, value) in fields {
                    record.entry(key).or_insert(value);
                }
            }
            Value::Null => {}
            other => {
                record.insert("value".into(), other);
            }
        }
        let mut line = serde_json::to_vec(&Value::Object(record)).unwrap_or_default();
        line.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(file) = inner.file.as_mut() else {
            return;
        };
        let written = file.write_all(&line).and_then(|()| file.flush());
        if written.is_err() {
            inner.failed_writes += 1;
        }
    }

    /// How many records could not be written.
    pub fn failed_writes(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed_writes
    }
}

/// Rounds seconds to milliseconds, as the journal and the summary carry them.
pub fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_whole_json_lines_with_both_clocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = Journal::create(&path, Instant::now()).unwrap();
        journal.record(
            "fault_injected",
            serde_json::json!({"kind": "tts_429", "t_s": "kept out"}),
        );
        let other = journal.clone();
        std::thread::spawn(move || other.record("interval", serde_json::json!({"n": 1})))
            .join()
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "fault_injected");
        assert_eq!(lines[0]["kind"], "tts_429");
        assert!(
            lines[0]["t_s"].is_f64(),
            "t_s is the journal's, not the caller's"
        );
        assert!(humantime::parse_rfc3339(lines[0]["at"].as_str().unwrap()).is_ok());
        assert_eq!(lines[1]["n"], 1);
        assert_eq!(journal.failed_writes(), 0);
    }
}

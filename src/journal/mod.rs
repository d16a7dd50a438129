//! The run journal: one JSON object per line, appended as things happen, flushed line by
//! line so a harness killed with `kill -9` keeps everything but the line it was writing.
//!
//! Every record has `event` (its type), `t_s` (seconds since the run started, from a
//! monotonic clock) and `at` (the wall clock, RFC 3339 with milliseconds); the rest of its
//! fields depend on the event. Writers share one [`Journal`] handle; a line is written
//! whole under a lock, so lines from different tasks never interleave.
//!
//! Every string written is passed through [`crate::redact::text`] (secrets masked) and the
//! line through [`crate::escape::json`] (hidden characters as `\uXXXX`).
//!
//! The records, their fields, and how to read them with `jq` are listed in the README
//! ("The run journal"). [`read`] reads a journal back, as `voxsoak report` does: a last
//! line cut short by a crash is left out and said, never an error.

pub mod calls;
pub mod histogram;
pub mod resume;
pub mod retries;
pub mod signal;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde_json::{Map, Value};
use tokio::time::Instant;

/// What stopped a run before its end (`run_ended` `stopped_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    /// SIGINT, SIGTERM, SIGHUP.
    Signal,
    /// The kill switch (its file, or `POST /abort`).
    KillSwitch,
    /// An `[abort]` condition on the fleet's calls.
    AbortCondition,
}

impl StoppedBy {
    pub fn name(self) -> &'static str {
        match self {
            StoppedBy::Signal => "signal",
            StoppedBy::KillSwitch => "kill_switch",
            StoppedBy::AbortCondition => "abort_condition",
        }
    }
}

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
    taps: Taps,
}

/// Reads every record as it is written ([`Journal::tap`]): the harness's live metrics fold
/// the run's records as the grader will read them back, without reading the file.
pub type Tap = Arc<dyn Fn(&Value) + Send + Sync>;

#[derive(Default)]
struct Taps(Vec<Tap>);

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} tap(s)", self.0.len())
    }
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

    /// Opens the journal at `path` to go on with it (`voxsoak resume`): a last line cut
    /// short by a killed harness is cut off first, so the next record starts a line of its
    /// own. `t_s` counts from `started`.
    pub fn append(path: &Path, started: Instant) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let whole = whole_lines_len(&mut file)?;
        file.set_len(whole)?;
        let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
        file.flush()?;
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
                taps: Taps::default(),
            })),
            started,
        }
    }

    /// Calls `tap` with every record written from now on, whole (`event`, `t_s` and its
    /// fields, before redaction), in the file's order: it is called under the journal's
    /// lock, so it must be quick and must not write to the journal.
    pub fn tap(&self, tap: Tap) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.taps.0.push(tap);
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
        self.record_at(event, self.elapsed_s(), fields);
    }

    /// Journals a harness task that did not end well (it panicked, or was cancelled): a
    /// `harness_error` record naming `task`, which makes the verdict `error` rather than a
    /// fleet blamed for faults the harness may not have injected or watched.
    pub fn task_ended<T>(&self, task: &str, joined: Result<T, tokio::task::JoinError>) {
        let Err(error) = joined else {
            return;
        };
        match error.try_into_panic() {
            Ok(panic) => {
                self.task_panicked(task, &*panic);
            }
            Err(error) => self.harness_error(task, &error.to_string()),
        }
    }

    /// Journals that the harness's own `task` panicked with `payload` (caught where it
    /// ran) as [`Journal::harness_error`]; returns the reason journaled.
    pub fn task_panicked(&self, task: &str, payload: &(dyn std::any::Any + Send)) -> String {
        let error = crate::exit::panic_reason(payload);
        self.harness_error(task, &error);
        error
    }

    /// Journals that the harness's own `task` failed (`error` says how): a `harness_error`
    /// record, so the verdict is `error`, and the same on the harness's log.
    pub fn harness_error(&self, task: &str, error: &str) {
        tracing::error!(task, %error, "a harness task failed");
        self.record(
            "harness_error",
            serde_json::json!({"task": task, "error": error}),
        );
    }

    /// As [`Journal::record`], for something that happened at `t_s` (a little earlier
    /// than now: an injection that began before the call that made it returned).
    pub fn record_at(&self, event: &str, t_s: f64, fields: Value) {
        let mut record = Map::new();
        record.insert("event".into(), Value::from(event));
        record.insert("t_s".into(), Value::from(t_s));
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
        // A last line of defence: whatever a producer forgot, no URL credential or token
        // reaches the file, and no raw bidi or invisible character (serde_json escapes only
        // C0).
        let record = Value::Object(record);
        let serialized = serde_json::to_string(&record).unwrap_or_default();
        let redacted = crate::redact::text(&serialized);
        let mut line = crate::escape::json(&redacted).into_owned().into_bytes();
        line.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for tap in &inner.taps.0 {
            tap(&record);
        }
        let Some(file) = inner.file.as_mut() else {
            return;
        };
        let written = file.write_all(&line).and_then(|()| file.flush());
        if written.is_err() {
            inner.failed_writes += 1;
        }
    }

    /// Asks the OS to put what was written on disk (once an interval: a power cut then loses
    /// at most that interval; a killed harness loses nothing the OS already has).
    pub fn sync(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = inner.file.as_mut()
            && file.get_ref().sync_data().is_err()
        {
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

/// A journal read back: its records in order, and what could not be read.
#[derive(Debug, Default)]
pub struct JournalRead {
    pub records: Vec<Value>,
    /// Lines that are not JSON objects, as `line N: why` (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<String>,
    /// The last line had no newline and was not whole JSON: the harness was killed while
    /// writing it.
    pub cut_short: bool,
}

/// Unreadable lines named one by one; more are only counted.
pub const MAX_PROBLEMS: usize = 20;

/// Reads the journal at `path`, calling `each` with every record in order (so a 72-hour
/// journal is never held in memory whole). A last line cut short by a crash is skipped and
/// flagged; any other unreadable line is skipped and named with its line and column.
pub fn read_each(
    path: &Path,
    each: impl FnMut(&Value),
) -> std::io::Result<(Vec<String>, bool, u64)> {
    let file = std::fs::File::open(path)?;
    read_each_from(std::io::BufReader::new(file), path, each)
}

/// [`read_each`] on journal lines from `reader`; `path` names the journal in the problems.
pub fn read_each_from(
    mut reader: impl std::io::BufRead,
    path: &Path,
    mut each: impl FnMut(&Value),
) -> std::io::Result<(Vec<String>, bool, u64)> {
    let mut problems = Vec::new();
    let mut unreadable = 0u64;
    let mut cut_short = false;
    let mut records = 0u64;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        number += 1;
        let whole = line.last() == Some(&b'\n');
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => {
                records += 1;
                each(&value);
            }
            Ok(_) => {
                unreadable += 1;
                if problems.len() < MAX_PROBLEMS {
                    problems.push(format!(
                        "{}:{number}:1: expected a JSON object, found another JSON value",
                        path.display()
                    ));
                }
            }
            Err(_) if !whole => cut_short = true,
            Err(error) => {
                unreadable += 1;
                if problems.len() < MAX_PROBLEMS {
                    let message = error.to_string();
                    let message = message
                        .split(" at line ")
                        .next()
                        .unwrap_or(message.as_str());
                    problems.push(format!(
                        "{}:{number}:{}: not JSON: {message}",
                        path.display(),
                        error.column()
                    ));
                }
            }
        }
    }
    if unreadable > problems.len() as u64 {
        problems.push(format!(
            "{} more unreadable lines",
            unreadable - problems.len() as u64
        ));
    }
    Ok((problems, cut_short, records))
}

/// Reads the whole journal at `path` into memory (tests and small journals).
pub fn read(path: &Path) -> std::io::Result<JournalRead> {
    let mut records = Vec::new();
    let (problems, cut_short, _) = read_each(path, |record| records.push(record.clone()))?;
    Ok(JournalRead {
        records,
        problems,
        cut_short,
    })
}

/// The length of `file` up to and including its last newline.
fn whole_lines_len(file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let from = end.saturating_sub(chunk.len() as u64);
        let size = (end - from) as usize;
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk[..size])?;
        if let Some(newline) = chunk[..size].iter().rposition(|byte| *byte == b'\n') {
            return Ok(from + newline as u64 + 1);
        }
        end = from;
    }
    Ok(0)
}

/// Rounds seconds to milliseconds, as the journal and the summary carry them.
pub fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tap_reads_every_record_as_it_is_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(&dir.path().join("journal.jsonl"), Instant::now()).unwrap();
        journal.record("before", serde_json::json!({}));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&seen);
        journal.tap(Arc::new(move |record: &Value| {
            into.lock()
                .unwrap()
                .push(record["event"].as_str().unwrap_or_default().to_owned());
        }));
        journal.record("fault_injected", serde_json::json!({"kind": "tts_429"}));
        journal
            .clone()
            .record("interval", serde_json::json!({"started": 1}));
        assert_eq!(*seen.lock().unwrap(), ["fault_injected", "interval"]);
    }

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

    #[tokio::test]
    async fn a_journal_goes_on_after_the_line_a_kill_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(
            &path,
            "{\"event\":\"run_started\",\"t_s\":0.0}\n{\"event\":\"inter",
        )
        .unwrap();
        let started = Instant::now() - std::time::Duration::from_secs(30);
        let journal = Journal::append(&path, started).unwrap();
        journal.record("run_resumed", serde_json::json!({}));
        let read = read(&path).unwrap();
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        assert!(!read.cut_short);
        let events: Vec<&str> = read
            .records
            .iter()
            .map(|record| record["event"].as_str().unwrap())
            .collect();
        assert_eq!(events, ["run_started", "run_resumed"]);
        assert!(read.records[1]["t_s"].as_f64().unwrap() >= 30.0);
    }

    #[tokio::test]
    async fn secrets_are_masked_and_hidden_characters_escaped_in_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = Journal::create(&path, Instant::now()).unwrap();
        journal.record(
            "observers",
            serde_json::json!({
                "health": {"url": "http://user:secret@127.0.0.1:1/health?token=abc123"},
                "detail": ["error sending request for url (postgres://fleet:hunter2@db/x)"],
            }),
        );
        journal.record(
            "alert",
            serde_json::json!({"name": "Tts\u{1b}[2JLimited\u{202e}detaeR"}),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for secret in ["secret", "abc123", "hunter2"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && crate::escape::is_hidden(c)),
            "{text:?}"
        );
        let read = read(&path).unwrap();
        assert_eq!(
            read.records[0]["health"]["url"],
            "http://***@127.0.0.1:1/health?token=***"
        );
        assert_eq!(
            read.records[0]["detail"][0],
            "error sending request for url (postgres://***@db/x)"
        );
        assert_eq!(
            read.records[1]["name"], "Tts\u{1b}[2JLimited\u{202e}detaeR",
            "the fleet's text is kept as it came, only written escaped"
        );
    }

    #[test]
    fn reading_back_skips_a_line_cut_short_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(
            &path,
            "{\"event\":\"run_started\",\"t_s\":0.0}\n\
             not json at all\n\
             [1,2]\n\
             {\"event\":\"interval\",\"t_s\":5.0}\n\
             {\"event\":\"interval\",\"t_",
        )
        .unwrap();
        let read = read(&path).unwrap();
        let events: Vec<&str> = read
            .records
            .iter()
            .map(|record| record["event"].as_str().unwrap())
            .collect();
        assert_eq!(events, ["run_started", "interval"]);
        assert!(read.cut_short);
        assert_eq!(read.problems.len(), 2, "{:?}", read.problems);
        assert!(
            read.problems[0].ends_with("journal.jsonl:2:2: not JSON: expected ident"),
            "{:?}",
            read.problems
        );
        assert!(read.problems[1].contains(":3:1: expected a JSON object"));
    }
}

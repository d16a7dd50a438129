//! The log tail: follows the fleet's log files like `tail -F` and matches every line against
//! the faults' `{ log = "regex" }` detect rules.
//!
//! Each file is polled (about every 250 ms; no file-notification machinery): it is read
//! from where the last poll stopped, starting at its end as it was when the run started.
//! A file that shrank was truncated and is read again from its start; a path that now
//! names another file (another inode: rotation by rename and create) is read to the end of
//! the old file, then from the start of the new one; a file that does not exist yet is
//! picked up, from its start, when it appears. Lines are cut at [`MAX_LINE_BYTES`], so a
//! fleet that never writes a newline cannot make the harness buffer without bound.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Observation, Signal};

/// How often the files are polled.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// Longer lines are cut (the rest, up to the newline, is dropped).
pub const MAX_LINE_BYTES: usize = 8 << 10;
/// Most bytes read from one file in one poll: a backlog is worked off over several polls
/// rather than holding the blocking thread for long.
const MAX_READ_PER_POLL: u64 = 4 << 20;
const CHUNK: usize = 64 << 10;

/// One file and the patterns its lines are matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWatch {
    pub file: PathBuf,
    /// Regexes as the scenario wrote them (validated when it was loaded).
    pub patterns: Vec<String>,
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// A line matched `pattern`. At most one per pattern and file per poll: every line
    /// of one poll is seen at the same moment, so later ones would say nothing new.
    Match {
        pattern: String,
        file: PathBuf,
        line: String,
    },
    /// The file exists but cannot be read (reported once, until it can be read again).
    Unreadable { file: PathBuf, reason: String },
}

/// Every followed file, read by [`LogTail::poll`].
#[derive(Debug)]
pub struct LogTail {
    followed: Vec<Followed>,
}

#[derive(Debug)]
struct Followed {
    path: PathBuf,
    patterns: Vec<(String, Regex)>,
    open: Option<OpenFile>,
    /// The line being read (no newline yet), at most [`MAX_LINE_BYTES`].
    pending: Vec<u8>,
    /// Whether the last failure to read it has been reported.
    reported: bool,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    /// (device, inode): a different pair under the same path is a rotated file.
    identity: (u64, u64),
    /// Where the next read starts.
    offset: u64,
}

impl OpenFile {
    fn open(path: &Path, at_end: bool) -> std::io::Result<OpenFile> {
        let file = File::open(path)?;
        let metadata = file.metadata()?;
        Ok(OpenFile {
            identity: (metadata.dev(), metadata.ino()),
            offset: if at_end { metadata.len() } else { 0 },
            file,
        })
    }
}

impl LogTail {
    /// Starts following `watches`, each file from its current end (or from its start once
    /// it appears, if it does not exist yet). A pattern that does not compile is skipped
    /// (scenarios are validated before they get here).
    pub fn start(watches: &[LogWatch]) -> LogTail {
        let followed = watches
            .iter()
            .map(|watch| Followed {
                path: watch.file.clone(),
                patterns: watch
                    .patterns
                    .iter()
                    .filter_map(|pattern| {
                        Regex::new(pattern)
                            .ok()
                            .map(|regex| (pattern.clone(), regex))
                    })
                    .collect(),
                open: OpenFile::open(&watch.file, true).ok(),
                pending: Vec::new(),
                reported: false,
            })
            .collect();
        LogTail { followed }
    }

    /// Reads what was written since the last poll (blocking file I/O: call it off the async
    /// threads).
    pub fn poll(&mut self) -> Vec<LogEvent> {
        let mut events = Vec::new();
        for followed in &mut self.followed {
            followed.poll(&mut events);
        }
        events
    }
}

impl Followed {
    fn poll(&mut self, events: &mut Vec<LogEvent>) {
        let mut matched = vec![false; self.patterns.len()];
        let (identity, length) = match std::fs::metadata(&self.path) {
            Ok(metadata) => ((metadata.dev(), metadata.ino()), metadata.len()),
            Err(error) => {
                if error.kind() != ErrorKind::NotFound {
                    self.unreadable(error, events);
                }
                // Renamed away and not created again yet (or the path cannot be looked
                // up): what was written to the file already open is still there to read.
                if let Err(error) = self.read(&mut matched, events) {
                    self.unreadable(error, events);
                }
                return;
            }
        };
        match &mut self.open {
            Some(open) if open.identity == identity => {
                if length < open.offset {
                    open.offset = 0;
                    self.finish_pending(&mut matched, events);
                }
            }
            _ => {
                if self.open.is_some() {
                    // Rotated: the rest of the old file first (an error there is the end
                    // of the old file, not a reason to stop following the path).
                    let _ = self.read(&mut matched, events);
                    self.finish_pending(&mut matched, events);
                }
                match OpenFile::open(&self.path, false) {
                    Ok(open) => self.open = Some(open),
                    Err(error) if error.kind() == ErrorKind::NotFound => {
                        self.open = None;
                        return;
                    }
                    Err(error) => {
                        self.open = None;
                        self.unreadable(error, events);
                        return;
                    }
                }
            }
        }
        match self.read(&mut matched, events) {
            Ok(()) => self.reported = false,
            Err(error) => self.unreadable(error, events),
        }
    }

    /// Reads the open file from its offset to its end (at most [`MAX_READ_PER_POLL`]);
    /// the lines read before an error are still matched.
    fn read(&mut self, matched: &mut [bool], events: &mut Vec<LogEvent>) -> std::io::Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let mut chunk = vec![0u8; CHUNK];
        let mut budget = MAX_READ_PER_POLL;
        open.file.seek(SeekFrom::Start(open.offset))?;
        let mut failure = None;
        let mut lines: Vec<Vec<u8>> = Vec::new();
        while budget > 0 {
            let wanted = CHUNK.min(usize::try_from(budget).unwrap_or(CHUNK));
            let read = match open.file.read(&mut chunk[..wanted]) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            open.offset += read as u64;
            budget = budget.saturating_sub(read as u64);
            let mut rest = &chunk[..read];
            while let Some(newline) = rest.iter().position(|&byte| byte == b'\n') {
                push_cut(&mut self.pending, &rest[..newline]);
                lines.push(std::mem::take(&mut self.pending));
                rest = &rest[newline + 1..];
            }
            push_cut(&mut self.pending, rest);
        }
        for line in lines {
            self.match_line(&line, matched, events);
        }
        failure.map_or(Ok(()), Err)
    }

    /// A line without its newline (the last of a file that was truncated or rotated).
    fn finish_pending(&mut self, matched: &mut [bool], events: &mut Vec<LogEvent>) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.match_line(&line, matched, events);
        }
    }

    fn match_line(&self, line: &[u8], matched: &mut [bool], events: &mut Vec<LogEvent>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        for ((pattern, regex), already) in self.patterns.iter().zip(matched.iter_mut()) {
            if !*already && regex.is_match(&text) {
                *already = true;
                events.push(LogEvent::Match {
                    pattern: pattern.clone(),
                    file: self.path.clone(),
                    line: text.clone().into_owned(),
                });
            }
        }
    }

    fn unreadable(&mut self, error: std::io::Error, events: &mut Vec<LogEvent>) {
        if !self.reported {
            self.reported = true;
            events.push(LogEvent::Unreadable {
                file: self.path.clone(),
                reason: error.to_string(),
            });
        }
    }
}

/// Appends `bytes` to `line`, up to [`MAX_LINE_BYTES`] in all.
fn push_cut(line: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_LINE_BYTES.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Polls `tail` every `every` until `stop`, sending [`Signal::LogMatch`] and
/// [`Signal::LogUnreadable`].
pub async fn follow(
    mut tail: LogTail,
    every: Duration,
    observations: UnboundedSender<Observation>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let polled = tokio::task::spawn_blocking(move || {
            let events = tail.poll();
            (tail, events)
        })
        .await;
        let Ok((returned, events)) = polled else {
            return;
        };
        tail = returned;
        for event in events {
            let signal = match event {
                LogEvent::Match {
                    pattern,
                    file,
                    line,
                } => Signal::LogMatch {
                    pattern,
                    file,
                    line,
                },
                LogEvent::Unreadable { file, reason } => Signal::LogUnreadable { file, reason },
            };
            if observations.send(Observation::now(signal)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn tail(path: &Path, patterns: &[&str]) -> LogTail {
        LogTail::start(&[LogWatch {
            file: path.to_path_buf(),
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        }])
    }

    /// The lines that matched, as (pattern, line).
    fn matches(events: Vec<LogEvent>) -> Vec<(String, String)> {
        events
            .into_iter()
            .map(|event| match event {
                LogEvent::Match { pattern, line, .. } => (pattern, line),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn pair(pattern: &str, line: &str) -> (String, String) {
        (pattern.to_owned(), line.to_owned())
    }

    #[test]
    fn starts_at_the_end_and_reads_only_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fleet.log");
        append(&log, "alert firing Old before the run\n");
        let mut tail = tail(&log, &["alert firing (\\w+)", "pool"]);
        assert!(tail.poll().is_empty());
        append(
            &log,
            "quiet\nalert firing TtsRateLimited: 3 429s\r\nhalf a li",
        );
        assert_eq!(
            matches(tail.poll()),
            vec![pair(
                "alert firing (\\w+)",
                "alert firing TtsRateLimited: 3 429s"
            )]
        );
        append(&log, "ne about the pool\n");
        assert_eq!(
            matches(tail.poll()),
            vec![pair("pool", "half a line about the pool")]
        );
        // One match per pattern per poll.
        append(&log, "pool 1\npool 2\nalert firing A\n");
        assert_eq!(
            matches(tail.poll()),
            vec![
                pair("pool", "pool 1"),
                pair("alert firing (\\w+)", "alert firing A")
            ]
        );
        assert!(tail.poll().is_empty());
    }

    #[test]
    fn survives_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fleet.log");
        append(&log, "a long first line that makes the file big\n");
        let mut tail = tail(&log, &["match"]);
        std::fs::File::create(&log).unwrap(); // truncate
        assert!(tail.poll().is_empty());
        append(&log, "match after truncation\n");
        assert_eq!(
            matches(tail.poll()),
            vec![pair("match", "match after truncation")]
        );
    }

    #[test]
    fn survives_rotation_by_rename_and_create() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fleet.log");
        let rotated = dir.path().join("fleet.log.1");
        append(&log, "before the run\n");
        let mut tail = tail(&log, &["old file", "new file", "third file"]);
        append(&log, "a line in the old file\n");
        std::fs::rename(&log, &rotated).unwrap();
        assert_eq!(
            matches(tail.poll()),
            vec![pair("old file", "a line in the old file")],
            "between the rename and the create, the old file is still read"
        );
        append(&rotated, "a late line in the old file\n");
        append(&log, "a line in the new file\n");
        assert_eq!(
            matches(tail.poll()),
            vec![
                pair("old file", "a late line in the old file"),
                pair("new file", "a line in the new file")
            ],
            "the old file is finished first, then the new one is read from its start"
        );
        // Rotated again, and the new file written before the poll sees the rename.
        std::fs::rename(&log, dir.path().join("fleet.log.2")).unwrap();
        append(&log, "a line in the third file\n");
        assert_eq!(
            matches(tail.poll()),
            vec![pair("third file", "a line in the third file")]
        );
        assert!(tail.poll().is_empty());
    }

    #[test]
    fn a_file_that_does_not_exist_yet_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("later/fleet.log");
        let mut tail = tail(&log, &["ready"]);
        assert!(tail.poll().is_empty());
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        append(&log, "fleet ready\n");
        assert_eq!(matches(tail.poll()), vec![pair("ready", "fleet ready")]);
        std::fs::remove_file(&log).unwrap();
        assert!(tail.poll().is_empty());
        append(&log, "ready again\n");
        assert_eq!(matches(tail.poll()), vec![pair("ready", "ready again")]);
    }

    #[test]
    fn long_lines_are_cut_and_bad_utf8_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fleet.log");
        std::fs::write(&log, "").unwrap();
        let mut tail = tail(&log, &["^x+$", "tail"]);
        // 3 MiB without a newline, then its end: one cut line, not 3 MiB of buffer.
        append(&log, &"x".repeat(3 << 20));
        assert!(tail.poll().is_empty());
        assert!(tail.followed[0].pending.len() <= MAX_LINE_BYTES);
        append(&log, "xxx tail\n");
        assert_eq!(
            matches(tail.poll()),
            vec![pair("^x+$", &"x".repeat(MAX_LINE_BYTES))]
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"bad \xff\xfe bytes tail\n")
            .unwrap();
        assert_eq!(
            matches(tail.poll()),
            vec![pair("tail", "bad \u{fffd}\u{fffd} bytes tail")]
        );
    }

    #[test]
    fn a_path_that_cannot_be_read_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the log should be: opening works, reading does not (also for
        // root, whom file permissions do not stop).
        let log = dir.path().join("fleet.log");
        std::fs::create_dir(&log).unwrap();
        let mut tail = tail(&log, &["match"]);
        let events = tail.poll();
        assert!(
            matches!(&events[..], [LogEvent::Unreadable { file, .. }] if *file == log),
            "{events:?}"
        );
        assert!(tail.poll().is_empty(), "reported once");
        std::fs::remove_dir(&log).unwrap();
        append(&log, "a match at last\n");
        assert_eq!(matches(tail.poll()), vec![pair("match", "a match at last")]);
        std::fs::remove_file(&log).unwrap();
        std::fs::create_dir(&log).unwrap();
        assert_eq!(tail.poll().len(), 1, "reported again once it was readable");
    }

    #[test]
    fn each_file_has_its_own_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        let mut tail = LogTail::start(&[
            LogWatch {
                file: a.clone(),
                patterns: vec!["boom".into()],
            },
            LogWatch {
                file: b.clone(),
                patterns: vec!["bang".into()],
            },
        ]);
        append(&a, "bang boom\n");
        append(&b, "boom bang\n");
        let events = tail.poll();
        assert_eq!(
            events,
            vec![
                LogEvent::Match {
                    pattern: "boom".into(),
                    file: a,
                    line: "bang boom".into()
                },
                LogEvent::Match {
                    pattern: "bang".into(),
                    file: b,
                    line: "boom bang".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn follow_sends_matches_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fleet.log");
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(
            tail(&log, &["alert firing TtsRateLimited"]),
            Duration::from_millis(20),
            sender,
            stop.clone(),
        ));
        append(
            &log,
            "voxsoak fleet: alert firing TtsRateLimited: TTS answered 4\n",
        );
        let observation = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
            .await
            .expect("a match within 10 s")
            .expect("the tail runs");
        assert_eq!(
            observation.signal,
            Signal::LogMatch {
                pattern: "alert firing TtsRateLimited".into(),
                file: log.clone(),
                line: "voxsoak fleet: alert firing TtsRateLimited: TTS answered 4".into(),
            }
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the tail stops")
            .unwrap();
    }
}

//! The harness's own log: `tracing` events (what the run does, warnings and errors of its
//! tasks) to stderr and, during `voxsoak run`, to `harness.log` in the run directory.
//!
//! The level comes from `--log-level`, else `RUST_LOG`, else `VOXSOAK_LOG` (the older
//! name), in `tracing`'s target syntax: a level (`debug`) or targets with levels
//! (`warn,voxsoak::chaos=debug`). Without one, stderr shows warnings and errors and the
//! run directory's log also keeps voxsoak's `info` events (the run's steps), so a nightly
//! job's run directory tells what the harness did without anyone asking for it.
//!
//! Events may quote a fleet or a URL: every line, on stderr and in the file, is masked and
//! escaped like every other line voxsoak prints (see [`crate::escape::TerminalWriter`]), so
//! no colour codes either.
//!
//! The run log is one per process: `voxsoak run` runs one scenario. Should a process run
//! several at once (the in-process tests do), each event goes to the run log opened last.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::escape::TerminalWriter;

/// The file in a run directory that keeps the harness's log.
pub const RUN_LOG: &str = "harness.log";

/// stderr's filter when none is given.
const STDERR_DEFAULT: &str = "warn";
/// The run log's filter when none is given: voxsoak's steps, its dependencies' warnings.
const RUN_LOG_DEFAULT: &str = "warn,voxsoak=info";

/// Parses a filter as `--log-level` takes it (for clap).
/// Each directive must be a level or `target=level`: `tracing` would read a bare word as
/// a target to show at every level, which on a command line is a typo far more often.
pub fn parse_filter(text: &str) -> Result<String, String> {
    let expected = "expected a level: off, error, warn, info, debug, trace; or targets with \
                    levels, e.g. warn,voxsoak::chaos=debug";
    let is_level = |word: &str| word.trim().parse::<LevelFilter>().is_ok();
    if let Some(bad) = text
        .split(',')
        .find(|directive| !directive.contains('=') && !is_level(directive))
    {
        return Err(format!("{bad:?} is not a level ({expected})"));
    }
    Targets::from_str(text)
        .map(|_| text.to_string())
        .map_err(|error| format!("{error} ({expected})"))
}

/// Sets up the log for this process (once; later calls do nothing). `flag` is
/// `--log-level`; see the module docs for the order of the sources.
pub fn init(flag: Option<&str>) {
    let (chosen, from_env) = match flag {
        Some(flag) => (Some(flag.to_string()), None),
        None => ["RUST_LOG", "VOXSOAK_LOG"]
            .into_iter()
            .find_map(|name| {
                std::env::var(name)
                    .ok()
                    .filter(|value| !value.trim().is_empty())
                    .map(|value| (Some(value), Some(name)))
            })
            .unwrap_or((None, None)),
    };
    let parsed = chosen.as_deref().map(Targets::from_str);
    let (stderr_filter, file_filter) = match parsed {
        Some(Ok(filter)) => (filter.clone(), filter),
        Some(Err(ref error)) => {
            // Never fatal: a bad variable in a CI environment must not stop the run.
            let _ = writeln!(
                std::io::stderr(),
                "voxsoak: {} is not a log filter ({error}); using {STDERR_DEFAULT}",
                from_env.unwrap_or("--log-level"),
            );
            defaults()
        }
        None => defaults(),
    };
    let stderr = fmt::layer()
        .with_writer(|| TerminalWriter::new(std::io::stderr()))
        .with_ansi(false)
        .with_target(false)
        .with_filter(stderr_filter);
    let file = fmt::layer()
        .with_writer(RunLogWriter)
        .with_ansi(false)
        .with_filter(file_filter);
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
}

fn defaults() -> (Targets, Targets) {
    let parse = |text: &str| Targets::from_str(text).unwrap_or_default();
    (parse(STDERR_DEFAULT), parse(RUN_LOG_DEFAULT))
}

/// The open run log, and which [`RunLog`] opened it.
static OPEN: Mutex<Option<(u64, File)>> = Mutex::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The run directory's log, open while this lives: events are appended to it (see the
/// module docs), and it is flushed and closed when this is dropped.
#[derive(Debug)]
pub struct RunLog {
    generation: u64,
}

impl RunLog {
    /// Opens (appending to) `dir/harness.log`.
    pub fn open(dir: &Path) -> std::io::Result<RunLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(RUN_LOG))?;
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
        *lock() = Some((generation, file));
        Ok(RunLog { generation })
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        let mut open = lock();
        if open
            .as_ref()
            .is_some_and(|(generation, _)| *generation == self.generation)
            && let Some((_, file)) = open.take()
        {
            let _ = file.sync_all();
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<(u64, File)>> {
    // A writer that panicked mid-line leaves a usable file.
    OPEN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes to the open run log, or nowhere.
#[derive(Debug, Clone, Copy)]
struct RunLogWriter;

/// One event's bytes, written to the run log in one piece when it is done.
struct RunLogLine(Vec<u8>);

impl Write for RunLogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RunLogLine {
    fn drop(&mut self) {
        if let Some((_, file)) = lock().as_mut() {
            let mut escaped = TerminalWriter::new(file);
            let _ = escaped.write_all(&self.0);
            let _ = escaped.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for RunLogWriter {
    type Writer = RunLogLine;

    fn make_writer(&'a self) -> Self::Writer {
        RunLogLine(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_as_clap_reads_them() {
        for good in ["debug", "off", "warn,voxsoak::chaos=debug", "voxsoak=trace"] {
            assert_eq!(parse_filter(good).as_deref(), Ok(good));
        }
        let error = parse_filter("loud").unwrap_err();
        assert!(error.contains("expected a level"), "{error}");
    }

    #[test]
    fn a_run_log_gets_events_while_open_and_is_closed_by_its_own_guard_only() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLog::open(dir.path()).unwrap();
        RunLogLine(b"one \x1b[31mred\n".to_vec());
        let second_dir = tempfile::tempdir().unwrap();
        let second = RunLog::open(second_dir.path()).unwrap();
        // The older guard's drop does not close the newer run's log.
        drop(first);
        RunLogLine(b"two\n".to_vec());
        drop(second);
        RunLogLine(b"three\n".to_vec());
        let first_text = std::fs::read_to_string(dir.path().join(RUN_LOG)).unwrap();
        let second_text = std::fs::read_to_string(second_dir.path().join(RUN_LOG)).unwrap();
        assert!(first_text.starts_with("one "), "{first_text:?}");
        assert!(!first_text.contains('\x1b'), "escaped: {first_text:?}");
        assert_eq!(second_text, "two\n");
    }
}

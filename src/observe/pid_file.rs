//! Watches the process of a fleet the harness did not start, through the pid file it writes
//! (`[observe] process = { pid_file = "…" }`), as `fleet_process` watches the one it
//! started: the file is read every second, and the process it names is sampled from
//! `/proc` (RSS and CPU, journaled as `fleet_process` every 10 s). When that process is gone
//! the fleet crashed (`fleet_exited`, never `by_harness`: the harness does not stop a fleet
//! it did not start; and with no exit status, since it is not the harness's child); when the
//! file names a new process, the fleet was started again (`fleet_restarted`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::fleet_process::UsageWindow;
use crate::journal::Journal;
use crate::procinfo::ProcessSample;

/// How often the file is read and the process sampled: how late an exit is seen.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// A pid file is a number and a newline; anything longer is not one.
const MAX_PID_FILE_BYTES: u64 = 64;

/// One process as the kernel knows it: a pid alone may be handed to a later process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    pid: u32,
    started_ticks: u64,
}

/// What one look at the pid file and the process found, for the journal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The watched process is running; a sample of it.
    Sample(u32, ProcessSample),
    /// The watched process is gone.
    Exited { pid: u32 },
    /// The file names another running process than the one watched (or the one that
    /// exited): the fleet was started again.
    Restarted { pid: u32 },
    /// No process is watched yet, and why (journaled when the reason changes).
    NotWatched(String),
}

/// The watch's memory between looks: which process it follows, and whether it has exited.
#[derive(Debug, Default)]
pub(crate) struct PidWatch {
    current: Option<Identity>,
    exited: bool,
    restarts: u64,
    /// The last reason no process was watched, so it is journaled once.
    not_watched: Option<String>,
}

impl PidWatch {
    /// One look. `named`: the pid the file holds now, or why it could not be read; `look`:
    /// the process running with a pid now, None when there is none (or only a zombie).
    pub(crate) fn step(
        &mut self,
        named: Result<u32, String>,
        look: impl Fn(u32) -> Option<ProcessSample>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let alive = |pid: u32| look(pid).filter(|sample| sample.running);
        if let Some(current) = self.current.filter(|_| !self.exited) {
            match alive(current.pid) {
                Some(sample) if sample.started_ticks == current.started_ticks => {
                    // A file being rewritten (or naming a process already gone) leaves the
                    // running one watched; a new running process named takes over from it.
                    if let Ok(pid) = named
                        && pid != current.pid
                        && let Some(next) = alive(pid)
                    {
                        return self.replaced_by(pid, next, events);
                    }
                    events.push(Event::Sample(current.pid, sample));
                    return events;
                }
                _ => {
                    self.exited = true;
                    events.push(Event::Exited { pid: current.pid });
                }
            }
        }
        let pid = match named {
            Ok(pid) => pid,
            Err(reason) => {
                self.not_watched(reason, &mut events);
                return events;
            }
        };
        match alive(pid) {
            Some(sample)
                if self.current
                    != Some(Identity {
                        pid,
                        started_ticks: sample.started_ticks,
                    }) =>
            {
                self.replaced_by(pid, sample, events)
            }
            // The process that exited, still named by its file (or still a zombie).
            Some(_) => events,
            None => {
                self.not_watched(format!("no process runs with pid {pid}"), &mut events);
                events
            }
        }
    }

    /// Follows `pid` from now on: a restart unless it is the first process seen.
    fn replaced_by(
        &mut self,
        pid: u32,
        sample: ProcessSample,
        mut events: Vec<Event>,
    ) -> Vec<Event> {
        if self.current.is_some() {
            self.restarts += 1;
            events.push(Event::Restarted { pid });
        }
        self.current = Some(Identity {
            pid,
            started_ticks: sample.started_ticks,
        });
        self.exited = false;
        self.not_watched = None;
        events.push(Event::Sample(pid, sample));
        events
    }

    /// Before the first process is found, why not (once per reason). After one, its
    /// `fleet_exited` already says the fleet is down.
    fn not_watched(&mut self, reason: String, events: &mut Vec<Event>) {
        if self.current.is_none() && self.not_watched.as_ref() != Some(&reason) {
            self.not_watched = Some(reason.clone());
            events.push(Event::NotWatched(reason));
        }
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.restarts
    }
}

/// The pid `file` holds, or why there is none.
pub(crate) fn read_pid(file: &Path) -> Result<u32, String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|opened| opened.take(MAX_PID_FILE_BYTES).read_to_string(&mut text))
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let trimmed = text.trim();
    trimmed
        .parse::<u32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| format!("{} does not hold a pid: {trimmed:?}", file.display()))
}

/// Reads `pid_file` every [`SAMPLE_EVERY`] until `stop`, journaling what it sees.
pub async fn watch(pid_file: PathBuf, journal: Journal, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = PidWatch::default();
    let mut usage = UsageWindow::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let named = read_pid(&pid_file);
        let events = state.step(named, |pid| crate::procinfo::sample(Some(pid)).ok());
        for event in events {
            match event {
                Event::Sample(pid, sample) => usage.add(pid, sample, &journal),
                Event::Exited { pid } => journal.record(
                    "fleet_exited",
                    json!({
                        "pid": pid, "status": "exited", "code": null, "signal": null,
                        "by_harness": false, "rss_max_bytes": usage.rss_max(),
                        "watched": "pid_file",
                    }),
                ),
                Event::Restarted { pid } => {
                    usage.new_process();
                    journal.record(
                        "fleet_restarted",
                        json!({"pid": pid, "restarts": state.restarts(), "watched": "pid_file"}),
                    );
                }
                Event::NotWatched(reason) => journal.record(
                    "process_not_watched",
                    json!({"pid_file": pid_file.display().to_string(), "reason": reason}),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(started_ticks: u64) -> ProcessSample {
        ProcessSample {
            rss_bytes: 1 << 20,
            cpu_time: Duration::ZERO,
            started_ticks,
            running: true,
        }
    }

    /// The processes running now: (pid, started_ticks).
    fn table(processes: &[(u32, u64)]) -> impl Fn(u32) -> Option<ProcessSample> + '_ {
        move |pid| {
            processes
                .iter()
                .find(|(known, _)| *known == pid)
                .map(|(_, ticks)| running(*ticks))
        }
    }

    fn kinds(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|event| match event {
                Event::Sample(pid, _) => format!("sample {pid}"),
                Event::Exited { pid } => format!("exited {pid}"),
                Event::Restarted { pid } => format!("restarted {pid}"),
                Event::NotWatched(reason) => format!("not watched: {reason}"),
            })
            .collect()
    }

    #[test]
    fn an_exit_and_a_new_pid_are_a_crash_and_a_restart() {
        let mut watch = PidWatch::default();
        let missing = || Err("cannot read /run/fleet.pid: No such file".to_owned());
        assert_eq!(
            kinds(&watch.step(missing(), table(&[]))),
            ["not watched: cannot read /run/fleet.pid: No such file"]
        );
        assert!(watch.step(missing(), table(&[])).is_empty(), "said once");
        assert_eq!(kinds(&watch.step(Ok(10), table(&[(10, 5)]))), ["sample 10"]);
        assert_eq!(kinds(&watch.step(Ok(10), table(&[(10, 5)]))), ["sample 10"]);
        // Gone, its file still naming it: one exit, then nothing until a new process.
        assert_eq!(kinds(&watch.step(Ok(10), table(&[]))), ["exited 10"]);
        assert!(watch.step(Ok(10), table(&[])).is_empty());
        assert!(watch.step(missing(), table(&[])).is_empty());
        assert_eq!(
            kinds(&watch.step(Ok(11), table(&[(11, 9)]))),
            ["restarted 11", "sample 11"]
        );
        assert_eq!(watch.restarts(), 1);
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let mut watch = PidWatch::default();
        watch.step(Ok(10), table(&[(10, 5)]));
        assert_eq!(
            kinds(&watch.step(Ok(10), table(&[(10, 77)]))),
            ["exited 10", "restarted 10", "sample 10"]
        );
    }

    #[test]
    fn a_zombie_has_exited() {
        let mut watch = PidWatch::default();
        watch.step(Ok(10), table(&[(10, 5)]));
        let zombie = |_| {
            Some(ProcessSample {
                running: false,
                ..running(5)
            })
        };
        assert_eq!(kinds(&watch.step(Ok(10), zombie)), ["exited 10"]);
    }

    #[test]
    fn a_file_being_rewritten_keeps_the_process_watched() {
        let mut watch = PidWatch::default();
        watch.step(Ok(10), table(&[(10, 5)]));
        assert_eq!(
            kinds(&watch.step(Err("empty".into()), table(&[(10, 5)]))),
            ["sample 10"]
        );
        // A stale pid while the watched process still runs: still that process.
        assert_eq!(kinds(&watch.step(Ok(99), table(&[(10, 5)]))), ["sample 10"]);
        // A new process takes over before the old one is gone: a restart, not a crash.
        assert_eq!(
            kinds(&watch.step(Ok(11), table(&[(10, 5), (11, 6)]))),
            ["restarted 11", "sample 11"]
        );
    }

    #[test]
    fn a_stale_file_before_any_process_says_why() {
        let mut watch = PidWatch::default();
        assert_eq!(
            kinds(&watch.step(Ok(42), table(&[]))),
            ["not watched: no process runs with pid 42"]
        );
    }

    #[test]
    fn pid_files_are_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fleet.pid");
        assert!(read_pid(&file).unwrap_err().starts_with("cannot read"));
        for (text, pid) in [
            ("1234\n", Some(1234)),
            (" 7 ", Some(7)),
            ("0", None),
            ("x", None),
            ("", None),
        ] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(read_pid(&file).ok(), pid, "{text:?}");
        }
        std::fs::write(&file, "9".repeat(1000)).unwrap();
        assert!(read_pid(&file).is_err());
    }
}

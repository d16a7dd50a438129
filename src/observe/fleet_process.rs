//! Watches the fleet process the harness started, as its supervisor would: resident memory
//! and CPU every second (journaled as `fleet_process` every 10 s, with the peak between),
//! every exit with its status (`fleet_exited`: a crash unless the harness stopped it), and
//! a restart after a crash (`fleet_restarted`), with a backoff doubling from 1 s to 30 s
//! as a pod's restart policy would.

use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::journal::Journal;
use crate::procinfo::ProcessSample;
use crate::target::SharedFleet;

const SAMPLE_EVERY: Duration = Duration::from_secs(1);
pub(crate) const JOURNAL_EVERY: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// An exit status as a shell shows it: `exit 1`, `killed by signal 9 (SIGKILL)`.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                libc::SIGKILL => " (SIGKILL: the memory limit, an OOM kill or kill -9)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT: a panic that aborts, or abort())",
                libc::SIGTERM => " (SIGTERM)",
                _ => "",
            };
            format!("killed by signal {signal}{name}")
        }
        (None, None) => "exited".to_owned(),
    }
}

/// The peak RSS and the CPU share of a watched process between two `fleet_process` records
/// (every [`JOURNAL_EVERY`]), from samples taken more often.
#[derive(Debug)]
pub(crate) struct UsageWindow {
    started: Instant,
    rss_max: u64,
    /// The first sample's time and CPU time: the share is over the window.
    first_cpu: Option<(Instant, Duration)>,
}

impl UsageWindow {
    pub(crate) fn new() -> UsageWindow {
        UsageWindow {
            started: Instant::now(),
            rss_max: 0,
            first_cpu: None,
        }
    }

    /// Another process from now on: its CPU time is its own, not a continuation.
    pub(crate) fn new_process(&mut self) {
        self.first_cpu = None;
    }

    /// The most RSS seen since the last record.
    pub(crate) fn rss_max(&self) -> u64 {
        self.rss_max
    }

    /// Adds a sample of `pid`; journals `fleet_process` when the window is over.
    pub(crate) fn add(&mut self, pid: u32, sample: ProcessSample, journal: &Journal) {
        self.rss_max = self.rss_max.max(sample.rss_bytes);
        let now = Instant::now();
        let first = *self.first_cpu.get_or_insert((now, sample.cpu_time));
        if now.saturating_duration_since(self.started) < JOURNAL_EVERY {
            return;
        }
        let wall = now.saturating_duration_since(first.0).as_secs_f64();
        let cpu_pct = (wall > 0.5).then(|| {
            let pct = 100.0 * sample.cpu_time.saturating_sub(first.1).as_secs_f64() / wall;
            (pct * 10.0).round() / 10.0
        });
        journal.record(
            "fleet_process",
            json!({
                "pid": pid, "rss_bytes": sample.rss_bytes, "rss_max_bytes": self.rss_max,
                "cpu_pct": cpu_pct,
            }),
        );
        self.first_cpu = Some((now, sample.cpu_time));
        self.started = now;
        self.rss_max = sample.rss_bytes;
    }
}

/// Runs until `stop`; `restart_on_crash`: start the fleet again after it exits on its own.
pub async fn watch(
    fleet: SharedFleet,
    journal: Journal,
    restart_on_crash: bool,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    let mut last_pid = fleet.lock().await.pid();
    let mut exit_seen_for: Option<u32> = None;
    let mut crashes = 0u32;
    let mut usage = UsageWindow::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let mut guard = fleet.lock().await;
        let pid = guard.pid();
        if pid != last_pid {
            // Started again (a process_kill fault's clear, or a restart below).
            journal.record(
                "fleet_restarted",
                json!({"pid": pid, "restarts": guard.restarts()}),
            );
            last_pid = pid;
            usage.new_process();
        }
        if let Some(status) = guard.exit_status() {
            if exit_seen_for == pid && pid.is_some() {
                continue;
            }
            exit_seen_for = pid;
            let by_harness = guard.stopped_by_harness();
            if stop.is_cancelled() {
                return;
            }
            journal.record(
                "fleet_exited",
                json!({
                    "pid": pid, "status": describe_exit(status), "code": status.code(),
                    "signal": status.signal(), "by_harness": by_harness,
                    "rss_max_bytes": usage.rss_max(),
                }),
            );
            if by_harness || !restart_on_crash {
                continue;
            }
            drop(guard);
            crashes += 1;
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << (crashes - 1).min(5))
                .min(MAX_BACKOFF);
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            let mut guard = fleet.lock().await;
            if guard.exit_status().is_some()
                && !stop.is_cancelled()
                && let Err(error) = guard.restart().await
            {
                journal.record("fleet_restart_failed", json!({"error": error.to_string()}));
            }
            continue;
        }
        drop(guard);
        let Some(pid) = pid else { continue };
        if let Ok(sample) = crate::procinfo::sample(Some(pid)) {
            usage.add(pid, sample, &journal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_read_as_a_shell_shows_them() {
        let exited = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(describe_exit(exited), "exit 3");
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        assert!(describe_exit(killed).starts_with("killed by signal 9 (SIGKILL"));
    }
}

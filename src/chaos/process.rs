//! `process_stall` and `process_kill`: signals to a fleet the harness started.
//!
//! A stall is SIGSTOP (the process is frozen: sockets stay open, nothing answers, the
//! quietest outage there is) and SIGCONT at clear. A kill is SIGKILL, as an OOM killer or a
//! node failure would, and the fleet is started again at clear on the same address, as a
//! supervisor would. The restart goes through the same start as the first one
//! ([`crate::target::SpawnedFleet::restart`]): the new process also dies with the harness, and the run
//! directory's `fleet.pid` is rewritten to name it (see [`crate::target`]).

use std::time::Duration;

use super::{Confirmation, FaultError};

pub use crate::target::SharedFleet;

/// The process a fault signals: one the harness started (and can start again), or any pid
/// (`voxsoak chaos process_stall --pid N`).
#[derive(Debug, Clone)]
pub enum ProcessTarget {
    Spawned(SharedFleet),
    Pid(u32),
}

/// kill(2) on a pid the harness did not start.
fn signal_pid(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| std::io::Error::other("not a process id"))?;
    // SAFETY: kill(2) with a positive pid (never 0 or -1, which would signal groups) and a
    // signal number from libc.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How long a killed fleet may take to be reaped.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The scheduler state of a process, from `/proc/PID/stat` (`T` is stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; the state follows it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// SIGSTOP until cleared.
#[derive(Debug)]
pub struct ProcessStallFault {
    target: ProcessTarget,
    pid: u32,
    resumed: bool,
}

impl ProcessStallFault {
    pub async fn inject(target: ProcessTarget) -> Result<Self, FaultError> {
        let stop_error =
            |pid, error| FaultError::new("process_stall", format!("SIGSTOP to pid {pid}: {error}"));
        let pid = match &target {
            ProcessTarget::Spawned(fleet) => {
                let mut process = fleet.lock().await;
                let pid = process
                    .pid()
                    .ok_or_else(|| FaultError::new("process_stall", "the fleet has no pid"))?;
                process
                    .signal(libc::SIGSTOP)
                    .map_err(|error| stop_error(pid, error))?;
                pid
            }
            ProcessTarget::Pid(pid) => {
                signal_pid(*pid, libc::SIGSTOP).map_err(|error| stop_error(*pid, error))?;
                *pid
            }
        };
        Ok(ProcessStallFault {
            target,
            pid,
            resumed: false,
        })
    }

    /// In effect while the kernel reports the process stopped.
    pub async fn confirm(&mut self) -> Confirmation {
        match process_state(self.pid) {
            Some('T') => Confirmation::in_effect(format!("pid {} is stopped (SIGSTOP)", self.pid)),
            Some(state) => Confirmation::not_in_effect(format!(
                "pid {} is in state {state}, not stopped",
                self.pid
            )),
            None => Confirmation::not_in_effect(format!("pid {} is gone", self.pid)),
        }
    }

    pub async fn clear(mut self) -> Result<String, FaultError> {
        self.resumed = true;
        let cont_error =
            |pid, error| FaultError::new("process_stall", format!("SIGCONT to pid {pid}: {error}"));
        match &self.target {
            ProcessTarget::Spawned(fleet) => {
                let mut process = fleet.lock().await;
                if process.pid() != Some(self.pid) || process.exit_status().is_some() {
                    return Ok(format!(
                        "pid {} is no longer running; nothing to resume",
                        self.pid
                    ));
                }
                process
                    .signal(libc::SIGCONT)
                    .map_err(|error| cont_error(self.pid, error))?;
            }
            ProcessTarget::Pid(pid) => {
                signal_pid(*pid, libc::SIGCONT).map_err(|error| cont_error(*pid, error))?;
            }
        }
        let state = process_state(self.pid);
        if state == Some('T') {
            return Err(FaultError::new(
                "process_stall",
                format!("pid {} is still stopped after SIGCONT", self.pid),
            ));
        }
        Ok(format!("pid {} resumed (SIGCONT)", self.pid))
    }
}

impl Drop for ProcessStallFault {
    fn drop(&mut self) {
        if !self.resumed {
            // No `.await` here: signal the pid directly. It is our child's pid (the fleet
            // handle outlives this fault), and SIGCONT to a running process does nothing.
            // SAFETY: kill(2) with a valid signal number; the pid is our unreaped child's.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGCONT);
            }
        }
    }
}

/// SIGKILL, then a restart at clear.
#[derive(Debug)]
pub struct ProcessKillFault {
    target: ProcessTarget,
    pid: u32,
    status: Option<std::process::ExitStatus>,
}

impl ProcessKillFault {
    pub async fn inject(target: ProcessTarget) -> Result<Self, FaultError> {
        let kill_error =
            |pid, error| FaultError::new("process_kill", format!("SIGKILL to pid {pid}: {error}"));
        let (pid, status) = match &target {
            ProcessTarget::Spawned(fleet) => {
                let mut process = fleet.lock().await;
                let pid = process
                    .pid()
                    .ok_or_else(|| FaultError::new("process_kill", "the fleet has no pid"))?;
                process
                    .signal(libc::SIGKILL)
                    .map_err(|error| kill_error(pid, error))?;
                (pid, process.wait_exit(EXIT_WAIT).await)
            }
            ProcessTarget::Pid(pid) => {
                signal_pid(*pid, libc::SIGKILL).map_err(|error| kill_error(*pid, error))?;
                (*pid, None)
            }
        };
        Ok(ProcessKillFault {
            target,
            pid,
            status,
        })
    }

    /// In effect once the process has died of the signal.
    pub async fn confirm(&mut self) -> Confirmation {
        use std::os::unix::process::ExitStatusExt;
        if let ProcessTarget::Pid(pid) = self.target {
            // Not our child: gone from /proc (or a zombie its parent has not reaped) is dead.
            return match process_state(pid) {
                None | Some('Z') | Some('X') => {
                    Confirmation::in_effect(format!("pid {pid} was killed (SIGKILL)"))
                }
                Some(state) => {
                    Confirmation::not_in_effect(format!("pid {pid} is still there (state {state})"))
                }
            };
        }
        if self.status.is_none()
            && let ProcessTarget::Spawned(fleet) = &self.target
        {
            self.status = fleet.lock().await.exit_status();
        }
        match self.status {
            Some(status) if status.signal() == Some(libc::SIGKILL) => {
                Confirmation::in_effect(format!("pid {} was killed (SIGKILL)", self.pid))
            }
            Some(status) => Confirmation::in_effect(format!("pid {} is dead ({status})", self.pid)),
            None => Confirmation::not_in_effect(format!("pid {} is still running", self.pid)),
        }
    }

    /// The run is ending: the fleet stays down (the run stops it anyway, and a restart could
    /// take up to a minute).
    pub fn leave_dead(self) -> String {
        format!("pid {} was not started again: the run is ending", self.pid)
    }

    /// Starts the fleet again on the same address (only a fleet the harness started: any
    /// other is left to its own supervisor).
    pub async fn clear(self) -> Result<String, FaultError> {
        let fleet = match &self.target {
            ProcessTarget::Spawned(fleet) => fleet,
            ProcessTarget::Pid(pid) => {
                return Ok(format!(
                    "pid {pid} is not restarted: voxsoak did not start it, its supervisor must"
                ));
            }
        };
        let mut process = fleet.lock().await;
        if process.pid() != Some(self.pid) {
            return Ok(format!(
                "the fleet was already started again (pid {})",
                process.pid().unwrap_or(0)
            ));
        }
        process
            .restart()
            .await
            .map_err(|error| FaultError::new("process_kill", format!("restart failed: {error}")))?;
        Ok(format!(
            "started again as pid {} on {} (restart {})",
            process.pid().unwrap_or(0),
            process.address(),
            process.restarts()
        ))
    }
}

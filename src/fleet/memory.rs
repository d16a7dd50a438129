//! The fleet's own memory: resident set size from `/proc/self/statm`, and the watchdog that
//! makes `--memory-limit` behave like a pod's memory limit.
//!
//! A container runtime kills a pod that passes its limit with SIGKILL, and the pod's status
//! shows exit code 137 (128 + 9) and `OOMKilled`. The watchdog does the same to this process
//! from a plain thread (so a busy async runtime cannot delay it): it samples RSS every
//! [`WATCH_INTERVAL`], and past the limit prints one line on stderr (the kernel's OOM report
//! stands in for it in production) and sends itself SIGKILL. Nothing else runs after that:
//! no alert, no graceful shutdown, exactly like the incident.

use std::time::Duration;

/// How often the watchdog samples RSS. Allocation rates of a few GB/s overshoot the limit
/// by at most tens of MiB between samples.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(10);

/// This process's resident memory in bytes (0 when /proc is unavailable).
pub fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

/// Starts the watchdog thread for `limit` bytes.
pub fn start_watchdog(limit: u64) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("memory-watchdog".into())
        .spawn(move || {
            loop {
                let rss = resident_bytes();
                if rss > limit {
                    die(rss, limit);
                }
                std::thread::sleep(WATCH_INTERVAL);
            }
        })
        .map(|_| ())
}

fn die(rss: u64, limit: u64) -> ! {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "voxsoak fleet: memory limit exceeded: RSS {} > limit {}; killed with SIGKILL (as the OOM killer would, exit status 137)",
        crate::units::format_byte_size(rss),
        crate::units::format_byte_size(limit),
    );
    // SAFETY: sending a signal to our own pid.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; this is never reached, but abort is the closest fallback.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read_and_grows_with_touched_memory() {
        let before = super::resident_bytes();
        assert!(before > 0, "RSS must be readable on Linux");
        let block = vec![1u8; 64 << 20];
        let after = super::resident_bytes();
        assert!(after >= before + (48 << 20), "{before} -> {after}");
        drop(block);
    }
}

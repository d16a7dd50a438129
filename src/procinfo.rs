//! Resident memory and CPU time of a process, and the host's CPU pressure, read from
//! `/proc` (Linux).

use std::io;
use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    pub rss_bytes: u64,
    /// User plus system CPU time since the process started.
    pub cpu_time: Duration,
    /// When it started, in clock ticks since boot: with the pid, what tells this process
    /// from a later one the kernel gave the same pid.
    pub started_ticks: u64,
    /// Neither a zombie nor dead: a process that exited stays in `/proc` as a zombie until
    /// its parent reaps it.
    pub running: bool,
}

/// Reads `/proc/<pid>/statm` and `/proc/<pid>/stat`; `pid` None means this process.
pub fn sample(pid: Option<u32>) -> io::Result<ProcessSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    let statm = std::fs::read_to_string(format!("{dir}/statm"))?;
    let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
    parse(&statm, &stat, page_size(), clock_ticks())
}

/// The time, in microseconds since boot, that at least one task on the host waited for a
/// CPU (`some … total=` of `/proc/pressure/cpu`, the kernel's pressure stall information);
/// None where the kernel does not provide it. Its growth over wall time is the share of
/// time the host was short of CPU.
pub fn cpu_pressure_total_us() -> Option<u64> {
    parse_cpu_pressure(&std::fs::read_to_string("/proc/pressure/cpu").ok()?)
}

fn parse_cpu_pressure(text: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with("some "))?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

fn parse(
    statm: &str,
    stat: &str,
    page_size: u64,
    ticks_per_second: u64,
) -> io::Result<ProcessSample> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let resident_pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| invalid("statm has no resident field"))?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let after_name = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .ok_or_else(|| invalid("stat has no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; fields[0] here is field 3 (state).
    let ticks = |index: usize| -> io::Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .ok_or_else(|| invalid("stat has no CPU time fields"))
    };
    let cpu_ticks = ticks(11)? + ticks(12)?;
    // Field 22, starttime.
    let started_ticks = ticks(19)?;
    let running = !matches!(fields.first(), Some(&("Z" | "X" | "x")));
    Ok(ProcessSample {
        rss_bytes: resident_pages * page_size,
        cpu_time: Duration::from_secs_f64(cpu_ticks as f64 / ticks_per_second.max(1) as f64),
        started_ticks,
        running,
    })
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

fn clock_ticks() -> u64 {
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// Raises this process's open-file limit to its hard limit: thousands of concurrent calls
/// need thousands of sockets, and the usual soft limit is 1024.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// The most malloc arenas the harness uses (glibc's `M_ARENA_MAX`), unless
/// `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` says otherwise.
///
/// glibc gives each new thread that allocates an arena of its own, up to eight per core, and
/// keeps what is freed in an arena for that arena's next use. The harness's tokio workers
/// and its short-lived blocking threads (an interim report re-reads the whole journal on
/// one) each took one: on a one-hour run at 200 calls the harness had five besides the
/// main one, one of them holding 2 MiB with 0.1 MiB in use, and its RSS rose by 2 MiB at
/// the first interim report and stayed there; its live heap was flat (heaptrack, 100
/// calls for 8 minutes: 5.5 MiB from the first minute to the last).
/// With two arenas the same burst is freed into memory the calls reuse. The README's
/// Performance section has the figures.
pub const MALLOC_ARENAS: i32 = 2;

/// Limits this process to [`MALLOC_ARENAS`] malloc arenas; to be called before the async
/// runtime starts its threads (threads already attached to an arena keep it). Returns
/// whether the limit was set: not on a libc other than glibc, nor when the environment
/// chose the arenas itself.
pub fn limit_malloc_arenas() -> bool {
    let chosen = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|tunables| tunables.contains("arena_max"));
    !chosen && set_arena_max(MALLOC_ARENAS)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: i32) -> bool {
    // SAFETY: mallopt only sets a malloc parameter; M_ARENA_MAX takes any positive count.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_pressure_is_the_some_lines_total() {
        let text = "some avg10=97.44 avg60=96.25 avg300=92.75 total=2877022163\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_cpu_pressure(text), Some(2_877_022_163));
        assert_eq!(parse_cpu_pressure("full avg10=0.00 total=5\n"), None);
        assert_eq!(parse_cpu_pressure("some avg10=1.0 total=x\n"), None);
        assert_eq!(parse_cpu_pressure(""), None);
    }

    #[test]
    fn parses_a_command_name_with_spaces_and_parentheses() {
        let statm = "12345 2500 300 10 0 900 0\n";
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1000 123456 2500 18446744073709551615";
        let sample = parse(statm, stat, 4096, 100).unwrap();
        assert_eq!(sample.rss_bytes, 2500 * 4096);
        assert_eq!(sample.cpu_time, Duration::from_secs(3));
        assert_eq!(sample.started_ticks, 1000);
        assert!(sample.running);
        let zombie = stat.replace(") S ", ") Z ");
        assert!(!parse(statm, &zombie, 4096, 100).unwrap().running);
    }

    #[test]
    fn reads_this_process() {
        let sample = sample(None).unwrap();
        assert!(sample.rss_bytes > 1 << 20, "{sample:?}");
        assert!(sample.running && sample.started_ticks > 0, "{sample:?}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("", "", 4096, 100).is_err());
        assert!(parse("1 2", "no paren", 4096, 100).is_err());
        assert!(parse("1 2", "1 (x) S 1", 4096, 100).is_err());
    }
}

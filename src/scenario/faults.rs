//! The chaos part of a scenario: `[[faults]]` (what to inject, when, for how long, and
//! which fleet signal counts as detecting it), `[chaos]` (where the stand-ins listen) and
//! `[abort]` (when chaos stops at once).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::validate::faults::{parse_metric_condition, parse_series_selector};
pub use crate::contract::db::DbPoolMethod;
use crate::contract::standin::{LlmFault, TtsFault};
use crate::units::format_byte_size;

/// The fault kinds a scenario can name, as it names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Tts429,
    TtsError,
    TtsSlow,
    TtsTimeout,
    EmptyToolParams,
    MalformedToolParams,
    LlmTruncatedStream,
    LlmSlow,
    LlmError,
    DbPoolExhaustion,
    TempFileLeak,
    Proxy,
    ProcessStall,
    ProcessKill,
}

impl FaultKind {
    pub const ALL: [FaultKind; 14] = [
        FaultKind::Tts429,
        FaultKind::TtsError,
        FaultKind::TtsSlow,
        FaultKind::TtsTimeout,
        FaultKind::EmptyToolParams,
        FaultKind::MalformedToolParams,
        FaultKind::LlmTruncatedStream,
        FaultKind::LlmSlow,
        FaultKind::LlmError,
        FaultKind::DbPoolExhaustion,
        FaultKind::TempFileLeak,
        FaultKind::Proxy,
        FaultKind::ProcessStall,
        FaultKind::ProcessKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Tts429 => "tts_429",
            FaultKind::TtsError => "tts_error",
            FaultKind::TtsSlow => "tts_slow",
            FaultKind::TtsTimeout => "tts_timeout",
            FaultKind::EmptyToolParams => "empty_tool_params",
            FaultKind::MalformedToolParams => "malformed_tool_params",
            FaultKind::LlmTruncatedStream => "llm_truncated_stream",
            FaultKind::LlmSlow => "llm_slow",
            FaultKind::LlmError => "llm_error",
            FaultKind::DbPoolExhaustion => "db_pool_exhaustion",
            FaultKind::TempFileLeak => "temp_file_leak",
            FaultKind::Proxy => "proxy",
            FaultKind::ProcessStall => "process_stall",
            FaultKind::ProcessKill => "process_kill",
        }
    }

    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The kind-specific keys it takes (the common ones, `at`, `for`, `every`, … are
    /// always allowed).
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            FaultKind::Tts429 => &["fraction", "retry_after"],
            FaultKind::TtsError => &["fraction", "code"],
            FaultKind::TtsSlow => &["fraction", "delay"],
            FaultKind::TtsTimeout => &["fraction"],
            FaultKind::EmptyToolParams | FaultKind::LlmTruncatedStream => &["fraction"],
            FaultKind::MalformedToolParams => &["fraction", "variant", "bytes", "tool"],
            FaultKind::LlmSlow => &["fraction", "delay"],
            FaultKind::LlmError => &["fraction", "code", "retry_after"],
            FaultKind::DbPoolExhaustion => &[
                "method",
                "holders",
                "leave",
                "max_connections",
                "database_url_env",
            ],
            FaultKind::TempFileLeak => &["file_size", "rate", "max_total", "dir", "min_free"],
            FaultKind::Proxy => &[
                "upstream",
                "listen",
                "latency",
                "jitter",
                "bandwidth",
                "stall",
                "reset",
                "slice_size",
                "slice_delay",
                "down",
                "toxicity",
            ],
            FaultKind::ProcessStall | FaultKind::ProcessKill => &[],
        }
    }

    /// Where time to recover counts from when the entry does not say: from the injection
    /// for bad tool calls (the fleet must refuse them and go on), from the clear otherwise.
    pub fn default_recover_from(self) -> RecoverFrom {
        match self {
            FaultKind::EmptyToolParams | FaultKind::MalformedToolParams => RecoverFrom::Injection,
            _ => RecoverFrom::Clear,
        }
    }

    /// The fleet signal that detects it on the reference fleet, when the scenario names
    /// none: the alert the reference fleet raises, or its health (see
    /// [`FaultSpec::default_detection`] for a proxy).
    pub fn default_detection(self) -> DetectionRule {
        let alert = DetectionRule::alert;
        match self {
            FaultKind::Tts429 => alert("TtsRateLimited"),
            FaultKind::TtsError | FaultKind::TtsSlow | FaultKind::TtsTimeout => {
                alert("TtsDegraded")
            }
            FaultKind::EmptyToolParams | FaultKind::MalformedToolParams => {
                alert("ToolCallRejected")
            }
            FaultKind::LlmTruncatedStream | FaultKind::LlmSlow | FaultKind::LlmError => {
                alert("LlmDegraded")
            }
            FaultKind::DbPoolExhaustion => alert("DbPoolSaturated"),
            FaultKind::TempFileLeak => alert("TempDirGrowing"),
            FaultKind::Proxy | FaultKind::ProcessStall | FaultKind::ProcessKill => {
                DetectionRule::Unhealthy
            }
        }
    }

    /// Whether the fleet is meant to heal by itself while the fault is on (time to recover
    /// counts from injection), rather than once it is cleared.
    pub fn heals_itself(self) -> bool {
        matches!(self, FaultKind::ProcessKill)
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FaultSpec {
    /// The detection rule of an entry that names none: its kind's, except that a proxy in
    /// front of a stand-in is noticed by the alert on that dependency.
    pub fn default_detection(&self, kind: FaultKind) -> DetectionRule {
        let alert = DetectionRule::alert;
        match self {
            FaultSpec::Proxy(ProxyFault {
                upstream: ProxyUpstream::Tts,
                ..
            }) => alert("TtsDegraded"),
            FaultSpec::Proxy(ProxyFault {
                upstream: ProxyUpstream::Llm,
                ..
            }) => alert("LlmDegraded"),
            _ => kind.default_detection(),
        }
    }
}

/// One `[[faults]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledFault {
    /// `name`; else the kind (`tts_429`), or `tts_429-2` for the second unnamed `tts_429`.
    pub name: String,
    pub kind: FaultKind,
    pub fault: FaultSpec,
    /// First injection, from the start of the run.
    pub at: Duration,
    /// How long each injection lasts.
    pub duration: Duration,
    pub every: Option<Recurrence>,
    /// Any of these counts as detection; never empty (the kind's default when unnamed).
    pub detect: Vec<DetectionRule>,
    /// Where time to recover counts from.
    pub recover_from: RecoverFrom,
    /// Where the entry starts in the scenario file (1-based line, and column in
    /// characters), for messages and warnings.
    pub line: usize,
    pub column: usize,
}

/// Where a fault's time to recover counts from (`recover_from` in a `[[faults]]` entry).
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RecoverFrom {
    /// From the harness undoing the fault: the fleet must come back once its cause is gone.
    Clear,
    /// From the injection: a fault the fleet must shrug off while it lasts (a bad tool call
    /// is refused and the call goes on), so any harm at all counts against recovery.
    Injection,
}

impl RecoverFrom {
    pub fn name(self) -> &'static str {
        match self {
            RecoverFrom::Clear => "clear",
            RecoverFrom::Injection => "injection",
        }
    }
}

/// A fault that recurs through a long soak: every `every`, each time moved by a seeded
/// uniform draw in `-jitter..=jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recurrence {
    pub every: Duration,
    pub jitter: Duration,
}

/// What a fault does, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultSpec {
    /// The TTS stand-in answers with `fault` for `fraction` of requests.
    Tts {
        fault: TtsFault,
        fraction: f64,
    },
    /// The LLM stand-in answers with `fault` (or after `latency`) for `fraction` of
    /// requests.
    Llm {
        fault: LlmFault,
        fraction: f64,
        latency: Duration,
    },
    DbPoolExhaustion(DbPoolExhaustion),
    TempFileLeak(TempFileLeak),
    Proxy(ProxyFault),
    /// SIGSTOP the fleet the harness started; SIGCONT at clear.
    ProcessStall,
    /// SIGKILL the fleet the harness started; start it again (same ports) at clear.
    ProcessKill,
}

/// `db_pool_exhaustion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPoolExhaustion {
    pub method: DbPoolMethod,
    /// For a fleet the harness did not start: the environment variable with the fleet's
    /// database URL.
    pub database_url_env: Option<String>,
}

/// `temp_file_leak`: files of `file_size` written into the fleet's temp dir at `rate`
/// bytes per second, at most `max_total` in all, while free space on its filesystem stays
/// above `min_free`.
#[derive(Debug, Clone, PartialEq)]
pub struct TempFileLeak {
    pub file_size: u64,
    pub bytes_per_second: u64,
    /// At most [`LEAK_CEILING`] unless `[chaos] allow_large_leaks = true`.
    pub max_total: u64,
    pub dir: LeakDir,
    pub min_free: FreeSpaceFloor,
}

/// Where a leak writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeakDir {
    /// The embedded fleet's own `AUDIO_TMP_DIR`, known once it has started.
    FleetTempDir,
    /// `dir` (or `[observe] temp_dir`) resolved at validation (see
    /// [`super::writable::resolve`]), and the declared directory it lies in: `[observe]
    /// temp_dir` or a `[chaos] writable_dirs` entry, resolved then too. At injection `dir`
    /// is resolved again and must still lie in `within`.
    Declared { dir: PathBuf, within: PathBuf },
}

/// `max_total` above this needs `[chaos] allow_large_leaks = true` (10 GiB).
pub const LEAK_CEILING: u64 = 10 << 30;
/// The largest `file_size` (1 GiB): a TTS temp file is kilobytes to megabytes.
pub const MAX_LEAK_FILE_SIZE: u64 = 1 << 30;
/// Most files one injection writes: the harness keeps 48 bytes per file it wrote until it
/// has removed it. Without `allow_large_leaks`, `max_total / file_size` may not be more.
pub const MAX_LEAK_FILES: u64 = 100_000;

/// `min_free`: a leak writes a file only if free space on the dir's filesystem stays at or
/// above this once the file is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FreeSpaceFloor {
    /// 5% of the filesystem or 2 GiB, whichever is larger.
    Default,
    Bytes(u64),
    /// A share of the filesystem's size, 0 to 100.
    Percent(f64),
}

impl FreeSpaceFloor {
    pub const DEFAULT_PERCENT: f64 = 5.0;
    pub const DEFAULT_BYTES: u64 = 2 << 30;

    /// The floor in bytes on a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        let share = |percent: f64| (total as f64 * percent / 100.0).ceil() as u64;
        match self {
            FreeSpaceFloor::Default => share(Self::DEFAULT_PERCENT).max(Self::DEFAULT_BYTES),
            FreeSpaceFloor::Bytes(bytes) => bytes,
            FreeSpaceFloor::Percent(percent) => share(percent),
        }
    }
}

impl std::fmt::Display for FreeSpaceFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FreeSpaceFloor::Default => write!(
                f,
                "{}% of the filesystem or {}, whichever is larger",
                Self::DEFAULT_PERCENT,
                crate::units::format_byte_size(Self::DEFAULT_BYTES)
            ),
            FreeSpaceFloor::Bytes(bytes) => f.write_str(&crate::units::format_byte_size(*bytes)),
            FreeSpaceFloor::Percent(percent) => write!(f, "{percent}% of the filesystem"),
        }
    }
}

/// `proxy`: a TCP fault proxy in front of one of the fleet's dependencies.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyFault {
    pub upstream: ProxyUpstream,
    /// Where the proxy listens; for an external fleet, which must be pointed at it.
    pub listen: Option<SocketAddr>,
    pub toxics: ProxyToxicsSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyUpstream {
    /// The TTS stand-in (the embedded fleet is pointed at the proxy).
    Tts,
    /// The LLM stand-in.
    Llm,
    /// Any `host:port` (on `allow_hosts`).
    Address(String),
}

impl std::fmt::Display for ProxyUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyUpstream::Tts => f.write_str("the TTS stand-in"),
            ProxyUpstream::Llm => f.write_str("the LLM stand-in"),
            ProxyUpstream::Address(address) => f.write_str(address),
        }
    }
}

/// The toxics a `proxy` fault switches on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProxyToxicsSpec {
    pub latency: Duration,
    pub jitter: Duration,
    /// Bytes per second, each direction.
    pub bandwidth: Option<u64>,
    pub stall: bool,
    pub reset: bool,
    /// Slices of this many bytes, `slice_delay` apart.
    pub slice: Option<(usize, Duration)>,
    pub down: bool,
    /// Share of connections affected.
    pub toxicity: f64,
}

/// A fleet signal that counts as the fleet having noticed a fault.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectionRule {
    /// An alert with this name reaches the harness's receiver, firing.
    Alert { name: String },
    /// A health probe fails.
    Unhealthy,
    /// A metric condition on the fleet's `/metrics` holds.
    Metric(MetricCondition),
    /// A line of the fleet's log matches (the embedded fleet's stdout/stderr, or `file`).
    Log {
        pattern: String,
        file: Option<PathBuf>,
    },
}

impl DetectionRule {
    /// `{ alert = "name" }`.
    pub fn alert(name: &str) -> Self {
        DetectionRule::Alert {
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for DetectionRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetectionRule::Alert { name } => write!(f, "alert {name}"),
            DetectionRule::Unhealthy => f.write_str("health unhealthy"),
            DetectionRule::Metric(condition) => write!(f, "metric {}", condition.text),
            DetectionRule::Log { pattern, file } => match file {
                Some(file) => write!(f, "log /{pattern}/ in {}", file.display()),
                None => write!(f, "log /{pattern}/"),
            },
        }
    }
}

/// `series [/ series] OP number`, e.g. `db_pool_in_use / db_pool_size > 0.95` or
/// `tts_requests_total{status="429"} >= 1`. A series sums every sample of that name whose
/// labels include the selector's.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCondition {
    pub numerator: SeriesSelector,
    pub denominator: Option<SeriesSelector>,
    pub comparison: Comparison,
    pub threshold: f64,
    /// As written, for messages.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSelector {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
            Comparison::Equal => value == threshold,
        }
    }
}

/// `[chaos]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChaosSettings {
    /// Where the TTS stand-in listens; port 0 (any free port) by default. An external fleet
    /// needs a fixed one to be pointed at.
    pub tts_listen: Option<SocketAddr>,
    pub llm_listen: Option<SocketAddr>,
    /// How long a fault has to show it is in effect before it is reported as not.
    pub confirm_within: Duration,
    /// `writable_dirs`: directories a fault may write into besides the fleet's declared
    /// temp dir, resolved at validation (see [`super::writable::resolve`]).
    pub writable_dirs: Vec<PathBuf>,
    /// `allow_large_leaks`: a `temp_file_leak` may have `max_total` above [`LEAK_CEILING`].
    pub allow_large_leaks: bool,
}

/// How long a fault has to confirm by default.
pub const DEFAULT_CONFIRM_WITHIN: Duration = Duration::from_secs(15);

/// `[abort]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AbortConditions {
    /// Abort when call success over the last `over` falls below this percentage.
    pub call_success_below_pct: Option<f64>,
    pub over: Duration,
    /// Calls that must have ended in the window before its success rate counts.
    pub min_calls: u32,
    /// A file whose appearance aborts the run; `ABORT` in the run directory when not
    /// given (relative paths are relative to the run directory).
    pub kill_switch_file: Option<PathBuf>,
    /// An HTTP endpoint (`POST /abort`) that aborts the run.
    pub kill_switch_listen: Option<SocketAddr>,
}

impl Default for AbortConditions {
    fn default() -> Self {
        AbortConditions {
            call_success_below_pct: None,
            over: Duration::from_secs(60),
            min_calls: 10,
            kill_switch_file: None,
            kill_switch_listen: None,
        }
    }
}

/// The kill-switch file name in the run directory.
pub const KILL_SWITCH_FILE: &str = "ABORT";

/// One injection of a scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// Index into [`Scenario::faults`](super::Scenario::faults).
    pub fault: usize,
    /// 1 for the first injection of that fault, 2 for the next, …
    pub number: u32,
    /// Injection, from the start of the run.
    pub at: Duration,
    /// Clear, from the start of the run (cut at the end of the run).
    pub until: Duration,
    /// How long past `until` it may stay on while it has not been seen in effect (no
    /// traffic reached it yet): the next injection of any fault, or the end of the run.
    /// A short window on a quiet fleet is held until it has met traffic, at most
    /// `confirm_within` after the injection, so a compressed scenario tests every fault.
    pub hold_until: Duration,
}

/// Most injections of one fault in a run (every 30 s for 72 hours is 8,640).
pub const MAX_OCCURRENCES: usize = 10_000;

/// An injection is not planned with less than this (or its whole `for`, if shorter) left
/// before the run ends: it could not be confirmed in effect in the time left.
pub const MIN_TIME_LEFT: Duration = DEFAULT_CONFIRM_WITHIN;

/// Every injection within `run_for` (with at least [`MIN_TIME_LEFT`], or its whole `for`,
/// left before the end), in time order, at most [`MAX_OCCURRENCES`] per fault. Recurring faults move by a draw from a
/// generator seeded with the scenario seed and the fault's index, so the same seed gives
/// the same timeline.
pub fn timeline(faults: &[ScheduledFault], run_for: Duration, seed: u64) -> Vec<Occurrence> {
    use rand::{RngExt, SeedableRng};
    let mut occurrences = Vec::new();
    for (index, fault) in faults.iter().enumerate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            seed ^ 0x6661_756c_7473_0000 ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut at = fault.at;
        let mut number = 1u32;
        let needed = fault.duration.min(MIN_TIME_LEFT);
        while at < run_for && run_for - at >= needed && (number as usize) <= MAX_OCCURRENCES {
            let until = (at + fault.duration).min(run_for);
            occurrences.push(Occurrence {
                fault: index,
                number,
                at,
                until,
                hold_until: run_for,
            });
            let Some(recurrence) = fault.every else {
                break;
            };
            let nominal = fault.at + recurrence.every * number;
            let jitter = recurrence.jitter.as_secs_f64();
            let offset = if jitter > 0.0 {
                rng.random_range(-jitter..=jitter)
            } else {
                0.0
            };
            let next = Duration::from_secs_f64((nominal.as_secs_f64() + offset).max(0.0));
            // Validation keeps occurrences apart; this keeps them in order regardless.
            at = next.max(until + Duration::from_secs(1));
            number += 1;
        }
    }
    occurrences.sort_by_key(|occurrence| (occurrence.at, occurrence.fault));
    // Sorted by start: the next later start is the first one after this one's.
    for index in 0..occurrences.len() {
        let at = occurrences[index].at;
        if let Some(next) = occurrences[index..].iter().find(|next| next.at > at) {
            occurrences[index].hold_until = next.at;
        }
    }
    occurrences
}

/// The faults [`timeline`] never injects in a run of `run_for`: they start after its end,
/// or too close to it to be confirmed in effect. A warning at each one's entry, since the
/// run would not test the fleet against them while the plan lists them.
pub fn never_injected(
    faults: &[ScheduledFault],
    run_for: Duration,
    seed: u64,
) -> Vec<super::Diagnostic> {
    let injected = timeline(faults, run_for, seed);
    let format = crate::units::format_duration;
    faults
        .iter()
        .enumerate()
        .filter(|(index, _)| !injected.iter().any(|occurrence| occurrence.fault == *index))
        .map(|(_, fault)| {
            let why = if fault.at >= run_for {
                format!("it starts at {}, after the run ends", format(fault.at))
            } else {
                format!(
                    "it starts at {}, {} before the run ends; an injection needs {} left to be confirmed in effect",
                    format(fault.at),
                    format(run_for - fault.at),
                    format(fault.duration.min(MIN_TIME_LEFT))
                )
            };
            super::Diagnostic {
                line: fault.line,
                column: fault.column,
                message: format!(
                    "fault {:?} is never injected in a run of {}: {why}",
                    fault.name,
                    format(run_for)
                ),
            }
        })
        .collect()
}

/// Where a leak writes, resolved, and the limits it keeps to.
pub fn describe_leak(leak: &TempFileLeak) -> String {
    let dir = match &leak.dir {
        LeakDir::FleetTempDir => "the fleet's AUDIO_TMP_DIR".to_owned(),
        LeakDir::Declared { dir, within } if dir == within => dir.display().to_string(),
        LeakDir::Declared { dir, within } => {
            format!("{} (within {})", dir.display(), within.display())
        }
    };
    let ceiling = if leak.max_total > LEAK_CEILING {
        format!(
            "over the {} ceiling by allow_large_leaks",
            format_byte_size(LEAK_CEILING)
        )
    } else {
        format!("ceiling {}", format_byte_size(LEAK_CEILING))
    };
    format!(
        "writes {} files at {}/s into {dir} (at most {}, {ceiling}; stops before free space there falls below {})",
        format_byte_size(leak.file_size),
        format_byte_size(leak.bytes_per_second),
        format_byte_size(leak.max_total),
        leak.min_free
    )
}

/// What the name of every file leaked under `tag` starts with. A run's leaks are tagged
/// `<run id>-<fault>-<occurrence>`, so `leak_prefix(run_id)` starts every file name the
/// run leaks: the temp-dir observer leaves them out to measure the fleet's own files.
pub fn leak_prefix(tag: &str) -> String {
    format!("voxsoak-leak-{tag}-")
}

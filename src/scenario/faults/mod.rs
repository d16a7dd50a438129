//! The chaos part of a scenario: `[[faults]]` (what to inject, when, for how long, and
//! which fleet signal counts as detecting it), `[chaos]` (where the stand-ins listen) and
//! `[abort]` (when chaos stops at once).
//!
//! # One fault kind, one place
//!
//! Every fault kind is a [`KindSpec`] in the file of its family, and one line in the
//! registry below (`fault_kinds!`). The spec gives all the model knows of the kind: its
//! name, its parameters and their validation (into a [`FaultSpec`]), its plan text, its
//! default detection and where its recovery counts from, and its block of `voxsoak chaos
//! --help`. A family is the kinds that share one [`FaultSpec`] variant, i.e. one thing they
//! act on, and so share their validation, plan text and help:
//!
//! | file | kinds | acts on |
//! | --- | --- | --- |
//! | [`tts`] | `tts_429`, `tts_error`, `tts_slow`, `tts_timeout` | the TTS stand-in |
//! | [`llm`] | `empty_tool_params`, `malformed_tool_params`, `llm_truncated_stream`, `llm_slow`, `llm_error` | the LLM stand-in |
//! | [`db_pool`] | `db_pool_exhaustion` | the fleet's database |
//! | [`temp_file_leak`] | `temp_file_leak` | the fleet's temp dir |
//! | [`proxy`] | `proxy` | a TCP proxy in front of a dependency |
//! | [`process`] | `process_stall`, `process_kill` | the fleet process |
//!
//! How a fault is injected, confirmed and cleared is not here: the model runs nothing (see
//! `layers.toml`). Each [`FaultSpec`] variant has its fault object in `crate::chaos`, in the
//! file of the same family (`chaos/standin.rs`, `db.rs`, `temp_files.rs`, `proxy.rs`,
//! `process.rs`), and `chaos/fault.rs` injects a spec with one line per variant. So a
//! family is two files, one per layer: the model's cannot import what runs, and what runs
//! needs the validated spec. A new kind in a family touches its spec here, its registry
//! line and the behaviour of its fault object; the compiler names every `match` a new
//! family needs an arm in. `registry_tests` checks that every kind in the registry gives
//! every part.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::validate::faults::{parse_metric_condition, parse_series_selector};
pub use crate::contract::db::DbPoolMethod;
use crate::contract::standin::{LlmFault, TtsFault};

pub mod db_pool;
pub mod llm;
pub mod process;
pub mod proxy;
#[cfg(test)]
mod registry_tests;
pub mod temp_file_leak;
pub mod tts;

pub use db_pool::DbPoolExhaustion;
pub use proxy::{ProxyFault, ProxyToxicsSpec, ProxyUpstream};
pub use temp_file_leak::{
    FreeSpaceFloor, LEAK_CEILING, LeakDir, MAX_LEAK_FILE_SIZE, MAX_LEAK_FILES, TempFileLeak,
    describe_leak, leak_prefix,
};

/// The registry: every fault kind, as `Variant => its KindSpec`. It makes [`FaultKind`]
/// (one variant each), [`FaultKind::ALL`] (in this order: the order of `voxsoak chaos
/// --help` and of error messages listing the kinds) and [`FaultKind::spec`].
macro_rules! fault_kinds {
    ($($variant:ident => $spec:path,)*) => {
        /// The fault kinds a scenario can name (see [`FaultKind::name`] for how).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FaultKind {
            $($variant,)*
        }

        impl FaultKind {
            pub const ALL: [FaultKind; [$(FaultKind::$variant,)*].len()] =
                [$(FaultKind::$variant,)*];

            /// All the model knows of the kind.
            pub fn spec(self) -> &'static KindSpec {
                match self {
                    $(FaultKind::$variant => &$spec,)*
                }
            }
        }
    };
}

fault_kinds! {
    Tts429 => tts::TTS_429,
    TtsError => tts::TTS_ERROR,
    TtsSlow => tts::TTS_SLOW,
    TtsTimeout => tts::TTS_TIMEOUT,
    EmptyToolParams => llm::EMPTY_TOOL_PARAMS,
    MalformedToolParams => llm::MALFORMED_TOOL_PARAMS,
    LlmTruncatedStream => llm::LLM_TRUNCATED_STREAM,
    LlmSlow => llm::LLM_SLOW,
    LlmError => llm::LLM_ERROR,
    DbPoolExhaustion => db_pool::DB_POOL_EXHAUSTION,
    TempFileLeak => temp_file_leak::TEMP_FILE_LEAK,
    Proxy => proxy::PROXY,
    ProcessStall => process::PROCESS_STALL,
    ProcessKill => process::PROCESS_KILL,
}

/// One fault kind, as the model knows it: everything but how it is injected.
#[derive(Debug)]
pub struct KindSpec {
    /// As a scenario names it (`kind = "tts_429"`), and `voxsoak chaos tts_429`.
    pub name: &'static str,
    /// The kind-specific keys it takes (the common ones, `at`, `for`, `every`, … are
    /// always allowed).
    pub parameters: &'static [&'static str],
    /// Those of its parameters an entry must give (a subset of `parameters`); the
    /// scenario schema lists them as required.
    pub required: &'static [&'static str],
    /// What it acts on: what the fleet must offer for it, and which flag names it in
    /// `voxsoak chaos`.
    pub acts_on: ActsOn,
    /// The fleet signal that detects it on the reference fleet when the scenario names
    /// none (see [`FaultSpec::default_detection`] for a proxy).
    pub detection: DefaultDetection,
    /// Where time to recover counts from when the entry does not say.
    pub recover_from: RecoverFrom,
    /// Whether the fleet is meant to heal by itself while the fault is on (time to
    /// recover counts from injection), rather than once it is cleared.
    pub heals_itself: bool,
    /// Its parameters, checked, as the [`FaultSpec`] it injects. Called once the kind's
    /// keys, `fraction` and what the fleet must offer ([`ActsOn`]) have been checked.
    pub(in crate::scenario) validate: ValidateKind,
    /// Its family's block of `voxsoak chaos --help`: what it needs by hand and the
    /// parameters it takes.
    pub chaos_help: &'static str,
    /// The kind-specific keys of a `[[faults]]` entry that validates against the embedded
    /// fleet, as TOML lines: what the registry's test parses and plans.
    pub example: &'static str,
}

/// How a kind checks its parameters (see [`KindSpec::validate`]).
pub(in crate::scenario) type ValidateKind =
    for<'v, 'e> fn(&mut super::validate::Validator<'v>, &KindEntry<'e>) -> Option<FaultSpec>;

/// A `[[faults]]` entry as its kind's validation sees it.
pub(in crate::scenario) struct KindEntry<'a> {
    pub kind: FaultKind,
    pub raw: &'a super::raw::RawFault,
    /// The whole entry, where a missing key is reported.
    pub span: &'a std::ops::Range<usize>,
    pub context: &'a super::validate::faults::FaultContext<'a>,
    /// `fraction`, checked (1 when not given).
    pub fraction: f64,
}

/// What a fault kind acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActsOn {
    /// voxsoak's TTS stand-in, which the fleet is pointed at.
    TtsStandIn,
    /// voxsoak's LLM stand-in.
    LlmStandIn,
    /// The fleet's database.
    Database,
    /// The fleet's audio temp dir.
    TempDir,
    /// A TCP proxy voxsoak runs in front of one of the fleet's dependencies.
    Proxy,
    /// The fleet process, which the harness signals.
    FleetProcess,
}

impl ActsOn {
    /// Acts through one of voxsoak's stand-ins.
    pub fn is_standin(self) -> bool {
        matches!(self, ActsOn::TtsStandIn | ActsOn::LlmStandIn)
    }
}

/// A kind's default detection rule: every kind has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultDetection {
    /// `{ alert = "Name" }`: the alert the reference fleet raises.
    Alert(&'static str),
    /// `{ health = "unhealthy" }`.
    Unhealthy,
}

impl DefaultDetection {
    pub fn rule(self) -> DetectionRule {
        match self {
            DefaultDetection::Alert(name) => DetectionRule::alert(name),
            DefaultDetection::Unhealthy => DetectionRule::Unhealthy,
        }
    }
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The kind-specific keys it takes (the common ones, `at`, `for`, `every`, … are
    /// always allowed).
    pub fn parameters(self) -> &'static [&'static str] {
        self.spec().parameters
    }

    /// Where time to recover counts from when the entry does not say: from the injection
    /// for bad tool calls (the fleet must refuse them and go on), from the clear otherwise.
    pub fn default_recover_from(self) -> RecoverFrom {
        self.spec().recover_from
    }

    /// The fleet signal that detects it on the reference fleet, when the scenario names
    /// none: the alert the reference fleet raises, or its health (see
    /// [`FaultSpec::default_detection`] for a proxy).
    pub fn default_detection(self) -> DetectionRule {
        self.spec().detection.rule()
    }

    /// Whether the fleet is meant to heal by itself while the fault is on (time to recover
    /// counts from injection), rather than once it is cleared.
    pub fn heals_itself(self) -> bool {
        self.spec().heals_itself
    }

    pub fn acts_on(self) -> ActsOn {
        self.spec().acts_on
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
        match self {
            FaultSpec::Proxy(proxy) => proxy::default_detection(proxy),
            _ => kind.default_detection(),
        }
    }

    /// What it does and where, in one line of `voxsoak plan`; `embedded`: against the
    /// embedded fleet.
    pub fn describe(&self, embedded: bool) -> String {
        match self {
            FaultSpec::Tts { fault, fraction } => tts::describe(fault, *fraction),
            FaultSpec::Llm {
                fault,
                fraction,
                latency,
            } => llm::describe(fault, *fraction, *latency),
            FaultSpec::DbPoolExhaustion(db) => db_pool::describe(db, embedded),
            FaultSpec::TempFileLeak(leak) => temp_file_leak::describe(leak),
            FaultSpec::Proxy(proxy) => proxy::describe(proxy),
            FaultSpec::ProcessStall | FaultSpec::ProcessKill => process::describe(self),
        }
    }
}

/// "every request" or "25% of requests": the share of requests a stand-in fault answers.
fn share(fraction: f64) -> String {
    if fraction >= 1.0 {
        "every request".to_owned()
    } else {
        format!("{:.0}% of requests", fraction * 100.0)
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
    /// The file the entry is in when the scenario includes it from another file; None:
    /// the scenario file itself.
    pub file: Option<std::path::PathBuf>,
    /// Where the entry starts in that file (1-based line, and column in characters), for
    /// messages and warnings.
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

/// What a fault does, with its parameters: one variant per family of kinds, whose file in
/// this folder validates, describes and documents it.
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
                file: fault.file.clone(),
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

//! Phase 2 for `[[faults]]`, `[chaos]` and `[abort]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::{Validator, Zero, describe, host_in};
use crate::contract::standin::{LlmFault, TtsFault};
use crate::scenario::faults::{
    AbortConditions, ChaosSettings, Comparison, DEFAULT_CONFIRM_WITHIN, DbPoolExhaustion,
    DbPoolMethod, DetectionRule, FaultKind, FaultSpec, FreeSpaceFloor, LEAK_CEILING, LeakDir,
    MAX_LEAK_FILE_SIZE, MAX_LEAK_FILES, MetricCondition, ProxyFault, ProxyToxicsSpec,
    ProxyUpstream, RecoverFrom, Recurrence, ScheduledFault, SeriesSelector, TempFileLeak,
};
use crate::scenario::observe::ObserveSettings;
use crate::scenario::raw::{RawAbort, RawChaos, RawFault, RawValue};
use crate::scenario::{Diagnostic, Target, writable};
use crate::units::format_byte_size;

const MAX_FAULTS: usize = 1000;
const MAX_HOLDERS: i64 = 1000;
const MAX_SLOTS: i64 = 10_000;
const DEFAULT_HOLDERS: u32 = DbPoolMethod::DEFAULT_HOLDERS;
const DEFAULT_MAX_SLOTS: u32 = DbPoolMethod::DEFAULT_MAX_SLOTS;
const DEFAULT_TEMP_FILE_SIZE: u64 = 1 << 20;
const DEFAULT_TEMP_RATE: u64 = 4 << 20;
const DEFAULT_TEMP_MAX_TOTAL: u64 = 1 << 30;
const DEFAULT_OVERSIZED_BYTES: usize = 1 << 20;
const MAX_OVERSIZED_BYTES: i64 = 3 << 20;
/// Every gap between two occurrences of a recurring fault is at least this.
const MIN_EVERY: Duration = Duration::from_secs(1);

/// What a `[[faults]]` entry is checked against: the rest of the scenario.
pub(super) struct FaultContext<'a> {
    pub target: &'a Target,
    pub allow_hosts: &'a [String],
    pub chaos: &'a ChaosSettings,
    pub observe: &'a ObserveSettings,
}

impl Validator<'_> {
    pub(super) fn faults(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawFault>>>>,
        context: &FaultContext<'_>,
    ) -> Vec<ScheduledFault> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        if raw.get_ref().len() > MAX_FAULTS {
            self.error(
                raw.span(),
                format!(
                    "at most {MAX_FAULTS} [[faults]] entries, found {}",
                    raw.get_ref().len()
                ),
            );
            return Vec::new();
        }
        let entries = raw.into_inner();
        // Unnamed faults are called by their kind, numbered when the kind repeats.
        let mut kinds: std::collections::HashMap<String, usize> = Default::default();
        for entry in &entries {
            if let Some(kind) = &entry.get_ref().kind {
                *kinds.entry(kind.get_ref().clone()).or_default() += 1;
            }
        }
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let mut faults = Vec::new();
        let mut names = std::collections::HashSet::new();
        for entry in entries {
            let span = entry.span();
            let entry = entry.into_inner();
            let default_name = entry.kind.as_ref().map(|kind| {
                let kind = kind.get_ref();
                let number = seen.entry(kind.clone()).or_default();
                *number += 1;
                if kinds.get(kind).copied().unwrap_or(0) > 1 {
                    format!("{kind}-{number}")
                } else {
                    kind.clone()
                }
            });
            if let Some(fault) = self.fault(entry, default_name.unwrap_or_default(), span, context)
            {
                if !names.insert(fault.name.clone()) {
                    self.error_at(
                        self.offset_of_line(fault.line),
                        format!(
                            "two faults are named {:?}; names must be unique",
                            fault.name
                        ),
                    );
                }
                faults.push(fault);
            }
        }
        faults
    }

    fn offset_of_line(&self, line: usize) -> usize {
        self.source
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum()
    }

    fn fault(
        &mut self,
        raw: RawFault,
        default_name: String,
        span: std::ops::Range<usize>,
        context: &FaultContext<'_>,
    ) -> Option<ScheduledFault> {
        let FaultContext {
            target, observe, ..
        } = *context;
        let Some(kind_text) = &raw.kind else {
            self.error(
                span,
                format!("[[faults]] entry needs kind = one of {}", kind_list()),
            );
            return None;
        };
        let Some(kind) = FaultKind::from_name(kind_text.get_ref()) else {
            self.error(
                kind_text.span(),
                format!(
                    "unknown fault kind {:?}; expected one of {}",
                    kind_text.get_ref(),
                    kind_list()
                ),
            );
            return None;
        };
        let position = Diagnostic::at(self.source, span.start, "");
        let before = self.diagnostics.len();
        for (key, key_span) in raw.parameter_keys() {
            if !kind.parameters().contains(&key) {
                let takes = kind.parameters();
                let takes = if takes.is_empty() {
                    "no parameters".to_owned()
                } else {
                    takes.join(", ")
                };
                self.error(
                    key_span,
                    format!("{kind} does not take {key}; it takes {takes}"),
                );
            }
        }
        let name = match &raw.name {
            Some(name) => {
                self.not_empty(name, "name");
                name.get_ref().trim().to_owned()
            }
            None => default_name,
        };
        let at = self.duration_or(raw.at.as_ref(), "at", Zero::Allowed, Duration::ZERO);
        let duration = match &raw.duration {
            Some(value) => self.duration(value, "for", Zero::Rejected),
            None => {
                self.error(
                    span.clone(),
                    format!(r#"{kind} needs for = "…", how long the fault lasts (e.g. "60s")"#),
                );
                None
            }
        };
        let every = self.recurrence(&raw, duration);
        let fault = self.fault_spec(kind, &raw, &span, context);
        let detect = match (&raw.detect, &fault) {
            (Some(value), _) => self.detection_rules(value),
            (None, Some(spec)) => vec![spec.default_detection(kind)],
            (None, None) => vec![kind.default_detection()],
        };
        self.detection_observed(
            kind,
            &detect,
            raw.detect.as_ref().map(Spanned::span),
            span.clone(),
            target,
            observe,
        );
        let recover_from = match &raw.recover_from {
            None => kind.default_recover_from(),
            Some(value) => match value.get_ref().as_str() {
                "clear" => RecoverFrom::Clear,
                "injection" => RecoverFrom::Injection,
                other => {
                    self.error(
                        value.span(),
                        format!(
                            r#"recover_from: expected "clear" or "injection", found {other:?}"#
                        ),
                    );
                    RecoverFrom::Clear
                }
            },
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(ScheduledFault {
            name,
            kind,
            fault: fault?,
            at,
            duration: duration?,
            every,
            detect,
            recover_from,
            line: position.line,
            column: position.column,
        })
    }

    fn recurrence(&mut self, raw: &RawFault, duration: Option<Duration>) -> Option<Recurrence> {
        let every_value = raw.every.as_ref();
        let Some(every_value) = every_value else {
            if let Some(jitter) = &raw.every_jitter {
                self.error(jitter.span(), "every_jitter needs every = \"…\"");
            }
            return None;
        };
        let every = self.duration(every_value, "every", Zero::Rejected)?;
        let jitter = self.duration_or(
            raw.every_jitter.as_ref(),
            "every_jitter",
            Zero::Allowed,
            Duration::ZERO,
        );
        let duration = duration?;
        // Occurrences of one fault never overlap: the next starts after this one ends.
        if every.saturating_sub(jitter * 2) < duration + MIN_EVERY {
            self.error(
                every_value.span(),
                format!(
                    "every must be longer than for + 2 × every_jitter + 1s so occurrences never overlap; found every = {}, for = {}, every_jitter = {}",
                    humantime::format_duration(every),
                    humantime::format_duration(duration),
                    humantime::format_duration(jitter)
                ),
            );
            return None;
        }
        Some(Recurrence { every, jitter })
    }

    fn fault_spec(
        &mut self,
        kind: FaultKind,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        context: &FaultContext<'_>,
    ) -> Option<FaultSpec> {
        let FaultContext {
            target,
            allow_hosts,
            chaos,
            ..
        } = *context;
        let fraction = raw
            .fraction
            .as_ref()
            .and_then(|value| self.fraction(value, "fraction"))
            .unwrap_or(1.0);
        let external = matches!(target, Target::External(_));
        let uses_tts = matches!(
            kind,
            FaultKind::Tts429 | FaultKind::TtsError | FaultKind::TtsSlow | FaultKind::TtsTimeout
        );
        let uses_llm = matches!(
            kind,
            FaultKind::EmptyToolParams
                | FaultKind::MalformedToolParams
                | FaultKind::LlmTruncatedStream
                | FaultKind::LlmSlow
                | FaultKind::LlmError
        );
        if external && uses_tts && chaos.tts_listen.is_none() {
            self.error(
                span.clone(),
                format!(
                    "{kind} against an external fleet needs [chaos] tts_listen = \"127.0.0.1:PORT\": the TTS stand-in listens there and the fleet's TTS_BASE_URL must point at it"
                ),
            );
        }
        if external && uses_llm && chaos.llm_listen.is_none() {
            self.error(
                span.clone(),
                format!(
                    "{kind} against an external fleet needs [chaos] llm_listen = \"127.0.0.1:PORT\": the LLM stand-in listens there and the fleet's LLM_BASE_URL must point at it"
                ),
            );
        }
        if matches!(target, Target::Sink(_))
            && (uses_tts || uses_llm || kind == FaultKind::DbPoolExhaustion)
        {
            self.error(
                span.clone(),
                format!("{kind} needs a fleet with a TTS, an LLM and a database; the sink has none (use fleet = \"embedded\")"),
            );
        }
        let spec = match kind {
            FaultKind::Tts429 => FaultSpec::Tts {
                fault: TtsFault::RateLimited {
                    retry_after: raw
                        .retry_after
                        .as_ref()
                        .and_then(|value| self.duration(value, "retry_after", Zero::Allowed)),
                },
                fraction,
            },
            FaultKind::TtsError => FaultSpec::Tts {
                fault: TtsFault::ServerError {
                    code: self.status_code(raw.code.as_ref(), 500..=599, 503)?,
                },
                fraction,
            },
            FaultKind::TtsSlow => FaultSpec::Tts {
                fault: TtsFault::Slow {
                    delay: self.required_duration(raw.delay.as_ref(), kind, "delay", span)?,
                },
                fraction,
            },
            FaultKind::TtsTimeout => FaultSpec::Tts {
                fault: TtsFault::Timeout,
                fraction,
            },
            FaultKind::EmptyToolParams => llm(LlmFault::EmptyToolParams, fraction),
            FaultKind::MalformedToolParams => llm(self.malformed(raw)?, fraction),
            FaultKind::LlmTruncatedStream => llm(LlmFault::TruncatedStream, fraction),
            FaultKind::LlmSlow => FaultSpec::Llm {
                fault: LlmFault::None,
                fraction,
                latency: self.required_duration(raw.delay.as_ref(), kind, "delay", span)?,
            },
            FaultKind::LlmError => llm(
                LlmFault::Status {
                    code: self.status_code(raw.code.as_ref(), 400..=599, 500)?,
                    retry_after: raw
                        .retry_after
                        .as_ref()
                        .and_then(|value| self.duration(value, "retry_after", Zero::Allowed)),
                },
                fraction,
            ),
            FaultKind::DbPoolExhaustion => {
                FaultSpec::DbPoolExhaustion(self.db_pool(raw, span, target)?)
            }
            FaultKind::TempFileLeak => FaultSpec::TempFileLeak(self.temp_leak(raw, span, context)?),
            FaultKind::Proxy => {
                let proxy = self.proxy(raw, span, target, allow_hosts)?;
                let listen_missing = match proxy.upstream {
                    ProxyUpstream::Tts => chaos.tts_listen.is_none().then_some("tts_listen"),
                    ProxyUpstream::Llm => chaos.llm_listen.is_none().then_some("llm_listen"),
                    ProxyUpstream::Address(_) => None,
                };
                if let (true, Some(key)) = (external, listen_missing) {
                    self.error(
                        span.clone(),
                        format!(
                            "a proxy in front of a stand-in, against an external fleet, needs [chaos] {key} = \"127.0.0.1:PORT\": the proxy listens there and the fleet must be pointed at it"
                        ),
                    );
                }
                FaultSpec::Proxy(proxy)
            }
            FaultKind::ProcessStall | FaultKind::ProcessKill => {
                if external {
                    self.error(
                        span.clone(),
                        format!(
                            "{kind} needs a fleet the harness started (fleet = \"embedded\" or \"sink\"); it cannot signal an external fleet"
                        ),
                    );
                    return None;
                }
                if kind == FaultKind::ProcessStall {
                    FaultSpec::ProcessStall
                } else {
                    FaultSpec::ProcessKill
                }
            }
        };
        Some(spec)
    }

    fn required_duration(
        &mut self,
        value: Option<&RawValue>,
        kind: FaultKind,
        key: &str,
        span: &std::ops::Range<usize>,
    ) -> Option<Duration> {
        match value {
            Some(value) => self.duration(value, key, Zero::Rejected),
            None => {
                self.error(
                    span.clone(),
                    format!(r#"{kind} needs {key} = "…" (e.g. "2s")"#),
                );
                None
            }
        }
    }

    fn status_code(
        &mut self,
        code: Option<&Spanned<i64>>,
        range: std::ops::RangeInclusive<i64>,
        default: u16,
    ) -> Option<u16> {
        let Some(code) = code else {
            return Some(default);
        };
        let number = self.ranged(code, "code", range)?;
        u16::try_from(number).ok()
    }

    fn malformed(&mut self, raw: &RawFault) -> Option<LlmFault> {
        const VARIANTS: &str =
            r#""missing_required", "wrong_types", "oversized" or "unknown_tool""#;
        let variant = raw
            .variant
            .as_ref()
            .map_or("missing_required", |variant| variant.get_ref().as_str());
        let fault = match variant {
            "missing_required" => LlmFault::MissingRequired,
            "wrong_types" => LlmFault::WrongTypes,
            "oversized" => LlmFault::OversizedValues {
                bytes: match &raw.bytes {
                    Some(bytes) => {
                        usize::try_from(self.ranged(bytes, "bytes", 1..=MAX_OVERSIZED_BYTES)?)
                            .ok()?
                    }
                    None => DEFAULT_OVERSIZED_BYTES,
                },
            },
            "unknown_tool" => LlmFault::UnknownTool {
                name: raw.tool.as_ref().map_or_else(
                    || "delete_all_orders".to_owned(),
                    |tool| tool.get_ref().clone(),
                ),
            },
            other => {
                let span = raw.variant.as_ref().map(Spanned::span).unwrap_or_default();
                self.error(
                    span,
                    format!("unknown variant {other:?}; expected {VARIANTS}"),
                );
                return None;
            }
        };
        for (key, value, wanted) in [
            ("bytes", raw.bytes.as_ref().map(Spanned::span), "oversized"),
            ("tool", raw.tool.as_ref().map(Spanned::span), "unknown_tool"),
        ] {
            if let Some(span) = value
                && variant != wanted
            {
                self.error(
                    span,
                    format!("{key} only applies to variant = \"{wanted}\""),
                );
            }
        }
        Some(fault)
    }

    fn db_pool(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        target: &Target,
    ) -> Option<DbPoolExhaustion> {
        let method_name = raw
            .method
            .as_ref()
            .map_or("hold_locks", |method| method.get_ref().as_str());
        let count =
            |validator: &mut Self, value: Option<&Spanned<i64>>, key: &str, range, default| {
                match value {
                    Some(value) => validator
                        .ranged(value, key, range)
                        .and_then(|number| u32::try_from(number).ok()),
                    None => Some(default),
                }
            };
        let method = match method_name {
            "hold_locks" => {
                for (key, value) in [
                    ("leave", raw.leave.as_ref().map(Spanned::span)),
                    (
                        "max_connections",
                        raw.max_connections.as_ref().map(Spanned::span),
                    ),
                ] {
                    if let Some(value) = value {
                        self.error(
                            value,
                            format!("{key} only applies to method = \"take_slots\""),
                        );
                    }
                }
                DbPoolMethod::HoldLocks {
                    holders: count(
                        self,
                        raw.holders.as_ref(),
                        "holders",
                        1..=MAX_HOLDERS,
                        DEFAULT_HOLDERS,
                    )?,
                }
            }
            "take_slots" => {
                if let Some(holders) = &raw.holders {
                    self.error(
                        holders.span(),
                        "holders only applies to method = \"hold_locks\"",
                    );
                }
                let sqlite = match target {
                    Target::Embedded(fleet) => fleet.database_url_env.is_none(),
                    _ => false,
                };
                if sqlite {
                    let at = raw
                        .method
                        .as_ref()
                        .map(Spanned::span)
                        .unwrap_or(span.clone());
                    self.error(
                        at,
                        "method = \"take_slots\" needs PostgreSQL (SQLite has no connection slots); set [target] database_url_env, or use method = \"hold_locks\"",
                    );
                    return None;
                }
                DbPoolMethod::TakeSlots {
                    leave: count(self, raw.leave.as_ref(), "leave", 0..=MAX_SLOTS, 0)?,
                    max: count(
                        self,
                        raw.max_connections.as_ref(),
                        "max_connections",
                        1..=MAX_SLOTS,
                        DEFAULT_MAX_SLOTS,
                    )?,
                }
            }
            other => {
                let at = raw.method.as_ref().map(Spanned::span).unwrap_or_default();
                self.error(
                    at,
                    format!(r#"unknown method {other:?}; expected "hold_locks" or "take_slots""#),
                );
                return None;
            }
        };
        let database_url_env = raw.database_url_env.as_ref().map(|name| {
            self.env_var_name(name, "database_url_env is the NAME of an environment variable holding the database URL, not the URL");
            name.get_ref().clone()
        });
        if matches!(target, Target::External(_)) && database_url_env.is_none() {
            self.error(
                span.clone(),
                "db_pool_exhaustion against an external fleet needs database_url_env = \"NAME\" (the variable holding the fleet's database URL)",
            );
        }
        if let (Target::Embedded(_), Some(name)) = (target, &raw.database_url_env) {
            self.error(
                name.span(),
                "the embedded fleet's database is known; database_url_env is for external fleets",
            );
        }
        Some(DbPoolExhaustion {
            method,
            database_url_env,
        })
    }

    fn temp_leak(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        context: &FaultContext<'_>,
    ) -> Option<TempFileLeak> {
        let size =
            |validator: &mut Self, value: Option<&RawValue>, key: &str, default: u64| match value {
                Some(value) => {
                    let bytes = validator.byte_size(value, key)?;
                    if bytes == 0 {
                        validator.error(value.span(), format!("{key} must be more than 0 bytes"));
                        return None;
                    }
                    Some(bytes)
                }
                None => Some(default),
            };
        let file_size = size(
            self,
            raw.file_size.as_ref(),
            "file_size",
            DEFAULT_TEMP_FILE_SIZE,
        );
        let max_total = size(
            self,
            raw.max_total.as_ref(),
            "max_total",
            DEFAULT_TEMP_MAX_TOTAL,
        );
        let rate = match &raw.rate {
            Some(value) => self.byte_rate(value, "rate"),
            None => Some(DEFAULT_TEMP_RATE),
        };
        let caps = match (file_size, max_total) {
            (Some(file_size), Some(max_total)) => {
                self.leak_caps(raw, span, file_size, max_total, context.chaos)
            }
            _ => None,
        };
        let min_free = match &raw.min_free {
            Some(value) => self.free_space_floor(value),
            None => Some(FreeSpaceFloor::Default),
        };
        let dir = self.leak_dir(raw, span, context);
        let (file_size, max_total) = caps?;
        Some(TempFileLeak {
            file_size,
            bytes_per_second: rate?,
            max_total,
            dir: dir?,
            min_free: min_free?,
        })
    }

    /// The size limits of a leak: `file_size` at most [`MAX_LEAK_FILE_SIZE`] and no more
    /// than `max_total`; without the opt-in, `max_total` at most [`LEAK_CEILING`] and at
    /// most [`MAX_LEAK_FILES`] files (with it, the leak stops at whichever comes first of
    /// `max_total`, the free-space floor and that many files).
    fn leak_caps(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        file_size: u64,
        max_total: u64,
        chaos: &ChaosSettings,
    ) -> Option<(u64, u64)> {
        let at = |value: &Option<RawValue>| value.as_ref().map_or(span.clone(), Spanned::span);
        let before = self.diagnostics.len();
        if file_size > MAX_LEAK_FILE_SIZE {
            self.error(
                at(&raw.file_size),
                format!(
                    "file_size must be at most {}, found {}",
                    format_byte_size(MAX_LEAK_FILE_SIZE),
                    format_byte_size(file_size)
                ),
            );
        } else if file_size > max_total {
            self.error(
                at(&raw.file_size),
                format!(
                    "file_size ({}) is larger than max_total ({}): not one file would be written",
                    format_byte_size(file_size),
                    format_byte_size(max_total)
                ),
            );
        }
        if max_total > LEAK_CEILING && !chaos.allow_large_leaks {
            self.error(
                at(&raw.max_total),
                format!(
                    "max_total ({}) is over the {} ceiling for leaked files; set [chaos] allow_large_leaks = true to leak more (writing still stops when free space falls below min_free)",
                    format_byte_size(max_total),
                    format_byte_size(LEAK_CEILING)
                ),
            );
        } else if max_total / file_size.max(1) > MAX_LEAK_FILES && !chaos.allow_large_leaks {
            self.error(
                at(&raw.max_total),
                format!(
                    "max_total ({}) in files of {} is {} files; at most {MAX_LEAK_FILES} per injection: raise file_size or lower max_total",
                    format_byte_size(max_total),
                    format_byte_size(file_size),
                    max_total / file_size.max(1)
                ),
            );
        }
        (self.diagnostics.len() == before).then_some((file_size, max_total))
    }

    /// `min_free = "2GiB"` or `"5%"`.
    fn free_space_floor(&mut self, value: &RawValue) -> Option<FreeSpaceFloor> {
        const EXPECTED: &str =
            r#"min_free: expected a size such as "2GiB" or a share of the filesystem such as "5%""#;
        let toml::Value::String(text) = value.get_ref() else {
            self.error(
                value.span(),
                format!("{EXPECTED}, found {}", describe(value.get_ref())),
            );
            return None;
        };
        if let Some(number) = text.trim().strip_suffix('%') {
            return match number.trim().parse::<f64>() {
                Ok(percent) if (0.0..=100.0).contains(&percent) => {
                    Some(FreeSpaceFloor::Percent(percent))
                }
                _ => {
                    self.error(
                        value.span(),
                        format!("{EXPECTED} (0% to 100%), found {text:?}"),
                    );
                    None
                }
            };
        }
        self.byte_size(value, "min_free").map(FreeSpaceFloor::Bytes)
    }

    /// Where a leak writes: `dir` (or, for an external fleet, `[observe] temp_dir`) once
    /// resolved, which must be a declared directory or lie in one, and never a system
    /// directory; the embedded fleet's own temp dir when `dir` is not given.
    fn leak_dir(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        context: &FaultContext<'_>,
    ) -> Option<LeakDir> {
        let embedded = matches!(context.target, Target::Embedded(_));
        let (written, at) = match (&raw.dir, &context.observe.temp_dir) {
            (Some(dir), _) => {
                self.not_empty(dir, "dir");
                (PathBuf::from(dir.get_ref()), dir.span())
            }
            (None, _) if embedded => return Some(LeakDir::FleetTempDir),
            (None, Some(temp_dir)) => (temp_dir.clone(), span.clone()),
            (None, None) => {
                self.error(
                    span.clone(),
                    "temp_file_leak needs dir = \"/path/to/the/fleet's/temp/dir\" unless the fleet is embedded or [observe] temp_dir names it",
                );
                return None;
            }
        };
        let key = if raw.dir.is_some() {
            "dir"
        } else {
            "dir (here [observe] temp_dir)"
        };
        let dir = match writable::resolve(&written) {
            Ok(dir) => dir,
            Err(error) => {
                self.error(
                    at,
                    format!("{key}: cannot resolve {}: {error}", written.display()),
                );
                return None;
            }
        };
        if let Some(what) = writable::system_dir(&dir) {
            self.error(
                at,
                format!(
                    "{key} = {:?} resolves to {}, {what}; a fault never writes there",
                    written.display().to_string(),
                    dir.display()
                ),
            );
            return None;
        }
        let mut declared: Vec<PathBuf> = Vec::new();
        if let Some(temp_dir) = &context.observe.temp_dir
            && let Ok(temp_dir) = writable::resolve(temp_dir)
        {
            declared.push(temp_dir);
        }
        declared.extend(context.chaos.writable_dirs.iter().cloned());
        if let Some(within) = declared.iter().find(|within| dir.starts_with(within)) {
            return Some(LeakDir::Declared {
                dir,
                within: within.clone(),
            });
        }
        let listed = if declared.is_empty() {
            "none is declared".to_owned()
        } else {
            declared
                .iter()
                .map(|dir| dir.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let hint = if embedded {
            "leave dir out to leak into the embedded fleet's own AUDIO_TMP_DIR, or list it in [chaos] writable_dirs"
        } else {
            "list it in [chaos] writable_dirs, or name the fleet's temp dir in [observe] temp_dir"
        };
        self.error(
            at,
            format!(
                "{key} = {:?} resolves to {}, outside every dir a fault may write into ({listed}); {hint}",
                written.display().to_string(),
                dir.display()
            ),
        );
        None
    }

    /// `"4MiB/s"` → bytes per second.
    fn byte_rate(&mut self, value: &RawValue, key: &str) -> Option<u64> {
        let expected = format!(r#"{key}: expected a rate such as "4MiB/s""#);
        let toml::Value::String(text) = value.get_ref() else {
            self.error(
                value.span(),
                format!("{expected}, found {}", describe(value.get_ref())),
            );
            return None;
        };
        let Some(size) = text.trim().strip_suffix("/s") else {
            self.error(value.span(), format!("{expected}, found {text:?}"));
            return None;
        };
        match crate::units::parse_byte_size(size) {
            Ok(0) => {
                self.error(
                    value.span(),
                    format!("{key} must be more than 0 bytes per second"),
                );
                None
            }
            Ok(bytes) => Some(bytes),
            Err(message) => {
                self.error(value.span(), format!("{key}: {message}"));
                None
            }
        }
    }

    fn proxy(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        target: &Target,
        allow_hosts: &[String],
    ) -> Option<ProxyFault> {
        let Some(upstream_text) = &raw.upstream else {
            self.error(
                span.clone(),
                r#"proxy needs upstream = "tts", "llm" or "host:port" (the dependency it stands in front of)"#,
            );
            return None;
        };
        let upstream = match upstream_text.get_ref().trim() {
            "tts" => ProxyUpstream::Tts,
            "llm" => ProxyUpstream::Llm,
            address => {
                match split_host_port(address) {
                    Some((host, _)) if host_in(allow_hosts, host) => {
                        ProxyUpstream::Address(address.to_owned())
                    }
                    Some((host, _)) => {
                        self.error(
                        upstream_text.span(),
                        format!("upstream host {host:?} is not in allow_hosts; add it there to proxy it"),
                    );
                        return None;
                    }
                    None => {
                        self.error(
                        upstream_text.span(),
                        format!(r#"upstream: expected "tts", "llm" or "host:port", found {address:?}"#),
                    );
                        return None;
                    }
                }
            }
        };
        let listen = raw
            .listen
            .as_ref()
            .and_then(|listen| self.listen_address(listen, "listen"));
        if matches!(upstream, ProxyUpstream::Address(_)) && listen.is_none() && raw.listen.is_none()
        {
            self.error(
                span.clone(),
                "a proxy in front of host:port needs listen = \"127.0.0.1:PORT\": the fleet must be pointed at the proxy",
            );
        }
        if !matches!(upstream, ProxyUpstream::Address(_))
            && let Some(listen) = &raw.listen
        {
            self.error(
                listen.span(),
                "a proxy in front of a stand-in takes the stand-in's address (the embedded fleet is pointed at it; an external fleet at [chaos] tts_listen / llm_listen); drop listen",
            );
        }
        let duration = |validator: &mut Self, value: Option<&RawValue>, key: &str| match value {
            Some(value) => validator.duration(value, key, Zero::Allowed),
            None => Some(Duration::ZERO),
        };
        let latency = duration(self, raw.latency.as_ref(), "latency")?;
        let jitter = duration(self, raw.jitter.as_ref(), "jitter")?;
        let bandwidth = match &raw.bandwidth {
            Some(value) => Some(self.byte_rate(value, "bandwidth")?),
            None => None,
        };
        let slice = match (&raw.slice_size, &raw.slice_delay) {
            (Some(size), delay) => {
                let size = usize::try_from(self.ranged(size, "slice_size", 1..=1 << 20)?).ok()?;
                let delay = duration(self, delay.as_ref(), "slice_delay")?;
                Some((size, delay))
            }
            (None, Some(delay)) => {
                self.error(delay.span(), "slice_delay needs slice_size");
                return None;
            }
            (None, None) => None,
        };
        let toxicity = match &raw.toxicity {
            Some(value) => self.fraction(value, "toxicity")?,
            None => 1.0,
        };
        let flag =
            |value: &Option<Spanned<bool>>| value.as_ref().is_some_and(|flag| *flag.get_ref());
        let toxics = ProxyToxicsSpec {
            latency,
            jitter,
            bandwidth,
            stall: flag(&raw.stall),
            reset: flag(&raw.reset),
            slice,
            down: flag(&raw.down),
            toxicity,
        };
        if toxics.latency.is_zero()
            && toxics.jitter.is_zero()
            && toxics.bandwidth.is_none()
            && !toxics.stall
            && !toxics.reset
            && toxics.slice.is_none()
            && !toxics.down
        {
            self.error(
                span.clone(),
                "proxy needs at least one toxic: latency, jitter, bandwidth, stall, reset, slice_size or down",
            );
            return None;
        }
        let _ = target;
        Some(ProxyFault {
            upstream,
            listen,
            toxics,
        })
    }

    /// A number in 0..=1 (an integer 0 or 1 is fine too).
    fn fraction(&mut self, value: &RawValue, key: &str) -> Option<f64> {
        let number = match value.get_ref() {
            toml::Value::Float(number) => *number,
            toml::Value::Integer(number) => *number as f64,
            other => {
                self.error(
                    value.span(),
                    format!(
                        "{key}: expected a number from 0 to 1, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        if !(0.0..=1.0).contains(&number) {
            self.error(
                value.span(),
                format!("{key} must be from 0 to 1, found {number}"),
            );
            return None;
        }
        Some(number)
    }

    /// A listening address of the harness's (stand-ins, kill switch, alert receiver): on
    /// loopback only.
    pub(super) fn listen_address(
        &mut self,
        value: &Spanned<String>,
        key: &str,
    ) -> Option<SocketAddr> {
        match value.get_ref().trim().parse::<SocketAddr>() {
            Ok(address) if address.ip().is_loopback() => Some(address),
            Ok(address) => {
                self.error(
                    value.span(),
                    format!(
                        "{key} must be a loopback address (127.0.0.1:PORT or [::1]:PORT); the harness never listens on {}",
                        address.ip()
                    ),
                );
                None
            }
            Err(_) => {
                self.error(
                    value.span(),
                    format!(
                        r#"{key}: expected "127.0.0.1:PORT", found {:?}"#,
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    // ---- detect -------------------------------------------------------------------------

    fn detection_rules(&mut self, value: &RawValue) -> Vec<DetectionRule> {
        let rules: Vec<DetectionRule> = match value.get_ref() {
            toml::Value::Array(items) => items
                .iter()
                .filter_map(|item| self.detection_rule(item, value.span()))
                .collect(),
            other => self
                .detection_rule(other, value.span())
                .into_iter()
                .collect(),
        };
        if rules.is_empty()
            && matches!(value.get_ref(), toml::Value::Array(items) if items.is_empty())
        {
            self.error(value.span(), "detect is empty; name at least one signal");
        }
        rules
    }

    fn detection_rule(
        &mut self,
        value: &toml::Value,
        span: std::ops::Range<usize>,
    ) -> Option<DetectionRule> {
        const EXPECTED: &str = r#"detect: expected { alert = "Name" }, { health = "unhealthy" }, { metric = "a / b > 0.95" } or { log = "regex", file = "…" }"#;
        let toml::Value::Table(table) = value else {
            self.error(span, format!("{EXPECTED}, found {}", describe(value)));
            return None;
        };
        let text = |key: &str| table.get(key).and_then(toml::Value::as_str);
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let unknown: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|key| !["alert", "health", "metric", "log", "file"].contains(key))
            .collect();
        if !unknown.is_empty() {
            self.error(
                span,
                format!("{EXPECTED}; unknown key {}", unknown.join(", ")),
            );
            return None;
        }
        let forms = ["alert", "health", "metric", "log"]
            .iter()
            .filter(|key| table.contains_key(**key))
            .count();
        if forms != 1 || (table.contains_key("file") && !table.contains_key("log")) {
            self.error(span, format!("{EXPECTED} (exactly one of them)"));
            return None;
        }
        if let Some(name) = text("alert") {
            if name.trim().is_empty() {
                self.error(span, "detect: the alert name must not be empty");
                return None;
            }
            return Some(DetectionRule::Alert {
                name: name.trim().to_owned(),
            });
        }
        if let Some(health) = text("health") {
            if health != "unhealthy" {
                self.error(
                    span,
                    format!(
                        r#"detect: health = "unhealthy" is the only health rule, found {health:?}"#
                    ),
                );
                return None;
            }
            return Some(DetectionRule::Unhealthy);
        }
        if let Some(expression) = text("metric") {
            return match parse_metric_condition(expression) {
                Ok(condition) => Some(DetectionRule::Metric(condition)),
                Err(message) => {
                    self.error(span, format!("detect metric {expression:?}: {message}"));
                    None
                }
            };
        }
        if let Some(pattern) = text("log") {
            if let Err(error) = regex::Regex::new(pattern) {
                let first = error.to_string();
                let first = first.lines().last().unwrap_or_default().trim().to_owned();
                self.error(
                    span,
                    format!("detect log: not a valid regex {pattern:?}: {first}"),
                );
                return None;
            }
            let file = text("file").map(PathBuf::from);
            if let Some(file) = &file {
                self.path_kind(file, span, "detect file", super::observe::PathKind::File);
            }
            return Some(DetectionRule::Log {
                pattern: pattern.to_owned(),
                file,
            });
        }
        self.error(span, format!("{EXPECTED}; the value must be a string"));
        None
    }

    // ---- [chaos] and [abort] ------------------------------------------------------------

    pub(super) fn chaos(&mut self, raw: Option<Spanned<RawChaos>>) -> ChaosSettings {
        let mut settings = ChaosSettings {
            confirm_within: DEFAULT_CONFIRM_WITHIN,
            ..ChaosSettings::default()
        };
        let Some(raw) = raw else {
            return settings;
        };
        let raw = raw.into_inner();
        settings.tts_listen = raw
            .tts_listen
            .as_ref()
            .and_then(|value| self.listen_address(value, "tts_listen"));
        settings.llm_listen = raw
            .llm_listen
            .as_ref()
            .and_then(|value| self.listen_address(value, "llm_listen"));
        settings.confirm_within = self.duration_or(
            raw.confirm_within.as_ref(),
            "confirm_within",
            Zero::Rejected,
            DEFAULT_CONFIRM_WITHIN,
        );
        if let Some(dirs) = &raw.writable_dirs {
            settings.writable_dirs = dirs
                .get_ref()
                .iter()
                .filter_map(|dir| self.writable_dir(dir))
                .collect();
        }
        settings.allow_large_leaks = raw
            .allow_large_leaks
            .as_ref()
            .is_some_and(|flag| *flag.get_ref());
        settings
    }

    /// One `[chaos] writable_dirs` entry, resolved: never a system directory, nor a file.
    fn writable_dir(&mut self, dir: &Spanned<String>) -> Option<PathBuf> {
        self.not_empty(dir, "writable_dirs");
        let written = Path::new(dir.get_ref());
        let resolved = match writable::resolve(written) {
            Ok(resolved) => resolved,
            Err(error) => {
                self.error(
                    dir.span(),
                    format!(
                        "writable_dirs: cannot resolve {}: {error}",
                        written.display()
                    ),
                );
                return None;
            }
        };
        if let Some(what) = writable::system_dir(&resolved) {
            self.error(
                dir.span(),
                format!(
                    "writable_dirs: {:?} resolves to {}, {what}; a fault never writes there",
                    dir.get_ref(),
                    resolved.display()
                ),
            );
            return None;
        }
        if resolved.exists() && !resolved.is_dir() {
            self.error(
                dir.span(),
                format!(
                    "writable_dirs: {:?} resolves to {}, which is not a directory",
                    dir.get_ref(),
                    resolved.display()
                ),
            );
            return None;
        }
        Some(resolved)
    }

    pub(super) fn abort(&mut self, raw: Option<Spanned<RawAbort>>) -> AbortConditions {
        let mut conditions = AbortConditions::default();
        let Some(raw) = raw else {
            return conditions;
        };
        let raw = raw.into_inner();
        if let Some(value) = &raw.call_success_below {
            conditions.call_success_below_pct = self.below_percent(value);
        }
        conditions.over =
            self.duration_or(raw.over.as_ref(), "over", Zero::Rejected, conditions.over);
        if let Some(min_calls) = &raw.min_calls {
            conditions.min_calls = self
                .count(min_calls, "min_calls", 1)
                .unwrap_or(conditions.min_calls);
        }
        if let Some(file) = &raw.kill_switch_file {
            self.not_empty(file, "kill_switch_file");
            conditions.kill_switch_file = Some(PathBuf::from(file.get_ref()));
        }
        conditions.kill_switch_listen = raw
            .kill_switch_listen
            .as_ref()
            .and_then(|value| self.listen_address(value, "kill_switch_listen"));
        conditions
    }

    /// `"50%"` or `"< 50%"` → 50.0.
    fn below_percent(&mut self, value: &RawValue) -> Option<f64> {
        const EXPECTED: &str = r#"call_success_below: expected a percentage such as "50%""#;
        self.percent(value, "<", "call_success_below is a floor", EXPECTED)
    }
}

fn llm(fault: LlmFault, fraction: f64) -> FaultSpec {
    FaultSpec::Llm {
        fault,
        fraction,
        latency: Duration::ZERO,
    }
}

fn kind_list() -> String {
    FaultKind::ALL
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `host:port` or `[v6]:port` with a numeric port.
fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|port| *port != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

/// Parses `series [/ series] OP number`.
pub fn parse_metric_condition(text: &str) -> Result<MetricCondition, String> {
    let operators = [
        (">=", Comparison::GreaterOrEqual),
        ("<=", Comparison::LessOrEqual),
        ("==", Comparison::Equal),
        (">", Comparison::Greater),
        ("<", Comparison::Less),
    ];
    let (position, operator, comparison) = operators
        .iter()
        .filter_map(|(operator, comparison)| {
            text.find(operator)
                .map(|position| (position, *operator, *comparison))
        })
        .min_by_key(|(position, operator, _)| (*position, usize::MAX - operator.len()))
        .ok_or("expected a comparison (>, >=, <, <=, ==) and a number")?;
    let left = text[..position].trim();
    let right = text[position + operator.len()..].trim();
    let threshold: f64 = right
        .parse()
        .map_err(|_| format!("expected a number after {operator}, found {right:?}"))?;
    if !threshold.is_finite() {
        return Err(format!(
            "the threshold must be a finite number, found {right:?}"
        ));
    }
    let (numerator, denominator) = match split_outside_braces(left, '/') {
        Some((numerator, denominator)) => (
            parse_selector(numerator.trim())?,
            Some(parse_selector(denominator.trim())?),
        ),
        None => (parse_selector(left)?, None),
    };
    Ok(MetricCondition {
        numerator,
        denominator,
        comparison,
        threshold,
        text: text.trim().to_owned(),
    })
}

fn split_outside_braces(text: &str, separator: char) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 && !quoted => {
                return Some((&text[..index], &text[index + c.len_utf8()..]));
            }
            _ => {}
        }
    }
    None
}

/// Parses a series selector: `name` or `name{label="value",…}` (the left side of a metric
/// condition, or a `[observe] record` entry).
pub fn parse_series_selector(text: &str) -> Result<SeriesSelector, String> {
    parse_selector(text.trim())
}

/// `name` or `name{label="value",…}`.
fn parse_selector(text: &str) -> Result<SeriesSelector, String> {
    let (name, labels) = match text.split_once('{') {
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .ok_or_else(|| format!("expected }} at the end of {text:?}"))?;
            (name.trim(), parse_labels(body)?)
        }
        None => (text, Vec::new()),
    };
    let valid_name = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid_name {
        return Err(format!("expected a metric name, found {name:?}"));
    }
    Ok(SeriesSelector {
        name: name.to_owned(),
        labels,
    })
}

fn parse_labels(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected label=\"value\" in {{{body}}}"))?;
        let after = after.trim_start();
        let after = after
            .strip_prefix('"')
            .ok_or_else(|| format!("label values are quoted: {{{body}}}"))?;
        let end = after
            .find('"')
            .ok_or_else(|| format!("unterminated label value in {{{body}}}"))?;
        labels.push((name.trim().to_owned(), after[..end].to_owned()));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_conditions_parse() {
        let condition = parse_metric_condition("db_pool_in_use / db_pool_size > 0.95").unwrap();
        assert_eq!(condition.numerator.name, "db_pool_in_use");
        assert_eq!(condition.denominator.unwrap().name, "db_pool_size");
        assert_eq!(condition.comparison, Comparison::Greater);
        assert_eq!(condition.threshold, 0.95);

        let condition =
            parse_metric_condition(r#"tts_requests_total{status="429", x="a/b"} >= 1"#).unwrap();
        assert_eq!(
            condition.numerator.labels,
            vec![
                ("status".to_owned(), "429".to_owned()),
                ("x".to_owned(), "a/b".to_owned())
            ]
        );
        assert!(condition.denominator.is_none());
        assert_eq!(condition.comparison, Comparison::GreaterOrEqual);

        assert!(parse_metric_condition("up").is_err());
        assert!(parse_metric_condition("up > x").is_err());
        assert!(parse_metric_condition("9up > 1").is_err());
        assert!(parse_metric_condition("a{b=c} > 1").is_err());
    }

    #[test]
    fn host_ports_split() {
        assert_eq!(split_host_port("127.0.0.1:5432"), Some(("127.0.0.1", 5432)));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_host_port("localhost"), None);
        assert_eq!(split_host_port("h:0"), None);
    }
}

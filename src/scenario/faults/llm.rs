//! `empty_tool_params`, `malformed_tool_params`, `llm_truncated_stream`, `llm_slow` and
//! `llm_error`: voxsoak's LLM stand-in, which the fleet is pointed at, answers a share of
//! requests with a fault. One family because the five are one stand-in with another
//! behaviour ([`LlmFault`]): they take the same `fraction`, need the same wiring and are
//! planned and helped alike. The bad tool calls are the incident where an LLM emitted a
//! tool call with `{}` and the tool scanned a million documents.

use std::time::Duration;

use toml::Spanned;

use super::super::raw::RawFault;
use super::super::validate::{Validator, Zero};
use super::{ActsOn, DefaultDetection, FaultSpec, KindEntry, KindSpec, RecoverFrom, share};
use crate::contract::standin::LlmFault;
use crate::units::format_duration;

const DEFAULT_OVERSIZED_BYTES: usize = 1 << 20;
const MAX_OVERSIZED_BYTES: i64 = 3 << 20;

const HELP: &str =
    "  empty_tool_params, malformed_tool_params, llm_truncated_stream, llm_slow, llm_error
      --listen 127.0.0.1:PORT: voxsoak's LLM stand-in serves there (LLM_BASE_URL).
      --set fraction=0..1; malformed_tool_params: variant=missing_required|wrong_types|
      oversized|unknown_tool, bytes=N, tool=NAME; llm_slow: delay=DURATION (required);
      llm_error: code=400..599, retry_after=DURATION
";

/// What the five share; each says what it does differently.
const LLM: KindSpec = KindSpec {
    name: "",
    parameters: &["fraction"],
    required: &[],
    acts_on: ActsOn::LlmStandIn,
    detection: DefaultDetection::Alert("LlmDegraded"),
    recover_from: RecoverFrom::Clear,
    heals_itself: false,
    validate: truncated_stream,
    chaos_help: HELP,
    example: "",
};

/// A bad tool call: the fleet must refuse it and go on, so its recovery counts from the
/// injection.
const TOOL_CALL: KindSpec = KindSpec {
    detection: DefaultDetection::Alert("ToolCallRejected"),
    recover_from: RecoverFrom::Injection,
    ..LLM
};

pub const EMPTY_TOOL_PARAMS: KindSpec = KindSpec {
    name: "empty_tool_params",
    validate: empty_tool_params,
    example: "fraction = 0.5",
    ..TOOL_CALL
};

pub const MALFORMED_TOOL_PARAMS: KindSpec = KindSpec {
    name: "malformed_tool_params",
    parameters: &["fraction", "variant", "bytes", "tool"],
    validate: malformed_tool_params,
    example: "variant = \"oversized\"\nbytes = 4096",
    ..TOOL_CALL
};

pub const LLM_TRUNCATED_STREAM: KindSpec = KindSpec {
    name: "llm_truncated_stream",
    validate: truncated_stream,
    example: "fraction = 1",
    ..LLM
};

pub const LLM_SLOW: KindSpec = KindSpec {
    name: "llm_slow",
    parameters: &["fraction", "delay"],
    required: &["delay"],
    validate: slow,
    example: "delay = \"5s\"",
    ..LLM
};

pub const LLM_ERROR: KindSpec = KindSpec {
    name: "llm_error",
    parameters: &["fraction", "code", "retry_after"],
    validate: error,
    example: "code = 429\nretry_after = \"1s\"",
    ..LLM
};

fn faulted(fault: LlmFault, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    Some(FaultSpec::Llm {
        fault,
        fraction: entry.fraction,
        latency: Duration::ZERO,
    })
}

fn empty_tool_params(_: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    faulted(LlmFault::EmptyToolParams, entry)
}

fn malformed_tool_params(
    validator: &mut Validator<'_>,
    entry: &KindEntry<'_>,
) -> Option<FaultSpec> {
    faulted(validator.malformed(entry.raw)?, entry)
}

fn truncated_stream(_: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    faulted(LlmFault::TruncatedStream, entry)
}

fn slow(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    Some(FaultSpec::Llm {
        fault: LlmFault::None,
        fraction: entry.fraction,
        latency: validator.required_duration(
            entry.raw.delay.as_ref(),
            entry.kind,
            "delay",
            entry.span,
        )?,
    })
}

fn error(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    let code = validator.status_code(entry.raw.code.as_ref(), 400..=599, 500)?;
    let retry_after = entry
        .raw
        .retry_after
        .as_ref()
        .and_then(|value| validator.duration(value, "retry_after", Zero::Allowed));
    faulted(LlmFault::Status { code, retry_after }, entry)
}

impl Validator<'_> {
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
}

/// `voxsoak plan`'s line.
pub(super) fn describe(fault: &LlmFault, fraction: f64, latency: Duration) -> String {
    match fault {
        LlmFault::None => format!(
            "the LLM stand-in answers every request {} late",
            format_duration(latency)
        ),
        LlmFault::EmptyToolParams => format!(
            "the LLM stand-in calls the tool with {{}} in {}",
            share(fraction).replace("request", "tool call")
        ),
        LlmFault::Status { code, .. } => {
            format!("the LLM stand-in answers {} with {code}", share(fraction))
        }
        other => format!(
            "the LLM stand-in sends {} for {}",
            other.name(),
            share(fraction)
        ),
    }
}

//! `tts_429`, `tts_error`, `tts_slow` and `tts_timeout`: voxsoak's TTS stand-in, which the
//! fleet is pointed at, answers a share of requests with a fault. One family because the
//! four are one stand-in with another behaviour ([`TtsFault`]): they take the same
//! `fraction`, need the same wiring and are planned and helped alike.

use super::super::validate::{Validator, Zero};
use super::{ActsOn, DefaultDetection, FaultSpec, KindEntry, KindSpec, RecoverFrom, share};
use crate::contract::standin::TtsFault;
use crate::units::format_duration;

const HELP: &str = "  tts_429, tts_error, tts_slow, tts_timeout
      --listen 127.0.0.1:PORT: voxsoak's TTS stand-in serves there, faulted, for the
      duration; the fleet's TTS_BASE_URL must point at http://127.0.0.1:PORT/v1.
      --set fraction=0..1; tts_429: retry_after=DURATION; tts_error: code=500..599;
      tts_slow: delay=DURATION (required)
";

/// What the four share; each says what it does differently.
const TTS: KindSpec = KindSpec {
    name: "",
    parameters: &["fraction"],
    required: &[],
    acts_on: ActsOn::TtsStandIn,
    detection: DefaultDetection::Alert("TtsDegraded"),
    recover_from: RecoverFrom::Clear,
    heals_itself: false,
    validate: timeout,
    chaos_help: HELP,
    example: "",
};

/// The incident: a third-party TTS answered 429 for 90 minutes.
pub const TTS_429: KindSpec = KindSpec {
    name: "tts_429",
    parameters: &["fraction", "retry_after"],
    detection: DefaultDetection::Alert("TtsRateLimited"),
    validate: rate_limited,
    example: "retry_after = \"2s\"\nfraction = 0.5",
    ..TTS
};

pub const TTS_ERROR: KindSpec = KindSpec {
    name: "tts_error",
    parameters: &["fraction", "code"],
    validate: server_error,
    example: "code = 502",
    ..TTS
};

pub const TTS_SLOW: KindSpec = KindSpec {
    name: "tts_slow",
    parameters: &["fraction", "delay"],
    required: &["delay"],
    validate: slow,
    example: "delay = \"3s\"",
    ..TTS
};

pub const TTS_TIMEOUT: KindSpec = KindSpec {
    name: "tts_timeout",
    validate: timeout,
    example: "fraction = 1",
    ..TTS
};

fn faulted(fault: TtsFault, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    Some(FaultSpec::Tts {
        fault,
        fraction: entry.fraction,
    })
}

fn rate_limited(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    let retry_after = entry
        .raw
        .retry_after
        .as_ref()
        .and_then(|value| validator.duration(value, "retry_after", Zero::Allowed));
    faulted(TtsFault::RateLimited { retry_after }, entry)
}

fn server_error(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    let code = validator.status_code(entry.raw.code.as_ref(), 500..=599, 503)?;
    faulted(TtsFault::ServerError { code }, entry)
}

fn slow(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    let delay =
        validator.required_duration(entry.raw.delay.as_ref(), entry.kind, "delay", entry.span)?;
    faulted(TtsFault::Slow { delay }, entry)
}

fn timeout(_: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    faulted(TtsFault::Timeout, entry)
}

/// `voxsoak plan`'s line.
pub(super) fn describe(fault: &TtsFault, fraction: f64) -> String {
    let answer = match fault {
        TtsFault::None => "normal answers".to_owned(),
        TtsFault::RateLimited { retry_after } => match retry_after {
            Some(after) => format!("429 with Retry-After {}", format_duration(*after)),
            None => "429 without Retry-After".to_owned(),
        },
        TtsFault::ServerError { code } => format!("{code}"),
        TtsFault::Slow { delay } => {
            format!("its audio {} late", format_duration(*delay))
        }
        TtsFault::Timeout => "no answer at all".to_owned(),
    };
    format!("the TTS stand-in answers {} with {answer}", share(fraction))
}

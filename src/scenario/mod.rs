//! Scenario files: TOML in, a validated [`Scenario`] out, or every problem with its file,
//! line and column.
//!
//! Loading has two phases: serde types close to the file (`raw`, unknown keys refused at the
//! key), then validation into the model (`validate`), which collects every problem it can
//! find rather than stopping at the first.
//!
//! # Format
//!
//! ```toml
//! name = "nightly"                  # default: the file stem
//! description = "..."
//! seed = 7                          # default 1; `voxsoak run --seed` overrides
//!
//! [target]                          # exactly one of fleet / stream_url / webhook_url
//! fleet = "sink"                    # the harness starts `voxsoak sink` on a free port
//! reply_delay = "600ms"             # sink only: end of caller speech to reply (default 600ms)
//! reply_length = "800ms"            # sink only (default 800ms)
//! # stream_url = "ws://127.0.0.1:8080/stream"   # ws:// or wss://
//! # webhook_url = "http://127.0.0.1:8080/voice" # POST the voice webhook, follow the TwiML
//! # auth_token_env = "TWILIO_AUTH_TOKEN"        # NAME of the variable with the token
//! # custom_parameters = { tenant = "acme" }     # stream_url only: start.customParameters
//! allow_hosts = ["127.0.0.1", "localhost", "::1"]  # the default
//!
//! [load]                            # exactly one of stages / calls_per_minute
//! stages = [{ ramp_to = 50, over = "5s" }, { hold = "20s" }, { ramp_to = 0, over = "5s" }]
//! # calls_per_minute = 120.0        # open model
//! # duration = "5m"                 # required with calls_per_minute
//! # arrivals = "uniform"            # or "poisson"
//! # max_concurrent = 10000          # above it a call is dropped and counted, never delayed
//!
//! [calls]                           # all optional
//! connect_timeout = "5s"
//! turn_timeout = "10s"              # the agent must start replying within this
//! reply_silence = "1.5s"            # a reply with no closing mark ends after this silence
//! wait_for_greeting = false
//! max_call_duration = "10m"
//! fixtures = ["../fixtures/*.wav"]  # relative to this file; `*` in the file name
//! synthetic = { count = 8, min = "1s", max = "2.5s" }
//! from = "+15005550006"
//! to = "+15005550001"
//!
//! [[scripts]]                       # default: one script "conversation", 2 to 3 turns
//! name = "conversation"
//! weight = 3                        # default 1
//! turns = { min = 2, max = 4 }      # or turns = 3; a turn = say a random utterance, listen
//!
//! [[scripts]]
//! name = "menu"
//! steps = [
//!   { say = "order-status" },       # fixture file stem, "random" or "synthetic"
//!   { dtmf = "1234#" },             # 0-9 * # A-D
//!   { pause = "2s" },
//!   { say = "random", listen = false },
//!   { hangup = true },
//! ]
//!
//! [slo]                             # default when absent: call_success = ">= 99%"
//! call_success = ">= 99.5%"
//! response_p95 = "<= 1500ms"
//! response_p99 = "<= 3s"
//! first_audio_p95 = "<= 2s"
//! pacing_jitter_p99 = "<= 5ms"
//! ```
//!
//! Durations are strings with units: `"300ms"`, `"5s"`, `"2m18s"`, `"1h30m"`, `"72h"`.

mod model;
mod plan;
mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;
pub use plan::render_plan;
pub use validate::parse_duration;

/// One problem in a scenario file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(path, diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(path: &Path, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, diagnostic) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = fmt::Write::write_fmt(
            &mut out,
            format_args!(
                "{}:{}:{}: {}",
                path.display(),
                diagnostic.line,
                diagnostic.column,
                diagnostic.message
            ),
        );
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let source = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&source, path)
}

/// Validates scenario text; `path` names it in errors and anchors relative fixture paths.
pub fn parse(source: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let invalid = |diagnostics| ScenarioError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    };
    let raw: raw::RawScenario = toml::from_str(source).map_err(|error| {
        let (line, column) = position(source, error.span().map_or(0, |span| span.start));
        invalid(vec![Diagnostic {
            line,
            column,
            message: error.message().trim().to_string(),
        }])
    })?;
    validate::validate(raw, path).map_err(|problems| {
        invalid(
            problems
                .0
                .into_iter()
                .map(|problem| {
                    let (line, column) = position(source, problem.span.start);
                    Diagnostic {
                        line,
                        column,
                        message: problem.message,
                    }
                })
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests;

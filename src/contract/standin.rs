//! What the TTS and LLM stand-ins are told to do wrong: the scenario model names these, the
//! stand-ins (`crate::standin`) carry them out.

use std::time::Duration;

/// What goes wrong with the TTS stand-in's answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TtsFault {
    #[default]
    None,
    /// 429 with an OpenAI rate-limit error body, and `Retry-After: <secs>` when given.
    RateLimited { retry_after: Option<Duration> },
    /// This 5xx status.
    ServerError { code: u16 },
    /// A normal answer after this extra delay.
    Slow { delay: Duration },
    /// Accept and never answer (until the client gives up or the server stops).
    Timeout,
}

/// What goes wrong with the model's answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LlmFault {
    #[default]
    None,
    /// A tool call with `arguments: "{}"`.
    EmptyToolParams,
    /// Required parameters left out (an optional one, e.g. `{"limit": 5}`, is still there).
    MissingRequired,
    /// Required parameters of the wrong JSON type (a number where a string belongs).
    WrongTypes,
    /// A required string parameter `bytes` long.
    OversizedValues { bytes: usize },
    /// A call to a tool the request did not offer.
    UnknownTool { name: String },
    /// A streamed answer cut off mid-way: no `[DONE]`, the connection just ends. Plain
    /// answers get a body cut in the middle of the JSON.
    TruncatedStream,
    /// Answer with this status and an OpenAI-style error body.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
}

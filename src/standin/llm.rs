//! The LLM stand-in: `POST /v1/chat/completions`, plain and streamed (SSE), with tool calls.
//!
//! Its default script is what a well-behaved model does for an order-status agent: when the
//! last message is the caller's and the request offers tools, it calls the first tool with
//! every required parameter filled with a plausible value by its JSON-Schema type (a string
//! parameter named `customer_id` gets a customer id `C000000`..`C009999` derived from the
//! conversation, so calls spread over the seeded customers); when the last message is a tool
//! result it answers with one short sentence (naming how many items a JSON-array result
//! had); with no tools it answers with a short sentence.
//!
//! Faults ([`LlmFault`]) are switched on and off at run time through [`LlmControl`] and hit
//! a `fraction` of the requests they apply to (tool-call faults apply only to answers that
//! would call a tool). Every request is counted, and every request a fault hit is published
//! as an [`LlmRecord`] naming the call (the request's `user` field).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Running;

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

/// The stand-in's behaviour, swapped atomically at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmBehaviour {
    pub fault: LlmFault,
    /// Share (0..=1) of applicable requests the fault hits; chosen with a seeded RNG.
    pub fraction: f64,
    /// Added before the answer starts (time to first token).
    pub latency: Duration,
}

impl Default for LlmBehaviour {
    fn default() -> Self {
        LlmBehaviour {
            fault: LlmFault::None,
            fraction: 1.0,
            latency: Duration::ZERO,
        }
    }
}

/// A request a fault hit.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRecord {
    pub at: std::time::SystemTime,
    /// The `user` field of the request (the fleet's call SID), if any.
    pub user: Option<String>,
    /// Short name of the fault, e.g. `empty_tool_params`.
    pub fault: &'static str,
    pub status: u16,
}

/// Counters and the control knob, shared between the server and whoever drives it.
#[derive(Debug)]
pub struct LlmControl {}

impl LlmControl {
    pub fn new(behaviour: LlmBehaviour, seed: u64) -> Arc<Self> {
        let _ = (behaviour, seed);
        todo!()
    }

    pub fn set(&self, behaviour: LlmBehaviour) {
        let _ = behaviour;
        todo!()
    }

    pub fn behaviour(&self) -> LlmBehaviour {
        todo!()
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        todo!()
    }

    /// Requests a fault hit so far.
    pub fn faulted(&self) -> u64 {
        todo!()
    }

    /// Every [`LlmRecord`] from now on (a lagging receiver loses the oldest).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LlmRecord> {
        todo!()
    }
}

/// Serves the stand-in on `listener` until `shutdown`.
pub async fn spawn(
    listener: TcpListener,
    control: Arc<LlmControl>,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let _ = (listener, control, shutdown);
    todo!()
}

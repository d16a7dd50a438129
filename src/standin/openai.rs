//! The OpenAI-compatible wire format, as much of it as voice agents use: chat completions
//! (request, response, SSE chunks, tool calls and their schemas) and audio speech.
//!
//! Optional fields are skipped when absent, so what is serialized is what the real API
//! accepts; unknown fields are ignored when parsing, as clients of the real API must.

use serde::{Deserialize, Serialize};

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// OpenAI's end-user id; fleets put the call SID here so a stand-in can say which call a
    /// fault hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// One message of a conversation: `system`, `user`, `assistant` (text and/or tool calls) or
/// `tool` (a tool's result, answering `tool_call_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// Text; `null` on an assistant message that only calls tools.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// `{"type":"function","function":{"name","description","parameters": JSON Schema}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema object (`type`, `properties`, `required`).
    pub parameters: serde_json::Value,
}

/// A tool call the model asks for. `arguments` is a JSON *string*, exactly as the API sends
/// it: it may be `"{}"`, invalid JSON, or huge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// The non-streaming answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: ChatMessage,
    /// `stop` or `tool_calls`.
    pub finish_reason: Option<String>,
}

/// One `data: {…}` event of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// A piece of a tool call in a stream: the first piece of call `index` carries `id`, `type`
/// and the function name; later pieces append to `function.arguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `POST /v1/audio/speech`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechRequest {
    pub model: String,
    pub input: String,
    pub voice: String,
    /// `wav` or `pcm` (24 kHz 16-bit mono little-endian); the real API defaults to mp3,
    /// which the stand-in refuses with 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<String>,
}

/// `{"error":{"message","type","code"}}`, the body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
}

/// What the model said in one answer, however it arrived (plain or streamed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssistantTurn {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
}

/// Why a streamed answer could not be assembled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StreamError {
    #[error("invalid SSE data: {0}")]
    InvalidChunk(String),
    #[error("the stream ended before data: [DONE] (truncated)")]
    Truncated,
    #[error("a tool call delta for index {0} came before its id and name")]
    OrphanToolDelta(u32),
}

/// Assembles a streamed chat completion from the bytes of its SSE body, in whatever pieces
/// the network delivers them (lines may be split across pieces).
#[derive(Debug, Default)]
pub struct StreamAccumulator {}

impl StreamAccumulator {
    /// Feeds the next piece of the body. Returns `Ok(true)` once `data: [DONE]` was seen.
    pub fn push(&mut self, bytes: &[u8]) -> Result<bool, StreamError> {
        let _ = bytes;
        todo!()
    }

    /// The assembled turn; [`StreamError::Truncated`] if `[DONE]` never came.
    pub fn finish(self) -> Result<AssistantTurn, StreamError> {
        todo!()
    }
}

/// Encodes one SSE event: `data: <json>\n\n`.
pub fn sse_event(chunk: &ChatChunk) -> String {
    let _ = chunk;
    todo!()
}

/// The last SSE event of a stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

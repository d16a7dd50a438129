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
///
/// Lines end in `\n` or `\r\n`; a blank line ends an event, whose `data:` lines (joined with
/// `\n`) are one [`ChatChunk`] or `[DONE]`. Comment lines (`:`) and other fields (`event:`,
/// `id:`, `retry:`) are ignored. Only choice 0 is assembled. Anything after `[DONE]` is
/// ignored.
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    /// The start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The `data:` lines of the event being read.
    data: Vec<String>,
    /// Whether the event being read has any `data:` line (even an empty one).
    has_data: bool,
    done: bool,
    turn: AssistantTurn,
    /// Tool calls by their stream `index`, kept in index order.
    tool_calls: std::collections::BTreeMap<u32, ToolCall>,
}

impl StreamAccumulator {
    /// Feeds the next piece of the body. Returns `Ok(true)` once `data: [DONE]` was seen.
    pub fn push(&mut self, bytes: &[u8]) -> Result<bool, StreamError> {
        let mut rest = bytes;
        while !self.done && !rest.is_empty() {
            match rest.iter().position(|&byte| byte == b'\n') {
                Some(end) => {
                    self.line.extend_from_slice(&rest[..end]);
                    rest = &rest[end + 1..];
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.on_line(&line)?;
                }
                None => {
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        Ok(self.done)
    }

    /// The assembled turn; [`StreamError::Truncated`] if `[DONE]` never came.
    pub fn finish(mut self) -> Result<AssistantTurn, StreamError> {
        if !self.done {
            // A body may end right after `data: [DONE]` without the blank line (or even the
            // line break) that would end the event; that stream is still complete. Anything
            // else left over is the start of an event that never arrived.
            let pending = std::mem::take(&mut self.line);
            let pending = String::from_utf8_lossy(&pending);
            let last_line_done = data_value(pending.trim_end_matches('\r')) == Some("[DONE]");
            let event_done =
                pending.is_empty() && self.has_data && self.data.join("\n") == "[DONE]";
            if !(last_line_done || event_done) {
                return Err(StreamError::Truncated);
            }
        }
        let mut turn = self.turn;
        turn.tool_calls = self.tool_calls.into_values().collect();
        Ok(turn)
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), StreamError> {
        if line.is_empty() {
            return self.dispatch();
        }
        let line = String::from_utf8_lossy(line);
        if let Some(value) = data_value(&line) {
            self.data.push(value.to_owned());
            self.has_data = true;
        }
        Ok(())
    }

    /// The end of one event.
    fn dispatch(&mut self) -> Result<(), StreamError> {
        if !std::mem::take(&mut self.has_data) {
            return Ok(());
        }
        let data = std::mem::take(&mut self.data).join("\n");
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: ChatChunk = serde_json::from_str(&data)
            .map_err(|error| StreamError::InvalidChunk(format!("{error}: {}", excerpt(&data))))?;
        for choice in chunk.choices.into_iter().filter(|choice| choice.index == 0) {
            if let Some(content) = choice.delta.content {
                self.turn.content.push_str(&content);
            }
            for delta in choice.delta.tool_calls {
                self.on_tool_delta(delta)?;
            }
            if choice.finish_reason.is_some() {
                self.turn.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }

    fn on_tool_delta(&mut self, delta: ToolCallDelta) -> Result<(), StreamError> {
        let function = delta.function.unwrap_or_default();
        let call = match self.tool_calls.entry(delta.index) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                if delta.id.is_none() && function.name.is_none() {
                    return Err(StreamError::OrphanToolDelta(delta.index));
                }
                entry.insert(ToolCall {
                    id: String::new(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: String::new(),
                        arguments: String::new(),
                    },
                })
            }
        };
        if let Some(id) = delta.id
            && call.id.is_empty()
        {
            call.id = id;
        }
        if let Some(kind) = delta.kind {
            call.kind = kind;
        }
        if let Some(name) = function.name
            && call.function.name.is_empty()
        {
            call.function.name = name;
        }
        if let Some(arguments) = function.arguments {
            call.function.arguments.push_str(&arguments);
        }
        Ok(())
    }
}

/// The value of a `data:` line (one optional space after the colon is not part of it).
fn data_value(line: &str) -> Option<&str> {
    let value = line.strip_prefix("data:")?;
    Some(value.strip_prefix(' ').unwrap_or(value))
}

/// The start of a long text, for error messages.
fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Encodes one SSE event: `data: <json>\n\n`.
pub fn sse_event(chunk: &ChatChunk) -> String {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    let json = serde_json::to_string(chunk).unwrap_or_else(|_| "{}".to_owned());
    format!("data: {json}\n\n")
}

/// The last SSE event of a stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chunk(delta: Delta, finish_reason: Option<&str>) -> ChatChunk {
        ChatChunk {
            id: "chatcmpl-1".to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created: 1_700_000_000,
            model: "gpt-4o-mini".to_owned(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
            }],
        }
    }

    fn content(text: &str) -> Delta {
        Delta {
            content: Some(text.to_owned()),
            ..Delta::default()
        }
    }

    fn tool_delta(
        index: u32,
        id: Option<&str>,
        name: Option<&str>,
        arguments: Option<&str>,
    ) -> Delta {
        Delta {
            tool_calls: vec![ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                kind: id.map(|_| "function".to_owned()),
                function: Some(FunctionCallDelta {
                    name: name.map(str::to_owned),
                    arguments: arguments.map(str::to_owned),
                }),
            }],
            ..Delta::default()
        }
    }

    /// A streamed answer with text, two tool calls, a comment, CRLF line ends and an `event:`
    /// field, as one body; and the turn it must assemble to.
    fn sample_stream() -> (Vec<u8>, AssistantTurn) {
        let mut body = String::from(": keep-alive\n\n");
        body.push_str(&sse_event(&chunk(
            Delta {
                role: Some("assistant".to_owned()),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        )));
        body.push_str(&sse_event(&chunk(content("Let me "), None)));
        body.push_str("event: message\r\n");
        body.push_str(&sse_event(&chunk(content("check, Zoë."), None)).replace('\n', "\r\n"));
        body.push_str(&sse_event(&chunk(
            tool_delta(0, Some("call_1"), Some("lookup_orders"), Some("")),
            None,
        )));
        body.push_str(&sse_event(&chunk(
            tool_delta(1, Some("call_2"), Some("get_time"), Some("{}")),
            None,
        )));
        body.push_str(&sse_event(&chunk(
            tool_delta(0, None, None, Some("{\"customer_id\":")),
            None,
        )));
        body.push_str(&sse_event(&chunk(
            tool_delta(0, None, None, Some("\"C000042\"}")),
            None,
        )));
        body.push_str(&sse_event(&chunk(Delta::default(), Some("tool_calls"))));
        body.push_str(SSE_DONE);
        let turn = AssistantTurn {
            content: "Let me check, Zoë.".to_owned(),
            tool_calls: vec![
                ToolCall {
                    id: "call_1".to_owned(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: "lookup_orders".to_owned(),
                        arguments: "{\"customer_id\":\"C000042\"}".to_owned(),
                    },
                },
                ToolCall {
                    id: "call_2".to_owned(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: "get_time".to_owned(),
                        arguments: "{}".to_owned(),
                    },
                },
            ],
            finish_reason: Some("tool_calls".to_owned()),
        };
        (body.into_bytes(), turn)
    }

    #[test]
    fn a_stream_split_at_every_byte_boundary_assembles_the_same_turn() {
        let (body, expected) = sample_stream();
        for split in 0..=body.len() {
            let mut accumulator = StreamAccumulator::default();
            let first = accumulator.push(&body[..split]).unwrap();
            assert_eq!(first, split == body.len(), "split at {split}");
            assert!(
                accumulator.push(&body[split..]).unwrap(),
                "split at {split}"
            );
            assert_eq!(accumulator.finish().unwrap(), expected, "split at {split}");
        }
        // And one byte at a time.
        let mut accumulator = StreamAccumulator::default();
        for byte in &body {
            accumulator.push(std::slice::from_ref(byte)).unwrap();
        }
        assert_eq!(accumulator.finish().unwrap(), expected);
    }

    #[test]
    fn a_stream_without_done_is_truncated() {
        let (body, _) = sample_stream();
        let without_done = &body[..body.len() - SSE_DONE.len()];
        for cut in [0, 1, without_done.len() / 2, without_done.len()] {
            let mut accumulator = StreamAccumulator::default();
            assert!(!accumulator.push(&without_done[..cut]).unwrap());
            assert_eq!(
                accumulator.finish(),
                Err(StreamError::Truncated),
                "cut {cut}"
            );
        }
        // Cut in the middle of the [DONE] line itself.
        let mut accumulator = StreamAccumulator::default();
        accumulator.push(&body[..body.len() - 5]).unwrap();
        assert_eq!(accumulator.finish(), Err(StreamError::Truncated));
    }

    #[test]
    fn a_body_ending_right_after_done_is_complete() {
        let (body, expected) = sample_stream();
        for trim in [1, 2] {
            let mut accumulator = StreamAccumulator::default();
            accumulator.push(&body[..body.len() - trim]).unwrap();
            assert_eq!(accumulator.finish().unwrap(), expected, "trim {trim}");
        }
    }

    #[test]
    fn data_after_done_is_ignored() {
        let (mut body, expected) = sample_stream();
        body.extend_from_slice(b"data: {not json}\n\n");
        let mut accumulator = StreamAccumulator::default();
        assert!(accumulator.push(&body).unwrap());
        assert_eq!(accumulator.finish().unwrap(), expected);
    }

    #[test]
    fn a_tool_call_split_across_many_deltas_assembles() {
        let arguments = r#"{"customer_id":"C001234","limit":5,"note":"naïve ✓"}"#;
        let mut body = sse_event(&chunk(
            tool_delta(0, Some("call_7"), Some("lookup_orders"), None),
            None,
        ));
        for character in arguments.chars() {
            body.push_str(&sse_event(&chunk(
                tool_delta(0, None, None, Some(&character.to_string())),
                None,
            )));
        }
        body.push_str(&sse_event(&chunk(Delta::default(), Some("tool_calls"))));
        body.push_str(SSE_DONE);
        let mut accumulator = StreamAccumulator::default();
        for piece in body.as_bytes().chunks(7) {
            accumulator.push(piece).unwrap();
        }
        let turn = accumulator.finish().unwrap();
        assert_eq!(turn.content, "");
        assert_eq!(turn.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(turn.tool_calls.len(), 1);
        let call = &turn.tool_calls[0];
        assert_eq!(call.id, "call_7");
        assert_eq!(call.kind, "function");
        assert_eq!(call.function.name, "lookup_orders");
        assert_eq!(call.function.arguments, arguments);
    }

    #[test]
    fn invalid_json_and_orphan_deltas_are_errors() {
        let mut accumulator = StreamAccumulator::default();
        let error = accumulator.push(b"data: {\"id\": 3\n\n").unwrap_err();
        assert!(matches!(error, StreamError::InvalidChunk(_)), "{error:?}");

        let mut accumulator = StreamAccumulator::default();
        let error = accumulator
            .push(b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n")
            .unwrap_err();
        assert!(
            matches!(error, StreamError::InvalidChunk(ref text) if text.contains("overloaded"))
        );

        let mut accumulator = StreamAccumulator::default();
        let orphan = sse_event(&chunk(tool_delta(2, None, None, Some("{")), None));
        assert_eq!(
            accumulator.push(orphan.as_bytes()),
            Err(StreamError::OrphanToolDelta(2))
        );
    }

    #[test]
    fn sse_event_is_one_data_line_and_a_blank_line() {
        let event = sse_event(&chunk(content("hi\nthere"), None));
        assert!(event.starts_with("data: {"));
        assert!(event.ends_with("}\n\n"));
        assert_eq!(event.matches('\n').count(), 2);
    }

    #[test]
    fn tool_specs_and_calls_serialize_as_openai_documents_them() {
        let request = ChatRequest {
            model: "gpt-4o-mini".to_owned(),
            messages: vec![
                ChatMessage {
                    role: "user".to_owned(),
                    content: Some("Where is my order?".to_owned()),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                },
                ChatMessage {
                    role: "assistant".to_owned(),
                    content: None,
                    tool_calls: vec![ToolCall {
                        id: "call_abc123".to_owned(),
                        kind: "function".to_owned(),
                        function: FunctionCall {
                            name: "lookup_orders".to_owned(),
                            arguments: "{\"customer_id\":\"C000001\"}".to_owned(),
                        },
                    }],
                    tool_call_id: None,
                },
                ChatMessage {
                    role: "tool".to_owned(),
                    content: Some("[]".to_owned()),
                    tool_calls: Vec::new(),
                    tool_call_id: Some("call_abc123".to_owned()),
                },
            ],
            tools: vec![ToolSpec {
                kind: "function".to_owned(),
                function: FunctionSpec {
                    name: "lookup_orders".to_owned(),
                    description: Some("Orders of a customer".to_owned()),
                    parameters: json!({
                        "type": "object",
                        "properties": {"customer_id": {"type": "string"}},
                        "required": ["customer_id"],
                    }),
                },
            }],
            stream: false,
            user: None,
        };
        let value = serde_json::to_value(&request).unwrap();
        assert_eq!(
            value,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "user", "content": "Where is my order?"},
                    {
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "id": "call_abc123",
                            "type": "function",
                            "function": {
                                "name": "lookup_orders",
                                "arguments": "{\"customer_id\":\"C000001\"}",
                            },
                        }],
                    },
                    {"role": "tool", "content": "[]", "tool_call_id": "call_abc123"},
                ],
                "tools": [{
                    "type": "function",
                    "function": {
                        "name": "lookup_orders",
                        "description": "Orders of a customer",
                        "parameters": {
                            "type": "object",
                            "properties": {"customer_id": {"type": "string"}},
                            "required": ["customer_id"],
                        },
                    },
                }],
            })
        );
        let back: ChatRequest = serde_json::from_value(value).unwrap();
        assert_eq!(back, request);

        let streamed = ChatRequest {
            stream: true,
            user: Some("CA123".to_owned()),
            tools: Vec::new(),
            ..request
        };
        let value = serde_json::to_value(&streamed).unwrap();
        assert_eq!(value["stream"], json!(true));
        assert_eq!(value["user"], json!("CA123"));
        assert!(value.get("tools").is_none());
    }

    #[test]
    fn openai_documented_answers_parse() {
        // From the API reference (function calling), with fields the stand-in ignores.
        let response: ChatResponse = serde_json::from_value(json!({
            "id": "chatcmpl-abc123",
            "object": "chat.completion",
            "created": 1_699_896_916,
            "model": "gpt-4o-mini",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": "call_abc123",
                        "type": "function",
                        "function": {
                            "name": "get_current_weather",
                            "arguments": "{\n\"location\": \"Boston, MA\"\n}",
                        },
                    }],
                },
                "logprobs": null,
                "finish_reason": "tool_calls",
            }],
            "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
        }))
        .unwrap();
        let message = &response.choices[0].message;
        assert_eq!(message.content, None);
        assert_eq!(message.tool_calls[0].kind, "function");
        assert_eq!(
            message.tool_calls[0].function.arguments,
            "{\n\"location\": \"Boston, MA\"\n}"
        );
        assert_eq!(
            response.choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );

        let chunk: ChatChunk = serde_json::from_value(json!({
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1_694_268_190,
            "model": "gpt-4o-mini",
            "system_fingerprint": "fp_44709d6fcb",
            "choices": [{
                "index": 0,
                "delta": {"role": "assistant", "content": null, "tool_calls": [{
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_orders", "arguments": ""},
                }]},
                "logprobs": null,
                "finish_reason": null,
            }],
        }))
        .unwrap();
        let delta = &chunk.choices[0].delta;
        assert_eq!(delta.role.as_deref(), Some("assistant"));
        assert_eq!(delta.content, None);
        assert_eq!(delta.tool_calls[0].id.as_deref(), Some("call_1"));

        let later = serde_json::to_value(ToolCallDelta {
            index: 0,
            id: None,
            kind: None,
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some("{\"a\"".to_owned()),
            }),
        })
        .unwrap();
        assert_eq!(
            later,
            json!({"index": 0, "function": {"arguments": "{\"a\""}})
        );

        let error: ErrorBody = serde_json::from_value(json!({
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "param": null,
                "code": "rate_limit_exceeded",
            }
        }))
        .unwrap();
        assert_eq!(error.error.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(error.error.kind, "requests");

        let speech = serde_json::to_value(SpeechRequest {
            model: "tts-1".to_owned(),
            input: "Hello".to_owned(),
            voice: "alloy".to_owned(),
            response_format: None,
        })
        .unwrap();
        assert_eq!(
            speech,
            json!({"model": "tts-1", "input": "Hello", "voice": "alloy"})
        );
    }
}

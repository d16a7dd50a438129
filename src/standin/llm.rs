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
//! would call a tool). Every request is counted ([`LlmCounts`]) under one lock with the
//! behaviour that decided its answer, so a fault's counts taken at its switches
//! ([`LlmControl::switch`]) are exact however fast requests come; the first requests a fault
//! hit are kept as [`LlmRecord`]s naming the call (the request's `user` field) for the
//! journal ([`LlmControl::take_hits`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::control::{Control, Counts, StandIn};
use super::openai::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionCallDelta, SSE_DONE, ToolCall, ToolCallDelta, sse_event,
};
use super::{
    Running, Served, coin_flip, delay_unless_shutdown, error_response, shutting_down, stable_hash,
    status_error, status_from, unix_secs,
};

pub use crate::contract::standin::LlmFault;

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

/// The stand-in's counts, as one snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LlmCounts {
    pub requests: u64,
    /// Requests a fault hit.
    pub faulted: u64,
}

impl Counts for LlmCounts {
    fn since(&self, earlier: &LlmCounts) -> LlmCounts {
        LlmCounts {
            requests: self.requests.saturating_sub(earlier.requests),
            faulted: self.faulted.saturating_sub(earlier.faulted),
        }
    }

    fn requests(&self) -> u64 {
        self.requests
    }
}

/// How many hits [`LlmControl::take_hits`] keeps between two takes: the first ones (the
/// journal keeps only the first hits of each injection); later ones are still counted.
pub const KEPT_HITS: usize = 1024;

/// The LLM stand-in, as its control sees it: what it keeps under the count lock are the
/// requests a fault hit ([`LlmControl::take_hits`]); outside it, the id counter.
#[derive(Debug, Default)]
pub struct LlmStandIn {
    /// Numbers completion and tool-call ids (from 1).
    next_id: AtomicU64,
}

impl StandIn for LlmStandIn {
    type Behaviour = LlmBehaviour;
    type Counts = LlmCounts;
    type Kept = VecDeque<LlmRecord>;

    /// Hits not taken yet are dropped: they belong to the behaviour replaced.
    fn switched(hits: &mut VecDeque<LlmRecord>) {
        hits.clear();
    }
}

/// Counters and the control knob, shared between the server and whoever drives it.
pub type LlmControl = Control<LlmStandIn>;

impl LlmControl {
    /// Requests a fault hit so far.
    pub fn faulted(&self) -> u64 {
        self.counts().faulted
    }

    /// The requests a fault hit since the last take (at most [`KEPT_HITS`] of them, the
    /// first), oldest first.
    pub fn take_hits(&self) -> Vec<LlmRecord> {
        self.ledger().kept.drain(..).collect()
    }

    /// Counts one request and decides, under the behaviour of that moment, whether the
    /// fault hits it; `calls_tool` is None for a request refused before any fault applies.
    fn admit(&self, calls_tool: Option<bool>, user: Option<&str>) -> (LlmBehaviour, bool) {
        let mut ledger = self.ledger();
        ledger.counts.requests += 1;
        let behaviour = ledger.behaviour.clone();
        let hit = calls_tool.is_some_and(|calls_tool| {
            behaviour.fault.applies(calls_tool) && coin_flip(&self.rng, behaviour.fraction)
        });
        if hit {
            ledger.counts.faulted += 1;
            if ledger.kept.len() < KEPT_HITS {
                let status = match &behaviour.fault {
                    LlmFault::Status { code, .. } => status_from(*code).as_u16(),
                    _ => 200,
                };
                ledger.kept.push_back(LlmRecord {
                    at: SystemTime::now(),
                    user: user.map(str::to_owned),
                    fault: behaviour.fault.name(),
                    status,
                });
            }
        }
        (behaviour, hit)
    }

    fn next_id(&self) -> u64 {
        self.own.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl LlmFault {
    /// The short name records carry, e.g. `empty_tool_params`.
    pub fn name(&self) -> &'static str {
        match self {
            LlmFault::None => "none",
            LlmFault::EmptyToolParams => "empty_tool_params",
            LlmFault::MissingRequired => "missing_required",
            LlmFault::WrongTypes => "wrong_types",
            LlmFault::OversizedValues { .. } => "oversized_values",
            LlmFault::UnknownTool { .. } => "unknown_tool",
            LlmFault::TruncatedStream => "truncated_stream",
            LlmFault::Status { .. } => "status",
        }
    }

    /// Whether the fault can hit an answer that would (or would not) call a tool.
    fn applies(&self, calls_tool: bool) -> bool {
        match self {
            LlmFault::None => false,
            LlmFault::EmptyToolParams
            | LlmFault::MissingRequired
            | LlmFault::WrongTypes
            | LlmFault::OversizedValues { .. }
            | LlmFault::UnknownTool { .. } => calls_tool,
            LlmFault::TruncatedStream | LlmFault::Status { .. } => true,
        }
    }
}

/// Serves the stand-in on `listener` until `shutdown`.
pub async fn spawn(
    listener: TcpListener,
    control: Arc<LlmControl>,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let routes = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models));
    super::serve_control(listener, control, routes, shutdown).await
}

/// The model `GET /v1/models` lists (any model name is accepted).
pub const MODEL: &str = "voxsoak-standin";

type LlmState = Served<LlmStandIn>;

async fn models() -> Response {
    Json(json!({
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "voxsoak"}],
    }))
    .into_response()
}

async fn chat_completions(
    State(state): State<Arc<LlmState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let control = &state.control;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            control.admit(None, None);
            return error_response(
                rejection.status(),
                rejection.body_text(),
                "invalid_request_error",
                None,
                None,
            );
        }
    };
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            control.admit(None, None);
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("We could not parse the JSON body of your request: {error}"),
                "invalid_request_error",
                None,
                None,
            );
        }
    };
    if request.messages.is_empty() {
        control.admit(None, None);
        return error_response(
            StatusCode::BAD_REQUEST,
            "'messages' must contain at least one message.",
            "invalid_request_error",
            Some("empty_array"),
            None,
        );
    }

    let id = control.next_id();
    let script = script(&request, id);
    let (behaviour, hit) = control.admit(
        Some(matches!(script, Script::Call(_))),
        request.user.as_deref(),
    );
    let fault = if hit { behaviour.fault } else { LlmFault::None };

    if !delay_unless_shutdown(behaviour.latency, &state.shutdown).await {
        return shutting_down();
    }
    if let LlmFault::Status { code, retry_after } = fault {
        return status_error(status_from(code), retry_after);
    }

    let message = match script {
        Script::Call(call) => assistant_call(apply_fault(call, &fault)),
        Script::Say(text) => assistant_text(text),
    };
    let truncated = fault == LlmFault::TruncatedStream;
    let completion_id = format!("chatcmpl-standin-{id}");
    if request.stream {
        stream_answer(&completion_id, &request.model, message, truncated)
    } else {
        plain_answer(completion_id, request.model, message, truncated)
    }
}

/// What the well-behaved model answers.
#[derive(Debug)]
enum Script {
    Call(PlannedCall),
    Say(String),
}

/// A tool call before faults bend it: the tool and its parameter schema.
#[derive(Debug)]
struct PlannedCall {
    id: String,
    name: String,
    parameters: Value,
    /// The customer id a `customer_id` parameter gets.
    customer: String,
}

fn script(request: &ChatRequest, id: u64) -> Script {
    let Some(last) = request.messages.last() else {
        return Script::Say(GREETING.to_owned());
    };
    match last.role.as_str() {
        "user" => match request.tools.first() {
            Some(tool) => Script::Call(PlannedCall {
                id: format!("call_{id}"),
                name: tool.function.name.clone(),
                parameters: tool.function.parameters.clone(),
                customer: customer_for(request),
            }),
            None => Script::Say(GREETING.to_owned()),
        },
        "tool" => Script::Say(tool_result_sentence(last.content.as_deref().unwrap_or(""))),
        _ => Script::Say(GREETING.to_owned()),
    }
}

const GREETING: &str = "I can help you check on your order.";

/// `C000000`..`C009999` from the request's `user` (the call), or from the conversation when
/// there is none.
fn customer_for(request: &ChatRequest) -> String {
    let hash = match &request.user {
        Some(user) => stable_hash(user.as_bytes()),
        None => {
            let mut text = Vec::new();
            for message in &request.messages {
                text.extend_from_slice(message.role.as_bytes());
                text.push(0);
                text.extend_from_slice(message.content.as_deref().unwrap_or("").as_bytes());
                text.push(0);
            }
            stable_hash(&text)
        }
    };
    format!("C{:06}", hash % CUSTOMERS)
}

/// Customers the default script spreads its `customer_id`s over.
const CUSTOMERS: u64 = 10_000;

/// One short sentence about a tool's result.
fn tool_result_sentence(content: &str) -> String {
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Array(items)) => match items.len() {
            0 => "I couldn't find any orders for you.".to_owned(),
            count => {
                let noun = if count == 1 { "order" } else { "orders" };
                let found = format!("I found {count} {noun} for you.");
                let status = items
                    .first()
                    .and_then(|item| item.get("status"))
                    .and_then(Value::as_str)
                    .filter(|status| {
                        status.len() <= 16
                            && status.chars().all(|c| c.is_alphanumeric() || c == ' ')
                    });
                match status {
                    Some(status) if count == 1 => format!("{found} It is {status}."),
                    Some(status) => format!("{found} The latest one is {status}."),
                    None => found,
                }
            }
        },
        Ok(Value::Object(object)) if object.contains_key("error") => APOLOGY.to_owned(),
        Ok(Value::String(text)) if looks_like_error(&text) => APOLOGY.to_owned(),
        Err(_) if looks_like_error(content) => APOLOGY.to_owned(),
        _ => "Thanks, I have what I need.".to_owned(),
    }
}

const APOLOGY: &str = "Sorry, I couldn't look that up right now.";

fn looks_like_error(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "error",
        "fail",
        "timeout",
        "timed out",
        "invalid",
        "exception",
    ]
    .iter()
    .any(|word| text.contains(word))
}

/// The call as the fault (if any) bends it.
fn apply_fault(call: PlannedCall, fault: &LlmFault) -> ToolCall {
    let required = required_properties(&call.parameters);
    let mut arguments = Map::new();
    let mut name = call.name;
    match fault {
        LlmFault::EmptyToolParams => {}
        LlmFault::MissingRequired => {
            for (property, schema) in optional_properties(&call.parameters, &required) {
                arguments.insert(
                    property.clone(),
                    plausible(&property, &schema, &call.customer),
                );
            }
        }
        LlmFault::WrongTypes => {
            for (property, schema) in &required {
                arguments.insert(
                    property.clone(),
                    wrong_type(property, schema, &call.customer),
                );
            }
        }
        LlmFault::OversizedValues { bytes } => {
            for (property, schema) in &required {
                arguments.insert(
                    property.clone(),
                    plausible(property, schema, &call.customer),
                );
            }
            let target = required
                .iter()
                .find(|(_, schema)| schema_type(schema) == "string")
                .or(required.first())
                .map_or_else(|| "query".to_owned(), |(property, _)| property.clone());
            let huge: String = call.customer.chars().cycle().take(*bytes).collect();
            arguments.insert(target, Value::String(huge));
        }
        LlmFault::UnknownTool { name: unknown } => {
            name.clone_from(unknown);
            for (property, schema) in &required {
                arguments.insert(
                    property.clone(),
                    plausible(property, schema, &call.customer),
                );
            }
        }
        LlmFault::None | LlmFault::TruncatedStream | LlmFault::Status { .. } => {
            for (property, schema) in &required {
                arguments.insert(
                    property.clone(),
                    plausible(property, schema, &call.customer),
                );
            }
        }
    }
    ToolCall {
        id: call.id,
        kind: "function".to_owned(),
        function: FunctionCall {
            name,
            arguments: Value::Object(arguments).to_string(),
        },
    }
}

/// The `required` properties of a JSON Schema with their schemas (`{}` when undeclared), in
/// the order `required` lists them.
fn required_properties(parameters: &Value) -> Vec<(String, Value)> {
    let properties = parameters.get("properties");
    let mut seen = Vec::new();
    for name in parameters
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if seen.iter().any(|(known, _)| known == name) {
            continue;
        }
        let schema = properties
            .and_then(|properties| properties.get(name))
            .cloned()
            .unwrap_or_else(|| json!({}));
        seen.push((name.to_owned(), schema));
    }
    seen
}

/// The declared properties that are not required.
fn optional_properties(parameters: &Value, required: &[(String, Value)]) -> Vec<(String, Value)> {
    parameters
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(name, _)| !required.iter().any(|(known, _)| known == *name))
        .map(|(name, schema)| (name.clone(), schema.clone()))
        .collect()
}

/// A property's JSON type: `type` (the first non-null one of a list), else the type of its
/// first `enum` value, else `string`.
fn schema_type(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(kind)) => kind,
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null")
            .unwrap_or("string"),
        _ => match schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|values| values.first())
        {
            Some(Value::Number(number)) if number.is_i64() || number.is_u64() => "integer",
            Some(Value::Number(_)) => "number",
            Some(Value::Bool(_)) => "boolean",
            _ => "string",
        },
    }
}

/// What a well-behaved model puts in a parameter.
fn plausible(name: &str, schema: &Value, customer: &str) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|values| values.first())
    {
        return first.clone();
    }
    match schema_type(schema) {
        "integer" => json!(5),
        "number" => json!(1.0),
        "boolean" => json!(true),
        "array" => json!([]),
        "object" => json!({}),
        "null" => Value::Null,
        _ if name == "customer_id" => Value::String(customer.to_owned()),
        _ => Value::String("order".to_owned()),
    }
}

/// A value of the wrong JSON type for the parameter: a number for a string, a string for
/// anything else.
fn wrong_type(name: &str, schema: &Value, customer: &str) -> Value {
    match schema_type(schema) {
        "string" if name == "customer_id" => {
            json!(
                customer
                    .trim_start_matches('C')
                    .parse::<u64>()
                    .unwrap_or(42)
            )
        }
        "string" => json!(42),
        "integer" | "number" => json!("five"),
        "boolean" => json!("yes"),
        _ => json!("none"),
    }
}

fn assistant_call(call: ToolCall) -> ChatMessage {
    ChatMessage {
        role: "assistant".to_owned(),
        content: None,
        tool_calls: vec![call],
        tool_call_id: None,
    }
}

fn assistant_text(text: String) -> ChatMessage {
    ChatMessage {
        role: "assistant".to_owned(),
        content: Some(text),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

fn finish_reason(message: &ChatMessage) -> &'static str {
    if message.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

fn plain_answer(id: String, model: String, message: ChatMessage, truncated: bool) -> Response {
    let finish_reason = finish_reason(&message).to_owned();
    let response = ChatResponse {
        id,
        object: "chat.completion".to_owned(),
        created: unix_secs(),
        model,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish_reason),
        }],
    };
    let mut json = serde_json::to_vec(&response).unwrap_or_default();
    if truncated {
        json.truncate(json.len() / 2);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response()
}

/// How long a truncated stream stays open after its last bytes before it breaks, so that
/// they reach the client before the connection ends.
const TRUNCATION_GRACE: Duration = Duration::from_millis(50);

fn stream_answer(id: &str, model: &str, message: ChatMessage, truncated: bool) -> Response {
    let events = stream_events(id, model, message);
    let body = if truncated {
        // Half the events, then half of the next one, then the connection breaks (the
        // chunked body never ends properly).
        let keep = events.len() / 2;
        let mut sent: Vec<Bytes> = events[..keep].iter().cloned().map(Bytes::from).collect();
        if let Some(next) = events.get(keep) {
            let mut half = next.len() / 2;
            while !next.is_char_boundary(half) {
                half -= 1;
            }
            sent.push(Bytes::from(next[..half].to_owned()));
        }
        let broken = futures_util::stream::once(async {
            tokio::time::sleep(TRUNCATION_GRACE).await;
            Err(std::io::Error::other(
                "stream truncated by the stand-in's fault",
            ))
        });
        Body::from_stream(
            futures_util::stream::iter(sent.into_iter().map(Ok::<_, std::io::Error>)).chain(broken),
        )
    } else {
        let mut all = events;
        all.push(SSE_DONE.to_owned());
        Body::from_stream(futures_util::stream::iter(
            all.into_iter()
                .map(|event| Ok::<_, std::io::Error>(Bytes::from(event))),
        ))
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The SSE events of an answer, without `[DONE]`: the role, the content in a few pieces or
/// the tool call (id, type and name first, then its arguments in two or more pieces), and
/// the finish reason.
fn stream_events(id: &str, model: &str, message: ChatMessage) -> Vec<String> {
    let created = unix_secs();
    let event = |delta: Delta, finish_reason: Option<&str>| {
        sse_event(&ChatChunk {
            id: id.to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.to_owned(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
            }],
        })
    };
    let finish = finish_reason(&message);
    let mut events = vec![event(
        Delta {
            role: Some("assistant".to_owned()),
            content: message.content.as_ref().map(|_| String::new()),
            tool_calls: Vec::new(),
        },
        None,
    )];
    if let Some(content) = &message.content {
        for piece in split_words(content, 3) {
            events.push(event(
                Delta {
                    content: Some(piece.to_owned()),
                    ..Delta::default()
                },
                None,
            ));
        }
    }
    for (index, call) in message.tool_calls.into_iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        events.push(event(
            Delta {
                tool_calls: vec![ToolCallDelta {
                    index,
                    id: Some(call.id),
                    kind: Some(call.kind),
                    function: Some(FunctionCallDelta {
                        name: Some(call.function.name),
                        arguments: Some(String::new()),
                    }),
                }],
                ..Delta::default()
            },
            None,
        ));
        for piece in split_bytes(&call.function.arguments) {
            events.push(event(
                Delta {
                    tool_calls: vec![ToolCallDelta {
                        index,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta {
                            name: None,
                            arguments: Some(piece.to_owned()),
                        }),
                    }],
                    ..Delta::default()
                },
                None,
            ));
        }
    }
    events.push(event(Delta::default(), Some(finish)));
    events
}

/// `text` in about `pieces` pieces, split after spaces (each piece keeps its trailing space).
fn split_words(text: &str, pieces: usize) -> Vec<&str> {
    let words: Vec<usize> = text
        .match_indices(' ')
        .map(|(at, _)| at + 1)
        .filter(|&at| at < text.len())
        .collect();
    let per_piece = (words.len() + 1).div_ceil(pieces.max(1)).max(1);
    let mut cuts: Vec<usize> = words
        .into_iter()
        .skip(per_piece - 1)
        .step_by(per_piece)
        .collect();
    cuts.push(text.len());
    let mut start = 0;
    let mut out = Vec::new();
    for cut in cuts {
        if cut > start {
            out.push(&text[start..cut]);
            start = cut;
        }
    }
    out
}

/// Largest piece of tool-call arguments one SSE event carries.
const MAX_ARGUMENT_PIECE: usize = 16 << 10;

/// Tool-call arguments in pieces: three for short ones (two for two bytes), more of at
/// most [`MAX_ARGUMENT_PIECE`] bytes for long ones; never inside a UTF-8 character.
fn split_bytes(text: &str) -> Vec<&str> {
    let size = text.len().div_ceil(3).clamp(1, MAX_ARGUMENT_PIECE);
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::standin::openai::{
        AssistantTurn, ErrorBody, FunctionSpec, StreamAccumulator, StreamError, ToolSpec,
    };
    use crate::standin::testing::{self, a_hanging_request_gets_503_at_shutdown};

    async fn start(
        behaviour: LlmBehaviour,
        seed: u64,
    ) -> (Arc<LlmControl>, Running, CancellationToken) {
        testing::start(behaviour, seed, spawn).await
    }

    fn lookup_orders() -> ToolSpec {
        ToolSpec {
            kind: "function".to_owned(),
            function: FunctionSpec {
                name: "lookup_orders".to_owned(),
                description: Some("The customer's orders, newest first".to_owned()),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "customer_id": {"type": "string", "description": "C and six digits"},
                        "limit": {"type": "integer"},
                    },
                    "required": ["customer_id"],
                }),
            },
        }
    }

    fn message(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_owned(),
            content: Some(content.to_owned()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    fn user_asks(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".to_owned(),
            messages: vec![
                message("system", "You are an order-status agent."),
                message("user", "Where is my order?"),
            ],
            tools: vec![lookup_orders()],
            stream,
            user: Some("CA0123456789abcdef0123456789abcdef".to_owned()),
        }
    }

    fn tool_answered(result: &str, stream: bool) -> ChatRequest {
        let mut request = user_asks(stream);
        request.messages.push(ChatMessage {
            role: "assistant".to_owned(),
            content: None,
            tool_calls: vec![ToolCall {
                id: "call_1".to_owned(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: "lookup_orders".to_owned(),
                    arguments: "{\"customer_id\":\"C000001\"}".to_owned(),
                },
            }],
            tool_call_id: None,
        });
        request.messages.push(ChatMessage {
            role: "tool".to_owned(),
            content: Some(result.to_owned()),
            tool_calls: Vec::new(),
            tool_call_id: Some("call_1".to_owned()),
        });
        request
    }

    async fn post(running: &Running, request: &ChatRequest) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/chat/completions", running.base_url()))
            .json(request)
            .send()
            .await
            .unwrap()
    }

    /// A plain answer's single choice.
    async fn plain(running: &Running, request: &ChatRequest) -> Choice {
        let response = post(running, request).await;
        assert_eq!(response.status(), 200);
        let mut answer: ChatResponse = response.json().await.unwrap();
        assert_eq!(answer.object, "chat.completion");
        assert_eq!(answer.model, request.model);
        assert_eq!(answer.choices.len(), 1);
        answer.choices.remove(0)
    }

    /// Reads a streamed answer to its end (or the connection's) through the accumulator; also
    /// returns the raw body.
    async fn streamed(
        running: &Running,
        request: &ChatRequest,
    ) -> (Result<AssistantTurn, StreamError>, String) {
        let mut response = post(running, request).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut accumulator = StreamAccumulator::default();
        let mut raw = Vec::new();
        while let Ok(Some(piece)) = response.chunk().await {
            raw.extend_from_slice(&piece);
            if let Err(error) = accumulator.push(&piece) {
                return (Err(error), String::from_utf8_lossy(&raw).into_owned());
            }
        }
        (
            accumulator.finish(),
            String::from_utf8_lossy(&raw).into_owned(),
        )
    }

    fn is_customer_id(value: &Value) -> bool {
        value.as_str().is_some_and(|id| {
            id.len() == 7
                && id.starts_with('C')
                && id[1..].bytes().all(|byte| byte.is_ascii_digit())
                && id[1..].parse::<u64>().is_ok_and(|n| n < 10_000)
        })
    }

    fn arguments(call: &ToolCall) -> Value {
        serde_json::from_str(&call.function.arguments).unwrap()
    }

    #[tokio::test]
    async fn the_default_script_calls_the_first_tool_plain_and_streamed_alike() {
        let (control, running, shutdown) = start(LlmBehaviour::default(), 1).await;

        let choice = plain(&running, &user_asks(false)).await;
        assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(choice.message.role, "assistant");
        assert_eq!(choice.message.content, None);
        assert_eq!(choice.message.tool_calls.len(), 1);
        let call = &choice.message.tool_calls[0];
        assert!(call.id.starts_with("call_"), "{}", call.id);
        assert_eq!(call.kind, "function");
        assert_eq!(call.function.name, "lookup_orders");
        let args = arguments(call);
        assert_eq!(args.as_object().unwrap().len(), 1, "{args}");
        assert!(is_customer_id(&args["customer_id"]), "{args}");

        let (turn, raw) = streamed(&running, &user_asks(true)).await;
        let turn = turn.unwrap();
        assert_eq!(turn.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(turn.content, "");
        assert_eq!(turn.tool_calls.len(), 1);
        assert_eq!(turn.tool_calls[0].function, call.function);
        assert!(turn.tool_calls[0].id.starts_with("call_"));
        assert!(raw.starts_with("data: {"), "{raw}");
        assert!(raw.ends_with(SSE_DONE), "{raw}");
        let argument_pieces = raw.matches("\"function\":{\"arguments\"").count();
        assert!(argument_pieces >= 2, "{raw}");

        // The same call asks about the same customer; another call may differ, but stays in
        // range.
        let again = plain(&running, &user_asks(false)).await;
        assert_eq!(arguments(&again.message.tool_calls[0]), args);
        let mut other = user_asks(false);
        other.user = None;
        let other = plain(&running, &other).await;
        assert!(is_customer_id(
            &arguments(&other.message.tool_calls[0])["customer_id"]
        ));

        assert_eq!(control.requests(), 4);
        assert_eq!(control.faulted(), 0);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn every_required_parameter_is_filled_by_its_type() {
        let (_control, running, shutdown) = start(LlmBehaviour::default(), 1).await;
        let mut request = user_asks(false);
        request.tools.insert(
            0,
            ToolSpec {
                kind: "function".to_owned(),
                function: FunctionSpec {
                    name: "everything".to_owned(),
                    description: None,
                    parameters: json!({
                        "type": "object",
                        "properties": {
                            "customer_id": {"type": "string"},
                            "word": {"type": "string"},
                            "count": {"type": "integer"},
                            "ratio": {"type": "number"},
                            "flag": {"type": "boolean"},
                            "list": {"type": "array", "items": {"type": "string"}},
                            "thing": {"type": "object"},
                            "maybe": {"type": ["null", "integer"]},
                            "colour": {"enum": ["red", "green"]},
                            "optional": {"type": "string"},
                        },
                        "required": ["customer_id", "word", "count", "ratio", "flag", "list",
                                     "thing", "maybe", "colour", "undeclared"],
                    }),
                },
            },
        );
        let choice = plain(&running, &request).await;
        let call = &choice.message.tool_calls[0];
        assert_eq!(call.function.name, "everything");
        let args = arguments(call);
        assert!(is_customer_id(&args["customer_id"]), "{args}");
        assert!(
            args["word"]
                .as_str()
                .is_some_and(|word| !word.is_empty() && word.len() < 16)
        );
        assert_eq!(args["count"], json!(5));
        assert_eq!(args["ratio"], json!(1.0));
        assert_eq!(args["flag"], json!(true));
        assert_eq!(args["list"], json!([]));
        assert_eq!(args["thing"], json!({}));
        assert_eq!(args["maybe"], json!(5));
        assert_eq!(args["colour"], json!("red"));
        assert!(args["undeclared"].is_string());
        assert!(args.get("optional").is_none());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_tool_result_gets_a_short_sentence() {
        let (_control, running, shutdown) = start(LlmBehaviour::default(), 1).await;
        let orders = r#"[{"id":"O1","status":"shipped"},{"id":"O2","status":"delivered"},{"id":"O3","status":"delivered"}]"#;
        let choice = plain(&running, &tool_answered(orders, false)).await;
        assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
        assert!(choice.message.tool_calls.is_empty());
        let text = choice.message.content.unwrap();
        assert!(text.contains('3'), "{text}");
        assert!(text.contains("shipped"), "{text}");
        assert!(text.len() <= 60, "{text}");

        let (turn, raw) = streamed(&running, &tool_answered(orders, true)).await;
        let turn = turn.unwrap();
        assert_eq!(turn.content, text);
        assert_eq!(turn.finish_reason.as_deref(), Some("stop"));
        assert!(turn.tool_calls.is_empty());
        assert!(raw.matches("\"content\"").count() >= 3, "{raw}");

        for (result, expected) in [
            ("[]", "any orders"),
            (r#"[{"status":"pending"}]"#, "1 order"),
            (r#"{"error":"database timeout"}"#, "Sorry"),
            ("\"error: connection refused\"", "Sorry"),
            ("Error: no such customer", "Sorry"),
        ] {
            let text = plain(&running, &tool_answered(result, false))
                .await
                .message
                .content
                .unwrap();
            assert!(text.contains(expected), "{result}: {text}");
            assert!(text.len() <= 60, "{text}");
        }

        // Without tools, or after the assistant, a short sentence too.
        let mut no_tools = user_asks(false);
        no_tools.tools.clear();
        let choice = plain(&running, &no_tools).await;
        assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
        assert!(
            choice
                .message
                .content
                .is_some_and(|text| !text.is_empty() && text.len() <= 60)
        );
        shutdown.cancel();
    }

    fn with_fault(fault: LlmFault) -> LlmBehaviour {
        LlmBehaviour {
            fault,
            ..LlmBehaviour::default()
        }
    }

    /// The single tool call of a plain and of a streamed answer under the current fault.
    async fn both_calls(running: &Running) -> [ToolCall; 2] {
        let mut plain_choice = plain(running, &user_asks(false)).await;
        let (turn, _) = streamed(running, &user_asks(true)).await;
        let mut turn = turn.unwrap();
        assert_eq!(plain_choice.message.tool_calls.len(), 1);
        assert_eq!(turn.tool_calls.len(), 1);
        [
            plain_choice.message.tool_calls.remove(0),
            turn.tool_calls.remove(0),
        ]
    }

    #[tokio::test]
    async fn tool_call_faults_bend_the_call() {
        let (control, running, shutdown) = start(LlmBehaviour::default(), 1).await;

        control.set(with_fault(LlmFault::EmptyToolParams));
        for call in both_calls(&running).await {
            assert_eq!(call.function.arguments, "{}");
            assert_eq!(call.function.name, "lookup_orders");
        }

        control.set(with_fault(LlmFault::MissingRequired));
        for call in both_calls(&running).await {
            let args = arguments(&call);
            assert!(args.get("customer_id").is_none(), "{args}");
            assert_eq!(args["limit"], json!(5));
        }

        control.set(with_fault(LlmFault::WrongTypes));
        for call in both_calls(&running).await {
            let args = arguments(&call);
            assert!(!args["customer_id"].is_string(), "{args}");
            assert!(!args["customer_id"].is_null(), "{args}");
        }

        control.set(with_fault(LlmFault::OversizedValues { bytes: 100_000 }));
        for call in both_calls(&running).await {
            let args = arguments(&call);
            assert_eq!(args["customer_id"].as_str().unwrap().len(), 100_000);
        }

        control.set(with_fault(LlmFault::UnknownTool {
            name: "delete_all_orders".to_owned(),
        }));
        for call in both_calls(&running).await {
            assert_eq!(call.function.name, "delete_all_orders");
            assert!(is_customer_id(&arguments(&call)["customer_id"]));
        }

        assert_eq!(control.requests(), 10);
        assert_eq!(control.faulted(), 10);

        // Tool-call faults leave answers without a tool call alone.
        control.set(with_fault(LlmFault::EmptyToolParams));
        let choice = plain(&running, &tool_answered("[]", false)).await;
        assert!(choice.message.content.is_some());
        assert_eq!(control.faulted(), 10);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_truncated_stream_has_no_done_and_a_plain_answer_is_cut_json() {
        let (control, running, shutdown) = start(with_fault(LlmFault::TruncatedStream), 1).await;
        for request in [user_asks(true), tool_answered("[1,2]", true)] {
            let (turn, raw) = streamed(&running, &request).await;
            assert_eq!(turn, Err(StreamError::Truncated), "{raw}");
            assert!(raw.starts_with("data: {"), "{raw}");
            assert!(!raw.contains("[DONE]"));
        }

        let response = post(&running, &user_asks(false)).await;
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty());
        assert!(body.starts_with(b"{\"id\""));
        assert!(serde_json::from_slice::<ChatResponse>(&body).is_err());
        assert_eq!(control.faulted(), 3);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_status_fault_answers_with_it_and_retry_after() {
        let (control, running, shutdown) = start(
            with_fault(LlmFault::Status {
                code: 429,
                retry_after: Some(Duration::from_millis(2500)),
            }),
            1,
        )
        .await;
        for request in [
            user_asks(false),
            user_asks(true),
            tool_answered("[]", false),
        ] {
            let response = post(&running, &request).await;
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()[header::RETRY_AFTER], "3");
            let body: ErrorBody = response.json().await.unwrap();
            assert_eq!(body.error.code.as_deref(), Some("rate_limit_exceeded"));
        }

        control.set(with_fault(LlmFault::Status {
            code: 503,
            retry_after: None,
        }));
        let response = post(&running, &user_asks(false)).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let body: ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error.kind, "server_error");
        assert_eq!(control.faulted(), 4);
        shutdown.cancel();
    }

    /// Which of `count` requests a 503 fault with `fraction` hit, for `seed`.
    async fn hits(seed: u64, fraction: f64, count: usize) -> Vec<bool> {
        let behaviour = LlmBehaviour {
            fault: LlmFault::Status {
                code: 503,
                retry_after: None,
            },
            fraction,
            latency: Duration::ZERO,
        };
        let (control, running, shutdown) = start(behaviour, seed).await;
        let client = reqwest::Client::new();
        let url = format!("{}/chat/completions", running.base_url());
        let statuses = testing::statuses(count, || client.post(&url).json(&user_asks(false)));
        let hits: Vec<bool> = statuses.await.iter().map(|&status| status == 503).collect();
        assert_eq!(control.requests(), count as u64);
        assert_eq!(
            control.faulted(),
            hits.iter().filter(|&&hit| hit).count() as u64
        );
        shutdown.cancel();
        hits
    }

    #[tokio::test]
    async fn a_fraction_hits_about_that_share_reproducibly() {
        testing::a_fraction_hits_about_that_share_reproducibly(7, hits).await;
        assert!(hits(7, 0.0, 20).await.iter().all(|&hit| !hit));
    }

    #[tokio::test]
    async fn a_switch_gives_the_counts_then_and_drops_the_hits_not_taken() {
        let (control, running, shutdown) = start(with_fault(LlmFault::EmptyToolParams), 1).await;
        // Not a tool call: not hit.
        post(&running, &tool_answered("[]", false)).await;
        post(&running, &user_asks(false)).await;
        post(&running, &user_asks(true)).await;
        let at_switch = control.switch(with_fault(LlmFault::Status {
            code: 503,
            retry_after: None,
        }));
        assert_eq!(
            at_switch,
            LlmCounts {
                requests: 3,
                faulted: 2
            }
        );
        assert!(
            control.take_hits().is_empty(),
            "they belong to the fault replaced"
        );
        post(&running, &user_asks(false)).await;
        let hits = control.take_hits();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].fault, hits[0].status), ("status", 503));
        assert!(control.take_hits().is_empty(), "taken once");
        assert_eq!(
            control.counts().since(&at_switch),
            LlmCounts {
                requests: 1,
                faulted: 1
            }
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn hits_keep_the_user_and_the_first_ones_are_kept_while_all_are_counted() {
        let (control, running, shutdown) = start(with_fault(LlmFault::EmptyToolParams), 1).await;
        let mut request = user_asks(false);
        request.user = Some("CA-call-1".to_owned());
        post(&running, &request).await;
        let mut hits = control.take_hits();
        control.set(with_fault(LlmFault::Status {
            code: 500,
            retry_after: None,
        }));
        request.user = None;
        post(&running, &request).await;
        hits.extend(control.take_hits());
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].user.as_deref(), Some("CA-call-1"));
        assert_eq!((hits[0].fault, hits[0].status), ("empty_tool_params", 200));
        assert_eq!(hits[1].user, None);
        assert_eq!((hits[1].fault, hits[1].status), ("status", 500));

        let client = reqwest::Client::new();
        let url = format!("{}/chat/completions", running.base_url());
        let extra = KEPT_HITS + 20;
        let sends = (0..extra).map(|_| client.post(&url).json(&request).send());
        for sent in futures_util::future::join_all(sends).await {
            assert_eq!(sent.unwrap().status(), 500);
        }
        assert_eq!(control.take_hits().len(), KEPT_HITS);
        assert_eq!(
            control.counts(),
            LlmCounts {
                requests: 2 + extra as u64,
                faulted: 2 + extra as u64
            }
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_new_behaviour_takes_effect_on_the_next_request() {
        let (control, running, shutdown) = start(LlmBehaviour::default(), 1).await;
        let request = user_asks(false);
        assert_ne!(
            plain(&running, &request).await.message.tool_calls[0]
                .function
                .arguments,
            "{}"
        );
        control.set(with_fault(LlmFault::EmptyToolParams));
        assert_eq!(control.behaviour().fault, LlmFault::EmptyToolParams);
        assert_eq!(
            plain(&running, &request).await.message.tool_calls[0]
                .function
                .arguments,
            "{}"
        );
        control.set(LlmBehaviour::default());
        assert_ne!(
            plain(&running, &request).await.message.tool_calls[0]
                .function
                .arguments,
            "{}"
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn latency_delays_the_answer_but_not_shutdown() {
        let behaviour = LlmBehaviour {
            latency: Duration::from_millis(300),
            ..LlmBehaviour::default()
        };
        let (control, running, shutdown) = start(behaviour, 1).await;
        let started = Instant::now();
        plain(&running, &user_asks(false)).await;
        assert!(started.elapsed() >= Duration::from_millis(300));

        control.set(LlmBehaviour {
            latency: Duration::from_secs(3600),
            ..LlmBehaviour::default()
        });
        let request = reqwest::Client::new()
            .post(format!("{}/chat/completions", running.base_url()))
            .json(&user_asks(false));
        a_hanging_request_gets_503_at_shutdown(&running, request, &control, &shutdown).await;
    }

    #[tokio::test]
    async fn bad_requests_get_openai_errors_and_never_crash_the_server() {
        let (control, running, shutdown) = start(LlmBehaviour::default(), 1).await;
        let client = reqwest::Client::new();
        let url = format!("{}/chat/completions", running.base_url());
        for body in [
            Vec::new(),
            b"{".to_vec(),
            b"null".to_vec(),
            b"{\"model\":\"m\"}".to_vec(),
            b"{\"model\":\"m\",\"messages\":[]}".to_vec(),
            b"{\"model\":\"m\",\"messages\":[{\"role\":7}]}".to_vec(),
            vec![0xff, 0xfe, 0x00],
        ] {
            let response = client.post(&url).body(body.clone()).send().await.unwrap();
            assert_eq!(response.status(), 400, "{body:?}");
            let error: ErrorBody = response.json().await.unwrap();
            assert_eq!(error.error.kind, "invalid_request_error");
        }

        // Odd but valid requests: odd schemas, unknown roles, no content.
        let mut odd = user_asks(false);
        odd.tools[0].function.parameters =
            json!({"required": [1, "customer_id", "customer_id"], "properties": []});
        odd.messages.push(ChatMessage {
            role: "user".to_owned(),
            content: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
        let call = &plain(&running, &odd).await.message.tool_calls[0];
        assert!(is_customer_id(&arguments(call)["customer_id"]));
        odd.messages.push(message("robot", "beep"));
        assert!(plain(&running, &odd).await.message.content.is_some());
        control.set(with_fault(LlmFault::OversizedValues { bytes: 10 }));
        odd.messages.push(message("user", "again"));
        odd.tools[0].function.parameters = json!(null);
        let call = &plain(&running, &odd).await.message.tool_calls[0];
        assert_eq!(arguments(call)["query"].as_str().unwrap().len(), 10);
        control.set(LlmBehaviour::default());

        testing::a_too_large_body_gets_413(&client, &url).await;

        let response = client
            .post(format!("{}/nothing/here", running.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        assert!(response.json::<ErrorBody>().await.is_ok());

        let models: Value = client
            .get(format!("{}/models", running.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(models["object"], "list");
        assert_eq!(models["data"][0]["id"], MODEL);
        let health = client
            .get(format!("http://{}/health", running.address))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        shutdown.cancel();
    }
}

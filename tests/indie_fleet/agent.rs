//! The indie fleet's agent: one caller turn to one sentence, through an OpenAI-compatible
//! chat completion (`POST {base}/chat/completions`, `stream: false`), with one in-memory
//! tool, `lookup_orders`. When the model calls the tool, the fleet runs it and asks once more
//! with the result. The fleet has no speech recognition: the model is told how long the
//! caller spoke.

use std::time::Duration;

use serde_json::{Value, json};

/// One LLM request gets this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const SYSTEM: &str = "You are the phone agent of a small shop. Look orders up with \
lookup_orders and answer in one short sentence.";

/// What the caller did in one turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    Spoke(Duration),
    Pressed(String),
}

impl Turn {
    fn describe(&self) -> String {
        match self {
            Turn::Spoke(length) => format!(
                "(The caller spoke for {:.1} s; no transcript is available.)",
                length.as_secs_f64()
            ),
            Turn::Pressed(digits) => format!("(The caller pressed {digits} on the keypad.)"),
        }
    }
}

/// What the fleet does with tool arguments it cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadArguments {
    /// Answer the model with a tool error (and let the caller hear the model's apology).
    Refuse,
    /// Trust them, and die on them: the process exits with status 1, as a fleet whose tool
    /// crashes on `{}` does.
    Crash,
}

/// Why no sentence came.
#[derive(Debug)]
pub enum AgentError {
    Request(reqwest::Error),
    Status(u16),
    /// The answer had no usable message.
    Shape(&'static str),
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Request(error) => write!(formatter, "request failed: {error}"),
            AgentError::Status(status) => write!(formatter, "answered {status}"),
            AgentError::Shape(what) => write!(formatter, "unusable answer: {what}"),
        }
    }
}

/// The sentence to say for `turn` (the `number`th of call `call_sid`), and whether a tool
/// call's arguments were refused on the way.
pub async fn reply(
    client: &reqwest::Client,
    base_url: &str,
    call_sid: &str,
    number: u64,
    turn: &Turn,
    bad_arguments: BadArguments,
) -> Result<(String, bool), AgentError> {
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let mut messages = vec![
        json!({"role": "system", "content": SYSTEM}),
        json!({"role": "user", "content": turn.describe()}),
    ];
    let first = complete(client, &url, call_sid, &messages).await?;
    let calls = first
        .get("tool_calls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if calls.is_empty() {
        return text_of(&first).map(|text| (text, false));
    }
    messages.push(first);
    let mut refused = false;
    for call in &calls {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("");
        let result = match (call["function"]["name"].as_str(), customer(arguments)) {
            (Some(TOOL), Some(customer)) => lookup_orders(&customer, number),
            _ if bad_arguments == BadArguments::Crash => {
                eprintln!("indie fleet: lookup_orders crashed on arguments {arguments:?}");
                std::process::exit(1);
            }
            _ => {
                refused = true;
                json!({"error": "invalid arguments: customer_id (a non-empty string) is required"})
            }
        };
        messages.push(json!({
            "role": "tool",
            "tool_call_id": call["id"],
            "content": result.to_string(),
        }));
    }
    let second = complete(client, &url, call_sid, &messages).await?;
    text_of(&second).map(|text| (text, refused))
}

const TOOL: &str = "lookup_orders";

/// One chat completion; the message of its first choice.
async fn complete(
    client: &reqwest::Client,
    url: &str,
    call_sid: &str,
    messages: &[Value],
) -> Result<Value, AgentError> {
    let body = json!({
        "model": "indie-agent",
        "stream": false,
        "user": call_sid,
        "messages": messages,
        "tools": [{
            "type": "function",
            "function": {
                "name": TOOL,
                "description": "The caller's recent orders, newest first.",
                "parameters": {
                    "type": "object",
                    "properties": {"customer_id": {"type": "string"}},
                    "required": ["customer_id"],
                },
            },
        }],
    });
    let response = client
        .post(url)
        .timeout(REQUEST_TIMEOUT)
        .json(&body)
        .send()
        .await
        .map_err(AgentError::Request)?;
    if !response.status().is_success() {
        return Err(AgentError::Status(response.status().as_u16()));
    }
    let mut answer: Value = response.json().await.map_err(AgentError::Request)?;
    match answer["choices"][0]["message"].take() {
        Value::Object(message) => Ok(Value::Object(message)),
        _ => Err(AgentError::Shape("no choices[0].message")),
    }
}

fn text_of(message: &Value) -> Result<String, AgentError> {
    message["content"]
        .as_str()
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
        .ok_or(AgentError::Shape("no content"))
}

/// The `customer_id` of well-formed arguments: a JSON object with a non-empty string of at
/// most 64 characters.
fn customer(arguments: &str) -> Option<String> {
    let parsed: Value = serde_json::from_str(arguments).ok()?;
    let id = parsed.get("customer_id")?.as_str()?.trim();
    (!id.is_empty() && id.len() <= 64).then(|| id.to_owned())
}

const STATUSES: [&str; 8] = [
    "pending",
    "packed",
    "shipped",
    "in transit",
    "out for delivery",
    "delivered",
    "delayed",
    "returned",
];

/// The in-memory order book: each turn of a call sees its customer's orders move on, so
/// consecutive turns are answered with different sentences.
fn lookup_orders(customer: &str, turn: u64) -> Value {
    let index = (fnv1a(customer.as_bytes()).wrapping_add(turn) % 24) as usize;
    let count = 1 + index / STATUSES.len();
    let orders: Vec<Value> = (0..count)
        .map(|order| {
            json!({
                "order_id": format!("{customer}-{}", order + 1),
                "status": STATUSES[(index + order) % STATUSES.len()],
            })
        })
        .collect();
    Value::Array(orders)
}

/// 64-bit FNV-1a: a stable hash across runs and builds.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn only_a_usable_customer_id_passes() {
    assert_eq!(
        customer(r#"{"customer_id":"C000042"}"#).as_deref(),
        Some("C000042")
    );
    for bad in [
        "{}",
        "",
        "not json",
        r#"{"customer_id":42}"#,
        r#"{"customer_id":"  "}"#,
        r#"[1]"#,
    ] {
        assert_eq!(customer(bad), None, "{bad}");
    }
    assert_eq!(
        customer(&format!(r#"{{"customer_id":"{}"}}"#, "C".repeat(65))),
        None
    );
}

#[test]
fn consecutive_turns_of_a_call_hear_different_orders() {
    let answers: Vec<Value> = (0..24).map(|turn| lookup_orders("C000042", turn)).collect();
    for pair in answers.windows(2) {
        assert_ne!(pair[0], pair[1]);
    }
    assert!(
        answers
            .iter()
            .all(|orders| (1..=3).contains(&orders.as_array().unwrap().len()))
    );
}

//! The agent's one tool, `search_orders`, its JSON Schema as offered to the LLM, and the
//! validation that stands between what the LLM asks for and the database.
//!
//! The incident this reproduces: an LLM emitted `search_orders({})`, the tool ran
//! `find({})` over a million documents and the pod was OOM-killed. The fixed fleet checks
//! the arguments against the schema and answers the LLM with a tool error instead; with the
//! `unvalidated-tool-params` bug the arguments are read leniently and a missing
//! `customer_id` means "every order".

use serde_json::Value;

use crate::standin::openai::{FunctionSpec, ToolSpec};

pub const SEARCH_ORDERS: &str = "search_orders";
/// Orders returned when the LLM does not say how many.
pub const DEFAULT_LIMIT: u32 = 10;
/// The most orders one call may ask for.
pub const MAX_LIMIT: u32 = 50;
/// Longest `customer_id` accepted (ids are `C` + 6 digits).
const MAX_CUSTOMER_ID: usize = 16;

/// The tool as offered in every chat request.
pub fn search_orders_spec() -> ToolSpec {
    ToolSpec {
        kind: "function".into(),
        function: FunctionSpec {
            name: SEARCH_ORDERS.into(),
            description: Some("Find a customer's most recent orders.".into()),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "customer_id": {
                        "type": "string",
                        "description": "The customer's id, C followed by six digits.",
                        "pattern": "^C[0-9]{6}$"
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "description": "How many orders, newest first."
                    }
                },
                "required": ["customer_id"],
                "additionalProperties": false
            }),
        },
    }
}

/// What the database is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQuery {
    /// None: no filter (only reachable with the bug).
    pub customer_id: Option<String>,
    /// None: no limit (only reachable with the bug).
    pub limit: Option<u32>,
}

/// Why a tool call was refused; the reason is a metric label and goes back to the LLM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    #[error("arguments are not a JSON object")]
    NotAnObject,
    #[error("customer_id is required")]
    MissingCustomerId,
    #[error("customer_id must be a string like C000123")]
    BadCustomerId,
    #[error("limit must be an integer from 1 to {MAX_LIMIT}")]
    BadLimit,
    #[error("unexpected argument {0:?}")]
    UnexpectedArgument(String),
}

impl Rejection {
    /// The `reason` label of `tool_calls_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownTool(_) => "unknown_tool",
            Rejection::NotAnObject => "not_an_object",
            Rejection::MissingCustomerId => "missing_required",
            Rejection::BadCustomerId => "bad_customer_id",
            Rejection::BadLimit => "bad_limit",
            Rejection::UnexpectedArgument(_) => "unexpected_argument",
        }
    }
}

/// The fixed fleet: the arguments must match the schema exactly.
pub fn validate(name: &str, arguments: &str) -> Result<OrderQuery, Rejection> {
    if name != SEARCH_ORDERS {
        return Err(Rejection::UnknownTool(name.chars().take(64).collect()));
    }
    let Ok(Value::Object(arguments)) = serde_json::from_str::<Value>(arguments) else {
        return Err(Rejection::NotAnObject);
    };
    if let Some(key) = arguments
        .keys()
        .find(|key| !matches!(key.as_str(), "customer_id" | "limit"))
    {
        return Err(Rejection::UnexpectedArgument(
            key.chars().take(64).collect(),
        ));
    }
    let customer_id = match arguments.get("customer_id") {
        None | Some(Value::Null) => return Err(Rejection::MissingCustomerId),
        Some(Value::String(id)) if is_customer_id(id) => id.clone(),
        Some(_) => return Err(Rejection::BadCustomerId),
    };
    let limit = match arguments.get("limit") {
        None => DEFAULT_LIMIT,
        Some(value) => match value.as_u64() {
            Some(limit @ 1..=50) => limit as u32,
            _ => return Err(Rejection::BadLimit),
        },
    };
    Ok(OrderQuery {
        customer_id: Some(customer_id),
        limit: Some(limit),
    })
}

fn is_customer_id(id: &str) -> bool {
    id.len() <= MAX_CUSTOMER_ID
        && id.len() == 7
        && id.starts_with('C')
        && id[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The `unvalidated-tool-params` bug: whatever came is used as it is. Unparseable
/// arguments count as `{}`, a number becomes its text, and a missing `customer_id` or
/// `limit` means no filter and no limit.
pub fn read_leniently(arguments: &str) -> OrderQuery {
    let arguments: Value = serde_json::from_str(arguments).unwrap_or(Value::Null);
    let customer_id = match arguments.get("customer_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(other) => Some(other.to_string()),
    };
    let limit = arguments
        .get("limit")
        .and_then(Value::as_u64)
        .map(|limit| limit.min(u64::from(u32::MAX)) as u32);
    OrderQuery { customer_id, limit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_calls_pass_with_a_default_limit() {
        let query = validate(SEARCH_ORDERS, r#"{"customer_id":"C000042"}"#).unwrap();
        assert_eq!(query.customer_id.as_deref(), Some("C000042"));
        assert_eq!(query.limit, Some(DEFAULT_LIMIT));
        let query = validate(SEARCH_ORDERS, r#"{"customer_id":"C000042","limit":3}"#).unwrap();
        assert_eq!(query.limit, Some(3));
    }

    #[test]
    fn unsafe_calls_are_rejected_with_a_reason() {
        let cases = [
            ("{}", "missing_required"),
            (r#"{"limit":5}"#, "missing_required"),
            (r#"{"customer_id":12345}"#, "bad_customer_id"),
            (
                r#"{"customer_id":"C000042; DROP TABLE orders"}"#,
                "bad_customer_id",
            ),
            (r#"{"customer_id":"C000042","limit":100000}"#, "bad_limit"),
            (r#"{"customer_id":"C000042","limit":"5"}"#, "bad_limit"),
            (
                r#"{"customer_id":"C000042","all":true}"#,
                "unexpected_argument",
            ),
            ("[]", "not_an_object"),
            ("{\"customer_id\":", "not_an_object"),
        ];
        for (arguments, reason) in cases {
            let rejection = validate(SEARCH_ORDERS, arguments).unwrap_err();
            assert_eq!(rejection.reason(), reason, "{arguments}");
        }
        let huge = format!(r#"{{"customer_id":"{}"}}"#, "x".repeat(1 << 20));
        assert_eq!(
            validate(SEARCH_ORDERS, &huge).unwrap_err().reason(),
            "bad_customer_id"
        );
        assert_eq!(
            validate("delete_all_orders", "{}").unwrap_err().reason(),
            "unknown_tool"
        );
    }

    #[test]
    fn the_bug_turns_empty_arguments_into_a_full_table_query() {
        assert_eq!(
            read_leniently("{}"),
            OrderQuery {
                customer_id: None,
                limit: None
            }
        );
        assert_eq!(read_leniently("not json").customer_id, None);
        assert_eq!(
            read_leniently(r#"{"customer_id":12345}"#)
                .customer_id
                .as_deref(),
            Some("12345")
        );
    }

    #[test]
    fn the_schema_requires_customer_id() {
        let spec = search_orders_spec();
        assert_eq!(spec.function.parameters["required"][0], "customer_id");
    }
}

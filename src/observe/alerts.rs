//! The alert receiver: an HTTP endpoint taking what a fleet (or its Alertmanager) posts, in
//! the Alertmanager webhook format (`{"alerts": [{"status", "labels": {"alertname"}}]}`)
//! or as plain JSON (`{"name", "status"}`, or a list of them). Every alert becomes a
//! [`Signal::Alert`]; a body that is neither is answered 400, one over [`MAX_BODY`] 413 (as
//! soon as it passes it), one still arriving after [`REQUEST_BODY_TIMEOUT`] 408, each
//! counted by its reason ([`Signal::BadAlert`]), never trusted.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Observation, Signal};
use crate::request_body::{BodyError, REQUEST_BODY_TIMEOUT, read_within};

/// The largest alert body taken; Alertmanager batches are far smaller.
pub const MAX_BODY: usize = 1 << 20;
/// Longest alert name kept (a fleet could send anything).
const MAX_NAME: usize = 200;

/// Serves `POST /alerts` (and `POST /`) on `listen` until `stop`; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    observations: UnboundedSender<Observation>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let router = Router::new()
        .route("/alerts", post(receive))
        .route("/", post(receive))
        .with_state(observations);
    tokio::spawn(async move {
        crate::http_serve::serve(listener, router, stop).await;
    });
    Ok(address)
}

async fn receive(
    State(observations): State<UnboundedSender<Observation>>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse().ok());
    let refused = |reason, status| {
        let _ = observations.send(Observation::now(Signal::BadAlert { reason }));
        status
    };
    let body = match read_within(declared, body, MAX_BODY, REQUEST_BODY_TIMEOUT).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { .. }) => {
            return refused("body_too_large", StatusCode::PAYLOAD_TOO_LARGE);
        }
        Err(BodyError::TimedOut(_)) => {
            return refused("body_timeout", StatusCode::REQUEST_TIMEOUT);
        }
        Err(BodyError::Broken(_)) => return refused("body_broken", StatusCode::BAD_REQUEST),
    };
    match parse(&body) {
        Some(alerts) => {
            for alert in alerts {
                let _ = observations.send(Observation::now(Signal::Alert {
                    name: alert.name,
                    firing: alert.firing,
                    starts_at: alert.starts_at,
                }));
            }
            StatusCode::OK
        }
        None => refused("not_alerts", StatusCode::BAD_REQUEST),
    }
}

/// One alert of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAlert {
    pub name: String,
    pub firing: bool,
    /// `startsAt`, when the sender gave it (at most 40 characters).
    pub starts_at: Option<String>,
}

/// The alerts in a body, or None if it is not an alert payload.
pub fn parse(body: &[u8]) -> Option<Vec<ReceivedAlert>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let items: Vec<&Value> = match &value {
        Value::Object(object) => match object.get("alerts") {
            Some(Value::Array(alerts)) => alerts.iter().collect(),
            Some(_) => return None,
            None => vec![&value],
        },
        Value::Array(items) => items.iter().collect(),
        _ => return None,
    };
    let group_status = value.get("status").and_then(Value::as_str);
    let mut alerts = Vec::new();
    for item in items {
        let name = item
            .get("labels")
            .and_then(|labels| labels.get("alertname"))
            .or_else(|| item.get("name"))
            .or_else(|| item.get("alertname"))
            .and_then(Value::as_str)?;
        let status = item
            .get("status")
            .and_then(Value::as_str)
            .or(group_status)
            .unwrap_or("firing");
        let name: String = name.chars().take(MAX_NAME).collect();
        let starts_at = item
            .get("startsAt")
            .and_then(Value::as_str)
            .map(|at| at.chars().take(40).collect());
        alerts.push(ReceivedAlert {
            name,
            firing: status != "resolved",
            starts_at,
        });
    }
    Some(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(alerts: Option<Vec<ReceivedAlert>>) -> Option<Vec<(String, bool)>> {
        alerts.map(|alerts| alerts.into_iter().map(|a| (a.name, a.firing)).collect())
    }

    #[test]
    fn alertmanager_and_plain_payloads_parse() {
        let alertmanager = br#"{"version":"4","status":"firing","receiver":"voxsoak",
            "alerts":[{"status":"firing","labels":{"alertname":"TtsRateLimited"}},
                      {"status":"resolved","labels":{"alertname":"DbPoolSaturated"}}]}"#;
        assert_eq!(
            pairs(parse(alertmanager)),
            Some(vec![
                ("TtsRateLimited".into(), true),
                ("DbPoolSaturated".into(), false)
            ])
        );
        assert_eq!(
            pairs(parse(br#"{"name":"WorkerStalled","status":"resolved"}"#)),
            Some(vec![("WorkerStalled".into(), false)])
        );
        assert_eq!(
            pairs(parse(br#"[{"name":"A"},{"alertname":"B"}]"#)),
            Some(vec![("A".into(), true), ("B".into(), true)])
        );
        assert_eq!(parse(b"not json"), None);
        assert_eq!(parse(br#"{"alerts": 3}"#), None);
        assert_eq!(parse(br#"{"alerts": [{"labels": {}}]}"#), None);
        let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(10_000));
        assert_eq!(parse(long.as_bytes()).unwrap()[0].name.len(), MAX_NAME);
        let dated =
            br#"{"alerts":[{"labels":{"alertname":"A"},"startsAt":"2026-11-23T10:00:01.250Z"}]}"#;
        assert_eq!(
            parse(dated).unwrap()[0].starts_at.as_deref(),
            Some("2026-11-23T10:00:01.250Z")
        );
    }
}

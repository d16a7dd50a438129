//! The health poller: `GET` the fleet's health URL every interval; 2xx is healthy, anything
//! else (or no answer within the timeout) is not.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Observation, Signal};

/// How much of an unhealthy answer's body is kept.
const DETAIL_CHARS: usize = 200;

/// Probes `url` every `interval` until `stop`.
pub async fn poll(
    http: reqwest::Client,
    url: String,
    interval: Duration,
    timeout: Duration,
    observations: UnboundedSender<Observation>,
    stop: CancellationToken,
) {
    super::every(interval, observations, stop, || async {
        vec![probe(&http, &url, timeout).await]
    })
    .await;
}

async fn probe(http: &reqwest::Client, url: &str, timeout: Duration) -> Signal {
    let answer = async {
        let response = http.get(url).timeout(timeout).send().await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok((status, body))) => Signal::Health {
            healthy: status.is_success(),
            status: Some(status.as_u16()),
            detail: body
                .chars()
                .take(DETAIL_CHARS)
                .collect::<String>()
                .trim()
                .to_owned(),
        },
        Ok(Err(error)) => Signal::Health {
            healthy: false,
            status: None,
            detail: error.without_url().to_string(),
        },
        Err(_) => Signal::Health {
            healthy: false,
            status: None,
            detail: format!("no answer within {}", humantime::format_duration(timeout)),
        },
    }
}

//! The health poller: `GET` the fleet's health URL every interval; 2xx is healthy, anything
//! else (or no answer within the timeout) is not. A probe nothing listened for is told apart
//! (`refused`): the fleet is not slow, it is down; with `[observe] process = { health = true
//! }` that is how a crash of a fleet the harness did not start is seen ([`Listening`]).

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{HealthWatch, Observation, Signal};

/// How much of an unhealthy answer's body is kept.
const DETAIL_CHARS: usize = 200;
/// The most of a health answer's body read (for the detail's first 200 characters):
/// the rest, however long or endless, is left unread.
pub const MAX_HEALTH_BODY: usize = 4 << 10;

/// Probes `watch.url` every `watch.interval` until `stop`.
pub async fn poll(
    http: reqwest::Client,
    watch: HealthWatch,
    observations: UnboundedSender<Observation>,
    stop: CancellationToken,
) {
    let url = watch.url.to_string();
    super::every(watch.interval, observations, stop, || async {
        vec![probe(&http, &url, watch.timeout).await]
    })
    .await;
}

async fn probe(http: &reqwest::Client, url: &str, timeout: Duration) -> Signal {
    let answer = async {
        let mut response = http.get(url).timeout(timeout).send().await?;
        let status = response.status();
        let mut body = Vec::new();
        while body.len() < MAX_HEALTH_BODY
            && let Ok(Some(chunk)) = response.chunk().await
        {
            body.extend_from_slice(&chunk[..chunk.len().min(MAX_HEALTH_BODY - body.len())]);
        }
        Ok::<_, reqwest::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    let no_answer = || format!("no answer within {}", humantime::format_duration(timeout));
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
            refused: false,
        },
        Ok(Err(error)) if error.is_timeout() => Signal::Health {
            healthy: false,
            status: None,
            detail: no_answer(),
            refused: false,
        },
        Ok(Err(error)) => {
            let failure = RequestFailure::of(error);
            Signal::Health {
                healthy: false,
                status: None,
                detail: failure.detail,
                refused: failure.refused,
            }
        }
        Err(_) => Signal::Health {
            healthy: false,
            status: None,
            detail: no_answer(),
            refused: false,
        },
    }
}

pub use crate::failure::RequestFailure;

/// Whether the fleet behind a health URL listens, from the probes' outcomes: the URL
/// refusing connections after it answered is the fleet gone (a crash), answering again is
/// the fleet back (a restart). A probe that times out says neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listening {
    /// The last answer or refusal was an answer.
    up: bool,
    /// It stopped listening after it had answered, and has not answered since.
    stopped: bool,
}

/// A change [`Listening`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListeningChange {
    /// It answered before and refuses now.
    Stopped,
    /// It refused after it had answered, and answers again.
    Resumed,
}

impl Listening {
    /// One probe: `answered` (any HTTP status), or `refused`.
    pub fn probe(&mut self, answered: bool, refused: bool) -> Option<ListeningChange> {
        if answered {
            self.up = true;
            // A fleet that was never up did not crash: coming up is its start.
            return std::mem::take(&mut self.stopped).then_some(ListeningChange::Resumed);
        }
        if refused && self.up {
            self.up = false;
            self.stopped = true;
            return Some(ListeningChange::Stopped);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusing_after_answering_is_a_crash_and_answering_again_a_restart() {
        let mut listening = Listening::default();
        assert_eq!(listening.probe(false, true), None, "never up: no crash");
        assert_eq!(
            listening.probe(true, false),
            None,
            "coming up is no restart"
        );
        assert_eq!(
            listening.probe(false, false),
            None,
            "a timeout says nothing"
        );
        assert_eq!(listening.probe(false, true), Some(ListeningChange::Stopped));
        assert_eq!(listening.probe(false, true), None, "once per transition");
        assert_eq!(listening.probe(false, false), None);
        assert_eq!(listening.probe(true, false), Some(ListeningChange::Resumed));
        assert_eq!(listening.probe(true, false), None);
    }

    #[test]
    fn a_failure_quoting_its_url_is_masked() {
        let error = std::io::Error::other(
            "error sending request for url (http://user:secret@127.0.0.1:1/voice?token=abc123)",
        );
        let failure = RequestFailure::of_error(&error);
        assert_eq!(
            failure.detail,
            "error sending request for url (http://***@127.0.0.1:1/voice?token=***)"
        );
        assert!(!failure.refused);
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let signal = probe(
            &reqwest::Client::new(),
            &format!("http://{address}/health"),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            signal,
            Signal::Health {
                healthy: false,
                status: None,
                detail: "connection refused".into(),
                refused: true,
            }
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_and_is_not_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and holds the connection without a word.
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        });
        let signal = probe(
            &reqwest::Client::new(),
            &format!("http://{address}/health"),
            Duration::from_millis(300),
        )
        .await;
        held.abort();
        assert_eq!(
            signal,
            Signal::Health {
                healthy: false,
                status: None,
                detail: "no answer within 300ms".into(),
                refused: false,
            }
        );
    }
}

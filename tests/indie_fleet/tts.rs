//! The indie fleet's speech client: `POST {base}/audio/speech` (OpenAI-compatible, WAV; the
//! base URL ends in `/v1` as OpenAI's does),
//! retried after failures by a [`RetryPolicy`]. Attempts are sequential on the client it is
//! given, so a call's retries go out on that call's own keep-alive connection; no request id
//! header of any kind is sent (`X-Request-Id`, `Idempotency-Key`): a server can only tell a
//! retry by its text and connection.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::backoff::RetryPolicy;

/// One request gets this long for its whole answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How one attempt ended: the status, or None when no answer came (refused, reset, timed
/// out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub status: Option<u16>,
}

/// What the caller of [`synthesize`] decides after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Retry,
    Stop,
}

/// WAV audio for `text`, or None when every attempt the policy allowed failed (or `after`
/// said stop). `after` hears every attempt as it ends.
pub async fn synthesize(
    client: &reqwest::Client,
    base_url: &str,
    text: &str,
    policy: RetryPolicy,
    mut after: impl FnMut(Attempt) -> Next,
) -> Option<Bytes> {
    let url = format!("{}/audio/speech", base_url.trim_end_matches('/'));
    let body = serde_json::json!({
        "model": "tts-1",
        "voice": "alloy",
        "input": text,
        "response_format": "wav",
    });
    let started = Instant::now();
    for retry in 1.. {
        let answer = client
            .post(&url)
            .timeout(REQUEST_TIMEOUT)
            .json(&body)
            .send()
            .await;
        let (status, retry_after) = match answer {
            Ok(response) if response.status().is_success() => {
                if let Ok(audio) = response.bytes().await {
                    after(Attempt { status: Some(200) });
                    return Some(audio);
                }
                (None, None)
            }
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<f64>().ok())
                    .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                    .map(|seconds| Duration::from_secs_f64(seconds.min(60.0)));
                let status = response.status();
                // Read the error body so the connection goes back to the pool for the retry.
                let _ = response.bytes().await;
                let retryable = status.as_u16() == 429 || status.is_server_error();
                if !retryable {
                    after(Attempt {
                        status: Some(status.as_u16()),
                    });
                    return None;
                }
                (Some(status.as_u16()), retry_after)
            }
            Err(_) => (None, None),
        };
        if after(Attempt { status }) == Next::Stop {
            return None;
        }
        let jitter = rand::random_range(-1.0..=1.0);
        let wait = policy.wait(retry, retry_after, started.elapsed(), jitter)?;
        tokio::time::sleep(wait).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::{ConnectInfo, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;

    use super::*;
    use crate::indie_fleet::backoff::GIVE_UP_AFTER;

    /// One request as the test server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        at: std::time::Instant,
        peer: SocketAddr,
        id_header: bool,
    }

    #[derive(Clone)]
    struct Refusing {
        /// Requests refused with 429 before one is answered.
        refusals: usize,
        retry_after: Option<&'static str>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    async fn speech(
        State(server): State<Refusing>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        headers: HeaderMap,
    ) -> Response {
        let mut seen = server.seen.lock().unwrap();
        seen.push(Seen {
            at: std::time::Instant::now(),
            peer,
            id_header: headers.contains_key("x-request-id")
                || headers.contains_key("idempotency-key"),
        });
        if seen.len() > server.refusals {
            return (StatusCode::OK, "RIFF audio").into_response();
        }
        match server.retry_after {
            Some(seconds) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds)],
                "slow down",
            )
                .into_response(),
            None => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        }
    }

    /// A TTS server on a free port that refuses `refusals` requests with 429; the requests
    /// it saw.
    async fn refusing(
        refusals: usize,
        retry_after: Option<&'static str>,
    ) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/v1/audio/speech", post(speech))
            .with_state(Refusing {
                refusals,
                retry_after,
                seen: Arc::clone(&seen),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        (format!("http://{address}/v1"), seen)
    }

    fn gaps(seen: &[Seen]) -> Vec<Duration> {
        seen.windows(2)
            .map(|pair| pair[1].at - pair[0].at)
            .collect()
    }

    /// Runs `policy` against a server refusing `refusals` requests: the audio, what the
    /// server saw and what `after` heard.
    async fn attempt(
        policy: RetryPolicy,
        refusals: usize,
        retry_after: Option<&'static str>,
    ) -> (Option<Bytes>, Vec<Seen>, Vec<Attempt>) {
        let (url, seen) = refusing(refusals, retry_after).await;
        let mut heard = Vec::new();
        let audio = synthesize(
            &reqwest::Client::new(),
            &url,
            "Your order has shipped.",
            policy,
            |attempt| {
                heard.push(attempt);
                Next::Retry
            },
        )
        .await;
        let seen = seen.lock().unwrap().clone();
        (audio, seen, heard)
    }

    /// Real time on loopback (the gaps are what is measured), so the bounds are generous
    /// above and exact below: a wait is never shorter than asked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_go_out_on_one_connection_shaped_by_the_policy_without_request_ids() {
        let (backoff, storm, patient, hopeless) = tokio::join!(
            attempt(RetryPolicy::Backoff, 3, None),
            attempt(RetryPolicy::Constant, 5, Some("2")),
            attempt(RetryPolicy::Backoff, 2, Some("1")),
            attempt(RetryPolicy::Backoff, usize::MAX, None),
        );
        let slack = Duration::from_millis(400);
        for (_, seen, _) in [&backoff, &storm, &patient, &hopeless] {
            assert!(
                seen.iter().all(|request| !request.id_header),
                "no request id header"
            );
            assert!(
                seen.iter().all(|request| request.peer == seen[0].peer),
                "every attempt on the first attempt's connection: {:?}",
                seen.iter().map(|request| request.peer).collect::<Vec<_>>()
            );
        }

        let (audio, seen, heard) = backoff;
        assert_eq!(audio.as_deref(), Some(&b"RIFF audio"[..]));
        assert_eq!(seen.len(), 4, "three refusals, then the audio");
        assert_eq!(
            heard.iter().map(|a| a.status).collect::<Vec<_>>(),
            [Some(429), Some(429), Some(429), Some(200)]
        );
        for (gap, nominal) in gaps(&seen).into_iter().zip([250u64, 500, 1_000]) {
            let nominal = Duration::from_millis(nominal);
            assert!(
                gap >= nominal.mul_f64(0.8) && gap <= nominal.mul_f64(1.2) + slack,
                "backoff gap {gap:?}, nominal {nominal:?}"
            );
        }

        let (audio, seen, _) = storm;
        assert!(audio.is_some());
        for gap in gaps(&seen) {
            assert!(
                gap >= Duration::from_millis(150) && gap <= Duration::from_millis(150) + slack,
                "constant gap {gap:?}, Retry-After: 2 ignored"
            );
        }

        let (audio, seen, _) = patient;
        assert!(audio.is_some());
        assert!(
            gaps(&seen).iter().all(|gap| *gap >= Duration::from_secs(1)),
            "Retry-After: 1 honoured: {:?}",
            gaps(&seen)
        );

        let (audio, seen, heard) = hopeless;
        assert!(audio.is_none());
        let spent = seen.last().unwrap().at - seen[0].at;
        assert!(
            spent <= GIVE_UP_AFTER + Duration::from_millis(300),
            "gave up by the deadline: {spent:?}"
        );
        assert!(heard.len() >= 4, "{heard:?}");
    }
}

//! OpenAI-compatible stand-ins for the services a voice agent depends on: an LLM
//! (`POST /v1/chat/completions`, plain and `stream: true` SSE, with tool calls) and a TTS
//! (`POST /v1/audio/speech`). They are real HTTP servers on loopback.
//!
//! Two users: the reference fleet starts them with no fault when it runs alone (no
//! `LLM_BASE_URL`/`TTS_BASE_URL`), and the chaos plane points a fleet at them and switches
//! faults on and off at run time through their control handles ([`llm::LlmControl`],
//! [`tts::TtsControl`]). Either way a fleet reaches them only over HTTP, as it would reach
//! the real services.
//!
//! [`openai`] holds the wire types both sides share (like `twilio` for Media Streams);
//! [`control`] the control handle both stand-ins are built on.

pub mod control;
pub mod llm;
pub mod openai;
pub mod tts;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::request_body::{REQUEST_BODY_TIMEOUT, with_deadline};
use control::{Control, StandIn};
use openai::{ErrorBody, ErrorDetail};

/// A stand-in server that is running.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub address: SocketAddr,
}

impl Running {
    /// `http://ADDR/v1`, what a fleet takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }
}

/// The largest request body a stand-in accepts; a larger one is answered with 413.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Serves `router` on `listener` in a task of its own until `shutdown` (through
/// [`crate::http_serve`], so a client's headers have a deadline too), with the body limit,
/// the body deadline ([`REQUEST_BODY_TIMEOUT`]: a request whose body is still arriving then
/// is refused with 400, so a slowloris client holds no handler) and the OpenAI-style 404
/// every stand-in has. Handlers may extract the client's address
/// (`ConnectInfo<SocketAddr>`): the TTS stand-in tells one connection from another by it.
async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let address = listener.local_addr()?;
    let router = router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_request(body_deadline));
    tokio::spawn(async move {
        crate::http_serve::serve(listener, router, shutdown).await;
    });
    Ok(Running { address })
}

/// What a stand-in's handlers share: its control, and the shutdown that ends what they
/// wait on.
#[derive(Debug)]
struct Served<K: StandIn> {
    control: Arc<Control<K>>,
    shutdown: CancellationToken,
}

/// Serves a stand-in's `routes` (and `/health`) on `listener` until `shutdown`, its
/// handlers sharing `control` ([`serve`]).
async fn serve_control<K: StandIn>(
    listener: TcpListener,
    control: Arc<Control<K>>,
    routes: Router<Arc<Served<K>>>,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let state = Arc::new(Served {
        control,
        shutdown: shutdown.clone(),
    });
    let router = routes
        .route("/health", get(|| async { "ok\n" }))
        .with_state(state);
    serve(listener, router, shutdown).await
}

async fn body_deadline(request: Request) -> Request {
    let (parts, body) = request.into_parts();
    Request::from_parts(parts, with_deadline(body, REQUEST_BODY_TIMEOUT))
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("Unknown request URL: {method} {uri}."),
        "invalid_request_error",
        Some("unknown_url"),
        None,
    )
}

/// An OpenAI-style error answer, with `Retry-After` in whole seconds (rounded up) if given.
fn error_response(
    status: StatusCode,
    message: impl Into<String>,
    kind: &str,
    code: Option<&str>,
    retry_after: Option<Duration>,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            message: message.into(),
            kind: kind.to_owned(),
            code: code.map(str::to_owned),
        },
    };
    let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned());
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response();
    if let Some(retry_after) = retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(retry_after)),
        );
    }
    response
}

/// The error body OpenAI sends with a status, for faults that answer with one.
fn status_error(status: StatusCode, retry_after: Option<Duration>) -> Response {
    let (message, kind, code) = match status.as_u16() {
        429 => (
            "Rate limit reached for requests. Please try again later.",
            "rate_limit_exceeded",
            Some("rate_limit_exceeded"),
        ),
        401 => (
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        400..=499 => ("The request was refused.", "invalid_request_error", None),
        503 => (
            "The server is overloaded or not ready yet.",
            "server_error",
            None,
        ),
        _ => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
    };
    error_response(status, message, kind, code, retry_after)
}

/// A status from a fault's number; numbers that are not final HTTP statuses (below 200 or
/// above 999) become 500.
fn status_from(code: u16) -> StatusCode {
    StatusCode::from_u16(code)
        .ok()
        .filter(|status| !status.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Whole seconds, rounded up, as `Retry-After` carries them.
fn retry_after_secs(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

/// 64-bit FNV-1a: a hash that stays the same across runs, builds and platforms.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Seconds since the Unix epoch.
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Locks a mutex, carrying on with the data if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a fault hits this request: always at 1, never at 0, otherwise a draw from the
/// seeded RNG (only fractions strictly between draw, so the sequence of draws depends only
/// on the requests that could be hit).
fn coin_flip(rng: &Mutex<ChaCha8Rng>, fraction: f64) -> bool {
    if fraction >= 1.0 {
        true
    } else if fraction > 0.0 {
        lock(rng).random::<f64>() < fraction
    } else {
        false
    }
}

/// Waits `delay`; `false` if the server is shutting down first.
async fn delay_unless_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    if delay.is_zero() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shutdown.cancelled() => false,
    }
}

/// The answer to a request still waiting when the server stops.
fn shutting_down() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server is shutting down.",
        "server_error",
        None,
        None,
    )
}

/// What the stand-ins' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::control::{Control, StandIn};
    use super::{MAX_BODY_BYTES, Running};

    /// Starts a stand-in with `spawn` on a free loopback port, with `behaviour` and `seed`.
    pub async fn start<K: StandIn, Started>(
        behaviour: K::Behaviour,
        seed: u64,
        spawn: impl FnOnce(TcpListener, Arc<Control<K>>, CancellationToken) -> Started,
    ) -> (Arc<Control<K>>, Running, CancellationToken)
    where
        Started: Future<Output = std::io::Result<Running>>,
    {
        let control = Control::new(behaviour, seed);
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = spawn(listener, Arc::clone(&control), shutdown.clone())
            .await
            .unwrap();
        (control, running, shutdown)
    }

    /// The status of each of `count` requests `request()` makes, one after the other.
    pub async fn statuses(count: usize, request: impl Fn() -> reqwest::RequestBuilder) -> Vec<u16> {
        let mut statuses = Vec::with_capacity(count);
        for _ in 0..count {
            statuses.push(request().send().await.unwrap().status().as_u16());
        }
        statuses
    }

    /// `hits(seed, fraction, count)` says which of `count` requests a fault on `fraction` of
    /// them hit: at one half, about half of them, the same ones again for the same seed and
    /// others for the next seed.
    pub async fn a_fraction_hits_about_that_share_reproducibly<Hits>(
        seed: u64,
        hits: impl Fn(u64, f64, usize) -> Hits,
    ) where
        Hits: Future<Output = Vec<bool>>,
    {
        let first = hits(seed, 0.5, 200).await;
        let share = first.iter().filter(|&&hit| hit).count();
        assert!((60..=140).contains(&share), "{share}");
        assert_eq!(hits(seed, 0.5, 200).await, first);
        assert_ne!(hits(seed + 1, 0.5, 200).await, first);
    }

    /// A body larger than [`MAX_BODY_BYTES`] sent to `url` is refused with 413.
    pub async fn a_too_large_body_gets_413(client: &reqwest::Client, url: &str) {
        let response = client
            .post(url)
            .body(vec![b' '; MAX_BODY_BYTES + 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
    }

    /// Waits, polling, until `done()` (10 s at most: a bound, not a pace).
    pub async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends `request`, which the stand-in `running` leaves hanging, waits until its
    /// `control` has counted it, then stops the server with `shutdown`: the request
    /// gets a 503 within 2 s, and the server is gone.
    pub async fn a_hanging_request_gets_503_at_shutdown<K: StandIn>(
        running: &Running,
        request: reqwest::RequestBuilder,
        control: &Control<K>,
        shutdown: &CancellationToken,
    ) {
        let before = control.requests();
        let pending = tokio::spawn(async move { request.send().await.map(|r| r.status()) });
        until("the hanging request was counted", || {
            control.requests() > before
        })
        .await;
        let stopping = Instant::now();
        shutdown.cancel();
        let status = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("an answer at shutdown")
            .expect("the request task");
        assert_eq!(status.expect("a response"), 503);
        assert!(stopping.elapsed() < Duration::from_secs(2));
        let health = format!("http://{}/health", running.address);
        let deadline = Instant::now() + Duration::from_secs(10);
        while reqwest::Client::new().get(&health).send().await.is_ok() {
            assert!(Instant::now() < deadline, "the server still answers");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 0);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn odd_fault_codes_become_500() {
        assert_eq!(status_from(503), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_from(42), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_from(101), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_from(1000), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

//! The TTS stand-in: `POST /v1/audio/speech` answering speech-like audio (seeded from the
//! input text, so the same text gives the same audio) as a 24 kHz 16-bit mono WAV (or raw
//! PCM with `response_format: "pcm"`), like OpenAI's API. Its length follows the text:
//! `ms_per_char` for each character, clamped to `min_audio..=max_audio`.
//!
//! Faults ([`TtsFault`]) are switched at run time through [`TtsControl`] and hit a
//! `fraction` of requests. Every request is recorded ([`TtsRecord`]: time, status, the
//! `X-Request-Id` header a fleet may send, a hash of the input text) so the grader can
//! measure the fleet's retry rate and backoff shape; the records are published to
//! subscribers and also kept in a bounded ring of the most recent ones.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Running;

#[derive(Debug, Clone, PartialEq, Default)]
pub enum TtsFault {
    #[default]
    None,
    /// 429 with an OpenAI rate-limit error body, and `Retry-After: <secs>` when given.
    RateLimited { retry_after: Option<Duration> },
    /// This 5xx status.
    ServerError { code: u16 },
    /// A normal answer after this extra delay.
    Slow { delay: Duration },
    /// Accept and never answer (until the client gives up or the server stops).
    Timeout,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TtsBehaviour {
    pub fault: TtsFault,
    /// Share (0..=1) of requests the fault hits; chosen with a seeded RNG.
    pub fraction: f64,
    pub ms_per_char: Duration,
    pub min_audio: Duration,
    pub max_audio: Duration,
    /// Added to every answer.
    pub latency: Duration,
}

impl Default for TtsBehaviour {
    fn default() -> Self {
        TtsBehaviour {
            fault: TtsFault::None,
            fraction: 1.0,
            ms_per_char: Duration::from_millis(40),
            min_audio: Duration::from_millis(400),
            max_audio: Duration::from_secs(4),
            latency: Duration::ZERO,
        }
    }
}

/// One request as the stand-in answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct TtsRecord {
    pub at: std::time::SystemTime,
    pub status: u16,
    /// The `X-Request-Id` header, if the fleet sent one (the reference fleet sends
    /// `<call sid>-<turn>`, the same for every retry of one utterance).
    pub request_id: Option<String>,
    /// A hash of the input text: retries of one utterance share it.
    pub input_hash: u64,
    /// Whether a fault decided this answer.
    pub faulted: bool,
}

/// Counters, recent records and the control knob.
#[derive(Debug)]
pub struct TtsControl {}

impl TtsControl {
    pub fn new(behaviour: TtsBehaviour, seed: u64) -> Arc<Self> {
        let _ = (behaviour, seed);
        todo!()
    }

    pub fn set(&self, behaviour: TtsBehaviour) {
        let _ = behaviour;
        todo!()
    }

    pub fn behaviour(&self) -> TtsBehaviour {
        todo!()
    }

    /// Requests answered so far, by status.
    pub fn requests_by_status(&self) -> std::collections::BTreeMap<u16, u64> {
        todo!()
    }

    /// All requests so far.
    pub fn requests(&self) -> u64 {
        todo!()
    }

    /// The most recent records (at most [`RECENT_RECORDS`]), oldest first.
    pub fn recent(&self) -> Vec<TtsRecord> {
        todo!()
    }

    /// Every [`TtsRecord`] from now on (a lagging receiver loses the oldest).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TtsRecord> {
        todo!()
    }
}

/// How many records [`TtsControl::recent`] keeps.
pub const RECENT_RECORDS: usize = 10_000;

/// Serves the stand-in on `listener` until `shutdown`.
pub async fn spawn(
    listener: TcpListener,
    control: Arc<TtsControl>,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let _ = (listener, control, shutdown);
    todo!()
}

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

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::openai::SpeechRequest;
use super::{
    Running, coin_flip, delay_unless_shutdown, error_response, lock, shutting_down, stable_hash,
    status_error, status_from,
};
use crate::audio::resample::resample;
use crate::audio::synth;

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
    /// When the request arrived.
    pub at: std::time::SystemTime,
    /// The status answered, or [`NO_ANSWER`] for a request left hanging.
    pub status: u16,
    /// The `X-Request-Id` header, if the fleet sent one (the reference fleet sends
    /// `<call sid>-<turn>`, the same for every retry of one utterance).
    pub request_id: Option<String>,
    /// A hash of the input text: retries of one utterance share it.
    pub input_hash: u64,
    /// Whether a fault decided this answer.
    pub faulted: bool,
}

/// The longest `X-Request-Id` kept, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

/// The status a [`TtsRecord`] carries for a request the stand-in never answered
/// ([`TtsFault::Timeout`]): no HTTP status was ever sent.
pub const NO_ANSWER: u16 = 0;

/// Counters, recent records and the control knob.
#[derive(Debug)]
pub struct TtsControl {
    behaviour: RwLock<TtsBehaviour>,
    requests: AtomicU64,
    by_status: Mutex<BTreeMap<u16, u64>>,
    recent: Mutex<VecDeque<TtsRecord>>,
    /// Decides which requests a fault hits.
    rng: Mutex<ChaCha8Rng>,
    records: broadcast::Sender<TtsRecord>,
}

/// How many records a subscriber may fall behind before it loses the oldest.
const RECORD_CHANNEL: usize = 1024;

impl TtsControl {
    pub fn new(behaviour: TtsBehaviour, seed: u64) -> Arc<Self> {
        let (records, _) = broadcast::channel(RECORD_CHANNEL);
        Arc::new(TtsControl {
            behaviour: RwLock::new(behaviour),
            requests: AtomicU64::new(0),
            by_status: Mutex::new(BTreeMap::new()),
            recent: Mutex::new(VecDeque::new()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            records,
        })
    }

    pub fn set(&self, behaviour: TtsBehaviour) {
        *self
            .behaviour
            .write()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    pub fn behaviour(&self) -> TtsBehaviour {
        self.behaviour
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests answered so far, by status.
    pub fn requests_by_status(&self) -> std::collections::BTreeMap<u16, u64> {
        lock(&self.by_status).clone()
    }

    /// All requests so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The most recent records (at most [`RECENT_RECORDS`]), oldest first.
    pub fn recent(&self) -> Vec<TtsRecord> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// Every [`TtsRecord`] from now on (a lagging receiver loses the oldest).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TtsRecord> {
        self.records.subscribe()
    }

    /// Counts, keeps and publishes one request.
    fn record(&self, record: TtsRecord) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        *lock(&self.by_status).entry(record.status).or_insert(0) += 1;
        {
            let mut recent = lock(&self.recent);
            if recent.len() >= RECENT_RECORDS {
                recent.pop_front();
            }
            recent.push_back(record.clone());
        }
        // Nobody listening is fine.
        let _ = self.records.send(record);
    }
}

/// How many records [`TtsControl::recent`] keeps.
pub const RECENT_RECORDS: usize = 10_000;

/// The hash of an input text that [`TtsRecord::input_hash`] carries (and that seeds its
/// audio): 64-bit FNV-1a of the UTF-8 bytes.
pub fn input_hash(input: &str) -> u64 {
    stable_hash(input.as_bytes())
}

/// The sample rate of the stand-in's audio.
pub const SAMPLE_RATE: u32 = 24_000;

/// How long the audio for `input` is: `ms_per_char` per character, clamped to
/// `min_audio..=max_audio` (`max_audio` wins if the two cross).
pub fn audio_duration(input: &str, behaviour: &TtsBehaviour) -> Duration {
    let chars = u32::try_from(input.chars().count()).unwrap_or(u32::MAX);
    behaviour
        .ms_per_char
        .saturating_mul(chars)
        .max(behaviour.min_audio)
        .min(behaviour.max_audio)
}

/// Serves the stand-in on `listener` until `shutdown`.
pub async fn spawn(
    listener: TcpListener,
    control: Arc<TtsControl>,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let state = Arc::new(TtsState {
        control,
        shutdown: shutdown.clone(),
    });
    let router = Router::new()
        .route("/v1/audio/speech", post(speech))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(state);
    super::serve(listener, router, shutdown).await
}

#[derive(Debug)]
struct TtsState {
    control: Arc<TtsControl>,
    shutdown: CancellationToken,
}

/// What the stand-in decided to do with one request.
#[derive(Debug)]
enum Answer {
    /// An error answer, right away (after the latency).
    Refuse(Response),
    /// Audio after this much extra delay.
    Speak {
        input: String,
        format: Format,
        delay: Duration,
    },
    /// Nothing, ever (until shutdown).
    Hang,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Wav,
    Pcm,
}

async fn speech(
    State(state): State<Arc<TtsState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let at = SystemTime::now();
    // Kept per request in the recent records and by the retry log: a fleet sending huge ids
    // must not grow the harness's memory, so only the first bytes count.
    let request_id = headers.get("x-request-id").map(|value| {
        let bytes = value.as_bytes();
        String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_REQUEST_ID)]).into_owned()
    });
    let control = &state.control;
    let behaviour = control.behaviour();

    let (answer, input_hash, faulted) = match parse(body) {
        Err(refusal) => {
            let hash = refusal.input_hash;
            (Answer::Refuse(refusal.into_response()), hash, false)
        }
        Ok((request, format)) => {
            let hash = input_hash(&request.input);
            let hit =
                behaviour.fault != TtsFault::None && coin_flip(&control.rng, behaviour.fraction);
            let fault = if hit {
                &behaviour.fault
            } else {
                &TtsFault::None
            };
            let speak = |delay| Answer::Speak {
                input: request.input,
                format,
                delay,
            };
            let answer = match fault {
                TtsFault::None => speak(Duration::ZERO),
                TtsFault::Slow { delay } => speak(*delay),
                TtsFault::RateLimited { retry_after } => {
                    Answer::Refuse(status_error(StatusCode::TOO_MANY_REQUESTS, *retry_after))
                }
                TtsFault::ServerError { code } => {
                    Answer::Refuse(status_error(status_from(*code), None))
                }
                TtsFault::Timeout => Answer::Hang,
            };
            (answer, hash, hit)
        }
    };
    let status = match &answer {
        Answer::Refuse(response) => response.status().as_u16(),
        Answer::Speak { .. } => 200,
        Answer::Hang => NO_ANSWER,
    };
    // Recorded on arrival, so a request whose client gives up is recorded too.
    control.record(TtsRecord {
        at,
        status,
        request_id,
        input_hash,
        faulted,
    });

    match answer {
        Answer::Hang => {
            state.shutdown.cancelled().await;
            shutting_down()
        }
        Answer::Refuse(response) => {
            if !delay_unless_shutdown(behaviour.latency, &state.shutdown).await {
                return shutting_down();
            }
            response
        }
        Answer::Speak {
            input,
            format,
            delay,
        } => {
            let wait = behaviour.latency.saturating_add(delay);
            if !delay_unless_shutdown(wait, &state.shutdown).await {
                return shutting_down();
            }
            let duration = audio_duration(&input, &behaviour);
            match tokio::task::spawn_blocking(move || encode(&synthesize(&input, duration), format))
                .await
            {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("The audio could not be encoded: {error}"),
                    "server_error",
                    None,
                    None,
                ),
                Err(_) => status_error(StatusCode::INTERNAL_SERVER_ERROR, None),
            }
        }
    }
}

/// Why a request is refused before any fault is considered.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    code: Option<&'static str>,
    /// The hash of the input, 0 when there is no input to hash.
    input_hash: u64,
}

impl Refusal {
    fn invalid(message: String, code: Option<&'static str>, input_hash: u64) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message,
            code,
            input_hash,
        }
    }

    fn into_response(self) -> Response {
        error_response(
            self.status,
            self.message,
            "invalid_request_error",
            self.code,
            None,
        )
    }
}

/// The request and its audio format, or why it is refused.
fn parse(body: Result<Bytes, BytesRejection>) -> Result<(SpeechRequest, Format), Refusal> {
    let body = body.map_err(|rejection| Refusal {
        status: rejection.status(),
        message: rejection.body_text(),
        code: None,
        input_hash: 0,
    })?;
    let request: SpeechRequest = serde_json::from_slice(&body).map_err(|error| {
        Refusal::invalid(
            format!("We could not parse the JSON body of your request: {error}"),
            None,
            0,
        )
    })?;
    let hash = input_hash(&request.input);
    if request.input.trim().is_empty() {
        return Err(Refusal::invalid(
            "'input' must be a non-empty string.".to_owned(),
            Some("empty_input"),
            hash,
        ));
    }
    let format = match request.response_format.as_deref() {
        Some("wav") => Format::Wav,
        Some("pcm") => Format::Pcm,
        other => {
            return Err(Refusal::invalid(
                format!(
                    "response_format {} is not supported by the stand-in: only \"wav\" and \
                     \"pcm\" are supported.",
                    other.map_or_else(|| "mp3 (the default)".to_owned(), |f| format!("{f:?}"))
                ),
                Some("unsupported_response_format"),
                hash,
            ));
        }
    };
    Ok((request, format))
}

/// Speech-like audio for `input` at 24 kHz: the same text and duration give the same samples.
fn synthesize(input: &str, duration: Duration) -> Vec<i16> {
    let narrowband: Vec<f32> = synth::speech_like(input_hash(input), duration)
        .into_iter()
        .map(|sample| f32::from(sample) / 32768.0)
        .collect();
    resample(&narrowband, crate::audio::SAMPLE_RATE, SAMPLE_RATE)
        .into_iter()
        .map(|sample| (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn encode(samples: &[i16], format: Format) -> Result<Response, hound::Error> {
    let (content_type, bytes) = match format {
        Format::Pcm => (
            "audio/pcm",
            samples
                .iter()
                .flat_map(|sample| sample.to_le_bytes())
                .collect(),
        ),
        Format::Wav => {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: SAMPLE_RATE,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut cursor = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
            let mut writer = hound::WavWriter::new(&mut cursor, spec)?;
            for &sample in samples {
                writer.write_sample(sample)?;
            }
            writer.finalize()?;
            ("audio/wav", cursor.into_inner())
        }
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::standin::MAX_BODY_BYTES;
    use crate::standin::openai::ErrorBody;

    async fn start(
        behaviour: TtsBehaviour,
        seed: u64,
    ) -> (Arc<TtsControl>, Running, CancellationToken) {
        let control = TtsControl::new(behaviour, seed);
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = spawn(listener, Arc::clone(&control), shutdown.clone())
            .await
            .unwrap();
        (control, running, shutdown)
    }

    fn request(input: &str, format: Option<&str>) -> SpeechRequest {
        SpeechRequest {
            model: "tts-1".to_owned(),
            input: input.to_owned(),
            voice: "alloy".to_owned(),
            response_format: format.map(str::to_owned),
        }
    }

    async fn speak(
        running: &Running,
        input: &str,
        format: Option<&str>,
        request_id: Option<&str>,
    ) -> reqwest::Response {
        let mut builder = reqwest::Client::new()
            .post(format!("{}/audio/speech", running.base_url()))
            .json(&request(input, format));
        if let Some(id) = request_id {
            builder = builder.header("X-Request-Id", id);
        }
        builder.send().await.unwrap()
    }

    /// The samples of a WAV answer, checking its format.
    async fn wav_samples(response: reqwest::Response) -> Vec<i16> {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "audio/wav");
        let bytes = response.bytes().await.unwrap();
        let reader = hound::WavReader::new(Cursor::new(bytes.to_vec())).unwrap();
        let spec = reader.spec();
        assert_eq!(spec.sample_rate, 24_000);
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.bits_per_sample, 16);
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        reader.into_samples::<i16>().map(Result::unwrap).collect()
    }

    fn text(chars: usize) -> String {
        "Your order has shipped. "
            .chars()
            .cycle()
            .take(chars)
            .collect()
    }

    #[tokio::test]
    async fn wav_audio_is_24khz_mono_16_bit_and_as_long_as_the_text() {
        let (control, running, shutdown) = start(TtsBehaviour::default(), 1).await;
        // 40 ms a character, at least 400 ms, at most 4 s.
        for (chars, millis) in [(25, 1000), (2, 400), (10, 400), (11, 440), (200, 4000)] {
            let samples = wav_samples(speak(&running, &text(chars), Some("wav"), None).await).await;
            assert_eq!(samples.len(), millis * 24, "{chars} chars");
            let peak = samples
                .iter()
                .map(|sample| sample.unsigned_abs())
                .max()
                .unwrap();
            assert!(peak > 1000, "{chars} chars: peak {peak}");
        }
        // Characters, not bytes.
        let samples = wav_samples(speak(&running, &"é".repeat(25), Some("wav"), None).await).await;
        assert_eq!(samples.len(), 24_000);

        control.set(TtsBehaviour {
            ms_per_char: Duration::from_millis(10),
            min_audio: Duration::from_millis(100),
            max_audio: Duration::from_millis(500),
            ..TtsBehaviour::default()
        });
        for (chars, millis) in [(25, 250), (5, 100), (80, 500)] {
            let samples = wav_samples(speak(&running, &text(chars), Some("wav"), None).await).await;
            assert_eq!(samples.len(), millis * 24, "{chars} chars");
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn pcm_is_the_same_samples_raw_and_the_same_text_gives_the_same_audio() {
        let (_control, running, shutdown) = start(TtsBehaviour::default(), 1).await;
        let input = "Your order C001234 has shipped.";
        let response = speak(&running, input, Some("pcm"), None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "audio/pcm");
        let pcm = response.bytes().await.unwrap();
        let samples = wav_samples(speak(&running, input, Some("wav"), None).await).await;
        assert_eq!(pcm.len(), samples.len() * 2);
        let decoded: Vec<i16> = pcm
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        assert_eq!(decoded, samples);

        let again = speak(&running, input, Some("pcm"), None)
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(again, pcm);
        let other = speak(
            &running,
            "Your order C001235 has shipped.",
            Some("pcm"),
            None,
        )
        .await
        .bytes()
        .await
        .unwrap();
        assert_eq!(other.len(), pcm.len());
        assert_ne!(other, pcm);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_400_and_recorded() {
        let (control, running, shutdown) = start(TtsBehaviour::default(), 1).await;
        for (input, format) in [
            ("Hello", Some("mp3")),
            ("Hello", None),
            ("Hello", Some("opus")),
            ("", Some("wav")),
            ("   ", Some("pcm")),
        ] {
            let response = speak(&running, input, format, Some("bad")).await;
            assert_eq!(response.status(), 400, "{input:?} {format:?}");
            let body: ErrorBody = response.json().await.unwrap();
            assert_eq!(body.error.kind, "invalid_request_error");
            if input == "Hello" {
                assert!(body.error.message.contains("wav"), "{}", body.error.message);
                assert!(body.error.message.contains("pcm"), "{}", body.error.message);
            }
        }
        let client = reqwest::Client::new();
        let url = format!("{}/audio/speech", running.base_url());
        for body in [
            b"".to_vec(),
            b"{".to_vec(),
            b"[]".to_vec(),
            b"{\"input\":\"Hello\"}".to_vec(),
            vec![0xff; 100],
        ] {
            let response = client.post(&url).body(body).send().await.unwrap();
            assert_eq!(response.status(), 400);
            assert!(response.json::<ErrorBody>().await.is_ok());
        }
        let response = client
            .post(&url)
            .body(vec![b' '; MAX_BODY_BYTES + 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        let response = client
            .get(format!("{}/audio/voices", running.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);

        assert_eq!(control.requests(), 11);
        assert_eq!(
            control.requests_by_status(),
            BTreeMap::from([(400, 10), (413, 1)])
        );
        let recent = control.recent();
        assert_eq!(recent.len(), 11);
        assert!(recent.iter().all(|record| !record.faulted));
        assert_eq!(recent[0].request_id.as_deref(), Some("bad"));
        assert_eq!(recent[0].input_hash, input_hash("Hello"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn rate_limits_server_errors_and_slow_answers() {
        let (control, running, shutdown) = start(
            TtsBehaviour {
                fault: TtsFault::RateLimited {
                    retry_after: Some(Duration::from_millis(1500)),
                },
                ..TtsBehaviour::default()
            },
            1,
        )
        .await;
        let response = speak(&running, "Hello there", Some("wav"), None).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body: ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(body.error.kind, "rate_limit_exceeded");

        control.set(TtsBehaviour {
            fault: TtsFault::RateLimited { retry_after: None },
            ..TtsBehaviour::default()
        });
        let response = speak(&running, "Hello there", Some("wav"), None).await;
        assert_eq!(response.status(), 429);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());

        control.set(TtsBehaviour {
            fault: TtsFault::ServerError { code: 503 },
            ..TtsBehaviour::default()
        });
        let response = speak(&running, "Hello there", Some("wav"), None).await;
        assert_eq!(response.status(), 503);
        assert!(response.json::<ErrorBody>().await.is_ok());

        control.set(TtsBehaviour {
            fault: TtsFault::Slow {
                delay: Duration::from_millis(300),
            },
            latency: Duration::from_millis(100),
            ..TtsBehaviour::default()
        });
        let started = Instant::now();
        let samples = wav_samples(speak(&running, "Hello there", Some("wav"), None).await).await;
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(samples.len(), 440 * 24);

        assert_eq!(
            control.requests_by_status(),
            BTreeMap::from([(200, 1), (429, 2), (503, 1)])
        );
        assert!(control.recent().iter().all(|record| record.faulted));
        shutdown.cancel();
    }

    /// Which of `count` requests a 500 fault with `fraction` hit, for `seed`.
    async fn hits(seed: u64, fraction: f64, count: usize) -> Vec<bool> {
        let behaviour = TtsBehaviour {
            fault: TtsFault::ServerError { code: 500 },
            fraction,
            min_audio: Duration::from_millis(20),
            ..TtsBehaviour::default()
        };
        let (control, running, shutdown) = start(behaviour, seed).await;
        let client = reqwest::Client::new();
        let mut hits = Vec::with_capacity(count);
        for _ in 0..count {
            let status = client
                .post(format!("{}/audio/speech", running.base_url()))
                .json(&request("Hi", Some("pcm")))
                .send()
                .await
                .unwrap()
                .status();
            hits.push(status == 500);
        }
        let hit_count = hits.iter().filter(|&&hit| hit).count() as u64;
        assert_eq!(control.requests(), count as u64);
        assert_eq!(
            control.requests_by_status().get(&500).copied().unwrap_or(0),
            hit_count
        );
        let faulted = control
            .recent()
            .iter()
            .filter(|record| record.faulted)
            .count() as u64;
        assert_eq!(faulted, hit_count);
        shutdown.cancel();
        hits
    }

    #[tokio::test]
    async fn a_fraction_hits_about_that_share_reproducibly() {
        let first = hits(3, 0.5, 200).await;
        let share = first.iter().filter(|&&hit| hit).count();
        assert!((60..=140).contains(&share), "{share}");
        assert_eq!(hits(3, 0.5, 200).await, first);
        assert_ne!(hits(4, 0.5, 200).await, first);
    }

    #[tokio::test]
    async fn requests_are_recorded_with_their_ids_and_input_hashes() {
        let (control, running, shutdown) = start(TtsBehaviour::default(), 1).await;
        let mut records = control.subscribe();
        let started = std::time::SystemTime::now();
        speak(
            &running,
            "Your order has shipped.",
            Some("pcm"),
            Some("CA1-1"),
        )
        .await;
        control.set(TtsBehaviour {
            fault: TtsFault::RateLimited {
                retry_after: Some(Duration::from_secs(1)),
            },
            ..TtsBehaviour::default()
        });
        speak(
            &running,
            "Is there anything else?",
            Some("pcm"),
            Some("CA1-2"),
        )
        .await;
        control.set(TtsBehaviour::default());
        speak(
            &running,
            "Is there anything else?",
            Some("pcm"),
            Some("CA1-2"),
        )
        .await;
        speak(&running, "Goodbye.", Some("pcm"), None).await;

        let recent = control.recent();
        let summary: Vec<_> = recent
            .iter()
            .map(|record| (record.status, record.request_id.as_deref(), record.faulted))
            .collect();
        assert_eq!(
            summary,
            [
                (200, Some("CA1-1"), false),
                (429, Some("CA1-2"), true),
                (200, Some("CA1-2"), false),
                (200, None, false),
            ]
        );
        assert_eq!(recent[0].input_hash, input_hash("Your order has shipped."));
        assert_eq!(recent[1].input_hash, recent[2].input_hash);
        assert_ne!(recent[0].input_hash, recent[1].input_hash);
        assert!(recent.iter().all(|record| record.at >= started));
        assert!(recent.windows(2).all(|pair| pair[0].at <= pair[1].at));
        for expected in &recent {
            assert_eq!(&records.recv().await.unwrap(), expected);
        }
        assert_eq!(control.requests(), 4);
        assert_eq!(
            control.requests_by_status(),
            BTreeMap::from([(200, 3), (429, 1)])
        );
        shutdown.cancel();
    }

    #[test]
    fn the_ring_keeps_the_most_recent_records() {
        let control = TtsControl::new(TtsBehaviour::default(), 1);
        for n in 0..RECENT_RECORDS + 5 {
            control.record(TtsRecord {
                at: std::time::SystemTime::now(),
                status: 200,
                request_id: None,
                input_hash: n as u64,
                faulted: false,
            });
        }
        let recent = control.recent();
        assert_eq!(recent.len(), RECENT_RECORDS);
        assert_eq!(recent[0].input_hash, 5);
        assert_eq!(
            recent[RECENT_RECORDS - 1].input_hash,
            RECENT_RECORDS as u64 + 4
        );
        assert_eq!(control.requests(), RECENT_RECORDS as u64 + 5);
    }

    #[tokio::test]
    async fn a_timeout_never_answers_but_shutdown_still_ends_the_server() {
        let (control, running, shutdown) = start(
            TtsBehaviour {
                fault: TtsFault::Timeout,
                ..TtsBehaviour::default()
            },
            1,
        )
        .await;
        let url = format!("{}/audio/speech", running.base_url());
        let error = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
            .post(&url)
            .json(&request("Hello", Some("wav")))
            .send()
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{error}");

        // One more left hanging while the server stops: it gets an answer then.
        let pending = tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&request("Hello", Some("wav")))
                .send()
                .await
                .map(|response| response.status())
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stopping = Instant::now();
        shutdown.cancel();
        let status = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.unwrap(), 503);
        assert!(stopping.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            reqwest::Client::new()
                .get(format!("http://{}/health", running.address))
                .send()
                .await
                .is_err()
        );

        assert_eq!(control.requests(), 2);
        assert_eq!(
            control.requests_by_status(),
            BTreeMap::from([(NO_ANSWER, 2)])
        );
        assert!(control.recent().iter().all(|record| record.faulted));
    }

    #[test]
    fn crossed_clamps_do_not_panic() {
        let behaviour = TtsBehaviour {
            min_audio: Duration::from_secs(2),
            max_audio: Duration::from_secs(1),
            ..TtsBehaviour::default()
        };
        assert_eq!(audio_duration("Hi", &behaviour), Duration::from_secs(1));
        let huge = TtsBehaviour {
            ms_per_char: Duration::MAX,
            ..TtsBehaviour::default()
        };
        assert_eq!(audio_duration("Hi", &huge), huge.max_audio);
    }
}

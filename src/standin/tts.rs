//! The TTS stand-in: `POST /v1/audio/speech` answering speech-like audio (seeded from the
//! input text, so the same text gives the same audio) as a 24 kHz 16-bit mono WAV (or raw
//! PCM with `response_format: "pcm"`), like OpenAI's API. Its length follows the text:
//! `ms_per_char` for each character, clamped to `min_audio..=max_audio`.
//!
//! Faults ([`TtsFault`]) are switched at run time through [`TtsControl`] and hit a
//! `fraction` of requests. Every request is counted ([`TtsCounts`]) and recorded
//! ([`TtsRecord`]: time, status, the id a fleet may send, a hash of the input text, the
//! client connection) in the request's own task, under one lock with the behaviour that
//! decided its answer: a fault's counts taken at its switches ([`TtsControl::switch`]) are
//! exact however fast requests come. An [`TtsObserver`] (the chaos plane's request log)
//! sees each request arrive and its answer end, the same way, so the grader can tell the
//! fleet's retries and their backoff shape; a bounded ring keeps the most recent records.

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::control::{Control, Counts, Ledger, StandIn};
use super::openai::SpeechRequest;
use super::{
    Running, Served, coin_flip, delay_unless_shutdown, error_response, shutting_down, stable_hash,
    status_error, status_from,
};
use crate::audio::resample::resample;
use crate::audio::synth;

pub use crate::contract::standin::TtsFault;

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
    /// The fleet's id for the logical request: its `X-Request-Id` header, or else its
    /// `Idempotency-Key` (the reference fleet sends `<call sid>-<turn>` as `X-Request-Id`,
    /// the same for every retry of one utterance).
    pub request_id: Option<String>,
    /// A hash of the input text: retries of one utterance share it.
    pub input_hash: u64,
    /// Whether a fault decided this answer.
    pub faulted: bool,
    /// The client end of the connection it came on (address and port): without an id, a
    /// retry is the same text again on the same connection.
    pub peer: Option<SocketAddr>,
}

/// The longest request id kept, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

/// The status a [`TtsRecord`] carries for a request the stand-in never answered
/// ([`TtsFault::Timeout`]): no HTTP status was ever sent.
pub const NO_ANSWER: u16 = 0;

/// The stand-in's counts, as one snapshot: every request is counted exactly once, when its
/// answer is decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TtsCounts {
    pub requests: u64,
    /// Requests a fault hit.
    pub faulted: u64,
    /// Requests by the status decided for them ([`NO_ANSWER`] for requests left hanging).
    pub by_status: BTreeMap<u16, u64>,
}

impl Counts for TtsCounts {
    fn since(&self, earlier: &TtsCounts) -> TtsCounts {
        TtsCounts {
            requests: self.requests.saturating_sub(earlier.requests),
            faulted: self.faulted.saturating_sub(earlier.faulted),
            by_status: self
                .by_status
                .iter()
                .map(|(status, count)| {
                    let before = earlier.by_status.get(status).copied().unwrap_or(0);
                    (*status, count.saturating_sub(before))
                })
                .filter(|(_, count)| *count > 0)
                .collect(),
        }
    }

    fn requests(&self) -> u64 {
        self.requests
    }
}

/// One request being answered, as an [`TtsObserver`] sees it.
#[derive(Debug, Clone)]
pub struct TtsAttempt {
    pub record: TtsRecord,
    /// Numbers the requests in the order they were counted, from 1.
    pub sequence: u64,
    /// When it arrived, on the monotonic clock retry gaps are measured with.
    pub arrived: Instant,
    /// A fault was on when it came (whether or not the fault hit it: `record.faulted`).
    pub fault_on: bool,
}

/// How the answer to a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtsEnding {
    /// When the answer was handed to the connection, or when the client was seen to give up.
    pub at: Instant,
    /// Not a 2xx answer: an error status, or no answer at all (the client gave up or the
    /// connection broke first, e.g. on a `tts_timeout`).
    pub failed: bool,
    /// The `Retry-After` the answer carried, as sent (whole seconds).
    pub retry_after: Option<Duration>,
}

/// Sees every request the stand-in takes, in the request's own task: nothing is queued, so
/// nothing can be dropped or fall behind.
pub trait TtsObserver: Send + Sync + std::fmt::Debug {
    /// A request arrived and its answer was decided. Called under the stand-in's count
    /// lock, so what an observer counts agrees with [`TtsControl::counts`]; keep it short.
    fn arrived(&self, attempt: &TtsAttempt);
    /// The answer to `attempt` ended. Called once for every `arrived`.
    fn ended(&self, attempt: &TtsAttempt, ending: &TtsEnding);
}

/// The TTS stand-in, as its control sees it: what it keeps under the count lock besides
/// its counts ([`TtsKept`]).
#[derive(Debug, Default)]
pub struct TtsStandIn;

impl StandIn for TtsStandIn {
    type Behaviour = TtsBehaviour;
    type Counts = TtsCounts;
    type Kept = TtsKept;
}

/// What the TTS stand-in keeps with its counts.
#[derive(Debug, Default)]
pub struct TtsKept {
    recent: VecDeque<TtsRecord>,
    observer: Option<Arc<dyn TtsObserver>>,
}

/// Counters, recent records and the control knob.
pub type TtsControl = Control<TtsStandIn>;

impl TtsControl {
    /// Requests answered so far, by status.
    pub fn requests_by_status(&self) -> BTreeMap<u16, u64> {
        self.ledger().counts.by_status.clone()
    }

    /// The most recent records (at most [`RECENT_RECORDS`]), oldest first.
    pub fn recent(&self) -> Vec<TtsRecord> {
        self.ledger().kept.recent.iter().cloned().collect()
    }

    /// Shows every request from now on to `observer` (None: to nobody), in place of the
    /// one before.
    pub fn observe(&self, observer: Option<Arc<dyn TtsObserver>>) {
        self.ledger().kept.observer = observer;
    }
}

impl Ledger<TtsStandIn> {
    /// Counts and keeps one request, shows it to the observer, and returns it as an
    /// attempt whose end the observer must hear of.
    fn count(&mut self, record: TtsRecord, arrived: Instant) -> Answering {
        let counts = &mut self.counts;
        counts.requests += 1;
        counts.faulted += u64::from(record.faulted);
        *counts.by_status.entry(record.status).or_insert(0) += 1;
        let kept = &mut self.kept;
        if kept.recent.len() >= RECENT_RECORDS {
            kept.recent.pop_front();
        }
        kept.recent.push_back(record.clone());
        let attempt = TtsAttempt {
            record,
            sequence: counts.requests,
            arrived,
            fault_on: self.behaviour.fault != TtsFault::None,
        };
        if let Some(observer) = &kept.observer {
            observer.arrived(&attempt);
        }
        Answering {
            observer: kept.observer.clone(),
            attempt,
            ended: false,
        }
    }
}

/// A counted request whose answer has not ended yet: dropped before [`Answering::answered`]
/// (the client went away and the server dropped the handler), its observer hears it failed.
#[derive(Debug)]
struct Answering {
    observer: Option<Arc<dyn TtsObserver>>,
    attempt: TtsAttempt,
    ended: bool,
}

impl Answering {
    /// The answer is handed to the connection.
    fn answered(mut self, response: &Response) {
        self.end(TtsEnding {
            at: Instant::now(),
            failed: !response.status().is_success(),
            retry_after: sent_retry_after(response.headers()),
        });
    }

    fn end(&mut self, ending: TtsEnding) {
        self.ended = true;
        if let Some(observer) = &self.observer {
            observer.ended(&self.attempt, &ending);
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if !self.ended {
            self.end(TtsEnding {
                at: Instant::now(),
                failed: true,
                retry_after: None,
            });
        }
    }
}

/// The `Retry-After` in `headers` in whole seconds, as the stand-in sends it.
fn sent_retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
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
    let routes = Router::new().route("/v1/audio/speech", post(speech));
    super::serve_control(listener, control, routes, shutdown).await
}

type TtsState = Served<TtsStandIn>;

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

/// The fleet's id for the logical request: `X-Request-Id`, else `Idempotency-Key`. Kept per
/// request in the recent records and by the retry log: a fleet sending huge ids must not
/// grow the harness's memory, so only the first bytes count.
fn request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get("x-request-id")
        .or_else(|| headers.get("idempotency-key"))?;
    let bytes = value.as_bytes();
    Some(String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_REQUEST_ID)]).into_owned())
}

async fn speech(
    State(state): State<Arc<TtsState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let at = SystemTime::now();
    let arrived = Instant::now();
    let request_id = request_id(&headers);
    let control = &state.control;
    let parsed = parse(body);

    // Decided and counted under one lock: a switch of the behaviour falls between two
    // requests, never inside one, so a fault's counts are exact.
    let (behaviour, answer, answering) = {
        let mut ledger = control.ledger();
        let behaviour = ledger.behaviour.clone();
        let (answer, input_hash, faulted) = decide(parsed, &behaviour, &control.rng);
        let status = match &answer {
            Answer::Refuse(response) => response.status().as_u16(),
            Answer::Speak { .. } => 200,
            Answer::Hang => NO_ANSWER,
        };
        // Counted on arrival, so a request whose client gives up is counted too.
        let record = TtsRecord {
            at,
            status,
            request_id,
            input_hash,
            faulted,
            peer: Some(peer),
        };
        let answering = ledger.count(record, arrived);
        (behaviour, answer, answering)
    };
    let response = answer_with(answer, &behaviour, &state.shutdown).await;
    answering.answered(&response);
    response
}

/// The answer `parsed` gets under `behaviour`, the hash of its input, and whether a fault
/// decided it.
fn decide(
    parsed: Result<(SpeechRequest, Format), Refusal>,
    behaviour: &TtsBehaviour,
    rng: &Mutex<ChaCha8Rng>,
) -> (Answer, u64, bool) {
    match parsed {
        Err(refusal) => {
            let hash = refusal.input_hash;
            (Answer::Refuse(refusal.into_response()), hash, false)
        }
        Ok((request, format)) => {
            let hash = input_hash(&request.input);
            let hit = behaviour.fault != TtsFault::None && coin_flip(rng, behaviour.fraction);
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
    }
}

/// Carries out `answer`; the server shutting down first answers 503.
async fn answer_with(
    answer: Answer,
    behaviour: &TtsBehaviour,
    shutdown: &CancellationToken,
) -> Response {
    match answer {
        Answer::Hang => {
            shutdown.cancelled().await;
            shutting_down()
        }
        Answer::Refuse(response) => {
            if !delay_unless_shutdown(behaviour.latency, shutdown).await {
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
            if !delay_unless_shutdown(wait, shutdown).await {
                return shutting_down();
            }
            let duration = audio_duration(&input, behaviour);
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
    use crate::standin::lock;
    use crate::standin::openai::ErrorBody;
    use crate::standin::testing::{self, a_hanging_request_gets_503_at_shutdown};

    async fn start(
        behaviour: TtsBehaviour,
        seed: u64,
    ) -> (Arc<TtsControl>, Running, CancellationToken) {
        testing::start(behaviour, seed, spawn).await
    }

    /// 429s for every request.
    fn rate_limited(retry_after: Option<Duration>) -> TtsBehaviour {
        TtsBehaviour {
            fault: TtsFault::RateLimited { retry_after },
            ..TtsBehaviour::default()
        }
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
        testing::a_too_large_body_gets_413(&client, &url).await;
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
        let (control, running, shutdown) =
            start(rate_limited(Some(Duration::from_millis(1500))), 1).await;
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
        let url = format!("{}/audio/speech", running.base_url());
        let statuses = testing::statuses(count, || {
            client.post(&url).json(&request("Hi", Some("pcm")))
        });
        let hits: Vec<bool> = statuses.await.iter().map(|&status| status == 500).collect();
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
        testing::a_fraction_hits_about_that_share_reproducibly(3, hits).await;
    }

    /// What an observer saw, in order: each arrival (sequence, record) and each ending.
    #[derive(Debug, Default)]
    struct Seen {
        events: Mutex<Vec<(u64, Option<TtsEnding>)>>,
        records: Mutex<Vec<TtsRecord>>,
        changed: tokio::sync::Notify,
    }

    impl TtsObserver for Seen {
        fn arrived(&self, attempt: &TtsAttempt) {
            lock(&self.events).push((attempt.sequence, None));
            lock(&self.records).push(attempt.record.clone());
            self.changed.notify_waiters();
        }

        fn ended(&self, attempt: &TtsAttempt, ending: &TtsEnding) {
            lock(&self.events).push((attempt.sequence, Some(*ending)));
            self.changed.notify_waiters();
        }
    }

    impl Seen {
        /// The ending of request `sequence`, once it has come.
        async fn ending(&self, sequence: u64) -> TtsEnding {
            loop {
                let changed = self.changed.notified();
                let found = lock(&self.events)
                    .iter()
                    .find_map(|(seen, ending)| ending.filter(|_| *seen == sequence));
                if let Some(ending) = found {
                    return ending;
                }
                changed.await;
            }
        }
    }

    #[tokio::test]
    async fn requests_are_recorded_with_their_ids_and_input_hashes() {
        let (control, running, shutdown) = start(TtsBehaviour::default(), 1).await;
        let seen = Arc::new(Seen::default());
        control.observe(Some(Arc::clone(&seen) as Arc<dyn TtsObserver>));
        let started = std::time::SystemTime::now();
        speak(
            &running,
            "Your order has shipped.",
            Some("pcm"),
            Some("CA1-1"),
        )
        .await;
        // One utterance, refused with a 429 and then retried with the same id.
        let anything_else = || {
            speak(
                &running,
                "Is there anything else?",
                Some("pcm"),
                Some("CA1-2"),
            )
        };
        control.set(rate_limited(Some(Duration::from_secs(1))));
        anything_else().await;
        control.set(TtsBehaviour::default());
        anything_else().await;
        speak(&running, "Goodbye.", Some("pcm"), None).await;
        // An idempotency key stands for the id when there is no X-Request-Id.
        reqwest::Client::new()
            .post(format!("{}/audio/speech", running.base_url()))
            .header("Idempotency-Key", "key-7")
            .json(&request("Goodbye.", Some("pcm")))
            .send()
            .await
            .unwrap();

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
                (200, Some("key-7"), false),
            ]
        );
        assert_eq!(recent[0].input_hash, input_hash("Your order has shipped."));
        assert_eq!(recent[1].input_hash, recent[2].input_hash);
        assert_ne!(recent[0].input_hash, recent[1].input_hash);
        assert!(recent.iter().all(|record| record.at >= started));
        assert!(recent.windows(2).all(|pair| pair[0].at <= pair[1].at));
        // The client's end of each connection, on loopback.
        assert!(recent.iter().all(|record| {
            record.peer.is_some_and(|peer| {
                peer.ip().is_loopback() && peer.port() != running.address.port()
            })
        }));
        assert_eq!(
            *lock(&seen.records),
            recent,
            "the observer saw every record"
        );
        assert_eq!(control.requests(), 5);
        assert_eq!(
            control.counts(),
            TtsCounts {
                requests: 5,
                faulted: 1,
                by_status: BTreeMap::from([(200, 4), (429, 1)]),
            }
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn an_observer_hears_how_each_answer_ended() {
        let (control, running, shutdown) =
            start(rate_limited(Some(Duration::from_millis(1500))), 1).await;
        let seen = Arc::new(Seen::default());
        control.observe(Some(Arc::clone(&seen) as Arc<dyn TtsObserver>));
        let asked = speak(&running, "Hello there", Some("pcm"), Some("a")).await;
        // What the header says (1.5 s rounds up to 2), not what the fault was set to.
        assert_eq!(asked.headers()[header::RETRY_AFTER], "2");
        let ending = seen.ending(1).await;
        assert!(ending.failed);
        assert_eq!(ending.retry_after, Some(Duration::from_secs(2)));

        control.set(TtsBehaviour::default());
        speak(&running, "Hello there", Some("pcm"), Some("a")).await;
        let ending = seen.ending(2).await;
        assert!(!ending.failed);
        assert_eq!(ending.retry_after, None);

        // A client that gives up before a slow answer, or before one that never comes: the
        // answer failed, and ended when it gave up.
        let gives_up = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let faults = [
            TtsFault::Slow {
                delay: Duration::from_secs(30),
            },
            TtsFault::Timeout,
        ];
        for (sequence, fault) in (3..).zip(faults) {
            control.set(TtsBehaviour {
                fault: fault.clone(),
                ..TtsBehaviour::default()
            });
            let error = gives_up
                .post(format!("{}/audio/speech", running.base_url()))
                .json(&request("Hello there", Some("pcm")))
                .send()
                .await
                .unwrap_err();
            assert!(error.is_timeout(), "{fault:?}: {error}");
            let ending = tokio::time::timeout(Duration::from_secs(10), seen.ending(sequence))
                .await
                .unwrap_or_else(|_| panic!("{fault:?}: the abandoned answer is seen to end"));
            assert!(ending.failed, "{fault:?}");
        }
        assert_eq!(
            lock(&seen.events).len(),
            8,
            "one arrival and one ending each"
        );
        shutdown.cancel();
    }

    #[test]
    fn the_ring_keeps_the_most_recent_records() {
        let control = TtsControl::new(TtsBehaviour::default(), 1);
        for n in 0..RECENT_RECORDS + 5 {
            control.ledger().count(
                TtsRecord {
                    at: std::time::SystemTime::now(),
                    status: 200,
                    request_id: None,
                    input_hash: n as u64,
                    faulted: false,
                    peer: None,
                },
                tokio::time::Instant::now(),
            );
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

    #[test]
    fn counts_since_a_snapshot_are_the_difference() {
        let earlier = TtsCounts {
            requests: 10,
            faulted: 4,
            by_status: BTreeMap::from([(200, 6), (429, 4)]),
        };
        let later = TtsCounts {
            requests: 15,
            faulted: 7,
            by_status: BTreeMap::from([(200, 8), (429, 7)]),
        };
        assert_eq!(
            later.since(&earlier),
            TtsCounts {
                requests: 5,
                faulted: 3,
                by_status: BTreeMap::from([(200, 2), (429, 3)]),
            }
        );
        let unchanged = TtsCounts {
            by_status: BTreeMap::from([(200, 6), (429, 4), (503, 1)]),
            ..earlier.clone()
        };
        assert_eq!(
            unchanged.since(&earlier).by_status,
            BTreeMap::from([(503, 1)])
        );
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
        let request = reqwest::Client::new()
            .post(url)
            .json(&request("Hello", Some("wav")));
        a_hanging_request_gets_503_at_shutdown(&running, request, &control, &shutdown).await;

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

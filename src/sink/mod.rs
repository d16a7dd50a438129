//! `voxsoak sink`: a minimal fleet that speaks Twilio Media Streams, for the harness's own
//! tests, baseline and benchmarks.
//!
//! It listens to the caller with a voice-activity detector; when the caller's utterance ends
//! (or DTMF digits come in) it waits `reply_delay` from the end of the caller's speech and
//! answers with a short synthetic utterance followed by a mark. If the caller starts talking
//! while the reply is still playing (barge-in), it sends `clear`, as a real agent should.
//!
//! Endpoints: `POST /voice` (voice webhook → TwiML `<Connect><Stream>`), `GET /stream`
//! (the Media Streams WebSocket), `GET /health`, `GET /metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::audio::FRAME_SAMPLES;
use crate::audio::synth;
use crate::audio::vad::{SpeechEvent, SpeechSegmenter, VoiceActivity};
use crate::twilio::messages::{self, TwilioEvent, parse_twilio_event};
use crate::twilio::mulaw;
use crate::twilio::webhook::serve;

/// The sink's reply is sent in pieces of this much audio, as a TTS stream would arrive.
const REPLY_CHUNK: Duration = Duration::from_millis(100);
/// Speech shorter than this is noise, not a caller turn.
const MIN_SPEECH: Duration = Duration::from_millis(60);
pub use crate::contract::sink::{DEFAULT_REPLY_DELAY, END_OF_TURN};

/// How the sink behaves.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// From the end of the caller's speech to the start of the reply.
    pub reply_delay: Duration,
    pub reply_length: Duration,
    /// Greet the caller as soon as the stream starts.
    pub greeting: bool,
    /// When set, webhooks and stream handshakes must carry a valid `X-Twilio-Signature`.
    pub auth_token: Option<String>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            reply_delay: DEFAULT_REPLY_DELAY,
            reply_length: Duration::from_millis(800),
            greeting: false,
            auth_token: None,
        }
    }
}

/// Counters the sink exposes on `/metrics`, so tests can see what it saw.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub calls_total: AtomicU64,
    pub calls_active: AtomicU64,
    pub replies_total: AtomicU64,
    pub clears_total: AtomicU64,
    pub marks_received_total: AtomicU64,
    pub dtmf_total: AtomicU64,
    pub protocol_errors_total: AtomicU64,
    pub rejected_signatures_total: AtomicU64,
}

#[derive(Debug)]
struct SinkState {
    options: SinkOptions,
    /// The reply audio as base64 pieces, shared by every call.
    reply_chunks: Vec<String>,
    counters: Arc<SinkCounters>,
    shutdown: CancellationToken,
}

/// A running sink.
#[derive(Debug)]
pub struct Sink {
    pub address: SocketAddr,
    pub counters: Arc<SinkCounters>,
}

/// Serves the sink on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    options: SinkOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (router, _counters) = router(options, shutdown.clone());
    crate::http_serve::serve(listener, router, shutdown).await;
    Ok(())
}

/// Starts a sink on a free loopback port in this process (for tests and benchmarks).
pub async fn spawn(options: SinkOptions, shutdown: CancellationToken) -> std::io::Result<Sink> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (router, counters) = router(options, shutdown.clone());
    tokio::spawn(async move {
        crate::http_serve::serve(listener, router, shutdown).await;
    });
    Ok(Sink { address, counters })
}

fn router(options: SinkOptions, shutdown: CancellationToken) -> (Router, Arc<SinkCounters>) {
    let counters = Arc::new(SinkCounters::default());
    let reply = synth::speech_like(0x51_4E_4B, options.reply_length);
    let reply_mulaw = mulaw::encode_all(&reply);
    let chunk_bytes = (REPLY_CHUNK.as_millis() as usize) * 8;
    let reply_chunks = reply_mulaw
        .chunks(chunk_bytes.max(1))
        .map(|chunk| BASE64.encode(chunk))
        .collect();
    let state = Arc::new(SinkState {
        options,
        reply_chunks,
        counters: Arc::clone(&counters),
        shutdown,
    });
    let router = Router::new()
        .route("/voice", post(voice))
        .route("/stream", get(stream))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state);
    (router, counters)
}

async fn voice(
    State(state): State<Arc<SinkState>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    state.signing().answer_voice(&headers, &params)
}

impl SinkState {
    fn signing(&self) -> serve::Signing<'_> {
        serve::Signing {
            token: self.options.auth_token.as_deref(),
            rejected: &self.counters.rejected_signatures_total,
        }
    }
}

async fn stream(
    State(state): State<Arc<SinkState>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = state.signing().refuse_stream(&headers) {
        return refused;
    }
    upgrade
        .read_buffer_size(2 << 10)
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| async move {
            state.counters.calls_total.fetch_add(1, Ordering::Relaxed);
            state.counters.calls_active.fetch_add(1, Ordering::Relaxed);
            Conversation::new(&state).run(socket).await;
            state.counters.calls_active.fetch_sub(1, Ordering::Relaxed);
        })
}

async fn metrics(State(state): State<Arc<SinkState>>) -> impl IntoResponse {
    let c = &state.counters;
    let rows = [
        ("voxsoak_sink_calls_total", "counter", &c.calls_total),
        ("voxsoak_sink_calls_active", "gauge", &c.calls_active),
        ("voxsoak_sink_replies_total", "counter", &c.replies_total),
        ("voxsoak_sink_clears_total", "counter", &c.clears_total),
        (
            "voxsoak_sink_marks_received_total",
            "counter",
            &c.marks_received_total,
        ),
        ("voxsoak_sink_dtmf_total", "counter", &c.dtmf_total),
        (
            "voxsoak_sink_protocol_errors_total",
            "counter",
            &c.protocol_errors_total,
        ),
        (
            "voxsoak_sink_rejected_signatures_total",
            "counter",
            &c.rejected_signatures_total,
        ),
    ];
    let mut body = String::new();
    for (name, kind, value) in rows {
        body.push_str(&format!(
            "# TYPE {name} {kind}\n{name} {}\n",
            value.load(Ordering::Relaxed)
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// One call as the sink sees it.
#[derive(Debug)]
struct Conversation<'a> {
    state: &'a SinkState,
    segmenter: SpeechSegmenter,
    stream_sid: Option<String>,
    /// When the next reply is due.
    reply_at: Option<Instant>,
    /// The mark sent after the reply that is still playing at the caller.
    playing_mark: Option<String>,
    replies: u64,
    payload: Vec<u8>,
}

impl<'a> Conversation<'a> {
    fn new(state: &'a SinkState) -> Self {
        Conversation {
            state,
            segmenter: SpeechSegmenter::new(VoiceActivity::default(), MIN_SPEECH, END_OF_TURN),
            stream_sid: None,
            reply_at: None,
            playing_mark: None,
            replies: 0,
            payload: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        loop {
            let reply_at = self.reply_at;
            tokio::select! {
                _ = self.state.shutdown.cancelled() => break,
                _ = async { sleep_until(reply_at.expect("guarded")).await }, if reply_at.is_some() => {
                    self.reply_at = None;
                    if self.send_reply(&mut socket).await.is_err() {
                        break;
                    }
                }
                message = socket.recv() => {
                    let Some(Ok(message)) = message else { break };
                    match message {
                        Message::Text(text) => {
                            match self.on_event(text.as_str(), &mut socket).await {
                                Ok(true) => {}
                                Ok(false) | Err(_) => break,
                            }
                        }
                        Message::Close(_) => break,
                        Message::Binary(_) => {
                            self.state.counters.protocol_errors_total.fetch_add(1, Ordering::Relaxed);
                        }
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
            }
        }
    }

    /// Handles one message from the caller; `Ok(false)` when the call is over.
    async fn on_event(&mut self, text: &str, socket: &mut WebSocket) -> Result<bool, axum::Error> {
        if let Some(payload) = messages::inbound_media_payload(text) {
            self.on_media(&payload, socket).await?;
            return Ok(true);
        }
        let counters = &self.state.counters;
        let event = match parse_twilio_event(text) {
            Ok(event) => event,
            Err(_) => {
                counters
                    .protocol_errors_total
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
        };
        let now = Instant::now();
        match event {
            TwilioEvent::Connected { .. } => {}
            TwilioEvent::Start { start, .. } => {
                self.stream_sid = Some(start.stream_sid);
                if self.state.options.greeting {
                    self.reply_at = Some(now);
                }
            }
            TwilioEvent::Media { media, .. } => self.on_media(&media.payload, socket).await?,
            TwilioEvent::Dtmf { .. } => {
                counters.dtmf_total.fetch_add(1, Ordering::Relaxed);
                self.reply_at = Some(now + self.state.options.reply_delay);
            }
            TwilioEvent::Mark { mark, .. } => {
                counters
                    .marks_received_total
                    .fetch_add(1, Ordering::Relaxed);
                if self.playing_mark.as_deref() == Some(mark.name.as_str()) {
                    self.playing_mark = None;
                }
            }
            TwilioEvent::Stop { .. } => return Ok(false),
        }
        Ok(true)
    }

    /// One 20 ms frame of caller audio: find where the caller's turns start and end.
    async fn on_media(&mut self, payload: &str, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let now = Instant::now();
        self.payload.clear();
        if BASE64
            .decode_vec(payload.as_bytes(), &mut self.payload)
            .is_err()
        {
            self.state
                .counters
                .protocol_errors_total
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match self.segmenter.push_frame(&self.payload) {
            Some(SpeechEvent::Started) => {
                // The caller talks: a reply not yet sent waits for the turn to end, and a
                // reply still playing is cut off (barge-in).
                self.reply_at = None;
                if self.playing_mark.take().is_some() {
                    self.send_clear(socket).await?;
                }
            }
            Some(SpeechEvent::Ended {
                trailing_silence_frames,
            }) => {
                let speech_end = now - Duration::from_millis(20) * trailing_silence_frames;
                self.reply_at = Some((speech_end + self.state.options.reply_delay).max(now));
            }
            None => {}
        }
        Ok(())
    }

    async fn send_reply(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let Some(stream_sid) = self.stream_sid.as_deref() else {
            return Ok(());
        };
        for chunk in &self.state.reply_chunks {
            socket
                .send(Message::text(messages::fleet_media_json(stream_sid, chunk)))
                .await?;
        }
        self.replies += 1;
        let name = format!("reply-{}", self.replies);
        socket
            .send(Message::text(messages::fleet_mark_json(stream_sid, &name)))
            .await?;
        self.playing_mark = Some(name);
        self.state
            .counters
            .replies_total
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn send_clear(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let Some(stream_sid) = self.stream_sid.as_deref() else {
            return Ok(());
        };
        self.state
            .counters
            .clears_total
            .fetch_add(1, Ordering::Relaxed);
        socket
            .send(Message::text(messages::fleet_clear_json(stream_sid)))
            .await
    }
}

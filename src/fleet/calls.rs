//! The Twilio side of the fleet: `POST /voice` answers TwiML `<Connect><Stream>`, and
//! `GET /stream` is the Media Streams WebSocket.
//!
//! A call listens to the caller with a voice-activity detector. When the caller's turn ends
//! (500 ms of silence after speech, or 500 ms after the last DTMF digit, or `#`) it queues a
//! job for the workers; when the reply comes back it streams the audio with a mark after
//! it. When the mark comes back the audio has played: its temp file is deleted and (with
//! the long-transactions bug) its transaction committed. If the caller talks over the
//! agent (barge-in) the call sends `clear`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::agent::{self, Job, TurnInput, TurnOutcome};
use super::db::TurnTransaction;
use super::{Bug, Fleet};
use crate::audio::vad::{SpeechEvent, SpeechSegmenter, VoiceActivity};
use crate::audio::{FRAME, FRAME_SAMPLES};
use crate::standin::openai::ChatMessage;
use crate::twilio::messages::{self, TwilioEvent, parse_twilio_event};
use crate::twilio::webhook::serve;

/// Silence after speech that ends a caller turn (as the sink's endpointer).
const END_OF_TURN: Duration = crate::contract::sink::END_OF_TURN;
/// Speech shorter than this is noise.
const MIN_SPEECH: Duration = Duration::from_millis(60);
/// Agent audio goes out in pieces of this many mu-law bytes (100 ms).
const CHUNK_BYTES: usize = 800;
/// Largest message accepted from the caller's side.
const MAX_MESSAGE: usize = 1 << 20;

/// `POST /voice`: the voice webhook.
pub async fn voice(
    State(fleet): State<Arc<Fleet>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    fleet.signing().answer_voice(&headers, &params)
}

impl Fleet {
    /// With an auth token, requests must carry a valid `X-Twilio-Signature`.
    fn signing(&self) -> serve::Signing<'_> {
        serve::Signing {
            token: self.options.twilio_auth_token.as_deref(),
            rejected: &self.metrics.signature_rejections_total,
        }
    }
}

/// `GET /stream`: the Media Streams WebSocket.
pub async fn stream(
    State(fleet): State<Arc<Fleet>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = fleet.signing().refuse_stream(&headers) {
        return refused;
    }
    upgrade
        .read_buffer_size(2 << 10)
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            fleet.metrics.calls_total.fetch_add(1, Ordering::Relaxed);
            fleet.metrics.calls_active.fetch_add(1, Ordering::Relaxed);
            let mut call = Call::new(Arc::clone(&fleet));
            call.run(socket).await;
            call.end();
            fleet.metrics.calls_active.fetch_sub(1, Ordering::Relaxed);
        })
}

/// A reply sent to the caller whose mark has not come back yet.
#[derive(Debug)]
struct Playing {
    mark: String,
    temp_file: Option<PathBuf>,
    transaction: Option<TurnTransaction>,
}

/// Digits pressed and not yet handed to the agent.
#[derive(Debug)]
struct PendingDigits {
    digits: String,
    due: Instant,
}

#[derive(Debug)]
struct Call {
    fleet: Arc<Fleet>,
    segmenter: SpeechSegmenter,
    stream_sid: Option<String>,
    call_sid: String,
    turn: u32,
    speech_started: Option<Instant>,
    digits: Option<PendingDigits>,
    history: Vec<ChatMessage>,
    replies: mpsc::UnboundedReceiver<TurnOutcome>,
    reply_sender: mpsc::UnboundedSender<TurnOutcome>,
    /// Cancelled when the call ends, so queued and running turns stop.
    ended: CancellationToken,
    playing: VecDeque<Playing>,
    payload: Vec<u8>,
}

impl Call {
    fn new(fleet: Arc<Fleet>) -> Self {
        let (reply_sender, replies) = mpsc::unbounded_channel();
        Call {
            fleet,
            segmenter: SpeechSegmenter::new(VoiceActivity::default(), MIN_SPEECH, END_OF_TURN),
            stream_sid: None,
            call_sid: String::new(),
            turn: 0,
            speech_started: None,
            digits: None,
            history: Vec::new(),
            replies,
            reply_sender,
            ended: CancellationToken::new(),
            playing: VecDeque::new(),
            payload: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    async fn run(&mut self, mut socket: WebSocket) {
        loop {
            let digits_due = self.digits.as_ref().map(|pending| pending.due);
            tokio::select! {
                _ = self.fleet.shutdown.cancelled() => break,
                _ = async { sleep_until(digits_due.expect("guarded")).await }, if digits_due.is_some() => {
                    self.submit_digits().await;
                }
                Some(outcome) = self.replies.recv() => {
                    if self.on_outcome(outcome, &mut socket).await.is_err() {
                        break;
                    }
                }
                message = socket.recv() => {
                    let Some(Ok(message)) = message else { break };
                    match message {
                        Message::Text(text) => match self.on_event(text.as_str(), &mut socket).await {
                            Ok(true) => {}
                            Ok(false) | Err(_) => break,
                        },
                        Message::Close(_) => break,
                        Message::Binary(_) => {
                            self.fleet.metrics.protocol_errors_total.fetch_add(1, Ordering::Relaxed);
                        }
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
            }
        }
    }

    /// One message from Twilio; `Ok(false)` once the call is over.
    async fn on_event(&mut self, text: &str, socket: &mut WebSocket) -> Result<bool, axum::Error> {
        if let Some(payload) = messages::inbound_media_payload(text) {
            self.on_media(&payload, socket).await?;
            return Ok(true);
        }
        let Ok(event) = parse_twilio_event(text) else {
            self.fleet
                .metrics
                .protocol_errors_total
                .fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        };
        match event {
            TwilioEvent::Connected { .. } => {}
            TwilioEvent::Start { start, .. } => {
                self.stream_sid = Some(start.stream_sid);
                self.call_sid = start.call_sid;
                if self.fleet.options.greeting {
                    self.submit(TurnInput::Greeting, Instant::now()).await;
                }
            }
            TwilioEvent::Media { media, .. } => self.on_media(&media.payload, socket).await?,
            TwilioEvent::Dtmf { dtmf, .. } => {
                let pending = self.digits.get_or_insert_with(|| PendingDigits {
                    digits: String::new(),
                    due: Instant::now(),
                });
                if pending.digits.len() < 64 {
                    pending.digits.push_str(&dtmf.digit);
                }
                pending.due = if dtmf.digit == "#" {
                    Instant::now()
                } else {
                    Instant::now() + END_OF_TURN
                };
            }
            TwilioEvent::Mark { mark, .. } => {
                if let Some(index) = self.playing.iter().position(|p| p.mark == mark.name) {
                    // Marks come back in order; everything up to this one has played.
                    for played in self.playing.drain(..=index).collect::<Vec<_>>() {
                        self.finish(played).await;
                    }
                }
            }
            TwilioEvent::Stop { .. } => return Ok(false),
        }
        Ok(true)
    }

    async fn on_media(&mut self, payload: &str, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let now = Instant::now();
        self.payload.clear();
        if BASE64
            .decode_vec(payload.as_bytes(), &mut self.payload)
            .is_err()
        {
            self.fleet
                .metrics
                .protocol_errors_total
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match self.segmenter.push_frame(&self.payload) {
            Some(SpeechEvent::Started) => {
                self.speech_started = Some(now.checked_sub(MIN_SPEECH).unwrap_or(now));
                if !self.playing.is_empty() {
                    self.barge_in(socket).await?;
                }
            }
            Some(SpeechEvent::Ended {
                trailing_silence_frames,
            }) => {
                let ended = now
                    .checked_sub(FRAME * trailing_silence_frames)
                    .unwrap_or(now);
                let seconds = self.speech_started.take().map_or(0.0, |started| {
                    ended.saturating_duration_since(started).as_secs_f64()
                });
                self.submit(TurnInput::Speech { seconds }, ended).await;
            }
            None => {}
        }
        Ok(())
    }

    async fn submit_digits(&mut self) {
        if let Some(pending) = self.digits.take() {
            let pressed = pending.due.checked_sub(END_OF_TURN).unwrap_or(pending.due);
            self.submit(
                TurnInput::Digits(pending.digits),
                pressed.min(Instant::now()),
            )
            .await;
        }
    }

    /// Queues a turn for the workers.
    async fn submit(&mut self, input: TurnInput, speech_ended: Instant) {
        self.turn += 1;
        let job = Job {
            call_sid: self.call_sid.clone(),
            turn: self.turn,
            input,
            history: self.history.clone(),
            speech_ended,
            reply: self.reply_sender.clone(),
            cancelled: self.ended.clone(),
            attempts: 0,
        };
        let _ = self.fleet.queue_sender.send(job).await;
    }

    async fn on_outcome(
        &mut self,
        outcome: TurnOutcome,
        socket: &mut WebSocket,
    ) -> Result<(), axum::Error> {
        let reply = match outcome {
            TurnOutcome::Reply(reply) => reply,
            TurnOutcome::Failed { reason, .. } => {
                self.fleet.metrics.turn_failures_total.add(reason, 1);
                return Ok(());
            }
        };
        let agent::TurnReply {
            turn,
            user_text,
            text,
            mulaw,
            speech_ended,
            temp_file,
            transaction,
        } = *reply;
        let mark = format!("turn-{turn}");
        let playing = Playing {
            mark: mark.clone(),
            temp_file,
            transaction,
        };
        let Some(stream_sid) = self.stream_sid.clone() else {
            self.finish(playing).await;
            return Ok(());
        };
        self.fleet
            .metrics
            .response_latency
            .observe(speech_ended.elapsed());
        agent::extend_history(&mut self.history, &user_text, &text);
        // Queued before sending, so a send error still cleans up in `end`.
        self.playing.push_back(playing);
        for chunk in mulaw.chunks(CHUNK_BYTES) {
            let message = messages::fleet_media_json(&stream_sid, &BASE64.encode(chunk));
            socket.send(Message::text(message)).await?;
        }
        socket
            .send(Message::text(messages::fleet_mark_json(&stream_sid, &mark)))
            .await
    }

    async fn barge_in(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let Some(stream_sid) = self.stream_sid.as_deref() else {
            return Ok(());
        };
        socket
            .send(Message::text(messages::fleet_clear_json(stream_sid)))
            .await?;
        // Twilio echoes the pending marks after a clear; the replies are over either way.
        for played in self.playing.drain(..).collect::<Vec<_>>() {
            self.finish(played).await;
        }
        Ok(())
    }

    /// A reply is over: delete its audio file (unless the temp-leak bug) and commit its
    /// transaction (long-transactions bug).
    async fn finish(&self, played: Playing) {
        if let Some(path) = played.temp_file
            && !self.fleet.options.has(Bug::TempLeak)
            && tokio::fs::remove_file(&path).await.is_ok()
        {
            self.fleet
                .metrics
                .temp_files_deleted_total
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(transaction) = played.transaction
            && let Err(error) = transaction.commit().await
        {
            self.fleet.note_db_error("commit", &error);
        }
    }

    /// The call is over: stop its turns and release what its replies held.
    fn end(&mut self) {
        self.ended.cancel();
        let leftovers: Vec<Playing> = self.playing.drain(..).collect();
        let leak = self.fleet.options.has(Bug::TempLeak);
        for played in leftovers {
            if let Some(path) = played.temp_file
                && !leak
            {
                let _ = std::fs::remove_file(path);
            }
            // `played.transaction`, uncommitted, rolls back here as it is dropped, which
            // frees its connection.
        }
        // Replies that arrive after the end would hold files or transactions: drain them.
        self.replies.close();
        while let Ok(outcome) = self.replies.try_recv() {
            if let TurnOutcome::Reply(reply) = outcome
                && let Some(path) = reply.temp_file
                && !leak
            {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

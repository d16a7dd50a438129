//! The call loop: one task per call, one 20 ms tick driving its media, script and playback.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::connect::{CallEndpoint, ConnectError, Connector, MediaSocket, OpenStream};
use super::playback::{Playback, ReplyState};
use super::{
    CallEvent, CallEvents, CallOutcome, CallPlan, CallStep, StreamClose, pacing_histogram,
};
use crate::audio::FRAME;
use crate::audio::utterance::{Utterance, silence_frame_b64};
use crate::audio::vad::VoiceActivity;
use crate::scenario::CallSettings;
use crate::twilio::messages::{FleetMessage, MediaFrameEncoder, TwilioEvent, parse_fleet_message};
use crate::twilio::sid;
use crate::twilio::webhook::VoiceWebhook;

/// A frame that cannot be written for this long means the fleet stopped reading.
const SEND_STALL: Duration = Duration::from_secs(5);
/// How long to wait for the fleet's close handshake to finish after it closed first.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a fleet has, after the caller's `stop` and close frame, to answer the close
/// (a close frame, or at least closing the connection). One that does neither is counted
/// (`close_unanswered`) and left: a fleet that never closes its side leaks a connection
/// per call.
pub const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(5);
/// A write that failed may have raced a close frame the fleet sent just before it went:
/// this long is given to read it, so the close is reported as the fleet made it.
const CLOSE_PEEK: Duration = Duration::from_millis(100);
/// Pacing jitter is flushed to the aggregator this often (in frames: 5 s).
const PACING_FLUSH_FRAMES: u64 = 250;
/// DTMF digits are pressed this far apart.
const DTMF_GAP: Duration = Duration::from_millis(250);
/// The largest message accepted from a fleet. A 10 s reply is about 110 KB of JSON; this
/// leaves room for long replies and still refuses a runaway fleet before it costs memory.
pub const MAX_FLEET_MESSAGE: usize = 4 << 20;

/// What every call of a run shares.
pub struct CallContext {
    pub endpoint: CallEndpoint,
    /// The Twilio auth token to sign the webhook and the stream handshake with, if any.
    pub auth_token: Option<String>,
    pub settings: CallSettings,
    /// One account for the whole run, as one Twilio account places all calls.
    pub account_sid: String,
    /// The run's seed: call and stream SIDs come from (seed, call index), so runs with
    /// different seeds do not reuse SIDs against the same fleet.
    pub seed: u64,
    pub http: reqwest::Client,
    pub vad: VoiceActivity,
    pub host_allowed: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("endpoint", &self.endpoint)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl CallContext {
    /// WebSocket settings for media streams: small buffers (thousands of calls share the
    /// memory) and a cap on what a fleet may send in one message. tungstenite zeroes the
    /// read buffer on every read attempt, and a call polls its socket every 20 ms: at 8 KiB
    /// that memset was 6% of the harness's CPU at 800 calls (perf), at 2 KiB it is noise.
    pub fn ws_config() -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(2 << 10)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_FLEET_MESSAGE))
            .max_frame_size(Some(MAX_FLEET_MESSAGE))
    }
}

/// Places one call and reports what happened to `events`. Returns how it ended.
pub async fn run_call(
    context: Arc<CallContext>,
    plan: CallPlan,
    events: CallEvents,
    cancel: CancellationToken,
) -> CallOutcome {
    let started = Instant::now();
    let _ = events.send(CallEvent::Started);
    let ids = CallIds::new(context.seed, plan.index);
    let opened = tokio::select! {
        _ = cancel.cancelled() => None,
        opened = timeout(context.settings.connect_timeout, open_stream(&context, &ids)) => Some(opened),
    };
    let (outcome, detail, close) = match opened {
        None => (CallOutcome::Cancelled, None, None),
        Some(Err(_)) => (
            CallOutcome::ConnectFailed,
            Some(format!(
                "connect timed out after {:?}",
                context.settings.connect_timeout
            )),
            None,
        ),
        Some(Ok(Err(error))) => {
            if crate::failure::RequestFailure::of_error(&error).refused {
                let _ = events.send(CallEvent::ConnectRefused);
            }
            (CallOutcome::ConnectFailed, Some(error.to_string()), None)
        }
        Some(Ok(Ok(open))) => {
            let _ = events.send(CallEvent::Connected {
                connect: started.elapsed(),
            });
            let (outcome, detail, close) =
                talk(&context, plan, &events, open, &ids, started, &cancel).await;
            (outcome, detail, Some(close))
        }
    };
    let _ = events.send(CallEvent::Ended {
        outcome,
        duration: started.elapsed(),
        detail,
        close,
    });
    outcome
}

/// A call's Twilio SIDs, drawn from (the run's seed, the call's index), so runs with
/// different seeds do not reuse SIDs against the same fleet.
struct CallIds {
    call_sid: String,
    stream_sid: String,
}

impl CallIds {
    fn new(seed: u64, index: u64) -> CallIds {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            seed.rotate_left(32) ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_CA11,
        );
        let call_sid = sid::new_sid(sid::CALL, &mut rng);
        let stream_sid = sid::new_sid(sid::STREAM, &mut rng);
        CallIds {
            call_sid,
            stream_sid,
        }
    }
}

/// Opens the call's media stream: through the voice webhook when the target takes one,
/// straight to the stream URL otherwise.
async fn open_stream(context: &CallContext, ids: &CallIds) -> Result<OpenStream, ConnectError> {
    let webhook = VoiceWebhook::inbound(
        &ids.call_sid,
        &context.account_sid,
        &context.settings.from,
        &context.settings.to,
    );
    let connector = Connector {
        endpoint: &context.endpoint,
        auth_token: context.auth_token.as_deref(),
        http: &context.http,
        ws_config: CallContext::ws_config(),
        host_allowed: &*context.host_allowed,
    };
    connector.open(&webhook).await
}

/// The connected call: sends Twilio's `start` and drives the script over the stream until
/// the call ends.
async fn talk(
    context: &CallContext,
    plan: CallPlan,
    events: &CallEvents,
    open: OpenStream,
    ids: &CallIds,
    started: Instant,
    cancel: &CancellationToken,
) -> (CallOutcome, Option<String>, StreamClose) {
    let session = Session {
        socket: open.socket,
        events,
        encoder: MediaFrameEncoder::new(&ids.stream_sid),
        stream_sid: &ids.stream_sid,
        sequence: 0,
        playback: Playback::new(Instant::now(), context.vad, context.settings.reply_silence),
        pacing: pacing_histogram(),
        decode_buffer: Vec::with_capacity(1024),
        protocol_errors: 0,
        first_protocol_error: None,
        frame_phase: frame_phase(plan.index),
        wait: ReplyWait {
            events,
            call: plan.index,
            since: None,
        },
    };
    let start = TwilioEvent::start(
        1,
        &ids.stream_sid,
        &context.account_sid,
        &ids.call_sid,
        open.custom_parameters,
    );
    session
        .drive(
            &context.settings,
            plan.steps,
            start,
            &ids.call_sid,
            &context.account_sid,
            started,
            cancel,
        )
        .await
}

/// What the caller is doing right now.
#[derive(Debug)]
enum Activity {
    /// Waiting for the agent's greeting before the script starts.
    Greeting {
        deadline: Instant,
    },
    Speaking {
        utterance: Utterance,
        next_frame: usize,
        listen: bool,
        /// Send time of the last voiced frame, once sent.
        speech_end: Option<Instant>,
    },
    Dialing {
        digits: Vec<char>,
        next: usize,
        next_at: Instant,
        listen: bool,
    },
    Pausing {
        until: Instant,
    },
    Listening {
        deadline: Instant,
    },
    /// Take the next step of the script.
    NextStep,
}

/// The script's next step as what the caller does from `now`; the end of the script (or a
/// hang-up step) ends the call.
fn next_activity(
    steps: &mut std::vec::IntoIter<CallStep>,
    now: Instant,
) -> Result<Activity, Ending> {
    Ok(match steps.next() {
        None | Some(CallStep::Hangup) => return Err(Ending::HangUp),
        Some(CallStep::Say { utterance, listen }) => Activity::Speaking {
            utterance,
            next_frame: 0,
            listen,
            speech_end: None,
        },
        Some(CallStep::Dtmf { digits, listen }) => Activity::Dialing {
            digits: digits.chars().collect(),
            next: 0,
            next_at: now,
            listen,
        },
        Some(CallStep::Pause(pause)) => Activity::Pausing { until: now + pause },
    })
}

/// How many of the script's turns (steps that listen) have got their answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Turns {
    total: u32,
    answered: u32,
}

impl Turns {
    fn of(steps: &[CallStep]) -> Self {
        let total = steps
            .iter()
            .filter(|step| {
                matches!(
                    step,
                    CallStep::Say { listen: true, .. } | CallStep::Dtmf { listen: true, .. }
                )
            })
            .count();
        Turns {
            total: u32::try_from(total).unwrap_or(u32::MAX),
            answered: 0,
        }
    }
}

/// Where a call is in its script.
#[derive(Debug)]
struct Script {
    steps: std::vec::IntoIter<CallStep>,
    activity: Activity,
    turns: Turns,
    /// Media chunks sent so far; Twilio's `chunk` starts at 1.
    chunk: u64,
    stream_start: Instant,
    max_end: Instant,
    first_audio_reported: bool,
}

/// Why the loop stopped.
#[derive(Debug)]
enum Ending {
    /// The script ended: the caller hangs up.
    HangUp,
    /// The fleet closed the stream, or the connection went.
    FleetClosed(StreamClose),
    /// The caller gives up (or the run ends) with this outcome.
    Outcome(CallOutcome, Option<String>),
}

/// Tells the aggregator while the call waits for the agent to start answering a turn, so
/// an interval record can show the calls a fleet leaves hanging before any of them times
/// out. Dropping it ends the wait, so a call that ends (or panics) mid-wait never leaves
/// one behind.
struct ReplyWait<'a> {
    events: &'a CallEvents,
    call: u64,
    since: Option<Instant>,
}

impl ReplyWait<'_> {
    fn begin(&mut self, since: Instant) {
        if self.since.is_none() {
            self.since = Some(since);
            let _ = self.events.send(CallEvent::WaitingForReply {
                call: self.call,
                since,
            });
        }
    }

    fn end(&mut self) {
        if self.since.take().is_some() {
            let _ = self.events.send(CallEvent::WaitOver { call: self.call });
        }
    }
}

impl Drop for ReplyWait<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

struct Session<'a> {
    socket: MediaSocket,
    events: &'a CallEvents,
    encoder: MediaFrameEncoder,
    stream_sid: &'a str,
    /// Twilio's sequence counter, shared by media, marks, DTMF and stop.
    sequence: u64,
    playback: Playback,
    pacing: Histogram<u64>,
    decode_buffer: Vec<u8>,
    protocol_errors: u64,
    first_protocol_error: Option<String>,
    /// Offset of this call's frames within the 20 ms period; see [`frame_phase`].
    frame_phase: Duration,
    wait: ReplyWait<'a>,
}

impl Session<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn drive(
        mut self,
        settings: &CallSettings,
        steps: Vec<CallStep>,
        start: TwilioEvent,
        call_sid: &str,
        account_sid: &str,
        call_started: Instant,
        cancel: &CancellationToken,
    ) -> (CallOutcome, Option<String>, StreamClose) {
        let (ending, turns) = self
            .converse(settings, steps, start, call_started, cancel)
            .await;
        self.flush_pacing();
        self.wait.end();
        let (outcome, detail, close) = match ending {
            Ending::HangUp => match self.hang_up(call_sid, account_sid).await {
                // The script ran to its end, but the fleet stopped reading before the
                // goodbye was out: that is how the call ended.
                Err(stalled) => (CallOutcome::SendStalled, Some(stalled), StreamClose::Caller),
                Ok(()) => (CallOutcome::Completed, None, StreamClose::Caller),
            },
            Ending::Outcome(outcome, detail) => {
                // A fleet that stopped reading would stall the goodbye as well. Otherwise
                // the first failure is the call's: a goodbye that stalls after it is not
                // counted again.
                if outcome != CallOutcome::SendStalled {
                    let _ = self.hang_up(call_sid, account_sid).await;
                }
                (outcome, detail, StreamClose::Caller)
            }
            Ending::FleetClosed(close) => {
                if let StreamClose::Fleet { .. } = close {
                    // Answer the fleet's close frame, as Twilio does.
                    let _ = timeout(CLOSE_WAIT, self.socket.close(None)).await;
                }
                if close.is_fleet_hang_up()
                    && settings
                        .fleet_may_hang_up
                        .ends_well(turns.answered, turns.total)
                {
                    (CallOutcome::Completed, None, close)
                } else {
                    let detail = close.describe(turns.answered, turns.total);
                    (CallOutcome::FleetHungUp, Some(detail), close)
                }
            }
        };
        if outcome == CallOutcome::Completed && self.protocol_errors > 0 {
            return (
                CallOutcome::ProtocolError,
                self.first_protocol_error.take(),
                close,
            );
        }
        (outcome, detail, close)
    }

    /// Runs the script until the call ends; says why, and how many turns got an answer.
    async fn converse(
        &mut self,
        settings: &CallSettings,
        steps: Vec<CallStep>,
        start: TwilioEvent,
        call_started: Instant,
        cancel: &CancellationToken,
    ) -> (Ending, Turns) {
        let turns = Turns::of(&steps);
        if let Err(ending) = self.send_text(TwilioEvent::connected().to_json()).await {
            return (self.settle(ending).await, turns);
        }
        self.sequence = 1;
        if let Err(ending) = self.send_text(start.to_json()).await {
            return (self.settle(ending).await, turns);
        }
        let stream_start = Instant::now();
        let mut script = Script {
            turns,
            steps: steps.into_iter(),
            activity: if settings.wait_for_greeting {
                self.playback.expect_reply(stream_start);
                Activity::Greeting {
                    deadline: stream_start + settings.turn_timeout,
                }
            } else {
                Activity::NextStep
            },
            chunk: 0,
            stream_start,
            max_end: call_started + settings.max_call_duration,
            first_audio_reported: false,
        };
        let mut ticker = tokio::time::interval_at(stream_start + self.frame_phase, FRAME);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        loop {
            let step = tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(Ending::Outcome(CallOutcome::Cancelled, None)),
                scheduled = ticker.tick() => self.tick(scheduled, &mut script, settings).await,
                message = self.socket.next() => self.receive(message).await,
            };
            if let Err(ending) = step {
                let ending = self.settle(ending).await;
                if let Ending::FleetClosed(_) = ending {
                    self.answer_heard_before_close(&mut script);
                }
                return (ending, script.turns);
            }
        }
    }

    /// A write that failed because the connection went may have raced the fleet's close
    /// frame: read it if it is there, so the close is reported as the fleet made it.
    async fn settle(&mut self, ending: Ending) -> Ending {
        if !matches!(ending, Ending::FleetClosed(StreamClose::Dropped { .. })) {
            return ending;
        }
        match timeout(CLOSE_PEEK, self.socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => Ending::FleetClosed(fleet_close(frame)),
            _ => ending,
        }
    }

    /// The fleet hung up while the caller listened (or sent the silence after its last
    /// words): if the agent's answer had begun (its audio may still be queued to play), the
    /// turn got its answer and is measured.
    fn answer_heard_before_close(&mut self, script: &mut Script) {
        let listening = match script.activity {
            Activity::Listening { .. } => true,
            Activity::Speaking {
                listen, speech_end, ..
            } => listen && speech_end.is_some(),
            _ => false,
        };
        if listening && let Some(measure) = self.playback.reply_measure() {
            let _ = self.events.send(CallEvent::Reply {
                latency: measure.latency,
                dead_air: measure.dead_air,
            });
            script.turns.answered += 1;
            script.activity = Activity::NextStep;
        }
    }

    /// One 20 ms tick: echo due marks, move the script, send one media frame.
    async fn tick(
        &mut self,
        scheduled: Instant,
        script: &mut Script,
        settings: &CallSettings,
    ) -> Result<(), Ending> {
        let now = Instant::now();
        if now >= script.max_end {
            return Err(Ending::Outcome(
                CallOutcome::MaxDuration,
                Some(format!(
                    "call exceeded max_call_duration {:?}",
                    settings.max_call_duration
                )),
            ));
        }
        let due: Vec<_> = self.playback.due_marks(now).collect();
        for mark in due {
            self.echo_mark(&mark.name, mark.waited).await?;
        }
        if !script.first_audio_reported
            && let Some(heard) = self.playback.first_voiced_in_call(now)
        {
            script.first_audio_reported = true;
            let _ = self.events.send(CallEvent::FirstAudio {
                after: heard.saturating_duration_since(script.stream_start),
            });
        }
        let frame = self.advance(script, settings, now)?;
        script.chunk += 1;
        self.sequence += 1;
        let payload = match &frame {
            Frame::Speech(utterance, index) => utterance.frame_b64(*index),
            Frame::Silence => silence_frame_b64(),
        };
        let json = self.encoder.encode(
            self.sequence,
            script.chunk,
            (script.chunk - 1) * 20,
            payload,
        );
        self.send_text(json).await?;
        let sent = Instant::now();
        self.record_pacing(sent.saturating_duration_since(scheduled), script.chunk);
        if let Activity::Speaking { speech_end, .. } = &mut script.activity
            && let Frame::Speech(utterance, index) = &frame
            && utterance
                .voiced_frames()
                .is_some_and(|(_, end)| index + 1 == end)
        {
            // The caller's last voiced frame is out: the reply is measured from here.
            *speech_end = Some(sent);
            self.playback.expect_reply(sent);
        }
        if matches!(script.activity, Activity::Dialing { .. }) {
            self.press_due_digit(&mut script.activity, settings, now)
                .await?;
        }
        Ok(())
    }

    /// Moves the script along at `now` and picks this tick's frame.
    fn advance(
        &mut self,
        script: &mut Script,
        settings: &CallSettings,
        now: Instant,
    ) -> Result<Frame, Ending> {
        let Script {
            activity,
            steps,
            turns,
            ..
        } = script;
        loop {
            match activity {
                Activity::Greeting { deadline } => match self.playback.reply_state(now) {
                    ReplyState::Done => *activity = Activity::NextStep,
                    ReplyState::NotStarted if now >= *deadline => *activity = Activity::NextStep,
                    ReplyState::NotStarted | ReplyState::Speaking => return Ok(Frame::Silence),
                },
                Activity::Speaking {
                    utterance,
                    next_frame,
                    listen,
                    speech_end,
                } => {
                    if *next_frame < utterance.frame_count() {
                        let index = *next_frame;
                        *next_frame += 1;
                        return Ok(Frame::Speech(utterance.clone(), index));
                    }
                    *activity = if *listen {
                        self.start_listening(*speech_end, settings, now)
                    } else {
                        Activity::NextStep
                    };
                }
                Activity::Dialing { .. } => return Ok(Frame::Silence),
                Activity::Pausing { until } => {
                    if now < *until {
                        return Ok(Frame::Silence);
                    }
                    *activity = Activity::NextStep;
                }
                Activity::Listening { deadline } => {
                    if let Some(frame) = self.listen(*deadline, turns, settings, now)? {
                        return Ok(frame);
                    }
                    *activity = Activity::NextStep;
                }
                Activity::NextStep => *activity = next_activity(steps, now)?,
            }
        }
    }

    /// The caller's words are out: wait for the reply from the last voiced frame (or now,
    /// when none was voiced), up to `turn_timeout`.
    fn start_listening(
        &mut self,
        speech_end: Option<Instant>,
        settings: &CallSettings,
        now: Instant,
    ) -> Activity {
        let end = speech_end.unwrap_or(now);
        if speech_end.is_none() {
            self.playback.expect_reply(end);
        }
        self.wait.begin(end);
        Activity::Listening {
            deadline: end + settings.turn_timeout,
        }
    }

    /// One tick of listening for the agent's reply: None once the reply has played (the
    /// turn is answered and measured), silence while it has not, or the call ends when no
    /// reply began by `deadline`.
    fn listen(
        &mut self,
        deadline: Instant,
        turns: &mut Turns,
        settings: &CallSettings,
        now: Instant,
    ) -> Result<Option<Frame>, Ending> {
        match self.playback.reply_state(now) {
            ReplyState::Done => {
                self.wait.end();
                if let Some(measure) = self.playback.reply_measure() {
                    let _ = self.events.send(CallEvent::Reply {
                        latency: measure.latency,
                        dead_air: measure.dead_air,
                    });
                }
                turns.answered += 1;
                Ok(None)
            }
            ReplyState::NotStarted if now >= deadline => Err(Ending::Outcome(
                CallOutcome::TurnTimeout,
                Some(format!(
                    "no agent audio within turn_timeout {:?}",
                    settings.turn_timeout
                )),
            )),
            ReplyState::NotStarted => Ok(Some(Frame::Silence)),
            ReplyState::Speaking => {
                self.wait.end();
                Ok(Some(Frame::Silence))
            }
        }
    }

    /// Sends the next DTMF digit when it is due; after the last one, listens for the reply.
    async fn press_due_digit(
        &mut self,
        activity: &mut Activity,
        settings: &CallSettings,
        now: Instant,
    ) -> Result<(), Ending> {
        let Activity::Dialing {
            digits,
            next,
            next_at,
            listen,
        } = activity
        else {
            return Ok(());
        };
        if now < *next_at {
            return Ok(());
        }
        if let Some(&digit) = digits.get(*next) {
            self.sequence += 1;
            self.send_text(TwilioEvent::dtmf(self.sequence, self.stream_sid, digit).to_json())
                .await?;
            *next += 1;
            *next_at = now + DTMF_GAP;
            if *next < digits.len() {
                return Ok(());
            }
        }
        // The last digit is out: the reply is measured from it, as from the end of speech.
        let pressed = Instant::now();
        *activity = if *listen {
            self.playback.expect_reply(pressed);
            self.wait.begin(pressed);
            Activity::Listening {
                deadline: pressed + settings.turn_timeout,
            }
        } else {
            Activity::NextStep
        };
        Ok(())
    }

    async fn receive(
        &mut self,
        message: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), Ending> {
        let now = Instant::now();
        match message {
            Some(Ok(Message::Close(frame))) => Err(Ending::FleetClosed(fleet_close(frame))),
            None => Err(dropped("the stream ended without a WebSocket close")),
            // The connection dropped without a close frame: the fleet went away (killed,
            // crashed, a proxy reset), which is a hang-up, not a malformed stream.
            Some(Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            ))) => Err(dropped(
                "the connection dropped without a WebSocket close (the fleet went away)",
            )),
            Some(Err(tungstenite::Error::Capacity(error))) => {
                let _ = self.events.send(CallEvent::ProtocolError {
                    kind: "message_too_big",
                });
                Err(Ending::Outcome(
                    CallOutcome::ProtocolError,
                    Some(format!("the fleet sent an oversized message: {error}")),
                ))
            }
            Some(Err(tungstenite::Error::Protocol(error))) => {
                let _ = self.events.send(CallEvent::ProtocolError {
                    kind: "websocket_protocol",
                });
                Err(Ending::Outcome(
                    CallOutcome::ProtocolError,
                    Some(format!("WebSocket protocol violation: {error}")),
                ))
            }
            // A text frame that is not UTF-8 fails the connection (RFC 6455 8.1): the fleet
            // broke the protocol, it did not hang up.
            Some(Err(tungstenite::Error::Utf8(error))) => {
                let _ = self.events.send(CallEvent::ProtocolError {
                    kind: "invalid_utf8",
                });
                Err(Ending::Outcome(
                    CallOutcome::ProtocolError,
                    Some(format!(
                        "the fleet sent a text frame that is not valid UTF-8: {}",
                        truncate(&error, 80)
                    )),
                ))
            }
            Some(Err(error)) => Err(dropped(format!("the stream broke: {error}"))),
            Some(Ok(Message::Binary(_))) => {
                self.protocol_error(
                    "binary_frame",
                    "the fleet sent a binary frame; Twilio only takes JSON text",
                );
                Ok(())
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
            Some(Ok(Message::Text(text))) => self.handle_text(now, text.as_str()).await,
        }
    }

    async fn handle_text(&mut self, now: Instant, text: &str) -> Result<(), Ending> {
        let message = match parse_fleet_message(text) {
            Ok(message) => message,
            Err(error) => {
                let kind = error.kind();
                self.protocol_error(kind, &format!("the fleet sent an invalid message: {error}"));
                return Ok(());
            }
        };
        let stream_sid = match &message {
            FleetMessage::Media { stream_sid, .. }
            | FleetMessage::Mark { stream_sid, .. }
            | FleetMessage::Clear { stream_sid } => stream_sid,
        };
        if stream_sid.as_ref() != self.stream_sid {
            self.protocol_error(
                "wrong_stream_sid",
                &format!(
                    "the fleet sent streamSid {:?}, not this call's",
                    truncate(stream_sid, 40)
                ),
            );
            return Ok(());
        }
        match message {
            FleetMessage::Media { payload, .. } => {
                self.decode_buffer.clear();
                if BASE64
                    .decode_vec(payload.as_bytes(), &mut self.decode_buffer)
                    .is_err()
                {
                    self.protocol_error("invalid_payload", "media payload is not valid base64");
                    return Ok(());
                }
                self.playback.push_audio(now, &self.decode_buffer);
            }
            FleetMessage::Mark { name, .. } => {
                if let Some(due) = self.playback.push_mark(now, name.into_owned()) {
                    self.echo_mark(&due.name, due.waited).await?;
                }
            }
            FleetMessage::Clear { .. } => {
                for due in self.playback.clear(now) {
                    self.echo_mark(&due.name, due.waited).await?;
                }
            }
        }
        Ok(())
    }

    fn protocol_error(&mut self, kind: &'static str, detail: &str) {
        self.protocol_errors += 1;
        if self.first_protocol_error.is_none() {
            self.first_protocol_error = Some(detail.to_string());
        }
        let _ = self.events.send(CallEvent::ProtocolError { kind });
    }

    async fn echo_mark(&mut self, name: &str, waited: Duration) -> Result<(), Ending> {
        self.sequence += 1;
        let json = TwilioEvent::mark(self.sequence, self.stream_sid, name).to_json();
        self.send_text(json).await?;
        let _ = self.events.send(CallEvent::MarkEchoed { waited });
        Ok(())
    }

    async fn send_text(&mut self, text: String) -> Result<(), Ending> {
        match timeout(SEND_STALL, self.socket.send(Message::text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(dropped(format!("sending to the fleet failed: {error}"))),
            Err(_) => Err(Ending::Outcome(
                CallOutcome::SendStalled,
                Some(stalled("a frame", SEND_STALL)),
            )),
        }
    }

    fn record_pacing(&mut self, late: Duration, chunk: u64) {
        let micros = late.as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.pacing.record(micros);
        if chunk.is_multiple_of(PACING_FLUSH_FRAMES) {
            self.flush_pacing();
        }
    }

    fn flush_pacing(&mut self) {
        if self.pacing.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.pacing, pacing_histogram());
        let _ = self.events.send(CallEvent::Pacing(Box::new(batch)));
    }

    /// Says goodbye (see [`say_goodbye`]); a close the fleet leaves unanswered is a protocol
    /// error (`close_unanswered`). The error is what stalled, when the fleet stopped reading
    /// before the goodbye was out.
    async fn hang_up(&mut self, call_sid: &str, account_sid: &str) -> Result<(), String> {
        self.sequence += 1;
        let stop = TwilioEvent::stop(self.sequence, self.stream_sid, account_sid, call_sid);
        let waits = GoodbyeWaits {
            send_stall: SEND_STALL,
            close_reply: CLOSE_REPLY_WAIT,
        };
        match say_goodbye(&mut self.socket, stop.to_json(), waits).await {
            Goodbye::Said | Goodbye::Gone => Ok(()),
            Goodbye::Unanswered => {
                self.protocol_error(
                    "close_unanswered",
                    &format!(
                        "the fleet did not answer the caller's close within {CLOSE_REPLY_WAIT:?}: \
                         no close frame, and the connection left open"
                    ),
                );
                Ok(())
            }
            Goodbye::Stalled(what) => Err(stalled(what, SEND_STALL)),
        }
    }
}

/// How the caller's goodbye (`stop`, then the close handshake) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goodbye {
    /// Sent, and the fleet answered the close (or closed the connection).
    Said,
    /// Sent, and the fleet neither answered the close nor closed the connection.
    Unanswered,
    /// This part of it could not be written: the fleet stopped reading.
    Stalled(&'static str),
    /// The connection had gone: there was no one left to say goodbye to.
    Gone,
}

/// How long each part of the goodbye may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct GoodbyeWaits {
    /// For `stop`, and then the close frame, to be written.
    pub send_stall: Duration,
    /// For the fleet to answer the close, once it is sent.
    pub close_reply: Duration,
}

/// Sends `stop` and closes the WebSocket, waiting for the fleet to answer the close. A part
/// that cannot be written within `waits.send_stall` (the fleet stopped reading: the media
/// connection's send buffer is full) ends the goodbye there, so it takes at most two stalls
/// and a close reply's wait, never longer.
pub(super) async fn say_goodbye(
    socket: &mut MediaSocket,
    stop: String,
    waits: GoodbyeWaits,
) -> Goodbye {
    match timeout(waits.send_stall, socket.send(Message::text(stop))).await {
        Err(_) => Goodbye::Stalled("the caller's stop"),
        Ok(Err(_)) => Goodbye::Gone,
        Ok(Ok(())) => close_and_wait(socket, waits).await,
    }
}

/// Sends the caller's close frame and waits for the fleet's answer: the second half of
/// [`say_goodbye`].
pub(super) async fn close_and_wait(socket: &mut MediaSocket, waits: GoodbyeWaits) -> Goodbye {
    match timeout(waits.send_stall, socket.close(None)).await {
        Err(_) => return Goodbye::Stalled("the caller's close frame"),
        Ok(Err(_)) => return Goodbye::Gone,
        Ok(Ok(())) => {}
    }
    // Whatever the fleet still sends is read and dropped until its close frame, or until
    // the connection ends.
    let answered = timeout(waits.close_reply, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    match answered {
        Ok(()) => Goodbye::Said,
        Err(_) => Goodbye::Unanswered,
    }
}

/// Why a call ended `send_stalled`: `what` could not be written for `stall`.
fn stalled(what: &str, stall: Duration) -> String {
    format!("the fleet stopped reading: {what} could not be sent for {stall:?}")
}

/// The fleet's close frame as the journal and the report tell it.
fn fleet_close(frame: Option<tungstenite::protocol::CloseFrame>) -> StreamClose {
    match frame {
        Some(frame) => StreamClose::fleet(Some(u16::from(frame.code)), frame.reason.as_str()),
        None => StreamClose::fleet(None, ""),
    }
}

fn dropped(why: impl Into<String>) -> Ending {
    Ending::FleetClosed(StreamClose::Dropped { why: why.into() })
}

/// One 20 ms frame of caller audio.
#[derive(Debug)]
enum Frame {
    Speech(Utterance, usize),
    Silence,
}

/// Where in the 20 ms frame period this call sends. Calls started together (the load shaper
/// starts them in batches) would otherwise send in the same instant, and the last of a batch
/// would be late by the time it takes to send all the others. Consecutive indices land far
/// apart (golden-ratio spacing), so any number of calls covers the period evenly.
fn frame_phase(index: u64) -> Duration {
    const GOLDEN: f64 = 0.618_033_988_749_895;
    let fraction = (index as f64 * GOLDEN).fract();
    Duration::from_micros((fraction * FRAME.as_micros() as f64) as u64)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

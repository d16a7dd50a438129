//! One simulated Twilio call, from the voice webhook to `stop`.
//!
//! A call follows its script (say an utterance, listen for the agent's reply, press DTMF
//! digits, pause, hang up) while streaming caller audio in real time, 20 ms a frame, exactly
//! as Twilio does: speech frames while the caller talks and silence frames otherwise. What
//! the fleet sends back plays in a [`playback::Playback`] buffer at real-time speed, which
//! echoes marks when their audio has played and measures the agent's replies.
//!
//! A call never aggregates: it reports [`CallEvent`]s to one aggregating actor over a
//! channel, a few per turn, and its send-pacing jitter as a small histogram every few
//! seconds. Nothing is kept per frame.

mod connect;
pub mod playback;
mod session;
#[cfg(test)]
mod tests;

use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::audio::utterance::Utterance;

pub use connect::{CallEndpoint, ConnectError};
pub use session::{CLOSE_REPLY_WAIT, CallContext, MAX_FLEET_MESSAGE, run_call};

pub use crate::journal::calls::CallOutcome;

/// What a call reports to the aggregator.
#[derive(Debug)]
pub enum CallEvent {
    /// Nothing listened where the call connects (its voice webhook or media stream URL
    /// refused the connection): the fleet is down, not slow. Sent before the call's
    /// `Ended` (`connect_failed`); an interval whose calls were all refused counts as
    /// downtime in `uptime`.
    ConnectRefused,
    /// The open model did not place this call: `max_concurrent` calls were running. Sent by
    /// the load shaper, not by a call; it counts as a failed call.
    Dropped,
    Started,
    /// The WebSocket is open (webhook and TwiML included).
    Connected {
        connect: Duration,
    },
    /// The first voiced agent audio of the call was heard, this long after the stream started.
    FirstAudio {
        after: Duration,
    },
    /// The agent replied to a caller turn.
    Reply {
        latency: Duration,
        dead_air: Duration,
    },
    /// A mark was echoed once its audio had played.
    MarkEchoed {
        waited: Duration,
    },
    /// Send-pacing jitter in microseconds since the last batch.
    Pacing(Box<Histogram<u64>>),
    /// The fleet sent something Twilio would reject; `kind` is a short stable label.
    ProtocolError {
        kind: &'static str,
    },
    /// The caller has finished a turn and waits for the agent to start answering, since
    /// `since` (the end of its speech or its last DTMF digit). `call` is the call's index.
    WaitingForReply {
        call: u64,
        since: Instant,
    },
    /// The wait of call `call` is over: the agent's voice was heard, or the call ended.
    WaitOver {
        call: u64,
    },
    Ended {
        outcome: CallOutcome,
        duration: Duration,
        /// Why it ended that way, for the first few failures in the report.
        detail: Option<String>,
        /// How the media stream closed; None when it never opened.
        close: Option<StreamClose>,
    },
}

/// How a call's media stream closed, and who closed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamClose {
    /// The harness hung up: the script ended, or it gave up on the fleet (turn timeout,
    /// max duration, a fleet that stopped reading, the run ending).
    Caller,
    /// The fleet sent a WebSocket close frame (a clean close).
    Fleet {
        /// None: a close frame without a status code (received as 1005).
        code: Option<u16>,
        /// The close reason, truncated and with control characters escaped.
        reason: String,
    },
    /// The connection ended without a close frame (an abrupt close: a crash, a reset, a
    /// broken pipe); what broke it.
    Dropped { why: String },
}

impl StreamClose {
    /// The longest close reason kept (the protocol allows 123 bytes).
    const REASON_CHARS: usize = 60;

    /// A close frame from the fleet.
    pub fn fleet(code: Option<u16>, reason: &str) -> Self {
        StreamClose::Fleet {
            code,
            reason: sanitize(reason, Self::REASON_CHARS),
        }
    }

    /// Whether this is a deliberate hang-up by the fleet: a close frame whose code says the
    /// call is over (1000, none, or an application's own 4000-4999), not a drop and not an
    /// error code (1001 going away, 1011 internal error, ...).
    pub fn is_fleet_hang_up(&self) -> bool {
        matches!(
            self,
            StreamClose::Fleet {
                code: None | Some(1000 | 4000..=4999),
                ..
            }
        )
    }

    /// The key the `interval` record counts closes by (`closes`): `caller`, `fleet 1000`,
    /// `fleet none` (a close frame without a code) or `fleet abrupt`.
    pub fn journal_key(&self) -> String {
        match self {
            StreamClose::Caller => "caller".to_owned(),
            StreamClose::Fleet {
                code: Some(code), ..
            } => format!("fleet {code}"),
            StreamClose::Fleet { code: None, .. } => "fleet none".to_owned(),
            StreamClose::Dropped { .. } => "fleet abrupt".to_owned(),
        }
    }

    /// The close for a failure example, with how far the script got: `closed by the fleet
    /// with 1000 "goodbye" after turn 2 of 3`.
    pub fn describe(&self, answered: u32, turns: u32) -> String {
        let how = match self {
            StreamClose::Caller => "the caller hung up".to_owned(),
            StreamClose::Fleet {
                code: Some(code),
                reason,
            } => format!("closed by the fleet with {code} \"{reason}\""),
            StreamClose::Fleet { code: None, .. } => {
                "closed by the fleet (a close frame without a code)".to_owned()
            }
            StreamClose::Dropped { why } => why.clone(),
        };
        match (answered, turns) {
            (_, 0) => how,
            (0, _) => format!("{how} before turn 1 of {turns} was answered"),
            _ => format!("{how} after turn {answered} of {turns}"),
        }
    }
}

/// Text from the fleet made fit for a one-line report between double quotes: at most
/// `max` characters, control, bidi and invisible characters escaped so they show
/// ([`crate::escape::line`]: `\x1b`, `\u{202e}`), double quotes as single ones. (HTML
/// escaping is the report's business.)
fn sanitize(text: &str, max: usize) -> String {
    let kept: String = text
        .chars()
        .take(max)
        .map(|c| if c == '"' { '\'' } else { c })
        .collect();
    let mut kept = crate::escape::line(&kept).into_owned();
    if text.chars().nth(max).is_some() {
        kept.push('…');
    }
    kept
}

/// One step of a call with its audio resolved.
#[derive(Debug, Clone)]
pub enum CallStep {
    Say { utterance: Utterance, listen: bool },
    Dtmf { digits: String, listen: bool },
    Pause(Duration),
    Hangup,
}

/// Everything one call needs beyond the shared [`CallContext`].
#[derive(Debug, Clone)]
pub struct CallPlan {
    /// The call's index in the run: its script and audio were chosen from the seed and this.
    pub index: u64,
    pub steps: Vec<CallStep>,
}

/// The channel calls report on.
pub type CallEvents = UnboundedSender<CallEvent>;

/// A new, empty histogram for send-pacing jitter in microseconds. One significant figure
/// keeps it about 2.5 KiB, small enough to hold one per call at 5,000 calls.
pub fn pacing_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 1).expect("static histogram bounds are valid")
}

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

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::audio::utterance::Utterance;

pub use connect::{CallEndpoint, ConnectError};
pub use session::{CallContext, run_call};

/// How a call ended. The names are a public contract (`summary.json` `calls.by_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The script ran to its end and the call hung up normally.
    Completed,
    /// The fleet closed the stream before the script ended.
    FleetHungUp,
    /// The agent did not start replying within the turn timeout.
    TurnTimeout,
    /// Webhook, TwiML or WebSocket handshake failed or timed out.
    ConnectFailed,
    /// The fleet sent something Twilio would reject (invalid JSON, unknown event, wrong
    /// streamSid, a binary frame, an oversized message).
    ProtocolError,
    /// The fleet stopped reading: a frame could not be written for several seconds.
    SendStalled,
    /// The call ran past `max_call_duration`.
    MaxDuration,
    /// The run ended (time up, Ctrl-C) while the call was in progress. Not the fleet's fault:
    /// excluded from the success rate.
    Cancelled,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 8] = [
        CallOutcome::Completed,
        CallOutcome::FleetHungUp,
        CallOutcome::TurnTimeout,
        CallOutcome::ConnectFailed,
        CallOutcome::ProtocolError,
        CallOutcome::SendStalled,
        CallOutcome::MaxDuration,
        CallOutcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Completed => "completed",
            CallOutcome::FleetHungUp => "fleet_hung_up",
            CallOutcome::TurnTimeout => "turn_timeout",
            CallOutcome::ConnectFailed => "connect_failed",
            CallOutcome::ProtocolError => "protocol_error",
            CallOutcome::SendStalled => "send_stalled",
            CallOutcome::MaxDuration => "max_duration",
            CallOutcome::Cancelled => "cancelled",
        }
    }

    /// Whether the call counts in the success rate at all.
    pub fn is_graded(self) -> bool {
        self != CallOutcome::Cancelled
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call reports to the aggregator.
#[derive(Debug)]
pub enum CallEvent {
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
    Ended {
        outcome: CallOutcome,
        duration: Duration,
        /// Why it ended that way, for the first few failures in the report.
        detail: Option<String>,
    },
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

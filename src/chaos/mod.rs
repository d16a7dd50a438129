//! The chaos plane: faults injected for real against a real fleet, confirmed, and always
//! undone.
//!
//! Every fault kind is a small object with one interface, like a Toxiproxy toxic:
//!
//! ```text
//! XFault::inject(params, …) -> Result<XFault, FaultError>   // make it happen
//! XFault::confirm(&mut self) -> Confirmation                 // is it in effect? with evidence
//! XFault::clear(self) -> Result<String, FaultError>         // undo; says what was undone
//! impl Drop for XFault                                       // best-effort undo if never cleared
//! ```
//!
//! `inject` returns once the fault has been put in place (locks taken, files written,
//! signals sent); `confirm` looks from the outside at whether it took effect, and a fault
//! that cannot confirm is reported as "not in effect", never as passed. `clear` undoes it
//! and waits until it is undone. `Drop` exists for the paths where `clear` never runs (a
//! panic in a task): it undoes what can be undone without `.await` (closing connections,
//! removing files, SIGCONT).

pub mod proxy;

use serde::Serialize;

pub mod db;

/// What a fault's confirmation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confirmation {
    /// Whether the fault was seen to be in effect.
    pub in_effect: bool,
    /// What was seen, in a sentence for the journal and the report (e.g. "3 lock holders
    /// hold orders; 4 fleet sessions wait on a lock").
    pub evidence: String,
}

impl Confirmation {
    pub fn in_effect(evidence: impl Into<String>) -> Self {
        Confirmation {
            in_effect: true,
            evidence: evidence.into(),
        }
    }

    pub fn not_in_effect(evidence: impl Into<String>) -> Self {
        Confirmation {
            in_effect: false,
            evidence: evidence.into(),
        }
    }
}

/// A fault could not be injected or cleared.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct FaultError {
    /// The fault kind as the scenario names it (`db_pool_exhaustion`).
    pub kind: &'static str,
    pub message: String,
}

impl FaultError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        FaultError {
            kind,
            message: message.into(),
        }
    }
}

pub mod abort;
pub mod by_hand;
pub mod fault;
pub mod plane;
pub mod process;
pub mod standin;
pub mod temp_files;
pub mod tts_log;

pub use fault::ChaosTargets;
pub use plane::{ChaosOutcome, ChaosPlane, ChaosRun};

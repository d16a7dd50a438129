//! The dead-letter table: every turn the fleet abandoned, one row each in `dead_letters`,
//! for operators to look into. A turn is abandoned when the caller did not get the answer
//! it asked for:
//! - `tts_gave_up`: TTS failed past its retry budget, the cached apology played instead;
//! - `llm_failed` / `llm_empty_answer`: the LLM failed or said nothing, the agent said the
//!   apology;
//! - `temp_file_write` / `tts_audio_undecodable`: the answer's audio could not be made;
//! - `abandoned_by_healer`: the healer gave up on a turn its workers stalled on.
//!
//! A turn ended by the caller hanging up is not a dead letter: nobody was waiting.
//!
//! Turns post letters without waiting: one writer task inserts them in order and retries
//! an insert the database refuses (a held lock, a full pool) every second, so a database
//! fault delays letters but does not lose them or slow a turn. The queue is bounded
//! ([`QUEUE`]); a letter that does not fit is counted (`dead_letters_dropped_total`). The
//! table's row count (`dead_letters` on `/metrics`) is counted once when the writer starts
//! (a restarted fleet keeps its table) and kept up as it inserts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Fleet;

/// Letters waiting to be written, at most.
pub const QUEUE: usize = 10_000;
/// How long the writer waits before trying a refused insert (or the first count) again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Most characters of a letter's detail kept.
const DETAIL_CHARS: usize = 200;

/// One abandoned turn.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub call_sid: String,
    pub turn: u32,
    pub reason: &'static str,
    pub detail: String,
}

/// Where turns post their dead letters, and what became of them.
#[derive(Debug)]
pub struct DeadLetters {
    queue: mpsc::Sender<DeadLetter>,
    /// Rows in the table, as the writer last knew it.
    rows: AtomicU64,
    /// Letters the full queue turned away.
    dropped: AtomicU64,
}

impl DeadLetters {
    /// The posting side, and the queue the writer ([`write()`]) takes letters from.
    pub fn new() -> (DeadLetters, mpsc::Receiver<DeadLetter>) {
        let (queue, letters) = mpsc::channel(QUEUE);
        let dead_letters = DeadLetters {
            queue,
            rows: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        (dead_letters, letters)
    }

    /// Posts one abandoned turn; never waits.
    pub fn post(&self, call_sid: &str, turn: u32, reason: &'static str, detail: &str) {
        let letter = DeadLetter {
            call_sid: call_sid.to_owned(),
            turn,
            reason,
            detail: detail.chars().take(DETAIL_CHARS).collect(),
        };
        if self.queue.try_send(letter).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Rows in `dead_letters` (the letters written so far, and those it held at start).
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Letters lost to a full queue.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writer: counts the table's rows, then inserts each letter as it comes, until the
/// fleet shuts down.
pub async fn write(fleet: Arc<Fleet>, mut letters: mpsc::Receiver<DeadLetter>) {
    let counted = retrying(&fleet, "dead_letter_count", || fleet.db.dead_letter_count()).await;
    let Some(rows) = counted else {
        return;
    };
    fleet.dead_letters.rows.fetch_add(rows, Ordering::Relaxed);
    loop {
        let letter = tokio::select! {
            _ = fleet.shutdown.cancelled() => return,
            letter = letters.recv() => match letter { Some(letter) => letter, None => return },
        };
        let written = retrying(&fleet, "record_dead_letter", || {
            fleet.db.record_dead_letter(
                &letter.call_sid,
                letter.turn,
                letter.reason,
                &letter.detail,
            )
        })
        .await;
        if written.is_none() {
            return;
        }
        fleet.dead_letters.rows.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `operation` until it succeeds (each failure counted as a database error of `op`),
/// every [`RETRY_EVERY`]; None when the fleet shuts down first.
async fn retrying<T, F, Fut>(fleet: &Fleet, op: &str, mut operation: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, super::db::DbError>>,
{
    loop {
        let outcome = tokio::select! {
            _ = fleet.shutdown.cancelled() => return None,
            outcome = operation() => outcome,
        };
        match outcome {
            Ok(value) => return Some(value),
            Err(error) => fleet.note_db_error(op, &error),
        }
        tokio::select! {
            _ = fleet.shutdown.cancelled() => return None,
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

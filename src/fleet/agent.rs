//! One agent turn, as a worker runs it: the caller's turn goes to the LLM with the
//! `search_orders` tool; tool calls run against the database; the answer goes to TTS; the
//! audio is written to a temp file (as real audio workers do), read back, converted to
//! mu-law 8 kHz and handed to the call to stream.
//!
//! Nothing here fails the call: an LLM error, a refused tool call or a database error
//! becomes something the agent says; a TTS that gives up becomes the cached apology. Only
//! a call that ended (or a turn the healer abandoned) produces no audio. A turn whose
//! answer the caller did not get (the LLM failed, TTS gave up, the audio could not be made)
//! is posted to the dead-letter table ([`super::dead_letters`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::alerts::AlertName;
use super::db::TurnTransaction;
use super::tools::{self, OrderQuery};
use super::tts::TtsError;
use super::{Bug, Fleet, tempdir};
use crate::standin::openai::{ChatMessage, ToolCall};
use crate::twilio::mulaw;

const SYSTEM_PROMPT: &str = "You are the order-status agent of a small shop, on the phone. \
Look orders up with search_orders before answering; answer in one short sentence.";
/// What the agent says when something behind it failed.
pub const APOLOGY: &str = "Sorry, I am having trouble right now. Please bear with me.";
/// Most conversation messages carried into the next turn.
const HISTORY: usize = 8;

/// What the caller did that ended their turn. The fleet has no speech recognition, so the
/// LLM is told what was heard, not what was said.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnInput {
    Speech {
        seconds: f64,
    },
    Digits(String),
    /// The call just started and the agent greets.
    Greeting,
}

impl TurnInput {
    fn as_user_text(&self) -> String {
        match self {
            TurnInput::Speech { seconds } => {
                format!("[the caller spoke for {seconds:.1} s; no transcript]")
            }
            TurnInput::Digits(digits) => format!("[the caller pressed {digits}]"),
            TurnInput::Greeting => "[the call was answered; greet the caller]".into(),
        }
    }
}

/// A turn waiting for, or held by, a worker. Cloned when the healer retries it.
#[derive(Debug, Clone)]
pub struct Job {
    pub call_sid: String,
    pub turn: u32,
    pub input: TurnInput,
    pub history: Vec<ChatMessage>,
    /// When the caller's speech (or last digit) ended: the start of response latency.
    pub speech_ended: Instant,
    pub reply: mpsc::UnboundedSender<TurnOutcome>,
    /// Cancelled when the call ends: nobody is listening any more.
    pub cancelled: CancellationToken,
    /// Times the healer has restarted a worker holding this job.
    pub attempts: u32,
}

/// Audio for the call to play.
#[derive(Debug)]
pub struct TurnReply {
    pub turn: u32,
    pub user_text: String,
    pub text: String,
    pub mulaw: Arc<[u8]>,
    pub speech_ended: Instant,
    /// Deleted once the audio has played (unless the temp-leak bug is on).
    pub temp_file: Option<PathBuf>,
    /// Only with the long-transactions bug: committed once the audio has played.
    pub transaction: Option<TurnTransaction>,
}

#[derive(Debug)]
pub enum TurnOutcome {
    Reply(Box<TurnReply>),
    Failed { turn: u32, reason: &'static str },
}

/// Runs one turn for `worker`.
pub async fn run_turn(fleet: &Fleet, job: &Job, worker: u32) -> TurnOutcome {
    fleet.metrics.turns_total.fetch_add(1, Ordering::Relaxed);
    let mut transaction = None;
    if fleet.options.has(Bug::LongTransactions) {
        match fleet.db.begin_turn().await {
            Ok(opened) => transaction = Some(opened),
            Err(error) => fleet.note_db_error("begin_turn", &error),
        }
    }
    let user_text = job.input.as_user_text();
    let answered = converse(fleet, job, &user_text, worker, transaction.as_mut()).await;
    let text = answered.clone().unwrap_or_else(|_| APOLOGY.into());
    let detail = format!(
        "worker {worker}: {}",
        text.chars().take(120).collect::<String>()
    );
    let recorded = match transaction.as_mut() {
        Some(open) => open.record_turn(&job.call_sid, job.turn, &detail).await,
        None => fleet.db.record_turn(&job.call_sid, job.turn, &detail).await,
    };
    if let Err(error) = recorded {
        fleet.note_db_error("record_turn", &error);
    }
    let voiced = voice(fleet, job, worker, &text).await;
    if let Some((reason, detail)) = abandoned(&answered, &voiced) {
        fleet
            .dead_letters
            .post(&job.call_sid, job.turn, reason, &detail);
    }
    let (mulaw, temp_file) = match voiced {
        Voiced::Audio { mulaw, temp_file } => (mulaw, temp_file),
        Voiced::Apology(_) => (Arc::clone(&fleet.apology), None),
        Voiced::Failed(reason) => {
            return TurnOutcome::Failed {
                turn: job.turn,
                reason,
            };
        }
    };
    TurnOutcome::Reply(Box::new(TurnReply {
        turn: job.turn,
        user_text,
        text,
        mulaw,
        speech_ended: job.speech_ended,
        temp_file,
        transaction,
    }))
}

/// How a turn's text became audio.
enum Voiced {
    Audio {
        mulaw: Arc<[u8]>,
        temp_file: Option<PathBuf>,
    },
    /// TTS gave up: the cached apology plays (why, as logged).
    Apology(String),
    /// No audio: the call ended, or the answer's audio could not be made (why).
    Failed(&'static str),
}

/// `text` through TTS and into mu-law, or the cached apology when TTS gives up.
async fn voice(fleet: &Fleet, job: &Job, worker: u32, text: &str) -> Voiced {
    let request_id = format!("{}-{}", job.call_sid, job.turn);
    let spoken = fleet
        .tts
        .speak(text, &request_id, &job.cancelled, &fleet.metrics)
        .await;
    match spoken {
        Ok(wav) => match to_mulaw(fleet, job, wav).await {
            Ok((mulaw, temp_file)) => Voiced::Audio { mulaw, temp_file },
            Err(reason) => {
                fleet.metrics.turn_failures_total.add(reason, 1);
                Voiced::Failed(reason)
            }
        },
        Err(TtsError::Cancelled) => Voiced::Failed("call_ended"),
        Err(TtsError::GaveUp { attempts, last }) => {
            fleet
                .metrics
                .tts_fallbacks_total
                .fetch_add(1, Ordering::Relaxed);
            let detail = format!("after {attempts} attempts (last {last}); played the apology");
            fleet
                .log_event("tts_gave_up", Some(worker), Some(&job.call_sid), &detail)
                .await;
            Voiced::Apology(detail)
        }
    }
}

/// Whether the turn goes to the dead-letter table, and why: the first thing that kept
/// the caller from its answer (one letter a turn). A call that ended has nobody waiting.
fn abandoned(
    answered: &Result<String, &'static str>,
    voiced: &Voiced,
) -> Option<(&'static str, String)> {
    match (answered, voiced) {
        (_, Voiced::Failed("call_ended")) | (Ok(_), Voiced::Audio { .. }) => None,
        (Err(reason), _) => Some((
            reason,
            "the LLM gave no answer; the agent said the apology".into(),
        )),
        (Ok(_), Voiced::Apology(detail)) => Some(("tts_gave_up", detail.clone())),
        (Ok(_), Voiced::Failed(reason)) => Some((
            reason,
            "the answer's audio could not be made; nothing played".into(),
        )),
    }
}

/// LLM, tools, LLM again: the text the agent will say; Err(why) when the LLM gave no
/// answer (the agent then apologises).
async fn converse(
    fleet: &Fleet,
    job: &Job,
    user_text: &str,
    worker: u32,
    mut transaction: Option<&mut TurnTransaction>,
) -> Result<String, &'static str> {
    let mut messages = Vec::with_capacity(job.history.len() + 4);
    messages.push(message("system", SYSTEM_PROMPT));
    messages.extend(job.history.iter().cloned());
    messages.push(message("user", user_text));
    let tools = vec![tools::search_orders_spec()];
    let first = match fleet
        .ask_llm(messages.clone(), tools.clone(), &job.call_sid)
        .await
    {
        Some(first) => first,
        None => return Err("llm_failed"),
    };
    if first.tool_calls.is_empty() {
        return non_empty(first.content);
    }
    messages.push(ChatMessage {
        role: "assistant".into(),
        content: (!first.content.is_empty()).then_some(first.content),
        tool_calls: first.tool_calls.clone(),
        tool_call_id: None,
    });
    for call in &first.tool_calls {
        let result = run_tool(fleet, job, call, worker, transaction.as_deref_mut()).await;
        messages.push(ChatMessage {
            role: "tool".into(),
            content: Some(result),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
        });
    }
    match fleet.ask_llm(messages, tools, &job.call_sid).await {
        Some(second) => non_empty(second.content),
        None => Err("llm_failed"),
    }
}

fn non_empty(text: String) -> Result<String, &'static str> {
    if text.trim().is_empty() {
        Err("llm_empty_answer")
    } else {
        Ok(text)
    }
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: Some(content.into()),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// Runs one tool call and returns the tool message's content (JSON).
async fn run_tool(
    fleet: &Fleet,
    job: &Job,
    call: &ToolCall,
    worker: u32,
    transaction: Option<&mut TurnTransaction>,
) -> String {
    fleet
        .metrics
        .tool_calls_total
        .fetch_add(1, Ordering::Relaxed);
    let query = if fleet.options.has(Bug::UnvalidatedToolParams) {
        if call.function.name != tools::SEARCH_ORDERS {
            return tool_error("unknown tool");
        }
        tools::read_leniently(&call.function.arguments)
    } else {
        match tools::validate(&call.function.name, &call.function.arguments) {
            Ok(query) => query,
            Err(rejection) => {
                fleet
                    .metrics
                    .tool_calls_rejected_total
                    .add(rejection.reason(), 1);
                let arguments: String = call.function.arguments.chars().take(200).collect();
                fleet
                    .alerts
                    .observe(AlertName::ToolCallRejected, true, Instant::now(), || {
                        format!(
                            "{} refused: {rejection}",
                            call.function.name.chars().take(64).collect::<String>()
                        )
                    });
                fleet
                    .log_event(
                        "tool_call_rejected",
                        Some(worker),
                        Some(&job.call_sid),
                        &format!("{}: {rejection}; arguments {arguments}", rejection.reason()),
                    )
                    .await;
                return tool_error(&rejection.to_string());
            }
        }
    };
    let OrderQuery { customer_id, limit } = query;
    let found = match transaction {
        Some(open) => open.search_orders(customer_id.as_deref(), limit).await,
        None => fleet.db.search_orders(customer_id.as_deref(), limit).await,
    };
    match found {
        // With the bug and `{}` this serialises every row of the table.
        Ok(orders) => serde_json::to_string(&orders).unwrap_or_else(|_| tool_error("encoding")),
        Err(error) => {
            fleet.note_db_error("search_orders", &error);
            tool_error("the order database is unavailable")
        }
    }
}

fn tool_error(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Writes the TTS audio to the temp dir, reads it back and converts it to mu-law 8 kHz.
async fn to_mulaw(
    fleet: &Fleet,
    job: &Job,
    wav: bytes::Bytes,
) -> Result<(Arc<[u8]>, Option<PathBuf>), &'static str> {
    let path = tempdir::reply_path(&fleet.audio_dir, &job.call_sid, job.turn);
    if tokio::fs::write(&path, &wav).await.is_err() {
        return Err("temp_file_write");
    }
    let read_from = path.clone();
    let converted = tokio::task::spawn_blocking(move || {
        crate::audio::wav::load_wav(&read_from).map(|samples| mulaw::encode_all(&samples))
    })
    .await;
    match converted {
        Ok(Ok(mulaw)) => Ok((mulaw.into(), Some(path))),
        _ => {
            // Undecodable audio is useless; it does not count as a leak either way.
            let _ = tokio::fs::remove_file(&path).await;
            Err("tts_audio_undecodable")
        }
    }
}

/// The conversation carried into the next turn: the last eight user/assistant
/// messages (tool traffic stays inside its turn).
pub fn extend_history(history: &mut Vec<ChatMessage>, user_text: &str, agent_text: &str) {
    history.push(message("user", user_text));
    history.push(message("assistant", agent_text));
    if history.len() > HISTORY {
        history.drain(..history.len() - HISTORY);
    }
}

//! The indie fleet's server: the voice webhook, the Media Streams WebSocket, `/health`,
//! `/metrics`, its alerting loop and its scratch dir.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::agent::{self, BadArguments, Turn};
use super::alerts::{self, AlertBook, Delivery};
use super::backoff::RetryPolicy;
use super::sound::{self, FRAME};
use super::speech::Endpointer;
use super::tts::{self, Next};
use super::{Behaviour, Config};

/// Printed on stdout once the fleet listens: `indie fleet listening on ADDR`.
pub const LISTENING: &str = "indie fleet listening on ";
/// Printed on stderr, with the call SID and the error, when a turn's LLM request failed.
pub const LLM_FAILED: &str = "indie fleet: the LLM failed a turn of";

/// How long after the last 429 the throttling alert stays firing.
const THROTTLE_HOLD: Duration = Duration::from_secs(5);
/// How long after the last refused tool call its alert stays firing.
const REJECTION_HOLD: Duration = Duration::from_secs(10);
/// How often alerts are evaluated.
const EVALUATE_EVERY: Duration = Duration::from_millis(250);
/// How often the scratch dir is measured (and swept).
const SCRATCH_EVERY: Duration = Duration::from_secs(1);
/// The sweep removes scratch files older than this: nothing the fleet plays lives so long.
const SCRATCH_MAX_AGE: Duration = Duration::from_secs(10);
/// `late_alerts`: how long after its condition an alert goes out.
const LATE_BY: Duration = Duration::from_secs(40);

/// Counters for `/metrics`; each a plain total.
#[derive(Debug, Default)]
struct Counters {
    calls_handled: AtomicU64,
    calls_ended: AtomicU64,
    turns: AtomicU64,
    turns_unanswered: AtomicU64,
    llm_failures: AtomicU64,
    tool_rejections: AtomicU64,
    tts_retries: AtomicU64,
    tts_gave_up: AtomicU64,
    scratch_bytes: AtomicU64,
    scratch_files: AtomicU64,
    scratch_removed: AtomicU64,
    alerts_sent: AtomicU64,
    alerts_failed: AtomicU64,
    /// TTS answers by status (`none`: no answer).
    tts_status: Mutex<BTreeMap<String, u64>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub struct Fleet {
    config: Config,
    address: SocketAddr,
    counters: Counters,
    alerts: Mutex<AlertBook>,
    last_429: Mutex<Option<Instant>>,
    last_rejection: Mutex<Option<Instant>>,
    /// `never_recovers`: set by the first 429, never cleared.
    wedged: AtomicBool,
    apology: Vec<u8>,
    /// Posts alerts.
    http: reqwest::Client,
}

impl Fleet {
    fn recently(mark: &Mutex<Option<Instant>>, hold: Duration) -> bool {
        lock(mark).is_some_and(|at| at.elapsed() < hold)
    }

    fn scratch_full(&self) -> bool {
        self.counters.scratch_bytes.load(Ordering::Relaxed) > self.config.scratch_budget
    }

    fn leaking(&self) -> bool {
        self.config.behaviour == Behaviour::LeaksTempFiles
    }

    /// Why `/health` is 503, if it is.
    fn unhealthy_reasons(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.wedged.load(Ordering::Relaxed) {
            reasons.push("speech backend lost");
        }
        if self.scratch_full() {
            reasons.push("scratch dir over budget");
        }
        reasons
    }
}

/// Serves until the process ends.
pub async fn serve(config: Config) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.scratch_dir)?;
    if let Some(pid_file) = &config.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let delivery = match config.behaviour {
        Behaviour::NoAlerts => Delivery::Never,
        Behaviour::LateAlerts => Delivery::Late(LATE_BY),
        _ => Delivery::Prompt,
    };
    let fleet = Arc::new(Fleet {
        address,
        counters: Counters::default(),
        alerts: Mutex::new(AlertBook::new(delivery)),
        last_429: Mutex::new(None),
        last_rejection: Mutex::new(None),
        wedged: AtomicBool::new(false),
        apology: sound::apology_prompt(),
        http: reqwest::Client::new(),
        config,
    });
    tokio::spawn(alerting(Arc::clone(&fleet)));
    tokio::spawn(scratch_keeping(Arc::clone(&fleet)));
    let router = Router::new()
        .route("/voice", post(voice))
        .route("/stream", get(stream))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&fleet));
    println!("{LISTENING}{address} ({:?})", fleet.config.behaviour);
    axum::serve(listener, router).await
}

/// TwiML connecting the call to this fleet's stream, at the host the webhook was called on.
async fn voice(State(fleet): State<Arc<Fleet>>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .map_or_else(|| fleet.address.to_string(), str::to_owned);
    let twiml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="ws://{host}/stream"/></Connect></Response>"#
    );
    ([(header::CONTENT_TYPE, "text/xml")], twiml).into_response()
}

async fn health(State(fleet): State<Arc<Fleet>>) -> Response {
    let reasons = fleet.unhealthy_reasons();
    if reasons.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", reasons.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(State(fleet): State<Arc<Fleet>>) -> Response {
    let counters = &fleet.counters;
    let total = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
    let handled = counters.calls_handled.load(Ordering::Relaxed);
    let ended = counters.calls_ended.load(Ordering::Relaxed);
    let unlabelled = [
        (
            "indie_memory_rss_bytes",
            "gauge",
            "Resident set size of the fleet process.",
            resident_bytes() as f64,
        ),
        (
            "indie_scratch_dir_bytes",
            "gauge",
            "Bytes of the files in the scratch dir.",
            total(&counters.scratch_bytes),
        ),
        (
            "indie_scratch_dir_files",
            "gauge",
            "Files in the scratch dir.",
            total(&counters.scratch_files),
        ),
        (
            "indie_scratch_files_removed_total",
            "counter",
            "Scratch files removed by the sweep.",
            total(&counters.scratch_removed),
        ),
        (
            "indie_calls_handled_total",
            "counter",
            "Media streams started.",
            handled as f64,
        ),
        (
            "indie_calls_active",
            "gauge",
            "Media streams in progress.",
            handled.saturating_sub(ended) as f64,
        ),
        (
            "indie_turns_total",
            "counter",
            "Caller turns heard.",
            total(&counters.turns),
        ),
        (
            "indie_turns_unanswered_total",
            "counter",
            "Caller turns left without an answer.",
            total(&counters.turns_unanswered),
        ),
        (
            "indie_llm_failures_total",
            "counter",
            "Chat completions that failed.",
            total(&counters.llm_failures),
        ),
        (
            "indie_tool_rejections_total",
            "counter",
            "Tool calls refused for their arguments.",
            total(&counters.tool_rejections),
        ),
        (
            "indie_tts_retries_total",
            "counter",
            "Speech requests that were retries.",
            total(&counters.tts_retries),
        ),
        (
            "indie_tts_gave_up_total",
            "counter",
            "Sentences that fell back to the apology prompt.",
            total(&counters.tts_gave_up),
        ),
        (
            "indie_alerts_sent_total",
            "counter",
            "Alert notifications delivered.",
            total(&counters.alerts_sent),
        ),
        (
            "indie_alerts_failed_total",
            "counter",
            "Alert notifications that could not be delivered.",
            total(&counters.alerts_failed),
        ),
    ];
    let statuses: Vec<(String, f64)> = lock(&counters.tts_status)
        .iter()
        .map(|(code, count)| (format!("{{code=\"{code}\"}}"), *count as f64))
        .collect();
    let firing: Vec<(String, f64)> = {
        let book = lock(&fleet.alerts);
        [
            alerts::THROTTLED,
            alerts::TOOL_REJECTED,
            alerts::SCRATCH_FULL,
        ]
        .iter()
        .map(|name| {
            (
                format!("{{alertname=\"{name}\"}}"),
                f64::from(u8::from(book.firing(name))),
            )
        })
        .collect()
    };
    let labelled = [
        (
            "indie_tts_status_total",
            "counter",
            "Speech answers by status (none: no answer).",
            statuses,
        ),
        (
            "indie_alerts_firing",
            "gauge",
            "Alerts firing, by name.",
            firing,
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, value) in unlabelled {
        series(&mut text, name, kind, help, &[(String::new(), value)]);
    }
    for (name, kind, help, samples) in labelled {
        series(&mut text, name, kind, help, &samples);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// One series in the Prometheus text format: its help, its type and its samples.
fn series(text: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    for (labels, value) in samples {
        text.push_str(&format!("{name}{labels} {value}\n"));
    }
}

/// The process's resident set size from `/proc/self/status` (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// Evaluates the alerts every [`EVALUATE_EVERY`] and posts what changed.
async fn alerting(fleet: Arc<Fleet>) {
    let mut ticks = tokio::time::interval(EVALUATE_EVERY);
    loop {
        ticks.tick().await;
        let conditions = [
            (
                alerts::THROTTLED,
                Fleet::recently(&fleet.last_429, THROTTLE_HOLD),
            ),
            (
                alerts::TOOL_REJECTED,
                Fleet::recently(&fleet.last_rejection, REJECTION_HOLD),
            ),
            (alerts::SCRATCH_FULL, fleet.scratch_full()),
        ];
        let notifications =
            lock(&fleet.alerts).evaluate(Instant::now(), SystemTime::now(), &conditions);
        let Some(url) = fleet.config.alert_url.clone() else {
            continue;
        };
        for notification in notifications {
            println!(
                "indie fleet: alert {} {}",
                notification.name,
                if notification.firing {
                    "firing"
                } else {
                    "resolved"
                }
            );
            let fleet = Arc::clone(&fleet);
            let url = url.clone();
            tokio::spawn(async move {
                let sent = fleet
                    .http
                    .post(&url)
                    .timeout(Duration::from_secs(5))
                    .json(&alerts::payload(&notification))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                bump(if sent {
                    &fleet.counters.alerts_sent
                } else {
                    &fleet.counters.alerts_failed
                });
            });
        }
    }
}

/// Measures the scratch dir every [`SCRATCH_EVERY`] and, unless the fleet leaks, removes the
/// files older than [`SCRATCH_MAX_AGE`] (its own strays and anything else left there).
async fn scratch_keeping(fleet: Arc<Fleet>) {
    let mut ticks = tokio::time::interval(SCRATCH_EVERY);
    loop {
        ticks.tick().await;
        let dir = fleet.config.scratch_dir.clone();
        let sweep = !fleet.leaking();
        let measured = tokio::task::spawn_blocking(move || measure_and_sweep(&dir, sweep)).await;
        if let Ok((bytes, files, removed)) = measured {
            let counters = &fleet.counters;
            counters.scratch_bytes.store(bytes, Ordering::Relaxed);
            counters.scratch_files.store(files, Ordering::Relaxed);
            counters
                .scratch_removed
                .fetch_add(removed, Ordering::Relaxed);
        }
    }
}

/// (bytes, files) left in `dir`, and how many were removed.
fn measure_and_sweep(dir: &Path, sweep: bool) -> (u64, u64, u64) {
    let (mut bytes, mut files, mut removed) = (0, 0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0, 0);
    };
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let old = metadata
            .modified()
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > SCRATCH_MAX_AGE);
        if sweep && old && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
            continue;
        }
        bytes += metadata.len();
        files += 1;
    }
    (bytes, files, removed)
}

/// A scratch file, removed when dropped unless the fleet leaks.
struct ScratchFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn stream(State(fleet): State<Arc<Fleet>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| call(socket, fleet))
}

/// Who a call is, once its `start` came.
#[derive(Debug, Clone)]
struct Caller {
    stream_sid: String,
    call_sid: String,
}

/// One call: reads the caller's media into the endpointer and hands each finished turn to
/// the call's answering task.
async fn call(socket: WebSocket, fleet: Arc<Fleet>) {
    let (mut sender, mut receiver) = socket.split();
    let (outgoing, mut outbox) = mpsc::channel::<String>(1024);
    let writer = tokio::spawn(async move {
        while let Some(text) = outbox.recv().await {
            if sender.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        let _ = sender.close().await;
    });
    let mut endpointer = Endpointer::default();
    let mut digits = String::new();
    let mut turns: Option<mpsc::UnboundedSender<Turn>> = None;
    let mut answering = None;
    while let Some(Ok(message)) = receiver.next().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        match event["event"].as_str() {
            Some("start") if turns.is_none() => {
                let start = &event["start"];
                let caller = Caller {
                    stream_sid: start["streamSid"]
                        .as_str()
                        .or(event["streamSid"].as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    call_sid: start["callSid"].as_str().unwrap_or("CAunknown").to_owned(),
                };
                bump(&fleet.counters.calls_handled);
                let (sender, receiver) = mpsc::unbounded_channel();
                turns = Some(sender);
                answering = Some(tokio::spawn(answer_turns(
                    Arc::clone(&fleet),
                    caller,
                    receiver,
                    outgoing.clone(),
                )));
            }
            Some("media") => {
                let Some(payload) = event["media"]["payload"].as_str() else {
                    continue;
                };
                let Ok(codes) = BASE64.decode(payload) else {
                    continue;
                };
                let samples: Vec<i16> = codes.iter().map(|&code| sound::decode(code)).collect();
                for spoken in endpointer.push(&samples) {
                    if let Some(turns) = &turns {
                        let _ = turns.send(Turn::Spoke(spoken));
                    }
                }
            }
            Some("dtmf") => match event["dtmf"]["digit"].as_str() {
                Some("#") => {
                    if let Some(turns) = &turns {
                        let _ = turns.send(Turn::Pressed(std::mem::take(&mut digits)));
                    }
                }
                Some(digit) if digits.len() < 32 => digits.push_str(digit),
                _ => {}
            },
            Some("stop") => break,
            _ => {}
        }
    }
    // The caller is gone: a turn still being answered is dropped with its scratch file.
    if let Some(answering) = answering {
        answering.abort();
        let _ = answering.await;
        bump(&fleet.counters.calls_ended);
    }
    drop(outgoing);
    let _ = writer.await;
}

/// Answers a call's turns one after the other, on the call's own HTTP clients (so each
/// call's requests, retries included, keep to their own connections).
async fn answer_turns(
    fleet: Arc<Fleet>,
    caller: Caller,
    mut turns: mpsc::UnboundedReceiver<Turn>,
    outgoing: mpsc::Sender<String>,
) {
    let llm = reqwest::Client::new();
    let tts = reqwest::Client::new();
    let mut number = 0u64;
    while let Some(turn) = turns.recv().await {
        number += 1;
        bump(&fleet.counters.turns);
        let audio = answer(&fleet, &caller, &llm, &tts, number, &turn).await;
        let Some((audio, _scratch)) = audio else {
            bump(&fleet.counters.turns_unanswered);
            continue;
        };
        for chunk in audio.chunks(FRAME) {
            let media = json!({
                "event": "media",
                "streamSid": caller.stream_sid,
                "media": {"payload": BASE64.encode(chunk)},
            });
            if outgoing.send(media.to_string()).await.is_err() {
                return;
            }
        }
        let mark = json!({"event": "mark", "streamSid": caller.stream_sid, "mark": {"name": format!("turn-{number}")}});
        if outgoing.send(mark.to_string()).await.is_err() {
            return;
        }
        // `_scratch` is dropped here, after its audio went out: the file is removed.
    }
}

/// The mu-law audio answering one turn (and the scratch file it came through), or None when
/// the fleet leaves the turn unanswered.
async fn answer(
    fleet: &Fleet,
    caller: &Caller,
    llm: &reqwest::Client,
    tts: &reqwest::Client,
    number: u64,
    turn: &Turn,
) -> Option<(Vec<u8>, Option<ScratchFile>)> {
    if fleet.wedged.load(Ordering::Relaxed) {
        return None;
    }
    let bad_arguments = if fleet.config.behaviour == Behaviour::CrashOnBadInput {
        BadArguments::Crash
    } else {
        BadArguments::Refuse
    };
    let sentence = agent::reply(
        llm,
        &fleet.config.llm_url,
        &caller.call_sid,
        number,
        turn,
        bad_arguments,
    )
    .await;
    let sentence = match sentence {
        Ok((sentence, refused)) => {
            if refused {
                bump(&fleet.counters.tool_rejections);
                *lock(&fleet.last_rejection) = Some(Instant::now());
            }
            sentence
        }
        Err(error) => {
            eprintln!("{LLM_FAILED} {}: {error}", caller.call_sid);
            bump(&fleet.counters.llm_failures);
            return Some((fleet.apology.clone(), None));
        }
    };
    let wav = speak(fleet, tts, &sentence).await;
    if fleet.wedged.load(Ordering::Relaxed) {
        return None;
    }
    let Some(wav) = wav else {
        bump(&fleet.counters.tts_gave_up);
        return Some((fleet.apology.clone(), None));
    };
    let scratch = ScratchFile {
        path: fleet
            .config
            .scratch_dir
            .join(format!("indie-{}-{number}.wav", caller.call_sid)),
        keep: fleet.leaking(),
    };
    // Through a file, as audio workers do: written, read back, played, removed.
    let read_back = match tokio::fs::write(&scratch.path, &wav).await {
        Ok(()) => tokio::fs::read(&scratch.path).await.ok(),
        Err(_) => None,
    };
    let audio = read_back
        .and_then(|bytes| sound::read_wav(&bytes).ok())
        .map(|(samples, rate)| {
            sound::to_8khz(&samples, rate)
                .into_iter()
                .map(sound::encode)
                .collect()
        });
    Some((
        audio.unwrap_or_else(|| fleet.apology.clone()),
        Some(scratch),
    ))
}

/// WAV audio for `sentence`, retried as the fleet's behaviour says; None when it gave up.
async fn speak(fleet: &Fleet, client: &reqwest::Client, sentence: &str) -> Option<bytes::Bytes> {
    let policy = if fleet.config.behaviour == Behaviour::ConstantRetries {
        RetryPolicy::Constant
    } else {
        RetryPolicy::Backoff
    };
    let mut attempts = 0u64;
    tts::synthesize(client, &fleet.config.tts_url, sentence, policy, |attempt| {
        attempts += 1;
        if attempts > 1 {
            bump(&fleet.counters.tts_retries);
        }
        let code = attempt
            .status
            .map_or_else(|| "none".to_owned(), |status| status.to_string());
        *lock(&fleet.counters.tts_status).entry(code).or_insert(0) += 1;
        if attempt.status == Some(429) {
            *lock(&fleet.last_429) = Some(Instant::now());
            if fleet.config.behaviour == Behaviour::NeverRecovers {
                fleet.wedged.store(true, Ordering::Relaxed);
                return Next::Stop;
            }
        }
        Next::Retry
    })
    .await
}

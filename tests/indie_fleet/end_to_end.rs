//! The indie fleet as a process, without voxsoak's grader: a hand-written Media Streams
//! caller speaks a fixture utterance to it, with voxsoak's OpenAI-compatible stand-ins as
//! its LLM and TTS (the services it would call in production) and a bare alert receiver.
//! What each behaviour does here is what the verdict tests then ask voxsoak to see.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use voxsoak::standin::llm::{LlmBehaviour, LlmControl, LlmFault};
use voxsoak::standin::tts::{TtsBehaviour, TtsControl, TtsFault};
use voxsoak::standin::{llm, tts};

use super::Behaviour;
use super::process::{IndieFleet, Wiring};
use super::sound::{self, FRAME};

/// The fleet's dependencies for one test: the stand-ins and an alert receiver.
struct Backends {
    tts: Arc<TtsControl>,
    llm: Arc<LlmControl>,
    wiring: Wiring,
    alerts: Arc<Mutex<Vec<Value>>>,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Backends {
    async fn start() -> Backends {
        let stop = CancellationToken::new();
        let tts_control = TtsControl::new(TtsBehaviour::default(), 1);
        let llm_control = LlmControl::new(LlmBehaviour::default(), 1);
        let listener = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let tts_server = tts::spawn(
            listener().await.unwrap(),
            Arc::clone(&tts_control),
            stop.clone(),
        )
        .await
        .unwrap();
        let llm_server = llm::spawn(
            listener().await.unwrap(),
            Arc::clone(&llm_control),
            stop.clone(),
        )
        .await
        .unwrap();
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let receiver = listener().await.unwrap();
        let alert_address = receiver.local_addr().unwrap();
        let router = Router::new()
            .route("/alerts", post(receive_alert))
            .with_state(Arc::clone(&alerts));
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(receiver, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        let dir = tempfile::tempdir().unwrap();
        Backends {
            tts: tts_control,
            llm: llm_control,
            wiring: Wiring {
                llm_url: llm_server.base_url(),
                tts_url: tts_server.base_url(),
                alert_url: Some(format!("http://{alert_address}/alerts")),
                scratch_dir: dir.path().join("scratch"),
                scratch_budget: None,
                pid_file: Some(dir.path().join("fleet.pid")),
            },
            alerts,
            _dir: dir,
            stop,
        }
    }

    /// TTS answers 429 (without `Retry-After`) to every request, or speaks again.
    fn throttle(&self, on: bool) {
        let fault = if on {
            TtsFault::RateLimited { retry_after: None }
        } else {
            TtsFault::None
        };
        self.tts.set(TtsBehaviour {
            fault,
            ..TtsBehaviour::default()
        });
    }

    fn fleet(&self, behaviour: Behaviour) -> IndieFleet {
        IndieFleet::start(behaviour, &self.wiring)
    }

    /// The alert names posted so far, with their status: `SpeechBackendThrottled firing`.
    fn alerts(&self) -> Vec<String> {
        self.alerts
            .lock()
            .unwrap()
            .iter()
            .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
            .map(|alert| {
                format!(
                    "{} {}",
                    alert["labels"]["alertname"].as_str().unwrap_or("?"),
                    alert["status"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    /// Whether `alert` (`NAME status`) arrives within `limit`: alerts are evaluated and
    /// posted apart from the calls that cause them.
    async fn alerted(&self, alert: &str, limit: Duration) -> bool {
        eventually(limit, || self.alerts().iter().any(|seen| seen == alert)).await
    }

    fn scratch_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.wiring.scratch_dir)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive_alert(State(alerts): State<Arc<Mutex<Vec<Value>>>>, body: Bytes) {
    if let Ok(body) = serde_json::from_slice(&body) {
        alerts.lock().unwrap().push(body);
    }
}

/// What a caller heard in answer to one utterance.
#[derive(Debug, Default)]
struct Heard {
    /// Mean absolute level of the agent's audio.
    level: f64,
    audio_ms: usize,
    marks: Vec<String>,
}

/// How long a caller waits for an answer: the fleet answers within a second, or within
/// about four when speech synthesis is throttled and it gives up.
const LISTEN: Duration = Duration::from_secs(7);

/// One call of `turns` turns (the fixture utterance, then silence) on the fleet's stream;
/// what was heard after each, or None for a turn left unanswered (no mark) for [`LISTEN`].
async fn call(fleet: &SocketAddr, turns: usize) -> Vec<Option<Heard>> {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{fleet}/stream"))
        .await
        .expect("the stream accepts a call");
    let stream_sid = "MZ00000000000000000000000000000001";
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/order-status.wav");
    let (samples, rate) = sound::read_wav(&std::fs::read(fixture).unwrap()).unwrap();
    let mut utterance: Vec<u8> = sound::to_8khz(&samples, rate)
        .into_iter()
        .map(sound::encode)
        .collect();
    utterance.extend(std::iter::repeat_n(0xFF, 8 * 800));
    let send = |value: Value| Message::text(value.to_string());
    socket
        .send(send(
            json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        ))
        .await
        .unwrap();
    socket
        .send(send(json!({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
            "streamSid": stream_sid, "accountSid": "AC00000000000000000000000000000001",
            "callSid": "CA00000000000000000000000000000001", "tracks": ["inbound"], "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})))
        .await
        .unwrap();
    let mut heard = Vec::new();
    for _ in 0..turns {
        for chunk in utterance.chunks(FRAME) {
            let media = json!({"event": "media", "streamSid": stream_sid, "media": {"track": "inbound", "payload": BASE64.encode(chunk)}});
            socket.send(send(media)).await.unwrap();
        }
        let mut answer = Heard::default();
        let mut pcm = Vec::new();
        let listened = tokio::time::timeout(LISTEN, async {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let event: Value = serde_json::from_str(text.as_str()).unwrap();
                assert_eq!(event["streamSid"], stream_sid, "{event}");
                match event["event"].as_str() {
                    Some("media") => {
                        let codes = BASE64
                            .decode(event["media"]["payload"].as_str().unwrap())
                            .unwrap();
                        pcm.extend(codes.iter().map(|&code| sound::decode(code)));
                    }
                    Some("mark") => {
                        answer
                            .marks
                            .push(event["mark"]["name"].as_str().unwrap().to_owned());
                        return true;
                    }
                    other => panic!("unexpected {other:?} from the fleet"),
                }
            }
            false
        })
        .await;
        answer.level = sound::level(&pcm);
        answer.audio_ms = pcm.len() / 8;
        heard.push((listened == Ok(true)).then_some(answer));
    }
    let _ = socket
        .send(send(json!({"event": "stop", "streamSid": stream_sid})))
        .await;
    heard
}

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the fleet answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Waits up to `limit` for `check`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_fleet_answers_through_a_scratch_file_and_reports_under_its_own_names() {
    let backends = Backends::start().await;
    let fleet = backends.fleet(Behaviour::Healthy);
    let twiml = reqwest::Client::new()
        .post(format!("{}/voice", fleet.base_url()))
        .form(&[("CallSid", "CA1"), ("From", "+15005550006")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        twiml.contains(&format!(
            r#"<Connect><Stream url="ws://{}/stream"/></Connect>"#,
            fleet.address
        )),
        "{twiml}"
    );
    let heard = call(&fleet.address, 2).await;
    for (turn, answer) in heard.iter().enumerate() {
        let answer = answer
            .as_ref()
            .unwrap_or_else(|| panic!("turn {turn} unanswered:\n{}", fleet.output()));
        assert!(answer.level > 500.0 && answer.audio_ms >= 400, "{answer:?}");
        assert_eq!(answer.marks, [format!("turn-{}", turn + 1)]);
    }
    assert_eq!(backends.tts.requests(), 2, "one speech request per turn");
    assert!(
        backends.llm.requests() >= 4,
        "the tool was called, then the answer asked for"
    );
    assert!(
        eventually(Duration::from_secs(2), || backends
            .scratch_files()
            .is_empty())
        .await,
        "{:?}",
        backends.scratch_files()
    );
    let pid = std::fs::read_to_string(backends.wiring.pid_file.as_ref().unwrap()).unwrap();
    assert_eq!(pid.trim(), fleet.pid().to_string());
    // The scratch dir is measured once a second: wait for a measurement after the removal.
    let mut metrics = String::new();
    for _ in 0..30 {
        let (status, page) = get(format!("{}/metrics", fleet.base_url())).await;
        assert_eq!(status, 200);
        metrics = page;
        if metrics
            .lines()
            .any(|line| line == "indie_scratch_dir_bytes 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for series in [
        "indie_calls_handled_total 1",
        "indie_turns_total 2",
        "indie_tts_status_total{code=\"200\"} 2",
        "indie_scratch_dir_bytes 0",
    ] {
        assert!(
            metrics.lines().any(|line| line == series),
            "{series} in\n{metrics}"
        );
    }
    let rss: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("indie_memory_rss_bytes "))
        .and_then(|value| value.parse().ok())
        .expect("indie_memory_rss_bytes");
    assert!(rss > 1e6, "{rss}");
    assert!(
        !metrics.contains("process_resident_memory_bytes") && !metrics.contains("\ntemp_dir_bytes")
    );
    assert_eq!(get(format!("{}/health", fleet.base_url())).await.0, 200);
    assert!(backends.alerts().is_empty(), "{:?}", backends.alerts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_fleet_alerts_apologises_and_resolves() {
    let backends = Backends::start().await;
    let fleet = backends.fleet(Behaviour::Healthy);
    backends.throttle(true);
    let heard = call(&fleet.address, 1).await;
    let answer = heard[0]
        .as_ref()
        .expect("the apology prompt answers the turn");
    assert_eq!(answer.audio_ms, 700, "the apology prompt, after giving up");
    let throttled = backends.tts.requests();
    assert!(
        (4..=6).contains(&throttled),
        "backoff within 4 s: {throttled} requests"
    );
    assert!(
        backends
            .alerted("SpeechBackendThrottled firing", Duration::from_secs(2))
            .await,
        "{:?}",
        backends.alerts()
    );
    assert_eq!(
        get(format!("{}/health", fleet.base_url())).await.0,
        200,
        "throttled is not down"
    );
    backends.throttle(false);
    assert!(
        backends
            .alerted("SpeechBackendThrottled resolved", Duration::from_secs(8))
            .await,
        "{:?}",
        backends.alerts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_recovering_fleet_goes_unhealthy_and_silent_for_good() {
    let backends = Backends::start().await;
    let fleet = backends.fleet(Behaviour::NeverRecovers);
    backends.throttle(true);
    let first = call(&fleet.address, 1).await;
    assert!(first[0].is_none(), "the throttled turn goes unanswered");
    backends.throttle(false);
    assert_eq!(get(format!("{}/health", fleet.base_url())).await.0, 503);
    let later = call(&fleet.address, 1).await;
    assert!(later[0].is_none(), "and so does every later one");
    assert_eq!(backends.tts.requests(), 1, "nothing after the first 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_fleet_keeps_its_scratch_files() {
    let backends = Backends::start().await;
    let fleet = backends.fleet(Behaviour::LeaksTempFiles);
    let heard = call(&fleet.address, 2).await;
    assert!(heard.iter().all(Option::is_some), "it still answers");
    let mut files = backends.scratch_files();
    files.sort();
    assert_eq!(
        files,
        [
            "indie-CA00000000000000000000000000000001-1.wav",
            "indie-CA00000000000000000000000000000001-2.wav"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tool_arguments_are_refused_or_crash_the_process() {
    let backends = Backends::start().await;
    backends.llm.set(LlmBehaviour {
        fault: LlmFault::EmptyToolParams,
        ..LlmBehaviour::default()
    });
    let careful = backends.fleet(Behaviour::Healthy);
    let mut crashing = backends.fleet(Behaviour::CrashOnBadInput);
    let heard = call(&careful.address, 1).await;
    assert!(heard[0].is_some(), "the model's apology is spoken");
    assert!(
        backends
            .alerted("ToolArgumentsRejected firing", Duration::from_secs(2))
            .await,
        "{:?}",
        backends.alerts()
    );
    let heard = call(&crashing.address, 1).await;
    assert!(heard[0].is_none());
    let mut exit = None;
    assert!(
        eventually(Duration::from_secs(5), || {
            exit = crashing.exit_status();
            exit.is_some()
        })
        .await
    );
    assert_eq!(
        exit.and_then(|status| status.code()),
        Some(1),
        "{}",
        crashing.output()
    );
}

//! What voxsoak writes and prints is safe to show: credentials in a scenario's URLs (and in
//! the URLs a fleet hands back) are masked in the journal, `summary.json`, stdout and
//! stderr; text a fleet sends (alert names, health bodies, close reasons) and names in a
//! scenario reach the terminal escaped, never as control or bidi characters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use voxsoak::sink::{self, SinkOptions};

use crate::chaos::free_port;
use crate::util::{ScenarioFile, voxsoak_exe, within};

const SECRETS: [&str; 2] = ["secret", "abc123"];

/// What a `voxsoak` command printed, and how it exited.
struct Printed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn voxsoak(args: &[&str]) -> Printed {
    let output = tokio::process::Command::new(voxsoak_exe())
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run voxsoak");
    Printed {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// `voxsoak run` of `scenario` into its out dir, bounded in time.
async fn run(scenario: &ScenarioFile) -> Printed {
    let out = scenario.out_dir();
    let args = [
        "run",
        scenario.path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    within(Duration::from_secs(90), voxsoak(&args)).await
}

/// Starts `router` on a free loopback port.
async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// A fleet's front door that takes any credentials: its voice webhook answers TwiML whose
/// stream URL carries credentials too (to the sink for odd calls; to a host outside
/// `allow_hosts` for even ones, so a failure example quotes that URL), with a `<Parameter>`
/// named `token`; `/health` and `/metrics` answer.
async fn front_door(sink: SocketAddr) -> SocketAddr {
    let calls = Arc::new(AtomicU64::new(0));
    let voice = move || {
        let calls = Arc::clone(&calls);
        async move {
            let host = if calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                sink.to_string()
            } else {
                "10.255.255.1".to_owned()
            };
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="ws://user:secret@{host}/stream?token=abc123&amp;tenant=acme"><Parameter name="token" value="abc123"/></Stream></Connect></Response>"#
            )
        }
    };
    serve(
        Router::new()
            .route("/voice", post(voice))
            .route("/health", get(|| async { "ok" }))
            .route(
                "/metrics",
                get(|| async { "# TYPE calls_active gauge\ncalls_active 1\n" }),
            ),
    )
    .await
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret:?} in {what}:\n{text}");
    }
}

/// The scenario's webhook, health and metrics URLs carry `user:secret@` and
/// `?token=abc123`, and so does the stream URL the fleet answers: none of the run's files
/// nor anything `run`, `report`, `plan` or `validate` print holds them; the masked form is
/// there instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_urls_reach_no_file_and_no_output() {
    let stop = CancellationToken::new();
    let sink = sink::spawn(SinkOptions::default(), stop.clone())
        .await
        .unwrap();
    let fleet = front_door(sink.address).await;
    let scenario = ScenarioFile::new(&format!(
        r#"
name = "credentials"
[target]
webhook_url = "http://user:secret@{fleet}/voice?token=abc123"
[load]
stages = [{{ ramp_to = 2, over = "500ms" }}, {{ hold = "2s" }}]
[calls]
turn_timeout = "8s"
synthetic = {{ count = 1, min = "1s", max = "1s" }}
[[scripts]]
name = "talk"
turns = 1
[observe]
health_url = "http://user:secret@{fleet}/health?token=abc123"
health_interval = "200ms"
metrics_url = "http://user:secret@{fleet}/metrics?token=abc123"
"#
    ));
    let path = scenario.path.to_str().unwrap();
    let out = scenario.out_dir();
    let out_arg = out.to_str().unwrap();
    let run = run(&scenario).await;
    assert!(
        matches!(run.code, Some(0 | 1)),
        "the run was carried out: {:?}\n{}",
        run.code,
        run.stderr
    );
    assert_no_secret("voxsoak run stdout", &run.stdout);
    assert_no_secret("voxsoak run stderr", &run.stderr);
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert_no_secret("journal.jsonl", &journal);
    assert_no_secret("summary.json", &summary);

    let masked_webhook = format!("http://***@{fleet}/voice?token=***");
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["target"], masked_webhook.as_str());
    assert!(
        journal.contains(&format!("http://***@{fleet}/health?token=***"))
            && journal.contains(&format!("http://***@{fleet}/metrics?token=***")),
        "the observers record names the masked URLs: {journal}"
    );
    // The stream URL the fleet answered with, in the failure of a call it sent outside
    // allow_hosts (without its query string, which Twilio drops too).
    let examples = summary["failure_examples"].to_string();
    assert!(
        examples.contains("of ws://***@10.255.255.1/stream is not"),
        "{examples}"
    );
    assert!(
        run.stdout
            .contains("of ws://***@10.255.255.1/stream is not"),
        "the summary on stdout shows the masked example:\n{}",
        run.stdout
    );
    assert!(
        summary["calls"]["completed"].as_u64() >= Some(1),
        "calls through the credentialed stream URL worked: {}",
        summary["calls"]
    );

    let report = voxsoak(&["report", out_arg]).await;
    assert_no_secret("voxsoak report stdout", &report.stdout);
    assert_no_secret("voxsoak report stderr", &report.stderr);
    assert_no_secret(
        "the rebuilt summary.json",
        &std::fs::read_to_string(out.join("summary.json")).unwrap(),
    );

    for command in ["plan", "validate"] {
        let printed = voxsoak(&[command, path]).await;
        assert_eq!(printed.code, Some(0), "{command}: {}", printed.stderr);
        assert_no_secret(command, &printed.stdout);
        assert_no_secret(command, &printed.stderr);
    }
    let plan = voxsoak(&["plan", path]).await.stdout;
    assert!(plan.contains(&masked_webhook), "{plan}");
    assert!(
        plan.contains(&format!("GET http://***@{fleet}/health?token=***")),
        "{plan}"
    );
    stop.cancel();
}

/// A scenario name is free text, and a URL with credentials pasted into it is masked in what
/// `validate` (its ok line) and `plan` print, as any URL is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_scenario_name_are_masked_by_validate_and_plan() {
    let scenario = ScenarioFile::new(&format!(
        r#"
name = "staging http://user:secret@fleet.example/voice?token=abc123"
[target]
webhook_url = "http://127.0.0.1:{}/voice"
[load]
stages = [{{ ramp_to = 1, over = "1s" }}]
"#,
        free_port()
    ));
    let path = scenario.path.to_str().unwrap();
    for command in ["validate", "plan"] {
        let printed = voxsoak(&[command, path]).await;
        assert_eq!(printed.code, Some(0), "{command}: {}", printed.stderr);
        assert_no_secret(command, &printed.stdout);
        assert_no_secret(command, &printed.stderr);
        assert!(
            printed
                .stdout
                .contains("staging http://***@fleet.example/voice?token=***"),
            "{command}: {}",
            printed.stdout
        );
    }
}

/// A target that cannot be reached is an error that names its URL: masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_named_without_its_credentials() {
    let port = free_port();
    let scenario = ScenarioFile::new(&format!(
        r#"
[target]
webhook_url = "http://user:secret@127.0.0.1:{port}/voice?token=abc123"
[load]
stages = [{{ ramp_to = 1, over = "1s" }}]
"#
    ));
    let run = run(&scenario).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_no_secret("stderr", &run.stderr);
    assert_no_secret("stdout", &run.stdout);
    assert!(
        run.stderr
            .contains(&format!("http://***@127.0.0.1:{port}/voice?token=***")),
        "{}",
        run.stderr
    );
}

/// An alert name with an escape sequence and a right-to-left override.
const EVIL_ALERT: &str = "Tts\u{1b}[2J\u{1b}]0;pwned\u{7}Limited\u{202e}gnidih";
/// A health body with control characters.
const EVIL_HEALTH: &str = "down\u{1b}[31m\u{0}\u{7f}\u{9b}1A\u{2066}over";
/// A close reason with the same.
const EVIL_CLOSE: &str = "bye\u{1b}[H\u{202e}olleh";
/// A scenario name with the same.
const EVIL_NAME: &str = r"hostile\u001b[1;1H\u202Ename";

/// Whether `text` holds a character no terminal should get raw.
fn raw_hidden(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| c != '\n' && voxsoak::escape::is_hidden(c))
}

/// A fleet whose stream closes each call after a second of caller audio with
/// [`EVIL_CLOSE`], whose health answers 503 with [`EVIL_HEALTH`], and which posts
/// [`EVIL_ALERT`] firing to the harness's alert receiver at its first health probe.
async fn hostile_fleet(alerts: SocketAddr) -> (SocketAddr, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut media = 0;
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message
                        && text.as_str().contains(r#""event":"media""#)
                    {
                        media += 1;
                        if media == 50 {
                            break;
                        }
                    }
                }
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: EVIL_CLOSE.into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                while let Some(Ok(_)) = socket.next().await {}
            });
        }
    });
    let posted = Arc::new(tokio::sync::OnceCell::new());
    let health = move || {
        let posted = Arc::clone(&posted);
        async move {
            posted
                .get_or_init(|| async {
                    let answer = reqwest::Client::new()
                        .post(format!("http://{alerts}/alerts"))
                        .json(&serde_json::json!({"name": EVIL_ALERT, "status": "firing"}))
                        .send()
                        .await
                        .expect("the alert receiver listens before the health poller");
                    assert!(answer.status().is_success(), "{}", answer.status());
                })
                .await;
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, EVIL_HEALTH)
        }
    };
    let ops = serve(Router::new().route("/health", get(health))).await;
    (stream, ops)
}

/// A fleet's alert name, health body and close reason, and a scenario's name, carry escape
/// sequences, control characters and bidi overrides: `voxsoak run` and `voxsoak report`
/// print none of them raw, but escaped (`\x1b`, `\u{202e}`); the journal keeps the fleet's
/// text as it came, written as JSON escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_text_reaches_the_terminal_escaped() {
    let alerts: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (stream, ops) = hostile_fleet(alerts).await;
    let scenario = ScenarioFile::new(&format!(
        r#"
name = "{EVIL_NAME}"
[target]
stream_url = "ws://{stream}/stream"
[load]
calls_per_minute = 120
duration = "1s"
[calls]
synthetic = {{ count = 1, min = "3s", max = "3s" }}
[[scripts]]
name = "short"
steps = [{{ say = "synthetic", listen = false }}]
[slo]
no_unprovoked_alerts = true
[observe]
health_url = "http://{ops}/health"
health_interval = "200ms"
alerts_listen = "{alerts}"
"#
    ));
    let path = scenario.path.to_str().unwrap();
    let out = scenario.out_dir();
    let out_arg = out.to_str().unwrap();
    let run = run(&scenario).await;
    assert_eq!(
        run.code,
        Some(1),
        "the unprovoked alert and the hung-up calls fail it:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let report = voxsoak(&["report", out_arg]).await;
    for (what, text) in [
        ("run stdout", &run.stdout),
        ("run stderr", &run.stderr),
        ("report stdout", &report.stdout),
        ("report stderr", &report.stderr),
    ] {
        assert_eq!(
            raw_hidden(text),
            None,
            "a raw character in {what}:\n{text:?}"
        );
    }
    for printed in [&run.stdout, &report.stdout] {
        for shown in [
            r"voxsoak hostile\x1b[1;1H\u{202e}name: FAIL",
            r"Tts\x1b[2J\x1b]0;pwned\x07Limited\u{202e}gnidih at ",
            r#"closed by the fleet with 1000 "bye\x1b[H\u{202e}olleh""#,
        ] {
            assert!(printed.contains(shown), "{shown:?} not in:\n{printed}");
        }
    }

    let plan = voxsoak(&["plan", path]).await;
    assert_eq!(raw_hidden(&plan.stdout), None, "{:?}", plan.stdout);
    assert!(
        plan.stdout.contains(r"hostile\x1b[1;1H\u{202e}name"),
        "{}",
        plan.stdout
    );

    for file in ["journal.jsonl", "summary.json"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert_eq!(raw_hidden(&text), None, "a raw character in {file}");
    }
    let records = voxsoak::journal::read(&out.join("journal.jsonl")).unwrap();
    let first = |event: &str| {
        records
            .records
            .iter()
            .find(|record| record["event"] == event)
            .unwrap_or_else(|| panic!("no {event} record"))
            .clone()
    };
    assert_eq!(
        first("alert")["name"],
        EVIL_ALERT,
        "kept as the fleet sent it"
    );
    assert_eq!(first("health")["detail"], EVIL_HEALTH);
    assert_eq!(
        first("run_started")["scenario"],
        "hostile\u{1b}[1;1H\u{202e}name"
    );
}

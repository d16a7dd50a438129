//! Fleets that misbehave: garbage, binary frames, a 50 MB message, silence, an early close,
//! a handshake that never completes. Each is counted in the call's outcome; none panics or
//! hangs the harness.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use voxsoak::call::CallOutcome;
use voxsoak::report::Summary;

use crate::util::{ScenarioFile, within};

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Sends invalid JSON, an unknown event and a message for another stream.
    Garbage,
    /// Sends a binary WebSocket frame.
    BinaryFrame,
    /// Sends one 50 MB text message.
    HugeMessage,
    /// Closes the stream right after `start` with 1000 "call over".
    CloseAfterStart,
    /// Drops the TCP connection right after `start`, with no WebSocket close: a killed
    /// process.
    DropAfterStart,
    /// Reads everything and never says a word.
    Silent,
    /// Accepts TCP and never completes the WebSocket handshake.
    NoHandshake,
}

/// A Media Streams server on a free loopback port that behaves as told.
async fn misbehaving_fleet(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            if let Behaviour::NoHandshake = behaviour {
                held.push(stream);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let mut stream_sid = String::new();
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let event: serde_json::Value =
                        serde_json::from_str(text.as_str()).unwrap_or_default();
                    if event["event"] != "start" {
                        continue;
                    }
                    stream_sid = event["streamSid"].as_str().unwrap_or_default().to_string();
                    break;
                }
                let sent = match behaviour {
                    Behaviour::Garbage => {
                        let wrong =
                            r#"{"event":"clear","streamSid":"MZ00000000000000000000000000000000"}"#;
                        let unknown = format!(r#"{{"event":"dance","streamSid":"{stream_sid}"}}"#);
                        let mut result = socket.send(Message::text("{not json")).await;
                        for text in [unknown.as_str(), wrong] {
                            result = result.and(socket.send(Message::text(text.to_string())).await);
                        }
                        result
                    }
                    Behaviour::BinaryFrame => socket.send(Message::binary(vec![0u8; 320])).await,
                    Behaviour::HugeMessage => {
                        // Written by hand, frame header then 64 KiB at a time, so this server
                        // holds no 50 MB either: the test measures the harness's memory.
                        send_huge_text_frame(socket.get_mut(), 50 << 20).await;
                        return;
                    }
                    Behaviour::CloseAfterStart => {
                        let goodbye = CloseFrame {
                            code: CloseCode::Normal,
                            reason: "call over".into(),
                        };
                        let _ = socket.close(Some(goodbye)).await;
                        return;
                    }
                    Behaviour::DropAfterStart => {
                        let mut tcp = socket.into_inner();
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
                        return;
                    }
                    Behaviour::Silent | Behaviour::NoHandshake => Ok(()),
                };
                if sent.is_err() {
                    return;
                }
                // Keep reading (and discarding) until the harness hangs up.
                while let Some(Ok(_)) = socket.next().await {}
            });
        }
    });
    address
}

/// Writes one unmasked text frame of `length` bytes (server to client) straight to the socket.
async fn send_huge_text_frame(stream: &mut tokio::net::TcpStream, length: u64) {
    use tokio::io::AsyncWriteExt;
    let mut header = vec![0x81u8, 127];
    header.extend_from_slice(&length.to_be_bytes());
    if stream.write_all(&header).await.is_err() {
        return;
    }
    let chunk = [b'A'; 64 << 10];
    let mut left = length;
    while left > 0 {
        let take = left.min(chunk.len() as u64) as usize;
        if stream.write_all(&chunk[..take]).await.is_err() {
            return;
        }
        left -= take as u64;
    }
}

/// A scenario of two calls to the fleet at `address`, speaking one synthetic 1 s
/// utterance, with more `[calls]` keys and the script's `turns` or `steps` line.
fn two_calls_scenario(address: SocketAddr, calls: &str, script: &str) -> ScenarioFile {
    ScenarioFile::new(&format!(
        r#"
[target]
stream_url = "ws://{address}/stream"
[load]
calls_per_minute = 120
duration = "1s"
[calls]
synthetic = {{ count = 1, min = "1s", max = "1s" }}
{calls}
[[scripts]]
name = "short"
{script}
"#
    ))
}

/// Two calls to the fleet; each says one synthetic utterance. With `listen`, it waits for a
/// reply (which these fleets never give) for at most 2 s.
async fn two_calls(address: SocketAddr, listen: bool) -> Summary {
    let scenario = two_calls_scenario(
        address,
        "connect_timeout = \"2s\"\nturn_timeout = \"2s\"",
        &format!("steps = [{{ say = \"synthetic\", listen = {listen} }}, {{ pause = \"500ms\" }}]"),
    );
    within(Duration::from_secs(45), scenario.run()).await
}

fn only_outcome(summary: &Summary, outcome: CallOutcome) {
    assert_eq!(summary.calls.started, 2, "{:?}", summary.calls);
    assert_eq!(
        summary.calls.by_outcome[outcome.as_str()],
        2,
        "expected every call to end as {outcome}: {:?} {:?}",
        summary.calls.by_outcome,
        summary.failure_examples
    );
    assert_eq!(summary.calls.failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_by_kind() {
    let summary = two_calls(misbehaving_fleet(Behaviour::Garbage).await, false).await;
    only_outcome(&summary, CallOutcome::ProtocolError);
    for kind in ["invalid_json", "unknown_event", "wrong_stream_sid"] {
        assert_eq!(
            summary.protocol_errors.get(kind),
            Some(&2),
            "{kind}: {:?}",
            summary.protocol_errors
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_frame_is_a_protocol_error() {
    let summary = two_calls(misbehaving_fleet(Behaviour::BinaryFrame).await, false).await;
    only_outcome(&summary, CallOutcome::ProtocolError);
    assert_eq!(summary.protocol_errors.get("binary_frame"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifty_megabyte_message_is_refused_without_buffering_it() {
    let summary = two_calls(misbehaving_fleet(Behaviour::HugeMessage).await, false).await;
    only_outcome(&summary, CallOutcome::ProtocolError);
    assert_eq!(summary.protocol_errors.get("message_too_big"), Some(&2));
    // Holding 50 MB per call would show (this process hosts the server too, which holds
    // 64 KiB); the harness refuses the message at its frame header.
    assert!(
        summary.harness.rss_mib_max < summary.harness.rss_mib_baseline + 40.0,
        "{:?}",
        summary.harness
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_that_closes_early_hung_up() {
    let summary = two_calls(misbehaving_fleet(Behaviour::CloseAfterStart).await, false).await;
    only_outcome(&summary, CallOutcome::FleetHungUp);
}

/// A fleet that goes away mid-call (killed, crashed) hung up; it broke no protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_that_drops_the_connection_hung_up() {
    let summary = two_calls(misbehaving_fleet(Behaviour::DropAfterStart).await, false).await;
    only_outcome(&summary, CallOutcome::FleetHungUp);
    assert!(
        summary.protocol_errors.is_empty(),
        "{:?}",
        summary.protocol_errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_that_never_answers_times_out_the_turn() {
    let summary = two_calls(misbehaving_fleet(Behaviour::Silent).await, true).await;
    only_outcome(&summary, CallOutcome::TurnTimeout);
    assert!(summary.failure_examples[0].detail.contains("turn_timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_times_out_the_connect() {
    let summary = two_calls(misbehaving_fleet(Behaviour::NoHandshake).await, false).await;
    only_outcome(&summary, CallOutcome::ConnectFailed);
    assert!(
        summary.failure_examples[0].detail.contains("timed out"),
        "{:?}",
        summary.failure_examples
    );
}

/// The journal's `interval` records of a run.
fn interval_records(scenario: &ScenarioFile) -> Vec<serde_json::Value> {
    let journal = std::fs::read_to_string(scenario.out_dir().join("journal.jsonl")).unwrap();
    journal
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["event"] == "interval")
        .collect()
}

/// A fleet that stops answering: the calls wait out a long turn timeout, and meanwhile the
/// interval records show them waiting (and for how long), though no call has ended yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_on_a_silent_fleet_show_in_the_interval_records() {
    let address = misbehaving_fleet(Behaviour::Silent).await;
    let scenario = two_calls_scenario(address, "turn_timeout = \"12s\"", "turns = 1");
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    only_outcome(&summary, CallOutcome::TurnTimeout);
    let records = interval_records(&scenario);
    let hanging: Vec<&serde_json::Value> = records
        .iter()
        .filter(|record| record["waiting"] == 2 && record["longest_wait_ms"].as_u64() >= Some(6000))
        .collect();
    assert!(
        !hanging.is_empty(),
        "no interval shows both calls waiting for 6 s or more: {records:#?}"
    );
    for record in hanging {
        assert_eq!(record["replies"], 0, "{record}");
        assert_eq!(record["completed"], 0, "{record}");
        assert_eq!(record["failed"], 0, "no call had ended yet: {record}");
    }
    let last = records.last().unwrap();
    assert_eq!(last["waiting"], 0, "{last}");
    assert_eq!(last["longest_wait_ms"], 0, "{last}");
}

/// A fleet that crashed (its port refuses connections once the harness's start check got
/// in): a caller of the closed model backs off between attempts, so one caller makes a
/// handful of calls in 10 s, not ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_backs_off_a_fleet_that_refuses_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        // The start check's connection; then the fleet is gone and its port refuses.
        let _ = listener.accept().await;
    });
    let scenario = ScenarioFile::new(&format!(
        r#"
[target]
stream_url = "ws://127.0.0.1:{port}/stream"
[load]
stages = [{{ ramp_to = 1, over = "100ms" }}, {{ hold = "10s" }}]
"#
    ));
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    let calls = &summary.calls;
    // Redials after 1-1.5 s, 2-3 s and 4-6 s: three or four calls in 10 s.
    assert!(
        (3..=4).contains(&calls.started),
        "{calls:?} {:?}",
        summary.failure_examples
    );
    assert_eq!(
        calls.by_outcome[CallOutcome::ConnectFailed.as_str()],
        calls.started,
        "{calls:?}"
    );
    assert!(
        summary
            .failure_examples
            .iter()
            .any(|example| example.detail.contains("refused")),
        "{:?}",
        summary.failure_examples
    );
}

/// A fleet that closes the stream with a code and reason: the interval records count the
/// closes by who closed and the code, and the failure example says what the fleet said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_close_is_counted_by_code_and_explained() {
    let address = misbehaving_fleet(Behaviour::CloseAfterStart).await;
    let scenario = two_calls_scenario(address, "", "turns = 1");
    let summary = within(Duration::from_secs(45), scenario.run()).await;
    let records = interval_records(&scenario);
    only_outcome(&summary, CallOutcome::FleetHungUp);
    let closes: u64 = records
        .iter()
        .filter_map(|record| record["closes"]["fleet 1000"].as_u64())
        .sum();
    assert_eq!(closes, 2, "{records:#?}");
    assert_eq!(
        summary.failure_examples[0].detail,
        r#"closed by the fleet with 1000 "call over" before turn 1 of 1 was answered"#
    );
}

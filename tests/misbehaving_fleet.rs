//! Fleets that misbehave: garbage, binary frames, a 100 MB message, invalid UTF-8, another
//! call's streamSid, silence, an early close, a reset in the middle of a frame, a close
//! never answered, a fleet that stops reading, a ping flood, a handshake that never
//! completes. Each is counted in the call's outcome; none panics or hangs the harness.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use voxsoak::call::{CLOSE_REPLY_WAIT, CallOutcome, MAX_FLEET_MESSAGE};
use voxsoak::report::Summary;

use crate::util::{ScenarioFile, assert_rss_flat, within};

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Sends invalid JSON, an unknown event and a message for another stream.
    Garbage,
    /// Sends a binary WebSocket frame.
    BinaryFrame,
    /// Sends one 100 MB text message.
    HugeMessage,
    /// Sends a text frame whose payload is not UTF-8.
    InvalidUtf8,
    /// Sends media (voiced audio) and a mark for another call's streamSid.
    WrongStreamSid,
    /// Writes half a text frame, then resets the connection (RST, no FIN).
    ResetMidFrame,
    /// Reads until the caller's `stop`, then neither reads, answers the close nor closes.
    NeverCloses,
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
                        // holds no 100 MB either: the test measures the harness's memory.
                        send_huge_text_frame(socket.get_mut(), 100 << 20).await;
                        return;
                    }
                    Behaviour::InvalidUtf8 => {
                        // An unmasked text frame of 4 bytes that are no UTF-8 at all.
                        let frame = [0x81, 4, 0xff, 0xfe, 0xc0, 0x80];
                        socket.get_mut().write_all(&frame).await.map_err(Into::into)
                    }
                    Behaviour::WrongStreamSid => {
                        let other = "MZ00000000000000000000000000000000";
                        let mut result = Ok(());
                        for payload in voiced_payloads(3) {
                            let media =
                                voxsoak::twilio::messages::fleet_media_json(other, &payload);
                            result = result.and(socket.send(Message::text(media)).await);
                        }
                        let mark = voxsoak::twilio::messages::fleet_mark_json(other, "reply-1");
                        result.and(socket.send(Message::text(mark)).await)
                    }
                    Behaviour::ResetMidFrame => {
                        let mut tcp = socket.into_inner();
                        // A text frame of 100 bytes, of which 40 are sent.
                        let mut half = vec![0x81u8, 100];
                        half.extend_from_slice(&[b'{'; 40]);
                        let _ = tcp.write_all(&half).await;
                        let _ = tcp.flush().await;
                        // SO_LINGER 0: the close is a reset, not a FIN.
                        let _ = tcp.set_zero_linger();
                        drop(tcp);
                        return;
                    }
                    Behaviour::NeverCloses => {
                        while let Some(Ok(message)) = socket.next().await {
                            if let Message::Text(text) = message
                                && text.contains(r#""event":"stop""#)
                            {
                                break;
                            }
                        }
                        // Holds the connection unread, unanswered and open (until the test's
                        // runtime ends).
                        std::future::pending::<()>().await;
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

/// `frames` base64 payloads of 20 ms of voiced, speech-like mu-law audio: what the caller
/// would hear as the agent speaking, were it sent for its stream.
fn voiced_payloads(frames: usize) -> Vec<String> {
    let samples = voxsoak::audio::synth::speech_like(7, Duration::from_millis(20 * frames as u64));
    voxsoak::twilio::mulaw::encode_all(&samples)
        .chunks(160)
        .map(|frame| BASE64.encode(frame))
        .collect()
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
    crate::util::two_calls_to(
        &format!("stream_url = \"ws://{address}/stream\""),
        calls,
        script,
    )
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

/// The run counted `count` protocol errors of `kind`.
fn counted(summary: &Summary, kind: &str, count: u64) {
    assert_eq!(
        summary.protocol_errors.get(kind),
        Some(&count),
        "{kind}: {:?}",
        summary.protocol_errors
    );
}

/// The first failure example says `text`.
fn first_failure_says(summary: &Summary, text: &str) {
    assert!(
        summary
            .failure_examples
            .first()
            .is_some_and(|example| example.detail.contains(text)),
        "no {text:?} in {:?}",
        summary.failure_examples
    );
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
        counted(&summary, kind, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_frame_is_a_protocol_error() {
    let summary = two_calls(misbehaving_fleet(Behaviour::BinaryFrame).await, false).await;
    only_outcome(&summary, CallOutcome::ProtocolError);
    counted(&summary, "binary_frame", 2);
}

/// 100 MB in one message: refused at its frame header, over the harness's 4 MiB limit,
/// without reading (let alone holding) the 100 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabyte_message_is_refused_without_buffering_it() {
    let summary = two_calls(misbehaving_fleet(Behaviour::HugeMessage).await, false).await;
    only_outcome(&summary, CallOutcome::ProtocolError);
    counted(&summary, "message_too_big", 2);
    first_failure_says(&summary, "oversized message");
    first_failure_says(&summary, &MAX_FLEET_MESSAGE.to_string());
    // Holding 100 MB per call would show (this process hosts the server too, which holds
    // 64 KiB); the harness refuses the message at its frame header.
    assert_rss_flat(&summary, 40.0);
}

/// A text frame that is not UTF-8 fails the stream (RFC 6455): a protocol error, not a
/// hang-up and not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_frame_is_a_protocol_error() {
    let summary = two_calls(misbehaving_fleet(Behaviour::InvalidUtf8).await, false).await;
    only_outcome(&summary, CallOutcome::ProtocolError);
    counted(&summary, "invalid_utf8", 2);
    first_failure_says(&summary, "not valid UTF-8");
}

/// Media and marks for another call's stream (Twilio drops them): each message is a
/// counted protocol error, its audio is never played and its mark never echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_and_marks_for_another_stream_are_counted_and_ignored() {
    let summary = two_calls(misbehaving_fleet(Behaviour::WrongStreamSid).await, false).await;
    only_outcome(&summary, CallOutcome::ProtocolError);
    // Three media messages and a mark per call.
    counted(&summary, "wrong_stream_sid", 8);
    assert_eq!(summary.marks_echoed, 0);
    assert_eq!(
        summary.latency_ms.first_audio.count, 0,
        "the other stream's audio was played"
    );
    first_failure_says(&summary, "not this call's");
}

/// A fleet whose connection resets in the middle of a frame went away (a crash): the call
/// is `fleet_hung_up` with an abrupt close, the half frame is no protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_in_the_middle_of_a_frame_is_a_hang_up() {
    let address = misbehaving_fleet(Behaviour::ResetMidFrame).await;
    let scenario = two_calls_scenario(
        address,
        "connect_timeout = \"2s\"",
        "steps = [{ say = \"synthetic\", listen = false }, { pause = \"500ms\" }]",
    );
    let summary = within(Duration::from_secs(45), scenario.run()).await;
    only_outcome(&summary, CallOutcome::FleetHungUp);
    assert!(
        summary.protocol_errors.is_empty(),
        "{:?}",
        summary.protocol_errors
    );
    let closes: u64 = interval_records(&scenario)
        .iter()
        .filter_map(|record| record["closes"]["fleet abrupt"].as_u64())
        .sum();
    assert_eq!(closes, 2);
}

/// A fleet that takes the caller's `stop` and close frame and then neither answers the
/// close nor closes the connection: the call ends [`CLOSE_REPLY_WAIT`] later, counted
/// (`close_unanswered`), and the run is not held up beyond that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_the_fleet_never_answers_is_counted_after_the_close_wait() {
    let started = std::time::Instant::now();
    let summary = two_calls(misbehaving_fleet(Behaviour::NeverCloses).await, false).await;
    only_outcome(&summary, CallOutcome::ProtocolError);
    counted(&summary, "close_unanswered", 2);
    first_failure_says(&summary, "did not answer the caller's close");
    // Each call says 1 s, pauses 0.5 s, then waits out the close; the run waits for it.
    assert!(
        started.elapsed() >= CLOSE_REPLY_WAIT,
        "{:?}",
        started.elapsed()
    );
    assert!(
        summary.wall_s < 30.0,
        "the run was held up: {} s",
        summary.wall_s
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

/// A fleet that completes the handshake, reads the caller's `start`, then never reads its
/// socket again (a stuck event loop). Its receive buffer is made small, so the caller's
/// writes back up within seconds rather than minutes.
async fn fleet_that_stops_reading() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Set before listen: accepted sockets inherit it, and the window is sized from it.
    socket.set_recv_buffer_size(4 << 10).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    let listener = socket.listen(16).unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message
                        && text.contains(r#""event":"start""#)
                    {
                        break;
                    }
                }
                // Holds the connection and reads nothing more (until the test's runtime ends).
                std::future::pending::<()>().await;
                drop(socket);
            });
        }
    });
    address
}

/// The harness's writes to a fleet that stopped reading stall: the call ends as
/// `send_stalled` once a frame could not be written for 5 s, without the goodbye that would
/// stall as well, and the run ends on time. A goodbye (`stop`, close frame) that cannot be
/// written is `send_stalled` too; which message is the first not to fit is the kernel's
/// buffer accounting's to say, not a fleet's, so that is tested on buffers the test fills
/// itself (`src/call/tests.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_that_stops_reading_stalls_the_send_and_ends_the_call() {
    let address = fleet_that_stops_reading().await;
    // The caller keeps sending (silence, while it pauses) far longer than the stall takes
    // to show.
    let scenario = two_calls_scenario(
        address,
        "max_call_duration = \"50s\"",
        "steps = [{ say = \"synthetic\", listen = false }, { pause = \"45s\" }]",
    );
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    only_outcome(&summary, CallOutcome::SendStalled);
    first_failure_says(&summary, "the fleet stopped reading");
    assert!(summary.wall_s < 50.0, "{} s", summary.wall_s);
}

/// What the ping-flooding fleet counted.
#[derive(Debug, Default)]
struct FloodCounts {
    pings: std::sync::atomic::AtomicU64,
    pongs: std::sync::atomic::AtomicU64,
}

/// A fleet that floods each call with pings (5,000 a second) from its `start` to its end,
/// and otherwise behaves: 1.2 s after `start` (the caller's 1 s utterance is over) it
/// replies with 400 ms of voiced audio and a mark.
async fn ping_flooding_fleet(counts: std::sync::Arc<FloodCounts>) -> SocketAddr {
    use std::sync::atomic::Ordering::Relaxed;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut stream) = socket.split();
                let (started, mut start_seen) = tokio::sync::oneshot::channel::<String>();
                let reader_counts = counts.clone();
                let reader = tokio::spawn(async move {
                    let mut started = Some(started);
                    while let Some(Ok(message)) = stream.next().await {
                        match message {
                            Message::Pong(_) => {
                                reader_counts.pongs.fetch_add(1, Relaxed);
                            }
                            Message::Text(text) if text.contains(r#""event":"start""#) => {
                                let event: serde_json::Value =
                                    serde_json::from_str(text.as_str()).unwrap();
                                let sid = event["streamSid"].as_str().unwrap().to_owned();
                                if let Some(started) = started.take() {
                                    let _ = started.send(sid);
                                }
                            }
                            _ => {}
                        }
                    }
                });
                let Ok(stream_sid) = (&mut start_seen).await else {
                    return;
                };
                let reply_at = tokio::time::Instant::now() + Duration::from_millis(1200);
                let mut replied = false;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                loop {
                    tick.tick().await;
                    if reader.is_finished() {
                        break;
                    }
                    if !replied && tokio::time::Instant::now() >= reply_at {
                        replied = true;
                        let mut reply = Ok(());
                        for payload in voiced_payloads(20) {
                            let media =
                                voxsoak::twilio::messages::fleet_media_json(&stream_sid, &payload);
                            reply = reply.and(sink.feed(Message::text(media)).await);
                        }
                        let mark = voxsoak::twilio::messages::fleet_mark_json(&stream_sid, "r1");
                        if reply.and(sink.send(Message::text(mark)).await).is_err() {
                            break;
                        }
                    }
                    // 50 pings every 10 ms.
                    let mut sent = Ok(());
                    for n in 0..50u32 {
                        sent = sent.and(
                            sink.feed(Message::Ping(n.to_be_bytes().to_vec().into()))
                                .await,
                        );
                    }
                    if sent.and(sink.flush().await).is_err() {
                        break;
                    }
                    counts.pings.fetch_add(50, Relaxed);
                }
            });
        }
    });
    address
}

/// Thousands of pings a second do not break a call: it is answered and completes, the
/// harness answers pings (keeping only the latest pong due, so nothing queues up) and its
/// memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_leaves_the_call_working_and_the_harness_flat() {
    use std::sync::atomic::Ordering::Relaxed;
    let counts = std::sync::Arc::new(FloodCounts::default());
    let address = ping_flooding_fleet(counts.clone()).await;
    let scenario = two_calls_scenario(
        address,
        "turn_timeout = \"5s\"\nreply_silence = \"300ms\"",
        "steps = [{ say = \"synthetic\", listen = true }, { pause = \"1s\" }]",
    );
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    assert_eq!(
        summary.calls.by_outcome[CallOutcome::Completed.as_str()],
        2,
        "{:?} {:?}",
        summary.calls,
        summary.failure_examples
    );
    assert_eq!(summary.replies, 2);
    assert_eq!(summary.marks_echoed, 2);
    assert!(
        summary.protocol_errors.is_empty(),
        "{:?}",
        summary.protocol_errors
    );
    let (pings, pongs) = (counts.pings.load(Relaxed), counts.pongs.load(Relaxed));
    // Two calls of about 3 s each at 5,000 pings a second, give or take a busy machine.
    assert!(pings >= 5_000, "{pings} pings");
    assert!(
        pongs > 0 && pongs <= pings,
        "{pongs} pongs for {pings} pings"
    );
    assert_rss_flat(&summary, 40.0);
}

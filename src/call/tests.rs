//! Calls against a real WebSocket fleet on loopback that answers each caller turn and then
//! hangs up as told: how the call ends under each `fleet_may_hang_up` policy, and what the
//! failure example says about the close.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::connect::MediaSocket;
use super::session::{Goodbye, GoodbyeWaits, close_and_wait, say_goodbye};
use super::*;
use crate::audio::utterance::Utterance;
use crate::audio::vad::{SpeechEvent, SpeechSegmenter, VoiceActivity};
use crate::scenario::HangUpPolicy;
use crate::twilio::mulaw;

/// How the test fleet ends the call once it has answered enough turns.
#[derive(Debug, Clone, Copy)]
enum HangUp {
    /// A WebSocket close frame with this code and reason "goodbye".
    Close(u16),
    /// The TCP connection shut with no close frame: a crashed process.
    Drop,
}

/// A fleet on a free loopback port: answers every caller turn (speech, then 400 ms of
/// silence) with 400 ms of voiced audio and a mark, and right after answering
/// `answers` turns hangs up as `hang_up` says.
async fn fleet_that_hangs_up(answers: u32, hang_up: HangUp) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let mut segmenter = SpeechSegmenter::new(
                    VoiceActivity::default(),
                    Duration::from_millis(60),
                    Duration::from_millis(400),
                );
                let mut answered = 0;
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let event: serde_json::Value =
                        serde_json::from_str(text.as_str()).unwrap_or_default();
                    let Some(payload) = event["media"]["payload"].as_str() else {
                        continue;
                    };
                    let frame = BASE64.decode(payload).unwrap_or_default();
                    if !matches!(
                        segmenter.push_frame(&frame),
                        Some(SpeechEvent::Ended { .. })
                    ) {
                        continue;
                    }
                    let stream_sid = event["streamSid"].as_str().unwrap_or_default();
                    let reply: Vec<u8> = (0..3200)
                        .map(|i| mulaw::encode(if (i / 10) % 2 == 0 { 10_000 } else { -10_000 }))
                        .collect();
                    let media = serde_json::json!({"event": "media", "streamSid": stream_sid,
                        "media": {"payload": BASE64.encode(&reply)}});
                    let mark = serde_json::json!({"event": "mark", "streamSid": stream_sid,
                        "mark": {"name": format!("reply-{answered}")}});
                    for json in [media, mark] {
                        if socket.send(Message::text(json.to_string())).await.is_err() {
                            return;
                        }
                    }
                    answered += 1;
                    if answered < answers {
                        continue;
                    }
                    match hang_up {
                        HangUp::Close(code) => {
                            let _ = socket
                                .close(Some(CloseFrame {
                                    code: CloseCode::from(code),
                                    reason: "goodbye".into(),
                                }))
                                .await;
                            while let Some(Ok(_)) = socket.next().await {}
                        }
                        HangUp::Drop => {
                            let mut tcp = socket.into_inner();
                            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
                        }
                    }
                    return;
                }
            });
        }
    });
    format!("ws://{address}/stream")
}

/// What one call reported.
#[derive(Debug)]
struct Ended {
    outcome: CallOutcome,
    detail: Option<String>,
    close: Option<StreamClose>,
    replies: usize,
}

/// One call of `turns` turns to `url` under `policy`.
async fn call(url: &str, turns: usize, policy: HangUpPolicy) -> Ended {
    let source = format!(
        "[target]\nstream_url = \"{url}\"\n[load]\nstages = [{{ ramp_to = 1, over = \"1s\" }}]\n\
         [calls]\nturn_timeout = \"5s\"\nreply_silence = \"1s\"\nfleet_may_hang_up = \"{}\"\n",
        policy.name()
    );
    let scenario = crate::scenario::parse(&source, Path::new("/nowhere/hang-up.toml")).unwrap();
    let vad = VoiceActivity::default();
    let context = Arc::new(CallContext {
        endpoint: CallEndpoint::Stream {
            url: url.parse().unwrap(),
            custom_parameters: Default::default(),
        },
        auth_token: None,
        settings: scenario.calls.clone(),
        account_sid: "AC00000000000000000000000000000000".into(),
        seed: 1,
        http: reqwest::Client::new(),
        vad,
        host_allowed: Box::new(|_| true),
    });
    let utterance = Utterance::synthetic("turn", 3, Duration::from_millis(800), &vad);
    let plan = CallPlan {
        index: 0,
        steps: (0..turns)
            .map(|_| CallStep::Say {
                utterance: utterance.clone(),
                listen: true,
            })
            .collect(),
    };
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        run_call(context, plan, events, CancellationToken::new()),
    )
    .await
    .expect("the call ends");
    let mut replies = 0;
    while let Some(event) = received.recv().await {
        match event {
            CallEvent::Reply { .. } => replies += 1,
            CallEvent::Ended {
                outcome: reported,
                detail,
                close,
                ..
            } => {
                assert_eq!(reported, outcome);
                return Ended {
                    outcome,
                    detail,
                    close,
                    replies,
                };
            }
            _ => {}
        }
    }
    panic!("no Ended event");
}

/// Runs the same call under every policy at once.
async fn under_each_policy(url: &str, turns: usize) -> [Ended; 3] {
    let (never, after_last_turn, any) = tokio::join!(
        call(url, turns, HangUpPolicy::Never),
        call(url, turns, HangUpPolicy::AfterLastTurn),
        call(url, turns, HangUpPolicy::Any),
    );
    [never, after_last_turn, any]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_hanging_up_after_the_last_turn() {
    let url = fleet_that_hangs_up(2, HangUp::Close(1000)).await;
    let [never, after_last_turn, any] = under_each_policy(&url, 2).await;
    let goodbye = Some(StreamClose::fleet(Some(1000), "goodbye"));
    assert_eq!(never.outcome, CallOutcome::FleetHungUp, "{never:?}");
    assert_eq!(
        never.detail.as_deref(),
        Some(r#"closed by the fleet with 1000 "goodbye" after turn 2 of 2"#)
    );
    assert_eq!(never.close, goodbye);
    for ended in [&after_last_turn, &any] {
        assert_eq!(ended.outcome, CallOutcome::Completed, "{ended:?}");
        assert_eq!(ended.detail, None);
        assert_eq!(ended.close, goodbye);
        // The last answer had begun when the fleet hung up: it is measured as a reply.
        assert_eq!(ended.replies, 2, "{ended:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_hanging_up_mid_call() {
    let url = fleet_that_hangs_up(1, HangUp::Close(1000)).await;
    let [never, after_last_turn, any] = under_each_policy(&url, 3).await;
    for ended in [&never, &after_last_turn] {
        assert_eq!(ended.outcome, CallOutcome::FleetHungUp, "{ended:?}");
        assert_eq!(
            ended.detail.as_deref(),
            Some(r#"closed by the fleet with 1000 "goodbye" after turn 1 of 3"#)
        );
    }
    assert_eq!(any.outcome, CallOutcome::Completed, "{any:?}");
    assert_eq!(any.close, Some(StreamClose::fleet(Some(1000), "goodbye")));
}

/// A crash (no close frame) or an error code is never a hang-up, whatever the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_or_an_error_code_is_never_a_hang_up() {
    let dropped = fleet_that_hangs_up(1, HangUp::Drop).await;
    let error = fleet_that_hangs_up(1, HangUp::Close(1011)).await;
    let (dropped, error) = tokio::join!(
        call(&dropped, 1, HangUpPolicy::Any),
        call(&error, 1, HangUpPolicy::Any)
    );
    assert_eq!(dropped.outcome, CallOutcome::FleetHungUp, "{dropped:?}");
    assert!(
        matches!(dropped.close, Some(StreamClose::Dropped { .. })),
        "{dropped:?}"
    );
    let detail = dropped.detail.unwrap_or_default();
    assert!(
        detail.starts_with("the connection dropped without a WebSocket close")
            && detail.ends_with("after turn 1 of 1"),
        "{detail}"
    );
    assert_eq!(error.outcome, CallOutcome::FleetHungUp, "{error:?}");
    assert_eq!(
        error.detail.as_deref(),
        Some(r#"closed by the fleet with 1011 "goodbye" after turn 1 of 1"#)
    );
}

#[test]
fn close_reasons_are_cut_and_made_one_line() {
    let close = StreamClose::fleet(Some(4000), &format!("bye\n\"now\"{}", "x".repeat(100)));
    let StreamClose::Fleet { reason, .. } = &close else {
        unreachable!()
    };
    assert!(reason.starts_with(r"bye\n'now'xxx"), "{reason}");
    assert_eq!(
        reason.chars().count(),
        62,
        "60 characters (the newline shown as two) and an ellipsis"
    );
    let hostile = StreamClose::fleet(Some(1000), "a\u{1b}[2J\u{202e}b");
    let StreamClose::Fleet { reason, .. } = &hostile else {
        unreachable!()
    };
    assert_eq!(reason, r"a\x1b[2J\u{202e}b", "shown, not obeyed");
    assert!(
        close.is_fleet_hang_up(),
        "4000-4999 are the application's own"
    );
    assert_eq!(close.journal_key(), "fleet 4000");
    assert_eq!(
        StreamClose::fleet(None, "").describe(0, 2),
        "closed by the fleet (a close frame without a code) before turn 1 of 2 was answered"
    );
    assert!(!StreamClose::fleet(Some(1001), "").is_fleet_hang_up());
}

#[test]
fn an_endpoint_debugs_without_its_credentials() {
    let url = url::Url::parse("wss://user:secret@fleet.example/stream?token=abc123").unwrap();
    let endpoint = CallEndpoint::Stream {
        url: url.clone(),
        custom_parameters: [("token".to_owned(), "abc123".to_owned())].into(),
    };
    let shown = format!("{endpoint:?} {:?}", CallEndpoint::Webhook { url });
    assert!(
        !shown.contains("secret") && !shown.contains("abc123"),
        "{shown}"
    );
    assert!(
        shown.contains("wss://***@fleet.example/stream?token=***"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------------------
// The goodbye to a fleet that stopped reading.
//
// Run end to end, a fleet that stops reading fills the media connection's buffers with the
// caller's media, and it is a media frame that stalls: which message is the first not to fit
// depends on the kernel's buffer accounting, not on anything a test fleet can aim at. Here
// the test fills the buffers itself and then says goodbye on them.

/// How the goodbye test fleet treats the caller once the WebSocket is open.
#[derive(Debug, Clone, Copy)]
enum AfterHandshake {
    /// Never reads again (a stuck event loop); its receive buffer is small.
    StopsReading,
    /// Reads until the caller's `stop`, then neither reads nor closes.
    StopsAfterStop,
    /// Reads everything, answering the close and then closing the connection, as a
    /// WebSocket server does.
    Reads,
}

/// A WebSocket fleet on a free loopback port, and the caller's socket to it, its send
/// buffer as small as a call's.
async fn goodbye_fleet(after: AfterHandshake) -> MediaSocket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Set before listen: accepted sockets inherit it.
    socket.set_recv_buffer_size(4 << 10).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    let listener = socket.listen(4).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut fleet = tokio_tungstenite::accept_async(stream).await.unwrap();
        match after {
            AfterHandshake::StopsReading => {}
            AfterHandshake::StopsAfterStop => {
                while let Some(Ok(message)) = fleet.next().await {
                    if message
                        .to_text()
                        .is_ok_and(|text| text.contains("\"stop\""))
                    {
                        break;
                    }
                }
            }
            AfterHandshake::Reads => {
                while let Some(Ok(_)) = fleet.next().await {}
                // The close handshake is over: a server then closes the connection.
                return;
            }
        }
        // Holds the connection (until the test's runtime ends).
        std::future::pending::<()>().await;
        drop(fleet);
    });
    let (caller, _) = tokio_tungstenite::connect_async(format!("ws://{address}/stream"))
        .await
        .unwrap();
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = caller.get_ref() {
        socket2::SockRef::from(tcp)
            .set_send_buffer_size(connect::MEDIA_SEND_BUFFER)
            .unwrap();
    }
    caller
}

/// Sends 16 KiB messages until one cannot be written for 200 ms: the fleet's receive
/// buffer and the caller's send buffer are full.
async fn fill(caller: &mut MediaSocket) {
    let message = "x".repeat(16 << 10);
    for _ in 0..1000 {
        let sent = timeout(
            Duration::from_millis(200),
            caller.send(Message::text(message.clone())),
        )
        .await;
        if sent.is_err() {
            return;
        }
    }
    panic!("16 MiB written to a fleet that reads nothing");
}

const SHORT: GoodbyeWaits = GoodbyeWaits {
    send_stall: Duration::from_millis(300),
    close_reply: Duration::from_millis(300),
};

const STOP: &str = r#"{"event":"stop","sequenceNumber":"9","streamSid":"MZ1"}"#;

/// Runs `goodbye`, which must end within a generous bound.
async fn ends<F: std::future::Future<Output = Goodbye>>(goodbye: F) -> Goodbye {
    timeout(Duration::from_secs(30), goodbye)
        .await
        .expect("the goodbye ends")
}

#[tokio::test]
async fn a_stop_the_fleet_cannot_take_stalls_the_goodbye() {
    let mut caller = goodbye_fleet(AfterHandshake::StopsReading).await;
    fill(&mut caller).await;
    let goodbye = ends(say_goodbye(&mut caller, STOP.into(), SHORT)).await;
    assert_eq!(goodbye, Goodbye::Stalled("the caller's stop"));
}

#[tokio::test]
async fn a_close_frame_the_fleet_cannot_take_stalls_the_goodbye() {
    let mut caller = goodbye_fleet(AfterHandshake::StopsReading).await;
    fill(&mut caller).await;
    let goodbye = ends(close_and_wait(&mut caller, SHORT)).await;
    assert_eq!(goodbye, Goodbye::Stalled("the caller's close frame"));
}

/// The stop and the close frame fit in the buffers: the fleet that then reads nothing has
/// left the close unanswered, and has not stalled anything.
#[tokio::test]
async fn a_fleet_that_stops_after_the_stop_leaves_the_close_unanswered() {
    let mut caller = goodbye_fleet(AfterHandshake::StopsAfterStop).await;
    let goodbye = ends(say_goodbye(&mut caller, STOP.into(), SHORT)).await;
    assert_eq!(goodbye, Goodbye::Unanswered);
}

#[tokio::test]
async fn a_fleet_that_reads_answers_the_goodbye() {
    let mut caller = goodbye_fleet(AfterHandshake::Reads).await;
    let waits = GoodbyeWaits {
        close_reply: Duration::from_secs(30),
        ..SHORT
    };
    let goodbye = ends(say_goodbye(&mut caller, STOP.into(), waits)).await;
    assert_eq!(goodbye, Goodbye::Said);
}

//! Hostile HTTP peers: a voice webhook answering TwiML bombs (entity expansion, external
//! entities, a 1 GB body, an endless chunked body, one that trickles), a health endpoint
//! that never answers, a `/metrics` page that never ends, and hostile clients of the
//! harness's own servers (the alert receiver, the TTS and LLM stand-ins, the sink, the
//! reference fleet): bodies too big, endless or trickling, headers that never end. Each is
//! refused or timed out with a counted reason; nothing is buffered past its limit, nothing
//! panics, every run ends by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use voxsoak::call::CallOutcome;
use voxsoak::grade::Verdict;
use voxsoak::http_serve::HEADER_READ_TIMEOUT;
use voxsoak::observe::{Observation, Signal};
use voxsoak::report::Summary;
use voxsoak::request_body::REQUEST_BODY_TIMEOUT;

use crate::util::{ScenarioFile, assert_rss_flat, within};

/// Reads one request's head and, if it declares a `Content-Length`, its body; false when
/// the client went away first (the harness's start check only connects).
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = seen.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|length| length.trim().parse().ok())
        .unwrap_or(0);
    let mut left = length.saturating_sub(seen.len() - head_end);
    while left > 0 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => left = left.saturating_sub(read),
        }
    }
    true
}

/// An HTTP server on a free loopback port that reads each request and answers it with
/// `answer`, which writes whatever it likes on the connection.
async fn raw_http_server<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                if read_request(&mut stream).await {
                    answer(stream).await;
                }
            });
        }
    });
    address
}

/// Writes `chunk` over and over (as HTTP chunks when `chunked`) until the peer stops
/// reading or goes away, or `cap` bytes are out (so a harness that kept reading would not
/// keep this test busy forever); counts what was written into `written`.
async fn write_endlessly(
    stream: &mut TcpStream,
    chunk: &[u8],
    chunked: bool,
    cap: u64,
    written: &AtomicU64,
) {
    let framed = if chunked {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        framed
    } else {
        chunk.to_vec()
    };
    while written.load(Relaxed) < cap {
        match tokio::time::timeout(Duration::from_secs(10), stream.write_all(&framed)).await {
            Ok(Ok(())) => {
                written.fetch_add(framed.len() as u64, Relaxed);
            }
            // A write error: the peer went away. A write stuck for 10 s: it stopped reading.
            _ => return,
        }
    }
}

/// A server answering every request with `head` and then `chunk` over and over (see
/// [`write_endlessly`]); with how many body bytes it got out, over all its connections.
async fn endless_server(
    head: String,
    chunk: Vec<u8>,
    chunked: bool,
    cap: u64,
) -> (SocketAddr, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let address = raw_http_server(move |mut stream| {
        let (head, chunk, counter) = (head.clone(), chunk.clone(), counter.clone());
        async move {
            if stream.write_all(head.as_bytes()).await.is_ok() {
                write_endlessly(&mut stream, &chunk, chunked, cap, &counter).await;
            }
        }
    })
    .await;
    (address, written)
}

/// The answer head of a chunked 200.
const CHUNKED_200: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------
// The voice webhook's TwiML.

/// A scenario of two calls through the voice webhook at `address`, each saying one 1 s
/// synthetic utterance.
fn webhook_scenario(address: SocketAddr) -> ScenarioFile {
    crate::util::two_calls_to(
        &format!("webhook_url = \"http://{address}/voice\""),
        "connect_timeout = \"2s\"",
        "steps = [{ say = \"synthetic\", listen = false }]",
    )
}

/// A voice webhook that answers every POST with `body` as TwiML.
async fn twiml_webhook(body: String) -> SocketAddr {
    raw_http_server(move |mut stream| {
        let body = body.clone();
        async move {
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    })
    .await
}

/// Both calls failed to connect, each with a detail for which `explained` holds.
fn both_failed_to_connect(summary: &Summary, explained: impl Fn(&str) -> bool) {
    assert_eq!(summary.calls.started, 2, "{:?}", summary.calls);
    assert_eq!(
        summary.calls.by_outcome[CallOutcome::ConnectFailed.as_str()],
        2,
        "{:?} {:?}",
        summary.calls.by_outcome,
        summary.failure_examples
    );
    assert!(
        summary
            .failure_examples
            .iter()
            .all(|example| explained(&example.detail)),
        "{:?}",
        summary.failure_examples
    );
    assert_ne!(summary.verdict, Verdict::Error, "{:?}", summary.reason);
}

/// A billion-laughs TwiML: ten nested entities of ten, 10^9 `lol`s (3 GB) if expanded. The
/// TwiML parser expands no entity it does not know (only the five XML ones): the call fails
/// to connect at once, saying which entity, and nothing grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billion_laughs_twiml_is_refused_unexpanded() {
    let mut doctype = String::from("<!DOCTYPE Response [<!ENTITY lol0 \"lol\">");
    for level in 1..10 {
        let previous = format!("&lol{};", level - 1).repeat(10);
        doctype.push_str(&format!("<!ENTITY lol{level} \"{previous}\">"));
    }
    doctype.push(']');
    doctype.push('>');
    let twiml = format!(
        r#"<?xml version="1.0"?>{doctype}<Response><Say>&lol9;</Say><Connect><Stream url="ws://127.0.0.1:1/&lol9;"/></Connect></Response>"#
    );
    let scenario = webhook_scenario(twiml_webhook(twiml).await);
    let summary = within(Duration::from_secs(45), scenario.run()).await;
    both_failed_to_connect(&summary, |detail| {
        detail.contains("TwiML voxsoak cannot follow") && detail.contains("lol9")
    });
    assert_rss_flat(&summary, 40.0);
}

/// External entities (XXE) in TwiML are never fetched nor read: an entity naming a URL
/// draws no request, one naming a file never shows its contents anywhere in the run's
/// output; the call fails to connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_entities_in_twiml_are_never_fetched_or_read() {
    let fetched = Arc::new(AtomicU64::new(0));
    let counter = fetched.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let entity_server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Relaxed);
        }
    });
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("secret.txt");
    std::fs::write(&secret, "XXE-SECRET-7f3a9c").unwrap();
    let twiml = format!(
        r#"<?xml version="1.0"?><!DOCTYPE Response [<!ENTITY file SYSTEM "file://{}"><!ENTITY remote SYSTEM "http://{entity_server}/entity">]><Response><Connect><Stream url="ws://127.0.0.1:1/s"><Parameter name="a" value="&file;"/><Parameter name="b" value="&remote;"/></Stream></Connect></Response>"#,
        secret.display()
    );
    let scenario = webhook_scenario(twiml_webhook(twiml).await);
    let summary = within(Duration::from_secs(45), scenario.run()).await;
    both_failed_to_connect(&summary, |detail| {
        detail.contains("TwiML voxsoak cannot follow")
    });
    assert_eq!(fetched.load(Relaxed), 0, "an external entity was fetched");
    for file in ["journal.jsonl", "summary.json"] {
        let text = std::fs::read_to_string(scenario.out_dir().join(file)).unwrap();
        assert!(
            !text.contains("XXE-SECRET"),
            "{file} shows the file: {text}"
        );
    }
}

/// A webhook answering a 1 GB body (declared in its Content-Length): refused by its length
/// before any of it is read, with a clear error; the webhook gets to write little more than
/// what the sockets' buffers hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gigabyte_twiml_body_is_refused_unread() {
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {GIB}\r\n\r\n");
    let (address, written) = endless_server(head, vec![b' '; 64 << 10], false, GIB).await;
    let scenario = webhook_scenario(address);
    let summary = within(Duration::from_secs(45), scenario.run()).await;
    both_failed_to_connect(&summary, |detail| {
        detail.contains(&format!(
            "a body of {GIB} bytes, over the 64 KiB TwiML limit"
        ))
    });
    // Two calls; each connection takes at most its socket buffers' worth before it closes.
    assert!(
        written.load(Relaxed) < 64 * MIB,
        "{} bytes",
        written.load(Relaxed)
    );
    assert_rss_flat(&summary, 40.0);
}

/// A webhook answering an endless chunked body (no length to refuse it by): reading stops
/// at the first byte past 64 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chunked_twiml_body_is_cut_at_the_limit() {
    let chunk = b"<Response><Say>endless</Say></Response>".repeat(200);
    let (address, written) = endless_server(CHUNKED_200.to_owned(), chunk, true, GIB).await;
    let scenario = webhook_scenario(address);
    let summary = within(Duration::from_secs(45), scenario.run()).await;
    both_failed_to_connect(&summary, |detail| {
        detail.contains("a body over the 64 KiB TwiML limit: reading stopped there")
    });
    assert!(
        written.load(Relaxed) < 64 * MIB,
        "{} bytes",
        written.load(Relaxed)
    );
}

/// A webhook whose chunked body trickles in forever, a few bytes at a time and never over
/// the limit: the call's connect timeout (or the webhook request's own, the same length)
/// ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_twiml_body_times_out_the_connect() {
    let address = raw_http_server(|mut stream| async move {
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        // At most 40 s of it: far past the 2 s connect timeout.
        for _ in 0..200 {
            if stream.write_all(b"1\r\n \r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let scenario = webhook_scenario(address);
    let started = std::time::Instant::now();
    let summary = within(Duration::from_secs(45), scenario.run()).await;
    both_failed_to_connect(&summary, |detail| {
        detail == "connect timed out after 2s" || detail.ends_with("operation timed out")
    });
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---------------------------------------------------------------------------------------
// Observers: health and metrics.

/// A run of a few short calls to an in-process sink, watched at the given `[observe]` keys.
async fn watched_sink_run(observe: String) -> (ScenarioFile, Summary) {
    let shutdown = CancellationToken::new();
    let sink = voxsoak::sink::spawn(voxsoak::sink::SinkOptions::default(), shutdown.clone())
        .await
        .unwrap();
    let scenario = ScenarioFile::new(&format!(
        r#"
[target]
stream_url = "ws://{}/stream"
[load]
calls_per_minute = 60
duration = "4s"
[calls]
synthetic = {{ count = 1, min = "1s", max = "1s" }}
[[scripts]]
name = "short"
steps = [{{ say = "synthetic", listen = false }}]
[observe]
{observe}
"#,
        sink.address
    ));
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    shutdown.cancel();
    (scenario, summary)
}

/// The run's journal records of one event.
fn journal_events(scenario: &ScenarioFile, event: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(scenario.out_dir().join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["event"] == event)
        .collect()
}

/// The run went on whatever the observers met: its calls completed, and it was graded
/// (no harness error).
fn calls_went_on(scenario: &ScenarioFile, summary: &Summary) {
    assert!(summary.calls.started >= 3, "{:?}", summary.calls);
    assert_eq!(
        summary.calls.completed, summary.calls.started,
        "{:?} {:?}",
        summary.calls, summary.failure_examples
    );
    assert!(journal_events(scenario, "harness_error").is_empty());
    assert_ne!(summary.verdict, Verdict::Error, "{:?}", summary.reason);
}

/// A health endpoint that accepts connections and never answers: each probe times out
/// (counted as failed, journaled as `no answer within 500ms`), and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_endpoint_that_never_answers_fails_its_probes_and_the_run_goes_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let (scenario, summary) = watched_sink_run(format!(
        "health_url = \"http://{health}/health\"\nhealth_interval = \"500ms\"\nhealth_timeout = \"500ms\""
    ))
    .await;
    calls_went_on(&scenario, &summary);
    let observers = summary.observers.as_ref().expect("observer counts");
    assert!(observers.health_probes >= 4, "{observers:?}");
    assert_eq!(observers.healthy_probes, 0, "{observers:?}");
    let health_records = journal_events(&scenario, "health");
    assert_eq!(health_records[0]["healthy"], false, "{health_records:?}");
    assert_eq!(health_records[0]["detail"], "no answer within 500ms");
    assert!(
        summary.render_text().contains("health"),
        "{}",
        summary.render_text()
    );
}

/// A health endpoint answering 200 with an endless body is healthy, and only its first
/// 4 KiB are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_answer_with_an_endless_body_is_read_no_further_than_its_start() {
    let (health, written) =
        endless_server(CHUNKED_200.to_owned(), vec![b'k'; 64 << 10], true, GIB).await;
    let (scenario, summary) = watched_sink_run(format!(
        "health_url = \"http://{health}/health\"\nhealth_interval = \"500ms\""
    ))
    .await;
    calls_went_on(&scenario, &summary);
    let observers = summary.observers.as_ref().expect("observer counts");
    assert!(observers.health_probes >= 4, "{observers:?}");
    assert_eq!(observers.healthy_probes, observers.health_probes);
    let probes = observers.health_probes;
    assert!(
        written.load(Relaxed) < probes * 8 * MIB,
        "{} bytes for {probes} probes",
        written.load(Relaxed)
    );
}

/// A `/metrics` page that never ends: each scrape stops at 8 MiB and is a counted failure
/// (`the page is over 8 MiB`), the harness's memory stays bounded, and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_metrics_page_is_a_counted_scrape_failure() {
    let lines = b"fleet_busy{worker=\"1\"} 1\n".repeat(2000);
    let (metrics, written) = endless_server(CHUNKED_200.to_owned(), lines, true, 4 * GIB).await;
    let (scenario, summary) = watched_sink_run(format!(
        "metrics_url = \"http://{metrics}/metrics\"\nscrape_interval = \"1s\""
    ))
    .await;
    calls_went_on(&scenario, &summary);
    let observers = summary.observers.as_ref().expect("observer counts");
    assert!(observers.scrapes_failed >= 2, "{observers:?}");
    let failed = journal_events(&scenario, "scrape_failed");
    assert_eq!(failed[0]["reason"], "the page is over 8 MiB", "{failed:?}");
    // Each scrape reads 8 MiB and stops; the sockets hold a few MiB more.
    let per_scrape = written.load(Relaxed) / observers.scrapes_failed.max(1);
    assert!(per_scrape < 64 * MIB, "{per_scrape} bytes a scrape");
    assert_rss_flat(&summary, 100.0);
    assert!(
        summary.render_text().contains("scrapes failed"),
        "{}",
        summary.render_text()
    );
}

// ---------------------------------------------------------------------------------------
// Hostile clients of the harness's own servers.

/// How a hostile client sends its request body.
#[derive(Debug, Clone)]
enum Sending {
    /// This body, with its Content-Length.
    Whole(Vec<u8>),
    /// Declares `Content-Length: 1 GiB` and writes until it is refused.
    Gigabyte,
    /// A chunked body that never ends.
    EndlessChunked,
    /// Declares 1000 bytes, sends 10 and then nothing.
    Stalled,
    /// Sends half its headers and then nothing.
    HalfHeaders,
}

/// POSTs to `path` as `sending` says; the status of the answer (None: the server closed
/// without one) and how many body bytes got out before it.
async fn hostile_post(address: SocketAddr, path: &str, sending: Sending) -> (Option<u16>, u64) {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let path = path.to_owned();
    let writer = tokio::spawn(async move {
        let head = |framing: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
            )
        };
        match sending {
            Sending::Whole(body) => {
                let head = head(&format!("Content-Length: {}", body.len()));
                let _ = write.write_all(head.as_bytes()).await;
                if write.write_all(&body).await.is_ok() {
                    counter.fetch_add(body.len() as u64, Relaxed);
                }
            }
            Sending::Gigabyte | Sending::EndlessChunked => {
                let chunked = matches!(sending, Sending::EndlessChunked);
                let framing = if chunked {
                    "Transfer-Encoding: chunked".to_owned()
                } else {
                    format!("Content-Length: {GIB}")
                };
                let _ = write.write_all(head(&framing).as_bytes()).await;
                let mut framed = Vec::new();
                if chunked {
                    framed.extend_from_slice(b"10000\r\n");
                }
                framed.extend_from_slice(&[b' '; 64 << 10]);
                if chunked {
                    framed.extend_from_slice(b"\r\n");
                }
                while counter.load(Relaxed) < GIB
                    && matches!(
                        tokio::time::timeout(Duration::from_secs(10), write.write_all(&framed))
                            .await,
                        Ok(Ok(()))
                    )
                {
                    counter.fetch_add(framed.len() as u64, Relaxed);
                }
            }
            Sending::Stalled => {
                let _ = write
                    .write_all(head("Content-Length: 1000").as_bytes())
                    .await;
                let _ = write.write_all(b"{\"alerts\":").await;
                counter.fetch_add(10, Relaxed);
            }
            Sending::HalfHeaders => {
                let _ = write
                    .write_all(format!("POST {path} HTTP/1.1\r\nHost: {address}\r\n").as_bytes())
                    .await;
            }
        }
        // Keeps its half open (a slow client) until the answer is read.
        std::future::pending::<()>().await;
        drop(write);
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let status = loop {
        if let Some(end) = answer.windows(2).position(|window| window == b"\r\n") {
            let line = String::from_utf8_lossy(&answer[..end]).into_owned();
            break line.split(' ').nth(1).and_then(|code| code.parse().ok());
        }
        match read.read(&mut buffer).await {
            Ok(0) | Err(_) => break None,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
        }
    };
    writer.abort();
    (status, written.load(Relaxed))
}

/// The alert receiver on a free port, with the channel its observations arrive on.
async fn alert_receiver() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Observation>,
    CancellationToken,
) {
    let (observations, received) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let address =
        voxsoak::observe::alerts::serve("127.0.0.1:0".parse().unwrap(), observations, stop.clone())
            .await
            .unwrap();
    (address, received, stop)
}

/// The reason of the next observation, which must be a refused alert post.
async fn refused_for(
    received: &mut tokio::sync::mpsc::UnboundedReceiver<Observation>,
) -> &'static str {
    let observation = within(Duration::from_secs(10), received.recv())
        .await
        .expect("an observation");
    match observation.signal {
        Signal::BadAlert { reason } => reason,
        other => panic!("not a refused alert: {other:?}"),
    }
}

/// After hostile posts, a good alert is still taken: the receiver keeps serving.
async fn still_takes_alerts(
    address: SocketAddr,
    received: &mut tokio::sync::mpsc::UnboundedReceiver<Observation>,
) {
    let body = br#"{"alerts":[{"status":"firing","labels":{"alertname":"StillHere"}}]}"#;
    let (status, _) = hostile_post(address, "/alerts", Sending::Whole(body.to_vec())).await;
    assert_eq!(status, Some(200));
    let observation = within(Duration::from_secs(10), received.recv())
        .await
        .unwrap();
    assert!(
        matches!(&observation.signal, Signal::Alert { name, .. } if name == "StillHere"),
        "{observation:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_receiver_refuses_garbage_json_and_counts_it() {
    let (address, mut received, _stop) = alert_receiver().await;
    for garbage in [&b"{not json"[..], b"\xff\xfe\x00", br#"{"alerts": 3}"#] {
        let (status, _) = hostile_post(address, "/alerts", Sending::Whole(garbage.to_vec())).await;
        assert_eq!(status, Some(400));
        assert_eq!(refused_for(&mut received).await, "not_alerts");
    }
    still_takes_alerts(address, &mut received).await;
}

/// A body declaring 1 GiB is refused (413) before it is read; one without a length is
/// refused as it passes 1 MiB. Either way the client gets out little more than the
/// receiver's limit and the sockets' buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_receiver_refuses_huge_and_endless_bodies_unbuffered() {
    let (address, mut received, _stop) = alert_receiver().await;
    for sending in [Sending::Gigabyte, Sending::EndlessChunked] {
        let (status, written) = hostile_post(address, "/alerts", sending.clone()).await;
        assert_eq!(status, Some(413), "{sending:?}");
        assert!(written < 64 * MIB, "{sending:?}: {written} bytes got out");
        assert_eq!(refused_for(&mut received).await, "body_too_large");
    }
    still_takes_alerts(address, &mut received).await;
}

/// A body that stops arriving is refused (408) after [`REQUEST_BODY_TIMEOUT`], and other
/// posts are taken meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_receiver_times_out_a_body_that_never_ends() {
    let (address, mut received, _stop) = alert_receiver().await;
    let started = std::time::Instant::now();
    let stalled = tokio::spawn(hostile_post(address, "/alerts", Sending::Stalled));
    still_takes_alerts(address, &mut received).await;
    let (status, _) = within(Duration::from_secs(30), stalled).await.unwrap();
    assert_eq!(status, Some(408));
    assert!(started.elapsed() >= REQUEST_BODY_TIMEOUT);
    assert_eq!(refused_for(&mut received).await, "body_timeout");
}

/// Refused alert posts during a run are counted in the summary by reason, and the run goes
/// on to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_alert_posts_are_counted_in_the_summary() {
    let port = crate::chaos::free_port();
    let alerts: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let run = tokio::spawn(watched_sink_run(format!("alerts_listen = \"{alerts}\"")));
    // The receiver is up once it takes a connection.
    within(Duration::from_secs(20), async {
        while TcpStream::connect(alerts).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (garbage, _) = hostile_post(alerts, "/alerts", Sending::Whole(b"[1,2".to_vec())).await;
    let (huge, _) = hostile_post(alerts, "/alerts", Sending::Gigabyte).await;
    let good = br#"{"name":"Counted","status":"firing"}"#.to_vec();
    let (taken, _) = hostile_post(alerts, "/alerts", Sending::Whole(good)).await;
    assert_eq!((garbage, huge, taken), (Some(400), Some(413), Some(200)));
    let (scenario, summary) = within(Duration::from_secs(60), run).await.unwrap();
    calls_went_on(&scenario, &summary);
    let observers = summary.observers.as_ref().expect("observer counts");
    assert_eq!(observers.alerts_received, 1, "{observers:?}");
    assert_eq!(
        observers.bad_alerts,
        [
            ("body_too_large".to_owned(), 1),
            ("not_alerts".to_owned(), 1)
        ]
        .into(),
        "{observers:?}"
    );
    let text = summary.render_text();
    assert!(
        text.contains("alerts refused 2 (body_too_large 1, not_alerts 1)"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// The stand-ins.

/// Both stand-ins on free ports, each with the path a fleet posts to and a good body.
async fn standins(shutdown: &CancellationToken) -> Vec<(SocketAddr, &'static str, Vec<u8>)> {
    use voxsoak::standin::{llm, tts};
    let tts = tts::spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tts::TtsControl::new(tts::TtsBehaviour::default(), 1),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let llm = llm::spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        llm::LlmControl::new(llm::LlmBehaviour::default(), 1),
        shutdown.clone(),
    )
    .await
    .unwrap();
    vec![
        (
            tts.address,
            "/v1/audio/speech",
            br#"{"model":"tts-1","voice":"alloy","input":"Hello.","response_format":"pcm"}"#
                .to_vec(),
        ),
        (
            llm.address,
            "/v1/chat/completions",
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello."}]}"#.to_vec(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standins_refuse_garbage_json_and_keep_serving() {
    let shutdown = CancellationToken::new();
    for (address, path, good) in standins(&shutdown).await {
        for garbage in [&b"{not json"[..], b"\xff\xfe", b"[]", b"null"] {
            let (status, _) = hostile_post(address, path, Sending::Whole(garbage.to_vec())).await;
            assert_eq!(status, Some(400), "{path} {garbage:?}");
        }
        let (status, _) = hostile_post(address, path, Sending::Whole(good)).await;
        assert_eq!(status, Some(200), "{path}");
    }
    shutdown.cancel();
}

/// A 1 GiB body or an endless one is refused (413) once it passes the 4 MiB limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standins_refuse_huge_and_endless_bodies_unbuffered() {
    let shutdown = CancellationToken::new();
    for (address, path, good) in standins(&shutdown).await {
        for sending in [Sending::Gigabyte, Sending::EndlessChunked] {
            let (status, written) = hostile_post(address, path, sending.clone()).await;
            assert_eq!(status, Some(413), "{path} {sending:?}");
            assert!(
                written < 64 * MIB,
                "{path} {sending:?}: {written} bytes got out"
            );
        }
        let (status, _) = hostile_post(address, path, Sending::Whole(good)).await;
        assert_eq!(status, Some(200), "{path}");
    }
    shutdown.cancel();
}

/// A client that never finishes its body is refused (400, saying so) after
/// [`REQUEST_BODY_TIMEOUT`]; one that never finishes its headers is disconnected, without an
/// answer, after [`HEADER_READ_TIMEOUT`]. Other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standins_keep_serving_while_slow_clients_hang() {
    let shutdown = CancellationToken::new();
    for (address, path, good) in standins(&shutdown).await {
        let started = std::time::Instant::now();
        let stalled = tokio::spawn(hostile_post(address, path, Sending::Stalled));
        let half_headers = tokio::spawn(hostile_post(address, path, Sending::HalfHeaders));
        let (status, _) = hostile_post(address, path, Sending::Whole(good)).await;
        assert_eq!(
            status,
            Some(200),
            "{path}: not served while slow clients hang"
        );
        let (status, _) = within(Duration::from_secs(30), stalled).await.unwrap();
        assert_eq!(status, Some(400), "{path}");
        assert!(started.elapsed() >= REQUEST_BODY_TIMEOUT);
        let (status, _) = within(HEADER_READ_TIMEOUT + Duration::from_secs(20), half_headers)
            .await
            .unwrap();
        assert_eq!(status, None, "{path}: half headers were answered");
        assert!(started.elapsed() >= HEADER_READ_TIMEOUT);
    }
    shutdown.cancel();
}

// ---------------------------------------------------------------------------------------
// Headers that never end (slowloris), to every server the harness runs.

/// Connects to `address` and sends a request's headers a byte every 200 ms, never ending
/// them; how long the connection lasted, once the server closed it (or a write failed
/// because it had).
async fn trickle_headers(address: SocketAddr) -> Duration {
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    let (mut read, mut write) = stream.split();
    let mut header = b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: "
        .iter()
        .copied()
        .chain(std::iter::repeat(b'a'));
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    let mut answer = [0u8; 1024];
    loop {
        tokio::select! {
            read = read.read(&mut answer) => match read {
                Ok(0) | Err(_) => break,
                // An answer before the close would be read and dropped; none is expected.
                Ok(_) => {}
            },
            _ = ticks.tick() => {
                let byte = header.next().unwrap_or(b'a');
                if write.write_all(&[byte]).await.is_err() {
                    break;
                }
            }
        }
    }
    started.elapsed()
}

/// A client trickling its headers to `address` is disconnected after
/// [`HEADER_READ_TIMEOUT`] (within a generous bound), and `served` (a normal request to the
/// same server, which must succeed) is answered while it trickles.
async fn slow_headers_are_cut_while_others_are_served<F>(address: SocketAddr, served: F)
where
    F: std::future::Future<Output = ()>,
{
    let trickling = tokio::spawn(trickle_headers(address));
    served.await;
    assert!(
        !trickling.is_finished(),
        "the trickling client was cut before a normal request was answered"
    );
    let held = within(HEADER_READ_TIMEOUT + Duration::from_secs(20), trickling)
        .await
        .unwrap();
    assert!(held >= HEADER_READ_TIMEOUT, "cut after {held:?}");
}

/// `GET http://{address}/health` answers 200.
async fn health_answers(address: SocketAddr) {
    let response = reqwest::Client::new()
        .get(format!("http://{address}/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_receiver_cuts_headers_that_never_end() {
    let (address, mut received, _stop) = alert_receiver().await;
    slow_headers_are_cut_while_others_are_served(
        address,
        still_takes_alerts(address, &mut received),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standins_cut_headers_that_never_end() {
    let shutdown = CancellationToken::new();
    let mut cut = Vec::new();
    for (address, path, good) in standins(&shutdown).await {
        cut.push(tokio::spawn(slow_headers_are_cut_while_others_are_served(
            address,
            async move {
                let (status, _) = hostile_post(address, path, Sending::Whole(good)).await;
                assert_eq!(status, Some(200), "{path}");
            },
        )));
    }
    for stand_in in cut {
        stand_in.await.unwrap();
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_cuts_headers_that_never_end() {
    let shutdown = CancellationToken::new();
    let sink = voxsoak::sink::spawn(voxsoak::sink::SinkOptions::default(), shutdown.clone())
        .await
        .unwrap();
    slow_headers_are_cut_while_others_are_served(sink.address, health_answers(sink.address)).await;
    shutdown.cancel();
}

/// The reference fleet, as `voxsoak fleet` runs it (and as the harness embeds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_fleet_cuts_headers_that_never_end() {
    use crate::fleet_util::{Backend, FleetProcess, TestDb};
    let db = TestDb::create(Backend::Sqlite, "slow-headers")
        .await
        .expect("SQLite needs no server");
    let fleet = FleetProcess::start(&db, &["--orders".into(), "1000".into()]).await;
    slow_headers_are_cut_while_others_are_served(fleet.address, health_answers(fleet.address))
        .await;
    fleet.stop().await;
    db.remove().await;
}

//! The one way the harness serves HTTP (the alert receiver, the stand-ins, the sink, the
//! reference fleet, the kill switch, the fault proxy's tests): an axum [`Router`] on a
//! [`TcpListener`], HTTP/1.1 with keep-alive and WebSocket upgrades, until a shutdown token.
//!
//! It exists because `axum::serve` gives hyper no timer, so hyper's header read timeout
//! never runs: a client trickling its request headers a byte a second held a connection and
//! a task forever. Here every connection has [`HEADER_READ_TIMEOUT`] to send a request's
//! headers, and at most [`MAX_CONNECTIONS`] are served at once. Bodies have their own
//! deadline where they are read ([`crate::request_body`]).
//!
//! HTTP/1.1 only: every client of these servers (Twilio-style webhooks and Media Streams,
//! Alertmanager, OpenAI-compatible clients over cleartext) speaks it. Serving HTTP/2 too
//! would mean sniffing the first bytes for its preface first, a read no timeout covers.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// How long a client has to send a request's headers, from when the server starts reading
/// them: from the connection's opening, or from the end of its previous answer on a
/// keep-alive connection (so an idle keep-alive connection is closed after it too, as
/// Apache's `KeepAliveTimeout` of 5 s does). Real clients send their headers in one
/// write; one still sending after this is a slowloris and is disconnected, without an
/// answer.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the harness's own HTTP clients (health probes, scrapes, voice webhooks, the
/// reference fleet's calls to its providers and alert receiver) keep an idle pooled
/// connection. Shorter than [`HEADER_READ_TIMEOUT`] here and than the 5 s keep-alive of
/// Node.js and Apache servers: a request is never sent on a connection the server is just
/// closing for idleness (the keep-alive race), which would be a failed probe the fleet did
/// not cause.
pub const CLIENT_POOL_IDLE: Duration = Duration::from_secs(4);

/// At most this many connections are served at once by one server; past it the server stops
/// accepting until one ends (new ones wait in the kernel's listen backlog). A connection
/// upgraded to a WebSocket no longer counts: it is the handler's from then on. The bound is
/// far above what a run needs (one webhook or stream connection per live call, and a few
/// for observers) and keeps a flood of idle or slow connections from exhausting the
/// process's file descriptors.
pub const MAX_CONNECTIONS: usize = 16_384;

/// How long to wait before accepting again after an error that is not one connection's
/// (say, no file descriptor left): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The bounds one server holds its clients to.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read_timeout: Duration,
    max_connections: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        header_read_timeout: HEADER_READ_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
    };
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// each connection finish the request it is serving (an idle one is closed at once), and
/// returns when they all have. WebSockets already upgraded are their handlers' to end.
/// Handlers may extract the client's address (`ConnectInfo<SocketAddr>`).
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    serve_within(listener, router, shutdown, Limits::DEFAULT).await;
}

async fn serve_within(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed; were it, there would be nothing to wait for.
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                connections.spawn(serve_connection(
                    builder.clone(),
                    stream,
                    peer,
                    router.clone(),
                    shutdown.clone(),
                    permit,
                ));
            }
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed; retrying in 1 s");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection until it ends, or, once `shutdown` is cancelled, until the
/// request in flight is answered. Holds `_permit` for as long.
async fn serve_connection(
    builder: Arc<http1::Builder>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // A Router is always ready; cloning it clones an `Arc`.
        let mut router = router.clone();
        async move {
            let response = router.call(request).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut connection = pin!(
        builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = ended {
        // A client gone, a timeout, a malformed request: the connection's own business.
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// An accept error that is one connection's (it went away before it was accepted), not
/// the listener's.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const GENEROUS: Duration = Duration::from_secs(30);

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(serve_within(listener, router, shutdown.clone(), limits));
        (address, shutdown, served)
    }

    /// Sends one `GET /peer` on `stream` and reads the whole answer (the server closes).
    async fn get_peer(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn answers_with_the_clients_address() {
        let (address, shutdown, served) = start(Limits::DEFAULT).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let local = stream.local_addr().unwrap();
        let answer = tokio::time::timeout(GENEROUS, get_peer(&mut stream))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&local.to_string()), "{answer}");
        shutdown.cancel();
        tokio::time::timeout(GENEROUS, served)
            .await
            .unwrap()
            .unwrap();
    }

    /// Headers that never end are cut at the timeout: the server closes the connection.
    #[tokio::test]
    async fn headers_that_never_end_are_cut_at_the_timeout() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::DEFAULT
        };
        let (address, _shutdown, _served) = start(limits).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET /peer HTTP/1.1\r\nHo").await.unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(GENEROUS, stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "still open after {GENEROUS:?}");
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    /// Past the connection bound the server stops accepting; it serves the next client as
    /// soon as a connection ends.
    #[tokio::test]
    async fn past_the_bound_a_client_waits_for_a_connection_to_end() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::DEFAULT
        };
        let (address, _shutdown, _served) = start(limits).await;
        let mut holding = TcpStream::connect(address).await.unwrap();
        holding.write_all(b"GET /peer HTTP/1.1\r\n").await.unwrap();
        // The kernel completes the handshake from its backlog; the server reads nothing.
        let mut waiting = TcpStream::connect(address).await.unwrap();
        let mut answer = tokio::spawn(async move { get_peer(&mut waiting).await });
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut answer)
                .await
                .is_err(),
            "served past the bound"
        );
        // Once the first client's request is whole (and answered), its connection ends
        // (`Connection: close`), and the waiting client is accepted and served.
        holding
            .write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut first = String::new();
        holding.read_to_string(&mut first).await.unwrap();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        let answer = tokio::time::timeout(GENEROUS, answer)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// Shutdown closes idle keep-alive connections and ends the server.
    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_returns() {
        let (address, shutdown, served) = start(Limits::DEFAULT).await;
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 1024];
        let read = idle.read(&mut buffer).await.unwrap();
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
        shutdown.cancel();
        tokio::time::timeout(GENEROUS, served)
            .await
            .unwrap()
            .unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(GENEROUS, idle.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
    }
}

//! A TCP fault proxy, like Toxiproxy: it sits in front of any dependency of a fleet (an
//! HTTP TTS or LLM server, PostgreSQL, …) and its faults ("toxics") are switched at run time.
//!
//! The fleet is pointed at [`FaultProxy::address`] instead of the dependency; every
//! accepted connection is carried both ways to the upstream. [`FaultProxy::set`] swaps the
//! [`ProxyToxics`] atomically: new connections see them at once, existing ones from their
//! next chunk on (and at once for `down`, `reset` and `stall`). [`ProxyFault`] wraps one
//! `set` in the chaos interface (inject, confirm, clear, undo on drop).
//!
//! Each direction of a connection is a reader and a deliverer joined by a bounded queue of
//! chunks. The reader timestamps each chunk on arrival and the deliverer writes it no
//! earlier than `arrival + latency`, so latency is pipelined (as in Toxiproxy) rather than
//! added once per chunk in series, and ordering is kept because one deliverer writes in
//! queue order. Chunk buffers go back to the reader through a second queue and are reused;
//! a direction never holds more than [`HELD_BYTES_PER_DIRECTION`], which is what bounds a
//! stalled connection's memory (the reader stops reading, and TCP pushes back on the peer).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::{Confirmation, FaultError};
use crate::scenario::faults::{Occurrence, ProxyToxicsSpec};

/// The fault kind as a scenario names it.
pub const KIND: &str = "proxy";

/// Size of one chunk buffer; one read fills at most one.
const CHUNK_BYTES: usize = 8 * 1024;

/// Chunk buffers one direction of one connection may hold (queued, being delayed, or held
/// by a stall).
const CHUNKS_PER_DIRECTION: usize = 8;

/// The most data one direction of one connection holds: a stalled or slowed connection
/// stops reading there, so its peer's writes block instead of the proxy's memory growing.
pub const HELD_BYTES_PER_DIRECTION: usize = CHUNK_BYTES * CHUNKS_PER_DIRECTION;

/// The longest `latency + jitter` or slice delay accepted; longer ones would be a stall.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// How long a probe connection waits for bytes (or a close) once the proxy has taken it.
const PROBE_WINDOW: Duration = Duration::from_millis(300);

/// How long a probe waits to connect and for the proxy to tell what it did.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which way data flows, for the toxics that shape data (latency, bandwidth, slicing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the client (the fleet) to the upstream: requests.
    Upstream,
    /// From the upstream back to the client: responses.
    Downstream,
    /// Both ways.
    #[default]
    Both,
}

impl Direction {
    fn includes(self, lane: Lane) -> bool {
        match self {
            Direction::Both => true,
            Direction::Upstream => lane == Lane::Upstream,
            Direction::Downstream => lane == Lane::Downstream,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
            Direction::Both => "both",
        })
    }
}

/// The two directions a connection carries; [`Direction`] selects among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Upstream,
    Downstream,
}

/// Data cut into slices with a pause between them, as a slow or fragmenting network does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Slicing {
    /// Bytes per slice (at least 1).
    pub size: usize,
    /// Pause before each slice but the first of a chunk.
    pub delay: Duration,
}

/// The faults a [`FaultProxy`] applies; the default is pass-through.
///
/// Several toxics may be set together. Per connection they act in this order: `down`
/// (closed at once) wins over `reset` (reset at once), which wins over `stall` (held); the
/// shaping toxics (latency and jitter, then bandwidth and slicing, which combine) act on
/// data that flows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyToxics {
    /// Each chunk is delivered `latency ± jitter` after it arrived at the proxy.
    pub latency: Duration,
    /// Uniform spread around `latency`, drawn per chunk from the seeded RNG; a delay below
    /// zero is zero. Ordering is kept: a chunk never overtakes the one before it.
    pub jitter: Duration,
    /// Bytes per second, per direction per connection; `None` is uncapped.
    pub bandwidth: Option<u64>,
    /// Cut data into slices with a delay between them.
    pub slicing: Option<Slicing>,
    /// Accept connections and forward nothing either way: data is read and held (at most
    /// [`HELD_BYTES_PER_DIRECTION`] each way) and delivered, in order, once the stall is
    /// cleared; until then nothing is answered.
    pub stall: bool,
    /// Reset connections, existing and new: `SO_LINGER` 0 then close on both sides, so the
    /// client (and the upstream) see `ECONNRESET`.
    pub reset: bool,
    /// The dependency is down: new connections are closed as soon as they are accepted and
    /// existing ones are closed. The listener keeps its port, so clearing brings it back.
    pub down: bool,
    /// Which way latency, bandwidth and slicing act.
    pub direction: Direction,
    /// The fraction (0 to 1) of connections the toxics apply to, decided per connection and
    /// per `set` from `seed` and the connection's accept order, so a run is reproducible.
    pub toxicity: f64,
    /// Seeds the toxicity draw and the jitter.
    pub seed: u64,
}

impl Default for ProxyToxics {
    fn default() -> Self {
        ProxyToxics::pass_through()
    }
}

impl ProxyToxics {
    /// No toxic: every byte is carried as it comes.
    pub fn pass_through() -> Self {
        ProxyToxics {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: None,
            slicing: None,
            stall: false,
            reset: false,
            down: false,
            direction: Direction::Both,
            toxicity: 1.0,
            seed: 0,
        }
    }

    /// Whether no toxic is set (`direction`, `toxicity` and `seed` alone change nothing).
    pub fn is_pass_through(&self) -> bool {
        !self.shapes_data() && !self.stall && !self.reset && !self.down
    }

    /// Whether a toxic that acts on data as it flows is set.
    fn shapes_data(&self) -> bool {
        !self.latency.is_zero()
            || !self.jitter.is_zero()
            || self.bandwidth.is_some()
            || self.slicing.is_some()
    }

    /// Checks the values a proxy could not honour.
    pub fn validate(&self) -> Result<(), InvalidToxics> {
        if !(0.0..=1.0).contains(&self.toxicity) {
            return Err(InvalidToxics::new(
                "toxicity",
                format!("{} is not a fraction between 0 and 1", self.toxicity),
            ));
        }
        if self.latency.saturating_add(self.jitter) > MAX_DELAY {
            return Err(InvalidToxics::new(
                "latency",
                format!("latency + jitter is over {MAX_DELAY:?}; use stall"),
            ));
        }
        if self.bandwidth == Some(0) {
            return Err(InvalidToxics::new(
                "bandwidth",
                "0 bytes per second; use stall",
            ));
        }
        if let Some(slicing) = self.slicing {
            if slicing.size == 0 {
                return Err(InvalidToxics::new("slicing.size", "a slice needs 1 byte"));
            }
            if slicing.delay > MAX_DELAY {
                return Err(InvalidToxics::new(
                    "slicing.delay",
                    format!("over {MAX_DELAY:?}; use stall"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for ProxyToxics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_pass_through() {
            return formatter.write_str("pass-through");
        }
        let mut parts: Vec<String> = Vec::new();
        if self.down {
            parts.push("down".into());
        }
        if self.reset {
            parts.push("reset".into());
        }
        if self.stall {
            parts.push("stall".into());
        }
        if !self.latency.is_zero() || !self.jitter.is_zero() {
            parts.push(format!("latency {:?} ± {:?}", self.latency, self.jitter));
        }
        if let Some(bandwidth) = self.bandwidth {
            parts.push(format!("bandwidth {bandwidth} B/s"));
        }
        if let Some(slicing) = self.slicing {
            parts.push(format!(
                "slices of {} B every {:?}",
                slicing.size, slicing.delay
            ));
        }
        write!(
            formatter,
            "{} (toxicity {}, direction {})",
            parts.join(", "),
            self.toxicity,
            self.direction
        )
    }
}

/// Toxics a proxy cannot honour.
#[derive(Debug, thiserror::Error)]
#[error("invalid proxy toxics: {field}: {message}")]
pub struct InvalidToxics {
    /// The [`ProxyToxics`] field at fault.
    pub field: &'static str,
    pub message: String,
}

impl InvalidToxics {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        InvalidToxics {
            field,
            message: message.into(),
        }
    }
}

/// What a proxy has carried, for reports and for confirming a toxic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ProxyCounters {
    /// Connections accepted since the proxy started (probes included).
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Bytes delivered from clients to the upstream.
    pub bytes_upstream: u64,
    /// Bytes delivered from the upstream to clients.
    pub bytes_downstream: u64,
    /// Which `set` is in force (0 is the pass-through the proxy starts with).
    pub generation: u64,
    /// Connections a toxic acted on since the last `set`: delayed, throttled or sliced,
    /// stalled, reset, or closed by `down`.
    pub affected_connections: u64,
    /// Chunks a toxic acted on since the last `set`: delayed, throttled or sliced, or read
    /// and held by a stall.
    pub affected_chunks: u64,
}

/// One `set` of toxics, with what it has done so far.
#[derive(Debug)]
struct Generation {
    number: u64,
    toxics: ProxyToxics,
    affected_connections: AtomicU64,
    affected_chunks: AtomicU64,
}

impl Generation {
    fn new(number: u64, toxics: ProxyToxics) -> Self {
        Generation {
            number,
            toxics,
            affected_connections: AtomicU64::new(0),
            affected_chunks: AtomicU64::new(0),
        }
    }

    /// Whether these toxics apply to the connection accepted `connection`-th: a draw from
    /// a stream of the seeded RNG of its own, so the answer is the same wherever it is asked
    /// and does not depend on the order in which connections happen to ask.
    fn applies_to(&self, connection: u64) -> bool {
        let toxicity = self.toxics.toxicity;
        if self.toxics.is_pass_through() || toxicity <= 0.0 {
            false
        } else if toxicity >= 1.0 {
            true
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(self.toxics.seed);
            rng.set_stream(connection);
            rng.random::<f64>() < toxicity
        }
    }

    fn count_chunk(&self) {
        self.affected_chunks.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the proxy did with a probe connection, told by the connection's own task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySaw {
    /// Closed at once: the proxy is down.
    Down,
    /// Reset at once.
    Reset,
    /// Connected to the upstream, then held by a stall.
    Stalled,
    /// Connected to the upstream and carried.
    Upstream,
    /// The upstream could not be reached.
    UpstreamFailed(String),
}

/// What the probe's client end saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeClient {
    /// The connection could not be made (the proxy is shut down).
    Refused(String),
    /// No connection within the probe timeout.
    Unreachable,
    /// The connection was closed (end of stream) with nothing sent.
    Closed,
    /// The connection was reset.
    Reset,
    /// Bytes came back (the upstream speaks first).
    Answered(usize),
    /// Nothing came back within the probe window and the connection stayed open.
    Silent,
    /// Reading failed otherwise.
    Failed(String),
    /// Connected and carried; not read further, since the proxy told it reached the upstream.
    Carried,
}

/// One probe connection: it sends nothing, so it cannot harm an HTTP or PostgreSQL upstream
/// (which sees at most a connection opened and closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub client: ProbeClient,
    /// `None` if the proxy did not tell within the probe timeout.
    pub proxy: Option<ProxySaw>,
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.client {
            ProbeClient::Refused(error) => write!(formatter, "probe refused ({error})")?,
            ProbeClient::Unreachable => {
                write!(formatter, "probe not connected within {PROBE_TIMEOUT:?}")?
            }
            ProbeClient::Closed => formatter.write_str("probe closed by the proxy")?,
            ProbeClient::Reset => formatter.write_str("probe reset by the proxy")?,
            ProbeClient::Answered(bytes) => write!(formatter, "probe answered with {bytes} bytes")?,
            ProbeClient::Silent => {
                write!(formatter, "probe open, no bytes within {PROBE_WINDOW:?}")?
            }
            ProbeClient::Failed(error) => write!(formatter, "probe read failed ({error})")?,
            ProbeClient::Carried => formatter.write_str("probe connected")?,
        }
        match &self.proxy {
            None => formatter.write_str("; the proxy did not report it"),
            Some(ProxySaw::Down) => formatter.write_str("; the proxy closed it (down)"),
            Some(ProxySaw::Reset) => formatter.write_str("; the proxy reset it"),
            Some(ProxySaw::Stalled) => formatter.write_str("; the proxy holds it (stall)"),
            Some(ProxySaw::Upstream) => formatter.write_str("; the proxy reached the upstream"),
            Some(ProxySaw::UpstreamFailed(error)) => {
                write!(
                    formatter,
                    "; the proxy could not reach the upstream ({error})"
                )
            }
        }
    }
}

/// Probe connections waiting to hear what the proxy did with them, by their local address.
#[derive(Debug, Default)]
struct ProbeRegistry {
    /// Lets every other connection skip the lock.
    waiting: AtomicUsize,
    entries: Mutex<Vec<(SocketAddr, oneshot::Sender<ProxySaw>)>>,
}

impl ProbeRegistry {
    fn expect(&self, local: SocketAddr) -> oneshot::Receiver<ProxySaw> {
        let (sender, receiver) = oneshot::channel();
        lock(&self.entries).push((local, sender));
        self.waiting.fetch_add(1, Ordering::SeqCst);
        receiver
    }

    fn forget(&self, local: SocketAddr) {
        let mut entries = lock(&self.entries);
        if let Some(index) = entries.iter().position(|(address, _)| *address == local) {
            entries.swap_remove(index);
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn report(&self, peer: SocketAddr, saw: ProxySaw) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut entries = lock(&self.entries);
        let matches = |local: &SocketAddr| {
            local.port() == peer.port() && (local.ip().is_unspecified() || local.ip() == peer.ip())
        };
        if let Some(index) = entries.iter().position(|(local, _)| matches(local)) {
            let (_, sender) = entries.swap_remove(index);
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            // The probe may have given up waiting; nothing to tell then.
            let _ = sender.send(saw);
        }
    }
}

/// Locks a mutex, carrying on with the data if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What every task of one proxy shares.
#[derive(Debug)]
struct Shared {
    address: SocketAddr,
    upstream: SocketAddr,
    shutdown: CancellationToken,
    /// The toxics in force; connections watch it so a `set` reaches them without polling.
    toxics: watch::Sender<Arc<Generation>>,
    accepted: AtomicU64,
    open: AtomicU64,
    bytes_upstream: AtomicU64,
    bytes_downstream: AtomicU64,
    probes: ProbeRegistry,
}

/// A running TCP fault proxy; clones are handles to the same proxy.
///
/// It runs until the `shutdown` token given to [`FaultProxy::spawn`] is cancelled, which
/// closes the listener and every connection; dropping the handles does not stop it.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 picks a free port, see [`FaultProxy::address`]) and
    /// carries every accepted connection to `upstream`, in pass-through until toxics are set.
    pub async fn spawn(
        listen: SocketAddr,
        upstream: SocketAddr,
        shutdown: CancellationToken,
    ) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let (toxics, _) = watch::channel(Arc::new(Generation::new(0, ProxyToxics::pass_through())));
        let shared = Arc::new(Shared {
            address: listener.local_addr()?,
            upstream,
            shutdown,
            toxics,
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            bytes_upstream: AtomicU64::new(0),
            bytes_downstream: AtomicU64::new(0),
            probes: ProbeRegistry::default(),
        });
        tokio::spawn(accept_connections(listener, Arc::clone(&shared)));
        Ok(FaultProxy { shared })
    }

    /// The address the proxy listens on, for the fleet to use instead of the upstream's.
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// The dependency the proxy carries connections to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Whether the proxy has been shut down.
    pub fn is_shut_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Swaps in `toxics` atomically and resets the affected counters; returns the number of
    /// this `set` (see [`ProxyCounters::generation`]).
    pub fn set(&self, toxics: ProxyToxics) -> Result<u64, InvalidToxics> {
        toxics.validate()?;
        let mut number = 0;
        self.shared.toxics.send_modify(|current| {
            number = current.number + 1;
            *current = Arc::new(Generation::new(number, toxics));
        });
        Ok(number)
    }

    /// Back to pass-through.
    pub fn clear(&self) {
        self.shared.toxics.send_modify(|current| {
            *current = Arc::new(Generation::new(
                current.number + 1,
                ProxyToxics::pass_through(),
            ));
        });
    }

    /// Back to pass-through if `generation` is still the `set` in force; `false` if a later
    /// `set` replaced it (which is then left alone).
    fn clear_generation(&self, generation: u64) -> bool {
        self.shared.toxics.send_if_modified(|current| {
            if current.number != generation {
                return false;
            }
            *current = Arc::new(Generation::new(
                current.number + 1,
                ProxyToxics::pass_through(),
            ));
            true
        })
    }

    /// The toxics in force.
    pub fn toxics(&self) -> ProxyToxics {
        self.shared.toxics.borrow().toxics.clone()
    }

    pub fn counters(&self) -> ProxyCounters {
        let generation = Arc::clone(&self.shared.toxics.borrow());
        ProxyCounters {
            connections_accepted: self.shared.accepted.load(Ordering::Relaxed),
            connections_open: self.shared.open.load(Ordering::Relaxed),
            bytes_upstream: self.shared.bytes_upstream.load(Ordering::Relaxed),
            bytes_downstream: self.shared.bytes_downstream.load(Ordering::Relaxed),
            generation: generation.number,
            affected_connections: generation.affected_connections.load(Ordering::Relaxed),
            affected_chunks: generation.affected_chunks.load(Ordering::Relaxed),
        }
    }

    /// Opens one connection through the proxy that sends nothing, and reports what its
    /// client end saw and what the proxy did with it.
    pub async fn probe(&self) -> ProbeOutcome {
        let target = connectable(self.address());
        let (socket, local) = match probe_socket(target) {
            Ok(bound) => bound,
            Err(error) => {
                return ProbeOutcome {
                    client: ProbeClient::Failed(error.to_string()),
                    proxy: None,
                };
            }
        };
        let registry = &self.shared.probes;
        let report = registry.expect(local);
        let mut stream = match timeout(PROBE_TIMEOUT, socket.connect(target)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                registry.forget(local);
                return ProbeOutcome {
                    client: ProbeClient::Refused(error.to_string()),
                    proxy: None,
                };
            }
            Err(_) => {
                registry.forget(local);
                return ProbeOutcome {
                    client: ProbeClient::Unreachable,
                    proxy: None,
                };
            }
        };
        let proxy = tokio::select! {
            reported = timeout(PROBE_TIMEOUT, report) => reported.ok().and_then(Result::ok),
            () = self.shared.shutdown.cancelled() => None,
        };
        if proxy.is_none() {
            registry.forget(local);
        }
        let client = if proxy == Some(ProxySaw::Upstream) {
            ProbeClient::Carried
        } else {
            read_probe(&mut stream).await
        };
        ProbeOutcome { client, proxy }
    }
}

/// Where a local client reaches an address the proxy may have bound as "any".
fn connectable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), address.port())
        }
        _ => address,
    }
}

/// A socket bound before it connects, so the proxy can be told its address in advance.
fn probe_socket(target: SocketAddr) -> io::Result<(TcpSocket, SocketAddr)> {
    let (socket, any) = match target {
        SocketAddr::V4(_) => (TcpSocket::new_v4()?, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        SocketAddr::V6(_) => (TcpSocket::new_v6()?, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    };
    let ip = if target.ip().is_loopback() {
        target.ip()
    } else {
        any
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    let local = socket.local_addr()?;
    Ok((socket, local))
}

async fn read_probe(stream: &mut TcpStream) -> ProbeClient {
    let mut answer = [0_u8; 256];
    match timeout(PROBE_WINDOW, stream.read(&mut answer)).await {
        Err(_) => ProbeClient::Silent,
        Ok(Ok(0)) => ProbeClient::Closed,
        Ok(Ok(bytes)) => ProbeClient::Answered(bytes),
        Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionReset => ProbeClient::Reset,
        Ok(Err(error)) => ProbeClient::Failed(error.to_string()),
    }
}

async fn accept_connections(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_connection = 0_u64;
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                let open = OpenConnection::new(Arc::clone(&shared));
                tokio::spawn(serve_connection(open, client, peer, next_connection));
                next_connection += 1;
            }
            Err(error) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(address = %shared.address, %error, "proxy accept failed");
                tokio::select! {
                    () = shared.shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// Counts a connection as open for as long as its task lives, however it ends.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(shared)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a carried connection ended.
enum Ending {
    /// Both directions reached end of stream, or one failed.
    Carried,
    Down,
    Reset,
    Shutdown,
}

async fn serve_connection(open: OpenConnection, mut client: TcpStream, peer: SocketAddr, id: u64) {
    let shared = &*open.0;
    let mut toxics = shared.toxics.subscribe();
    let connection = Connection {
        id,
        shared,
        counted_generation: AtomicU64::new(u64::MAX),
    };
    let generation = Arc::clone(&toxics.borrow_and_update());
    if let Some(cut) = connection.cut_by(&generation) {
        match cut {
            Ending::Reset => {
                shared.probes.report(peer, ProxySaw::Reset);
                reset(&client);
            }
            _ => shared.probes.report(peer, ProxySaw::Down),
        }
        return;
    }
    let Some(mut upstream) = reach_upstream(&connection, &toxics, peer).await else {
        return;
    };
    // Chunks are already whole writes; Nagle would only add latency nobody asked for.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let ending = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let carry = async {
            tokio::try_join!(
                connection.carry(client_read, upstream_write, Lane::Upstream),
                connection.carry(upstream_read, client_write, Lane::Downstream),
            )
        };
        tokio::select! {
            () = shared.shutdown.cancelled() => Ending::Shutdown,
            cut = connection.wait_for_cut(&mut toxics) => cut,
            carried = carry => {
                if let Err(error) = carried {
                    tracing::debug!(%peer, %error, "proxied connection failed");
                }
                Ending::Carried
            }
        }
    };
    match ending {
        Ending::Reset => {
            reset(&client);
            reset(&upstream);
        }
        Ending::Down | Ending::Carried | Ending::Shutdown => {}
    }
    // Dropping both streams closes them (with a reset if they were set to).
}

/// Connects to the upstream and tells a waiting probe what became of its connection;
/// `None` if the upstream cannot be reached or the proxy shuts down first.
async fn reach_upstream(
    connection: &Connection<'_>,
    toxics: &watch::Receiver<Arc<Generation>>,
    peer: SocketAddr,
) -> Option<TcpStream> {
    let shared = connection.shared;
    let connected = tokio::select! {
        () = shared.shutdown.cancelled() => return None,
        connected = TcpStream::connect(shared.upstream) => connected,
    };
    let upstream = match connected {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::debug!(upstream = %shared.upstream, %error, "proxy could not reach the upstream");
            let saw = ProxySaw::UpstreamFailed(error.to_string());
            shared.probes.report(peer, saw);
            return None;
        }
    };
    let stalled = {
        let generation = toxics.borrow();
        generation.toxics.stall && generation.applies_to(connection.id)
    };
    let saw = if stalled {
        ProxySaw::Stalled
    } else {
        ProxySaw::Upstream
    };
    shared.probes.report(peer, saw);
    Some(upstream)
}

/// Makes the coming close a reset (`SO_LINGER` 0).
fn reset(stream: &TcpStream) {
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "proxy could not set SO_LINGER 0");
    }
}

/// One buffer of data read in one direction, with when it arrived.
struct Chunk {
    buffer: Vec<u8>,
    len: usize,
    arrived: Instant,
}

/// The toxics as they stand for one direction of one connection.
struct View {
    generation: Arc<Generation>,
    applies: bool,
    jitter: ChaCha8Rng,
}

impl View {
    fn of(generation: Arc<Generation>, connection: u64, lane: Lane) -> View {
        let applies = generation.applies_to(connection);
        let salt = match lane {
            Lane::Upstream => 0x5eed_0001,
            Lane::Downstream => 0x5eed_0002,
        };
        let mut jitter = ChaCha8Rng::seed_from_u64(generation.toxics.seed ^ salt);
        jitter.set_stream(connection);
        View {
            generation,
            applies,
            jitter,
        }
    }

    fn stalls(&self) -> bool {
        self.applies && self.generation.toxics.stall
    }

    fn shapes(&self, lane: Lane) -> bool {
        let toxics = &self.generation.toxics;
        self.applies && toxics.shapes_data() && toxics.direction.includes(lane)
    }

    /// `latency ± jitter` for the next chunk.
    fn delay(&mut self) -> Duration {
        let toxics = &self.generation.toxics;
        if toxics.jitter.is_zero() {
            return toxics.latency;
        }
        let spread = toxics.jitter.as_secs_f64() * (self.jitter.random::<f64>() * 2.0 - 1.0);
        // validate() bounds latency + jitter, so this is finite and in range.
        Duration::from_secs_f64((toxics.latency.as_secs_f64() + spread).max(0.0))
    }
}

/// One accepted connection, shared by the tasks of its two directions.
struct Connection<'a> {
    /// Accept order, which picks the connection's draw in the toxicity RNG.
    id: u64,
    shared: &'a Shared,
    /// The last generation that counted this connection as affected, so it counts once.
    counted_generation: AtomicU64,
}

impl Connection<'_> {
    fn count(&self, generation: &Generation) {
        if self
            .counted_generation
            .swap(generation.number, Ordering::Relaxed)
            != generation.number
        {
            generation
                .affected_connections
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `generation` ends this connection now, and how.
    fn cut_by(&self, generation: &Generation) -> Option<Ending> {
        let toxics = &generation.toxics;
        if !(toxics.down || toxics.reset) || !generation.applies_to(self.id) {
            return None;
        }
        self.count(generation);
        Some(if toxics.down {
            Ending::Down
        } else {
            Ending::Reset
        })
    }

    /// Returns once a `set` closes or resets this connection.
    async fn wait_for_cut(&self, toxics: &mut watch::Receiver<Arc<Generation>>) -> Ending {
        loop {
            if toxics.changed().await.is_err() {
                // The proxy is gone; shutdown ends the connection instead.
                return std::future::pending().await;
            }
            let generation = Arc::clone(&toxics.borrow_and_update());
            if let Some(cut) = self.cut_by(&generation) {
                return cut;
            }
        }
    }

    /// Carries one direction until end of stream (then shuts down the write side, so a
    /// half-close reaches the other peer) or an error.
    async fn carry(&self, from: ReadHalf<'_>, to: WriteHalf<'_>, lane: Lane) -> io::Result<()> {
        let (chunks, queued) = mpsc::channel(CHUNKS_PER_DIRECTION);
        let (spares, spare) = mpsc::channel(CHUNKS_PER_DIRECTION);
        tokio::try_join!(
            self.receive(from, chunks, spare),
            self.deliver(to, queued, spares, lane),
        )?;
        Ok(())
    }

    /// Reads chunks into reused buffers and queues them; holds at most
    /// [`CHUNKS_PER_DIRECTION`] buffers, then waits for the deliverer to give one back.
    async fn receive(
        &self,
        mut from: ReadHalf<'_>,
        chunks: mpsc::Sender<Chunk>,
        mut spare: mpsc::Receiver<Vec<u8>>,
    ) -> io::Result<()> {
        let toxics = self.shared.toxics.subscribe();
        let mut allocated = 0;
        loop {
            // An idle connection holds no buffer.
            from.readable().await?;
            let mut buffer = match spare.try_recv() {
                Ok(buffer) => buffer,
                Err(_) if allocated < CHUNKS_PER_DIRECTION => {
                    allocated += 1;
                    vec![0; CHUNK_BYTES]
                }
                Err(_) => match spare.recv().await {
                    Some(buffer) => buffer,
                    None => return Ok(()),
                },
            };
            let len = from.read(&mut buffer).await?;
            if len == 0 {
                // Dropping `chunks` tells the deliverer the stream ended.
                return Ok(());
            }
            {
                let generation = toxics.borrow();
                if generation.toxics.stall && generation.applies_to(self.id) {
                    generation.count_chunk();
                }
            }
            let chunk = Chunk {
                buffer,
                len,
                arrived: Instant::now(),
            };
            if chunks.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Writes queued chunks as the toxics say, and gives their buffers back.
    async fn deliver(
        &self,
        mut to: WriteHalf<'_>,
        mut queued: mpsc::Receiver<Chunk>,
        spares: mpsc::Sender<Vec<u8>>,
        lane: Lane,
    ) -> io::Result<()> {
        let mut toxics = self.shared.toxics.subscribe();
        let mut view = View::of(Arc::clone(&toxics.borrow_and_update()), self.id, lane);
        let mut pace = Instant::now();
        loop {
            if view.stalls() {
                self.count(&view.generation);
                if toxics.changed().await.is_err() {
                    return Ok(());
                }
                view = View::of(Arc::clone(&toxics.borrow_and_update()), self.id, lane);
                continue;
            }
            let chunk = tokio::select! {
                biased;
                changed = toxics.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    view = View::of(Arc::clone(&toxics.borrow_and_update()), self.id, lane);
                    continue;
                }
                chunk = queued.recv() => chunk,
            };
            let Some(chunk) = chunk else {
                // End of stream from this side's peer: pass the half-close on. The other
                // peer may already be gone, which ends the connection anyway.
                let _ = to.shutdown().await;
                return Ok(());
            };
            let data = &chunk.buffer[..chunk.len];
            if view.shapes(lane) {
                self.count(&view.generation);
                view.generation.count_chunk();
                self.shape(&mut to, data, &mut view, chunk.arrived, &mut pace, lane)
                    .await?;
            } else {
                self.write(&mut to, data, lane).await?;
            }
            // The spare queue has room for every buffer there is, so this never fails for
            // want of room; if the reader is gone the buffer is simply freed.
            let _ = spares.try_send(chunk.buffer);
        }
    }

    /// Delivers one chunk with latency, then in slices and/or at the bandwidth.
    async fn shape(
        &self,
        to: &mut WriteHalf<'_>,
        data: &[u8],
        view: &mut View,
        arrived: Instant,
        pace: &mut Instant,
        lane: Lane,
    ) -> io::Result<()> {
        let delay = view.delay();
        if !delay.is_zero() {
            tokio::time::sleep_until(arrived + delay).await;
        }
        let toxics = &view.generation.toxics;
        match toxics.slicing {
            None => {
                self.paced_write(to, data, toxics.bandwidth, pace, lane)
                    .await
            }
            Some(slicing) => {
                for (index, slice) in data.chunks(slicing.size).enumerate() {
                    if index > 0 && !slicing.delay.is_zero() {
                        tokio::time::sleep(slicing.delay).await;
                    }
                    self.paced_write(to, slice, toxics.bandwidth, pace, lane)
                        .await?;
                }
                Ok(())
            }
        }
    }

    /// Writes `data` no faster than `bandwidth` bytes per second, in pieces of a tenth of a
    /// second each; `pace` is when the next piece may go, kept across chunks. Idle time
    /// earns no burst.
    async fn paced_write(
        &self,
        to: &mut WriteHalf<'_>,
        data: &[u8],
        bandwidth: Option<u64>,
        pace: &mut Instant,
        lane: Lane,
    ) -> io::Result<()> {
        let Some(rate) = bandwidth.filter(|rate| *rate > 0) else {
            return self.write(to, data, lane).await;
        };
        let piece = usize::try_from(rate / 10)
            .unwrap_or(CHUNK_BYTES)
            .clamp(1, CHUNK_BYTES);
        for part in data.chunks(piece) {
            let now = Instant::now();
            if *pace < now {
                *pace = now;
            }
            tokio::time::sleep_until(*pace).await;
            self.write(to, part, lane).await?;
            *pace += Duration::from_secs_f64(part.len() as f64 / rate as f64);
        }
        Ok(())
    }

    async fn write(&self, to: &mut WriteHalf<'_>, data: &[u8], lane: Lane) -> io::Result<()> {
        to.write_all(data).await?;
        let counter = match lane {
            Lane::Upstream => &self.shared.bytes_upstream,
            Lane::Downstream => &self.shared.bytes_downstream,
        };
        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A set of toxics on a [`FaultProxy`], as a chaos fault (kind `"proxy"`).
///
/// One fault per proxy at a time: a later `set` replaces this one's toxics, and this fault's
/// `clear` (or drop) then leaves the later ones alone.
#[derive(Debug)]
pub struct ProxyFault {
    proxy: FaultProxy,
    toxics: ProxyToxics,
    /// The `set` this fault made, so clearing cannot undo someone else's.
    generation: u64,
    cleared: bool,
    /// Probe connections this fault made (they count among the affected connections, but
    /// only the fleet's own traffic shows the fault reaches the fleet).
    probes: u64,
}

impl ProxyFault {
    /// Switches on a scenario's `proxy` toxics on `proxy` for its `occurrence`-th time,
    /// which seeds the draw of the connections `toxicity` affects.
    pub fn inject_spec(
        proxy: FaultProxy,
        spec: &ProxyToxicsSpec,
        occurrence: &Occurrence,
    ) -> Result<ProxyFault, FaultError> {
        let toxics = ProxyToxics {
            latency: spec.latency,
            jitter: spec.jitter,
            bandwidth: spec.bandwidth,
            slicing: spec.slice.map(|(size, delay)| Slicing { size, delay }),
            stall: spec.stall,
            reset: spec.reset,
            down: spec.down,
            toxicity: spec.toxicity,
            seed: occurrence.fault as u64 * 1000 + u64::from(occurrence.number),
            ..ProxyToxics::pass_through()
        };
        ProxyFault::inject(proxy, toxics)
    }

    /// Sets `toxics` on `proxy`; existing connections see them from their next chunk (at once
    /// for down, reset and stall), new ones from the start.
    pub fn inject(proxy: FaultProxy, toxics: ProxyToxics) -> Result<ProxyFault, FaultError> {
        if toxics.is_pass_through() {
            return Err(FaultError::new(KIND, "no toxic given: pass-through"));
        }
        if proxy.is_shut_down() {
            return Err(FaultError::new(
                KIND,
                format!("the proxy on {} is shut down", proxy.address()),
            ));
        }
        let generation = proxy
            .set(toxics.clone())
            .map_err(|error| FaultError::new(KIND, error.to_string()))?;
        tracing::info!(proxy = %proxy.address(), %toxics, "proxy toxics set");
        Ok(ProxyFault {
            proxy,
            toxics,
            generation,
            cleared: false,
            probes: 0,
        })
    }

    pub fn proxy(&self) -> &FaultProxy {
        &self.proxy
    }

    pub fn toxics(&self) -> &ProxyToxics {
        &self.toxics
    }

    /// In effect only if the fleet's traffic met it: for `down`, `reset` and `stall`,
    /// connections other than voxsoak's own probe must have been closed, reset or held since
    /// the `set` (the probe, which sends nothing, only shows what the proxy does); for the
    /// shaping toxics, chunks must have been delayed, throttled or sliced since the `set`.
    pub async fn confirm(&mut self) -> Confirmation {
        let counters = self.proxy.counters();
        if counters.generation != self.generation {
            return Confirmation::not_in_effect(format!(
                "proxy {}: its toxics were replaced by a later set",
                self.proxy.address()
            ));
        }
        if self.proxy.is_shut_down() {
            return Confirmation::not_in_effect(format!(
                "proxy {} is shut down",
                self.proxy.address()
            ));
        }
        let toxics = &self.toxics;
        let expected = if toxics.down {
            Some(("down", ProxySaw::Down))
        } else if toxics.reset {
            Some(("reset", ProxySaw::Reset))
        } else if toxics.stall {
            Some(("stall", ProxySaw::Stalled))
        } else {
            None
        };
        let Some((name, saw)) = expected else {
            return self.confirm_shaping(&counters);
        };
        let probe = self.proxy.probe().await;
        self.probes += 1;
        let client_agrees = match saw {
            ProxySaw::Down => matches!(probe.client, ProbeClient::Closed | ProbeClient::Reset),
            ProxySaw::Reset => probe.client == ProbeClient::Reset,
            _ => probe.client == ProbeClient::Silent,
        };
        let counters = self.proxy.counters();
        let address = self.proxy.address();
        // Connections other than our probes: the fleet's own traffic met the fault.
        let others = counters.affected_connections.saturating_sub(self.probes);
        let probe_agrees = probe.proxy.as_ref() == Some(&saw) && client_agrees;
        if others > 0 {
            Confirmation::in_effect(format!(
                "proxy {address} ({name}): {others} connections other than voxsoak's probes \
                 affected since set (toxicity {}); {probe}",
                toxics.toxicity
            ))
        } else if probe_agrees {
            Confirmation::not_in_effect(format!(
                "proxy {address} ({name}): {probe}, but no connection of the fleet came \
                 through it since set (is the fleet pointed at {address}?)"
            ))
        } else {
            Confirmation::not_in_effect(format!(
                "proxy {address} ({name}): no connection affected since set; {probe}"
            ))
        }
    }

    fn confirm_shaping(&self, counters: &ProxyCounters) -> Confirmation {
        let address = self.proxy.address();
        if counters.affected_chunks > 0 {
            Confirmation::in_effect(format!(
                "proxy {address} ({}): {} chunks on {} connections shaped since set",
                self.toxics, counters.affected_chunks, counters.affected_connections
            ))
        } else {
            Confirmation::not_in_effect(format!(
                "proxy {address} ({}): no chunk shaped since set ({} connections open); \
                 no traffic to show it",
                self.toxics, counters.connections_open
            ))
        }
    }

    /// Restores pass-through and checks that a probe connection reaches the upstream again.
    pub async fn clear(mut self) -> Result<String, FaultError> {
        self.cleared = true;
        let address = self.proxy.address();
        if !self.proxy.clear_generation(self.generation) {
            return Ok(format!(
                "proxy {address}: {} had already been replaced by a later set; left as is",
                self.toxics
            ));
        }
        tracing::info!(proxy = %address, "proxy toxics cleared");
        if self.proxy.is_shut_down() {
            return Ok(format!(
                "proxy {address}: {} removed; the proxy is shut down, nothing to probe",
                self.toxics
            ));
        }
        let probe = self.proxy.probe().await;
        if probe.proxy == Some(ProxySaw::Upstream) {
            Ok(format!(
                "proxy {address}: {} removed; a probe connection reached the upstream {}",
                self.toxics,
                self.proxy.upstream()
            ))
        } else {
            Err(FaultError::new(
                KIND,
                format!(
                    "proxy {address}: {} removed, but a probe connection did not reach the \
                     upstream {}: {probe}",
                    self.toxics,
                    self.proxy.upstream()
                ),
            ))
        }
    }
}

impl Drop for ProxyFault {
    fn drop(&mut self) {
        if !self.cleared {
            self.proxy.clear_generation(self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upper bound for anything that should happen "soon": never the thing measured.
    const GENEROUS: Duration = Duration::from_secs(20);

    /// An echo server: every connection gets back what it sends, and a half-close back
    /// once its client half-closes.
    async fn echo_server(shutdown: CancellationToken) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut stream, _)) = accepted else {
                    continue;
                };
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        address
    }

    struct Setup {
        proxy: FaultProxy,
        shutdown: CancellationToken,
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn proxied_echo() -> Setup {
        let shutdown = CancellationToken::new();
        let upstream = echo_server(shutdown.clone()).await;
        let proxy = FaultProxy::spawn("127.0.0.1:0".parse().unwrap(), upstream, shutdown.clone())
            .await
            .unwrap();
        Setup { proxy, shutdown }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|index| (index * 31 + index / 251) as u8)
            .collect()
    }

    /// Sends `payload` on `stream` and reads as many bytes back.
    async fn exchange(stream: &mut TcpStream, payload: &[u8]) -> io::Result<Vec<u8>> {
        let mut answer = vec![0; payload.len()];
        let (mut read, mut write) = stream.split();
        let sending = async { write.write_all(payload).await };
        let receiving = async { read.read_exact(&mut answer).await.map(|_| ()) };
        timeout(GENEROUS, async { tokio::try_join!(sending, receiving) })
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo in time"))??;
        Ok(answer)
    }

    async fn round_trip(address: SocketAddr, payload: &[u8]) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(address).await?;
        exchange(&mut stream, payload).await
    }

    /// What the next read on a connection the proxy cut returns: an error or end of stream.
    async fn read_after_cut(stream: &mut TcpStream) -> io::Result<usize> {
        let mut byte = [0_u8; 16];
        timeout(GENEROUS, stream.read(&mut byte))
            .await
            .expect("the cut connection stays open")
    }

    /// Waits for a condition on something that has no event to await (the proxy's counters).
    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + GENEROUS;
        while !condition() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn pass_through_is_byte_exact_both_ways_and_passes_the_half_close_on() {
        let setup = proxied_echo().await;
        let payload = pattern(1 << 20);
        let mut stream = TcpStream::connect(setup.proxy.address()).await.unwrap();
        let (mut read, mut write) = stream.split();
        let sending = async {
            write.write_all(&payload).await?;
            // The echo server half-closes only once this half-close has reached it.
            write.shutdown().await
        };
        let mut answer = Vec::with_capacity(payload.len());
        let receiving = read.read_to_end(&mut answer);
        timeout(GENEROUS, async { tokio::try_join!(sending, receiving) })
            .await
            .unwrap()
            .unwrap();
        assert!(answer == payload, "1 MiB came back different");
        let counters = setup.proxy.counters();
        assert_eq!(counters.bytes_upstream, 1 << 20);
        assert_eq!(counters.bytes_downstream, 1 << 20);
        assert_eq!(counters.connections_accepted, 1);
        assert_eq!(counters.affected_chunks, 0);
    }

    #[tokio::test]
    async fn latency_delays_each_way_and_confirms_only_once_traffic_shows_it() {
        let setup = proxied_echo().await;
        let latency = Duration::from_millis(200);
        let toxics = ProxyToxics {
            latency,
            ..ProxyToxics::default()
        };
        let mut fault = ProxyFault::inject(setup.proxy.clone(), toxics).unwrap();
        let idle = fault.confirm().await;
        assert!(!idle.in_effect, "{idle:?}");

        let started = Instant::now();
        let answer = round_trip(setup.proxy.address(), b"ping").await.unwrap();
        assert_eq!(answer, b"ping");
        assert!(started.elapsed() >= latency * 2, "{:?}", started.elapsed());

        let seen = fault.confirm().await;
        assert!(seen.in_effect, "{seen:?}");
        let cleared = fault.clear().await.unwrap();
        assert!(cleared.contains("reached the upstream"), "{cleared}");
        assert!(setup.proxy.toxics().is_pass_through());
    }

    #[tokio::test]
    async fn latency_in_one_direction_leaves_the_other_alone() {
        let setup = proxied_echo().await;
        let latency = Duration::from_millis(150);
        setup
            .proxy
            .set(ProxyToxics {
                latency,
                direction: Direction::Downstream,
                ..ProxyToxics::default()
            })
            .unwrap();
        let started = Instant::now();
        round_trip(setup.proxy.address(), b"ping").await.unwrap();
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
        // One chunk each way, only the downstream one delayed.
        eventually("one chunk counted", || {
            setup.proxy.counters().affected_chunks == 1
        })
        .await;
    }

    #[tokio::test]
    async fn jitter_keeps_the_order_of_the_bytes() {
        let setup = proxied_echo().await;
        setup
            .proxy
            .set(ProxyToxics {
                latency: Duration::from_millis(20),
                jitter: Duration::from_millis(20),
                seed: 7,
                ..ProxyToxics::default()
            })
            .unwrap();
        let payload = pattern(64 * 1024);
        let mut stream = TcpStream::connect(setup.proxy.address()).await.unwrap();
        let (mut read, mut write) = stream.split();
        let sending = async {
            for piece in payload.chunks(1024) {
                write.write_all(piece).await?;
                tokio::task::yield_now().await;
            }
            write.shutdown().await
        };
        let mut answer = Vec::new();
        let receiving = read.read_to_end(&mut answer);
        timeout(GENEROUS, async { tokio::try_join!(sending, receiving) })
            .await
            .unwrap()
            .unwrap();
        assert!(answer == payload, "bytes came back out of order");
        assert!(setup.proxy.counters().affected_chunks >= 2);
    }

    #[tokio::test]
    async fn bandwidth_caps_each_direction() {
        let setup = proxied_echo().await;
        let toxics = ProxyToxics {
            bandwidth: Some(32 * 1024),
            ..ProxyToxics::default()
        };
        let mut fault = ProxyFault::inject(setup.proxy.clone(), toxics).unwrap();
        let payload = pattern(64 * 1024);
        let started = Instant::now();
        let answer = round_trip(setup.proxy.address(), &payload).await.unwrap();
        assert!(answer == payload);
        // 64 KiB at 32 KiB/s is 2 s per direction; the directions overlap.
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert!(fault.confirm().await.in_effect);
        fault.clear().await.unwrap();
    }

    #[tokio::test]
    async fn slicing_pauses_between_slices() {
        let setup = proxied_echo().await;
        setup
            .proxy
            .set(ProxyToxics {
                slicing: Some(Slicing {
                    size: 1000,
                    delay: Duration::from_millis(50),
                }),
                direction: Direction::Upstream,
                ..ProxyToxics::default()
            })
            .unwrap();
        // One write of one chunk: 8 slices, 7 pauses.
        let payload = pattern(8000);
        let started = Instant::now();
        let answer = round_trip(setup.proxy.address(), &payload).await.unwrap();
        assert!(answer == payload);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn stall_answers_nothing_until_cleared_then_delivers_what_it_held() {
        let setup = proxied_echo().await;
        let mut before = TcpStream::connect(setup.proxy.address()).await.unwrap();
        assert_eq!(exchange(&mut before, b"warm").await.unwrap(), b"warm");

        let toxics = ProxyToxics {
            stall: true,
            ..ProxyToxics::default()
        };
        let mut fault = ProxyFault::inject(setup.proxy.clone(), toxics).unwrap();
        let mut during = TcpStream::connect(setup.proxy.address()).await.unwrap();
        during.write_all(b"hello").await.unwrap();
        before.write_all(b"again").await.unwrap();
        let mut answer = [0_u8; 5];
        for stream in [&mut during, &mut before] {
            let nothing = timeout(Duration::from_millis(500), stream.read(&mut answer)).await;
            assert!(nothing.is_err(), "a stalled connection answered");
        }
        let confirmation = fault.confirm().await;
        assert!(confirmation.in_effect, "{confirmation:?}");
        assert!(setup.proxy.counters().affected_connections >= 2);

        fault.clear().await.unwrap();
        for (stream, sent) in [(&mut during, b"hello"), (&mut before, b"again")] {
            timeout(GENEROUS, stream.read_exact(&mut answer))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&answer, sent);
        }
        let after = round_trip(setup.proxy.address(), b"after").await.unwrap();
        assert_eq!(after, b"after");
    }

    #[tokio::test]
    async fn stall_holds_a_bounded_amount() {
        let setup = proxied_echo().await;
        setup
            .proxy
            .set(ProxyToxics {
                stall: true,
                ..ProxyToxics::default()
            })
            .unwrap();
        let mut stream = TcpStream::connect(setup.proxy.address()).await.unwrap();
        let piece = pattern(1 << 20);
        let mut written = 0_usize;
        let limit = 256 << 20;
        // Writes block once the proxy stops reading and the kernel's buffers are full.
        while written < limit {
            match timeout(Duration::from_secs(1), stream.write(&piece)).await {
                Ok(Ok(bytes)) => written += bytes,
                Ok(Err(error)) => panic!("write failed: {error}"),
                Err(_) => break,
            }
        }
        assert!(written < limit / 2, "the proxy took {written} bytes");
        assert_eq!(setup.proxy.counters().bytes_upstream, 0);
    }

    #[tokio::test]
    async fn reset_resets_existing_and_new_connections() {
        let setup = proxied_echo().await;
        let mut before = TcpStream::connect(setup.proxy.address()).await.unwrap();
        assert_eq!(exchange(&mut before, b"warm").await.unwrap(), b"warm");

        let toxics = ProxyToxics {
            reset: true,
            ..ProxyToxics::default()
        };
        let mut fault = ProxyFault::inject(setup.proxy.clone(), toxics).unwrap();
        let error = read_after_cut(&mut before).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        let mut during = TcpStream::connect(setup.proxy.address()).await.unwrap();
        let error = read_after_cut(&mut during).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);

        let confirmation = fault.confirm().await;
        assert!(confirmation.in_effect, "{confirmation:?}");
        assert!(confirmation.evidence.contains("reset"), "{confirmation:?}");
        fault.clear().await.unwrap();
        assert_eq!(
            round_trip(setup.proxy.address(), b"back").await.unwrap(),
            b"back"
        );
    }

    #[tokio::test]
    async fn down_closes_everything_then_clear_serves_on_the_same_port() {
        let setup = proxied_echo().await;
        let address = setup.proxy.address();
        let mut before = TcpStream::connect(address).await.unwrap();
        assert_eq!(exchange(&mut before, b"warm").await.unwrap(), b"warm");

        let toxics = ProxyToxics {
            down: true,
            ..ProxyToxics::default()
        };
        let mut fault = ProxyFault::inject(setup.proxy.clone(), toxics).unwrap();
        assert!(matches!(read_after_cut(&mut before).await, Ok(0) | Err(_)));
        let refused = round_trip(address, b"down").await;
        assert!(refused.is_err(), "{refused:?}");
        let confirmation = fault.confirm().await;
        assert!(confirmation.in_effect, "{confirmation:?}");

        fault.clear().await.unwrap();
        assert_eq!(setup.proxy.address(), address);
        assert_eq!(round_trip(address, b"up").await.unwrap(), b"up");
        eventually("the closed connections to end", || {
            setup.proxy.counters().connections_open == 0
        })
        .await;
    }

    #[tokio::test]
    async fn toxicity_zero_affects_no_connection() {
        let setup = proxied_echo().await;
        let toxics = ProxyToxics {
            reset: true,
            toxicity: 0.0,
            ..ProxyToxics::default()
        };
        let mut fault = ProxyFault::inject(setup.proxy.clone(), toxics).unwrap();
        for _ in 0..5 {
            assert_eq!(
                round_trip(setup.proxy.address(), b"fine").await.unwrap(),
                b"fine"
            );
        }
        let confirmation = fault.confirm().await;
        assert!(!confirmation.in_effect, "{confirmation:?}");
        assert_eq!(setup.proxy.counters().affected_connections, 0);
    }

    #[tokio::test]
    async fn toxicity_one_affects_every_connection() {
        let setup = proxied_echo().await;
        setup
            .proxy
            .set(ProxyToxics {
                reset: true,
                toxicity: 1.0,
                ..ProxyToxics::default()
            })
            .unwrap();
        for _ in 0..5 {
            assert!(round_trip(setup.proxy.address(), b"gone").await.is_err());
        }
        assert_eq!(setup.proxy.counters().affected_connections, 5);
    }

    #[test]
    fn toxicity_picks_a_reproducible_fraction() {
        let generation = |seed| {
            Generation::new(
                1,
                ProxyToxics {
                    reset: true,
                    toxicity: 0.3,
                    seed,
                    ..ProxyToxics::default()
                },
            )
        };
        let picks = |seed| {
            let generation = generation(seed);
            (0..1000)
                .map(|connection| generation.applies_to(connection))
                .collect::<Vec<_>>()
        };
        let first = picks(42);
        let hit = first.iter().filter(|&&picked| picked).count();
        assert!((200..400).contains(&hit), "{hit} of 1000 at 0.3");
        assert_eq!(first, picks(42));
        assert_ne!(first, picks(43));
    }

    #[tokio::test]
    async fn drop_restores_pass_through_but_not_over_a_later_set() {
        let setup = proxied_echo().await;
        let stall = ProxyToxics {
            stall: true,
            ..ProxyToxics::default()
        };
        drop(ProxyFault::inject(setup.proxy.clone(), stall.clone()).unwrap());
        assert!(setup.proxy.toxics().is_pass_through());
        assert_eq!(
            round_trip(setup.proxy.address(), b"free").await.unwrap(),
            b"free"
        );

        let replaced = ProxyFault::inject(setup.proxy.clone(), stall).unwrap();
        let latency = ProxyToxics {
            latency: Duration::from_millis(1),
            ..ProxyToxics::default()
        };
        setup.proxy.set(latency.clone()).unwrap();
        drop(replaced);
        assert_eq!(setup.proxy.toxics(), latency);
    }

    #[tokio::test]
    async fn shutdown_closes_everything_and_clear_after_it_does_not_panic() {
        let setup = proxied_echo().await;
        let mut before = TcpStream::connect(setup.proxy.address()).await.unwrap();
        assert_eq!(exchange(&mut before, b"warm").await.unwrap(), b"warm");
        let toxics = ProxyToxics {
            latency: Duration::from_millis(10),
            ..ProxyToxics::default()
        };
        let mut fault = ProxyFault::inject(setup.proxy.clone(), toxics).unwrap();

        setup.shutdown.cancel();
        assert!(matches!(read_after_cut(&mut before).await, Ok(0) | Err(_)));
        let confirmation = fault.confirm().await;
        assert!(!confirmation.in_effect, "{confirmation:?}");
        let cleared = fault.clear().await.unwrap();
        assert!(cleared.contains("shut down"), "{cleared}");
        assert!(
            ProxyFault::inject(
                setup.proxy.clone(),
                ProxyToxics {
                    down: true,
                    ..ProxyToxics::default()
                }
            )
            .is_err()
        );
        let probe = setup.proxy.probe().await;
        assert!(matches!(probe.client, ProbeClient::Refused(_)) || probe.proxy.is_none());
    }

    #[tokio::test]
    async fn abrupt_closes_end_their_connections() {
        let setup = proxied_echo().await;
        for _ in 0..5 {
            let mut stream = TcpStream::connect(setup.proxy.address()).await.unwrap();
            stream.write_all(&pattern(100 * 1024)).await.unwrap();
            // Unread echo in the receive buffer makes this close a reset.
            drop(stream);
        }
        let mut reset = TcpStream::connect(setup.proxy.address()).await.unwrap();
        exchange(&mut reset, b"x").await.unwrap();
        reset.set_zero_linger().unwrap();
        drop(reset);
        eventually("every connection to end", || {
            setup.proxy.counters().connections_open == 0
        })
        .await;
        assert_eq!(
            round_trip(setup.proxy.address(), b"still").await.unwrap(),
            b"still"
        );
    }

    #[tokio::test]
    async fn an_unreachable_upstream_fails_the_clear() {
        let shutdown = CancellationToken::new();
        // A port that was free a moment ago: nothing listens on it.
        let vacant = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = FaultProxy::spawn("127.0.0.1:0".parse().unwrap(), vacant, shutdown.clone())
            .await
            .unwrap();
        let toxics = ProxyToxics {
            down: true,
            ..ProxyToxics::default()
        };
        let fault = ProxyFault::inject(proxy, toxics).unwrap();
        let error = fault.clear().await.unwrap_err();
        assert!(error.to_string().contains("did not reach"), "{error}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn invalid_toxics_are_refused() {
        let setup = proxied_echo().await;
        let invalid = [
            ProxyToxics {
                reset: true,
                toxicity: 1.5,
                ..ProxyToxics::default()
            },
            ProxyToxics {
                bandwidth: Some(0),
                ..ProxyToxics::default()
            },
            ProxyToxics {
                slicing: Some(Slicing {
                    size: 0,
                    delay: Duration::ZERO,
                }),
                ..ProxyToxics::default()
            },
            ProxyToxics {
                latency: Duration::from_secs(1 << 40),
                ..ProxyToxics::default()
            },
            ProxyToxics::pass_through(),
        ];
        for toxics in invalid {
            assert!(
                ProxyFault::inject(setup.proxy.clone(), toxics.clone()).is_err(),
                "{toxics}"
            );
        }
        assert!(setup.proxy.toxics().is_pass_through());
    }

    /// A real HTTP server behind the proxy, reached with a real HTTP client.
    #[tokio::test]
    async fn http_through_the_proxy_with_latency_then_down() {
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" }));
        let serving = shutdown.clone();
        tokio::spawn(async move { crate::http_serve::serve(listener, router, serving).await });
        let proxy = FaultProxy::spawn("127.0.0.1:0".parse().unwrap(), upstream, shutdown.clone())
            .await
            .unwrap();
        let url = format!("http://{}/hello", proxy.address());
        let get = || async {
            // No pooled connection: each request opens its own, as after a restart.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(GENEROUS)
                .build()
                .unwrap();
            client.get(&url).send().await?.text().await
        };
        assert_eq!(get().await.unwrap(), "hi");

        let latency = Duration::from_millis(200);
        let mut fault = ProxyFault::inject(
            proxy.clone(),
            ProxyToxics {
                latency,
                direction: Direction::Downstream,
                ..ProxyToxics::default()
            },
        )
        .unwrap();
        let started = Instant::now();
        assert_eq!(get().await.unwrap(), "hi");
        assert!(started.elapsed() >= latency);
        assert!(fault.confirm().await.in_effect);
        fault.clear().await.unwrap();

        let mut fault = ProxyFault::inject(
            proxy.clone(),
            ProxyToxics {
                down: true,
                ..ProxyToxics::default()
            },
        )
        .unwrap();
        assert!(get().await.is_err());
        assert!(fault.confirm().await.in_effect);
        fault.clear().await.unwrap();
        assert_eq!(get().await.unwrap(), "hi");
        shutdown.cancel();
    }
}

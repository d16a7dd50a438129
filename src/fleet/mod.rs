//! The reference fleet (`voxsoak fleet`): a small but real voice-agent server that behaves
//! like the fleets voxsoak exists to test, with the production bugs it must catch behind
//! switches ([`Bug`]).
//!
//! It is a separate program in spirit: it shares only the wire ([`crate::twilio`]), the
//! sound ([`crate::audio`]) and the OpenAI-compatible stand-ins ([`crate::standin`], which it
//! starts only when no `LLM_BASE_URL`/`TTS_BASE_URL` is given and then reaches over HTTP
//! like any other service). Everything else the harness learns about it goes through public
//! contracts: Twilio Media Streams, `/health`, `/metrics`, Alertmanager webhooks, the
//! database and the process.

pub mod agent;
pub mod alerts;
pub mod calls;
pub mod db;
pub mod dead_letters;
pub mod llm;
pub mod memory;
pub mod metrics;
pub mod ops;
pub mod tempdir;
pub mod tools;
pub mod tts;
pub mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::agent::Job;
use self::alerts::{AlertSink, Alerts};
use self::db::{Database, DbConfig, DbError};
use self::llm::LlmClient;
use self::metrics::Metrics;
use self::tts::{RetryPolicy, TtsClient};
use self::workers::WorkerSlot;
use crate::standin::openai::{AssistantTurn, ChatMessage, ToolSpec};
use crate::standin::{self, llm as llm_standin, tts as tts_standin};

pub use crate::contract::fleet::{Bug, FleetOptions, LISTENING_PREFIX};

/// Why the fleet could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] db::DbError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// How long a turn waits for a pooled database connection.
pub const DB_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The fixed fleet's statement timeout.
pub const DB_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The running fleet, shared by its calls, workers, healer and operations endpoints.
#[derive(Debug)]
pub struct Fleet {
    pub options: FleetOptions,
    pub db: Database,
    pub metrics: Arc<Metrics>,
    pub alerts: Arc<Alerts>,
    pub llm: LlmClient,
    pub tts: TtsClient,
    pub audio_dir: PathBuf,
    /// Turns waiting for a worker.
    pub queue: async_channel::Receiver<Job>,
    pub queue_sender: async_channel::Sender<Job>,
    pub workers: Vec<Arc<WorkerSlot>>,
    /// The cached apology (mu-law) played when TTS gives up.
    pub apology: Arc<[u8]>,
    /// The turns it abandoned, on their way to the `dead_letters` table.
    pub dead_letters: dead_letters::DeadLetters,
    /// Last measurement of the audio temp dir.
    pub temp_dir_bytes: AtomicU64,
    pub temp_dir_files: AtomicU64,
    pub shutdown: CancellationToken,
}

impl Fleet {
    /// Counts a database error (and a pool timeout as such).
    pub fn note_db_error(&self, op: &str, error: &DbError) {
        self.metrics.db_errors_total.add(op, 1);
        if matches!(error, DbError::PoolTimeout { .. }) {
            self.metrics
                .db_pool_timeouts_total
                .fetch_add(1, Ordering::Relaxed);
        }
        if error.waited_out_a_lock() {
            self.metrics
                .db_lock_timeouts_total
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Appends to the `events` table; a failure is counted, never fatal.
    pub async fn log_event(
        &self,
        kind: &str,
        worker: Option<u32>,
        call_sid: Option<&str>,
        detail: &str,
    ) {
        if let Err(error) = self.db.log_event(kind, worker, call_sid, detail).await {
            self.note_db_error("log_event", &error);
        }
    }

    /// One LLM completion, counted; None when it failed (the caller apologises).
    async fn ask_llm(
        &self,
        messages: Vec<ChatMessage>,
        tools: Vec<ToolSpec>,
        call_sid: &str,
    ) -> Option<AssistantTurn> {
        let asked = tokio::time::Instant::now();
        let answer = self.llm.complete(messages, tools, call_sid).await;
        if asked.elapsed() > llm::SLOW {
            self.metrics.llm_slow_total.fetch_add(1, Ordering::Relaxed);
        }
        match answer {
            Ok(turn) => {
                self.metrics.llm_requests_total.add("200", 1);
                Some(turn)
            }
            Err(error) => {
                self.metrics.llm_requests_total.add(&error.label(), 1);
                None
            }
        }
    }
}

/// Starts the fleet, prints [`LISTENING_PREFIX`] and its address once it serves calls, and
/// serves until `shutdown`.
pub async fn run(
    options: FleetOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), FleetError> {
    if let Some(limit) = options.memory_limit {
        memory::start_watchdog(limit).map_err(|source| FleetError::Io {
            what: "could not start the memory watchdog".into(),
            source,
        })?;
    }
    let scratch = Scratch::make(&options)?;
    let db = open_database(&options, scratch.database_url.clone()).await?;
    let seeded = db.seed_orders(options.orders).await?;
    let upstreams = upstreams(&options, &shutdown).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(crate::http_serve::CLIENT_POOL_IDLE)
        .build()
        .map_err(FleetError::Http)?;
    let listener =
        TcpListener::bind(options.listen)
            .await
            .map_err(|source| FleetError::Listen {
                address: options.listen,
                source,
            })?;
    let address = listener.local_addr().map_err(|source| FleetError::Listen {
        address: options.listen,
        source,
    })?;
    let audio_dir = scratch.audio_dir.clone();
    let parts = Parts {
        db,
        http,
        address,
        audio_dir,
    };
    let (fleet, letters) = assemble(options, parts, &upstreams, shutdown.clone());
    for slot in &fleet.workers {
        workers::start(&fleet, slot);
    }
    tokio::spawn(workers::heal(Arc::clone(&fleet)));
    tokio::spawn(ops::evaluate(Arc::clone(&fleet)));
    tokio::spawn(dead_letters::write(Arc::clone(&fleet), letters));
    let router = Router::new()
        .route("/voice", post(calls::voice))
        .route("/stream", get(calls::stream))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .with_state(Arc::clone(&fleet));

    announce(&fleet, address, &seeded, (&upstreams.0, &upstreams.1)).await;
    crate::http_serve::serve(listener, router, shutdown).await;
    fleet.db.close().await;
    drop(scratch);
    Ok(())
}

/// Where the fleet keeps its rows and its audio: the given database URL and audio dir, or
/// a SQLite file and an `audio/` dir in a temp dir of its own (removed when it stops).
struct Scratch {
    /// Holds the default SQLite file and audio dir; removed when this is dropped.
    _dir: tempfile::TempDir,
    database_url: String,
    audio_dir: PathBuf,
}

impl Scratch {
    fn make(options: &FleetOptions) -> Result<Scratch, FleetError> {
        let dir = tempfile::Builder::new()
            .prefix("voxsoak-fleet-")
            .tempdir()
            .map_err(|source| FleetError::Io {
                what: "could not create a temp dir".into(),
                source,
            })?;
        let database_url = options
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("fleet.db").display()));
        let audio_dir = options
            .audio_tmp_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("audio"));
        std::fs::create_dir_all(&audio_dir).map_err(|source| FleetError::Io {
            what: format!(
                "could not create the audio temp dir {}",
                audio_dir.display()
            ),
            source,
        })?;
        Ok(Scratch {
            _dir: dir,
            database_url,
            audio_dir,
        })
    }
}

/// Connects the fleet's pool. The incidents' fleets had no statement timeout: the long
/// transactions held their connections, and `find({})` ran to completion (and to the OOM
/// kill), so with those bugs on there is none.
async fn open_database(options: &FleetOptions, url: String) -> Result<Database, FleetError> {
    Ok(Database::connect(&DbConfig {
        url,
        pool_size: options.db_pool_size,
        acquire_timeout: DB_ACQUIRE_TIMEOUT,
        statement_timeout: (!options.has(Bug::LongTransactions)
            && !options.has(Bug::UnvalidatedToolParams))
        .then_some(DB_STATEMENT_TIMEOUT),
    })
    .await?)
}

/// The LLM's and the TTS's base URLs: the ones given, or stand-ins of its own started for
/// the ones not given.
async fn upstreams(
    options: &FleetOptions,
    shutdown: &CancellationToken,
) -> Result<(String, String), FleetError> {
    let llm_base = match &options.llm_base_url {
        Some(url) => url.clone(),
        None => {
            let control = llm_standin::LlmControl::new(llm_standin::LlmBehaviour::default(), 1);
            start_standin(|listener| llm_standin::spawn(listener, control, shutdown.clone()))
                .await?
        }
    };
    let tts_base = match &options.tts_base_url {
        Some(url) => url.clone(),
        None => {
            let control = tts_standin::TtsControl::new(tts_standin::TtsBehaviour::default(), 1);
            start_standin(|listener| tts_standin::spawn(listener, control, shutdown.clone()))
                .await?
        }
    };
    Ok((llm_base, tts_base))
}

/// What the fleet is assembled from, made before it.
struct Parts {
    db: Database,
    http: reqwest::Client,
    /// Where it listens: alerts link back to it.
    address: SocketAddr,
    audio_dir: PathBuf,
}

/// The fleet's shared state: its clients (TTS with or without backoff, as its bugs say),
/// metrics, alert sender, work queue, dead-letter queue (and the receiving end its writer
/// task takes) and the apology it plays when a reply cannot be made.
fn assemble(
    options: FleetOptions,
    parts: Parts,
    (llm_base, tts_base): &(String, String),
    shutdown: CancellationToken,
) -> (
    Arc<Fleet>,
    tokio::sync::mpsc::Receiver<dead_letters::DeadLetter>,
) {
    let Parts {
        db,
        http,
        address,
        audio_dir,
    } = parts;
    let metrics = Arc::new(Metrics::default());
    let alerts = Alerts::start(AlertSink {
        webhook_url: options.alert_webhook_url.clone(),
        external_url: format!("http://{address}"),
        http: http.clone(),
        db: db.clone(),
        metrics: Arc::clone(&metrics),
    });
    let policy = if options.has(Bug::NoBackoff) {
        RetryPolicy::NO_BACKOFF
    } else {
        RetryPolicy::FIXED
    };
    let apology = crate::audio::synth::speech_like(0xA9_0106, Duration::from_millis(1500));
    let (queue_sender, queue) = async_channel::unbounded();
    let (dead_letters, letters) = dead_letters::DeadLetters::new();
    let fleet = Arc::new(Fleet {
        llm: LlmClient::new(http.clone(), llm_base),
        tts: TtsClient::new(http, tts_base, policy),
        workers: (0..options.workers).map(WorkerSlot::new).collect(),
        options,
        db,
        metrics,
        alerts,
        audio_dir,
        queue,
        queue_sender,
        apology: crate::twilio::mulaw::encode_all(&apology).into(),
        dead_letters,
        temp_dir_bytes: AtomicU64::new(0),
        temp_dir_files: AtomicU64::new(0),
        shutdown,
    });
    (fleet, letters)
}

/// Says where the fleet listens (the [`LISTENING_PREFIX`] line the harness waits for) and
/// what it runs with, and logs its start.
async fn announce(
    fleet: &Fleet,
    address: SocketAddr,
    seeded: &db::SeedReport,
    (llm_base, tts_base): (&str, &str),
) {
    crate::console::outln(format_args!("{LISTENING_PREFIX}{address}"));
    let bugs: Vec<&str> = fleet.options.bugs.iter().map(|bug| bug.name()).collect();
    crate::console::outln(format_args!(
        "voxsoak fleet: bugs {}",
        if bugs.is_empty() {
            "none".to_string()
        } else {
            bugs.join(", ")
        }
    ));
    crate::console::outln(format_args!(
        "voxsoak fleet: database {:?}, pool {}, {} orders ({})",
        fleet.db.backend(),
        fleet.options.db_pool_size,
        seeded.rows,
        if seeded.reused {
            "already seeded".to_string()
        } else {
            format!("seeded in {:.1}s", seeded.took.as_secs_f64())
        }
    ));
    crate::console::outln(format_args!(
        "voxsoak fleet: LLM {llm_base}, TTS {tts_base}"
    ));
    crate::console::outln(format_args!(
        "voxsoak fleet: audio temp dir {}",
        fleet.audio_dir.display()
    ));
    fleet
        .log_event(
            "fleet_started",
            None,
            None,
            &format!("listening on {address}; bugs {bugs:?}"),
        )
        .await;
}

/// Starts a built-in stand-in on a free loopback port; returns its base URL.
async fn start_standin<F, Fut>(spawn: F) -> Result<String, FleetError>
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<standin::Running>>,
{
    let io = |source| FleetError::Io {
        what: "could not start a built-in stand-in".into(),
        source,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let running = spawn(listener).await.map_err(io)?;
    Ok(running.base_url())
}

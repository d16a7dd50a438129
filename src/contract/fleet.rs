//! The reference fleet's settings and production bugs, as the scenario model names them and
//! `voxsoak fleet` takes them on its command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A production bug the fleet can be started with (`--bug NAME`, repeatable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Bug {
    /// Retries TTS 429s at once, in a loop (a retry storm), ignoring `Retry-After`.
    NoBackoff,
    /// Runs tools with whatever the LLM gave, with no statement timeout; `{}` loads every
    /// order row into memory.
    UnvalidatedToolParams,
    /// Never deletes TTS temp files (no delete after playback, no sweep).
    TempLeak,
    /// Holds a DB transaction (and its pooled connection) across the whole turn, with no
    /// statement timeout.
    LongTransactions,
    /// The healer never acts.
    NoHealer,
    /// After `--stall-after-calls` jobs a worker stops taking jobs, with no error.
    SilentStall,
}

impl Bug {
    pub const ALL: [Bug; 6] = [
        Bug::NoBackoff,
        Bug::UnvalidatedToolParams,
        Bug::TempLeak,
        Bug::LongTransactions,
        Bug::NoHealer,
        Bug::SilentStall,
    ];

    /// The name on the command line and in scenarios (`no-backoff`, …).
    pub fn name(self) -> &'static str {
        match self {
            Bug::NoBackoff => "no-backoff",
            Bug::UnvalidatedToolParams => "unvalidated-tool-params",
            Bug::TempLeak => "temp-leak",
            Bug::LongTransactions => "long-transactions",
            Bug::NoHealer => "no-healer",
            Bug::SilentStall => "silent-stall",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

/// The first line `voxsoak fleet` prints once it serves calls: `voxsoak fleet listening on
/// ADDR`. Later lines (`voxsoak fleet: …`) describe its stand-ins, database and temp dir.
pub const LISTENING_PREFIX: &str = "voxsoak fleet listening on ";

/// How the fleet runs (the `voxsoak fleet` flags; environment variables in brackets).
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub listen: SocketAddr,
    pub bugs: Vec<Bug>,
    /// `DATABASE_URL` `sqlite://…` or `postgres://…`; None: a SQLite file in a temp dir
    /// that is removed at exit.
    pub database_url: Option<String>,
    pub db_pool_size: u32,
    /// Rows seeded into `orders`.
    pub orders: u64,
    pub workers: u32,
    /// A worker silent (no health-check ping) for longer than this is restarted by the
    /// healer, which looks every `heal_interval`.
    pub stall_after: Duration,
    pub heal_interval: Duration,
    /// With [`Bug::SilentStall`]: jobs a worker serves before it stalls.
    pub stall_after_calls: u32,
    /// RSS above which the process kills itself with SIGKILL, like an OOM-killed pod.
    pub memory_limit: Option<u64>,
    /// `AUDIO_TMP_DIR`; None: a temp dir removed at exit.
    pub audio_tmp_dir: Option<PathBuf>,
    /// Temp dir bytes above which `/health` is 503 and `TempDirGrowing` fires.
    pub temp_dir_budget: u64,
    /// `LLM_BASE_URL`, e.g. `http://127.0.0.1:9000/v1`; None: a built-in stand-in.
    pub llm_base_url: Option<String>,
    /// `TTS_BASE_URL`; None: a built-in stand-in.
    pub tts_base_url: Option<String>,
    /// `ALERT_WEBHOOK_URL`: where alerts are POSTed in the Alertmanager webhook format.
    pub alert_webhook_url: Option<String>,
    /// `TWILIO_AUTH_TOKEN`: when set, `/voice` and `/stream` require `X-Twilio-Signature`.
    pub twilio_auth_token: Option<String>,
    /// Greet the caller when the stream starts.
    pub greeting: bool,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            bugs: Vec::new(),
            database_url: None,
            db_pool_size: 10,
            orders: 1_000_000,
            workers: 8,
            stall_after: Duration::from_secs(5),
            heal_interval: Duration::from_secs(1),
            stall_after_calls: 20,
            memory_limit: None,
            audio_tmp_dir: None,
            temp_dir_budget: 256 << 20,
            llm_base_url: None,
            tts_base_url: None,
            alert_webhook_url: None,
            twilio_auth_token: None,
            greeting: false,
        }
    }
}

impl FleetOptions {
    pub fn has(&self, bug: Bug) -> bool {
        self.bugs.contains(&bug)
    }
}

//! The reference fleet's database: a SQLite file (the default) or PostgreSQL
//! (`postgres://…`), behind one connection pool of a fixed size.
//!
//! Tables:
//! - `orders` (id, customer_id, status, item, total_cents, created_at, notes): what the
//!   agent's `search_orders` tool reads; seeded to a configurable size (1,000,000 by default)
//!   in seconds with one set-based `INSERT … SELECT`; fat enough rows (about 200 bytes) that
//!   loading all of them blows a 512 MiB memory limit, as the production incident did.
//! - `turns` (call_sid, turn, at_ms, detail): one row written per agent turn, so faults that
//!   lock writers reach the fleet's real path.
//! - `events` (id, at_ms, kind, worker, call_sid, detail): the fleet's own event log: every
//!   incident, alert and healer intervention.
//! - `health_checks` (worker PRIMARY KEY, generation, last_ping_ms): every worker pings its
//!   row; the healer's query finds the silent ones.
//!
//! Times are Unix milliseconds from the fleet's clock (`now_ms()`), so SQLite and
//! PostgreSQL behave the same.

use std::time::Duration;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `sqlite:///abs/path/file.db`, `sqlite://relative.db`, or `postgres://user@host/db`.
    /// A SQLite file is created if missing.
    pub url: String,
    /// Most connections open at once; turns wait for one when all are in use.
    pub pool_size: u32,
    /// How long a query waits for a pooled connection before it fails with
    /// [`DbError::PoolTimeout`].
    pub acquire_timeout: Duration,
    /// Per-statement limit for the fixed fleet (PostgreSQL `statement_timeout` and
    /// `lock_timeout`; SQLite `busy_timeout`). `None`: no limit (the long-transactions bug).
    pub statement_timeout: Option<Duration>,
}

/// Which server is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why a database operation failed. Never contains a password (URLs are redacted).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported database URL {url}: expected sqlite:… or postgres://…")]
    UnsupportedUrl { url: String },
    #[error("no pooled connection free within {waited:?} (pool of {size})")]
    PoolTimeout { waited: Duration, size: u32 },
    #[error("{what} failed: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// One row of `orders`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Order {
    pub id: i64,
    pub customer_id: String,
    pub status: String,
    pub item: String,
    pub total_cents: i64,
    pub created_at: String,
    pub notes: String,
}

/// What seeding did.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedReport {
    pub rows: u64,
    pub took: Duration,
    /// The table already held exactly `rows` rows and was left alone.
    pub reused: bool,
}

/// One row of `events`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub at_ms: i64,
    pub kind: String,
    pub worker: Option<i64>,
    pub call_sid: Option<String>,
    pub detail: String,
}

/// A worker whose last ping is older than the healer's cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct SilentWorker {
    pub worker: u32,
    pub generation: u32,
    pub last_ping_ms: i64,
}

/// Customer ids are `C` and six digits, `C000000` to `C009999`: orders are spread over
/// 10,000 customers (at most 100 orders each with the default size).
pub const CUSTOMERS: u64 = 10_000;

/// The customer id for a number (taken modulo [`CUSTOMERS`]).
pub fn customer_id(n: u64) -> String {
    format!("C{:06}", n % CUSTOMERS)
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// The pool and the queries the fleet runs. Cheap to clone (shares the pool).
#[derive(Debug, Clone)]
pub struct Database {}

impl Database {
    /// Opens the pool and creates the tables (and index) that do not exist yet.
    pub async fn connect(config: &DbConfig) -> Result<Database, DbError> {
        let _ = config;
        todo!()
    }

    pub fn backend(&self) -> Backend {
        todo!()
    }

    /// Makes `orders` hold exactly ids 1..=rows (a no-op when it already does), fast.
    pub async fn seed_orders(&self, rows: u64) -> Result<SeedReport, DbError> {
        let _ = rows;
        todo!()
    }

    pub async fn order_count(&self) -> Result<u64, DbError> {
        todo!()
    }

    /// The configured most connections.
    pub fn pool_size(&self) -> u32 {
        todo!()
    }

    /// Connections checked out of the pool right now (open minus idle).
    pub fn pool_in_use(&self) -> u32 {
        todo!()
    }

    /// Orders of one customer, newest first, at most `limit`; with `customer_id: None` and
    /// `limit: None` every row of the table, materialised in memory (what an unvalidated
    /// `{}` tool call does). One short transaction under the statement timeout.
    pub async fn search_orders(
        &self,
        customer_id: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Order>, DbError> {
        let _ = (customer_id, limit);
        todo!()
    }

    /// Writes the `turns` row for one agent turn.
    pub async fn record_turn(
        &self,
        call_sid: &str,
        turn: u32,
        detail: &str,
    ) -> Result<(), DbError> {
        let _ = (call_sid, turn, detail);
        todo!()
    }

    /// Opens a transaction that holds one pooled connection until it is committed or
    /// dropped (the long-transactions bug keeps it open across the whole turn).
    pub async fn begin_turn(&self) -> Result<TurnTransaction, DbError> {
        todo!()
    }

    /// Appends to `events`.
    pub async fn log_event(
        &self,
        kind: &str,
        worker: Option<u32>,
        call_sid: Option<&str>,
        detail: &str,
    ) -> Result<(), DbError> {
        let _ = (kind, worker, call_sid, detail);
        todo!()
    }

    /// The newest `limit` events, newest first.
    pub async fn recent_events(&self, limit: u32) -> Result<Vec<EventRecord>, DbError> {
        let _ = limit;
        todo!()
    }

    /// Upserts the worker's `health_checks` row with `now_ms()`.
    pub async fn ping_worker(&self, worker: u32, generation: u32) -> Result<(), DbError> {
        let _ = (worker, generation);
        todo!()
    }

    /// Workers whose last ping is before `cutoff_ms`.
    pub async fn silent_workers(&self, cutoff_ms: i64) -> Result<Vec<SilentWorker>, DbError> {
        let _ = cutoff_ms;
        todo!()
    }

    /// Closes every connection (waits for checked-out ones to come back).
    pub async fn close(&self) {
        todo!()
    }
}

/// A transaction spanning several queries on one pooled connection. Dropping it without
/// [`TurnTransaction::commit`] rolls it back and returns the connection.
#[derive(Debug)]
pub struct TurnTransaction {}

impl TurnTransaction {
    pub async fn search_orders(
        &mut self,
        customer_id: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Order>, DbError> {
        let _ = (customer_id, limit);
        todo!()
    }

    pub async fn record_turn(
        &mut self,
        call_sid: &str,
        turn: u32,
        detail: &str,
    ) -> Result<(), DbError> {
        let _ = (call_sid, turn, detail);
        todo!()
    }

    pub async fn commit(self) -> Result<(), DbError> {
        todo!()
    }
}

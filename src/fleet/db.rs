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
//! - `dead_letters` (id, at_ms, call_sid, turn, reason, detail): every turn the fleet
//!   abandoned (see `super::dead_letters`), kept for operators; its row count is the
//!   `dead_letters` gauge on `/metrics`.
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

impl DbError {
    /// Whether the statement gave up waiting for a lock another session held: SQLite's
    /// `SQLITE_BUSY` after its `busy_timeout` (code 5 and its extended forms), PostgreSQL's
    /// `lock_not_available` (55P03) or a statement cancelled by `statement_timeout`
    /// (57014). What an operator sees of a pool stuck behind long transactions even when
    /// the pool itself never filled.
    pub fn waited_out_a_lock(&self) -> bool {
        let DbError::Query {
            source: sqlx::Error::Database(error),
            ..
        } = self
        else {
            return false;
        };
        let Some(code) = error.code() else {
            return false;
        };
        if error
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some()
        {
            return code == "55P03" || code == "57014";
        }
        // SQLite: the extended code's low byte is the primary code.
        code.parse::<i32>().is_ok_and(|sqlite| sqlite & 0xff == 5)
    }
}

/// One row of `orders`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
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

/// Statuses cycle with the id (`id % 4`).
const ORDER_STATUSES: [&str; 4] = ["processing", "shipped", "delivered", "returned"];

/// Items cycle with the id (`id % 5`).
const ORDER_ITEMS: [&str; 5] = [
    "wireless headset",
    "usb desk microphone",
    "conference speakerphone",
    "noise cancelling earbuds",
    "replacement ear cushions",
];

/// `created_at` of order `id` is this Unix time plus `id * CREATED_STEP_SECS` (UTC).
const CREATED_BASE_SECS: i64 = 1_700_000_000;
const CREATED_STEP_SECS: i64 = 30;

/// `notes` of order `id` is `Order {id} for {customer}: ` and 140 characters of this text
/// starting at `id % 40`.
const NOTES_TEXT: &str = "Customer called about this order. The agent confirmed the shipping address, \
offered expedited delivery at no charge, noted a preference for text message updates, and logged \
the whole conversation for quality review and a follow-up call next week.";
const NOTES_SLICE: usize = 140;
const NOTES_OFFSETS: u64 = 40;
const _: () = assert!(NOTES_TEXT.len() >= NOTES_OFFSETS as usize + NOTES_SLICE);
const _: () = assert!(NOTES_TEXT.is_ascii());

/// The row [`Database::seed_orders`] writes for `id`, computed in Rust (the SQL of both
/// backends produces exactly this).
pub fn seeded_order(id: u64) -> Order {
    let customer = customer_id(id);
    let secs = CREATED_BASE_SECS.saturating_add((id as i64).saturating_mul(CREATED_STEP_SECS));
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    let start = (id % NOTES_OFFSETS) as usize;
    let notes_tail = NOTES_TEXT
        .get(start..start + NOTES_SLICE)
        .unwrap_or_default();
    Order {
        id: id as i64,
        status: ORDER_STATUSES[(id % 4) as usize].to_string(),
        item: ORDER_ITEMS[(id % 5) as usize].to_string(),
        total_cents: 199 + ((id as i64).wrapping_mul(7919)).rem_euclid(50_000),
        created_at: format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        ),
        notes: format!("Order {id} for {customer}: {notes_tail}"),
        customer_id: customer,
    }
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `url` with any password replaced by `***`: the one in the user info
/// (`postgres://user:secret@host` → `postgres://user:***@host`) and a `password=` query
/// parameter.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = authority_start + colon + 1;
                let to = authority_start + at;
                out.replace_range(from..to, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

/// SQLite's `busy_timeout` when no statement timeout is configured: long enough to look
/// like a hang (the long-transactions bug).
const SQLITE_NO_LIMIT_BUSY_TIMEOUT: Duration = Duration::from_secs(600);

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    item TEXT NOT NULL,
    total_cents BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    notes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_customer_id ON orders (customer_id, id);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    call_sid TEXT NOT NULL,
    turn INTEGER NOT NULL,
    at_ms BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    worker BIGINT NULL,
    call_sid TEXT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS health_checks (
    worker BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL,
    last_ping_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    call_sid TEXT NOT NULL,
    turn INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id BIGINT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    item TEXT NOT NULL,
    total_cents BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    notes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_customer_id ON orders (customer_id, id);
CREATE TABLE IF NOT EXISTS turns (
    id BIGSERIAL PRIMARY KEY,
    call_sid TEXT NOT NULL,
    turn INTEGER NOT NULL,
    at_ms BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    worker BIGINT NULL,
    call_sid TEXT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS health_checks (
    worker BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL,
    last_ping_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    call_sid TEXT NOT NULL,
    turn INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

/// Every row in one statement: a recursive CTE counting 1..=$1. `$2` is [`NOTES_TEXT`].
/// Must agree with [`seeded_order`].
const SQLITE_SEED: &str = "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
INSERT INTO orders (id, customer_id, status, item, total_cents, created_at, notes)
SELECT
    i,
    printf('C%06d', i % 10000),
    CASE i % 4 WHEN 0 THEN 'processing' WHEN 1 THEN 'shipped' WHEN 2 THEN 'delivered'
        ELSE 'returned' END,
    CASE i % 5 WHEN 0 THEN 'wireless headset' WHEN 1 THEN 'usb desk microphone'
        WHEN 2 THEN 'conference speakerphone' WHEN 3 THEN 'noise cancelling earbuds'
        ELSE 'replacement ear cushions' END,
    199 + (i * 7919) % 50000,
    strftime('%Y-%m-%dT%H:%M:%SZ', 1700000000 + i * 30, 'unixepoch'),
    'Order ' || i || ' for ' || printf('C%06d', i % 10000) || ': ' || substr($2, 1 + i % 40, 140)
FROM n
";

/// Every row in one statement from `generate_series(1, $1)`. `$2` is [`NOTES_TEXT`].
/// Must agree with [`seeded_order`].
const POSTGRES_SEED: &str = "
INSERT INTO orders (id, customer_id, status, item, total_cents, created_at, notes)
SELECT
    i,
    'C' || lpad((i % 10000)::text, 6, '0'),
    CASE i % 4 WHEN 0 THEN 'processing' WHEN 1 THEN 'shipped' WHEN 2 THEN 'delivered'
        ELSE 'returned' END,
    CASE i % 5 WHEN 0 THEN 'wireless headset' WHEN 1 THEN 'usb desk microphone'
        WHEN 2 THEN 'conference speakerphone' WHEN 3 THEN 'noise cancelling earbuds'
        ELSE 'replacement ear cushions' END,
    199 + (i * 7919) % 50000,
    to_char(to_timestamp(1700000000 + i * 30) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    'Order ' || i || ' for ' || 'C' || lpad((i % 10000)::text, 6, '0') || ': '
        || substr($2, 1 + (i % 40)::int, 140)
FROM generate_series(1, $1::bigint) AS i
";

const CREATE_ORDERS_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS orders_customer_id ON orders (customer_id, id)";
const DROP_ORDERS_INDEX: &str = "DROP INDEX IF EXISTS orders_customer_id";

const ORDER_COLUMNS_SQL: &str =
    "SELECT id, customer_id, status, item, total_cents, created_at, notes FROM orders";
const SEARCH_CUSTOMER_LIMIT: &str = "SELECT id, customer_id, status, item, total_cents, created_at, notes FROM orders \
     WHERE customer_id = $1 ORDER BY id DESC LIMIT $2";
const SEARCH_CUSTOMER: &str = "SELECT id, customer_id, status, item, total_cents, created_at, notes FROM orders \
     WHERE customer_id = $1 ORDER BY id DESC";
const SEARCH_LIMIT: &str = "SELECT id, customer_id, status, item, total_cents, created_at, notes FROM orders \
     ORDER BY id DESC LIMIT $1";
const INSERT_TURN: &str =
    "INSERT INTO turns (call_sid, turn, at_ms, detail) VALUES ($1, $2, $3, $4)";

/// Runs `$body` with `$pool` bound to the backend's concrete pool (the body is compiled once
/// per backend).
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// `search_orders` on any executor (a pool or a transaction's connection).
macro_rules! fetch_orders {
    ($executor:expr, $customer:expr, $limit:expr) => {
        match ($customer, $limit) {
            (Some(customer), Some(limit)) => {
                sqlx::query_as::<_, Order>(SEARCH_CUSTOMER_LIMIT)
                    .bind(customer)
                    .bind(i64::from(limit))
                    .fetch_all($executor)
                    .await
            }
            (Some(customer), None) => {
                sqlx::query_as::<_, Order>(SEARCH_CUSTOMER)
                    .bind(customer)
                    .fetch_all($executor)
                    .await
            }
            (None, Some(limit)) => {
                sqlx::query_as::<_, Order>(SEARCH_LIMIT)
                    .bind(i64::from(limit))
                    .fetch_all($executor)
                    .await
            }
            // Deliberately unbounded: every row, materialised.
            (None, None) => {
                sqlx::query_as::<_, Order>(ORDER_COLUMNS_SQL)
                    .fetch_all($executor)
                    .await
            }
        }
    };
}

/// `record_turn` on any executor.
macro_rules! insert_turn {
    ($executor:expr, $call_sid:expr, $turn:expr, $detail:expr) => {
        sqlx::query(INSERT_TURN)
            .bind($call_sid)
            .bind(i64::from($turn))
            .bind(now_ms())
            .bind($detail)
            .execute($executor)
            .await
            .map(|_| ())
    };
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The pool and the queries the fleet runs. Cheap to clone (shares the pool).
#[derive(Debug, Clone)]
pub struct Database {
    pool: Pool,
    pool_size: u32,
    acquire_timeout: Duration,
}

/// What a URL names.
enum Target {
    Sqlite(sqlx::sqlite::SqliteConnectOptions),
    Postgres(sqlx::postgres::PgConnectOptions),
}

fn parse_url(url: &str) -> Result<Target, DbError> {
    let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
    let connect_error = |source| DbError::Connect {
        url: redact_url(url),
        source,
    };
    if let Some(rest) = lower.starts_with("sqlite:").then(|| url.get(7..)).flatten() {
        // sqlx only knows the lowercase scheme; URL schemes are case-insensitive.
        let options: sqlx::sqlite::SqliteConnectOptions =
            format!("sqlite:{rest}").parse().map_err(connect_error)?;
        Ok(Target::Sqlite(options))
    } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(connect_error)?;
        Ok(Target::Postgres(options))
    } else {
        Err(DbError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}

/// Whole milliseconds, at least 1 (0 would mean "no limit" to PostgreSQL).
fn millis_at_least_one(duration: Duration) -> u128 {
    duration.as_millis().max(1)
}

impl Database {
    /// Opens the pool and creates the tables (and index) that do not exist yet.
    pub async fn connect(config: &DbConfig) -> Result<Database, DbError> {
        let connect_error = |source| DbError::Connect {
            url: redact_url(&config.url),
            source,
        };
        let target = parse_url(&config.url)?;
        if config.pool_size == 0 {
            return Err(connect_error(sqlx::Error::Configuration(
                "pool_size must be at least 1".into(),
            )));
        }
        let pool = match target {
            Target::Sqlite(options) => {
                let options = options
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(
                        config
                            .statement_timeout
                            .unwrap_or(SQLITE_NO_LIMIT_BUSY_TIMEOUT),
                    );
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(config.pool_size)
                    .min_connections(0)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                sqlx::raw_sql(SQLITE_SCHEMA)
                    .execute(&pool)
                    .await
                    .map_err(connect_error)?;
                Pool::Sqlite(pool)
            }
            Target::Postgres(options) => {
                let mut pool_options = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(config.pool_size)
                    .min_connections(0)
                    .acquire_timeout(config.acquire_timeout);
                if let Some(limit) = config.statement_timeout {
                    let ms = millis_at_least_one(limit);
                    pool_options = pool_options.after_connect(move |connection, _meta| {
                        Box::pin(async move {
                            // An integer we formatted ourselves: nothing to inject.
                            let set =
                                format!("SET statement_timeout = {ms}; SET lock_timeout = {ms}");
                            sqlx::raw_sql(sqlx::AssertSqlSafe(set))
                                .execute(&mut *connection)
                                .await
                                .map(|_| ())
                        })
                    });
                }
                let pool = pool_options
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                sqlx::raw_sql(POSTGRES_SCHEMA)
                    .execute(&pool)
                    .await
                    .map_err(connect_error)?;
                Pool::Postgres(pool)
            }
        };
        Ok(Database {
            pool,
            pool_size: config.pool_size,
            acquire_timeout: config.acquire_timeout,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// A failed operation: pool exhaustion becomes [`DbError::PoolTimeout`].
    fn error(&self, what: &'static str, source: sqlx::Error) -> DbError {
        match source {
            sqlx::Error::PoolTimedOut => DbError::PoolTimeout {
                waited: self.acquire_timeout,
                size: self.pool_size,
            },
            source => DbError::Query { what, source },
        }
    }

    /// Makes `orders` hold exactly ids 1..=rows (a no-op when it already does), fast.
    ///
    /// Otherwise, in one transaction: drops the customer index, deletes every row, inserts
    /// all rows with one `INSERT … SELECT` (a recursive CTE on SQLite, `generate_series` on
    /// PostgreSQL), then builds the index (and on PostgreSQL analyzes the table). The
    /// statement timeout does not apply to the seeding transaction on PostgreSQL.
    pub async fn seed_orders(&self, rows: u64) -> Result<SeedReport, DbError> {
        const WHAT: &str = "seeding orders";
        let started = std::time::Instant::now();
        let wanted = i64::try_from(rows).map_err(|_| DbError::Query {
            what: WHAT,
            source: sqlx::Error::Encode(format!("{rows} rows is too many").into()),
        })?;
        const SHAPE: &str =
            "SELECT COUNT(*), COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM orders";
        let (count, min, max): (i64, i64, i64) = with_pool!(&self.pool, pool => {
            sqlx::query_as(SHAPE).fetch_one(pool).await
        })
        .map_err(|e| self.error(WHAT, e))?;
        if count == wanted && (wanted == 0 || (min == 1 && max == wanted)) {
            return Ok(SeedReport {
                rows,
                took: started.elapsed(),
                reused: true,
            });
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
                let result: Result<(), sqlx::Error> = async {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    sqlx::query(DROP_ORDERS_INDEX).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM orders").execute(&mut *tx).await?;
                    if wanted > 0 {
                        sqlx::query(SQLITE_SEED)
                            .bind(wanted)
                            .bind(NOTES_TEXT)
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query(CREATE_ORDERS_INDEX).execute(&mut *tx).await?;
                    tx.commit().await?;
                    // Fold the seeding transaction back into the database file now rather
                    // than on some later turn's commit, and shrink the WAL. Best effort: the
                    // rows are committed either way.
                    if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                        .execute(pool)
                        .await
                    {
                        tracing::warn!(%error, "checkpoint after seeding orders failed");
                    }
                    Ok(())
                }
                .await;
                result.map_err(|e| self.error(WHAT, e))?;
            }
            Pool::Postgres(pool) => {
                let result: Result<(), sqlx::Error> = async {
                    let mut tx = pool.begin().await?;
                    sqlx::query("SET LOCAL statement_timeout = 0")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(DROP_ORDERS_INDEX).execute(&mut *tx).await?;
                    sqlx::query("TRUNCATE orders").execute(&mut *tx).await?;
                    if wanted > 0 {
                        sqlx::query(POSTGRES_SEED)
                            .bind(wanted)
                            .bind(NOTES_TEXT)
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query(CREATE_ORDERS_INDEX).execute(&mut *tx).await?;
                    sqlx::query("ANALYZE orders").execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(())
                }
                .await;
                result.map_err(|e| self.error(WHAT, e))?;
            }
        }
        Ok(SeedReport {
            rows,
            took: started.elapsed(),
            reused: false,
        })
    }

    pub async fn order_count(&self) -> Result<u64, DbError> {
        let count: i64 = with_pool!(&self.pool, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM orders").fetch_one(pool).await
        })
        .map_err(|e| self.error("counting orders", e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The configured most connections.
    pub fn pool_size(&self) -> u32 {
        self.pool_size
    }

    /// Connections checked out of the pool right now (open minus idle).
    pub fn pool_in_use(&self) -> u32 {
        let (open, idle) = with_pool!(&self.pool, pool => (pool.size(), pool.num_idle()));
        open.saturating_sub(u32::try_from(idle).unwrap_or(u32::MAX))
    }

    /// Orders of one customer, newest first, at most `limit`; with `customer_id: None` and
    /// `limit: None` every row of the table, materialised in memory (what an unvalidated
    /// `{}` tool call does). One short transaction under the statement timeout.
    ///
    /// `Some(customer)` + `None`: all of that customer's orders, newest first;
    /// `None` + `Some(limit)`: the newest `limit` orders of anyone.
    pub async fn search_orders(
        &self,
        customer_id: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Order>, DbError> {
        with_pool!(&self.pool, pool => fetch_orders!(pool, customer_id, limit))
            .map_err(|e| self.error("searching orders", e))
    }

    /// Writes the `turns` row for one agent turn.
    pub async fn record_turn(
        &self,
        call_sid: &str,
        turn: u32,
        detail: &str,
    ) -> Result<(), DbError> {
        with_pool!(&self.pool, pool => insert_turn!(pool, call_sid, turn, detail))
            .map_err(|e| self.error("recording a turn", e))
    }

    /// Opens a transaction that holds one pooled connection until it is committed or
    /// dropped (the long-transactions bug keeps it open across the whole turn).
    ///
    /// On SQLite the transaction is deferred: it takes the database's write lock at its
    /// first write and keeps it until commit or drop, so other writers wait (up to the
    /// busy timeout) meanwhile.
    pub async fn begin_turn(&self) -> Result<TurnTransaction, DbError> {
        let tx = match &self.pool {
            Pool::Sqlite(pool) => pool.begin().await.map(Tx::Sqlite),
            Pool::Postgres(pool) => pool.begin().await.map(Tx::Postgres),
        }
        .map_err(|e| self.error("beginning a turn transaction", e))?;
        Ok(TurnTransaction { tx })
    }

    /// Appends to `events`.
    pub async fn log_event(
        &self,
        kind: &str,
        worker: Option<u32>,
        call_sid: Option<&str>,
        detail: &str,
    ) -> Result<(), DbError> {
        const SQL: &str = "INSERT INTO events (at_ms, kind, worker, call_sid, detail) \
                           VALUES ($1, $2, $3, $4, $5)";
        let worker = worker.map(i64::from);
        with_pool!(&self.pool, pool => {
            sqlx::query(SQL)
                .bind(now_ms())
                .bind(kind)
                .bind(worker)
                .bind(call_sid)
                .bind(detail)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(|e| self.error("logging an event", e))
    }

    /// The newest `limit` events, newest first.
    pub async fn recent_events(&self, limit: u32) -> Result<Vec<EventRecord>, DbError> {
        const SQL: &str = "SELECT id, at_ms, kind, worker, call_sid, detail FROM events \
                           ORDER BY id DESC LIMIT $1";
        with_pool!(&self.pool, pool => {
            sqlx::query_as::<_, EventRecord>(SQL)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .map_err(|e| self.error("reading events", e))
    }

    /// Appends one abandoned turn to `dead_letters`.
    pub async fn record_dead_letter(
        &self,
        call_sid: &str,
        turn: u32,
        reason: &str,
        detail: &str,
    ) -> Result<(), DbError> {
        const SQL: &str = "INSERT INTO dead_letters (at_ms, call_sid, turn, reason, detail) \
                           VALUES ($1, $2, $3, $4, $5)";
        with_pool!(&self.pool, pool => {
            sqlx::query(SQL)
                .bind(now_ms())
                .bind(call_sid)
                .bind(i64::from(turn))
                .bind(reason)
                .bind(detail)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(|e| self.error("recording a dead letter", e))
    }

    /// Rows in `dead_letters`.
    pub async fn dead_letter_count(&self) -> Result<u64, DbError> {
        let count: i64 = with_pool!(&self.pool, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters").fetch_one(pool).await
        })
        .map_err(|e| self.error("counting dead letters", e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Upserts the worker's `health_checks` row with `now_ms()`.
    pub async fn ping_worker(&self, worker: u32, generation: u32) -> Result<(), DbError> {
        const SQL: &str = "INSERT INTO health_checks (worker, generation, last_ping_ms) \
                           VALUES ($1, $2, $3) ON CONFLICT (worker) DO UPDATE \
                           SET generation = excluded.generation, last_ping_ms = excluded.last_ping_ms";
        with_pool!(&self.pool, pool => {
            sqlx::query(SQL)
                .bind(i64::from(worker))
                .bind(i64::from(generation))
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(|e| self.error("pinging a worker", e))
    }

    /// Workers whose last ping is before `cutoff_ms`.
    pub async fn silent_workers(&self, cutoff_ms: i64) -> Result<Vec<SilentWorker>, DbError> {
        const WHAT: &str = "finding silent workers";
        const SQL: &str = "SELECT worker, generation, last_ping_ms FROM health_checks \
                           WHERE last_ping_ms < $1 ORDER BY worker";
        let rows: Vec<(i64, i64, i64)> = with_pool!(&self.pool, pool => {
            sqlx::query_as(SQL).bind(cutoff_ms).fetch_all(pool).await
        })
        .map_err(|e| self.error(WHAT, e))?;
        rows.into_iter()
            .map(|(worker, generation, last_ping_ms)| {
                match (u32::try_from(worker), u32::try_from(generation)) {
                    (Ok(worker), Ok(generation)) => Ok(SilentWorker {
                        worker,
                        generation,
                        last_ping_ms,
                    }),
                    _ => Err(DbError::Query {
                        what: WHAT,
                        source: sqlx::Error::Decode(
                            format!("health_checks row ({worker}, {generation}) out of range")
                                .into(),
                        ),
                    }),
                }
            })
            .collect()
    }

    /// Closes every connection (waits for checked-out ones to come back).
    pub async fn close(&self) {
        with_pool!(&self.pool, pool => pool.close().await)
    }
}

enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A transaction spanning several queries on one pooled connection. Dropping it without
/// [`TurnTransaction::commit`] rolls it back and returns the connection.
pub struct TurnTransaction {
    tx: Tx,
}

impl std::fmt::Debug for TurnTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.tx {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        };
        f.debug_struct("TurnTransaction")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

impl TurnTransaction {
    pub async fn search_orders(
        &mut self,
        customer_id: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Order>, DbError> {
        match &mut self.tx {
            Tx::Sqlite(tx) => fetch_orders!(&mut **tx, customer_id, limit),
            Tx::Postgres(tx) => fetch_orders!(&mut **tx, customer_id, limit),
        }
        .map_err(|source| DbError::Query {
            what: "searching orders in a turn transaction",
            source,
        })
    }

    pub async fn record_turn(
        &mut self,
        call_sid: &str,
        turn: u32,
        detail: &str,
    ) -> Result<(), DbError> {
        match &mut self.tx {
            Tx::Sqlite(tx) => insert_turn!(&mut **tx, call_sid, turn, detail),
            Tx::Postgres(tx) => insert_turn!(&mut **tx, call_sid, turn, detail),
        }
        .map_err(|source| DbError::Query {
            what: "recording a turn in a turn transaction",
            source,
        })
    }

    pub async fn commit(self) -> Result<(), DbError> {
        match self.tx {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
        .map_err(|source| DbError::Query {
            what: "committing a turn transaction",
            source,
        })
    }
}

/// Throwaway PostgreSQL databases for the unit tests; the file lives with the integration
/// tests so the library does not ship it.
#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
pub(crate) mod testing;

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;

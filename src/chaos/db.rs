//! `db_pool_exhaustion`: the fleet's database pool exhausted for real, from outside, on the
//! fleet's own database (the incident: long-running transactions during batch work held
//! the pool at 95% at hour 16).
//!
//! The harness opens its own connections with the database URL the fleet uses (so the
//! same role, the same limits) and does one of two things ([`DbPoolMethod`]):
//!
//! - **`hold_locks`**: sessions in open transactions hold locks that the fleet's writes
//!   need, so every pooled connection that tries to write waits, and the pool fills up
//!   with waiting connections, as it did behind the incident's long transactions.
//! - **`take_slots`** (PostgreSQL only): open connections until the server refuses more
//!   and hold them, so the fleet's pool cannot open a connection it does not have yet.
//!
//! ## Which locks, and why
//!
//! *PostgreSQL*: every table the fleet's unqualified queries can reach (ordinary and
//! partitioned tables in the schemas of the session's `search_path`: for the reference
//! fleet `orders`, `turns`, `events`, `health_checks` and `dead_letters`) is locked with
//! `LOCK TABLE ONLY … IN EXCLUSIVE MODE`. EXCLUSIVE conflicts with ROW EXCLUSIVE (taken by
//! every `INSERT`, `UPDATE`, `DELETE`, upsert) and ROW SHARE (`SELECT … FOR UPDATE`, job
//! queues), but not with ACCESS SHARE, so plain `SELECT`s pass. That is the footprint of
//! a long batch transaction: writers queue, readers (MVCC) do not. In the reference fleet
//! that blocks the workers' health-check pings (upsert into `health_checks`), each turn's
//! `INSERT INTO turns` and every `events` row, which is enough to fill its pool: each
//! worker keeps a ping waiting. (DDL is a writer too: a fleet restarting during the fault
//! waits at its `CREATE INDEX IF NOT EXISTS`, which takes SHARE.) ACCESS EXCLUSIVE would
//! block the reads too, but then also the operators' dashboards, the harness's own
//! observers and every query a stuck migration would block: a different incident.
//! EXCLUSIVE is self-conflicting, so the
//! tables are dealt out among the holders (holder *i* locks tables *i*, *i+n*, …; never
//! more holders than tables) rather than every holder queueing for the same table
//! (PostgreSQL queues a lock request behind waiting writers, so a second holder would wait
//! for the fleet, which waits for the first holder). Each table is locked `ONLY`, so a
//! partition and its parent never land on two holders.
//!
//! *SQLite*: one connection runs `BEGIN IMMEDIATE` and keeps the transaction open: it owns
//! the database's single write lock, so every writer of the fleet waits out its
//! `busy_timeout` (SQLite has one write lock per database: more holders add nothing, so
//! exactly one holds it). In WAL mode readers still read, as above.
//!
//! ## Slots
//!
//! `take_slots` reads the limit that applies to the role from the catalog: the
//! per-database `CONNECTION LIMIT` (`pg_database.datconnlimit`), the per-role one
//! (`pg_roles.rolconnlimit`), and `max_connections` minus the reserved slots
//! (`superuser_reserved_connections`, and `reserved_connections` where it exists); the
//! smallest free count wins. It opens that many connections minus `leave`, at most `max`
//! in all; with `leave = 0` it keeps opening until the server refuses (SQLSTATE 53300), so
//! a miscount (an autovacuum worker, a member of `pg_use_reserved_connections`) does not
//! leave a slot free. If the server refuses before the count is reached it gives `leave`
//! connections back. A superuser is subject to none of the per-database or per-role limits
//! and may use the reserved slots, so with a superuser URL this takes the whole server's
//! slots up to `max`.
//!
//! ## Confirming
//!
//! A fault is *in effect* only while it is held **and** once the fleet has been seen
//! exposed to it: locks no fleet query ever waits on are no fault at all, and grading a
//! fleet's detection of them would blame a healthy fleet (a fleet that only reads passes
//! `EXCLUSIVE` locks untouched). Until the fleet is seen exposed, the evidence says so
//! ("locks held, fleet not exposed (no fleet session waited on them): …"), and a fault
//! that never gets there within `confirm_within` is `fault_not_in_effect`: the run ends
//! `error`, not `fail`. Once seen, exposure stays: the fault is confirmed for as long as it
//! is held.
//!
//! - **Held.** `hold_locks`: every holder's session is alive and holds all its locks,
//!   granted (PostgreSQL: `pg_locks`), or the holder owns the write lock (SQLite: a probe
//!   connection's `BEGIN IMMEDIATE` with no busy wait gets `SQLITE_BUSY`). `take_slots`:
//!   all its connections are alive and no more than `leave` slots are free; with
//!   `leave = 0` a fresh connection must be refused.
//! - **Exposed, PostgreSQL `hold_locks`**: a session that is not the harness's own (its
//!   `application_name` does not start with `voxsoak-`) waits on the holders
//!   (`pg_blocking_pids`). A waiting writer waits as long as the locks are held (or until
//!   its own timeout), so the plane's polls see it.
//! - **Exposed, `take_slots`**: the effect is the server refusing new connections, and the
//!   fleet meets it when it needs one. PostgreSQL counts refused connections nowhere a
//!   session can read (only in the server log), so the evidence is the need's condition:
//!   the fleet's pool full and unable to grow. The fleet's sessions are the clients of the
//!   database that are not the harness's; `pg_stat_activity` keeps, for each, the last
//!   stretch of time it was busy (an idle session: its last query, `query_start` to
//!   `state_change`; a busy one: from its transaction's or query's start until now). When
//!   those stretches share a moment after the slots were taken, and no slot is free, every
//!   connection of the fleet was in use at once while it could open no other: it is
//!   exposed. Because the stretches are the server's record and not a sample, a moment
//!   between two looks counts too. A pool with an idle connection serves its next query
//!   without a new one and is not exposed. The evidence cannot tell a pool already at its
//!   own maximum (which would queue rather than connect) from one that wanted to grow:
//!   that is the case where it overstates. Sessions whose state the server hides from the
//!   fault's role never count as busy.
//! - **Exposed, SQLite**: SQLite shows nobody who waits. A writer waiting out its
//!   `busy_timeout` holds no lock between its retries and leaves no trace in the files or
//!   the WAL index, so "a fleet writer waited" cannot be observed from outside the
//!   fleet's process. What can be: SQLite has one write lock for the whole database, so
//!   *every* write of the fleet waits on it, and a fleet that was writing when the lock was
//!   taken is exposed. The evidence is the database files' modification time (a commit
//!   writes the `-wal` file, or the file itself; a checkpoint the file): the fleet wrote
//!   within 10 s before the lock was taken. The reference fleet writes a health ping per
//!   worker every second or faster, and a `turns` row per turn, so against it the fault
//!   confirms at once. A fleet that only reads, or last wrote longer ago, is not
//!   exposed; a fleet that writes rarely may be exposed later without the harness seeing
//!   it (the run then ends `error`, which is honest: the harness could not see). A fault
//!   in the first seconds of a fleet's life sees its start-up writes.
//!
//! The evidence also counts what is seen now: the fleet sessions waiting on the locks, the
//! fleet's sessions and how many are busy.
//!
//! ## Undoing
//!
//! `clear` rolls every holder back (PostgreSQL releases the locks when `ROLLBACK`
//! returns), closes every connection, and then verifies: on PostgreSQL that none of the
//! fault's sessions is left in `pg_stat_activity`; on SQLite that the holder's connection
//! is closed (SQLite's own `sqlite3_close` returned) and a probe writer can take the write
//! lock. `Drop` needs no runtime: dropping a detached `PgConnection` closes its socket at
//! once (sqlx keeps no background task for it), and the server rolls the transaction back
//! as soon as it reads the end of the stream; a `SqliteConnection` lives on a worker thread
//! of its own, so `Drop` asks that thread to close the database handle and waits (briefly,
//! with no executor) until it has. A harness killed with SIGKILL loses its sockets and
//! file locks with its process: PostgreSQL ends the sessions and rolls back, and the
//! kernel releases SQLite's locks (an open `BEGIN IMMEDIATE` wrote nothing to recover).
//!
//! The database URL may carry a password, so errors and evidence name the database by host,
//! port and name (or the SQLite file's path) only.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection};

use super::{Confirmation, FaultError};
use crate::scenario::faults::DbPoolExhaustion;

/// The fault kind as scenarios name it.
pub const KIND: &str = "db_pool_exhaustion";

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a holder waits for its locks: sessions of the fleet that are writing when the
/// fault is injected (a long-transactions turn holds its write for seconds) must finish
/// first.
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// How long `clear` waits to see the fault's sessions gone, or the write lock free.
const RELEASE_VERIFY_WITHIN: Duration = Duration::from_secs(5);
/// How long `Drop` waits for a SQLite connection's thread to close the database.
const DROP_CLOSE_WITHIN: Duration = Duration::from_secs(2);
/// SQLSTATE `too_many_connections`: per server, per database and per role, and the
/// reserved slots.
const TOO_MANY_CONNECTIONS: &str = "53300";
/// SQLite's primary result code `SQLITE_BUSY` (extended codes keep it in the low byte).
const SQLITE_BUSY: i32 = 5;
/// A SQLite fleet that wrote this shortly before the write lock was taken is exposed to it.
/// The reference fleet's workers write a health ping every second or faster, and a fleet
/// recording each turn writes every few seconds under load.
const SQLITE_WRITE_HORIZON: Duration = Duration::from_secs(10);

pub use crate::contract::db::DbPoolMethod;

/// The pool-exhaustion fault, in effect from [`DbPoolFault::inject`] until
/// [`DbPoolFault::clear`] (or drop).
pub struct DbPoolFault {
    method: DbPoolMethod,
    /// "database \"fleet\" on 127.0.0.1:5432" or "SQLite file /…/fleet.db": what errors
    /// and evidence may say about the target (never the URL).
    database: String,
    /// Removes the URL's password from error texts (belt and braces: servers do not echo
    /// passwords, but a driver's message might quote the URL).
    redactor: Redactor,
    held: Held,
    /// When `inject` returned: exposure is timed from here.
    injected: Instant,
    /// The first evidence that the fleet was exposed to the fault; once seen, the fault
    /// stays confirmed for as long as it is held.
    exposure: Option<Exposure>,
}

/// How the fleet was first seen exposed to the fault.
#[derive(Debug, Clone)]
struct Exposure {
    after: Duration,
    seen: String,
}

/// What one look at the database found.
struct Look {
    /// Whether the fault is in place: locks granted to live sessions, slots held.
    held: bool,
    /// What was seen of the fault, for the evidence.
    evidence: String,
    /// What shows the fleet exposed to the fault now, if anything.
    exposed: Option<String>,
    /// Why the fleet is not seen exposed, for the evidence while it is not.
    unexposed: String,
}

impl Look {
    /// A look that found the fault not in place; exposure does not matter then.
    fn not_held(evidence: impl Into<String>) -> Self {
        Look {
            held: false,
            evidence: evidence.into(),
            exposed: None,
            unexposed: String::new(),
        }
    }
}

/// What the fault holds open.
enum Held {
    SqliteWriteLock {
        holder: SqliteConnection,
        /// How a probe reaches the same file.
        options: SqliteConnectOptions,
        /// How long before the lock was taken the database files were last written
        /// (None: their times could not be read).
        last_write: Option<Duration>,
    },
    PostgresLocks {
        holders: Vec<LockHolder>,
        /// Every locked table with its oid, in the order dealt out.
        tables: Vec<(String, i64)>,
        sessions: PgSessions,
    },
    PostgresSlots {
        connections: Vec<PgConnection>,
        sessions: PgSessions,
        /// What ended the count at inject, for the evidence.
        ended: SlotsEnded,
        leave: u32,
        /// The server's clock (seconds since the epoch) once the slots were taken: the
        /// fleet's pool filling up counts from here.
        taken_at: f64,
    },
    Released,
}

/// What ended `take_slots`' count of connections.
#[derive(Debug, Clone)]
enum SlotsEnded {
    /// The server refused (its message).
    Refused(String),
    /// The count the catalog allowed, minus `leave`.
    Counted,
    /// The `max` parameter.
    Max,
}

/// One PostgreSQL session holding locks.
struct LockHolder {
    connection: PgConnection,
    pid: i32,
    tables: Vec<String>,
}

/// How the fault's PostgreSQL sessions are reached and recognised.
struct PgSessions {
    /// The fleet's connect options, with the fault's `application_name` (has the password).
    options: PgConnectOptions,
    /// `application_name` of every session of this fault, so operators see who holds what.
    tag: String,
    /// Backend pids of the fault's sessions.
    pids: Vec<i32>,
}

impl std::fmt::Debug for DbPoolFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbPoolFault")
            .field("method", &self.method)
            .field("database", &self.database)
            .field("sessions", &self.held.session_count())
            .finish_non_exhaustive()
    }
}

impl DbPoolFault {
    /// Injects a scenario's `db_pool_exhaustion`: on the database in the variable its
    /// `database_url_env` names, else on the fleet's own (`fleet_database`, known when the
    /// harness started the fleet). A PostgreSQL server is acted on only if its host is in
    /// `allow_hosts`, checked before any connection.
    pub async fn inject_spec(
        spec: &DbPoolExhaustion,
        fleet_database: Option<&str>,
        allow_hosts: &[String],
    ) -> Result<DbPoolFault, FaultError> {
        let url = match &spec.database_url_env {
            Some(name) => std::env::var(name).map_err(|_| {
                FaultError::new(
                    KIND,
                    format!("the variable {name} named by database_url_env is not set"),
                )
            })?,
            None => fleet_database
                .map(str::to_owned)
                .ok_or_else(|| FaultError::new(KIND, "no database to act on"))?,
        };
        if let Ok(parsed) = url::Url::parse(&url)
            && parsed.scheme().starts_with("postgres")
        {
            let host = parsed.host_str().unwrap_or("localhost");
            if !crate::scenario::host_in(allow_hosts, host) {
                return Err(FaultError::new(
                    KIND,
                    format!(
                        "the database host {host} is not in allow_hosts; add it to [target] allow_hosts to inject faults there"
                    ),
                ));
            }
        }
        DbPoolFault::inject(&url, spec.method).await
    }

    /// Connects to the fleet's database (`sqlite:///abs/path/fleet.db`, `postgres://…`) and
    /// exhausts its pool by `method`; returns once the locks are held or the slots taken.
    /// On an error nothing is left held.
    pub async fn inject(
        database_url: &str,
        method: DbPoolMethod,
    ) -> Result<DbPoolFault, FaultError> {
        let (target, database, redactor) = parse_target(database_url)?;
        let fail = |message: String| FaultError::new(KIND, redactor.scrub(&message));
        let held = match (target, method) {
            (_, DbPoolMethod::HoldLocks { holders: 0 }) => {
                return Err(fail("hold_locks needs at least one holder".into()));
            }
            (_, DbPoolMethod::TakeSlots { max: 0, .. }) => {
                return Err(fail("take_slots needs max of at least 1".into()));
            }
            (Target::Sqlite(options), DbPoolMethod::HoldLocks { .. }) => {
                hold_sqlite_write_lock(options, &database)
                    .await
                    .map_err(fail)?
            }
            (Target::Sqlite(_), DbPoolMethod::TakeSlots { .. }) => {
                return Err(fail(format!(
                    "take_slots needs PostgreSQL: {database} has no connection slots to take \
                     (use hold_locks to hold its write lock)"
                )));
            }
            (Target::Postgres(options), DbPoolMethod::HoldLocks { holders }) => {
                hold_postgres_locks(options, holders, &database)
                    .await
                    .map_err(fail)?
            }
            (Target::Postgres(options), DbPoolMethod::TakeSlots { leave, max }) => {
                take_postgres_slots(options, leave, max, &database)
                    .await
                    .map_err(fail)?
            }
        };
        Ok(DbPoolFault {
            method,
            database,
            redactor,
            held,
            injected: Instant::now(),
            exposure: None,
        })
    }

    pub fn method(&self) -> DbPoolMethod {
        self.method
    }

    /// The target as errors and evidence name it: host, port and database, or the SQLite
    /// file (never the URL).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The `application_name` of the fault's PostgreSQL sessions (None on SQLite).
    pub fn application_name(&self) -> Option<&str> {
        self.held.sessions().map(|sessions| sessions.tag.as_str())
    }

    /// Backend pids of the fault's PostgreSQL sessions (empty on SQLite or once cleared).
    pub fn backend_pids(&self) -> &[i32] {
        self.held
            .sessions()
            .map_or(&[], |sessions| sessions.pids.as_slice())
    }

    /// Looks from the database's side at whether the fault is in effect: held, and the
    /// fleet exposed to it (see the module documentation for what counts).
    pub async fn confirm(&mut self) -> Confirmation {
        let database = self.database.clone();
        let (what, look) = match &mut self.held {
            Held::SqliteWriteLock {
                holder,
                options,
                last_write,
            } => (
                "write lock held",
                confirm_sqlite(holder, options, *last_write, &database).await,
            ),
            Held::PostgresLocks {
                holders, tables, ..
            } => (
                "locks held",
                confirm_postgres_locks(holders, tables, &database).await,
            ),
            Held::PostgresSlots {
                connections,
                sessions,
                ended,
                leave,
                taken_at,
            } => (
                "slots taken",
                confirm_postgres_slots(
                    connections,
                    sessions,
                    ended,
                    (*leave, *taken_at),
                    &database,
                )
                .await,
            ),
            Held::Released => ("", Look::not_held("already cleared")),
        };
        let confirmation = self.judge(what, look);
        Confirmation {
            in_effect: confirmation.in_effect,
            evidence: self.redactor.scrub(&confirmation.evidence),
        }
    }

    /// In effect only while held and once the fleet has been seen exposed.
    fn judge(&mut self, what: &str, look: Look) -> Confirmation {
        if !look.held {
            return Confirmation::not_in_effect(look.evidence);
        }
        if self.exposure.is_none()
            && let Some(seen) = look.exposed
        {
            self.exposure = Some(Exposure {
                after: self.injected.elapsed(),
                seen,
            });
        }
        match &self.exposure {
            Some(first) => Confirmation::in_effect(format!(
                "{}; fleet exposed {:.1} s after inject: {}",
                look.evidence,
                first.after.as_secs_f64(),
                first.seen
            )),
            None => Confirmation::not_in_effect(format!(
                "{what}, fleet not exposed ({}): {}",
                look.unexposed, look.evidence
            )),
        }
    }

    /// Rolls back and closes every connection of the fault, then checks that none is left;
    /// says what was released and how long it took.
    pub async fn clear(mut self) -> Result<String, FaultError> {
        let held = std::mem::replace(&mut self.held, Held::Released);
        let database = self.database.clone();
        let outcome = match held {
            Held::SqliteWriteLock {
                holder, options, ..
            } => clear_sqlite(holder, options, &database).await,
            Held::PostgresLocks {
                holders,
                tables,
                sessions,
            } => clear_postgres_locks(holders, tables.len(), sessions, &database).await,
            Held::PostgresSlots {
                connections,
                sessions,
                ..
            } => clear_postgres_slots(connections, sessions, &database).await,
            Held::Released => Ok("nothing was held".to_string()),
        };
        outcome.map_err(|message| FaultError::new(KIND, self.redactor.scrub(&message)))
    }
}

impl Drop for DbPoolFault {
    /// Best effort, with no `.await`: PostgreSQL sockets are closed at once (the server
    /// rolls back and releases the locks when it sees the end of the stream); the SQLite
    /// holder's thread is told to close the database and waited for, at most
    /// `DROP_CLOSE_WITHIN`.
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Held::Released) {
            Held::SqliteWriteLock { holder, .. } => {
                // `close` sends the shutdown to the connection's own thread on its first
                // poll and completes once that thread has closed the handle; no runtime is
                // involved, so a plain thread-parking wait will do.
                let closed = wait_without_runtime(holder.close(), DROP_CLOSE_WITHIN);
                if !matches!(closed, Some(Ok(()))) {
                    tracing::warn!(
                        kind = KIND,
                        database = %self.database,
                        "dropped without clear: the SQLite write lock holder did not confirm \
                         its close; its thread releases the lock when it ends"
                    );
                }
            }
            Held::PostgresLocks { holders, .. } => {
                tracing::warn!(
                    kind = KIND,
                    database = %self.database,
                    sessions = holders.len(),
                    "dropped without clear: closing the lock holders' connections"
                );
                drop(holders);
            }
            Held::PostgresSlots { connections, .. } => {
                tracing::warn!(
                    kind = KIND,
                    database = %self.database,
                    sessions = connections.len(),
                    "dropped without clear: closing the held connections"
                );
                drop(connections);
            }
            Held::Released => {}
        }
    }
}

impl Held {
    fn sessions(&self) -> Option<&PgSessions> {
        match self {
            Held::PostgresLocks { sessions, .. } | Held::PostgresSlots { sessions, .. } => {
                Some(sessions)
            }
            Held::SqliteWriteLock { .. } | Held::Released => None,
        }
    }

    fn session_count(&self) -> usize {
        match self {
            Held::SqliteWriteLock { .. } => 1,
            Held::PostgresLocks { holders, .. } => holders.len(),
            Held::PostgresSlots { connections, .. } => connections.len(),
            Held::Released => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The target

enum Target {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

/// The URL's password, to be cut out of any text that might quote it.
#[derive(Debug, Clone, Default)]
struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |text, secret| text.replace(secret, "***"))
    }
}

/// What the URL names, how to describe it, and what to cut out of messages.
fn parse_target(url: &str) -> Result<(Target, String, Redactor), FaultError> {
    let mut redactor = Redactor::default();
    if let Ok(parsed) = url::Url::parse(url)
        && let Some(password) = parsed.password().filter(|p| !p.is_empty())
    {
        redactor.secrets.push(password.to_string());
        if let Ok(decoded) = percent_decode(password)
            && decoded != password
        {
            redactor.secrets.push(decoded);
        }
    }
    let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
    if let Some(rest) = lower.starts_with("sqlite:").then(|| url.get(7..)).flatten() {
        // sqlx knows only the lowercase scheme. A missing file is an error, not a new
        // database: the fault is for a fleet that is running.
        let options: SqliteConnectOptions = format!("sqlite:{rest}").parse().map_err(|e| {
            FaultError::new(
                KIND,
                redactor.scrub(&format!("not a usable SQLite URL: {e}")),
            )
        })?;
        let options = options.create_if_missing(false);
        let database = format!(
            "SQLite file {}",
            PathBuf::from(options.get_filename()).display()
        );
        Ok((Target::Sqlite(options), database, redactor))
    } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let options: PgConnectOptions = url.parse().map_err(|e| {
            FaultError::new(
                KIND,
                redactor.scrub(&format!("not a usable PostgreSQL URL: {e}")),
            )
        })?;
        let name = options
            .get_database()
            .unwrap_or_else(|| options.get_username())
            .to_string();
        let database = format!(
            "database \"{name}\" on {}:{}",
            options.get_host(),
            options.get_port()
        );
        Ok((Target::Postgres(options), database, redactor))
    } else {
        Err(FaultError::new(
            KIND,
            "unsupported database URL: expected sqlite:… or postgres://…",
        ))
    }
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) if hex(hi).is_some() && hex(lo).is_some() => {
                out.push((hex(hi).unwrap_or(0) * 16 + hex(lo).unwrap_or(0)) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// `application_name`s of the harness's own sessions (a `LIKE` pattern): they are never
/// the fleet, whatever they wait on.
const HARNESS_SESSIONS: &str = "voxsoak-%";

/// A fresh `application_name` for one fault's sessions.
fn session_tag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "voxsoak-{KIND}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/// Options for the fault's sessions: tagged, and exempt from the server's timeouts that
/// would end them early (a held lock that a `statement_timeout` or an
/// `idle_in_transaction_session_timeout` cuts short is no fault at all).
fn session_options(options: &PgConnectOptions, tag: &str) -> PgConnectOptions {
    let lock_wait = LOCK_WAIT.as_millis().to_string();
    options.clone().application_name(tag).options([
        ("statement_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("lock_timeout", lock_wait.as_str()),
    ])
}

/// Opens one connection, bounded by [`CONNECT_TIMEOUT`].
async fn connect_postgres(options: &PgConnectOptions) -> Result<PgConnection, ConnectFailure> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(mut connection)) => {
            // Idle sessions (slots) must not be ended by `idle_session_timeout` (PG 14+).
            if connection
                .server_version_num()
                .is_some_and(|v| v >= 140_000)
            {
                sqlx::raw_sql("SET idle_session_timeout = 0")
                    .execute(&mut connection)
                    .await
                    .map_err(ConnectFailure::from_error)?;
            }
            Ok(connection)
        }
        Ok(Err(error)) => Err(ConnectFailure::from_error(error)),
        Err(_) => Err(ConnectFailure::Other(format!(
            "no answer within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// Why a connection could not be opened.
enum ConnectFailure {
    /// The server refused: no slot free (SQLSTATE 53300). The server's message.
    Refused(String),
    Other(String),
}

impl ConnectFailure {
    fn from_error(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some(TOO_MANY_CONNECTIONS) => {
                ConnectFailure::Refused(db.message().to_string())
            }
            _ => ConnectFailure::Other(error.to_string()),
        }
    }

    fn describe(self) -> String {
        match self {
            ConnectFailure::Refused(message) => format!("refused: {message}"),
            ConnectFailure::Other(message) => message,
        }
    }
}

async fn hold_postgres_locks(
    options: PgConnectOptions,
    holders: u32,
    database: &str,
) -> Result<Held, String> {
    let tag = session_tag();
    let options = session_options(&options, &tag);
    let connect = |n: usize| {
        let options = options.clone();
        async move {
            connect_postgres(&options).await.map_err(|failure| {
                format!(
                    "could not connect lock holder {n} to {database}: {}",
                    failure.describe()
                )
            })
        }
    };
    let mut first = connect(1).await?;
    // What the fleet's unqualified names resolve to. `ONLY` per table: a partition and its
    // parent are locked separately, so two holders never want the same table.
    const TABLES: &str = "SELECT format('%I.%I', n.nspname, c.relname), c.oid::int8 \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false)) \
         ORDER BY n.nspname, c.relname";
    let tables: Vec<(String, i64)> = sqlx::query_as(TABLES)
        .fetch_all(&mut first)
        .await
        .map_err(|e| format!("could not list the tables of {database}: {e}"))?;
    if tables.is_empty() {
        return Err(format!(
            "{database} has no tables in its search_path to lock (has the fleet created its \
             schema?)"
        ));
    }
    let count = (holders as usize).min(tables.len());
    let mut connections = vec![first];
    for n in 2..=count {
        connections.push(connect(n).await?);
    }
    let mut locked = Vec::with_capacity(count);
    for (index, connection) in connections.into_iter().enumerate() {
        let mine: Vec<String> = tables
            .iter()
            .skip(index)
            .step_by(count)
            .map(|(name, _)| name.clone())
            .collect();
        locked.push(LockHolder {
            connection,
            pid: 0,
            tables: mine,
        });
    }
    // All holders ask at once, so the waits for in-flight fleet writes overlap.
    let started = Instant::now();
    let results = futures_util::future::join_all(locked.iter_mut().map(take_locks)).await;
    for (holder, result) in locked.iter().zip(results) {
        if let Err(error) = result {
            return Err(format!(
                "could not lock {} of {database} within {:.1}s: {error}",
                holder.tables.join(", "),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    for holder in &mut locked {
        holder.pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut holder.connection)
            .await
            .map_err(|e| format!("lost a lock holder's session on {database}: {e}"))?;
    }
    let pids = locked.iter().map(|holder| holder.pid).collect();
    Ok(Held::PostgresLocks {
        holders: locked,
        tables,
        sessions: PgSessions { options, tag, pids },
    })
}

/// `BEGIN` and the holder's `LOCK TABLE`, bounded by `lock_timeout` on the server (and a
/// little more here, in case the server does not answer at all).
async fn take_locks(holder: &mut LockHolder) -> Result<(), String> {
    let only: Vec<String> = holder
        .tables
        .iter()
        .map(|table| format!("ONLY {table}"))
        .collect();
    // Names quoted by the server's own `format('%I')`.
    let sql = format!("BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE", only.join(", "));
    let lock = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut holder.connection);
    match tokio::time::timeout(LOCK_WAIT + Duration::from_secs(5), lock).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("the server did not answer".into()),
    }
}

async fn confirm_postgres_locks(
    holders: &mut [LockHolder],
    tables: &[(String, i64)],
    database: &str,
) -> Look {
    let pids: Vec<i32> = holders.iter().map(|holder| holder.pid).collect();
    let oids: Vec<i64> = tables.iter().map(|(_, oid)| *oid).collect();
    let Some(first) = holders.first_mut() else {
        return Look::not_held("no lock holders");
    };
    // Asked through the first holder: it needs no connection slot, and its failure is
    // itself the answer. Inside its transaction `pg_stat_activity` is a snapshot taken at
    // first use, hence the clear.
    const LOOK: &str = "SELECT \
         (SELECT count(*) FROM pg_locks WHERE pid = ANY ($1) AND granted \
             AND locktype = 'relation' AND mode = 'ExclusiveLock' \
             AND relation::int8 = ANY ($2)), \
         (SELECT count(*) FROM pg_stat_activity WHERE pid = ANY ($1)), \
         (SELECT count(*) FROM pg_stat_activity \
             WHERE NOT pid = ANY ($1) AND pg_blocking_pids(pid) && $1 \
             AND coalesce(application_name, '') NOT LIKE $3)";
    let looked: Result<(i64, i64, i64), sqlx::Error> = async {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut first.connection)
            .await?;
        sqlx::query_as(LOOK)
            .bind(&pids)
            .bind(&oids)
            .bind(HARNESS_SESSIONS)
            .fetch_one(&mut first.connection)
            .await
    }
    .await;
    let (locks, alive, waiting) = match looked {
        Ok(found) => found,
        Err(error) => {
            return Look::not_held(format!(
                "could not ask {database} through the first lock holder: {error}"
            ));
        }
    };
    let (sessions, table_count) = (holders.len(), tables.len());
    Look {
        held: alive == sessions as i64 && locks == table_count as i64,
        evidence: format!(
            "{alive} of {sessions} lock-holding sessions alive, holding EXCLUSIVE locks on \
             {locks} of {table_count} tables of {database} (writers wait, plain reads \
             pass); {waiting} fleet sessions wait on them"
        ),
        exposed: (waiting > 0).then(|| format!("{waiting} fleet sessions waited on the locks")),
        unexposed: "no fleet session waited on them".into(),
    }
}

async fn clear_postgres_locks(
    holders: Vec<LockHolder>,
    table_count: usize,
    sessions: PgSessions,
    database: &str,
) -> Result<String, String> {
    let started = Instant::now();
    let count = holders.len();
    // Roll every holder back first: the locks go when each `ROLLBACK` returns, so the
    // fleet's waiters run as soon as possible; then end the sessions.
    let mut problems = Vec::new();
    let mut connections = Vec::with_capacity(count);
    for mut holder in holders {
        let rollback = sqlx::raw_sql("ROLLBACK").execute(&mut holder.connection);
        match tokio::time::timeout(CONNECT_TIMEOUT, rollback).await {
            Ok(Ok(_)) => connections.push(holder.connection),
            // A session that is gone or does not answer: dropping closes its socket, which
            // makes the server roll it back; the check below sees it go.
            Ok(Err(error)) => problems.push(format!("rollback failed: {error}")),
            Err(_) => problems.push("rollback got no answer".to_string()),
        }
    }
    let released = started.elapsed();
    close_all(connections).await;
    let closed = started.elapsed();
    verify_sessions_gone(&sessions, database).await?;
    let verified = started.elapsed();
    let mut message = format!(
        "rolled back {count} lock-holding sessions on {database} ({table_count} tables \
         unlocked) in {:.1} ms, closed them by {:.1} ms; none left in pg_stat_activity at \
         {:.1} ms",
        ms(released),
        ms(closed),
        ms(verified)
    );
    if !problems.is_empty() {
        message.push_str(&format!(" ({})", problems.join("; ")));
    }
    Ok(message)
}

/// Closes connections concurrently (`Terminate`, then the socket); ones that do not
/// finish in time are dropped, which closes their sockets anyway.
async fn close_all(connections: Vec<PgConnection>) {
    futures_util::future::join_all(connections.into_iter().map(|connection| async move {
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, connection.close()).await;
    }))
    .await;
}

/// Polls `pg_stat_activity` from a fresh session until none of the fault's sessions is
/// left.
async fn verify_sessions_gone(sessions: &PgSessions, database: &str) -> Result<(), String> {
    let observer_options = sessions
        .options
        .clone()
        .application_name(&format!("{}-observer", sessions.tag));
    let mut observer = connect_postgres(&observer_options)
        .await
        .map_err(|failure| {
            format!(
                "released, but could not connect to {database} to check: {}",
                failure.describe()
            )
        })?;
    let deadline = Instant::now() + RELEASE_VERIFY_WITHIN;
    let left = loop {
        let left: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY ($1) OR application_name = $2",
        )
        .bind(&sessions.pids)
        .bind(&sessions.tag)
        .fetch_one(&mut observer)
        .await;
        match left {
            Ok(0) => break 0,
            Ok(left) if Instant::now() >= deadline => break left,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(error) => {
                return Err(format!("released, but could not check {database}: {error}"));
            }
        }
    };
    let _ = observer.close().await;
    if left == 0 {
        Ok(())
    } else {
        Err(format!(
            "{left} of the fault's sessions still in pg_stat_activity of {database} after \
             {RELEASE_VERIFY_WITHIN:?}"
        ))
    }
}

/// The connection limit that applies to the role, as the catalog tells it.
#[derive(Debug, Clone)]
struct SlotLimit {
    /// Which limit: "the per-database CONNECTION LIMIT", …
    what: &'static str,
    limit: i64,
    in_use: i64,
}

impl SlotLimit {
    fn free(&self) -> i64 {
        (self.limit - self.in_use).max(0)
    }
}

/// Reads every limit that applies to the session's role and returns the tightest.
async fn slot_limit(connection: &mut PgConnection) -> Result<SlotLimit, sqlx::Error> {
    const LIMITS: &str = "SELECT \
         current_setting('max_connections')::int8, \
         current_setting('superuser_reserved_connections')::int8, \
         COALESCE(NULLIF(current_setting('reserved_connections', true), '')::int8, 0), \
         r.rolsuper, r.rolconnlimit::int8, d.datconnlimit::int8, \
         (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
         (SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND datid = d.oid), \
         (SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND usesysid = r.oid) \
         FROM pg_roles r, pg_database d \
         WHERE r.rolname = current_user AND d.datname = current_database()";
    type Row = (i64, i64, i64, bool, i64, i64, i64, i64, i64);
    let (max, superuser_reserved, reserved, superuser, role_limit, db_limit, all, db, role): Row =
        sqlx::query_as(LIMITS).fetch_one(connection).await?;
    if superuser {
        // Superusers ignore per-database and per-role limits and may use reserved slots.
        return Ok(SlotLimit {
            what: "max_connections (a superuser may use the reserved slots too)",
            limit: max,
            in_use: all,
        });
    }
    let mut limits = vec![SlotLimit {
        what: "max_connections minus the reserved slots",
        limit: max - superuser_reserved - reserved,
        in_use: all,
    }];
    if db_limit >= 0 {
        limits.push(SlotLimit {
            what: "the per-database CONNECTION LIMIT",
            limit: db_limit,
            in_use: db,
        });
    }
    if role_limit >= 0 {
        limits.push(SlotLimit {
            what: "the per-role CONNECTION LIMIT",
            limit: role_limit,
            in_use: role,
        });
    }
    Ok(limits
        .into_iter()
        .min_by_key(SlotLimit::free)
        .unwrap_or(SlotLimit {
            what: "max_connections",
            limit: max,
            in_use: all,
        }))
}

/// Takes the server's free connection slots for the harness, leaving `leave` free and
/// holding at most `max`: one connection reads the limits, more are opened up to the count
/// (or, leaving none, until the server refuses), and the held sessions are looked up with
/// the server's clock.
async fn take_postgres_slots(
    options: PgConnectOptions,
    leave: u32,
    max: u32,
    database: &str,
) -> Result<Held, String> {
    let tag = session_tag();
    let options = session_options(&options, &tag);
    let (first, wanted) = first_slot(&options, leave, max, database).await?;
    let mut connections = vec![first];
    let refused = fill_slots(&options, &mut connections, (wanted, leave, max), database).await?;
    if refused.is_some() && leave > 0 {
        give_back(&mut connections, leave, database).await?;
    }
    let (pids, taken_at) = match held_sessions(&mut connections[0], &tag).await {
        Ok(found) => found,
        Err(error) => {
            close_all(connections).await;
            return Err(format!("lost a held connection to {database}: {error}"));
        }
    };
    let ended = match refused {
        Some(message) => SlotsEnded::Refused(message),
        None if connections.len() >= max as usize => SlotsEnded::Max,
        None => SlotsEnded::Counted,
    };
    Ok(Held::PostgresSlots {
        connections,
        sessions: PgSessions { options, tag, pids },
        ended,
        leave,
        taken_at,
    })
}

/// The first held connection, and how many to hold in all: the free slots the server's
/// limits leave (this connection among them) less `leave`, at most `max`.
async fn first_slot(
    options: &PgConnectOptions,
    leave: u32,
    max: u32,
    database: &str,
) -> Result<(PgConnection, usize), String> {
    let mut first = connect_postgres(options)
        .await
        .map_err(|failure| format!("could not connect to {database}: {}", failure.describe()))?;
    let limit = slot_limit(&mut first)
        .await
        .map_err(|e| format!("could not read the connection limits of {database}: {e}"))?;
    // The first connection is counted in `in_use` already.
    let free_with_first = limit.free() + 1;
    if free_with_first <= i64::from(leave) {
        let _ = first.close().await;
        return Err(format!(
            "nothing to take on {database}: {free_with_first} slots free under {} ({}), \
             leave = {leave}",
            limit.what, limit.limit
        ));
    }
    let wanted = (free_with_first - i64::from(leave)).min(i64::from(max)) as usize;
    Ok((first, wanted))
}

/// Opens connections up to `wanted`, then (leaving none) on until the server says no: the
/// catalog's count is close, the refusal is the truth. Never more than `max`. Returns the
/// server's refusal, if it refused; any other failure closes them all.
async fn fill_slots(
    options: &PgConnectOptions,
    connections: &mut Vec<PgConnection>,
    (wanted, leave, max): (usize, u32, u32),
    database: &str,
) -> Result<Option<String>, String> {
    while connections.len() < max as usize && (connections.len() < wanted || leave == 0) {
        match connect_postgres(options).await {
            Ok(connection) => connections.push(connection),
            Err(ConnectFailure::Refused(message)) => return Ok(Some(message)),
            Err(ConnectFailure::Other(message)) => {
                let number = connections.len() + 1;
                close_all(std::mem::take(connections)).await;
                return Err(format!(
                    "could not open connection {number} to {database}: {message}"
                ));
            }
        }
    }
    Ok(None)
}

/// Refused before the count: none are free now, so `leave` of ours are closed to leave that
/// many free (all of them, and an error, when there are no more than that).
async fn give_back(
    connections: &mut Vec<PgConnection>,
    leave: u32,
    database: &str,
) -> Result<(), String> {
    if connections.len() <= leave as usize {
        close_all(std::mem::take(connections)).await;
        return Err(format!(
            "nothing to take on {database}: the server refused more connections with \
             only {leave} or fewer of ours open"
        ));
    }
    let keep = connections.len() - leave as usize;
    close_all(connections.split_off(keep)).await;
    Ok(())
}

/// The held sessions' pids, and the server's clock once they are all there.
async fn held_sessions(
    connection: &mut PgConnection,
    tag: &str,
) -> Result<(Vec<i32>, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT coalesce(array_agg(pid ORDER BY pid), '{}'), \
         extract(epoch FROM clock_timestamp())::float8 \
         FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(tag)
    .fetch_one(connection)
    .await
}

/// The fleet's sessions as `take_slots` sees them: how many, how many busy now, and
/// whether all were busy at one moment since the slots were taken.
type FleetSessions = (i64, i64, bool);

/// The fleet's sessions: clients of this database that are not the harness's, each with
/// the last stretch of time it was busy. A busy session (running a query, or holding a
/// transaction open) has been since its transaction or query began; an idle one was
/// during its last query. If those stretches share a moment after the slots were taken,
/// every session of the fleet was busy at once then: its pool was full, and could not
/// grow. The latest stretches are what the server keeps, so a moment between two looks
/// is seen, not only the looks' own. A state the server hides (NULL: another role's
/// session) never counts as busy.
const FLEET_SESSIONS: &str = "WITH fleet AS (SELECT state, \
         CASE WHEN state = 'idle' THEN query_start \
              ELSE coalesce(xact_start, query_start, state_change) END AS busy_from, \
         CASE WHEN state = 'idle' THEN state_change ELSE clock_timestamp() END \
             AS busy_until \
     FROM pg_stat_activity \
     WHERE datname = current_database() AND backend_type = 'client backend' \
     AND pid <> pg_backend_pid() AND NOT pid = ANY ($1) \
     AND coalesce(application_name, '') NOT LIKE $2) \
     SELECT count(*), \
         count(*) FILTER (WHERE state IS NOT NULL AND state <> 'idle'), \
         coalesce(count(*) > 0 AND count(*) FILTER (WHERE state IS NULL) = 0 \
             AND count(busy_from) = count(*) AND count(busy_until) = count(*) \
             AND max(busy_from) <= min(busy_until) \
             AND min(busy_until) >= to_timestamp($3), false) \
     FROM fleet";

/// Confirms the slots are still taken: how many held connections are alive, what the
/// server's limits leave free, (leaving none) whether a fresh connection gets in, and
/// whether the fleet's sessions were all busy at once with no slot free (its pool full).
async fn confirm_postgres_slots(
    connections: &mut [PgConnection],
    sessions: &PgSessions,
    ended: &SlotsEnded,
    (leave, taken_at): (u32, f64),
    database: &str,
) -> Look {
    let held = connections.len();
    let Some(first) = connections.first_mut() else {
        return Look::not_held("no connections held");
    };
    let (alive, limit, (fleet, busy, all_busy_at_once)) =
        match look_through_held(first, sessions, taken_at).await {
            Ok(found) => found,
            Err(error) => {
                return Look::not_held(format!(
                    "could not ask {database} through a held connection: {error}"
                ));
            }
        };
    let mut evidence = format!(
        "{alive} of {held} held connections alive on {database}; {} free of {} under {} \
         (leave = {leave})",
        limit.free(),
        limit.limit,
        limit.what
    );
    match ended {
        SlotsEnded::Refused(message) => {
            evidence.push_str(&format!("; at inject the server refused: {message}"));
        }
        SlotsEnded::Max => evidence.push_str("; stopped at max"),
        SlotsEnded::Counted => {}
    }
    let all_alive = alive == held as i64;
    let mut seen = SlotsSeen {
        evidence,
        in_effect: all_alive && limit.free() <= i64::from(leave),
        no_slot_free: limit.free() <= 0,
    };
    if leave == 0 {
        seen.probe(sessions, all_alive).await;
    }
    seen.evidence.push_str(&format!(
        "; the fleet has {fleet} sessions, {busy} of them busy now"
    ));
    // A pool with an idle connection serves its next query without a new one; with every
    // connection busy and no slot free, the next one it opens is refused.
    let saturated = all_busy_at_once && seen.no_slot_free;
    Look {
        held: seen.in_effect,
        evidence: seen.evidence,
        exposed: saturated.then(|| {
            format!(
                "all {fleet} fleet sessions were busy at once with no slot free: its pool was \
                 full and could not grow"
            )
        }),
        unexposed: "its sessions were never all busy at once since the slots were taken, so \
                    its pool had room without a new connection"
            .into(),
    }
}

/// Asks through a held connection: how many of the harness's sessions are alive, the
/// tightest connection limit, and the fleet's sessions ([`FLEET_SESSIONS`]).
async fn look_through_held(
    first: &mut PgConnection,
    sessions: &PgSessions,
    taken_at: f64,
) -> Result<(i64, SlotLimit, FleetSessions), sqlx::Error> {
    let alive: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&sessions.tag)
            .fetch_one(&mut *first)
            .await?;
    let limit = slot_limit(first).await?;
    let fleet = sqlx::query_as(FLEET_SESSIONS)
        .bind(&sessions.pids)
        .bind(HARNESS_SESSIONS)
        .bind(taken_at)
        .fetch_one(&mut *first)
        .await?;
    Ok((alive, limit, fleet))
}

/// What a look at the taken slots has found so far.
struct SlotsSeen {
    evidence: String,
    /// Every held connection alive, and no more slots free than `leave`.
    in_effect: bool,
    /// No slot free for the fleet's next connection.
    no_slot_free: bool,
}

impl SlotsSeen {
    /// Leaving none, a fresh connection is the truth: refused, the slots are all taken (if
    /// every held one is alive); let in, they are not.
    async fn probe(&mut self, sessions: &PgSessions, all_alive: bool) {
        let probe_options = sessions
            .options
            .clone()
            .application_name(&format!("{}-probe", sessions.tag));
        match connect_postgres(&probe_options).await {
            Err(ConnectFailure::Refused(message)) => {
                self.evidence
                    .push_str(&format!("; a fresh connection was refused: {message}"));
                self.in_effect = all_alive;
                self.no_slot_free = true;
            }
            Err(ConnectFailure::Other(message)) => {
                self.evidence
                    .push_str(&format!("; a fresh connection failed: {message}"));
            }
            Ok(probe) => {
                let _ = probe.close().await;
                self.evidence.push_str("; a fresh connection got in");
                self.in_effect = false;
                self.no_slot_free = false;
            }
        }
    }
}

async fn clear_postgres_slots(
    connections: Vec<PgConnection>,
    sessions: PgSessions,
    database: &str,
) -> Result<String, String> {
    let started = Instant::now();
    let count = connections.len();
    close_all(connections).await;
    let closed = started.elapsed();
    verify_sessions_gone(&sessions, database).await?;
    let verified = started.elapsed();
    Ok(format!(
        "closed {count} held connections to {database} in {:.1} ms; none left in \
         pg_stat_activity at {:.1} ms",
        ms(closed),
        ms(verified)
    ))
}

// ---------------------------------------------------------------------------------------
// SQLite

async fn connect_sqlite(
    options: &SqliteConnectOptions,
    busy_timeout: Duration,
) -> Result<SqliteConnection, String> {
    let options = options.clone().busy_timeout(busy_timeout);
    match tokio::time::timeout(CONNECT_TIMEOUT, SqliteConnection::connect_with(&options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("not open within {CONNECT_TIMEOUT:?}")),
    }
}

fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_BUSY),
        _ => false,
    }
}

async fn hold_sqlite_write_lock(
    options: SqliteConnectOptions,
    database: &str,
) -> Result<Held, String> {
    let mut holder = connect_sqlite(&options, LOCK_WAIT)
        .await
        .map_err(|e| format!("could not open {database}: {e}"))?;
    // Waits (busy_timeout) for a fleet transaction that is writing right now.
    let begin = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut holder);
    match tokio::time::timeout(LOCK_WAIT + Duration::from_secs(5), begin).await {
        Ok(Ok(_)) => Ok(Held::SqliteWriteLock {
            last_write: since_last_write(options.get_filename()),
            holder,
            options,
        }),
        Ok(Err(error)) => Err(format!(
            "could not take the write lock of {database} within {LOCK_WAIT:?}: {error}"
        )),
        Err(_) => Err(format!(
            "could not take the write lock of {database}: no answer"
        )),
    }
}

/// Whether a probe writer can take the write lock, waiting at most `wait`: Ok(true) it
/// could (and let go at once), Ok(false) busy.
async fn probe_sqlite_write_lock(
    options: &SqliteConnectOptions,
    wait: Duration,
) -> Result<bool, String> {
    let mut probe = connect_sqlite(options, wait).await?;
    let result = match sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut probe).await {
        Ok(_) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut probe).await;
            Ok(true)
        }
        Err(error) if is_busy(&error) => Ok(false),
        Err(error) => Err(error.to_string()),
    };
    let _ = probe.close().await;
    result
}

/// How long ago the database (its main file, `-wal` or `-journal`) was last written: a
/// commit writes the WAL (or the file itself), a checkpoint the file. An empty file is no
/// write: a reader opening a WAL database creates an empty `-wal` (the harness's own
/// connections included). None when no time can be read.
fn since_last_write(path: &std::path::Path) -> Option<Duration> {
    let modified = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let metadata = std::fs::metadata(PathBuf::from(name)).ok()?;
        if metadata.len() == 0 {
            return None;
        }
        metadata.modified().ok()
    };
    let newest = ["", "-wal", "-journal"]
        .into_iter()
        .filter_map(modified)
        .max()?;
    Some(
        std::time::SystemTime::now()
            .duration_since(newest)
            .unwrap_or_default(),
    )
}

async fn confirm_sqlite(
    holder: &mut SqliteConnection,
    options: &SqliteConnectOptions,
    last_write: Option<Duration>,
    database: &str,
) -> Look {
    // The holder's connection must still answer; the probe then shows whose lock it is.
    if let Err(error) = sqlx::raw_sql("SELECT 1").execute(&mut *holder).await {
        return Look::not_held(format!(
            "the write lock holder's connection to {database} failed: {error}"
        ));
    }
    let evidence = match probe_sqlite_write_lock(options, Duration::ZERO).await {
        Ok(false) => format!(
            "one session holds the write lock of {database} (BEGIN IMMEDIATE); a probe writer \
             got SQLITE_BUSY (writers wait, reads pass in WAL mode)"
        ),
        Ok(true) => {
            return Look::not_held(format!(
                "a probe writer took the write lock of {database}: ours is not held"
            ));
        }
        Err(error) => {
            return Look::not_held(format!(
                "could not probe the write lock of {database}: {error}"
            ));
        }
    };
    let horizon = SQLITE_WRITE_HORIZON.as_secs();
    let (exposed, unexposed) = match last_write {
        Some(age) if age <= SQLITE_WRITE_HORIZON => (
            Some(format!(
                "it last wrote to the database {:.1} s before the lock was taken (the files' \
                 modification time), and every SQLite write needs this lock",
                age.as_secs_f64()
            )),
            String::new(),
        ),
        Some(age) => (
            None,
            format!(
                "no write to it in the {horizon} s before the lock was taken, the last {:.1} s \
                 before: a fleet that does not write never waits on it",
                age.as_secs_f64()
            ),
        ),
        None => (
            None,
            "the database files' modification times could not be read, so no fleet write was \
             seen"
                .into(),
        ),
    };
    Look {
        held: true,
        evidence,
        exposed,
        unexposed,
    }
}

async fn clear_sqlite(
    mut holder: SqliteConnection,
    options: SqliteConnectOptions,
    database: &str,
) -> Result<String, String> {
    let started = Instant::now();
    let rolled_back = sqlx::raw_sql("ROLLBACK").execute(&mut holder).await;
    let released = started.elapsed();
    // `close` returns once the connection's thread has closed the database handle; a
    // failed rollback is undone by that close anyway.
    holder
        .close()
        .await
        .map_err(|e| format!("could not close the write lock holder of {database}: {e}"))?;
    let closed = started.elapsed();
    // The fleet's own writers may take the lock first; the probe waits its turn.
    match probe_sqlite_write_lock(&options, RELEASE_VERIFY_WITHIN).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "released our write lock of {database} (connection closed), but a probe writer \
                 still could not take it within {RELEASE_VERIFY_WITHIN:?}: another writer holds it"
            ));
        }
        Err(error) => {
            return Err(format!(
                "released our write lock of {database}, but could not probe it: {error}"
            ));
        }
    }
    let verified = started.elapsed();
    let rollback_note = match rolled_back {
        Ok(_) => String::new(),
        Err(error) => format!(" (rollback failed: {error}; the close undid it)"),
    };
    Ok(format!(
        "released the write lock of {database} in {:.1} ms, closed the connection by {:.1} ms; \
         a probe writer took the lock at {:.1} ms{rollback_note}",
        ms(released),
        ms(closed),
        ms(verified)
    ))
}

// ---------------------------------------------------------------------------------------

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Wakes the thread that waits in [`wait_without_runtime`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives a future that needs no runtime (its work happens on another thread) to
/// completion on this thread, for at most `within`; for `Drop`, where there is no `.await`
/// and the runtime may be shutting down.
fn wait_without_runtime<F: Future>(future: F, within: Duration) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = Instant::now() + within;
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_and_errors_never_carry_the_password() {
        let (_, database, redactor) =
            parse_target("postgres://fleet:s3cr%40t@db.internal:6543/calls").unwrap();
        assert_eq!(database, "database \"calls\" on db.internal:6543");
        assert_eq!(
            redactor.scrub("auth for postgres://fleet:s3cr%40t@db.internal failed (s3cr@t)"),
            "auth for postgres://fleet:***@db.internal failed (***)"
        );
        let (_, database, _) = parse_target("sqlite:///tmp/x/fleet.db").unwrap();
        assert_eq!(database, "SQLite file /tmp/x/fleet.db");
        let error = parse_target("mysql://root:hunter2@localhost/db")
            .err()
            .unwrap();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn method_defaults_and_names() {
        assert_eq!(
            DbPoolMethod::hold_locks(),
            DbPoolMethod::HoldLocks { holders: 3 }
        );
        assert_eq!(
            DbPoolMethod::take_slots(),
            DbPoolMethod::TakeSlots { leave: 0, max: 500 }
        );
        assert_eq!(DbPoolMethod::hold_locks().name(), "hold_locks");
        assert_eq!(DbPoolMethod::take_slots().name(), "take_slots");
    }

    #[tokio::test]
    async fn bad_parameters_and_sqlite_slots_are_refused_before_connecting() {
        let error =
            DbPoolFault::inject("sqlite:///nonexistent/fleet.db", DbPoolMethod::take_slots())
                .await
                .unwrap_err();
        assert!(error.to_string().contains("needs PostgreSQL"), "{error}");
        let error = DbPoolFault::inject(
            "postgres://u:pw@127.0.0.1:1/db",
            DbPoolMethod::HoldLocks { holders: 0 },
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("at least one holder"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_without_the_password() {
        let error = DbPoolFault::inject(
            "postgres://fleet:pa55word@127.0.0.1:1/fleet",
            DbPoolMethod::hold_locks(),
        )
        .await
        .unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("db_pool_exhaustion: "), "{text}");
        assert!(text.contains("database \"fleet\" on 127.0.0.1:1"), "{text}");
        assert!(!text.contains("pa55word"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_sqlite_file_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let url = format!("sqlite://{}", path.display());
        let error = DbPoolFault::inject(&url, DbPoolMethod::hold_locks())
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("could not open SQLite file"),
            "{error}"
        );
        assert!(!path.exists());
    }
}

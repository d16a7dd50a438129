//! `db_pool_exhaustion` against the reference fleet's real database (a SQLite file or a
//! throwaway PostgreSQL database), with a real `voxsoak fleet` child process where the
//! fleet's suffering is the point: inject, confirm, watch the fleet's pool fill and its
//! `/health` turn 503, clear, and watch the lock go and the fleet recover. PostgreSQL tests
//! skip with a message when no server is reachable, unless `VOXSOAK_REQUIRE_POSTGRES=1`.

use std::time::{Duration, Instant};

use crate::support::postgres::{self as testing, TestPostgres};
use sqlx::{Connection, PgConnection, SqliteConnection};
use voxsoak::chaos::Confirmation;
use voxsoak::chaos::db::{DbPoolFault, DbPoolMethod};

use crate::fleet_util::{Backend, FleetProcess, TestDb, calls_scenario, eventually};
use crate::on_both_databases;
use crate::util::{ScenarioFile, within};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}

/// A fleet whose pool (3) is smaller than its workers (4), each pinging `health_checks`
/// every 250 ms (`--stall-after 1s`): a write lock on that table fills the pool.
fn small_pool_fleet(extra: &[&str]) -> Vec<String> {
    let mut list = vec![
        "--orders",
        "1000",
        "--workers",
        "4",
        "--db-pool-size",
        "3",
        "--stall-after",
        "1s",
    ];
    list.extend_from_slice(extra);
    args(&list)
}

async fn admin() -> PgConnection {
    PgConnection::connect(&testing::admin_url())
        .await
        .expect("connect to the test PostgreSQL server as admin")
}

fn database_name(db: &TestDb) -> Option<&str> {
    match db {
        TestDb::Postgres(postgres) => Some(&postgres.name),
        TestDb::Sqlite { .. } => None,
    }
}

/// How many of `pids` still have a session.
async fn sessions_alive(pids: &[i32]) -> i64 {
    let mut admin = admin().await;
    let alive = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY ($1)")
        .bind(pids)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    alive
}

/// Sessions of the database waiting on a lock, as an operator would count them.
async fn sessions_waiting_on_locks(name: &str) -> i64 {
    let mut admin = admin().await;
    let waiting = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
    )
    .bind(name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    waiting
}

/// Tries to take the write lock the fleet's pings need (`health_checks` in EXCLUSIVE mode on
/// PostgreSQL, `BEGIN IMMEDIATE` on SQLite), waiting at most `wait`, and lets go at once.
async fn can_take_write_lock(db: &TestDb, wait: Duration) -> bool {
    can_take_write_lock_at(&db.url(), wait).await
}

async fn can_take_write_lock_at(url: &str, wait: Duration) -> bool {
    if url.starts_with("postgres") {
        let mut connection = PgConnection::connect(url).await.unwrap();
        let begin = format!("SET lock_timeout = {}; BEGIN", wait.as_millis().max(1));
        sqlx::raw_sql(sqlx::AssertSqlSafe(begin))
            .execute(&mut connection)
            .await
            .unwrap();
        let locked = sqlx::raw_sql("LOCK TABLE health_checks IN EXCLUSIVE MODE")
            .execute(&mut connection)
            .await
            .is_ok();
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut connection)
            .await
            .unwrap();
        let _ = connection.close().await;
        locked
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut connection = SqliteConnection::connect_with(&options.busy_timeout(wait))
            .await
            .unwrap();
        let locked = sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .is_ok();
        if locked {
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut connection)
                .await
                .unwrap();
        }
        let _ = connection.close().await;
        locked
    }
}

/// `SELECT count(*) FROM turns` on a connection of its own (a plain read: it passes the
/// fault's locks, and it does not run the fleet's schema statements, which would wait).
async fn turns_recorded(db: &TestDb) -> i64 {
    const SQL: &str = "SELECT count(*) FROM turns";
    match db {
        TestDb::Postgres(postgres) => {
            let mut connection = PgConnection::connect(&postgres.url).await.unwrap();
            let count = sqlx::query_scalar(SQL)
                .fetch_one(&mut connection)
                .await
                .unwrap();
            let _ = connection.close().await;
            count
        }
        TestDb::Sqlite { .. } => {
            let mut connection = SqliteConnection::connect(&db.url()).await.unwrap();
            let count = sqlx::query_scalar(SQL)
                .fetch_one(&mut connection)
                .await
                .unwrap();
            let _ = connection.close().await;
            count
        }
    }
}

/// Confirms every 250 ms, as the chaos plane does, until the fault is in effect or
/// `within` has passed; the last confirmation.
async fn confirm_within(fault: &mut DbPoolFault, within: Duration) -> Confirmation {
    let deadline = Instant::now() + within;
    loop {
        let confirmation = fault.confirm().await;
        if confirmation.in_effect || Instant::now() >= deadline {
            return confirmation;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts whether the fault is in effect, and that its evidence says `says`.
fn expect(confirmation: &Confirmation, in_effect: bool, says: &str) {
    assert_eq!(confirmation.in_effect, in_effect, "{confirmation:?}");
    assert!(confirmation.evidence.contains(says), "{confirmation:?}");
}

async fn is_healthy(fleet: &FleetProcess) -> bool {
    fleet.health().await.0 == 200
}

/// `/health` is 503 because the pool is full (`db pool saturated: 3/3 in use`).
async fn pool_reported_full(fleet: &FleetProcess) -> bool {
    let (status, body) = fleet.health().await;
    status == 503
        && body["reasons"]
            .to_string()
            .contains("db pool saturated: 3/3")
}

/// The fixed fleet (statement and lock timeouts of 2 s) under `hold_locks`, on health pings
/// alone: the pool fills with pings waiting on the locks, `/health` says so, the bounded
/// waits surface as ping errors; on clear the lock is free at once and the fleet is healthy
/// again.
async fn hold_locks_fill_the_pool_until_cleared(backend: Backend) {
    let Some(db) = TestDb::create(backend, "holdlocks").await else {
        return;
    };
    let fleet = FleetProcess::start(&db, &small_pool_fleet(&[])).await;
    assert!(
        eventually(Duration::from_secs(10), || is_healthy(&fleet)).await,
        "{:?}",
        fleet.health().await
    );

    let injected_at = Instant::now();
    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::hold_locks())
        .await
        .unwrap();
    eprintln!(
        "{backend:?}: hold_locks injected in {:?}",
        injected_at.elapsed()
    );
    // The fleet's pings are writes: they wait on the locks (PostgreSQL), or were written
    // just before the lock was taken (SQLite).
    let confirmation = confirm_within(&mut fault, Duration::from_secs(5)).await;
    eprintln!(
        "{backend:?}: confirmed {:?} after inject: {}",
        injected_at.elapsed(),
        confirmation.evidence
    );
    expect(&confirmation, true, "fleet exposed");
    assert!(!confirmation.evidence.contains(&db.url()));
    if backend == Backend::Postgres {
        assert_eq!(fault.backend_pids().len(), 3, "3 holders, 5 tables");
        assert!(
            confirmation.evidence.contains("5 of 5 tables"),
            "{confirmation:?}"
        );
        assert!(
            confirmation
                .evidence
                .contains("fleet sessions waited on the locks"),
            "{confirmation:?}"
        );
    }

    let full = eventually(Duration::from_secs(15), || pool_reported_full(&fleet)).await;
    assert!(
        full,
        "{:?}\n{}",
        fleet.health().await,
        fleet.metrics().await.text
    );
    eprintln!(
        "{backend:?}: /health 503 (pool 3/3) {:?} after inject",
        injected_at.elapsed()
    );
    // The fixed fleet's waits are bounded: they end as errors it counts.
    let errors = eventually(Duration::from_secs(15), || async {
        fleet
            .metrics()
            .await
            .get("db_errors_total{op=\"ping_worker\"}")
            > 0.0
    })
    .await;
    assert!(errors, "{}", fleet.metrics().await.text);
    if let Some(name) = database_name(&db) {
        let waiting = eventually(Duration::from_secs(10), || async {
            sessions_waiting_on_locks(name).await >= 1
        })
        .await;
        assert!(waiting, "no fleet session waits on a lock");
        let confirmation = fault.confirm().await;
        eprintln!("{backend:?}: confirmed: {}", confirmation.evidence);
        assert!(confirmation.in_effect, "{confirmation:?}");
        assert!(
            !confirmation.evidence.contains("; 0 fleet sessions wait"),
            "{confirmation:?}"
        );
    }
    assert!(!can_take_write_lock(&db, Duration::ZERO).await);

    let pids = fault.backend_pids().to_vec();
    let cleared_at = Instant::now();
    let message = fault.clear().await.unwrap();
    let clear_took = cleared_at.elapsed();
    eprintln!("{backend:?}: hold_locks clear took {clear_took:?}: {message}");
    assert!(clear_took < Duration::from_secs(5), "{message}");
    if backend == Backend::Postgres {
        assert_eq!(sessions_alive(&pids).await, 0);
    }
    // The fleet's queued writers go first; then the lock is anybody's.
    assert!(can_take_write_lock(&db, Duration::from_secs(10)).await);
    let recovered = eventually(Duration::from_secs(20), || is_healthy(&fleet)).await;
    assert!(
        recovered,
        "{:?}\n{}",
        fleet.health().await,
        fleet.metrics().await.text
    );
    eprintln!(
        "{backend:?}: /health 200 again {:?} after clear",
        cleared_at.elapsed()
    );
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(hold_locks_fill_the_pool_until_cleared);

/// `long-transactions` (no statement or lock timeout) under `hold_locks` while calls are
/// running: turns that reach `INSERT INTO turns` wait with their connection for as long as
/// the locks are held, so not one turn is recorded and the pool stays full; on clear the
/// waiting turns go through and the fleet recovers.
async fn hold_locks_stop_long_transaction_turns(backend: Backend) {
    let Some(db) = TestDb::create(backend, "holdlongtx").await else {
        return;
    };
    let fleet = FleetProcess::start(&db, &small_pool_fleet(&["--bug", "long-transactions"])).await;
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 3, "60s", 3, "6s"));
    let calls = tokio::spawn(async move { scenario.run().await });

    let serving = eventually(Duration::from_secs(30), || async {
        turns_recorded(&db).await >= 2
    })
    .await;
    assert!(serving, "no turns recorded\n{}", fleet.printed());
    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::hold_locks())
        .await
        .unwrap();
    let confirmation = confirm_within(&mut fault, Duration::from_secs(5)).await;
    assert!(confirmation.in_effect, "{confirmation:?}");
    // Turns that wrote before the locks were granted have committed by now (the holders
    // waited for them); no turn writes after.
    let recorded_at_inject = turns_recorded(&db).await;

    let full = eventually(Duration::from_secs(15), || pool_reported_full(&fleet)).await;
    assert!(
        full,
        "{:?}\n{}",
        fleet.health().await,
        fleet.metrics().await.text
    );
    // For 3 s the pool never has a free connection and no turn is recorded.
    let window = Instant::now() + Duration::from_secs(3);
    while Instant::now() < window {
        let in_use = fleet.metrics().await.get("db_pool_in_use");
        assert_eq!(in_use, 3.0, "a pooled connection came free under the locks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(turns_recorded(&db).await, recorded_at_inject);
    if let Some(name) = database_name(&db) {
        assert!(sessions_waiting_on_locks(name).await >= 1);
    }

    let cleared_at = Instant::now();
    let message = fault.clear().await.unwrap();
    let clear_took = cleared_at.elapsed();
    eprintln!("{backend:?} long-transactions: hold_locks clear took {clear_took:?}: {message}");
    assert!(clear_took < Duration::from_secs(5), "{message}");
    let resumed = eventually(Duration::from_secs(20), || async {
        turns_recorded(&db).await > recorded_at_inject
    })
    .await;
    assert!(resumed, "no turn recorded after clear\n{}", fleet.printed());
    // Its long transactions keep the small pool busy (and `/health` says so), but a
    // connection comes free between turns, which under the locks never happened.
    let recovered = eventually(Duration::from_secs(30), || async {
        fleet.metrics().await.get("db_pool_in_use") < 3.0
    })
    .await;
    assert!(recovered, "{}", fleet.metrics().await.text);
    eprintln!(
        "{backend:?} long-transactions: turns recorded again and a pooled connection free {:?} after clear",
        cleared_at.elapsed()
    );
    calls.abort();
    let _ = calls.await;
    fleet.stop().await;
    db.remove().await;
}
on_both_databases!(hold_locks_stop_long_transaction_turns);

/// Creates the fleet's tables (through the fleet's own `Database::connect`) and closes.
async fn create_fleet_schema(db: &TestDb) {
    db.connect().await.close().await;
}

/// Dropping the fault without `clear` releases the lock: the PostgreSQL sockets close at
/// drop, the SQLite holder's thread closes the database before `drop` returns.
async fn dropping_the_fault_releases_the_lock(backend: Backend) {
    let Some(db) = TestDb::create(backend, "dropfault").await else {
        return;
    };
    create_fleet_schema(&db).await;
    let fault = DbPoolFault::inject(&db.url(), DbPoolMethod::HoldLocks { holders: 2 })
        .await
        .unwrap();
    assert!(!can_take_write_lock(&db, Duration::ZERO).await);
    let pids = fault.backend_pids().to_vec();

    let dropped_at = Instant::now();
    drop(fault);
    let drop_took = dropped_at.elapsed();
    let free = eventually(Duration::from_secs(5), || {
        can_take_write_lock(&db, Duration::ZERO)
    })
    .await;
    assert!(free, "the lock outlived the dropped fault");
    eprintln!(
        "{backend:?}: drop took {drop_took:?}; lock free {:?} after drop",
        dropped_at.elapsed()
    );
    if backend == Backend::Postgres {
        let gone = eventually(Duration::from_secs(5), || async {
            sessions_alive(&pids).await == 0
        })
        .await;
        assert!(gone, "the dropped fault's sessions are still there");
    }
    db.remove().await;
}
on_both_databases!(dropping_the_fault_releases_the_lock);

/// Dropped on a thread whose runtime is already gone (a harness shutting down): the lock
/// still goes.
async fn dropping_the_fault_after_its_runtime_is_gone(backend: Backend) {
    let Some(db) = TestDb::create(backend, "dropnort").await else {
        return;
    };
    create_fleet_schema(&db).await;
    let url = db.url();
    let (drop_took, held) = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fault = runtime
            .block_on(DbPoolFault::inject(&url, DbPoolMethod::hold_locks()))
            .unwrap();
        let held = !runtime.block_on(can_take_write_lock_at(&url, Duration::ZERO));
        drop(runtime);
        let dropped_at = Instant::now();
        drop(fault);
        (dropped_at.elapsed(), held)
    })
    .join()
    .unwrap();
    assert!(held, "the fault did not hold the lock");
    let free = eventually(Duration::from_secs(5), || {
        can_take_write_lock(&db, Duration::ZERO)
    })
    .await;
    assert!(
        free,
        "the lock outlived the fault dropped without a runtime"
    );
    eprintln!("{backend:?}: drop without a runtime took {drop_took:?}");
    db.remove().await;
}
on_both_databases!(dropping_the_fault_after_its_runtime_is_gone);

/// A holder's session ended by someone else (an operator's `pg_terminate_backend`): confirm
/// says so, even though a fleet session was seen waiting before, and clear still cleans up
/// and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_notices_a_terminated_lock_holder() {
    let Some(db) = TestDb::create(Backend::Postgres, "termholder").await else {
        return;
    };
    create_fleet_schema(&db).await;
    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::HoldLocks { holders: 2 })
        .await
        .unwrap();
    let writer = tokio::spawn(insert_turn(db.url(), "fleet-writer"));
    let confirmation = confirm_within(&mut fault, Duration::from_secs(5)).await;
    assert!(confirmation.in_effect, "{confirmation:?}");
    let victim = *fault.backend_pids().last().unwrap();
    let mut admin = admin().await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(victim)
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let confirmation = loop {
        let confirmation = fault.confirm().await;
        if !confirmation.in_effect || Instant::now() >= deadline {
            break confirmation;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!confirmation.in_effect, "{confirmation:?}");
    assert!(confirmation.evidence.contains("1 of 2"), "{confirmation:?}");
    let message = fault.clear().await.unwrap();
    assert!(message.contains("rollback failed"), "{message}");
    writer
        .await
        .unwrap()
        .expect("the writer's insert goes through once the locks are gone");
    db.remove().await;
}

/// Writes one `turns` row as a fleet would, on a session named `application_name`; returns
/// once the row is committed (it waits on any lock in the way).
async fn insert_turn(url: String, application_name: &'static str) -> Result<(), sqlx::Error> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let mut connection =
        PgConnection::connect_with(&options.application_name(application_name)).await?;
    sqlx::query("INSERT INTO turns (call_sid, turn, at_ms, detail) VALUES ($1, 0, 0, 'test')")
        .bind(application_name)
        .execute(&mut connection)
        .await?;
    let _ = connection.close().await;
    Ok(())
}

/// `hold_locks` on PostgreSQL is confirmed only once a fleet session waits on the locks: a
/// fleet that only reads passes them and is not exposed, nor does a session of the harness's
/// own count; a fleet writer waits and confirms it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_locks_are_confirmed_only_when_a_fleet_session_waits() {
    let Some(db) = TestDb::create(Backend::Postgres, "exposure").await else {
        return;
    };
    create_fleet_schema(&db).await;
    let mut reader = PgConnection::connect(&db.url()).await.unwrap();
    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::hold_locks())
        .await
        .unwrap();
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM turns").fetch_one(&mut reader),
    )
    .await;
    assert!(matches!(read, Ok(Ok(0))), "plain reads pass: {read:?}");
    // A session of the harness's own waiting on the locks is not the fleet.
    let harness_writer = tokio::spawn(insert_turn(db.url(), "voxsoak-test-observer"));
    let waiting = eventually(Duration::from_secs(5), || async {
        sessions_waiting_on_locks(database_name(&db).unwrap()).await >= 1
    })
    .await;
    assert!(waiting, "the harness's writer does not wait");
    let confirmation = confirm_within(&mut fault, Duration::from_secs(2)).await;
    eprintln!("a reader only: {}", confirmation.evidence);
    expect(
        &confirmation,
        false,
        "locks held, fleet not exposed (no fleet session waited on them): ",
    );

    let fleet_writer = tokio::spawn(insert_turn(db.url(), "fleet"));
    let confirmation = confirm_within(&mut fault, Duration::from_secs(5)).await;
    eprintln!("a writer: {}", confirmation.evidence);
    expect(
        &confirmation,
        true,
        "; 1 fleet sessions wait on them; fleet exposed ",
    );
    fault.clear().await.unwrap();
    for writer in [harness_writer, fleet_writer] {
        writer
            .await
            .unwrap()
            .expect("the insert goes through after clear");
    }
    let _ = reader.close().await;
    db.remove().await;
}

/// Sets the modification time of the SQLite database's files (those that exist) `age` in
/// the past, as if nothing had written them since.
fn age_sqlite_files(db: &TestDb, age: Duration) {
    let TestDb::Sqlite { dir } = db else {
        unreachable!("a SQLite database")
    };
    let then = std::time::SystemTime::now() - age;
    for name in [
        "fleet.db",
        "fleet.db-wal",
        "fleet.db-journal",
        "fleet.db-shm",
    ] {
        if let Ok(file) = std::fs::File::options()
            .write(true)
            .open(dir.path().join(name))
        {
            file.set_modified(then).unwrap();
        }
    }
}

/// SQLite shows no waiter, so `hold_locks` on SQLite is confirmed when the fleet was
/// writing as the lock was taken (every write needs the one write lock): a fleet that only
/// reads is not exposed; one that has just committed is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_hold_locks_are_confirmed_only_for_a_fleet_that_writes() {
    let db = TestDb::create(Backend::Sqlite, "sqliteexposure")
        .await
        .unwrap();
    create_fleet_schema(&db).await;
    age_sqlite_files(&db, Duration::from_secs(120));
    let mut reader = SqliteConnection::connect(&db.url()).await.unwrap();
    let count = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM turns");
    assert_eq!(count().fetch_one(&mut reader).await.unwrap(), 0);

    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::hold_locks())
        .await
        .unwrap();
    assert_eq!(
        count().fetch_one(&mut reader).await.unwrap(),
        0,
        "reads pass"
    );
    let confirmation = confirm_within(&mut fault, Duration::from_secs(1)).await;
    eprintln!("a reader only: {}", confirmation.evidence);
    expect(
        &confirmation,
        false,
        "write lock held, fleet not exposed (no write to it in the 10 s before the lock \
             was taken, the last 12",
    );
    fault.clear().await.unwrap();

    sqlx::query("INSERT INTO turns (call_sid, turn, at_ms, detail) VALUES ('CAw', 0, 0, 'w')")
        .execute(&mut reader)
        .await
        .unwrap();
    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::hold_locks())
        .await
        .unwrap();
    let confirmation = fault.confirm().await;
    eprintln!("a writer: {}", confirmation.evidence);
    expect(&confirmation, true, "; fleet exposed ");
    expect(&confirmation, true, "it last wrote to the database ");
    fault.clear().await.unwrap();
    let _ = reader.close().await;
}

/// `take_slots` on SQLite is refused at inject, saying why.
#[tokio::test]
async fn take_slots_needs_postgres() {
    let db = TestDb::create(Backend::Sqlite, "slotssqlite")
        .await
        .unwrap();
    create_fleet_schema(&db).await;
    let error = DbPoolFault::inject(&db.url(), DbPoolMethod::take_slots())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("take_slots needs PostgreSQL"), "{text}");
    assert!(text.contains("SQLite file"), "{text}");
}

/// A throwaway database owned by a throwaway role that is no superuser (superusers ignore
/// per-database connection limits), with `CONNECTION LIMIT limit`, so taking its slots
/// leaves the rest of the shared server alone. The role is dropped after the database.
struct LimitedDatabase {
    /// Declared first: dropped last, after the database that the role owns.
    _role: RoleGuard,
    db: TestDb,
}

struct RoleGuard {
    name: String,
    dropped: bool,
}

impl RoleGuard {
    async fn drop_role(mut self) {
        self.dropped = true;
        drop_role(&self.name).await;
    }
}

async fn drop_role(name: &str) {
    let mut admin = admin().await;
    let sql = format!("DROP ROLE IF EXISTS \"{name}\"");
    if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
    {
        eprintln!("could not drop test role {name}: {error}");
    }
    let _ = admin.close().await;
}

impl Drop for RoleGuard {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(drop_role(&name));
            }
        })
        .join();
    }
}

impl LimitedDatabase {
    async fn create(label: &str, limit: u32) -> Option<LimitedDatabase> {
        let mut postgres = TestPostgres::create(label).await?;
        let role = format!("{}_r", postgres.name);
        let mut admin = admin().await;
        for sql in [
            format!("CREATE ROLE \"{role}\" LOGIN"),
            format!("ALTER DATABASE \"{}\" OWNER TO \"{role}\"", postgres.name),
            format!(
                "ALTER DATABASE \"{}\" CONNECTION LIMIT {limit}",
                postgres.name
            ),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        let _ = admin.close().await;
        let mut url = url::Url::parse(&postgres.url).unwrap();
        url.set_username(&role).unwrap();
        postgres.url = url.to_string();
        Some(LimitedDatabase {
            _role: RoleGuard {
                name: role,
                dropped: false,
            },
            db: TestDb::Postgres(postgres),
        })
    }

    /// Opens a connection as the role; Err(SQLSTATE) when refused.
    async fn connect(&self) -> Result<PgConnection, String> {
        PgConnection::connect(&self.db.url())
            .await
            .map_err(|error| match error {
                sqlx::Error::Database(db) => db.code().unwrap_or_default().to_string(),
                other => other.to_string(),
            })
    }

    /// Sessions connected to the database.
    async fn sessions(&self) -> i64 {
        let mut admin = admin().await;
        let count = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND backend_type = 'client backend'",
        )
        .bind(database_name(&self.db).unwrap())
        .fetch_one(&mut admin)
        .await
        .unwrap();
        let _ = admin.close().await;
        count
    }

    async fn remove(self) {
        let LimitedDatabase { _role, db, .. } = self;
        db.remove().await;
        _role.drop_role().await;
    }
}

/// `take_slots` against a fleet (as a role with a per-database limit of 20) whose pool must
/// grow to serve long transactions: the fleet's new connections are refused, its waits for
/// a connection time out; on clear the slots are free again and calls succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_slots_refuse_the_fleet_new_connections() {
    let Some(limited) = LimitedDatabase::create("slotsfleet", 20).await else {
        return;
    };
    let db = &limited.db;
    let fleet = FleetProcess::start(
        db,
        &args(&[
            "--orders",
            "1000",
            "--workers",
            "4",
            "--db-pool-size",
            "10",
            "--stall-after",
            "1s",
            "--bug",
            "long-transactions",
        ]),
    )
    .await;
    assert!(eventually(Duration::from_secs(10), || is_healthy(&fleet)).await);
    let fleet_sessions = limited.sessions().await;

    let injected_at = Instant::now();
    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::take_slots())
        .await
        .unwrap();
    let held = fault.backend_pids().len() as i64;
    eprintln!(
        "take_slots: {held} connections taken in {:?} (the fleet had {fleet_sessions})",
        injected_at.elapsed()
    );
    assert!(held >= 20 - fleet_sessions - 1, "held {held}");
    assert_eq!(limited.connect().await.err().as_deref(), Some("53300"));

    // Long transactions keep a connection per turn: the pool has to grow, and cannot.
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 6, "30s", 3, "6s"));
    let calls = tokio::spawn(async move { scenario.run().await });
    let confirmation = confirm_within(&mut fault, Duration::from_secs(30)).await;
    eprintln!("take_slots confirmed: {}", confirmation.evidence);
    expect(&confirmation, true, "the per-database CONNECTION LIMIT");
    expect(&confirmation, true, "refused");
    expect(
        &confirmation,
        true,
        "fleet sessions were busy at once with no slot free",
    );
    let timed_out = eventually(Duration::from_secs(30), || async {
        fleet.metrics().await.get("db_pool_timeouts_total") > 0.0
    })
    .await;
    assert!(timed_out, "{}", fleet.metrics().await.text);
    calls.abort();
    let _ = calls.await;

    let pids = fault.backend_pids().to_vec();
    let cleared_at = Instant::now();
    let message = fault.clear().await.unwrap();
    let clear_took = cleared_at.elapsed();
    eprintln!("take_slots clear took {clear_took:?}: {message}");
    assert!(clear_took < Duration::from_secs(5), "{message}");
    assert_eq!(sessions_alive(&pids).await, 0);
    let connection = limited.connect().await.expect("a slot is free again");
    let _ = connection.close().await;

    let recovered = eventually(Duration::from_secs(30), || is_healthy(&fleet)).await;
    assert!(recovered, "{:?}", fleet.health().await);
    let scenario = ScenarioFile::new(&calls_scenario(&fleet.stream_url(), 2, "3s", 1, "8s"));
    let summary = within(Duration::from_secs(60), scenario.run()).await;
    assert!(summary.calls.completed >= 2, "{:?}", summary.calls);
    assert_eq!(
        summary.calls.failed, 0,
        "{:?} {:?}",
        summary.calls, summary.failure_examples
    );
    fleet.stop().await;
    limited.remove().await;
}

/// `leave` keeps exactly that many slots free; `max` caps the count (and then the fault is
/// honestly not in effect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_slots_leave_and_max() {
    let Some(limited) = LimitedDatabase::create("slotsleave", 20).await else {
        return;
    };
    let db = &limited.db;

    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::TakeSlots { leave: 2, max: 500 })
        .await
        .unwrap();
    assert_eq!(fault.backend_pids().len(), 18);
    // Held, but no fleet is there to need a connection.
    let confirmation = fault.confirm().await;
    expect(&confirmation, false, "slots taken, fleet not exposed");
    expect(&confirmation, false, "18 of 18 held connections alive");
    let first = limited.connect().await.expect("first free slot");
    let second = limited.connect().await.expect("second free slot");
    assert_eq!(limited.connect().await.err().as_deref(), Some("53300"));
    for connection in [first, second] {
        let _ = connection.close().await;
    }
    let message = fault.clear().await.unwrap();
    eprintln!("take_slots (leave 2) clear: {message}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            limited.sessions().await == 0
        })
        .await
    );

    let mut fault = DbPoolFault::inject(&db.url(), DbPoolMethod::TakeSlots { leave: 0, max: 5 })
        .await
        .unwrap();
    assert_eq!(fault.backend_pids().len(), 5);
    let confirmation = fault.confirm().await;
    expect(&confirmation, false, "stopped at max");
    fault.clear().await.unwrap();
    limited.remove().await;
}

/// `take_slots` is confirmed once the fleet needs a connection it cannot get: while its
/// session is idle it needs none; once that session is busy (in a transaction) with no slot
/// free, its next query needs a new connection, which the server refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_slots_are_confirmed_when_the_fleet_needs_a_connection() {
    let Some(limited) = LimitedDatabase::create("slotsexposed", 10).await else {
        return;
    };
    let mut fleet = limited.connect().await.expect("the fleet's connection");
    let mut fault = DbPoolFault::inject(&limited.db.url(), DbPoolMethod::take_slots())
        .await
        .unwrap();
    assert_eq!(fault.backend_pids().len(), 9);
    let confirmation = fault.confirm().await;
    eprintln!("an idle fleet: {}", confirmation.evidence);
    expect(
        &confirmation,
        false,
        "the fleet has 1 sessions, 0 of them busy now",
    );
    sqlx::raw_sql("BEGIN; SELECT 1")
        .execute(&mut fleet)
        .await
        .unwrap();
    let confirmation = fault.confirm().await;
    eprintln!("a busy fleet: {}", confirmation.evidence);
    expect(
        &confirmation,
        true,
        "all 1 fleet sessions were busy at once with no slot free",
    );
    fault.clear().await.unwrap();
    let _ = fleet.close().await;
    limited.remove().await;
}

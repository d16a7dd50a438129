//! Tests of the database layer against real databases: a SQLite file in a temporary
//! directory and the test PostgreSQL server ([`TestPostgres`]). Every behaviour is one async
//! function taking a database URL, run once per backend by [`on_both_backends!`].

use std::time::{Duration, Instant};

use sqlx::Connection;

use super::testing::TestPostgres;
use super::*;

/// `mod $name { sqlite(), postgres() }`, each calling `$name(url)` on a fresh database.
/// PostgreSQL tests print a skip line and pass when no server is reachable.
macro_rules! on_both_backends {
    ($(#[$attr:meta])* $name:ident) => {
        mod $name {
            #[tokio::test]
            $(#[$attr])*
            async fn sqlite() {
                let dir = tempfile::TempDir::new().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("fleet.db").display());
                super::$name(&url).await;
            }

            #[tokio::test]
            $(#[$attr])*
            async fn postgres() {
                let Some(database) =
                    super::super::testing::TestPostgres::create(stringify!($name)).await
                else {
                    return;
                };
                super::$name(&database.url).await;
                database.drop_database().await;
            }
        }
    };
}

fn config(url: &str) -> DbConfig {
    DbConfig {
        url: url.to_string(),
        pool_size: 4,
        acquire_timeout: Duration::from_secs(10),
        statement_timeout: Some(Duration::from_secs(10)),
    }
}

async fn connect(config: &DbConfig) -> Database {
    match Database::connect(config).await {
        Ok(db) => db,
        Err(e) => panic!("connecting to {}: {e}", config.url),
    }
}

async fn turn_count(db: &Database) -> i64 {
    with_pool!(&db.pool, pool => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM turns").fetch_one(pool).await
    })
    .expect("counting turns")
}

async fn orders_index_exists(db: &Database) -> bool {
    let count: i64 = match &db.pool {
        Pool::Sqlite(pool) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'orders_customer_id'",
        )
        .fetch_one(pool)
        .await,
        Pool::Postgres(pool) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'orders_customer_id'",
        )
        .fetch_one(pool)
        .await,
    }
    .expect("looking for the index");
    count == 1
}

/// Polls `condition` every 10 ms for up to 10 s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A transaction on a connection of its own (not the pool's) that blocks writers to
/// `turns` until it ends.
enum LockHolder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl LockHolder {
    async fn lock_turns(url: &str) -> LockHolder {
        if url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(url)
                .await
                .expect("second SQLite connection");
            sqlx::raw_sql(
                "BEGIN IMMEDIATE; \
                 INSERT INTO turns (call_sid, turn, at_ms, detail) VALUES ('CAlock', 0, 0, 'lock')",
            )
            .execute(&mut connection)
            .await
            .expect("taking the SQLite write lock");
            LockHolder::Sqlite(connection)
        } else {
            let mut connection = sqlx::PgConnection::connect(url)
                .await
                .expect("second PostgreSQL connection");
            sqlx::raw_sql("BEGIN; LOCK TABLE turns IN ACCESS EXCLUSIVE MODE")
                .execute(&mut connection)
                .await
                .expect("locking turns");
            LockHolder::Postgres(connection)
        }
    }

    async fn release(self) {
        match self {
            LockHolder::Sqlite(mut connection) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .expect("rollback");
                connection.close().await.expect("close");
            }
            LockHolder::Postgres(mut connection) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .expect("rollback");
                connection.close().await.expect("close");
            }
        }
    }
}

async fn schema_and_seeding(url: &str) {
    let db = connect(&config(url)).await;
    assert_eq!(db.order_count().await.expect("count"), 0);
    assert!(orders_index_exists(&db).await);

    let seeded = db.seed_orders(5_000).await.expect("seeding 5,000");
    assert_eq!((seeded.rows, seeded.reused), (5_000, false));
    assert_eq!(db.order_count().await.expect("count"), 5_000);
    assert!(
        orders_index_exists(&db).await,
        "index rebuilt after seeding"
    );

    let again = db.seed_orders(5_000).await.expect("reseeding 5,000");
    assert_eq!((again.rows, again.reused), (5_000, true));
    assert_eq!(db.order_count().await.expect("count"), 5_000);

    // Every row is exactly what the Rust side says it is.
    let mut all = db.search_orders(None, None).await.expect("every order");
    assert_eq!(all.len(), 5_000);
    all.sort_by_key(|order| order.id);
    for (order, id) in all.iter().zip(1u64..) {
        assert_eq!(order, &seeded_order(id));
        assert_eq!(order.customer_id, customer_id(id));
    }
    let mean_row = all
        .iter()
        .map(|o| {
            o.customer_id.len()
                + o.status.len()
                + o.item.len()
                + o.created_at.len()
                + o.notes.len()
                + 16
        })
        .sum::<usize>()
        / all.len();
    assert!(
        (180..=260).contains(&mean_row),
        "rows of about 200 bytes, got {mean_row}"
    );

    // Three orders per customer once there are 30,000.
    let bigger = db.seed_orders(30_000).await.expect("seeding 30,000");
    assert!(!bigger.reused);
    assert_eq!(db.order_count().await.expect("count"), 30_000);
    let customer = customer_id(42);
    let found = db
        .search_orders(Some(&customer), Some(10))
        .await
        .expect("search");
    let ids: Vec<i64> = found.iter().map(|o| o.id).collect();
    assert_eq!(ids, [20_042, 10_042, 42], "newest first");
    assert!(found.iter().all(|o| o.customer_id == customer));
    assert_eq!(found[0], seeded_order(20_042));
    let two = db
        .search_orders(Some(&customer), Some(2))
        .await
        .expect("search");
    assert_eq!(
        two.iter().map(|o| o.id).collect::<Vec<_>>(),
        [20_042, 10_042]
    );
    let unlimited = db
        .search_orders(Some(&customer), None)
        .await
        .expect("search");
    assert_eq!(unlimited.len(), 3);
    let newest = db.search_orders(None, Some(3)).await.expect("newest");
    assert_eq!(
        newest.iter().map(|o| o.id).collect::<Vec<_>>(),
        [30_000, 29_999, 29_998]
    );
    assert!(
        db.search_orders(Some("C999999"), Some(10))
            .await
            .expect("search")
            .is_empty()
    );
    assert_eq!(
        db.search_orders(None, None).await.expect("all").len(),
        30_000
    );

    // Shrinking, and a second pool on the same database reusing what is there.
    let smaller = db.seed_orders(1_234).await.expect("seeding 1,234");
    assert!(!smaller.reused);
    assert_eq!(db.order_count().await.expect("count"), 1_234);
    db.close().await;
    let reopened = connect(&config(url)).await;
    assert!(reopened.seed_orders(1_234).await.expect("reseeding").reused);
    assert!(orders_index_exists(&reopened).await);
    let none = reopened.seed_orders(0).await.expect("seeding nothing");
    assert!(!none.reused);
    assert_eq!(reopened.order_count().await.expect("count"), 0);
    reopened.close().await;
}
on_both_backends!(schema_and_seeding);

async fn pool_accounting(url: &str) {
    let db = connect(&DbConfig {
        pool_size: 2,
        acquire_timeout: Duration::from_millis(300),
        ..config(url)
    })
    .await;
    db.seed_orders(100).await.expect("seeding");
    eventually("the seeding connection is back", || db.pool_in_use() == 0).await;
    assert_eq!(db.pool_size(), 2);

    let mut first = db.begin_turn().await.expect("first turn");
    let second = db.begin_turn().await.expect("second turn");
    assert_eq!(db.pool_in_use(), 2);

    let started = Instant::now();
    match db.order_count().await {
        Err(DbError::PoolTimeout { waited, size }) => {
            assert_eq!((waited, size), (Duration::from_millis(300), 2));
        }
        other => panic!("expected PoolTimeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        db.record_turn("CA1", 1, "x").await,
        Err(DbError::PoolTimeout { .. })
    ));
    assert!(matches!(
        db.begin_turn().await,
        Err(DbError::PoolTimeout { .. })
    ));
    assert!(matches!(
        db.search_orders(None, None).await,
        Err(DbError::PoolTimeout { .. })
    ));
    let timeout = db
        .log_event("x", None, None, "x")
        .await
        .expect_err("pool exhausted");
    assert!(timeout.to_string().contains("pool of 2"), "{timeout}");

    // Work inside a held transaction still runs on its own connection.
    let found = first
        .search_orders(Some(&customer_id(7)), Some(5))
        .await
        .expect("search in the transaction");
    assert_eq!(found.iter().map(|o| o.id).collect::<Vec<_>>(), [7]);
    first
        .record_turn("CAfirst", 1, "committed")
        .await
        .expect("turn in the transaction");
    first.commit().await.expect("commit");
    eventually("one connection is back", || db.pool_in_use() <= 1).await;

    // The second transaction writes, then is dropped: rolled back, connection returned.
    let mut second = second;
    second
        .record_turn("CAsecond", 1, "rolled back")
        .await
        .expect("turn in the transaction");
    drop(second);
    eventually("every connection is back", || db.pool_in_use() == 0).await;

    assert_eq!(turn_count(&db).await, 1, "the committed turn only");
    db.record_turn("CA3", 1, "after")
        .await
        .expect("turn after the pool frees up");
    assert_eq!(turn_count(&db).await, 2);
    db.close().await;
}
on_both_backends!(pool_accounting);

async fn statement_timeout(url: &str) {
    let db = connect(&DbConfig {
        statement_timeout: Some(Duration::from_millis(300)),
        ..config(url)
    })
    .await;
    db.record_turn("CA0", 0, "before")
        .await
        .expect("unlocked write");
    if let Pool::Postgres(pool) = &db.pool {
        let limits: (String, String) = sqlx::query_as(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')",
        )
        .fetch_one(pool)
        .await
        .expect("settings");
        assert_eq!(limits, ("300ms".to_string(), "300ms".to_string()));
    }

    let holder = LockHolder::lock_turns(url).await;
    let started = Instant::now();
    let result = db.record_turn("CA1", 1, "blocked").await;
    let waited = started.elapsed();
    match &result {
        Err(error @ DbError::Query { what, .. }) => {
            assert_eq!(*what, "recording a turn");
            // What the fleet's DbPoolSaturated alert counts as a lock wait that timed out.
            assert!(
                error.waited_out_a_lock(),
                "not seen as a lock wait: {error:?}"
            );
        }
        other => panic!("expected a timed-out write, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");

    holder.release().await;
    db.record_turn("CA1", 1, "unblocked")
        .await
        .expect("write after the lock");
    assert_eq!(turn_count(&db).await, 2);
    db.close().await;
}
on_both_backends!(statement_timeout);

/// Without a statement timeout a blocked write waits for the lock (the long-transactions
/// bug), and goes through once it is released.
async fn no_statement_timeout_waits(url: &str) {
    let db = connect(&DbConfig {
        statement_timeout: None,
        ..config(url)
    })
    .await;
    db.record_turn("CA0", 0, "before")
        .await
        .expect("unlocked write");

    let holder = LockHolder::lock_turns(url).await;
    let blocked = tokio::spawn({
        let db = db.clone();
        async move { db.record_turn("CA1", 1, "waits").await }
    });
    // Deliberately a wall-clock wait: the point is that nothing gives up within it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        !blocked.is_finished(),
        "the write should still be waiting for the lock"
    );

    holder.release().await;
    tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("the write finishes once the lock is released")
        .expect("task")
        .expect("write");
    assert_eq!(turn_count(&db).await, 2);
    db.close().await;
}
on_both_backends!(no_statement_timeout_waits);

async fn events_and_health_checks(url: &str) {
    let db = connect(&config(url)).await;
    assert!(db.recent_events(10).await.expect("no events").is_empty());
    let before = now_ms();
    db.log_event("incident", Some(3), Some("CAabc"), "first")
        .await
        .expect("log");
    db.log_event("alert", None, None, "second")
        .await
        .expect("log");
    db.log_event("healer", Some(u32::MAX), None, "third")
        .await
        .expect("log");
    let after = now_ms();

    let events = db.recent_events(2).await.expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(
        events.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
        ["third", "second"]
    );
    assert_eq!(events[0].worker, Some(i64::from(u32::MAX)));
    assert!(events[0].id > events[1].id);
    let all = db.recent_events(100).await.expect("events");
    assert_eq!(all.len(), 3);
    let first = &all[2];
    assert_eq!(
        (
            first.kind.as_str(),
            first.worker,
            first.call_sid.as_deref(),
            first.detail.as_str()
        ),
        ("incident", Some(3), Some("CAabc"), "first")
    );
    assert_eq!(all[1].call_sid, None);
    assert!(all.iter().all(|e| (before..=after).contains(&e.at_ms)));

    db.ping_worker(3, 7).await.expect("ping");
    db.ping_worker(4, 1).await.expect("ping");
    let now = now_ms();
    let silent = db.silent_workers(now + 1).await.expect("silent");
    assert_eq!(
        silent
            .iter()
            .map(|w| (w.worker, w.generation))
            .collect::<Vec<_>>(),
        [(3, 7), (4, 1)]
    );
    assert!(silent.iter().all(|w| w.last_ping_ms <= now));
    assert!(
        db.silent_workers(now - 60_000)
            .await
            .expect("silent")
            .is_empty()
    );

    // A ping is an upsert: one row per worker, the newest generation.
    db.ping_worker(3, 8).await.expect("ping again");
    let silent = db.silent_workers(now_ms() + 1).await.expect("silent");
    assert_eq!(
        silent
            .iter()
            .map(|w| (w.worker, w.generation))
            .collect::<Vec<_>>(),
        [(3, 8), (4, 1)]
    );
    db.close().await;
}
on_both_backends!(events_and_health_checks);

/// Dead letters are rows that outlive the pool: a fleet restarted on the same database
/// counts the ones its earlier run wrote.
async fn dead_letters_are_counted_across_connections(url: &str) {
    let db = connect(&config(url)).await;
    assert_eq!(db.dead_letter_count().await.expect("count"), 0);
    db.record_dead_letter("CA1", 2, "tts_gave_up", "after 4 attempts")
        .await
        .expect("insert");
    db.record_dead_letter("CA1", 3, "llm_failed", "")
        .await
        .expect("insert");
    db.close().await;
    let again = connect(&config(url)).await;
    assert_eq!(again.dead_letter_count().await.expect("count"), 2);
    let reasons: Vec<String> = with_pool!(&again.pool, pool => {
        sqlx::query_scalar("SELECT reason FROM dead_letters ORDER BY id").fetch_all(pool).await
    })
    .expect("reasons");
    assert_eq!(reasons, ["tts_gave_up", "llm_failed"]);
    again.close().await;
}
on_both_backends!(dead_letters_are_counted_across_connections);

/// 1,000,000 rows: how long seeding takes and how much memory `search_orders(None, None)`
/// costs. Too slow for every run; run it by hand, one backend per process (so the memory
/// figures are its own):
/// `cargo test --release --lib fleet::db::tests::million_rows::sqlite -- --ignored --nocapture`
/// (and `…::postgres`).
async fn million_rows(url: &str) {
    // No statement timeout: the unbounded read is the bug being measured.
    let db = connect(&DbConfig {
        statement_timeout: None,
        ..config(url)
    })
    .await;
    let seeded = db.seed_orders(1_000_000).await.expect("seeding 1,000,000");
    eprintln!(
        "{}: seeded 1,000,000 rows in {:?}",
        backend_name(&db),
        seeded.took
    );
    assert!(!seeded.reused);
    assert_eq!(db.order_count().await.expect("count"), 1_000_000);
    let again = db.seed_orders(1_000_000).await.expect("reseeding");
    eprintln!("{}: reuse check took {:?}", backend_name(&db), again.took);
    assert!(again.reused);

    let started = Instant::now();
    let found = db
        .search_orders(Some(&customer_id(42)), Some(10))
        .await
        .expect("search");
    eprintln!(
        "{}: customer search took {:?}",
        backend_name(&db),
        started.elapsed()
    );
    assert_eq!(found.len(), 10);

    let rss_before = vm_status("VmRSS");
    let started = Instant::now();
    let all = db.search_orders(None, None).await.expect("every order");
    let took = started.elapsed();
    assert_eq!(all.len(), 1_000_000);
    eprintln!(
        "{}: search_orders(None, None) took {took:?}; VmRSS {} -> {}, VmHWM {}",
        backend_name(&db),
        rss_before,
        vm_status("VmRSS"),
        vm_status("VmHWM")
    );
    // What a tool handler then does with them: one JSON document.
    let json = serde_json::to_vec(&all).expect("JSON");
    eprintln!(
        "{}: as JSON {} MiB; VmRSS {}, VmHWM {}",
        backend_name(&db),
        json.len() >> 20,
        vm_status("VmRSS"),
        vm_status("VmHWM")
    );
    drop((all, json));
    db.close().await;
}
on_both_backends!(
    #[ignore = "slow: seeds 1,000,000 rows; run by hand to measure"]
    million_rows
);

fn backend_name(db: &Database) -> &'static str {
    match db.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    }
}

/// A line of /proc/self/status, e.g. `VmRSS`.
fn vm_status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(key)?
                    .strip_prefix(':')
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "?".to_string())
}

#[test]
fn redacts_passwords() {
    assert_eq!(
        redact_url("postgres://user:secret@host/db"),
        "postgres://user:***@host/db"
    );
    assert_eq!(
        redact_url("postgresql://user:p%40ss:w@rd@host:5432/db?sslmode=disable"),
        "postgresql://user:***@host:5432/db?sslmode=disable"
    );
    assert_eq!(
        redact_url("postgres://user@host/db?password=secret&sslmode=disable"),
        "postgres://user@host/db?password=***&sslmode=disable"
    );
    assert_eq!(
        redact_url("postgres://user@host/db"),
        "postgres://user@host/db"
    );
    assert_eq!(redact_url("postgres://host/db"), "postgres://host/db");
    assert_eq!(
        redact_url("sqlite:///tmp/a@b:c.db"),
        "sqlite:///tmp/a@b:c.db"
    );
    assert_eq!(redact_url("not a url"), "not a url");
}

#[tokio::test]
async fn connect_errors_never_show_the_password() {
    // Nothing listens on port 1: the pool gives up after its acquire timeout.
    let url = "postgres://fleet:hunter2secret@127.0.0.1:1/fleet";
    let error = Database::connect(&DbConfig {
        url: url.to_string(),
        pool_size: 1,
        acquire_timeout: Duration::from_millis(500),
        statement_timeout: None,
    })
    .await
    .expect_err("nothing listens on port 1");
    match &error {
        DbError::Connect { url, .. } => assert_eq!(url, "postgres://fleet:***@127.0.0.1:1/fleet"),
        other => panic!("expected Connect, got {other:?}"),
    }
    let mut shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!shown.contains("hunter2secret"), "{shown}");
    assert!(shown.contains("fleet:***@127.0.0.1:1"), "{shown}");
}

#[tokio::test]
async fn unsupported_urls() {
    for url in [
        "mysql://root:pw@localhost/db",
        "http://localhost/",
        "fleet.db",
        "",
    ] {
        match Database::connect(&DbConfig {
            url: url.to_string(),
            ..config(url)
        })
        .await
        {
            Err(DbError::UnsupportedUrl { url: shown }) => {
                assert_eq!(shown, redact_url(url));
                assert!(!shown.contains(":pw@"));
            }
            other => panic!("{url}: expected UnsupportedUrl, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sqlite_url_forms_create_the_file() {
    let dir = tempfile::TempDir::new().expect("temporary directory");
    for (i, prefix) in ["sqlite://", "sqlite:", "SQLite://"]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("fleet{i}.db"));
        assert!(path.is_absolute());
        let url = format!("{prefix}{}", path.display());
        let db = connect(&config(&url)).await;
        assert_eq!(db.backend(), Backend::Sqlite);
        assert!(path.exists(), "{url} created {}", path.display());
        let mode: String = with_pool!(&db.pool, pool => {
            sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await
        })
        .expect("journal mode");
        assert_eq!(mode, "wal");
        db.close().await;
    }
    let error = Database::connect(&DbConfig {
        pool_size: 0,
        ..config(&format!("sqlite://{}", dir.path().join("x.db").display()))
    })
    .await
    .expect_err("a pool of no connections");
    assert!(matches!(error, DbError::Connect { .. }), "{error:?}");
}

#[test]
fn seeded_orders_are_deterministic() {
    let order = seeded_order(1);
    assert_eq!(order.customer_id, "C000001");
    assert_eq!(order.created_at, "2023-11-14T22:13:50Z");
    assert_eq!(order.status, "shipped");
    assert_eq!(seeded_order(10_042).customer_id, customer_id(42));
    assert_eq!(seeded_order(1_000_000).created_at, "2024-10-27T03:33:20Z");
    assert!((160..=180).contains(&seeded_order(999_999).notes.len()));
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
}

#[tokio::test]
async fn test_postgres_databases_are_dropped() {
    let Some(database) = TestPostgres::create("Drop-Me!").await else {
        return;
    };
    let name = database.name.clone();
    assert!(name.starts_with("voxsoak_test_drop_me__"), "{name}");
    // Both spellings of the scheme.
    let alias = database.url.replacen("postgres://", "postgresql://", 1);
    assert!(alias.starts_with("postgresql://"), "{alias}");
    let db = connect(&config(&alias)).await;
    assert_eq!(db.backend(), Backend::Postgres);
    db.log_event("x", None, None, "x").await.expect("usable");
    // Dropping terminates the pool's connections too.
    database.drop_database().await;
    let mut admin = sqlx::PgConnection::connect(&testing::admin_url())
        .await
        .expect("admin connection");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("pg_database");
    assert_eq!(left, 0);

    // And without drop_database(): Drop does it.
    let forgotten = TestPostgres::create("forgotten")
        .await
        .expect("server still there");
    let name = forgotten.name.clone();
    drop(forgotten);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("pg_database");
    assert_eq!(left, 0);
    drop(db);
}

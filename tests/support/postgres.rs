//! Throwaway PostgreSQL databases for tests, shared by the reference fleet's unit tests
//! (`src/fleet/db.rs` includes this file under `#[cfg(test)]`) and the integration tests
//! (`tests/tests.rs`), so it never ships in the library. It uses only sqlx, url and tokio.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection;

/// The admin URL when `VOXSOAK_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long reaching the test server may take before the tests skip.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty database on the test PostgreSQL server, dropped by
/// [`TestPostgres::drop_database`] (or, best effort, when dropped).
#[derive(Debug)]
pub struct TestPostgres {
    /// `postgres://…/<the new database>`.
    pub url: String,
    /// The database's name.
    pub name: String,
    admin_url: String,
    dropped: bool,
}

/// `VOXSOAK_TEST_POSTGRES_URL`, or [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var("VOXSOAK_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
}

/// Whether `VOXSOAK_REQUIRE_POSTGRES=1` (CI): an unreachable server fails the test.
pub fn postgres_required() -> bool {
    std::env::var("VOXSOAK_REQUIRE_POSTGRES").is_ok_and(|value| value == "1")
}

/// `voxsoak_test_<label>_<pid>_<counter>`, lowercase, `[a-z0-9_]` only, at most 63 bytes.
fn database_name(label: &str) -> String {
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("voxsoak_test_{label}_{}_{counter}", std::process::id())
}

async fn connect_admin(admin_url: &str) -> Result<sqlx::PgConnection, String> {
    let options: sqlx::postgres::PgConnectOptions =
        admin_url.parse().map_err(|e| format!("{e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(format!("{e}")),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Terminates the database's connections, then drops it.
async fn drop_named(admin_url: &str, name: &str) -> Result<(), String> {
    let mut admin = connect_admin(admin_url).await?;
    // The name is ours and only holds [a-z0-9_]; quoting is belt and braces.
    let drop = format!("DROP DATABASE IF EXISTS \"{name}\"");
    let mut last_error = String::new();
    for _ in 0..10 {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .map_err(|e| format!("{e}"))?;
        match sqlx::raw_sql(sqlx::AssertSqlSafe(drop.clone()))
            .execute(&mut admin)
            .await
        {
            Ok(_) => {
                let _ = admin.close().await;
                return Ok(());
            }
            // Usually "being accessed by other users": a backend still exiting.
            Err(e) => last_error = format!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last_error)
}

impl TestPostgres {
    /// A fresh, empty database on the test PostgreSQL server, or None (after printing
    /// "skipped: no PostgreSQL reachable at <admin url> (set VOXSOAK_TEST_POSTGRES_URL)"
    /// to stderr) when the server is unreachable. When `VOXSOAK_REQUIRE_POSTGRES=1` is
    /// set, panics instead of skipping (CI sets it). A reachable server that refuses
    /// to create the database panics.
    pub async fn create(label: &str) -> Option<TestPostgres> {
        let admin_url = admin_url();
        let shown = redacted(&admin_url);
        let mut admin = match connect_admin(&admin_url).await {
            Ok(admin) => admin,
            Err(reason) => {
                if postgres_required() {
                    panic!(
                        "no PostgreSQL reachable at {shown} and VOXSOAK_REQUIRE_POSTGRES=1: {reason}"
                    );
                }
                eprintln!(
                    "skipped: no PostgreSQL reachable at {shown} (set VOXSOAK_TEST_POSTGRES_URL)"
                );
                return None;
            }
        };
        let name = database_name(label);
        let mut url = match url::Url::parse(&admin_url) {
            Ok(url) => url,
            Err(e) => panic!("VOXSOAK_TEST_POSTGRES_URL {shown} is not a URL: {e}"),
        };
        url.set_path(&format!("/{name}"));
        let create = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut admin)
            .await
        {
            panic!("could not create test database {name} on {shown}: {e}");
        }
        let _ = admin.close().await;
        Some(TestPostgres {
            url: url.to_string(),
            name,
            admin_url,
            dropped: false,
        })
    }

    /// Drops the database (terminating its other connections first).
    pub async fn drop_database(mut self) {
        self.dropped = true;
        if let Err(e) = drop_named(&self.admin_url, &self.name).await {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

impl Drop for TestPostgres {
    /// Best effort, for tests that failed before [`TestPostgres::drop_database`]: drops
    /// the database from a thread of its own (with its own runtime), waiting for it.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        self.dropped = true;
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("could not drop test database {name}: {e}");
                    return;
                }
            };
            if let Err(e) = runtime.block_on(drop_named(&admin_url, &name)) {
                eprintln!("could not drop test database {name}: {e}");
            }
        });
        let _ = dropper.join();
    }
}

/// The URL with its password masked, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

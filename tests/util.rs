//! Shared helpers: scenario files in temp dirs, running the harness in-process, and a
//! Media Streams WebSocket server whose behaviour each test chooses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use voxsoak::report::Summary;
use voxsoak::run::{RunOptions, run};

/// The voxsoak binary cargo built for these tests.
pub fn voxsoak_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_voxsoak"))
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A scenario file in a temp dir, with the dir for the run's output beside it.
pub struct ScenarioFile {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl ScenarioFile {
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("scenario.toml");
        std::fs::write(&path, toml).expect("write scenario");
        ScenarioFile { dir, path }
    }

    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Runs the scenario in-process and returns its summary (also checks it was written).
    pub async fn run(&self) -> Summary {
        let options = RunOptions {
            scenario: self.path.clone(),
            out: Some(self.out_dir()),
            duration: None,
            seed: None,
            progress: false,
            exe: voxsoak_exe(),
            fleet_bugs: Vec::new(),
        };
        let outcome = run(options, CancellationToken::new())
            .await
            .unwrap_or_else(|error| panic!("run failed: {error}"));
        let written = std::fs::read_to_string(self.out_dir().join("summary.json"))
            .expect("summary.json written");
        let json: serde_json::Value = serde_json::from_str(&written).expect("summary.json is JSON");
        assert_eq!(json["schema_version"], 1);
        outcome.summary
    }
}

/// Bounds a whole test: nothing in the harness may hang.
pub async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// A PostgreSQL database of one test's own, created through the admin URL in
/// `VOXSOAK_TEST_POSTGRES_URL` (`.ci/run` sets it); drop it with [`PostgresTestDb::drop`].
pub struct PostgresTestDb {
    /// `postgres://…/<name>`: the database itself.
    pub url: String,
    pub name: String,
    admin_url: String,
}

/// A fresh database for a test (`tag` goes into its name), or None after printing why the
/// test is skipped: `VOXSOAK_TEST_POSTGRES_URL` is unset or its server unreachable. With
/// `VOXSOAK_REQUIRE_POSTGRES=1` (as in CI) those are failures instead.
pub async fn postgres_test_db(tag: &str) -> Option<PostgresTestDb> {
    use sqlx::Connection;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);

    let required = std::env::var("VOXSOAK_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
    let skip = |why: String| {
        assert!(!required, "VOXSOAK_REQUIRE_POSTGRES=1, but {why}");
        println!("skipped: {why} (set VOXSOAK_TEST_POSTGRES_URL, or run .ci/run)");
        None
    };
    let Ok(admin_url) = std::env::var("VOXSOAK_TEST_POSTGRES_URL") else {
        return skip("VOXSOAK_TEST_POSTGRES_URL is not set".into());
    };
    let connect = sqlx::PgConnection::connect(&admin_url);
    let mut admin = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return skip(format!("PostgreSQL is unreachable: {error}")),
        Err(_) => return skip("PostgreSQL did not answer within 5s".into()),
    };
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!(
        "voxsoak_t_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
    let _ = admin.close().await;
    let mut url = url::Url::parse(&admin_url).expect("VOXSOAK_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(PostgresTestDb {
        url: url.to_string(),
        name,
        admin_url,
    })
}

impl PostgresTestDb {
    /// Drops the database, closing whatever connections are still open to it.
    pub async fn drop(self) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("reconnect to drop the test database");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("DROP DATABASE {}: {error}", self.name));
    }
}

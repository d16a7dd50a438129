//! Helpers for the reference fleet's tests: the fleet as a real child process, its database
//! (a SQLite file or a fresh PostgreSQL database), an Alertmanager-style receiver, and
//! scraping `/metrics` and `/health` over real HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::postgres::TestPostgres;
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use voxsoak::fleet::LISTENING_PREFIX;
use voxsoak::fleet::db::{Database, DbConfig};

use crate::util::voxsoak_exe;

/// Which database a fleet test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The fleet's database for one test; removed at the end.
pub enum TestDb {
    Sqlite { dir: TempDir },
    Postgres(TestPostgres),
}

impl TestDb {
    /// None when the backend is PostgreSQL and no server is reachable (the skip is printed
    /// by `TestPostgres::create`).
    pub async fn create(backend: Backend, label: &str) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::Sqlite {
                dir: tempfile::tempdir().expect("temp dir"),
            }),
            Backend::Postgres => TestPostgres::create(label).await.map(TestDb::Postgres),
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite { dir } => format!("sqlite://{}", dir.path().join("fleet.db").display()),
            TestDb::Postgres(postgres) => postgres.url.clone(),
        }
    }

    /// The harness's own connection to the fleet's database (to read `events`).
    pub async fn connect(&self) -> Database {
        Database::connect(&DbConfig {
            url: self.url(),
            pool_size: 2,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(5)),
        })
        .await
        .expect("connect to the fleet's database")
    }

    pub async fn remove(self) {
        if let TestDb::Postgres(postgres) = self {
            postgres.drop_database().await;
        }
    }
}

/// `voxsoak fleet` running as a child process on a free port.
pub struct FleetProcess {
    child: Child,
    pub address: SocketAddr,
    pub audio_dir: PathBuf,
    _dir: TempDir,
    /// Everything it printed (stdout and stderr), for assertions and failure messages.
    pub output: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl FleetProcess {
    /// Starts the fleet with `--database-url`, `--audio-tmp-dir`, `--listen 127.0.0.1:0` and
    /// `args`; returns once it prints its address.
    pub async fn start(db: &TestDb, args: &[String]) -> FleetProcess {
        FleetProcess::start_logged(db, args, None).await
    }

    /// [`FleetProcess::start`] with a small order table, its TTS and LLM at the harness's
    /// stand-ins on loopback ports `tts` and `llm` (`[chaos] tts_listen` / `llm_listen`).
    pub async fn start_wired(db: &TestDb, tts: u16, llm: u16) -> FleetProcess {
        let args = [
            "--orders".into(),
            "2000".into(),
            "--tts-base-url".into(),
            format!("http://127.0.0.1:{tts}/v1"),
            "--llm-base-url".into(),
            format!("http://127.0.0.1:{llm}/v1"),
        ];
        FleetProcess::start(db, &args).await
    }

    /// [`FleetProcess::start`], with every line of its stdout also appended to `log` (as a
    /// process supervisor would write the fleet's log).
    pub async fn start_logged(
        db: &TestDb,
        args: &[String],
        log: Option<&std::path::Path>,
    ) -> FleetProcess {
        let mut log = log.map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open the fleet's log")
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let audio_dir = dir.path().join("audio");
        let mut command = Command::new(voxsoak_exe());
        command
            .arg("fleet")
            .args(["--listen", "127.0.0.1:0", "--database-url", &db.url()])
            .arg("--audio-tmp-dir")
            .arg(&audio_dir)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("LLM_BASE_URL")
            .env_remove("TTS_BASE_URL")
            .env_remove("ALERT_WEBHOOK_URL")
            .env_remove("TWILIO_AUTH_TOKEN")
            .env_remove("AUDIO_TMP_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn voxsoak fleet");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().expect("piped");
        let collected = Arc::clone(&output);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut address_sender = Some(address_sender);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix(LISTENING_PREFIX)
                    && let Some(sender) = address_sender.take()
                {
                    let _ = sender.send(address.trim().to_string());
                }
                if let Some(file) = &mut log {
                    use std::io::Write;
                    let _ = writeln!(file, "{line}");
                }
                keep(&collected, line);
            }
        });
        let stderr = child.stderr.take().expect("piped");
        let collected = Arc::clone(&output);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep(&collected, line);
            }
        });
        let address = match tokio::time::timeout(Duration::from_secs(120), address).await {
            Ok(Ok(address)) => address.parse().expect("a socket address"),
            _ => panic!(
                "the fleet did not report its address; it printed:\n{}",
                output.lock().unwrap().join("\n")
            ),
        };
        FleetProcess {
            child,
            address,
            audio_dir,
            _dir: dir,
            output,
            http: reqwest::Client::new(),
        }
    }

    pub fn stream_url(&self) -> String {
        format!("ws://{}/stream", self.address)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the fleet is running")
    }

    pub fn printed(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// `GET /metrics`, parsed into (series with labels, value) pairs.
    pub async fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.http, &format!("http://{}/metrics", self.address)).await
    }

    /// `/metrics` once `series` reads at least `least` (the fleet writes some things, such
    /// as its dead letters, a moment after the turn), or as it is after `within`.
    pub async fn metrics_once(&self, series: &str, least: f64, within: Duration) -> Metrics {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let metrics = self.metrics().await;
            if metrics.get(series) >= least || tokio::time::Instant::now() >= deadline {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /health`: status and JSON body.
    pub async fn health(&self) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(format!("http://{}/health", self.address))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("GET /health");
        let status = response.status().as_u16();
        (status, response.json().await.expect("health JSON"))
    }

    /// Waits for the process to exit by itself.
    pub async fn exited(&mut self, within: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Stops the fleet (SIGTERM, then SIGKILL) and waits for it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn keep(lines: &Mutex<Vec<String>>, line: String) {
    let mut lines = lines.lock().unwrap();
    if lines.len() < 5000 {
        lines.push(line);
    }
}

/// A scraped `/metrics` page.
#[derive(Debug)]
pub struct Metrics {
    pub text: String,
}

impl Metrics {
    /// `GET url` (a `/metrics` page) over real HTTP.
    pub async fn scrape(http: &reqwest::Client, url: &str) -> Metrics {
        let text = http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        Metrics { text }
    }

    /// The value of the series written exactly `series` (name plus labels, if any).
    pub fn value(&self, series: &str) -> Option<f64> {
        self.text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    /// The sum of every series of metric `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let metric = series.split('{').next()?;
                (metric == name).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }

    /// The value, or 0 for a labelled series not written yet.
    pub fn get(&self, series: &str) -> f64 {
        self.value(series).unwrap_or(0.0)
    }
}

/// An HTTP endpoint that takes Alertmanager webhook POSTs, as the harness's receiver will.
pub struct AlertReceiver {
    pub url: String,
    received: Arc<(Mutex<Vec<serde_json::Value>>, Notify)>,
}

impl AlertReceiver {
    pub async fn start() -> AlertReceiver {
        let received: Arc<(Mutex<Vec<serde_json::Value>>, Notify)> = Default::default();
        let router = axum::Router::new()
            .route(
                "/alerts",
                post(
                    |State(received): State<Arc<(Mutex<Vec<serde_json::Value>>, Notify)>>,
                     Json(body): Json<serde_json::Value>| async move {
                        received.0.lock().unwrap().push(body);
                        received.1.notify_waiters();
                        "ok"
                    },
                ),
            )
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        AlertReceiver { url, received }
    }

    /// Names of the alerts received with `status` ("firing" or "resolved"), in order.
    pub fn names(&self, status: &str) -> Vec<String> {
        self.received
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|body| body["status"] == status)
            .filter_map(|body| body["alerts"][0]["labels"]["alertname"].as_str())
            .map(str::to_string)
            .collect()
    }

    /// Waits until alert `name` has been received with `status`.
    pub async fn wait_for(&self, name: &str, status: &str, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            loop {
                let notified = self.received.1.notified();
                if self.names(status).iter().any(|received| received == name) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

/// A scenario calling `stream_url` with `concurrency` calls of `turns` turns, held for
/// `hold`.
pub fn calls_scenario(
    stream_url: &str,
    concurrency: u32,
    hold: &str,
    turns: u32,
    turn_timeout: &str,
) -> String {
    format!(
        r#"
name = "fleet-test"
seed = 5
[target]
stream_url = "{stream_url}"
[load]
stages = [{{ ramp_to = {concurrency}, over = "1s" }}, {{ hold = "{hold}" }}]
[calls]
turn_timeout = "{turn_timeout}"
fixtures = ["{fixtures}/*.wav"]
[[scripts]]
name = "talk"
turns = {turns}
[slo]
call_success = ">= 0%"
"#,
        fixtures = crate::util::fixtures_dir().display()
    )
}

/// Polls `check` every 100 ms until it holds or `within` passes; for conditions the fleet
/// only exposes by being asked (metrics, health, files).
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Declares a fleet test once per backend: `name_sqlite` and `name_postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::fleet_util::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::fleet_util::Backend::Postgres).await;
            }
        }
    };
}

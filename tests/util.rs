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

/// Every `.rs` file under `dir` (the crate's `src/`), sorted: what the structure tests
/// (`layers`, `function_length`) read.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, into);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                into.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
}

/// Files that are only tests: `tests.rs`, `tests_*.rs`, `*_tests.rs`.
pub fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_stem()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    name == "tests" || name.starts_with("tests_") || name.ends_with("_tests")
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
            time_scale: None,
            grace: None,
            report_every: None,
            seed: None,
            progress: false,
            exe: voxsoak_exe(),
            fleet_bugs: Vec::new(),
            resume: None,
            metrics_listen: None,
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

/// A scenario of two calls (120 a minute for 1 s) to `target` (the `[target]` line), each
/// speaking one synthetic 1 s utterance, with more `[calls]` keys and the script's `turns`
/// or `steps` line.
pub fn two_calls_to(target: &str, calls: &str, script: &str) -> ScenarioFile {
    ScenarioFile::new(&format!(
        r#"
[target]
{target}
[load]
calls_per_minute = 120
duration = "1s"
[calls]
synthetic = {{ count = 1, min = "1s", max = "1s" }}
{calls}
[[scripts]]
name = "short"
{script}
"#
    ))
}

/// The harness's RSS (this test process's, servers included) grew by less than `mib` over the
/// run: what a fleet sent was not held.
pub fn assert_rss_flat(summary: &Summary, mib: f64) {
    assert!(
        summary.harness.rss_mib_max < summary.harness.rss_mib_baseline + mib,
        "{:?}",
        summary.harness
    );
}

/// Bounds a whole test: nothing in the harness may hang.
pub async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

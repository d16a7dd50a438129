//! `temp_file_leak`: the audio worker's leak, done for real. Files of a given size are
//! written into the fleet's temp dir at a given rate, as a worker that never deletes its
//! TTS files would. A fixed fleet's cleanup may reclaim them; whatever is left of them is
//! removed when the run ends ([`HarnessFiles`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Confirmation, FaultError};
use crate::units::format_byte_size;

const KIND: &str = "temp_file_leak";

/// Every file the harness created in a fleet's dirs, removed when the run ends however it
/// ends. Kept as (dir, name prefix) pairs, one per leak, not a path per file: a leak of
/// small files over days would otherwise grow without bound.
#[derive(Debug, Clone, Default)]
pub struct HarnessFiles {
    leaks: Arc<Mutex<Vec<(PathBuf, String)>>>,
}

impl HarnessFiles {
    fn add(&self, dir: PathBuf, prefix: String) {
        self.lock().push((dir, prefix));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PathBuf, String)>> {
        self.leaks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every file of every leak still there; returns how many were removed.
    pub fn remove_all(&self) -> u64 {
        let leaks = std::mem::take(&mut *self.lock());
        let mut removed = 0;
        for (dir, prefix) in leaks {
            for path in files_with_prefix(&dir, &prefix) {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "could not remove a leaked file");
                    }
                }
            }
        }
        removed
    }

    /// How many leaks are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The regular files in `dir` whose names start with `prefix`.
fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
        .map(|entry| entry.path())
        .collect()
}

/// Files of one leak that still exist, and their bytes.
fn present(dir: &Path, prefix: &str) -> (u64, u64) {
    files_with_prefix(dir, prefix)
        .iter()
        .fold((0, 0), |(files, bytes), path| {
            match std::fs::metadata(path) {
                Ok(metadata) => (files + 1, bytes + metadata.len()),
                Err(_) => (files, bytes),
            }
        })
}

/// Parameters of one leak.
#[derive(Debug, Clone)]
pub struct LeakParams {
    pub dir: PathBuf,
    pub file_size: u64,
    pub bytes_per_second: u64,
    pub max_total: u64,
    /// Part of every file name, so two runs (or two faults) never collide.
    pub tag: String,
}

impl LeakParams {
    /// What every file of this leak's name starts with.
    fn prefix(&self) -> String {
        leak_prefix(&self.tag)
    }
}

/// What the name of every file leaked under `tag` starts with. A run's leaks are tagged
/// `<run id>-<fault>-<occurrence>`, so `leak_prefix(run_id)` starts every file name the
/// run leaks: the temp-dir observer leaves them out to measure the fleet's own files.
pub fn leak_prefix(tag: &str) -> String {
    format!("voxsoak-leak-{tag}-")
}

/// A leak in progress.
#[derive(Debug)]
pub struct TempFileLeakFault {
    params: LeakParams,
    stop: CancellationToken,
    writer: Option<JoinHandle<WriterReport>>,
    written: Arc<Mutex<WriterReport>>,
}

#[derive(Debug, Clone, Default)]
struct WriterReport {
    files: u64,
    bytes: u64,
    error: Option<String>,
}

impl TempFileLeakFault {
    /// Starts writing. The dir must exist (it is the fleet's).
    pub async fn inject(params: LeakParams, files: HarnessFiles) -> Result<Self, FaultError> {
        let metadata = tokio::fs::metadata(&params.dir).await.map_err(|error| {
            FaultError::new(
                KIND,
                format!("cannot use the temp dir {}: {error}", params.dir.display()),
            )
        })?;
        if !metadata.is_dir() {
            return Err(FaultError::new(
                KIND,
                format!("{} is not a directory", params.dir.display()),
            ));
        }
        let stop = CancellationToken::new();
        let written = Arc::new(Mutex::new(WriterReport::default()));
        // Registered before the first file exists, so however the run ends it is removed.
        files.add(params.dir.clone(), params.prefix());
        let writer = tokio::spawn(write_files(
            params.clone(),
            stop.clone(),
            Arc::clone(&written),
        ));
        Ok(TempFileLeakFault {
            params,
            stop,
            writer: Some(writer),
            written,
        })
    }

    fn report(&self) -> WriterReport {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// In effect once files this leak wrote exist in the dir.
    pub async fn confirm(&mut self) -> Confirmation {
        let report = self.report();
        let (present, bytes) = present(&self.params.dir, &self.params.prefix());
        let dir = self.params.dir.display();
        if let Some(error) = report.error {
            return Confirmation::not_in_effect(format!("writing into {dir} failed: {error}"));
        }
        let evidence = format!(
            "{} files ({}) written into {dir}; {present} ({}) still there",
            report.files,
            format_byte_size(report.bytes),
            format_byte_size(bytes)
        );
        if present > 0 {
            Confirmation::in_effect(evidence)
        } else {
            Confirmation::not_in_effect(evidence)
        }
    }

    /// Stops writing. The files stay (the fleet's cleanup is what is graded) until the run
    /// ends.
    pub async fn clear(mut self) -> Result<String, FaultError> {
        self.stop.cancel();
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
        let report = self.report();
        let (present, bytes) = present(&self.params.dir, &self.params.prefix());
        Ok(format!(
            "stopped writing after {} files ({}); {present} ({}) still in {}, removed when the run ends",
            report.files,
            format_byte_size(report.bytes),
            format_byte_size(bytes),
            self.params.dir.display()
        ))
    }
}

impl Drop for TempFileLeakFault {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}

async fn write_files(
    params: LeakParams,
    stop: CancellationToken,
    written: Arc<Mutex<WriterReport>>,
) -> WriterReport {
    let file_size = params.file_size.max(1);
    let interval =
        Duration::from_secs_f64(file_size as f64 / params.bytes_per_second.max(1) as f64);
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let chunk: Arc<[u8]> =
        vec![0x5a_u8; usize::try_from(file_size.min(1 << 20)).unwrap_or(1 << 20)].into();
    let mut index = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let total = written.lock().unwrap_or_else(PoisonError::into_inner).bytes;
        if total + file_size > params.max_total {
            break;
        }
        index += 1;
        let path = params
            .dir
            .join(format!("{}{index:06}.wav", params.prefix()));
        let chunk = Arc::clone(&chunk);
        let result =
            tokio::task::spawn_blocking(move || write_file(&path, file_size, &chunk)).await;
        let mut report = written.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(Ok(())) => {
                report.files += 1;
                report.bytes += file_size;
            }
            Ok(Err(error)) => {
                report.error = Some(error.to_string());
                break;
            }
            Err(error) => {
                report.error = Some(error.to_string());
                break;
            }
        }
    }
    written
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn write_file(path: &Path, size: u64, chunk: &[u8]) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut left = size;
    while left > 0 {
        let take = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(&chunk[..take])?;
        left -= take as u64;
    }
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(dir: &Path, rate: u64, max_total: u64) -> LeakParams {
        LeakParams {
            dir: dir.to_path_buf(),
            file_size: 64 << 10,
            bytes_per_second: rate,
            max_total,
            tag: "test".into(),
        }
    }

    async fn wait_for_files(dir: &Path, at_least: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while std::fs::read_dir(dir).unwrap().count() < at_least {
            assert!(tokio::time::Instant::now() < deadline, "no files appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn leaks_files_confirms_and_removes_them_when_the_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let files = HarnessFiles::default();
        let mut fault =
            TempFileLeakFault::inject(params(dir.path(), 4 << 20, 1 << 30), files.clone())
                .await
                .unwrap();
        wait_for_files(dir.path(), 3).await;
        let confirmation = fault.confirm().await;
        assert!(confirmation.in_effect, "{confirmation:?}");
        let note = fault.clear().await.unwrap();
        assert!(note.contains("still in"), "{note}");
        let after_clear = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(after_clear >= 3, "files stay until the run ends");
        // A fleet's sweep removed one: not an error.
        let first = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::remove_file(first).unwrap();
        let removed = files.remove_all();
        assert_eq!(removed as usize, after_clear - 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn stops_at_max_total() {
        let dir = tempfile::tempdir().unwrap();
        let files = HarnessFiles::default();
        let mut fault =
            TempFileLeakFault::inject(params(dir.path(), 64 << 20, 3 * (64 << 10)), files.clone())
                .await
                .unwrap();
        let writer = fault.writer.take().unwrap();
        let report = writer.await.unwrap();
        assert_eq!(report.files, 3);
        assert_eq!(
            present(dir.path(), "voxsoak-leak-test-"),
            (3, 3 * (64 << 10))
        );
        // Someone else's file in the same dir is never touched.
        std::fs::write(dir.path().join("fleet-reply.wav"), b"x").unwrap();
        assert_eq!(files.remove_all(), 3);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn dropping_stops_writing_and_a_missing_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = HarnessFiles::default();
        let fault = TempFileLeakFault::inject(params(dir.path(), 64 << 20, 1 << 30), files.clone())
            .await
            .unwrap();
        wait_for_files(dir.path(), 1).await;
        drop(fault);
        // The writer is aborted: after the remove nothing new appears.
        tokio::task::yield_now().await;
        files.remove_all();
        let settled = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(
            settled <= 1,
            "at most the one file in flight at the abort: {settled}"
        );

        let error = TempFileLeakFault::inject(params(&dir.path().join("missing"), 1, 1), files)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("cannot use the temp dir"),
            "{error}"
        );
    }
}

//! The temp-dir sampler: every interval, the bytes and files under the fleet's temp dir,
//! leaving out the files the chaos plane leaked there itself, so what is measured is the
//! fleet's own growth (the 40 GB-in-8-hours incident), not the harness's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Observation, Signal};

/// Most entries (files, dirs, anything else) one walk looks at: a dir with millions of
/// files must not stall the harness. A walk that stops there says so.
pub const MAX_ENTRIES: usize = 100_000;

/// What one walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirUsage {
    /// Bytes of regular files (their length, not their blocks).
    pub bytes: u64,
    pub files: u64,
    /// The walk stopped at `max_entries`: the real numbers are larger.
    pub capped: bool,
}

/// Walks `dir` recursively, at most `max_entries` entries, summing the regular files whose
/// names do not start with `excluded_prefix`. Symlinks are neither followed nor counted; a
/// missing dir (or one that cannot be read) counts as empty, and so does a subdir that
/// vanishes during the walk.
pub fn measure(dir: &Path, excluded_prefix: &str, max_entries: usize) -> DirUsage {
    let mut usage = DirUsage::default();
    let mut entries_seen = 0usize;
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            if entries_seen >= max_entries {
                usage.capped = true;
                return usage;
            }
            entries_seen += 1;
            // `file_type` does not follow symlinks.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                if !excluded_prefix.is_empty()
                    && entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(excluded_prefix)
                {
                    continue;
                }
                if let Ok(metadata) = entry.metadata() {
                    usage.bytes = usage.bytes.saturating_add(metadata.len());
                    usage.files += 1;
                }
            }
        }
    }
    usage
}

/// Samples `dir` every `interval` until `stop`, sending [`Signal::TempDir`].
pub async fn sample(
    dir: PathBuf,
    excluded_prefix: String,
    interval: Duration,
    observations: UnboundedSender<Observation>,
    stop: CancellationToken,
) {
    super::every(interval, observations, stop, || {
        let (walked, prefix) = (dir.clone(), excluded_prefix.clone());
        async move {
            let walk = tokio::task::spawn_blocking(move || measure(&walked, &prefix, MAX_ENTRIES));
            // A walk that panicked (it does not) is a skipped sample, not a dead observer.
            match walk.await {
                Ok(usage) => vec![Signal::TempDir {
                    bytes: usage.bytes,
                    files: usage.files,
                    capped: usage.capped,
                }],
                Err(_) => Vec::new(),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::faults::leak_prefix;

    fn write(path: &Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![b'x'; bytes]).unwrap();
    }

    #[test]
    fn nested_files_are_summed_and_the_harness_files_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let prefix = leak_prefix("run-1");
        write(&root.join("a.wav"), 100);
        write(&root.join("calls/CA1/b.wav"), 200);
        write(&root.join("calls/CA2/deeper/c.wav"), 300);
        std::fs::create_dir_all(root.join("empty")).unwrap();
        // The chaos plane's files for this run (its tag is `<run id>-<fault>-<occurrence>`)
        // at the top and below, which are left out.
        write(
            &root.join(format!("{}000001.wav", leak_prefix("run-1-1-1"))),
            5000,
        );
        write(&root.join(format!("calls/{prefix}x.wav")), 5000);
        // Another run's leak, or a file that only looks similar, is the fleet's problem.
        write(
            &root.join(format!("{}000001.wav", leak_prefix("other-1-1"))),
            7,
        );
        let usage = measure(root, &prefix, MAX_ENTRIES);
        assert_eq!(
            usage,
            DirUsage {
                bytes: 607,
                files: 4,
                capped: false
            }
        );
        // No prefix: everything counts.
        assert_eq!(measure(root, "", MAX_ENTRIES).files, 6);
    }

    #[test]
    fn a_missing_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            measure(&dir.path().join("not-yet"), "x", MAX_ENTRIES),
            DirUsage::default()
        );
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("big.bin"), 10_000);
        write(&dir.path().join("own.wav"), 10);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked-dir")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("big.bin"),
            dir.path().join("linked-file"),
        )
        .unwrap();
        // A loop through a symlink would walk forever if links were followed.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let usage = measure(dir.path(), "", MAX_ENTRIES);
        assert_eq!((usage.bytes, usage.files), (10, 1));
    }

    #[test]
    fn the_walk_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for index in 0..20 {
            write(&dir.path().join(format!("d{}/f{index}", index % 3)), 1);
        }
        let usage = measure(dir.path(), "", 10);
        assert!(usage.capped);
        assert!(usage.files < 10, "{usage:?}");
        assert!(!measure(dir.path(), "", 100).capped);
    }

    #[tokio::test]
    async fn samples_arrive_every_interval_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a.wav"), 42);
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(sample(
            dir.path().to_path_buf(),
            leak_prefix("run"),
            Duration::from_millis(20),
            sender,
            stop.clone(),
        ));
        for _ in 0..2 {
            let observation = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
                .await
                .expect("a sample within 10 s")
                .expect("the sampler runs");
            assert_eq!(
                observation.signal,
                Signal::TempDir {
                    bytes: 42,
                    files: 1,
                    capped: false
                }
            );
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the sampler stops")
            .unwrap();
    }
}

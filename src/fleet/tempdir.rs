//! The audio temp dir, as real TTS workers use one: every reply's audio is written to a
//! file, converted, streamed, and (in the fixed fleet) deleted once it has played, with a
//! periodic sweep of anything older than [`SWEEP_AGE`] as a backstop. With the `temp-leak`
//! bug neither happens, which is how the 40 GB-in-8-hours incident started.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Files older than this are removed by the sweep; replies finish playing well before.
pub const SWEEP_AGE: Duration = Duration::from_secs(20);
/// How often the sweep runs.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Bytes and files directly in the dir (not recursive: workers write flat).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirUsage {
    pub bytes: u64,
    pub files: u64,
}

/// Measures the dir; a missing dir is empty.
pub fn usage(dir: &Path) -> DirUsage {
    let mut usage = DirUsage::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return usage;
    };
    for entry in entries.flatten() {
        if let Ok(metadata) = entry.metadata()
            && metadata.is_file()
        {
            usage.bytes += metadata.len();
            usage.files += 1;
        }
    }
    usage
}

/// Removes regular files modified before `now - age`; returns how many were removed.
pub fn sweep(dir: &Path, age: Duration) -> u64 {
    let Some(cutoff) = SystemTime::now().checked_sub(age) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let old = metadata.modified().is_ok_and(|modified| modified < cutoff);
        if metadata.is_file() && old && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Where one reply's audio goes: `<dir>/<call sid>-<turn>.wav`.
pub fn reply_path(dir: &Path, call_sid: &str, turn: u32) -> PathBuf {
    let safe: String = call_sid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(64)
        .collect();
    dir.join(format!("{safe}-{turn}.wav"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_files_and_sweep_removes_only_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("b.wav"), vec![0u8; 24]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(
            usage(dir.path()),
            DirUsage {
                bytes: 1024,
                files: 2
            }
        );
        assert_eq!(sweep(dir.path(), Duration::from_secs(3600)), 0);
        assert_eq!(sweep(dir.path(), Duration::ZERO), 2);
        assert_eq!(usage(dir.path()), DirUsage::default());
        assert_eq!(usage(&dir.path().join("missing")), DirUsage::default());
    }

    #[test]
    fn reply_paths_cannot_escape_the_dir() {
        let path = reply_path(Path::new("/tmp/x"), "../../etc/CA12", 3);
        assert_eq!(path, Path::new("/tmp/x/etcCA12-3.wav"));
    }
}

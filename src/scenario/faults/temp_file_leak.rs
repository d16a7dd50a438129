//! `temp_file_leak`: files leaked into the fleet's audio temp dir at a rate, as an audio
//! worker that never deletes its TTS files would (the incident: 40 GB over 8 hours). Where
//! a leak may write is confined at validation (see [`super::super::writable`]) and again
//! at injection; the fault object is in the chaos plane's temp-files module.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::super::raw::{RawFault, RawValue};
use super::super::validate::faults::FaultContext;
use super::super::validate::{Validator, describe as describe_value};
use super::super::{Target, writable};
use super::{ActsOn, ChaosSettings, DefaultDetection, FaultSpec, KindEntry, KindSpec, RecoverFrom};
use crate::units::format_byte_size;

const DEFAULT_TEMP_FILE_SIZE: u64 = 1 << 20;
const DEFAULT_TEMP_RATE: u64 = 4 << 20;
const DEFAULT_TEMP_MAX_TOTAL: u64 = 1 << 30;

pub const TEMP_FILE_LEAK: KindSpec = KindSpec {
    name: "temp_file_leak",
    parameters: &["file_size", "rate", "max_total", "dir", "min_free"],
    required: &[],
    acts_on: ActsOn::TempDir,
    detection: DefaultDetection::Alert("TempDirGrowing"),
    recover_from: RecoverFrom::Clear,
    heals_itself: false,
    validate,
    chaos_help: "  temp_file_leak
      --dir DIR: the fleet's temp dir, which this declares writable: never a system
      directory (/, /etc, /usr, ...), resolved through `..` and symlinks. Files are
      written flat into it; every file written is removed on exit.
      --set file_size=SIZE (at most 1GiB), rate=SIZE/s, max_total=SIZE (above 10GiB
      only with --allow-large-leaks), min_free=SIZE or PERCENT% (free space left on the
      filesystem; default 5% or 2GiB, whichever is larger)
",
    example: "file_size = \"64KiB\"\nrate = \"1MiB/s\"\nmax_total = \"8MiB\"",
};

/// `temp_file_leak`: files of `file_size` written into the fleet's temp dir at `rate`
/// bytes per second, at most `max_total` in all, while free space on its filesystem stays
/// above `min_free`.
#[derive(Debug, Clone, PartialEq)]
pub struct TempFileLeak {
    pub file_size: u64,
    pub bytes_per_second: u64,
    /// At most [`LEAK_CEILING`] unless `[chaos] allow_large_leaks = true`.
    pub max_total: u64,
    pub dir: LeakDir,
    pub min_free: FreeSpaceFloor,
}

/// Where a leak writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeakDir {
    /// The embedded fleet's own `AUDIO_TMP_DIR`, known once it has started.
    FleetTempDir,
    /// `dir` (or `[observe] temp_dir`) resolved at validation (see
    /// [`crate::scenario::writable::resolve`]), and the declared directory it lies in: `[observe]
    /// temp_dir` or a `[chaos] writable_dirs` entry, resolved then too. At injection `dir`
    /// is resolved again and must still lie in `within`.
    Declared { dir: PathBuf, within: PathBuf },
}

/// `max_total` above this needs `[chaos] allow_large_leaks = true` (10 GiB).
pub const LEAK_CEILING: u64 = 10 << 30;
/// The largest `file_size` (1 GiB): a TTS temp file is kilobytes to megabytes.
pub const MAX_LEAK_FILE_SIZE: u64 = 1 << 30;
/// Most files one injection writes: the harness keeps 48 bytes per file it wrote until it
/// has removed it. Without `allow_large_leaks`, `max_total / file_size` may not be more.
pub const MAX_LEAK_FILES: u64 = 100_000;

/// `min_free`: a leak writes a file only if free space on the dir's filesystem stays at or
/// above this once the file is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FreeSpaceFloor {
    /// 5% of the filesystem or 2 GiB, whichever is larger.
    Default,
    Bytes(u64),
    /// A share of the filesystem's size, 0 to 100.
    Percent(f64),
}

impl FreeSpaceFloor {
    pub const DEFAULT_PERCENT: f64 = 5.0;
    pub const DEFAULT_BYTES: u64 = 2 << 30;

    /// The floor in bytes on a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        let share = |percent: f64| (total as f64 * percent / 100.0).ceil() as u64;
        match self {
            FreeSpaceFloor::Default => share(Self::DEFAULT_PERCENT).max(Self::DEFAULT_BYTES),
            FreeSpaceFloor::Bytes(bytes) => bytes,
            FreeSpaceFloor::Percent(percent) => share(percent),
        }
    }
}

impl std::fmt::Display for FreeSpaceFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FreeSpaceFloor::Default => write!(
                f,
                "{}% of the filesystem or {}, whichever is larger",
                Self::DEFAULT_PERCENT,
                format_byte_size(Self::DEFAULT_BYTES)
            ),
            FreeSpaceFloor::Bytes(bytes) => f.write_str(&format_byte_size(*bytes)),
            FreeSpaceFloor::Percent(percent) => write!(f, "{percent}% of the filesystem"),
        }
    }
}

/// `voxsoak plan`'s line.
pub(super) fn describe(leak: &TempFileLeak) -> String {
    format!("{}; removed when the run ends", describe_leak(leak))
}

/// Where a leak writes, resolved, and the limits it keeps to.
pub fn describe_leak(leak: &TempFileLeak) -> String {
    let dir = match &leak.dir {
        LeakDir::FleetTempDir => "the fleet's AUDIO_TMP_DIR".to_owned(),
        LeakDir::Declared { dir, within } if dir == within => dir.display().to_string(),
        LeakDir::Declared { dir, within } => {
            format!("{} (within {})", dir.display(), within.display())
        }
    };
    let ceiling = if leak.max_total > LEAK_CEILING {
        format!(
            "over the {} ceiling by allow_large_leaks",
            format_byte_size(LEAK_CEILING)
        )
    } else {
        format!("ceiling {}", format_byte_size(LEAK_CEILING))
    };
    format!(
        "writes {} files at {}/s into {dir} (at most {}, {ceiling}; stops before free space there falls below {})",
        format_byte_size(leak.file_size),
        format_byte_size(leak.bytes_per_second),
        format_byte_size(leak.max_total),
        leak.min_free
    )
}

/// What the name of every file leaked under `tag` starts with. A run's leaks are tagged
/// `<run id>-<fault>-<occurrence>`, so `leak_prefix(run_id)` starts every file name the
/// run leaks: the temp-dir observer leaves them out to measure the fleet's own files.
pub fn leak_prefix(tag: &str) -> String {
    format!("voxsoak-leak-{tag}-")
}

fn validate(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    let leak = validator.temp_leak(entry.raw, entry.span, entry.context)?;
    Some(FaultSpec::TempFileLeak(leak))
}

impl Validator<'_> {
    fn temp_leak(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        context: &FaultContext<'_>,
    ) -> Option<TempFileLeak> {
        let size =
            |validator: &mut Self, value: Option<&RawValue>, key: &str, default: u64| match value {
                Some(value) => {
                    let bytes = validator.byte_size(value, key)?;
                    if bytes == 0 {
                        validator.error(value.span(), format!("{key} must be more than 0 bytes"));
                        return None;
                    }
                    Some(bytes)
                }
                None => Some(default),
            };
        let file_size = size(
            self,
            raw.file_size.as_ref(),
            "file_size",
            DEFAULT_TEMP_FILE_SIZE,
        );
        let max_total = size(
            self,
            raw.max_total.as_ref(),
            "max_total",
            DEFAULT_TEMP_MAX_TOTAL,
        );
        let rate = match &raw.rate {
            Some(value) => self.byte_rate(value, "rate"),
            None => Some(DEFAULT_TEMP_RATE),
        };
        let caps = match (file_size, max_total) {
            (Some(file_size), Some(max_total)) => {
                self.leak_caps(raw, span, file_size, max_total, context.chaos)
            }
            _ => None,
        };
        let min_free = match &raw.min_free {
            Some(value) => self.free_space_floor(value),
            None => Some(FreeSpaceFloor::Default),
        };
        let dir = self.leak_dir(raw, span, context);
        let (file_size, max_total) = caps?;
        Some(TempFileLeak {
            file_size,
            bytes_per_second: rate?,
            max_total,
            dir: dir?,
            min_free: min_free?,
        })
    }

    /// The size limits of a leak: `file_size` at most [`MAX_LEAK_FILE_SIZE`] and no more
    /// than `max_total`; without the opt-in, `max_total` at most [`LEAK_CEILING`] and at
    /// most [`MAX_LEAK_FILES`] files (with it, the leak stops at whichever comes first of
    /// `max_total`, the free-space floor and that many files).
    fn leak_caps(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        file_size: u64,
        max_total: u64,
        chaos: &ChaosSettings,
    ) -> Option<(u64, u64)> {
        let at = |value: &Option<RawValue>| value.as_ref().map_or(span.clone(), Spanned::span);
        let before = self.diagnostics.len();
        if file_size > MAX_LEAK_FILE_SIZE {
            self.error(
                at(&raw.file_size),
                format!(
                    "file_size must be at most {}, found {}",
                    format_byte_size(MAX_LEAK_FILE_SIZE),
                    format_byte_size(file_size)
                ),
            );
        } else if file_size > max_total {
            self.error(
                at(&raw.file_size),
                format!(
                    "file_size ({}) is larger than max_total ({}): not one file would be written",
                    format_byte_size(file_size),
                    format_byte_size(max_total)
                ),
            );
        }
        if max_total > LEAK_CEILING && !chaos.allow_large_leaks {
            self.error(
                at(&raw.max_total),
                format!(
                    "max_total ({}) is over the {} ceiling for leaked files; set [chaos] allow_large_leaks = true to leak more (writing still stops when free space falls below min_free)",
                    format_byte_size(max_total),
                    format_byte_size(LEAK_CEILING)
                ),
            );
        } else if max_total / file_size.max(1) > MAX_LEAK_FILES && !chaos.allow_large_leaks {
            self.error(
                at(&raw.max_total),
                format!(
                    "max_total ({}) in files of {} is {} files; at most {MAX_LEAK_FILES} per injection: raise file_size or lower max_total",
                    format_byte_size(max_total),
                    format_byte_size(file_size),
                    max_total / file_size.max(1)
                ),
            );
        }
        (self.diagnostics.len() == before).then_some((file_size, max_total))
    }

    /// `min_free = "2GiB"` or `"5%"`.
    fn free_space_floor(&mut self, value: &RawValue) -> Option<FreeSpaceFloor> {
        const EXPECTED: &str =
            r#"min_free: expected a size such as "2GiB" or a share of the filesystem such as "5%""#;
        let toml::Value::String(text) = value.get_ref() else {
            self.error(
                value.span(),
                format!("{EXPECTED}, found {}", describe_value(value.get_ref())),
            );
            return None;
        };
        if let Some(number) = text.trim().strip_suffix('%') {
            return match number.trim().parse::<f64>() {
                Ok(percent) if (0.0..=100.0).contains(&percent) => {
                    Some(FreeSpaceFloor::Percent(percent))
                }
                _ => {
                    self.error(
                        value.span(),
                        format!("{EXPECTED} (0% to 100%), found {text:?}"),
                    );
                    None
                }
            };
        }
        self.byte_size(value, "min_free").map(FreeSpaceFloor::Bytes)
    }

    /// Where a leak writes: `dir` (or, for an external fleet, `[observe] temp_dir`) once
    /// resolved, which must be a declared directory or lie in one, and never a system
    /// directory; the embedded fleet's own temp dir when `dir` is not given.
    fn leak_dir(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        context: &FaultContext<'_>,
    ) -> Option<LeakDir> {
        let embedded = matches!(context.target, Target::Embedded(_));
        let (written, at) = match (&raw.dir, &context.observe.temp_dir) {
            (Some(dir), _) => {
                self.not_empty(dir, "dir");
                (PathBuf::from(dir.get_ref()), dir.span())
            }
            (None, _) if embedded => return Some(LeakDir::FleetTempDir),
            (None, Some(temp_dir)) => (temp_dir.clone(), span.clone()),
            (None, None) => {
                self.error(
                    span.clone(),
                    "temp_file_leak needs dir = \"/path/to/the/fleet's/temp/dir\" unless the fleet is embedded or [observe] temp_dir names it",
                );
                return None;
            }
        };
        let key = if raw.dir.is_some() {
            "dir"
        } else {
            "dir (here [observe] temp_dir)"
        };
        let dir = self.leak_dir_resolved(&written, &at, key)?;
        let declared = declared_dirs(context);
        if let Some(within) = declared.iter().find(|within| dir.starts_with(within)) {
            return Some(LeakDir::Declared {
                dir,
                within: within.clone(),
            });
        }
        let listed = if declared.is_empty() {
            "none is declared".to_owned()
        } else {
            declared
                .iter()
                .map(|dir| dir.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let hint = if embedded {
            "leave dir out to leak into the embedded fleet's own AUDIO_TMP_DIR, or list it in [chaos] writable_dirs"
        } else {
            "list it in [chaos] writable_dirs, or name the fleet's temp dir in [observe] temp_dir"
        };
        self.error(
            at,
            format!(
                "{key} = {:?} resolves to {}, outside every dir a fault may write into ({listed}); {hint}",
                written.display().to_string(),
                dir.display()
            ),
        );
        None
    }

    /// The dir as it resolves (links followed), never a system dir.
    fn leak_dir_resolved(
        &mut self,
        written: &Path,
        at: &std::ops::Range<usize>,
        key: &str,
    ) -> Option<PathBuf> {
        let dir = match writable::resolve(written) {
            Ok(dir) => dir,
            Err(error) => {
                self.error(
                    at.clone(),
                    format!("{key}: cannot resolve {}: {error}", written.display()),
                );
                return None;
            }
        };
        if let Some(what) = writable::system_dir(&dir) {
            self.error(
                at.clone(),
                format!(
                    "{key} = {:?} resolves to {}, {what}; a fault never writes there",
                    written.display().to_string(),
                    dir.display()
                ),
            );
            return None;
        }
        Some(dir)
    }
}

/// The dirs a fault may write into: `[observe] temp_dir` (resolved) and `[chaos]
/// writable_dirs`.
fn declared_dirs(context: &FaultContext<'_>) -> Vec<PathBuf> {
    let mut declared: Vec<PathBuf> = Vec::new();
    if let Some(temp_dir) = &context.observe.temp_dir
        && let Ok(temp_dir) = writable::resolve(temp_dir)
    {
        declared.push(temp_dir);
    }
    declared.extend(context.chaos.writable_dirs.iter().cloned());
    declared
}

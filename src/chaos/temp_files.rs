//! `temp_file_leak`: the audio worker's leak, done for real. Files of a given size are
//! written into the fleet's temp dir at a given rate, as a worker that never deletes its
//! TTS files would. A fixed fleet's cleanup may reclaim them; whatever is left of them is
//! removed when the run ends ([`HarnessFiles`]).
//!
//! Confined by construction, since the harness may run as root on a shared machine:
//! - The dir is resolved again here (`..` and symlinks) and must still lie in the dir the
//!   scenario declared ([`crate::scenario::writable`]), and be no system directory. It is
//!   then opened once (`O_DIRECTORY|O_NOFOLLOW`) and checked to be the dir just resolved;
//!   every file is created and removed relative to that handle, so swapping a path
//!   component for a symlink afterwards redirects nothing.
//! - Files are created with `O_CREAT|O_EXCL|O_NOFOLLOW` under a name with a random part:
//!   nothing can be planted at a name in advance, and a name that is taken anyway (a
//!   symlink, anyone's file) stops the leak, its target untouched.
//! - Only files the harness created are removed: each is remembered by its inode, length
//!   and the time it was last written, and removed only while the entry under its name is
//!   still a regular file with all three (`fstatat` without following symlinks, then
//!   `unlinkat`). A file written in its place often reuses the inode number.
//! - Before each file, free space on the dir's filesystem is checked (`fstatvfs`): the leak
//!   stops rather than take it below the floor (`min_free`).
//!
//! Files are written flat into the dir, where the leaking worker's own files would be: the
//! fleet's size metric and its sweep see them as they would the worker's. (Not in a
//! subdirectory of the harness's own: a fleet that measures and sweeps its dir flat, as the
//! reference fleet does, would neither count nor reclaim them, and be graded on that. The
//! random names, `O_EXCL` and the dir handle give what such a subdirectory would.) They are mode
//! 0644 (less the umask) and owned by the harness's user; the fleet can delete them exactly
//! when it can delete files in its own dir, which is what its sweep needs anyway. (In a
//! shared sticky dir such as `/tmp`, a fleet running as another user cannot: give it a dir
//! of its own.)

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Confirmation, FaultError};
use crate::cleanup::FileIdentity;
use crate::scenario::faults::{
    FreeSpaceFloor, LeakDir, MAX_LEAK_FILES, Occurrence, TempFileLeak, leak_prefix,
};
use crate::scenario::writable;
use crate::units::format_byte_size;

const KIND: &str = "temp_file_leak";

/// A directory opened once, that files are created in, looked at and removed from by name
/// relative to it: what the path names later does not matter.
#[derive(Debug)]
struct DirHandle {
    fd: OwnedFd,
    /// (device, inode), to tell it is still the same directory when opened again.
    id: (u64, u64),
}

impl DirHandle {
    /// Opens `dir`, refusing a symlink in its last component.
    fn open(dir: &Path) -> std::io::Result<DirHandle> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)?;
        let metadata = file.metadata()?;
        Ok(DirHandle {
            fd: file.into(),
            id: (metadata.dev(), metadata.ino()),
        })
    }

    /// Creates `name` for writing; fails if anything (a symlink included) is there.
    fn create_new(&self, name: &str) -> std::io::Result<File> {
        let name = c_name(name)?;
        // SAFETY: a valid directory fd, a NUL-terminated name, and flags that create a
        // new regular file; the returned fd is ours alone.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `name` when it is a regular file (a symlink is not followed, and is not one).
    fn regular_file(&self, name: &str) -> Option<FileIdentity> {
        let name = c_name(name).ok()?;
        // SAFETY: zeroed `stat` is a valid out-parameter for fstatat.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid directory fd, a NUL-terminated name, a valid out-pointer.
        let result = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        let regular = (stat.st_mode & libc::S_IFMT) == libc::S_IFREG;
        (result == 0 && regular).then(|| FileIdentity {
            inode: stat.st_ino as u64,
            modified_ns: stat.st_mtime as i64 * 1_000_000_000 + stat.st_mtime_nsec as i64,
            length: stat.st_size as u64,
        })
    }

    /// Removes `name` if it is still `file`.
    fn remove_if(&self, name: &str, file: &CreatedFile) -> std::io::Result<bool> {
        if !self.regular_file(name).is_some_and(|found| file.is(&found)) {
            return Ok(false);
        }
        let name = c_name(name)?;
        // SAFETY: a valid directory fd and a NUL-terminated name; unlinkat never follows a
        // symlink in the name it removes.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) } == 0 {
            Ok(true)
        } else {
            let error = std::io::Error::last_os_error();
            match error.kind() {
                std::io::ErrorKind::NotFound => Ok(false),
                _ => Err(error),
            }
        }
    }

    /// (free bytes an unprivileged writer may use, total bytes) of its filesystem.
    fn free_space(&self) -> std::io::Result<(u64, u64)> {
        // SAFETY: zeroed `statvfs` is a valid out-parameter for fstatvfs.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and a valid out-pointer.
        if unsafe { libc::fstatvfs(self.fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let block = stat.f_frsize as u64;
        Ok((
            (stat.f_bavail as u64).saturating_mul(block),
            (stat.f_blocks as u64).saturating_mul(block),
        ))
    }
}

/// A file a leak created.
#[derive(Debug, Clone, Copy)]
struct CreatedFile {
    index: u64,
    inode: u64,
    /// How the harness left it; None while it is being written.
    written: Option<FileIdentity>,
}

impl CreatedFile {
    fn is(&self, found: &FileIdentity) -> bool {
        found.inode == self.inode
            && self.written.is_none_or(|written| {
                (written.modified_ns, written.length) == (found.modified_ns, found.length)
            })
    }
}

fn c_name(name: &str) -> std::io::Result<CString> {
    CString::new(Path::new(name).as_os_str().as_bytes())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))
}

/// The name of file `index` of a leak: its tag, its number, and 64 random bits derived
/// from `seed` (itself drawn from the OS's randomness), so that no one can plant something
/// at a name before the harness writes it.
pub fn leak_file_name(tag: &str, seed: u64, index: u64) -> String {
    let mut stream = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    stream.set_stream(index);
    format!(
        "{}{index:06}-{:016x}.wav",
        leak_prefix(tag),
        stream.next_u64()
    )
}

/// One leak's files, as the harness remembers them until it has removed them.
#[derive(Debug)]
struct LeakRecord {
    /// The dir, resolved, and its (device, inode) when the leak began.
    dir: PathBuf,
    dir_id: (u64, u64),
    tag: String,
    seed: u64,
    files: Mutex<LeakedFiles>,
    /// Where each file is written down as it is created, so that `voxsoak clean` can
    /// remove it should the harness be killed before it does (None by hand).
    ledger: Option<crate::cleanup::TempRoot>,
}

#[derive(Debug, Default)]
struct LeakedFiles {
    /// Every file created and not yet seen gone: 48 bytes a file.
    created: Vec<CreatedFile>,
    /// Set when the run removes them: nothing may be created after that.
    closed: bool,
}

impl LeakRecord {
    fn lock(&self) -> MutexGuard<'_, LeakedFiles> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn name(&self, index: u64) -> String {
        leak_file_name(&self.tag, self.seed, index)
    }

    /// The files it created that are still there, and their bytes; `forget_gone` drops the
    /// others (the fleet's cleanup took them) from memory.
    fn present(&self, handle: &DirHandle, forget_gone: bool) -> (u64, u64) {
        let mut files = self.lock();
        let (mut count, mut bytes) = (0, 0);
        files
            .created
            .retain(|file| match handle.regular_file(&self.name(file.index)) {
                Some(found) if file.is(&found) => {
                    count += 1;
                    bytes += found.length;
                    true
                }
                _ => !forget_gone,
            });
        (count, bytes)
    }

    /// Removes every file it created that is still there, and allows no more.
    fn remove_all(&self) -> u64 {
        let mut files = self.lock();
        files.closed = true;
        let created = std::mem::take(&mut files.created);
        if created.is_empty() {
            return 0;
        }
        let handle = match DirHandle::open(&self.dir) {
            Ok(handle) if handle.id == self.dir_id => handle,
            Ok(_) => {
                tracing::warn!(dir = %self.dir.display(), "the leak's dir was replaced; its files are left where they are");
                return 0;
            }
            // Gone with its files (the fleet removes its own temp dir as it stops).
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return 0,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot open the leak's dir to remove its files");
                return 0;
            }
        };
        let mut removed = 0;
        for file in created {
            match handle.remove_if(&self.name(file.index), &file) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(dir = %self.dir.display(), %error, "could not remove a leaked file");
                }
            }
        }
        removed
    }
}

/// Every file the harness created in a fleet's dirs, removed when the run ends however it
/// ends. One record per leak, holding each file's index and inode until the leak is
/// cleared, then only those the fleet has not removed.
#[derive(Debug, Clone, Default)]
pub struct HarnessFiles {
    leaks: Arc<Mutex<Vec<Arc<LeakRecord>>>>,
    ledger: Arc<Mutex<Option<crate::cleanup::TempRoot>>>,
}

impl HarnessFiles {
    /// Writes every file leaks create from now on into `root`'s ledger as well.
    pub fn keep_ledger_in(&self, root: crate::cleanup::TempRoot) {
        *self.ledger.lock().unwrap_or_else(PoisonError::into_inner) = Some(root);
    }

    fn ledger(&self) -> Option<crate::cleanup::TempRoot> {
        self.ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn add(&self, leak: Arc<LeakRecord>) {
        self.lock().push(leak);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<LeakRecord>>> {
        self.leaks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every file of every leak still there; returns how many were removed. A leak
    /// still writing creates no file after this.
    pub fn remove_all(&self) -> u64 {
        let leaks = std::mem::take(&mut *self.lock());
        leaks.iter().map(|leak| leak.remove_all()).sum()
    }

    /// How many leaks are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parameters of one leak.
#[derive(Debug, Clone)]
pub struct LeakParams {
    /// As resolved when the scenario was validated; resolved again at injection.
    pub dir: PathBuf,
    /// The declared dir (resolved) that `dir` must lie in.
    pub within: PathBuf,
    pub file_size: u64,
    pub bytes_per_second: u64,
    pub max_total: u64,
    pub min_free: FreeSpaceFloor,
    /// Part of every file name, so two runs (or two faults) never collide.
    pub tag: String,
    /// Seeds the random part of every file name ([`leak_file_name`]).
    pub name_seed: u64,
}

impl LeakParams {
    /// A seed for [`LeakParams::name_seed`] from the OS's randomness.
    pub fn random_name_seed() -> u64 {
        rand::random()
    }
}

/// Why a leak stopped writing before its end or `max_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Another file would take free space on the dir's filesystem below the floor.
    FreeSpace { free: u64, floor: u64, dir: PathBuf },
    /// The next file's name was taken (a symlink, or a file the harness did not create):
    /// it was left untouched.
    Refused { path: PathBuf },
    /// Creating or writing a file failed.
    Failed { error: String },
    /// It wrote as many files as one injection may ([`MAX_LEAK_FILES`]) before
    /// `max_total` (only with `allow_large_leaks`).
    FileLimit,
}

impl StopReason {
    /// How the journal names it.
    pub fn key(&self) -> &'static str {
        match self {
            StopReason::FreeSpace { .. } => "free_space",
            StopReason::Refused { .. } => "refused",
            StopReason::Failed { .. } => "failed",
            StopReason::FileLimit => "file_limit",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::FreeSpace { free, floor, dir } => write!(
                f,
                "free space on the filesystem of {} is {}, and another file would take it below the floor of {} (min_free)",
                dir.display(),
                format_byte_size(*free),
                format_byte_size(*floor)
            ),
            StopReason::Refused { path } => write!(
                f,
                "refused to write {}: something voxsoak did not create is already there (a symlink or someone's file), left untouched",
                path.display()
            ),
            StopReason::Failed { error } => write!(f, "writing failed: {error}"),
            StopReason::FileLimit => write!(
                f,
                "it wrote {MAX_LEAK_FILES} files, as many as one injection may, before max_total"
            ),
        }
    }
}

/// A leak that stopped writing early, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakStop {
    pub reason: StopReason,
    pub at: Instant,
    /// Files and bytes written by then.
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default)]
struct WriterReport {
    files: u64,
    bytes: u64,
    stopped: Option<LeakStop>,
}

impl WriterReport {
    fn stop(&mut self, reason: StopReason) {
        self.stopped = Some(LeakStop {
            reason,
            at: Instant::now(),
            files: self.files,
            bytes: self.bytes,
        });
    }
}

/// A leak in progress.
#[derive(Debug)]
pub struct TempFileLeakFault {
    dir: PathBuf,
    record: Arc<LeakRecord>,
    /// The dir, open while the leak is on (closed at clear: a long soak's many leaks hold
    /// no descriptors).
    handle: Arc<DirHandle>,
    stop: CancellationToken,
    writer: Option<JoinHandle<()>>,
    written: Arc<Mutex<WriterReport>>,
    /// The early stop was handed out by [`TempFileLeakFault::take_stop`].
    stop_taken: bool,
}

impl TempFileLeakFault {
    /// Injects a scenario's `temp_file_leak` (its `occurrence`-th time in the run tagged
    /// `run_tag`): into the dir it declared, or into the fleet's own temp dir
    /// (`fleet_temp_dir`, which the harness made: it is its own declaration).
    pub async fn inject_spec(
        leak: &TempFileLeak,
        fleet_temp_dir: Option<&Path>,
        run_tag: &str,
        occurrence: &Occurrence,
        files: HarnessFiles,
    ) -> Result<Self, FaultError> {
        let (dir, within) = match &leak.dir {
            LeakDir::FleetTempDir => {
                let dir = fleet_temp_dir
                    .ok_or_else(|| FaultError::new(KIND, "no temp dir to act on"))?
                    .to_path_buf();
                let within = writable::resolve(&dir).map_err(|error| {
                    FaultError::new(
                        KIND,
                        format!("cannot use the temp dir {}: {error}", dir.display()),
                    )
                })?;
                (dir, within)
            }
            LeakDir::Declared { dir, within } => (dir.clone(), within.clone()),
        };
        let params = LeakParams {
            dir,
            within,
            file_size: leak.file_size,
            bytes_per_second: leak.bytes_per_second,
            max_total: leak.max_total,
            min_free: leak.min_free,
            tag: format!("{run_tag}-{}-{}", occurrence.fault + 1, occurrence.number),
            name_seed: LeakParams::random_name_seed(),
        };
        TempFileLeakFault::inject(params, files).await
    }

    /// Starts writing. The dir must exist (it is the fleet's), lie in the declared dir once
    /// resolved again, and be no system directory.
    pub async fn inject(params: LeakParams, files: HarnessFiles) -> Result<Self, FaultError> {
        let (dir, handle) = open_confined(&params.dir, &params.within)?;
        let record = Arc::new(LeakRecord {
            dir: dir.clone(),
            dir_id: handle.id,
            tag: params.tag.clone(),
            seed: params.name_seed,
            files: Mutex::default(),
            ledger: files.ledger(),
        });
        // Registered before the first file exists, so however the run ends it is removed.
        files.add(Arc::clone(&record));
        let handle = Arc::new(handle);
        let stop = CancellationToken::new();
        let written = Arc::new(Mutex::new(WriterReport::default()));
        let writer = tokio::spawn(write_files(
            params,
            dir.clone(),
            Arc::clone(&handle),
            Arc::clone(&record),
            stop.clone(),
            Arc::clone(&written),
        ));
        Ok(TempFileLeakFault {
            dir,
            record,
            handle,
            stop,
            writer: Some(writer),
            written,
            stop_taken: false,
        })
    }

    /// The dir it writes into, resolved.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn report(&self) -> WriterReport {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Its files still there, and their bytes (see [`LeakRecord::present`]), looked at on a
    /// blocking thread: a leak may have written many.
    async fn present(&self, forget_gone: bool) -> (u64, u64) {
        let (record, handle) = (Arc::clone(&self.record), Arc::clone(&self.handle));
        tokio::task::spawn_blocking(move || record.present(&handle, forget_gone))
            .await
            .unwrap_or_default()
    }

    /// Why it stopped writing early, once (to be journaled); None while it writes.
    pub fn take_stop(&mut self) -> Option<LeakStop> {
        if self.stop_taken {
            return None;
        }
        let stopped = self.report().stopped;
        self.stop_taken = stopped.is_some();
        stopped
    }

    /// In effect once files this leak wrote (those it created, by inode) exist in the dir.
    pub async fn confirm(&mut self) -> Confirmation {
        let report = self.report();
        let (present, bytes) = self.present(false).await;
        let dir = self.dir.display();
        if let (0, Some(stop)) = (report.files, &report.stopped) {
            return Confirmation::not_in_effect(format!(
                "wrote no file into {dir}: {}",
                stop.reason
            ));
        }
        let mut evidence = format!(
            "{} files ({}) written into {dir}; {present} ({}) still there",
            report.files,
            format_byte_size(report.bytes),
            format_byte_size(bytes)
        );
        if let Some(stop) = &report.stopped {
            evidence.push_str(&format!("; stopped writing: {}", stop.reason));
        }
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
        let (present, bytes) = self.present(true).await;
        let mut note = format!(
            "stopped writing after {} files ({}); {present} ({}) still in {}, removed when the run ends",
            report.files,
            format_byte_size(report.bytes),
            format_byte_size(bytes),
            self.dir.display()
        );
        if let Some(stop) = &report.stopped {
            note.push_str(&format!("; it had stopped early: {}", stop.reason));
        }
        Ok(note)
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

/// `dir` resolved and opened, once it is known to lie in `within` and to be no system
/// directory; the handle is checked to be the very dir that was resolved.
fn open_confined(dir: &Path, within: &Path) -> Result<(PathBuf, DirHandle), FaultError> {
    let refuse = |message: String| FaultError::new(KIND, message);
    let resolved = std::fs::canonicalize(dir).map_err(|error| {
        refuse(format!(
            "cannot use the temp dir {}: {error}",
            dir.display()
        ))
    })?;
    writable::confine(&resolved, within)
        .map_err(|error| refuse(format!("refused to write into {}: {error}", dir.display())))?;
    let handle = DirHandle::open(&resolved).map_err(|error| {
        if error.raw_os_error() == Some(libc::ENOTDIR) {
            refuse(format!("{} is not a directory", resolved.display()))
        } else {
            refuse(format!(
                "cannot use the temp dir {}: {error}",
                resolved.display()
            ))
        }
    })?;
    let now = std::fs::metadata(&resolved).map(|metadata| (metadata.dev(), metadata.ino()));
    if now.ok() != Some(handle.id) {
        return Err(refuse(format!(
            "refused to write into {}: it changed while it was being opened",
            resolved.display()
        )));
    }
    Ok((resolved, handle))
}

async fn write_files(
    params: LeakParams,
    dir: PathBuf,
    handle: Arc<DirHandle>,
    record: Arc<LeakRecord>,
    stop: CancellationToken,
    written: Arc<Mutex<WriterReport>>,
) {
    let file_size = params.file_size.max(1);
    let interval =
        Duration::from_secs_f64(file_size as f64 / params.bytes_per_second.max(1) as f64);
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let chunk: Arc<[u8]> =
        vec![0x5a_u8; usize::try_from(file_size.min(1 << 20)).unwrap_or(1 << 20)].into();
    let lock = || written.lock().unwrap_or_else(PoisonError::into_inner);
    let mut index = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let total = lock().bytes;
        if total + file_size > params.max_total {
            break;
        }
        if index >= MAX_LEAK_FILES {
            lock().stop(StopReason::FileLimit);
            break;
        }
        index += 1;
        let file = FileToWrite {
            handle: Arc::clone(&handle),
            record: Arc::clone(&record),
            dir: dir.clone(),
            index,
            size: file_size,
            min_free: params.min_free,
            chunk: Arc::clone(&chunk),
        };
        let result = tokio::task::spawn_blocking(move || file.write())
            .await
            .unwrap_or_else(|error| {
                Err(StopReason::Failed {
                    error: error.to_string(),
                })
            });
        let mut report = lock();
        match result {
            Ok(()) => {
                report.files += 1;
                report.bytes += file_size;
            }
            Err(reason) => {
                report.stop(reason);
                break;
            }
        }
    }
}

/// One file of a leak, written on a blocking thread.
struct FileToWrite {
    handle: Arc<DirHandle>,
    record: Arc<LeakRecord>,
    dir: PathBuf,
    index: u64,
    size: u64,
    min_free: FreeSpaceFloor,
    chunk: Arc<[u8]>,
}

impl FileToWrite {
    fn write(self) -> Result<(), StopReason> {
        let failed = |error: std::io::Error| StopReason::Failed {
            error: error.to_string(),
        };
        let (free, total) = self.handle.free_space().map_err(failed)?;
        let floor = self.min_free.bytes(total);
        if free < floor.saturating_add(self.size) {
            return Err(StopReason::FreeSpace {
                free,
                floor,
                dir: self.dir,
            });
        }
        let name = self.record.name(self.index);
        let file = {
            // Created and remembered under the record's lock, so the run's removal of its
            // files never misses one created at the same moment.
            let mut files = self.record.lock();
            if files.closed {
                return Err(StopReason::Failed {
                    error: "the run is removing its files".into(),
                });
            }
            let file = self.handle.create_new(&name).map_err(|error| {
                if error.kind() == std::io::ErrorKind::AlreadyExists {
                    StopReason::Refused {
                        path: self.dir.join(&name),
                    }
                } else {
                    failed(error)
                }
            })?;
            let inode = file.metadata().map_err(failed)?.ino();
            files.created.push(CreatedFile {
                index: self.index,
                inode,
                written: None,
            });
            if let Some(ledger) = &self.record.ledger {
                // Before a byte is written: a harness killed while writing it leaves it in
                // the ledger. A file the ledger cannot take is not written at all.
                if let Err(error) = ledger.record_leaked(&self.dir.join(&name), inode) {
                    drop(file);
                    let _ = self
                        .handle
                        .remove_if(&name, files.created.last().expect("pushed"));
                    files.created.pop();
                    return Err(failed(error));
                }
            }
            file
        };
        let written = self.fill(&file);
        // Remembered as last written, also when writing failed part way: that file is
        // removed at the end too. The ledger gets it too, so that `voxsoak clean` tells it
        // from a file that took its name (and maybe its inode number) as the run does.
        if let Ok(metadata) = file.metadata() {
            let identity = FileIdentity::of(&metadata);
            let mut files = self.record.lock();
            if let Some(created) = files
                .created
                .iter_mut()
                .rev()
                .find(|created| created.index == self.index)
            {
                created.written = Some(identity);
            }
            if let Some(ledger) = &self.record.ledger
                && let Err(error) = ledger.record_written(&self.dir.join(&name), identity)
            {
                // `voxsoak clean` then knows it by inode alone, as one killed mid-write.
                tracing::warn!(%error, "could not write a leaked file's length and time into the ledger");
            }
        }
        written.map_err(failed)
    }

    fn fill(&self, file: &File) -> std::io::Result<()> {
        let mut writer = std::io::BufWriter::new(file);
        let mut left = self.size;
        while left > 0 {
            let take =
                usize::try_from(left.min(self.chunk.len() as u64)).unwrap_or(self.chunk.len());
            writer.write_all(&self.chunk[..take])?;
            left -= take as u64;
        }
        writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(dir: &Path, rate: u64, max_total: u64) -> LeakParams {
        let dir = dir.canonicalize().unwrap();
        LeakParams {
            within: dir.clone(),
            dir,
            file_size: 64 << 10,
            bytes_per_second: rate,
            max_total,
            min_free: FreeSpaceFloor::Bytes(0),
            tag: "test".into(),
            name_seed: 7,
        }
    }

    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    async fn wait_for_files(dir: &Path, at_least: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while count(dir) < at_least {
            assert!(tokio::time::Instant::now() < deadline, "no files appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the writer to end by itself (max_total, or a stop).
    async fn writer_done(fault: &mut TempFileLeakFault) {
        let writer = fault.writer.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("the writer ends")
            .unwrap();
    }

    #[test]
    fn file_names_are_tagged_numbered_and_unpredictable_without_the_seed() {
        let name = leak_file_name("run-1-1", 7, 3);
        assert!(name.starts_with("voxsoak-leak-run-1-1-000003-"), "{name}");
        assert!(name.ends_with(".wav"), "{name}");
        assert_eq!(name, leak_file_name("run-1-1", 7, 3));
        assert_ne!(name, leak_file_name("run-1-1", 8, 3));
        assert_ne!(
            name[..name.len() - 20],
            leak_file_name("run-1-1", 7, 4)[..name.len() - 20]
        );
        assert_ne!(
            LeakParams::random_name_seed(),
            LeakParams::random_name_seed()
        );
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
        let after_clear = count(dir.path());
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
        assert_eq!(count(dir.path()), 0);
    }

    #[tokio::test]
    async fn stops_at_max_total_and_removes_only_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = HarnessFiles::default();
        let mut fault =
            TempFileLeakFault::inject(params(dir.path(), 64 << 20, 3 * (64 << 10)), files.clone())
                .await
                .unwrap();
        writer_done(&mut fault).await;
        assert_eq!(fault.report().files, 3);
        assert_eq!(fault.take_stop(), None, "max_total is no early stop");
        assert_eq!(
            fault.record.present(&fault.handle, false),
            (3, 3 * (64 << 10))
        );
        // The fleet's own files stay, also one named like the harness's: one the fleet
        // wrote in place of a leaked file it swept, and one under the next name.
        std::fs::write(dir.path().join("fleet-reply.wav"), b"x").unwrap();
        let swept = dir.path().join(leak_file_name("test", 7, 1));
        std::fs::remove_file(&swept).unwrap();
        std::fs::write(&swept, b"the fleet's").unwrap();
        std::fs::write(dir.path().join(leak_file_name("test", 7, 4)), b"y").unwrap();
        drop(fault);
        assert_eq!(files.remove_all(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![
            "fleet-reply.wav".to_owned(),
            leak_file_name("test", 7, 1),
            leak_file_name("test", 7, 4),
        ];
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(std::fs::read(&swept).unwrap(), b"the fleet's");
    }

    /// A leak whose file `index` has a symlink planted at its name (as someone who knew the
    /// seed would plant it) pointing at a file outside the dir, run until its writer ends.
    struct PlantedLeak {
        dir: tempfile::TempDir,
        _outside: tempfile::TempDir,
        target: PathBuf,
        fault: TempFileLeakFault,
        files: HarnessFiles,
    }

    async fn leak_past_a_symlink_at(index: u64) -> PlantedLeak {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("precious.conf");
        std::fs::write(&target, b"keep me").unwrap();
        let planted = dir.path().join(leak_file_name("test", 7, index));
        std::os::unix::fs::symlink(&target, planted).unwrap();
        let files = HarnessFiles::default();
        let mut fault =
            TempFileLeakFault::inject(params(dir.path(), 64 << 20, 1 << 20), files.clone())
                .await
                .unwrap();
        writer_done(&mut fault).await;
        PlantedLeak {
            dir,
            _outside: outside,
            target,
            fault,
            files,
        }
    }

    #[tokio::test]
    async fn a_symlink_planted_at_the_next_name_is_refused_and_its_target_untouched() {
        let PlantedLeak {
            dir,
            _outside,
            target,
            mut fault,
            files,
        } = leak_past_a_symlink_at(1).await;
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        let confirmation = fault.confirm().await;
        assert!(!confirmation.in_effect, "{confirmation:?}");
        assert!(
            confirmation.evidence.contains("refused to write"),
            "{confirmation:?}"
        );
        let stop = fault.take_stop().expect("an early stop");
        assert_eq!(stop.reason.key(), "refused");
        assert_eq!(stop.files, 0);
        assert_eq!(fault.take_stop(), None, "handed out once");
        let note = fault.clear().await.unwrap();
        assert!(note.contains("stopped early: refused"), "{note}");
        assert_eq!(files.remove_all(), 0);
        let planted = dir.path().join(leak_file_name("test", 7, 1));
        assert!(planted.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn a_symlink_planted_later_stops_the_leak_after_the_files_it_wrote() {
        let PlantedLeak {
            dir: _dir,
            _outside,
            target,
            mut fault,
            files,
        } = leak_past_a_symlink_at(3).await;
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        // Its own two files are the evidence.
        let confirmation = fault.confirm().await;
        assert!(confirmation.in_effect, "{confirmation:?}");
        assert!(
            confirmation.evidence.contains("2 files"),
            "{confirmation:?}"
        );
        drop(fault);
        assert_eq!(files.remove_all(), 2);
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn a_floor_above_the_free_space_writes_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let files = HarnessFiles::default();
        let mut leak = params(dir.path(), 64 << 20, 1 << 20);
        leak.min_free = FreeSpaceFloor::Percent(100.0);
        let mut fault = TempFileLeakFault::inject(leak, files.clone())
            .await
            .unwrap();
        writer_done(&mut fault).await;
        assert_eq!(count(dir.path()), 0);
        let confirmation = fault.confirm().await;
        assert!(!confirmation.in_effect, "{confirmation:?}");
        assert!(
            confirmation.evidence.contains("below the floor"),
            "{confirmation:?}"
        );
        let stop = fault.take_stop().unwrap();
        let StopReason::FreeSpace { free, floor, .. } = stop.reason else {
            panic!("{stop:?}")
        };
        assert!(floor > free, "{free} {floor}");
    }

    #[tokio::test]
    async fn a_dir_outside_the_declared_one_or_swapped_for_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let declared = root.join("fleet/tmp");
        std::fs::create_dir_all(&declared).unwrap();
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let files = HarnessFiles::default();
        let with = |dir: PathBuf| LeakParams {
            dir,
            within: declared.clone(),
            ..params(&root, 1 << 20, 1 << 20)
        };
        // Between validation and injection the declared dir became a symlink elsewhere.
        std::fs::rename(&declared, root.join("fleet/tmp.old")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &declared).unwrap();
        let error = TempFileLeakFault::inject(with(declared.clone()), files.clone())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("outside"), "{error}");
        // ...or to /etc.
        std::fs::remove_file(&declared).unwrap();
        std::os::unix::fs::symlink("/etc", &declared).unwrap();
        let error = TempFileLeakFault::inject(with(declared.clone()), files.clone())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("system directory"), "{error}");
        assert!(files.is_empty());
        assert_eq!(count(&elsewhere), 0);
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
        // Removal closes the leak: a file being created at that moment is removed too, or
        // not created at all.
        files.remove_all();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(count(dir.path()), 0);

        let mut missing = params(dir.path(), 1, 1);
        missing.dir = dir.path().join("missing");
        let error = TempFileLeakFault::inject(missing, files).await.unwrap_err();
        assert!(
            error.to_string().contains("cannot use the temp dir"),
            "{error}"
        );
    }
}

//! Nothing left behind: what a run leaves on the machine is known, and removable after the
//! harness was killed with `kill -9`.
//!
//! - **One temp root per run.** Everything a run puts under `$TMPDIR` (the embedded fleet's
//!   `voxsoak-fleet-*` dir with its SQLite file and audio, and whatever its children create:
//!   they are started with `TMPDIR` pointing here) lives in `$TMPDIR/voxsoak-<uid>/<run
//!   id>-XXXXXX/` ([`TempRoot`]). The root's `owner.json` names the harness (pid and start
//!   time) and the run directory, and the harness holds an exclusive `flock` on it for as
//!   long as it lives: the kernel releases the lock however the harness dies, so a root
//!   whose lock is free is abandoned, with no guessing from pids (which are reused, and
//!   differ between pid namespaces sharing a `/tmp`).
//! - **Leaked files outside the root.** A file a `temp_file_leak` writes into an external
//!   fleet's temp dir is written into the root's ledger ([`TempRoot::record_leaked`]) as it
//!   is created: its path and inode, and once written, its length and modification time
//!   ([`TempRoot::record_written`]). A sweep of the abandoned root removes each one still
//!   there under that path with that inode, length and modification time (a regular file,
//!   never a symlink; inode numbers are reused, so a file written in its place may have the
//!   same one), and nothing else in that dir.
//! - **Pid files.** Each process the harness starts is written to `fleet.pid` in the run
//!   directory ([`PidFile`]: its pid and start time, and the harness's), so a survivor can
//!   be found and killed where the death signal did not reach it.
//! - **Cleaning.** [`sweep`] (`voxsoak clean`, and every `voxsoak run` as it starts) removes
//!   the roots whose owner is gone and kills the survivors their run directories name;
//!   [`clean_run_dirs`] does the same from run directories (their journal's `temp_root`
//!   record). Nothing is removed that is not such a root (a real directory holding a valid
//!   marker whose lock is free) or a file its ledger names (by path, inode, length and
//!   modification time); symlinks
//!   are never followed; no process is killed unless its pid and start time
//!   both match the pid file and its harness is gone.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// The marker in a temp root: who owns it; locked by the owner while it runs.
pub const OWNER_FILE: &str = "owner.json";
/// The files the run leaked outside its root: one JSON object per line, `path` and `inode`
/// as each is created, then the same with `modified_ns` and `length` once it is written.
const LEDGER_FILE: &str = "leaked.jsonl";
/// The most ledger lines a sweep reads (10 leaks of the 100,000 files one may write).
const MAX_LEDGER_LINES: usize = 1_000_000;
/// The pid file in a run directory.
pub const PID_FILE: &str = "fleet.pid";
/// What an owner marker's `voxsoak_temp_root` holds (its format's version).
const MARKER_VERSION: u32 = 1;
/// Markers and pid files are a few hundred bytes; anything longer is not one.
const MAX_MARKER_BYTES: u64 = 16 << 10;
/// How long a killed survivor may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("could not prepare the temp dir {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another user's (or a symlink) where the harness keeps its temp roots: using it would
    /// let that user see or swap the run's files.
    #[error("refusing to use {}: {reason}", path.display())]
    UnsafeBase { path: PathBuf, reason: String },
}

/// One process as the kernel knows it: a pid alone may be handed to a later process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// When it started, in clock ticks since boot (`/proc/PID/stat`); None where there is
    /// no `/proc`.
    pub started_ticks: Option<u64>,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Self {
        ProcessIdentity::of(std::process::id())
    }

    /// The process running with `pid` now.
    pub fn of(pid: u32) -> Self {
        ProcessIdentity {
            pid,
            started_ticks: crate::procinfo::sample(Some(pid))
                .ok()
                .map(|sample| sample.started_ticks),
        }
    }

    /// Whether this very process still runs (not a zombie). Without `/proc` only the pid
    /// can be asked after, and a pid that answers counts as running: never remove what a
    /// live run may still use.
    pub fn is_running(&self) -> bool {
        match crate::procinfo::sample(Some(self.pid)) {
            Ok(now) => {
                now.running
                    && self
                        .started_ticks
                        .is_none_or(|started| started == now.started_ticks)
            }
            Err(_) if Path::new("/proc/self/stat").exists() => false,
            Err(_) => pid_answers(self.pid),
        }
    }
}

/// kill(pid, 0): the pid exists (EPERM: it exists, owned by someone else).
fn pid_answers(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks that the pid exists.
    let answered = unsafe { libc::kill(pid, 0) } == 0;
    answered || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Where temp roots live: `$TMPDIR/voxsoak-<uid>`, one per user, so that one user's runs
/// never need another's directory, and nobody else can write into it (mode 0700).
pub fn base_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("voxsoak-{uid}"))
}

/// Creates `base` (mode 0700) or checks the one there: a real directory (not a symlink),
/// owned by this user and private.
fn ensure_base(base: &Path) -> Result<(), CleanupError> {
    match std::fs::DirBuilder::new().mode(0o700).create(base) {
        Ok(()) => return Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(CleanupError::Create {
                path: base.to_path_buf(),
                source,
            });
        }
    }
    check_base(base)?;
    Ok(())
}

/// Checks that `base` is this user's private directory; makes it private if it is this
/// user's but readable by others.
fn check_base(base: &Path) -> Result<std::fs::Metadata, CleanupError> {
    let unsafe_base = |reason: String| CleanupError::UnsafeBase {
        path: base.to_path_buf(),
        reason,
    };
    let metadata = std::fs::symlink_metadata(base).map_err(|source| CleanupError::Create {
        path: base.to_path_buf(),
        source,
    })?;
    if metadata.file_type().is_symlink() {
        return Err(unsafe_base("it is a symlink".into()));
    }
    if !metadata.is_dir() {
        return Err(unsafe_base("it is not a directory".into()));
    }
    // SAFETY: as in base_dir.
    let uid = unsafe { libc::geteuid() };
    if metadata.uid() != uid {
        return Err(unsafe_base(format!(
            "it belongs to uid {}, not to this user (uid {uid})",
            metadata.uid()
        )));
    }
    if metadata.mode() & 0o077 != 0 {
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| CleanupError::Create {
                path: base.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(metadata)
}

/// What `owner.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Owner {
    /// The marker's format; also what tells it from any other `owner.json`.
    voxsoak_temp_root: u32,
    run_id: String,
    /// The run directory (absolute), where the run's `fleet.pid` is.
    run_dir: PathBuf,
    harness: ProcessIdentity,
    created_at: String,
}

/// The run's temp root: removed when the run ends (or when the last handle is dropped), and
/// by a later [`sweep`] if the harness dies first. Clones share it.
#[derive(Debug, Clone)]
pub struct TempRoot(Arc<RootInner>);

#[derive(Debug)]
struct RootInner {
    path: PathBuf,
    /// `owner.json`, open and locked for as long as the harness lives.
    _lock: File,
    /// The ledger of leaked files, opened for appending on the first one.
    ledger: Mutex<Option<File>>,
}

impl TempRoot {
    /// A new root for run `run_id` (whose run directory is `run_dir`) under [`base_dir`].
    pub fn create(run_id: &str, run_dir: &Path) -> Result<TempRoot, CleanupError> {
        TempRoot::create_in(&base_dir(), run_id, run_dir)
    }

    /// As [`TempRoot::create`], under `base`.
    pub fn create_in(base: &Path, run_id: &str, run_dir: &Path) -> Result<TempRoot, CleanupError> {
        ensure_base(base)?;
        let create_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CleanupError::Create { path, source }
        };
        // A unique suffix: two runs of one scenario may start within the same second. Kept
        // as a TempDir until its marker is written, so that a failure leaves nothing.
        let unmarked = tempfile::Builder::new()
            .prefix(&format!("{run_id}-"))
            .rand_bytes(6)
            .tempdir_in(base)
            .map_err(create_error(base))?;
        // Absolute: the journal's `temp_root` is read from other directories.
        let path = std::path::absolute(unmarked.path()).map_err(create_error(base))?;
        let marker = path.join(OWNER_FILE);
        let mut lock = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&marker)
            .map_err(create_error(&marker))?;
        // Locked before anything is written: a sweep reads a marker only under its lock, so
        // it never sees one half written, nor one whose owner is about to take the lock.
        flock(&lock, libc::LOCK_EX).map_err(create_error(&marker))?;
        let owner = Owner {
            voxsoak_temp_root: MARKER_VERSION,
            run_id: run_id.to_owned(),
            run_dir: std::path::absolute(run_dir).map_err(create_error(run_dir))?,
            harness: ProcessIdentity::current(),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let json = serde_json::to_vec(&owner).map_err(|error| CleanupError::Create {
            path: marker.clone(),
            source: io::Error::other(error),
        })?;
        lock.write_all(&json)
            .and_then(|()| lock.sync_data())
            .map_err(create_error(&marker))?;
        let _ = unmarked.keep();
        Ok(TempRoot(Arc::new(RootInner {
            path,
            _lock: lock,
            ledger: Mutex::new(None),
        })))
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Writes `path` (a file the harness just created outside the root, whose inode is
    /// `inode`) into the root's ledger, so that a sweep removes it should the harness be
    /// killed before it removes it itself. Written through before it returns.
    pub fn record_leaked(&self, path: &Path, inode: u64) -> io::Result<()> {
        self.append_to_ledger(&LeakedFile {
            path: std::path::absolute(path)?,
            inode,
            modified_ns: None,
            length: None,
        })
    }

    /// Writes into the ledger how the harness left `path` (recorded before with
    /// [`TempRoot::record_leaked`]) once it has written it: a sweep then removes it only
    /// while it still has that inode, length and modification time.
    pub fn record_written(&self, path: &Path, written: FileIdentity) -> io::Result<()> {
        self.append_to_ledger(&LeakedFile {
            path: std::path::absolute(path)?,
            inode: written.inode,
            modified_ns: Some(written.modified_ns),
            length: Some(written.length),
        })
    }

    fn append_to_ledger(&self, leaked: &LeakedFile) -> io::Result<()> {
        let line = serde_json::to_string(leaked).map_err(io::Error::other)?;
        let mut ledger = self.0.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        if ledger.is_none() {
            *ledger = Some(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(self.path().join(LEDGER_FILE))?,
            );
        }
        let file = ledger.as_mut().expect("opened above");
        file.write_all(format!("{line}\n").as_bytes())
    }

    /// Removes the files its ledger names that are still there, and the root itself, with
    /// everything in it (never following a symlink). Done again on drop; a second time
    /// does nothing.
    pub fn remove(&self) -> Vec<Cleaned> {
        self.0.remove()
    }
}

impl RootInner {
    fn remove(&self) -> Vec<Cleaned> {
        drop(
            self.ledger
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let mut done = remove_ledgered(&self.path, false);
        if std::fs::symlink_metadata(&self.path).is_ok() {
            done.push(remove_tree(&self.path, "the run's temp root", false));
        }
        done
    }
}

impl Drop for RootInner {
    fn drop(&mut self) {
        for cleaned in self.remove() {
            if let Cleaned::Failed { .. } = cleaned {
                tracing::warn!("{}", cleaned.describe(false));
            }
        }
    }
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor this File owns.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads a small file without following a symlink at its name.
fn read_small(path: &Path) -> io::Result<(File, String)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a file"));
    }
    let mut text = String::new();
    (&mut file)
        .take(MAX_MARKER_BYTES)
        .read_to_string(&mut text)?;
    Ok((file, text))
}

/// What cleaning did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// A process a dead harness had started, killed (SIGKILL).
    Killed {
        what: String,
        pid: u32,
        run_dir: PathBuf,
    },
    /// A directory removed with everything in it.
    Removed { path: PathBuf, what: String },
    /// Something left alone, and why (its run still goes on; a pid that cannot be told
    /// from a later process).
    Kept { path: PathBuf, why: String },
    /// Something that should have gone and could not.
    Failed { path: PathBuf, error: String },
}

impl Cleaned {
    /// One line for the terminal; `dry_run` says what would be done.
    pub fn describe(&self, dry_run: bool) -> String {
        let (kill, remove) = if dry_run {
            ("would kill", "would remove")
        } else {
            ("killed", "removed")
        };
        match self {
            Cleaned::Killed { what, pid, run_dir } => format!(
                "{kill} {what} (pid {pid}), left running by the run in {} whose harness is gone",
                run_dir.display()
            ),
            Cleaned::Removed { path, what } => format!("{remove} {} ({what})", path.display()),
            Cleaned::Kept { path, why } => format!("kept {}: {why}", path.display()),
            Cleaned::Failed { path, error } => {
                format!("could not clean {}: {error}", path.display())
            }
        }
    }

    /// Whether something was (or would be) killed or removed.
    pub fn acted(&self) -> bool {
        matches!(self, Cleaned::Killed { .. } | Cleaned::Removed { .. })
    }
}

/// `remove_dir_all`, which never follows symlinks (it unlinks them), on a path checked to
/// be a real directory.
fn remove_tree(path: &Path, what: &str, dry_run: bool) -> Cleaned {
    let failed = |error: String| Cleaned::Failed {
        path: path.to_path_buf(),
        error,
    };
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return failed("not a directory".into()),
        Err(error) => return failed(error.to_string()),
    }
    if !dry_run
        && let Err(error) = std::fs::remove_dir_all(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        return failed(error.to_string());
    }
    Cleaned::Removed {
        path: path.to_path_buf(),
        what: what.to_owned(),
    }
}

/// What tells one regular file from another that later took its name: inode numbers are
/// reused, so a file written in place of a removed one may have the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub inode: u64,
    /// Last modification, in nanoseconds since the epoch.
    pub modified_ns: i64,
    pub length: u64,
}

impl FileIdentity {
    pub fn of(metadata: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            inode: metadata.ino(),
            modified_ns: metadata
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(metadata.mtime_nsec()),
            length: metadata.len(),
        }
    }
}

/// One line of a root's ledger: a file the harness created outside the root, as it was
/// created (`inode`), or as the harness left it once written (with `modified_ns` and
/// `length`: a later line for the same path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeakedFile {
    path: PathBuf,
    inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modified_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
}

impl LeakedFile {
    /// Whether `found` is this file: the same inode, and the same length and modification
    /// time when the ledger has them (not for a file the harness was killed writing).
    fn is(&self, found: &FileIdentity) -> bool {
        found.inode == self.inode
            && self
                .modified_ns
                .is_none_or(|modified| modified == found.modified_ns)
            && self.length.is_none_or(|length| length == found.length)
    }
}

/// Calls `each` with every file `root`'s ledger names outside the root, as the harness last
/// recorded it: a file's line once written stands for it, not its line as created (which
/// stands alone only for a file the harness was killed writing, or a ledger written before
/// lengths and times were). Only the files created and not yet written are held.
fn each_ledgered(root: &Path, mut each: impl FnMut(LeakedFile)) {
    use std::io::BufRead;
    let Ok(ledger) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(root.join(LEDGER_FILE))
    else {
        return;
    };
    let mut created: std::collections::HashMap<PathBuf, LeakedFile> = Default::default();
    for line in io::BufReader::new(ledger)
        .lines()
        .take(MAX_LEDGER_LINES)
        .map_while(Result::ok)
    {
        let Ok(leaked) = serde_json::from_str::<LeakedFile>(&line) else {
            continue;
        };
        if leaked.path.starts_with(root) {
            continue;
        }
        if leaked.modified_ns.is_some() {
            created.remove(&leaked.path);
            each(leaked);
        } else {
            created.insert(leaked.path.clone(), leaked);
        }
    }
    created.into_values().for_each(each);
}

/// Removes the files `root`'s ledger names that are still the harness's (a regular file at
/// that path with the inode, length and modification time the harness left it with),
/// outside the root; one line per directory they were in.
fn remove_ledgered(root: &Path, dry_run: bool) -> Vec<Cleaned> {
    // Directory → (files removed, files left because something else took their name).
    let mut by_dir: std::collections::BTreeMap<PathBuf, (u64, u64)> = Default::default();
    each_ledgered(root, |leaked| {
        let Some(dir) = leaked.path.parent() else {
            return;
        };
        match std::fs::symlink_metadata(&leaked.path) {
            // The fleet (or the harness itself) removed it already.
            Err(_) => {}
            Ok(metadata) if metadata.is_file() && leaked.is(&FileIdentity::of(&metadata)) => {
                if dry_run || std::fs::remove_file(&leaked.path).is_ok() {
                    by_dir.entry(dir.to_path_buf()).or_default().0 += 1;
                }
            }
            Ok(_) => by_dir.entry(dir.to_path_buf()).or_default().1 += 1,
        }
    });
    by_dir
        .into_iter()
        .flat_map(|(dir, (removed, kept))| {
            let mut done = Vec::new();
            if removed > 0 {
                done.push(Cleaned::Removed {
                    path: dir.clone(),
                    what: format!("{removed} files the harness leaked into it"),
                });
            }
            if kept > 0 {
                done.push(Cleaned::Kept {
                    path: dir,
                    why: format!(
                        "{kept} files under the names of files the harness leaked are not the ones it wrote"
                    ),
                });
            }
            done
        })
        .collect()
}

/// The `fleet.pid` of a run directory: a process the harness started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidFile {
    pub pid: u32,
    /// Its start time (clock ticks since boot), which tells it from a later process given
    /// the same pid.
    pub started_ticks: Option<u64>,
    /// `voxsoak fleet` or `voxsoak sink`.
    pub what: String,
    /// It leads its own process group (so its own children, if any, go with it).
    pub process_group: bool,
    /// The harness that started it: while that runs, the process is not a survivor.
    pub harness: ProcessIdentity,
}

impl PidFile {
    /// A child of this process, started in its own process group.
    pub fn for_child(pid: u32, what: &str) -> PidFile {
        let identity = ProcessIdentity::of(pid);
        PidFile {
            pid,
            started_ticks: identity.started_ticks,
            what: what.to_owned(),
            process_group: true,
            harness: ProcessIdentity::current(),
        }
    }

    /// Written whole (a temp file renamed into place): a reader never sees half of one.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        std::fs::write(&temporary, json)?;
        std::fs::rename(&temporary, path)
    }

    pub fn read(path: &Path) -> io::Result<PidFile> {
        let (_, text) = read_small(path)?;
        serde_json::from_str(&text)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }

    fn identity(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.pid,
            started_ticks: self.started_ticks,
        }
    }
}

/// Kills the process a run directory's `fleet.pid` names, if it survived its harness.
/// `harness_gone`: the caller knows the harness is gone (its root's lock was free);
/// otherwise the harness named in the pid file is looked up.
fn kill_survivor(run_dir: &Path, harness_gone: bool, dry_run: bool) -> Option<Cleaned> {
    let path = run_dir.join(PID_FILE);
    let pid_file = match PidFile::read(&path) {
        Ok(pid_file) => pid_file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
        Err(error) => {
            return Some(Cleaned::Kept {
                path,
                why: format!("not a voxsoak pid file ({error})"),
            });
        }
    };
    if !harness_gone && pid_file.harness.is_running() {
        return Some(Cleaned::Kept {
            path,
            why: format!("{STILL_GOING} (harness pid {})", pid_file.harness.pid),
        });
    }
    let process = pid_file.identity();
    if !process.is_running() {
        if !dry_run {
            let _ = std::fs::remove_file(&path);
        }
        return None;
    }
    if process.started_ticks.is_none() {
        return Some(Cleaned::Kept {
            path,
            why: format!(
                "pid {} cannot be told from a later process on this system; not killed",
                process.pid
            ),
        });
    }
    if !dry_run {
        let pid = process.pid as libc::pid_t;
        // SAFETY: kill(2) with a positive pid just checked to be the process the pid file
        // names (same start time), and SIGKILL: the only signal a stopped process (a
        // `process_stall` in effect) acts on at once.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            if pid_file.process_group {
                // Its group (its own children, if any). A group id is not reused while
                // the group has members.
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + KILL_WAIT;
        while process.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if process.is_running() {
            return Some(Cleaned::Failed {
                path,
                error: format!("pid {} still runs after SIGKILL", process.pid),
            });
        }
        let _ = std::fs::remove_file(&path);
    }
    Some(Cleaned::Killed {
        what: pid_file.what,
        pid: pid_file.pid,
        run_dir: run_dir.to_path_buf(),
    })
}

/// Cleans one temp root if it is one and its owner is gone: kills its run's survivor,
/// removes the files its ledger names, removes it. Anything that is not a root is left alone without
/// a word.
fn clean_root(root: &Path, dry_run: bool) -> Vec<Cleaned> {
    match std::fs::symlink_metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        _ => return Vec::new(),
    }
    let Ok((lock, text)) = read_small(&root.join(OWNER_FILE)) else {
        return Vec::new();
    };
    let kept = |why: String| {
        vec![Cleaned::Kept {
            path: root.to_path_buf(),
            why,
        }]
    };
    // Taken and held while cleaning: its owner is gone, and another sweep leaves it alone.
    match flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            let owner: Option<Owner> = serde_json::from_str(&text).ok();
            return kept(match owner {
                Some(owner) => format!(
                    "{STILL_GOING} (harness pid {}, run directory {})",
                    owner.harness.pid,
                    owner.run_dir.display()
                ),
                None => "in use".into(),
            });
        }
        // A file system without flock: the pids below decide.
        Err(_) => {}
    }
    // Read again under the lock: the owner writes it only while holding the lock.
    let mut text = String::new();
    let mut reader = &lock;
    if io::Seek::seek(&mut reader, io::SeekFrom::Start(0)).is_err()
        || reader
            .take(MAX_MARKER_BYTES)
            .read_to_string(&mut text)
            .is_err()
    {
        return Vec::new();
    }
    let Ok(owner) = serde_json::from_str::<Owner>(&text) else {
        return Vec::new();
    };
    if owner.voxsoak_temp_root != MARKER_VERSION {
        return Vec::new();
    }
    // The lock said the owner is gone; the pid agrees, or (on a file system without flock)
    // decides. A pid that cannot be told from a later process counts as running.
    if owner.harness.is_running() {
        return kept(format!("{HARNESS_RUNS} {}) still runs", owner.harness.pid));
    }
    let mut done = Vec::new();
    done.extend(kill_survivor(&owner.run_dir, true, dry_run));
    done.extend(remove_ledgered(root, dry_run));
    done.push(remove_tree(
        root,
        &format!(
            "temp dir of run {} (run directory {}), whose harness is gone",
            owner.run_id,
            owner.run_dir.display()
        ),
        dry_run,
    ));
    drop(lock);
    done
}

/// Cleans every abandoned temp root under `base` (see the module docs). A `base` that is
/// not this user's private directory is left alone and said.
pub fn sweep(base: &Path, dry_run: bool) -> Vec<Cleaned> {
    match std::fs::symlink_metadata(base) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Vec::new(),
        _ => {}
    }
    if let Err(error) = check_base(base) {
        return vec![Cleaned::Failed {
            path: base.to_path_buf(),
            error: error.to_string(),
        }];
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut roots: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    roots.sort();
    roots
        .iter()
        .flat_map(|root| clean_root(root, dry_run))
        .collect()
}

/// Cleans after the runs whose run directories are given: the temp root each journal
/// names (`temp_root` record), as [`sweep`] would, and a survivor its `fleet.pid` names.
pub fn clean_run_dirs(run_dirs: &[PathBuf], dry_run: bool) -> Vec<Cleaned> {
    let mut done = Vec::new();
    for run_dir in run_dirs {
        let root = journaled_temp_root(run_dir);
        let from_root = root
            .as_deref()
            .map(|root| clean_root(root, dry_run))
            .unwrap_or_default();
        let root_cleaned = from_root
            .iter()
            .any(|cleaned| matches!(cleaned, Cleaned::Removed { path, .. } if Some(path) == root.as_ref()));
        let root_kept = from_root
            .iter()
            .any(|cleaned| matches!(cleaned, Cleaned::Kept { .. }));
        done.extend(from_root);
        if !root_cleaned && !root_kept {
            // No root (or it is gone already): the pid file's harness decides.
            done.extend(kill_survivor(run_dir, false, dry_run));
        }
    }
    done
}

/// Whether what [`clean_run_dirs`] found says the run is still going (its harness holds
/// its temp root, or runs): the one thing `voxsoak resume` must never step on.
pub fn still_going(cleaned: &[Cleaned]) -> Option<&Cleaned> {
    cleaned.iter().find(|item| {
        matches!(item, Cleaned::Kept { why, .. }
            if why.starts_with(STILL_GOING) || why.starts_with(HARNESS_RUNS))
    })
}

/// How a [`Cleaned::Kept`] begins when the run is still going.
const STILL_GOING: &str = "its run is still going";
const HARNESS_RUNS: &str = "its harness (pid";

/// The temp root a run directory's journal names (the last `temp_root` record).
fn journaled_temp_root(run_dir: &Path) -> Option<PathBuf> {
    let file = File::open(run_dir.join("journal.jsonl")).ok()?;
    let mut root = None;
    for line in io::BufRead::lines(io::BufReader::new(file)).map_while(Result::ok) {
        if !line.contains("\"temp_root\"") {
            continue;
        }
        if let Ok(record) = serde_json::from_str::<serde_json::Value>(&line)
            && record["event"] == "temp_root"
            && let Some(path) = record["path"].as_str()
        {
            root = Some(PathBuf::from(path));
        }
    }
    root
}

impl fmt::Display for Cleaned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that has exited and been reaped: what a killed harness looks like.
    fn dead_process() -> ProcessIdentity {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        ProcessIdentity {
            pid,
            started_ticks: Some(0),
        }
    }

    /// A private base dir, as `ensure_base` makes it, inside a test's temp dir.
    fn base_in(dir: &Path) -> PathBuf {
        let base = dir.join("voxsoak-test");
        ensure_base(&base).unwrap();
        base
    }

    /// A test's temp dir, with a base dir and a run directory in it.
    fn places() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let base = base_in(dir.path());
        let run_dir = dir.path().join("run");
        std::fs::create_dir(&run_dir).unwrap();
        (dir, base, run_dir)
    }

    /// A root as a harness now dead left it: marker written, lock released.
    fn abandoned_root(base: &Path, name: &str, run_dir: &Path) -> PathBuf {
        let root = base.join(name);
        std::fs::create_dir(&root).unwrap();
        let owner = Owner {
            voxsoak_temp_root: MARKER_VERSION,
            run_id: name.into(),
            run_dir: run_dir.to_path_buf(),
            harness: dead_process(),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(root.join(OWNER_FILE), serde_json::to_vec(&owner).unwrap()).unwrap();
        std::fs::create_dir(root.join("voxsoak-fleet-x")).unwrap();
        std::fs::write(root.join("voxsoak-fleet-x").join("fleet.db"), b"rows").unwrap();
        root
    }

    #[test]
    fn a_root_whose_owner_is_gone_is_removed_and_a_dry_run_only_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let base = base_in(dir.path());
        let root = abandoned_root(&base, "gone-1", dir.path());
        let said = sweep(&base, true);
        assert!(
            matches!(&said[..], [Cleaned::Removed { path, .. }] if *path == root),
            "{said:?}"
        );
        assert!(said[0].describe(true).starts_with("would remove"));
        assert!(root.exists(), "a dry run removes nothing");
        let done = sweep(&base, false);
        assert_eq!(done, said);
        assert!(!root.exists());
        assert!(base.exists(), "the base stays");
    }

    #[test]
    fn a_live_root_and_anything_that_is_not_a_root_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let base = base_in(dir.path());
        let live = TempRoot::create_in(&base, "live", dir.path()).unwrap();
        std::fs::write(live.path().join("data"), b"in use").unwrap();
        // No marker; a marker that is not voxsoak's; a file; a symlink to an abandoned
        // root elsewhere.
        let unmarked = base.join("unmarked");
        std::fs::create_dir(&unmarked).unwrap();
        let foreign = base.join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join(OWNER_FILE), br#"{"owner": "someone else"}"#).unwrap();
        std::fs::write(base.join("a-file"), b"x").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = abandoned_root(elsewhere.path(), "target", dir.path());
        std::os::unix::fs::symlink(&target, base.join("link")).unwrap();

        let done = sweep(&base, false);
        assert!(
            matches!(&done[..], [Cleaned::Kept { path, why }] if path == live.path() && why.contains("still going")),
            "{done:?}"
        );
        assert!(live.path().join("data").exists());
        assert!(unmarked.exists() && foreign.join(OWNER_FILE).exists());
        assert!(base.join("a-file").exists() && base.join("link").exists());
        assert!(
            target.join("voxsoak-fleet-x").join("fleet.db").exists(),
            "never followed"
        );
    }

    #[test]
    fn a_root_removes_itself_and_the_files_it_leaked() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let base = base_in(dir.path());
        let root = TempRoot::create_in(&base, "ends", dir.path()).unwrap();
        let fleet_tmp = dir.path().join("fleet-tmp");
        std::fs::create_dir(&fleet_tmp).unwrap();
        let leaked = fleet_tmp.join("voxsoak-leak-x-1.wav");
        std::fs::write(&leaked, b"x").unwrap();
        let inode = std::fs::metadata(&leaked).unwrap().ino();
        root.record_leaked(&leaked, inode).unwrap();
        std::fs::write(fleet_tmp.join("the-fleets-own.wav"), b"y").unwrap();
        let path = root.path().to_path_buf();
        let done = root.remove();
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(!leaked.exists() && !path.exists());
        assert!(
            fleet_tmp.join("the-fleets-own.wav").exists(),
            "only its own"
        );
        // Dropping it afterwards is harmless.
        drop(root);
    }

    /// Inode numbers are reused: a file written in place of a leaked one may get its inode.
    /// The ledger has each file's length and modification time as the harness left it, and
    /// a file under its name that differs in any of the three is not removed.
    #[test]
    fn a_leaked_file_replaced_under_its_name_is_not_removed_even_with_its_inode() {
        let dir = tempfile::tempdir().unwrap();
        let base = base_in(dir.path());
        let root = TempRoot::create_in(&base, "replaced", dir.path()).unwrap();
        let fleet_tmp = dir.path().join("fleet-tmp");
        std::fs::create_dir(&fleet_tmp).unwrap();
        let name = |what: &str| fleet_tmp.join(format!("voxsoak-leak-{what}.wav"));
        let names = ["new-file", "longer", "touched", "as-left", "killed-writing"];
        // Created, each into the ledger, before a byte is written (as the leak does).
        for what in names {
            let file = std::fs::File::create_new(name(what)).unwrap();
            root.record_leaked(&name(what), file.metadata().unwrap().ino())
                .unwrap();
        }
        // Written, and into the ledger as left: all but the one the harness died writing.
        for what in &names[..4] {
            std::fs::write(name(what), b"leaked audio").unwrap();
            let metadata = std::fs::metadata(name(what)).unwrap();
            root.record_written(&name(what), FileIdentity::of(&metadata))
                .unwrap();
        }
        // Then the fleet removed one and wrote its own under the name; appended to one in
        // place (same inode, other length); rewrote one in place with the same length, at
        // another time.
        std::fs::remove_file(name("new-file")).unwrap();
        std::fs::write(name("new-file"), b"the fleet's").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(name("longer"))
            .unwrap()
            .write_all(b"+")
            .unwrap();
        let touched = std::fs::OpenOptions::new()
            .write(true)
            .open(name("touched"))
            .unwrap();
        let earlier = std::fs::metadata(name("touched"))
            .unwrap()
            .modified()
            .unwrap()
            - Duration::from_secs(3600);
        touched.set_modified(earlier).unwrap();
        let done = root.remove();
        assert!(
            !name("as-left").exists() && !name("killed-writing").exists(),
            "the two still as the harness left them go: {done:?}"
        );
        for what in ["new-file", "longer", "touched"] {
            assert!(name(what).exists(), "{what} is not the harness's: {done:?}");
        }
        assert_eq!(
            std::fs::read(name("new-file")).unwrap(),
            b"the fleet's".to_vec()
        );
        assert!(
            done.iter().any(
                |item| matches!(item, Cleaned::Removed { what, .. } if what.starts_with("2 files"))
            ) && done.iter().any(
                |item| matches!(item, Cleaned::Kept { why, .. } if why.starts_with("3 files"))
            ),
            "{done:?}"
        );
    }

    #[test]
    fn an_abandoned_roots_leaked_files_go_only_while_they_are_the_ones_it_wrote() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let base = base_in(dir.path());
        let root = abandoned_root(&base, "leaks", dir.path());
        let fleet_tmp = dir.path().join("fleet-tmp");
        let precious = dir.path().join("precious");
        std::fs::create_dir(&fleet_tmp).unwrap();
        std::fs::create_dir(&precious).unwrap();
        std::fs::write(precious.join("keep-me"), b"x").unwrap();
        let name = |n: u32| fleet_tmp.join(format!("voxsoak-leak-x-{n}.wav"));
        let mut ledger = String::new();
        for n in 1..=3 {
            std::fs::write(name(n), b"leak").unwrap();
            let inode = std::fs::metadata(name(n)).unwrap().ino();
            ledger.push_str(&format!(
                "{}\n",
                serde_json::json!({"path": name(n), "inode": inode})
            ));
        }
        // The fleet removed the second; the third's name now is a symlink to a file the
        // harness never wrote; a line cut short by the kill ends the ledger.
        std::fs::remove_file(name(2)).unwrap();
        std::fs::remove_file(name(3)).unwrap();
        std::os::unix::fs::symlink(precious.join("keep-me"), name(3)).unwrap();
        ledger.push_str(r#"{"path": "/etc/pass"#);
        std::fs::write(root.join(LEDGER_FILE), ledger).unwrap();
        let done = sweep(&base, false);
        assert!(!name(1).exists(), "{done:?}");
        assert!(
            name(3).exists() && precious.join("keep-me").exists(),
            "{done:?}"
        );
        assert!(
            done.iter().any(
                |item| matches!(item, Cleaned::Removed { what, .. } if what.starts_with("1 files"))
            ),
            "{done:?}"
        );
        assert!(
            done.iter()
                .any(|item| matches!(item, Cleaned::Kept { path, .. } if *path == fleet_tmp)),
            "{done:?}"
        );
        assert!(!root.exists());
    }

    /// A `sleep` standing in for a fleet whose harness died; the pid file as the harness
    /// wrote it.
    fn survivor(run_dir: &Path, harness: ProcessIdentity) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        // In its own process group, as the harness starts a fleet.
        let child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut pid_file = PidFile::for_child(child.id(), "voxsoak fleet");
        pid_file.harness = harness;
        pid_file.write(&run_dir.join(PID_FILE)).unwrap();
        child
    }

    #[test]
    fn a_survivor_is_killed_only_when_its_harness_is_gone_and_it_is_the_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir(&run_dir).unwrap();

        // Its harness (this test) still runs: left alone.
        let mut alive = survivor(&run_dir, ProcessIdentity::current());
        let done = clean_run_dirs(std::slice::from_ref(&run_dir), false);
        assert!(
            matches!(&done[..], [Cleaned::Kept { why, .. }] if why.contains("still going")),
            "{done:?}"
        );
        assert!(alive.try_wait().unwrap().is_none());

        // The pid file names another process that got the same pid: left alone.
        let mut pid_file = PidFile::read(&run_dir.join(PID_FILE)).unwrap();
        pid_file.harness = dead_process();
        pid_file.started_ticks = pid_file.started_ticks.map(|ticks| ticks + 1);
        pid_file.write(&run_dir.join(PID_FILE)).unwrap();
        assert_eq!(
            clean_run_dirs(std::slice::from_ref(&run_dir), false),
            vec![]
        );
        assert!(alive.try_wait().unwrap().is_none());
        alive.kill().unwrap();
        alive.wait().unwrap();

        // Its harness is gone: killed, and the dry run before only says so.
        let mut orphan = survivor(&run_dir, dead_process());
        let said = clean_run_dirs(std::slice::from_ref(&run_dir), true);
        assert!(
            said[0]
                .describe(true)
                .starts_with("would kill voxsoak fleet"),
            "{said:?}"
        );
        assert!(orphan.try_wait().unwrap().is_none());
        let done = clean_run_dirs(std::slice::from_ref(&run_dir), false);
        assert!(
            matches!(&done[..], [Cleaned::Killed { pid, .. }] if *pid == orphan.id()),
            "{done:?}"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(orphan.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(!run_dir.join(PID_FILE).exists());
    }

    #[test]
    fn an_abandoned_root_kills_the_survivor_its_run_directory_names() {
        let (_dir, base, run_dir) = places();
        let root = abandoned_root(&base, "with-survivor", &run_dir);
        // The harness that wrote the pid file is the one the root names: gone.
        let mut orphan = survivor(&run_dir, dead_process());
        let done = sweep(&base, false);
        assert!(matches!(&done[0], Cleaned::Killed { .. }), "{done:?}");
        assert!(
            matches!(&done[1], Cleaned::Removed { path, .. } if *path == root),
            "{done:?}"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(orphan.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_base_that_is_not_this_users_private_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let abandoned = abandoned_root(&real, "root", dir.path());
        let link = dir.path().join("voxsoak-link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            TempRoot::create_in(&link, "x", dir.path()),
            Err(CleanupError::UnsafeBase { .. })
        ));
        let done = sweep(&link, false);
        assert!(matches!(&done[..], [Cleaned::Failed { .. }]), "{done:?}");
        assert!(abandoned.exists(), "nothing through the symlink");
        // This user's, but open to others: made private.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        TempRoot::create_in(&open, "x", dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&open).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_run_directory_names_its_root_through_the_journal() {
        let (_dir, base, run_dir) = places();
        let root = abandoned_root(&base, "journaled", &run_dir);
        std::fs::write(
            run_dir.join("journal.jsonl"),
            format!(
                "{}\n{}\n",
                serde_json::json!({"event": "run_started", "t_s": 0.0}),
                serde_json::json!({"event": "temp_root", "t_s": 0.0, "path": root}),
            ),
        )
        .unwrap();
        let done = clean_run_dirs(std::slice::from_ref(&run_dir), false);
        assert!(
            matches!(&done[..], [Cleaned::Removed { path, .. }] if *path == root),
            "{done:?}"
        );
        assert!(!root.exists());
    }
}

//! Where chaos may write. A fault writes only into a directory the scenario declares as
//! the fleet's (the embedded fleet's own `AUDIO_TMP_DIR`, `[observe] temp_dir`) or lists
//! in `[chaos] writable_dirs`; never into a system directory; and never outside the
//! declared directory once `..` and symlinks are resolved. The same checks run when a
//! scenario is validated (for an error with a position) and again when a fault is
//! injected, since the filesystem can change in between.

use std::path::{Component, Path, PathBuf};

/// Trees no fault writes anywhere in: the system's programs, libraries, configuration,
/// boot files, devices, kernel interfaces and logs. Every top-level `lib*` is one too.
const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/proc", "/sbin", "/snap", "/sys", "/usr", "/var/log",
];

/// Directories no fault writes directly into, though a dir below them may be a fleet's
/// (`/var/lib/fleet/tmp`, `/run/user/1000`, `/home/fleet/tmp`). Every `/home/NAME` and the
/// harness's own home directory are too.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/root",
    "/run",
    "/srv",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/mail",
    "/var/run",
    "/var/spool",
];

/// Why a directory may not be written into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfinementError {
    #[error("{} is {what}; a fault never writes there", dir.display())]
    SystemDir { dir: PathBuf, what: String },
    #[error(
        "{} is outside {} once `..` and symlinks are resolved",
        dir.display(),
        within.display()
    )]
    Outside { dir: PathBuf, within: PathBuf },
}

/// `path` made absolute (a relative one is relative to the current directory) with every
/// part that exists resolved (symlinks followed, `..` applied, as `realpath` does) and the
/// rest, which cannot be a symlink, normalised as written. A directory that does not exist
/// yet is resolved as far as it can be.
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut resolved) => {
                for component in rest.into_iter().rev() {
                    match component {
                        Component::ParentDir => {
                            resolved.pop();
                        }
                        Component::Normal(name) => resolved.push(name),
                        _ => {}
                    }
                }
                return Ok(resolved);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let Some(parent) = existing.parent() else {
                    return Err(error);
                };
                rest.extend(existing.components().next_back());
                existing = parent;
            }
            Err(error) => return Err(error),
        }
    }
}

/// What system directory `dir` (resolved) is or lies in, if any: "the system directory
/// /etc", "in the system directory /usr", "the home directory /root".
pub fn system_dir(dir: &Path) -> Option<String> {
    // A system path may itself be a symlink (`/var/run` → `/run`, `/lib` → `/usr/lib`), so
    // each is compared as written and resolved.
    let forms = |entry: &Path| {
        let resolved = entry.canonicalize().ok();
        std::iter::once(entry.to_path_buf()).chain(resolved)
    };
    for entry in SYSTEM_TREES.iter().map(Path::new) {
        for form in forms(entry) {
            if dir == form {
                return Some(format!("the system directory {}", entry.display()));
            }
            if dir.starts_with(&form) {
                return Some(format!("in the system directory {}", entry.display()));
            }
        }
    }
    let mut components = dir.components();
    if let (Some(Component::RootDir), Some(Component::Normal(top))) =
        (components.next(), components.next())
        && top.to_string_lossy().starts_with("lib")
    {
        let top = Path::new("/").join(top);
        return Some(if dir == top {
            format!("the system directory {}", top.display())
        } else {
            format!("in the system directory {}", top.display())
        });
    }
    for entry in SYSTEM_DIRS.iter().map(Path::new) {
        if forms(entry).any(|form| dir == form) {
            return Some(format!("the system directory {}", entry.display()));
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = home.filter(|home| home.is_absolute())
        && forms(&home).any(|form| dir == form)
    {
        return Some(format!("the home directory {}", home.display()));
    }
    if dir.parent() == Some(Path::new("/home")) {
        return Some(format!("the home directory {}", dir.display()));
    }
    None
}

/// `dir` as a directory a fault may write into: not a system directory, and `within` (a
/// declared directory, resolved) or below it. Both must already be resolved ([`resolve`]).
pub fn confine(dir: &Path, within: &Path) -> Result<(), ConfinementError> {
    if let Some(what) = system_dir(dir) {
        return Err(ConfinementError::SystemDir {
            dir: dir.to_path_buf(),
            what,
        });
    }
    if !dir.starts_with(within) {
        return Err(ConfinementError::Outside {
            dir: dir.to_path_buf(),
            within: within.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_directories_and_what_lies_in_them_are_named() {
        for (dir, what) in [
            ("/", "the system directory /"),
            ("/etc", "the system directory /etc"),
            ("/etc/ssl/private", "in the system directory /etc"),
            ("/usr/local/bin", "in the system directory /usr"),
            ("/lib64", "the system directory /lib64"),
            ("/proc/self", "in the system directory /proc"),
            ("/var/lib", "the system directory /var/lib"),
            ("/home/alice", "the home directory /home/alice"),
        ] {
            assert_eq!(system_dir(Path::new(dir)).as_deref(), Some(what), "{dir}");
        }
        // A fleet's own dir below a system dir that is not a whole tree is fine.
        for dir in [
            "/tmp",
            "/var/tmp/fleet-audio",
            "/var/lib/fleet/tmp",
            "/home/alice/fleet/tmp",
        ] {
            assert_eq!(system_dir(Path::new(dir)), None, "{dir}");
        }
        if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
            && home.is_absolute()
            && home.exists()
        {
            assert!(system_dir(&home.canonicalize().unwrap()).is_some());
        }
    }

    #[test]
    fn paths_resolve_through_symlinks_and_dot_dots_existing_or_not() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let allowed = root.join("a/b/c");
        std::fs::create_dir_all(&allowed).unwrap();
        assert_eq!(resolve(&allowed.join("../../..")).unwrap(), root);
        // Not there yet: resolved as far as it exists, the rest taken as written.
        assert_eq!(
            resolve(&allowed.join("later/../later2/x")).unwrap(),
            allowed.join("later2/x")
        );
        assert_eq!(
            resolve(&allowed.join("missing/../../../../..")).unwrap(),
            root.parent().unwrap()
        );
        std::os::unix::fs::symlink("/etc", allowed.join("etc-link")).unwrap();
        let through = resolve(&allowed.join("etc-link")).unwrap();
        assert_eq!(through, Path::new("/etc").canonicalize().unwrap());
        assert!(matches!(
            confine(&through, &allowed),
            Err(ConfinementError::SystemDir { .. })
        ));
        let outside = resolve(&allowed.join("../..")).unwrap();
        assert_eq!(
            confine(&outside, &allowed),
            Err(ConfinementError::Outside {
                dir: root.join("a"),
                within: allowed.clone()
            })
        );
        assert_eq!(confine(&allowed.join("sub"), &allowed), Ok(()));
        assert_eq!(confine(&allowed, &allowed), Ok(()));
        // A sibling whose name starts the same is not inside.
        assert!(confine(&root.join("a/b/c2"), &allowed).is_err());
    }
}

//! `temp_file_leak` confinement and caps at validation: where a leak may write (with the
//! position of every refusal), how much, and the free-space floor.

use std::path::{Path, PathBuf};

use super::faults::*;
use super::tests::{diagnostics as errors, parse_ok};
use super::tests_faults::{EMBEDDED, EXTERNAL};

/// A dir of its own (resolved), removed when dropped.
struct Dirs {
    _root: tempfile::TempDir,
    root: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let root = tempfile::tempdir().unwrap();
        let resolved = root.path().canonicalize().unwrap();
        Dirs {
            _root: root,
            root: resolved,
        }
    }

    fn dir(&self, relative: &str) -> PathBuf {
        let dir = self.root.join(relative);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

fn leak(dir_line: &str, extra: &str) -> String {
    format!("[[faults]]\nkind = \"temp_file_leak\"\nfor = \"1m\"\n{dir_line}{extra}",)
}

fn only_leak(scenario: &super::Scenario) -> &TempFileLeak {
    match &scenario.faults[0].fault {
        FaultSpec::TempFileLeak(leak) => leak,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_leak_writes_only_into_a_declared_dir_or_below_it() {
    let dirs = Dirs::new();
    let allowed = dirs.dir("fleet/tmp");
    let below = dirs.dir("fleet/tmp/audio");
    let writable = format!("[chaos]\nwritable_dirs = [\"{}\"]\n", allowed.display());

    // [chaos] writable_dirs, the dir itself or below it, written with `..` and all.
    for (written, resolved) in [
        (allowed.display().to_string(), &allowed),
        (format!("{}/x/../audio", allowed.display()), &below),
    ] {
        let scenario = parse_ok(&format!(
            "{EXTERNAL}{writable}{}",
            leak(&format!("dir = \"{written}\"\n"), "")
        ));
        assert_eq!(
            only_leak(&scenario).dir,
            LeakDir::Declared {
                dir: resolved.clone(),
                within: allowed.clone()
            }
        );
    }

    // An external fleet's [observe] temp_dir is declared: dir defaults to it.
    let observed = format!("[observe]\ntemp_dir = \"{}\"\n", allowed.display());
    let scenario = parse_ok(&format!("{EXTERNAL}{observed}{}", leak("", "")));
    assert_eq!(
        only_leak(&scenario).dir,
        LeakDir::Declared {
            dir: allowed.clone(),
            within: allowed.clone()
        }
    );
    let scenario = parse_ok(&format!(
        "{EXTERNAL}{observed}{}",
        leak(&format!("dir = \"{}\"\n", below.display()), "")
    ));
    assert_eq!(
        only_leak(&scenario).dir,
        LeakDir::Declared {
            dir: below.clone(),
            within: allowed.clone()
        }
    );

    // The embedded fleet's own dir needs no declaration.
    let scenario = parse_ok(&format!("{EMBEDDED}{}", leak("", "")));
    assert_eq!(only_leak(&scenario).dir, LeakDir::FleetTempDir);
}

#[test]
fn system_dirs_and_dirs_outside_the_declared_ones_are_refused_with_their_position() {
    let dirs = Dirs::new();
    let allowed = dirs.dir("a/b/c");
    std::os::unix::fs::symlink("/etc", allowed.join("etc-link")).unwrap();
    let etc = Path::new("/etc").canonicalize().unwrap();
    let writable = format!("[chaos]\nwritable_dirs = [\"{}\"]\n", allowed.display());
    let cases = [
        (
            "/etc".to_owned(),
            format!(
                "10:7: dir = \"/etc\" resolves to {}, the system directory /etc",
                etc.display()
            ),
        ),
        (
            "/".to_owned(),
            "10:7: dir = \"/\" resolves to /, the system directory /".to_owned(),
        ),
        (
            format!("{}/../../..", allowed.display()),
            format!(
                "10:7: dir = \"{}/../../..\" resolves to {}, outside every dir a fault may write into ({})",
                allowed.display(),
                dirs.root.display(),
                allowed.display()
            ),
        ),
        (
            format!("{}/etc-link", allowed.display()),
            format!(
                "10:7: dir = \"{}/etc-link\" resolves to {}, the system directory /etc",
                allowed.display(),
                etc.display()
            ),
        ),
        // Relative to where voxsoak runs, as every path in a scenario: far enough up is /.
        (
            "../../../../../../../../../../../../..".to_owned(),
            "10:7: dir = \"../../../../../../../../../../../../..\" resolves to /, the system directory /".to_owned(),
        ),
    ];
    for (dir, expected) in cases {
        let found = errors(&format!(
            "{EXTERNAL}{writable}{}",
            leak(&format!("dir = \"{dir}\"\n"), "")
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with(&expected), "{dir}: {found:?}");
    }

    // Against the embedded fleet, a dir of its own must be declared.
    let found = errors(&format!(
        "{EMBEDDED}{}",
        leak(&format!("dir = \"{}\"\n", allowed.display()), "")
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("8:7: dir = ") && found[0].contains("(none is declared); leave dir out to leak into the embedded fleet's own AUDIO_TMP_DIR"),
        "{found:?}"
    );

    // An [observe] temp_dir that is a system dir is refused as the leak's dir, at the fault.
    let found = errors(&format!(
        "{EXTERNAL}[observe]\ntemp_dir = \"/var/lib\"\n{}",
        leak("", "")
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("7:1: dir (here [observe] temp_dir) = \"/var/lib\"")
            && found[0].contains("the system directory /var/lib"),
        "{found:?}"
    );
}

#[test]
fn writable_dirs_are_never_system_dirs_or_files() {
    let dirs = Dirs::new();
    let file = dirs.root.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut listed = vec![
        "/".to_owned(),
        "/usr/lib".to_owned(),
        file.display().to_string(),
    ];
    if let Some(home) = home.as_ref().filter(|home| home.is_absolute()) {
        listed.push(home.display().to_string());
    }
    let entries: Vec<String> = listed.iter().map(|dir| format!("\"{dir}\"")).collect();
    let found = errors(&format!(
        "{EXTERNAL}[chaos]\nwritable_dirs = [{}]\n",
        entries.join(", ")
    ));
    assert_eq!(found.len(), listed.len(), "{found:?}");
    assert!(
        found[0].starts_with("6:18: writable_dirs: \"/\" resolves to /, the system directory /"),
        "{found:?}"
    );
    assert!(
        found[1].contains("in the system directory /usr"),
        "{found:?}"
    );
    assert!(found[2].contains("which is not a directory"), "{found:?}");
    if listed.len() > 3 {
        // The home directory (as root, /root: a system directory anyway).
        assert!(found[3].contains("a fault never writes there"), "{found:?}");
    }
}

#[test]
fn leak_sizes_are_capped_unless_the_scenario_opts_in() {
    let over = leak("", "max_total = \"1000TiB\"\nfile_size = \"1GiB\"\n");
    assert_eq!(
        errors(&format!("{EMBEDDED}{over}")),
        vec![
            "8:13: max_total (1000.0 TiB) is over the 10.0 GiB ceiling for leaked files; set [chaos] allow_large_leaks = true to leak more (writing still stops when free space falls below min_free)".to_owned()
        ]
    );
    let opted_in = parse_ok(&format!(
        "{EMBEDDED}[chaos]\nallow_large_leaks = true\n{over}"
    ));
    assert_eq!(only_leak(&opted_in).max_total, 1000 << 40);

    for (sizes, expected) in [
        (
            "file_size = \"4GiB\"\n",
            "8:13: file_size must be at most 1.0 GiB, found 4.0 GiB",
        ),
        (
            "file_size = \"2MiB\"\nmax_total = \"1MiB\"\n",
            "8:13: file_size (2.0 MiB) is larger than max_total (1.0 MiB): not one file would be written",
        ),
        (
            "file_size = \"1KiB\"\nmax_total = \"1GiB\"\n",
            "9:13: max_total (1.0 GiB) in files of 1.0 KiB is 1048576 files; at most 100000 per injection",
        ),
    ] {
        let found = errors(&format!("{EMBEDDED}{}", leak("", sizes)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with(expected), "{found:?}");
    }
}

#[test]
fn the_free_space_floor_is_a_size_or_a_share() {
    let floor = |value: &str| {
        only_leak(&parse_ok(&format!(
            "{EMBEDDED}{}",
            leak("", &format!("min_free = {value}\n"))
        )))
        .min_free
    };
    assert_eq!(floor("\"5GiB\""), FreeSpaceFloor::Bytes(5 << 30));
    assert_eq!(floor("\"12.5%\""), FreeSpaceFloor::Percent(12.5));
    assert_eq!(
        only_leak(&parse_ok(&format!("{EMBEDDED}{}", leak("", "")))).min_free,
        FreeSpaceFloor::Default
    );
    for (value, expected) in [
        (
            "\"150%\"",
            "8:12: min_free: expected a size such as \"2GiB\" or a share of the filesystem such as \"5%\" (0% to 100%), found \"150%\"",
        ),
        (
            "5",
            "8:12: min_free: expected a size such as \"2GiB\" or a share of the filesystem such as \"5%\", found 5",
        ),
        (
            "\"lots\"",
            "8:12: min_free: expected a size such as \"512MiB\"",
        ),
    ] {
        let found = errors(&format!(
            "{EMBEDDED}{}",
            leak("", &format!("min_free = {value}\n"))
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with(expected), "{found:?}");
    }
    // 5% or 2 GiB, whichever is larger.
    assert_eq!(FreeSpaceFloor::Default.bytes(100 << 30), 5 << 30);
    assert_eq!(FreeSpaceFloor::Default.bytes(10 << 30), 2 << 30);
    assert_eq!(FreeSpaceFloor::Percent(50.0).bytes(10), 5);
}

#[test]
fn the_plan_shows_the_resolved_dir_and_the_caps() {
    let dirs = Dirs::new();
    let allowed = dirs.dir("fleet");
    let scenario = parse_ok(&format!(
        "{EXTERNAL}[chaos]\nwritable_dirs = [\"{}\"]\n{}",
        allowed.display(),
        leak(
            &format!("dir = \"{}/x/../audio\"\n", allowed.display()),
            "min_free = \"3GiB\"\n"
        )
    ));
    let plan = crate::plan::render_plan(&scenario);
    let expected = format!(
        "writes 1.0 MiB files at 4.0 MiB/s into {}/audio (within {}) (at most 1.0 GiB, ceiling 10.0 GiB; stops before free space there falls below 3.0 GiB); removed when the run ends",
        allowed.display(),
        allowed.display()
    );
    assert!(plan.contains(&expected), "{plan}");
    let embedded = parse_ok(&format!("{EMBEDDED}{}", leak("", "")));
    assert!(
        crate::plan::render_plan(&embedded).contains(
            "into the fleet's AUDIO_TMP_DIR (at most 1.0 GiB, ceiling 10.0 GiB; stops before free space there falls below 5% of the filesystem or 2.0 GiB, whichever is larger)"
        ),
        "{}",
        crate::plan::render_plan(&embedded)
    );
}

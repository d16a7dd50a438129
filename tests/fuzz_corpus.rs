//! The fuzz corpus under plain `cargo test`: every committed input of every `cargo fuzz`
//! target (`fuzz/corpus/<target>/`) and every input that once crashed one
//! (`fuzz/regressions/<target>/`) goes through the harness function the target calls, so a
//! fixed crash stays fixed without cargo-fuzz or a nightly toolchain.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// The files in `fuzz/<kind>/<target>/`, sorted (none when it does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input through its target; the inputs that panicked, with their message.
fn failures(target: &str, run: fn(&[u8]), files: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for file in files {
        let data = std::fs::read(file).expect("a readable input");
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{target}: {}: {message}", file.display()));
        }
    }
    failed
}

#[test]
fn every_committed_corpus_input_goes_through_its_target() {
    let mut failed = Vec::new();
    for (target, run) in harness::TARGETS {
        let files = inputs("corpus", target);
        assert!(!files.is_empty(), "fuzz/corpus/{target}/ has no inputs");
        failed.extend(failures(target, run, &files));
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn every_input_that_once_crashed_a_target_is_handled() {
    let mut failed = Vec::new();
    let mut regressions = 0;
    for (target, run) in harness::TARGETS {
        let files = inputs("regressions", target);
        regressions += files.len();
        failed.extend(failures(target, run, &files));
    }
    assert!(regressions > 0, "fuzz/regressions/ has no inputs");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

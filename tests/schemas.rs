//! The JSON Schemas in `schemas/` are generated from the Rust types (schemars): the
//! committed files must match the code, and what a real run writes must validate.
//!
//! After changing a report type, regenerate them with
//! `VOXSOAK_BLESS=1 cargo test --test tests schemas::` and commit the result.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{ScenarioFile, fixtures_dir, voxsoak_exe};

fn committed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name)
}

/// The schema as the code gives it, pretty-printed with a final newline.
fn generated(schema: &schemars::Schema) -> String {
    serde_json::to_string_pretty(schema).unwrap() + "\n"
}

/// Compares `schema` with the committed file (or writes it, with VOXSOAK_BLESS=1).
fn check_committed(name: &str, schema: &schemars::Schema) {
    let path = committed(name);
    let now = generated(schema);
    if std::env::var("VOXSOAK_BLESS").is_ok_and(|value| value == "1") {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        before == now,
        "{} does not match the code; regenerate it with \
         `VOXSOAK_BLESS=1 cargo test --test tests schemas::` and commit it",
        path.display()
    );
}

#[test]
fn the_summary_schema_is_the_codes() {
    check_committed(
        "summary.schema.json",
        &schemars::schema_for!(voxsoak::report::Summary),
    );
}

/// A real run's summary.json validates against the committed schema.
#[test]
fn a_real_summary_validates() {
    let scenario = ScenarioFile::new(&format!(
        "[target]\nfleet = \"sink\"\n[load]\nstages = [{{ ramp_to = 2, over = \"1s\" }}, {{ hold = \"2s\" }}]\n\
         [calls]\nfixtures = [\"{}/*.wav\"]\n[[scripts]]\nname = \"one\"\nturns = 1\n",
        fixtures_dir().display()
    ));
    let output = Command::new(voxsoak_exe())
        .args(["run", scenario.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(scenario.out_dir())
        .output()
        .unwrap();
    assert!(
        output.status.code() == Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed("summary.schema.json")).unwrap())
            .unwrap();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scenario.out_dir().join("summary.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&summary)
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // And the schema is not vacuous: a summary without its verdict does not validate.
    let mut broken = summary.clone();
    broken.as_object_mut().unwrap().remove("verdict");
    assert!(!validator.is_valid(&broken));
}

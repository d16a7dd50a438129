//! The schema says what the parser says: its patterns accept what the parsers accept, and
//! its `[[faults]]` branches are the registry's kinds.

use std::collections::BTreeSet;

use super::*;

fn matches(pattern: &str, text: &str) -> bool {
    regex::Regex::new(pattern).unwrap().is_match(text)
}

#[test]
fn the_duration_pattern_takes_what_the_parser_takes() {
    let samples = [
        "300ms",
        "5s",
        "1.5s",
        "2m18s",
        "1h30m",
        "72h",
        "10 m",
        " 1m 30s ",
        "1min",
        "2d",
        "500us",
        "1µs",
        "1w",
        "3M",
        "1y",
        "0s",
        "10",
        "",
        "-5s",
        "5 S",
        "1.s",
        "s",
        "5sm",
        "1m5",
        "1h 2x",
        "1,5s",
        "ten seconds",
    ];
    for text in samples {
        assert_eq!(
            matches(DURATION_PATTERN, text),
            super::super::validate::parse_duration(text).is_some(),
            "{text:?}"
        );
    }
}

#[test]
fn the_size_patterns_take_what_the_parser_takes() {
    let samples = [
        "512MiB", "1GiB", "1.5GB", "64KiB", "1 KiB", "100", "100b", "1k", "2T", "1.", ".5M",
        "1gib", "1KIB", "", "MiB", "1Ki", "1.2.3MiB", "-1MiB", "1 MiB/s", "1PiB", "5%",
    ];
    for text in samples {
        let parsed = crate::units::parse_byte_size(text).is_ok();
        assert_eq!(matches(&size_pattern(), text), parsed, "{text:?}");
        let rate = format!("{text}/s");
        assert_eq!(matches(&rate_pattern(), &rate), parsed, "{rate:?}");
    }
}

#[test]
fn the_threshold_patterns_take_the_readme_forms() {
    for (pattern, good, bad) in [
        (
            at_least_percent_pattern(),
            [">= 99.5%", "99%"],
            ["<= 99%", "99"],
        ),
        (below_percent_pattern(), ["< 50%", "50%"], [">= 50%", "50"]),
        (
            latency_threshold_pattern(),
            ["<= 1500ms", "3s"],
            [">= 3s", "<= 3"],
        ),
        (
            growth_threshold_pattern(),
            ["<= 50MiB/h", "10MiB/h"],
            [">= 1MiB/h", "50MiB"],
        ),
        (free_space_pattern(), ["5%", "2GiB"], ["5 %%", "lots"]),
    ] {
        for text in good {
            assert!(matches(&pattern, text), "{pattern} refuses {text:?}");
        }
        for text in bad {
            assert!(!matches(&pattern, text), "{pattern} takes {text:?}");
        }
    }
}

/// The `[[faults]]` items of the schema.
fn fault_items() -> Value {
    let schema = json_schema().to_value();
    schema["definitions"]["FaultEntries"]["items"].clone()
}

#[test]
fn there_is_one_fault_branch_per_kind_with_its_own_keys() {
    let items = fault_items();
    let branches = items["oneOf"].as_array().unwrap();
    assert_eq!(branches.len(), FaultKind::ALL.len());
    let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
    assert_eq!(items["properties"]["kind"]["enum"], json!(names));
    assert_eq!(items["additionalProperties"], json!(false));
    for (kind, branch) in FaultKind::ALL.iter().zip(branches) {
        let spec = kind.spec();
        assert_eq!(branch["properties"]["kind"]["const"], json!(spec.name));
        assert_eq!(branch["additionalProperties"], json!(false), "{kind}");
        let keys: BTreeSet<&str> = branch["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        // The keys every kind takes, as the parser reads them (validate_faults), and the
        // kind's own: a key missing from a kind's `parameters` would show here as common.
        let mut expected: BTreeSet<&str> = [
            "kind",
            "name",
            "at",
            "for",
            "every",
            "every_jitter",
            "detect",
            "recover_from",
        ]
        .into();
        expected.extend(spec.parameters);
        assert_eq!(keys, expected, "{kind}");
        let required: Vec<&str> = branch["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key.as_str().unwrap())
            .collect();
        for key in FAULT_REQUIRED.iter().chain(spec.required) {
            assert!(required.contains(key), "{kind} does not require {key}");
        }
        assert!(
            spec.required
                .iter()
                .all(|key| spec.parameters.contains(key)),
            "{kind} requires a key it does not take"
        );
    }
}

#[test]
fn every_key_the_parser_takes_is_in_the_schema_and_no_null() {
    let schema = json_schema().to_value();
    let text = serde_json::to_string(&schema).unwrap();
    assert!(!text.contains("\"null\""), "TOML has no null");
    assert_eq!(
        schema["$schema"],
        json!("http://json-schema.org/draft-07/schema#")
    );
    // Every table denies unknown keys, as phase 1 does.
    for (name, definition) in schema["definitions"].as_object().unwrap() {
        if definition["type"] == json!("object") && definition.get("properties").is_some() {
            assert_eq!(
                definition["additionalProperties"],
                json!(false),
                "{name} takes unknown keys"
            );
        }
    }
}

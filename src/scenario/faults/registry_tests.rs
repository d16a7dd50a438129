//! Every kind in the registry gives every part, so a kind cannot be half added: a name
//! that round-trips, parameters its example uses and its `voxsoak chaos` help names, an
//! example entry that validates with the kind's defaults, and a line of plan text.

use std::collections::HashSet;
use std::path::Path;

use super::super::tests_faults::EMBEDDED;
use super::*;

#[test]
fn names_are_unique_and_round_trip() {
    let mut names = HashSet::new();
    for kind in FaultKind::ALL {
        assert!(names.insert(kind.name()), "{kind} is named twice");
        assert_eq!(FaultKind::from_name(kind.name()), Some(kind));
        assert_eq!(kind.to_string(), kind.name());
        let valid = !kind.name().is_empty()
            && kind
                .name()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(valid, "{kind}: a scenario key, lower_snake_case");
    }
    assert_eq!(FaultKind::from_name("no_such_kind"), None);
}

#[test]
fn each_kind_documents_its_parameters_in_its_chaos_help() {
    for kind in FaultKind::ALL {
        let spec = kind.spec();
        let help = spec.chaos_help;
        assert!(help.contains(kind.name()), "{kind}'s help does not name it");
        assert!(
            help.starts_with("  ") && help.ends_with('\n'),
            "{kind}'s help is a block of `voxsoak chaos --help`"
        );
        let mut seen = HashSet::new();
        for parameter in spec.parameters {
            assert!(seen.insert(parameter), "{kind} lists {parameter} twice");
            // Given by hand as `--set key=…`, or as a flag of its own (`--dir`).
            let flag = format!("--{}", parameter.replace('_', "-"));
            assert!(
                help.contains(parameter) || help.contains(&flag),
                "{kind}'s help does not name its parameter {parameter}"
            );
        }
    }
}

#[test]
fn each_kind_example_validates_with_its_defaults_and_is_planned() {
    for kind in FaultKind::ALL {
        let spec = kind.spec();
        let source = format!(
            "{EMBEDDED}\n[[faults]]\nkind = \"{kind}\"\nat = \"1m\"\nfor = \"30s\"\n{}\n",
            spec.example
        );
        let scenario = match crate::scenario::parse(&source, Path::new("registry.toml")) {
            Ok(scenario) => scenario,
            Err(error) => panic!("{kind}'s example does not validate: {error:?}"),
        };
        let [fault] = &scenario.faults[..] else {
            panic!("{kind}: one fault expected");
        };
        assert_eq!(fault.kind, kind);
        assert_eq!(fault.name, kind.name());
        assert_eq!(fault.detect, vec![fault.fault.default_detection(kind)]);
        assert_eq!(fault.recover_from, spec.recover_from, "{kind}");
        for line in spec.example.lines() {
            let key = line.split('=').next().unwrap_or_default().trim();
            assert!(
                spec.parameters.contains(&key),
                "{kind}'s example uses {key:?}, which it does not list"
            );
        }
        for embedded in [true, false] {
            let text = fault.fault.describe(embedded);
            assert!(!text.trim().is_empty(), "{kind} has no plan text");
            assert!(
                !text.contains('\n'),
                "{kind}'s plan text is one line: {text}"
            );
        }
    }
}

#[test]
fn each_kind_has_a_default_detection_the_grader_can_watch() {
    for kind in FaultKind::ALL {
        match kind.spec().detection {
            DefaultDetection::Alert(name) => assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{kind}: alert name {name:?}"
            ),
            DefaultDetection::Unhealthy => {}
        }
        assert_eq!(kind.default_detection(), kind.spec().detection.rule());
    }
}

#[test]
fn each_required_parameter_is_required_by_the_parser() {
    for kind in FaultKind::ALL {
        let spec = kind.spec();
        for key in spec.required {
            let example: String = spec
                .example
                .lines()
                .filter(|line| line.split('=').next().unwrap_or_default().trim() != *key)
                .map(|line| format!("{line}\n"))
                .collect();
            assert_ne!(
                example, spec.example,
                "{kind}'s example does not give {key}"
            );
            let source = format!(
                "{EMBEDDED}\n[[faults]]\nkind = \"{kind}\"\nat = \"1m\"\nfor = \"30s\"\n{example}\n"
            );
            let error = crate::scenario::parse(&source, Path::new("registry.toml"))
                .expect_err(&format!("{kind} without {key} validates"));
            assert!(
                format!("{error:?}").contains(&format!("needs {key}")),
                "{kind} without {key}: {error:?}"
            );
        }
    }
}

//! The structure cannot rot: every import in `src/` is checked against `layers.toml`, the
//! table of which module may use which. A new import that goes against it fails here, with
//! the file and line; so does an entry of the table's `[known]` list that is no longer
//! needed (the list of imports still to be removed only shrinks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::{is_test_file, rust_files};

/// One import of one module from another: where it is.
#[derive(Debug)]
struct Import {
    from: String,
    to: String,
    at: String,
}

struct Table {
    modules: BTreeMap<String, BTreeSet<String>>,
    known: BTreeMap<String, String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn table() -> Table {
    let path = root().join("layers.toml");
    let text = std::fs::read_to_string(&path).expect("layers.toml is readable");
    let value: toml::Table = toml::from_str(&text).expect("layers.toml is valid TOML");
    let modules = value["modules"]
        .as_table()
        .expect("[modules] is a table")
        .iter()
        .map(|(module, uses)| {
            let uses = uses
                .as_array()
                .unwrap_or_else(|| panic!("modules.{module} is a list"))
                .iter()
                .map(|used| used.as_str().expect("module names").to_owned())
                .collect();
            (module.clone(), uses)
        })
        .collect();
    let known = value
        .get("known")
        .and_then(toml::Value::as_table)
        .map(|known| {
            known
                .iter()
                .map(|(edge, why)| (edge.clone(), why.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Table { modules, known }
}

/// The lines of `text` that are code: comments cut off, `#[cfg(test)]` items left out.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut skipping = false;
    let mut depth: i64 = 0;
    let mut opened = false;
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("").to_owned();
        if skipping {
            depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            opened |= code.contains('{');
            let item_ended = (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';'));
            if item_ended {
                skipping = false;
            }
            continue;
        }
        if code.trim_start().starts_with("#[cfg(test)]") {
            skipping = true;
            depth = 0;
            opened = false;
            continue;
        }
        lines.push((index + 1, code));
    }
    lines
}

/// The module a path names after `prefix` (`crate::grade::replay` → `grade`).
fn named_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(at, _)| {
            // `crate::` alone, not `mycrate::`.
            !code[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            let rest = &code[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn imports() -> Vec<Import> {
    let src = root().join("src");
    let files = rust_files(&src);
    let mut imports = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&src).expect("under src/");
        if relative == Path::new("lib.rs") || is_test_file(&path) {
            continue;
        }
        let first = relative.components().next().expect("a path");
        let from = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        // The binary uses the library by its crate name.
        let prefix = if from == "main" {
            "voxsoak::"
        } else {
            "crate::"
        };
        let text = std::fs::read_to_string(&path).expect("a source file is readable");
        for (line, code) in code_lines(&text) {
            for to in named_after(&code, prefix) {
                if to != from {
                    imports.push(Import {
                        from: from.clone(),
                        to: to.to_owned(),
                        at: format!("src/{}:{line}", relative.display()),
                    });
                }
            }
        }
    }
    imports
}

#[test]
fn every_import_in_src_follows_layers_toml() {
    let table = table();
    let imports = imports();
    assert!(
        imports.len() > 100,
        "the scan found only {} imports: is it reading src/?",
        imports.len()
    );
    let mut problems = Vec::new();
    let mut seen_known = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for import in &imports {
        let Some(uses) = table.modules.get(&import.from) else {
            if reported.insert(import.from.clone()) {
                problems.push(format!(
                    "{}: module `{}` is not in layers.toml [modules]",
                    import.at, import.from
                ));
            }
            continue;
        };
        if !table.modules.contains_key(&import.to) {
            problems.push(format!(
                "{}: `{}` uses `{}`, which is not in layers.toml [modules]",
                import.at, import.from, import.to
            ));
            continue;
        }
        if uses.contains(&import.to) {
            continue;
        }
        let edge = format!("{} -> {}", import.from, import.to);
        if table.known.contains_key(&edge) {
            seen_known.insert(edge);
            continue;
        }
        problems.push(format!(
            "{}: `{}` may not use `{}` (layers.toml: {} uses only {:?})",
            import.at, import.from, import.to, import.from, uses
        ));
    }
    for edge in table.known.keys() {
        if !seen_known.contains(edge) {
            problems.push(format!(
                "layers.toml [known] lists `{edge}`, which no code does any more: remove it"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_table_has_no_circles_and_lists_modules_bottom_first() {
    let table = table();
    let text = std::fs::read_to_string(root().join("layers.toml")).unwrap();
    let position = |module: &str| {
        text.find(&format!("\n{module} = ["))
            .unwrap_or_else(|| panic!("{module} is listed"))
    };
    let mut problems = Vec::new();
    for (module, uses) in &table.modules {
        for used in uses {
            if !table.modules.contains_key(used) {
                problems.push(format!("{module} uses `{used}`, which is not listed"));
            } else if position(used) > position(module) {
                problems.push(format!("{module} uses `{used}`, which is listed after it"));
            }
        }
    }
    // Every module of src/ is in the table.
    for entry in std::fs::read_dir(root().join("src")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if module != "lib" && !table.modules.contains_key(module) {
            problems.push(format!("src/{name} is not in layers.toml [modules]"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn test_code_and_comments_are_not_imports() {
    let code = "use crate::a::B; // crate::c\n#[cfg(test)]\nmod tests {\n    use crate::d;\n}\nfn f() { crate::e::g() }\n#[cfg(test)]\nmod more;\nuse mycrate::h;\n";
    let lines = code_lines(code);
    let found: Vec<&str> = lines
        .iter()
        .flat_map(|(_, line)| named_after(line, "crate::"))
        .collect();
    assert_eq!(found, ["a", "e"]);
}

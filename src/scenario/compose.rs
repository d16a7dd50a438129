//! Scenario composition: `include = ["fleet.toml"]` merges other files under a scenario, so
//! a team keeps one fleet description and many soaks.
//!
//! The files are read first ([`gather`]): the scenario, then each file it includes (paths
//! relative to the file that names them), depth-first, each file once. Their texts are then
//! laid end to end in one composed source ([`Sources`]), each starting on a line of its
//! own, and every file is parsed on its own part of it, so every span in the merged
//! document is an offset into that one source. Phase 1 and phase 2 work on it as they would
//! on a single file; [`Sources::locate`] turns a position back into the file, line and
//! column it was written at, and [`Sources::dir_at`] gives the directory a relative path
//! there is relative to.
//!
//! How files merge ([`merge`]): tables key by key, the including file's value winning over
//! an included one's (and a later include's over an earlier one's); the arrays
//! [`APPENDED`] (`[[faults]]`, `[[scripts]]`, `[[slo.metric]]`) are appended, included
//! entries first; any other value (a scalar, an array such as `stages` or `fixtures`) is
//! replaced whole.

use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::{Diagnostic, raw};

/// How deep includes may nest (the scenario's own includes are depth 1).
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// The most files one scenario may be composed of, itself included.
pub const MAX_FILES: usize = 64;
/// The largest file an `include` may name: scenario files are a few kilobytes, and a path
/// to something else (a log, a device) must not be read into memory.
pub const MAX_INCLUDED_BYTES: u64 = 4 << 20;

/// Arrays that collect entries from every file instead of being replaced: the table path of
/// each. Every other array (`stages`, `fixtures`, `allow_hosts`, …) is one value.
pub const APPENDED: [&[&str]; 3] = [&["faults"], &["scripts"], &["slo", "metric"]];

/// One file of a composed scenario.
#[derive(Debug)]
pub(super) struct SourceFile {
    /// As named: the scenario's path as given; an included file's entry joined onto the
    /// directory of the file that includes it.
    pub path: PathBuf,
    /// Its text in [`Sources::text`].
    range: Range<usize>,
    /// Its first line in [`Sources::text`] (1-based).
    first_line: usize,
    /// Lines it takes there.
    lines: usize,
    /// The files it includes that were read for it (a file already read elsewhere is
    /// merged where it was first met), in its `include` order: indices into the files.
    includes: Vec<usize>,
}

/// Every file of a scenario, laid end to end: the scenario file first.
#[derive(Debug)]
pub(super) struct Sources {
    pub text: String,
    pub files: Vec<SourceFile>,
}

impl Sources {
    /// The files `include` brought in, in the order they were read (not the scenario's own).
    pub fn included(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .skip(1)
            .map(|file| file.path.clone())
            .collect()
    }

    /// `diagnostic` (a position in [`Sources::text`]) at the file, line and column it was
    /// written at; a file's text starts on a line of its own, so the column is unchanged.
    pub fn locate(&self, mut diagnostic: Diagnostic) -> Diagnostic {
        let (index, line) = self.file_line(diagnostic.line);
        diagnostic.line = line;
        diagnostic.file = (index > 0).then(|| self.files[index].path.clone());
        diagnostic
    }

    /// The file a line of [`Sources::text`] is in, and its line there.
    pub fn file_line(&self, line: usize) -> (usize, usize) {
        let index = self
            .files
            .iter()
            .position(|file| (file.first_line..file.first_line + file.lines).contains(&line))
            .or_else(|| self.files.iter().rposition(|file| file.lines > 0))
            .unwrap_or(0);
        let first = self.files.get(index).map_or(1, |file| file.first_line);
        (index, line.saturating_sub(first) + 1)
    }

    /// The directory of the file byte `offset` of [`Sources::text`] is in: what a relative
    /// path written there is relative to.
    pub fn dir_at(&self, offset: usize) -> &Path {
        let file = self
            .files
            .iter()
            .find(|file| file.range.contains(&offset))
            .or(self.files.first());
        file.and_then(|file| file.path.parent())
            .unwrap_or(Path::new(""))
    }

    /// The composed document: every file parsed on its own part of the text and merged as
    /// the module docs say, without its `include`; or every syntax error of every file.
    pub fn document(&self) -> Result<Spanned<DeTable<'_>>, Vec<Diagnostic>> {
        let mut tables = Vec::new();
        let mut syntax = Vec::new();
        for file in &self.files {
            match raw::document(&self.text, file.range.clone()) {
                Ok(table) => tables.push(Some(shift_table(table.into_inner(), file.range.start))),
                Err(mut found) => {
                    syntax.append(&mut found);
                    tables.push(None);
                }
            }
        }
        if !syntax.is_empty() {
            return Err(syntax);
        }
        let merged = self.merged(0, &mut tables);
        Ok(Spanned::new(0..self.text.len(), merged))
    }

    /// File `index` with what it includes merged under it.
    fn merged<'s>(&self, index: usize, tables: &mut [Option<DeTable<'s>>]) -> DeTable<'s> {
        let mut merged = DeTable::new();
        for &included in &self.files[index].includes {
            let table = self.merged(included, tables);
            merge(&mut merged, table, &mut Vec::new());
        }
        let mut own = tables[index].take().unwrap_or_default();
        own.remove("include");
        merge(&mut merged, own, &mut Vec::new());
        merged
    }
}

/// Merges `over` into `base` (both at table path `path`): `over` wins, tables merge key by
/// key, the [`APPENDED`] arrays are appended.
fn merge<'s>(base: &mut DeTable<'s>, over: DeTable<'s>, path: &mut Vec<String>) {
    for (key, value) in over {
        let name: &str = key.get_ref();
        path.push(name.to_owned());
        let merged = match (base.remove(name), value) {
            (Some(before), value) => merge_values(before, value, path),
            (None, value) => value,
        };
        path.pop();
        base.insert(key, merged);
    }
}

fn merge_values<'s>(
    before: Spanned<DeValue<'s>>,
    after: Spanned<DeValue<'s>>,
    path: &mut Vec<String>,
) -> Spanned<DeValue<'s>> {
    let span = after.span();
    match (before.into_inner(), after.into_inner()) {
        (DeValue::Table(mut base), DeValue::Table(over)) => {
            merge(&mut base, over, path);
            Spanned::new(span, DeValue::Table(base))
        }
        (DeValue::Array(base), DeValue::Array(over))
            if APPENDED.contains(&&path_strs(path)[..]) =>
        {
            let items: DeArray<'s> = base.into_iter().chain(over).collect();
            Spanned::new(span, DeValue::Array(items))
        }
        (_, after) => Spanned::new(span, after),
    }
}

fn path_strs(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

/// `table` with every span moved `by` bytes on.
fn shift_table(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    table
        .into_iter()
        .map(|(key, value)| {
            let span = key.span();
            (
                Spanned::new(span.start + by..span.end + by, key.into_inner()),
                shift(value, by),
            )
        })
        .collect()
}

fn shift(value: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = value.span();
    let inner = match value.into_inner() {
        DeValue::Table(table) => DeValue::Table(shift_table(table, by)),
        DeValue::Array(items) => {
            DeValue::Array(items.into_iter().map(|item| shift(item, by)).collect())
        }
        other => other,
    };
    Spanned::new(span.start + by..span.end + by, inner)
}

/// A file read for a scenario, before the texts are laid end to end.
struct Read {
    path: PathBuf,
    /// With symlinks resolved: what tells two names of one file apart.
    canonical: Option<PathBuf>,
    text: String,
    includes: Vec<usize>,
}

/// Reads `source` (the scenario file at `path`) and every file it includes: the composed
/// sources, or every problem with an `include` (each at its entry, in the file that has
/// it) and every included file that is not UTF-8.
pub(super) fn gather(source: &str, path: &Path) -> Result<Sources, Vec<Diagnostic>> {
    let mut gatherer = Gatherer {
        files: vec![Read {
            path: path.to_path_buf(),
            canonical: path.canonicalize().ok(),
            text: source.to_owned(),
            includes: Vec::new(),
        }],
        diagnostics: Vec::new(),
    };
    gatherer.visit(0, &mut vec![0]);
    if !gatherer.diagnostics.is_empty() {
        return Err(gatherer.diagnostics);
    }
    Ok(lay_out(gatherer.files))
}

fn lay_out(files: Vec<Read>) -> Sources {
    let mut text = String::new();
    let mut laid = Vec::new();
    let mut line = 1;
    for file in files {
        let start = text.len();
        text.push_str(&file.text);
        if !file.text.is_empty() && !file.text.ends_with('\n') {
            text.push('\n');
        }
        let lines = text[start..].matches('\n').count();
        laid.push(SourceFile {
            path: file.path,
            range: start..text.len(),
            first_line: line,
            lines,
            includes: file.includes,
        });
        line += lines;
    }
    Sources { text, files: laid }
}

struct Gatherer {
    files: Vec<Read>,
    diagnostics: Vec<Diagnostic>,
}

impl Gatherer {
    /// Reads what file `index` includes, and what they include; `chain` is the files from
    /// the scenario down to it.
    fn visit(&mut self, index: usize, chain: &mut Vec<usize>) {
        let entries = match include_entries(&self.files[index].text) {
            Ok(entries) => entries,
            Err(problems) => {
                for (span, message) in problems {
                    self.error(index, span.start, message);
                }
                return;
            }
        };
        for entry in entries {
            let Some(included) = self.read(index, &entry, chain) else {
                continue;
            };
            self.files[index].includes.push(included);
            chain.push(included);
            self.visit(included, chain);
            chain.pop();
        }
    }

    /// Reads the file `entry` of file `from` names: its index, or None when it was read
    /// before (merged once, where first met) or cannot be (an error at the entry).
    fn read(&mut self, from: usize, entry: &Spanned<String>, chain: &[usize]) -> Option<usize> {
        let at = entry.span().start;
        let name = entry.get_ref();
        if name.trim().is_empty() {
            self.error(from, at, "include entry must not be empty");
            return None;
        }
        let dir = self.files[from].path.parent().unwrap_or(Path::new(""));
        let path = dir.join(name);
        let text = match read_included(&path) {
            Ok(text) => text,
            Err(message) => {
                self.error(from, at, format!("cannot include {name:?}: {message}"));
                return None;
            }
        };
        let canonical = path.canonicalize().ok();
        let same = |file: &Read| file.canonical.is_some() && file.canonical == canonical;
        if let Some(position) = chain.iter().position(|&index| same(&self.files[index])) {
            let mut names: Vec<String> = chain[position..]
                .iter()
                .map(|&index| self.files[index].path.display().to_string())
                .collect();
            names.push(path.display().to_string());
            let message = format!("include cycle: {}", names.join(" includes "));
            self.error(from, at, message);
            return None;
        }
        if self.files.iter().any(same) {
            return None;
        }
        if chain.len() > MAX_INCLUDE_DEPTH {
            let message = format!(
                "cannot include {name:?}: includes nest more than {MAX_INCLUDE_DEPTH} deep"
            );
            self.error(from, at, message);
            return None;
        }
        if self.files.len() >= MAX_FILES {
            let message =
                format!("cannot include {name:?}: a scenario is made of at most {MAX_FILES} files");
            self.error(from, at, message);
            return None;
        }
        let text = match String::from_utf8(text) {
            Ok(text) => text,
            Err(error) => {
                let file = Some(path.clone());
                self.diagnostics
                    .extend(super::error::not_utf8(error.as_bytes()).into_iter().map(
                        |diagnostic| Diagnostic {
                            file: file.clone(),
                            ..diagnostic
                        },
                    ));
                return None;
            }
        };
        self.files.push(Read {
            path,
            canonical,
            text,
            includes: Vec::new(),
        });
        Some(self.files.len() - 1)
    }

    /// A problem at byte `offset` of file `index`.
    fn error(&mut self, index: usize, offset: usize, message: impl Into<String>) {
        let file = &self.files[index];
        let mut diagnostic = Diagnostic::at(&file.text, offset, message);
        diagnostic.file = (index > 0).then(|| file.path.clone());
        self.diagnostics.push(diagnostic);
    }
}

/// A regular file of at most [`MAX_INCLUDED_BYTES`], read; or why not, in words.
fn read_included(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => format!("{shown} does not exist"),
        _ => format!("cannot read {shown}: {error}"),
    })?;
    if metadata.is_dir() {
        return Err(format!("{shown} is a directory"));
    }
    if !metadata.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if metadata.len() > MAX_INCLUDED_BYTES {
        return Err(format!(
            "{shown} is {} bytes, over the {} a scenario file may be",
            metadata.len(),
            crate::units::format_byte_size(MAX_INCLUDED_BYTES)
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_INCLUDED_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|error| format!("cannot read {shown}: {error}"))?;
    if bytes.len() as u64 > MAX_INCLUDED_BYTES {
        return Err(format!(
            "{shown} is over the {} a scenario file may be",
            crate::units::format_byte_size(MAX_INCLUDED_BYTES)
        ));
    }
    Ok(bytes)
}

/// What is wrong with an `include`, and where in its file.
type Problem = (Range<usize>, String);

/// The entries of a file's top-level `include`, with their spans in the file; or what is
/// wrong with it. A file with syntax errors includes nothing (its errors are reported when
/// it is parsed).
fn include_entries(text: &str) -> Result<Vec<Spanned<String>>, Vec<Problem>> {
    let Ok(document) = DeTable::parse(text) else {
        return Ok(Vec::new());
    };
    let Some(value) = document.get_ref().get("include") else {
        return Ok(Vec::new());
    };
    let DeValue::Array(items) = value.get_ref() else {
        return Err(vec![(
            value.span(),
            format!(
                r#"include is a list of files, e.g. include = ["fleet.toml"]; found {}"#,
                with_article(value.get_ref().type_str())
            ),
        )]);
    };
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(name) => entries.push(Spanned::new(item.span(), name.to_string())),
            other => problems.push((
                item.span(),
                format!(
                    "include entries are file paths (strings), found {}",
                    with_article(other.type_str())
                ),
            )),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// "an integer", "a string".
fn with_article(type_name: &str) -> String {
    let article = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {type_name}")
}

/// The composed scenario `scenario` came from (`document`, merged and without `include`) as
/// one TOML file for the run directory: the name, seed and time scale the run used,
/// fixtures as the absolute files validation decoded, and every string masked as the
/// journal masks it (a URL's userinfo and query values, a secret-looking parameter), so it
/// may be shared with the run's reports. A scenario whose URLs carried no secret validates
/// as it is and is the same scenario.
pub(super) fn render(scenario: &super::Scenario, document: &toml::Table) -> String {
    use toml::Value;
    let mut table = document.clone();
    table.insert("name".into(), Value::String(scenario.name.clone()));
    // A `--seed` over what TOML holds is in the journal's run_started only.
    match i64::try_from(scenario.seed) {
        Ok(seed) => table.insert("seed".into(), Value::Integer(seed)),
        Err(_) => table.remove("seed"),
    };
    if scenario.time_scale != 1.0 || table.contains_key("time_scale") {
        table.insert("time_scale".into(), Value::Float(scenario.time_scale));
    }
    if !scenario.calls.fixtures.is_empty()
        && let Some(Value::Table(calls)) = table.get_mut("calls")
    {
        let files = scenario.calls.fixtures.iter().map(|fixture| {
            let path = fixture.path.to_string_lossy();
            // An entry with glob characters is a glob: one that matches only this file.
            let entry = if path.contains(['*', '?', '[']) {
                glob::Pattern::escape(&path)
            } else {
                path.into_owned()
            };
            Value::String(entry)
        });
        calls.insert("fixtures".into(), Value::Array(files.collect()));
    }
    let mut value = Value::Table(table);
    mask(&mut value);
    let mut text = String::from("# The scenario as run, composed of:\n");
    for path in std::iter::once(&scenario.path).chain(&scenario.includes) {
        text.push_str(&format!("#   {}\n", path.display()));
    }
    text.push_str(&toml::to_string(&value).unwrap_or_default());
    text
}

/// Masks every string in `value` as `crate::redact` masks text; a table entry as
/// `key=value`, so a secret-looking key (`token`) masks its value.
fn mask(value: &mut toml::Value) {
    use toml::Value;
    match value {
        Value::String(text) => *text = crate::redact::text(text).into_owned(),
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                if let Value::String(text) = item {
                    let pair = format!("{key}={text}");
                    let masked = crate::redact::text(&pair);
                    *text = masked
                        .strip_prefix(&format!("{key}="))
                        .unwrap_or(&masked)
                        .to_owned();
                } else {
                    mask(item);
                }
            }
        }
        _ => {}
    }
}

//! What can go wrong loading a scenario, with positions a person can jump to.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Loading a scenario file failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read (missing, unreadable, a directory).
    #[error("cannot read scenario file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file was read but is not a valid scenario; one line per problem.
    #[error("{}", DiagnosticList { path, diagnostics })]
    Invalid {
        path: PathBuf,
        /// Sorted by position; never empty.
        diagnostics: Vec<Diagnostic>,
    },
}

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file it is in when that is one the scenario includes (`include = […]`); None: the
    /// scenario file itself.
    pub file: Option<PathBuf>,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters (not bytes) from the start of the line.
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at byte `offset` of `source` (clamped to the source).
    pub(super) fn at(source: &str, offset: usize, message: impl Into<String>) -> Self {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Diagnostic {
            file: None,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
    }
}

/// Past this many invalid UTF-8 sequences, a file is binary: the rest are counted.
const MAX_ENCODING_ERRORS: usize = 10;

/// Where `bytes` are not UTF-8: one diagnostic per invalid sequence (counted as one
/// character, as a lossy decoder shows it), the first [`MAX_ENCODING_ERRORS`] of them.
pub(super) fn not_utf8(bytes: &[u8]) -> Vec<Diagnostic> {
    let (mut line, mut column) = (1, 1);
    let mut found = Vec::new();
    let mut more = 0usize;
    for chunk in bytes.utf8_chunks() {
        for character in chunk.valid().chars() {
            if character == '\n' {
                (line, column) = (line + 1, 1);
            } else {
                column += 1;
            }
        }
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        if found.len() < MAX_ENCODING_ERRORS {
            let hex: Vec<String> = invalid.iter().map(|byte| format!("0x{byte:02X}")).collect();
            found.push(Diagnostic {
                file: None,
                line,
                column,
                message: format!(
                    "invalid UTF-8 (byte {}): a scenario file must be UTF-8 text",
                    hex.join(" ")
                ),
            });
        } else {
            more += 1;
        }
        column += 1;
    }
    if more > 0
        && let Some(last) = found.last_mut()
    {
        last.message
            .push_str(&format!(" ({more} more invalid sequences after this one)"));
    }
    found
}

/// Problems that do not stop a run but change what it tests (a fault never injected),
/// each as `file:line:column: warning: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warnings {
    /// The scenario file: where a warning with no `file` of its own is.
    pub path: PathBuf,
    /// Sorted by position; may be empty.
    pub diagnostics: Vec<Diagnostic>,
}

impl Warnings {
    /// One line per warning, without a trailing newline.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.diagnostics.iter().map(|diagnostic| {
            format!(
                "{}:{}:{}: warning: {}",
                diagnostic.file.as_deref().unwrap_or(&self.path).display(),
                diagnostic.line,
                diagnostic.column,
                diagnostic.message
            )
        })
    }
}

struct DiagnosticList<'a> {
    path: &'a Path,
    diagnostics: &'a [Diagnostic],
}

impl fmt::Display for DiagnosticList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.diagnostics.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                diagnostic.file.as_deref().unwrap_or(self.path).display(),
                diagnostic.line,
                diagnostic.column,
                diagnostic.message
            )?;
        }
        Ok(())
    }
}

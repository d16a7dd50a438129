//! What can go wrong loading a scenario, with positions a person can jump to.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Loading a scenario file failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read (missing, unreadable, not UTF-8).
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
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
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
                self.path.display(),
                diagnostic.line,
                diagnostic.column,
                diagnostic.message
            )?;
        }
        Ok(())
    }
}

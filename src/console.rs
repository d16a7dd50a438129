//! Lines for the terminal that never take the process down.
//!
//! `println!` and `eprintln!` panic when the write fails, and writes do fail where voxsoak
//! runs: a pipe whose reader is gone (EPIPE; Rust ignores SIGPIPE, so the write returns the
//! error instead of killing the process), a terminal hung up after SIGHUP (EIO), a full
//! disk. A harness that panics there loses its summary, and a fleet whose signal handler
//! panics there never stops. Output is for a person; when nobody can read it, it is dropped.
//!
//! The live view lives here too (the spinner line, elapsed clocks, lines printed above the
//! spinner), so that every part that reports as it goes (observers, chaos by hand, the run)
//! uses it without importing the report.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

/// Writes `line` and a newline to stdout; a failed write is ignored.
pub fn outln(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Writes `text` to stdout as it is (no newline added); a failed write is ignored.
pub fn out(text: impl Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{text}");
    let _ = stdout.flush();
}

/// Whether the terminal summary is drawn in colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    /// Plain text: files, pipes, CI (`CI` set), `NO_COLOR`, `TERM=dumb`.
    Plain,
    /// ANSI colours: green for a pass, red for a failure, yellow for what was not judged.
    Colour,
}

impl Paint {
    fn wrap(self, text: &str, code: &str) -> String {
        match self {
            Paint::Plain => text.to_owned(),
            Paint::Colour => format!("\x1b[{code}m{text}\x1b[0m"),
        }
    }

    pub fn good(self, text: &str) -> String {
        self.wrap(text, "1;32")
    }

    pub fn bad(self, text: &str) -> String {
        self.wrap(text, "1;31")
    }

    pub fn warn(self, text: &str) -> String {
        self.wrap(text, "1;33")
    }
}

/// Colour for the summary on stdout: only on a terminal, and never with `NO_COLOR` set
/// (no-color.org), `TERM=dumb`, or `CI` set (GitHub Actions, GitLab CI and most others set it:
/// a CI log keeps the text plain even where the job runs in a pseudo-terminal).
pub fn colour_stdout() -> Paint {
    colour_for(std::io::stdout().is_terminal(), |name| {
        std::env::var_os(name)
    })
}

/// Colour or not, on a terminal or not, with the environment variables `var` gives.
fn colour_for(terminal: bool, var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Paint {
    let set = |name: &str| var(name).is_some_and(|value| !value.is_empty());
    let dumb = var("TERM").is_some_and(|term| term == "dumb");
    if terminal && !set("NO_COLOR") && !set("CI") && !dumb {
        Paint::Colour
    } else {
        Paint::Plain
    }
}

/// Writes `line` and a newline to stderr; a failed write is ignored.
pub fn errln(line: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `HH:MM:SS`, as the live lines show elapsed time.
pub fn clock(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// A one-line spinner with a message, drawn on stderr at most 4 times a second.
pub fn live_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
    );
    bar
}

/// Lines about the run printed as things happen (a fault detected): above the live bar on a
/// terminal, plain on stderr otherwise, nowhere with `--quiet` (the default).
#[derive(Debug, Clone, Default)]
pub struct LiveLines {
    /// The run's live bar, when stderr is a terminal: lines go above it, not through it.
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
}

impl LiveLines {
    /// Lines above `bar`, or plain ones when there is none and `plain`.
    pub fn new(bar: Option<indicatif::ProgressBar>, plain: bool) -> Self {
        LiveLines { bar, plain }
    }

    /// Prints `line` as one line: what came from the fleet in it (an alert's name) is
    /// escaped, secrets masked.
    pub fn say(&self, line: &str) {
        let line = crate::escape::terminal_line(line);
        let line = line.as_ref();
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.plain => errln(format_args!("{line}")),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `colour_for` a terminal (or not) with just the environment variables `vars`.
    fn colour(terminal: bool, vars: &[(&str, &str)]) -> Paint {
        colour_for(terminal, |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.into())
        })
    }

    #[test]
    fn colour_only_on_a_terminal_outside_ci_without_no_color_or_a_dumb_term() {
        assert_eq!(colour(true, &[("TERM", "xterm-256color")]), Paint::Colour);
        assert_eq!(colour(false, &[]), Paint::Plain, "a pipe or a file");
        assert_eq!(colour(true, &[("NO_COLOR", "1")]), Paint::Plain, "NO_COLOR");
        assert_eq!(colour(true, &[("TERM", "dumb")]), Paint::Plain, "TERM=dumb");
        assert_eq!(colour(true, &[("CI", "true")]), Paint::Plain, "CI=true");
        assert_eq!(colour(true, &[("CI", "1")]), Paint::Plain, "CI=1");
        // Set but empty is not set (as no-color.org says of NO_COLOR).
        assert_eq!(colour(true, &[("CI", "")]), Paint::Colour, "CI=");
        assert_eq!(
            colour(true, &[("NO_COLOR", "")]),
            Paint::Colour,
            "NO_COLOR="
        );
        assert_eq!(Paint::Colour.bad("FAIL"), "\x1b[1;31mFAIL\x1b[0m");
        assert_eq!(Paint::Plain.bad("FAIL"), "FAIL");
    }
}

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
use std::io::Write;

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

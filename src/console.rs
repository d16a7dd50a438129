//! Lines for the terminal that never take the process down.
//!
//! `println!` and `eprintln!` panic when the write fails, and writes do fail where voxsoak
//! runs: a pipe whose reader is gone (EPIPE; Rust ignores SIGPIPE, so the write returns the
//! error instead of killing the process), a terminal hung up after SIGHUP (EIO), a full
//! disk. A harness that panics there loses its summary, and a fleet whose signal handler
//! panics there never stops. Output is for a person; when nobody can read it, it is dropped.

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

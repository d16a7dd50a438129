//! The `voxsoak` command line: parse, call into the library, map the result to an exit code.
//! A panic anywhere on this path is a bug in voxsoak: exit 2 (`exit::HARNESS_ERROR`) with
//! the reason on stderr, never Rust's 101.

use std::process::ExitCode;

use clap::Parser;
use voxsoak::cli::Cli;

fn main() -> ExitCode {
    let code =
        voxsoak::exit::unless_panicked(|| voxsoak::cli::main(Cli::parse()), &mut std::io::stderr());
    ExitCode::from(code as u8)
}

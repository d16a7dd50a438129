//! The `voxsoak` command line: parse, call into the library, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use voxsoak::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(voxsoak::cli::main(cli) as u8)
}

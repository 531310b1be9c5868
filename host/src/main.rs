//! `backlog-bridge`: the command line (`docs/cli.md`).
//!
//! Exit codes: 0 success, 1 tool error (including malformed `--params-json`), 2 usage or
//! configuration error, 3 transport or authentication failure.

mod cli;
mod exit;
mod output;
mod run_job;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}

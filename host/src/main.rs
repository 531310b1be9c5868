//! `backlog-bridge`: the command line (`docs/cli.md`).
//!
//! Exit codes: 0 success, 1 tool error (including malformed `--params-json`), 2 usage or
//! configuration error, 3 transport or authentication failure.

mod cli;
mod exit;
mod output;
mod run_job;

use std::process::ExitCode;

/// mimalloc: a call allocates and frees many small buffers on several worker threads, and
/// glibc's allocator spent a tenth of the router's time in `malloc`/`free` and their
/// consolidation (`README.md`, Benchmark).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}

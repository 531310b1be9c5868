//! Builds the guest components of the workspace for `wasm32-wasip2` into `OUT_DIR`, with a
//! target dir of their own, once per build, and exposes their paths to the host crate as
//! `cargo:rustc-env` variables (the pattern of wasmtime's test-programs):
//!
//! - `BACKLOG_TOOL_WASM`: `plugin/backlog-tool`, embedded in the binary as a builtin.
//! - `SCHEDULER_WASM`: `plugin/scheduler`, the job runner, embedded in the binary.
//! - `HOSTILE_GUEST_WASM`: `tests/components/hostile`, used only by the sandbox tests.
//! - `REMEMBER_GUEST_WASM`: `tests/components/remember`, used only by the isolation tests.
//!
//! Each also gets `<NAME>_SHA256`, the SHA-256 hex of the component's bytes.

fn main() {
    build(&[
        ("backlog-tool", "backlog_tool", "BACKLOG_TOOL_WASM"),
        ("scheduler", "scheduler", "SCHEDULER_WASM"),
        ("hostile-guest", "hostile_guest", "HOSTILE_GUEST_WASM"),
        ("remember-guest", "remember_guest", "REMEMBER_GUEST_WASM"),
    ]);
}
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

/// Builds each `(package, artifact, env_name)` and sets `cargo:rustc-env=env_name=<path>`.
fn build(guests: &[(&str, &str, &str)]) {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .find(|d| d.join("Cargo.lock").exists() || d.join("rust-toolchain.toml").exists())
        .unwrap_or(&manifest_dir)
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let target_dir = out_dir.join("guest-target");
    // Rebuild the guests when their sources, the WIT, the lock file or the workspace
    // manifest (which holds the `guest` profile) change.
    for input in [
        "wit",
        "plugin",
        "tests/components",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }

    // A cargo-fuzz build (`--cfg fuzzing`, fuzz/) runs on nightly, which need not have the
    // wasm32-wasip2 target: its guests are built by the stable toolchain (the `mcp_dispatch`
    // target runs them).
    let mut cmd = if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let mut c = Command::new("rustup");
        c.args(["run", "stable", "cargo"]);
        for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC"] {
            c.env_remove(var);
        }
        c
    } else {
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
    };
    cmd.current_dir(&root)
        .arg("build")
        .arg("--profile=guest")
        .arg("--target=wasm32-wasip2")
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _, _) in guests {
        cmd.arg("-p").arg(package);
    }
    // The outer build's flags and wrappers (clippy, coverage, host RUSTFLAGS) are not for guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for guests: {e}"));
    if !status.success() {
        panic!(
            "building guest components failed ({status}): see the errors above \
             (a missing target needs: rustup target add wasm32-wasip2)"
        );
    }
    for (_, artifact, env_name) in guests {
        let path = target_dir
            .join("wasm32-wasip2/guest")
            .join(format!("{artifact}.wasm"));
        assert_exists(&path);
        println!("cargo:rustc-env={env_name}={}", path.display());
        // The digest too, so that a process does not hash its embedded components at start
        // (SHA-256 of ~1.5 MB per component: ~2 ms of every cold `call`).
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let hex: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("cargo:rustc-env={env_name}_SHA256={hex}");
    }
}

fn assert_exists(path: &Path) {
    if !path.exists() {
        panic!("guest build did not produce {}", path.display());
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set by cargo"))
}

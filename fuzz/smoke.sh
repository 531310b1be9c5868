#!/usr/bin/env bash
# Runs every fuzz target (or the targets named after SECONDS) for SECONDS each (default 60),
# one at a time, one process (no -jobs: that would send the output to fuzz-N.log): the
# machine has two cores. Needs nightly and cargo-fuzz (installed
# when missing). Prints each target's last libFuzzer lines (execs, cov, ft) and keeps the full
# log in fuzz/work/TARGET.log. A crash lands in fuzz/artifacts/TARGET/; once fixed, copy it to
# fuzz/regressions/TARGET/ (docs/testing.md). Exit 1 when any target failed.
#
# Built without a sanitizer (`-s none`: the targets are safe Rust; ASan would halve the execs
# on two cores) and with debug assertions (`-a`: an integer overflow is a crash, not a wrap).
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
# The guests of `mcp_dispatch` are built by the stable toolchain (host/build.rs).
if ! rustup +stable target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add --toolchain stable wasm32-wasip2
fi
flags=(-s none -a)
# Targets that read config files write them to a scratch dir: keep it in memory when possible.
if [ -z "${TMPDIR:-}" ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
cargo +nightly fuzz build "${flags[@]}" || exit 1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
failed=()
for t in "${targets[@]}"; do
    echo "== $t ($secs s)"
    # New inputs go to work/ (not checked in); corpus/ holds the checked-in seeds.
    mkdir -p "work/$t" "corpus/$t"
    cargo +nightly fuzz run "${flags[@]}" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 >"work/$t.log" 2>&1
    rc=$?
    grep -E "^#[0-9]+.*(DONE|pulse)|Done [0-9]+ runs|ERROR|panicked" "work/$t.log" | tail -n 3
    if [ "$rc" -ne 0 ]; then
        failed+=("$t")
        echo "!! $t failed (exit $rc): see fuzz/work/$t.log and fuzz/artifacts/$t/"
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi

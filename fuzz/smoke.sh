#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one at a time, one job: the machine
# has two cores. Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). A crash lands in
# fuzz/artifacts/TARGET/; copy it to fuzz/regressions/TARGET/ once fixed (docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
for t in $(cargo +nightly fuzz list); do
    echo "== $t ($secs s)"
    # New inputs go to work/ (not checked in); corpus/ holds the checked-in seeds.
    mkdir -p "work/$t" "corpus/$t"
    cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- -max_total_time="$secs" -jobs=1 -workers=1 2>&1 \
        | grep -E "^#[0-9]+.*(DONE|pulse)|Done [0-9]+ runs|ERROR|panicked" | tail -n 3
done

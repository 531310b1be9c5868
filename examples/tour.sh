#!/usr/bin/env bash
# The README's first command: builds the bridge and runs the main job on the embedded default
# store (JSONL under ops/backlog, no database): weekly generation from the example platform
# digest, the dashboard, a little triage, re-generation (triage survives), and a cleanup.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build -q -p backlog-bridge
export BACKLOG_BACKEND="${BACKLOG_BACKEND:-jsonl}" RUST_LOG="${RUST_LOG:-warn}"
bb() { printf '\n$ backlog-bridge %s\n' "$*" >&2; ./target/debug/backlog-bridge "$@"; }

# Digests come from the platform's architecture_pressure_tool; the example stands in for one.
mkdir -p ops/reports/platform
cp -n examples/reports/platform/2026-48.json ops/reports/platform/ 2>/dev/null || true

bb call backlog_tool auto_generate_weekly --agent scheduler --params-json '{"env":"prod"}'
bb call backlog_tool dashboard --agent viewer --params-json '{"env":"prod"}'

# Triage the gateway's architecture review: pick it up, comment, give it an explicit owner.
id=$(./target/debug/backlog-bridge call backlog_tool list \
        --params-json '{"env":"prod","service":"gateway","category":"arch_review","limit":1}' |
     sed -n 's/.*"id":"\(bl_[0-9a-f]*\)".*/\1/p')
bb call backlog_tool set_status --params-json "{\"id\":\"$id\",\"status\":\"in_progress\",\"comment\":\"picked up in the tour\"}"
bb call backlog_tool add_comment --params-json "{\"id\":\"$id\",\"message\":\"design doc drafted\"}"
bb call backlog_tool upsert --params-json "{\"id\":\"$id\",\"owner\":\"platform-team\"}"

# Re-generation on the same digest changes nothing a person set.
bb call backlog_tool auto_generate_weekly --agent scheduler --params-json '{"env":"prod"}'
bb call backlog_tool get --agent viewer --params-json "{\"id\":\"$id\"}"

bb call backlog_tool cleanup --agent scheduler --params-json '{"dry_run":true}'
echo
echo "Store: ops/backlog/items.jsonl ($(wc -l < ops/backlog/items.jsonl) lines), ops/backlog/events.jsonl" >&2

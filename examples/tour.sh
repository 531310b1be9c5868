#!/usr/bin/env bash
# The README's first command: builds the bridge and runs a short tour of the backlog on the
# embedded default store (JSONL under ops/backlog, no database).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build -q -p backlog-bridge
bb() { echo "\$ backlog-bridge $*" >&2; ./target/debug/backlog-bridge "$@"; echo; }
export BACKLOG_BACKEND="${BACKLOG_BACKEND:-jsonl}" RUST_LOG="${RUST_LOG:-warn}"

item=$(bb call backlog_tool upsert --params-json '{"dedupe_key":"tour:gateway:retries","env":"prod","service":"gateway","category":"slo_hardening","title":"Bound gateway retries"}')
echo "$item"
id=$(printf '%s' "$item" | sed -n 's/.*"id":"\(bl_[0-9a-f]*\)".*/\1/p')
bb call backlog_tool set_status --params-json "{\"id\":\"$id\",\"status\":\"in_progress\",\"comment\":\"picked up by the tour\"}"
bb call backlog_tool add_comment --params-json "{\"id\":\"$id\",\"message\":\"retry budget drafted\"}"
bb call backlog_tool list --params-json '{"env":"prod","limit":5}'
bb call backlog_tool get --params-json "{\"id\":\"$id\",\"include_events\":true}" --agent viewer
echo "A viewer may read but not write:" >&2
bb call backlog_tool add_comment --params-json "{\"id\":\"$id\",\"message\":\"nope\"}" --agent viewer || true

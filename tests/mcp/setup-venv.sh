#!/usr/bin/env bash
# Creates (or reuses) a throwaway virtualenv with the official MCP Python SDK at a pinned
# version, and prints its python interpreter path on stdout (the last line).
#
#   tests/mcp/setup-venv.sh [VENV_DIR]    # default: target/mcp-venv
#
# The e2e tests call it with a directory under CARGO_TARGET_TMPDIR. Exits non-zero (and the
# tests fail) if Python, venv or the package index is unavailable: the suite never skips.
set -euo pipefail

# Pinned: the SDK and the protocol move fast. Bump deliberately, then run the MCP suites.
MCP_VERSION="2.3.0"

here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../../target/mcp-venv}"
python="${PYTHON:-python3}"
stamp="$venv/.mcp-$MCP_VERSION"

if [[ ! -f "$stamp" ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "mcp==$MCP_VERSION" >&2
    touch "$stamp"
fi
"$venv/bin/python" -c "import mcp" >&2
echo "$venv/bin/python"

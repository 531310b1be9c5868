#!/usr/bin/env bash
# Runs schemathesis (pinned, from PyPI, in a throwaway virtualenv) against a running
# `backlog-bridge serve`: every operation of its /openapi.json, a bounded number of
# examples each, with the key in $KEY. Fails on any 5xx or any response that does not match
# the document.
#
#   KEY=... tests/openapi/schemathesis.sh BASE_URL [VENV_DIR]   # default venv: target/schemathesis-venv
#
# Exits non-zero if Python, venv or the package index is unavailable: the suite never skips.
set -euo pipefail

# Pinned: bump deliberately, then run tests/all/openapi.rs.
SCHEMATHESIS_VERSION="4.32.5"
# Examples per operation: keeps the run (and CI) to a minute or two.
MAX_EXAMPLES="${MAX_EXAMPLES:-20}"

base="${1:?usage: KEY=... $0 BASE_URL [VENV_DIR]}"
: "${KEY:?set KEY to an API key (the operator key)}"
here="$(cd "$(dirname "$0")" && pwd)"
venv="${2:-$here/../../target/schemathesis-venv}"
python="${PYTHON:-python3}"
stamp="$venv/.schemathesis-$SCHEMATHESIS_VERSION"

if [[ ! -f "$stamp" ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" >&2
    touch "$stamp"
fi

# Schemathesis keeps a `.schemathesis` directory in its working directory: the venv's.
venv="$(cd "$venv" && pwd)"
cd "$venv"
exec "$venv/bin/st" run "$base/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $KEY" \
    --checks not_a_server_error,response_schema_conformance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --generation-database none \
    --request-timeout 30 \
    --workers 1 \
    --no-color \
    --seed 1

#!/usr/bin/env bash
# Schemathesis against Bindery's own /openapi.json: thousands of generated requests, signed as
# the first account, none of which may answer 5xx or disagree with the document; then
# `bindery verify` must pass on the data dir (run.py has the details).
#
#   tests/schemathesis/run.sh [schemathesis run args...]
#
# Sets up tests/schemathesis/.venv when missing or out of date (requirements.txt pins
# schemathesis and its dependencies), then runs run.py against $BINDERY_BIN (default
# <repo>/target/debug/bindery; build it first with `make build`). Knobs: SCHEMATHESIS_MAX_EXAMPLES,
# SCHEMATHESIS_WORKERS, SCHEMATHESIS_SEED, SCHEMATHESIS_KEEP=1 (see run.py).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
requirements="$here/requirements.txt"
stamp="$venv/.schemathesis-requirements"
# shellcheck source=../support/python-venv.sh
source "$root/tests/support/python-venv.sh"

exec "$venv/bin/python" "$here/run.py" "$@"

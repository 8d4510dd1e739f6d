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

if [[ -x "$venv/bin/python" ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "run.sh: $venv is broken; recreating it" >&2
  rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi

# Install only when requirements.txt changed since the last install into this venv.
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
  echo "$want" >"$stamp"
fi

export BINDERY_BIN="${BINDERY_BIN:-$root/target/debug/bindery}"
if [[ ! -x "$BINDERY_BIN" ]]; then
  echo "run.sh: no Bindery binary at $BINDERY_BIN (run \`make build\` or set BINDERY_BIN)" >&2
  exit 1
fi
export PYTHONDONTWRITEBYTECODE=1

exec "$venv/bin/python" "$here/run.py" "$@"

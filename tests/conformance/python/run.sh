#!/usr/bin/env bash
# The Python conformance suite: drives a real Bindery through Twilio's official `twilio`
# helper library (tests/conformance/python/requirements.txt pins it).
#
#   tests/conformance/python/run.sh [pytest args...]
#
# Sets up <repo>/.venv when missing or out of date, then runs pytest on this folder against
# $BINDERY_BIN (default <repo>/target/debug/bindery; build it first with `make build`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="$root/.venv"
requirements="$here/requirements.txt"
stamp="$venv/.conformance-python-requirements"

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

cd "$here"
exec "$venv/bin/python" -m pytest "$here" "$@"

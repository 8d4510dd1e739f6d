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
# shellcheck source=../../support/python-venv.sh
source "$root/tests/support/python-venv.sh"

cd "$here"
exec "$venv/bin/python" -m pytest "$here" "$@"

#!/usr/bin/env bash
# The console's browser suite: a real Bindery (direct delivery to the APNs stand-in) driven
# through its /console pages by headless chromium (Debian's chromium and chromium-driver,
# which tests/setup.sh installs), with Selenium from PyPI (requirements.txt pins it).
#
#   tests/console/run.sh [pytest args...]
#
# Sets up <repo>/.venv-console when missing or out of date, then runs pytest on this folder
# against $BINDERY_BIN and $BINDERY_STANDIN_BIN (default <repo>/target/debug/…; build them
# first with `make build`). Screenshots of every page go to <repo>/target/console-screenshots.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv-console"
requirements="$here/requirements.txt"
stamp="$venv/.console-requirements"
# shellcheck source=../support/python-venv.sh
source "$root/tests/support/python-venv.sh"

export BINDERY_STANDIN_BIN="${BINDERY_STANDIN_BIN:-$root/target/debug/bindery-standin}"
export CONSOLE_SCREENSHOTS="${CONSOLE_SCREENSHOTS:-$root/target/console-screenshots}"
for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (tests/setup.sh installs it)" >&2; exit 1; }
done
cd "$here"
exec "$venv/bin/python" -m pytest "$here" "$@"

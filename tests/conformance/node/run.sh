#!/usr/bin/env bash
# Conformance suite: drives a real Bindery through Twilio's official Node helper library
# (twilio, pinned in package.json / package-lock.json). Called by `make test-node`.
#   BINDERY_BIN        the binary to test (default: <repo root>/target/debug/bindery, already built)
#   BINDERY_KEEP_DATA  set to keep the temporary data dir
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$here"

export BINDERY_BIN="${BINDERY_BIN:-$root/target/debug/bindery}"
if [[ ! -x "$BINDERY_BIN" ]]; then
  echo "run.sh: no Bindery binary at $BINDERY_BIN (run \`cargo build\` first or set BINDERY_BIN)" >&2
  exit 1
fi

command -v node >/dev/null || { echo "run.sh: node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "run.sh: npm is not installed" >&2; exit 1; }

# (Re)install exactly what package-lock.json pins when node_modules is missing or was installed
# from another lock file (the stamp records the lock file's hash).
stamp="node_modules/.bindery-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$want" >"$stamp"
fi

exec node --test test/bindings.test.mjs

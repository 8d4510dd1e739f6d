#!/usr/bin/env bash
# cargo deny, offline, against the RustSec snapshot tests/setup.sh checked out: advisories,
# licenses, bans and sources of Bindery's dependencies. First it proves the advisory check can
# fail: a scratch crate pinned to smallvec 1.6.0 (RUSTSEC-2021-0003) must be refused with the
# same deny.toml, so a check that silently read no database would be caught here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
db=target/advisory-db/advisory-db-3157b0e258782691
echo "cargo deny: RustSec advisory snapshot of $(git -C "$db" log -1 --format=%cs) ($(git -C "$db" rev-parse --short HEAD))"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src"
cat >"$scratch/Cargo.toml" <<'EOF'
[package]
name = "advisory-canary"
version = "0.0.0"
edition = "2021"
license = "MIT"
publish = false

[dependencies]
smallvec = "=1.6.0"
EOF
echo 'fn main() {}' >"$scratch/src/main.rs"
sed "s|^db-path = .*|db-path = \"$root/target/advisory-db\"|" deny.toml >"$scratch/deny.toml"
(cd "$scratch" && cargo generate-lockfile --quiet && cargo fetch --quiet)
if (cd "$scratch" && cargo deny --offline check advisories) >"$scratch/canary.log" 2>&1; then
  cat "$scratch/canary.log"
  echo "cargo deny passed a crate with a known vulnerability: the advisory check is not working" >&2
  exit 1
fi
if ! grep -q RUSTSEC-2021-0003 "$scratch/canary.log"; then
  cat "$scratch/canary.log"
  echo "cargo deny failed the canary, but not for RUSTSEC-2021-0003" >&2
  exit 1
fi

cargo fetch --locked --quiet
cargo deny --offline check

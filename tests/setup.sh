#!/usr/bin/env bash
# Installs what `make test` needs and this machine lacks, and nothing it already has: Debian
# packages (as root), cargo-nextest and cargo-deny, and the RustSec advisory snapshot. The
# conformance suites install their pinned Python and Node libraries themselves (their run.sh).
# Not root and a package missing: says in one line what to run, and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

need_apt=()
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
command -v git >/dev/null || need_apt+=(git)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# prometheus and promtool, for tests/metrics.rs (the package starts no service here).
command -v prometheus >/dev/null || need_apt+=(prometheus)
# Xvfb, dunst (with dunstctl) and the D-Bus daemon and clients, for tests/desktop.rs.
command -v Xvfb >/dev/null || need_apt+=(xvfb)
command -v dunstctl >/dev/null || need_apt+=(dunst)
for tool in dbus-daemon dbus-send dbus-monitor; do
  command -v "$tool" >/dev/null || { need_apt+=(dbus); break; }
done
# fusepy (with libfuse2) for the FUSE file system of tests/faults/rofs.py. Debian's package
# names the module `fusepy` and serves Debian's /usr/bin/python3, which the test runs; as root,
# libfuse mounts through /dev/fuse and the test unmounts with umount, so no fusermount is needed.
/usr/bin/python3 -c 'import fusepy' 2>/dev/null || need_apt+=(python3-fusepy)
# Chromium and its WebDriver, for the console's browser suite (tests/console).
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# PostgreSQL's server programs (initdb, postgres, pg_basebackup, psql), for the tests that start
# servers of their own (crates/pgtest); PG_BIN may name another build's instead.
if ! [[ -n ${PG_BIN:-} && -x $PG_BIN/initdb ]] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  need_apt+=(postgresql)
fi

if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "make test needs Debian packages this machine lacks; as root, run: apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${need_apt[*]}"
  if [[ " ${need_apt[*]} " == *" postgresql "* ]]; then
    # The package would create and start a cluster of its own (and keep it running) unless
    # createcluster.conf, there before it installs, says not to; ucf keeps that file.
    mkdir -p /etc/postgresql-common
    conf=/etc/postgresql-common/createcluster.conf
    grep -qsx 'create_main_cluster = false' "$conf" || echo 'create_main_cluster = false' >>"$conf"
    export UCF_FORCE_CONFFOLD=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Cargo tools, pinned to the minor versions this project was checked with.
install_tool() { # binary, crate, version requirement
  if ! command -v "$1" >/dev/null; then
    echo "setup: installing $2 $3 (cargo install)"
    cargo install --locked --quiet "$2" --version "$3"
  fi
}
install_tool cargo-nextest cargo-nextest '~0.9'
install_tool cargo-deny cargo-deny '~0.20'

# The RustSec advisory database, from the offline snapshot in ../shared (this network does not
# reach GitHub), where deny.toml's db-path looks for it: cargo-deny names the folder by a hash
# of the database's default URL. A refreshed snapshot replaces the checkout.
bundle=../shared/advisory-db/advisory-db.bundle
checkout=target/advisory-db/advisory-db-3157b0e258782691
if [[ -f $bundle ]]; then
  snapshot=$(git bundle list-heads "$bundle" | awk 'NR == 1 {print $1}')
  if [[ $(git -C "$checkout" rev-parse HEAD 2>/dev/null) != "$snapshot" ]]; then
    echo "setup: advisory database from $bundle"
    rm -rf "$checkout"
    git clone -q "$bundle" "$checkout"
  fi
elif [[ ! -d $checkout ]]; then
  echo "no RustSec advisory database: expected the snapshot at $bundle" >&2
  exit 1
fi

if ((SECONDS - started > 1)); then
  echo "setup: done in $((SECONDS - started)) s"
fi

# Sourced by the Python suites' run.sh (conformance, schemathesis): sets up the venv at $venv
# with $requirements installed (again only when requirements.txt changes, as $stamp records),
# and exports BINDERY_BIN (default <repo>/target/debug/bindery), which must exist.
# Expects: root, venv, requirements, stamp.

if [[ -x "$venv/bin/python" ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "run.sh: $venv is broken; recreating it" >&2
  rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi

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

#!/usr/bin/env bash
# Creates/refreshes .venv from requirements/lock.txt. Idempotent: a second run is a fast no-op
# (a stamp records the hash of the lock and setup.py the venv was built from).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.bootstrap-stamp
want=$(cat requirements/lock.txt setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

find_py310() {
  if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys; assert sys.version_info[:2]==(3,10)' 2>/dev/null; then
    command -v python3.10; return
  fi
  local root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for d in "$root"/versions/3.10*; do
    [ -x "$d/bin/python3.10" ] && { echo "$d/bin/python3.10"; return; }
  done
  return 1
}
PY=$(find_py310) || { echo "error: Python 3.10 not found (TFX 1.15 needs 3.10). Install it, e.g. 'pyenv install 3.10', or put python3.10 on PATH." >&2; exit 1; }
echo "[bootstrap] using $PY"

# `uv --version`, not `command -v uv`: a pyenv shim named uv exists even where no uv runs.
if uv --version >/dev/null 2>&1; then UV=(uv); else
  echo "[bootstrap] uv not found: installing it with pip"
  "$PY" -m pip install --quiet uv
  UV=("$PY" -m uv)
fi

[ -x "$VENV/bin/python" ] || "${UV[@]}" venv --seed --python "$PY" "$VENV"
echo "[bootstrap] syncing requirements/lock.txt"
"${UV[@]}" pip sync --python "$VENV/bin/python" requirements/lock.txt
# compat mode = a plain .pth path entry: new packages/modules are importable without reinstalling
"${UV[@]}" pip install --python "$VENV/bin/python" --no-deps --config-settings editable_mode=compat -e .
"$VENV/bin/python" -m pip --version >/dev/null   # TFX pip-installs module wheels: pip must exist
echo "$want" > "$STAMP"
echo "[bootstrap] .venv ready"

#!/usr/bin/env bash
# Makes sure a headless Chromium is on PATH (Debian's `chromium` package) and prints its path.
# Used by tests/test_gallery.py and scripts/screenshot_gallery.sh. Exit 0 = ready; exit 3 = it cannot
# be installed here (not root, no apt-get, or the package source refuses), with the reason on stderr.
set -euo pipefail

find_chromium() {
  local c
  for c in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}

if path=$(find_chromium); then echo "$path"; exit 0; fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: no chromium on PATH and no apt-get to install Debian's 'chromium' package" >&2
  exit 3
fi
SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    echo "ensure_chromium: no chromium on PATH; installing it needs root (apt-get install chromium)" >&2
    exit 3
  fi
fi
log=$(mktemp)
echo "ensure_chromium: installing Debian's chromium package (apt-get, one time)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq && \
       "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
  tail -n 5 "$log" >&2
  echo "ensure_chromium: apt-get install chromium failed (log: $log)" >&2
  exit 3
fi
rm -f "$log"
if path=$(find_chromium); then echo "$path"; exit 0; fi
echo "ensure_chromium: chromium was installed but is not on PATH" >&2
exit 3

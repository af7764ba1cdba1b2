#!/usr/bin/env bash
# Screenshot of a `posters gallery` page in headless Chromium.
#   scripts/screenshot_gallery.sh GALLERY_DIR OUT_PNG [DOM_OUT]
# GALLERY_DIR holds index.html; OUT_PNG gets a WIDTHxHEIGHT screenshot (default 1400x2400, env
# WINDOW_SIZE=W,H); DOM_OUT (optional) gets the DOM after load (`--dump-dom`), whose <body> carries
# data-images / data-broken (count of images that failed to load) set by the page's own script.
# PNG_COLOURS=256 shrinks the PNG ~5x with a palette (for docs/gallery.png in the repository).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 GALLERY_DIR OUT_PNG [DOM_OUT]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
gallery=$(cd "$1" && pwd)
out=$2
dom=${3:-}
[ -f "$gallery/index.html" ] || { echo "error: $gallery/index.html not found" >&2; exit 2; }
chromium=$(bash "$here/ensure_chromium.sh")
size=${WINDOW_SIZE:-1400,2400}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --disable-gpu --no-sandbox --hide-scrollbars --no-first-run --no-default-browser-check
       --disable-extensions --disable-dev-shm-usage --user-data-dir="$profile" --window-size="$size"
       --virtual-time-budget=5000 --allow-file-access-from-files)
rm -f "$out"
"$chromium" "${flags[@]}" --screenshot="$out" "file://$gallery/index.html" >/dev/null 2>&1 || true
[ -s "$out" ] || { echo "error: chromium wrote no screenshot to $out" >&2; exit 1; }
if [ -n "${PNG_COLOURS:-}" ]; then
  "$here/../.venv/bin/python" - "$out" "$PNG_COLOURS" <<'EOF'
import sys
from PIL import Image
path, colours = sys.argv[1], int(sys.argv[2])
im = Image.open(path).convert("RGB")
im.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
EOF
fi
if [ -n "$dom" ]; then
  "$chromium" "${flags[@]}" --dump-dom "file://$gallery/index.html" >"$dom" 2>/dev/null
  [ -s "$dom" ] || { echo "error: chromium dumped no DOM" >&2; exit 1; }
fi
echo "$out"

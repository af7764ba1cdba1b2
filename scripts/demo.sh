#!/usr/bin/env bash
# `make demo`: sample posters → TFX pipeline → blessing check → serve → query → gallery.
#
#   DATA=      (empty) make N synthetic posters in $WORKDIR/data; a folder of TFRecords; or a CSV
#              (our posters.csv layout or Kaggle's MovieGenre.csv), imported with `posters import`
#              (images from $IMAGES, default: the CSV's folder)
#   WORKDIR=   demo_out    pipeline root, metadata.sqlite, serving_model/, gallery/, logs/
#   N=         400         number of synthetic posters (only when DATA is empty)
#   PALETTE=   graded      synthetic posters' colours: graded (colour grades) or genre (see README)
#   CONFIG=    configs/demo.yaml
#   SET=       extra config overrides, space-separated key=value (passed as `posters run --set`)
#
# Idempotent: existing data is reused and LocalDagRunner's cache makes a second run fast. The model
# server is always stopped on exit (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
POSTERS=$ROOT/.venv/bin/posters
PY=$ROOT/.venv/bin/python
WORKDIR=${WORKDIR:-demo_out}
N=${N:-400}
DATA=${DATA:-}
CONFIG=${CONFIG:-configs/demo.yaml}
SEED=${SEED:-0}
SIZE=${SIZE:-200x300}
PALETTE=${PALETTE:-graded}
mkdir -p "$WORKDIR/logs"
WORKDIR=$(cd "$WORKDIR" && pwd)
LOGS=$WORKDIR/logs
export PYTHONUNBUFFERED=1  # `posters` hides TensorFlow's C++ logs itself (-v shows them)

T0=$SECONDS
STEP_T=$SECONDS
STEP_NO=0
STEPS=7
step() {
  if [ "$STEP_NO" -gt 0 ]; then echo "    done in $((SECONDS - STEP_T)) s"; fi
  STEP_NO=$((STEP_NO + 1))
  STEP_T=$SECONDS
  echo
  echo "==> [$STEP_NO/$STEPS] $* (t+$((SECONDS - T0)) s)"
}
die() { echo "demo: error: $*" >&2; exit 1; }

[ -x "$POSTERS" ] || die "$POSTERS not found: run 'make venv' (scripts/bootstrap.sh) first"

SERVER_PID=
PIPELINE_PID=
cleanup() {
  local rc=$?
  if [ -n "$PIPELINE_PID" ] && kill -0 "$PIPELINE_PID" 2>/dev/null; then
    echo "stopping the pipeline (pid $PIPELINE_PID)"
    kill "$PIPELINE_PID" 2>/dev/null || true
  fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "stopping the model server (pid $SERVER_PID)"
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
step "data"
has_tfrecords() { compgen -G "$1/*.tfrecord*" >/dev/null; }
SAMPLE_DIR=
if [ -z "$DATA" ]; then
  SAMPLE_DIR=$WORKDIR/data
  DATA_DIR=$SAMPLE_DIR/tfrecords
  stamp="n=$N size=$SIZE seed=$SEED palette=$PALETTE"
  if [ -f "$SAMPLE_DIR/.demo-stamp" ] && [ "$(cat "$SAMPLE_DIR/.demo-stamp")" = "$stamp" ] && has_tfrecords "$DATA_DIR"; then
    echo "reusing $N sample posters in $SAMPLE_DIR"
  else
    rm -rf "$SAMPLE_DIR"
    "$POSTERS" sample --out "$SAMPLE_DIR" --n "$N" --size "$SIZE" --seed "$SEED" --palette "$PALETTE" --tfrecords
    echo "$stamp" > "$SAMPLE_DIR/.demo-stamp"
  fi
elif [ -d "$DATA" ]; then
  DATA_DIR=$(cd "$DATA" && pwd)
  if ! has_tfrecords "$DATA_DIR" && has_tfrecords "$DATA_DIR/tfrecords"; then DATA_DIR=$DATA_DIR/tfrecords; fi
  has_tfrecords "$DATA_DIR" || die "DATA=$DATA holds no *.tfrecord files (give a folder of TFRecords or a CSV)"
  [ -f "$DATA_DIR/../posters.csv" ] && SAMPLE_DIR=$(cd "$DATA_DIR/.." && pwd)
  echo "using TFRecords in $DATA_DIR"
elif [ -f "$DATA" ]; then
  CSV=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")
  IMAGES=${IMAGES:-$(dirname "$CSV")}
  DATA_DIR=$WORKDIR/data/imported
  stamp="$CSV $(stat -c '%s %Y' "$CSV") $IMAGES"
  if [ -f "$WORKDIR/data/.import-stamp" ] && [ "$(cat "$WORKDIR/data/.import-stamp")" = "$stamp" ] && has_tfrecords "$DATA_DIR"; then
    echo "reusing the import of $CSV in $DATA_DIR"
  else
    rm -rf "$DATA_DIR"
    mkdir -p "$WORKDIR/data"
    "$POSTERS" import --csv "$CSV" --images "$IMAGES" --out "$DATA_DIR"
    echo "$stamp" > "$WORKDIR/data/.import-stamp"
  fi
else
  die "DATA=$DATA is neither a folder of TFRecords nor a CSV file"
fi
CATALOG="$DATA_DIR/*.tfrecord*"

# ---------------------------------------------------------------------------------------------
step "TFX pipeline (LocalDagRunner; log: $LOGS/pipeline.log)"
# TFX logs at INFO are off by default: show progress from the execution folders each component
# creates under the pipeline root (a cached component creates none, and takes no time).
mkdir -p "$WORKDIR/pipeline_root"
rm -f "$WORKDIR/run_summary.json"  # rewritten by this run; stale = never read
marker=$LOGS/.pipeline-start
touch "$marker"
SET_ARGS=()
for kv in ${SET:-}; do SET_ARGS+=(--set "$kv"); done
"$POSTERS" run --data "$DATA_DIR" --workdir "$WORKDIR" --config "$CONFIG" ${SET_ARGS[@]+"${SET_ARGS[@]}"} \
  > "$LOGS/pipeline.log" 2>&1 &
PIPELINE_PID=$!
seen=" "
beat=$SECONDS
while kill -0 "$PIPELINE_PID" 2>/dev/null; do
  sleep 2
  for d in $(find "$WORKDIR/pipeline_root" -mindepth 3 -maxdepth 3 -type d -newer "$marker" 2>/dev/null | sort); do
    comp=${d#"$WORKDIR/pipeline_root/"}
    comp=${comp%%/*}
    case "$seen" in *" $comp "*) ;; *) seen="$seen$comp "; echo "  t+$((SECONDS - STEP_T)) s  $comp";; esac
  done
  if [ $((SECONDS - beat)) -ge 60 ]; then beat=$SECONDS; echo "  t+$((SECONDS - STEP_T)) s  ... still running"; fi
done
set +e
wait "$PIPELINE_PID"
rc=$?
set -e
PIPELINE_PID=
# `posters run` exits 1 when the model was not blessed: the next step explains that case.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
  tail -n 30 "$LOGS/pipeline.log" >&2
  die "the pipeline failed (exit $rc); full log: $LOGS/pipeline.log"
fi
[ -f "$WORKDIR/run_summary.json" ] || die "the pipeline wrote no $WORKDIR/run_summary.json (log: $LOGS/pipeline.log)"

# ---------------------------------------------------------------------------------------------
step "evaluation gate"
read -r MODEL_NAME MODEL_BASE < <("$PY" - "$WORKDIR/run_summary.json" <<'EOF'
import json, os, sys
s = json.load(open(sys.argv[1]))
m = s.get("metrics") or {}
names = ["recall@1", "recall@5", "recall@10", "precision@10", "map@r", "index_recall@10"]
print("  " + "  ".join(f"{k}={m[k]:.3f}" for k in names if k in m), file=sys.stderr)
if not s.get("blessed"):
    print(f"demo: error: the Evaluator did NOT bless the model (blessed={s.get('blessed')}): its metrics are "
          "below the gate thresholds (GateConfig in poster_similarity/core/config.py), so nothing new was pushed. "
          f"Evaluation: {s.get('evaluation_uri', '?')}", file=sys.stderr)
    sys.exit(1)
if not s.get("pushed_destination"):
    print("demo: error: blessed, but the Pusher recorded no pushed model", file=sys.stderr)
    sys.exit(1)
name = s.get("model_name", "posters")
print(f"  blessed: yes, pushed {s['pushed_destination']}", file=sys.stderr)
print(name, os.path.join(s["serving_base_path"], name))
EOF
) || die "not blessed: stopping before serving (see above)"

# ---------------------------------------------------------------------------------------------
step "model server"
read -r REST_PORT GRPC_PORT < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()')
"$POSTERS" serve --model-base-path "$MODEL_BASE" --model-name "$MODEL_NAME" \
  --rest-port "$REST_PORT" --grpc-port "$GRPC_PORT" > "$LOGS/serve.log" 2>&1 &
SERVER_PID=$!
echo "posters serve (pid $SERVER_PID): REST 127.0.0.1:$REST_PORT, gRPC 127.0.0.1:$GRPC_PORT; log: $LOGS/serve.log"
deadline=$((SECONDS + 120))
until "$PY" -c '
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    st = json.load(r)
sys.exit(0 if any(v.get("state") == "AVAILABLE" for v in st.get("model_version_status", [])) else 1)
' "http://127.0.0.1:$REST_PORT/v1/models/$MODEL_NAME" 2>/dev/null; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 20 "$LOGS/serve.log" >&2
    die "the model server exited (log: $LOGS/serve.log)"
  fi
  [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$LOGS/serve.log" >&2; die "the model server was not AVAILABLE within 120 s"; }
  sleep 1
done
echo "GET /v1/models/$MODEL_NAME: AVAILABLE after $((SECONDS - STEP_T)) s"

# ---------------------------------------------------------------------------------------------
step "query: similar posters + recommendations"
# One sample poster file and three watched ids: from posters.csv when there is one (no TensorFlow
# import), else the first records of the TFRecords.
read -r QUERY_IMG HISTORY < <("$PY" - "$WORKDIR" "$CATALOG" "${SAMPLE_DIR:-}" <<'EOF'
import csv, glob, os, sys
workdir, pattern, sample_dir = sys.argv[1:4]
rows = []
csv_path = os.path.join(sample_dir, "posters.csv") if sample_dir else ""
if csv_path and os.path.isfile(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [(r["movie_id"], os.path.join(sample_dir, r["poster"])) for r in csv.DictReader(f)]
    rows = [r for r in rows if os.path.isfile(r[1])]
if len(rows) < 4:
    from poster_similarity.core import tfrecords
    rows = []
    for ex in tfrecords.read_examples(pattern):
        if not rows:
            path = os.path.join(workdir, "demo_query" + (".png" if ex["image"][:4] == b"\x89PNG" else ".jpg"))
            with open(path, "wb") as f:
                f.write(ex["image"])
            rows.append((ex["movie_id"], path))
        else:
            rows.append((ex["movie_id"], ""))
        if len(rows) >= 4:
            break
print(rows[0][1], " ".join(mid for mid, _ in rows[1:4]))
EOF
)
echo "\$ posters query $QUERY_IMG --history $HISTORY -k 5"
# shellcheck disable=SC2086
"$POSTERS" query "$QUERY_IMG" --history $HISTORY -k 5 --server "127.0.0.1:$REST_PORT" \
  --model-name "$MODEL_NAME" --catalogue "$CATALOG" 2> "$LOGS/query.log" || {
    cat "$LOGS/query.log" >&2; die "posters query failed"; }

# ---------------------------------------------------------------------------------------------
step "gallery"
GALLERY=$("$POSTERS" gallery --server "127.0.0.1:$REST_PORT" --model-name "$MODEL_NAME" --catalogue "$CATALOG" \
  --out "$WORKDIR/gallery" --metrics "$WORKDIR/run_summary.json" 2> "$LOGS/gallery.log") || {
    cat "$LOGS/gallery.log" >&2; die "posters gallery failed"; }
echo "wrote $GALLERY (+ contact_sheet.png)"

# ---------------------------------------------------------------------------------------------
step "where everything is"
cat <<EOF
  gallery        file://$GALLERY
  contact sheet  $WORKDIR/gallery/contact_sheet.png
  run summary    $WORKDIR/run_summary.json
  serving model  $MODEL_BASE/  (serve it: .venv/bin/posters serve --model-base-path $MODEL_BASE)
  ML Metadata    $WORKDIR/metadata.sqlite
  pipeline root  $WORKDIR/pipeline_root/
  TensorBoard    .venv/bin/tensorboard --logdir $WORKDIR/pipeline_root/Trainer/model_run
  logs           $LOGS/
EOF
echo "    done in $((SECONDS - STEP_T)) s"
echo
echo "demo finished in $((SECONDS - T0)) s (the model server is stopped on exit)"

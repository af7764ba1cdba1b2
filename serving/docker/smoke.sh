#!/usr/bin/env bash
# Smoke test of the TF Serving images on freshly exported models.
#
# For each index kind: export a small real model (tests/standin_export.py: the production export
# module), start the kind's image on it the way Kubernetes runs it (non-root, read-only root
# filesystem, no capabilities, model mounted read-only), wait for the readiness and liveness
# probes' conditions, then call every signature over REST and gRPC with the project's client and
# compare with the SavedModel run in-process (serving/docker/smoke_check.py).
#
#   bash serving/docker/smoke.sh                  # needs Docker; fails without it
#   bash serving/docker/smoke.sh --if-available   # CI: says SKIPPED and exits 0 without Docker
#   bash serving/docker/smoke.sh --engine local   # same checks against `posters serve` (no Docker)
#
# brute_force uses Dockerfile.brute_force (minutes to build). scann needs the ScaNN image: set
# SCANN_IMAGE=<built image> or SCANN_SOURCE_COMMIT=<commit> to build Dockerfile.scann here (hours);
# with neither, the scann kind is reported SKIPPED (and the run still fails if nothing ran).
set -euo pipefail
shopt -s inherit_errexit  # a failing `docker build` inside $(image_for …) stops the script too

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"  # the repository root
PY="${PY:-$ROOT/.venv/bin/python}"
ENGINE=docker
IF_AVAILABLE=0
KINDS="brute_force scann"
while [ $# -gt 0 ]; do
  case "$1" in
    --if-available) IF_AVAILABLE=1 ;;
    --engine) ENGINE="$2"; shift ;;
    --kinds) KINDS="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "smoke.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$ENGINE" = docker ]; then
  if ! info="$(docker info 2>&1)"; then
    reason="$(printf '%s\n' "$info" | grep -v '^\s*$' | tail -n 1)"
    msg="SKIPPED serving/docker/smoke.sh: no usable Docker daemon (docker info: ${reason:-docker not found}); the TF Serving images were NOT built or run"
    if [ "$IF_AVAILABLE" = 1 ]; then echo "$msg"; exit 0; fi
    echo "$msg" >&2
    exit 1
  fi
elif [ "$ENGINE" != local ]; then
  echo "smoke.sh: --engine docker|local" >&2
  exit 2
fi

WORK="$(mktemp -d)"
CONTAINERS=()
SERVER_PID=""
cleanup() {
  status=$?
  for c in "${CONTAINERS[@]}"; do
    if [ "$status" -ne 0 ]; then echo "--- docker logs $c" >&2; docker logs --tail 50 "$c" >&2 || true; fi
    docker rm -f "$c" >/dev/null 2>&1 || true
  done
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$status" -ne 0 ] && [ -f "$WORK/server.log" ]; then echo "--- server log" >&2; tail -n 50 "$WORK/server.log" >&2; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

image_for() {  # kind -> image tag (built here when possible), or empty when unavailable
  case "$1" in
    brute_force)
      docker build -q -f "$ROOT/serving/docker/Dockerfile.brute_force" -t posters-serving:smoke-brute_force "$ROOT" >/dev/null
      echo posters-serving:smoke-brute_force ;;
    scann)
      if [ -n "${SCANN_IMAGE:-}" ]; then echo "$SCANN_IMAGE"
      elif [ -n "${SCANN_SOURCE_COMMIT:-}" ]; then
        docker build -q -f "$ROOT/serving/docker/Dockerfile.scann" --build-arg "SCANN_SOURCE_COMMIT=$SCANN_SOURCE_COMMIT" \
          -t posters-serving:smoke-scann "$ROOT" >/dev/null
        echo posters-serving:smoke-scann
      fi ;;
  esac
}

ran=0
for kind in $KINDS; do
  base="$WORK/$kind/posters"
  echo "smoke: exporting a fresh $kind model"
  "$PY" -m tests.standin_export "$base/1" "$kind" >/dev/null
  chmod -R a+rX "$WORK"
  if [ "$ENGINE" = docker ]; then
    image="$(image_for "$kind")"
    if [ -z "$image" ]; then
      echo "SKIPPED smoke for $kind: set SCANN_IMAGE or SCANN_SOURCE_COMMIT to build Dockerfile.scann"
      continue
    fi
    cid="$(docker run -d --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
      -p 127.0.0.1::8500 -p 127.0.0.1::8501 -v "$base:/models/posters:ro" "$image")"
    CONTAINERS+=("$cid")
    rest="$(docker port "$cid" 8501/tcp | head -n 1)"
    grpc="$(docker port "$cid" 8500/tcp | head -n 1)"
    liveness=(--liveness-path /monitoring/prometheus/metrics)
  else
    rest_port="$(free_port)"; grpc_port="$(free_port)"
    (cd "$ROOT" && exec "$PY" -m poster_similarity.posters.cli serve --model-base-path "$base" --rest-port "$rest_port" \
      --grpc-port "$grpc_port" --enable-batching --batching-parameters-file serving/config/batching_parameters.txt) \
      >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    rest="127.0.0.1:$rest_port"; grpc="127.0.0.1:$grpc_port"
    liveness=()
  fi
  echo "smoke: $kind on $ENGINE (REST $rest, gRPC $grpc)"
  (cd "$ROOT" && PYTHONPATH="$ROOT" "$PY" serving/docker/smoke_check.py --rest "$rest" --grpc "$grpc" \
    --export "$base/1" "${liveness[@]}")
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
  ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || { echo "smoke: nothing ran" >&2; exit 1; }
echo "smoke: OK ($ran kind(s) on $ENGINE)"

"""Serving benchmark: `serving_default` with a real JPEG, in-process vs local server REST vs gRPC.

* in-process: `tf.saved_model.load(...).signatures["serving_default"]` called from client threads;
* rest / grpc: client.PosterClient against serving.server.ModelServer running in a
  separate process (as TF Serving would), one client per thread.

Closed loop (each of C threads sends its next request when the previous answer arrives) at batch 1
and 16, C = 1, 2, 4, 8: p50/p95/p99 latency and images/s. Then an open loop at 70 % of the peak
request rate (gRPC and REST, batch 1): requests are released on a fixed schedule and latency counts
from the scheduled time (queueing included), which is what "p99 at 70 % load" means.

Model: --model-base-path/--model-name if given (bench/run_all.py passes the model bench/pipeline.py
pushed), else a cached demo model under bench/.cache (built once: `posters sample --n 120 --tfrecords`
+ the local pipeline with 1+1 epochs, in_memory Beam); in quick mode a stand-in model instead
(ensure_standin_model: the real export module, ~20 s to build).

    python -m bench.serving [--quick] [--model-base-path DIR --model-name posters]
"""
from __future__ import annotations

import os
import tempfile
import threading
import time

from bench.common import ROOT, base_parser, goal, percentiles, write_result
from bench.server_child import ServerChild
from bench.serving_models import (
    MODEL_NAME,
    ensure_model,
    ensure_standin_model,
    find_jpeg,
    latest_version_dir,
)

BATCHING_FILE = os.path.join(ROOT, "serving", "config", "batching_parameters.txt")
EAGER_BATCHING = "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 0 }\nnum_batch_threads { value: 1 }\n"


# --- load generators ----------------------------------------------------------------------------------
def make_callers(mode: str, batch: list[bytes], model_dir: str, server: ServerChild | None, n: int,
                 model_name: str = MODEL_NAME):
    """n independent callables (one per client thread) that send one request and return."""
    if mode == "inprocess":
        import tensorflow as tf

        fn = _inprocess_fn(model_dir)
        t = tf.constant(batch)
        return [lambda: fn(image_bytes=t)["movie_ids"].numpy() for _ in range(n)]
    from poster_similarity.client import PosterClient

    callers = []
    for _ in range(n):
        c = PosterClient(server.addr[mode], model_name, protocol=mode, timeout=60)
        callers.append(lambda c=c: c.predict("serving_default", {"image_bytes": batch}))
    return callers


_LOADED: dict[str, object] = {}


def _inprocess_fn(model_dir: str):
    import scann  # noqa: F401  (registers the ScaNN ops the SavedModel uses)
    import tensorflow as tf

    if model_dir not in _LOADED:
        _LOADED[model_dir] = tf.saved_model.load(model_dir)
    return _LOADED[model_dir].signatures["serving_default"]


def closed_loop(callers, duration_s: float, warmup: int = 2) -> tuple[list[float], float]:
    for c in callers:
        for _ in range(warmup):
            c()
    lat: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration_s
    errors: list[BaseException] = []

    def worker(call):
        mine = []
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                call()
                mine.append(time.perf_counter() - t0)
        except BaseException as e:  # surfaced below
            errors.append(e)
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return lat, time.perf_counter() - t0


def open_loop(callers, rate_rps: float, duration_s: float) -> tuple[list[float], float, int]:
    """Fixed-rate arrivals served by len(callers) workers; latency from the scheduled send time."""
    import queue

    n = max(1, int(rate_rps * duration_s))
    q: queue.Queue = queue.Queue()
    lat: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.05

    def worker(call):
        while True:
            sched = q.get()
            if sched is None:
                return
            call()
            with lock:
                lat.append(time.perf_counter() - sched)

    threads = [threading.Thread(target=worker, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for i in range(n):
        sched = start + i / rate_rps
        delay = sched - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        q.put(sched)
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return lat, elapsed, n


class Setup:
    """What every measurement shares: the model, the request image, the loop lengths."""

    def __init__(self, model_dir: str, model_name: str, jpeg: bytes, quick: bool):
        self.model_dir, self.model_name, self.jpeg = model_dir, model_name, jpeg
        self.duration = 0.7 if quick else 4.0
        self.batches = [1, 16]
        self.concurrency = [1, 4] if quick else [1, 2, 4, 8]
        self.modes = ["inprocess", "rest", "grpc"]

    def callers(self, mode: str, batch: int, server: ServerChild | None, n: int):
        return make_callers(mode, [self.jpeg] * batch, self.model_dir, server, n, self.model_name)

    def closed(self, mode: str, batch: int, clients: int, server: ServerChild | None, label: str = "") -> dict:
        """One closed-loop row: `label` names the server's configuration (mode+label), if any."""
        lat, elapsed = closed_loop(self.callers(mode, batch, server, clients), self.duration)
        return {"mode": f"{mode}+{label}" if label else mode, "batch": batch, "clients": clients,
                "requests": len(lat), "requests_per_s": round(len(lat) / elapsed, 2),
                "images_per_s": round(len(lat) * batch / elapsed, 2), "latency_ms": percentiles(lat)}


def measure_unbatched(setup: Setup, server: ServerChild, results: dict) -> None:
    """Closed loop for every mode × batch × clients, then the open loop at 70 % of peak (batch 1)."""
    for mode in setup.modes:
        for b in setup.batches:
            for c in setup.concurrency:
                r = setup.closed(mode, b, c, server)
                results["closed_loop"].append(r)
                print(f"[serving] {mode:<9} b={b:<2} c={c}  p50 {r['latency_ms']['p50']:8.2f} ms  "
                      f"p99 {r['latency_ms']['p99']:8.2f} ms  {r['images_per_s']:8.1f} img/s", flush=True)
    for mode in ("grpc", "rest"):  # open loop at 70 % of each server protocol's peak request rate (batch 1)
        peak = max((r for r in results["closed_loop"] if r["mode"] == mode and r["batch"] == 1),
                   key=lambda r: r["requests_per_s"])
        rate = 0.7 * peak["requests_per_s"]
        callers = setup.callers(mode, 1, server, max(setup.concurrency))
        for call in callers:
            call()
        lat, elapsed, n = open_loop(callers, rate, setup.duration * 2)
        r = {"mode": mode, "batch": 1, "target_rps": round(rate, 2), "peak_rps": peak["requests_per_s"],
             "achieved_rps": round(n / elapsed, 2), "workers": len(callers), "latency_ms": percentiles(lat)}
        results["open_loop"].append(r)
        print(f"[serving] open loop {mode} @ {rate:.1f} req/s (70 % of {peak['requests_per_s']}): "
              f"p50 {r['latency_ms']['p50']} ms p99 {r['latency_ms']['p99']} ms", flush=True)


def measure_batched(setup: Setup, base: str, results: dict) -> None:
    """The same server with server-side batching, batch-1 requests: TF Serving's parameters
    (serving/config/batching_parameters.txt), and "eager" (no timeout, one batch thread: requests
    are merged only when they queue behind a running call)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(EAGER_BATCHING)
    try:
        for suffix, params in (("batching", BATCHING_FILE), ("eager-batching", f.name)):
            with ServerChild(base, setup.model_name, batching=params, label=suffix) as server:
                for mode in ("rest", "grpc"):
                    for c in setup.concurrency:
                        r = setup.closed(mode, 1, c, server, suffix)
                        results["closed_loop"].append(r)
                        print(f"[serving] {r['mode']:<19} b=1  c={c}  p50 {r['latency_ms']['p50']:8.2f} ms  "
                              f"p99 {r['latency_ms']['p99']:8.2f} ms  {r['images_per_s']:8.1f} img/s", flush=True)
    finally:
        os.unlink(f.name)


def table_rows(results: dict) -> list[list]:
    rows = []
    for r in results["closed_loop"]:
        lm = r["latency_ms"]
        rows.append([r["mode"], r["batch"], r["clients"], lm["p50"], lm["p95"], lm["p99"], r["images_per_s"]])
    for r in results["open_loop"]:
        lm = r["latency_ms"]
        rows.append([f"{r['mode']} open loop @70 % ({r['target_rps']} req/s)", 1, r["workers"], lm["p50"],
                     lm["p95"], lm["p99"], r["achieved_rps"]])
    return rows


def serving_goals(results: dict, batches: list[int], concurrency: list[int]) -> list[dict]:
    def cl(mode, b, c):
        return next(r for r in results["closed_loop"] if (r["mode"], r["batch"], r["clients"]) == (mode, b, c))

    def peak(mode, b):
        return max(r["images_per_s"] for r in results["closed_loop"] if r["mode"] == mode and r["batch"] == b)

    goals = []
    inproc = cl("inprocess", 1, 1)["latency_ms"]["p50"]
    for mode in ("rest", "grpc"):
        ratio = round(cl(mode, 1, 1)["latency_ms"]["p50"] / inproc, 2)
        goals.append(goal(f"{mode} p50 ÷ in-process p50 (batch 1, 1 client)", ratio, "<= 1.2", ratio <= 1.2))
    for r in results["open_loop"]:
        ratio = round(r["latency_ms"]["p99"] / r["latency_ms"]["p50"], 2)
        goals.append(goal(f"{r['mode']} p99 ÷ p50 at 70 % of peak load (batch 1)", ratio, "<= 2", ratio <= 2.0))
    for b in batches:
        g, rr = peak("grpc", b), peak("rest", b)
        goals.append(goal(f"gRPC ÷ REST peak throughput (batch {b})", round(g / rr, 2), ">= 1", g >= rr))
    top = max(concurrency)
    for suffix in ("batching", "eager-batching"):
        for mode in ("rest", "grpc"):
            ratio = round(cl(f"{mode}+{suffix}", 1, top)["images_per_s"] / cl(mode, 1, top)["images_per_s"], 2)
            goals.append(goal(f"server-side {suffix}: {mode} images/s ÷ unbatched ({top} clients, batch 1)",
                              ratio, ">= 1", ratio >= 1.0))
    return goals


NOTES = ["server in a separate process (serving.server.ModelServer); clients are threads in the "
         "benchmark process, one PosterClient each; in-process = SavedModel signature called from threads",
         "images/s column: open-loop rows show achieved requests/s instead",
         "+batching rows: a second server process with --enable-batching and "
         "serving/config/batching_parameters.txt (max 32 rows, 2 ms timeout, 4 batch threads); "
         "+eager-batching: max 32 rows, no timeout, 1 batch thread"]
STANDIN_NOTE = ("quick mode without --model-base-path: stand-in model (export module around an untrained "
                "small_cnn, Transform graph replaced by encode_pixels, 2,000 random catalogue vectors)")


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--model-base-path", default=None, help="versioned base path (<base>/<version>/saved_model.pb)")
    p.add_argument("--model-name", default=MODEL_NAME)
    p.add_argument("--image", default=None, help="a JPEG to send (default: a sample poster)")
    args = p.parse_args(argv)
    started = time.time()
    standin = False
    if args.model_base_path:
        base, model_name = os.path.abspath(args.model_base_path), args.model_name
    elif args.quick:
        base, model_name = ensure_standin_model()
        standin = True
    else:
        base, model_name = ensure_model()
    model_dir = latest_version_dir(base)
    if model_dir is None:
        raise SystemExit(f"no model version under {base}")
    setup = Setup(model_dir, model_name, find_jpeg(args.image), args.quick)
    print(f"[serving] model {model_dir}, JPEG {len(setup.jpeg)} bytes", flush=True)

    results = {"closed_loop": [], "open_loop": []}
    with ServerChild(base, model_name, label="unbatched") as server:
        measure_unbatched(setup, server, results)
    measure_batched(setup, base, results)
    write_result("serving", args.quick, started,
                 {"model_dir": model_dir, "model_name": model_name, "standin_model": standin,
                  "jpeg_bytes": len(setup.jpeg), "batches": setup.batches,
                  "clients": setup.concurrency, "duration_s": setup.duration, "modes": setup.modes,
                  "open_loop_load": 0.7, "batching_parameters_file": os.path.relpath(BATCHING_FILE, ROOT)},
                 results, serving_goals(results, setup.batches, setup.concurrency), out_dir=args.out,
                 extra_versions=("tensorflow-serving-api", "grpcio"),
                 table={"headers": ["mode", "batch", "clients", "p50 ms", "p95 ms", "p99 ms", "images/s"],
                        "rows": table_rows(results)}, notes=NOTES + ([STANDIN_NOTE] if standin else []))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

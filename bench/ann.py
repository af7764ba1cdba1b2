"""ANN benchmark: the served index (tfrs ScaNN layer) vs tfrs defaults vs BruteForce vs exact numpy.

Catalogues of N unit vectors (d=128), "random" (isotropic Gaussian, normalised: no structure, the
hardest case) and "clustered" (1000 Gaussian clusters, normalised). Queries are held-out vectors from
the same distribution. For each index: build time, memory (RSS delta of the build), recall@10 against
exact search, queries/s at batch 1 (one query per call through a tf.function, as served) and batch 64.

"tuned" = components.export.scann_params(N, IndexConfig()) built by components.export.make_scann (the
export's defaults); its leaves_to_search is then swept on the same index (ScaNN's search-time
override, no rebuild) to trace recall vs queries/s. "tfrs_default" = tfrs's ScaNN layer as shipped:
100 leaves, 10 searched, AH 2 dims/block, no reordering.

    python -m bench.ann [--quick] [--sizes 10000,100000,1000000]
"""
from __future__ import annotations

import gc
import time

import numpy as np

from bench.common import available_mem_gb, base_parser, goal, rss_mb, time_calls, write_result

DIM = 128
K = 10
NUM_CLUSTERS = 1000
CLUSTER_NOISE = 1.0  # norm of the per-point offset vs the unit centre (cosine to own centre ≈ 0.7)
TFRS_DEFAULT = {"num_leaves": 100, "num_leaves_to_search": 10, "dimensions_per_block": 2,
                "num_reordering_candidates": None}
SPEEDUP_TARGET = 100.0
RECALL_TARGET = 0.95
BUILD_TARGET_S = 60.0
MATCHED_GAIN_TARGET = 0.05


def make_vectors(n: int, kind: str, seed: int, centres: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, 100_000):  # chunks keep float64 temporaries small
        m = min(100_000, n - s)
        x = rng.standard_normal((m, DIM), dtype=np.float32)
        if kind == "clustered":
            x *= CLUSTER_NOISE / np.sqrt(DIM)
            x += centres[rng.integers(0, len(centres), m)]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + m] = x
    return out


def dataset(n: int, kind: str, n_queries: int, seed: int = 0):
    centres = None
    if kind == "clustered":
        c = np.random.default_rng(seed + 7).standard_normal((NUM_CLUSTERS, DIM)).astype(np.float32)
        centres = c / np.linalg.norm(c, axis=1, keepdims=True)
    return make_vectors(n, kind, seed, centres), make_vectors(n_queries, kind, seed + 1, centres)


def exact_neighbors(queries: np.ndarray, cat: np.ndarray, chunk: int = 64) -> np.ndarray:
    from poster_similarity.components.export import exact_top_k

    return np.concatenate([exact_top_k(queries[i:i + chunk], cat, K) for i in range(0, len(queries), chunk)])


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """The export's index recall (mean share of the exact top-k found), rounded for the results file."""
    from poster_similarity.components.retrieval_metrics import index_recall

    return round(index_recall(approx, exact), 4)


def throughput(call, queries: np.ndarray, batch: int, budget_s: float, to_input=None, repeats: int = 3) -> float:
    """Queries/s calling `call(batch)` back to back on pre-converted batches (inputs made before timing).
    Best of `repeats` runs: the machine is shared, and the best run is the least disturbed one."""
    nb = max(1, len(queries) // batch)
    batches = [queries[i * batch:(i + 1) * batch] for i in range(nb)]
    if to_input is not None:
        batches = [to_input(b) for b in batches]
    best = 0.0
    for _ in range(repeats):
        times = time_calls(lambda i: call(batches[i % nb]), 100_000, budget_s / repeats)
        best = max(best, batch * len(times) / sum(times))
    return round(best, 1)


def measure_index(label: str, build, search, queries, exact, budget_s, to_input=None,
                  max_recall_queries: int | None = None) -> dict:
    """build() → object; search(obj, q) → ids [B,K] (np); q is numpy, or `to_input(numpy)` when given."""
    gc.collect()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    obj = build()
    build_s = time.perf_counter() - t0
    rss1 = rss_mb()
    conv = to_input or (lambda q: q)
    if max_recall_queries:  # exact searches: recall is 1 by construction, a subset shows it cheaply
        queries, exact = queries[:max_recall_queries], exact[:max_recall_queries]
    approx = np.concatenate([search(obj, conv(queries[i:i + 256])) for i in range(0, len(queries), 256)])
    row = {"index": label, "build_s": round(build_s, 2), "rss_delta_mb": round(rss1 - rss0, 1),
           "recall_at_10": recall(approx, exact),
           "qps_b1": throughput(lambda q: search(obj, q), queries, 1, budget_s, to_input),
           "qps_b64": throughput(lambda q: search(obj, q), queries, 64, budget_s, to_input)}
    print(f"[ann]   {label:<14} build {row['build_s']:7.2f} s  recall {row['recall_at_10']:.3f}  "
          f"q/s b1 {row['qps_b1']:9.1f}  b64 {row['qps_b64']:9.1f}  ΔRSS {row['rss_delta_mb']:.0f} MB",
          flush=True)
    return row, obj


def concrete(fn):
    """A traced concrete function [None, DIM] float32 → ids: the cheapest per-call path from Python."""
    import tensorflow as tf

    return tf.function(fn, autograph=False).get_concrete_function(tf.TensorSpec([None, DIM], tf.float32))


def tf_search_fn(layer):
    """Traced on first use (after `index()`): the layer refuses calls before it has an index."""
    cache: list = []

    def search(_obj, q):
        if not cache:
            cache.append(concrete(lambda x: layer(x, k=K)[1]))
        return cache[0](q).numpy()

    return search


def sweep_leaves(layer, params: dict, queries, exact, budget_s, grid: list[int] | None = None) -> list[dict]:
    """Recall / q/s of a built index at several leaves_to_search (ScaNN's search-time override).
    The override path costs more per call than the layer's own call (~0.8 ms vs ~0.25 ms at batch 1
    here), so sweep points are only compared with other indexes measured through the same path."""
    import tensorflow as tf
    from scann.scann_ops.py import scann_ops

    leaves = params["num_leaves"]
    grid = grid or sorted({max(1, min(leaves, int(round(leaves * f))))
                           for f in (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)} | {params["num_leaves_to_search"]})
    rows = []
    for nl in grid:
        # the layer's own search path (searcher from the serialized module, parallel batches), with
        # ScaNN's search-time leaves_to_search override instead of a rebuild
        fn = concrete(lambda q, nl=nl: scann_ops.searcher_from_module(layer._serialized_searcher)
                      .search_batched_parallel(q, final_num_neighbors=K, leaves_to_search=nl).indices)
        approx = np.concatenate([fn(tf.constant(queries[i:i + 256])).numpy() for i in range(0, len(queries), 256)])
        row = {"leaves_to_search": nl, "recall_at_10": recall(approx, exact),
               "qps_b1": throughput(lambda q, fn=fn: fn(q).numpy(), queries, 1, budget_s, tf.constant),
               "qps_b64": throughput(lambda q, fn=fn: fn(q).numpy(), queries, 64, budget_s / 2, tf.constant)}
        rows.append(row)
        print(f"[ann]     sweep L={nl:<5} recall {row['recall_at_10']:.3f}  q/s b1 {row['qps_b1']:9.1f}  "
              f"b64 {row['qps_b64']:9.1f}", flush=True)
    return rows


def run_case(n: int, kind: str, n_queries: int, budget_s: float, bf_budget_s: float) -> dict:
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from poster_similarity.components.export import make_scann, scann_params
    from poster_similarity.core.config import IndexConfig

    print(f"[ann] N={n:,} {kind}", flush=True)
    cat, queries = dataset(n, kind, n_queries)
    t0 = time.perf_counter()
    exact = exact_neighbors(queries, cat)
    exact_all_s = time.perf_counter() - t0
    out: dict = {"n": n, "kind": kind, "num_queries": n_queries, "exact_ground_truth_s": round(exact_all_s, 2)}
    rows = []

    # exact numpy (the ground truth itself; its throughput is the brute-force baseline outside TF)
    def np_search(_obj, q):
        from poster_similarity.components.export import exact_top_k

        return exact_top_k(q, cat, K)

    row, _ = measure_index("numpy_exact", lambda: cat, np_search, queries, exact, bf_budget_s,
                           max_recall_queries=100)
    row["build_s"], row["rss_delta_mb"] = 0.0, round(cat.nbytes / 2**20, 1)  # the matrix itself
    rows.append(row)

    cat_t = tf.constant(cat)
    bf = tfrs.layers.factorized_top_k.BruteForce(k=K)
    row, _ = measure_index("tfrs_bruteforce", lambda: bf.index(cat_t) and bf, tf_search_fn(bf), queries, exact,
                           bf_budget_s, tf.constant, max_recall_queries=200)
    rows.append(row)
    bf = None
    gc.collect()

    default = tfrs.layers.factorized_top_k.ScaNN(k=K, distance_measure="dot_product", **TFRS_DEFAULT)
    row, _ = measure_index("tfrs_default", lambda: default.index(cat_t) and default, tf_search_fn(default),
                           queries, exact, budget_s, tf.constant)
    row["params"] = dict(TFRS_DEFAULT)
    rows.append(row)
    out["default_same_path"] = sweep_leaves(default, TFRS_DEFAULT, queries, exact, budget_s / 2,
                                            grid=[TFRS_DEFAULT["num_leaves_to_search"]])[0]
    default = None
    gc.collect()

    params = scann_params(n, IndexConfig())
    tuned = make_scann(K, params)
    row, _ = measure_index("scann_tuned", lambda: tuned.index(cat_t) and tuned, tf_search_fn(tuned), queries, exact,
                           budget_s, tf.constant)
    row["params"] = dict(params)
    rows.append(row)
    out["indexes"] = rows
    out["tuned_sweep"] = sweep_leaves(tuned, params, queries, exact, budget_s / 2)
    tuned = cat_t = None
    gc.collect()
    return out


def summarise(case: dict) -> dict:
    by = {r["index"]: r for r in case["indexes"]}
    bf1 = by["tfrs_bruteforce"]["qps_b1"]
    tuned = by["scann_tuned"]
    sweep = case["tuned_sweep"]
    # matched throughput: the best tuned recall among sweep points at least as fast as tfrs defaults,
    # both measured through the same (override) search path, at batch 64 where the per-call overhead
    # is amortised (at batch 1 every point is ~call-overhead bound and the comparison says nothing)
    dsp = case["default_same_path"]
    faster = [r for r in sweep if r["qps_b64"] >= dsp["qps_b64"]]
    best_matched = max(faster, key=lambda r: r["recall_at_10"]) if faster else None
    # highest-throughput sweep point that reaches the recall target
    ok = [r for r in sweep if r["recall_at_10"] >= RECALL_TARGET]
    fastest_ok = max(ok, key=lambda r: r["qps_b1"]) if ok else None
    return {
        "bruteforce_qps_b1": bf1,
        "tuned_speedup_vs_bruteforce_b1": round(tuned["qps_b1"] / bf1, 1) if bf1 else None,
        "matched": None if best_matched is None else {
            "tuned_leaves_to_search": best_matched["leaves_to_search"],
            "tuned_recall": best_matched["recall_at_10"], "tuned_qps_b64": best_matched["qps_b64"],
            "tuned_qps_b1": best_matched["qps_b1"],
            "default_recall": dsp["recall_at_10"], "default_qps_b64": dsp["qps_b64"], "default_qps_b1": dsp["qps_b1"],
            "compared_at": "batch 64, same search path (leaves_to_search override)",
            "recall_gain": round(best_matched["recall_at_10"] - dsp["recall_at_10"], 4)},
        "fastest_at_recall_target": None if fastest_ok is None else {
            **fastest_ok, "speedup_vs_bruteforce_b1": round(fastest_ok["qps_b1"] / bf1, 1) if bf1 else None},
    }


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="comma-separated catalogue sizes")
    p.add_argument("--kinds", default="clustered,random")
    args = p.parse_args(argv)
    started = time.time()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([10_000] if args.quick
                                                                       else [10_000, 100_000, 1_000_000])
    kinds = args.kinds.split(",")
    n_queries = 200 if args.quick else 1000
    budget = 0.5 if args.quick else 2.0
    bf_budget = 0.5 if args.quick else 3.0
    cases, notes = [], []
    for n in sizes:
        for kind in kinds:
            need_gb = n * DIM * 4 * 6 / 2**30 + 1  # catalogue + TF copy + reorder copy + BF + temporaries
            if available_mem_gb() < need_gb:
                notes.append(f"skipped N={n:,} {kind}: {available_mem_gb():.1f} GB available < {need_gb:.1f} GB")
                print(f"[ann] {notes[-1]}", flush=True)
                continue
            case = run_case(n, kind, n_queries, budget, bf_budget)
            case["summary"] = summarise(case)
            cases.append(case)
            gc.collect()

    headers = ["N", "data", "index", "recall@10", "q/s b1", "q/s b64", "build s", "ΔRSS MB", "params"]
    rows = []
    for c in cases:
        for r in c["indexes"]:
            prm = r.get("params")
            ptxt = "" if not prm else (f"leaves {prm['num_leaves']}/{prm['num_leaves_to_search']}, "
                                       f"AH {prm['dimensions_per_block']}, reorder {prm['num_reordering_candidates']}"
                                       + (f", thr {prm['anisotropic_quantization_threshold']}"
                                          if "anisotropic_quantization_threshold" in prm else ""))
            rows.append([f"{c['n']:,}", c["kind"], r["index"], r["recall_at_10"], r["qps_b1"], r["qps_b64"],
                         r["build_s"], r["rss_delta_mb"], ptxt])
        m = c["summary"]["matched"]
        if m:
            rows.append([f"{c['n']:,}", c["kind"], f"matched b64 q/s: tuned @ L={m['tuned_leaves_to_search']}",
                         m["tuned_recall"], m["tuned_qps_b1"], m["tuned_qps_b64"], None, None,
                         f"gain {m['recall_gain']:+.3f} vs tfrs default ({m['default_recall']} at "
                         f"{m['default_qps_b64']:.0f} q/s b64, same path)"])

    goals = []
    big = max((c["n"] for c in cases), default=0)
    for c in [c for c in cases if c["n"] == big]:
        by = {r["index"]: r for r in c["indexes"]}
        s = c["summary"]
        tuned = by["scann_tuned"]
        tag = f"N={c['n']:,} {c['kind']}"
        at_1m = c["n"] >= 1_000_000
        note = "" if at_1m else "goal is defined at N=1M; measured at the largest N run"
        goals.append(goal(f"{tag}: tuned ScaNN recall@10 (export defaults)", tuned["recall_at_10"],
                          f">= {RECALL_TARGET}", tuned["recall_at_10"] >= RECALL_TARGET, note))
        goals.append(goal(f"{tag}: tuned ScaNN q/s ÷ brute-force q/s (batch 1)", s["tuned_speedup_vs_bruteforce_b1"],
                          f">= {SPEEDUP_TARGET:.0f}x", (s["tuned_speedup_vs_bruteforce_b1"] or 0) >= SPEEDUP_TARGET,
                          note))
        goals.append(goal(f"{tag}: tuned ScaNN build seconds", tuned["build_s"], f"<= {BUILD_TARGET_S:.0f}",
                          tuned["build_s"] <= BUILD_TARGET_S, note))
        m = s["matched"]
        goals.append(goal(f"{tag}: tuned − tfrs-default recall@10 at matched q/s",
                          None if m is None else m["recall_gain"], f">= {MATCHED_GAIN_TARGET}",
                          None if m is None else m["recall_gain"] >= MATCHED_GAIN_TARGET,
                          "compared at batch-64 q/s" if m else "no tuned sweep point as fast as tfrs defaults"))
    write_result("ann", args.quick, started,
                 {"sizes": sizes, "kinds": kinds, "dim": DIM, "k": K, "num_queries": n_queries,
                  "num_clusters": NUM_CLUSTERS, "cluster_noise": CLUSTER_NOISE, "tfrs_default": TFRS_DEFAULT,
                  "timing_budget_s": budget,
                  "qps_method": "back-to-back calls of a traced concrete function from one Python thread "
                                "(best of 3 runs); index rows call the layer, sweep rows ScaNN's override path"},
                 cases, goals, out_dir=args.out, table={"headers": headers, "rows": rows}, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

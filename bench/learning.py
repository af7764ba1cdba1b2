"""Learning benchmark: does training beat the untrained network and a random ranking?

Each case generates sample posters (cached under bench/.cache), runs the local pipeline up to the
Trainer with configs/demo.yaml, and compares held-out retrieval of: a random ranking, the same
network untrained (best of three initialisations, per metric), the phase-1 embedding and the final
phase-1+2 embedding. Cases: colour-graded posters (the default) with `label_strategy` primary and
combo, and genre-coloured posters (`--palette genre`), which show why the grades exist: there a
random CNN already ranks like an oracle that knows each poster's primary genre.

`learning_rows` is what tests/e2e/test_learning.py asserts on. Quick mode skips the runs (~2 min
each); `--quick --cases primary` runs one.

    python -m bench.learning [--quick] [--n 400] [--seed 0] [--cases primary,combo,genre_palette]
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from bench.common import CACHE_DIR, ROOT, base_parser, ensure_sample_data, goal, write_result
from poster_similarity.pipeline.lineage import newest_artifact_dir

METRICS = ("recall@1", "recall@10", "ir_recall@10", "precision@10", "map@r")
CASES = {  # name: (palette, config overrides)
    "primary": ("graded", ["label_strategy=primary"]),
    "combo": ("graded", ["label_strategy=combo"]),
    "genre_palette": ("genre", ["label_strategy=primary"]),
}
MAP_MARGIN = 0.15  # trained MAP@R over the best untrained initialisation (also asserted in the e2e test)


def learning_rows(cfg, model_dir: str, seeds: int = 3) -> dict[str, dict[str, float]]:
    """{"random", "untrained", "phase 1", "phase 1+2"} → metrics on the Transform eval split of the
    run in `cfg.pipeline_root`; the trained rows come from the tower's training_report.json."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from poster_similarity.components import model as model_lib
    from poster_similarity.components.dataset import Features, embed_dataset
    from poster_similarity.components.export import INDEX_REPORT
    from poster_similarity.components.tower import TRAINING_REPORT
    from poster_similarity.components.trainer import retrieval_report

    # the Trainer's tower has training_report.json; a served model carries it in index_report.json
    extra = os.path.join(model_dir, "assets.extra")
    name = TRAINING_REPORT if os.path.exists(os.path.join(extra, TRAINING_REPORT)) else INDEX_REPORT
    with open(os.path.join(extra, name)) as f:
        report = json.load(f)
    root = cfg.pipeline_root
    graph = newest_artifact_dir(root, "Transform", "transform_graph")
    feats = Features.from_transform(cfg, tft.TFTransformOutput(graph))
    eval_files = [os.path.join(newest_artifact_dir(root, "Transform", "transformed_examples"), "Split-eval", "*")]
    runs = []
    for seed in range(seeds):
        tf.keras.utils.set_random_seed(seed)
        net = model_lib.build_model(cfg.backbone, "none", (feats.h, feats.w), feats.num_genres)
        _, emb, genres = embed_dataset(model_lib.embedding_model(net), feats, eval_files)
        runs.append(retrieval_report(emb, genres))
    untrained = {m: max(r[m] for r in runs) for m in METRICS} | {"num_queries": float(len(genres))}
    random = retrieval_report(np.random.default_rng(0).normal(size=emb.shape), genres)
    return {"random": random, "untrained": untrained, "phase 1": report["training_history"]["phase1_eval"],
            "phase 1+2": report["eval_retrieval"]}


def format_rows(rows: dict[str, dict[str, float]]) -> str:
    return "\n".join(f"{name:10s} " + " ".join(f"{m} {r[m]:.3f}" for m in METRICS) for name, r in rows.items())


def run_case(name: str, n: int, seed: int, size: str) -> dict:
    from poster_similarity.core.config import load_config
    from poster_similarity.datatools import sample_data
    from poster_similarity.local_runner import run

    palette, overrides = CASES[name]
    w, h = sample_data.parse_size(size)
    data = ensure_sample_data(n, (w, h), seed, palette)
    workdir = os.path.join(CACHE_DIR, "learning", f"wd_{name}_{n}_{seed}_{w}x{h}")
    cfg = load_config(os.path.join(ROOT, "configs", "demo.yaml"), overrides + ["beam_direct_running_mode=in_memory"],
                      data_root=data, workdir=workdir)
    t0 = time.perf_counter()
    run(cfg, until="Trainer")
    model_dir = os.path.join(newest_artifact_dir(cfg.pipeline_root, "Trainer", "model"), "Format-Serving")
    rows = learning_rows(cfg, model_dir)
    print(f"[learning] {name} ({palette} palette, {n} posters, seed {seed}):\n{format_rows(rows)}", flush=True)
    return {"case": name, "palette": palette, "overrides": overrides, "posters": n, "seed": seed, "size": size,
            "seconds": round(time.perf_counter() - t0, 1), "rows": rows}


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400, help="posters per case")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="200x300")
    p.add_argument("--cases", default=None, help=f"comma-separated subset of {','.join(CASES)} (quick: none)")
    args = p.parse_args(argv)
    started = time.time()
    names = args.cases.split(",") if args.cases else ([] if args.quick else list(CASES))
    unknown = set(names) - set(CASES)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    results = [run_case(c, args.n, args.seed, args.size) for c in names]
    goals, rows, notes = [], [], []
    if not results:
        notes.append("quick mode: training runs skipped (pass --cases primary to run one, ~2 min)")
        goals.append(goal("trained MAP@R over the untrained network", None, f">= +{MAP_MARGIN}", None,
                          "skipped in quick mode"))
    for r in results:
        t, u = r["rows"]["phase 1+2"], r["rows"]["untrained"]
        margin = round(t["map@r"] - u["map@r"], 3)
        if r["palette"] == "graded":
            goals.append(goal(f"{r['case']}: trained MAP@R over the untrained network", margin,
                              f">= +{MAP_MARGIN}", margin >= MAP_MARGIN))
        for name, m in r["rows"].items():
            rows.append([r["case"], name] + [round(m[k], 3) for k in METRICS])
    headers = ["case", "embedding", *METRICS]
    table = {"headers": headers, "rows": rows or [["(skipped)"] + [""] * (len(headers) - 1)]}
    write_result("learning", args.quick, started, vars(args), results, goals, out_dir=args.out, table=table,
                 notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

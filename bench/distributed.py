"""Multi-worker training on this machine: 1 vs 2 worker processes, and the per-epoch checkpoint cost.

Each run is the Trainer as every Vertex AI / TFJob replica runs it (tests/local_job.py: the
`tfx.scripts.run_executor` command, `TF_CONFIG` on loopback) over the Transform output of a local
pipeline run on sample posters (cached under bench/.cache). Reported per run: wall time of the job
(process start → exit, export included), and steady-state training images/s from the chief's
epoch log (global batch × steps ÷ epoch time, the first epoch of each `fit` left out: it traces).
On 2 cores two workers share the same cores, so no speed-up is expected: the difference is what
the all-reduce and a second process cost.

Checkpoint overhead: `tf.keras.callbacks.BackupAndRestore`'s per-epoch save, plus the epoch log's
weight fingerprint, timed in-process for the same model, against the measured epoch time.

    python -m bench.distributed [--quick] [--n 160] [--workers 1,2]
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

from bench.common import CACHE_DIR, ROOT, base_parser, ensure_sample_data, goal, write_result

OVERRIDES = ["beam_direct_running_mode=in_memory", "image_size=[96, 64]", "phase1_epochs=3",
             "unfreeze_schedule=[[0, 2], [1, -1]]", "batch_size=16", "batch_p=4", "batch_k=4",
             "phase2_epochs=6", "phase2_steps_per_epoch=8", "distributed.startup_timeout_s=300"]
JOB_TIMEOUT_S = 1800


def transform_output(n: int, seed: int) -> tuple[object, tuple[str, str, str]]:
    """(config, Transform dirs) of a pipeline run through Transform on `n` sample posters (cached)."""
    from poster_similarity.core.config import load_config
    from poster_similarity.local_runner import run
    from poster_similarity.pipeline.lineage import newest_artifact_dir

    data = ensure_sample_data(n, (100, 150), seed, palette="genre")
    work = os.path.join(CACHE_DIR, "distributed", f"work_{n}_{seed}")
    cfg = load_config(os.path.join(ROOT, "configs", "demo.yaml"), OVERRIDES, data_root=data, workdir=work)
    try:
        dirs = tuple(newest_artifact_dir(cfg.pipeline_root, c, o) for c, o in (
            ("Transform", "transformed_examples"), ("Transform", "transform_graph"), ("SchemaGen", "schema")))
    except (FileNotFoundError, ValueError):
        run(cfg, until="Transform")
        return transform_output(n, seed)
    return cfg, dirs


def throughput(events: list[dict], global_batch: dict[str, int], steps: dict[str, int]) -> dict[str, float]:
    """Steady-state images/s per phase from the epoch log (first epoch of each segment skipped)."""
    out: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    for e in events:
        seg = e["segment"]
        phase = "phase2" if seg == "phase2" else "phase1"
        if e["event"] == "start":
            last[seg] = None
        elif last.get(seg) is None:
            last[seg] = e["time"]
        else:
            out.setdefault(phase, []).append(e["time"] - last[seg])
            last[seg] = e["time"]
    return {f"{ph}_images_per_s": round(global_batch[ph] * steps[ph] / statistics.median(ts), 1)
            for ph, ts in out.items()}


def run_job(cfg, dirs, workers: int, out: str) -> dict:
    from poster_similarity.components.tower import TRAINING_REPORT
    from poster_similarity.pipeline.cluster_specs import replica_command, trainer_io
    from tests.local_job import LocalJob, tf_configs

    cmd = replica_command(*trainer_io(cfg, *dirs, out))
    configs = tf_configs(workers) if workers > 1 else [{}]
    job = LocalJob(cmd, configs, os.path.join(out, "logs"), env={"PYTHONPATH": ROOT}).start()
    codes = job.wait(JOB_TIMEOUT_S)
    wall = time.perf_counter() - job.t0
    with open(os.path.join(out, "model_run", "backup", "epochs.jsonl")) as f:
        events = [json.loads(line) for line in f]
    global_batch = {"phase1": cfg.batch_size * workers, "phase2": cfg.batch_p * cfg.batch_k * workers}
    with open(os.path.join(out, "model", "Format-Serving", "assets.extra", TRAINING_REPORT)) as f:
        report = json.load(f)
    n_train = sum(1 for _ in _train_records(dirs[0]))
    steps = {"phase1": -(-n_train // global_batch["phase1"]), "phase2": cfg.phase2_steps_per_epoch}
    res = {"workers": workers, "returncodes": codes, "wall_s": round(wall, 1), "n_train": n_train,
           "global_batch": global_batch, "steps_per_epoch": steps,
           "eval_map@r": round(report["eval_retrieval"]["map@r"], 3)}
    res.update(throughput(events, global_batch, steps))
    epoch_s = [b["time"] - a["time"] for a, b in zip(events, events[1:], strict=False)
               if a["segment"] == b["segment"] == "phase2" and a["event"] == b["event"] == "epoch_end"]
    res["phase2_epoch_s"] = round(statistics.median(epoch_s), 3) if epoch_s else None
    return res


def _train_records(transformed_examples: str):
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(transformed_examples, "Split-train", "*"))
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def checkpoint_cost(cfg, repeats: int = 5) -> dict:
    """Seconds per BackupAndRestore epoch save and per epoch-log fingerprint, for cfg's model."""
    import tensorflow as tf

    from poster_similarity.components import model as model_lib
    from poster_similarity.components import preemption

    h, w = cfg.image_size
    model = model_lib.build_model(cfg.backbone, "none", (h, w), 8, cfg.embedding_dim, cfg.dropout)
    tower = model_lib.embedding_model(model)
    tower.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
    x = tf.zeros((4, h, w, 3), tf.uint8)
    tower.fit(x, tf.zeros((4, cfg.embedding_dim)), epochs=1, verbose=0)  # creates the optimizer slots
    with tempfile.TemporaryDirectory() as tmp:
        cb = tf.keras.callbacks.BackupAndRestore(tmp, delete_checkpoint=False)
        cb.set_model(tower)
        cb.on_train_begin()
        saves = []
        for epoch in range(repeats):
            t0 = time.perf_counter()
            cb.on_epoch_end(epoch)
            saves.append(time.perf_counter() - t0)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs)
    fps = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        preemption.fingerprint(tower)
        fps.append(time.perf_counter() - t0)
    return {"backbone": cfg.backbone, "image_size": [h, w], "params": int(tower.count_params()),
            "save_s": round(statistics.median(saves[1:] or saves), 4),
            "fingerprint_s": round(statistics.median(fps), 4), "checkpoint_bytes": size}


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=160, help="sample posters")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", default="1,2")
    args = p.parse_args(argv)
    started = time.time()
    from poster_similarity.core.config import load_config

    results: dict = {"runs": [], "checkpoint": None}
    goals, notes = [], []
    if args.quick:
        cfg = load_config(os.path.join(ROOT, "configs", "demo.yaml"), OVERRIDES)
        notes.append("quick mode: the 1- and 2-worker jobs are skipped (~10 min on 2 cores)")
    else:
        cfg, dirs = transform_output(args.n, args.seed)
        for workers in (int(w) for w in args.workers.split(",")):
            out = tempfile.mkdtemp(prefix=f"bench_dist_{workers}w_")
            print(f"[bench] {workers} worker(s) → {out}", flush=True)
            results["runs"].append(run_job(cfg, dirs, workers, out))
    results["checkpoint"] = checkpoint_cost(cfg)
    ck = results["checkpoint"]
    rows = []
    for r in results["runs"]:
        overhead = (ck["save_s"] + ck["fingerprint_s"]) / r["phase2_epoch_s"] if r["phase2_epoch_s"] else None
        r["checkpoint_overhead_per_epoch"] = round(overhead, 3) if overhead is not None else None
        rows.append([r["workers"], r["wall_s"], r.get("phase1_images_per_s"), r.get("phase2_images_per_s"),
                     r["phase2_epoch_s"], r["checkpoint_overhead_per_epoch"], r["eval_map@r"]])
    ok = [r for r in results["runs"] if all(c == 0 for c in r["returncodes"].values())]
    goals.append(goal("1- and 2-worker jobs finish", f"{len(ok)}/{len(results['runs'])}", "all",
                      (len(ok) == len(results["runs"])) if results["runs"] else None))
    overheads = [r["checkpoint_overhead_per_epoch"] for r in results["runs"] if r["checkpoint_overhead_per_epoch"]]
    goals.append(goal("checkpoint save + fingerprint ÷ phase-2 epoch time", max(overheads) if overheads else None,
                      "<= 0.10", (max(overheads) <= 0.10) if overheads else None))
    notes.append(f"checkpoint of {ck['backbone']} {ck['image_size']} ({ck['params']:,} params, "
                 f"{ck['checkpoint_bytes'] / 1e6:.1f} MB): save {ck['save_s'] * 1000:.0f} ms, fingerprint "
                 f"{ck['fingerprint_s'] * 1000:.0f} ms per epoch")
    notes.append("2 CPU cores shared by both workers: no speed-up is expected; images/s use the global batch")
    headers = ["workers", "wall s", "phase-1 img/s", "phase-2 img/s", "phase-2 epoch s", "ckpt overhead/epoch",
               "eval MAP@R"]
    write_result("distributed", args.quick, started, vars(args), results, goals, out_dir=args.out,
                 table={"headers": headers, "rows": rows or [["(skipped)"] + [""] * (len(headers) - 1)]},
                 notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

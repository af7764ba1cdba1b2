"""Pipeline benchmark: per-component wall time of the local TFX pipeline, and Transform's Beam mode.

For each size, `posters sample --n N --tfrecords` data (cached under bench/.cache) goes through the full
local pipeline (configs/demo.yaml, fresh workdir, LocalDagRunner in a `bench.pipeline_child` process).
Component durations come from ML Metadata: `last_update_time − create_time` of each execution in
`<workdir>/metadata.sqlite`.

Transform comparison (full mode, largest size): the demo config runs Beam's DirectRunner with
`multi_processing` (2 workers); the same data then goes through ExampleGen → StatisticsGen → SchemaGen
→ Transform alone with `in_memory`, in a fresh workdir, and the two Transform executions are compared.

Quick mode skips the pipeline (one run costs ~2 min: the TFX import alone is ~37 s) and writes a
result saying so; `--quick --sizes 60` runs 60 posters with 1+1 epochs, in_memory, no comparison.
bench/run_all.py hands the model the largest run pushed to bench/serving.py.

    python -m bench.pipeline [--quick] [--sizes 500,2000]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from bench.common import CACHE_DIR, ROOT, base_parser, ensure_sample_data, goal, write_result

PIPE_DIR = os.path.join(CACHE_DIR, "pipeline")
QUICK_WORKDIR = os.path.join(PIPE_DIR, "wd_quick")
SPEEDUP_TARGET = 1.5
COMPONENT_ORDER = ("ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
                   "CatalogueExampleGen", "CatalogueEmbedder", "IndexBuilder", "Resolver", "Evaluator", "Pusher")

def run_pipeline(data: str, workdir: str, overrides: list[str], mode: str = "full") -> dict:
    import json

    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    cmd = [sys.executable, "-m", "bench.pipeline_child", os.path.join(ROOT, "configs", "demo.yaml"),
           json.dumps(overrides), data, workdir, mode]
    t0 = time.perf_counter()
    log_path = os.path.join(workdir, "bench_run.log")
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    meta = os.path.join(workdir, "metadata.sqlite")
    from poster_similarity.pipeline.lineage import component_times

    execs = component_times(meta) if os.path.exists(meta) else []
    ok = proc.returncode == 0
    print(f"[pipeline] {mode} run in {workdir}: rc {proc.returncode}, {wall:.1f} s", flush=True)
    if not ok:
        with open(log_path) as f:
            print(f.read()[-3000:], file=sys.stderr)
    return {"workdir": workdir, "overrides": overrides, "mode": mode, "returncode": proc.returncode,
            "process_wall_s": round(wall, 1), "executions": execs,
            "sum_component_s": round(sum(e["seconds"] for e in execs), 1), "log": log_path}


def by_component(run: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for e in run["executions"]:
        out[e["component"]] = round(out.get(e["component"], 0.0) + e["seconds"], 2)
    return out


def transform_compare(big: dict) -> tuple[dict, dict]:
    """Transform in the largest run (the demo config's multi_processing) against a Transform-only run
    on the same data with in_memory: (the comparison, its goal record)."""
    n = big["posters"]
    mp = by_component(big).get("Transform")
    im_run = run_pipeline(ensure_sample_data(n), os.path.join(PIPE_DIR, f"wd_{n}_transform_in_memory"),
                          ["beam_direct_running_mode=in_memory"], mode="transform_only")
    im = by_component(im_run).get("Transform")
    compare = {"posters": n, "multi_processing_s": mp, "in_memory_s": im,
               "multi_processing_workers": 2, "in_memory_run": im_run}
    if not (mp and im):
        return compare, goal("Transform multi_processing speedup over in_memory", None, f">= {SPEEDUP_TARGET}",
                             None, "a Transform run failed")
    speedup = round(im / mp, 2)
    compare["multi_processing_speedup"] = speedup
    compare["faster"] = "multi_processing" if mp < im else "in_memory"
    return compare, goal(f"Transform multi_processing (2 workers) speedup over in_memory, {n} posters",
                         speedup, f">= {SPEEDUP_TARGET}", speedup >= SPEEDUP_TARGET, f"faster: {compare['faster']}")


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="comma-separated poster counts (default 500,2000; quick 60)")
    p.add_argument("--no-compare", action="store_true", help="skip the Transform in_memory comparison")
    p.add_argument("--reuse-runs", action="store_true",
                   help="take the full-pipeline runs from the existing <out>/pipeline.json, run only the comparison")
    args = p.parse_args(argv)
    started = time.time()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([] if args.quick else [500, 2000])
    quick_overrides = ["phase1_epochs=1", "phase2_epochs=1", "beam_direct_running_mode=in_memory"]
    runs, goals, notes = [], [], []
    if not sizes:
        notes.append("quick mode: pipeline run skipped (pass --sizes 60 to run 60 posters)")
    if args.reuse_runs:
        import json

        with open(os.path.join(args.out, "pipeline.json")) as f:
            prev = json.load(f)
        runs = prev["results"]["runs"]
        sizes = [r["posters"] for r in runs]
        started = time.time() - prev["seconds"]  # keep the recorded duration of the reused runs
        notes.append(f"full-pipeline runs reused from the run started {prev['started']}; "
                     "Transform comparison run afterwards")
    for n in ([] if args.reuse_runs else sizes):
        data = ensure_sample_data(n)
        workdir = QUICK_WORKDIR if args.quick else os.path.join(PIPE_DIR, f"wd_{n}")
        r = run_pipeline(data, workdir, quick_overrides if args.quick else [])
        r["posters"] = n
        r["serving_base_path"] = os.path.join(workdir, "serving_model", "posters")
        runs.append(r)
    compare = None
    if not args.quick and not args.no_compare and runs:
        compare, g = transform_compare(runs[-1])
        goals.append(g)
    else:
        goals.append(goal("Transform multi_processing speedup over in_memory", None, f">= {SPEEDUP_TARGET}", None,
                          "skipped in quick mode" if args.quick else "skipped (--no-compare)"))
    for r in runs:
        goals.append(goal(f"pipeline at {r['posters']} posters completes", r["returncode"] == 0, "exit 0",
                          r["returncode"] == 0))

    comps = [c for c in COMPONENT_ORDER if any(c in by_component(r) for r in runs)]
    headers = ["posters", "mode"] + comps + ["sum", "process wall"]
    rows = []
    for r in runs:
        bc = by_component(r)
        mode = "in_memory (quick)" if args.quick else "demo.yaml (multi_processing ×2)"
        rows.append([r["posters"], mode] + [bc.get(c) for c in comps] + [r["sum_component_s"], r["process_wall_s"]])
    if compare and compare.get("in_memory_run"):
        bc = by_component(compare["in_memory_run"])
        rows.append([compare["posters"], "in_memory, up to Transform"] + [bc.get(c) for c in comps]
                    + [compare["in_memory_run"]["sum_component_s"], compare["in_memory_run"]["process_wall_s"]])
        notes.append(f"Transform at {compare['posters']} posters: multi_processing {compare['multi_processing_s']} s "
                     f"vs in_memory {compare['in_memory_s']} s → faster: {compare.get('faster')}")
    notes.append("seconds per component from ML Metadata (last_update_time − create_time); "
                 "process wall includes the ~37 s TFX import")
    if not rows:
        rows.append(["–", "skipped (quick)"] + [None] * (len(headers) - 2))
    write_result("pipeline", args.quick, started,
                 {"sizes": sizes, "config": "configs/demo.yaml", "overrides": quick_overrides if args.quick else [],
                  "compare_transform": compare is not None},
                 {"runs": runs, "transform_compare": compare}, goals, out_dir=args.out, extra_versions=("tfx",),
                 table={"headers": headers, "rows": rows}, notes=notes)
    return 0 if all(r["returncode"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Shared helpers for the benchmarks: machine/version info, timing, JSON results, the README table.

Each benchmark writes `bench/results/<name>.json` with the same top-level keys:
  name, quick, started, seconds, machine, versions, params, results, goals, table, notes
where `goals` is a list of {"goal", "value", "target", "met"} (met: true | false | null = not measured).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root (bench/ is not installed)
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
TABLE_FILE = "README_table.md"
BENCHES = ("ann", "serving", "training", "pipeline", "learning", "distributed", "real_posters")
# Benchmarks on data the repository does not ship (no licence to redistribute it): `run_all` runs them
# only when pointed at the data, so their results file may be absent from a run's folder.
NEEDS_EXTERNAL_DATA = ("real_posters",)


# --- environment ----------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu, flags = "unknown", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1]
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f") if f" {f} " in f" {flags} "]
    return {"cpu_model": cpu, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "simd": simd, "mem_total_gb": mem_gb, "platform": platform.platform(),
            "python": platform.python_version(), "gpu": "none"}


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of tf / scann / tfrs (and `extra` modules), read from package metadata (no imports)."""
    from importlib import metadata

    dists = {"tf": "tensorflow", "scann": "scann", "tfrs": "tensorflow-recommenders", "numpy": "numpy"}
    dists.update({e: e for e in extra})
    out = {}
    for key, dist in dists.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_mem_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def build_in_place(target: str, build: Callable[[str], Any]) -> None:
    """Runs `build(tmp)` in a new directory beside `target`, then renames it to `target`: a
    concurrent run (the test suite runs on 2 processes, or two benchmarks) never reads a half-built
    cache entry; when another process renamed its copy first, this one's is removed."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=os.path.dirname(target))
    try:
        build(tmp)
        os.rename(tmp, target)
    except OSError:
        if not os.path.isdir(target):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- data -------------------------------------------------------------------------------------------
def ensure_sample_data(n: int, size: tuple[int, int] = (200, 300), seed: int = 0, palette: str = "graded") -> str:
    """TFRecords of `n` sample posters, generated once per parameter set under bench/.cache/data/."""
    import glob

    from poster_similarity.datatools import sample_data

    out = os.path.join(CACHE_DIR, "data", f"posters_{n}_{seed}_{size[0]}x{size[1]}_{palette}")
    tfr = os.path.join(out, sample_data.TFRECORD_DIR)
    if not glob.glob(os.path.join(tfr, "*.tfrecord*")):
        t0 = time.perf_counter()
        if os.path.isdir(out) and not glob.glob(os.path.join(tfr, "*.tfrecord*")):
            shutil.rmtree(out, ignore_errors=True)  # an interrupted run's leftovers (before build_in_place)
        build_in_place(out, lambda tmp: sample_data.generate(tmp, n, size, seed, tfrecords=True, palette=palette))
        print(f"[bench] generated {n} sample posters in {time.perf_counter() - t0:.1f} s", flush=True)
    return tfr


# --- timing -----------------------------------------------------------------------------------------
def time_calls(fn: Callable[[int], Any], n_max: int, budget_s: float, warmup: int = 2) -> list[float]:
    """Calls fn(i) for i = 0.. until n_max calls or budget_s seconds; returns per-call seconds."""
    for i in range(warmup):
        fn(i)
    out: list[float] = []
    t_end = time.perf_counter() + budget_s
    for i in range(n_max):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
        if time.perf_counter() > t_end and len(out) >= 3:
            break
    return out


def percentiles(samples: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p95/p99/mean of samples (seconds) in milliseconds by default."""
    if not samples:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "n": 0}
    s = sorted(samples)

    def q(p):
        return s[min(len(s) - 1, int(round(p * (len(s) - 1))))] * scale

    return {"p50": round(q(0.50), 3), "p95": round(q(0.95), 3), "p99": round(q(0.99), 3),
            "mean": round(statistics.fmean(s) * scale, 3), "n": len(s)}


def goal(name: str, value: Any, target: str, met: bool | None, note: str = "") -> dict[str, Any]:
    g = {"goal": name, "value": value, "target": target, "met": met}
    if note:
        g["note"] = note
    return g


# --- results ------------------------------------------------------------------------------------------
def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="CI mode: tiny sizes, keeps the script working")
    p.add_argument("--out", default=RESULTS_DIR, help="results folder (default bench/results)")
    return p


def write_result(name: str, quick: bool, started: float, params: dict, results: Any, goals: list[dict],
                 out_dir: str = RESULTS_DIR, extra_versions: tuple[str, ...] = (),
                 table: dict | None = None, notes: list[str] | None = None) -> str:
    """table: {"headers": [...], "rows": [[...]]} rendered into README_table.md; notes: bullet lines."""
    os.makedirs(out_dir, exist_ok=True)
    doc = {
        "name": name, "quick": quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine_info(), "versions": versions(extra_versions),
        "params": params, "results": results, "goals": goals,
        "table": table or {"headers": [], "rows": []}, "notes": list(notes or []),
    }
    path = os.path.join(out_dir, f"{name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, default=_json_default)
    os.replace(tmp, path)
    print(f"[bench] wrote {path}", file=sys.stderr)
    return path


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


def load_results(out_dir: str = RESULTS_DIR) -> dict[str, dict]:
    docs = {}
    for name in BENCHES:
        path = os.path.join(out_dir, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                docs[name] = json.load(f)
    return docs


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def render_table(out_dir: str = RESULTS_DIR) -> str:
    """bench/results/README_table.md: machine line, each benchmark's own table, then all goals."""
    docs = load_results(out_dir)
    parts = ["<!-- generated by `make bench` (bench/common.py:render_table); do not edit -->"]
    if docs:
        any_doc = next(iter(docs.values()))
        m, v = any_doc["machine"], any_doc["versions"]
        parts.append(f"Machine: {m['cpu_model']}, {m['cores']} cores ({', '.join(m['simd'])}), "
                     f"{m['mem_total_gb']} GB RAM, no GPU · TF {v['tf']}, ScaNN {v['scann']}, tfrs {v['tfrs']}")
        modes = sorted({("quick" if d["quick"] else "full") for d in docs.values()})
        parts.append(f"Mode: {', '.join(modes)}; run {max(d['started'] for d in docs.values())}")
    for name in BENCHES:
        if name not in docs:
            continue
        d = docs[name]
        table = d.get("table")
        parts.append(f"\n### {name}{' (quick)' if d['quick'] else ''} — {d['seconds']} s\n")
        if table:
            parts.append(md_table(table["headers"], table["rows"]))
        if d.get("notes"):
            parts.append("\n" + "\n".join(f"- {note}" for note in d["notes"]))
    rows = []
    for name in BENCHES:
        for g in docs.get(name, {}).get("goals", []):
            met = {True: "met", False: "**not met**", None: "not measured"}[g["met"]]
            rows.append([name, g["goal"], g["value"], g["target"], met + (f" ({g['note']})" if g.get("note") else "")])
    if rows:
        parts.append("\n### Goals\n")
        parts.append(md_table(["bench", "goal", "value", "target", "status"], rows))
    text = "\n".join(parts) + "\n"
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, TABLE_FILE), "w") as f:
        f.write(text)
    return text


def latest_model_base(out_dir: str = RESULTS_DIR) -> str | None:
    """The serving base path the pipeline benchmark last pushed to (if its model exists)."""
    path = os.path.join(out_dir, "pipeline.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        runs = json.load(f).get("results", {}).get("runs", [])
    for r in reversed(runs):
        base = r.get("serving_base_path")
        if r.get("returncode") == 0 and base and os.path.isdir(base) and any(
                os.path.isfile(os.path.join(base, v, "saved_model.pb")) for v in os.listdir(base)):
            return base
    return None

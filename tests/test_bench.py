"""`make bench-quick` keeps working: every benchmark runs in quick mode and writes its JSON + the table.

Behaviour only (files, keys, goal records) — never timings, which depend on the machine and its load.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from poster_similarity.bench.common import BENCHES
from tests.helpers import ROOT

# What every results file promises its readers (render_table, the docs): the contract, written out here.
KEYS = {"name", "quick", "started", "seconds", "machine", "versions", "params", "results", "goals", "table", "notes"}


@pytest.mark.slow
def test_bench_quick_writes_results(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "poster_similarity.bench.run_all", "--quick", "--out", str(out)],
                          cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in BENCHES:
        path = out / f"{name}.json"
        assert path.exists(), f"{name}.json missing"
        doc = json.loads(path.read_text())
        assert KEYS <= set(doc), f"{name}: missing keys {KEYS - set(doc)}"
        assert doc["name"] == name and doc["quick"] is True
        assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu_model"]
        assert {"tf", "scann", "tfrs"} <= set(doc["versions"])
        for g in doc["goals"]:
            assert {"goal", "value", "target", "met"} <= set(g) and g["met"] in (True, False, None)
        assert doc["table"]["headers"] and doc["table"]["rows"]
    ann = json.loads((out / "ann.json").read_text())
    case = ann["results"][0]
    assert case["n"] == 10_000
    assert {r["index"] for r in case["indexes"]} == {"numpy_exact", "tfrs_bruteforce", "tfrs_default", "scann_tuned"}
    for r in case["indexes"]:
        assert 0.0 <= r["recall_at_10"] <= 1.0 and r["qps_b1"] > 0 and r["qps_b64"] > 0
    serving = json.loads((out / "serving.json").read_text())
    modes = {r["mode"] for r in serving["results"]["closed_loop"]}
    assert modes == {"inprocess", "rest", "grpc", "rest+batching", "grpc+batching", "rest+eager-batching",
                     "grpc+eager-batching"}
    assert all(r["latency_ms"]["p50"] > 0 for r in serving["results"]["closed_loop"])
    batching = [g for g in serving["goals"] if g["goal"].startswith("server-side")]
    assert len(batching) == 4 and all(g["met"] in (True, False) and g["value"] > 0 for g in batching)
    training = json.loads((out / "training.json").read_text())
    assert training["results"]["backbones"][0]["backbone"] == "small_cnn"
    assert training["results"]["backbones"][0]["forward_gflops_per_image"] > 0
    pipeline = json.loads((out / "pipeline.json").read_text())  # quick mode skips the ~2 min pipeline run
    assert pipeline["results"]["runs"] == [] and any(g["met"] is None for g in pipeline["goals"])
    learning = json.loads((out / "learning.json").read_text())  # quick mode skips the training runs
    assert learning["results"] == [] and learning["goals"][0]["met"] is None
    distributed = json.loads((out / "distributed.json").read_text())  # quick: only the checkpoint cost
    assert distributed["results"]["runs"] == [] and distributed["results"]["checkpoint"]["save_s"] > 0
    table = (out / "README_table.md").read_text()
    for name in BENCHES:
        assert f"### {name}" in table

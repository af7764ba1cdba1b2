"""bench.serving_ab keeps working: both servers (the pre-hardening one from git history, this one)
answer every interleaved request, and the result records one p50 ratio per protocol.

Behaviour only, never timings: the ratio's value depends on the machine and its load.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.serving_ab import BASELINE_COMMIT
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def test_interleaved_ab_writes_both_arms(tmp_path):
    in_history = subprocess.run(["git", "cat-file", "-e", f"{BASELINE_COMMIT}^{{commit}}"], cwd=ROOT,
                                capture_output=True).returncode == 0
    if not in_history:  # a shallow clone cannot rebuild the baseline; the bench says so itself
        pytest.skip(f"{BASELINE_COMMIT[:7]} is not in this clone's history")
    proc = subprocess.run([sys.executable, "-m", "bench.serving_ab", "--quick", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "serving_ab.json").read_text())
    assert doc["params"]["baseline_commit"] == BASELINE_COMMIT
    for protocol in ("rest", "grpc"):
        r = doc["results"][protocol]
        n = doc["params"]["rounds"] * doc["params"]["block"]
        assert r["latency_ms"]["before"]["n"] == r["latency_ms"]["after"]["n"] == n == r["requests_per_arm"]
        assert r["p50_ratio"] == round(r["latency_ms"]["after"]["p50"] / r["latency_ms"]["before"]["p50"], 3)
    assert [g["met"] in (True, False) for g in doc["goals"]] == [True, True]

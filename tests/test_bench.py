"""`make bench-quick` keeps working: every benchmark runs in quick mode and writes its JSON + the table.

Behaviour only (files, keys, goal records) — never timings, which depend on the machine and its load.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import run_all
from bench.common import BENCHES, NEEDS_EXTERNAL_DATA, render_table, write_result
from tests.helpers import ROOT

# What every results file promises its readers (render_table, the docs): the contract, written out here.
KEYS = {"name", "quick", "started", "seconds", "machine", "versions", "params", "results", "goals", "table", "notes"}


@pytest.mark.slow
def test_bench_quick_writes_results(tmp_path):
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k not in (run_all.REAL_TRAIN_ENV, run_all.REAL_TEST_ENV)}
    proc = subprocess.run([sys.executable, "-m", "bench.run_all", "--quick", "--out", str(out)],
                          cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # benchmarks on data the repository does not ship are skipped, saying so, and write nothing
    for name in NEEDS_EXTERNAL_DATA:
        assert f"[run_all] {name}: skipped: no real poster folders given" in proc.stdout
        assert not (out / f"{name}.json").exists()
    ran = [name for name in BENCHES if name not in NEEDS_EXTERNAL_DATA]
    for name in ran:
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
    for name in ran:
        assert f"### {name}" in table
    for name in NEEDS_EXTERNAL_DATA:
        assert f"### {name}" not in table


def test_run_all_skips_real_posters_without_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(run_all.REAL_TRAIN_ENV, raising=False)
    monkeypatch.delenv(run_all.REAL_TEST_ENV, raising=False)
    calls = []
    monkeypatch.setattr(run_all.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    assert run_all.main(["--only", "real_posters", "--out", str(tmp_path)]) == 0
    assert "[run_all] real_posters: skipped: no real poster folders given" in capsys.readouterr().out
    assert calls == [] and not (tmp_path / "real_posters.json").exists()


def test_run_all_passes_real_poster_folders_from_flags_or_environment(tmp_path, monkeypatch):
    calls = []

    class Done:
        returncode = 0

    monkeypatch.setattr(run_all.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or Done())
    monkeypatch.setenv(run_all.REAL_TEST_ENV, "rel/test")  # relative: the benchmark runs from the repository
    monkeypatch.delenv(run_all.REAL_TRAIN_ENV, raising=False)
    assert run_all.main(["--only", "real_posters", "--out", str(tmp_path)]) == 0
    assert calls[-1][1:3] == ["-m", "bench.real_posters"]
    assert calls[-1][-3:] == ["--test", os.path.abspath("rel/test"), "--skip-train"]  # no train folder: baselines
    assert run_all.main(["--only", "real_posters", "--out", str(tmp_path), "--quick",
                         "--real-train", "/d/train", "--real-test", "/d/test"]) == 0  # flags win over the env
    assert calls[-1][-5:] == ["--quick", "--test", "/d/test", "--train", "/d/train"]
    assert run_all.real_posters_args("/d/train", None) is None  # a train folder alone: nothing to evaluate on


def test_render_table_includes_real_posters_results(tmp_path):
    table = {"headers": ["embedding", "macro genre P@10"], "rows": [["random", 0.143], ["frozen backbone", 0.254]]}
    write_result("real_posters", False, 0.0, {}, {}, [], out_dir=str(tmp_path), table=table, notes=["a note"])
    text = render_table(str(tmp_path))
    assert "### real_posters — " in text and "| frozen backbone | 0.254 |" in text and "- a note" in text


def test_sample_data_is_generated_once_and_renamed_into_place(tmp_path, monkeypatch):
    """Two test processes may ask for the same benchmark data at once: the data appears whole (a
    rename), an interrupted run's leftovers are replaced, and a second call reuses the first's."""
    from bench import common

    monkeypatch.setattr(common, "CACHE_DIR", str(tmp_path))
    leftover = tmp_path / "data" / "posters_4_0_32x48_graded" / "tfrecords"
    leftover.mkdir(parents=True)
    (leftover / "half-written.tmp").write_text("")
    tfr = common.ensure_sample_data(4, (32, 48))
    assert tfr == str(leftover)
    files = sorted(os.listdir(tfr))
    assert files and all(".tfrecord" in f for f in files)
    stamp = os.path.getmtime(os.path.join(tfr, files[0]))
    assert common.ensure_sample_data(4, (32, 48)) == tfr and os.path.getmtime(os.path.join(tfr, files[0])) == stamp
    assert os.listdir(tmp_path / "data") == ["posters_4_0_32x48_graded"]  # no temporary copy left behind

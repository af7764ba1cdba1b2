"""bench.serving_ab keeps working and judges its goal right, and the server child the serving
benchmarks share (bench.server_child) starts, stops, and fails within its deadline.

The goal rule is tested on known numbers on both sides of the threshold; the end-to-end run (slow)
checks that the result file is consistent with itself: the ratio follows from the measured p50s and
`met` from the ratio. Never timings: those depend on the machine and its load.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from bench.server_child import ServerChild
from bench.serving_ab import BASELINE_COMMIT, P50_GOAL, p50_goal
from tests.helpers import ROOT

FAKE = "tests.children.fake_servers"


# --- the goal ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("before", "after", "ratio", "met"), [
    (2.0, 1.9, 0.95, True),     # faster after the hardening
    (2.0, 2.2, 1.1, True),      # exactly at the limit: still met
    (2.0, 2.21, 1.105, False),  # just over
    (1.5, 3.0, 2.0, False),
])
def test_p50_goal_is_met_up_to_ten_percent_slower(before, after, ratio, met):
    g = p50_goal("rest", before, after)
    assert (g["value"], g["met"]) == (ratio, met)
    assert g["target"] == "<= 1.10" and g["goal"].startswith("rest: ")


# --- the server child -------------------------------------------------------------------------------

def test_server_child_reports_ports_and_stops_on_close(tmp_path):
    log = tmp_path / "ready.log"
    with ServerChild(str(tmp_path), "posters", server=f"{FAKE}:Ready", label="ready", log_path=str(log)) as srv:
        assert srv.addr == {"rest": "127.0.0.1:18501", "grpc": "127.0.0.1:18500"}
    assert srv.proc.returncode == 0
    # what the server printed on stdout went to the log, not the ready pipe; close() ran its stop()
    assert log.read_text().splitlines() == [f"starting posters from {tmp_path}", "stopped"]


def test_server_child_removes_its_own_log_after_a_clean_stop(tmp_path):
    srv = ServerChild(str(tmp_path), "posters", server=f"{FAKE}:Ready")
    assert os.path.exists(srv.log_path)
    srv.close()
    srv.close()  # a second close is harmless
    assert not os.path.exists(srv.log_path)


def test_a_hung_server_child_is_killed_at_the_deadline(tmp_path):
    log = tmp_path / "hung.log"
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"^the hung server child did not report its ports within 2 s; "
                                           rf"its log: {re.escape(str(log))} \(last line: pid \d+\)$") as err:
        ServerChild(str(tmp_path), "posters", server=f"{FAKE}:Hangs", label="hung", timeout_s=2, log_path=str(log))
    assert time.monotonic() - t0 < 30
    pid = int(str(err.value).rsplit("pid ", 1)[1].rstrip(")"))
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(pid, 0)


def test_a_server_child_that_fails_to_start_names_its_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"^the failing server child exited with code 1 before reporting its "
                                           r"ports; its log: \S+\.log \(last line: RuntimeError: no servable model "
                                           rf"under {re.escape(str(tmp_path))}\)$") as err:
        ServerChild(str(tmp_path), "posters", server=f"{FAKE}:Fails", label="failing")
    log = str(err.value).split("its log: ", 1)[1].split(" (", 1)[0]
    assert os.path.exists(log)  # kept, so that it can be read
    os.unlink(log)


# --- the benchmark, end to end ----------------------------------------------------------------------

@pytest.mark.slow
def test_interleaved_ab_writes_both_arms_and_judges_them_consistently(tmp_path):
    in_history = subprocess.run(["git", "cat-file", "-e", f"{BASELINE_COMMIT}^{{commit}}"], cwd=ROOT,
                                capture_output=True).returncode == 0
    if not in_history:  # a shallow clone cannot rebuild the baseline; the bench says so itself
        pytest.skip(f"{BASELINE_COMMIT[:7]} is not in this clone's history")
    proc = subprocess.run([sys.executable, "-m", "bench.serving_ab", "--quick", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "serving_ab.json").read_text())
    assert doc["params"]["baseline_commit"] == BASELINE_COMMIT
    assert [g["goal"].split(":")[0] for g in doc["goals"]] == ["rest", "grpc"]
    for protocol, g in zip(("rest", "grpc"), doc["goals"], strict=True):
        r = doc["results"][protocol]
        n = doc["params"]["rounds"] * doc["params"]["block"]
        before, after = r["latency_ms"]["before"], r["latency_ms"]["after"]
        assert before["n"] == after["n"] == n == r["requests_per_arm"]  # every interleaved request answered
        assert before["p50"] > 0 and after["p50"] > 0
        ratio = round(after["p50"] / before["p50"], 3)  # what the goal is about, from the measured fields
        assert r["p50_ratio"] == g["value"] == ratio
        assert g["met"] is (ratio <= P50_GOAL)
    assert doc["table"]["rows"] == [[p, doc["results"][p]["latency_ms"]["before"]["p50"],
                                     doc["results"][p]["latency_ms"]["after"]["p50"], doc["results"][p]["p50_ratio"],
                                     doc["results"][p]["latency_ms"]["before"]["p95"],
                                     doc["results"][p]["latency_ms"]["after"]["p95"]] for p in ("rest", "grpc")]

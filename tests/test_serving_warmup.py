"""Warm-up: TF Serving's warm-up file is replayed before a version serves; a failing one fails the
version; concurrent first calls on freshly loaded ScaNN versions all succeed once warmed up."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from poster_similarity.serving.server import ModelConfig, ModelServer
from poster_similarity.serving.server.model import LoadedModel
from poster_similarity.serving.server.versions import ModelVersions
from poster_similarity.serving.server.warmup import WARMUP_FILE, WarmupError, read_records, warm_up
from tests.helpers import ROOT as REPO
from tests.serving_models import SIGNATURES, sample_inputs, save_scann_model, warmup_records, write_warmup


@pytest.fixture(scope="module")
def scann_model(tmp_path_factory):
    return save_scann_model(str(tmp_path_factory.mktemp("scann") / "m"), seed=1, prefix="m")


def test_replays_every_record_sequentially_and_logs_it(scann_model, caplog):
    assert len(list(read_records(os.path.join(scann_model, WARMUP_FILE)))) == 2 * len(SIGNATURES)
    model = LoadedModel(scann_model, 7)
    with caplog.at_level(logging.INFO, logger="posters.serving"):
        assert warm_up(model) == 2 * len(SIGNATURES)
    assert any("warm-up of version 7: replayed 8 requests" in r.getMessage() for r in caplog.records)
    ids = model._call("serving_default", sample_inputs()["serving_default"])["movie_ids"]
    assert ids[0][0] == b"m0" and ids[1][0] == b"m2"


def _copy_with_warmup(src: str, dst: str, records: list[bytes] | None, raw: bytes | None = None) -> str:
    shutil.copytree(src, dst)
    shutil.rmtree(os.path.join(dst, "assets.extra"), ignore_errors=True)
    if records is not None:
        write_warmup(dst, records)
    if raw is not None:
        os.makedirs(os.path.join(dst, "assets.extra"), exist_ok=True)
        with open(os.path.join(dst, WARMUP_FILE), "wb") as f:
            f.write(raw)
    return dst


@pytest.mark.parametrize("case, needle", [
    ("wrong input", "Input names do not match"),
    ("wrong dtype", "Expects arg"),
    ("corrupt image", "record 1 (embed) failed"),
    ("unknown signature", "not found in signature def"),
    ("truncated file", "truncated"),
    ("not a PredictionLog", "not a PredictionLog"),
])
def test_a_failing_warm_up_fails_the_version(scann_model, tmp_path, case, needle):
    ins = sample_inputs()
    good = warmup_records([("neighbors", ins["neighbors"])])
    records, raw = None, None
    if case == "wrong input":
        records = warmup_records([("neighbors", {"emb": ins["neighbors"]["embedding"]})])
    elif case == "wrong dtype":
        records = warmup_records([("neighbors", {"embedding": ins["neighbors"]["embedding"].astype(np.float64)})])
    elif case == "corrupt image":
        records = good + warmup_records([("embed", {"image_bytes": np.array([b"not an image"], dtype=object)})])
    elif case == "unknown signature":
        records = warmup_records([("nope", ins["neighbors"])])
    elif case == "truncated file":
        full = tmp_path / "full"
        write_warmup(str(full), good)
        raw = (full / WARMUP_FILE).read_bytes()[:-10]
    else:
        full = tmp_path / "full"
        write_warmup(str(full), [b"\xff\xfe garbage"])
        raw = (full / WARMUP_FILE).read_bytes()
    base = tmp_path / "posters"
    shutil.copytree(scann_model, base / "1")
    _copy_with_warmup(scann_model, str(base / "2"), records, raw)
    mv = ModelVersions(ModelConfig("posters", str(base)))
    mv.poll()
    assert mv.available_versions() == [1]  # the bad version 2 never serves; version 1 does
    assert needle in mv.failed_versions()[2]
    status = {e["version"]: e for e in mv.status()}
    assert status["2"]["state"] == "END" and needle in status["2"]["status"]["error_message"]
    assert status["1"]["state"] == "AVAILABLE"
    with pytest.raises(WarmupError):
        warm_up(LoadedModel(str(base / "2"), 2))


def test_without_a_warm_up_file_every_signature_runs_an_empty_batch(scann_model, tmp_path, caplog):
    path = _copy_with_warmup(scann_model, str(tmp_path / "1"), None)
    with caplog.at_level(logging.WARNING, logger="posters.serving"):
        assert warm_up(LoadedModel(path, 1)) == len(SIGNATURES)
    assert any("no assets.extra/tf_serving_warmup_requests" in r.getMessage() for r in caplog.records)


def test_reader_needs_no_tfx_in_a_fresh_process(scann_model):
    out = subprocess.run([sys.executable, "-m", "tests.children.warmup_without_tfx", scann_model], cwd=REPO,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "replayed 8 heavy []" in out.stdout


def test_concurrent_first_calls_on_fresh_scann_versions(scann_model, tmp_path):
    """Stress the swap path: a new ScaNN version loads, then 16 first calls on 4 signatures start at
    once (a barrier) while the previous version is unloaded; repeated for 8 fresh versions."""
    base = tmp_path / "posters"
    ins = sample_inputs()
    mv = ModelVersions(ModelConfig("posters", str(base)))
    errors: list[str] = []
    calls = 0
    deadline = time.monotonic() + 240
    for v in range(1, 9):
        shutil.copytree(scann_model, base / f"{v}.tmp")
        os.rename(base / f"{v}.tmp", base / str(v))
        mv.poll()
        assert mv.available_versions() == [v]
        barrier = threading.Barrier(16)

        def first_call(i, v=v, barrier=barrier):
            sig = SIGNATURES[i % len(SIGNATURES)]
            barrier.wait(timeout=60)
            model = mv.acquire()
            try:
                out = model.run(sig, ins[sig])
                assert len(next(iter(out.values()))) == 2
            except Exception as e:  # noqa: BLE001 — every failure is counted
                errors.append(f"v{v} {sig}: {e!r}"[:300])
            finally:
                model.release()

        threads = [threading.Thread(target=first_call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        calls += 16
        if time.monotonic() > deadline:
            break
    assert errors == [] and calls >= 64


def test_server_serves_only_after_warm_up(scann_model, tmp_path, caplog):
    base = tmp_path / "posters"
    shutil.copytree(scann_model, base / "1")
    with caplog.at_level(logging.INFO, logger="posters.serving"):
        srv = ModelServer(str(base), rest_port=None, grpc_port=None, poll_seconds=60).start()
    try:
        msgs = [r.getMessage() for r in caplog.records]
        warm = next(i for i, m in enumerate(msgs) if "warm-up of version 1" in m)
        avail = next(i for i, m in enumerate(msgs) if "version 1 AVAILABLE" in m)
        assert warm < avail
    finally:
        srv.stop()

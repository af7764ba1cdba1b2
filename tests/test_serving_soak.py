"""Swap soak: 10 consecutive version pushes to a real `posters serve` process under 8 concurrent clients
(4 REST, 4 gRPC, three ScaNN signatures), one push corrupt (listed as failed, never served) and one
version deleted (rollback). Zero failed well-formed requests; the log shows each warm-up."""
from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serving_models import COLOURS, png, sample_inputs, save_scann_model
from tests.serving_process import ServerProcess

pytestmark = pytest.mark.slow


def _status(rest: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://{rest}/v1/models/posters", timeout=30) as r:
        return {e["version"]: e for e in json.loads(r.read())["model_version_status"]}


def _wait(rest: str, cond, what: str, timeout: float = 90) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = _status(rest)
        if cond(st):
            return st
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {_status(rest)}")


def test_swap_soak(tmp_path):
    models = [save_scann_model(str(tmp_path / f"src{i}"), seed=i + 1, prefix="m") for i in range(2)]
    base = tmp_path / "posters"
    shutil.copytree(models[0], base / "1")
    srv = ServerProcess(["--model-base-path", str(base), "--poll-seconds", "0.2",
                         "--load-retry-interval-seconds", "3600"], str(tmp_path / "serve.log"))
    ins = sample_inputs()
    stop = threading.Event()
    ok, errors, served = [], [], set()
    img = {"b64": base64.b64encode(png(COLOURS[3])).decode()}
    bodies = [{"instances": [img]},
              {"signature_name": "neighbors", "inputs": {"embedding": ins["neighbors"]["embedding"].tolist()}},
              {"signature_name": "recommend", "inputs": {"history": [["m0", "m1"], ["m3", ""]]}}]

    def rest_client(i: int) -> None:
        end = time.monotonic() + 900
        n = 0
        while not stop.is_set() and time.monotonic() < end:
            body = json.dumps(bodies[(i + n) % 3]).encode()
            n += 1
            req = urllib.request.Request(f"http://{srv.rest}/v1/models/posters:predict", data=body, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    json.loads(r.read())
                ok.append(i)
            except Exception as e:  # noqa: BLE001 — every failure counts
                errors.append(f"rest {i}: {e!r} {getattr(e, 'read', lambda: b'')()[:300]!r}")

    def grpc_client(i: int) -> None:
        channel = grpc.insecure_channel(srv.grpc)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        end = time.monotonic() + 900
        n = 0
        while not stop.is_set() and time.monotonic() < end:
            sig = ("serving_default", "neighbors", "recommend")[(i + n) % 3]
            n += 1
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "posters"
            req.model_spec.signature_name = sig
            for k, v in ins[sig].items():
                req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
            try:
                resp = stub.Predict(req, timeout=60)
                served.add(resp.model_spec.version.value)
                ok.append(i)
            except grpc.RpcError as e:
                errors.append(f"grpc {i} {sig}: {e.code().name} {e.details()[:300]}")
        channel.close()

    threads = [threading.Thread(target=rest_client, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=grpc_client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    pushes = []
    try:
        time.sleep(1.0)
        for v in range(2, 12):  # 10 pushes
            dst = base / str(v)
            shutil.copytree(models[v % 2], base / f"{v}.tmp")
            if v == 5:  # corrupt push: complete directory, unreadable graph
                (base / f"{v}.tmp" / "saved_model.pb").write_bytes(b"\x08\x01 not a SavedModel")
            os.rename(base / f"{v}.tmp", dst)  # Pusher-style: appears complete
            if v == 5:
                st = _wait(srv.rest, lambda s: s.get("5", {}).get("state") == "END", "version 5 failed")
                assert st["5"]["status"]["error_message"] and st["4"]["state"] == "AVAILABLE"
            else:
                _wait(srv.rest, lambda s, v=v: s.get(str(v), {}).get("state") == "AVAILABLE" and len(
                    [e for e in s.values() if e["state"] == "AVAILABLE"]) == 1, f"version {v}")
            pushes.append(v)
            time.sleep(0.5)
            if v == 8:  # a bad release discovered: delete it, the server rolls back to 7
                shutil.rmtree(dst)
                _wait(srv.rest, lambda s: s.get("7", {}).get("state") == "AVAILABLE" and "8" not in s, "rollback to 7")
                time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    log = srv.log()
    rc = srv.terminate()
    assert pushes == list(range(2, 12))
    assert errors == [], errors[:5]
    assert len(ok) > 200
    assert 5 not in served and {1, 11} <= served
    for v in [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]:
        assert f"warm-up of version {v}: replayed 8 requests" in log, v
    assert log.count("warm-up of version 7: replayed") == 2  # loaded again for the rollback
    assert "version 5" in log and "failed to load" in log
    assert rc == 0

"""Versions like TF Serving: models.config with policies and labels, REST /versions and /labels, gRPC
version_label, failed versions in the status, retries with backoff, real directory names, config
reload, rollback when the newest version is deleted."""
from __future__ import annotations

import os
import shutil
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as psg

from poster_similarity.serving.server import ModelServer, RetryPolicy
from poster_similarity.serving.server.config import parse_model_config
from poster_similarity.serving.server.versions import scan_versions
from tests.serving_helpers import b64, http
from tests.tiny_model import COLOURS, png, save_model

CONFIG = """
model_config_list {{
  config {{
    name: "posters"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ {policy} }}
    {labels}
  }}
}}
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("vsaved")
    return {v: save_model(str(root / str(v)), seed=v, prefix=f"v{v}_") for v in (1, 2, 3)}


def _write_config(path, base, policy="latest { num_versions: 1 }", labels=None):
    lab = "\n    ".join(f'version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).items())
    path.write_text(CONFIG.format(base=base, policy=policy, labels=lab))
    stamp = time.time() + 1  # a distinct mtime even within the filesystem's timestamp granularity
    os.utime(path, (stamp, stamp))


def _top1(url, suffix=""):
    code, r = http("POST", f"{url}{suffix}:predict", {"instances": [b64(png(COLOURS[0]))]})
    return code, (r["predictions"][0]["movie_ids"][0] if code == 200 else r["error"])


def _states(url):
    return {e["version"]: e["state"] for e in http("GET", url)[1]["model_version_status"]}


def test_parse_config_policies_and_errors(tmp_path):
    cfgs = parse_model_config(CONFIG.format(base="rel/posters", policy="specific { versions: 3 versions: 1 }",
                                            labels='version_labels { key: "stable" value: 1 }'), str(tmp_path))
    (c,) = cfgs
    assert c.policy == "specific" and c.versions == (1, 3) and c.labels == {"stable": 1}
    assert c.base_path == str(tmp_path / "rel" / "posters")
    assert parse_model_config(CONFIG.format(base="/m", policy="all {}", labels=""))[0].policy == "all"
    assert parse_model_config(CONFIG.format(base="/m", policy="", labels=""))[0].num_versions == 1
    for bad, needle in [("model_config_list { config { name: 'a' base_path: '/m' bogus: 1 } }", "bogus"),
                        ("model_config_list { config { name: '../x' base_path: '/m' } }", "invalid model name"),
                        ("model_config_list { config { name: 'a' } }", "base_path"),
                        ("model_config_list { config { name: 'a' base_path: '/m' } config { name: 'a' "
                         "base_path: '/n' } }", "twice"),
                        ("", "no models")]:
        with pytest.raises(ValueError, match=needle):
            parse_model_config(bad)


def test_real_directory_names(saved, tmp_path):
    shutil.copytree(saved[1], tmp_path / "0001")
    shutil.copytree(saved[2], tmp_path / "2")
    (tmp_path / "3").mkdir()  # incomplete: no saved_model.pb
    (tmp_path / "x9").mkdir()
    assert scan_versions(str(tmp_path)) == {1: "0001", 2: "2"}


def test_config_file_labels_policies_reload_rest_and_grpc(saved, tmp_path):
    base = tmp_path / "posters"
    for v in (1, 2, 3):
        shutil.copytree(saved[v], base / ("000" + str(v) if v == 1 else str(v)))
    cfg = tmp_path / "models.config"
    _write_config(cfg, base, "latest { num_versions: 2 }", {"stable": 2, "canary": 3})
    srv = ModelServer(model_config_file=str(cfg), rest_port=0, grpc_port=0, poll_seconds=0.2).start()
    url = f"http://127.0.0.1:{srv.rest_port}/v1/models/posters"
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
    try:
        assert _states(url) == {"3": "AVAILABLE", "2": "AVAILABLE"}
        assert _top1(url) == (200, "v3_0")  # latest = newest available
        assert _top1(url, "/versions/2") == (200, "v2_0")
        assert _top1(url, "/labels/stable") == (200, "v2_0")
        assert _top1(url, "/labels/canary") == (200, "v3_0")
        assert _top1(url, "/versions/1")[0] == 404  # on disk as 0001 but outside latest-2
        code, err = _top1(url, "/labels/nope")
        assert code == 404 and "nope" in err
        assert http("GET", url + "/labels/stable")[1]["model_version_status"][0]["version"] == "2"
        assert http("GET", url + "/labels/stable/metadata")[1]["model_spec"]["version"] == "2"

        req = predict_pb2.PredictRequest()
        req.model_spec.name = "posters"
        req.model_spec.version_label = "stable"
        req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([png(COLOURS[0])]))
        resp = psg.PredictionServiceStub(channel).Predict(req, timeout=30)
        assert resp.model_spec.version.value == 2 and resp.outputs["movie_ids"].string_val[0] == b"v2_0"
        req.model_spec.version_label = "nope"
        with pytest.raises(grpc.RpcError) as e:
            psg.PredictionServiceStub(channel).Predict(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

        # the config changes: specific version 1 (directory 0001) only, relabelled; reloaded while serving
        _write_config(cfg, base, "specific { versions: 1 }", {"stable": 1})
        deadline = time.time() + 60
        while _states(url) != {"1": "AVAILABLE"} and time.time() < deadline:
            time.sleep(0.2)
        assert _states(url) == {"1": "AVAILABLE"}
        assert _top1(url, "/labels/stable") == (200, "v1_0")
        assert _top1(url, "/labels/canary")[0] == 404

        # a broken config is logged and ignored
        cfg.write_text("model_config_list { garbage")
        time.sleep(1.0)
        assert _top1(url) == (200, "v1_0")

        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "posters"}), timeout=30)
        assert [(s.version, s.state) for s in status.model_version_status] == [
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    finally:
        channel.close()
        srv.stop()


def test_failed_load_retried_with_backoff_then_fixed(saved, tmp_path):
    base = tmp_path / "posters"
    shutil.copytree(saved[1], base / "1")
    (base / "2").mkdir(parents=True)
    (base / "2" / "saved_model.pb").write_bytes(b"corrupt")
    srv = ModelServer(str(base), rest_port=0, grpc_port=None, poll_seconds=0.1,
                      retry=RetryPolicy(max_retries=2, interval_s=0.3, max_interval_s=5)).start()
    url = f"http://127.0.0.1:{srv.rest_port}/v1/models/posters"
    mv = srv.models["posters"]
    try:
        assert _top1(url) == (200, "v1_0")
        entry = {e["version"]: e for e in http("GET", url)[1]["model_version_status"]}["2"]
        assert entry["state"] == "END" and entry["status"]["error_code"] == "UNKNOWN"
        assert "saved_model.pb" in entry["status"]["error_message"]
        deadline = time.time() + 20  # retries at +0.3 s and +0.6 s, then gives up (max_retries=2)
        while mv._failed[2].attempts < 3 and time.time() < deadline:
            time.sleep(0.05)
        assert mv._failed[2].attempts == 3
        time.sleep(1.5)
        assert mv._failed[2].attempts == 3  # no more retries once exhausted...
        shutil.rmtree(base / "2")  # ...until the files change (fingerprint): Pusher-style fix
        shutil.copytree(saved[2], base / "2.tmp")
        os.rename(base / "2.tmp", base / "2")
        deadline = time.time() + 30
        while _top1(url) != (200, "v2_0") and time.time() < deadline:
            time.sleep(0.1)
        assert _top1(url) == (200, "v2_0") and _states(url) == {"2": "AVAILABLE"}
        # rollback: delete the newest version; version 1 is loaded again before 2 stops serving
        shutil.rmtree(base / "2")
        deadline = time.time() + 30
        while _states(url) != {"1": "AVAILABLE"} and time.time() < deadline:
            assert _top1(url)[0] == 200
            time.sleep(0.05)
        assert _top1(url) == (200, "v1_0")
    finally:
        srv.stop()

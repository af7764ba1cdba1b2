"""`posters promote` on the pipeline's real model: promote, reject, bad input — the label moves only
on a pass, models.config stays a valid ModelServerConfig, and a real server re-reading it moves
`stable` traffic from version 1 to 2 under load without a failed request."""
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import POSTERS_CLI
from tests.serving_process import ServerProcess

pytestmark = pytest.mark.slow
PY = sys.executable


def _config(path, base, labels, versions):
    labels_txt = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items())
    specific = "".join(f"versions: {v} " for v in versions)
    path.write_text(f'model_config_list {{\n  config {{\n    name: "posters"\n    base_path: "{base}"\n'
                    f'    model_platform: "tensorflow"\n    model_version_policy {{ specific {{ {specific}}} }}\n'
                    f'{labels_txt}  }}\n}}\n')


def _promote(cfg, *extra):
    return subprocess.run([*POSTERS_CLI, "promote", "--model-config-file", str(cfg), *extra],
                          capture_output=True, text=True, timeout=600)


def _first_image(pattern: str) -> bytes:
    from poster_similarity.core.tfrecords import read_examples

    return next(iter(read_examples(pattern)))["image"]


class StableClients:
    """4 gRPC clients predicting with version_label "stable" in a loop (bounded: 10 minutes at
    most); `answers` holds (client, version) pairs, `errors` every failed request."""

    def __init__(self, target: str, image: bytes, n: int = 4):
        self.target, self.image, self.n = target, image, n
        self.answers: list[tuple[int, int]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()

    def _loop(self, i: int) -> None:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.version_label = "posters", "stable"
        req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([self.image]))
        with grpc.insecure_channel(self.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            end = time.monotonic() + 600
            while not self._stop.is_set() and time.monotonic() < end:
                try:
                    self.answers.append((i, stub.Predict(req, timeout=60).model_spec.version.value))
                except grpc.RpcError as e:
                    self.errors.append(f"{e.code()}: {e.details()}")
                time.sleep(0.02)  # steady load that leaves the 2 CI cores to the promote command

    def until_version(self, version: int, timeout_s: float) -> None:
        """Wait until every client has been answered by `version` (or the timeout), then stop."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and {i for i, v in self.answers if v == version} != set(range(self.n)):
            time.sleep(0.1)

    def __enter__(self):
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(self.n)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(90)


def test_promote_reject_and_bad_input(trained_model, tmp_path):
    from poster_similarity.pipeline.promote import find_model, read_model_config

    base = tmp_path / "posters"
    for v in (1, 2):
        shutil.copytree(trained_model["model_dir"], base / str(v))
    cfg = tmp_path / "models.config"
    _config(cfg, base, {"stable": 1, "canary": 2}, [1, 2])
    examples = sorted(glob.glob(os.path.join(trained_model["data"], "*.tfrecord*")))[0]  # one shard: faster

    # Rejected: a threshold no model meets; the label stays, the file is unchanged.
    before = cfg.read_text()
    (tmp_path / "strict.yaml").write_text("min_recall_at_10: 1.01\n")
    rej = _promote(cfg, "--candidate", "2", "--examples", examples, "--thresholds", str(tmp_path / "strict.yaml"))
    assert rej.returncode == 1, rej.stderr[-2000:]
    report = json.loads(rej.stdout)
    assert report["promoted"] is False and "min_recall_at_10" in report["reason"]
    assert report["labels_after"] == {"stable": 1, "canary": 2} and cfg.read_text() == before

    # Promoted: version 2 (equal to the baseline, so no drop) takes `stable`, compared with version 1,
    # while a real server re-reading models.config answers gRPC clients asking for `stable`.
    srv = ServerProcess(["--model-config-file", str(cfg), "--poll-seconds", "0.5"], str(tmp_path / "serve.log"))
    try:
        with StableClients(srv.grpc, image=_first_image(examples)) as clients:
            ok = _promote(cfg, "--candidate", "2", "--examples", examples)
            clients.until_version(2, timeout_s=120)
        assert clients.errors == [], clients.errors[:5]
        for i in range(clients.n):  # each client: 1 … 1 then 2 … 2, never back
            mine = [v for c, v in clients.answers if c == i]
            assert mine, f"client {i} got no answer"
            assert mine[0] == 1 and mine[-1] == 2 and mine == sorted(mine), (i, mine)
        assert len(clients.answers) >= 20
    finally:
        srv.stop()
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    report = json.loads(ok.stdout)
    assert report["promoted"] and report["baseline"] == 1 and len(report["checks"]) == 4
    model = find_model(read_model_config(str(cfg)), "posters")
    assert dict(model.version_labels) == {"stable": 2, "canary": 2}
    assert list(model.model_version_policy.specific.versions) == [2]  # version 1 lost its last label
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".models.config")], "temp file left behind"

    # Bad input: unknown version, unknown model, unreadable config, no examples → 2, nothing changed.
    after = cfg.read_text()
    for extra in (["--candidate", "7", "--examples", examples],
                  ["--candidate", "2", "--examples", examples, "--model-name", "nope"],
                  ["--candidate", "2", "--examples", str(tmp_path / "none-*.tfrecord")]):
        bad = _promote(cfg, *extra)
        assert bad.returncode == 2 and "error" in json.loads(bad.stdout), (extra, bad.stdout)
    (tmp_path / "broken.config").write_text("model_config_list { config { nme: 1 } }")
    bad = _promote(tmp_path / "broken.config", "--candidate", "2", "--examples", examples)
    assert bad.returncode == 2 and "ModelServerConfig" in bad.stderr
    assert cfg.read_text() == after

"""Prometheus metrics at TF Serving's path: the exposition format, answer counters per API and
status, the in-flight gauge a drain waits on, and the available-versions gauge."""
from __future__ import annotations

import re
import threading
import time
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from poster_similarity.serving.server import ModelServer
from poster_similarity.serving.server.metrics import CONTENT_TYPE, PATH, render
from tests.serving_helpers import b64, http
from tests.tiny_model import COLOURS, png, save_model

SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(port: int) -> dict[str, float]:
    """{'name{labels}': value} from the server, checking every line is valid exposition text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=30) as r:
        assert r.headers["Content-Type"] == CONTENT_TYPE
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not Prometheus text: {line!r}"
        out[m[1] + (m[2] or "")] = float(m[3])
    return out


def test_render_escapes_labels_and_formats_values():
    """Label values escape backslash, quote and newline (the exposition format's three escapes);
    integral values print without a decimal point."""
    text = render([("x_total", "counter", "Things.", [({"b": 'a"b\\c\nd', "a": "1"}, 3.0)]),
                   ("y", "gauge", "One.", [({}, 0.5)])])
    assert text.splitlines() == ["# HELP x_total Things.", "# TYPE x_total counter",
                                 'x_total{a="1",b="a\\"b\\\\c\\nd"} 3',
                                 "# HELP y One.", "# TYPE y gauge", "y 0.5"]


@pytest.fixture
def server(tmp_path):
    save_model(str(tmp_path / "posters" / "1"), seed=1, prefix="m")
    srv = ModelServer(str(tmp_path / "posters"), rest_port=0, grpc_port=0, poll_seconds=60).start()
    yield srv
    srv.stop()


def test_answers_are_counted_per_api_and_status(server):
    """Two REST 200s, one REST 404 and one gRPC OK → counters 2, 1 and 1; scrapes are not counted."""
    url = f"http://127.0.0.1:{server.rest_port}/v1/models"
    before = scrape(server.rest_port)
    assert before['posters_serving_available_versions{model="posters"}'] == 1
    assert before["posters_serving_inflight_requests"] == 0
    assert before["posters_serving_draining"] == 0
    assert not [k for k in before if k.startswith("posters_serving_requests_total")]
    for _ in range(2):
        assert http("POST", f"{url}/posters:predict", {"instances": [b64(png(COLOURS[1]))]})[0] == 200
    assert http("GET", f"{url}/nope")[0] == 404
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "posters"
        req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([png(COLOURS[0])]))
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
    finally:
        channel.close()
    after = scrape(server.rest_port)
    assert after['posters_serving_requests_total{api="rest",code="200"}'] == 2
    assert after['posters_serving_requests_total{api="rest",code="404"}'] == 1
    assert after['posters_serving_requests_total{api="grpc",code="OK"}'] == 1


def test_inflight_gauge_counts_a_running_request(server):
    """A predict held inside the model shows as 1 in flight; 0 again once answered."""
    url = f"http://127.0.0.1:{server.rest_port}/v1/models"
    real = server.model._call
    entered, release = threading.Event(), threading.Event()

    def blocking(sig, inputs):
        entered.set()
        release.wait(30)
        return real(sig, inputs)

    server.model._call = blocking
    answers: list = []
    t = threading.Thread(target=lambda: answers.append(
        http("POST", f"{url}/posters:predict", {"instances": [b64(png(COLOURS[3]))]})))
    t.start()
    try:
        assert entered.wait(30)
        assert scrape(server.rest_port)["posters_serving_inflight_requests"] == 1
    finally:
        release.set()
        t.join(30)
    assert answers[0][0] == 200
    end = time.monotonic() + 10  # the count drops after the answer is written, just after the client reads it
    while scrape(server.rest_port)["posters_serving_inflight_requests"] != 0:
        assert time.monotonic() < end
        time.sleep(0.02)

"""TF Serving parity a client would notice: default signature for "", the status → HTTP mapping, strict
gRPC dtypes and element counts, `*_bytes` outputs in base64, JSON errors for every failure, deadlines,
overload answers, and the drain on SIGTERM (in-process and as a real process)."""
from __future__ import annotations

import base64
import json
import logging
import signal
import socket
import threading
import time
import urllib.request
from http.client import HTTPResponse

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from poster_similarity.serving.server import Limits, ModelServer
from poster_similarity.serving.server.errors import from_tf_error
from tests.serving_helpers import b64, http
from tests.serving_models import save_scann_model
from tests.serving_process import ServerProcess
from tests.tiny_model import COLOURS, png, save_model


class Echo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serving_default(self, text):
        return {"raw_bytes": text, "text": text}


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("parity")
    save_model(str(root / "posters" / "1"), seed=1, prefix="m")
    m = Echo()
    tf.saved_model.save(m, str(root / "echo" / "1"), signatures={"serving_default": m.serving_default})
    cfg = root / "models.config"
    cfg.write_text("model_config_list { config { name: 'posters' base_path: 'posters' } "
                   "config { name: 'echo' base_path: 'echo' } }")
    srv = ModelServer(model_config_file=str(cfg), rest_port=0, grpc_port=0, poll_seconds=60,
                      limits=Limits(rest_api_timeout_ms=300, max_concurrent_requests=1, queue_timeout_s=0.1)).start()
    yield srv
    srv.stop()


@pytest.fixture
def url(server):
    return f"http://127.0.0.1:{server.rest_port}/v1/models"


def _predict(url, body, model="posters"):
    return http("POST", f"{url}/{model}:predict", body)


def test_empty_signature_name_is_the_default(url):
    body = {"instances": [b64(png(COLOURS[0]))]}
    want = _predict(url, body)
    assert want[0] == 200 and _predict(url, {**body, "signature_name": ""}) == want


def test_bytes_outputs_are_base64(url):
    code, out = _predict(url, {"inputs": ["héllo"]}, model="echo")
    assert code == 200
    assert out["outputs"]["text"] == ["héllo"]
    assert out["outputs"]["raw_bytes"] == [{"b64": base64.b64encode("héllo".encode()).decode()}]


@pytest.mark.parametrize("error, status", [
    (tf.errors.ResourceExhaustedError, 429), (tf.errors.UnavailableError, 503),
    (tf.errors.DeadlineExceededError, 504), (tf.errors.InternalError, 500), (tf.errors.UnknownError, 500),
    (tf.errors.InvalidArgumentError, 400), (tf.errors.FailedPreconditionError, 400),
    (tf.errors.UnimplementedError, 501), (RuntimeError, 500),
])
def test_errors_map_like_tf_serving_and_5xx_are_logged(server, url, monkeypatch, caplog, error, status):
    model = server.model

    def failing(sig, inputs):
        raise error(None, None, "boom") if error is not RuntimeError else error("a bug")

    monkeypatch.setattr(model, "_call", failing)
    with caplog.at_level(logging.ERROR, logger="posters.serving"):
        code, body = _predict(url, {"instances": [b64(png(COLOURS[0]))]})
    assert code == status and body["error"]
    assert any(str(status) in r.getMessage() for r in caplog.records) == (status >= 500)
    if error is not RuntimeError:
        assert from_tf_error(error(None, None, "x")).http_status == status


def test_rest_deadline_is_504(server, url, monkeypatch):
    model, real = server.model, server.model._call

    def slow(sig, inputs):
        time.sleep(0.6)  # > rest_api_timeout_ms=300
        return real(sig, inputs)

    monkeypatch.setattr(model, "_call", slow)
    code, body = _predict(url, {"instances": [b64(png(COLOURS[0]))]})
    assert code == 504 and "Deadline" in body["error"]


def test_overloaded_rest_answers_503_json(server, url, monkeypatch):
    model, real = server.model, server.model._call
    entered, release = threading.Event(), threading.Event()

    def blocking(sig, inputs):
        entered.set()
        release.wait(30)
        return real(sig, inputs)

    monkeypatch.setattr(model, "_call", blocking)
    first: list = []
    t = threading.Thread(target=lambda: first.append(_predict(url, {"instances": [b64(png(COLOURS[0]))]})))
    t.start()
    try:
        assert entered.wait(30)
        code, body = _predict(url, {"instances": [b64(png(COLOURS[0]))]})  # max_concurrent_requests=1
        assert code == 503 and "max_concurrent_requests" in body["error"]
    finally:
        release.set()
        t.join(30)
    assert first[0][0] == 200


def test_grpc_strict_dtypes_and_element_counts(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    emb = tf.random.normal([1, 128]).numpy()

    def call(proto):
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.signature_name = "posters", "neighbors"
        req.inputs["embedding"].CopyFrom(proto)
        return stub.Predict(req, timeout=30)

    try:
        assert call(tf.make_tensor_proto(emb)).outputs["movie_ids"].string_val
        for proto, needle in [(tf.make_tensor_proto(emb.astype("float64")), "Expects arg"),
                              (tf.make_tensor_proto(emb[:, :5]), "shape"),
                              (tf.make_tensor_proto(1.0, shape=[1, 128]), "declares 128 elements"),
                              (_redeclared(emb, [2, 128]), "tensor_content holds 512 bytes")]:
            with pytest.raises(grpc.RpcError) as e:
                call(proto)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in e.value.details(), needle
    finally:
        channel.close()


def _redeclared(arr, shape):
    proto = tf.make_tensor_proto(arr)
    for d, n in zip(proto.tensor_shape.dim, shape, strict=True):
        d.size = n
    return proto


def _raw(port: int, data: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize("request_bytes, status", [
    (b"HEAD /v1/models/posters HTTP/1.1\r\n\r\n", 405), (b"PUT /v1/models/posters HTTP/1.1\r\n\r\n", 405),
    (b"OPTIONS * HTTP/1.1\r\n\r\n", 405), (b"BREW /v1/models/posters HTTP/1.1\r\n\r\n", 501),
    (b"\x00\x01garbage\r\n\r\n", 400), (b"GET /v1/models/posters HTTP/3.0\r\n\r\n", 505),
    (b"GET /v1/models/posters/labels/x%00 HTTP/1.1\r\n\r\n", 400),
])
def test_every_error_is_json(server, request_bytes, status):
    code, body = _raw(server.rest_port, request_bytes)
    assert code == status and body["error"]


def test_drain_answers_in_flight_and_refuses_new(tmp_path):
    save_model(str(tmp_path / "posters" / "1"), seed=1, prefix="m")
    srv = ModelServer(str(tmp_path / "posters"), rest_port=0, grpc_port=None, poll_seconds=60).start()
    url = f"http://127.0.0.1:{srv.rest_port}/v1/models"
    real = srv.model._call
    entered, release = threading.Event(), threading.Event()

    def blocking(sig, inputs):
        entered.set()
        release.wait(30)
        return real(sig, inputs)

    srv.model._call = blocking
    first: list = []
    t = threading.Thread(target=lambda: first.append(_predict(url, {"instances": [b64(png(COLOURS[2]))]})))
    t.start()
    try:
        assert entered.wait(30)
        drained: list = []
        d = threading.Thread(target=lambda: drained.append(srv.drain(20)))
        d.start()
        time.sleep(1.5)  # the listener closes within serve_forever's 0.5 s poll
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.rest_port), timeout=2).close()
        assert not drained  # still waiting for the in-flight request
        release.set()
        d.join(30)
        t.join(30)
        assert drained == [True] and first[0][0] == 200
        assert first[0][1]["predictions"][0]["movie_ids"][0] == "m2"
    finally:
        release.set()
        srv.stop()


def _until(check, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < end, f"gave up after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def _metrics(rest: str) -> dict[str, float]:
    """The server's unlabelled Prometheus samples, {name: value}."""
    with urllib.request.urlopen(f"http://{rest}/monitoring/prometheus/metrics", timeout=30) as r:
        text = r.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line}


@pytest.mark.slow
def test_sigterm_drains_a_real_process(tmp_path):
    """A request in flight when SIGTERM arrives is still answered, then the process exits 0.

    Deterministic on any machine, fast or loaded: the client sends the headers and half the body,
    waits until the server's metrics count the request in flight, sends SIGTERM, waits until the
    server says it is draining and waiting for that request, and only then sends the rest.
    """
    save_scann_model(str(tmp_path / "posters" / "1"), seed=1, prefix="m")
    srv = ServerProcess(["--model-base-path", str(tmp_path / "posters"), "--drain-timeout-seconds", "120",
                         "--read-timeout-seconds", "300"], str(tmp_path / "serve.log"))
    try:
        body = json.dumps({"instances": [b64(png(COLOURS[i % 6])) for i in range(6)]}).encode()
        sock = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=120)
        sock.sendall(f"POST /v1/models/posters:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:100])
        _until(lambda: _metrics(srv.rest)["posters_serving_inflight_requests"] == 1, 120, "the request in flight")
        srv.proc.send_signal(signal.SIGTERM)
        _until(lambda: "drain: waiting for 1 in-flight requests" in srv.log(), 120, "the drain to wait")
        assert srv.alive()
        sock.sendall(body[100:])
        resp = HTTPResponse(sock)
        resp.begin()
        answer = json.loads(resp.read())
        sock.close()
        assert resp.status == 200, answer
        assert [p["movie_ids"][0] for p in answer["predictions"]] == [f"m{i}" for i in range(6)]
        assert srv.proc.wait(timeout=120) == 0
        out = "".join(srv.stdout)
        assert "draining" in out and out.rstrip().endswith("stopped")
    finally:
        srv.stop()


def test_grpc_concurrency_and_message_caps(tmp_path):
    save_model(str(tmp_path / "posters" / "1"), seed=1, prefix="m")
    srv = ModelServer(str(tmp_path / "posters"), rest_port=None, grpc_port=0, poll_seconds=60,
                      limits=Limits(grpc_max_concurrent_rpcs=1, grpc_max_message_bytes=64 << 10)).start()
    real = srv.model._call
    entered, release = threading.Event(), threading.Event()

    def blocking(sig, inputs):
        entered.set()
        release.wait(30)
        return real(sig, inputs)

    srv.model._call = blocking
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def request(images):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "posters"
        req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images))
        return req

    first: list = []
    t = threading.Thread(target=lambda: first.append(stub.Predict(request([png(COLOURS[1])]), timeout=60)))
    t.start()
    try:
        assert entered.wait(30)
        with pytest.raises(grpc.RpcError) as e:  # one RPC admitted at a time
            stub.Predict(request([png(COLOURS[1])]), timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        release.set()
        t.join(30)
    try:
        assert first[0].outputs["movie_ids"].string_val[0] == b"m1"
        with pytest.raises(grpc.RpcError) as e:  # 100 KB > 64 KiB message cap
            stub.Predict(request([b"x" * 100_000]), timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()
        srv.stop()


def test_read_timeout_idle_closes_silently_partial_gets_408(tmp_path):
    save_model(str(tmp_path / "posters" / "1"), seed=1, prefix="m")
    srv = ModelServer(str(tmp_path / "posters"), rest_port=0, grpc_port=None, poll_seconds=60,
                      limits=Limits(read_timeout_s=0.5)).start()
    try:
        def after_timeout(first: bytes) -> tuple[bytes, float]:
            with socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10) as s:
                t0 = time.monotonic()
                s.sendall(first)
                buf = b""
                while chunk := s.recv(4096):
                    buf += chunk
                return buf, time.monotonic() - t0

        idle, took = after_timeout(b"")
        assert idle == b"" and 0.4 < took < 5
        keep_alive_then_idle, took = after_timeout(b"GET /v1/models/posters HTTP/1.1\r\n\r\n")
        assert keep_alive_then_idle.startswith(b"HTTP/1.1 200") and keep_alive_then_idle.count(b"HTTP/1.1") == 1
        partial, took = after_timeout(b"POST /v1/models/posters:predict HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
        assert partial.startswith(b"HTTP/1.1 408") and b"read timeout" in partial and took < 5
    finally:
        srv.stop()


def test_connection_cap_closes_idle_then_header_phase_connections_never_busy_ones(tmp_path):
    """At --max-connections a request whose headers were read never loses its connection.

    Cap 4. A (the oldest) has sent its headers and half its body, B is idle, C has sent its headers,
    H only half its headers. D arrives: B, idle, is closed (A is older but busy). E arrives: D is
    idle now, so D goes. E sends its headers. F arrives: nothing is idle, H is still in its headers,
    so H goes. F sends its headers; G arrives with A, C, E, F all busy: G gets a 503 JSON. A and C
    then finish their bodies and are answered 200.
    """
    save_model(str(tmp_path / "posters" / "1"), seed=1, prefix="m")
    srv = ModelServer(str(tmp_path / "posters"), rest_port=0, grpc_port=None, poll_seconds=60,
                      limits=Limits(max_connections=4, read_timeout_s=60)).start()
    body = json.dumps({"instances": [b64(png(COLOURS[0]))]}).encode()
    head = (f"POST /v1/models/posters:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    table = srv._http.table

    def connect(n_after: int) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=30)
        _until(lambda: len(table) + table.refused == n_after, 10, f"{n_after} connections admitted")
        return s

    def closed(s: socket.socket) -> bool:
        return s.recv(1) == b""

    def answer(s: socket.socket) -> tuple[int, dict]:
        resp = HTTPResponse(s)
        resp.begin()
        return resp.status, json.loads(resp.read())

    try:
        a = connect(1)
        a.sendall(head + body[:50])
        b = connect(2)
        c = connect(3)
        c.sendall(head)
        h = connect(4)
        h.sendall(head[:30])
        time.sleep(0.5)  # the handlers have taken their bytes: A and C wait for bodies, H for headers
        d = connect(4)
        assert closed(b) and table.evicted == 1
        e = connect(4)
        assert closed(d) and table.evicted == 2
        e.sendall(head)
        time.sleep(0.5)
        f = connect(4)
        assert closed(h) and table.evicted == 3
        f.sendall(head)
        time.sleep(0.5)
        g = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=30)
        status_g, got_g = answer(g)
        assert status_g == 503 and "max_connections" in got_g["error"] and table.refused == 1
        a.sendall(body[50:])
        c.sendall(body)
        (status_a, got_a), (status_c, got_c) = answer(a), answer(c)
        assert (status_a, status_c) == (200, 200), (got_a, got_c)
        assert got_a["predictions"][0]["movie_ids"][0] == got_c["predictions"][0]["movie_ids"][0] == "m0"
        for s in (a, b, c, d, e, f, g, h):
            s.close()
    finally:
        srv.stop()

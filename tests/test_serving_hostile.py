"""Hostile clients against a real `posters serve` process on a real ScaNN SavedModel (loopback only).

Every probe gets its 4xx/5xx JSON (or gRPC status), the process never dies, its RSS stays under
baseline + RSS_BOUND_MB, and well-formed requests sent meanwhile by 4 clients all succeed. Every loop
is bounded in count and time. A model with the filtered signatures (the pipeline's export) also gets
hostile business rules: huge exclude lists, unknown genres and tags, 10,000 tags in one request.
"""
from __future__ import annotations

import base64
import json
import random
import shutil
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from poster_similarity.components.image_limits import MAX_GIF_BLOCKS
from tests.serving_helpers import (
    animated_gif,
    bmp_header,
    gif_header,
    jpeg_header,
    png_header,
    sub_block_gif,
    webp_header,
)
from tests.serving_models import COLOURS, DIM, png, save_scann_model
from tests.serving_process import RssSampler, ServerProcess

pytestmark = pytest.mark.slow

RSS_BOUND_MB = 1024  # stated bound: baseline + 1 GiB (measured peak growth: docs/serving-faults.md)
READ_TIMEOUT = 2.0
MAX_CONNECTIONS = 64
PATH = "/v1/models/posters:predict"


@pytest.fixture(scope="module", params=["scann_test_model", "pipeline_export"])
def server(request, tmp_path_factory):
    """The server process on the tfrs ScaNN test model, or on the pipeline's exported model."""
    root = tmp_path_factory.mktemp("hostile")
    if request.param == "pipeline_export":
        shutil.copytree(request.getfixturevalue("trained_model")["model_dir"], root / "posters" / "1")
    else:
        save_scann_model(str(root / "posters" / "1"), seed=1, prefix="m")
    srv = ServerProcess(["--model-base-path", str(root / "posters"), "--read-timeout-seconds", str(READ_TIMEOUT),
                         "--max-connections", str(MAX_CONNECTIONS), "--max-body-bytes", str(1 << 20),
                         "--max-json-elements", "50000"],
                        str(root / "serve.log"))
    yield srv
    srv.stop()


def raw(port: int, data: bytes, timeout: float = 10, half_close: bool = True) -> tuple[int | None, dict | None]:
    """Send raw bytes, read the whole answer: (status, JSON body) or (None, None) when closed silently."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        try:
            while chunk := s.recv(65536):
                buf += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if not buf:
        return None, None
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")),
                  len(body))
    return status, json.loads(body[:length]) if length else None


def post(port: int, body: bytes, headers: str = "Content-Type: application/json\r\n", path: str = PATH):
    req = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    return raw(port, req.encode() + body)


def good_body() -> bytes:
    jpeg = tf.io.encode_jpeg(np.full((48, 32, 3), COLOURS[1], np.uint8)).numpy()
    return json.dumps({"instances": [{"b64": base64.b64encode(jpeg).decode()}]}).encode()


# -- probes ----------------------------------------------------------------------------------------
def probe_http(port: int) -> list[tuple[str, int | None, dict | None, tuple]]:
    """(name, status, body, allowed statuses) for each malformed HTTP/JSON probe."""
    out = []

    def add(name, result, allowed):
        out.append((name, *result, allowed))

    add("json nested 100,000 deep", post(port, b"[" * 100_000 + b"]" * 100_000), (400,))
    add("json nested 100,000 deep in instances",
        post(port, b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), (400,))
    add("json of 66,000 elements", post(port, b'{"signature_name": "neighbors", "instances": ['
                                     + b",".join([b"[" + b",".join([b"0"] * DIM) + b"]"] * 2_000) + b"]}"), (400,))
    for fmt, header in [("png", png_header), ("jpeg", jpeg_header), ("gif", gif_header), ("bmp", bmp_header),
                        ("webp", webp_header)]:
        img = header(12_000, 12_000)
        add(f"{fmt} declaring 12000x12000", post(port, json.dumps(
            {"instances": [{"b64": base64.b64encode(img).decode()}]}).encode()), (400,))
    # Within the limit as a canvas, over it as frames (the server's check); past the graph's GIF walk
    # bound (only the model's decode path has one).
    for name, img in [("animated gif 1000x1000 x 20 frames", animated_gif(1000, 1000, 20)),
                      (f"gif of {MAX_GIF_BLOCKS} one-byte sub-blocks", sub_block_gif(MAX_GIF_BLOCKS))]:
        add(name, post(port, json.dumps({"instances": [{"b64": base64.b64encode(img).decode()}]}).encode()), (400,))
    add("truncated json", post(port, good_body()[:-7]), (400,))
    add("garbage body", post(port, bytes(random.Random(1).randrange(256) for _ in range(2000))), (400,))
    add("wrong content type (protobuf bytes)", post(port, b"\x0a\x07posters\x12\x00",
                                                    "Content-Type: application/x-protobuf\r\n"), (400,))
    add("text/plain content type, valid JSON", post(port, good_body(), "Content-Type: text/plain\r\n"), (200,))
    add("oversized body", post(port, b'{"instances": ["' + b"a" * (2 << 20) + b'"]}'), (413,))
    add("chunked body", raw(port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "5\r\nhello\r\n0\r\n\r\n".encode()), (411,))
    for cl in ("abc", "-1", "1e3", " 12 x"):
        add(f"Content-Length {cl!r}", raw(port, f"POST {PATH} HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n{{}}".encode()),
            (400,))
    add("two Content-Lengths", raw(port, f"POST {PATH} HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"
                                         "{}".encode()), (400,))
    short = f"POST {PATH} HTTP/1.1\r\nContent-Length: 100\r\n\r\n{{".encode()
    add("body shorter than Content-Length", raw(port, short), (400,))
    add("garbage request line", raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n"), (400,))
    add("HTTP/9.9", raw(port, b"GET /v1/models/posters HTTP/9.9\r\n\r\n"), (505, 400))
    add("request line 70 KB", raw(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"), (414,))
    add("101 headers", raw(port, b"GET /v1/models/posters HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n"), (431,))
    add("HEAD", raw(port, b"HEAD /v1/models/posters HTTP/1.1\r\nHost: x\r\n\r\n"), (405,))
    add("DELETE", raw(port, b"DELETE /v1/models/posters HTTP/1.1\r\nHost: x\r\n\r\n"), (405,))
    add("BREW", raw(port, b"BREW /v1/models/posters HTTP/1.1\r\nHost: x\r\n\r\n"), (501,))
    add("unknown model", post(port, good_body(), path="/v1/models/nope:predict"), (404,))
    add("unknown version", post(port, good_body(), path="/v1/models/posters/versions/99:predict"), (404,))
    add("unknown label", post(port, good_body(), path="/v1/models/posters/labels/zz:predict"), (404,))
    add("traversal", raw(port, b"GET /v1/models/..%2F..%2Fetc HTTP/1.1\r\n\r\n"), (400, 404))
    return out


def _rules(**over) -> dict:
    base = {"include_genres": [[""]], "exclude_genres": [[""]], "year_range": [[0, 0]], "required_tags": [[""]],
            "forbidden_tags": [[""]], "exclude_ids": [[""]], "per_group": [0], "k": [0]}
    return {**base, **over}


def probe_filtered(port: int) -> list[tuple[str, int | None, dict | None, tuple]]:
    """Hostile rules for `similar_filtered` (empty when the model has no filtered signatures)."""
    status, meta = raw(port, b"GET /v1/models/posters/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
    if status != 200 or "similar_filtered" not in json.dumps(meta):
        return []
    img = json.loads(good_body())["instances"]

    def filtered(sig: str = "similar_filtered", **over):
        first = {"history": [["m0"]]} if sig == "recommend_filtered" else {"image_bytes": img}
        return post(port, json.dumps({"signature_name": sig, "inputs": {**first, **_rules(**over)}}).encode())

    many = [f"m{i}" for i in range(10_000)]
    return [(name, *result, allowed) for name, result, allowed in [
        ("exclude_ids of 10,001", filtered(exclude_ids=[many + ["x"]]), (400,)),
        ("exclude_ids of 10,000 (the cap: answered)", filtered(exclude_ids=[many]), (200,)),
        ("history + exclude_ids over 10,000", filtered("recommend_filtered", exclude_ids=[many]), (400,)),
        ("unknown genre", filtered(include_genres=[["No Such Genre"]]), (400,)),
        ("10,000 required tags", filtered(required_tags=[[f"t{i}" for i in range(10_000)]]), (400,)),
        ("10,000 forbidden tags", filtered(forbidden_tags=[["rating:R"] * 10_000]), (400,)),
        ("unknown tags (answered)", filtered(required_tags=[["", "no-such-tag"]]), (200,)),
        ("k of 2**31-1", filtered(k=[2**31 - 1]), (400,)),
        ("rules for 2 rows, 1 image", filtered(per_group=[1, 1]), (400,)),
        ("year_range of 3", filtered(year_range=[[1, 2, 3]]), (400,)),
    ]]


def fuzz_json(rng: random.Random) -> bytes:
    base = good_body() if rng.random() < 0.5 else json.dumps(
        {"signature_name": rng.choice(["neighbors", "recommend", "", "embed", 3, None]),
         rng.choice(["inputs", "instances"]): rng.choice([
             [[rng.uniform(-1e9, 1e9) for _ in range(rng.choice([DIM, 3]))]], [["m0", "m1"], ["x"]], {"b64": "%%"},
             [[None]], [True], "x", [], {}, [[[[]]]], [[1e308] * DIM], {"embedding": [[1] * DIM], "extra": 1}])}
    ).encode()
    b = bytearray(base)
    for _ in range(rng.randrange(0, 6)):
        op = rng.randrange(4)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i:i] = bytes(rng.choice(b"[]{}\",:0\\") for _ in range(rng.randrange(1, 8)))
        elif op == 2:
            del b[i:i + rng.randrange(1, 20)]
        else:
            b = b[:i]
    return bytes(b)


def fuzz_proto(rng: random.Random) -> bytes:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "posters"
    req.model_spec.signature_name = rng.choice(["", "neighbors", "recommend", "embed", "nope"])
    name = rng.choice(["embedding", "image_bytes", "history", "x"])
    t = req.inputs[name]
    t.dtype = rng.choice([1, 2, 3, 7, 9, 10, 19, 99])
    for _ in range(rng.randrange(0, 4)):
        t.tensor_shape.dim.add().size = rng.choice([0, 1, 2, DIM, 50_000_000, -1, 2**40])
    kind = rng.randrange(4)
    if kind == 0:
        t.float_val.extend(rng.uniform(-1, 1) for _ in range(rng.choice([0, 1, DIM, 2 * DIM])))
    elif kind == 1:
        t.string_val.extend([png(COLOURS[0]), b"junk"][: rng.randrange(3)])
    elif kind == 2:
        t.tensor_content = bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 4 * DIM, 8 * DIM])))
    else:
        t.int64_val.extend(range(rng.randrange(5)))
    data = bytearray(req.SerializeToString())
    for _ in range(rng.randrange(0, 3)):  # and a few raw byte flips
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def test_hostile_clients(server, tmp_path):
    port = server.rest_port
    status, first = post(port, good_body())
    assert status == 200
    want = first["predictions"][0]["movie_ids"][0]
    time.sleep(1.0)
    baseline = server.rss_mb()
    sampler = RssSampler(server)
    stop = threading.Event()
    good: list[int] = []
    bad_good: list[str] = []

    def well_formed_client(i: int) -> None:
        end = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < end:
            try:
                status, body = post(port, good_body())
                if status == 200 and body["predictions"][0]["movie_ids"][0] == want:
                    good.append(i)
                else:
                    bad_good.append(f"{status} {body}")
            except OSError as e:
                bad_good.append(repr(e))
            time.sleep(0.02)

    clients = [threading.Thread(target=well_formed_client, args=(i,)) for i in range(4)]
    for t in clients:
        t.start()
    failures = []
    try:
        # 1. every listed probe: its status and a JSON {"error": ...}
        for name, status, body, allowed in probe_http(port) + probe_filtered(port):
            if status not in allowed or not (isinstance(body, dict) and body.get("error") or status == 200):
                failures.append(f"{name}: {status} {body}")

        # 2. 50,000,000-element DT_STRING declared with one value (gRPC)
        channel = grpc.insecure_channel(server.grpc)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "posters"
        t = req.inputs["image_bytes"]
        t.dtype = tf.string.as_datatype_enum
        t.tensor_shape.dim.add().size = 50_000_000
        t.string_val.append(b"x")
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(req, timeout=60)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "50000000" in e.value.details()
        assert time.monotonic() - t0 < 5
        req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([png(COLOURS[0])]))
        req.inputs["image_bytes"].dtype = tf.float32.as_datatype_enum  # strict dtypes
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(req, timeout=60)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # 3. 1,000 fuzzed JSON bodies and 1,000 fuzzed PredictRequests: never a 5xx, never a dead server
        rng = random.Random(20261125)
        seen: dict[int, int] = {}
        for _ in range(1000):
            status, body = post(port, fuzz_json(rng))
            seen[status] = seen.get(status, 0) + 1
            if status is None or status >= 500 or (status != 200 and not body.get("error")):
                failures.append(f"fuzz json: {status} {body}")
        raw_predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                          request_serializer=None, response_deserializer=None)
        codes: dict[str, int] = {}
        for _ in range(1000):
            try:
                raw_predict(fuzz_proto(rng), timeout=30)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name
            codes[code] = codes.get(code, 0) + 1
            if code in ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
                failures.append(f"fuzz proto: {code}")
        channel.close()
        assert len(seen) > 1 and sum(codes.values()) == 1000

        # 4. slowloris: 30 connections dripping a header byte every 0.5 s are cut at the read timeout
        import select

        drip = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(30)]
        for s in drip:
            s.sendall(b"GET /v1/models/posters HTTP/1.1\r\nX-Slow: ")
        t0 = time.monotonic()
        cut: dict[int, bytes] = {}
        while len(cut) < len(drip) and time.monotonic() - t0 < 3 * READ_TIMEOUT + 5:
            for i, s in enumerate(drip):
                if i in cut:
                    continue
                if select.select([s], [], [], 0)[0]:  # the server answered or hung up
                    try:
                        cut[i] = s.recv(4096)
                    except OSError:
                        cut[i] = b""
                    continue
                try:
                    s.sendall(b"a")
                except OSError:
                    cut[i] = b""
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        for s in drip:
            s.close()
        assert len(cut) == len(drip), f"{len(cut)} of {len(drip)} slowloris connections cut"
        assert elapsed < 3 * READ_TIMEOUT + 5
        assert all(b" 408 " in v.split(b"\r\n", 1)[0] for v in cut.values() if v), cut

        # 5. connection flood: 300 idle connections; threads stay bounded, new clients still served
        flood = []
        for _ in range(300):
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        time.sleep(0.5)
        assert post(port, good_body())[0] == 200
        threads_during_flood = server.threads()
        for s in flood:
            s.close()
        assert threads_during_flood < MAX_CONNECTIONS + 60
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=60)
        peak = sampler.stop()
    (tmp_path / "hostile.json").write_text(json.dumps({"baseline_mb": baseline, "peak_mb": peak,
                                                       "peak_threads": sampler.peak_threads, "fuzz_json": seen,
                                                       "fuzz_proto": codes, "good": len(good)}))
    print(f"\nRSS baseline {baseline:.0f} MB, peak {peak:.0f} MB (+{peak - baseline:.0f}); peak threads "
          f"{sampler.peak_threads}; fuzz JSON statuses {seen}; fuzz proto codes {codes}; "
          f"{len(good)} well-formed requests OK")
    assert failures == []
    assert bad_good == [] and len(good) >= 20
    assert server.alive() and post(port, good_body())[0] == 200
    assert peak - baseline < RSS_BOUND_MB
    assert sampler.peak_threads < MAX_CONNECTIONS + 60  # one thread per connection at most, plus the pools
    assert np.isfinite(peak)

"""Local model server + client over real loopback HTTP and gRPC, against a tiny real SavedModel.

The SavedModel mimics the exported one's five signatures with stock ops, so these tests need no
training run; the model is "solid colour image → deterministic 128-d unit vector", which makes the
right answers known: a poster of catalogue colour i has movie `<prefix>i` as top-1 with score 1.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from argparse import Namespace
from http.client import HTTPConnection

import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.client import PosterClient, ServerUnavailable, ServingError
from poster_similarity.client import query as query_mod
from poster_similarity.serving.server import ModelServer
from poster_similarity.serving.server import main as server_main
from tests.helpers import POSTERS_CLI, ROOT
from tests.serving_helpers import b64, http
from tests.tiny_model import COLOURS, DIM, SIGNATURES, K, png, save_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    return {"v1": save_model(str(root / "v1"), seed=1, prefix="m"),
            "v2": save_model(str(root / "v2"), seed=2, prefix="v2_")}


@pytest.fixture(scope="module")
def base(saved, tmp_path_factory):
    b = tmp_path_factory.mktemp("base") / "posters"
    shutil.copytree(saved["v1"], b / "1")
    return b


@pytest.fixture(scope="module")
def server(base):
    srv = ModelServer(str(base), "posters", rest_port=0, grpc_port=0, poll_seconds=0.5,
                      max_body_bytes=1 << 20).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def url(server):
    return f"http://127.0.0.1:{server.rest_port}/v1/models/posters"


# ---------------------------------------------------------------------------------------------
# REST


def test_status_and_metadata(url):
    ok = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""}}]}
    assert http("GET", url) == (200, ok)
    assert http("GET", url + "/versions/1") == (200, ok)
    assert http("GET", url + "/versions/7")[0] == 404

    code, meta = http("GET", url + "/metadata")
    assert code == 200
    assert meta["model_spec"] == {"name": "posters", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert SIGNATURES <= set(sigs)
    emb_in = sigs["embed"]["inputs"]["image_bytes"]
    assert emb_in["dtype"] == "DT_STRING" and emb_in["tensor_shape"]["dim"][0]["size"] == "-1"
    assert set(sigs["serving_default"]["outputs"]) == {"embedding", "movie_ids", "scores"}
    assert sigs["recommend"]["inputs"]["history"]["dtype"] == "DT_STRING"
    assert http("GET", url + "/versions/1/metadata")[1] == meta


def test_predict_row_and_columnar(url):
    imgs = [png(COLOURS[0]), png(COLOURS[2])]
    code, rows = http("POST", url + ":predict", {"instances": [b64(i) for i in imgs]})
    assert code == 200 and len(rows["predictions"]) == 2
    first = rows["predictions"][0]
    assert set(first) == {"embedding", "movie_ids", "scores"} and len(first["embedding"]) == DIM
    assert first["movie_ids"][0] == "m0" and rows["predictions"][1]["movie_ids"][0] == "m2"
    assert first["scores"][0] == pytest.approx(1.0, abs=1e-5)

    # named-row form and columnar form give the same numbers
    code, named = http("POST", url + ":predict", {"instances": [{"image_bytes": b64(i)} for i in imgs]})
    assert named == rows
    cols_body = {"signature_name": "serving_default", "inputs": {"image_bytes": [b64(i) for i in imgs]}}
    code, cols = http("POST", url + ":predict", cols_body)
    assert code == 200 and cols["outputs"]["movie_ids"] == [r["movie_ids"] for r in rows["predictions"]]

    # single-output signature: plain list (rows) / bare value (columns)
    code, emb = http("POST", url + ":predict", {"signature_name": "embed", "instances": [b64(imgs[0])]})
    assert code == 200 and np.shape(emb["predictions"]) == (1, DIM)
    code, emb_cols = http("POST", url + ":predict", {"signature_name": "embed", "inputs": [b64(imgs[0])]})
    assert emb_cols["outputs"] == emb["predictions"]

    code, nb = http("POST", url + ":predict",
                    {"signature_name": "neighbors", "instances": [{"embedding": emb["predictions"][0]}]})
    assert code == 200 and nb["predictions"][0]["movie_ids"] == first["movie_ids"]

    hist = [["m0", "m1", ""], ["m3", "", ""]]
    code, rec = http("POST", url + ":predict", {"signature_name": "recommend", "inputs": {"history": hist}})
    assert code == 200
    assert not {"m0", "m1"} & set(rec["outputs"]["movie_ids"][0])
    assert "m3" not in rec["outputs"]["movie_ids"][1]

    ex = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[imgs[0]]))})).SerializeToString()
    code, out = http("POST", url + ":predict", {"signature_name": "embed_examples", "inputs": [b64(ex)]})
    assert code == 200 and np.shape(out["outputs"]["logits"]) == (1, 4)
    np.testing.assert_allclose(out["outputs"]["embedding"], emb["predictions"], atol=1e-6)


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "JSON"),
    (b"[1, 2]", "object"),
    (json.dumps({"signature_name": "nope", "instances": ["x"]}).encode(), "nope"),
    (json.dumps({"inputs": {"pixels": ["x"]}}).encode(), "pixels"),
    (json.dumps({"signature_name": "neighbors", "inputs": {"embedding": [["a"] * DIM]}}).encode(), "float"),
    (json.dumps({"signature_name": "neighbors", "inputs": {"embedding": [[0.1] * 5]}}).encode(), "shape"),
    (json.dumps({"signature_name": "recommend", "inputs": {"history": [["m0"], ["m1", "m2"]]}}).encode(),
     "ragged"),
    (json.dumps({"instances": [{"b64": "@@not base64@@"}]}).encode(), "base64"),
    (json.dumps({"instances": ["x"], "inputs": ["x"]}).encode(), "only one"),
    (json.dumps({"instances": [b64(b"definitely not an image")]}).encode(), "image"),
])
def test_bad_request_is_400_and_server_keeps_serving(url, body, needle):
    code, resp = http("POST", url + ":predict", raw=body)
    assert code == 400, resp
    assert needle.lower() in resp["error"].lower()
    assert http("POST", url + ":predict", {"instances": [b64(png(COLOURS[1]))]})[0] == 200


def test_not_found_method_and_traversal(server, url):
    root = f"http://127.0.0.1:{server.rest_port}/v1/models"
    assert http("GET", root + "/other")[0] == 404
    assert http("POST", root + "/other:predict", {"instances": ["x"]})[0] == 404
    assert http("POST", url + "/versions/9:predict", {"instances": ["x"]})[0] == 404
    assert http("GET", url + "/versions/abc")[0] == 400
    assert http("GET", f"http://127.0.0.1:{server.rest_port}/v2/whatever")[0] == 404
    for evil in ("..%2F..%2Fetc", "..", "%2e%2e", "a%2Fb"):
        code, resp = http("GET", f"{root}/{evil}")
        assert code in (400, 404) and "error" in resp, evil
    assert http("GET", url + ":predict")[0] == 405
    assert http("POST", url, {"x": 1})[0] == 405
    assert http("PUT", url, {"x": 1})[0] == 405
    assert http("GET", url)[0] == 200


def test_body_limit_413_then_next_request_ok(server, url):
    huge = b'{"instances": ["' + b"a" * (server.max_body_bytes + 10) + b'"]}'
    conn = HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    conn.request("POST", "/v1/models/posters:predict", body=huge,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 413 and "exceeds" in json.loads(resp.read())["error"]
    conn.close()
    assert http("GET", url)[0] == 200


def test_keep_alive_connection_survives_errors(server):
    conn = HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    for body, want in [(b"{bad", 400), (json.dumps({"instances": [b64(png(COLOURS[0]))]}).encode(), 200),
                       (json.dumps({"x": 1}).encode(), 405)]:
        path = "/v1/models/posters" + (":predict" if want != 405 else "")
        conn.request("POST", path, body=body)
        r = conn.getresponse()
        r.read()
        assert r.status == want
    conn.close()


# ---------------------------------------------------------------------------------------------
# gRPC + client


def test_client_rest_and_grpc_agree(server):
    rest = PosterClient(f"127.0.0.1:{server.rest_port}", protocol="rest")
    grpc_ = PosterClient(f"127.0.0.1:{server.grpc_port}", protocol="grpc")
    imgs = [png(c) for c in COLOURS[:3]]
    try:
        sim = rest.similar(imgs)
        assert sim == grpc_.similar(imgs)
        assert [r[0][0] for r in sim] == ["m0", "m1", "m2"] and len(sim[0]) == K
        assert rest.similar(imgs, k=2) == [r[:2] for r in sim]
        emb_r, emb_g = rest.embed(imgs), grpc_.embed(imgs)
        assert emb_r.dtype == np.float32 and emb_r.shape == (3, DIM)
        np.testing.assert_array_equal(emb_r, emb_g)
        assert rest.neighbors(emb_r) == grpc_.neighbors(emb_g) == sim
        hist = [["m0", "m1"], ["m4"]]
        assert rest.recommend(hist) == grpc_.recommend(hist)
        assert "m4" not in [i for i, _ in rest.recommend(hist)[1]]
        assert rest.status() == grpc_.status()
        assert rest.status()["model_version_status"][0]["state"] == "AVAILABLE"
        assert rest.metadata() == grpc_.metadata()
        ex = tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[imgs[1]]))})).SerializeToString()
        out_r = rest.predict("embed_examples", {"examples": [ex]})
        out_g = grpc_.predict("embed_examples", {"examples": [ex]})
        assert set(out_r) == set(out_g) == {"embedding", "logits"}
        for key in out_r:
            np.testing.assert_array_equal(out_r[key], out_g[key])
        for c in (rest, grpc_):
            with pytest.raises(ServingError) as e:
                c.predict("nope", {"image_bytes": [imgs[0]]})
            assert "nope" in e.value.message and e.value.status in (400, "INVALID_ARGUMENT")
            with pytest.raises(ServingError) as e:
                c.embed([b"not an image"])
            assert e.value.status in (400, "INVALID_ARGUMENT")
        bad = PosterClient(f"127.0.0.1:{server.grpc_port}", model_name="other", protocol="grpc")
        with pytest.raises(ServingError) as e:
            bad.status()
        assert e.value.status == "NOT_FOUND"
        bad.close()
    finally:
        grpc_.close()


def test_client_unreachable():
    port = free_port()
    with pytest.raises(ServerUnavailable):
        PosterClient(f"127.0.0.1:{port}", protocol="rest", timeout=5).status()
    with pytest.raises(ServerUnavailable):
        PosterClient(f"127.0.0.1:{port}", protocol="grpc", timeout=2).status()


def test_query_main_in_process(server, tmp_path, capsys):
    paths = []
    for i in (0, 3):
        p = tmp_path / f"poster{i}.png"
        p.write_bytes(png(COLOURS[i]))
        paths.append(str(p))
    cat = tmp_path / "catalogue.tfrecord"
    with tf.io.TFRecordWriter(str(cat)) as w:
        for i in range(len(COLOURS)):
            feats = {"movie_id": [f"m{i}".encode()], "title": [f"Film {i}".encode()],
                     "genres": [b"Drama", b"War"]}
            ex = tf.train.Example(features=tf.train.Features(feature={
                k: tf.train.Feature(bytes_list=tf.train.BytesList(value=v)) for k, v in feats.items()}))
            w.write(ex.SerializeToString())

    def args(**kw):
        base = dict(images=paths, history=[], mix=False, k=2, server=f"127.0.0.1:{server.rest_port}",
                    grpc=False, model_name="posters", catalogue=None)
        return Namespace(**{**base, **kw})

    assert query_mod.main(args(catalogue=str(cat))) == 0
    out = capsys.readouterr().out
    assert "Film 0" in out and "Drama|War" in out and out.count("==") == 4
    assert query_mod.main(args(mix=True, history=["m0"], grpc=True,
                                server=f"127.0.0.1:{server.grpc_port}")) == 0
    out = capsys.readouterr().out
    assert "style mix of 2 images" in out and "recommendations after m0" in out
    assert query_mod.main(args(images=[str(tmp_path / "missing.png")])) == 2
    assert "not found" in capsys.readouterr().err


def test_engine_tfserving_without_binary(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    a = Namespace(model_base_path=str(tmp_path), model_name="posters", rest_port=0, grpc_port=0,
                  host="127.0.0.1", engine="tfserving", poll_seconds=1.0)
    assert server_main.main(a) == 2
    assert "tensorflow_model_server" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# hot load


def test_hot_load_new_version_without_dropping_requests(saved, tmp_path):
    base = tmp_path / "posters"
    shutil.copytree(saved["v1"], base / "1")
    srv = ModelServer(str(base), rest_port=0, grpc_port=None, poll_seconds=0.1).start()
    url = f"http://127.0.0.1:{srv.rest_port}/v1/models/posters"
    body = {"instances": [b64(png(COLOURS[0]))]}
    stop, seen, errors = threading.Event(), [], []

    def hammer():
        while not stop.is_set():
            try:
                code, r = http("POST", url + ":predict", body)
                if code != 200:
                    errors.append(r)
                else:
                    seen.append(r["predictions"][0]["movie_ids"][0])
            except Exception as e:  # noqa: BLE001 - any failure is a dropped request
                errors.append(repr(e))

    def served_version():
        entries = http("GET", url)[1]["model_version_status"]
        return [e["version"] for e in entries if e["state"] == "AVAILABLE"][0]

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.3)
        # half-written version 2 (no saved_model.pb yet) and a corrupt version 3: both ignored
        shutil.copytree(os.path.join(saved["v2"], "variables"), base / "2" / "variables")
        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"garbage")
        time.sleep(0.8)
        assert served_version() == "1" and srv.model.version == 1
        failed = {e["version"]: e for e in http("GET", url)[1]["model_version_status"]}["3"]
        assert failed["state"] == "END" and "saved_model.pb" in failed["status"]["error_message"]
        assert http("GET", url + "/versions/3")[1]["model_version_status"] == [failed]
        assert http("POST", url + "/versions/3:predict", body)[0] == 404
        # finish version 2: the server switches while requests keep flowing
        shutil.rmtree(base / "3")
        for name in os.listdir(saved["v2"]):
            if name != "variables":
                src = os.path.join(saved["v2"], name)
                (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, base / "2" / name)
        deadline = time.time() + 30
        while served_version() != "2" and time.time() < deadline:
            time.sleep(0.1)
        assert served_version() == "2"
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(timeout=30)
        srv.stop()
    assert errors == []
    assert seen[0] == "m0" and seen[-1] == "v2_0"
    assert set(seen) == {"m0", "v2_0"}


# ---------------------------------------------------------------------------------------------
# CLI subprocesses: `posters serve` and `posters query`


def test_cli_serve_and_query(base, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    err = open(tmp_path / "serve.err", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [*POSTERS_CLI, "serve", "--model-base-path", str(base), "--rest-port", "0",
         "--grpc-port", "0", "--poll-seconds", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        rest = None
        deadline = time.time() + 90
        while rest is None and time.time() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, (tmp_path / "serve.err").read_text()
                continue
            if line.startswith("REST: http://"):
                rest = line.split("http://", 1)[1].split("/", 1)[0]
        assert rest, (tmp_path / "serve.err").read_text()

        img = tmp_path / "q.png"
        img.write_bytes(png(COLOURS[4]))
        q = subprocess.run([*POSTERS_CLI, "query", str(img), "-k", "2",
                            "--server", rest], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert q.returncode == 0, q.stderr
        assert "  1. m4" in q.stdout and "  3." not in q.stdout

        q = subprocess.run([*POSTERS_CLI, "query", str(tmp_path / "nope.png"),
                            "--server", rest], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert q.returncode == 2 and "not found" in q.stderr
        q = subprocess.run([*POSTERS_CLI, "query", str(img),
                            "--server", f"127.0.0.1:{free_port()}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert q.returncode == 2 and "cannot reach" in q.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        err.close()
    assert rc == 0

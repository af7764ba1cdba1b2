"""Server-side batching: merged calls, per-request answers, isolation of bad requests, and the
real local server (REST + gRPC) with batching on, against the tiny real SavedModel of test_serving."""
from __future__ import annotations

import os
import threading
from argparse import Namespace

import numpy as np
import pytest

from poster_similarity.serving.batching import Batcher, BatchingOptions, Overloaded, batch_rows
from tests.helpers import ROOT


def _double(calls: list):
    """y = 2x row by row; `n` records how many rows the call that produced the row had."""
    def run(signature, inputs):
        x = inputs["x"]
        calls.append(len(x))
        if np.any(x < 0):
            raise ValueError("negative input")
        return {"y": x * 2, "n": np.full(len(x), len(x))}
    return run


def _concurrently(fn, args):
    out, errors = [None] * len(args), [None] * len(args)
    barrier = threading.Barrier(len(args))

    def go(i):
        barrier.wait()
        try:
            out[i] = fn(args[i])
        except Exception as e:  # noqa: BLE001 — the test inspects it
            errors[i] = e
    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out, errors


def test_concurrent_requests_are_merged_and_answered_row_by_row():
    calls: list = []
    b = Batcher(_double(calls), BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1))
    try:
        reqs = [np.arange(i, i + 1 + i % 2, dtype=np.float32) for i in range(12)]  # 1 or 2 rows each
        out, errors = _concurrently(lambda x: b.run("sig", {"x": x}), reqs)
        assert errors == [None] * 12
        for x, r in zip(reqs, out, strict=True):
            np.testing.assert_array_equal(r["y"], x * 2)
        assert max(calls) > 2 and max(calls) <= 8  # merged, never above max_batch_size
        assert sum(calls) == sum(len(x) for x in reqs) and b.stats["requests"] == 12
        assert b.stats["calls"] < 12
    finally:
        b.close()


def test_a_bad_request_fails_alone():
    calls: list = []
    b = Batcher(_double(calls), BatchingOptions(max_batch_size=16, batch_timeout_micros=200_000, num_batch_threads=1))
    try:
        reqs = [np.array([float(i)]) for i in range(6)] + [np.array([-1.0])]
        out, errors = _concurrently(lambda x: b.run("sig", {"x": x}), reqs)
        assert isinstance(errors[-1], ValueError) and out[-1] is None
        assert errors[:-1] == [None] * 6 and [float(r["y"][0]) for r in out[:-1]] == [0, 2, 4, 6, 8, 10]
        assert b.stats["retried_alone"] >= 2
    finally:
        b.close()


def test_outputs_not_row_aligned_turn_batching_off_for_that_signature():
    def total(signature, inputs):
        return {"sum": np.array([inputs["x"].sum()])}  # one row whatever the batch: not batchable
    b = Batcher(total, BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1))
    try:
        reqs = [np.array([1.0, 2.0]), np.array([10.0]), np.array([100.0])]
        out, errors = _concurrently(lambda x: b.run("sum", {"x": x}), reqs)
        assert errors == [None] * 3 and [float(r["sum"][0]) for r in out] == [3.0, 10.0, 100.0]
        assert b.run("sum", {"x": np.array([5.0])})["sum"][0] == 5.0
    finally:
        b.close()


def test_big_requests_mismatched_shapes_and_overload():
    calls: list = []
    opts = BatchingOptions(max_batch_size=4, batch_timeout_micros=1000, max_enqueued_batches=1, num_batch_threads=1)
    b = Batcher(_double(calls), opts)
    try:
        assert b.run("sig", {"x": np.arange(10.0)})["n"][0] == 10  # > max_batch_size: runs alone
        assert batch_rows({"a": np.zeros((3, 2)), "b": np.zeros(3)}) == 3
        assert batch_rows({"a": np.zeros((3, 2)), "b": np.zeros(2)}) is None
        assert batch_rows({"k": np.array(5)}) is None
    finally:
        b.close()
    blocked = threading.Event()

    def slow(signature, inputs):
        blocked.wait(10)
        return {"y": inputs["x"]}
    b = Batcher(slow, BatchingOptions(max_batch_size=1, batch_timeout_micros=0, max_enqueued_batches=1,
                                      num_batch_threads=1))
    try:
        first = threading.Thread(target=b.run, args=("s", {"x": np.zeros(1)}))
        first.start()  # taken by the batch thread, which blocks
        while b.stats["calls"] == 0:
            threading.Event().wait(0.01)
        second = threading.Thread(target=b.run, args=("s", {"x": np.zeros(1)}))
        second.start()  # fills the queue (1 batch of 1)
        while not b._queue:
            threading.Event().wait(0.01)
        with pytest.raises(Overloaded):
            b.run("s", {"x": np.zeros(1)})
    finally:
        blocked.set()
        b.close()
        first.join(10)
        second.join(10)


def test_options_from_tf_serving_file_and_errors(tmp_path):
    opts = BatchingOptions.from_file(os.path.join(ROOT, "serving", "config", "batching_parameters.txt"))
    assert (opts.max_batch_size, opts.batch_timeout_micros, opts.max_enqueued_batches, opts.num_batch_threads) == \
        (32, 2000, 100, 4)
    (tmp_path / "partial.txt").write_text("max_batch_size { value: 8 }\n")
    assert BatchingOptions.from_file(str(tmp_path / "partial.txt")) == BatchingOptions(max_batch_size=8)
    (tmp_path / "typo.txt").write_text("max_batch_sise { value: 8 }\n")
    with pytest.raises(ValueError):
        BatchingOptions.from_file(str(tmp_path / "typo.txt"))
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingOptions(max_batch_size=0)


def test_serve_cli_rejects_a_bad_batching_file(tmp_path, capsys):
    from poster_similarity.serving.server import main as server_main

    (tmp_path / "typo.txt").write_text("max_batch_sise { value: 8 }\n")
    a = Namespace(model_base_path=str(tmp_path), model_name="posters", rest_port=0, grpc_port=0, host="127.0.0.1",
                  engine="local", poll_seconds=1.0, enable_batching=True,
                  batching_parameters_file=str(tmp_path / "typo.txt"))
    assert server_main.main(a) == 2
    assert "--batching-parameters-file" in capsys.readouterr().err


def test_real_server_batches_rest_and_grpc_and_isolates_a_corrupt_image(tmp_path):
    """16 concurrent clients (REST and gRPC) with batching on: every answer equals the unbatched
    one, a corrupt image is a 400 for its sender only, and calls were merged."""
    from poster_similarity.client import PosterClient, ServingError
    from poster_similarity.serving.server import ModelServer
    from tests.tiny_model import COLOURS, png, save_model

    base = tmp_path / "posters"
    save_model(str(base / "1"), seed=1, prefix="m")
    opts = BatchingOptions(max_batch_size=16, batch_timeout_micros=50_000, num_batch_threads=2)
    with ModelServer(str(base), rest_port=0, grpc_port=0, batching=opts) as srv:
        assert srv.model.batcher is not None
        expected = [srv.model._call("serving_default", {"image_bytes": np.array([png(c)], object)})
                    for c in COLOURS]

        def ask(i):
            proto = "rest" if i % 2 else "grpc"
            addr = f"127.0.0.1:{srv.rest_port if proto == 'rest' else srv.grpc_port}"
            client = PosterClient(addr, "posters", protocol=proto, timeout=30)
            if i == 15:
                # A PNG cut after its header: the server's header check lets it through, so the
                # decoder fails inside the merged call and the batcher must isolate it.
                return client.predict("serving_default", {"image_bytes": [png(COLOURS[0])[:40]]})
            return client.predict("serving_default", {"image_bytes": [png(COLOURS[i % len(COLOURS)])]})

        out, errors = _concurrently(ask, list(range(16)))
        assert isinstance(errors[15], ServingError) and errors[15].status == 400
        assert errors[:15] == [None] * 15
        for i, r in enumerate(out[:15]):
            want = expected[i % len(COLOURS)]
            assert [m.decode() if isinstance(m, bytes) else m for m in np.asarray(r["movie_ids"]).ravel()] == \
                [m.decode() for m in want["movie_ids"].ravel()]
            np.testing.assert_allclose(np.asarray(r["embedding"]), want["embedding"], atol=1e-5)
        stats = srv.model.batcher.stats
        assert stats["requests"] == 16 and stats["calls"] < 16  # merged
        # history lengths differ: not merged into one call, each still right
        client = PosterClient(f"127.0.0.1:{srv.rest_port}", "posters", protocol="rest", timeout=30)
        r = client.predict("recommend", {"history": [["m0", "m1"]]})
        assert not {"m0", "m1"} & set(np.asarray(r["movie_ids"]).ravel().tolist())


def test_requests_after_close_run_directly():
    calls: list = []
    b = Batcher(_double(calls), BatchingOptions(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1))
    b.close()
    assert b.run("sig", {"x": np.array([3.0])})["y"][0] == 6.0 and b.stats["calls"] == 0

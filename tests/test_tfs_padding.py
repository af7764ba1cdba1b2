"""`recommend` gives the same answers when TF Serving's batching pads its input.

serving/config/batching_parameters.txt sets `pad_variable_length_inputs: true` (without it, TF
Serving fails a batch of histories of different lengths with FAILED_PRECONDITION). TF Serving
then pads each request's tensor, after its end in every dimension but the batch one, to the
batch's largest size, with the request's *first element* as the value (tensorflow_serving/
batching/batching_util.cc: `CreatePadding`, `PadTensor`; batching_session.cc: `MergeInputTensors`),
and pads the batch to an allowed size with copies of the last request's first row. The local
batcher never pads, so only this reproduction of the rule can show what TF Serving would answer.

The filtered signatures' list inputs (genres, tags, exclude_ids) are sets with "" ignored, so copies
of a request's first element change nothing either, provided a multi-row request starts with ""
(as the project's client sends it) and no list is empty (TF Serving refuses to pad an empty tensor:
"no rule" is [""]).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from poster_similarity.client import history_rows
from poster_similarity.serving.tfs_protos import batching_parameters_cls
from tests import tiny_export
from tests.helpers import ROOT
from tests.standin_export import GENRES, TAGS, catalogue

CONFIG = Path(ROOT) / "serving" / "config"


# --- TF Serving's rule, reproduced ---------------------------------------------------------------
def tfs_pad(task: np.ndarray, max_dims: list[int]) -> np.ndarray:
    """batching_util.cc AddPadding → PadTensor for one request's tensor."""
    out_shape = [task.shape[0]] + [max(m, s) for m, s in zip(max_dims[1:], task.shape[1:], strict=True)]
    if int(np.prod(out_shape)) == task.size:  # nothing to pad: CopyFrom
        return task.reshape(out_shape)
    if task.size < 1:
        raise ValueError("Got empty tensor in batch of non-empty tensors.")
    out = np.full(out_shape, task.flat[0], dtype=task.dtype)  # T pad_value(input.flat<T>()(0))
    out[tuple(slice(0, s) for s in task.shape)] = task  # padding is {0, max - size}: after only
    return out


def round_to_allowed(allowed: list[int], size: int) -> int:
    """batching_util.cc RoundToLowestAllowedBatchSize."""
    return next((a for a in allowed if a >= size), size)


def tfs_merge(tasks: list[np.ndarray], allowed: list[int]) -> np.ndarray:
    """batching_session.cc MergeInputTensors with pad_variable_length_inputs: per-dimension max
    over the batch's tasks (CalculateMaxDimSizes), each task padded, concatenated along dim 0,
    then padded to an allowed batch size with the last task's (padded) first row."""
    max_dims = [max(t.shape[d] for t in tasks) for d in range(tasks[0].ndim)]
    padded = [tfs_pad(t, max_dims) for t in tasks]
    size = sum(t.shape[0] for t in tasks)
    padded += [padded[-1][:1]] * (round_to_allowed(allowed, size) - size)
    return np.concatenate(padded)


def test_reproduction_matches_batching_util():
    a = np.array([[b"x", b"y"]], dtype=object)
    b = np.array([[b"p", b"q", b"r", b"s"], [b"t", b"u", b"v", b"w"]], dtype=object)
    merged = tfs_merge([a, b], allowed=[1, 4, 8])
    assert merged.shape == (4, 4)
    assert merged[0].tolist() == [b"x", b"y", b"x", b"x"]  # the request's own first element
    assert merged[1:3].tolist() == b.tolist()  # the longest request is not touched
    assert merged[3].tolist() == b[0].tolist()  # batch padding: the last task's first row
    two = np.array([[b"a", b"b"], [b"c", b""]], dtype=object)
    assert tfs_merge([two, b], allowed=[])[1].tolist() == [b"c", b"", b"a", b"a"]  # flat(0), not row 1's
    with pytest.raises(ValueError, match="empty tensor"):
        tfs_merge([np.empty((1, 0), dtype=object), a], allowed=[])


# --- the property --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def allowed_sizes() -> tuple[list[int], int]:
    bp = text_format.Parse((CONFIG / "batching_parameters.txt").read_text(), batching_parameters_cls()())
    assert bp.pad_variable_length_inputs  # what this file tests
    return list(bp.allowed_batch_sizes), bp.max_batch_size.value


_load = tiny_export.loaded  # one load per export per session (seconds each)


@pytest.fixture(scope="module", params=["brute_force", "scann"])
def recommend(request):
    fn = _load(request.param).signatures["recommend"]

    def run(history: np.ndarray) -> dict[str, np.ndarray]:
        out = fn(history=tf.constant(history.astype(bytes), dtype=tf.string))
        return {name: t.numpy() for name, t in out.items()}

    return run


def _requests(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Requests as clients send them: single rows from any client (repeats, "" and unknown ids
    inside, histories past the 100-id window) and multi-row ones from the project's client."""
    def row(length: int) -> list[str]:
        pool = [f"m{i}" for i in rng.integers(0, 300, size=length)]
        extras = ["", "unknown", pool[0] if pool else ""]
        return [rng.choice(extras) if rng.random() < 0.15 else x for x in pool]

    out = []
    for _ in range(n):
        length = int(rng.choice([1, 2, 5, 30, 120, 180]))
        if rng.random() < 0.3:
            out.append(np.array(history_rows([row(length), row(max(1, length // 3))]), dtype=object))
        else:
            out.append(np.array([[x.encode() for x in row(length)]], dtype=object))
    return out


def _batches(requests: list[np.ndarray], max_batch: int, rng) -> list[list[np.ndarray]]:
    batches, cur = [], []
    for r in requests:
        if cur and (sum(len(t) for t in cur) + len(r) > max_batch or rng.random() < 0.25):
            batches.append(cur)
            cur = []
        cur.append(r)
    return batches + [cur]


def test_padded_batches_answer_like_single_requests(recommend, allowed_sizes):
    allowed, max_batch = allowed_sizes
    rng = np.random.default_rng(7)
    requests = _requests(rng, 40)
    padded_any = False
    for batch in _batches(requests, max_batch, rng):
        merged = tfs_merge(batch, allowed)
        padded_any |= any(t.shape[1] < merged.shape[1] for t in batch)
        together = recommend(merged)
        start = 0
        for task in batch:
            alone = recommend(task)
            rows = slice(start, start + len(task))
            np.testing.assert_array_equal(together["history_used"][rows], alone["history_used"])
            np.testing.assert_array_equal(together["movie_ids"][rows], alone["movie_ids"])
            np.testing.assert_allclose(together["scores"][rows], alone["scores"], rtol=1e-5, atol=1e-6)
            start += len(task)
    assert padded_any


def test_repeats_count_once_and_the_window_holds_the_last_100_distinct_ids(recommend):
    ids = [f"m{i}".encode() for i in range(150)]
    once = recommend(np.array([ids[:3]], dtype=object))
    repeated = recommend(np.array([[ids[0], b"", ids[1], ids[0], b"unknown", ids[2], ids[2]]], dtype=object))
    assert once["history_used"].tolist() == repeated["history_used"].tolist() == [3.0]
    np.testing.assert_array_equal(once["movie_ids"], repeated["movie_ids"])
    long_ = recommend(np.array([ids], dtype=object))
    tail = recommend(np.array([ids[-100:]], dtype=object))
    assert long_["history_used"].tolist() == [100.0]
    np.testing.assert_array_equal(long_["movie_ids"], tail["movie_ids"])
    assert not set(ids[-100:]) & set(long_["movie_ids"][0].tolist())  # the window's ids are left out


def test_empty_history_is_the_catalogue_centroid(recommend):
    empty = recommend(np.array([[b"", b"nope"]], dtype=object))
    assert empty["history_used"].tolist() == [0.0]
    _, emb = catalogue(300)
    centroid = emb.mean(axis=0)
    best = np.argsort(-(emb @ centroid))[:3]
    assert [f"m{i}".encode() for i in best] == empty["movie_ids"][0][:3].tolist()


# --- the filtered signatures ---------------------------------------------------------------------
LIST_RULES = ("include_genres", "exclude_genres", "required_tags", "forbidden_tags", "exclude_ids")


def _filtered_requests(rng: np.random.Generator, n: int) -> list[dict[str, np.ndarray]]:
    """neighbors_filtered / recommend_filtered requests of 1–2 rows: lists as sets of any width ≥ 1
    (repeats inside), "" first in every row of a multi-row request."""
    def lists(rows: int, pool: list[str], p: float) -> np.ndarray:
        picked = [[x for x in pool if rng.random() < p] * int(rng.integers(1, 3)) for _ in range(rows)]
        picked = [([""] + r) if rows > 1 else (r or [""]) for r in picked]
        width = max(map(len, picked))
        return np.array([r + [""] * (width - len(r)) for r in picked], dtype=object).astype(bytes)

    out = []
    for _ in range(n):
        rows = int(rng.choice([1, 1, 2]))
        ids = [f"m{i}" for i in range(300)]
        req = {"include_genres": lists(rows, GENRES, 0.3), "exclude_genres": lists(rows, GENRES, 0.1),
               "required_tags": lists(rows, TAGS, 0.15), "forbidden_tags": lists(rows, TAGS, 0.15),
               "exclude_ids": lists(rows, list(rng.choice(ids, 40)), 0.5),
               "year_range": np.array([[int(rng.choice([0, 1970])), int(rng.choice([0, 2010]))]] * rows, np.int32),
               "per_group": rng.choice([0, 1, 2], rows).astype(np.int32),
               "k": rng.choice([0, 3, 12], rows).astype(np.int32)}
        if rng.random() < 0.5:
            req["embedding"] = rng.standard_normal((rows, 128)).astype(np.float32)
        else:
            req["history"] = lists(rows, ids, 0.01)
        out.append(req)
    return out


def test_filtered_signatures_answer_padded_batches_like_single_requests(allowed_sizes):
    allowed, max_batch = allowed_sizes
    rng = np.random.default_rng(11)
    padded_any = False
    for kind in ("brute_force", "scann"):
        model = _load(kind)
        requests = _filtered_requests(rng, 24)
        for query in ("embedding", "history"):
            sig = model.signatures["neighbors_filtered" if query == "embedding" else "recommend_filtered"]
            same = [r for r in requests if query in r]
            for batch in _batches(same, max_batch, rng):
                merged = {name: tfs_merge([r[name] for r in batch], allowed) for name in batch[0]}
                padded_any |= any(r[n].shape[1] < merged[n].shape[1] for r in batch for n in LIST_RULES)
                together = {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in merged.items()}).items()}
                start = 0
                for req in batch:
                    alone = {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in req.items()}).items()}
                    for i in range(len(req["k"])):
                        n = int(alone["num_results"][i])
                        assert together["num_results"][start + i] == n
                        np.testing.assert_array_equal(together["movie_ids"][start + i][:n], alone["movie_ids"][i][:n])
                        np.testing.assert_allclose(together["scores"][start + i][:n], alone["scores"][i][:n],
                                                   rtol=1e-5, atol=1e-6)
                    start += len(req["k"])
    assert padded_any

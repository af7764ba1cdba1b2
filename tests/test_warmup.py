"""Warm-up requests file (TF Serving's `assets.extra/tf_serving_warmup_requests` format)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from poster_similarity.components import warmup

SIGNATURES = {"serving_default", "embed", "neighbors", "recommend", "embed_examples", "transform_features"}
RAW_SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "movie_id": tf.io.FixedLenFeature([], tf.string),
    "genres": tf.io.VarLenFeature(tf.string),
    "title": tf.io.FixedLenFeature([], tf.string),
    "year": tf.io.FixedLenFeature([], tf.int64),
}


def _posters(n: int):
    images = [tf.io.encode_png(np.full((6, 4, 3), 40 * i, np.uint8)).numpy() for i in range(n)]
    ids = [f"m{i}".encode() for i in range(n)]
    genres = [["Drama"], ["Comedy", "Horror"], []][:n]
    emb = np.eye(n, 8, dtype=np.float32)
    return images, ids, genres, emb


def test_every_signature_at_batch_one_and_n_in_replay_order():
    images, ids, genres, emb = _posters(3)
    reqs = warmup.poster_requests(images, ids, genres, emb, RAW_SPEC)
    sigs = [s for s, _ in reqs]
    # each signature twice: first the single-request shape, then the batch of all posters
    assert set(sigs) == SIGNATURES and len(sigs) == 2 * len(SIGNATURES)
    assert sigs[: len(SIGNATURES)] == sigs[len(SIGNATURES):]
    sizes = {}
    for sig, inputs in reqs:
        (value,) = inputs.values()
        sizes.setdefault(sig, []).append(value.shape[-1] if sig == "recommend" else value.shape[0])
    assert all(v == [1, 3] for v in sizes.values()), sizes


def test_file_round_trip_and_examples_parse_with_the_raw_spec(tmp_path):
    """What is read back equals what was written, and the raw Examples carry each poster's bytes,
    id and genres (a poster without genres gets the placeholder genre, so Transform sees one)."""
    images, ids, genres, emb = _posters(3)
    reqs = warmup.poster_requests(images, ids, genres, emb, RAW_SPEC)
    path = warmup.write_warmup_requests(str(tmp_path), reqs, "posters")
    assert path == str(tmp_path / "assets.extra" / "tf_serving_warmup_requests")
    back = warmup.read_warmup_requests(path)
    assert [s for s, _ in back] == [s for s, _ in reqs]
    for (_, want), (_, got) in zip(reqs, back, strict=True):
        assert set(want) == set(got)
        for k in want:
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))
    examples = dict(reqs)["embed_examples"]["examples"]  # the last (batched) one
    parsed = tf.io.parse_example(examples, RAW_SPEC)
    assert list(parsed["movie_id"].numpy()) == ids
    assert list(parsed["image"].numpy()) == images
    got_genres = tf.sparse.to_dense(parsed["genres"], default_value=b"").numpy().tolist()
    assert got_genres == [[b"Drama", b""], [b"Comedy", b"Horror"], [b"unknown", b""]]


def test_no_posters_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="at least one poster"):
        warmup.poster_requests([], [], [], np.zeros((0, 8), np.float32), RAW_SPEC)

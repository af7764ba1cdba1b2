"""Warm-up requests shipped inside the SavedModel, in TF Serving's format.

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord file of
serialized `PredictionLog`s) before a version becomes AVAILABLE; the local server does the same.
Besides moving first-call latency (function instantiation, ScaNN searcher construction) out of
user traffic, the replay is what makes a version safe under concurrent first calls: ScaNN's
`TensorsToScann` kernel guards the searcher's initialisation with a per-kernel mutex, while TF's
SavedModel loader gives every kernel instance of one loaded version the same resource name, so
two kernels running their first call at once initialise one searcher concurrently ("Must specify
num_neighbors and/or epsilon_distance"). One sequential request per ScaNN signature initialises
the shared searcher before any concurrent traffic arrives.

`poster_requests` covers today's signatures, `filtered_requests` the filtered ones (one request per
signature, one row per plan).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for in assets.extra/
ASSETS_EXTRA = "assets.extra"

# One request: (signature name, {input name: numpy array in the signature's dtype}).
WarmupRequest = tuple[str, Mapping[str, np.ndarray]]


def warmup_path(export_dir: str) -> str:
    return os.path.join(export_dir, ASSETS_EXTRA, WARMUP_FILE)


def predict_log(model_name: str, signature: str, inputs: Mapping[str, np.ndarray]):
    """One `PredictionLog` holding a `PredictRequest` for `signature` (TensorProtos via TF)."""
    from tensorflow_serving.apis import prediction_log_pb2

    entry = prediction_log_pb2.PredictionLog()
    req = entry.predict_log.request
    req.model_spec.name = model_name
    req.model_spec.signature_name = signature
    for name, value in inputs.items():
        req.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return entry


def write_warmup_requests(export_dir: str, requests: Iterable[WarmupRequest], model_name: str) -> str:
    """Write `requests` to `<export_dir>/assets.extra/tf_serving_warmup_requests`.

    Args:
      export_dir: the SavedModel directory (one version).
      requests: (signature, inputs) pairs, replayed in this order.
      model_name: written into each request's model_spec (TF Serving ignores it on replay).

    Returns:
      The path of the written file.
    """
    path = warmup_path(export_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = 0
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests:
            writer.write(predict_log(model_name, signature, inputs).SerializeToString())
            n += 1
    log.info("wrote %d warm-up requests to %s", n, path)
    return path


def read_warmup_requests(path: str) -> list[WarmupRequest]:
    """Inverse of `write_warmup_requests` (used by tests and `posters validate`-style tools)."""
    from tensorflow_serving.apis import prediction_log_pb2

    out: list[WarmupRequest] = []
    for record in tf.data.TFRecordDataset(path):
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        req = entry.predict_log.request
        out.append((req.model_spec.signature_name, {k: tf.make_ndarray(v) for k, v in req.inputs.items()}))
    return out


def _example(raw_spec: Mapping[str, object], values: Mapping[str, Sequence]) -> bytes:
    """A raw tf.Example with every feature of `raw_spec` (missing ones get an empty/zero value)."""
    feats = {}
    for key, spec in raw_spec.items():
        vals = list(values.get(key, ()))
        if spec.dtype == tf.string:
            feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v if isinstance(v, bytes) else str(v).encode() for v in vals] or [b""]))
        elif spec.dtype.is_integer:
            feats[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in vals] or [0]))
        else:
            feats[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in vals] or [0.0]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def poster_requests(images: Sequence[bytes], ids: Sequence[bytes], genres: Sequence[Sequence[str]],
                    embeddings: np.ndarray, raw_spec: Mapping[str, object],
                    titles: Sequence[bytes] | None = None) -> list[WarmupRequest]:
    """Warm-up requests for every signature of the poster SavedModel, from catalogue posters.

    Each signature gets a batch of one and a batch of all given posters, so both the single-request
    and the batched shapes are exercised before traffic.

    Args:
      images: encoded poster images (PNG/JPEG bytes), at least one.
      ids: their movie ids (catalogue ids: `recommend` resolves them).
      genres: their genre names (for the raw tf.Examples of `embed_examples`/`transform_features`).
      embeddings: [N, D] float32 embeddings of these posters (`neighbors` queries).
      raw_spec: Transform's raw feature spec (the keys a serialized raw Example carries).
      titles: optional titles.

    Returns:
      (signature, inputs) pairs in replay order.
    """
    if not len(images):
        raise ValueError("warm-up needs at least one poster")
    titles = list(titles) if titles is not None else [b""] * len(images)
    imgs = np.array(list(images), dtype=object)
    examples = np.array([
        _example(raw_spec, {"image": [img], "movie_id": [mid], "genres": list(g) or ["unknown"], "title": [t]})
        for img, mid, g, t in zip(images, ids, genres, titles, strict=True)], dtype=object)
    emb = np.asarray(embeddings, dtype=np.float32)
    history = np.array([[ids[i] for i in range(len(ids))]], dtype=object)
    out: list[WarmupRequest] = []
    for rows in (slice(0, 1), slice(0, len(images))):
        out += [
            ("serving_default", {"image_bytes": imgs[rows]}),
            ("embed", {"image_bytes": imgs[rows]}),
            ("neighbors", {"embedding": emb[rows]}),
            ("recommend", {"history": history[:, rows]}),
            ("embed_examples", {"examples": examples[rows]}),
            ("transform_features", {"examples": examples[rows]}),
        ]
    return out


def _rule_rows(values: Sequence[str | bytes]) -> np.ndarray:
    """[B, 2] string rule input: each row "" then its value ("" = no rule). The leading "" is the
    project's convention for TF Serving's padding rule (copies of a request's first element)."""
    return np.array([[b"", v if isinstance(v, bytes) else v.encode()] for v in values], dtype=object)


def filtered_requests(images: Sequence[bytes], ids: Sequence[bytes], embeddings: np.ndarray,
                      genre_vocab: Sequence[str]) -> list[WarmupRequest]:
    """One warm-up request per filtered signature (`export_filtered`), three rows each, so every plan
    runs before traffic: a row without rules (the index's over-fetch plan on a large catalogue:
    ScaNN's searcher initialised here, see the module docstring), a typical rule row (a genre, a
    year range, an excluded id, at most 1 per group) and an impossible one (an unknown required tag:
    the exact plan over nothing).

    Args:
      images / ids / embeddings: catalogue posters, as for `poster_requests` (at least one).
      genre_vocab: the served model's genre vocabulary (a rule may only name these).
    """
    if not len(images):
        raise ValueError("warm-up needs at least one poster")
    pick = [i % len(images) for i in range(3)]
    genre = genre_vocab[0] if len(genre_vocab) else ""
    rules = {
        "include_genres": _rule_rows(["", genre, ""]), "exclude_genres": _rule_rows(["", "", ""]),
        "year_range": np.array([[0, 0], [1900, 2100], [0, 0]], np.int32),
        "required_tags": _rule_rows(["", "", b"\x00warm-up: no poster has this tag"]),
        "forbidden_tags": _rule_rows(["", "", ""]), "exclude_ids": _rule_rows(["", ids[0], ""]),
        "per_group": np.array([0, 1, 0], np.int32), "k": np.array([0, 5, 0], np.int32),
    }
    imgs = np.array([images[i] for i in pick], dtype=object)
    history = _rule_rows([ids[pick[0]], ids[pick[1]], ""])
    return [
        ("neighbors_filtered", {"embedding": np.asarray(embeddings, np.float32)[pick], **rules}),
        ("similar_filtered", {"image_bytes": imgs, **rules}),
        ("recommend_filtered", {"history": history, **rules}),
    ]

"""A small real serving export, without running the TFX pipeline.

The real `components.export.PosterServingModule` and `build_index` around an untrained small_cnn
and a random unit-norm catalogue, saved as the Pusher saves it. Only the Transform graph is a
stand-in (the same image op the real one runs, `encode_pixels`), because producing a real one
needs a TFX Transform run (minutes). Everything TF Serving executes for `recommend`, `neighbors`
and the index is the production code. A few seconds to build.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from poster_similarity.components.export import INDEX_REPORT, PosterServingModule, build_index
from poster_similarity.components.model import build_model, embedding_model, get_backbone
from poster_similarity.components.preprocessing import (
    GENRES_XF,
    IMAGE_KEY,
    IMAGE_XF,
    MAX_GENRES,
    MOVIE_ID_KEY,
    encode_pixels,
)
from poster_similarity.components.tower import TowerModule
from poster_similarity.core.config import IndexConfig

NUM_GENRES = 5


def _standin_transform(h: int, w: int) -> tf.Module:
    class StandInTransform(tf.Module):
        def __call__(self, feats):
            ref = feats.get(IMAGE_KEY, feats.get(MOVIE_ID_KEY))
            n = tf.shape(tf.reshape(ref, [-1]))[0]
            out = {GENRES_XF: tf.zeros([n, MAX_GENRES])}
            if IMAGE_KEY in feats:
                out[IMAGE_XF] = encode_pixels(tf.reshape(feats[IMAGE_KEY], [-1]), h, w)
            out[MOVIE_ID_KEY] = tf.reshape(feats[MOVIE_ID_KEY], [-1]) if MOVIE_ID_KEY in feats else tf.fill([n], "")
            return out

    return StandInTransform()


def catalogue(n: int, dim: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return np.array([f"m{i}" for i in range(n)], dtype=object), emb


def export(export_dir: str, kind: str, n: int = 300) -> dict:
    """Writes a SavedModel with an index of `kind` to export_dir; returns build_index's report."""
    h, w = get_backbone("small_cnn").image_size
    model = build_model("small_cnn", "none", None, NUM_GENRES)
    ids, emb = catalogue(n)
    index, report = build_index(ids, emb, IndexConfig(kind=kind, min_catalogue_for_scann=64))
    raw_spec = {IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string, default_value=[""]),
                MOVIE_ID_KEY: tf.io.FixedLenFeature([1], tf.string, default_value=[""])}
    standin = _standin_transform(h, w)
    trained = TowerModule(standin, model, embedding_model(model), (h, w), raw_spec, NUM_GENRES)
    module = PosterServingModule(standin, trained, index, ids, emb, (h, w), raw_spec, NUM_GENRES)
    signatures = {name: fn.get_concrete_function() for name, fn in module.serving_fns.items()}
    os.makedirs(os.path.dirname(export_dir) or ".", exist_ok=True)
    tf.saved_model.save(module, export_dir, signatures=signatures,
                        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(export_dir, "assets.extra", INDEX_REPORT), "w") as f:  # as export_serving_model
        json.dump(report, f, indent=2, default=str)
    return report


_CACHE: dict[str, str] = {}


def cached(kind: str) -> str:
    """One export per index kind per test session (shared by the test modules that need one)."""
    if kind not in _CACHE:
        root = tempfile.mkdtemp(prefix=f"tiny_export_{kind}_")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        path = os.path.join(root, "posters", "1")
        report = export(path, kind)
        assert report["kind"] == kind, report
        _CACHE[kind] = path
    return _CACHE[kind]


if __name__ == "__main__":  # poster_similarity/serving/docker/smoke.sh: python -m tests.tiny_export EXPORT_DIR KIND
    import sys

    print(json.dumps(export(sys.argv[1], sys.argv[2]), default=str))

"""A small real serving export without running the TFX pipeline: for benchmarks, smoke tests, tests.

The production `export.PosterServingModule` and `build_index` around an untrained small_cnn and a
random unit-norm catalogue, saved as the Pusher saves it (with `assets.extra/index_report.json` and
TF Serving's warm-up file, `assets.extra/tf_serving_warmup_requests`, from two catalogue posters).
Only the Transform graph is a stand-in (the same image op the real one runs, `encode_pixels`),
because a real one needs a TFX Transform run (minutes). Everything TF Serving executes for
`serving_default`, `recommend`, `neighbors` and the index is the production code. Seconds to build.

The catalogue has rule attributes (`attributes`: genres, years, tags, series groups) for the filtered
signatures, whose plan thresholds (`PLAN`) are lowered so that 300 posters exercise every plan (the
production thresholds would answer any rule on so small a catalogue exactly).

    python -m tests.standin_export EXPORT_DIR [scann|brute_force]
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from poster_similarity.components.export import INDEX_REPORT, PosterServingModule, build_index
from poster_similarity.components.export_filtered import CatalogueAttributes, attribute_report
from poster_similarity.components.filtered_search import PlanConfig
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
from poster_similarity.components.warmup import filtered_requests, poster_requests, write_warmup_requests
from poster_similarity.core.config import IndexConfig

NUM_GENRES = 5
GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]  # the stand-in's genre vocabulary (NUM_GENRES)
TAGS = ["rating:R", "rating:PG", "region:DE", "region:US", "hd"]
PLAN = PlanConfig(exact_max_rows=30, exact_max_fraction=0.05)


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
    """Ids m0…m{n-1} and n random unit-norm embeddings (seeded)."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return np.array([f"m{i}" for i in range(n)], dtype=object), emb


def attributes(n: int, seed: int = 1) -> CatalogueAttributes:
    """Seeded rule attributes for `catalogue(n)`: 1–2 genres each, years 1950–2024 (5 % unknown),
    each tag with probability 0.3, 70 % of the posters in one of n/10 series ("" = none)."""
    rng = np.random.default_rng(seed)
    genres = [list(rng.choice(GENRES, size=int(rng.integers(1, 3)), replace=False)) for _ in range(n)]
    years = np.where(rng.random(n) < 0.05, 0, rng.integers(1950, 2025, n)).astype(np.int32)
    tags = [[t for t in TAGS if rng.random() < 0.3] for _ in range(n)]
    groups = [f"s{rng.integers(0, max(1, n // 10))}" if rng.random() < 0.7 else "" for _ in range(n)]
    return CatalogueAttributes(genres=genres, years=years, tags=tags, groups=groups, genre_vocab=GENRES)


def export(export_dir: str, kind: str = "scann", n: int = 300, model_name: str = "posters") -> dict:
    """Writes the stand-in SavedModel with an index of `kind` over `n` posters to `export_dir`.

    Args:
        export_dir: the version folder to write (e.g. `.../posters/1`); its parent is created.
        kind: the index kind, `scann` or `brute_force`.
        n: catalogue size (ScaNN is built from 64 posters up).
        model_name: written into the warm-up requests.

    Returns:
        `build_index`'s report, also written to `assets.extra/index_report.json`.
    """
    h, w = get_backbone("small_cnn").image_size
    model = build_model("small_cnn", "none", None, NUM_GENRES)
    ids, emb = catalogue(n)
    index, report = build_index(ids, emb, IndexConfig(kind=kind, min_catalogue_for_scann=64))
    raw_spec = {IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string, default_value=[""]),
                MOVIE_ID_KEY: tf.io.FixedLenFeature([1], tf.string, default_value=[""])}
    standin = _standin_transform(h, w)
    trained = TowerModule(standin, model, embedding_model(model), (h, w), raw_spec, NUM_GENRES)
    module = PosterServingModule(standin, trained, index, ids, emb, (h, w), raw_spec, NUM_GENRES,
                                 attributes=attributes(n), plan=PLAN)
    signatures = {name: fn.get_concrete_function() for name, fn in module.serving_fns.items()}
    os.makedirs(os.path.dirname(export_dir) or ".", exist_ok=True)
    tf.saved_model.save(module, export_dir, signatures=signatures,
                        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
    images = [tf.io.encode_png(tf.fill([3 * i + 30, 2 * i + 20, 3], tf.constant(60 * i, tf.uint8))).numpy()
              for i in (1, 2)]  # two solid posters standing for the first two catalogue ids
    embedded = module.serving_fns["embed"](tf.constant(images))["embedding"].numpy()
    requests = poster_requests(images, [i.encode() for i in ids[:2]], [[], []], embedded, raw_spec)
    requests += filtered_requests(images, [i.encode() for i in ids[:2]], embedded, GENRES)
    write_warmup_requests(export_dir, requests, model_name)
    report["warmup_requests"] = len(requests)
    report["rule_attributes"] = attribute_report(module.filtered_index.catalogue)
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(export_dir, "assets.extra", INDEX_REPORT), "w") as f:  # as export_serving_model
        json.dump(report, f, indent=2, default=str)
    return report


if __name__ == "__main__":  # serving/docker/smoke.sh
    import sys

    print(json.dumps(export(sys.argv[1], *sys.argv[2:3]), default=str))

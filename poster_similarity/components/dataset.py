"""Readers of Transform's output shared by training and the tower export: records, parsed features,
embeddings.

Kept apart from `trainer` (which calls `tower`) so that `tower` reads the eval split without
importing the trainer: the dependency runs trainer → tower → dataset, never back (checked by
`tests/test_architecture.py`).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from poster_similarity.components.preprocessing import (
    GENRE_VOCAB,
    GENRES_XF,
    IMAGE_XF,
    MOVIE_ID_KEY,
    PRIMARY_XF,
    decode_pixels,
    image_size,
)
from poster_similarity.core.config import PipelineConfig

AUTOTUNE = tf.data.AUTOTUNE


def list_files(patterns) -> list[str]:
    """The files matching a glob pattern or a list of them, sorted (what `sharding` splits by worker)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    return sorted(p for pat in patterns for p in tf.io.gfile.glob(pat))


def records(patterns) -> tf.data.Dataset:
    """Transform writes GZIP TFRecords of transformed tf.Examples."""
    return tf.data.TFRecordDataset(list_files(patterns), compression_type="GZIP", num_parallel_reads=AUTOTUNE)


class Features:
    """Parses transformed examples into (uint8 images, labels) for one config + vocabulary."""

    def __init__(self, cfg: PipelineConfig, spec: dict, genres: list[str]):
        self.cfg = cfg
        self.h, self.w = image_size(cfg)
        self.spec = spec
        self.genres = genres
        self.num_genres = len(genres)

    @classmethod
    def from_transform(cls, cfg: PipelineConfig, tft_output: tft.TFTransformOutput) -> Features:
        genres = [g.decode() for g in tft_output.vocabulary_by_name(GENRE_VOCAB)]
        return cls(cfg, tft_output.transformed_feature_spec(), genres)

    def parse(self, serialized):
        f = tf.io.parse_example(serialized, self.spec)
        f[IMAGE_XF] = decode_pixels(f[IMAGE_XF], self.h, self.w)
        f[GENRES_XF] = f[GENRES_XF][:, : self.num_genres]
        return f

    def triplet_label(self, f):
        """One int class per poster, as TripletSemiHardLoss needs (config `label_strategy`)."""
        if self.cfg.label_strategy == "primary":
            return f[PRIMARY_XF]
        if self.cfg.label_strategy == "combo":  # the exact genre set, as a bit mask
            bits = tf.cast(2 ** tf.range(self.num_genres, dtype=tf.int64), tf.float32)
            return tf.cast(tf.reduce_sum(f[GENRES_XF] * bits, axis=-1), tf.int64)
        raise ValueError(f"unknown label_strategy {self.cfg.label_strategy!r} (primary | combo)")

    def label_spec_only(self, serialized):
        spec = {k: self.spec[k] for k in (GENRES_XF, PRIMARY_XF)}
        f = tf.io.parse_example(serialized, spec)
        f[GENRES_XF] = f[GENRES_XF][:, : self.num_genres]
        return self.triplet_label(f)


def embed_dataset(tower: tf.keras.Model, feats: Features, patterns, batch_size: int = 64):
    """(movie_ids, L2-normalised embeddings, multi-hot genres) for every example in `patterns`."""
    ids, embs, genres = [], [], []
    for batch in records(patterns).batch(batch_size).map(feats.parse, num_parallel_calls=AUTOTUNE):
        embs.append(tower(batch[IMAGE_XF], training=False).numpy())
        ids.extend(batch[MOVIE_ID_KEY].numpy().tolist())
        genres.append(batch[GENRES_XF].numpy())
    return np.array(ids, dtype=object), np.concatenate(embs), np.concatenate(genres)

""""Did training help?": the trained model's held-out retrieval next to what it must beat.

Every run reports, on the eval split, the fine-tuned tower beside three baselines a user would
reach for without us: the same backbone as it was before training (ImageNet features for a
pretrained backbone, random initialisation otherwise), a colour histogram, and a random ranking.
A model that does not beat its own frozen backbone taught the network nothing, and only this
comparison can show it (the synthetic demo posters cannot: the project draws them itself).

Pure functions (`colour_histogram`, `random_embedding`) plus `baseline_reports`, which runs them
over transformed examples with the retrieval metrics the Evaluator uses.
"""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from poster_similarity.components.retrieval_metrics import genre_precision, retrieval_scores

log = logging.getLogger(__name__)

HIST_BINS = (8, 4, 4)  # hue × saturation × value
FROZEN, HISTOGRAM, RANDOM, MODEL = "frozen_backbone", "colour_histogram", "random", "model"


def colour_histogram(images: tf.Tensor, bins: tuple[int, int, int] = HIST_BINS) -> tf.Tensor:
    """uint8 [B,H,W,3] RGB → [B, h·s·v] HSV histograms, each summing to 1."""
    hsv = tf.image.rgb_to_hsv(tf.cast(images, tf.float32) / 255.0)  # each channel in [0, 1]
    idx = [tf.minimum(tf.cast(hsv[..., c] * n, tf.int32), n - 1) for c, n in enumerate(bins)]
    flat = (idx[0] * bins[1] + idx[1]) * bins[2] + idx[2]
    flat = tf.reshape(flat, [tf.shape(images)[0], -1])
    size = bins[0] * bins[1] * bins[2]
    counts = tf.math.bincount(flat, minlength=size, maxlength=size, axis=-1, dtype=tf.float32)
    return counts / tf.reduce_sum(counts, axis=-1, keepdims=True)


def random_embedding(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    """A fixed-seed Gaussian vector per poster: the ranking any model must beat."""
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def scores(emb: np.ndarray, genres: np.ndarray) -> dict[str, float]:
    """The retrieval metrics of `retrieval_scores` plus macro/micro genre precision@10."""
    return retrieval_scores(emb, genres, (1, 10)) | genre_precision(emb, genres, 10)


def baseline_reports(frozen_embed, eval_images, seed: int = 0) -> dict[str, dict[str, float]]:
    """{frozen_backbone, colour_histogram, random} → metrics over the eval posters.

    Args:
        frozen_embed: uint8 images → features of the backbone before any training.
        eval_images: iterable of (uint8 images [B,H,W,3], multi-hot genres [B,G]) batches.
        seed: the random baseline's seed.
    """
    frozen, hist, genres = [], [], []
    for images, labels in eval_images:
        frozen.append(np.asarray(frozen_embed(images)))
        hist.append(colour_histogram(images).numpy())
        genres.append(np.asarray(labels))
    if not genres:
        return {}
    genres_all = np.concatenate(genres)
    return {
        FROZEN: scores(np.concatenate(frozen), genres_all),
        HISTOGRAM: scores(np.concatenate(hist), genres_all),
        RANDOM: scores(random_embedding(len(genres_all), seed=seed), genres_all),
    }


def lift(model: dict[str, float], baselines: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """model / baseline for `metric`, per baseline; a baseline scoring 0 has no ratio and is left out
    (too few eval posters per genre for macro P@10, for example)."""
    out = {}
    for name, row in baselines.items():
        base = row.get(metric, 0.0)
        if base > 0:
            out[name] = float(model.get(metric, 0.0) / base)
    return out


def summary_lines(report: dict) -> list[str]:
    """Human lines for `posters run` and logs: each row's macro P@10 and MAP@R, and the lifts."""
    rows = report.get("baselines") or {}
    model = report.get(MODEL) or {}
    if not rows or not model:
        return []
    with_map = "map@r" in model
    lines = ["did training help? held-out posters, macro genre P@10" + (" | MAP@R:" if with_map else ":")]
    for name, row in [(MODEL, model)] + sorted(rows.items(), key=lambda kv: -kv[1].get("macro_precision@10", 0)):
        lines.append(f"  {name:<18} {row.get('macro_precision@10', 0):.3f}"
                     + (f" | {row.get('map@r', 0):.3f}" if with_map else ""))
    lifts = lift(model, rows, "macro_precision@10")
    lines.append("  model / baseline (macro P@10): " + ", ".join(f"{k} x{v:.2f}" for k, v in sorted(lifts.items())))
    return lines

"""The "did training help?" baselines and the genre precision they are compared by."""
from __future__ import annotations

import numpy as np
import pytest

from poster_similarity.components import baselines
from poster_similarity.components.retrieval_metrics import genre_precision


def _hsv_bin(h: float, s: float, v: float, bins=baselines.HIST_BINS) -> int:
    idx = [min(int(c * n), n - 1) for c, n in zip((h, s, v), bins, strict=True)]
    return (idx[0] * bins[1] + idx[1]) * bins[2] + idx[2]


def test_colour_histogram_puts_a_flat_colour_in_its_one_bin():
    red = np.zeros((1, 6, 4, 3), np.uint8)
    red[..., 0] = 255
    half = np.zeros((1, 6, 4, 3), np.uint8)
    half[:, :3] = (0, 0, 255)  # top half blue, bottom half black
    hist = baselines.colour_histogram(np.concatenate([red, half])).numpy()
    assert hist.shape == (2, 128) and np.allclose(hist.sum(axis=1), 1.0)
    assert hist[0, _hsv_bin(0.0, 1.0, 1.0)] == 1.0
    assert hist[1, _hsv_bin(2 / 3, 1.0, 1.0)] == 0.5 and hist[1, _hsv_bin(0.0, 0.0, 0.0)] == 0.5


def test_genre_precision_macro_weighs_genres_equally():
    # Four "A" posters clustered together, two "B" posters each nearest to the A cluster.
    emb = np.array([[1, 0], [1, 0.01], [1, 0.02], [1, 0.03], [0.6, 1], [0.5, 1]], np.float32)
    genres = np.array([[1, 0]] * 4 + [[0, 1]] * 2, np.float32)
    out = genre_precision(emb, genres, k=1, min_count=1)
    # Top-1: each A finds an A (share 1); B at row 4 finds B (row 5 is nearest), row 5 finds row 4.
    sims = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = sims @ sims.T
    np.fill_diagonal(s, -np.inf)
    nearest = s.argmax(axis=1)
    hit = (genres[nearest] * genres).sum(axis=1)
    assert out["micro_precision@1"] == pytest.approx(hit.mean())
    assert out["macro_precision@1"] == pytest.approx(np.mean([hit[:4].mean(), hit[4:].mean()]))
    # with min_count 3, genre B (2 posters) leaves the macro average
    assert genre_precision(emb, genres, k=1, min_count=3)["macro_precision@1"] == pytest.approx(hit[:4].mean())


def test_baseline_reports_and_lift():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 8, 6, 3), dtype=np.uint8)  # 12 per genre: ≥ 10 count in macro P@10
    images[:12, ..., 0] = 250  # genre 0 is red, genre 1 blue: the histogram separates them
    images[12:, ..., 2] = 250
    genres = np.repeat(np.eye(2, dtype=np.float32), 12, axis=0)
    rows = baselines.baseline_reports(lambda x: np.asarray(x, np.float32).reshape(len(x), -1),
                                      [(images[:5], genres[:5]), (images[5:], genres[5:])])
    assert set(rows) == {baselines.FROZEN, baselines.HISTOGRAM, baselines.RANDOM}
    assert rows[baselines.HISTOGRAM]["macro_precision@10"] > rows[baselines.RANDOM]["macro_precision@10"]
    assert rows[baselines.HISTOGRAM]["macro_precision@10"] == 1.0
    assert rows[baselines.RANDOM]["num_queries"] == 24
    model = {"macro_precision@10": 0.6}
    lifts = baselines.lift(model, {"a": {"macro_precision@10": 0.3}, "b": {"macro_precision@10": 0.0}},
                           "macro_precision@10")
    assert lifts == {"a": pytest.approx(2.0)}  # b scores 0: no ratio (ML Metadata stores no inf)
    lines = baselines.summary_lines({"model": model, "baselines": {"a": {"macro_precision@10": 0.3}}})
    assert lines[0].startswith("did training help?") and "a x2.00" in lines[-1]

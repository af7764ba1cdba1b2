"""The export's index builder: tuned ScaNN reaches its recall target; tiny catalogues fall back."""
import numpy as np

from components.export import build_index, exact_top_k, scann_params
from core.config import IndexConfig


def _clustered(n, d=32, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_scann_meets_recall_target_against_exact():
    emb = _clustered(3000)
    ids = np.array([f"m{i}" for i in range(len(emb))], dtype=object)
    layer, report = build_index(ids, emb, IndexConfig(recall_target=0.95))
    assert report["kind"] == "scann" and report["recall_at_k_vs_exact"] >= 0.95
    assert report["params"]["num_leaves"] == round(np.sqrt(3000))
    scores, got = layer(emb[:5])
    assert [g.decode() for g in got.numpy()[:, 0]] == [f"m{i}" for i in range(5)]  # each finds itself


def test_small_catalogue_falls_back_to_brute_force_and_says_so():
    emb = _clustered(30)
    ids = np.array([f"m{i}" for i in range(30)], dtype=object)
    _, report = build_index(ids, emb, IndexConfig())
    assert report["kind"] == "brute_force" and "fallback" in report
    assert report["recall_at_k_vs_exact"] == 1.0


def test_params_scale_with_catalogue():
    small, big = scann_params(400, IndexConfig()), scann_params(1_000_000, IndexConfig())
    assert small["num_leaves"] == 20 and big["num_leaves"] == 1000
    assert IndexConfig(num_leaves=7).num_leaves == 7


def test_exact_top_k_orders_by_score():
    cat = np.eye(4, dtype=np.float32)
    q = np.array([[0.1, 0.9, 0.5, 0.0]], np.float32)
    assert exact_top_k(q, cat, 3).tolist() == [[1, 2, 0]]

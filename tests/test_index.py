"""The export's index builder: tuned ScaNN reaches its recall target; tiny catalogues fall back."""
import numpy as np

from poster_similarity.components.export import build_index, exact_top_k, scann_params
from poster_similarity.core.config import IndexConfig


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
    """Leaves = round(√N); leaves searched = enough to score ~3,000 points, at least 2 % of the leaves,
    at most all: N=400 → 20 leaves of 20 points, 3000/20 = 150 → all 20. N=1M → 1000 leaves of 1000,
    max(ceil(0.02·1000) = 20, ceil(3000/1000) = 3) = 20. Re-scoring: max(10·k, k + 100) = 110 (k = 10)."""
    small, big = scann_params(400, IndexConfig()), scann_params(1_000_000, IndexConfig())
    assert (small["num_leaves"], small["num_leaves_to_search"]) == (20, 20)
    assert (big["num_leaves"], big["num_leaves_to_search"]) == (1000, 20)
    assert small["num_reordering_candidates"] == big["num_reordering_candidates"] == 110
    assert scann_params(50, IndexConfig())["num_reordering_candidates"] == 50  # never more than N


def test_explicit_params_win_but_stay_feasible():
    """num_leaves=7 is used as given; with 400/7 ≈ 57 points a leaf, 3000 points need 53 leaves, capped
    at the 7 there are. num_leaves=500 on 400 points is capped at N // 4 = 100 (a few points a leaf)."""
    assert scann_params(400, IndexConfig(num_leaves=7))["num_leaves"] == 7
    assert scann_params(400, IndexConfig(num_leaves=7))["num_leaves_to_search"] == 7
    assert scann_params(400, IndexConfig(num_leaves=500))["num_leaves"] == 100
    assert scann_params(400, IndexConfig(num_leaves_to_search=3))["num_leaves_to_search"] == 3


def test_exact_top_k_orders_by_score():
    cat = np.eye(4, dtype=np.float32)
    q = np.array([[0.1, 0.9, 0.5, 0.0]], np.float32)
    assert exact_top_k(q, cat, 3).tolist() == [[1, 2, 0]]

"""Retrieval metrics: hand-checked values, and TFMA accumulators that merge in any split."""
import numpy as np
import pytest

from poster_similarity.components.retrieval_metrics import genre_precision, index_recall, retrieval_scores


def test_hand_computed_example():
    # Two tight pairs on orthogonal axes; pair members share a genre, pairs do not.
    emb = np.array([[1, 0.1], [1, 0.0], [0.0, 1], [0.1, 1]], np.float32)
    genres = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    s = retrieval_scores(emb, genres, ks=(1, 2))
    assert s["recall@1"] == 1.0 and s["precision@1"] == 1.0
    assert s["precision@2"] == 0.5 and s["recall@2"] == 1.0
    assert s["map@r"] == 1.0  # R = 1 relevant item each, ranked first


def test_wrong_neighbors_score_zero():
    """Each poster's nearest neighbour has the other genre and its one relevant poster (R = 1) comes
    last, so every top-1 and every top-R is wrong: recall@1 = precision@1 = MAP@R = 0."""
    emb = np.array([[1, 0], [0, 1], [1, 0.01], [0.01, 1]], np.float32)
    genres = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    s = retrieval_scores(emb, genres, ks=(1,))
    assert s["recall@1"] == 0.0 and s["precision@1"] == 0.0 and s["map@r"] == 0.0


def _unit(degrees):
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def test_mapr_is_rank_sensitive_where_precision_is_not():
    """Posters at 0°, 15°, 40°, 70°; genres A, A, B, A. Neighbours by angle and relevant sets:
    P0: P1, P2, P3 | rel {P1, P3}, R=2 → top 2 = [hit, miss] → AP = (1/1)/2 = 1/2
    P1: P0, P2, P3 | rel {P0, P3}, R=2 → [hit, miss] → AP = 1/2
    P2: no other B poster → no query
    P3: P2, P1, P0 | rel {P0, P1}, R=2 → [miss, hit] → AP = (1/2)/2 = 1/4
    MAP@R = (1/2 + 1/2 + 1/4) / 3 = 5/12, although P0 and P3 have the same precision@2 (1/2):
    MAP@R sees where in the top R the hit is. precision@2 = (1/2 + 1/2 + 0 + 1/2) / 4 = 3/8;
    recall@1 = P0 and P1 hit, P2 (nearest P1) and P3 (nearest P2) miss = 2/4."""
    genres = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], np.float32)
    s = retrieval_scores(_unit([0, 15, 40, 70]), genres, ks=(1, 2))
    assert s["map@r"] == pytest.approx(5 / 12)
    assert s["precision@2"] == pytest.approx(3 / 8) and s["recall@1"] == pytest.approx(0.5)
    # A metric blind to rank inside the top R would give P3 the same 1/2 as P0: MAP 1/2, not 5/12.
    assert s["map@r"] < 0.5


def test_collapsed_embeddings_do_not_look_good():
    rng = np.random.default_rng(0)
    genres = np.eye(5)[rng.integers(0, 5, 200)]
    good = genres + 0.05 * rng.normal(size=genres.shape)
    collapsed = np.ones_like(good) + 1e-6 * rng.normal(size=good.shape)
    assert retrieval_scores(good, genres)["map@r"] > 0.9
    assert retrieval_scores(collapsed, genres)["map@r"] < 0.5


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(1)
    emb, genres = rng.normal(size=(50, 8)), (rng.random((50, 4)) > 0.6).astype(np.float32)
    assert retrieval_scores(emb, genres, chunk=7) == pytest.approx(retrieval_scores(emb, genres, chunk=1000))


def test_index_recall():
    assert index_recall(np.array([[1, 2, 3]]), np.array([[3, 2, 9]])) == pytest.approx(2 / 3)


def test_tfma_combiner_merges_split_accumulators():
    """Beam may split the eval set across workers: merged partial results must equal one pass."""
    from types import SimpleNamespace

    from poster_similarity.components.retrieval_metrics import _retrieval_computations

    rng = np.random.default_rng(2)
    emb, genres = rng.normal(size=(40, 6)).astype(np.float32), np.eye(3)[rng.integers(0, 3, 40)]
    combiner = _retrieval_computations()[0].combiner
    inputs = [SimpleNamespace(label=g, prediction={"embedding": e}) for e, g in zip(emb, genres, strict=True)]

    def fold(items):
        acc = combiner.create_accumulator()
        for x in items:
            acc = combiner.add_input(acc, x)
        return acc

    whole = combiner.extract_output(fold(inputs))
    parts = combiner.extract_output(combiner.merge_accumulators([fold(inputs[:13]), fold(inputs[13:30]),
                                                                 fold([]), fold(inputs[30:])]))
    assert {k.name: v for k, v in whole.items()} == pytest.approx({k.name: v for k, v in parts.items()})
    assert {k.name for k in whole} >= {"recall@10", "precision@5", "map@r"}



def test_ir_recall_matches_its_definition_and_does_not_saturate():
    """ir_recall@k = |relevant ∩ top k| / |relevant|, averaged over queries with a relevant poster;
    checked against a plain loop. Where nearly every poster shares a genre with someone, a random
    ranking's recall@10 is ~1 while its ir_recall@10 stays at k / (n - 1)."""
    rng = np.random.default_rng(0)
    emb, genres = rng.normal(size=(60, 8)), (rng.random((60, 5)) > 0.75).astype(np.float32)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    per_query = []
    for q in range(60):
        others = [i for i in range(60) if i != q]
        rel = {i for i in others if (genres[q] * genres[i]).sum() > 0}
        if rel:
            top = sorted(others, key=lambda i: -float(unit[q] @ unit[i]))[:5]
            per_query.append(len(rel & set(top)) / len(rel))
    assert retrieval_scores(emb, genres, ks=(5,))["ir_recall@5"] == pytest.approx(np.mean(per_query))

    g = (rng.random((400, 3)) > 0.3).astype(np.float32)
    r = retrieval_scores(rng.normal(size=(400, 16)), g, ks=(10,))
    assert r["recall@10"] > 0.95 and abs(r["ir_recall@10"] - 10 / 399) < 0.01


def test_genre_precision_per_genre_by_hand_and_by_loop():
    """Posters at 0°, 10°, 30°, 100°; genres P0 {A}, P1 {A}, P2 {B}, P3 {A, B}. Top 2 by angle:
    P0 [P1, P2], P1 [P0, P2], P2 [P1, P0], P3 [P2, P1].
    A (queries P0, P1, P3): shares of the top 2 having A: 1/2, 1/2, 1/2 → 1/2.
    B (queries P2, P3): 0 (P1, P0 lack B), 1/2 (P2 has B) → 1/4. macro = (1/2 + 1/4) / 2 = 3/8;
    micro over the 5 (query, genre) pairs = (1/2 + 1/2 + 0 + 1/2 + 1/2) / 5 = 2/5.
    With min_count=3 only A (3 posters) is kept, in the macro figure and the per-genre dict alike."""
    emb = _unit([0, 10, 30, 100])
    genres = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    plain = genre_precision(emb, genres, k=2, min_count=1)
    assert set(plain) == {"macro_precision@2", "micro_precision@2"}  # the default keeps its keys
    out = genre_precision(emb, genres, k=2, min_count=1, per_genre=True)
    assert out["per_genre_precision@2"] == pytest.approx({0: 1 / 2, 1: 1 / 4})
    assert out["macro_precision@2"] == pytest.approx(3 / 8) and out["micro_precision@2"] == pytest.approx(2 / 5)
    assert {k: v for k, v in out.items() if k in plain} == plain
    only_a = genre_precision(emb, genres, k=2, min_count=3, per_genre=True)
    assert only_a["per_genre_precision@2"] == pytest.approx({0: 1 / 2}) and only_a["macro_precision@2"] == 0.5
    assert genre_precision(emb[:1], genres[:1], k=2, per_genre=True)["per_genre_precision@2"] == {}

    # multi-label, against a plain loop over queries: per genre, the mean share of the top k having it
    rng = np.random.default_rng(1)
    emb, genres = rng.normal(size=(50, 6)), (rng.random((50, 4)) > 0.6).astype(np.float32)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    top = [sorted((i for i in range(50) if i != q), key=lambda i: -float(unit[q] @ unit[i]))[:5] for q in range(50)]
    expected = {g: np.mean([genres[top[q], g].mean() for q in range(50) if genres[q, g]])
                for g in range(4) if genres[:, g].sum() >= 10}
    out = genre_precision(emb, genres, k=5, min_count=10, per_genre=True)
    assert out["per_genre_precision@5"] == pytest.approx(expected)
    assert out["macro_precision@5"] == pytest.approx(np.mean(list(expected.values())))


@pytest.mark.parametrize("frozen", [0.25, 0.0])
def test_training_lift_is_the_model_over_the_frozen_score_it_carries(frozen):
    """The served model carries its untrained backbone's macro P@10 per example; the metric divides
    by it, and a model without one (0) gets lift 0, so a lift gate fails closed."""
    from types import SimpleNamespace

    from poster_similarity.components.retrieval_metrics import (
        FROZEN_P10_OUTPUT,
        LIFT_METRIC,
        _lift_computations,
        genre_precision,
    )

    rng = np.random.default_rng(3)
    emb, genres = rng.normal(size=(60, 5)).astype(np.float32), np.eye(3)[rng.integers(0, 3, 60)]
    combiner = _lift_computations()[0].combiner
    acc = combiner.create_accumulator()
    for e, g in zip(emb, genres, strict=True):
        acc = combiner.add_input(acc, SimpleNamespace(label=g, prediction={
            "embedding": e, FROZEN_P10_OUTPUT: np.float32(frozen)}))
    out = {k.name: v for k, v in combiner.extract_output(acc).items()}
    expected = genre_precision(emb, genres, 10)
    assert out["macro_precision@10"] == pytest.approx(expected["macro_precision@10"])
    assert out[LIFT_METRIC] == pytest.approx(expected["macro_precision@10"] / frozen if frozen else 0.0)

"""Property tests of the in-graph rule engine: random catalogues × random rules, against a
numpy brute-force filtered search, with an exact candidate source, a deliberately lossy one and the
real tfrs ScaNN layer; the fast path for batches without genre/tag/id lists; every exact-plan driver;
plus a SavedModel round trip and hostile request sizes."""
from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.components.filtered_search import (
    PLANS,
    FilteredIndex,
    PlanConfig,
    brute_force_candidates,
    crowd_keep,
    scann_candidates,
)
from poster_similarity.components.retrieval_rules import (
    MAX_EXCLUDE_IDS,
    MAX_TAG_RULES,
    RuleCatalogue,
    group_codes,
    make_rules,
)

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
TAGS = ["rating:R", "rating:PG", "region:DE", "region:US", "hd"]
CFG = PlanConfig(exact_max_rows=30, exact_max_fraction=0.05, max_k=50)


# --- a random world and its numpy reference --------------------------------------------------------
def make_world(seed: int, n: int, dim: int = 16, with_tags: bool = True, with_groups: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    years = rng.integers(1950, 2025, n).astype(np.int32)
    years[rng.random(n) < 0.05] = 0
    tags = [[t for t in TAGS if rng.random() < 0.3] for _ in range(n)] if with_tags else None
    groups = np.where(rng.random(n) < 0.3, -1, rng.integers(0, max(2, n // 20), n)).astype(np.int32) \
        if with_groups else None
    return {"ids": np.array([f"m{i:05d}" for i in range(n)]), "emb": emb,
            "genres": rng.random((n, len(GENRES))) < 0.25, "years": years, "tags": tags, "groups": groups}


def catalogue(w: dict) -> RuleCatalogue:
    return RuleCatalogue(w["ids"], w["emb"], GENRES, w["genres"], w["years"], w["tags"], w["groups"])


def random_rule(rng, w: dict) -> dict:
    n = len(w["ids"])

    def pick(pool, p, m):
        return [x for x in pool if rng.random() < p][:m]

    y0 = int(rng.integers(1950, 2025))
    excl = list(rng.choice(w["ids"], size=int(rng.integers(0, n // 3)), replace=False)) if rng.random() < 0.5 else []
    return {"include_genres": pick(GENRES, 0.25 if rng.random() < 0.6 else 0, 3),
            "exclude_genres": pick(GENRES, 0.15 if rng.random() < 0.5 else 0, 2),
            "year_range": [[0, 0], [y0, 0], [0, y0], [y0, y0 + int(rng.integers(0, 30))]][int(rng.integers(0, 4))],
            "required_tags": pick(TAGS + ["never-seen"] * (rng.random() < 0.1), 0.25, 3),
            "forbidden_tags": pick(TAGS + ["also-unknown"], 0.2, 3),
            "exclude_ids": excl + (["not-a-movie"] if rng.random() < 0.3 else []),
            "per_group": int(rng.choice([0, 0, 1, 2, 3])), "k": int(rng.integers(0, 16))}


def allowed_mask(w: dict, r: dict) -> np.ndarray:
    g = w["genres"]
    idx = {x: i for i, x in enumerate(GENRES)}
    m = np.ones(len(w["ids"]), bool)
    if r["include_genres"]:
        m &= g[:, [idx[x] for x in r["include_genres"]]].any(axis=1)
    if r["exclude_genres"]:
        m &= ~g[:, [idx[x] for x in r["exclude_genres"]]].any(axis=1)
    lo, hi = r["year_range"]
    if lo or hi:
        y = w["years"]
        m &= (y > 0) & ((lo == 0) | (y >= lo)) & ((hi == 0) | (y <= hi))
    tags = [set(t) for t in (w["tags"] or [[]] * len(m))]
    for t in r["required_tags"]:
        m &= np.array([t in s for s in tags])
    for t in r["forbidden_tags"]:
        m &= np.array([t not in s for s in tags])
    m &= ~np.isin(w["ids"], r["exclude_ids"])
    return m


def reference(w: dict, q: np.ndarray, r: dict, default_k: int = 10) -> tuple[list[int], np.ndarray]:
    """Numpy brute-force filtered search with greedy crowding: the rows and their scores."""
    allowed = np.flatnonzero(allowed_mask(w, r))
    scores = w["emb"][allowed] @ q
    k = r["k"] or default_k
    groups = w["groups"] if w["groups"] is not None else np.full(len(w["ids"]), -1)
    out, used = [], {}
    for j in np.argsort(-scores, kind="stable"):
        g = int(groups[allowed[j]])
        if r["per_group"] and g >= 0 and used.get(g, 0) >= r["per_group"]:
            continue
        used[g] = used.get(g, 0) + 1
        out.append(int(allowed[j]))
        if len(out) == k:
            break
    return out, w["emb"][out] @ q


def as_tensors(rules: list[dict]):
    return make_rules(len(rules), **{f: [r[f] for r in rules] for f in rules[0]})


# --- candidate sources --------------------------------------------------------------------------
def lossy_candidates(emb: tf.Variable):
    """Sees only the even catalogue rows and returns at most half of what it is asked for."""
    n = int(emb.shape[0])
    even = tf.constant(np.arange(0, n, 2, dtype=np.int32))

    def topk(queries, k):
        s, i = tf.math.top_k(tf.matmul(queries, tf.gather(emb, even), transpose_b=True),
                             k=tf.minimum(tf.maximum(k // 2, 1), tf.size(even)))
        return s, tf.gather(even, i)
    return topk


def scann_layer(emb: np.ndarray):
    import tensorflow_recommenders as tfrs

    layer = tfrs.layers.factorized_top_k.ScaNN(k=10, num_leaves=20, num_leaves_to_search=4, dimensions_per_block=2,
                                               num_reordering_candidates=50)
    layer.index(tf.constant(emb))
    return layer


def check(world: dict, out: dict, queries: np.ndarray, rules: list[dict], exact_plans: tuple[str, ...]):
    groups = world["groups"]
    for b, r in enumerate(rules):
        ref_rows, ref_scores = reference(world, queries[b], r)
        n = int(out["num_results"][b])
        rows = out["rows"][b][:n]
        ids = [i.decode() for i in out["movie_ids"][b]]
        assert n == len(ref_rows), (b, r, n, len(ref_rows))
        assert all(i == "" for i in ids[n:]) and np.all(np.isneginf(out["scores"][b][n:]))
        assert ids[:n] == list(world["ids"][rows])
        assert allowed_mask(world, r)[rows].all(), "a result breaks a rule"
        assert not set(ids[:n]) & set(r["exclude_ids"])
        assert len(set(rows.tolist())) == n
        if r["per_group"] and groups is not None:
            _, counts = np.unique(groups[rows][groups[rows] >= 0], return_counts=True)
            assert counts.max(initial=0) <= r["per_group"]
        np.testing.assert_allclose(out["scores"][b][:n], world["emb"][rows] @ queries[b], atol=1e-5)
        assert out["plan"][b].decode() in PLANS
        if out["plan"][b].decode() in exact_plans:
            assert rows.tolist() == ref_rows, (b, r)
            np.testing.assert_allclose(out["scores"][b][:n], ref_scores, atol=1e-5)


def cheap_rule(rng, w: dict) -> dict:
    """Only what the fast path handles: a year range, crowding, k (no genre, tag or id list)."""
    r = random_rule(rng, w)
    r.update(include_genres=[], exclude_genres=[], required_tags=[], forbidden_tags=[], exclude_ids=[])
    return r


def run_cases(world, index, seed, cases, batch=6, exact_plans=PLANS, rule=random_rule):
    """index: a FilteredIndex, or its traced signature (a trace costs seconds: reuse one)."""
    rng = np.random.default_rng(seed)
    fn = index.signature() if isinstance(index, FilteredIndex) else index
    seen = set()
    for _ in range(cases):
        rules = [rule(rng, world) for _ in range(batch)]
        qrows = rng.integers(0, len(world["ids"]), batch)
        queries = world["emb"][qrows] + 0.3 * rng.standard_normal((batch, world["emb"].shape[1])).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        out = {k: v.numpy() for k, v in fn(tf.constant(queries), *as_tensors(rules)).items()}
        out["rows"] = np.array([[int(i[1:]) if i else -1 for i in r] for r in out["movie_ids"].astype(str)])
        check(world, out, queries, rules, exact_plans)
        seen.update(p.decode() for p in out["plan"])
    return seen


# --- tests --------------------------------------------------------------------------------------
def test_exact_candidates_match_numpy_everywhere():
    world = make_world(1, 600)
    cat = catalogue(world)
    plans = run_cases(world, FilteredIndex(cat, brute_force_candidates(cat.embeddings), config=CFG), 11, 20)
    assert {"exact", "approx"} <= plans


def test_no_index_no_tags_no_groups():
    world = make_world(2, 300, with_tags=False, with_groups=False)
    plans = run_cases(world, FilteredIndex(catalogue(world), None, config=CFG), 12, 8)
    assert plans == {"exact"}


def test_lossy_index_still_obeys_every_rule_and_count():
    world = make_world(3, 500)
    cat = catalogue(world)
    plans = run_cases(world, FilteredIndex(cat, lossy_candidates(cat.embeddings), config=CFG), 13, 12,
                      exact_plans=("exact", "approx+exact"))
    assert {"exact", "approx+exact"} <= plans


def test_tfrs_scann_layer():
    world = make_world(4, 1500)
    cat = catalogue(world)
    layer = scann_layer(world["emb"])
    index = FilteredIndex(cat, scann_candidates(layer), config=CFG, approx_layer=layer)
    plans = run_cases(world, index, 14, 10, exact_plans=("exact", "approx+exact"))
    assert "approx" in plans


def test_fast_path_without_lists_matches_numpy_and_the_general_path():
    """A batch whose genre/tag/id lists are all empty takes the fast path (no lookups, no word
    tests): same answers as numpy, with a lossy source too (its approx+exact fallback re-encodes on
    the general path), and as the general path (the same rules plus a forbidden tag nobody has)."""
    world = make_world(7, 800)
    cat = catalogue(world)
    fn = FilteredIndex(cat, brute_force_candidates(cat.embeddings), config=CFG).signature()
    assert {"exact", "approx"} <= run_cases(world, fn, 17, 6, rule=cheap_rule)
    lossy = FilteredIndex(cat, lossy_candidates(cat.embeddings), config=CFG).signature()
    run_cases(world, lossy, 18, 3, exact_plans=("exact", "approx+exact"), rule=cheap_rule)
    rng = np.random.default_rng(19)
    # ~40 posters in 2000–2003 (> 30: approx), half of them on rows the lossy source never returns
    rules = [{**cheap_rule(rng, world), "year_range": [2000, 2003], "k": 25} for _ in range(2)]
    queries = world["emb"][:2]
    out = {k: v.numpy() for k, v in lossy(tf.constant(queries), *as_tensors(rules)).items()}
    out["rows"] = np.array([[int(i[1:]) if i else -1 for i in r] for r in out["movie_ids"].astype(str)])
    check(world, out, queries, rules, ("exact", "approx+exact"))
    assert out["plan"].tolist() == [b"approx+exact"] * 2
    rules = [cheap_rule(rng, world) for _ in range(8)]
    rules[0]["year_range"] = [0, 0]  # and one row without any rule
    q = tf.constant(world["emb"][:8])
    fast = fn(q, *as_tensors(rules))
    general = fn(q, *as_tensors([{**r, "forbidden_tags": ["nobody-has-this"]} for r in rules]))
    for key in ("movie_ids", "num_results", "plan"):
        assert fast[key].numpy().tolist() == general[key].numpy().tolist()


@pytest.mark.parametrize("gather", [1.0, 0.0])
def test_exact_plan_drivers_and_full_mask(gather):
    """Without an index every row is exact. gather_max_fraction=1 always scores the driver's rows
    (year window slice, rarest required tag, union of included genres, deduplicated); 0 always
    computes the full-catalogue mask instead. Both must equal numpy, crowding included."""
    world = make_world(8, 400)
    cfg = PlanConfig(exact_max_rows=30, exact_max_fraction=0.05, max_k=50, gather_max_fraction=gather)
    run_cases(world, FilteredIndex(catalogue(world), None, config=cfg), 20, 5)


def test_contradictory_and_impossible_rules_return_nothing(hostile_fn):
    fn, emb = hostile_fn
    out = fn(tf.constant(emb[:3]), *make_rules(
        3, required_tags=[["hd"], ["never-seen"], []], forbidden_tags=[["hd"], [], []],
        year_range=[[0, 0], [0, 0], [2030, 2040]]))
    assert out["num_results"].numpy().tolist() == [0, 0, 0]
    assert out["plan"].numpy().tolist() == [b"exact"] * 3


def test_crowd_keep_is_greedy_per_row():
    groups = tf.constant([[3, 3, -1, 3, 5, 5, -1], [1, 1, 1, 1, 2, 2, 2]])
    keep = crowd_keep(groups, tf.constant([2, 1])).numpy()
    assert keep.tolist() == [[True, True, True, False, True, True, True],
                             [True, False, False, False, True, False, False]]
    assert crowd_keep(groups, tf.constant([0, 0])).numpy().all()
    assert group_codes(["a", "", None, "b", "a"]).tolist() == [0, -1, -1, 1, 0]


def test_saved_model_signature_round_trip(tmp_path):
    world = make_world(5, 400)
    cat = catalogue(world)
    index = FilteredIndex(cat, brute_force_candidates(cat.embeddings), config=CFG)
    fn = index.signature()
    path = str(tmp_path / "m")
    tf.saved_model.save(index, path, signatures={"filtered_neighbors": fn})
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        assert b"Scann>" not in f.read()
    loaded = tf.saved_model.load(path).signatures["filtered_neighbors"]
    rng = np.random.default_rng(15)
    rules = [random_rule(rng, world) for _ in range(5)]
    q = tf.constant(world["emb"][:5])
    got = loaded(embedding=q, **as_tensors(rules)._asdict())
    want = fn(q, *as_tensors(rules))
    for key in ("movie_ids", "num_results", "plan"):
        assert got[key].numpy().tolist() == want[key].numpy().tolist()


@pytest.fixture(scope="module")
def hostile_fn():
    """One traced signature for every hostile case (a trace costs seconds)."""
    world = make_world(6, 200)
    return FilteredIndex(catalogue(world), None, config=CFG).signature(), world["emb"]


@pytest.mark.parametrize("field,value,needle", [
    ("exclude_ids", [["m00001"] * (MAX_EXCLUDE_IDS + 1)], "exclude_ids"),
    ("required_tags", [[f"t{i}" for i in range(10_000)]], "required_tags"),
    ("forbidden_tags", [["x"] * (MAX_TAG_RULES + 1)], "forbidden_tags"),
    ("include_genres", [["Western"]], "unknown genre"),
    ("k", [51], "k: at most"),
    ("per_group", [-1], "per_group"),
    ("year_range", [[-5, 0]], "year_range"),
])
def test_hostile_requests_are_invalid_argument(hostile_fn, field, value, needle):
    fn, emb = hostile_fn
    rules = make_rules(1, **{field: value})
    with pytest.raises(tf.errors.InvalidArgumentError, match=needle):
        fn(tf.constant(emb[:1]), *rules)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one row per query"):
        fn(tf.constant(emb[:2]), *make_rules(1))

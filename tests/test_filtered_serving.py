"""The filtered signatures of a real export: the stand-in export (production `PosterServingModule`
with rule attributes, tests/standin_export.py) for both index kinds, loaded as TF Serving loads it;
the properties every answer must have; and the catalogue attributes' way from the raw data to the
IndexBuilder. Over the project's server and the client: tests/test_filtered_client.py."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.components.retrieval_rules import make_rules
from tests import tiny_export
from tests.standin_export import GENRES, TAGS, attributes, catalogue

N = 300  # the stand-in catalogue
SIGS = ("neighbors_filtered", "similar_filtered", "recommend_filtered")


@pytest.fixture(scope="module")
def world() -> dict:
    ids, emb = catalogue(N)
    a = attributes(N)
    return {"ids": np.array([i.encode() for i in ids]), "emb": emb, "genres": [set(g) for g in a.genres],
            "years": np.asarray(a.years), "tags": [set(t) for t in a.tags], "groups": list(a.groups)}


loaded = tiny_export.loaded  # each export loaded once per session (a load costs seconds)


@pytest.fixture(scope="module", params=["brute_force", "scann"])
def model(request):
    return request.param, loaded(request.param)


# --- the reference --------------------------------------------------------------------------------
def random_rule(rng, w: dict) -> dict:
    def pick(pool, p, m):
        return [x for x in pool if rng.random() < p][:m]

    y0 = int(rng.integers(1950, 2025))
    excl = [i.decode() for i in rng.choice(w["ids"], size=int(rng.integers(0, 60)), replace=False)]
    return {"include_genres": pick(GENRES, 0.3 if rng.random() < 0.6 else 0, 2),
            "exclude_genres": pick(GENRES, 0.2 if rng.random() < 0.4 else 0, 2),
            "year_range": [[0, 0], [y0, 0], [0, y0], [y0, y0 + int(rng.integers(0, 20))]][int(rng.integers(0, 4))],
            "required_tags": pick(TAGS + ["never-seen"] * (rng.random() < 0.1), 0.2, 2),
            "forbidden_tags": pick(TAGS + ["also-unknown"], 0.2, 2),
            "exclude_ids": (excl if rng.random() < 0.6 else []) + (["not-a-movie"] if rng.random() < 0.3 else []),
            "per_group": int(rng.choice([0, 0, 1, 2])), "k": int(rng.integers(0, 16))}


def allowed(w: dict, r: dict, extra_excluded=()) -> np.ndarray:
    lo, hi = r["year_range"]
    y = w["years"]
    m = np.array([(not r["include_genres"] or bool(g & set(r["include_genres"])))
                  and not g & set(r["exclude_genres"]) and set(r["required_tags"]) <= t
                  and not t & set(r["forbidden_tags"]) for g, t in zip(w["genres"], w["tags"], strict=True)])
    if lo or hi:
        m &= (y > 0) & ((lo == 0) | (y >= lo)) & ((hi == 0) | (y <= hi))
    gone = {x.encode() if isinstance(x, str) else x for x in [*r["exclude_ids"], *extra_excluded]}
    return m & ~np.isin(w["ids"], list(gone))


def best(w: dict, q: np.ndarray, mask: np.ndarray, r: dict) -> list[bytes]:
    """Exact filtered search with greedy crowding: what the exact plan must return."""
    rows = np.flatnonzero(mask)
    out, used = [], {}
    for j in rows[np.argsort(-(w["emb"][rows] @ q), kind="stable")]:
        g = w["groups"][j]
        if r["per_group"] and g and used.get(g, 0) >= r["per_group"]:
            continue
        used[g] = used.get(g, 0) + 1
        out.append(w["ids"][j])
        if len(out) == (r["k"] or 10):
            break
    return out


def check_row(w: dict, kind: str, out: dict, b: int, q: np.ndarray, r: dict, extra_excluded=()) -> None:
    """Every returned id satisfies every rule; at most per_group per group; exactly min(k, what the
    rules and crowding allow); exclusions never returned; scores exact and descending (and, for the
    brute_force export, the exact answer itself)."""
    mask = allowed(w, r, extra_excluded)
    want = best(w, q, mask, r)
    n = int(out["num_results"][b])
    got = out["movie_ids"][b][:n].tolist()
    rows = [int(i[1:]) for i in got]
    assert n == len(want), (b, r, out["plan"][b], n, len(want))
    assert mask[rows].all(), "a result breaks a rule or an exclusion"
    assert len(set(got)) == n and all(i == b"" for i in out["movie_ids"][b][n:])
    if r["per_group"]:
        keys = [w["groups"][i] for i in rows if w["groups"][i]]
        assert max([keys.count(g) for g in keys] + [0]) <= r["per_group"]
    scores = out["scores"][b][:n]
    np.testing.assert_allclose(scores, w["emb"][rows] @ q, atol=1e-4)
    assert np.all(np.diff(scores) <= 1e-6) and np.all(np.isneginf(out["scores"][b][n:]))
    if kind == "brute_force":
        assert got == want, (b, r)


def rule_inputs(rules: list[dict]) -> dict:
    return make_rules(len(rules), **{f: [r[f] for r in rules] for f in rules[0]})._asdict()


def as_numpy(out: dict) -> dict:
    return {k: v.numpy() for k, v in out.items()}


# --- the properties, per signature ----------------------------------------------------------------
def test_neighbors_filtered_obeys_every_rule(model, world):
    kind, m = model
    rng = np.random.default_rng(21)
    plans = set()
    for _ in range(5):
        rules = [random_rule(rng, world) for _ in range(6)]
        q = world["emb"][rng.integers(0, N, 6)] + 0.3 * rng.standard_normal((6, 128)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        out = as_numpy(m.signatures["neighbors_filtered"](embedding=tf.constant(q), **rule_inputs(rules)))
        for b, r in enumerate(rules):
            check_row(world, kind, out, b, q[b], r)
        plans.update(out["plan"].tolist())
    assert {b"exact", b"approx"} <= plans  # both plans ran (the stand-in's thresholds are low)


def test_similar_filtered_embeds_then_filters(model, world):
    kind, m = model
    rng = np.random.default_rng(22)
    images = [tf.io.encode_png(rng.integers(0, 255, (40 + 3 * i, 30, 3), dtype=np.uint8)).numpy() for i in range(3)]
    rules = [random_rule(rng, world) for _ in range(3)]
    out = as_numpy(m.signatures["similar_filtered"](image_bytes=tf.constant(images), **rule_inputs(rules)))
    plain = m.signatures["embed"](image_bytes=tf.constant(images))["embedding"].numpy()
    np.testing.assert_allclose(out["embedding"], plain, atol=1e-5)
    for b, r in enumerate(rules):
        check_row(world, kind, out, b, out["embedding"][b], r)


def test_recommend_filtered_never_returns_the_history(model, world):
    kind, m = model
    rng = np.random.default_rng(23)
    histories = [[f"m{i}" for i in rng.choice(N, size=s, replace=False)] for s in (3, 12, 1)]
    histories.append(["unknown-id"])  # no known id: the catalogue centroid
    width = max(map(len, histories)) + 1
    hist = np.array([[""] + h + [""] * (width - 1 - len(h)) for h in histories], dtype=object).astype(bytes)
    rules = [random_rule(rng, world) for _ in histories]
    rules[0] = {**rules[0], "k": 50, "per_group": 0}  # deep enough to reach the history's neighbourhood
    out = as_numpy(m.signatures["recommend_filtered"](history=tf.constant(hist), **rule_inputs(rules)))
    assert out["history_used"].tolist() == [3.0, 12.0, 1.0, 0.0]
    for b, (h, r) in enumerate(zip(histories, rules, strict=True)):
        rows = [int(i[1:]) for i in h if i.startswith("m")]
        q = world["emb"][rows].sum(axis=0) if rows else world["emb"].mean(axis=0)
        check_row(world, kind, out, b, q / np.linalg.norm(q), r, extra_excluded=h)
        assert not set(out["movie_ids"][b].tolist()) & {i.encode() for i in h}


def test_filtered_signatures_are_in_the_warm_up_file_and_run():
    """One request per filtered signature, one row per plan (no rule, a typical rule, an impossible one)."""
    from poster_similarity.components.warmup import read_warmup_requests, warmup_path

    reqs = [(s, i) for s, i in read_warmup_requests(warmup_path(tiny_export.cached("brute_force"))) if s in SIGS]
    assert sorted(s for s, _ in reqs) == sorted(SIGS)
    m = loaded("brute_force")
    for sig, inputs in reqs:
        out = m.signatures[sig](**{k: tf.constant(v) for k, v in inputs.items()})
        assert out["num_results"].numpy().tolist() == [10, 5, 0], sig
        assert all(row[0] == b"" for k, v in inputs.items() if v.dtype == object and v.ndim == 2 for row in v)


def test_documented_inputs_and_outputs(model):
    """docs/serving.md's table against the export (the slow e2e test checks the pipeline's model)."""
    from tests.helpers import documented_signatures

    docs = documented_signatures()
    _, m = model
    for sig in SIGS:
        fn = m.signatures[sig]
        assert (set(fn.structured_input_signature[1]), set(fn.structured_outputs)) == docs[sig], sig


# --- the attributes' way: CSV → contract → CatalogueEmbedder → IndexBuilder --------------------------
def test_csv_tags_and_group_reach_the_contract(tmp_path):
    """Optional CSV columns `tags` ("|"-separated, like genres) and `group`; absent → not written."""
    from PIL import Image

    from poster_similarity.core import tfrecords as tfr
    from poster_similarity.datatools import ingest

    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
    (tmp_path / "p.csv").write_text("movie_id,title,year,genres,poster,tags,group\n"
                                    "a,A,1984,Horror,0.png,rating:R| region:DE|rating:R,nightmare\n"
                                    "b,B,1999,Drama,1.png,,\n")
    ingest.import_posters(tmp_path / "p.csv", tmp_path / "img", tmp_path / "out", shards=1)
    got = {e["movie_id"]: e for e in tfr.read_examples(tfr.shard_glob(str(tmp_path / "out")))}
    assert got["a"]["tags"] == ["rating:R", "region:DE"] and got["a"]["group"] == "nightmare"
    assert got["b"]["tags"] == [] and got["b"]["group"] == "" and got["b"]["duplicate_group"] == ""
    raw = tfr.make_example("b", b"img", ["Drama"])
    assert set(raw.features.feature) == {"movie_id", "image", "genres", "title", "year"}  # absent costs nothing


def test_embedder_carries_attributes_and_the_index_builder_reads_them(tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    from poster_similarity.components.catalogue_embedder.executor import inspect_poster, to_embedding_example
    from poster_similarity.components.index_builder.executor import read_embeddings
    from poster_similarity.core import tfrecords as tfr

    png = tf.io.encode_png(np.full((30, 20, 3), 9, np.uint8)).numpy()
    raws = [tfr.make_example("a", png, ["Horror", "Drama"], "A", 1984, tags=["rating:R"], group="elm",
                             duplicate_group="d1"),
            tfr.make_example("b", png, ["Drama"], "B", 1999, duplicate_group="d1"),  # a copy of a: crowds with elm
            tfr.make_example("c", png, ["Comedy"], "C", duplicate_group="d2"),
            tfr.make_example("d", png, ["Comedy"], "D")]
    records = []
    for i, raw in enumerate(raws):
        mid, title, attrs, reason = inspect_poster(raw.SerializeToString(), 1 << 20)
        assert reason is None
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.response.outputs["embedding"].CopyFrom(tf.make_tensor_proto(np.eye(4, dtype=np.float32)[i]))
        records.append(to_embedding_example(((mid, title, attrs), log)))
    tfr.write_sharded(iter(records), str(tmp_path), shards=1)
    cat = read_embeddings([str(tmp_path / "*")])
    assert cat.ids.tolist() == [b"a", b"b", b"c", b"d"] and cat.embeddings.shape == (4, 4)
    assert cat.attributes["genres"] == [["Horror", "Drama"], ["Drama"], ["Comedy"], ["Comedy"]]
    assert cat.attributes["years"].tolist() == [1984, 1999, 0, 0]
    assert cat.attributes["tags"] == [["rating:R"], [], [], []]
    assert cat.attributes["groups"] == ["group:elm", "group:elm", "duplicate:d2", ""]


def test_a_catalogue_without_attributes_serves_unfiltered_and_genre_rules():
    """The demo's data has no tags and no groups: nothing is stored for them, rules still work."""
    import tensorflow_recommenders as tfrs

    from poster_similarity.components.export_filtered import (
        CatalogueAttributes,
        attribute_report,
        filtered_index,
        rule_catalogue,
    )
    from poster_similarity.components.index_builder.executor import crowding_keys

    assert crowding_keys(["", ""], ["", ""]) is None
    assert crowding_keys(["x", ""], ["", ""]) == ["group:x", ""]
    ids, emb = catalogue(40, dim=8)
    layer = tfrs.layers.factorized_top_k.BruteForce(k=5)
    layer.index(tf.constant(emb))
    cat = rule_catalogue(tf.Variable(ids.astype(bytes)), tf.Variable(emb),
                         CatalogueAttributes(genres=[["Drama"] if i % 2 else ["Horror"] for i in range(40)],
                                             genre_vocab=["Drama", "Horror"]))
    assert attribute_report(cat) == {"genres": 2, "posters_with_year": 0, "tags": 0, "crowding_keys": 0}
    assert cat.tag_bits.shape[0] == 0
    fn = filtered_index(cat, layer, 5).signature()
    out = fn(tf.constant(emb[:2]), *make_rules(2, include_genres=[["Drama"], []], per_group=[1, 1]))
    assert out["num_results"].numpy().tolist() == [5, 5]
    assert all(int(i[1:]) % 2 for i in out["movie_ids"].numpy()[0].astype(str))


def test_the_configured_plan_reaches_the_export_s_filtered_index(monkeypatch):
    """`index.plan.*` → IndexConfig.plan → `export_serving_model` → the serving module's
    FilteredIndex: a max_k of 12 serves k=12 and refuses k=13 (the default allows 1,000). The
    serving module is stopped at its constructor (a full export costs far more than this checks)."""
    import types

    from poster_similarity.components import export, filtered_search
    from poster_similarity.components.export_filtered import filtered_index, rule_catalogue
    from poster_similarity.core.config import PlanConfig, load_config

    assert filtered_search.PlanConfig is PlanConfig  # one definition; the old import path still works
    ic = load_config(None, ["index.kind=brute_force", "index.k=5", "index.plan.max_k=12",
                            "index.plan.overfetch=3"]).index
    ids, emb = catalogue(40, dim=8)
    seen = {}

    class Stop(Exception):
        pass

    def module(tft_layer, trained, index, *args, k=None, attributes=None, plan=None, **kwargs):
        seen.update(index=index, k=k, plan=plan)
        raise Stop

    monkeypatch.setattr(export, "PosterServingModule", module)
    tft_output = types.SimpleNamespace(vocabulary_by_name=lambda name: [b"Drama"], raw_feature_spec=dict,
                                       transform_features_layer=lambda: None)
    pixels = types.SimpleNamespace(input_signature=[tf.TensorSpec([None, 8, 8, 3])])  # the tower's image size
    trained = types.SimpleNamespace(embed_pixels=pixels)
    with pytest.raises(Stop):
        export.export_serving_model(ic, trained, tft_output, ids, emb, {}, "unused", "posters")
    assert seen["plan"] == PlanConfig(max_k=12, overfetch=3.0)
    cat = rule_catalogue(tf.Variable(ids.astype(bytes)), tf.Variable(emb), None)
    findex = filtered_index(cat, seen["index"], seen["k"], seen["plan"])  # as PosterServingModule builds it
    fn = findex.signature()
    assert fn(tf.constant(emb[:1]), *make_rules(1, k=[12]))["num_results"].numpy().tolist() == [12]
    with pytest.raises(tf.errors.InvalidArgumentError, match="k: at most 12"):
        fn(tf.constant(emb[:1]), *make_rules(1, k=[13]))

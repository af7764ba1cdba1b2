"""Near-duplicates are collapsed in the plain signatures: a planted duplicate never comes back twice.

A stand-in export (`tests.standin_export`'s parts: untrained small_cnn, random unit catalogue) whose
catalogue holds planted copies: a pair and a triple of near-identical embeddings sharing a
`duplicate_group`, and two distinct posters of one franchise (`group`, no duplicate group). The
pair is the embeddings of two solid PNGs, so `serving_default` on those images finds it too.
Saved and loaded as TF Serving loads it; `collapse_duplicates=False` serves every copy.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.components.export import PosterServingModule, build_index, duplicate_codes
from poster_similarity.components.export_filtered import CatalogueAttributes
from poster_similarity.components.model import build_model, embedding_model, get_backbone
from poster_similarity.components.preprocessing import IMAGE_KEY, MOVIE_ID_KEY
from poster_similarity.components.retrieval_rules import make_rules
from poster_similarity.components.tower import TowerModule, embed_signature
from poster_similarity.core.config import IndexConfig
from tests.standin_export import GENRES, NUM_GENRES, _standin_transform, catalogue
from tests.test_brute_force_ops import saved_model_ops

N, K = 200, 10
PAIR, TRIPLE, FRANCHISE = (0, 1), (2, 3, 4), (5, 6)
# Textured, not flat: an untrained CNN can map a flat image to an all-zero embedding, whose scores
# then tie with everything and make "which copy comes back" depend on the random weights.
IMAGES = [tf.io.encode_png(np.random.default_rng(i).integers(0, 256, (40 + 7 * i, 30 + 5 * i, 3), np.uint8)).numpy()
          for i in range(2)]


def _parts():
    h, w = get_backbone("small_cnn").image_size
    tf.keras.utils.set_random_seed(0)  # the same weights whatever ran before in this process
    model = build_model("small_cnn", "none", None, NUM_GENRES)
    raw_spec = {IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string, default_value=[""]),
                MOVIE_ID_KEY: tf.io.FixedLenFeature([1], tf.string, default_value=[""])}
    standin = _standin_transform(h, w)
    trained = TowerModule(standin, model, embedding_model(model), (h, w), raw_spec, NUM_GENRES)
    return standin, trained, raw_spec, (h, w)


def planted(image_emb: np.ndarray, seed: int = 3) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Catalogue ids/embeddings with the planted copies, and per poster its group and duplicate group."""
    ids, emb = catalogue(N, dim=image_emb.shape[1], seed=seed)
    rng = np.random.default_rng(seed)
    base = np.concatenate([image_emb, emb[[2, 5]]])  # the pair's artwork is the first image's
    for rows, b in ((PAIR, base[0]), (TRIPLE, base[2]), (FRANCHISE, base[3])):
        for r in rows:
            v = b + rng.normal(0, 1e-3 if rows != FRANCHISE else 0.05, b.shape)
            emb[r] = v / np.linalg.norm(v)
    dup = [""] * N
    for r in PAIR:
        dup[r] = "d-pair"
    for r in TRIPLE:
        dup[r] = "d-triple"
    groups = [""] * N
    for r in FRANCHISE:
        groups[r] = "franchise"
    return ids, emb.astype(np.float32), groups, dup


def build(export_dir: str, kind: str, collapse: bool):
    """The export, saved and loaded (collapse on), or the in-memory module's signature functions
    (collapse off: the same graph as an export without duplicate groups, no save needed)."""
    standin, trained, raw_spec, hw = _parts()
    image_emb = embed_signature(standin, trained.embed_pixels, hw)(tf.constant(IMAGES))["embedding"].numpy()
    ids, emb, groups, dup = planted(image_emb)
    ic = IndexConfig(kind=kind, k=K, min_catalogue_for_scann=64, collapse_duplicates=collapse)
    index, report = build_index(ids, emb, ic)
    attrs = CatalogueAttributes(groups=groups, duplicate_groups=dup, genre_vocab=GENRES)
    module = PosterServingModule(standin, trained, index, ids, emb, hw, raw_spec, NUM_GENRES, k=report["k"],
                                 attributes=attrs, collapse_duplicates=ic.collapse_duplicates)
    if not collapse:
        assert module.duplicates is None
        module.signatures, module.catalogue = module.serving_fns, (ids, emb, dup)
        return module
    signatures = {name: fn.get_concrete_function() for name, fn in module.serving_fns.items()}
    tf.saved_model.save(module, export_dir, signatures=signatures,
                        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
    loaded = tf.saved_model.load(export_dir)
    loaded.catalogue = (ids, emb, dup)
    return loaded


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    cache: dict = {}

    def get(kind: str, collapse: bool = True):
        if (kind, collapse) not in cache:
            path = str(tmp_path_factory.mktemp(f"dup_{kind}_{collapse}") / "1")
            cache[kind, collapse] = (build(path, kind, collapse), path)
        return cache[kind, collapse]
    return get


def _groups_of(answer_ids: np.ndarray, ids: np.ndarray, dup: list[str]) -> list[list[str]]:
    of = {i.encode(): d for i, d in zip(ids, dup, strict=True)}
    return [[of[m] for m in row if of.get(m)] for row in answer_ids]


def _assert_collapsed(out: dict, ids, dup) -> None:
    movie_ids, scores = out["movie_ids"].numpy(), out["scores"].numpy()
    assert movie_ids.shape[1] == K and np.isfinite(scores).all()  # still k answers
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    for row in _groups_of(movie_ids, ids, dup):
        assert len(row) == len(set(row)), row  # never two posters of one duplicate group


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_neighbors_never_return_two_of_one_duplicate_group(exports, kind):
    loaded, _ = exports(kind)
    ids, emb, dup = loaded.catalogue
    rng = np.random.default_rng(7)
    queries = np.concatenate([emb[[0, 1, 2, 3, 4, 5]], rng.standard_normal((40, emb.shape[1]))]).astype(np.float32)
    queries[6:] += 3 * emb[rng.integers(0, 7, 40)]  # random queries near the planted copies
    out = loaded.signatures["neighbors"](embedding=tf.constant(queries))
    _assert_collapsed(out, ids, dup)
    got = out["movie_ids"].numpy()
    assert b"m0" in got[0] or b"m1" in got[0]  # the planted pair's best copy is still answered
    assert {b"m5", b"m6"} <= set(got[5].tolist())  # distinct artworks of one franchise stay distinct


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_serving_default_and_recommend_collapse(exports, kind):
    loaded, _ = exports(kind)
    ids, _, dup = loaded.catalogue
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(IMAGES))
    _assert_collapsed(out, ids, dup)
    assert len({b"m0", b"m1"} & set(out["movie_ids"].numpy()[0].tolist())) == 1
    rec = loaded.signatures["recommend"](history=tf.constant([["m7", "m2"], ["", "m0"]]))
    _assert_collapsed(rec, ids, dup)
    assert not {b"m7", b"m2", b"m0"} & set(rec["movie_ids"].numpy().ravel().tolist())


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_recommend_never_returns_the_twin_of_a_watched_poster(exports, kind):
    """History = one copy + another poster: the mean may score the copy's twin above the copy
    itself, so the collapse keeps the twin; it must still go (same artwork as a watched title)."""
    loaded, _ = exports(kind)
    ids, _, dup = loaded.catalogue
    copies = [r for r, d in enumerate(dup) if d]
    history = [[str(ids[c]), str(ids[o])] for c in copies for o in range(7, 19)]
    rec = loaded.signatures["recommend"](history=tf.constant(history))["movie_ids"].numpy()
    group = {i.encode(): d for i, d in zip(ids, dup, strict=True) if d}
    for watched, answer in zip(history, rec, strict=True):
        assert group[watched[0].encode()] not in {group.get(m) for m in answer}, (watched, answer)


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_filtered_signatures_collapse_too(exports, kind):
    loaded, _ = exports(kind)
    ids, emb, dup = loaded.catalogue
    queries = tf.constant(emb[[0, 2, 5, 9]])
    rules = make_rules(4, exclude_ids=[[], ["m3"], [], []], per_group=[0, 0, 1, 0], k=[0, 5, 0, 3])
    out = loaded.signatures["neighbors_filtered"](embedding=queries, **rules._asdict())
    got = out["movie_ids"].numpy()
    assert out["num_results"].numpy().tolist() == [K, 5, K, 3]
    for row in _groups_of(got, ids, dup):
        assert len(row) == len(set(row)), row
    assert len({b"m0", b"m1"} & set(got[0].tolist())) == 1
    assert len({b"m2", b"m4"} & set(got[1].tolist())) == 1 and b"m3" not in got[1]
    assert len({b"m5", b"m6"} & set(got[2].tolist())) == 1  # per_group 1 crowds the franchise
    img = loaded.signatures["similar_filtered"](image_bytes=tf.constant(IMAGES[:1]),
                                                **make_rules(1)._asdict())["movie_ids"].numpy()
    assert len({b"m0", b"m1"} & set(img[0].tolist())) == 1


def test_collapse_off_serves_the_planted_pair_together(exports):
    loaded, _ = exports("brute_force", collapse=False)
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(IMAGES[:1]))
    assert {b"m0", b"m1"} <= set(out["movie_ids"].numpy()[0].tolist())
    emb = loaded.catalogue[1]
    out = loaded.signatures["neighbors"](embedding=tf.constant(emb[[2]]))
    assert {b"m2", b"m3", b"m4"} <= set(out["movie_ids"].numpy()[0].tolist())
    out = loaded.signatures["neighbors_filtered"](tf.constant(emb[[0]]), *make_rules(1))  # in memory: positional
    assert {b"m0", b"m1"} <= set(out["movie_ids"].numpy()[0].tolist())


def test_brute_force_collapse_has_no_scann_op(exports):
    _, path = exports("brute_force")
    ops = saved_model_ops(path)
    assert not {o for o in ops if o.startswith("Scann>")}


def test_duplicate_codes():
    assert duplicate_codes(None, 3) is None
    assert duplicate_codes(["a", "", "b"], 3) is None  # no group of two: nothing to collapse
    assert duplicate_codes(["b", "a", "", "b", b"a"], 5).tolist() == [1, 0, -1, 1, 0]
    with pytest.raises(ValueError, match="2 entries for 3"):
        duplicate_codes(["a", "a"], 3)

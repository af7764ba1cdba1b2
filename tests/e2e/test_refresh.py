"""Daily refresh: a new catalogue re-runs only the catalogue branch; new training data retrains.

Run 1 is the session's `trained_model` (402 posters, training data = catalogue). Run 2 keeps the
training data and adds 100 new posters (+ 3 broken ones) to the catalogue only: ML Metadata shows
Transform and the Trainer CACHED, the broken posters are dropped and reported, and the pushed
version finds every new poster from its image while the old ids still resolve. Run 3 changes the
training data: the Trainer runs again.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow
NEW = 100


def _png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG declaring width × height (nothing decodable after the header)."""
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02"


def _new_posters(catalogue: str, good_dir: str, tmp: str) -> list[dict]:
    """100 posters unseen in training (ids new00000…) into `good_dir` and `catalogue`, and 3 broken
    ones (garbage, truncated, a header declaring 20000²) into `catalogue` only."""
    from poster_similarity.core import tfrecords
    from poster_similarity.datatools import sample_data

    sample_data.generate(tmp, NEW, size=(100, 150), seed=23, tfrecords=True)
    rows = list(tfrecords.read_examples(os.path.join(tmp, sample_data.TFRECORD_DIR, "*.tfrecord*")))
    new = [{**r, "movie_id": f"new{i:05d}"} for i, r in enumerate(rows)]
    good = [tfrecords.make_example(r["movie_id"], r["image"], r["genres"], r["title"], r["year"]) for r in new]
    broken = [tfrecords.make_example(mid, data, ["Drama"], mid) for mid, data in [
        ("broken_garbage", b"this is not an image"), ("broken_truncated", new[0]["image"][:300]),
        ("broken_huge", _png_header(20000, 20000))]]
    tfrecords.write_sharded(good, good_dir, shards=2, prefix="new")
    tfrecords.write_sharded(good + broken, catalogue, shards=2, prefix="new")
    return new


@pytest.fixture(scope="module")
def refreshed(trained_model, tmp_path_factory):
    from poster_similarity.core import tfrecords
    from poster_similarity.core.config import load_config
    from poster_similarity.local_runner import run

    root = tmp_path_factory.mktemp("refresh")
    catalogue = str(root / "catalogue")
    shutil.copytree(trained_model["data"], catalogue)
    new = _new_posters(catalogue, str(root / "new_good"), str(root / "new_posters"))
    # Its own workdir with a copy of run 1's ML Metadata (whose artifacts stay where run 1 wrote
    # them): the cache sees run 1, and the other tests' workdir gains no runs or versions.
    os.makedirs(root / "work")
    shutil.copy(os.path.join(trained_model["workdir"], "metadata.sqlite"), root / "work")
    cfg = load_config(os.path.join(ROOT, "configs", "demo.yaml"), ["beam_direct_running_mode=in_memory"],
                      data_root=trained_model["data"], workdir=str(root / "work"))
    cfg.catalogue_root = catalogue
    old = sum(1 for _ in tfrecords.iter_serialized(os.path.join(trained_model["data"], "*.tfrecord*")))
    return {"summary": run(cfg), "new": new, "new_good": str(root / "new_good"), "config": cfg, "old": old}


def test_new_catalogue_alone_takes_transform_and_trainer_from_the_cache(refreshed):
    s = refreshed["summary"]
    states = s["components"]
    assert states["Transform"] == states["Trainer"] == "cached", states
    assert states["ImportExampleGen"] == "cached", states
    for node in ("CatalogueExampleGen", "CatalogueEmbedder", "IndexBuilder", "Evaluator", "Pusher"):
        assert states[node] == "ran", (node, states)
    assert s["blessed"] and s["pushed"], s


def test_broken_catalogue_posters_are_dropped_and_reported(refreshed):
    from poster_similarity.pipeline.lineage import open_store

    store = open_store(refreshed["config"].metadata_path)
    embeddings = max((a for a in store.get_artifacts_by_type("Examples") if "num_dropped" in a.custom_properties),
                     key=lambda a: a.id)
    assert embeddings.custom_properties["num_dropped"].int_value == 3
    assert embeddings.custom_properties["num_embedded"].int_value == refreshed["old"] + NEW
    with open(os.path.join(embeddings.uri, "dropped.jsonl")) as f:
        dropped = {r["movie_id"]: r["reason"] for r in map(json.loads, f)}
    assert set(dropped) == {"broken_garbage", "broken_truncated", "broken_huge"}
    assert "max_image_pixels" in dropped["broken_huge"], dropped
    report = json.load(open(os.path.join(refreshed["summary"]["pushed_destination"], "assets.extra",
                                         "index_report.json")))
    assert report["catalogue_size"] == refreshed["old"] + NEW and report["catalogue_posters_dropped"] == 3


def test_refreshed_version_finds_new_posters_and_resolves_old_ids(refreshed, trained_model):
    import scann  # noqa: F401 — registers the ScaNN ops
    import tensorflow as tf

    from poster_similarity.core.tfrecords import read_examples

    m = tf.saved_model.load(refreshed["summary"]["pushed_destination"])
    new = refreshed["new"]
    out = m.signatures["serving_default"](image_bytes=tf.constant([r["image"] for r in new]))
    top1 = [ids[0].decode() for ids in out["movie_ids"].numpy()]
    assert top1 == [r["movie_id"] for r in new]
    assert np.allclose(out["scores"].numpy()[:, 0], 1.0, atol=1e-4)
    old = [r["movie_id"] for r in read_examples(os.path.join(trained_model["data"], "*.tfrecord*"))][:50]
    rec = m.signatures["recommend"](history=tf.constant([[i.encode()] for i in old]))
    assert rec["history_used"].numpy().tolist() == [1.0] * len(old)  # every old id is in the catalogue


def test_new_training_data_retrains(refreshed):
    """Run 3 trains on other posters (the 100 new ones): ImportExampleGen, Transform and the Trainer
    run again. It stops after the Trainer: the index branch is what run 2 checked."""
    from poster_similarity.local_runner import run

    cfg = refreshed["config"]
    cfg.data_root = refreshed["new_good"]
    states = run(cfg, until="Trainer")["components"]
    for node in ("ImportExampleGen", "Transform", "Trainer"):
        assert states[node] == "ran", (node, states)

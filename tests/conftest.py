"""Shared fixtures. `trained_model` runs the real TFX pipeline once per test session (slow tests)."""
from __future__ import annotations

import glob
import os

import pytest

from tests.helpers import ROOT

# The demo's catalogue size and training schedule (configs/demo.yaml: EfficientNet-Lite0 fine-tuned),
# on another seed: the learning test checks the demo's claim on the same kind of run.
E2E_POSTERS = 400
E2E_OVERRIDES = ["beam_direct_running_mode=in_memory"]


# Fixtures a whole group of tests shares across modules: under pytest-xdist (`make test` runs 2
# processes) every test using one of them runs in the same process, so the fixture is built once.
SHARED_FIXTURES = ("trained_model", "transformed")


def xdist_group(item) -> str:
    """The process group of a test: its shared fixture's name, else its module (module-scoped
    fixtures, such as a served model or a multi-worker job, are then built once as well)."""
    return next((f for f in SHARED_FIXTURES if f in getattr(item, "fixturenames", ())), item.nodeid.split("::")[0])


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the marks (its plugin registers after this file)
def pytest_collection_modifyitems(config, items):
    """Marks every test with its group for `pytest -n N --dist loadgroup` (harmless without xdist)."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))


def plant_duplicates(data: str, scratch: str) -> dict:
    """Two more posters with one new artwork, marked as one near-duplicate group (as `posters import`
    marks them), written as their own shard: the pipeline must serve only one of them per answer."""
    from poster_similarity.core import tfrecords
    from poster_similarity.datatools import sample_data

    sample_data.generate(scratch, 1, size=(100, 150), seed=99, tfrecords=True)
    art = next(iter(tfrecords.read_examples(os.path.join(scratch, sample_data.TFRECORD_DIR, "*.tfrecord*"))))
    ids = ["planted-dup-a", "planted-dup-b"]
    tfrecords.write_sharded([tfrecords.make_example(i, art["image"], art["genres"], "Planted", art["year"],
                                                    duplicate_group="planted-pair") for i in ids],
                            data, shards=1, prefix="planted")
    return {"ids": ids, "image": art["image"]}


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """{"data", "workdir", "summary", "serving_base", "model_dir", "config", "duplicates"} of one
    pipeline run on E2E_POSTERS sample posters plus a planted near-duplicate pair (`plant_duplicates`)."""
    from poster_similarity.core.config import load_config
    from poster_similarity.datatools import sample_data
    from poster_similarity.local_runner import run

    root = tmp_path_factory.mktemp("e2e")
    sample_data.generate(str(root / "posters"), E2E_POSTERS, size=(100, 150), seed=7, tfrecords=True)
    data = str(root / "posters" / sample_data.TFRECORD_DIR)
    duplicates = plant_duplicates(data, str(root / "art"))
    cfg = load_config(os.path.join(ROOT, "configs", "demo.yaml"), E2E_OVERRIDES,
                      data_root=data, workdir=str(root / "work"))
    summary = run(cfg)
    versions = sorted(glob.glob(os.path.join(cfg.serving_dir, "*")))
    return {"data": data, "workdir": cfg.workdir, "summary": summary, "config": cfg,
            "serving_base": os.path.dirname(cfg.serving_dir), "duplicates": duplicates,
            "model_dir": versions[-1] if versions else None}

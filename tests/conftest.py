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


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """{"data", "workdir", "summary", "serving_base", "model_dir", "config"} of one pipeline run."""
    from poster_similarity.core.config import load_config
    from poster_similarity.datatools import sample_data
    from poster_similarity.local_runner import run

    root = tmp_path_factory.mktemp("e2e")
    sample_data.generate(str(root / "posters"), E2E_POSTERS, size=(100, 150), seed=7, tfrecords=True)
    data = str(root / "posters" / sample_data.TFRECORD_DIR)
    cfg = load_config(os.path.join(ROOT, "configs", "demo.yaml"), E2E_OVERRIDES,
                      data_root=data, workdir=str(root / "work"))
    summary = run(cfg)
    versions = sorted(glob.glob(os.path.join(cfg.serving_dir, "*")))
    return {"data": data, "workdir": cfg.workdir, "summary": summary, "config": cfg,
            "serving_base": os.path.dirname(cfg.serving_dir),
            "model_dir": versions[-1] if versions else None}

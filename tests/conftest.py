"""Shared fixtures. `trained_model` runs the real TFX pipeline once per test session (slow tests)."""
from __future__ import annotations

import glob
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small but real: enough posters per genre for P×K batches and a ScaNN index (≥ 64 posters).
E2E_POSTERS = 160
E2E_OVERRIDES = ["phase1_epochs=2", "phase2_epochs=2", "beam_direct_running_mode=in_memory", "batch_size=32"]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """{"data", "workdir", "summary", "serving_base", "model_dir", "config"} of one pipeline run."""
    from pipeline import sample_data
    from pipeline.config import load_config
    from pipeline.local_runner import run

    root = tmp_path_factory.mktemp("e2e")
    sample_data.generate(str(root / "posters"), E2E_POSTERS, size=(100, 150), seed=7, tfrecords=True)
    data = str(root / "posters" / sample_data.TFRECORD_DIR)
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"), E2E_OVERRIDES,
                      data_root=data, workdir=str(root / "work"))
    summary = run(cfg)
    versions = sorted(glob.glob(os.path.join(cfg.serving_dir, "*")))
    return {"data": data, "workdir": cfg.workdir, "summary": summary, "config": cfg,
            "serving_base": os.path.dirname(cfg.serving_dir),
            "model_dir": versions[-1] if versions else None}

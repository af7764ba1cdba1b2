"""Fixtures for the multi-worker tests: the real pipeline through Transform on a small sample."""
from __future__ import annotations

import os

import pytest

from tests.helpers import ROOT as REPO

MW_POSTERS = 100
MW_POSTER_SIZE = (48, 72)
# Tiny images and short schedules keep two CPU processes fast; genre-coloured posters so that a
# 100-poster run has a retrieval signal to keep (the learning test covers learning on graded ones).
MW_PHASE2_EPOCHS = 10  # enough to kill a worker after epoch 3 is checkpointed and resume 4..10
MW_OVERRIDES = ["beam_direct_running_mode=in_memory", "image_size=[48, 32]", "phase1_epochs=2",
                "unfreeze_schedule=[[0, 2], [1, -1]]", "batch_size=16", "batch_p=4", "batch_k=4",
                f"phase2_epochs={MW_PHASE2_EPOCHS}", "phase2_steps_per_epoch=8", "distributed.startup_timeout_s=120",
                "distributed.export_wait_s=300"]


@pytest.fixture(scope="session")
def transformed(tmp_path_factory):
    """{"config", "io_dirs", "raw_eval"}: a pipeline run up to Transform on 100 small posters."""
    from poster_similarity.core.config import load_config
    from poster_similarity.datatools import sample_data
    from poster_similarity.local_runner import run
    from poster_similarity.pipeline.lineage import newest_artifact_dir

    root = tmp_path_factory.mktemp("mw")
    sample_data.generate(str(root / "posters"), MW_POSTERS, size=MW_POSTER_SIZE, seed=3, tfrecords=True,
                         palette="genre")
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"), MW_OVERRIDES,
                      data_root=str(root / "posters" / sample_data.TFRECORD_DIR), workdir=str(root / "work"))
    run(cfg, until="Transform")
    pr = cfg.pipeline_root
    io_dirs = (newest_artifact_dir(pr, "Transform", "transformed_examples"),
               newest_artifact_dir(pr, "Transform", "transform_graph"),
               newest_artifact_dir(pr, "SchemaGen", "schema"))
    raw_eval = os.path.join(newest_artifact_dir(pr, "ImportExampleGen", "examples"), "Split-eval", "*")
    return {"config": cfg, "io_dirs": io_dirs, "raw_eval": raw_eval, "root": root}

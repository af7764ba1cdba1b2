"""Where TFX finds the project's module code, and the config subset each module file receives.

Shared by the pipeline definition and the cluster job builders (which start the Trainer's
`run_fn` themselves), so neither imports the other.
"""
from __future__ import annotations

import hashlib
import os

from poster_similarity.core.config import PipelineConfig

MODULE_PREPROCESSING = "poster_similarity.components.preprocessing.preprocessing_fn"
MODULE_RUN_FN = "poster_similarity.components.trainer.run_fn"
METRICS_MODULE = "poster_similarity.components.retrieval_metrics"
_CODE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "components")


def code_version(names: tuple[str, ...] | None = None) -> str:
    """Hash of poster_similarity/components/*.py (or the given files and packages, relative to components/): module
    paths (not module_file) skip wheel builds, and TFX's cache key holds an executor's class name
    but not its code, so the hash goes into each component's config to invalidate the cache when
    the code changes."""
    h = hashlib.sha256()
    files = []
    for name in names or os.listdir(_CODE_DIR):
        path = os.path.join(_CODE_DIR, name)
        files += ([os.path.join(name, f) for f in os.listdir(path) if f.endswith(".py")] if os.path.isdir(path)
                  else [name] if name.endswith(".py") else [])
    for name in sorted(files):
        with open(os.path.join(_CODE_DIR, name), "rb") as f:
            h.update(name.encode() + f.read())
    return h.hexdigest()[:16]


# Settings each module file reads. Passing only these keeps the TFX cache valid when unrelated
# settings change (a new gate threshold must not re-run Transform or retrain).
TRANSFORM_FIELDS = ("backbone", "image_size")
INDEX_FILES = ("export.py", "warmup.py")
# The code behind each custom component's output (its package and the modules it runs).
EMBEDDER_CODE = ("catalogue_embedder", "preprocessing.py")
INDEX_BUILDER_CODE = ("index_builder", "export.py", "warmup.py")
NOT_FOR_TRAINER = ("gates", "index", "workdir", "data_root", "catalogue_root", "beam_runner",
                   "beam_direct_running_mode", "beam_direct_num_workers", "beam_extra_args", "pipeline_image",
                   "kubeflow_pipeline_root", "kubeflow_serving_dir")


def module_config(cfg: PipelineConfig, component: str) -> dict:
    d = cfg.to_dict()
    if component == "transform":
        d = {k: d[k] for k in TRANSFORM_FIELDS}
        return {"config": d, "code_version": code_version(("preprocessing.py", "model.py"))}
    d = {k: v for k, v in d.items() if k not in NOT_FOR_TRAINER}
    # The index and warm-up code belongs to IndexBuilder: changing it must not retrain.
    trainer_files = tuple(n for n in os.listdir(_CODE_DIR) if n.endswith(".py") and n not in INDEX_FILES)
    return {"config": d, "code_version": code_version(trainer_files)}

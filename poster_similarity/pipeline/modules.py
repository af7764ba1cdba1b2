"""Where TFX finds the project's module code, and the config subset each module file receives.

Shared by the pipeline definition and the cluster job builders (which start the Trainer's
`run_fn` themselves), so neither imports the other.
"""
from __future__ import annotations

from collections.abc import Iterable

from poster_similarity.core.config import PipelineConfig
from poster_similarity.pipeline.code_hash import code_hash

MODULE_PREPROCESSING = "poster_similarity.components.preprocessing.preprocessing_fn"
MODULE_RUN_FN = "poster_similarity.components.trainer.run_fn"
METRICS_MODULE = "poster_similarity.components.retrieval_metrics"

# The modules TFX runs for each component; their code hash covers everything they import.
TRANSFORM_CODE = (MODULE_PREPROCESSING.rpartition(".")[0],)
TRAINER_CODE = (MODULE_RUN_FN.rpartition(".")[0],)
EMBEDDER_CODE = ("poster_similarity.components.catalogue_embedder.component",
                 "poster_similarity.components.catalogue_embedder.executor")
# The Evaluator runs the metric module (TFMA imports it by name) but carries no code hash of its
# own: it re-runs because it judges IndexBuilder's new model, so IndexBuilder's key covers that
# module even if `export.py` stops importing it.
INDEX_BUILDER_CODE = ("poster_similarity.components.index_builder.component",
                      "poster_similarity.components.index_builder.executor", METRICS_MODULE)


def code_version(entry_modules: Iterable[str]) -> str:
    """Hash of the code `entry_modules` import (`code_hash.module_closure`): module paths (not
    module_file) skip wheel builds, and TFX's cache key holds an executor's class name but not its
    code, so the hash goes into each component's config to invalidate the cache when the code
    changes."""
    return code_hash(entry_modules)


# Settings each module file reads. Passing only these keeps the TFX cache valid when unrelated
# settings change (a new gate threshold must not re-run Transform or retrain).
TRANSFORM_FIELDS = ("backbone", "image_size")
NOT_FOR_TRAINER = ("gates", "index", "workdir", "data_root", "catalogue_root", "beam_runner",
                   "beam_direct_running_mode", "beam_direct_num_workers", "beam_extra_args", "pipeline_image",
                   "kubeflow_pipeline_root", "kubeflow_serving_dir")


def module_config(cfg: PipelineConfig, component: str) -> dict:
    """`custom_config` of Transform (`component="transform"`) or the Trainer (any other value): the
    settings the module reads and the hash of the code it imports (the index code is not imported
    by `run_fn`, so changing it does not retrain)."""
    d = cfg.to_dict()
    if component == "transform":
        d = {k: d[k] for k in TRANSFORM_FIELDS}
        return {"config": d, "code_version": code_version(TRANSFORM_CODE)}
    d = {k: v for k, v in d.items() if k not in NOT_FOR_TRAINER}
    return {"config": d, "code_version": code_version(TRAINER_CODE)}

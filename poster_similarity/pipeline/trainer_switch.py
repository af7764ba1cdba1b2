"""The pipeline's Trainer for `distributed.trainer_backend`: TFX's plain Trainer, or TFX's Vertex AI
Trainer extension with worker pools from the config.

Kept apart from the job rendering (`cluster_specs.py`) because this is what `create_pipeline` runs
on every compile, while rendering a TFJob or CustomJob is a deployment step.
"""
from __future__ import annotations

from poster_similarity.core.config import PipelineConfig
from poster_similarity.pipeline.cluster_specs import worker_pool_specs


def vertex_custom_config(cfg: PipelineConfig) -> dict:
    """The Vertex keys TFX's extension reads from the Trainer's `custom_config`."""
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor

    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: cfg.distributed.region,
        executor.TRAINING_ARGS_KEY: {"project": cfg.distributed.project,
                                     "worker_pool_specs": worker_pool_specs(cfg)},
    }


def build_trainer(cfg: PipelineConfig, custom_config: dict, **kwargs):
    """The Trainer component for `cfg.distributed.trainer_backend`.

    Args:
        cfg: the pipeline config.
        custom_config: the module config (`{"config": …, "code_version": …}`).
        **kwargs: the Trainer's channels and args (run_fn, examples, transform_graph, …).

    Returns:
        `tfx.components.Trainer` (local) or TFX's Vertex AI `Trainer` with worker pools from the config.
    """
    from tfx import v1 as tfx

    backend = cfg.distributed.trainer_backend
    if backend == "local":
        return tfx.components.Trainer(custom_config=custom_config, **kwargs)
    if backend == "vertex":
        if not cfg.distributed.project:
            raise ValueError("trainer_backend=vertex needs distributed.project (the GCP project)")
        return tfx.extensions.google_cloud_ai_platform.Trainer(
            custom_config={**custom_config, **vertex_custom_config(cfg)}, **kwargs)
    raise ValueError(f"unknown distributed.trainer_backend {backend!r} (local | vertex)")

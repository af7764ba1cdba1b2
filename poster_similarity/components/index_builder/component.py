"""Component spec and component of `IndexBuilder` (TFX's custom-component pattern: a
`ComponentSpec` naming typed artifacts, an executor, a component class tying them)."""
from __future__ import annotations

import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from poster_similarity.components.index_builder import executor


class IndexBuilderSpec(types.ComponentSpec):
    """Tower + Transform graph + catalogue embeddings (+ raw catalogue posters for the warm-up
    file) in; the serving `Model` out."""

    PARAMETERS = {
        "code_version": ExecutionParameter(type=str),  # hash of the code: a change re-runs the component
        "index_config": ExecutionParameter(type=str),  # JSON of core.config.IndexConfig
        "model_name": ExecutionParameter(type=str),
        "seed": ExecutionParameter(type=int),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        "embeddings": ChannelParameter(type=standard_artifacts.Examples),
        "catalogue": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        "serving_model": ChannelParameter(type=standard_artifacts.Model),
    }


class IndexBuilder(base_component.BaseComponent):
    """Build the served SavedModel: the tower's signatures plus retrieval over the catalogue.

    The index is ScaNN tuned to `index.recall_target` against exact search (brute force for small
    catalogues or `index.kind: brute_force`); `assets.extra/index_report.json` records its
    parameters, recall vs exact, build time, catalogue size and the training report;
    `assets.extra/tf_serving_warmup_requests` holds warm-up requests from catalogue posters.
    """

    SPEC_CLASS = IndexBuilderSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, transform_graph: types.BaseChannel,
                 embeddings: types.BaseChannel, catalogue: types.BaseChannel, index_config: dict,
                 model_name: str, seed: int = 0, code_version: str = ""):
        """
        Args:
            model: the Trainer's tower `Model`.
            transform_graph: Transform's graph (raw bytes → pixels inside the served model).
            embeddings: `CatalogueEmbedder`'s output (movie_id, title, embedding per poster, and the
                poster's rule attributes: genres, year, optional tags / group / duplicate_group).
            catalogue: the raw catalogue `Examples` (a few posters become warm-up requests).
            index_config: `core.config.IndexConfig` as a dict.
            model_name: the served model's name (written into the warm-up requests).
            seed: for the index's tuning queries.
            code_version: a hash of the code this component runs (TFX caches by class name only).
        """
        super().__init__(spec=IndexBuilderSpec(
            model=model, transform_graph=transform_graph, embeddings=embeddings, catalogue=catalogue,
            index_config=json.dumps(index_config, sort_keys=True), model_name=model_name, seed=seed,
            code_version=code_version,
            serving_model=types.Channel(type=standard_artifacts.Model)))

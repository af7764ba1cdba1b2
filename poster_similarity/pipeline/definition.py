"""`create_pipeline(config)`: the one TFX pipeline definition, shared by LocalDagRunner and Kubeflow.

    training posters ─ ImportExampleGen → StatisticsGen → SchemaGen → ExampleValidator
                       → Transform → Trainer (the tower) ─┐
    catalogue posters ─ CatalogueExampleGen ──────────────┴→ CatalogueEmbedder (Beam, RunInference)
                       → IndexBuilder (served SavedModel) → Evaluator(recall@k gates vs the latest
                       blessed model) → Pusher.

A run whose catalogue changed and whose training data did not takes Transform and the Trainer from
the TFX cache: only the catalogue branch, IndexBuilder, Evaluator and Pusher run (daily refresh).
"""
from __future__ import annotations

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from poster_similarity.components.catalogue_embedder import CatalogueEmbedder
from poster_similarity.components.index_builder import IndexBuilder
from poster_similarity.core.config import PipelineConfig
from poster_similarity.pipeline.modules import (  # noqa: F401
    EMBEDDER_CODE,
    INDEX_BUILDER_CODE,
    METRICS_MODULE,
    MODULE_PREPROCESSING,
    MODULE_RUN_FN,
    code_version,
    module_config,
)
from poster_similarity.pipeline.trainer_switch import build_trainer


def eval_config(cfg: PipelineConfig) -> tfma.EvalConfig:
    """Absolute floors on recall@10 and index recall, a max drop vs the last blessed model, and
    optionally a floor on the lift over the untrained backbone (`gates.min_lift_over_frozen`).
    (TFMA writes no blessing without thresholds, so they are always set.)"""
    g = cfg.gates
    higher = tfma.MetricDirection.HIGHER_IS_BETTER
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name="embed_examples",
            preprocessing_function_names=["transform_features"],
            label_key="genres_xf",
        )],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(
            metrics=[
                tfma.MetricConfig(class_name="ExampleCount"),
                tfma.MetricConfig(class_name="RetrievalMetrics", module=METRICS_MODULE),
                tfma.MetricConfig(class_name="IndexRecall", module=METRICS_MODULE),
                tfma.MetricConfig(class_name="TrainingLift", module=METRICS_MODULE),
            ],
            thresholds={
                "recall@10": tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": g.min_recall_at_10}),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=higher, absolute={"value": -g.max_recall_drop}),
                ),
                "map@r": tfma.MetricThreshold(
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=higher, absolute={"value": -g.max_map_drop}),
                ),
                "index_recall@10": tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": g.min_index_recall_at_10}),
                ),
            } | ({"lift_over_frozen_backbone": tfma.MetricThreshold(  # did training help?
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": g.min_lift_over_frozen}),
            )} if g.min_lift_over_frozen > 0 else {}),
        )],
    )


def create_pipeline(cfg: PipelineConfig, enable_cache: bool = True,
                    beam_pipeline_args: list[str] | None = None, metadata_connection_config=None,
                    pipeline_root: str | None = None, data_root=None, serving_dir: str | None = None,
                    until: str | None = None, catalogue_root=None) -> tfx.dsl.Pipeline:
    """The one TFX pipeline, for LocalDagRunner and both Kubeflow runners.

    Args:
        cfg: the typed config; module files receive the fields they use (`module_config`).
        enable_cache: let TFX reuse a component's outputs when its inputs and config are unchanged.
        beam_pipeline_args: Beam flags; None → `cfg.beam_pipeline_args()`.
        metadata_connection_config: ML Metadata connection (sqlite locally); None on Kubeflow,
            which provides its own.
        pipeline_root: where artifacts go; None → `cfg.pipeline_root`.
        data_root: folder of training TFRecords, or a `RuntimeParameter` (Kubeflow); None → `cfg.data_root`.
        catalogue_root: folder of the catalogue's TFRecords (the posters recommended), or a
            `RuntimeParameter`; None → `cfg.catalogue_root`, and when that is unset the training data.
        serving_dir: the Pusher's destination; None → `cfg.serving_dir`.
        until: stop after this component, e.g. "Transform" (runner comparisons, benchmarks).

    Returns:
        The `tfx.dsl.Pipeline`, ready for a runner.
    """
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_root if data_root is not None else cfg.data_root,
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern="*.tfrecord*")]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(
            splits=[tfx.proto.SplitConfig.Split(name="train", hash_buckets=cfg.train_buckets),
                    tfx.proto.SplitConfig.Split(name="eval", hash_buckets=cfg.eval_buckets)],
            partition_feature_name="movie_id",  # a poster never lands in both splits
        )),
    )
    catalogue_gen = tfx.components.ImportExampleGen(
        input_base=next(r for r in (catalogue_root, cfg.catalogue_root, data_root, cfg.data_root) if r is not None),
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern="*.tfrecord*")]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(  # one split: every poster is indexed
            splits=[tfx.proto.SplitConfig.Split(name="catalogue", hash_buckets=1)])),
    ).with_id("CatalogueExampleGen")
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                          infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                                        schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=MODULE_PREPROCESSING, custom_config=module_config(cfg, "transform"),
    )
    trainer = build_trainer(  # distributed.trainer_backend: local | vertex (worker pools)
        cfg, module_config(cfg, "trainer"),
        run_fn=MODULE_RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
    )
    embedder = CatalogueEmbedder(examples=catalogue_gen.outputs["examples"], model=trainer.outputs["model"],
                                 code_version=code_version(EMBEDDER_CODE))
    index_builder = IndexBuilder(
        model=trainer.outputs["model"], transform_graph=transform.outputs["transform_graph"],
        embeddings=embedder.outputs["embeddings"], catalogue=catalogue_gen.outputs["examples"],
        index_config=cfg.to_dict()["index"], model_name=cfg.model_name, seed=cfg.seed,
        code_version=code_version(INDEX_BUILDER_CODE))
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=index_builder.outputs["serving_model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(cfg),
        example_splits=["eval"],
    )
    if cfg.beam_runner == "DirectRunner" and cfg.beam_direct_running_mode != "in_memory":
        # Worker processes spawned by multi_processing never `import scann`, so TFMA could not load
        # a ScaNN export there ("Op type not registered 'Scann>TensorsToScann'"). The Evaluator runs
        # in-process (later flags win); distributed runners use the pipeline image, which imports
        # scann at interpreter start (Dockerfile).
        evaluator.with_beam_pipeline_args(["--direct_running_mode=in_memory"])
    pusher = tfx.components.Pusher(
        model=index_builder.outputs["serving_model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir or cfg.serving_dir)),
    )
    components = [example_gen, statistics_gen, schema_gen, example_validator, transform, trainer,
                  catalogue_gen, embedder, index_builder, model_resolver, evaluator, pusher]
    if until:
        ids = [c.id for c in components]
        if until not in ids:
            raise ValueError(f"until={until!r}: not a component of this pipeline ({ids})")
        components = components[: ids.index(until) + 1]
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=pipeline_root or cfg.pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else cfg.beam_pipeline_args(),
    )

"""One local pipeline run in its own process, for the benchmarks that time or need one.

    python -m bench.pipeline_child CONFIG OVERRIDES_JSON DATA_ROOT WORKDIR [full|transform_only]

A process of its own because the benchmarks time it as a whole (TFX's import alone is ~37 s) and
keep TFX, Beam and the trained model out of their own process. `full` (the default) is
`local_runner.run`: what `bench.pipeline` times and `bench.serving_models` builds its demo model
with. `transform_only` runs the first four nodes (ExampleGen → StatisticsGen → SchemaGen →
Transform) alone, for `bench.pipeline`'s comparison of Transform's Beam modes.
"""
from __future__ import annotations

import argparse
import json

MODES = ("full", "transform_only")


def transform_only(cfg) -> None:
    """The first four nodes of pipeline.definition.create_pipeline, built fresh (nodes taken from the
    full pipeline keep references to their downstream nodes, which TFX rejects)."""
    from tfx import v1 as tfx

    from poster_similarity.pipeline.definition import MODULE_PREPROCESSING, module_config

    conn = tfx.orchestration.metadata.sqlite_metadata_connection_config(cfg.metadata_path)
    eg = tfx.components.ImportExampleGen(
        input_base=cfg.data_root,
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern="*.tfrecord*")]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(
            splits=[tfx.proto.SplitConfig.Split(name="train", hash_buckets=cfg.train_buckets),
                    tfx.proto.SplitConfig.Split(name="eval", hash_buckets=cfg.eval_buckets)],
            partition_feature_name="movie_id")))
    sg = tfx.components.StatisticsGen(examples=eg.outputs["examples"])
    sc = tfx.components.SchemaGen(statistics=sg.outputs["statistics"], infer_feature_shape=True)
    tr = tfx.components.Transform(examples=eg.outputs["examples"], schema=sc.outputs["schema"],
                                  preprocessing_fn=MODULE_PREPROCESSING, custom_config=module_config(cfg, "transform"))
    p = tfx.dsl.Pipeline(pipeline_name=cfg.pipeline_name, pipeline_root=cfg.pipeline_root,
                         components=[eg, sg, sc, tr], enable_cache=False, metadata_connection_config=conn,
                         beam_pipeline_args=cfg.beam_pipeline_args())
    tfx.orchestration.LocalDagRunner().run(p)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline_child", description=__doc__.splitlines()[0])
    p.add_argument("config", help="pipeline config YAML (configs/demo.yaml)")
    p.add_argument("overrides", help='a JSON list of key=value overrides, e.g. \'["phase1_epochs=1"]\'')
    p.add_argument("data_root")
    p.add_argument("workdir")
    p.add_argument("mode", nargs="?", default="full", choices=MODES)
    args = p.parse_args(argv)
    from poster_similarity.core.config import load_config
    from poster_similarity.local_runner import run

    cfg = load_config(args.config, json.loads(args.overrides), data_root=args.data_root, workdir=args.workdir)
    if args.mode == "transform_only":
        transform_only(cfg)
    else:
        run(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

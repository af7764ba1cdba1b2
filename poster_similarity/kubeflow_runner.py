"""Compile the same `create_pipeline(config)` for Kubeflow Pipelines.

  v2 (KFP v2 / Vertex AI Pipelines): KubeflowV2DagRunner → pipeline spec (IR) JSON
  v1 (KFP v1, `tfx pipeline create --engine kubeflow`): KubeflowDagRunner → Argo workflow package

Paths come from the config: `kubeflow_pipeline_root` / `kubeflow_serving_dir` accept gs:// or s3://.
The module files are referenced by import path (the project is installed in the pipeline image,
Dockerfile), so compiling builds no wheels and needs no bucket access.
Run directly for the TFX CLI: POSTERS_CONFIG=... tfx pipeline create --engine kubeflow
--pipeline_path poster_similarity/kubeflow_runner.py --endpoint ...
"""
from __future__ import annotations

import argparse
import os
import sys

from poster_similarity.core.config import PipelineConfig, load_config, load_config_from_env

DATA_ROOT_PARAM = "data-root"
CATALOGUE_ROOT_PARAM = "catalogue-root"


def _pipeline(cfg: PipelineConfig):
    from tfx import v1 as tfx

    from poster_similarity.pipeline.definition import create_pipeline

    data_root = tfx.dsl.experimental.RuntimeParameter(name=DATA_ROOT_PARAM, ptype=str, default=cfg.data_root)
    catalogue_root = tfx.dsl.experimental.RuntimeParameter(  # the daily refresh changes only this one
        name=CATALOGUE_ROOT_PARAM, ptype=str, default=cfg.catalogue_root or cfg.data_root)
    return create_pipeline(
        cfg,
        pipeline_root=cfg.kubeflow_pipeline_root or cfg.pipeline_root,
        data_root=data_root,
        catalogue_root=catalogue_root,
        serving_dir=cfg.kubeflow_serving_dir or cfg.serving_dir,
        metadata_connection_config=None,  # Kubeflow provides ML Metadata
    )


def compile_v2(cfg: PipelineConfig, output_dir: str, filename: str | None = None) -> str:
    from tfx import v1 as tfx

    filename = filename or f"{cfg.pipeline_name}.json"
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=cfg.pipeline_image),
        output_dir=output_dir, output_filename=filename)
    runner.run(_pipeline(cfg))
    return os.path.join(output_dir, filename)


def compile_v1(cfg: PipelineConfig, output_dir: str, filename: str | None = None) -> str:
    from tfx.orchestration.kubeflow import kubeflow_dag_runner

    filename = filename or f"{cfg.pipeline_name}.tar.gz"
    runner = kubeflow_dag_runner.KubeflowDagRunner(
        config=kubeflow_dag_runner.KubeflowDagRunnerConfig(
            kubeflow_metadata_config=kubeflow_dag_runner.get_default_kubeflow_metadata_config(),
            tfx_image=cfg.pipeline_image),
        output_dir=output_dir, output_filename=filename)
    runner.run(_pipeline(cfg))
    return os.path.join(output_dir, filename)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=["v2", "v1"], default="v2")
    p.add_argument("--config", default=os.environ.get("POSTERS_CONFIG"))
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--output-dir", default=".")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.set)
    path = (compile_v2 if a.engine == "v2" else compile_v1)(cfg, a.output_dir)
    print(path)
    return 0


if __name__ == "__main__":
    # `tfx pipeline create --engine kubeflow` runs this file and expects KubeflowDagRunner().run(...).
    if len(sys.argv) == 1:
        compile_v1(load_config_from_env(), os.environ.get("KUBEFLOW_OUTPUT_DIR", "."))
    else:
        sys.exit(main())

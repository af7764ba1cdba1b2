"""Run the pipeline on LocalDagRunner with sqlite ML Metadata.

`posters run --data DIR --workdir DIR` is the one-line path. The same file works with the TFX CLI
(`tfx pipeline create --engine local --pipeline_path local_runner.py`), which executes it
as `__main__`: there the config comes from `POSTERS_CONFIG` (default configs/demo.yaml), the data
from `POSTERS_DATA` and the workdir from `POSTERS_WORKDIR`.
"""
from __future__ import annotations

import json
import os
import time

from core.config import PipelineConfig, load_config, load_config_from_env
from core.logs import show_progress

SUMMARY = "run_summary.json"


def run(cfg: PipelineConfig, until: str | None = None) -> dict:
    from tfx import v1 as tfx

    from pipeline.definition import create_pipeline

    os.makedirs(cfg.workdir, exist_ok=True)
    p = create_pipeline(
        cfg, until=until, metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            cfg.metadata_path))
    t0 = time.time()
    tfx.orchestration.LocalDagRunner().run(p)
    summary = summarize(cfg, time.time() - t0)
    with open(os.path.join(cfg.workdir, SUMMARY), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def summarize(cfg: PipelineConfig, seconds: float | None = None) -> dict:
    """Blessing, metrics and pushed model of the newest run, read back from ML Metadata."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = cfg.metadata_path
    store = metadata_store.MetadataStore(conn)

    def newest(type_name):
        arts = store.get_artifacts_by_type(type_name)
        return max(arts, key=lambda a: a.id) if arts else None

    out: dict = {"pipeline_name": cfg.pipeline_name, "workdir": os.path.abspath(cfg.workdir)}
    if seconds is not None:
        out["wall_seconds"] = round(seconds, 1)
    blessing = newest("ModelBlessing")
    if blessing is not None:
        out["blessed"] = bool(blessing.custom_properties["blessed"].int_value)
    evaluation = newest("ModelEvaluation")
    if evaluation is not None:
        out["evaluation_uri"] = evaluation.uri
        out["metrics"] = read_metrics(evaluation.uri)
    pushed = newest("PushedModel")
    if pushed is not None and "pushed" in pushed.custom_properties:
        out["pushed"] = bool(pushed.custom_properties["pushed"].int_value)
        if out["pushed"]:
            out["pushed_destination"] = pushed.custom_properties["pushed_destination"].string_value
    out["serving_base_path"] = os.path.abspath(os.path.dirname(cfg.serving_dir))
    out["model_name"] = cfg.model_name
    return out


def read_metrics(evaluation_uri: str) -> dict:
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri)
    metrics = {}
    for _, per_output in result.slicing_metrics:
        for _, by_sub in per_output.items():
            for _, vals in by_sub.items():
                for name, v in vals.items():
                    value = v.get("doubleValue")
                    if value is not None:
                        metrics[name] = value
    return metrics


def main(args) -> int:
    cfg = load_config(args.config, args.set, data_root=os.path.abspath(args.data),
                      workdir=os.path.abspath(args.workdir))
    summary = run(cfg)
    print(json.dumps(summary, indent=2))
    return 0 if summary.get("blessed") else 1


if __name__ == "__main__":
    show_progress()
    _ROOT = os.path.dirname(os.path.abspath(__file__))
    run(load_config_from_env(
        os.path.join(_ROOT, "configs", "demo.yaml"),
        data_root=os.path.abspath(os.environ.get("POSTERS_DATA", os.path.join(_ROOT, "data"))),
        workdir=os.path.abspath(os.environ.get("POSTERS_WORKDIR", os.path.join(_ROOT, "workdir")))))

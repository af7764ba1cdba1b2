"""Run the pipeline on LocalDagRunner with sqlite ML Metadata.

`posters run --data DIR --workdir DIR` is the one-line path. The same file works with the TFX CLI
(`tfx pipeline create --engine local --pipeline_path poster_similarity/local_runner.py`), which executes it
as `__main__`: there the config comes from `POSTERS_CONFIG` (default configs/demo.yaml), the data
from `POSTERS_DATA` and the workdir from `POSTERS_WORKDIR`.
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time

from poster_similarity.core.config import ConfigError, PipelineConfig, check_config, load_config, load_config_from_env
from poster_similarity.core.logs import show_progress

SUMMARY = "run_summary.json"
INPUT_PATTERN = "*.tfrecord*"  # what ExampleGen reads under each input folder (pipeline/definition.py)


def check_inputs(cfg: PipelineConfig) -> None:
    """Refuse a run that cannot work, before TFX is imported and before the workdir is created.

    Without this, a missing data folder costs ~30 s of Beam start-up, a 70-line traceback ending in
    "No files found based on the file pattern" and a half-made workdir (metadata.sqlite,
    pipeline_root/) left behind.

    Raises:
        ConfigError: one line: a config value out of range (`check_config`), an input folder that
            does not exist or holds no `*.tfrecord*` file, or a workdir that is a file.
    """
    check_config(cfg)
    for flag, root in (("--data", cfg.data_root), ("--catalogue", cfg.catalogue_root)):
        if root is None:
            continue
        if not os.path.isdir(root):
            raise ConfigError(f"{flag} {root}: no such folder")
        if not glob.glob(os.path.join(root, INPUT_PATTERN)):
            raise ConfigError(f"{flag} {root}: no {INPUT_PATTERN} files in it (make them with `posters import` "
                              "or `posters sample --tfrecords`)")
    if os.path.exists(cfg.workdir) and not os.path.isdir(cfg.workdir):
        raise ConfigError(f"--workdir {cfg.workdir} is a file, not a folder")


def run(cfg: PipelineConfig, until: str | None = None) -> dict:
    """Run the pipeline once on LocalDagRunner (cached components are skipped) and summarise it.

    Args:
        cfg: the config; its `workdir` receives pipeline_root/, metadata.sqlite and serving_model/.
        until: stop after this component (see `create_pipeline`); None runs every component.

    Returns:
        The run summary (`pipeline.lineage.summarize`), also written to `<workdir>/run_summary.json`.
    """
    from tfx import v1 as tfx

    from poster_similarity.pipeline.definition import create_pipeline
    from poster_similarity.pipeline.lineage import summarize

    os.makedirs(cfg.workdir, exist_ok=True)
    p = create_pipeline(
        cfg, until=until, metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            cfg.metadata_path))
    t0 = time.time()
    tfx.orchestration.LocalDagRunner().run(p)
    summary = summarize(cfg, time.time() - t0)
    if summary.get("pushed"):  # the new version is the canary; `posters promote` moves `stable`
        from poster_similarity.pipeline.promote import label_pushed_version

        summary["models_config"] = label_pushed_version(
            summary["serving_base_path"], cfg.model_name, int(os.path.basename(summary["pushed_destination"])))
    with open(os.path.join(cfg.workdir, SUMMARY), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def main(args) -> int:
    """`posters run`: exit 0 when the new model was blessed, 1 when the gate blocked it.

    Raises:
        ConfigError: a user mistake (config, `--set`, input folders), raised before any TFX import;
            the CLI prints it as one line and exits 2.
    """
    cfg = load_config(args.config, args.set, data_root=os.path.abspath(args.data),
                      workdir=os.path.abspath(args.workdir))
    if getattr(args, "catalogue", None):
        cfg.catalogue_root = os.path.abspath(args.catalogue)
    check_inputs(cfg)
    summary = run(cfg)
    from poster_similarity.pipeline.lineage import training_lift_lines

    for node, state in summary.get("components", {}).items():  # stderr: stdout stays one JSON document
        print(f"  {node:<24} {state}", file=sys.stderr)
    for line in training_lift_lines(summary):
        print(line, file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0 if summary.get("blessed") else 1


if __name__ == "__main__":
    show_progress()
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root
    run(load_config_from_env(
        os.path.join(_ROOT, "configs", "demo.yaml"),
        data_root=os.path.abspath(os.environ.get("POSTERS_DATA", os.path.join(_ROOT, "data"))),
        workdir=os.path.abspath(os.environ.get("POSTERS_WORKDIR", os.path.join(_ROOT, "workdir")))))

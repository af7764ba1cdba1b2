"""What a cluster runs for the Trainer: the per-replica command, the Vertex AI CustomJob and the
Kubeflow `TFJob`, rendered from the config (never submitted from here).

Every replica runs the command TFX's Vertex AI Trainer extension puts in each worker pool:
`python -m tfx.scripts.run_executor --executor_class_path tfx.components.trainer.executor.GenericExecutor
--inputs … --outputs … --exec-properties …`, with `TF_CONFIG` naming the cluster (set by Vertex AI
or by the Training Operator; `tests/local_job.py` runs it on loopback).

* `worker_pool_specs`: Vertex AI worker pools from the `distributed` config block.
* `trainer_io` + `replica_command`: the Trainer execution's arguments and that command.
* `vertex_custom_job`: the CustomJob TFX's `VertexJobClient` would submit.
* `tfjob_manifest`: a Training Operator `TFJob` running the command on every replica.

    python -m poster_similarity.pipeline.cluster_specs {tfjob,vertex} --config … --workdir … --output …
"""
from __future__ import annotations

import argparse
import json
import os

from poster_similarity.core.config import PipelineConfig

EXECUTOR_CLASS = "tfx.components.trainer.executor.GenericExecutor"
TFJOB_CONTAINER = "tensorflow"  # the Training Operator requires this container name


def image(cfg: PipelineConfig) -> str:
    return cfg.distributed.image or cfg.pipeline_image


def worker_pool_specs(cfg: PipelineConfig) -> list[dict]:
    """Vertex AI worker pools: pool 0 is the chief (1 replica), pool 1 the other workers.

    Args:
        cfg: the pipeline config (`distributed` block).

    Returns:
        CustomJobSpec `worker_pool_specs` (TFX fills in each pool's container command).
    """
    d = cfg.distributed
    machine = {"machine_type": d.machine_type}
    if d.accelerator_type and d.accelerator_count:
        machine |= {"accelerator_type": d.accelerator_type, "accelerator_count": d.accelerator_count}
    pool = {"machine_spec": machine, "container_spec": {"image_uri": image(cfg)}}
    pools = [{**pool, "replica_count": 1}]
    if d.replica_count > 1:
        pools.append({**pool, "replica_count": d.replica_count - 1})
    return pools


def trainer_io(cfg: PipelineConfig, transformed_examples: str, transform_graph: str, schema: str,
               output_dir: str) -> tuple[dict, dict, dict]:
    """The Trainer execution's arguments, as the TFX launcher hands them to the executor.

    Args:
        cfg: the pipeline config (its trainer module config goes into `custom_config`).
        transformed_examples: URI of Transform's `transformed_examples` (Split-train, Split-eval).
        transform_graph: URI of Transform's `transform_graph`.
        schema: URI of SchemaGen's `schema`.
        output_dir: the Trainer's outputs go to `<output_dir>/model` and `<output_dir>/model_run`.

    Returns:
        (input_dict, output_dict, exec_properties).
    """
    from tfx import v1 as tfx
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import json_utils, proto_utils

    from poster_similarity.pipeline.modules import MODULE_RUN_FN, module_config

    def art(cls, uri, **props):
        a = cls()
        a.uri = uri
        for k, v in props.items():
            setattr(a, k, v)
        return a

    inputs = {
        "examples": [art(standard_artifacts.Examples, transformed_examples,
                         split_names=artifact_utils.encode_split_names(["train", "eval"]))],
        "transform_graph": [art(standard_artifacts.TransformGraph, transform_graph)],
        "schema": [art(standard_artifacts.Schema, schema)],
    }
    outputs = {"model": [art(standard_artifacts.Model, os.path.join(output_dir, "model"))],
               "model_run": [art(standard_artifacts.ModelRun, os.path.join(output_dir, "model_run"))]}
    props = {
        "run_fn": MODULE_RUN_FN,
        "train_args": proto_utils.proto_to_json(tfx.proto.TrainArgs(splits=["train"])),
        "eval_args": proto_utils.proto_to_json(tfx.proto.EvalArgs(splits=["eval"])),
        "custom_config": json_utils.dumps(module_config(cfg, "trainer")),
    }
    return inputs, outputs, props


def render_only_job_client(region: str):
    """TFX's own `VertexJobClient`, able to render a CustomJob but with no API client.

    Why: the client's constructor builds a Vertex API client, which needs GCP credentials; this
    project renders the job TFX would submit (to check it, or to apply it by hand) and sends nothing.
    TFX 1.15 has no public renderer, so this subclass overrides `create_client` — the abstract hook
    `AbstractJobClient.__init__` calls to make that API client — to do nothing, and then uses only
    public methods (`create_training_job`, `generate_container_command`). No private attribute is
    read or written. `tests/test_distributed.py` fails loudly if TFX changes that contract.

    Args:
        region: the Vertex AI region (TFX requires one; rendering does not use it).

    Returns:
        A `training_clients.VertexJobClient` whose `launch_job` must never be called.
    """
    from tfx.extensions.google_cloud_ai_platform import training_clients

    class RenderOnlyVertexJobClient(training_clients.VertexJobClient):
        def create_client(self) -> None:
            """No API client: nothing is ever sent from here."""

    return RenderOnlyVertexJobClient(region)


def replica_command(inputs: dict, outputs: dict, exec_properties: dict) -> list[str]:
    """The container command TFX's Vertex extension gives every worker pool (its own code).

    Args:
        inputs, outputs, exec_properties: see `trainer_io`.

    Returns:
        `["python", "-m", "tfx.scripts.run_executor", "--executor_class_path", …]`.
    """
    client = render_only_job_client("unused")  # the command does not depend on the region
    return client.generate_container_command(inputs, outputs, exec_properties, EXECUTOR_CLASS)


def vertex_custom_job(cfg: PipelineConfig, inputs: dict, outputs: dict, exec_properties: dict) -> dict:
    """The Vertex AI CustomJob that TFX's `VertexJobClient` builds for this Trainer (not submitted).

    Args:
        cfg: the pipeline config.
        inputs, outputs, exec_properties: see `trainer_io`.

    Returns:
        The CustomJob dict (display_name, job_spec.worker_pool_specs, labels, …).
    """
    client = render_only_job_client(cfg.distributed.region)
    args = {"worker_pool_specs": worker_pool_specs(cfg)}
    return client.create_training_job(inputs, outputs, exec_properties, EXECUTOR_CLASS, args,
                                      job_id=f"{cfg.pipeline_name}-trainer", job_labels=None)


def tfjob_manifest(cfg: PipelineConfig, command: list[str], name: str | None = None) -> dict:
    """A Kubeflow Training Operator `TFJob` (kubeflow.org/v1) running `command` on every replica.

    The operator sets `TF_CONFIG` (chief + workers) in each pod; the chief's success ends the job.

    Args:
        cfg: the pipeline config (`distributed` block: replica_count, image, accelerators, namespace).
        command: the per-replica command (`replica_command`).
        name: the job name (default `<pipeline_name>-trainer`).

    Returns:
        The manifest as a dict (`yaml.safe_dump` it for `kubectl apply -f`).
    """
    d = cfg.distributed
    resources = {}
    if d.accelerator_count:
        resources = {"limits": {"nvidia.com/gpu": d.accelerator_count}}

    def replica(n):
        container = {"name": TFJOB_CONTAINER, "image": image(cfg), "command": list(command),
                     "ports": [{"name": "tfjob-port", "containerPort": 2222}]}
        if resources:
            container["resources"] = resources
        return {"replicas": n, "restartPolicy": "OnFailure", "template": {"spec": {"containers": [container]}}}

    specs = {"Chief": replica(1)}
    if d.replica_count > 1:
        specs["Worker"] = replica(d.replica_count - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": name or f"{cfg.pipeline_name}-trainer", "namespace": d.namespace},
        "spec": {"runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 3}, "tfReplicaSpecs": specs},
    }


# --- command line ---------------------------------------------------------------------------------------
def trainer_io_parser(description: str) -> argparse.ArgumentParser:
    """The arguments naming a Trainer execution: config, Transform/SchemaGen outputs, output folder
    (shared with `tests/local_job.py`, which runs the same execution on local processes)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--workdir", help="a pipeline run's workdir: its newest Transform/SchemaGen outputs")
    for name in ("--transform-examples", "--transform-graph", "--schema"):
        p.add_argument(name, help="URI of that artifact (else --workdir)")
    p.add_argument("--output", required=True, help="the Trainer's output folder (model/, model_run/)")
    return p


def parse_trainer_io(p: argparse.ArgumentParser, argv=None) -> tuple[argparse.Namespace, PipelineConfig, tuple]:
    """Parses `argv` with a `trainer_io_parser`. Returns (args, config, `trainer_io`'s three dicts)."""
    from poster_similarity.core.config import load_config
    from poster_similarity.pipeline.lineage import newest_artifact_dir

    a = p.parse_args(argv)
    cfg = load_config(a.config, a.set)
    if a.workdir:
        root = os.path.join(a.workdir, "pipeline_root")
        a.transform_examples = newest_artifact_dir(root, "Transform", "transformed_examples")
        a.transform_graph = newest_artifact_dir(root, "Transform", "transform_graph")
        a.schema = newest_artifact_dir(root, "SchemaGen", "schema")
    if not (a.transform_examples and a.transform_graph and a.schema):
        p.error("give --workdir or all of --transform-examples, --transform-graph, --schema")
    return a, cfg, trainer_io(cfg, a.transform_examples, a.transform_graph, a.schema, a.output)


def main(argv=None) -> int:
    """`python -m poster_similarity.pipeline.cluster_specs {tfjob,vertex}`: print the TFJob (YAML) or the
    CustomJob (JSON) for a Trainer over a pipeline run's Transform output."""
    import yaml

    p = trainer_io_parser(main.__doc__.splitlines()[0])
    p.add_argument("what", choices=["tfjob", "vertex"])
    a, cfg, io = parse_trainer_io(p, argv)
    if a.what == "tfjob":
        print(yaml.safe_dump(tfjob_manifest(cfg, replica_command(*io)), sort_keys=False))
    else:
        print(json.dumps(vertex_custom_job(cfg, *io), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the Trainer as a distributed job: Vertex AI (TFX's extension), a Kubeflow TFJob, or locally.

All three run the same per-replica command, the one TFX's Vertex AI Trainer extension puts in every
worker pool: `python -m tfx.scripts.run_executor --executor_class_path
tfx.components.trainer.executor.GenericExecutor --inputs … --outputs … --exec-properties …`, with
`TF_CONFIG` naming the cluster (set by Vertex AI, by the Training Operator, or by `LocalJob`).

* `build_trainer`: the pipeline's Trainer for `distributed.trainer_backend` (local | vertex).
* `vertex_custom_job`: the CustomJob TFX's Vertex client would submit (rendered, not submitted).
* `tfjob_manifest`: a Kubeflow Training Operator `TFJob` running that command on the cluster.
* `LocalJob`: the same command on N processes on loopback (tests, benchmarks).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time

from poster_similarity.core.config import PipelineConfig

log = logging.getLogger(__name__)

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


# --- the per-replica command ------------------------------------------------------------------------
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


def replica_command(inputs: dict, outputs: dict, exec_properties: dict) -> list[str]:
    """The container command TFX's Vertex extension gives every worker pool (its own code).

    Args:
        inputs, outputs, exec_properties: see `trainer_io`.

    Returns:
        `["python", "-m", "tfx.scripts.run_executor", "--executor_class_path", …]`.
    """
    from tfx.extensions.google_cloud_ai_platform import training_clients

    return training_clients.AbstractJobClient.generate_container_command(
        None, inputs, outputs, exec_properties, EXECUTOR_CLASS)


def vertex_custom_job(cfg: PipelineConfig, inputs: dict, outputs: dict, exec_properties: dict) -> dict:
    """The Vertex AI CustomJob that TFX's `VertexJobClient` builds for this Trainer (not submitted).

    Args:
        cfg: the pipeline config.
        inputs, outputs, exec_properties: see `trainer_io`.

    Returns:
        The CustomJob dict (display_name, job_spec.worker_pool_specs, labels, …).
    """
    from tfx.extensions.google_cloud_ai_platform import training_clients

    client = training_clients.VertexJobClient.__new__(training_clients.VertexJobClient)
    client._region = cfg.distributed.region  # no API client: nothing is sent
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


# --- local multi-process job ----------------------------------------------------------------------------
def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tf_configs(n: int, ports: list[int] | None = None) -> list[dict]:
    """`TF_CONFIG` for a chief + n-1 workers on loopback, as Vertex AI sets it."""
    ports = ports or free_ports(n)
    cluster = {"chief": [f"localhost:{ports[0]}"]}
    if n > 1:
        cluster["worker"] = [f"localhost:{p}" for p in ports[1:]]
    tasks = [("chief", 0)] + [("worker", i) for i in range(n - 1)]
    return [{"cluster": cluster, "task": {"type": t, "index": i}} for t, i in tasks]


class LocalJob:
    """The per-replica command on `len(configs)` local processes, each with its `TF_CONFIG`.

    Args:
        command: the replica command (its leading `python` is replaced by this interpreter).
        configs: one `TF_CONFIG` dict per process (`tf_configs`); processes start only for
            `start_only` indices when given (a worker that never starts).
        log_dir: where `replica-<i>.log` files go.
        env: extra environment variables.
        start_only: indices of the replicas to start (default all).
    """

    def __init__(self, command: list[str], configs: list[dict], log_dir: str, env: dict | None = None,
                 start_only: list[int] | None = None):
        self.command = [sys.executable] + command[1:] if command[0] == "python" else list(command)
        self.configs, self.log_dir, self.env = configs, log_dir, env or {}
        self.indices = list(range(len(configs))) if start_only is None else list(start_only)
        self.procs: dict[int, subprocess.Popen] = {}
        self.t0 = 0.0

    def log_path(self, i: int) -> str:
        return os.path.join(self.log_dir, f"replica-{i}.log")

    def start(self) -> LocalJob:
        os.makedirs(self.log_dir, exist_ok=True)
        self.t0 = time.perf_counter()
        for i in self.indices:
            env = {**os.environ, **self.env, "TF_CONFIG": json.dumps(self.configs[i])}
            with open(self.log_path(i), "ab") as logf:
                self.procs[i] = subprocess.Popen(self.command, env=env, stdout=logf, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout_s: float) -> dict[int, int | None]:
        """Waits for every process (killing all on timeout). Returns {index: returncode or None}."""
        deadline = time.monotonic() + timeout_s
        codes: dict[int, int | None] = {}
        for i, p in self.procs.items():
            try:
                codes[i] = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[i] = None
        if any(c is None for c in codes.values()):
            self.kill()
        return codes

    def kill(self, i: int | None = None) -> None:
        """SIGKILL one replica (a preempted machine) or all (TF catches SIGTERM to checkpoint)."""
        for j, p in self.procs.items():
            if (i is None or i == j) and p.poll() is None:
                p.kill()
                p.wait(timeout=30)

    def logs(self) -> dict[int, str]:
        out = {}
        for i in self.indices:
            with open(self.log_path(i), errors="replace") as f:
                out[i] = f.read()
        return out


# --- command line -----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    """`python -m poster_similarity.pipeline.cluster {tfjob,vertex,local}`: render the TFJob / CustomJob for a Trainer
    over a pipeline run's Transform output, or run it here on N local processes."""
    import argparse

    import yaml

    from poster_similarity.core.config import load_config
    from poster_similarity.pipeline.lineage import newest_artifact_dir

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("what", choices=["tfjob", "vertex", "local"])
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--workdir", help="a pipeline run's workdir: its newest Transform/SchemaGen outputs")
    for name in ("--transform-examples", "--transform-graph", "--schema"):
        p.add_argument(name, help="URI of that artifact (else --workdir)")
    p.add_argument("--output", required=True, help="the Trainer's output folder (model/, model_run/)")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.set)
    if a.workdir:
        root = os.path.join(a.workdir, "pipeline_root")
        a.transform_examples = newest_artifact_dir(root, "Transform", "transformed_examples")
        a.transform_graph = newest_artifact_dir(root, "Transform", "transform_graph")
        a.schema = newest_artifact_dir(root, "SchemaGen", "schema")
    if not (a.transform_examples and a.transform_graph and a.schema):
        p.error("give --workdir or all of --transform-examples, --transform-graph, --schema")
    io = trainer_io(cfg, a.transform_examples, a.transform_graph, a.schema, a.output)
    if a.what == "tfjob":
        print(yaml.safe_dump(tfjob_manifest(cfg, replica_command(*io)), sort_keys=False))
    elif a.what == "vertex":
        print(json.dumps(vertex_custom_job(cfg, *io), indent=2))
    else:
        n = cfg.distributed.replica_count
        job = LocalJob(replica_command(*io), tf_configs(n) if n > 1 else [{}], os.path.join(a.output, "logs"))
        codes = job.start().wait(24 * 3600)
        print(json.dumps({"returncodes": codes, "wall_s": round(time.perf_counter() - job.t0, 1),
                          "logs": job.log_dir}))
        return 0 if all(c == 0 for c in codes.values()) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

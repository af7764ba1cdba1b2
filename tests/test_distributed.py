"""Multi-worker pieces in one process: TF_CONFIG parsing (`tf_config`), the startup watchdog,
explicit input sharding with per-replica P×K batches (`sharding`), chief-only write paths
(`chief_writes`), the finished-segment state (`preemption`); and the cluster launch configs (TFX's
Vertex AI Trainer with worker pools from `pipeline.trainer_switch`, the CustomJob and the Kubeflow
TFJob `pipeline.cluster_specs` renders, and its command line)."""
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.components import chief_writes, preemption, sharding, startup_watchdog, tf_config, trainer
from poster_similarity.core.config import load_config
from tests.helpers import ROOT
from tests.local_job import free_ports
from tests.transformed_data import H, W, transformed_features, write_transformed

IMAGE = "europe-docker.pkg.dev/proj/repo/poster-similarity:1.2"


def _env(tf_config):
    return {"TF_CONFIG": json.dumps(tf_config)}


def test_cluster_from_tf_config_names_the_chief():
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    chief = tf_config.cluster_from_env(_env({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    w1 = tf_config.cluster_from_env(_env({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert chief.num_workers == 3 and chief.is_chief and chief.worker_id == 0
    assert not w1.is_chief and w1.worker_id == 2
    no_chief = {"worker": ["h0:1", "h1:1"]}
    w0, w1 = (tf_config.cluster_from_env(_env({"cluster": no_chief, "task": {"type": "worker", "index": i}}))
              for i in (0, 1))
    assert w0.is_chief and not w1.is_chief
    alone = tf_config.cluster_from_env({})
    assert alone.num_workers == 1 and alone.is_chief


def _watchdog(timeout_s: float, tasks: list) -> list[str]:
    """The watchdog's command line, less `--parent`."""
    return [sys.executable, "-m", startup_watchdog.MODULE, "--timeout-s", str(timeout_s), "--me", "chief 0",
            "--tasks", json.dumps(tasks)]


def test_startup_watchdog_kills_its_trainer_naming_the_tasks_that_never_came():
    """The watchdog is a module run with `python -m` (lint and tests see it): a parent still waiting
    after the timeout is SIGKILLed (137 in a container) and its stderr names the closed ports."""
    port = free_ports(1)[0]
    tasks = [["chief", 0, "localhost:1"], ["worker", 0, f"localhost:{port}"]]
    # bash starts the watchdog in the background, then becomes `sleep` (same pid): the stand-in trainer.
    script = f"{shlex.join(_watchdog(1, tasks))} --parent $$ & exec sleep 60"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert time.monotonic() - t0 < 30
    assert (f"[distributed] chief 0: the cluster did not form within 1 s (TF_CONFIG names 2 workers); "
            f"not reachable: worker 0 (localhost:{port}); stopping this worker") in proc.stderr


def test_startup_watchdog_leaves_a_process_that_is_no_longer_its_parent_alone():
    """The trainer exited and its pid may be someone else's by now: the watchdog kills nothing."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        done = subprocess.run(_watchdog(0.2, [["chief", 0, "localhost:1"]]) + ["--parent", str(other.pid)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "[distributed]" not in done.stderr
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_trainers_cache_key_covers_the_multi_worker_modules():
    """The watchdog runs as a separate program, yet editing it must retrain: the Trainer's code hash
    follows imports, and `distributed` imports the watchdog module it starts."""
    from poster_similarity.pipeline.code_hash import module_closure
    from poster_similarity.pipeline.modules import TRAINER_CODE

    closure = set(module_closure(TRAINER_CODE))
    assert {f"poster_similarity.components.{m}" for m in ("distributed", "startup_watchdog", "tf_config", "sharding",
                                                          "chief_writes", "preemption")} <= closure


def test_shard_policy_is_file_only_when_every_worker_gets_a_file():
    assert sharding.shard_policy(1, 1) == "OFF"
    assert sharding.shard_policy(1, 2) == "DATA"
    assert sharding.shard_policy(2, 2) == "FILE" and sharding.shard_policy(5, 2) == "FILE"


def _labels(ds, n):
    return [lab.numpy().tolist() for _, lab in ds.take(n)]


def test_data_sharding_gives_each_replica_whole_pk_batches_and_disjoint_shares(tmp_path):
    labels = [0] * 12 + [1] * 10 + [2] * 9 + [3] * 8
    write_transformed(tmp_path / "t.gz", labels)
    feats = transformed_features(load_config(None, [f"image_size=[{H}, {W}]", "augment=false"]))
    files = [str(tmp_path / "t.gz")]

    def make(f):
        return trainer.pk_dataset(feats, f, p=2, k=3, valid_labels=[0, 1, 2, 3], seed=0)

    stream = _labels(make(files), 8)
    shards = [_labels(sharding.sharded_input(make, files, 2, i), 4) for i in (0, 1)]
    for batches in shards:
        for lab in batches:  # each replica batch: P=2 whole windows of K=3 same-label posters
            _, counts = np.unique(lab, return_counts=True)
            assert len(lab) == 6 and (counts % 3 == 0).all()
    assert shards[0] == stream[0::2] and shards[1] == stream[1::2]  # every batch used once
    opts = sharding.sharded_input(make, files, 2, 0).options()
    assert opts.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF


def test_file_sharding_reads_only_the_workers_files(tmp_path):
    write_transformed(tmp_path / "a.gz", [0] * 6)
    write_transformed(tmp_path / "b.gz", [1] * 6)
    feats = transformed_features(load_config(None, [f"image_size=[{H}, {W}]", "augment=false"]))
    files = [str(tmp_path / "a.gz"), str(tmp_path / "b.gz")]

    def make(f):
        return trainer.genre_dataset(feats, f, 4, False, 0).map(lambda x, y: tf.argmax(y["logit"], axis=1))

    seen = [set(np.concatenate([b.numpy() for b in sharding.sharded_input(make, files, 2, i)]).tolist())
            for i in (0, 1)]
    assert seen == [{0}, {1}]


def test_only_the_chief_writes_to_the_real_path(tmp_path):
    cluster = {"chief": ["h0:1"], "worker": ["h1:1"]}
    chief = tf_config.cluster_from_env(_env({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    worker = tf_config.cluster_from_env(_env({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    dest = str(tmp_path / "model" / "Format-Serving")
    assert chief_writes.write_dir(dest, chief) == dest
    tmp = chief_writes.write_dir(dest, worker)
    assert tmp == str(tmp_path / "model" / "workertemp_1" / "Format-Serving")
    os.makedirs(tmp)
    chief_writes.remove_temp(dest, worker)
    assert not os.path.exists(os.path.dirname(tmp)) and os.path.isdir(tmp_path / "model")


def test_training_state_records_finished_segments_and_their_weights(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    state = preemption.TrainingState(str(tmp_path))
    assert not state.resumed
    state.finish("phase1_epoch0", model, {"phase1/loss": [0.5]})
    trained = preemption.fingerprint(model)
    assert not os.path.exists(tmp_path / "backup" / "phase1_epoch0")  # its epoch checkpoints dropped
    fresh = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    assert preemption.fingerprint(fresh) != trained
    again = preemption.TrainingState(str(tmp_path))
    assert again.done == ["phase1_epoch0"] and again.history == {"phase1/loss": [0.5]}
    again.restore_weights(fresh)
    assert preemption.fingerprint(fresh) == trained


# --- launching on a cluster ----------------------------------------------------------------------------
@pytest.fixture
def vertex_cfg(tmp_path):
    return load_config("configs/demo.yaml", [
        "distributed.trainer_backend=vertex", "distributed.replica_count=3", "distributed.project=my-proj",
        "distributed.machine_type=n1-highmem-8", "distributed.accelerator_type=NVIDIA_TESLA_T4",
        "distributed.accelerator_count=1", f"distributed.image={IMAGE}", "data_root=gs://b/posters",
        f"workdir={tmp_path}"])


def test_pipeline_uses_tfx_vertex_trainer_with_worker_pools_from_config(vertex_cfg):
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import component, executor

    from poster_similarity.pipeline.definition import MODULE_RUN_FN, create_pipeline

    p = create_pipeline(vertex_cfg)
    tr = next(c for c in p.components if c.id == "Trainer")
    assert isinstance(tr, component.Trainer)
    assert tr.exec_properties["run_fn"] == MODULE_RUN_FN
    cc = tr.exec_properties["custom_config"]
    cc = json.loads(cc) if isinstance(cc, str) else cc
    assert cc[constants.ENABLE_VERTEX_KEY] is True and cc[constants.VERTEX_REGION_KEY] == "us-central1"
    pools = cc[executor.TRAINING_ARGS_KEY]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]  # chief + 2 workers
    for pool in pools:
        assert pool["container_spec"]["image_uri"] == IMAGE
        assert pool["machine_spec"] == {"machine_type": "n1-highmem-8", "accelerator_type": "NVIDIA_TESLA_T4",
                                        "accelerator_count": 1}
    assert cc[executor.TRAINING_ARGS_KEY]["project"] == "my-proj"
    assert cc["config"]["distributed"]["replica_count"] == 3


def test_local_backend_keeps_the_plain_trainer_and_vertex_needs_a_project(tmp_path):
    from tfx.components import Trainer
    from tfx.extensions.google_cloud_ai_platform.trainer import component

    from poster_similarity.pipeline.definition import create_pipeline

    cfg = load_config("configs/demo.yaml", [f"workdir={tmp_path}"])
    tr = next(c for c in create_pipeline(cfg).components if c.id == "Trainer")
    assert type(tr) is Trainer and not isinstance(tr, component.Trainer)
    with pytest.raises(ValueError, match="distributed.project"):
        create_pipeline(load_config("configs/demo.yaml", ["distributed.trainer_backend=vertex"]))


def test_rendered_custom_job_and_tfjob_run_the_trainer_executor_on_every_replica(vertex_cfg, tmp_path):
    import yaml

    from poster_similarity.pipeline import cluster_specs
    from poster_similarity.pipeline.definition import MODULE_RUN_FN

    io = cluster_specs.trainer_io(vertex_cfg, "gs://b/Transform/transformed_examples/5", "gs://b/Transform/graph/5",
                            "gs://b/SchemaGen/schema/3", "gs://b/Trainer/out")
    job = cluster_specs.vertex_custom_job(vertex_cfg, *io)
    pools = job["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]
    cmd = pools[0]["container_spec"]["command"]
    assert cmd[:3] == ["python", "-m", "tfx.scripts.run_executor"] and all(p["container_spec"]["command"] == cmd
                                                                           for p in pools)
    assert cmd[cmd.index("--executor_class_path") + 1] == cluster_specs.EXECUTOR_CLASS
    props = json.loads(cmd[cmd.index("--exec-properties") + 1])
    assert props["run_fn"] == MODULE_RUN_FN
    assert json.loads(props["custom_config"])["config"]["backbone"] == vertex_cfg.backbone
    outputs = json.loads(cmd[cmd.index("--outputs") + 1])
    assert outputs["model"][0]["artifact"]["uri"] == "gs://b/Trainer/out/model"
    assert all(p["container_spec"]["image_uri"] == IMAGE for p in pools)

    manifest = yaml.safe_load(yaml.safe_dump(cluster_specs.tfjob_manifest(vertex_cfg, cmd)))
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "TFJob"
    specs = manifest["spec"]["tfReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Chief": 1, "Worker": 2}
    for spec in specs.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "tensorflow" and container["image"] == IMAGE and container["command"] == cmd
        assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}


def test_render_only_vertex_client_relies_on_tfx_public_hooks_only():
    """`cluster_specs.render_only_job_client` is the one place that bends TFX's Vertex client: it
    overrides the abstract `create_client` hook so that no API client (no GCP credentials) is made,
    then calls public methods. If a TFX upgrade changes that contract — the hook gone or no longer
    abstract, `create_training_job`'s arguments changed, rendering needing the API client — this
    fails here, loudly, instead of the render commands failing for a user."""
    import inspect

    from tfx.extensions.google_cloud_ai_platform import training_clients as tc

    from poster_similarity.pipeline import cluster_specs

    assert "create_client" in tc.AbstractJobClient.__abstractmethods__
    assert list(inspect.signature(tc.VertexJobClient.create_training_job).parameters) == [
        "self", "input_dict", "output_dict", "exec_properties", "executor_class_path", "job_args", "job_id",
        "job_labels"]
    client = cluster_specs.render_only_job_client("europe-west4")  # no credentials on this machine
    assert isinstance(client, tc.VertexJobClient) and not hasattr(client, "_client")
    job = client.create_training_job({}, {}, {}, cluster_specs.EXECUTOR_CLASS,
                                     {"worker_pool_specs": [{"replica_count": 1}]}, job_id="j", job_labels=None)
    (pool,) = job["job_spec"]["worker_pool_specs"]
    assert job["display_name"] == "j" and pool["container_spec"]["command"][:3] == [
        "python", "-m", "tfx.scripts.run_executor"]


def test_cluster_specs_command_line_prints_the_tfjob_and_the_custom_job(capsys):
    """`python -m poster_similarity.pipeline.cluster_specs {tfjob,vertex}`, as docs/distributed-training.md runs it."""
    import yaml

    from poster_similarity.pipeline import cluster_specs

    args = ["--config", "configs/demo.yaml", "--set", "distributed.replica_count=3", "--set",
            f"distributed.image={IMAGE}", "--transform-examples", "gs://b/Transform/transformed_examples/5",
            "--transform-graph", "gs://b/Transform/graph/5", "--schema", "gs://b/SchemaGen/schema/3",
            "--output", "gs://b/Trainer/out"]
    assert cluster_specs.main(["tfjob", *args]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["kind"] == "TFJob"
    assert {k: v["replicas"] for k, v in manifest["spec"]["tfReplicaSpecs"].items()} == {"Chief": 1, "Worker": 2}
    assert cluster_specs.main(["vertex", *args, "--set", "distributed.project=p"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert [p["replica_count"] for p in job["job_spec"]["worker_pool_specs"]] == [1, 2]


def test_local_job_command_line_takes_the_same_trainer_arguments():
    """`python -m tests.local_job` (the loopback harness, outside the package) parses like cluster_specs."""
    out = subprocess.run([sys.executable, "-m", "tests.local_job", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(flag in out.stdout for flag in ("--workdir", "--transform-examples", "--output", "--set"))


def test_handover_weights_load_whatever_blocks_were_open_when_saved(tmp_path):
    """The h5 hand-over file stores weights in `model.weights` order, which puts trainable weights
    first: a model saved with its top blocks open (BatchNorm frozen) must load into a fresh model."""
    import numpy as np

    from poster_similarity.components import model as model_lib
    from poster_similarity.components.preemption import TrainingState
    from poster_similarity.components.tf_config import Cluster

    saved = model_lib.build_model("efficientnet_lite0", "none", (64, 48), 3)
    model_lib.set_trainable_blocks(saved, "efficientnet_lite0", 3)
    flags = [layer.trainable for layer in saved.get_layer("backbone").layers]
    rng = np.random.default_rng(0)
    saved.set_weights([rng.normal(size=w.shape).astype(w.dtype.as_numpy_dtype) for w in saved.weights])
    state = TrainingState(str(tmp_path), Cluster())
    state.finish("phase2", saved, {})
    assert [layer.trainable for layer in saved.get_layer("backbone").layers] == flags  # put back as it was

    fresh = model_lib.build_model("efficientnet_lite0", "none", (64, 48), 3)
    TrainingState(str(tmp_path), Cluster()).restore_weights(fresh)
    by_name = {w.name: w.numpy() for w in saved.weights}
    assert all(np.array_equal(by_name[w.name], w.numpy()) for w in fresh.weights)

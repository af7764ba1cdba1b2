"""Multi-worker pieces in one process: TF_CONFIG parsing, explicit input sharding with per-replica
P×K batches, chief-only write paths, the finished-segment state; and the cluster launch configs
(TFX's Vertex AI Trainer with worker pools, the CustomJob it renders, a Kubeflow TFJob)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.components import distributed, trainer
from poster_similarity.core.config import load_config
from tests.transformed_data import H, W, transformed_features, write_transformed

IMAGE = "europe-docker.pkg.dev/proj/repo/poster-similarity:1.2"


def _env(tf_config):
    return {"TF_CONFIG": json.dumps(tf_config)}


def test_cluster_from_tf_config_names_the_chief():
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    chief = distributed.cluster_from_env(_env({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    w1 = distributed.cluster_from_env(_env({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert chief.num_workers == 3 and chief.is_chief and chief.worker_id == 0
    assert not w1.is_chief and w1.worker_id == 2
    no_chief = {"worker": ["h0:1", "h1:1"]}
    w0, w1 = (distributed.cluster_from_env(_env({"cluster": no_chief, "task": {"type": "worker", "index": i}}))
              for i in (0, 1))
    assert w0.is_chief and not w1.is_chief
    alone = distributed.cluster_from_env({})
    assert alone.num_workers == 1 and alone.is_chief


def test_shard_policy_is_file_only_when_every_worker_gets_a_file():
    assert distributed.shard_policy(1, 1) == "OFF"
    assert distributed.shard_policy(1, 2) == "DATA"
    assert distributed.shard_policy(2, 2) == "FILE" and distributed.shard_policy(5, 2) == "FILE"


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
    shards = [_labels(distributed.sharded_input(make, files, 2, i), 4) for i in (0, 1)]
    for batches in shards:
        for lab in batches:  # each replica batch: P=2 whole windows of K=3 same-label posters
            _, counts = np.unique(lab, return_counts=True)
            assert len(lab) == 6 and (counts % 3 == 0).all()
    assert shards[0] == stream[0::2] and shards[1] == stream[1::2]  # every batch used once
    opts = distributed.sharded_input(make, files, 2, 0).options()
    assert opts.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF


def test_file_sharding_reads_only_the_workers_files(tmp_path):
    write_transformed(tmp_path / "a.gz", [0] * 6)
    write_transformed(tmp_path / "b.gz", [1] * 6)
    feats = transformed_features(load_config(None, [f"image_size=[{H}, {W}]", "augment=false"]))
    files = [str(tmp_path / "a.gz"), str(tmp_path / "b.gz")]

    def make(f):
        return trainer.genre_dataset(feats, f, 4, False, 0).map(lambda x, y: tf.argmax(y["logit"], axis=1))

    seen = [set(np.concatenate([b.numpy() for b in distributed.sharded_input(make, files, 2, i)]).tolist())
            for i in (0, 1)]
    assert seen == [{0}, {1}]


def test_only_the_chief_writes_to_the_real_path(tmp_path):
    cluster = {"chief": ["h0:1"], "worker": ["h1:1"]}
    chief = distributed.cluster_from_env(_env({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    worker = distributed.cluster_from_env(_env({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    dest = str(tmp_path / "model" / "Format-Serving")
    assert distributed.write_dir(dest, chief) == dest
    tmp = distributed.write_dir(dest, worker)
    assert tmp == str(tmp_path / "model" / "workertemp_1" / "Format-Serving")
    os.makedirs(tmp)
    distributed.remove_temp(dest, worker)
    assert not os.path.exists(os.path.dirname(tmp)) and os.path.isdir(tmp_path / "model")


def test_training_state_records_finished_segments_and_their_weights(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    state = distributed.TrainingState(str(tmp_path))
    assert not state.resumed
    state.finish("phase1_epoch0", model, {"phase1/loss": [0.5]})
    trained = distributed.fingerprint(model)
    assert not os.path.exists(tmp_path / "backup" / "phase1_epoch0")  # its epoch checkpoints dropped
    fresh = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    assert distributed.fingerprint(fresh) != trained
    again = distributed.TrainingState(str(tmp_path))
    assert again.done == ["phase1_epoch0"] and again.history == {"phase1/loss": [0.5]}
    again.restore_weights(fresh)
    assert distributed.fingerprint(fresh) == trained


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

    from poster_similarity.pipeline import cluster
    from poster_similarity.pipeline.definition import MODULE_RUN_FN

    io = cluster.trainer_io(vertex_cfg, "gs://b/Transform/transformed_examples/5", "gs://b/Transform/graph/5",
                            "gs://b/SchemaGen/schema/3", "gs://b/Trainer/out")
    job = cluster.vertex_custom_job(vertex_cfg, *io)
    pools = job["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]
    cmd = pools[0]["container_spec"]["command"]
    assert cmd[:3] == ["python", "-m", "tfx.scripts.run_executor"] and all(p["container_spec"]["command"] == cmd
                                                                           for p in pools)
    assert cmd[cmd.index("--executor_class_path") + 1] == cluster.EXECUTOR_CLASS
    props = json.loads(cmd[cmd.index("--exec-properties") + 1])
    assert props["run_fn"] == MODULE_RUN_FN
    assert json.loads(props["custom_config"])["config"]["backbone"] == vertex_cfg.backbone
    outputs = json.loads(cmd[cmd.index("--outputs") + 1])
    assert outputs["model"][0]["artifact"]["uri"] == "gs://b/Trainer/out/model"
    assert all(p["container_spec"]["image_uri"] == IMAGE for p in pools)

    manifest = yaml.safe_load(yaml.safe_dump(cluster.tfjob_manifest(vertex_cfg, cmd)))
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "TFJob"
    specs = manifest["spec"]["tfReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Chief": 1, "Worker": 2}
    for spec in specs.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "tensorflow" and container["image"] == IMAGE and container["command"] == cmd
        assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}


def test_handover_weights_load_whatever_blocks_were_open_when_saved(tmp_path):
    """The h5 hand-over file stores weights in `model.weights` order, which puts trainable weights
    first: a model saved with its top blocks open (BatchNorm frozen) must load into a fresh model."""
    import numpy as np

    from poster_similarity.components import model as model_lib
    from poster_similarity.components.distributed import Cluster, TrainingState

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

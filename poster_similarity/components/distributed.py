"""Multi-worker training support for the Trainer: cluster from `TF_CONFIG`, the strategy, sharded
input, chief-only writes and preemption-safe training state.

Vertex AI Training and a Kubeflow TFJob start one process per replica with the same command and a
`TF_CONFIG` naming the cluster and the replica's own task. Here:

* `make_strategy` builds `MultiWorkerMirroredStrategy` when the cluster has more than one worker and
  waits (bounded) for every worker to join: a worker that never starts ends the process with a
  clear error naming it, instead of the collective runtime's endless wait.
* `distributed_dataset` shards the Transform output explicitly (`shard_policy`): FILE when there
  are at least as many files as workers (each worker reads only its files), else DATA (every
  worker reads everything and keeps every N-th per-replica batch). TF's own auto-shard rewrite is
  OFF because the input is already sharded. P×K batches are built per replica, so each replica's
  triplet loss sees whole classes; the global batch is per-replica × replicas.
* `write_dir` follows the TF multi-worker docs: the chief writes to the real path, other workers
  to a `workertemp_<i>` folder they delete afterwards.
* `TrainingState` checkpoints every epoch (`tf.keras.callbacks.BackupAndRestore`, one folder per
  training segment under `<model_run_dir>/backup/`) and records finished segments (phase-1 stages,
  phase 2) with their weights, so a restarted job resumes at the last checkpointed epoch of the
  segment it was in and never repeats a finished one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"
STATE_FILE = "state.json"
EPOCH_LOG = "epochs.jsonl"
HANDOVER_WEIGHTS = "handover_weights.h5"  # Keras 2 h5 (a `.weights.h5` name switches format)


# --- cluster ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cluster:
    """This process's view of `TF_CONFIG` (a single worker when it is unset)."""

    tasks: tuple[tuple[str, int, str], ...] = ()  # (type, index, "host:port") of chief + workers
    task_type: str = "worker"
    task_index: int = 0

    @property
    def num_workers(self) -> int:
        return max(1, len(self.tasks))

    @property
    def is_chief(self) -> bool:
        """The `chief` task, or worker 0 when the cluster has no chief (TFX's and Keras's rule)."""
        if self.num_workers == 1 or self.task_type == "chief":
            return True
        has_chief = any(t == "chief" for t, _, _ in self.tasks)
        return self.task_type == "worker" and self.task_index == 0 and not has_chief

    @property
    def worker_id(self) -> int:
        """Position of this task in the cluster (chief first), used for temp folder names."""
        for i, (t, idx, _) in enumerate(self.tasks):
            if (t, idx) == (self.task_type, self.task_index):
                return i
        return 0


def cluster_from_env(environ=None) -> Cluster:
    """Parses `TF_CONFIG` ({"cluster": {"chief": [...], "worker": [...]}, "task": {...}}).

    Args:
        environ: mapping to read `TF_CONFIG` from (default `os.environ`).

    Returns:
        The `Cluster`; a single-worker one when `TF_CONFIG` is unset or names no cluster.
    """
    tf_config = json.loads((environ or os.environ).get("TF_CONFIG") or "{}")
    spec = tf_config.get("cluster", {})
    tasks = tuple((job, i, addr) for job in ("chief", "worker") for i, addr in enumerate(spec.get(job, [])))
    task = tf_config.get("task", {})
    return Cluster(tasks, task.get("type", "worker"), int(task.get("index", 0)))


_WATCHDOG = r"""
import json, os, signal, socket, sys, time
timeout, parent, me, tasks = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
time.sleep(timeout)
if os.getppid() != parent:  # the trainer is gone already
    sys.exit(0)
def reachable(addr):
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
        return True
    except OSError:
        return False
missing = [f"{t} {i} ({a})" for t, i, a in tasks if f"{t} {i}" != me and not reachable(a)]
sys.stderr.write(f"[distributed] {me}: the cluster did not form within {timeout:.0f} s (TF_CONFIG names "
                 f"{len(tasks)} workers); not reachable: {', '.join(missing) or 'none (ports open, not joined)'}; "
                 "stopping this worker\n")
sys.stderr.flush()
os.kill(parent, signal.SIGKILL)
"""


def make_strategy(startup_timeout_s: float = 300.0) -> tf.distribute.Strategy:
    """The strategy for this process: multi-worker when `TF_CONFIG` names more than one worker.

    The collective runtime waits forever for a worker that never starts, inside C++ and holding
    the GIL (a Python timer thread never runs). So a watchdog *process* is started first: unless
    the cluster completes one all-reduce within `startup_timeout_s`, it writes an error naming the
    unreachable tasks to this process's stderr and SIGKILLs it (a failed replica, exit 137).

    Args:
        startup_timeout_s: seconds every worker has to join.

    Returns:
        `MultiWorkerMirroredStrategy`, `MirroredStrategy` (one machine, several GPUs) or the default.
    """
    cluster = cluster_from_env()
    if cluster.num_workers == 1:
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    me = f"{cluster.task_type} {cluster.task_index}"
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(startup_timeout_s), str(os.getpid()), me,
                                 json.dumps([list(t) for t in cluster.tasks])])
    t0 = time.perf_counter()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        joined = strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)  # a real all-reduce
    finally:
        watchdog.kill()
        watchdog.wait()
    log.info("%s: %d workers joined in %.1f s", me, int(joined), time.perf_counter() - t0)
    return strategy


# --- input -----------------------------------------------------------------------------------------
def shard_policy(num_files: int, num_workers: int) -> str:
    """FILE when every worker gets at least one file, else DATA.

    Args:
        num_files: Transform output files of the split.
        num_workers: input pipelines (one per worker).

    Returns:
        "OFF" (one worker), "FILE" or "DATA".
    """
    if num_workers <= 1:
        return "OFF"
    return "FILE" if num_files >= num_workers else "DATA"


def sharded_input(make: Callable[[list[str]], tf.data.Dataset], files: list[str], num_pipelines: int,
                  pipeline_id: int, repeat: bool = False) -> tf.data.Dataset:
    """One worker's share of a dataset of per-replica batches.

    Args:
        make: builds the batched dataset from a list of files (e.g. the Trainer's P×K dataset).
        files: all files of the split, sorted.
        num_pipelines: number of input pipelines (workers).
        pipeline_id: this worker's pipeline.
        repeat: repeat the (finite) dataset, so every worker can run the same number of steps.

    Returns:
        The dataset with TF's auto-shard rewrite OFF (the sharding is done here).
    """
    policy = shard_policy(len(files), num_pipelines)
    ds = make(files[pipeline_id::num_pipelines] if policy == "FILE" else files)
    if repeat:
        ds = ds.repeat()
    if policy == "DATA":
        ds = ds.shard(num_pipelines, pipeline_id)
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(opts)


def distributed_dataset(strategy: tf.distribute.Strategy, make: Callable[[list[str]], tf.data.Dataset],
                        files: list[str], repeat: bool = False):
    """`strategy.distribute_datasets_from_function` over `sharded_input` (per-replica batches).

    Args:
        strategy: the training strategy.
        make: builds a dataset of per-replica batches from files.
        files: all files of the split.
        repeat: see `sharded_input`.

    Returns:
        What `model.fit` takes (a plain dataset under the default strategy).
    """
    def fn(ctx: tf.distribute.InputContext):
        return sharded_input(make, files, ctx.num_input_pipelines, ctx.input_pipeline_id, repeat)

    return strategy.distribute_datasets_from_function(fn)


# --- chief-only writes ----------------------------------------------------------------------------
def write_dir(path: str, cluster: Cluster | None = None) -> str:
    """Where this worker writes `path`: the path itself on the chief, else a temp folder beside it.

    Args:
        path: the real destination.
        cluster: default `cluster_from_env()`.

    Returns:
        `path` or `<dirname(path)>/workertemp_<i>/<basename(path)>`.
    """
    cluster = cluster or cluster_from_env()
    if cluster.is_chief:
        return path
    parent, base = os.path.split(path.rstrip("/"))
    return os.path.join(parent, f"workertemp_{cluster.worker_id}", base)


def remove_temp(path: str, cluster: Cluster | None = None) -> None:
    """Deletes the non-chief's temp folder made by `write_dir` (no-op on the chief)."""
    cluster = cluster or cluster_from_env()
    if not cluster.is_chief:
        tmp = os.path.dirname(write_dir(path, cluster))
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.rmtree(tmp)


def wait_for(path: str, timeout_s: float, poll_s: float = 2.0) -> bool:
    """Polls until `path` exists (a non-chief waits for the chief's export). Returns whether it does."""
    deadline = time.monotonic() + timeout_s
    while not tf.io.gfile.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


# --- preemption-safe training state ---------------------------------------------------------------
def fingerprint(model: tf.keras.Model) -> str:
    """Short hash of every weight of `model` (the same weights give the same string)."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


class _EpochLog(tf.keras.callbacks.Callback):
    """Chief: one JSON line at the first epoch of a `fit` (after any restore) and at each epoch end.
    Listed before `BackupAndRestore`, so a checkpointed epoch is always logged."""

    def __init__(self, path: str, segment: str, watch: tf.keras.Model, enabled: bool):
        super().__init__()
        self.path, self.segment, self.watch, self.enabled, self.started = path, segment, watch, enabled, False

    def _write(self, **row):
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({"segment": self.segment, "time": round(time.time(), 3), **row}) + "\n")

    def on_epoch_begin(self, epoch, logs=None):
        if not self.started:
            self.started = True
            self._write(event="start", epoch=int(epoch), fingerprint=fingerprint(self.watch))

    def on_epoch_end(self, epoch, logs=None):
        self._write(event="epoch_end", epoch=int(epoch), fingerprint=fingerprint(self.watch),
                    **{k: float(v) for k, v in (logs or {}).items()})


def _all_layers(model: tf.keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from _all_layers(layer)


@contextlib.contextmanager
def canonical_weight_order(model: tf.keras.Model):
    """Every layer trainable while the block runs, then each layer's flag as it was.

    Why: an h5 weights file stores `model.weights` in order, and Keras lists trainable weights
    before non-trainable ones, so the order depends on which backbone blocks were open (and on
    BatchNorm, always frozen) when it was saved; a fresh model loading it has every layer
    trainable. Saving and loading in that one state keeps the order the same.
    """
    flags = [(layer, layer.trainable) for layer in _all_layers(model)]
    top = model.trainable
    try:
        model.trainable = True
        for layer, _ in flags:
            layer.trainable = True
        yield model
    finally:  # the model first, then each layer, parents before children (the setter recurses)
        model.trainable = top
        for layer, flag in flags:
            layer.trainable = flag


class TrainingState:
    """Per-epoch checkpoints and finished segments under `<run_dir>/backup/`.

    Layout: `<segment>/chief/ckpt-*` (BackupAndRestore), `state.json` ({"done": [...], "history":
    {...}}), `handover_weights.h5` (the model after the last finished segment) and `epochs.jsonl`.
    Only the chief writes; every worker reads, so all resume at the same point.

    Args:
        run_dir: the Trainer's `model_run_dir` (shared storage in a real cluster).
        cluster: default `cluster_from_env()`.
    """

    def __init__(self, run_dir: str, cluster: Cluster | None = None):
        self.dir = os.path.join(run_dir, BACKUP_DIR)
        self.cluster = cluster or cluster_from_env()
        self.done: list[str] = []
        self.history: dict = {}
        path = os.path.join(self.dir, STATE_FILE)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                state = json.load(f)
            self.done, self.history = state["done"], state["history"]
        if self.cluster.is_chief:
            tf.io.gfile.makedirs(self.dir)

    @property
    def resumed(self) -> bool:
        return bool(self.done)

    def restore_weights(self, model: tf.keras.Model) -> None:
        """Loads the weights of the last finished segment (call once, before skipping segments)."""
        if self.done:
            with canonical_weight_order(model):
                model.load_weights(os.path.join(self.dir, HANDOVER_WEIGHTS))
            log.info("resumed: segments %s already finished", ", ".join(self.done))

    def callbacks(self, segment: str, watch: tf.keras.Model) -> list[tf.keras.callbacks.Callback]:
        """The epoch log and `BackupAndRestore` for one `fit` (put them first in the callback list)."""
        return [_EpochLog(os.path.join(self.dir, EPOCH_LOG), segment, watch, self.cluster.is_chief),
                tf.keras.callbacks.BackupAndRestore(os.path.join(self.dir, segment), delete_checkpoint=False)]

    def finish(self, segment: str, model: tf.keras.Model, history: dict) -> None:
        """Records a finished segment: weights first, then the state file (atomic rename), then the
        segment's epoch checkpoints are dropped."""
        self.done.append(segment)
        self.history = history
        if not self.cluster.is_chief:
            # Every worker saves: under MultiWorkerMirroredStrategy reading BatchNorm's moving
            # statistics (sync-on-read variables) is an all-reduce, which hangs unless all take part.
            scratch = tempfile.mkdtemp(prefix="handover-")
            try:
                with canonical_weight_order(model):
                    model.save_weights(os.path.join(scratch, HANDOVER_WEIGHTS))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        tmp = os.path.join(self.dir, "handover_weights.tmp.h5")
        with canonical_weight_order(model):
            model.save_weights(tmp)
        tf.io.gfile.rename(tmp, os.path.join(self.dir, HANDOVER_WEIGHTS), overwrite=True)
        with tf.io.gfile.GFile(os.path.join(self.dir, STATE_FILE + ".tmp"), "w") as f:
            json.dump({"done": self.done, "history": history}, f)
        tf.io.gfile.rename(os.path.join(self.dir, STATE_FILE + ".tmp"), os.path.join(self.dir, STATE_FILE),
                           overwrite=True)
        seg_dir = os.path.join(self.dir, segment)
        if tf.io.gfile.exists(seg_dir):
            tf.io.gfile.rmtree(seg_dir)

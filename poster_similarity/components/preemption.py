"""Preemption-safe training state: per-epoch checkpoints and finished training segments.

Vertex AI and the Training Operator restart a preempted replica with the same outputs. So that a
restart neither starts over nor repeats finished work, `TrainingState` checkpoints every epoch
(`tf.keras.callbacks.BackupAndRestore`, one folder per training segment under
`<model_run_dir>/backup/`) and records finished segments (phase-1 stages, phase 2) with their
weights: a restarted job resumes at the last checkpointed epoch of the segment it was in.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from poster_similarity.components.tf_config import Cluster, cluster_from_env

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"
STATE_FILE = "state.json"
EPOCH_LOG = "epochs.jsonl"
HANDOVER_WEIGHTS = "handover_weights.h5"  # Keras 2 h5 (a `.weights.h5` name switches format)


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

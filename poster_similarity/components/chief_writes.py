"""Chief-only writes in a multi-worker job, as the TF multi-worker guide prescribes.

Every worker runs the export path (reading distributed variables may need collectives), but two
workers writing one SavedModel would corrupt it: the chief writes to the real path, the others to a
`workertemp_<i>` folder beside it that they delete afterwards, then wait for the chief's result so
TFX's output check passes on every replica.
"""
from __future__ import annotations

import os
import time

import tensorflow as tf

from poster_similarity.components.tf_config import Cluster, cluster_from_env


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

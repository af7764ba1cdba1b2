"""This process's place in a training cluster, read from `TF_CONFIG`.

Vertex AI Training and a Kubeflow TFJob start one process per replica with the same command and a
`TF_CONFIG` naming the cluster and the replica's own task. Every multi-worker decision (the
strategy, the input shard, who writes, who waits) starts from this parse, so it lives alone here
with no TensorFlow import: the startup watchdog and the tests read it without paying for TF.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass


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

    @property
    def me(self) -> str:
        """`"<type> <index>"`, how log lines and the startup watchdog name this task."""
        return f"{self.task_type} {self.task_index}"


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

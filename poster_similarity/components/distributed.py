"""The Trainer's distribution strategy, and a bounded wait for the cluster to form.

Multi-worker training is split by concern; this module only picks and starts the strategy:

* `tf_config.py`: this process's place in the cluster, parsed from `TF_CONFIG`.
* `startup_watchdog.py`: the child process that ends a trainer whose cluster never forms.
* `sharding.py`: explicit input sharding (FILE or DATA) of per-replica P×K batches.
* `chief_writes.py`: the chief writes the real paths, other workers temp folders.
* `preemption.py`: per-epoch checkpoints and finished segments, so a restarted job resumes.
"""
from __future__ import annotations

import logging
import time

import tensorflow as tf

from poster_similarity.components import startup_watchdog
from poster_similarity.components.tf_config import cluster_from_env

log = logging.getLogger(__name__)


def make_strategy(startup_timeout_s: float = 300.0) -> tf.distribute.Strategy:
    """The strategy for this process: multi-worker when `TF_CONFIG` names more than one worker.

    The collective runtime waits forever for a worker that never starts, so the startup watchdog
    (`startup_watchdog.start`) runs while the cluster forms: unless one real all-reduce completes
    within `startup_timeout_s`, it names the unreachable tasks on stderr and SIGKILLs this process.

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
    watchdog = startup_watchdog.start(startup_timeout_s, cluster.me, cluster.tasks)
    t0 = time.perf_counter()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        joined = strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)  # a real all-reduce
    finally:
        watchdog.kill()
        watchdog.wait()
    log.info("%s: %d workers joined in %.1f s", cluster.me, int(joined), time.perf_counter() - t0)
    return strategy

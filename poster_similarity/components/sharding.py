"""Explicit input sharding for multi-worker training.

Why explicit: the Trainer's phase-2 batches are P×K (P windows of K same-label posters), and TF's
auto-shard rewrite would shard examples or files *after* `group_by_window`, splitting a window's K
posters across workers. So each worker builds whole per-replica batches and keeps its share:

* FILE when there are at least as many files as workers (each worker reads only its files);
* DATA otherwise (every worker reads everything and keeps every N-th per-replica batch).

TF's own auto-shard is set OFF because the input arrives already sharded; the global batch is
per-replica × replicas.
"""
from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


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

"""FLOP counting and the machine's measured matmul peak, shared by the benchmarks that report a
share of peak (bench.training, bench.real_posters): one way to count, so their figures compare."""
from __future__ import annotations

import logging
import time

import numpy as np


def peak_matmul(n: int = 2048, repeats: int = 6) -> dict:
    """Best FLOP/s of an n×n @ n×n float32 matmul (2·n³ FLOPs), in numpy and in TensorFlow, best of
    `repeats` each: the ceiling a model's img/s is compared with."""
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    ta, tb = tf.constant(a), tf.constant(b)
    tf.linalg.matmul(ta, tb).numpy()  # warm-up
    best_np = best_tf = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best_np = max(best_np, flops / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        tf.linalg.matmul(ta, tb).numpy()
        best_tf = max(best_tf, flops / (time.perf_counter() - t0))
    return {"matrix": n, "dtype": "float32", "repeats": repeats, "numpy_flop_per_s": best_np, "tf_flop_per_s": best_tf,
            "flop_per_s": max(best_np, best_tf), "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU"}


def graph_flops(model, h: int, w: int, dtype: str = "float32") -> int:
    """Forward FLOPs of one [1, h, w, 3] input through `model`, counted by TF's profiler on the frozen
    graph of its concrete function (2 per multiply-add, as the profiler counts)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, h, w, 3], tf.as_dtype(dtype)))
    opts = dict(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), output="none")
    old = tf.get_logger().level
    tf.get_logger().setLevel(logging.ERROR)  # the profiler logs every op it cannot count
    try:
        info = tf.compat.v1.profiler.profile(graph=convert_variables_to_constants_v2(fn).graph,
                                             run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    finally:
        tf.get_logger().setLevel(old)
    return int(info.total_float_ops)

"""Loads a SavedModel with TensorFlow alone and prints the shape of `neighbors`' `movie_ids` for one
all-ones embedding (a brute_force export answers `(1, 10)`).

Fresh, with no ScaNN imported: a `brute_force` export must load where only stock TensorFlow ops
exist (stock TF Serving), and the test process has ScaNN's ops registered.

    python -m tests.children.neighbors_shape SAVED_MODEL_DIR
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    (path,) = sys.argv[1:] if argv is None else argv
    import tensorflow as tf

    m = tf.saved_model.load(path)
    print(m.signatures["neighbors"](embedding=tf.ones([1, 128]))["movie_ids"].shape)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scores a pushed serving export on raw eval examples, in a fresh process (as TF Serving would load
it: nothing of the training process's graph or state is shared), against a random ranking.

    python -m tests.children.evaluate_export MODEL_DIR 'RAW_EVAL_GLOB'   → one JSON line
"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import numpy as np
    import scann  # noqa: F401  registers the index's ops
    import tensorflow as tf

    from poster_similarity.components.trainer import retrieval_report

    model_dir, pattern = argv
    model = tf.saved_model.load(model_dir)
    files = tf.io.gfile.glob(pattern)
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    out = model.signatures["embed_examples"](examples=tf.constant(serialized))
    genres = model.signatures["transform_features"](examples=tf.constant(serialized))["genres_xf"].numpy()
    emb = out["embedding"].numpy()
    rand = np.random.default_rng(0).normal(size=emb.shape)
    print(json.dumps({"trained": retrieval_report(emb, genres), "random": retrieval_report(rand, genres)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

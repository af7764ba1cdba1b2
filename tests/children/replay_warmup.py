"""Replays a SavedModel's TF Serving warm-up file (`assets.extra/tf_serving_warmup_requests`) with
only TensorFlow + ScaNN, as TF Serving's ScaNN build would; prints one JSON line:
`{"replayed": [{"signature", "batch", "top_score"?}, …], "tfx_imported": bool}`.

Fresh, because TFX registers the ScaNN ops as a side effect: in a process without it, the export
must load and answer every warm-up request on its own.

    python -m tests.children.replay_warmup SAVED_MODEL_DIR
"""
from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    (path,) = sys.argv[1:] if argv is None else argv
    import numpy as np
    import scann  # noqa: F401  (registers the Scann>* ops, as TF Serving's ScaNN build links them)
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    model = tf.saved_model.load(path)
    out = []
    for rec in tf.data.TFRecordDataset(path + "/assets.extra/tf_serving_warmup_requests"):
        req = prediction_log_pb2.PredictionLog.FromString(rec.numpy()).predict_log.request
        sig = req.model_spec.signature_name
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()}
        res = model.signatures[sig](**inputs)
        row = {"signature": sig, "batch": int(next(iter(inputs.values())).shape[0 if sig != "recommend" else 1])}
        if "scores" in res:
            row["top_score"] = float(np.min(res["scores"].numpy()[:, 0]))
        out.append(row)
    print(json.dumps({"replayed": out, "tfx_imported": any(m.startswith("tfx") for m in sys.modules)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

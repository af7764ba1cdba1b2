"""The signatures of a SavedModel, as a fresh process sees them: one JSON line
`{name: [sorted input names, sorted output names]}`.

A fresh process because this one (pytest) may already hold the model or TFX, and the check is that
the exported model alone, loaded with only TensorFlow + ScaNN, has the documented signatures.

    python -m tests.children.signatures_of SAVED_MODEL_DIR
"""
from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    (path,) = sys.argv[1:] if argv is None else argv
    import scann  # noqa: F401  registers the index's ops
    import tensorflow as tf

    m = tf.saved_model.load(path)
    print(json.dumps({n: [sorted(f.structured_input_signature[1]), sorted(f.structured_outputs)]
                      for n, f in m.signatures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

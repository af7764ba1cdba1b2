"""Which op names stock TensorFlow does not register: reads a JSON list of op names on stdin,
prints the sorted unregistered ones as a JSON list.

A fresh interpreter that imports only TensorFlow, because importing ScaNN or TFX (as the test
process does) registers their ops too and would hide exactly what stock TF Serving lacks.

    python -m tests.children.stock_ops < ops.json
"""
from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    from tensorflow.python.framework import op_def_registry

    print(json.dumps(sorted(o for o in json.load(sys.stdin) if op_def_registry.get(o) is None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

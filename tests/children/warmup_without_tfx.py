"""The server's warm-up reader in a fresh process: loads a version, replays its warm-up file, and
reports what got imported: `replayed N heavy [modules]`.

Fresh, because the point is that the serving path (ScaNN ops + LoadedModel + warm_up) imports no
TFX, Beam or pipeline code, and the test process has imported them all.

    python -m tests.children.warmup_without_tfx SAVED_MODEL_DIR
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    (path,) = sys.argv[1:] if argv is None else argv
    from poster_similarity.core.scann_ops import register_scann_ops
    from poster_similarity.serving.server.model import LoadedModel
    from poster_similarity.serving.server.warmup import warm_up

    register_scann_ops()
    n = warm_up(LoadedModel(path, 1))
    bad = [m for m in sys.modules if m.split(".")[0] in ("tfx", "apache_beam")
           or m.startswith("poster_similarity.pipeline")]
    print("replayed", n, "heavy", bad)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

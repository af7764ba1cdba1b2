"""`posters ARGS…` in this process, then a note of which heavy libraries it imported.

tests/test_cli_errors.py runs this instead of `posters` to prove that a user mistake is answered
before TensorFlow, TFX or Beam is imported (not just quickly on this machine). The note is JSON
written to the file named by $POSTERS_CHILD_REPORT: {"rc": exit status, "heavy": [module, …],
"cpu_s": CPU seconds this process used, start-up included} (CPU time, unlike wall time, does not
grow when other jobs load the machine).
stdout and stderr are the command's own, untouched; the exit status is the command's.
"""
from __future__ import annotations

import json
import os
import sys
import time

HEAVY = ("tensorflow", "tfx", "apache_beam", "tensorflow_transform", "tensorflow_model_analysis")
REPORT_ENV = "POSTERS_CHILD_REPORT"


def _status(code: object) -> int:
    """SystemExit's code as an exit status, as the interpreter would turn it into one."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main(argv: list[str]) -> int:
    from poster_similarity.posters import cli

    try:
        rc = int(cli.main(argv) or 0)
    except SystemExit as e:  # argparse's errors and --help/--version exit through here
        rc = _status(e.code)
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"rc": rc, "heavy": [m for m in HEAVY if m in sys.modules], "cpu_s": time.process_time()}, f)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

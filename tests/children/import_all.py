"""Imports every module of the installed `poster_similarity` and prints a JSON report.

Run BY PATH with the interpreter of a fresh venv (`VENV/bin/python tests/children/import_all.py`):
then sys.path[0] is this folder, not the source tree, so every import resolves to the installed
copy, and a dependency missing from `install_requires` fails here exactly as it would for a user.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys


def main() -> int:
    import poster_similarity

    root = os.path.dirname(poster_similarity.__file__)
    names, failed = [], {}
    for info in pkgutil.walk_packages([root], prefix="poster_similarity."):
        try:
            importlib.import_module(info.name)
            names.append(info.name)
        except Exception as e:  # noqa: BLE001 - reported, not hidden: the test asserts none failed
            failed[info.name] = f"{type(e).__name__}: {e}"
    files = [f for _, _, fs in os.walk(root) for f in fs if not f.endswith((".py", ".pyc"))]
    print(json.dumps({"package_dir": root, "imported": names, "failed": failed, "non_python_files": files,
                      "executable": sys.executable}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

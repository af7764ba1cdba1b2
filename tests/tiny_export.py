"""One stand-in serving export per index kind per test session (`components.standin_export`)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from tests.standin_export import export

_CACHE: dict[str, str] = {}


def cached(kind: str) -> str:
    """One export per index kind per test session (shared by the test modules that need one)."""
    if kind not in _CACHE:
        root = tempfile.mkdtemp(prefix=f"tiny_export_{kind}_")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        path = os.path.join(root, "posters", "1")
        report = export(path, kind)
        assert report["kind"] == kind, report
        _CACHE[kind] = path
    return _CACHE[kind]



_LOADED: dict = {}


def loaded(kind: str):
    """`cached(kind)` loaded with `tf.saved_model.load`, once per test session (a load costs seconds;
    tests that only call signatures share it)."""
    if kind not in _LOADED:
        import tensorflow as tf

        _LOADED[kind] = tf.saved_model.load(cached(kind))
    return _LOADED[kind]

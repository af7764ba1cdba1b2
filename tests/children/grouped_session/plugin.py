"""The suite's grouping hook plus a `trained_model` session fixture that records each build (a pid
per line in $BUILDS): loaded with `-p tests.children.grouped_session.plugin`."""
from __future__ import annotations

import os

import pytest

from tests.conftest import pytest_collection_modifyitems  # noqa: F401  the hook under test


@pytest.fixture(scope="session")
def trained_model() -> int:
    with open(os.environ["BUILDS"], "a") as f:
        f.write(f"{os.getpid()}\n")
    return 1

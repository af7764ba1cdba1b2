"""ScaNN's TensorFlow ops, which a SavedModel with a ScaNN index needs registered before it loads."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def register_scann_ops() -> bool:
    """Import `scann` (its import registers the `Scann>…` ops with TensorFlow), if installed.

    Returns:
        True when the ops are registered; False when scann cannot be imported, in which case a model
        built with `index.kind: brute_force` still loads and a ScaNN one fails with "Op type not registered".
    """
    try:
        import scann  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        log.warning("scann not importable (%s); models using ScaNN ops will fail to load", e)
        return False
    return True

"""Where the model code's progress lines go when a command (not a library user) runs it."""
from __future__ import annotations

import logging

PROGRESS_LOGGERS = ("poster_similarity.components",)  # trainer epochs, export summary
PROGRESS_FORMAT = "[%(module)s] %(message)s"  # e.g. "[trainer] phase 2: 3 epochs × 13 steps …"


def show_progress() -> None:
    """Print the model code's INFO logs to stderr as `[module] message`, once per process.

    Library code only logs; the entry points (`posters`, the runner files the TFX CLI executes)
    call this so training progress shows without turning on every library's INFO logs.
    """
    for name in PROGRESS_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:  # already set up (or by the caller): never print a line twice
            continue
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(PROGRESS_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

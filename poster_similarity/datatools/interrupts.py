"""Ctrl-C that cannot be lost: long commands check a flag before they publish their output."""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def ctrl_c_remembered() -> Iterator[threading.Event]:
    """Yield an Event set by Ctrl-C (SIGINT), which still raises KeyboardInterrupt as usual.

    A SIGINT that lands while a C extension runs (e.g. `import tensorflow` loading its libraries)
    can be consumed there: Python's handler runs, the extension clears the KeyboardInterrupt, and
    the import would go on to publish its output (seen once in CI: exit 0 after Ctrl-C). The Event
    survives that, and the import checks it before each poster and before publishing.
    """
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield hit
        return

    def handler(signum, frame):
        hit.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, previous)

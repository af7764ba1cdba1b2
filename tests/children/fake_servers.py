"""Stand-in servers for `bench.server_child`'s own tests: one that starts, one that hangs while
"loading", one that fails to start. Not programs themselves: the child imports them by name
(`--server tests.children.fake_servers:Hangs`), so the tests exercise the real child and the real
deadline without loading TensorFlow or a model.

Each prints to stdout and stderr as it goes: the child must keep both off its ready pipe (they land
in its log), and the tests read the log to see what ran.
"""
from __future__ import annotations

import os
import sys
import time


class Ready:
    """Starts at once on made-up ports; says so on stdout (which must not reach the ready pipe)."""

    def __init__(self, base: str, name: str, rest_port: int = 0, grpc_port: int = 0):
        self.base, self.name = base, name
        self.rest_port, self.grpc_port = 18501, 18500

    def start(self) -> Ready:
        print(f"starting {self.name} from {self.base}", flush=True)
        return self

    def stop(self) -> None:
        print("stopped", flush=True)


class Hangs(Ready):
    """Never finishes starting, like a server stuck loading a model: the parent's deadline must fire."""

    def start(self) -> Hangs:
        print(f"pid {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(3600)
        return self


class Fails(Ready):
    """Raises while starting, as a server with nothing to serve does: the child exits with code 1."""

    def start(self) -> Fails:
        raise RuntimeError(f"no servable model under {self.base}")

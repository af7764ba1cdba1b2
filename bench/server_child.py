"""A model server in a child process, for the serving benchmarks: the one way they start one.

Benchmarks measure a server the way TF Serving runs, in its own process, with the client in the
benchmark's. Both sides live here:

* the child, `python -m bench.server_child BASE NAME [--server MODULE[:CLASS]] [--batching FILE]`:
  starts `CLASS(BASE, NAME, rest_port=0, grpc_port=0)` (free ports), prints one line
  `{"rest_port": …, "grpc_port": …}` and serves until its stdin closes. `ServerChild(path=DIR)`
  puts DIR on the child's PYTHONPATH, so the server code can come from elsewhere than this checkout:
  `bench.serving_ab` runs the pre-hardening server (`serving.local_server`, extracted from git
  history) beside this one. Everything else the child writes (logs, warnings, a traceback) goes to
  stderr, which the parent sends to a log file, so the pipe carries the ready line only and can
  never fill up and block the server.
* the parent, `ServerChild`: starts the child, waits for the ready line with a deadline (a server
  that hangs while loading would otherwise hang the benchmark), and on a timeout or an early exit
  kills it and raises an error naming its log. `close()` (or leaving the `with` block) closes its
  stdin, so the server stops as it would on shutdown; killed if it is not gone within 30 s.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import NoReturn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # `-m bench.server_child` runs from here
THIS_SERVER = "poster_similarity.serving.server"
READY_TIMEOUT_S = 300.0  # loading + warming up the bench's demo model takes well under a minute
STOP_TIMEOUT_S = 30.0


# --- the child ------------------------------------------------------------------------------------
def load_server_class(spec: str):
    """`module[:class]` (class default `ModelServer`)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "ModelServer")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.server_child", description=__doc__.splitlines()[0])
    p.add_argument("base", help="versioned model base path (<base>/<version>/saved_model.pb)")
    p.add_argument("name", help="model name")
    p.add_argument("--server", default=THIS_SERVER, help=f"module[:class] of the server (default {THIS_SERVER})")
    p.add_argument("--batching", default="", help="TF Serving batching parameters file (enables batching)")
    args = p.parse_args(argv)
    ready = os.fdopen(os.dup(sys.stdout.fileno()), "w")  # the pipe to the parent: the ready line only
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything else printed goes to the log
    server_class = load_server_class(args.server)
    kwargs = {}
    if args.batching:
        from poster_similarity.serving.batching import BatchingOptions

        kwargs["batching"] = BatchingOptions.from_file(args.batching)
    srv = server_class(args.base, args.name, rest_port=0, grpc_port=0, **kwargs).start()
    ready.write(json.dumps({"rest_port": srv.rest_port, "grpc_port": srv.grpc_port}) + "\n")
    ready.close()
    sys.stdin.read()  # until the parent closes it (close(), or the parent died)
    srv.stop()
    return 0


# --- the parent -----------------------------------------------------------------------------------
class ServerChild:
    """A `bench.server_child` process, up and serving once the constructor returns.

    `addr` maps "rest" and "grpc" to `127.0.0.1:<port>`. `label` names the server in messages; the
    child's stderr goes to `log_path` (default: a temporary file, removed by `close()` unless the
    server failed, so that the error can point at it).
    """

    def __init__(self, base: str, name: str, *, server: str = THIS_SERVER, path: str = "", batching: str = "",
                 label: str = "server", timeout_s: float = READY_TIMEOUT_S, log_path: str | None = None):
        self.label = label
        self._own_log = log_path is None
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"server_child_{label}_", suffix=".log")
            os.close(fd)
        self.log_path = log_path
        cmd = [sys.executable, "-m", "bench.server_child", base, name, "--server", server]
        cmd += ["--batching", batching] if batching else []
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         env=_child_env(path))
        ports = self._await_ready(timeout_s)
        self.addr = {"rest": f"127.0.0.1:{ports['rest_port']}", "grpc": f"127.0.0.1:{ports['grpc_port']}"}

    def _await_ready(self, timeout_s: float) -> dict:
        """The child's ready line, read with a deadline (select on the pipe, never a blocking read)."""
        fd, buf = self.proc.stdout.fileno(), b""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"did not report its ports within {timeout_s:g} s")
            if not select.select([fd], [], [], min(left, 1.0))[0]:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:  # EOF: the child exited (or closed its output) without a ready line
                try:
                    code = self.proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
                except subprocess.TimeoutExpired:
                    self._fail("closed its output without reporting its ports")
                self._fail(f"exited with code {code} before reporting its ports")
            buf += chunk
        line = buf.split(b"\n", 1)[0]
        try:
            return json.loads(line)
        except ValueError:
            self._fail(f"reported {line[:200]!r} instead of its ports")

    def _fail(self, what: str) -> NoReturn:
        self.proc.kill()
        self.proc.wait()
        self._close_pipes()
        last = _last_line(self.log_path)
        raise RuntimeError(f"the {self.label} server child {what}; its log: {self.log_path}"
                           + (f" (last line: {last})" if last else ""))

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:  # the child is gone: nothing left to flush
                pass

    def close(self) -> None:
        """Stop the server (its stdin closes); killed if still running after STOP_TIMEOUT_S."""
        if self.proc.stdin.closed and self.proc.returncode is not None:
            return
        self._close_pipes()
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            print(f"[server_child] the {self.label} server did not stop within {STOP_TIMEOUT_S:g} s and was "
                  f"killed; its log: {self.log_path}", file=sys.stderr, flush=True)
            return
        if code != 0:
            print(f"[server_child] the {self.label} server exited with code {code} on stop; its log: "
                  f"{self.log_path}", file=sys.stderr, flush=True)
        elif self._own_log:
            os.unlink(self.log_path)

    def __enter__(self) -> ServerChild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _child_env(path: str) -> dict:
    """The child's environment: quiet TensorFlow, and `path` (server code from elsewhere) importable."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.abspath(path), env.get("PYTHONPATH", "")) if p)
    return env


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


if __name__ == "__main__":
    raise SystemExit(main())

"""Startup watchdog: ends a trainer whose cluster never forms, with an error naming who is missing.

Why a separate *process*: TensorFlow's collective runtime waits forever for a worker that never
starts, inside C++ and holding the GIL, so a Python timer thread in the trainer never runs
(measured: a 15 s coordination-service registration timeout did not end the wait in 150 s). The
trainer starts this module as a child (`start`) before it creates the strategy and kills it once
the first all-reduce completes; if that takes longer than the timeout, the watchdog writes which
tasks' ports are closed to the trainer's stderr (shared with the child) and SIGKILLs the trainer:
a failed replica (exit 137 in a container) that the job manager restarts or fails.

    python -m poster_similarity.components.startup_watchdog --timeout-s 300 --parent PID \
        --me "chief 0" --tasks '[["chief", 0, "host:port"], ["worker", 0, "host:port"]]'
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable

MODULE = "poster_similarity.components.startup_watchdog"  # what `start` runs with `python -m`


def start(timeout_s: float, me: str, tasks: Iterable[tuple[str, int, str]]) -> subprocess.Popen:
    """Starts the watchdog for this process; kill it once the cluster has formed.

    Args:
        timeout_s: seconds every worker has to join.
        me: this task, `"<type> <index>"` (`tf_config.Cluster.me`).
        tasks: (type, index, "host:port") of every task (`tf_config.Cluster.tasks`).

    Returns:
        The watchdog process.
    """
    return subprocess.Popen([sys.executable, "-m", MODULE, "--timeout-s", str(timeout_s),
                             "--parent", str(os.getpid()), "--me", me,
                             "--tasks", json.dumps([list(t) for t in tasks])])


def reachable(addr: str, timeout_s: float = 1.0) -> bool:
    """Whether something listens at "host:port" (a worker that started has its server up)."""
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def failure_message(me: str, timeout_s: float, tasks: list) -> str:
    """The line written to the trainer's stderr: the other tasks whose ports are closed."""
    missing = [f"{t} {i} ({a})" for t, i, a in tasks if f"{t} {i}" != me and not reachable(a)]
    return (f"[distributed] {me}: the cluster did not form within {timeout_s:.0f} s (TF_CONFIG names "
            f"{len(tasks)} workers); not reachable: {', '.join(missing) or 'none (ports open, not joined)'}; "
            "stopping this worker\n")


def watch(timeout_s: float, parent: int, me: str, tasks: list) -> None:
    """Sleeps `timeout_s`, then reports and SIGKILLs `parent` unless it is no longer our parent
    (the trainer is gone already: its pid may belong to another process by now)."""
    time.sleep(timeout_s)
    if os.getppid() != parent:
        return
    sys.stderr.write(failure_message(me, timeout_s, tasks))
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout-s", type=float, required=True)
    p.add_argument("--parent", type=int, required=True, help="the trainer's pid (this process's parent)")
    p.add_argument("--me", required=True, help='this task, e.g. "chief 0"')
    p.add_argument("--tasks", required=True, help="JSON [[type, index, host:port], …] of every task")
    a = p.parse_args(argv)
    watch(a.timeout_s, a.parent, a.me, json.loads(a.tasks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

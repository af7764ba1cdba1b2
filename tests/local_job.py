"""The Trainer's per-replica command on N local processes with real `TF_CONFIG`s on loopback: the
test and benchmark harness standing in for the cluster (a harness, so not in the installed package).

Each process runs exactly what a Vertex AI or TFJob replica runs (`cluster_specs.replica_command`),
with the `TF_CONFIG` layout Vertex AI sets (one `chief`, then `worker`s); `start_only` leaves some
replicas unstarted (a worker that never comes) and `kill` SIGKILLs one (a preempted machine).
Used by `tests/e2e/test_multiworker.py` and `bench/distributed.py`, and from the command line:

    python -m tests.local_job --config configs/demo.yaml --set distributed.replica_count=2 \
        --workdir demo_out --output /tmp/trainer_2w      # logs in /tmp/trainer_2w/logs/replica-<i>.log
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time


def free_ports(n: int) -> list[int]:
    """`n` loopback ports free right now (bound and released; a test races nobody for them)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tf_configs(n: int, ports: list[int] | None = None) -> list[dict]:
    """`TF_CONFIG` for a chief + n-1 workers on loopback, as Vertex AI sets it."""
    ports = ports or free_ports(n)
    cluster = {"chief": [f"localhost:{ports[0]}"]}
    if n > 1:
        cluster["worker"] = [f"localhost:{p}" for p in ports[1:]]
    tasks = [("chief", 0)] + [("worker", i) for i in range(n - 1)]
    return [{"cluster": cluster, "task": {"type": t, "index": i}} for t, i in tasks]


class LocalJob:
    """The per-replica command on `len(configs)` local processes, each with its `TF_CONFIG`.

    Args:
        command: the replica command (its leading `python` is replaced by this interpreter).
        configs: one `TF_CONFIG` dict per process (`tf_configs`); processes start only for
            `start_only` indices when given (a worker that never starts).
        log_dir: where `replica-<i>.log` files go.
        env: extra environment variables.
        start_only: indices of the replicas to start (default all).
    """

    def __init__(self, command: list[str], configs: list[dict], log_dir: str, env: dict | None = None,
                 start_only: list[int] | None = None):
        self.command = [sys.executable] + command[1:] if command[0] == "python" else list(command)
        self.configs, self.log_dir, self.env = configs, log_dir, env or {}
        self.indices = list(range(len(configs))) if start_only is None else list(start_only)
        self.procs: dict[int, subprocess.Popen] = {}
        self.t0 = 0.0

    def log_path(self, i: int) -> str:
        return os.path.join(self.log_dir, f"replica-{i}.log")

    def start(self) -> LocalJob:
        os.makedirs(self.log_dir, exist_ok=True)
        self.t0 = time.perf_counter()
        for i in self.indices:
            env = {**os.environ, **self.env, "TF_CONFIG": json.dumps(self.configs[i])}
            with open(self.log_path(i), "ab") as logf:
                self.procs[i] = subprocess.Popen(self.command, env=env, stdout=logf, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout_s: float) -> dict[int, int | None]:
        """Waits for every process (killing all on timeout). Returns {index: returncode or None}."""
        deadline = time.monotonic() + timeout_s
        codes: dict[int, int | None] = {}
        for i, p in self.procs.items():
            try:
                codes[i] = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[i] = None
        if any(c is None for c in codes.values()):
            self.kill()
        return codes

    def kill(self, i: int | None = None) -> None:
        """SIGKILL one replica (a preempted machine) or all (TF catches SIGTERM to checkpoint)."""
        for j, p in self.procs.items():
            if (i is None or i == j) and p.poll() is None:
                p.kill()
                p.wait(timeout=30)

    def logs(self) -> dict[int, str]:
        out = {}
        for i in self.indices:
            with open(self.log_path(i), errors="replace") as f:
                out[i] = f.read()
        return out


def main(argv=None) -> int:
    """`python -m tests.local_job`: the Trainer over a pipeline run's Transform output, on
    `distributed.replica_count` local processes."""
    from poster_similarity.pipeline.cluster_specs import parse_trainer_io, replica_command, trainer_io_parser

    args, cfg, io = parse_trainer_io(trainer_io_parser(main.__doc__.splitlines()[0]), argv)
    n = cfg.distributed.replica_count
    job = LocalJob(replica_command(*io), tf_configs(n) if n > 1 else [{}], os.path.join(args.output, "logs"))
    codes = job.start().wait(24 * 3600)
    print(json.dumps({"returncodes": codes, "wall_s": round(time.perf_counter() - job.t0, 1),
                      "logs": job.log_dir}))
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

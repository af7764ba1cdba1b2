"""`posters serve` as a real child process (loopback), with its ports, log, RSS and thread count."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time

from tests.helpers import POSTERS_CLI
from tests.helpers import ROOT as REPO


class ServerProcess:
    """Start `python -m poster_similarity.posters.cli serve <args>` and wait until it prints its ports."""

    def __init__(self, args: list[str], log_path: str, start_timeout: float = 180):
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            [*POSTERS_CLI, "serve", "--rest-port", "0", "--grpc-port", "0", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.rest = self.grpc = None
        deadline = time.time() + start_timeout
        while (self.rest is None or self.grpc is None) and time.time() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited {self.proc.returncode}: {self.log()[-3000:]}") from None
                continue
            if line.startswith("REST: http://"):
                self.rest = line.split("http://", 1)[1].split("/", 1)[0]
            elif line.startswith("gRPC: "):
                self.grpc = line.split()[1]
        if self.rest is None or self.grpc is None:
            self.stop()
            raise RuntimeError(f"server did not start: {self.log()[-3000:]}")
        self.rest_port = int(self.rest.rsplit(":", 1)[1])

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def _status(self, key: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    def rss_mb(self) -> float:
        return self._status("VmRSS") / 1024

    def threads(self) -> int:
        return self._status("Threads")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()


class RssSampler:
    """Peak RSS of a process, sampled every `interval` seconds in a thread."""

    def __init__(self, server: ServerProcess, interval: float = 0.05):
        self.server, self.interval = server, interval
        self.peak = server.rss_mb()
        self.peak_threads = server.threads()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self.server.rss_mb())
                self.peak_threads = max(self.peak_threads, self.server.threads())
            except (OSError, KeyError):
                return

    def stop(self) -> float:
        self._stop.set()
        self._t.join(timeout=5)
        return self.peak

"""A server never shares its port: a second `posters serve` on a busy gRPC or REST port is
refused with exit 2 and one line naming the port, before it imports TensorFlow or loads a model, and
the first server stays the only listener.

grpcio sets SO_REUSEPORT by default, which let a second server bind the same gRPC port and split the
clients between both; the REST port was refused only after the model load, without naming the port.
"""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import time
from types import SimpleNamespace

import pytest

from poster_similarity.serving.server.limits import Limits
from poster_similarity.serving.server.ports import PortError, add_grpc_port
from tests.helpers import POSTERS_CLI, ROOT
from tests.serving_helpers import http
from tests.serving_process import ServerProcess

REFUSE_TIMEOUT_S = 120  # a hard bound on a refused start; it must also beat the first server's start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listeners(port: int) -> int:
    """TCP sockets listening on `port` (any address, any process), from /proc/net/tcp{,6}."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                n += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return n


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """A real `posters serve` on free loopback ports, and how long it took to start (import + load)."""
    from tests.tiny_model import save_model

    root = tmp_path_factory.mktemp("ports")
    base = root / "posters"
    save_model(str(base / "1"), seed=1, prefix="m")
    t0 = time.monotonic()
    srv = ServerProcess(["--model-base-path", str(base), "--host", "127.0.0.1"], str(root / "first.log"))
    started_s = time.monotonic() - t0
    try:
        assert "AVAILABLE" in srv.log()  # the log line a model load writes (absent from the refusals)
        yield SimpleNamespace(srv=srv, base=str(base), started_s=started_s,
                              grpc_port=int(srv.grpc.rsplit(":", 1)[1]))
    finally:
        srv.stop()


def serve(first, rest_port: int, grpc_port: int, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    t0 = time.monotonic()
    p = subprocess.run([*POSTERS_CLI, "serve", "--model-base-path", first.base, "--host", "127.0.0.1",
                        "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), *extra],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=REFUSE_TIMEOUT_S)
    return p, time.monotonic() - t0


def assert_refused(first, p: subprocess.CompletedProcess, elapsed: float, api: str, port: int) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert lines == [f"posters serve: error: {api} port {port} is already in use (another server?)"], p.stderr
    assert "Traceback" not in p.stderr and "REST: http" not in p.stdout
    # before the model load: faster than the first server's start (TensorFlow import + load)
    assert elapsed < first.started_s, (elapsed, first.started_s)


def assert_first_still_sole_listener(first, port: int) -> None:
    assert first.srv.alive()
    assert listeners(port) == 1
    assert http("GET", f"http://{first.srv.rest}/v1/models/posters")[0] == 200


def test_busy_grpc_port_refused_before_loading(first):
    p, elapsed = serve(first, free_port(), first.grpc_port)
    assert_refused(first, p, elapsed, "gRPC", first.grpc_port)
    assert_first_still_sole_listener(first, first.grpc_port)


def test_busy_rest_port_refused_before_loading(first):
    p, elapsed = serve(first, first.srv.rest_port, free_port())
    assert_refused(first, p, elapsed, "REST", first.srv.rest_port)
    assert_first_still_sole_listener(first, first.srv.rest_port)


def test_verbose_refusal_has_traceback_and_never_loads(first):
    """-v logs at DEBUG, so a model load would say "AVAILABLE"; the refusal's log never does, and
    it shows the bind that failed (a DEBUG line)."""
    p, _ = serve(first, free_port(), first.grpc_port, "-v")
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" in p.stderr and "PortError" in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        f"posters serve: error: gRPC port {first.grpc_port} is already in use (another server?)")
    assert "AVAILABLE" not in p.stderr and "warm-up" not in p.stderr
    assert f"gRPC bind of 127.0.0.1:{first.grpc_port} failed" in p.stderr
    assert listeners(first.grpc_port) == 1


def test_default_grpc_server_cannot_join_ours(first):
    """Our gRPC socket has no SO_REUSEPORT, so even a grpcio server with the default (reuse) cannot share it."""
    from concurrent import futures

    import grpc

    g = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        try:
            bound = g.add_insecure_port(f"127.0.0.1:{first.grpc_port}")
        except RuntimeError:
            bound = 0
        assert bound == 0
        assert listeners(first.grpc_port) == 1
    finally:
        g.stop(None)


class _FakeGrpc:
    """A grpc server stand-in whose add_insecure_port fails the way a given grpcio version does."""

    def __init__(self, fail: str):
        self.fail = fail

    def add_insecure_port(self, address: str) -> int:
        if self.fail == "raise":
            raise RuntimeError(f"Failed to bind to address {address}")
        return 0


@pytest.mark.parametrize("fail", ["raise", "zero"])
def test_grpc_bind_failure_either_way_names_a_busy_port(fail):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortError) as e:
            add_grpc_port(_FakeGrpc(fail), "127.0.0.1", port)
    assert str(e.value) == f"gRPC port {port} is already in use (another server?)"
    assert e.value.errno == errno.EADDRINUSE and e.value.port == port


def test_rest_socket_is_exclusive():
    """SO_REUSEADDR (TIME_WAIT leftovers) but never SO_REUSEPORT; a second bind is a PortError naming the port."""
    import threading

    from poster_similarity.serving.server.rest import make_http_server

    stub = SimpleNamespace(limits=Limits(), draining=threading.Event())
    httpd = make_http_server(stub, "127.0.0.1", 0)
    try:
        s = httpd.socket
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        port = httpd.server_address[1]
        with pytest.raises(PortError, match=f"REST port {port} is already in use"):
            make_http_server(stub, "127.0.0.1", port)
    finally:
        httpd.server_close()

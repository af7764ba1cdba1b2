"""Binding the REST and gRPC ports: exclusively, and with an error that names the port.

A server must never share its port. grpcio sets SO_REUSEPORT by default, so a second process binding
a busy gRPC port succeeds and the kernel splits the clients between both; TF Serving refuses a port in
use, and so do we: the gRPC server gets `grpc.so_reuseport=0` and the REST socket only SO_REUSEADDR
(which on Linux still refuses a port another socket listens on; it only allows TIME_WAIT leftovers).
Both ports are bound before any model loads (ModelServer.start), so a busy port is reported in a
second, not after the model load.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
import tempfile

log = logging.getLogger("posters.serving")

# grpc.server options that keep the gRPC port ours alone.
GRPC_EXCLUSIVE_PORT = ("grpc.so_reuseport", 0)


class PortError(OSError):
    """A port that cannot be bound; the message names the API and the port (one line for the CLI).

    Args:
        api: "REST" or "gRPC".
        host / port: what was asked for.
        reason: the OSError the bind failed with (None when gRPC gave no reason).
    """

    def __init__(self, api: str, host: str, port: int, reason: OSError | None = None):
        code = reason.errno if reason is not None else None
        if code == errno.EADDRINUSE:
            message = f"{api} port {port} is already in use (another server?)"
        elif code == errno.EACCES:
            message = f"{api} port {port} needs privileges to bind (ports below 1024)"
        else:
            why = (reason.strerror or str(reason)) if reason is not None else "refused by grpc (-v shows why)"
            message = f"cannot bind {api} to {host}:{port}: {why}"
        super().__init__(code or 0, message)
        self.api, self.host, self.port, self.reason = api, host, port, reason
        self.detail = ""  # what grpc printed about it (shown with -v)

    def __str__(self) -> str:
        return self.strerror


def probe(host: str, port: int) -> OSError | None:
    """Why binding (host, port) fails, as grpc would bind it (SO_REUSEADDR, no SO_REUSEPORT); None if it would not.

    grpc reports a failed bind only as "Failed to bind" (or a 0 port), so the reason is learnt here.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return OSError(errno.EADDRNOTAVAIL, f"cannot resolve host {host!r} ({e})")
    first = None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
                return None
            except OSError as e:
                first = first or e
    return first


@contextlib.contextmanager
def _stderr_to(sink: list[str]):
    """Divert file descriptor 2 into `sink` for the duration: grpc's C core prints its own bind error there.

    Without this a refused gRPC port would print grpc's `E… add_port.cc … Failed to add port` line
    next to ours; the caller keeps what was caught in PortError.detail (shown with -v) or writes it back.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (daemonised): nothing to divert
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))


def add_grpc_port(grpc_server, host: str, port: int) -> int:
    """Bind `grpc_server` (built with GRPC_EXCLUSIVE_PORT) to host:port.

    Handles both ways grpcio reports a failed bind: a RuntimeError (recent versions) or a returned 0.

    Returns:
        The bound port (the one the kernel picked when `port` is 0).

    Raises:
        PortError: the port cannot be bound; says "already in use" when another socket holds it.
    """
    said: list[str] = []
    with _stderr_to(said):
        try:
            bound = grpc_server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as e:  # "Failed to bind to address …" (recent grpcio; older ones return 0)
            said.append(f"{e}\n")
            bound = 0
    text = "".join(said)
    if bound:
        if text:  # not ours to hide: whatever was written while diverted
            os.write(2, text.encode())
        return bound
    err = PortError("gRPC", host, port, probe(host, port))
    err.detail = text.strip()  # grpc's own words, for -v
    log.debug("gRPC bind of %s:%d failed: %s", host, port, err.detail)
    raise err


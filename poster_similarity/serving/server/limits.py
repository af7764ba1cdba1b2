"""Resource limits of the local server, and the two REST mechanisms that enforce the connection ones.

Every limit is a `posters serve` flag (see poster_similarity/serving/server/main.py) with a default that keeps one
process within a stated memory bound (docs/serving-faults.md). Where TF Serving has the same knob,
the default is TF Serving's.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from poster_similarity.serving.image_header import DEFAULT_MAX_PIXELS


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    """Caps on what one request or client may cost.

    Attributes:
        max_body_bytes: REST body size (413 above).
        read_timeout_s: time a client has to send one whole request (line, headers, body) and the
            longest a keep-alive connection may idle (408 / closed after it).
        max_connections: open REST connections; at the cap the oldest idle one is closed, else the
            oldest still sending its headers; when every one is past its headers the new one gets 503.
        max_concurrent_requests: REST requests executing at once (TF Serving's --rest_api_num_threads).
        queue_timeout_s: how long a REST request waits for a slot before 503.
        rest_api_timeout_ms: REST request deadline (TF Serving's --rest_api_timeout_in_ms), 504 after it.
        grpc_max_threads: gRPC worker threads (TF Serving's --grpc_max_threads: 4 x CPUs).
        grpc_max_concurrent_rpcs: gRPC RPCs admitted at once; more get RESOURCE_EXHAUSTED.
        grpc_max_message_bytes: gRPC message size (TF Serving allows 2 GiB - 1; see docs/serving-faults.md).
        max_json_depth: JSON nesting (400 above).
        max_json_elements: JSON values in one body (400 above).
        max_tensor_elements: elements one TensorProto may declare (400 / INVALID_ARGUMENT above).
        max_image_pixels: width x height x frames of one encoded image, read from its header.
        drain_timeout_s: on SIGTERM, how long in-flight requests get before the process exits.
    """

    max_body_bytes: int = 16 << 20
    read_timeout_s: float = 30.0
    max_connections: int = 256
    max_concurrent_requests: int = field(default_factory=lambda: max(16, 4 * _cpus()))
    queue_timeout_s: float = 1.0
    rest_api_timeout_ms: int = 30_000
    grpc_max_threads: int = field(default_factory=lambda: 4 * _cpus())
    grpc_max_concurrent_rpcs: int = 64
    grpc_max_message_bytes: int = 64 << 20
    max_json_depth: int = 32
    max_json_elements: int = 4_000_000
    max_tensor_elements: int = 4_000_000
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    drain_timeout_s: float = 20.0


def _bytes_waiting(sock: socket.socket) -> bool:
    """True when the client has sent bytes the handler has not read yet (a request is arriving).

    FIONREAD, not a MSG_PEEK recv: Python waits up to a socket's timeout before any recv, and the
    acceptor must never wait on a client.
    """
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0] > 0
    except (OSError, ValueError):  # closed meanwhile: nothing to protect
        return False


IDLE, HEADERS, BUSY = 0, 1, 2  # a connection's phase, as ConnectionTable sees it


class ConnectionTable:
    """Open REST connections, oldest first; tells the acceptor which one to close at the cap.

    Each connection is IDLE (no request started), HEADERS (bytes of a request arrived; its request
    line and headers are not parsed yet) or BUSY (headers parsed: its body is read, it runs, or its
    answer is written). At the cap `admit` closes the oldest IDLE connection with no unread bytes
    in the kernel; failing that, the oldest one still in HEADERS (a client that takes its time over
    its headers, e.g. slowloris); a BUSY connection is never closed, and when all are BUSY the new
    one gets 503. The handler marks HEADERS *before* it takes bytes out of the kernel
    (`DeadlineReader.on_data`), so a request that has started is never taken for an idle one.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self._lock = threading.Lock()
        self._conns: OrderedDict[int, list] = OrderedDict()  # id → [socket, phase]
        self.evicted = 0
        self.refused = 0

    def _victim(self) -> int | None:
        headers = None
        for k, (s, phase) in self._conns.items():
            if phase == IDLE and not _bytes_waiting(s):
                return k
            if phase != BUSY and headers is None:
                headers = k
        return headers

    def admit(self, sock: socket.socket) -> bool:
        """Register a new connection; False means answer 503 (every slot runs a request)."""
        with self._lock:
            if len(self._conns) >= self.cap:
                victim = self._victim()
                if victim is None:
                    self.refused += 1
                    return False
                s, _ = self._conns.pop(victim)
                self.evicted += 1
                try:
                    s.shutdown(socket.SHUT_RDWR)  # its handler reads EOF and exits
                except OSError:
                    pass
            self._conns[id(sock)] = [sock, IDLE]
            return True

    def mark(self, sock: socket.socket, phase: int, only_from: int | None = None) -> None:
        """Set a connection's phase (when `only_from` is given, only if it is in that phase now)."""
        with self._lock:
            entry = self._conns.get(id(sock))
            if entry is not None and (only_from is None or entry[1] == only_from):
                entry[1] = phase

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.pop(id(sock), None)

    def sockets(self) -> list[socket.socket]:
        """A snapshot of the open connections, taken under the lock (handlers add and remove
        connections concurrently; iterating the live table could raise mid-way)."""
        with self._lock:
            return [s for s, _ in self._conns.values()]

    def __len__(self) -> int:
        return len(self._conns)


class RequestTimeout(Exception):
    """The client did not send its whole request within the read timeout."""


class DeadlineReader:
    """A buffered reader over a socket whose `readline`/`read` share one deadline.

    A per-recv socket timeout does not stop a client that drips one byte every few seconds
    (slowloris); here every recv is given only the time left until `deadline`.
    """

    def __init__(self, sock: socket.socket, timeout_s: float, on_data=None):
        self._sock = sock
        self.on_data = on_data  # called once bytes are waiting, before they are taken from the kernel
        self._buf = bytearray()
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.eof = False

    def restart(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s

    def _fill(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeout(f"request not received within {self.timeout_s:g} s (read timeout)")
        self._sock.settimeout(left)
        try:
            if self.on_data is not None and self._sock.recv(1, socket.MSG_PEEK):
                self.on_data()
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise RequestTimeout(f"request not received within {self.timeout_s:g} s (read timeout)") from None
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self._buf += chunk
        return True

    def readline(self, limit: int = -1) -> bytes:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0 and (limit < 0 or i < limit):
                return self._take(i + 1)
            if 0 <= limit <= len(self._buf):
                return self._take(limit)
            if not self._fill():
                return self._take(len(self._buf))

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise ValueError("read() needs a size")
        while len(self._buf) < n and self._fill():
            pass
        return self._take(min(n, len(self._buf)))

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def pending(self) -> bool:
        return bool(self._buf)

    def close(self) -> None:
        pass

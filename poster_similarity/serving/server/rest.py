"""TF Serving's REST API over http.server, with connection, time and size limits.

Routes: GET /v1/models/<name>[/versions/<v>|/labels/<l>][/metadata], POST ...:predict. Every answer
that is not a 200 is a JSON `{"error": ...}` (also bad request lines, HEAD and unknown methods),
and every answer >= 500 is logged.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from poster_similarity.serving.server import metrics
from poster_similarity.serving.server.codec import dumps, parse_predict_body, predict_response
from poster_similarity.serving.server.config import valid_model_name
from poster_similarity.serving.server.errors import RequestError, bad_request, internal, not_found, unavailable
from poster_similarity.serving.server.limits import BUSY, HEADERS, IDLE, ConnectionTable, DeadlineReader, RequestTimeout
from poster_similarity.serving.server.ports import PortError
from poster_similarity.serving.server.versions import parse_version

log = logging.getLogger("posters.serving")

PATH_RE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)


def route(method: str, raw_path: str) -> tuple[str, int | None, str | None, bool, str | None]:
    """(name, version, label, metadata?, verb) of a TF Serving URL; 404/400 otherwise."""
    path = urlsplit(raw_path).path
    m = PATH_RE.match(path)
    if not m:
        raise not_found(f"Malformed request: {method} {path[:200]}")
    name = unquote(m["name"])
    version = parse_version(unquote(m["version"])) if m["version"] is not None else None
    label = unquote(m["label"]) if m["label"] is not None else None
    if not valid_model_name(name):
        raise bad_request(f"Invalid model name: {name[:100]!r}")
    if label is not None and not valid_model_name(label):
        raise bad_request(f"Invalid version label: {label[:100]!r}")
    return name, version, label, m["metadata"] is not None, m["verb"]


class RestHandler(BaseHTTPRequestHandler):
    """One REST connection: TF Serving's routes, JSON errors, per-request deadlines, body limits.

    `self.server` is the RestServer (socketserver sets it); the ModelServer is `self.server.model_server`.
    """

    protocol_version = "HTTP/1.1"
    server_version = "posters-local-server"

    def setup(self):
        self.timeout = self.server.limits.read_timeout_s  # socket timeout for writes (a client that never reads)
        super().setup()
        # HEADERS from the first byte of a request (closed at the cap only when nothing is idle)
        self.rfile = DeadlineReader(self.connection, self.server.limits.read_timeout_s,
                                    on_data=lambda: self.server.table.mark(self.connection, HEADERS, IDLE))

    def handle_one_request(self):
        self.rfile.restart()  # one deadline per request; also bounds keep-alive idling
        had_bytes = self.rfile.pending()
        self.raw_requestline = b""
        try:
            super().handle_one_request()
        except RequestTimeout as e:
            self.close_connection = True
            if had_bytes or self.rfile.pending() or self.raw_requestline:  # mid-request: 408
                self.request_version = "HTTP/1.1"
                self._send(408, {"error": str(e)})
        finally:
            self.server.table.mark(self.connection, HEADERS if self.rfile.pending() else IDLE)  # pipelined?

    def log_message(self, fmt, *args):  # quiet: the default writes every request to stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, 501, 414, 431) as JSON too."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.1"
        self._send(code, {"error": message or HTTPStatus(code).phrase})

    def _send(self, status: int, payload: dict) -> None:
        ms = self.server.model_server
        ms.metrics.answered("rest", status)
        if status >= 500:
            log.error("%s %s → %d: %s", getattr(self, "command", None), str(getattr(self, "path", ""))[:200],
                      status, str(payload.get("error", ""))[:500])
        if ms.draining.is_set():
            self.close_connection = True
        body = dumps(payload)
        try:
            self.connection.settimeout(self.server.limits.read_timeout_s)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 405:
                self.send_header("Allow", "GET, POST")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away
            self.close_connection = True

    def _send_metrics(self) -> None:
        ms = self.server.model_server
        body = ms.metrics.text(ms).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", metrics.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away
            self.close_connection = True

    def _error(self, e: RequestError) -> None:
        self._send(e.http_status, {"error": e.message})

    def parse_request(self):  # request line and headers read: BUSY until the answer is written
        ok = super().parse_request()
        if ok:
            self.server.table.mark(self.connection, BUSY)
        return ok

    def do_GET(self):  # noqa: N802 — http.server's method name
        if urlsplit(self.path).path == metrics.PATH:  # not a request: answered while draining too
            return self._send_metrics()
        self._as_request(self._get)

    def _as_request(self, answer) -> None:
        """Run `answer` as one counted request: held until the answer is written, so a drain waits
        for it; refused (RequestError) while draining."""
        try:
            with self.server.model_server.request():
                answer()
        except RequestError as e:
            self._error(e)

    def _get(self):
        ms = self.server.model_server
        try:
            name, version, label, metadata, verb = route(self.command, self.path)
            if verb is not None:
                raise RequestError(f"Method not allowed: use POST for :{verb}", 405, "UNIMPLEMENTED")
            payload = (ms.metadata_dict if metadata else ms.status_dict)(name, version, label)
        except RequestError as e:
            return self._error(e)
        except Exception as e:  # noqa: BLE001 — a bug must not take the server down
            log.exception("GET %s failed", self.path[:200])
            return self._error(internal(f"Internal error: {e}"))
        self._send(200, payload)

    def do_POST(self):  # noqa: N802 — http.server's method name
        self._as_request(self._post)

    def _post(self):
        try:
            body = self._read_body()
            name, version, label, metadata, verb = route(self.command, self.path)
            if metadata or verb is None:
                raise RequestError("Method not allowed: use GET for status and metadata", 405, "UNIMPLEMENTED")
            if verb != "predict":
                raise bad_request(f"Unsupported verb :{verb} (only :predict is served)")
            payload = self._predict(name, version, label, body)
        except RequestError as e:
            return self._error(e)
        except RequestTimeout:
            raise
        except Exception as e:  # noqa: BLE001 — a bug must not take the server down
            log.exception("predict failed")
            return self._error(internal(f"Internal error: {e}"))
        self._send(200, payload)

    def _predict(self, name, version, label, body: bytes) -> dict:
        limits, slots = self.server.limits, self.server.slots
        deadline = time.monotonic() + limits.rest_api_timeout_ms / 1000.0
        if not slots.acquire(timeout=limits.queue_timeout_s):
            raise unavailable(f"Server overloaded: {limits.max_concurrent_requests} requests running "
                              "(max_concurrent_requests); retry later")
        try:
            with self.server.model_server.serving(name, version, label, counted=True) as model:
                sig, arrays, rows = parse_predict_body(model, body, limits)
                return predict_response(model.run(sig, arrays, deadline), rows)
        finally:
            slots.release()

    def _content_length(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise RequestError("Chunked request bodies are not supported; send Content-Length", 411,
                               "INVALID_ARGUMENT")
        raw = self.headers.get_all("Content-Length") or ["0"]
        if len(set(raw)) > 1:
            self.close_connection = True
            raise bad_request("Invalid Content-Length: sent more than once")
        value = raw[0].strip()
        if not (value.isascii() and value.isdigit()):
            self.close_connection = True
            raise bad_request(f"Invalid Content-Length: {raw[0][:40]!r}")
        return int(value)

    def _read_body(self) -> bytes:
        n = self._content_length()
        cap = self.server.limits.max_body_bytes
        if n > cap:
            # Drain a moderately oversized body so the client reads our 413 instead of a reset;
            # beyond that, just hang up. Either way the connection is not reused.
            self.close_connection = True
            if n <= 4 * cap:
                left = n
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
            raise RequestError(f"Request body of {n} bytes exceeds the limit of {cap} "
                               "bytes (max_body_bytes)", 413, "RESOURCE_EXHAUSTED")
        body = self.rfile.read(n)
        if len(body) < n:
            self.close_connection = True
            raise bad_request(f"Request body truncated: got {len(body)} of {n} bytes (Content-Length)")
        return body

    def _method_not_allowed(self):
        self.close_connection = True
        self._send(405, {"error": f"Method {self.command} not allowed (use GET or POST)"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _method_not_allowed


class RestServer(ThreadingHTTPServer):
    """The listening socket, its connection table and the request slots of one ModelServer's REST API.

    Binds in the constructor, before any model loads (ModelServer.start): a busy port is refused at
    once. SO_REUSEADDR only (TIME_WAIT leftovers of a previous run), never SO_REUSEPORT: a second
    server on the same port must fail, not split the clients (ports.py).
    """

    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = False  # Python 3.11's knob; server_bind makes sure on 3.10 too
    block_on_close = False
    request_queue_size = 128

    def __init__(self, model_server, address: tuple[str, int]):
        self.model_server = model_server
        self.limits = model_server.limits
        self.table = ConnectionTable(self.limits.max_connections)
        self.slots = threading.BoundedSemaphore(self.limits.max_concurrent_requests)
        super().__init__(address, RestHandler)

    def server_bind(self) -> None:
        if hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
        super().server_bind()

    def process_request(self, request, client_address):
        draining = self.model_server.draining.is_set()
        if draining or not self.table.admit(request):
            _refuse(request, "Server is shutting down" if draining else
                    f"Too many connections ({self.limits.max_connections}, max_connections); retry later")
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.table.remove(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        for s in self.table.sockets():
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def make_http_server(server, host: str, port: int) -> RestServer:
    """A threading HTTP server for `server` (a ModelServer), bound and listening on (host, port).

    Raises:
        PortError: the port cannot be bound (in use, privileged, bad host); the message names it.
    """
    try:
        return RestServer(server, (host, port))
    except OSError as e:
        raise PortError("REST", host, port, e) from e


def _refuse(sock: socket.socket, message: str) -> None:
    """Answer 503 on a connection we will not serve, without reading it, then close it."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n").encode()
    log.warning("refused a connection: %s", message)
    try:
        sock.settimeout(0.5)
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()

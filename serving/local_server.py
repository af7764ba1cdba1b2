"""A small TF-Serving-compatible model server for machines without `tensorflow_model_server`.

It serves a versioned base path (`<base>/<version>/saved_model.pb`) with TF Serving's REST API
(`/v1/models/<name>[/versions/<v>][/metadata|:predict]`) and gRPC `PredictionService` /
`ModelService`, hot-loading newer versions, so the client, gallery and benchmarks talk to the
same API here as to the production binary. `--engine tfserving` execs the real binary instead.

TensorFlow is imported lazily (inside `ModelServer.start`), and never TFX (~37 s to import).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from serving.batching import Batcher, BatchingOptions, Overloaded

log = logging.getLogger("posters.serving")

DEFAULT_MAX_BODY_BYTES = 16 << 20
DEFAULT_SIGNATURE = "serving_default"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_PATH_RE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)


class RequestError(Exception):
    """A client-visible error: HTTP status + the gRPC status code name it maps to."""

    def __init__(self, message: str, http_status: int = 400, grpc_code: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.grpc_code = grpc_code


def _not_found(message: str) -> RequestError:
    return RequestError(message, 404, "NOT_FOUND")


def valid_model_name(name: str) -> bool:
    """Names end up in URLs and log lines; keep them to a safe alphabet (no `..`)."""
    return bool(_NAME_RE.match(name)) and ".." not in name


def parse_version(text: str | int | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise RequestError(f"Malformed version: {text!r} (versions are integers)") from None
    if v < 0:
        raise RequestError(f"Malformed version: {text!r}")
    return v


def list_versions(base_path: str) -> list[int]:
    """Complete version dirs, ascending. Dirs without saved_model.pb are still being written."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    out = []
    for n in names:
        if n.isdigit() and os.path.isfile(os.path.join(base_path, n, "saved_model.pb")):
            out.append(int(n))
    return sorted(out)


def _dir_fingerprint(path: str) -> tuple:
    """Changes when files are added or rewritten, so a failed version is retried after a fix."""
    items = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            items.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(items))


def _import_scann() -> bool:
    """ScaNN's custom ops must be registered before loading a ScaNN-indexed SavedModel."""
    try:
        import scann  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the environment
        log.warning("scann not importable (%s); models using ScaNN ops will fail to load", e)
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Model


class LoadedModel:
    """One loaded version: signature functions plus their declared input/output specs."""

    def __init__(self, path: str, version: int):
        import tensorflow as tf

        self.tf = tf
        self.path = path
        self.version = version
        self.obj = tf.saved_model.load(path)
        self.signatures = dict(self.obj.signatures)
        self.inputs: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        for name, fn in self.signatures.items():
            _args, kwargs = fn.structured_input_signature
            self.inputs[name] = dict(kwargs)
            self.outputs[name] = dict(fn.structured_outputs)
        self._sigdef_map = None
        self.batcher: Batcher | None = None

    def enable_batching(self, options: BatchingOptions) -> None:
        self.batcher = Batcher(self._call, options)

    def close(self) -> None:
        """Answer what is queued for batching, then stop the batch threads."""
        if self.batcher is not None:
            self.batcher.close()

    # -- metadata ---------------------------------------------------------------------------
    def signature_def_map(self):
        """TF Serving's metadata is the MetaGraphDef's signature_def map; read it from the file."""
        if self._sigdef_map is None:
            from tensorflow.core.protobuf import saved_model_pb2
            from tensorflow_serving.apis import get_model_metadata_pb2

            sm = saved_model_pb2.SavedModel()
            with open(os.path.join(self.path, "saved_model.pb"), "rb") as f:
                sm.ParseFromString(f.read())
            m = get_model_metadata_pb2.SignatureDefMap()
            for k, v in sm.meta_graphs[0].signature_def.items():
                m.signature_def[k].CopyFrom(v)
            self._sigdef_map = m
        return self._sigdef_map

    # -- inference --------------------------------------------------------------------------
    def input_specs(self, signature: str) -> dict[str, Any]:
        if signature not in self.signatures:
            raise RequestError(
                f"Serving signature name: \"{signature}\" not found in signature def "
                f"(available: {sorted(self.signatures)})"
            )
        return self.inputs[signature]

    def check_names(self, signature: str, names) -> None:
        specs = self.input_specs(signature)
        missing = sorted(set(specs) - set(names))
        extra = sorted(set(names) - set(specs))
        if missing or extra:
            raise RequestError(
                f"Input names do not match signature \"{signature}\": expected {sorted(specs)}, "
                f"missing {missing}, unexpected {extra}"
            )

    def run(self, signature: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run one signature on numpy inputs (already in the declared dtype), return numpy outputs.
        Requests are checked one by one, then batched with others when batching is enabled."""
        self.check_names(signature, inputs)
        for k, spec in self.inputs[signature].items():
            if not spec.shape.is_compatible_with(inputs[k].shape):
                raise RequestError(
                    f"Input \"{k}\" has shape {list(inputs[k].shape)}, signature expects {spec.shape}"
                )
        if self.batcher is None:
            return self._call(signature, inputs)
        try:
            return self.batcher.run(signature, inputs)
        except Overloaded as e:
            raise RequestError(str(e), 503, "UNAVAILABLE") from None

    def _call(self, signature: str, inputs: dict[str, Any]) -> dict[str, Any]:
        tf = self.tf
        fn = self.signatures[signature]
        tensors = {k: tf.constant(inputs[k], dtype=spec.dtype) for k, spec in self.inputs[signature].items()}
        try:
            out = fn(**tensors)
        except tf.errors.InvalidArgumentError as e:
            raise RequestError(e.message) from None
        except tf.errors.OpError as e:
            raise RequestError(e.message, 500, "INTERNAL") from None
        return {k: v.numpy() for k, v in out.items()}


def coerce_array(value: Any, dtype, what: str):
    """Turn a nested list / numpy array into a rectangular numpy array of the tf `dtype`."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if dtype.is_floating or dtype.is_integer or dtype.is_bool:
            if value.dtype == object or value.dtype.kind in "SU":
                raise RequestError(f"Input \"{what}\" must be {dtype.name}, got strings")
            return value.astype(dtype.as_numpy_dtype, copy=False)
        if dtype.name == "string":
            if value.dtype.kind in "SUO":
                return value
            raise RequestError(f"Input \"{what}\" must be strings, got {value.dtype}")
    flat: list = []
    shape = _flatten(value, flat, what)
    if dtype.name == "string":
        arr = np.empty(len(flat), dtype=object)
        arr[:] = [_to_bytes(v, what) for v in flat]
        return arr.reshape(shape)
    for v in flat:
        if isinstance(v, (str, bytes, dict)) or v is None:
            raise RequestError(f"Input \"{what}\" must be {dtype.name}, got {type(v).__name__} {v!r:.40}")
    try:
        return np.asarray(flat, dtype=dtype.as_numpy_dtype).reshape(shape)
    except (TypeError, ValueError, OverflowError) as e:
        raise RequestError(f"Input \"{what}\" cannot be converted to {dtype.name}: {e}") from None


def _flatten(value: Any, out: list, what: str) -> tuple[int, ...]:
    if isinstance(value, list):
        shapes = {_flatten(v, out, what) for v in value}
        if len(shapes) > 1:
            raise RequestError(f"Input \"{what}\" is ragged: lists at one depth must have equal lengths")
        inner = shapes.pop() if shapes else ()
        return (len(value), *inner)
    out.append(value)
    return ()


def _to_bytes(v: Any, what: str) -> bytes:
    if isinstance(v, dict):
        if set(v) != {"b64"} or not isinstance(v["b64"], str):
            raise RequestError(f"Input \"{what}\": binary values must be {{\"b64\": \"<base64>\"}}")
        try:
            return base64.b64decode(v["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"Input \"{what}\": invalid base64") from None
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, bytes):
        return v
    raise RequestError(f"Input \"{what}\" must be strings, got {type(v).__name__} {v!r:.40}")


def _jsonable(value: Any) -> Any:
    """numpy output → JSON value; bytes become UTF-8 text, or {"b64": ...} when not valid UTF-8."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind == "S":
            return _jsonable(value.tolist())
        return value.tolist()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------
# Server


class ModelServer:
    """Serves one model name from a versioned base path over REST and gRPC, in-process.

    Ports may be 0 (pick a free one; read `rest_port` / `grpc_port` after `start()`), or None to
    disable that protocol.
    """

    def __init__(
        self,
        model_base_path: str,
        model_name: str = "posters",
        rest_port: int | None = 8501,
        grpc_port: int | None = 8500,
        host: str = "127.0.0.1",
        poll_seconds: float = 2.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        grpc_workers: int = 8,
        batching: BatchingOptions | None = None,
    ):
        if not valid_model_name(model_name):
            raise ValueError(f"invalid model name {model_name!r} (allowed: letters, digits, _ . -; no '..')")
        self.base_path = os.path.abspath(model_base_path)
        self.model_name = model_name
        self.rest_port = rest_port
        self.grpc_port = grpc_port
        self.host = host
        self.poll_seconds = poll_seconds
        self.max_body_bytes = max_body_bytes
        self.grpc_workers = grpc_workers
        self.batching = batching
        self._model: LoadedModel | None = None
        self._failed: dict[int, tuple] = {}
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self._grpc = None
        self._threads: list[threading.Thread] = []

    # -- model management -------------------------------------------------------------------
    @property
    def model(self) -> LoadedModel | None:
        return self._model

    def poll_once(self) -> bool:
        """Load the newest complete version if it differs from the served one; True if swapped."""
        with self._load_lock:
            versions = [v for v in list_versions(self.base_path) if not self._still_failed(v)]
            if not versions:
                return False
            target = versions[-1]
            current = self._model
            if current is not None and current.version == target:
                return False
            path = os.path.join(self.base_path, str(target))
            t0 = time.perf_counter()
            try:
                model = LoadedModel(path, target)
            except Exception as e:
                self._failed[target] = _dir_fingerprint(path)
                log.error("failed to load %s version %d from %s: %s; keeping version %s",
                          self.model_name, target, path, e, current.version if current else None)
                return False
            self._failed.pop(target, None)
            if self.batching is not None:
                model.enable_batching(self.batching)
            # One reference swap: requests already running keep the old object until they finish.
            self._model = model
            if current is not None:  # its queued requests are answered by its own batch threads
                self._spawn(current.close, f"close-v{current.version}")
            log.info("serving %s version %d (%s signatures, loaded in %.2f s)",
                        self.model_name, target, len(model.signatures), time.perf_counter() - t0)
            return True

    def _still_failed(self, version: int) -> bool:
        fp = self._failed.get(version)
        if fp is None:
            return False
        return fp == _dir_fingerprint(os.path.join(self.base_path, str(version)))

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # never let the poller die
                log.exception("version poll failed")

    def resolve(self, name: str, version: int | None) -> LoadedModel:
        """The model object one request will use from start to finish."""
        if not valid_model_name(name):
            raise RequestError(f"Invalid model name: {name!r}")
        if name != self.model_name:
            raise _not_found(f"Servable not found for request: Latest({name})")
        model = self._model
        if model is None:
            raise _not_found(f"Servable not found for request: Latest({name}); no version loaded yet")
        if version is not None and version != model.version:
            raise _not_found(f"Servable not found for request: Specific({name}, {version})")
        return model

    # -- responses shared by REST and gRPC ---------------------------------------------------
    def status_dict(self, name: str, version: int | None) -> dict:
        model = self.resolve(name, version)
        return {"model_version_status": [{
            "version": str(model.version), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }]}

    def metadata_dict(self, name: str, version: int | None) -> dict:
        from google.protobuf import json_format

        model = self.resolve(name, version)
        sigs = json_format.MessageToDict(
            model.signature_def_map(), preserving_proto_field_name=True, including_default_value_fields=True
        )
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": sigs},
        }

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> ModelServer:
        """Load the newest version (if any), bind the ports and start serving in threads."""
        _import_scann()
        import tensorflow  # noqa: F401  (fail early, before binding ports)

        if not os.path.isdir(self.base_path):
            raise FileNotFoundError(f"model base path does not exist: {self.base_path}")
        self.poll_once()
        if self._model is None:
            log.warning("no loadable version under %s yet; polling every %.1f s",
                        self.base_path, self.poll_seconds)
        try:
            if self.rest_port is not None:
                self._http = _make_http_server(self, self.host, self.rest_port)
                self.rest_port = self._http.server_address[1]
                self._spawn(self._http.serve_forever, "rest")
            if self.grpc_port is not None:
                self._grpc, self.grpc_port = _make_grpc_server(self, self.host, self.grpc_port)
                self._grpc.start()
        except BaseException:
            self.stop()  # e.g. the gRPC port is taken: do not leave the REST thread running
            raise
        self._spawn(self._poll_loop, "poller")
        return self

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=f"posters-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait()
            self._grpc = None
        if self._model is not None:
            self._model.close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# REST


def _parse_predict_body(model: LoadedModel, body: bytes) -> tuple[str, dict, bool]:
    """Returns (signature, numpy inputs, row_format) from a TF Serving predict JSON body."""
    try:
        req = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(f"JSON Parse error: {e}") from None
    if not isinstance(req, dict):
        raise RequestError("JSON Value: request body must be a JSON object")
    sig = req.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(sig, str):
        raise RequestError("'signature_name' must be a string")
    specs = model.input_specs(sig)
    has_rows, has_cols = "instances" in req, "inputs" in req
    if has_rows == has_cols:
        raise RequestError("Missing 'inputs' or 'instances' key" if not has_rows
                           else "Not formatted correctly expecting only one of 'inputs' or 'instances' keys")
    if has_rows:
        rows = req["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError("'instances' must be a non-empty JSON list")
        if all(isinstance(r, dict) and "b64" not in r for r in rows):
            names = set(rows[0])
            if any(set(r) != names for r in rows):
                raise RequestError("Failed to process element: all 'instances' must have the same keys")
            columns = {n: [r[n] for r in rows] for n in names}
        elif len(specs) == 1:
            columns = {next(iter(specs)): rows}
        else:
            raise RequestError(
                f"'instances' must be JSON objects with keys {sorted(specs)} for signature \"{sig}\"")
    else:
        cols = req["inputs"]
        if isinstance(cols, dict) and not (set(cols) == {"b64"} and isinstance(cols.get("b64"), str)):
            columns = cols
        elif len(specs) == 1:
            columns = {next(iter(specs)): cols}
        else:
            raise RequestError(
                f"'inputs' must be a JSON object with keys {sorted(specs)} for signature \"{sig}\"")
    model.check_names(sig, columns)
    arrays = {n: coerce_array(v, specs[n].dtype, n) for n, v in columns.items()}
    return sig, arrays, has_rows


def _predict_response(outputs: dict, row_format: bool) -> dict:
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _jsonable(next(iter(outputs.values())))}
        return {"outputs": {k: _jsonable(v) for k, v in outputs.items()}}
    batch = {len(v) if getattr(v, "ndim", 0) else None for v in outputs.values()}
    if len(batch) != 1 or None in batch:
        raise RequestError("Outputs do not share a batch dimension; use the 'inputs' (columnar) format")
    if len(outputs) == 1:
        return {"predictions": _jsonable(next(iter(outputs.values())))}
    cols = {k: _jsonable(v) for k, v in outputs.items()}
    n = batch.pop()
    return {"predictions": [{k: c[i] for k, c in cols.items()} for i in range(n)]}


def _make_http_server(server: ModelServer, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "posters-local-server"

        def log_message(self, fmt, *args):  # quiet: the default writes every request to stderr
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _route(self):
            path = urlsplit(self.path).path
            m = _PATH_RE.match(path)
            if not m:
                raise _not_found(f"Malformed request: {self.command} {path}")
            name = unquote(m["name"])
            version = parse_version(unquote(m["version"])) if m["version"] is not None else None
            if not valid_model_name(name):
                raise RequestError(f"Invalid model name: {name!r}")
            return name, version, m["metadata"] is not None, m["verb"]

        def do_GET(self):
            try:
                name, version, metadata, verb = self._route()
                if verb is not None:
                    raise RequestError(f"Method not allowed: use POST for :{verb}", 405, "UNIMPLEMENTED")
                payload = (server.metadata_dict if metadata else server.status_dict)(name, version)
            except RequestError as e:
                return self._send(e.http_status, {"error": e.message})
            self._send(200, payload)

        def do_POST(self):
            try:
                body = self._read_body()
                name, version, metadata, verb = self._route()
                if metadata or verb is None:
                    raise RequestError("Method not allowed: use GET for status and metadata", 405,
                                       "UNIMPLEMENTED")
                if verb != "predict":
                    raise RequestError(f"Unsupported verb :{verb} (only :predict is served)", 400)
                model = server.resolve(name, version)
                sig, arrays, rows = _parse_predict_body(model, body)
                payload = _predict_response(model.run(sig, arrays), rows)
            except RequestError as e:
                return self._send(e.http_status, {"error": e.message})
            except Exception as e:  # a bug must not take the server down
                log.exception("predict failed")
                return self._send(500, {"error": f"Internal error: {e}"})
            self._send(200, payload)

        def _content_length(self) -> int:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True
                raise RequestError("Chunked request bodies are not supported; send Content-Length", 411)
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                self.close_connection = True
                raise RequestError("Invalid Content-Length") from None
            if n < 0:
                self.close_connection = True
                raise RequestError("Invalid Content-Length")
            return n

        def _read_body(self) -> bytes:
            n = self._content_length()
            if n > server.max_body_bytes:
                # Drain a moderately oversized body so the client reads our 413 instead of a reset;
                # beyond that, just hang up. Either way the connection is not reused.
                self.close_connection = True
                if n <= max(4 * server.max_body_bytes, 64 << 20):
                    left = n
                    while left > 0:
                        chunk = self.rfile.read(min(left, 1 << 20))
                        if not chunk:
                            break
                        left -= len(chunk)
                raise RequestError(
                    f"Request body of {n} bytes exceeds the limit of {server.max_body_bytes} bytes", 413,
                    "RESOURCE_EXHAUSTED")
            return self.rfile.read(n)

        def _method_not_allowed(self):
            self.close_connection = True
            self._send(405, {"error": f"Method {self.command} not allowed"})

        do_PUT = do_DELETE = do_PATCH = _method_not_allowed

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    return Server((host, port), Handler)


# ---------------------------------------------------------------------------------------------
# gRPC


def _make_grpc_server(server: ModelServer, host: str, port: int):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    def version_of(spec) -> int | None:
        return spec.version.value if spec.HasField("version") else None

    def guarded(fn):
        """Run a handler; map RequestError to a gRPC status (abort outside the try)."""
        def wrapper(self, request, context):
            try:
                return fn(self, request, context)
            except RequestError as e:
                err = e
            except Exception as e:
                log.exception("gRPC handler failed")
                err = RequestError(f"Internal error: {e}", 500, "INTERNAL")
            context.abort(getattr(grpc.StatusCode, err.grpc_code), err.message)
        return wrapper

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        @guarded
        def Predict(self, request, context):
            model = server.resolve(request.model_spec.name, version_of(request.model_spec))
            sig = request.model_spec.signature_name or DEFAULT_SIGNATURE
            specs = model.input_specs(sig)
            model.check_names(sig, request.inputs)
            arrays = {}
            for k, proto in request.inputs.items():
                try:
                    arr = tf.make_ndarray(proto)
                except Exception as e:
                    raise RequestError(f"Input \"{k}\": invalid TensorProto: {e}") from None
                arrays[k] = coerce_array(arr, specs[k].dtype, k)
            outputs = model.run(sig, arrays)
            wanted = list(request.output_filter) or list(outputs)
            unknown = [k for k in wanted if k not in outputs]
            if unknown:
                raise RequestError(f"output tensor alias not found in signature: {unknown}")
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = request.model_spec.name
            resp.model_spec.version.value = model.version
            resp.model_spec.signature_name = sig
            for k in wanted:
                resp.outputs[k].CopyFrom(tf.make_tensor_proto(outputs[k]))
            return resp

        @guarded
        def GetModelMetadata(self, request, context):
            model = server.resolve(request.model_spec.name, version_of(request.model_spec))
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise RequestError(f"Metadata field(s) {fields} not supported; only [\"signature_def\"]")
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            resp.model_spec.name = request.model_spec.name
            resp.model_spec.version.value = model.version
            resp.metadata["signature_def"].Pack(model.signature_def_map())
            return resp

    class Models(model_service_pb2_grpc.ModelServiceServicer):
        @guarded
        def GetModelStatus(self, request, context):
            model = server.resolve(request.model_spec.name, version_of(request.model_spec))
            resp = get_model_status_pb2.GetModelStatusResponse()
            st = resp.model_version_status.add()
            st.version = model.version
            st.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            st.status.SetInParent()  # error_code OK, as TF Serving sends it
            return resp

    max_msg = max(server.max_body_bytes, 4 << 20)
    g = grpc.server(
        futures.ThreadPoolExecutor(max_workers=server.grpc_workers, thread_name_prefix="posters-grpc"),
        options=[("grpc.max_receive_message_length", max_msg), ("grpc.max_send_message_length", max_msg)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), g)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), g)
    bound = g.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    return g, bound


# ---------------------------------------------------------------------------------------------
# CLI


def _exec_tfserving(args: argparse.Namespace) -> int:
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
        print("error: --engine tfserving needs `tensorflow_model_server` on PATH (see docs/serving.md: "
              "serving/docker/Dockerfile.scann); use --engine local here", file=sys.stderr)
        return 2
    if args.host not in ("0.0.0.0", ""):
        print(f"note: tensorflow_model_server binds all interfaces, not only {args.host}", file=sys.stderr)
    argv = [
        binary, f"--port={args.grpc_port}", f"--rest_api_port={args.rest_port}",
        f"--model_name={args.model_name}", f"--model_base_path={os.path.abspath(args.model_base_path)}",
        f"--file_system_poll_wait_seconds={max(1, int(round(args.poll_seconds)))}",
    ]
    if getattr(args, "enable_batching", False):
        argv.append("--enable_batching=true")
        if args.batching_parameters_file:
            argv.append(f"--batching_parameters_file={os.path.abspath(args.batching_parameters_file)}")
    sys.stdout.flush()
    os.execv(binary, argv)
    return 0  # pragma: no cover


def main(args: argparse.Namespace) -> int:
    """`posters serve`: run until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO if not getattr(args, "verbose", False) else logging.DEBUG,
                        format="%(asctime)s %(levelname)s %(message)s")
    if not valid_model_name(args.model_name):
        print(f"error: invalid --model-name {args.model_name!r}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.model_base_path):
        print(f"error: --model-base-path {args.model_base_path} is not a directory", file=sys.stderr)
        return 2
    if getattr(args, "engine", "local") == "tfserving":
        return _exec_tfserving(args)
    batching = None
    if getattr(args, "enable_batching", False):
        try:
            batching = (BatchingOptions.from_file(args.batching_parameters_file)
                        if args.batching_parameters_file else BatchingOptions())
        except (OSError, ValueError) as e:
            print(f"error: --batching-parameters-file: {e}", file=sys.stderr)
            return 2
    srv = ModelServer(
        args.model_base_path, args.model_name, rest_port=args.rest_port, grpc_port=args.grpc_port,
        host=args.host, poll_seconds=args.poll_seconds,
        max_body_bytes=getattr(args, "max_body_bytes", None) or DEFAULT_MAX_BODY_BYTES,
        batching=batching,
    )
    try:
        srv.start()
    except (OSError, RuntimeError) as e:  # port in use, unreadable base path
        print(f"error: cannot start the server: {e}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    version = srv.model.version if srv.model else "none yet"
    print(f"serving {args.model_name} (version {version}) from {srv.base_path}", flush=True)
    print(f"REST: http://{srv.host}:{srv.rest_port}/v1/models/{args.model_name}", flush=True)
    print(f"gRPC: {srv.host}:{srv.grpc_port}", flush=True)
    if batching is not None:
        print(f"batching: up to {batching.max_batch_size} rows, {batching.batch_timeout_micros} µs timeout, "
              f"{batching.num_batch_threads} threads", flush=True)
    while not done.wait(0.5):
        pass
    srv.stop()
    print("stopped", flush=True)
    return 0

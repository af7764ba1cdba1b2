"""ModelServer: the models (one ModelVersions each), the poller, REST + gRPC front ends, drain."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from poster_similarity.core.scann_ops import register_scann_ops
from poster_similarity.serving.batching import BatchingOptions
from poster_similarity.serving.server.config import ModelConfig, read_model_config, valid_model_name
from poster_similarity.serving.server.errors import bad_request, not_found, unavailable
from poster_similarity.serving.server.limits import Limits
from poster_similarity.serving.server.metrics import Metrics
from poster_similarity.serving.server.model import LoadedModel
from poster_similarity.serving.server.versions import ModelVersions, RetryPolicy

log = logging.getLogger("posters.serving")


class ModelServer:
    """Serves models from versioned base paths over REST and gRPC, in-process.

    Args:
        model_base_path: versioned base path of the one model (ignored with `model_config_file`).
        model_name: its name.
        rest_port / grpc_port: 0 picks a free port (read them after `start()`); None disables.
        host: bind address (loopback by default).
        poll_seconds: how often version directories and the config file are re-read.
        max_body_bytes: REST body limit (shortcut for `limits.max_body_bytes`).
        grpc_workers: gRPC worker threads (shortcut for `limits.grpc_max_threads`).
        batching: server-side batching options, or None.
        model_config_file: TF Serving ModelServerConfig text proto (several models, policies, labels).
        limits: all resource limits (serving.server.limits.Limits).
        retry: load retry policy.
        warmup: replay each version's warm-up file before it serves (only tests turn this off).
    """

    def __init__(self, model_base_path: str | None = None, model_name: str = "posters",
                 rest_port: int | None = 8501, grpc_port: int | None = 8500, host: str = "127.0.0.1",
                 poll_seconds: float = 2.0, max_body_bytes: int | None = None, grpc_workers: int | None = None,
                 batching: BatchingOptions | None = None, model_config_file: str | None = None,
                 limits: Limits | None = None, retry: RetryPolicy | None = None, warmup: bool = True):
        limits = limits or Limits()
        overrides = {}
        if max_body_bytes is not None:
            overrides["max_body_bytes"] = max_body_bytes
        if grpc_workers is not None:
            overrides["grpc_max_threads"] = grpc_workers
        if overrides:
            from dataclasses import replace

            limits = replace(limits, **overrides)
        self.limits = limits
        self.model_config_file = os.path.abspath(model_config_file) if model_config_file else None
        if self.model_config_file:
            configs = read_model_config(self.model_config_file)
        else:
            if model_base_path is None:
                raise ValueError("give model_base_path or model_config_file")
            configs = [ModelConfig(model_name, os.path.abspath(model_base_path))]
        self._config_stamp = self._stamp()
        self.rest_port, self.grpc_port, self.host = rest_port, grpc_port, host
        self.poll_seconds = poll_seconds
        self.batching = batching
        self.retry = retry or RetryPolicy()
        self.warmup = warmup
        self.models: dict[str, ModelVersions] = {}
        self._apply_configs(configs)
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self.draining = threading.Event()
        self._inflight = 0
        self._inflight_cv = threading.Condition()
        self.metrics = Metrics()
        self._http = None
        self._http_serving = False  # serve_forever started (shutdown() would wait forever otherwise)
        self._grpc = None
        self._threads: list[threading.Thread] = []

    # -- single-model conveniences (the CLI, tests, benchmarks) ------------------------------
    @property
    def model_name(self) -> str:
        return next(iter(self.models))

    @property
    def base_path(self) -> str:
        return self.models[self.model_name].config.base_path

    @property
    def max_body_bytes(self) -> int:
        return self.limits.max_body_bytes

    @property
    def model(self) -> LoadedModel | None:
        """The newest AVAILABLE version of the first model (None before one loads)."""
        mv = self.models[self.model_name]
        vs = mv.available_versions()
        return mv._available.get(vs[-1]) if vs else None

    # -- configuration ----------------------------------------------------------------------
    def _apply_configs(self, configs: list[ModelConfig]) -> None:
        new = {}
        for c in configs:
            mv = self.models.get(c.name)
            if mv is None:
                mv = ModelVersions(c, self.limits, self.batching, self.retry, self.warmup)
            else:
                mv.config = c
            new[c.name] = mv
        dropped = [mv for name, mv in self.models.items() if name not in new]
        self.models = new
        for mv in dropped:
            log.info("model %s left the config: unloading its versions", mv.name)
            threading.Thread(target=mv.unload_all, daemon=True).start()

    def _stamp(self):
        if not self.model_config_file:
            return None
        try:
            st = os.stat(self.model_config_file)
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def reload_config_if_changed(self) -> bool:
        stamp = self._stamp()
        if stamp is None or stamp == self._config_stamp:
            return False
        self._config_stamp = stamp
        try:
            configs = read_model_config(self.model_config_file)
        except (OSError, ValueError) as e:
            log.error("model config %s changed but cannot be used (%s); keeping the previous one",
                      self.model_config_file, e)
            return False
        self._apply_configs(configs)
        log.info("model config %s reloaded: %s", self.model_config_file, sorted(self.models))
        return True

    # -- versions ---------------------------------------------------------------------------
    def poll_once(self) -> bool:
        """Re-read the config file and every model's versions; True if anything changed."""
        with self._poll_lock:
            changed = self.reload_config_if_changed()
            for mv in list(self.models.values()):
                changed |= mv.poll()
            return changed

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # never let the poller die
                log.exception("version poll failed")

    def versions_of(self, name: str) -> ModelVersions:
        if not valid_model_name(name):
            raise bad_request(f"Invalid model name: {name!r}")
        mv = self.models.get(name)
        if mv is None:
            raise not_found(f"Servable not found for request: Latest({name})")
        return mv

    @contextlib.contextmanager
    def serving(self, name: str, version: int | None = None, label: str | None = None, counted: bool = False):
        """Hold one version of `name` for one request (refused with 503 while draining).

        Args:
            name / version / label: which model version.
            counted: the caller already holds `request()` (REST holds it until the answer is written).
        """
        mv = self.versions_of(name)
        with contextlib.nullcontext() if counted else self.request():
            model = mv.acquire(version, label)
            try:
                yield model
            finally:
                model.release()

    @property
    def inflight(self) -> int:
        """Requests accepted and not yet answered (what a drain waits for)."""
        return self._inflight

    @contextlib.contextmanager
    def request(self):
        """Count one in-flight request; refuse new ones once draining."""
        with self._inflight_cv:
            if self.draining.is_set():
                raise unavailable("Server is shutting down")
            self._inflight += 1
        try:
            yield
        finally:
            with self._inflight_cv:
                self._inflight -= 1
                self._inflight_cv.notify_all()

    # -- responses shared by REST and gRPC ---------------------------------------------------
    def status_dict(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        return {"model_version_status": self.versions_of(name).status(version, label)}

    def metadata_dict(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        from google.protobuf import json_format

        with self.serving(name, version, label) as model:
            sigs = json_format.MessageToDict(model.signature_def_map(), preserving_proto_field_name=True,
                                             including_default_value_fields=True)
            return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
                    "metadata": {"signature_def": sigs}}

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> ModelServer:
        """Bind both ports, then load what the policies want (if anything is there yet), then serve in threads.

        The ports come first: a busy one is refused (PortError) in a second, before TensorFlow is
        imported or a model loads, and nothing is served until the first load is done (connections
        made meanwhile wait in the listen backlog, as during any load).
        """
        for mv in self.models.values():
            if not os.path.isdir(mv.config.base_path):
                raise FileNotFoundError(f"model base path does not exist: {mv.config.base_path}")
        try:
            self._bind()
            register_scann_ops()
            import tensorflow  # noqa: F401  (fail early, before loading)

            if self._grpc is not None:
                from poster_similarity.serving.server.grpc_service import add_services

                add_services(self._grpc, self)
            self.poll_once()
            for mv in self.models.values():
                if not mv.available_versions():
                    log.warning("%s: no loadable version under %s yet; polling every %.1f s", mv.name,
                                mv.config.base_path, self.poll_seconds)
            if self._http is not None:
                self._spawn(self._http.serve_forever, "rest")
                self._http_serving = True
            if self._grpc is not None:
                self._grpc.start()
        except BaseException:
            self.stop()  # release the ports and whatever loaded
            raise
        self._spawn(self._poll_loop, "poller")
        return self

    def _bind(self) -> None:
        """Bind the REST socket and the gRPC port (exclusively: ports.py); PortError names a busy one."""
        from poster_similarity.serving.server.grpc_service import bind_grpc_server
        from poster_similarity.serving.server.rest import make_http_server

        if self.rest_port is not None:
            self._http = make_http_server(self, self.host, self.rest_port)
            self.rest_port = self._http.server_address[1]
        if self.grpc_port is not None:
            self._grpc, self.grpc_port = bind_grpc_server(self.limits, self.host, self.grpc_port)
        log.debug("bound REST %s:%s and gRPC %s:%s", self.host, self.rest_port, self.host, self.grpc_port)

    def _close_http(self) -> None:
        """Stop accepting REST connections (shutdown() only once serve_forever was started: it waits for it)."""
        if self._http_serving:
            self._http.shutdown()
        self._http.server_close()

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=f"posters-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def drain(self, timeout_s: float | None = None) -> bool:
        """Stop taking requests, let in-flight ones finish (True) or give up after the timeout (False)."""
        timeout_s = self.limits.drain_timeout_s if timeout_s is None else timeout_s
        end = time.monotonic() + timeout_s
        self.draining.set()
        if self._http is not None:  # close the listening socket: new connections are refused
            self._close_http()
        grpc_done = self._grpc.stop(grace=timeout_s) if self._grpc is not None else None
        with self._inflight_cv:
            if self._inflight:
                log.info("drain: waiting for %d in-flight requests (at most %.1f s)", self._inflight, timeout_s)
            while self._inflight > 0 and time.monotonic() < end:
                self._inflight_cv.wait(max(0.0, end - time.monotonic()))
            left = self._inflight
        if grpc_done is not None:
            grpc_done.wait(max(0.0, end - time.monotonic()))
        if left:
            log.warning("drain: %d requests still running after %.1f s", left, timeout_s)
        return left == 0

    def stop(self) -> None:
        self._stop.set()
        self.draining.set()
        if self._http is not None:
            self._close_http()
            self._http.close_all()
            self._http = None
            self._http_serving = False
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait()
            self._grpc = None
        for mv in self.models.values():
            for m in list(mv._available.values()):
                m.close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

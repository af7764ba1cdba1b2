"""The versions of one model: which to load (policy), loading + warm-up, retries, labels, unloading.

Like TF Serving's AspiredVersionsManager with the availability-preserving policy: a new version is
loaded and warmed up while the old one answers; the old one leaves the routing table only once a
wanted version is AVAILABLE, and is unloaded when its in-flight requests are done. A version that
fails to load is listed in the status (state END, with its error), never served, and retried with
exponential backoff, or at once when its files change (fingerprint taken before loading).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from poster_similarity.serving.batching import BatchingOptions
from poster_similarity.serving.server.config import ModelConfig
from poster_similarity.serving.server.errors import RequestError, not_found
from poster_similarity.serving.server.limits import Limits
from poster_similarity.serving.server.model import LoadedModel
from poster_similarity.serving.server.warmup import warm_up

log = logging.getLogger("posters.serving")


def scan_versions(base_path: str) -> dict[int, str]:
    """Complete version directories: {version: real directory name}.

    A directory counts when its name is all digits (leading zeros allowed, as in TF Serving) and it
    holds saved_model.pb (without it, it is still being written).
    """
    try:
        names = os.listdir(base_path)
    except OSError:
        return {}
    out: dict[int, str] = {}
    for n in sorted(names):
        if n.isdigit() and os.path.isfile(os.path.join(base_path, n, "saved_model.pb")):
            v = int(n)
            if v in out:
                log.warning("%s: directories %s and %s are both version %d; using %s", base_path, out[v], n, v,
                            out[v])
                continue
            out[v] = n
    return out


def list_versions(base_path: str) -> list[int]:
    """Complete version numbers under `base_path`, ascending."""
    return sorted(scan_versions(base_path))


def dir_fingerprint(path: str) -> tuple:
    """Changes when files are added, removed or rewritten."""
    items = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            items.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(items))


@dataclass
class Failure:
    fingerprint: tuple
    error: str
    attempts: int = 1
    next_retry: float = 0.0


@dataclass
class RetryPolicy:
    """TF Serving's --max_num_load_retries / --load_retry_interval_micros, with doubling intervals."""

    max_retries: int = 5
    interval_s: float = 60.0
    max_interval_s: float = 600.0

    def delay(self, attempts: int) -> float:
        return min(self.max_interval_s, self.interval_s * 2 ** max(0, attempts - 1))


@dataclass
class ModelVersions:
    """State of one served model name. Thread-safe: requests resolve while the poller loads."""

    config: ModelConfig
    limits: Limits = field(default_factory=Limits)
    batching: BatchingOptions | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    warmup: bool = True

    def __post_init__(self):
        self._lock = threading.Lock()
        self._available: dict[int, LoadedModel] = {}
        self._loading: set[int] = set()
        self._failed: dict[int, Failure] = {}

    @property
    def name(self) -> str:
        return self.config.name

    # -- requests ---------------------------------------------------------------------------
    def acquire(self, version: int | None = None, label: str | None = None) -> LoadedModel:
        """The model one request uses from start to finish; call `release()` on it afterwards.

        Args:
            version: a specific version, or None for the newest AVAILABLE one.
            label: a version label from the config (e.g. "stable"); excludes `version`.

        Returns:
            The LoadedModel, its in-flight count raised.
        """
        with self._lock:
            if label is not None:
                if label not in self.config.labels:
                    raise not_found(f"Servable not found for request: Label({self.name}, {label}): "
                                    f"unknown label (labels: {sorted(self.config.labels)})")
                version = self.config.labels[label]
            if version is None:
                if not self._available:
                    raise not_found(f"Servable not found for request: Latest({self.name}); no version is "
                                    "AVAILABLE yet")
                model = self._available[max(self._available)]
            else:
                model = self._available.get(version)
                if model is None:
                    what = f"Label({self.name}, {label})" if label else f"Specific({self.name}, {version})"
                    raise not_found(f"Servable not found for request: {what}")
            model.acquire()
            return model

    def status(self, version: int | None = None, label: str | None = None) -> list[dict]:
        """TF Serving's `model_version_status` entries (REST JSON form), newest first."""
        if label is not None:
            if label not in self.config.labels:
                raise not_found(f"Servable not found for request: Label({self.name}, {label})")
            version = self.config.labels[label]
        with self._lock:
            entries = {v: ("AVAILABLE", "OK", "") for v in self._available}
            entries.update({v: ("LOADING", "OK", "") for v in self._loading if v not in entries})
            entries.update({v: ("END", "UNKNOWN", f.error) for v, f in self._failed.items() if v not in entries})
        if version is not None:
            entries = {v: e for v, e in entries.items() if v == version}
        if not entries:
            what = f"Specific({self.name}, {version})" if version is not None else f"Latest({self.name})"
            raise not_found(f"Could not find any versions of model {self.name}" if version is None
                            else f"Servable not found for request: {what}")
        return [{"version": str(v), "state": s, "status": {"error_code": c, "error_message": m}}
                for v, (s, c, m) in sorted(entries.items(), reverse=True)]

    def available_versions(self) -> list[int]:
        with self._lock:
            return sorted(self._available)

    def failed_versions(self) -> dict[int, str]:
        with self._lock:
            return {v: f.error for v, f in self._failed.items()}

    # -- polling ----------------------------------------------------------------------------
    def wanted(self, on_disk: dict[int, str]) -> list[int]:
        p = self.config
        if p.policy == "all":
            return sorted(on_disk)
        if p.policy == "specific":
            return sorted(v for v in p.versions if v in on_disk)
        return sorted(on_disk)[-p.num_versions:]

    def poll(self) -> bool:
        """Load wanted versions, unload unwanted ones (only once a wanted one serves). True on change."""
        on_disk = scan_versions(self.config.base_path)
        changed = False
        with self._lock:  # deleted failed versions leave the status
            for v in sorted(set(self._failed) - set(on_disk)):
                self._failed.pop(v, None)
        if self.config.policy == "latest":
            # The newest N versions that load: a failed one is skipped (and retried when due), so a
            # bad push, or a deleted newest version, falls back to the next older one (rollback).
            wanted = []
            for v in sorted(on_disk, reverse=True):
                if len(wanted) == self.config.num_versions:
                    break
                if v not in self._available and self._should_try(v, on_disk[v]):
                    changed |= self._load(v, os.path.join(self.config.base_path, on_disk[v]))
                if v in self._available:
                    wanted.append(v)
        else:
            wanted = self.wanted(on_disk)
            for v in reversed(wanted):  # newest first
                if v not in self._available and self._should_try(v, on_disk[v]):
                    changed |= self._load(v, os.path.join(self.config.base_path, on_disk[v]))
        with self._lock:
            serving_wanted = any(v in self._available for v in wanted)
            retire = [v for v in self._available if v not in wanted] if serving_wanted else []
            if not on_disk:  # the model's directory is empty or gone: TF Serving unloads everything
                retire = list(self._available)
            retired = [self._available.pop(v) for v in retire]
        for m in retired:
            log.info("%s version %d: no longer wanted; unloading once its %d in-flight requests finish",
                     self.name, m.version, m.inflight)
            threading.Thread(target=self._unload, args=(m,), name=f"posters-unload-{m.version}", daemon=True).start()
        return changed or bool(retired)

    def _should_try(self, version: int, dirname: str) -> bool:
        f = self._failed.get(version)
        if f is None:
            return True
        if f.fingerprint != dir_fingerprint(os.path.join(self.config.base_path, dirname)):
            return True  # the files changed: try again now
        return f.attempts <= self.retry.max_retries and time.monotonic() >= f.next_retry

    def _load(self, version: int, path: str) -> bool:
        fingerprint = dir_fingerprint(path)  # before loading: a rewrite during the load is seen next poll
        with self._lock:
            self._loading.add(version)
        t0 = time.perf_counter()
        model = None
        try:
            model = LoadedModel(path, version)
            if self.warmup:
                warm_up(model, self.limits)
            if self.batching is not None:
                model.enable_batching(self.batching)
        except Exception as e:  # noqa: BLE001 — any failure marks the version failed
            if model is not None:
                model.close()
            prev = self._failed.get(version)
            attempts = prev.attempts + 1 if prev and prev.fingerprint == fingerprint else 1
            msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            with self._lock:
                self._failed[version] = Failure(fingerprint, msg, attempts,
                                                time.monotonic() + self.retry.delay(attempts))
                self._loading.discard(version)
            serving = self.available_versions()
            log.error("%s version %d (%s) failed to load (attempt %d of %d): %s; serving %s", self.name, version,
                      path, attempts, self.retry.max_retries + 1, msg, serving or "nothing")
            return True
        with self._lock:
            self._loading.discard(version)
            self._available[version] = model
            self._failed.pop(version, None)
        log.info("%s version %d AVAILABLE from %s (%d signatures, loaded and warmed up in %.2f s)", self.name,
                 version, path, len(model.signatures), time.perf_counter() - t0)
        return True

    def _unload(self, model: LoadedModel) -> None:
        if not model.wait_idle(self.limits.drain_timeout_s):
            log.warning("%s version %d: %d requests still running after %.0f s; unloading anyway", self.name,
                        model.version, model.inflight, self.limits.drain_timeout_s)
        model.close()
        log.info("%s version %d unloaded", self.name, model.version)

    def unload_all(self) -> None:
        with self._lock:
            models = list(self._available.values())
            self._available.clear()
        for m in models:
            self._unload(m)


def parse_version(text) -> int | None:
    """A version from a URL or proto: None when empty, 400 when not a non-negative integer."""
    if text is None or text == "":
        return None
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise RequestError(f"Malformed version: {text!r} (versions are integers)") from None
    if v < 0:
        raise RequestError(f"Malformed version: {text!r}")
    return v

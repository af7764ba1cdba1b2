"""Server-side request batching for the local server, configured like TF Serving's
(`--enable_batching --batching_parameters_file=serving/config/batching_parameters.txt`).

Concurrent requests to one signature wait up to `batch_timeout_micros` for company, are
concatenated along dimension 0 (at most `max_batch_size` rows) and run as one call; the outputs are
split back by row counts. Why: every signature call pays a fixed cost (dispatch, the index search
set-up) that a batched call pays once — measured in bench/serving.py.

As in TF Serving, dimension 0 of every input is the batch and rows are independent. Differences:
requests whose trailing shapes differ are not padded to one shape (they run in separate calls),
`allowed_batch_sizes` is not used (no padding to fixed sizes: no XLA or GPU here), and a call whose
outputs are not row-aligned marks that signature unbatched for good. A failing batched call (one
corrupt image) is retried request by request, so a bad request fails alone and loses nobody else's.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

RunFn = Callable[[str, dict[str, Any]], dict[str, Any]]


class Overloaded(Exception):
    """The queue holds `max_enqueued_batches` full batches already (TF Serving answers UNAVAILABLE)."""


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or v < (0 if f.name == "batch_timeout_micros" else 1):
                raise ValueError(f"batching parameter {f.name} must be a positive integer, got {v!r}")

    @classmethod
    def from_file(cls, path: str) -> BatchingOptions:
        """A BatchingParameters text proto (TF Serving's format; unknown fields are errors)."""
        from google.protobuf import text_format

        from poster_similarity.serving.tfs_protos import batching_parameters_cls, parse_text

        try:
            msg = parse_text(path, batching_parameters_cls())
        except text_format.ParseError as e:
            raise ValueError(f"{path}: {e}") from None
        return cls(**{f.name: int(getattr(msg, f.name).value) for f in fields(cls) if msg.HasField(f.name)})


class _Task:
    __slots__ = ("signature", "inputs", "rows", "key", "enqueued", "done", "result", "error")

    def __init__(self, signature: str, inputs: dict[str, np.ndarray], rows: int):
        self.signature, self.inputs, self.rows = signature, inputs, rows
        self.key = (signature, tuple((k, a.dtype.str, a.shape[1:]) for k, a in sorted(inputs.items())))
        self.enqueued = time.perf_counter()
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None


def batch_rows(inputs: dict[str, Any]) -> int | None:
    """The shared dimension 0 of all inputs, or None when they have none (scalars, mismatches)."""
    sizes = {a.shape[0] if getattr(a, "ndim", 0) >= 1 else None for a in inputs.values()}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


class Batcher:
    """Queues requests per (signature, trailing shapes) and runs them in merged calls of `run_fn`."""

    def __init__(self, run_fn: RunFn, options: BatchingOptions):
        self._run_fn, self.options = run_fn, options
        self._queue: list[_Task] = []
        self._cv = threading.Condition()
        self._closed = False
        self._unbatchable: set[str] = set()
        self.stats = {"calls": 0, "requests": 0, "rows": 0, "retried_alone": 0}
        self._threads = [threading.Thread(target=self._loop, name=f"posters-batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for t in self._threads:
            t.start()

    def run(self, signature: str, inputs: dict[str, Any]) -> dict[str, Any]:
        rows = batch_rows(inputs)
        if rows is None or rows == 0 or rows > self.options.max_batch_size or signature in self._unbatchable:
            return self._run_fn(signature, inputs)
        task = _Task(signature, inputs, rows)
        with self._cv:
            closed = self._closed  # read under the lock: the threads only exit on an empty, closed queue
            if not closed:
                if len(self._queue) >= self.options.max_enqueued_batches * self.options.max_batch_size:
                    raise Overloaded(f"batch queue full ({len(self._queue)} requests waiting)")
                self._queue.append(task)
                self._cv.notify()
        if closed:  # a request that resolved a version just replaced: run it directly
            return self._run_fn(signature, inputs)
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def close(self) -> None:
        """Run what is queued, then stop the threads (a replaced model version drains this way)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=30)

    # -- batch threads ----------------------------------------------------------------------
    def _take(self) -> list[_Task] | None:
        timeout = self.options.batch_timeout_micros / 1e6
        cap = self.options.max_batch_size
        with self._cv:
            while True:
                if not self._queue:
                    if self._closed:
                        return None
                    self._cv.wait(0.5)
                    continue
                first = self._queue[0]  # re-read each time: another thread may have taken it
                rows = sum(t.rows for t in self._queue if t.key == first.key)
                wait = first.enqueued + timeout - time.perf_counter()
                if rows >= cap or wait <= 0 or self._closed:
                    batch, keep, total = [], [], 0
                    for t in self._queue:
                        if t.key == first.key and total + t.rows <= cap:
                            batch.append(t)
                            total += t.rows
                        else:
                            keep.append(t)
                    self._queue = keep
                    return batch
                self._cv.wait(wait)

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            self._execute(batch)

    def _execute(self, batch: list[_Task]) -> None:
        sig = batch[0].signature
        self.stats["calls"] += 1
        self.stats["requests"] += len(batch)
        self.stats["rows"] += sum(t.rows for t in batch)
        try:
            if len(batch) == 1:
                batch[0].result = self._run_fn(sig, batch[0].inputs)
            else:
                merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
                out = self._run_fn(sig, merged)
                total = sum(t.rows for t in batch)
                if not all(np.ndim(v) >= 1 and np.shape(v)[0] == total for v in out.values()):
                    self._unbatchable.add(sig)
                    raise ValueError(f"outputs of {sig!r} are not row-aligned; not batching it")
                start = 0
                for t in batch:
                    t.result = {k: v[start:start + t.rows] for k, v in out.items()}
                    start += t.rows
        except BaseException as e:  # noqa: BLE001 — every waiting request must be answered
            if len(batch) == 1:
                batch[0].error = e
            else:
                self._retry_alone(batch)
        for t in batch:
            t.done.set()

    def _retry_alone(self, batch: list[_Task]) -> None:
        self.stats["retried_alone"] += len(batch)
        for t in batch:
            try:
                t.result = self._run_fn(t.signature, t.inputs)
            except BaseException as e:  # noqa: BLE001
                t.error = e

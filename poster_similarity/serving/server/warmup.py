"""Warm-up: replay `assets.extra/tf_serving_warmup_requests` before a version gets traffic.

The file is TF Serving's format: a TFRecord file of serialized `PredictionLog`s, each with a
`predict_log.request` (a PredictRequest). Requests are replayed one after another, and the version
fails to load when one fails; TF Serving does the same (saved_model_warmup_util.cc, at most 1,000
records).

Why sequentially, before any traffic: ScaNN's `TensorsToScann` kernel initialises a searcher
resource that all kernel instances of one loaded version share by name, under a per-kernel lock. Two
first calls that overlap (two signatures, or one function instantiated twice) initialise it at the
same time: one can read a half-written config ("Must specify num_neighbors and/or
epsilon_distance") or search a searcher the other just freed (SIGSEGV; reproduced in
tests/test_scann_first_call_race.py). One call per signature, one at a time, initialises it once; later kernels see it
initialised and skip.

Without a warm-up file each signature is called once on an empty batch (dimension 0 = 0, other
unknown dimensions 0), which runs the same initialisation; a signature that cannot take an empty
batch is logged as a warning and left cold.
"""
from __future__ import annotations

import logging
import os
import struct
import time

from poster_similarity.serving.server.codec import DEFAULT_SIGNATURE
from poster_similarity.serving.server.limits import Limits
from poster_similarity.serving.server.tensors import tensor_to_array

log = logging.getLogger("posters.serving")

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TF Serving's kMaxNumRecords
MAX_RECORD_BYTES = 64 << 20


class WarmupError(Exception):
    """A warm-up request failed; the version must not serve."""


def read_records(path: str, max_records: int = MAX_RECORDS):
    """Yield the records of a TFRecord file (length + masked CRC framing; CRCs are not verified).

    Args:
        path: the TFRecord file.
        max_records: stop with an error beyond this many records.

    Yields:
        Each record's bytes.
    """
    with open(path, "rb") as f:
        for i in range(max_records + 1):
            head = f.read(12)
            if not head:
                return
            if i == max_records:
                raise WarmupError(f"{path}: more than {max_records} warm-up records")
            if len(head) < 12:
                raise WarmupError(f"{path}: truncated record header at record {i}")
            (length,) = struct.unpack("<Q", head[:8])
            if length > MAX_RECORD_BYTES:
                raise WarmupError(f"{path}: record {i} declares {length} bytes")
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                raise WarmupError(f"{path}: truncated record {i}")
            yield data


def write_records(path: str, records) -> None:
    """Write records in TFRecord framing (with real CRCs), for tests and tools without TFX."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as w:
        for r in records:
            w.write(r)


def warm_up(model, limits: Limits | None = None) -> int:
    """Replay the version's warm-up file sequentially (or empty batches when it has none).

    Args:
        model: the freshly loaded LoadedModel (not yet serving).
        limits: caps applied to the replayed TensorProtos, as to client requests.

    Returns:
        The number of warm-up calls made.

    Raises:
        WarmupError: a recorded request failed (the version must be marked failed).
    """
    limits = limits or Limits()
    path = os.path.join(model.path, WARMUP_FILE)
    t0 = time.perf_counter()
    if not os.path.isfile(path):
        n = _warm_up_empty_batches(model)
        log.warning("warm-up of version %d: no %s; called %d signatures on empty batches (%.2f s)",
                    model.version, WARMUP_FILE, n, time.perf_counter() - t0)
        return n
    from tensorflow_serving.apis import prediction_log_pb2

    n = 0
    for i, record in enumerate(read_records(path)):
        try:
            entry = prediction_log_pb2.PredictionLog.FromString(record)
        except Exception as e:  # noqa: BLE001 — DecodeError and friends
            raise WarmupError(f"warm-up record {i}: not a PredictionLog: {e}") from None
        if entry.WhichOneof("log_type") != "predict_log":
            raise WarmupError(f"warm-up record {i}: {entry.WhichOneof('log_type')} is not supported "
                              "(only predict_log)")
        req = entry.predict_log.request
        sig = req.model_spec.signature_name or DEFAULT_SIGNATURE
        try:
            specs = model.input_specs(sig)
            model.check_names(sig, req.inputs)
            arrays = {k: tensor_to_array(p, specs[k], k, limits) for k, p in req.inputs.items()}
            model._call(sig, arrays)
        except Exception as e:  # noqa: BLE001 — any failure fails the version
            raise WarmupError(f"warm-up record {i} ({sig}) failed: {getattr(e, 'message', e)}") from None
        n += 1
    log.info("warm-up of version %d: replayed %d requests from %s in %.2f s",
             model.version, n, WARMUP_FILE, time.perf_counter() - t0)
    return n


def _warm_up_empty_batches(model) -> int:
    import numpy as np

    n = 0
    for sig, specs in sorted(model.inputs.items()):
        arrays = {}
        for k, spec in specs.items():
            dims = [0 if d is None else d for d in (spec.shape.as_list() if spec.shape.rank is not None else [0])]
            dtype = object if spec.dtype.name == "string" else spec.dtype.as_numpy_dtype
            arrays[k] = np.zeros(dims, dtype=dtype) if dtype is not object else np.empty(dims, dtype=object)
        try:
            model._call(sig, arrays)
            n += 1
        except Exception as e:  # noqa: BLE001 — best effort without a warm-up file
            log.warning("warm-up of version %d: %s on an empty batch failed (%s); left cold",
                        model.version, sig, getattr(e, "message", e))
    return n

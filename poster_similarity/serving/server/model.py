"""One loaded model version: signature functions, their specs, in-flight accounting, inference."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from poster_similarity.serving.batching import Batcher, BatchingOptions, Overloaded
from poster_similarity.serving.server.errors import RequestError, bad_request, from_tf_error, unavailable

log = logging.getLogger("posters.serving")


class LoadedModel:
    """One loaded version: signature functions plus their declared input/output specs.

    Args:
        path: the version directory (its real name, e.g. `<base>/0003`).
        version: the version number parsed from the directory name.
    """

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
        self._inflight = 0
        self._idle = threading.Condition()

    def enable_batching(self, options: BatchingOptions) -> None:
        self.batcher = Batcher(self._call, options)

    # -- in-flight accounting: a replaced version is unloaded only when nobody uses it ----------
    def acquire(self) -> None:
        with self._idle:
            self._inflight += 1

    def release(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    @property
    def inflight(self) -> int:
        return self._inflight

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request uses this version (True) or the timeout passes (False)."""
        end = time.monotonic() + timeout_s
        with self._idle:
            while self._inflight > 0:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

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
            raise bad_request(
                f"Serving signature name: \"{signature}\" not found in signature def "
                f"(available: {sorted(self.signatures)})")
        return self.inputs[signature]

    def check_names(self, signature: str, names) -> None:
        specs = self.input_specs(signature)
        missing = sorted(set(specs) - set(names))
        extra = sorted(set(names) - set(specs))
        if missing or extra:
            raise bad_request(
                f"Input names do not match signature \"{signature}\": expected {sorted(specs)}, "
                f"missing {missing}, unexpected {extra}")

    def run(self, signature: str, inputs: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
        """Run one signature on numpy inputs (already in the declared dtype).

        Args:
            signature: signature name.
            inputs: numpy arrays by input alias.
            deadline: `time.monotonic()` after which the answer is DEADLINE_EXCEEDED (None: none).

        Returns:
            numpy outputs by alias.
        """
        self.check_names(signature, inputs)
        for k, spec in self.inputs[signature].items():
            if not spec.shape.is_compatible_with(inputs[k].shape):
                raise bad_request(f"Input \"{k}\" has shape {list(inputs[k].shape)}, signature expects {spec.shape}")
        _check_deadline(deadline)
        try:
            out = self._call(signature, inputs) if self.batcher is None else self.batcher.run(signature, inputs)
        except Overloaded as e:
            raise unavailable(str(e)) from None
        except self.tf.errors.OpError as e:  # mapped as TF Serving maps a Status
            raise from_tf_error(e) from None
        _check_deadline(deadline)
        return out

    def _call(self, signature: str, inputs: dict[str, Any]) -> dict[str, Any]:
        tf = self.tf
        fn = self.signatures[signature]
        tensors = {k: tf.constant(inputs[k], dtype=spec.dtype) for k, spec in self.inputs[signature].items()}
        out = fn(**tensors)
        return {k: v.numpy() for k, v in out.items()}


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise RequestError("Deadline exceeded before the request was answered", None, "DEADLINE_EXCEEDED")

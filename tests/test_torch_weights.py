"""The legacy `.pth` reader: tensors come back exactly, and a pickle that names anything outside the
allow-list is refused before it can run.

Files are written here in torch's legacy layout without torch: fake `torch` / `torch._utils`
modules (test-only, in `sys.modules` while pickling) give pickle the global names a real file has.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import sys
import types

import numpy as np
import pytest

from poster_similarity.components.torch_weights import (
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    UnsafePickleError,
    WeightsFormatError,
    read_legacy_state_dict,
)


class _Storage:
    """One flat storage; its persistent id is what a legacy file records for it."""

    def __init__(self, key: str, data: np.ndarray, type_name: str):
        self.key, self.data, self.type_name = key, data, type_name


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict())


def _fake_torch(monkeypatch) -> types.ModuleType:
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def write_legacy(monkeypatch, state: dict, storages: list[_Storage]) -> bytes:
    """`state` (name → _Tensor or anything picklable) in torch's legacy serialization."""
    torch = _fake_torch(monkeypatch)
    buf = io.BytesIO()
    for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL, "little_endian": True}):
        pickle.dump(obj, buf, protocol=2)

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", getattr(torch, obj.type_name), obj.key, "cpu", int(obj.data.size), None)
            return None

    P(buf, protocol=2).dump(collections.OrderedDict(state))
    pickle.dump([s.key for s in storages], buf, protocol=2)
    for s in storages:
        buf.write(np.array([s.data.size], "<i8").tobytes())
        buf.write(s.data.tobytes())
    return buf.getvalue()


def test_tensors_round_trip_with_offsets_and_strides(monkeypatch):
    flat = np.arange(24, dtype="<f4")
    shared = _Storage("0", flat, "FloatStorage")
    counts = _Storage("1", np.array([7], "<i8"), "LongStorage")
    state = {
        "conv.weight": _Tensor(shared, 0, (2, 3, 4), (12, 4, 1)),
        "transposed": _Tensor(shared, 0, (4, 6), (1, 4)),  # a non-contiguous view of the same storage
        "tail": _Tensor(shared, 20, (4,), (1,)),
        "bn.num_batches_tracked": _Tensor(counts, 0, (), ()),
    }
    out = read_legacy_state_dict(io.BytesIO(write_legacy(monkeypatch, state, [shared, counts])))
    np.testing.assert_array_equal(out["conv.weight"], flat.reshape(2, 3, 4))
    np.testing.assert_array_equal(out["transposed"], flat.reshape(6, 4).T)
    np.testing.assert_array_equal(out["tail"], flat[20:])
    assert out["bn.num_batches_tracked"] == 7 and out["conv.weight"].dtype == np.float32


class _Exploit:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


class _Eval:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_a_crafted_file_that_calls_anything_else_is_refused(monkeypatch, tmp_path, payload):
    marker = tmp_path / "pwned"
    flat = _Storage("0", np.zeros(4, "<f4"), "FloatStorage")
    evil = _Exploit(str(marker)) if payload == "system" else _Eval()
    data = write_legacy(monkeypatch, {"w": _Tensor(flat, 0, (4,), (1,)), "x": evil}, [flat])
    with pytest.raises(UnsafePickleError, match="refused to load global"):
        read_legacy_state_dict(io.BytesIO(data))
    assert not marker.exists()


def test_the_header_pickles_are_restricted_too(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Exploit(str(marker)), protocol=2)
    with pytest.raises(UnsafePickleError):
        read_legacy_state_dict(io.BytesIO(data))
    assert not marker.exists()


def test_damaged_or_other_formats_are_named(monkeypatch):
    flat = _Storage("0", np.arange(4, dtype="<f4"), "FloatStorage")
    data = write_legacy(monkeypatch, {"w": _Tensor(flat, 0, (4,), (1,))}, [flat])
    with pytest.raises(WeightsFormatError, match="ends"):
        read_legacy_state_dict(io.BytesIO(data[:-3]))
    with pytest.raises(WeightsFormatError, match="zip-format"):
        read_legacy_state_dict(io.BytesIO(b"PK\x03\x04" + b"\0" * 60))
    outside = write_legacy(monkeypatch, {"w": _Tensor(flat, 2, (4,), (1,))}, [flat])
    with pytest.raises(WeightsFormatError, match="outside its storage"):
        read_legacy_state_dict(io.BytesIO(outside))

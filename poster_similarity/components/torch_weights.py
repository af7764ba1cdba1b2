"""Read a PyTorch *legacy* `.pth` state dict (torch < 1.6 serialization) with numpy, without torch.

Why not `torch.load`: torch is a 700 MB dependency for one file, and `torch.load` unpickles
whatever the file says. A `.pth` is a pickle; here it stays data. The restricted unpickler resolves
only the handful of globals a state dict needs (`collections.OrderedDict`, the tensor-rebuild
function, the storage types) to local stand-ins and refuses every other name, so a crafted file
cannot call anything.

The legacy layout, in order: five pickles (magic number, protocol version, system info, the state
dict — tensors reference storages by persistent id —, the storage keys), then, for each key in that
order, the storage as an int64 element count followed by its raw little-endian elements.
"""
from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_MAX_STORAGES = 100_000  # a state dict of a vision net has hundreds; bounds a hostile file's work

# Storage type name → numpy little-endian dtype.
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file's pickle names a global outside the allow-list: refused, nothing was called."""


class WeightsFormatError(ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """Stand-in for `torch._utils._rebuild_tensor_v2`: records where the tensor's data lies."""
    if not isinstance(storage, _StorageRef):
        raise WeightsFormatError("a tensor does not reference a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    }
    for name in _STORAGE_DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals; every other name raises `UnsafePickleError`."""

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refused to load global {module}.{name}: not a tensor state dict name") from None

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsFormatError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int):
            raise WeightsFormatError("malformed storage reference")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsFormatError("storage views are not supported")
        return _StorageRef(str(key), storage_type.dtype, numel)


def _load(f: BinaryIO):
    return _RestrictedUnpickler(f).load()


def _read_storage(f: BinaryIO, ref: _StorageRef) -> np.ndarray:
    head = f.read(8)
    if len(head) != 8:
        raise WeightsFormatError(f"file ends before storage {ref.key}")
    numel = int(np.frombuffer(head, "<i8")[0])
    if numel != ref.numel:
        raise WeightsFormatError(f"storage {ref.key}: {numel} elements, the state dict says {ref.numel}")
    nbytes = numel * ref.dtype.itemsize
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise WeightsFormatError(f"file ends inside storage {ref.key}")
    return np.frombuffer(data, ref.dtype)


def _materialise(t: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    flat = storages[t.storage.key]
    if len(t.shape) != len(t.stride):
        raise WeightsFormatError("a tensor's shape and strides disagree")
    if not t.shape:
        return flat[t.offset].copy()
    last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride, strict=True)) if all(t.shape) else t.offset
    if t.offset < 0 or last >= len(flat) or min(t.stride, default=0) < 0:
        raise WeightsFormatError("a tensor lies outside its storage")
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(flat[t.offset:], t.shape, tuple(s * item for s in t.stride),
                                           writeable=False)
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def read_legacy_state_dict(f: BinaryIO) -> dict[str, np.ndarray]:
    """The state dict of a legacy `.pth` stream (seekable) as {name: numpy array} (native byte order).

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list (nothing was called).
        WeightsFormatError: not a legacy state dict (a zip-format `.pth`, truncated, inconsistent).
    """
    head = f.read(2)
    if head == b"PK":
        raise WeightsFormatError("zip-format .pth (torch >= 1.6) is not supported; save with "
                                 "_use_new_zipfile_serialization=False")
    f.seek(0)
    if _load(f) != LEGACY_MAGIC:
        raise WeightsFormatError("not a legacy PyTorch file (bad magic number)")
    if _load(f) != LEGACY_PROTOCOL:
        raise WeightsFormatError("unsupported PyTorch legacy protocol version")
    sys_info = _load(f)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian", False)):
        raise WeightsFormatError("only little-endian files are supported")
    state = _load(f)
    keys = _load(f)
    if not isinstance(state, dict) or not isinstance(keys, list) or len(keys) > _MAX_STORAGES:
        raise WeightsFormatError("the file does not hold a state dict")
    refs = {t.storage.key: t.storage for t in state.values() if isinstance(t, _TensorRef)}
    storages = {}
    for key in keys:
        if key not in refs:
            raise WeightsFormatError(f"storage {key!r} is used by no tensor")
        storages[key] = _read_storage(f, refs[key])
    out = {}
    for name, t in state.items():
        if not isinstance(t, _TensorRef):
            raise WeightsFormatError(f"entry {name!r} is not a tensor")
        if t.storage.key not in storages:
            raise WeightsFormatError(f"tensor {name!r} references a missing storage")
        out[str(name)] = _materialise(t, storages)
    return out


def read_legacy_state_dict_file(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        return read_legacy_state_dict(f)


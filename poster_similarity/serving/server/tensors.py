"""TensorProto → numpy for gRPC, strict like TF Serving, checked before anything is materialised.

`tf.make_ndarray` broadcasts a short payload to the declared shape: a proto declaring 50,000,000
strings with one value costs gigabytes. Here the declared element count must be within
`max_tensor_elements` and equal the payload's, the dtype must be the signature's (gRPC clients
send typed tensors; TF Serving rejects a mismatch), and only then is the array built.
"""
from __future__ import annotations

from poster_similarity.serving.server.errors import bad_request
from poster_similarity.serving.server.limits import Limits

# dtype enum → (repeated value field, bytes per element in tensor_content)
_FIELDS = {
    1: ("float_val", 4), 2: ("double_val", 8), 3: ("int_val", 4), 4: ("int_val", 1), 5: ("int_val", 2),
    6: ("int_val", 1), 7: ("string_val", None), 8: ("scomplex_val", 8), 9: ("int64_val", 8),
    10: ("bool_val", 1), 17: ("int_val", 2), 18: ("dcomplex_val", 16), 19: ("half_val", 2),
    22: ("uint32_val", 4), 23: ("uint64_val", 8), 14: ("half_val", 2),
}


def declared_elements(proto, name: str, limits: Limits) -> tuple[list[int], int]:
    """The proto's shape and element count, refusing unknown dims and counts over the cap."""
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise bad_request(f"Input \"{name}\": TensorProto has an unknown rank")
    dims = [d.size for d in shape.dim]
    n = 1
    for d in dims:
        if d < 0:
            raise bad_request(f"Input \"{name}\": TensorProto dimension {d} is negative")
        n *= d
        if n > limits.max_tensor_elements:
            raise bad_request(f"Input \"{name}\": TensorProto declares more than {limits.max_tensor_elements} "
                              f"elements (max_tensor_elements); shape {dims}")
    return dims, n


def tensor_to_array(proto, spec, name: str, limits: Limits):
    """Validate one request TensorProto against its signature spec and convert it.

    Args:
        proto: a `tensorflow.TensorProto` from the request.
        spec: the signature's `tf.TensorSpec` for this input.
        name: the input alias (for messages).
        limits: the element cap.

    Returns:
        A numpy array of the signature's dtype.

    Raises:
        RequestError: 400 / INVALID_ARGUMENT for a dtype mismatch, a payload whose element count is not
            the declared one, or a declared count over the cap.
    """
    import numpy as np
    import tensorflow as tf

    want = spec.dtype.as_datatype_enum
    if proto.dtype != want:
        got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype in _FIELDS else f"enum {proto.dtype}"
        raise bad_request(f"Expects arg[\"{name}\"] to be {spec.dtype.name} but {got} is provided")
    dims, n = declared_elements(proto, name, limits)
    field, itemsize = _FIELDS.get(proto.dtype, (None, None))
    if field is None:
        raise bad_request(f"Input \"{name}\": unsupported dtype {spec.dtype.name}")
    if proto.tensor_content:
        if itemsize is None or len(proto.tensor_content) != n * itemsize:
            raise bad_request(f"Input \"{name}\": tensor_content holds {len(proto.tensor_content)} bytes, the "
                              f"declared shape {dims} of {spec.dtype.name} needs {n * (itemsize or 0)}")
    else:
        have = len(getattr(proto, field))
        per = 2 if field in ("scomplex_val", "dcomplex_val") else 1
        if have != n * per:
            raise bad_request(f"Input \"{name}\": TensorProto declares {n} elements (shape {dims}) but carries "
                              f"{have // per}")
    try:
        arr = tf.make_ndarray(proto)
    except Exception as e:  # noqa: BLE001 — any conversion failure is the request's
        raise bad_request(f"Input \"{name}\": invalid TensorProto: {e}") from None
    if arr.dtype.kind in "SU":
        arr = arr.astype(object)
    if not spec.shape.is_compatible_with(arr.shape):
        raise bad_request(f"Input \"{name}\" has shape {list(arr.shape)}, signature expects {spec.shape}")
    return np.asarray(arr)

"""Request/response encoding: TF Serving's predict JSON and TensorProtos ↔ numpy, with input caps.

Every check here runs before anything large is materialised: JSON nesting depth and element count,
a TensorProto's declared element count against its payload, and image dimensions read from the
header (serving.image_header) before a decoder sees the bytes.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from poster_similarity.serving.image_header import ImageTooLarge, check_pixels, image_info
from poster_similarity.serving.server.errors import bad_request
from poster_similarity.serving.server.limits import Limits

DEFAULT_SIGNATURE = "serving_default"


# -- JSON -------------------------------------------------------------------------------------
def load_json(body: bytes, limits: Limits) -> Any:
    """Parse a JSON body and check its nesting depth and element count.

    Args:
        body: the request body (its size is already capped by `limits.max_body_bytes`).
        limits: the caps to enforce.

    Returns:
        The parsed value.

    Raises:
        RequestError: 400 for invalid JSON or a body over `max_json_depth` / `max_json_elements`.
    """
    try:
        value = json.loads(body)
    except RecursionError:
        raise bad_request(f"JSON nesting exceeds the limit of {limits.max_json_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"JSON Parse error: {e}") from None
    check_json_size(value, limits)
    return value


def check_json_size(value: Any, limits: Limits) -> None:
    """Iterative walk (no recursion) counting containers' depth and all elements."""
    stack = [(value, 1)]
    count = 0
    while stack:
        v, depth = stack.pop()
        if depth > limits.max_json_depth:
            raise bad_request(f"JSON nesting exceeds the limit of {limits.max_json_depth} levels")
        if isinstance(v, list):
            items = v
        elif isinstance(v, dict):
            items = v.values()
        else:
            continue
        count += len(v)
        if count > limits.max_json_elements:
            raise bad_request(f"JSON body has more than {limits.max_json_elements} elements (max_json_elements)")
        stack.extend((c, depth + 1) for c in items if isinstance(c, (list, dict)))


def parse_predict_body(model, body: bytes, limits: Limits) -> tuple[str, dict, bool]:
    """Read a TF Serving predict request.

    Args:
        model: the LoadedModel that will answer (its signatures define the inputs).
        body: the raw JSON body.
        limits: input caps.

    Returns:
        (signature name, numpy inputs by name, True for the row format "instances").
    """
    req = load_json(body, limits)
    if not isinstance(req, dict):
        raise bad_request("JSON Value: request body must be a JSON object")
    sig = req.get("signature_name") or DEFAULT_SIGNATURE  # "" is the default signature, as in TF Serving
    if not isinstance(sig, str):
        raise bad_request("'signature_name' must be a string")
    specs = model.input_specs(sig)
    has_rows, has_cols = "instances" in req, "inputs" in req
    if has_rows == has_cols:
        raise bad_request("Missing 'inputs' or 'instances' key" if not has_rows
                          else "Not formatted correctly expecting only one of 'inputs' or 'instances' keys")
    if has_rows:
        rows = req["instances"]
        if not isinstance(rows, list) or not rows:
            raise bad_request("'instances' must be a non-empty JSON list")
        if all(isinstance(r, dict) and "b64" not in r for r in rows):
            names = set(rows[0])
            if any(set(r) != names for r in rows):
                raise bad_request("Failed to process element: all 'instances' must have the same keys")
            columns = {n: [r[n] for r in rows] for n in names}
        elif len(specs) == 1:
            columns = {next(iter(specs)): rows}
        else:
            raise bad_request(f"'instances' must be JSON objects with keys {sorted(specs)} for signature \"{sig}\"")
    else:
        cols = req["inputs"]
        if isinstance(cols, dict) and not (set(cols) == {"b64"} and isinstance(cols.get("b64"), str)):
            columns = cols
        elif len(specs) == 1:
            columns = {next(iter(specs)): cols}
        else:
            raise bad_request(f"'inputs' must be a JSON object with keys {sorted(specs)} for signature \"{sig}\"")
    model.check_names(sig, columns)
    arrays = {n: coerce_array(v, specs[n].dtype, n) for n, v in columns.items()}
    check_images(arrays, limits)
    return sig, arrays, has_rows


def coerce_array(value: Any, dtype, what: str):
    """Turn a nested JSON list into a rectangular numpy array of the tf `dtype` (REST is lenient)."""
    import numpy as np

    flat: list = []
    shape = _flatten(value, flat, what)
    if dtype.name == "string":
        arr = np.empty(len(flat), dtype=object)
        arr[:] = [_to_bytes(v, what) for v in flat]
        return arr.reshape(shape)
    for v in flat:
        if isinstance(v, (str, bytes, dict)) or v is None:
            raise bad_request(f"Input \"{what}\" must be {dtype.name}, got {type(v).__name__} {v!r:.40}")
    try:
        return np.asarray(flat, dtype=dtype.as_numpy_dtype).reshape(shape)
    except (TypeError, ValueError, OverflowError) as e:
        raise bad_request(f"Input \"{what}\" cannot be converted to {dtype.name}: {e}") from None


def _flatten(value: Any, out: list, what: str) -> tuple[int, ...]:
    """Iterative: nesting is already capped, but never trust the stack with client data."""
    if not isinstance(value, list):
        out.append(value)
        return ()
    shape: list[int] = []
    level = [value]
    while True:
        lens = {len(v) if isinstance(v, list) else -1 for v in level}
        if len(lens) > 1:
            raise bad_request(f"Input \"{what}\" is ragged: lists at one depth must have equal lengths")
        n = lens.pop()
        if n == -1:
            out.extend(level)
            return tuple(shape)
        shape.append(n)
        level = [c for v in level for c in v]
        if n == 0:
            return tuple(shape)


def _to_bytes(v: Any, what: str) -> bytes:
    if isinstance(v, dict):
        if set(v) != {"b64"} or not isinstance(v["b64"], str):
            raise bad_request(f"Input \"{what}\": binary values must be {{\"b64\": \"<base64>\"}}")
        try:
            return base64.b64decode(v["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"Input \"{what}\": invalid base64") from None
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, bytes):
        return v
    raise bad_request(f"Input \"{what}\" must be strings, got {type(v).__name__} {v!r:.40}")


IMAGE_INPUT = "image_bytes"  # the signatures' encoded-poster input (docs/serving.md)
DECODABLE = ("jpeg", "png", "gif", "bmp")  # what the served graph's tf.io.decode_image reads


def check_image_format(arr, name: str = IMAGE_INPUT) -> None:
    """Reject `image_bytes` rows that are not a JPEG, PNG, GIF or BMP before the graph sees them:
    the decoder's own error is a multi-line TensorFlow graph error naming an internal op."""
    for i, v in enumerate(arr.reshape(-1)):
        info = image_info(v) if isinstance(v, bytes) else None
        if info is None or info.format not in DECODABLE:
            what = f"a {info.format.upper()} image" if info is not None else f"{len(v)} bytes starting {bytes(v[:8])!r}"
            raise bad_request(f"Input \"{name}\" row {i} is not a supported image (JPEG, PNG, GIF or BMP, with a "
                              f"complete header): got {what}")


def check_images(arrays: dict, limits: Limits) -> None:
    """Reject `image_bytes` rows that are not images, and encoded images (bare, or inside
    serialized tf.Examples) over `limits.max_image_pixels`."""
    if IMAGE_INPUT in arrays and arrays[IMAGE_INPUT].dtype == object:
        check_image_format(arrays[IMAGE_INPUT])
    for name, arr in arrays.items():
        if arr.dtype != object:
            continue
        for v in arr.reshape(-1):
            try:
                if check_pixels(v, limits.max_image_pixels) is None and len(v) > 64:
                    _check_example_images(v, limits.max_image_pixels)
            except ImageTooLarge as e:
                raise bad_request(f"Input \"{name}\": {e}") from None


def _check_example_images(data: bytes, max_pixels: int) -> None:
    from google.protobuf.message import DecodeError
    from tensorflow.core.example import example_pb2

    try:
        ex = example_pb2.Example.FromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return
    for feature in ex.features.feature.values():
        for b in feature.bytes_list.value:
            check_pixels(b, max_pixels)


def to_jsonable(value: Any, alias: str = "") -> Any:
    """numpy output → JSON. Outputs named `*_bytes` are always {"b64": ...} (TF Serving's rule);
    other bytes become UTF-8 text, or {"b64": ...} when not valid UTF-8."""
    import numpy as np

    force_b64 = alias.endswith("_bytes")
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind == "S":
            return to_jsonable(value.tolist(), alias)
        return value.tolist()
    if isinstance(value, list):
        return [to_jsonable(v, alias) for v in value]
    if isinstance(value, bytes):
        if not force_b64:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def predict_response(outputs: dict, row_format: bool) -> dict:
    if not row_format:
        if len(outputs) == 1:
            (k, v), = outputs.items()
            return {"outputs": to_jsonable(v, k)}
        return {"outputs": {k: to_jsonable(v, k) for k, v in outputs.items()}}
    batch = {len(v) if getattr(v, "ndim", 0) else None for v in outputs.values()}
    if len(batch) != 1 or None in batch:
        raise bad_request("Outputs do not share a batch dimension; use the 'inputs' (columnar) format")
    if len(outputs) == 1:
        (k, v), = outputs.items()
        return {"predictions": to_jsonable(v, k)}
    cols = {k: to_jsonable(v, k) for k, v in outputs.items()}
    n = batch.pop()
    return {"predictions": [{k: c[i] for k, c in cols.items()} for i in range(n)]}


def dumps(payload: dict) -> bytes:
    return json.dumps(payload).encode("utf-8")

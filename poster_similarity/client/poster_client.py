"""Client for the served poster model: TF Serving's REST or gRPC API, same answers from both.

REST uses only the standard library + numpy (no TensorFlow import, so `posters query` starts in
well under a second); gRPC needs `tensorflow_serving.apis`, whose protos import TensorFlow.
"""
from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from poster_similarity.client.rules import Filtered, QueryRules, filtered_answer, rule_inputs

log = logging.getLogger(__name__)

Neighbors = list[list[tuple[str, float]]]


class Recommendations(list):
    """What `PosterClient.recommend` returns: per history `[(movie_id, score), …]`, best first (a
    plain list, equal to the same rows from `similar`), plus `history_used`.

    `history_used[i]` is how many distinct ids of history i the model used (ids not in its catalogue
    are ignored). 0 for a non-empty history means none was known and the rows are the model's
    catalogue-wide fallback, not recommendations for that user: callers should check it.
    None when the model has no `history_used` output (exported before it existed).
    """

    def __init__(self, rows: Neighbors = (), history_used: list[int] | None = None):
        super().__init__(rows)
        self.history_used = history_used


def history_rows(histories: Sequence[Sequence[str]]) -> list[list[bytes]]:
    """The `recommend` input: one row per history, each starting with "" and padded with "" to one
    width (the model ignores ""). The leading "" is there for TF Serving: with batching on, it pads
    a request's rows to the batch's longest history with copies of the request's first element
    (`pad_variable_length_inputs`), and "" there keeps every row's history unchanged."""
    width = max((len(h) for h in histories), default=0)
    return [[b""] + [str(x).encode("utf-8") for x in h] + [b""] * (width - len(h)) for h in histories]

class ServingError(RuntimeError):
    """The server rejected a request (4xx / gRPC error); `message` is the server's own text."""

    def __init__(self, message: str, status: int | str | None = None):
        super().__init__(f"{message} (status {status})" if status is not None else message)
        self.message = message
        self.status = status


class ServerUnavailable(ServingError):
    """Nothing answers at the address (connection refused, DNS failure, timeout)."""


_NP_DTYPES = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT32": np.int32, "DT_INT64": np.int64,
    "DT_BOOL": np.bool_, "DT_HALF": np.float16, "DT_INT8": np.int8, "DT_UINT8": np.uint8,
    "DT_INT16": np.int16,
}


def _from_json(value: Any, dtype: str | None) -> np.ndarray:
    """A REST output value → numpy, strings as object arrays of bytes (as gRPC's make_ndarray)."""
    if dtype == "DT_STRING" or (dtype is None and _first_leaf(value, (str, dict))):
        return _bytes_array(value)
    return np.asarray(value, dtype=_NP_DTYPES.get(dtype or "", None))


def _first_leaf(value: Any, types) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, types)


def _bytes_array(value: Any) -> np.ndarray:
    def conv(v):
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return base64.b64decode(v["b64"])
        return v.encode("utf-8") if isinstance(v, str) else v

    return np.array(conv(value), dtype=object)


def _to_json(value: Any) -> Any:
    """numpy / lists of bytes → JSON, bytes as {"b64": ...} (TF Serving's binary convention)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "SU":
            return _to_json(value.tolist())
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _pairs(ids: np.ndarray, scores: np.ndarray, k: int | None) -> Neighbors:
    out = []
    for row_ids, row_scores in zip(ids, scores, strict=True):
        row = [(i.decode("utf-8", "replace") if isinstance(i, bytes) else str(i), float(s))
               for i, s in zip(row_ids, row_scores, strict=True)]
        out.append(row[:k] if k is not None else row)
    return out


class PosterClient:
    """Talks to `posters serve` or the real TF Serving binary; REST and gRPC give the same answers.

    Args:
        server: host:port of the REST API (default 8501) or, with protocol="grpc", of the gRPC API (8500).
        model_name: the served model's name (TF Serving's `--model_name`).
        protocol: "rest" (standard library only, no TensorFlow import) or "grpc".
        timeout: seconds per request.
        version: ask this model version; None = the newest one the server has loaded.

    Raises:
        ValueError: an unknown protocol.
    """

    def __init__(self, server: str = "localhost:8501", model_name: str = "posters", protocol: str = "rest",
                 timeout: float = 30.0, version: int | None = None):
        if protocol not in ("rest", "grpc"):
            raise ValueError(f"protocol must be 'rest' or 'grpc', not {protocol!r}")
        self.server = server.removeprefix("http://").rstrip("/")
        self.model_name = model_name
        self.protocol = protocol
        self.timeout = timeout
        self.version = version
        self._out_dtypes: dict[str, dict[str, str]] | None = None
        self._channel = None
        self._stubs = None

    # -- public API -------------------------------------------------------------------------
    def similar(self, image_bytes_list: Sequence[bytes], k: int | None = None) -> Neighbors:
        """Nearest catalogue posters for each image (signature `serving_default`).

        Args:
            image_bytes_list: encoded JPEG/PNG images.
            k: keep the first k neighbours (at most the k the model was exported with).

        Returns:
            Per image, `[(movie_id, score), …]`, best first.

        Raises:
            ServingError: the server rejected the request (e.g. undecodable bytes: status 400).
            ServerUnavailable: nothing answers at `server`.
        """
        out = self.predict("serving_default", {"image_bytes": list(image_bytes_list)})
        return _pairs(out["movie_ids"], out["scores"], k)

    def embed(self, image_bytes_list: Sequence[bytes]) -> np.ndarray:
        """L2-normalised embeddings of encoded images (signature `embed`), float32 [B, D]."""
        return np.asarray(self.predict("embed", {"image_bytes": list(image_bytes_list)})["embedding"],
                          dtype=np.float32)

    def neighbors(self, embeddings, k: int | None = None) -> Neighbors:
        """Nearest catalogue posters to given embeddings (signature `neighbors`).

        Args:
            embeddings: [D] or [B, D] floats, e.g. the re-normalised mean of several posters (a style mix).
            k: keep the first k neighbours.

        Returns:
            Per embedding, `[(movie_id, score), …]`, best first.
        """
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim == 1:
            emb = emb[None, :]
        out = self.predict("neighbors", {"embedding": emb})
        return _pairs(out["movie_ids"], out["scores"], k)

    def recommend(self, histories: Sequence[Sequence[str]], k: int | None = None) -> Recommendations:
        """Recommendations from watch histories (signature `recommend`); watched ids never come back.

        A history none of whose ids is in the served catalogue still gets an answer (the catalogue
        centroid's neighbours), so the count of ids used is returned and a warning logged for it.

        Args:
            histories: per user, the movie ids watched (most recent last); led and padded with "" by
                `history_rows` (the model treats "" as padding).
            k: keep the first k recommendations.

        Returns:
            Per history, `[(movie_id, score), …]`, best first, with `.history_used` (see
            `Recommendations`).
        """
        out = self.predict("recommend", {"history": history_rows(histories)})
        used = out.get("history_used")
        counts = [int(round(float(u))) for u in np.asarray(used).reshape(-1)] if used is not None else None
        for history, n in zip(histories, counts or [], strict=False):
            if n == 0 and any(str(x) for x in history):
                log.warning("recommend: none of the ids %s is in the served catalogue; the answer is the "
                            "catalogue-wide fallback", list(history)[:5])
        return Recommendations(_pairs(out["movie_ids"], out["scores"], k), counts)

    # -- filtered: the same queries under business rules, answered inside the model ------------
    def similar_filtered(self, image_bytes_list: Sequence[bytes], rules: QueryRules | Sequence[QueryRules],
                         k: int | None = None) -> Filtered:
        """Nearest posters per image that satisfy `rules` (signature `similar_filtered`).

        Args:
            image_bytes_list: encoded images.
            rules: one `QueryRules` for every image, or one per image.
            k: results per image (overrides the rules' k; ≤ 1,000; None = the rules' k or the model's).

        Returns:
            Per image, `[(movie_id, score), …]`, best first: min(k, what the rules allow) results.
        """
        return self._filtered("similar_filtered", {"image_bytes": list(image_bytes_list)}, rules, k)

    def neighbors_filtered(self, embeddings, rules: QueryRules | Sequence[QueryRules],
                           k: int | None = None) -> Filtered:
        """`neighbors` under `rules` (signature `neighbors_filtered`); arguments as `similar_filtered`."""
        emb = np.asarray(embeddings, dtype=np.float32)
        return self._filtered("neighbors_filtered", {"embedding": emb[None, :] if emb.ndim == 1 else emb}, rules, k)

    def recommend_filtered(self, histories: Sequence[Sequence[str]], rules: QueryRules | Sequence[QueryRules],
                           k: int | None = None) -> Filtered:
        """`recommend` under `rules` (signature `recommend_filtered`): every history id is excluded;
        the answer's `history_used` as in `recommend`."""
        return self._filtered("recommend_filtered", {"history": history_rows(histories)}, rules, k)

    def _filtered(self, signature: str, query: dict[str, Any], rules, k: int | None) -> Filtered:
        batch = len(next(iter(query.values())))
        return filtered_answer(self.predict(signature, {**query, **rule_inputs(rules, batch, k)}))

    def status(self) -> dict:
        """The model's version status, in TF Serving's REST JSON shape (over gRPC too)."""
        if self.protocol == "rest":
            return self._rest("GET", self._model_url())
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        req = get_model_status_pb2.GetModelStatusRequest()
        self._spec(req.model_spec)
        resp = self._grpc_call("model", "GetModelStatus", req)
        for st in resp.model_version_status:
            st.status.SetInParent()  # an OK status may arrive unset; REST always shows it
        return json_format.MessageToDict(resp, preserving_proto_field_name=True,
                                         including_default_value_fields=True)

    def metadata(self) -> dict:
        """The model's signature definitions, in TF Serving's REST JSON shape (over gRPC too)."""
        if self.protocol == "rest":
            return self._rest("GET", self._model_url() + "/metadata")
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        req = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(req.model_spec)
        req.metadata_field.append("signature_def")
        resp = self._grpc_call("prediction", "GetModelMetadata", req)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sigs)
        return {
            "model_spec": {"name": resp.model_spec.name, "signature_name": resp.model_spec.signature_name,
                           "version": str(resp.model_spec.version.value)},
            "metadata": {"signature_def": json_format.MessageToDict(
                sigs, preserving_proto_field_name=True, including_default_value_fields=True)},
        }

    def predict(self, signature: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run any signature by name.

        Args:
            signature: the signature name, e.g. "serving_default".
            inputs: input name → list / numpy array (bytes for binary strings).

        Returns:
            Output name → numpy array (typed from the model's metadata over REST).

        Raises:
            ServingError: the server rejected the request.
            ServerUnavailable: nothing answers at `server`.
        """
        if self.protocol == "grpc":
            return self._predict_grpc(signature, inputs)
        body = {"signature_name": signature, "inputs": {k: _to_json(v) for k, v in inputs.items()}}
        resp = self._rest("POST", self._model_url() + ":predict", body)
        outputs = resp.get("outputs")
        dtypes = self._output_dtypes().get(signature, {})
        if not isinstance(outputs, dict) or (len(dtypes) == 1 and set(outputs) != set(dtypes)):
            # TF Serving returns a bare value for single-output signatures: name it from metadata.
            if len(dtypes) != 1:
                raise ServingError(f"cannot name the single output of signature {signature!r}")
            outputs = {next(iter(dtypes)): outputs}
        return {k: _from_json(v, dtypes.get(k)) for k, v in outputs.items()}

    def close(self) -> None:
        """Close the gRPC channel, if one was opened (REST keeps no connection)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stubs = None

    def __enter__(self) -> PosterClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- REST -------------------------------------------------------------------------------
    def _model_url(self) -> str:
        url = f"http://{self.server}/v1/models/{self.model_name}"
        return url + (f"/versions/{self.version}" if self.version is not None else "")

    def _rest(self, method: str, url: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = json.loads(raw).get("error", raw.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                msg = raw.decode("utf-8", "replace") or e.reason
            raise ServingError(str(msg), e.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerUnavailable(
                f"cannot reach the model server at {self.server} (REST): {reason}") from None

    def _output_dtypes(self) -> dict[str, dict[str, str]]:
        """Output names/dtypes per signature, from metadata once per client (REST has no dtypes)."""
        if self._out_dtypes is None:
            sigs = self.metadata()["metadata"]["signature_def"]["signature_def"]
            self._out_dtypes = {
                name: {k: v.get("dtype") for k, v in sig.get("outputs", {}).items()}
                for name, sig in sigs.items()
            }
        return self._out_dtypes

    # -- gRPC -------------------------------------------------------------------------------
    def _spec(self, spec, signature: str | None = None) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        if signature:
            spec.signature_name = signature

    def _grpc_call(self, service: str, method: str, request):
        import grpc

        if self._stubs is None:
            from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

            opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
            self._channel = grpc.insecure_channel(self.server, options=opts)
            self._stubs = {"prediction": prediction_service_pb2_grpc.PredictionServiceStub(self._channel),
                           "model": model_service_pb2_grpc.ModelServiceStub(self._channel)}
        try:
            return getattr(self._stubs[service], method)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ServerUnavailable(
                    f"cannot reach the model server at {self.server} (gRPC): {e.details()}") from None
            raise ServingError(e.details() or str(code), code.name) from None

    def _predict_grpc(self, signature: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        req = predict_pb2.PredictRequest()
        self._spec(req.model_spec, signature)
        for k, v in inputs.items():
            if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                v = v.astype(np.float32, copy=False)
            elif not isinstance(v, np.ndarray) and _first_leaf(v, float):
                v = np.asarray(v, dtype=np.float32)
            req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
        resp = self._grpc_call("prediction", "Predict", req)
        return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}

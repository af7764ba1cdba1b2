"""TF Serving's gRPC PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus).

Strict like the binary: tensors must have the signature's dtype and a payload matching their
declared shape; `version_label` selects a labelled version; the client's deadline is honoured.
"""
from __future__ import annotations

import logging
import time
from concurrent import futures

from poster_similarity.serving.server.codec import DEFAULT_SIGNATURE, check_images
from poster_similarity.serving.server.errors import RequestError, bad_request, internal
from poster_similarity.serving.server.ports import GRPC_EXCLUSIVE_PORT, add_grpc_port
from poster_similarity.serving.server.tensors import tensor_to_array

log = logging.getLogger("posters.serving")


def _spec_version(spec) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None


def _handlers(service: str, methods: dict):
    """A generic handler taking raw request bytes: {method: (bound handler, request class)}."""
    import grpc

    def bind(fn, cls):
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: fn(request, context, request_cls=cls),
            request_deserializer=None, response_serializer=lambda m: m.SerializeToString())

    return grpc.method_handlers_generic_handler(service, {m: bind(fn, cls) for m, (fn, cls) in methods.items()})


def bind_grpc_server(limits, host: str, port: int):
    """A `grpc.Server` bound to (host, port) exclusively, with no services yet (add_services adds them).

    Imports only grpc, so ModelServer.start can bind before TensorFlow is imported or a model loads
    and refuse a busy port at once. `grpc.so_reuseport=0`: grpcio would otherwise share the port
    with another server (ports.py).

    Returns:
        (grpc server, bound port).

    Raises:
        PortError: the port cannot be bound.
    """
    import grpc

    msg = limits.grpc_max_message_bytes
    g = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.grpc_max_threads, thread_name_prefix="posters-grpc"),
        options=[("grpc.max_receive_message_length", msg), ("grpc.max_send_message_length", msg),
                 GRPC_EXCLUSIVE_PORT],
        maximum_concurrent_rpcs=limits.grpc_max_concurrent_rpcs,
    )
    return g, add_grpc_port(g, host, port)


def add_services(g, server) -> None:
    """Register TF Serving's PredictionService and ModelService for `server` (a ModelServer) on `g`.

    Before `g.start()`; imports TensorFlow's serving protos (slow), which is why binding is separate.
    """
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

    prediction, models = Prediction(server), Models(server)
    g.add_generic_rpc_handlers([
        _handlers("tensorflow.serving.PredictionService", {
            "Predict": (prediction.Predict, predict_pb2.PredictRequest),
            "GetModelMetadata": (prediction.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest)}),
        _handlers("tensorflow.serving.ModelService", {
            "GetModelStatus": (models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest)}),
    ])


def guarded(fn):
    """Parse the request bytes, run a handler; map RequestError to a gRPC status (abort outside the try).

    Requests arrive as bytes so that one that does not parse is INVALID_ARGUMENT (a failing
    deserializer would make grpc answer INTERNAL). The handler's object holds the ModelServer as `server`.
    """
    def wrapper(self, request, context, request_cls=None):
        import grpc

        try:
            if request_cls is not None:
                try:
                    request = request_cls.FromString(request)
                except Exception as e:  # noqa: BLE001 — DecodeError and friends
                    raise bad_request(f"Failed to parse {request_cls.__name__}: {e}") from None
            answer = fn(self, request, context)
            self.server.metrics.answered("grpc", "OK")
            return answer
        except RequestError as e:
            err = e
        except Exception as e:  # noqa: BLE001 — a bug must not take the server down
            log.exception("gRPC %s failed", fn.__name__)
            err = internal(f"Internal error: {e}")
        self.server.metrics.answered("grpc", err.grpc_code)
        if err.http_status >= 500:
            log.error("gRPC %s → %s: %s", fn.__name__, err.grpc_code, err.message[:500])
        context.abort(getattr(grpc.StatusCode, err.grpc_code), err.message)
    wrapper.__name__ = fn.__name__
    return wrapper


def _deadline_of(context) -> float | None:
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left


class Prediction:
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

    def __init__(self, server):
        self.server = server

    @guarded
    def Predict(self, request, context):  # noqa: N802 — gRPC method name
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        limits = self.server.limits
        version, label = _spec_version(request.model_spec)
        with self.server.serving(request.model_spec.name, version, label) as model:
            sig = request.model_spec.signature_name or DEFAULT_SIGNATURE
            specs = model.input_specs(sig)
            model.check_names(sig, request.inputs)
            arrays = {k: tensor_to_array(p, specs[k], k, limits) for k, p in request.inputs.items()}
            check_images(arrays, limits)
            outputs = model.run(sig, arrays, _deadline_of(context))
            wanted = list(request.output_filter) or list(outputs)
            unknown = [k for k in wanted if k not in outputs]
            if unknown:
                raise bad_request(f"output tensor alias not found in signature: {unknown}")
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = request.model_spec.name
            resp.model_spec.version.value = model.version
            resp.model_spec.signature_name = sig
            for k in wanted:
                resp.outputs[k].CopyFrom(tf.make_tensor_proto(outputs[k]))
            return resp

    @guarded
    def GetModelMetadata(self, request, context):  # noqa: N802
        from tensorflow_serving.apis import get_model_metadata_pb2

        version, label = _spec_version(request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise bad_request(f"Metadata field(s) {fields} not supported; only [\"signature_def\"]")
        with self.server.serving(request.model_spec.name, version, label) as model:
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            resp.model_spec.name = request.model_spec.name
            resp.model_spec.version.value = model.version
            resp.metadata["signature_def"].Pack(model.signature_def_map())
            return resp


class Models:
    """tensorflow.serving.ModelService: GetModelStatus."""

    def __init__(self, server):
        self.server = server

    @guarded
    def GetModelStatus(self, request, context):  # noqa: N802
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2

        states = get_model_status_pb2.ModelVersionStatus.State
        version, label = _spec_version(request.model_spec)
        resp = get_model_status_pb2.GetModelStatusResponse()
        for entry in self.server.versions_of(request.model_spec.name).status(version, label):
            st = resp.model_version_status.add()
            st.version = int(entry["version"])
            st.state = states.Value(entry["state"])
            code = entry["status"]["error_code"]
            if code != "OK":
                st.status.error_code = getattr(grpc.StatusCode, code).value[0]
                st.status.error_message = entry["status"]["error_message"]
            else:
                st.status.SetInParent()  # error_code OK, as TF Serving sends it
        return resp

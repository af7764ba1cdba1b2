"""Client-visible errors and TF Serving's status → HTTP mapping.

One exception type carries a canonical gRPC status code name; REST answers with the HTTP status TF
Serving's `ToHTTPStatusCode` gives that code, gRPC aborts with the code itself, so both protocols
answer a fault the same way.
"""
from __future__ import annotations

import re

# tensorflow_serving/model_servers/http_rest_api_util / net_http status mapping (TF Serving 2.15).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class RequestError(Exception):
    """A client-visible error: a message, the gRPC status code name and the HTTP status.

    Args:
        message: the text sent as `{"error": message}` (REST) or the gRPC details.
        http_status: HTTP status; defaults to TF Serving's mapping of `grpc_code`.
        grpc_code: canonical status code name, e.g. "INVALID_ARGUMENT".
    """

    def __init__(self, message: str, http_status: int | None = None, grpc_code: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.message = message
        self.grpc_code = grpc_code
        self.http_status = http_status if http_status is not None else HTTP_STATUS.get(grpc_code, 500)


def bad_request(message: str) -> RequestError:
    return RequestError(message, 400, "INVALID_ARGUMENT")


def not_found(message: str) -> RequestError:
    return RequestError(message, 404, "NOT_FOUND")


def unavailable(message: str) -> RequestError:
    return RequestError(message, 503, "UNAVAILABLE")


def internal(message: str) -> RequestError:
    return RequestError(message, 500, "INTERNAL")


def from_tf_error(e) -> RequestError:
    """Map a `tf.errors.OpError` to the status TF Serving would answer with.

    Args:
        e: the TensorFlow error raised by a signature call.

    Returns:
        A RequestError whose code is the OpError's canonical code (internal errors stay 500).
    """
    code = next((name for name, cls in _TF_CODES().items() if type(e) is cls), "UNKNOWN")
    return RequestError(short_tf_message(e.message), None, code)


_DECODE_NODE = re.compile(r"\[\[\{\{node [^}]*Decode(Image|Jpeg|Png|Gif|Bmp)[^}]*\}\}\]\]")


def short_tf_message(message: str) -> str:
    """The cause of a graph execution error in one line, without TensorFlow's frame: eager
    `Graph execution error:` + "Detected at node … defined at" + the Python stack of the *export*
    + `[[{{node …}}]] [Op:__inference_signature_wrapper_N]` says nothing a client can act on. An
    image decoder's failure is named as such."""
    lines = [ln.strip() for ln in message.splitlines()]
    body = [ln for ln in lines if ln and not ln.startswith(("Graph execution error", "Detected at node", "File \""))
            and not ln.startswith("[[")]
    text = re.sub(r"\s*\[\[\{\{node [^]]*\]\]|\s*\[Op:[^\]]*\]", "", " ".join(body)).strip() or message.strip()
    if _DECODE_NODE.search(message):
        return f"image could not be decoded: {text}"
    return text


def _TF_CODES():  # noqa: N802 — a table, built lazily (TensorFlow is imported only when serving)
    import tensorflow as tf

    return {
        "CANCELLED": tf.errors.CancelledError, "UNKNOWN": tf.errors.UnknownError,
        "INVALID_ARGUMENT": tf.errors.InvalidArgumentError, "DEADLINE_EXCEEDED": tf.errors.DeadlineExceededError,
        "NOT_FOUND": tf.errors.NotFoundError, "ALREADY_EXISTS": tf.errors.AlreadyExistsError,
        "PERMISSION_DENIED": tf.errors.PermissionDeniedError,
        "RESOURCE_EXHAUSTED": tf.errors.ResourceExhaustedError,
        "FAILED_PRECONDITION": tf.errors.FailedPreconditionError, "ABORTED": tf.errors.AbortedError,
        "OUT_OF_RANGE": tf.errors.OutOfRangeError, "UNIMPLEMENTED": tf.errors.UnimplementedError,
        "INTERNAL": tf.errors.InternalError, "UNAVAILABLE": tf.errors.UnavailableError,
        "DATA_LOSS": tf.errors.DataLossError, "UNAUTHENTICATED": tf.errors.UnauthenticatedError,
    }

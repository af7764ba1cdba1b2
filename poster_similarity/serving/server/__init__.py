"""A TF-Serving-compatible model server for machines without `tensorflow_model_server`.

Modules, one concern each:

- model_server: ModelServer (models, poller, drain) — the entry point for code and tests;
- versions / config / model / warmup: which versions to load, loading, warm-up, labels, retries;
- rest / grpc_service: TF Serving's REST and gRPC APIs;
- codec / tensors: JSON and TensorProto ↔ numpy with input caps;
- limits / errors: resource limits and the status → HTTP mapping;
- metrics: Prometheus metrics at TF Serving's `/monitoring/prometheus/metrics`;
- main: `posters serve` flags and the process lifecycle (SIGTERM drain).

TensorFlow is imported lazily (when a server starts), never TFX.
"""
from poster_similarity.serving.server.config import ModelConfig, valid_model_name
from poster_similarity.serving.server.errors import RequestError
from poster_similarity.serving.server.limits import Limits
from poster_similarity.serving.server.model_server import ModelServer
from poster_similarity.serving.server.versions import RetryPolicy, list_versions

__all__ = ["Limits", "ModelConfig", "ModelServer", "RequestError", "RetryPolicy", "list_versions",
           "valid_model_name"]

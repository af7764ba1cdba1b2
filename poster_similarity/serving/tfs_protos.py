"""TF Serving's BatchingParameters / MonitoringConfig messages.

The pip `tensorflow-serving-api` ships ModelServerConfig but not these two, so when TF Serving's own
modules are missing they are mirrored here field for field from TF Serving 2.15's .proto files.
Used to parse `serving/config/*.txt` strictly (a misspelt field is an error, as in the binary) by the
local server (`--batching-parameters-file`) and the config tests.
"""
from __future__ import annotations

from functools import lru_cache

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2


@lru_cache(maxsize=1)
def mirrored_protos() -> dict[str, type]:
    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="posters/tf_serving_mirror.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    bp = fdp.message_type.add(name="BatchingParameters")
    for number, name in enumerate(["max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                                   "num_batch_threads"], 1):
        bp.field.add(name=name, number=number, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                     type_name=".google.protobuf.Int64Value")
    bp.field.add(name="thread_pool_name", number=5, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                 type_name=".google.protobuf.StringValue")
    bp.field.add(name="allowed_batch_sizes", number=6, label=F.LABEL_REPEATED, type=F.TYPE_INT64)
    bp.field.add(name="pad_variable_length_inputs", number=7, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL)
    pc = fdp.message_type.add(name="PrometheusConfig")
    pc.field.add(name="enable", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL)
    pc.field.add(name="path", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    mc = fdp.message_type.add(name="MonitoringConfig")
    mc.field.add(name="prometheus_config", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                 type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(fdp)

    def cls(name):
        desc = pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(desc)
        return message_factory.MessageFactory(pool).GetPrototype(desc)

    return {"BatchingParameters": cls("BatchingParameters"), "MonitoringConfig": cls("MonitoringConfig")}


def batching_parameters_cls() -> type:
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        return mirrored_protos()["BatchingParameters"]


def monitoring_config_cls() -> type:
    try:
        from tensorflow_serving.config import monitoring_config_pb2
        return monitoring_config_pb2.MonitoringConfig
    except ImportError:
        return mirrored_protos()["MonitoringConfig"]


def parse_text(path: str, cls: type):
    with open(path) as f:
        return text_format.Parse(f.read(), cls())

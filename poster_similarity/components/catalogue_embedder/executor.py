"""CatalogueEmbedder's executor: a Beam pipeline per split.

    raw tf.Examples ─► check the poster (id, image header, decode) ─┬─► RunInference (tower) ─► embeddings
                                                                   └─► dropped.jsonl (id, reason)

The check decodes each image with the same TensorFlow ops and pixel limit as the Transform graph,
so a poster that passes it cannot fail inside RunInference and take its whole batch down with it.

Each embedding example also carries the poster's rule attributes (`ATTRIBUTE_FEATURES`: genres,
year and, when the catalogue has them, tags, group, duplicate_group) through the RunInference key,
so the IndexBuilder can put them into the served model without reading the raw catalogue again.
"""
from __future__ import annotations

import json
import logging
import os
import re

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from poster_similarity.core import tfrecords as tfr

log = logging.getLogger(__name__)

NAMESPACE = "CatalogueEmbedder"
DROPPED = "dropped.jsonl"  # in the output artifact's folder: {"split", "movie_id", "reason"} per line
EMBEDDING = "embedding"
# The raw features copied into the embedding examples (only those a poster has: absent costs nothing).
ATTRIBUTE_FEATURES = (tfr.FEATURE_GENRES, tfr.FEATURE_YEAR, tfr.FEATURE_TAGS, tfr.FEATURE_GROUP,
                      tfr.FEATURE_DUPLICATE_GROUP)
# ((movie_id, title, serialized tf.train.Features of the attributes), serialized raw example)
Keyed = beam.typehints.Tuple[beam.typehints.Tuple[bytes, bytes, bytes], bytes]


def _first_bytes(example, key: str) -> bytes:
    values = example.features.feature[key].bytes_list.value
    return values[0] if values else b""


def attribute_features(example) -> bytes:
    """The poster's `ATTRIBUTE_FEATURES` that it has, as a serialized `tf.train.Features`."""
    import tensorflow as tf

    feats = tf.train.Features()
    for key in ATTRIBUTE_FEATURES:
        if key in example.features.feature:
            feats.feature[key].CopyFrom(example.features.feature[key])
    return feats.SerializeToString()


def check_poster(serialized: bytes, max_pixels: int) -> tuple[bytes, bytes, str | None]:
    """(movie_id, title, why it cannot be embedded — None when it can) of one raw tf.Example."""
    mid, title, _, reason = inspect_poster(serialized, max_pixels)
    return mid, title, reason


def inspect_poster(serialized: bytes, max_pixels: int) -> tuple[bytes, bytes, bytes, str | None]:
    """`check_poster` plus the poster's attributes (`attribute_features`), from one parse."""
    import tensorflow as tf

    from poster_similarity.components.image_limits import check_pixels

    try:
        example = tf.train.Example.FromString(serialized)
    except Exception as e:  # noqa: BLE001 — DecodeError and friends
        return b"", b"", b"", f"not a tf.Example: {e}"
    mid, title = _first_bytes(example, tfr.FEATURE_MOVIE_ID), _first_bytes(example, tfr.FEATURE_TITLE)
    attrs = attribute_features(example)
    images = example.features.feature[tfr.FEATURE_IMAGE].bytes_list.value
    if not mid:
        return mid, title, attrs, "no movie_id"
    if len(images) != 1 or not images[0]:  # the tower parses exactly one image per example
        return mid, title, attrs, f"expected one image, found {len(images)}" if len(images) != 1 else "no image"
    try:
        check_pixels(tf.constant(images[0]), max_pixels)  # eager: raises before anything is decoded
        tf.io.decode_image(images[0], channels=3, expand_animations=False)
    except tf.errors.OpError as e:  # TF's message without its op/function wrappers
        reason = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$|^Expected .* Summarized data: ", "",
                        str(e.message).splitlines()[0])
        return mid, title, attrs, reason[:300]
    return mid, title, attrs, None


class _CheckPoster(beam.DoFn):
    def __init__(self, split: str, max_pixels: int):
        self.split, self.max_pixels = split, max_pixels
        self.ok = Metrics.counter(NAMESPACE, "posters_ok")
        self.bad = Metrics.counter(NAMESPACE, "posters_dropped")

    def process(self, serialized: bytes):
        mid, title, attrs, reason = inspect_poster(serialized, self.max_pixels)
        if reason is None:
            self.ok.inc()
            yield (mid, title, attrs), serialized
        else:
            self.bad.inc()
            yield beam.pvalue.TaggedOutput("dropped", json.dumps(
                {"split": self.split, "movie_id": mid.decode(errors="replace"), "reason": reason}))


def to_embedding_example(keyed) -> bytes:
    """((movie_id, title, attributes), PredictionLog) → a serialized tf.Example: movie_id, title,
    embedding and the poster's attribute features (`attribute_features`)."""
    import tensorflow as tf

    (mid, title, *attrs), prediction = keyed
    vec = tf.make_ndarray(prediction.predict_log.response.outputs[EMBEDDING]).reshape(-1)
    feats = tf.train.Features.FromString(attrs[0]) if attrs else tf.train.Features()
    feats.feature[tfr.FEATURE_MOVIE_ID].bytes_list.value[:] = [mid]
    feats.feature[tfr.FEATURE_TITLE].bytes_list.value[:] = [title]
    feats.feature[EMBEDDING].float_list.value[:] = vec.tolist()
    return tf.train.Example(features=feats).SerializeToString()


class Executor(base_beam_executor.BaseBeamExecutor):
    """Embeds each split of `examples` with `model` into `embeddings` (same split names)."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 — TFX's executor API
        from tfx.components.util import examples_utils
        from tfx.proto import example_gen_pb2
        from tfx_bsl.public.beam import RunInference
        from tfx_bsl.public.proto import model_spec_pb2

        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        out = artifact_utils.get_single_instance(output_dict["embeddings"])
        splits = artifact_utils.decode_split_names(examples.split_names)
        spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)),
            signature_name=[exec_properties["signature_name"]]))
        out.split_names = artifact_utils.encode_split_names(splits)
        p = self._make_beam_pipeline()
        dropped = []
        for split in splits:
            src = artifact_utils.get_split_uri([examples], split)
            dst = artifact_utils.get_split_uri([out], split)
            checked = (p | f"Read[{split}]" >> beam.io.ReadFromTFRecord(os.path.join(src, "*"))
                       | f"Check[{split}]" >> beam.ParDo(
                           _CheckPoster(split, exec_properties["max_image_pixels"])).with_outputs("dropped", main="ok"))
            _ = (checked.ok
                 # RunInference tells keyed from plain input by the element type: declare it
                 | f"Keyed[{split}]" >> beam.Map(lambda kv: kv).with_output_types(Keyed)
                 | f"Embed[{split}]" >> RunInference(spec)
                 | f"ToExample[{split}]" >> beam.Map(to_embedding_example)
                 | f"Write[{split}]" >> beam.io.WriteToTFRecord(os.path.join(dst, "embeddings"),
                                                               file_name_suffix=".gz"))
            dropped.append(checked.dropped)
        report = os.path.join(out.uri, "dropped")
        _ = (dropped | "AllDropped" >> beam.Flatten()
             | "WriteDropped" >> beam.io.WriteToText(report, file_name_suffix=".jsonl", shard_name_template=""))
        result = p.run()
        result.wait_until_finish()
        counters: dict[str, int] = {}  # summed over splits/steps; some runners only report `attempted`
        for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
            value = c.committed if c.committed is not None else c.attempted
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + int(value or 0)
        examples_utils.set_payload_format(out, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        out.set_int_custom_property("num_embedded", int(counters.get("posters_ok", 0)))
        out.set_int_custom_property("num_dropped", int(counters.get("posters_dropped", 0)))
        if counters.get("posters_dropped"):
            log.warning("CatalogueEmbedder dropped %d posters that cannot be decoded (see %s)",
                        counters["posters_dropped"], report + ".jsonl")
        log.info("CatalogueEmbedder: %d posters embedded, %d dropped", counters.get("posters_ok", 0),
                 counters.get("posters_dropped", 0))

"""Component spec and component of `CatalogueEmbedder` (TFX's custom-component pattern:
a `ComponentSpec` naming typed artifacts, a Beam executor, a component class tying them)."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from poster_similarity.components.catalogue_embedder import executor
from poster_similarity.core.tfrecords import MAX_IMAGE_PIXELS

EXAMPLES, MODEL, EMBEDDINGS = "examples", "model", "embeddings"


class CatalogueEmbedderSpec(types.ComponentSpec):
    """Raw catalogue examples + the Trainer's tower in; one tf.Example per poster out
    (`movie_id`, `title`, `embedding`), in the same splits."""

    PARAMETERS = {
        "code_version": ExecutionParameter(type=str),  # hash of the code: a change re-runs the component
        "signature_name": ExecutionParameter(type=str),
        "max_image_pixels": ExecutionParameter(type=int),
    }
    INPUTS = {
        EXAMPLES: ChannelParameter(type=standard_artifacts.Examples),
        MODEL: ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        EMBEDDINGS: ChannelParameter(type=standard_artifacts.Examples),
    }


class CatalogueEmbedder(base_beam_component.BaseBeamComponent):
    """Embed every catalogue poster with the trained tower, as a Beam job.

    Runs wherever the pipeline's Beam runs (DirectRunner here, Dataflow/Flink/Spark through the
    configs/beam presets). Posters whose image cannot be decoded, or whose header declares more
    than `max_image_pixels`, are dropped and listed in `<embeddings>/dropped.jsonl`; the counts are
    custom properties of the output artifact (`num_embedded`, `num_dropped`) in ML Metadata.
    """

    SPEC_CLASS = CatalogueEmbedderSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 code_version: str = "", signature_name: str = "embed_posters",
                 max_image_pixels: int = MAX_IMAGE_PIXELS):
        """
        Args:
            examples: raw catalogue `Examples` (the catalogue's ImportExampleGen).
            model: the Trainer's `Model` (the tower SavedModel, `components.tower`).
            code_version: a hash of the code this component runs (TFX caches by class name only).
            signature_name: the tower signature mapping serialized raw examples → `embedding`.
            max_image_pixels: width × height above which a poster is dropped before decoding.
        """
        super().__init__(spec=CatalogueEmbedderSpec(
            examples=examples, model=model, code_version=code_version, signature_name=signature_name,
            max_image_pixels=max_image_pixels,
            embeddings=types.Channel(type=standard_artifacts.Examples)))

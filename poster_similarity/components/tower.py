"""The Trainer's export: Transform's graph + the trained tower, no index.

The catalogue changes daily and the tower rarely, so the index is not built here: the catalogue
is embedded by `CatalogueEmbedder` (a Beam job running this SavedModel through tfx-bsl's
RunInference) and indexed by `IndexBuilder`, which wraps this SavedModel into the served one.

Signatures (string/float tensors in and out):
  embed_posters      examples [B] (raw tf.Example; only `image` is read) → embedding [B,D]  (RunInference)
  embed_examples     examples [B] (raw tf.Example)                      → embedding, logits (evaluation)
  embed              image_bytes [B]                                    → embedding
  transform_features examples [B]                                       → genres_xf, movie_id
Functions kept for `IndexBuilder` (restored with the SavedModel):
  embed_pixels(pixels uint8 [B,H,W,3]) → embedding;  logits_pixels(pixels) → genre logits

The raw-input path (`pixels_from_bytes`, `embed_signature`, `transform_features_signature`) is
defined once, here; the served model (`export.py`) builds its `embed` and `transform_features`
from the same functions, so the two SavedModels cannot drift apart.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import tensorflow as tf

from poster_similarity.components.dataset import records
from poster_similarity.components.preprocessing import GENRES_XF, IMAGE_KEY, IMAGE_XF, MOVIE_ID_KEY, decode_pixels

log = logging.getLogger(__name__)

TRAINING_REPORT = "training_report.json"  # in <export>/assets.extra/


# --- raw input through Transform's graph: shared with the served model (`export.py`) ------------------
def pixels_from_bytes(tft_layer, image_bytes: tf.Tensor, image_hw: tuple[int, int]) -> tf.Tensor:
    """Raw image bytes [B] → uint8 pixels [B,H,W,3] through Transform's own graph, so a SavedModel
    decodes and resizes exactly as training did."""
    xf = tft_layer({IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])})
    return decode_pixels(xf[IMAGE_XF], *image_hw)


def pixels_from_examples(tft_layer, examples: tf.Tensor, raw_spec: dict, image_hw: tuple[int, int]) -> tf.Tensor:
    """Raw serialized tf.Examples [B] → uint8 pixels [B,H,W,3] (the evaluation path)."""
    xf = tft_layer(tf.io.parse_example(examples, raw_spec))
    return decode_pixels(xf[IMAGE_XF], *image_hw)


def embed_signature(tft_layer, embed_pixels, image_hw: tuple[int, int]):
    """The `embed` signature (image_bytes [B] → embedding [B,D]) over a pixels → embedding function:
    the tower's own, or the tower SavedModel's when `IndexBuilder` wraps it."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def embed(image_bytes):
        return {"embedding": embed_pixels(pixels_from_bytes(tft_layer, image_bytes, image_hw))}

    return embed


def transform_features_signature(tft_layer, raw_spec: dict, num_genres: int):
    """The `transform_features` signature (examples [B] → genres_xf, movie_id): TFMA's labels, from
    the same Transform graph as the model's input."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        xf = tft_layer(tf.io.parse_example(examples, raw_spec))
        return {GENRES_XF: xf[GENRES_XF][:, :num_genres], MOVIE_ID_KEY: xf[MOVIE_ID_KEY]}

    return transform_features


class TowerModule(tf.Module):
    """Holds only trackable objects; feature specs are captured in closures, not attributes."""

    def __init__(self, tft_layer, model, tower, image_hw, raw_spec, num_genres):
        super().__init__()
        self.tft_layer, self.model, self.tower = tft_layer, model, tower
        pixel_spec = tf.TensorSpec([None, *image_hw, 3], tf.uint8, name="pixels")

        @tf.function(input_signature=[pixel_spec])
        def embed_pixels(pixels):
            return self.tower(pixels, training=False)

        @tf.function(input_signature=[pixel_spec])
        def logits_pixels(pixels):
            return self.model(pixels, training=False)["logit"]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def embed_posters(examples):
            image = tf.io.parse_example(examples, {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})[IMAGE_KEY]
            return {"embedding": embed_pixels(pixels_from_bytes(self.tft_layer, image, image_hw))}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def embed_examples(examples):
            pixels = pixels_from_examples(self.tft_layer, examples, raw_spec, image_hw)
            return {"embedding": embed_pixels(pixels), "logits": logits_pixels(pixels)}

        self.embed_pixels, self.logits_pixels = embed_pixels, logits_pixels
        self.signatures_ = {"embed_posters": embed_posters, "embed_examples": embed_examples,
                            "embed": embed_signature(self.tft_layer, embed_pixels, image_hw),
                            "transform_features": transform_features_signature(self.tft_layer, raw_spec, num_genres)}


def export_tower(model, tower, feats, tft_output, export_dir: str, report: dict | None = None) -> None:
    """Save the tower SavedModel (signatures: module docstring) to `export_dir`.

    Args:
        model: the full Keras model (backbone + embedding + genre logits).
        tower: the embedding tower (uint8 pixels → L2-normalised embedding).
        feats: `components.dataset.Features` of the Transform output (image size, genres).
        tft_output: the `TFTransformOutput`; its graph preprocesses raw bytes inside the SavedModel.
        export_dir: the Trainer's `serving_model_dir`.
        report: training history and eval retrieval, saved as `assets.extra/training_report.json`
            (IndexBuilder copies it into the served model's index report).
    """
    module = TowerModule(tft_output.transform_features_layer(), model, tower, (feats.h, feats.w),
                         dict(tft_output.raw_feature_spec()), feats.num_genres)
    signatures = {name: fn.get_concrete_function() for name, fn in module.signatures_.items()}
    tf.saved_model.save(module, export_dir, signatures=signatures)
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(export_dir, "assets.extra", TRAINING_REPORT), "w") as f:
        json.dump(report or {}, f, indent=2, default=str)
    log.info("tower exported to %s", export_dir)


def write_projector(tower, feats, patterns, log_dir: str, limit: int = 1000) -> None:
    """TensorBoard projector: vectors.tsv, metadata.tsv (title, genres), sprite.png of the posters."""
    from PIL import Image
    from tensorboard.plugins import projector

    os.makedirs(log_dir, exist_ok=True)
    vecs, meta, thumbs = [], [], []
    for batch in records(patterns).take(limit).batch(64).map(feats.parse):
        vecs.append(tower(batch[IMAGE_XF], training=False).numpy())
        titles = batch.get("title", batch[MOVIE_ID_KEY]).numpy()
        for t, g, img in zip(titles, batch[GENRES_XF].numpy(), batch[IMAGE_XF].numpy(), strict=True):
            names = "|".join(feats.genres[i] for i in np.flatnonzero(g))
            meta.append(f"{t.decode(errors='replace')}\t{names}")
            thumbs.append(Image.fromarray(img).resize((32, 48)))
    if not vecs:
        return
    vecs_np = np.concatenate(vecs)
    np.savetxt(os.path.join(log_dir, "vectors.tsv"), vecs_np, delimiter="\t", fmt="%.5f")
    with open(os.path.join(log_dir, "metadata.tsv"), "w") as f:
        f.write("title\tgenres\n" + "\n".join(meta) + "\n")
    side = int(np.ceil(np.sqrt(len(thumbs))))
    sprite = Image.new("RGB", (side * 32, side * 48))
    for i, t in enumerate(thumbs):
        sprite.paste(t, ((i % side) * 32, (i // side) * 48))
    sprite.save(os.path.join(log_dir, "sprite.png"))
    config = projector.ProjectorConfig()
    e = config.embeddings.add()
    e.tensor_name = "poster_embeddings"
    e.tensor_path = "vectors.tsv"
    e.metadata_path = "metadata.tsv"
    e.sprite.image_path = "sprite.png"
    e.sprite.single_image_dim.extend([32, 48])
    projector.visualize_embeddings(log_dir, config)

"""Transform `preprocessing_fn`: raw poster bytes → model-ready features.

The same graph runs in training (materialised by Transform) and in serving (the export wraps
`transform_features_layer()`), so decode/resize logic exists once, here.

Transformed image form (measured, see docs/pipeline-and-model.md, "Model and training"): the
padded uint8 pixels serialised with `tf.io.serialize_tensor` — 1/4 of float32 pixels, no lossy
re-encode, and decoding is a copy.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from poster_similarity.components.image_limits import check_pixels
from poster_similarity.components.model import get_backbone
from poster_similarity.core.config import PipelineConfig
from poster_similarity.core.tfrecords import MAX_IMAGE_PIXELS

IMAGE_KEY, GENRES_KEY, MOVIE_ID_KEY, TITLE_KEY = "image", "genres", "movie_id", "title"
IMAGE_XF, GENRES_XF, PRIMARY_XF = "image_xf", "genres_xf", "primary_genre_xf"
GENRE_VOCAB = "genres"
# Multi-hot width is fixed at graph-construction time; the vocabulary keeps the most frequent
# `MAX_GENRES` genres, rarer or unknown genres are dropped (index -1).
MAX_GENRES = 32


def image_size(cfg: PipelineConfig) -> tuple[int, int]:
    return tuple(cfg.image_size) if cfg.image_size else get_backbone(cfg.backbone).image_size


def decode_and_pad(image_bytes: tf.Tensor, height: int, width: int, max_pixels: int = MAX_IMAGE_PIXELS) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes → uint8 [H,W,3]; resize keeping aspect (posters are 2:3), pad the rest.
    Images whose header declares more than `max_pixels` pixels (GIF: × frames) are rejected before
    decoding (`image_limits.check_pixels`)."""
    with tf.control_dependencies([check_pixels(image_bytes, max_pixels)]):
        img = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    img = tf.image.resize_with_pad(tf.cast(img, tf.float32), height, width, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def encode_pixels(images: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """[B] image bytes → [B] serialised uint8 tensors."""
    return tf.map_fn(
        lambda b: tf.io.serialize_tensor(decode_and_pad(b, height, width)),
        images,
        fn_output_signature=tf.TensorSpec([], tf.string),
    )


def decode_pixels(serialized: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Inverse of `encode_pixels`: [B] strings → uint8 [B,H,W,3] (used by training and serving)."""
    imgs = tf.map_fn(
        lambda s: tf.io.parse_tensor(s, tf.uint8),
        serialized,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
    return tf.ensure_shape(imgs, [None, height, width, 3])


def _dense_str(t):
    if isinstance(t, tf.SparseTensor):
        t = tf.sparse.to_dense(t, default_value="")
    return tf.reshape(t, [-1])


def preprocessing_fn(inputs, custom_config):
    """TFX Transform entry point: raw contract features → the features the Trainer and the server use.

    Args:
        inputs: raw features parsed with the schema (`image` bytes, `genres` strings, `movie_id`, …).
        custom_config: `{"config": PipelineConfig.to_dict() subset}` from `pipeline.definition.module_config`.

    Returns:
        `image_xf` (serialised uint8 pixels, resized with padding to the backbone's size), `genres_xf`
        (multi-hot over the genre vocabulary), `primary_genre_xf` (index of the first listed genre)
        and `movie_id` / `title` passed through.
    """
    cfg = PipelineConfig.from_dict(custom_config["config"])
    h, w = image_size(cfg)
    outputs = {IMAGE_XF: encode_pixels(_dense_str(inputs[IMAGE_KEY]), h, w)}

    genres = inputs[GENRES_KEY]
    if not isinstance(genres, tf.SparseTensor):
        genres = tf.sparse.from_dense(genres)
    genres = tf.SparseTensor(genres.indices, tf.strings.strip(genres.values), genres.dense_shape)
    idx = tft.compute_and_apply_vocabulary(
        genres, top_k=MAX_GENRES, vocab_filename=GENRE_VOCAB, default_value=-1, num_oov_buckets=0
    )
    dense_idx = tf.sparse.to_dense(idx, default_value=-1)
    # one_hot of -1 is all zeros, so dropped/unknown genres vanish from the multi-hot.
    outputs[GENRES_XF] = tf.reduce_max(tf.one_hot(dense_idx, MAX_GENRES, dtype=tf.float32), axis=1)
    outputs[PRIMARY_XF] = tf.cast(dense_idx[:, 0], tf.int64)  # first listed genre: triplet label
    outputs[MOVIE_ID_KEY] = _dense_str(inputs[MOVIE_ID_KEY])
    if TITLE_KEY in inputs:
        outputs[TITLE_KEY] = _dense_str(inputs[TITLE_KEY])
    return outputs

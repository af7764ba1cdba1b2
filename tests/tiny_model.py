"""A tiny stand-in for the exported model: the served signatures on stock ops, saved in a second.

Shared by the serving and batching tests, which need a real SavedModel but not a trained one.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from poster_similarity.components.image_limits import check_pixels

DIM, K = 128, 3
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (40, 40, 40)]
SIGNATURES = {"serving_default", "embed", "neighbors", "recommend", "embed_examples"}


class ColourEmbedder(tf.Module):
    """image bytes → 8×8 pixels → a fixed random projection → unit vector: solid colours map to
    known, well-separated embeddings, so the right neighbours of a colour poster are known."""

    def __init__(self, seed: int, dim: int):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.proj = tf.constant(rng.normal(size=(8 * 8 * 3, dim)).astype("float32"))
        self.bias = tf.constant(rng.normal(size=(dim,)).astype("float32"))

    def colour_embeddings(self):
        pixels = np.broadcast_to(np.array(COLOURS, "float32")[:, None, None, :], (len(COLOURS), 8, 8, 3))
        return self._embed_pixels(tf.constant(pixels)).numpy()

    def _embed_pixels(self, x):
        flat = tf.reshape(x, [-1, 8 * 8 * 3]) / 255.0
        return tf.math.l2_normalize(tf.matmul(flat, self.proj) + self.bias, axis=1)

    def _embed_bytes(self, image_bytes):
        def decode(b):  # the exported model's pixel limit before decoding (so TF Serving's too)
            with tf.control_dependencies([check_pixels(b)]):
                img = tf.io.decode_image(b, channels=3, expand_animations=False)
            return tf.image.resize(tf.cast(img, tf.float32), (8, 8))

        x = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([8, 8, 3], tf.float32))
        return self._embed_pixels(x)


class TinyPosters(ColourEmbedder):
    """Stand-in for the exported model: same signatures, stock ops, brute-force index."""

    def __init__(self, seed: int, prefix: str):
        super().__init__(seed, DIM)
        self.head = tf.constant(self.rng.normal(size=(DIM, 4)).astype("float32"))
        self.catalogue = tf.constant(self.colour_embeddings())
        self.ids = tf.constant([f"{prefix}{i}" for i in range(len(COLOURS))])

    def _top_k(self, scores):
        top = tf.math.top_k(scores, K)
        return {"movie_ids": tf.gather(self.ids, top.indices), "scores": top.values}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serving_default(self, image_bytes):
        emb = self._embed_bytes(image_bytes)
        return {"embedding": emb, **self._top_k(tf.matmul(emb, self.catalogue, transpose_b=True))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def embed(self, image_bytes):
        return {"embedding": self._embed_bytes(image_bytes)}

    @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32, name="embedding")])
    def neighbors(self, embedding):
        return self._top_k(tf.matmul(embedding, self.catalogue, transpose_b=True))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="history")])
    def recommend(self, history):
        match = tf.cast(tf.equal(history[:, :, None], self.ids[None, None, :]), tf.float32)  # [B,H,N]
        per_item = tf.reduce_sum(match, axis=1)
        count = tf.maximum(tf.reduce_sum(per_item, axis=1, keepdims=True), 1.0)
        query = tf.math.l2_normalize(tf.matmul(per_item, self.catalogue) / count, axis=1)
        scores = tf.matmul(query, self.catalogue, transpose_b=True)
        return self._top_k(scores - 1e9 * tf.minimum(per_item, 1.0))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def embed_examples(self, examples):
        parsed = tf.io.parse_example(examples, {"image": tf.io.FixedLenFeature([], tf.string)})
        emb = self._embed_bytes(parsed["image"])
        return {"embedding": emb, "logits": tf.matmul(emb, self.head)}


def save_model(path: str, seed: int, prefix: str) -> str:
    m = TinyPosters(seed, prefix)
    sigs = {name: getattr(m, name) for name in SIGNATURES}
    tf.saved_model.save(m, path, signatures=sigs)
    return path


def png(colour, size=16) -> bytes:
    arr = np.broadcast_to(np.array(colour, np.uint8), (size, size, 3)).copy()
    return tf.io.encode_png(arr).numpy()

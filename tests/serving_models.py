"""Real SavedModels with a ScaNN index (tfrs), and warm-up files, for the serving tests.

Built in seconds without the pipeline. Like the exported model, every signature that searches runs
ScaNN's `TensorsToScann` op, which builds its searcher from the restored variables on its first run.
"""
from __future__ import annotations

import os

import numpy as np
import scann  # noqa: F401 — registers the ScaNN ops before any load
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tests.tiny_model import COLOURS, ColourEmbedder, png  # noqa: F401 (png: re-exported for the tests)

DIM, K = 32, 5
N_ITEMS = int(os.environ.get("POSTERS_TEST_SCANN_ITEMS", "300"))  # bigger: slower searcher initialisation
LEAVES = min(100, N_ITEMS // 30)


class ScannPosters(ColourEmbedder):
    """image bytes → 32-d unit vector → ScaNN top-k over 300 items; the first 6 are the colours."""

    def __init__(self, seed: int, prefix: str):
        super().__init__(seed, DIM)
        colours = self.colour_embeddings()
        rest = self.rng.normal(size=(N_ITEMS - len(COLOURS), DIM)).astype("float32")
        rest /= np.linalg.norm(rest, axis=1, keepdims=True)
        self.catalogue = tf.constant(np.concatenate([colours, rest]))
        self.ids = tf.constant([f"{prefix}{i}" for i in range(N_ITEMS)])
        self.index = tfrs.layers.factorized_top_k.ScaNN(
            k=K, distance_measure="dot_product", num_leaves=LEAVES, num_leaves_to_search=LEAVES,
            dimensions_per_block=2, num_reordering_candidates=50)
        self.index.index(self.catalogue, self.ids)

    def _search(self, emb):
        scores, ids = self.index(emb)
        return {"movie_ids": ids, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serving_default(self, image_bytes):
        emb = self._embed_bytes(image_bytes)
        return {"embedding": emb, **self._search(emb)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def embed(self, image_bytes):
        return {"embedding": self._embed_bytes(image_bytes)}

    @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32, name="embedding")])
    def neighbors(self, embedding):
        return self._search(embedding)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="history")])
    def recommend(self, history):
        match = tf.cast(tf.equal(history[:, :, None], self.ids[None, None, :]), tf.float32)
        per_item = tf.reduce_sum(match, axis=1)
        query = tf.math.l2_normalize(tf.matmul(per_item, self.catalogue), axis=1)
        return self._search(query)


SIGNATURES = ("serving_default", "embed", "neighbors", "recommend")


def sample_inputs(prefix: str = "m") -> dict[str, dict[str, np.ndarray]]:
    """One valid request per signature (numpy, the signature's dtypes)."""
    imgs = np.array([png(COLOURS[0]), png(COLOURS[2])], dtype=object)
    emb = np.random.default_rng(0).normal(size=(2, DIM)).astype(np.float32)
    return {"serving_default": {"image_bytes": imgs}, "embed": {"image_bytes": imgs},
            "neighbors": {"embedding": emb},
            "recommend": {"history": np.array([[f"{prefix}0", f"{prefix}1"], [f"{prefix}3", ""]], dtype=object)}}


def warmup_records(requests) -> list[bytes]:
    """Serialized PredictionLogs (TF Serving's warm-up format) for [(signature, inputs), ...]."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    out = []
    for sig, inputs in requests:
        req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="posters", signature_name=sig))
        for k, v in inputs.items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
        out.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=req)).SerializeToString())
    return out


def write_warmup(model_dir: str, records: list[bytes]) -> str:
    path = os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    return path


def save_scann_model(path: str, seed: int = 1, prefix: str = "m", warmup: bool = True) -> str:
    """Save a ScannPosters SavedModel (with a warm-up file of 2 requests per signature)."""
    m = ScannPosters(seed, prefix)
    tf.saved_model.save(m, path, signatures={s: getattr(m, s) for s in SIGNATURES},
                        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
    if warmup:
        ins = sample_inputs(prefix)
        write_warmup(path, warmup_records([(s, ins[s]) for s in SIGNATURES for _ in range(2)]))
    return path

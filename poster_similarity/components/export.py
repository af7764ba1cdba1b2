"""Serving SavedModel: Transform graph + the Trainer's tower + a retrieval index over the catalogue.

Built by `IndexBuilder` from the tower SavedModel (`components.tower`) and the catalogue embeddings,
so a new catalogue needs no retraining.

Signatures (TF Serving names; string/float tensors in and out):
  serving_default  image_bytes [B]            → embedding [B,D], movie_ids [B,k], scores [B,k]
  embed            image_bytes [B]            → embedding [B,D]
  neighbors        embedding [B,D]            → movie_ids, scores      (query with a mean: style mix)
  recommend        history [B,H] ("" = pad)   → movie_ids, scores, history_used [B]
  embed_examples   examples [B] (tf.Example)  → embedding, logits, index_ids, exact_ids (TFMA)
  transform_features examples [B]             → genres_xf, movie_id   (TFMA labels)
  neighbors_filtered / similar_filtered / recommend_filtered: the same queries under business rules
                   (+ num_results, plan; `export_filtered`)
Near-duplicates: when the catalogue has duplicate groups (`CatalogueAttributes.duplicate_groups`) and
`IndexConfig.collapse_duplicates` is on (the default), serving_default / neighbors / recommend return
at most one poster per group, its best-scoring one (`collapse_duplicates`); without groups the graph
is today's.
Raw bytes go through `transform_features_layer()`, the graph Transform used for training.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from poster_similarity.components.export_filtered import (
    CatalogueAttributes,
    DuplicateLimits,
    attribute_report,
    filtered_index,
    filtered_signatures,
    rule_catalogue,
)
from poster_similarity.components.filtered_search import PlanConfig, crowd_keep
from poster_similarity.components.preprocessing import GENRE_VOCAB
from poster_similarity.components.retrieval_metrics import FROZEN_P10_OUTPUT, index_recall
from poster_similarity.components.tower import embed_signature, pixels_from_examples, transform_features_signature
from poster_similarity.components.warmup import filtered_requests, poster_requests, write_warmup_requests
from poster_similarity.core.config import IndexConfig

log = logging.getLogger(__name__)

MAX_HISTORY = 100  # recommend uses the most recent 100 history ids
INDEX_REPORT = "index_report.json"  # written to <export_dir>/assets.extra/ (TF Serving ignores it)


# --- index --------------------------------------------------------------------------------------
def scann_params(n: int, ic: IndexConfig) -> dict:
    """ScaNN defaults scaled with the catalogue: √N leaves; search enough leaves to score ~3,000
    points (at least 2 % of the leaves) before tuning. bench/ann.py (clustered unit vectors, d=128):
    N=1M → 1000 leaves, 20 searched, recall@10 ≈ 0.99; N=10k → 100 leaves, 30 searched. The former
    default (10 % of the leaves) searched 5× more at 1M for < 0.01 more recall."""
    leaves = ic.num_leaves or max(2, int(round(np.sqrt(n))))
    leaves = min(leaves, max(2, n // 4))  # each leaf needs a few points to train on
    points_per_leaf = max(1.0, n / leaves)
    to_search = ic.num_leaves_to_search or max(1, int(np.ceil(0.02 * leaves)), int(np.ceil(3000 / points_per_leaf)))
    # Enough exact re-scoring for `recommend`, which over-fetches k + MAX_HISTORY to drop watched ids.
    reorder = ic.num_reordering_candidates
    if reorder is None:
        reorder = max(10 * ic.k, ic.k + MAX_HISTORY)
    return {"num_leaves": leaves, "num_leaves_to_search": min(to_search, leaves),
            "dimensions_per_block": ic.dimensions_per_block, "num_reordering_candidates": min(reorder, n),
            "anisotropic_quantization_threshold": ic.anisotropic_quantization_threshold,
            "training_iterations": ic.training_iterations}


def make_scann(k: int, params: dict) -> tfrs.layers.factorized_top_k.ScaNN:
    """tfrs's ScaNN layer, but built with ScaNN's own builder so the anisotropic quantization
    threshold (not exposed by tfrs) can be set; the layer's interface and SavedModel ops are unchanged."""
    import uuid

    from scann.scann_ops.py import scann_ops

    layer = tfrs.layers.factorized_top_k.ScaNN(
        k=k, distance_measure="dot_product", num_leaves=params["num_leaves"],
        num_leaves_to_search=params["num_leaves_to_search"],
        dimensions_per_block=params["dimensions_per_block"],
        num_reordering_candidates=params["num_reordering_candidates"] or None,
    )

    def build_searcher(candidates):
        builder = scann_ops.builder(db=candidates, num_neighbors=k, distance_measure="dot_product")
        builder = builder.tree(num_leaves=params["num_leaves"], num_leaves_to_search=params["num_leaves_to_search"],
                               training_iterations=params["training_iterations"])
        builder = builder.score_ah(params["dimensions_per_block"],
                                   anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"])
        if params["num_reordering_candidates"]:
            builder = builder.reorder(params["num_reordering_candidates"])
        return builder.build(shared_name=f"{layer.name}/{uuid.uuid4()}")

    layer._build_searcher = build_searcher
    return layer


def exact_top_k(queries: np.ndarray, catalogue: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ catalogue.T
    k = min(k, catalogue.shape[0])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def build_index(ids: np.ndarray, emb: np.ndarray, ic: IndexConfig, seed: int = 0):
    """Returns (index layer, report). Tunes leaves-to-search up to the recall target against exact search."""
    ids = np.array([i if isinstance(i, bytes) else str(i).encode() for i in ids], dtype=object)
    n = len(ids)
    k = min(ic.k, n)
    emb = emb.astype(np.float32)
    id_t = tf.constant(ids.astype(bytes))
    rng = np.random.default_rng(seed)
    q_rows = rng.choice(n, size=min(n, 1000), replace=False)
    queries = emb[q_rows]
    exact = ids[exact_top_k(queries, emb, k)]
    report: dict = {"catalogue_size": n, "k": k, "requested_kind": ic.kind}
    if ic.kind not in ("scann", "brute_force"):
        raise ValueError(f"unknown index kind {ic.kind!r} (scann | brute_force)")
    if ic.kind == "scann" and n < ic.min_catalogue_for_scann:
        report["fallback"] = (f"catalogue of {n} < min_catalogue_for_scann={ic.min_catalogue_for_scann}: "
                              "ScaNN cannot partition it usefully, exported brute_force instead")
    use_scann = ic.kind == "scann" and "fallback" not in report
    t0 = time.perf_counter()
    if not use_scann:
        layer = tfrs.layers.factorized_top_k.BruteForce(k=k)
        layer.index(tf.constant(emb), id_t)
        params: dict = {}
    else:
        params = scann_params(n, ic)
        while True:
            layer = make_scann(k, params)
            layer.index(tf.constant(emb), id_t)
            approx = layer(tf.constant(queries), k=k)[1].numpy()
            rec = index_recall(approx, exact)
            if rec >= ic.recall_target or params["num_leaves_to_search"] >= params["num_leaves"] \
                    or ic.num_leaves_to_search is not None:
                break
            params["num_leaves_to_search"] = min(params["num_leaves"], params["num_leaves_to_search"] * 2)
    build_s = time.perf_counter() - t0
    approx = layer(tf.constant(queries), k=k)[1].numpy()
    report.update({
        "kind": "scann" if use_scann else "brute_force", "params": params, "build_seconds": round(build_s, 3),
        "recall_at_k_vs_exact": index_recall(approx, exact), "num_eval_queries": int(len(q_rows)),
    })
    return layer, report


# --- serving module -----------------------------------------------------------------------------
def answer_width(index, dim: int) -> int:
    """How many neighbours `index` returns by default, read from one query's answer: the public way
    to learn a tfrs top-k layer's k (it keeps it only in a private attribute)."""
    return int(index(tf.zeros([1, dim], tf.float32))[1].shape[1])


class PosterServingModule(tf.Module):
    """Holds only trackable objects; feature specs are captured in closures, not attributes.

    `k` is the index's neighbours per answer (`build_index`'s report["k"]); when not given it is
    read from the index's answer (`answer_width`). `attributes` are the catalogue's rule attributes
    for the filtered signatures (None: none, the signatures still exist and take empty rules) and
    `plan` their plan thresholds. `collapse_duplicates`: the plain signatures keep one poster per
    duplicate group of `attributes.duplicate_groups` (`DuplicateCollapse`; off or no groups: as before).
    """

    def __init__(self, tft_layer, trained, index, ids, emb, image_hw, raw_spec, num_genres, frozen_p10=0.0,
                 k: int | None = None, attributes: CatalogueAttributes | None = None,
                 plan: PlanConfig | None = None, collapse_duplicates: bool = True):
        super().__init__()
        self.tft_layer = tft_layer
        self.trained = trained  # the loaded tower SavedModel: embed_pixels, logits_pixels
        self.index = index
        self.catalogue_ids = tf.Variable(tf.constant(ids.astype(bytes)), trainable=False, name="catalogue_ids")
        self.catalogue_emb = tf.Variable(emb.astype(np.float32), trainable=False, name="catalogue_embeddings")
        self.id_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(ids.astype(bytes)), tf.range(len(ids), dtype=tf.int64)),
            default_value=-1,
        )
        dim = emb.shape[1]
        k = answer_width(index, dim) if k is None else k
        max_history = min(MAX_HISTORY, len(ids) - k)
        codes = duplicate_codes((attributes or CatalogueAttributes()).duplicate_groups, len(ids))
        self.duplicates = DuplicateCollapse(codes, len(ids)) if collapse_duplicates and codes is not None else None
        embed = embed_signature(self.tft_layer, self.trained.embed_pixels, image_hw)
        transform_features = transform_features_signature(self.tft_layer, raw_spec, num_genres)

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="embedding")])
        def neighbors(embedding):
            q = tf.math.l2_normalize(embedding, axis=-1)
            scores, ids_ = self.search(q, k)
            return {"movie_ids": ids_, "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serving_default(image_bytes):
            e = embed(image_bytes)["embedding"]
            scores, ids_ = self.search(e, k)
            return {"embedding": e, "movie_ids": ids_, "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def embed_examples(examples):
            pixels = pixels_from_examples(self.tft_layer, examples, raw_spec, image_hw)
            logits = self.trained.logits_pixels(pixels)
            e = self.trained.embed_pixels(pixels)  # the served embedding (L2-normalised)
            _, index_ids = self.index(e)  # the served ANN answer …
            k = tf.shape(index_ids)[1]
            _, exact_rows = tf.math.top_k(tf.matmul(e, self.catalogue_emb, transpose_b=True), k=k)
            # The Trainer's score for the untrained backbone on this eval split, so the Evaluator
            # can gate on "did training help?" (retrieval_metrics.TrainingLift).
            frozen = tf.fill([tf.shape(e)[0]], tf.constant(frozen_p10, tf.float32))
            return {"embedding": e, "logits": logits, "index_ids": index_ids,  # … vs exact search
                    "exact_ids": tf.gather(self.catalogue_ids, exact_rows), FROZEN_P10_OUTPUT: frozen}

        self.serving_fns = {
            "serving_default": serving_default, "embed": embed, "neighbors": neighbors,
            "recommend": self._recommend_signature(k, max_history), "embed_examples": embed_examples,
            "transform_features": transform_features,
        }
        # The rule engine over the same id/embedding variables (tracked here, so they are saved once).
        self.filtered_index = filtered_index(rule_catalogue(self.catalogue_ids, self.catalogue_emb, attributes),
                                             index, k, plan)
        dup = self.duplicates
        limits = None if dup is None else DuplicateLimits(dup.codes, dup.largest, dup.redundant, k,
                                                          (plan or PlanConfig()).max_k)
        self.serving_fns.update(filtered_signatures(
            self.filtered_index, embed, lambda history: self.history_query(history, max_history)[:2], limits))

    def search(self, q, k: int, extra: int = 0):
        """The index's best k + extra for `q`, at most one per duplicate group when collapsing (the
        over-fetch `DuplicateCollapse.overfetch` guarantees k + extra distinct artworks if the
        catalogue has that many; else the last slots hold -inf)."""
        if self.duplicates is None:
            scores, ids_ = self.index(q, k=k + extra)
        else:
            scores, ids_ = self.index(q, k=min(self.duplicates.size, k + extra + self.duplicates.overfetch(k + extra)))
            scores, ids_ = self.duplicates(scores, ids_, self.id_table.lookup(ids_), k + extra)
        # tfrs' ScaNN layer returns an unknown rank: say [B, k] so /metadata (and a client sizing its
        # buffers) sees the documented shape.
        return tf.ensure_shape(scores, [None, k + extra]), tf.ensure_shape(ids_, [None, k + extra])

    def history_query(self, history, max_history: int):
        """(query [B, D] normalised, history_used [B], catalogue rows [B, H], kept [B, H]) of a history.

        The query is the mean of the most recent `max_history` distinct catalogue ids of each row,
        each counted once ("" and unknown ids are ignored; history_used counts the ids used); an
        empty/unknown history falls back to the catalogue centroid.

        Counting each id once at its first position is what makes the answer immune to TF
        Serving's `pad_variable_length_inputs`: a short request batched with a longer one is
        padded after its end with copies of its own first element (batching_util.cc), and those
        copies are duplicates, so they change neither the centroid, nor the window, nor
        history_used. (A multi-row request must start with "" for its other rows to be immune:
        the project's client sends it that way.)"""
        rows = self.id_table.lookup(history)  # [B,H] catalogue rows, -1 = "" or unknown
        # First occurrence of each id per row: a stable sort by row makes equal ids adjacent,
        # earliest first; the flags are scattered back through the inverse permutation.
        order = tf.argsort(rows, axis=1, stable=True)
        srt = tf.gather(rows, order, batch_dims=1)
        first = tf.concat([tf.ones_like(srt[:, :1], tf.bool), tf.not_equal(srt[:, 1:], srt[:, :-1])], axis=1)
        keep = tf.gather(first, tf.argsort(order, axis=1), batch_dims=1) & (rows >= 0)
        # The window: the last `max_history` kept ids (trailing padding adds none).
        keep &= tf.cumsum(tf.cast(keep, tf.int32), axis=1, reverse=True) <= max_history
        known = tf.cast(keep, tf.float32)
        vecs = tf.gather(self.catalogue_emb, tf.maximum(rows, 0)) * known[..., None]
        used = tf.reduce_sum(known, axis=1)
        centroid = tf.reduce_mean(self.catalogue_emb, axis=0, keepdims=True)
        q = tf.where(used[:, None] > 0, tf.reduce_sum(vecs, axis=1), centroid)
        return tf.math.l2_normalize(q, axis=-1), used, rows, keep

    def _watched(self, cand_rows, rows, keep):
        """[B, C] whether a candidate is in the history window, or a near-duplicate of a poster in
        it: the collapse keeps one poster of a group, and with byte-identical copies (equal scores)
        that may be the watched poster's twin, which must go with it."""
        used_rows = tf.where(keep, rows, -2)  # -2 matches no candidate
        watched = tf.reduce_any(tf.equal(cand_rows[:, :, None], used_rows[:, None, :]), axis=2)
        if self.duplicates is None:
            return watched
        codes = self.duplicates.codes  # [N] int32, -1 = in no group
        used_codes = tf.gather(codes, tf.maximum(rows, 0))
        used_codes = tf.where(keep & (used_codes >= 0), used_codes, -2)
        cand_codes = tf.gather(codes, tf.maximum(cand_rows, 0))
        cand_codes = tf.where((cand_rows >= 0) & (cand_codes >= 0), cand_codes, -3)
        return watched | tf.reduce_any(tf.equal(cand_codes[:, :, None], used_codes[:, None, :]), axis=2)

    def _recommend_signature(self, k: int, max_history: int):
        """The `recommend` signature: the user's history as one query, answers excluding the history."""

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="history")])
        def recommend(history):
            """The query of `history_query`; the window's ids are left out of the answer."""
            q, used, rows, keep = self.history_query(history, max_history)
            # Over-fetch by the window size, drop the window's ids, keep the best k (tfrs's
            # query_with_exclusions needs a static history length; TF Serving clients send any H).
            scores, ids_ = self.search(q, k, extra=max_history)
            watched = self._watched(self.id_table.lookup(ids_), rows, keep)
            scores = tf.where(watched, tf.fill(tf.shape(scores), -np.inf), scores)
            top, pos = tf.math.top_k(scores, k=k)
            return {"movie_ids": tf.gather(ids_, pos, batch_dims=1), "scores": top, "history_used": used}

        return recommend


def duplicate_codes(groups, n: int) -> np.ndarray | None:
    """[N] int32 duplicate-group code per poster (-1: in no group of two or more), None when no
    group has two members (nothing to collapse)."""
    if groups is None:
        return None
    if len(groups) != n:
        raise ValueError(f"attributes.duplicate_groups: {len(groups)} entries for {n} catalogue posters")
    keys = [g.decode() if isinstance(g, bytes) else str(g or "") for g in groups]
    counts: dict[str, int] = {}
    for g in keys:
        if g:
            counts[g] = counts.get(g, 0) + 1
    shared = {g: i for i, g in enumerate(sorted(g for g, c in counts.items() if c > 1))}
    if not shared:
        return None
    return np.array([shared.get(g, -1) for g in keys], np.int32)


class DuplicateCollapse(tf.Module):
    """Keeps the best-scoring poster of each duplicate group in a score-ordered answer (TF ops only).

    Over-fetch: among m candidates every kept poster hides at most `largest - 1` copies, so m =
    want·largest always holds `want` distinct artworks; never more than the catalogue's redundant
    posters (`redundant`, the sum of group size - 1) are hidden, hence `overfetch`."""

    def __init__(self, codes: np.ndarray, n: int):
        super().__init__()
        sizes = np.bincount(codes[codes >= 0])
        self.size, self.groups, self.largest = n, int(len(sizes)), int(sizes.max())
        self.redundant = int((sizes - 1).sum())
        self.codes = tf.Variable(codes, trainable=False, name="duplicate_codes")

    def overfetch(self, want: int) -> int:
        return min(self.redundant, want * (self.largest - 1))

    def __call__(self, scores, ids_, rows, want: int):
        """(scores, ids) [B, C] in score order + catalogue rows → the first `want` kept, in order."""
        codes = tf.where(rows >= 0, tf.gather(self.codes, tf.maximum(rows, 0)), -1)
        keep = crowd_keep(codes, tf.ones([tf.shape(codes)[0]], tf.int32))
        top, pos = tf.math.top_k(tf.where(keep, scores, -np.inf), k=min(want, self.size))
        return top, tf.gather(ids_, pos, batch_dims=1)


def export_serving_model(ic: IndexConfig, trained, tft_output, ids: np.ndarray, emb: np.ndarray, warmup: dict,
                         export_dir: str, model_name: str, seed: int = 0, extra_info: dict | None = None,
                         attributes: CatalogueAttributes | None = None) -> dict:
    """Build the catalogue's index and save the serving SavedModel (signatures: module docstring).

    Args:
        ic: the index config (kind, k, ScaNN parameters, recall target, and `ic.plan`: the filtered
            signatures' plan thresholds, `index.plan.*` in the pipeline config).
        trained: the Trainer's tower SavedModel, loaded (`tf.saved_model.load`).
        tft_output: the `TFTransformOutput`; its graph preprocesses raw bytes inside the SavedModel.
        ids / emb: catalogue movie ids [N] (bytes) and their L2-normalised embeddings [N, D].
        warmup: a few catalogue posters for TF Serving's warm-up file: {"images", "ids", "titles"}.
        export_dir: where to save (`<Model artifact>/Format-Serving`).
        model_name: written into the warm-up requests.
        seed: for the index's tuning queries.
        extra_info: more entries for `assets.extra/index_report.json`.
        attributes: the catalogue's rule attributes in `ids` order (None: none); their genre
            vocabulary is replaced by Transform's, the one the model was trained with.

    Returns:
        The index report written to `assets.extra/index_report.json` (kind, parameters, recall vs
        exact search, build time, catalogue and SavedModel size, …).
    """
    genres = [g.decode() for g in tft_output.vocabulary_by_name(GENRE_VOCAB)]
    h, w = trained.embed_pixels.input_signature[0].shape[1:3]
    index, report = build_index(ids, emb, ic, seed)
    raw_spec = dict(tft_output.raw_feature_spec())
    frozen = ((extra_info or {}).get("did_training_help") or {}).get("baselines", {}).get("frozen_backbone", {})
    rule_attrs = dataclasses.replace(attributes or CatalogueAttributes(), genre_vocab=genres)
    module = PosterServingModule(tft_output.transform_features_layer(), trained, index, ids, emb,
                                 (int(h), int(w)), raw_spec, len(genres),
                                 float(frozen.get("macro_precision@10", 0.0)), k=report["k"],
                                 attributes=rule_attrs, plan=ic.plan, collapse_duplicates=ic.collapse_duplicates)
    signatures = {name: fn.get_concrete_function() for name, fn in module.serving_fns.items()}
    options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
    tf.saved_model.save(module, export_dir, signatures=signatures, options=options)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(export_dir) for f in fs)
    dup = module.duplicates
    report["duplicate_collapse"] = (None if dup is None else {
        "groups": dup.groups, "largest": dup.largest, "redundant_posters": dup.redundant})
    report.update({"saved_model_bytes": size, "embedding_dim": int(emb.shape[1]), "genres": genres,
                   "rule_attributes": attribute_report(module.filtered_index.catalogue),
                   "plan": dataclasses.asdict(ic.plan)})
    report.update(extra_info or {})
    images = list(warmup["images"])
    wemb = module.serving_fns["embed"](tf.constant(images))["embedding"].numpy()
    requests = poster_requests(images, list(warmup["ids"]), [[] for _ in images], wemb, raw_spec,
                               list(warmup.get("titles") or [b""] * len(images)))
    requests += filtered_requests(images, list(warmup["ids"]), wemb, genres)
    write_warmup_requests(export_dir, requests, model_name)
    report["warmup_requests"] = len(requests)
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(export_dir, "assets.extra", INDEX_REPORT), "w") as f:
        json.dump(report, f, indent=2, default=str)
    log.info("%s index over %d posters, recall@%d vs exact %.3f, build %s s → %s", report["kind"], len(ids),
             report["k"], report["recall_at_k_vs_exact"], report["build_seconds"], export_dir)
    return report

"""Leave-one-out retrieval metrics over a set of (embedding, genres) pairs.

`retrieval_scores` is the numpy core shared by the Trainer's report, the TFMA metric (Evaluator)
and `posters validate`, so the pipeline gate and the CD gate compute the same numbers.
"""
from __future__ import annotations

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_scores(emb: np.ndarray, genres: np.ndarray, ks=(1, 5, 10), chunk: int = 1024) -> dict[str, float]:
    """recall@k (any top-k neighbour shares a genre), ir_recall@k (the share of a query's relevant
    posters found in its top k: information-retrieval recall, which does not saturate when most
    posters share a genre with someone), precision@k and MAP@R ("A Metric Learning Reality Check",
    Musgrave et al. 2020), each query excluded from its own neighbours."""
    emb = _normalise(emb)
    rel_all = np.asarray(genres, np.float32) > 0
    n = len(emb)
    out = ({f"recall@{k}": 0.0 for k in ks} | {f"ir_recall@{k}": 0.0 for k in ks}
           | {f"precision@{k}": 0.0 for k in ks} | {"map@r": 0.0})
    if n < 2:
        return out | {"num_queries": float(n)}
    kmax = min(max(ks), n - 1)
    map_sum, map_count = 0.0, 0
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        sims = emb[lo:hi] @ emb.T
        sims[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf  # leave one out
        relevant = (rel_all[lo:hi].astype(np.float32) @ rel_all.T.astype(np.float32)) > 0
        relevant[np.arange(hi - lo), np.arange(lo, hi)] = False
        order = np.argsort(-sims, axis=1, kind="stable")
        top_rel = np.take_along_axis(relevant, order[:, :kmax], axis=1)
        for k in ks:
            kk = min(k, kmax)
            out[f"recall@{k}"] += float(top_rel[:, :kk].any(axis=1).sum())
            out[f"precision@{k}"] += float(top_rel[:, :kk].mean(axis=1).sum())
        r_counts = relevant.sum(axis=1)
        has_rel = r_counts > 0
        for k in ks:
            found = top_rel[:, :min(k, kmax)].sum(axis=1)
            out[f"ir_recall@{k}"] += float((found[has_rel] / r_counts[has_rel]).sum())
        for row in range(hi - lo):
            r = int(r_counts[row])
            if r == 0:
                continue
            rel_r = relevant[row, order[row, :r]]
            prec = np.cumsum(rel_r) / np.arange(1, r + 1)
            map_sum += float((prec * rel_r).sum() / r)
            map_count += 1
    for key in list(out):
        if key.startswith("ir_recall@"):
            out[key] /= max(map_count, 1)  # queries with at least one relevant poster
        elif key != "map@r":
            out[key] /= n
    out["map@r"] = map_sum / max(map_count, 1)
    out["num_queries"] = float(n)
    return out


def _genre_hits(emb: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    """[G]: summed over the queries having genre g, the share of their top k (leave-one-out, cosine)
    having g. The one core of the macro, micro and per-genre figures, so they cannot disagree."""
    n = len(emb)
    kk = min(k, n - 1)
    hits = np.zeros(g.shape[1])
    for lo in range(0, n, 1024):
        hi = min(n, lo + 1024)
        sims = emb[lo:hi] @ emb.T
        sims[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        top = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
        share = g[top].mean(axis=1)  # [q, G]: the share of the top k having each genre
        hits += (share * g[lo:hi]).sum(axis=0)
    return hits


def genre_precision(emb: np.ndarray, genres: np.ndarray, k: int = 10, min_count: int = 10,
                    per_genre: bool = False) -> dict[str, float | dict[int, float]]:
    """Genre precision@k, per genre: for a query of genre g, the share of its top k that has g.

    `micro_precision@k` averages over every (query, genre of the query) pair; `macro_precision@k`
    averages per genre first, over the genres with at least `min_count` posters, so a catalogue's
    big genres (Drama) cannot hide that the small ones (Horror) are ranked at random.
    per_genre=True adds `per_genre_precision@k`: {genre column: its precision@k} over the genres the
    macro average covers (their mean is the macro figure), for reports that show which genres fail.
    """
    emb = _normalise(emb)
    g = np.asarray(genres, np.float32) > 0
    n = len(emb)
    out = {f"macro_precision@{k}": 0.0, f"micro_precision@{k}": 0.0}
    if per_genre:
        out[f"per_genre_precision@{k}"] = {}
    if n < 2:
        return out
    hits = _genre_hits(emb, g, k)
    counts = g.sum(axis=0)
    pairs = counts.sum()
    out[f"micro_precision@{k}"] = float(hits.sum() / pairs) if pairs else 0.0
    kept = counts >= min_count
    per = hits[kept] / counts[kept]
    out[f"macro_precision@{k}"] = float(per.mean()) if kept.any() else 0.0
    if per_genre:
        out[f"per_genre_precision@{k}"] = {int(c): float(v) for c, v in zip(np.flatnonzero(kept), per, strict=True)}
    return out


def index_recall(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k that the approximate index also returned."""
    hits = [len(set(a.tolist()) & set(e.tolist())) / max(len(e), 1) for a, e in zip(approx_ids, exact_ids, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


# --- TFMA metrics (Evaluator) ---------------------------------------------------------------------
# Imported lazily by TFMA through `MetricConfig(class_name=..., module=METRICS_MODULE)`;
# the project is pip-installed, so Beam workers import this module without a wheel build.
try:
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.metrics import metric_types, metric_util
except ImportError:  # serving/CLI processes do not need TFMA
    tfma = None

RETRIEVAL_KS = (1, 5, 10)
LIFT_METRIC = "lift_over_frozen_backbone"  # macro genre P@10: model / the same backbone untrained
FROZEN_P10_OUTPUT = "frozen_macro_precision_at_10"  # the embed_examples output carrying the baseline


def _per_model(value, model_name: str):
    if isinstance(value, dict) and model_name and model_name in value:
        return value[model_name]
    return value


def _pred(element, model_name: str, key: str):
    pred = _per_model(element.prediction, model_name)
    if isinstance(pred, dict):
        return pred.get(key)
    return pred if key == "embedding" else None


if tfma is not None:

    class _GatherCombiner(beam.CombineFn):
        """Gathers per-example arrays; Beam may split and merge accumulators in any order."""

        def __init__(self, keys, model_name: str, fields: tuple[str, ...], compute):
            self._keys, self._model_name, self._fields, self._compute = keys, model_name, fields, compute

        def create_accumulator(self):
            return {f: [] for f in self._fields}

        def add_input(self, acc, element):
            for f in self._fields:
                v = (_per_model(element.label, self._model_name) if f == "label"
                     else _pred(element, self._model_name, f))
                if v is None:
                    raise ValueError(f"retrieval metric: the model output has no '{f}'")
                acc[f].append(np.asarray(v))
            return acc

        def merge_accumulators(self, accs):
            accs = list(accs)
            out = self.create_accumulator()
            for a in accs:
                for f in self._fields:
                    out[f].extend(a[f])
            return out

        def extract_output(self, acc):
            return self._compute(self._keys, acc)

    def _metric_keys(names, model_name: str, output_name: str) -> dict:
        # example_weighted=None: these are unweighted by construction, and MetricsSpec.thresholds
        # look metrics up with example_weighted=None.
        return {n: metric_types.MetricKey(name=n, model_name=model_name, output_name=output_name,
                                          example_weighted=None) for n in names}

    def _stacked(acc) -> tuple[np.ndarray, np.ndarray]:
        """The gathered (embeddings [N, D], multi-hot genres [N, G])."""
        return (np.stack([e.reshape(-1) for e in acc["embedding"]]),
                np.stack([g.reshape(-1) for g in acc["label"]]))

    def _retrieval_computations(name="retrieval", eval_config=None, model_name="", output_name="",
                                sub_key=None, aggregation_type=None, class_weights=None,
                                example_weighted=False):
        names = ([f"recall@{k}" for k in RETRIEVAL_KS] + [f"ir_recall@{k}" for k in RETRIEVAL_KS]
                 + [f"precision@{k}" for k in RETRIEVAL_KS] + ["map@r"])
        keys = _metric_keys(names, model_name, output_name)

        def compute(keys_, acc):
            if not acc["embedding"]:
                return {k: float("nan") for k in keys_.values()}
            scores = retrieval_scores(*_stacked(acc), RETRIEVAL_KS)
            return {key: float(scores[n]) for n, key in keys_.items()}

        return [metric_types.MetricComputation(
            keys=list(keys.values()), preprocessors=None,
            combiner=_GatherCombiner(keys, model_name, ("embedding", "label"), compute))]

    def _index_computations(name="index_recall@10", eval_config=None, model_name="", output_name="",
                            sub_key=None, aggregation_type=None, class_weights=None, example_weighted=False):
        key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name, example_weighted=None)

        def compute(keys_, acc):
            if not acc["index_ids"]:
                return {key: float("nan")}
            return {key: index_recall(np.stack(acc["index_ids"]), np.stack(acc["exact_ids"]))}

        return [metric_types.MetricComputation(
            keys=[key], preprocessors=None,
            combiner=_GatherCombiner(key, model_name, ("index_ids", "exact_ids"), compute))]

    def _lift_computations(name="training_lift", eval_config=None, model_name="", output_name="",
                           sub_key=None, aggregation_type=None, class_weights=None, example_weighted=False):
        names = ("macro_precision@10", "micro_precision@10", LIFT_METRIC)
        keys = _metric_keys(names, model_name, output_name)

        def compute(keys_, acc):
            if not acc["embedding"]:
                return {k: float("nan") for k in keys_.values()}
            scores = genre_precision(*_stacked(acc), 10)
            frozen = float(np.asarray(acc[FROZEN_P10_OUTPUT][0]).reshape(-1)[0])
            # no baseline recorded (an older tower): 0, so a lift gate fails closed
            scores[LIFT_METRIC] = scores["macro_precision@10"] / frozen if frozen > 0 else 0.0
            return {key: float(scores[n]) for n, key in keys_.items()}

        return [metric_types.MetricComputation(
            keys=list(keys.values()), preprocessors=None,
            combiner=_GatherCombiner(keys, model_name, ("embedding", "label", FROZEN_P10_OUTPUT), compute))]

    class TrainingLift(tfma.metrics.Metric):
        """Macro/micro genre precision@10 and the model's macro P@10 over its untrained backbone's."""

        def __init__(self, name: str = "training_lift"):
            super().__init__(metric_util.merge_per_key_computations(_lift_computations), name=name)

    class RetrievalMetrics(tfma.metrics.Metric):
        """Leave-one-out recall@k / precision@k (k = 1, 5, 10) and MAP@R over the eval set."""

        def __init__(self, name: str = "retrieval"):
            super().__init__(metric_util.merge_per_key_computations(_retrieval_computations), name=name)

    class IndexRecall(tfma.metrics.Metric):
        """recall@10 of the bundled ANN index's answer against exact search over the catalogue."""

        def __init__(self, name: str = "index_recall@10"):
            super().__init__(metric_util.merge_per_key_computations(_index_computations), name=name)

    metric_types.register_metric(RetrievalMetrics)
    metric_types.register_metric(IndexRecall)
    metric_types.register_metric(TrainingLift)

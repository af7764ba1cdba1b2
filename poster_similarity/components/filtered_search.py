"""Filtered nearest-neighbour search in the served graph: plans per query, crowding, padding.

Why plans: a rule that keeps half the catalogue is served best by the ANN index (over-fetch, drop
what the rules forbid); one that keeps 0.1 % is served best, and exactly, by scoring only the allowed
posters, because the index's candidates would almost all be filtered out. Vector databases (Qdrant,
Milvus, Vertex AI) choose per query the same way. The planner reads only precomputed counts (no
catalogue scan, no sample): per row its driver, the smallest candidate superset the catalogue's
posting lists give (the year window, exactly counted; the rarest required tag; the union of the
included genres; else the whole catalogue), and an estimated allowed share (the rules' exact
marginal shares multiplied, i.e. assumed independent):

  exact        driver ≤ max(exact_max_rows, exact_max_fraction·N) rows, or the over-fetch it would
               need > max_candidates, or no approx index: the driver's rows → rules + exclusions on
               them → exact scores of the allowed → top-k (crowded). A driver above
               gather_max_fraction·N is replaced by the full-catalogue mask.
  approx       approx_topk(q, k′) with k′ = k·overfetch / estimated share, exact re-scoring of the
               candidates, rules + exclusions on them, crowding, best k. A batch without any rule
               skips the mask; one without crowding skips the crowding sort.
  approx+exact an approx row where fewer than k candidates survived falls back to the exact plan,
               so a row never returns fewer than min(k, achievable) results.

Scores are always exact dot products: candidates from the index are re-scored unless the source
says its scores are exact (`approx_topk.exact_scores`: ScaNN with reordering, brute force). A source
may return fewer than k′ per row (ScaNN pads a short row with row 0 at score NaN: dropped here).
`approx_topk` is any `(queries [b, D], k′) -> (scores, catalogue row indices [b, ≤ k′])`:
`scann_candidates(layer)` for the tfrs ScaNN layer, `brute_force_candidates(embeddings)` for a
ScaNN-free export (no `Scann>` op).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from poster_similarity.components.retrieval_rules import (
    RULE_SPECS,
    EncodedRules,
    RuleCatalogue,
    Rules,
    batch_mask,
    encode_rules,
    gather_rules,
    has_lists,
    is_excluded,
    row_mask,
)
from poster_similarity.core.config import PlanConfig  # the thresholds, defined with the pipeline config (index.plan.*)

log = logging.getLogger(__name__)

PLANS = ("exact", "approx", "approx+exact")
ApproxTopK = Callable[[tf.Tensor, tf.Tensor], tuple]


def brute_force_candidates(embeddings: tf.Variable) -> ApproxTopK:
    """Exact candidates by one batched matmul: the permissive plan of a ScaNN-free export."""
    def topk(queries, k):
        return tf.math.top_k(tf.matmul(queries, embeddings, transpose_b=True), k=k)
    topk.exact_scores = True
    return topk


def scann_candidates(layer, pre_reorder_factor: float = 2.0) -> ApproxTopK:
    """Candidates from a built tfrs ScaNN layer as catalogue rows (its searcher directly, since the
    layer may map rows to ids). ScaNN re-scores `max(k′·factor, the layer's reordering)` exactly:
    at 1M posters (bench/filtered_search.py) reordering only k′ = 200 lost part of the filtered
    top-10 at 10 % allowed (recall 0.93); 2·k′ gives 0.995 for ~0.04 ms, 4·k′ 0.998 for ~0.1 ms."""
    from scann.scann_ops.py import scann_ops

    reorder = int(getattr(layer, "_num_reordering_candidates", None) or 0)

    def topk(queries, k):
        searcher = scann_ops.searcher_from_module(layer._serialized_searcher)
        pre = tf.maximum(tf.cast(tf.math.ceil(tf.cast(k, tf.float32) * pre_reorder_factor), tf.int32), reorder)
        res = searcher.search_batched(queries, final_num_neighbors=k, pre_reorder_num_neighbors=pre)
        return res.distances, res.indices
    topk.exact_scores = reorder > 0  # every returned candidate was re-scored exactly
    return topk


# --- crowding and selection ---------------------------------------------------------------------
def crowd_keep(groups: tf.Tensor, limit: tf.Tensor) -> tf.Tensor:
    """[R, C] crowding keys of score-ordered candidates → keep [R, C]: each candidate is kept when
    fewer than `limit[r]` earlier candidates of its row share its key (greedy by score); key -1 and
    limit 0 never crowd. Rank within a key comes from one stable sort, not a C×C comparison."""
    r, c = tf.shape(groups)[0], tf.shape(groups)[1]
    key = tf.reshape(tf.range(r, dtype=tf.int64)[:, None] * (1 << 32) + tf.cast(groups, tf.int64) + 1, [-1])
    order = tf.argsort(key, stable=True)  # stable: equal keys stay in score order
    srt = tf.gather(key, order)
    first = tf.concat([[True], srt[1:] != srt[:-1]], axis=0)[:tf.size(key)]
    seg = tf.cumsum(tf.cast(first, tf.int32)) - 1
    pos = tf.range(tf.size(key))
    rank_sorted = pos - tf.gather(tf.math.unsorted_segment_min(pos, seg, tf.size(key)), seg)
    rank = tf.reshape(tf.scatter_nd(order[:, None], rank_sorted, tf.shape(key)), [r, c])
    return (groups < 0) | (limit[:, None] <= 0) | (rank < limit[:, None])


def select_first(keep: tf.Tensor, k: tf.Tensor, width: tf.Tensor):
    """Positions [R, width] of the first k[r] kept candidates of each row (in candidate order) and
    whether each slot is filled; empty slots point past the candidates."""
    c = tf.shape(keep)[1]
    keep = tf.pad(keep, [[0, 0], [0, tf.maximum(width - c, 0)]])
    sel = keep & (tf.cumsum(tf.cast(keep, tf.int32), axis=1) <= k[:, None])
    ar = tf.range(tf.shape(keep)[1])[None, :]
    pos = tf.math.top_k(-tf.where(sel, ar, ar + tf.shape(keep)[1]), k=width).indices
    return pos, tf.gather(sel, pos, batch_dims=1)


def _pick(rows, scores, keep, k, width):
    """Candidates in score order + keep flags → ([R, width] rows (-1 = none), scores (-inf), count)."""
    pos, filled = select_first(keep, k, width)
    pad = tf.maximum(width - tf.shape(rows)[1], 0)
    rows = tf.gather(tf.pad(rows, [[0, 0], [0, pad]], constant_values=-1), pos, batch_dims=1)
    scores = tf.gather(tf.pad(scores, [[0, 0], [0, pad]], constant_values=-np.inf), pos, batch_dims=1)
    return (tf.where(filled, rows, -1), tf.where(filled, scores, -np.inf),
            tf.reduce_sum(tf.cast(filled, tf.int32), axis=1))


# --- plans --------------------------------------------------------------------------------------
class Plan(NamedTuple):
    """What the planner knows per batch row, from counts only."""

    share: tf.Tensor  # [B] float32 estimated allowed share (0 = nothing can match)
    driver_starts: tf.Tensor  # [B, S] int32 slices of cat.post_rows whose union ⊇ the allowed rows
    driver_lens: tf.Tensor  # [B, S] int32 (0 = unused slice)
    driver_size: tf.Tensor  # [B] int32 rows in the driver (with repeats across included genres)
    has_rules: tf.Tensor  # [B] bool: any attribute rule or exclusion (else the mask is all-true)


def plan_rows(cat: RuleCatalogue, enc: EncodedRules) -> Plan:
    """Drivers and estimated shares (module docstring) from the catalogue's precomputed counts."""
    n = cat.size
    # Year window: a slice of the rows in year order (no rule → [INT32_MIN, INT32_MAX] → all N rows).
    lo = tf.searchsorted(cat.years_sorted, enc.year_min, side="left")
    hi = tf.searchsorted(cat.years_sorted, enc.year_max, side="right")
    sizes, starts, lens, slot = [hi - lo], [lo[:, None]], [(hi - lo)[:, None]], [0]
    share = tf.cast(hi - lo, tf.float32) * (1.0 / n)
    has_rules = enc.has_year
    if has_lists(enc):
        # Independent rules: the year window's exact share × excluded ids × Π excluded, forbidden and
        # required × the included genres' any-of share.
        none_of = tf.exp(tf.reduce_sum(tf.where(enc.hot, cat.col_log_include, 0.0), axis=1))
        share *= ((1.0 - tf.cast(enc.n_excl_distinct, tf.float32) / n)
                  * tf.exp(tf.reduce_sum(tf.where(enc.hot, cat.col_log_other, 0.0), axis=1))
                  * tf.where(enc.has_inc, 1.0 - none_of, 1.0) * tf.cast(~enc.impossible, tf.float32))
        has_rules |= tf.reduce_any(enc.hot, axis=1) | (enc.n_excl > 0) | enc.impossible
    if cat.tag_words and enc.hot.shape[1]:  # the rarest required tag
        count = tf.where(enc.hot & cat.col_required, cat.col_count, n + 1)
        sizes.append(tf.reduce_min(count, axis=1))
        starts.append(tf.gather(cat.col_start, tf.argmin(count, axis=1, output_type=tf.int32))[:, None])
        lens.append(sizes[-1][:, None])
        slot.append(len(sizes) - 1)
    if cat.genre_words and enc.hot.shape[1]:  # the union of the included genres (one slice per genre)
        count = tf.where(enc.hot[:, :64 * cat.genre_words], cat.genre_count, 0)
        sizes.append(tf.where(enc.has_inc, tf.reduce_sum(count, axis=1), n + 1))
        starts.append(tf.broadcast_to(cat.genre_start, tf.shape(count)))
        lens.append(count)
        slot += [len(sizes) - 1] * (64 * cat.genre_words)
    if len(sizes) == 1:
        return Plan(share, starts[0], lens[0], sizes[0], has_rules)
    choice = tf.argmin(tf.stack(sizes, axis=1), axis=1, output_type=tf.int32)
    lens = tf.where((np.array(slot, np.int32) == choice[:, None]) & ~enc.impossible[:, None],
                    tf.concat(lens, axis=1), 0)
    return Plan(share, tf.concat(starts, axis=1), lens, tf.reduce_sum(lens, axis=1), has_rules)


def overfetch_need(enc: EncodedRules, plan: Plan, cfg: PlanConfig) -> tf.Tensor:
    """[B] float32: candidates the approx plan asks the index for, per row."""
    factor = tf.where(enc.per_group > 0, cfg.crowding_overfetch * cfg.overfetch, cfg.overfetch)
    return tf.math.ceil(tf.cast(enc.k, tf.float32) * factor / tf.maximum(plan.share, 1e-9))


def approx_plan(cat: RuleCatalogue, queries, enc: EncodedRules, plan: Plan, need: tf.Tensor,
                approx_topk: ApproxTopK, width):
    """Over-fetch max(need) candidates from the index for the whole batch, re-score exactly, apply
    rules/exclusions/crowding: ([B, width] rows, scores, complete [B] = k found)."""
    kp = tf.maximum(tf.cast(tf.minimum(tf.reduce_max(need), float(cat.size)), tf.int32), width)
    dist, cand = approx_topk(queries, kp)
    # A source may return fewer than asked (ScaNN pads a short row with row 0 at distance NaN);
    # top_k below needs `width` columns: pad with NaN too.
    pad = [[0, 0], [0, tf.maximum(width - tf.shape(cand)[1], 0)]]
    dist, cand = tf.pad(dist, pad, constant_values=np.nan), tf.pad(tf.cast(cand, tf.int32), pad)
    ok = ~tf.math.is_nan(dist)
    exact_scores = getattr(approx_topk, "exact_scores", False)  # the source's scores are exact dot products
    if not exact_scores:
        ok &= (cand >= 0) & (cand < cat.size)
    cand = tf.where(ok, cand, 0)
    scores = dist if exact_scores else tf.reduce_sum(queries[:, None, :] * tf.gather(cat.embeddings, cand), axis=2)

    def masked():
        m = ok & batch_mask(cat, enc, cand)
        return m & ~is_excluded(enc, cand) if has_lists(enc) else m

    ok = tf.cond(tf.reduce_any(plan.has_rules), masked, lambda: ok)
    scores = tf.where(ok, scores, -np.inf)

    def crowd():  # greedy by score: sort the candidates, then drop those over their key's limit
        s, order = tf.math.top_k(scores, k=tf.shape(scores)[1])
        c = tf.gather(cand, order, batch_dims=1)
        return c, tf.where(crowd_keep(tf.gather(cat.groups, c), enc.per_group), s, -np.inf)

    cand, scores = tf.cond(tf.reduce_any(enc.per_group > 0), crowd, lambda: (cand, scores))
    scores, pos = tf.math.top_k(scores, k=width)
    filled = (scores > -np.inf) & (tf.range(width)[None, :] < enc.k[:, None])
    rows = tf.where(filled, tf.gather(cand, pos, batch_dims=1), -1)
    return rows, tf.where(filled, scores, -np.inf), tf.reduce_sum(tf.cast(filled, tf.int32), axis=1) >= enc.k


def exact_row(cat: RuleCatalogue, query, enc: EncodedRules, i, cfg: PlanConfig, width, plan: Plan | None = None):
    """The exact answer for batch row `i`: ([width] rows, scores). The driver's rows (a few slices
    of the posting lists) are checked against the rules and the allowed ones scored; a driver over
    gather_max_fraction·N (or no plan) computes the full-catalogue mask instead and then scores a
    small allowed set alone, a large one by one matvec over the catalogue with the rest at -inf."""
    big = cfg.gather_max_fraction * cat.size

    def by_driver():
        cand = tf.gather(cat.post_rows, tf.ragged.range(plan.driver_starts[i], plan.driver_starts[i]
                                                        + plan.driver_lens[i]).flat_values)
        one = gather_rules(enc, i[None])
        ok = batch_mask(cat, one, cand[None])[0] & ~is_excluded(one, cand[None])[0]
        rows = tf.sort(tf.boolean_mask(cand, ok))  # ascending, as the mask path; repeats adjacent
        rows = tf.boolean_mask(rows, tf.concat([[True], rows[1:] != rows[:-1]], 0)[:tf.size(rows)])
        return rows, tf.linalg.matvec(tf.gather(cat.embeddings, rows), query)

    def by_mask():
        mask = row_mask(cat, enc, i)

        def gathered():
            rows = tf.cast(tf.where(mask)[:, 0], tf.int32)
            return rows, tf.linalg.matvec(tf.gather(cat.embeddings, rows), query)

        def full():
            s = tf.linalg.matvec(cat.embeddings, query)
            return tf.range(cat.size), tf.where(mask, s, -np.inf)

        return tf.cond(tf.cast(tf.reduce_sum(tf.cast(mask, tf.int32)), tf.float32) > big, full, gathered)

    if plan is None:
        rows, scores = by_mask()
    else:
        rows, scores = tf.cond(tf.cast(plan.driver_size[i], tf.float32) <= big, by_driver, by_mask)
    allowed = tf.reduce_sum(tf.cast(scores > -np.inf, tf.int32))
    k, limit = enc.k[i], enc.per_group[i]

    def top(c):  # the best c allowed (c ≤ allowed, so no -inf among them) and their keep flags
        s, pos = tf.math.top_k(scores, k=c)
        r = tf.gather(rows, pos)
        keep = tf.cond(limit > 0, lambda: crowd_keep(tf.gather(cat.groups, r)[None], limit[None])[0],
                       lambda: tf.ones_like(r, tf.bool))
        return r, s, keep

    # Crowding may discard candidates: deepen ×4 until k are kept or every allowed poster was seen.
    start = tf.minimum(allowed, tf.where(limit > 0, 4 * k, k))
    kept = tf.reduce_sum(tf.cast(top(start)[2], tf.int32))
    c, _ = tf.while_loop(lambda c, n: (n < k) & (c < allowed),
                         lambda c, n: (tf.minimum(allowed, 4 * c),
                                       tf.reduce_sum(tf.cast(top(tf.minimum(allowed, 4 * c))[2], tf.int32))),
                         [start, kept])
    r, s, keep = top(c)
    rows, scores, _ = _pick(r[None], s[None], keep[None], k[None], width)
    return rows[0], scores[0]


def _approx_part(cat: RuleCatalogue, queries, rules: Rules, approx_topk: ApproxTopK, cfg: PlanConfig,
                 default_k: int, lists: bool):
    """Encode → plan → approx for the rows it suits: ([B, K] rows, scores, complete [B], use_approx [B])."""
    batch = tf.shape(queries)[0]
    enc = encode_rules(cat, rules, batch, default_k, cfg.max_k, lists=lists)
    width = tf.maximum(tf.reduce_max(enc.k), 1)
    plan = plan_rows(cat, enc)
    need = overfetch_need(enc, plan, cfg)
    small = max(cfg.exact_max_rows, cfg.exact_max_fraction * cat.size)
    use_approx = (tf.cast(plan.driver_size, tf.float32) > small) & (need <= cfg.max_candidates)
    rows, scores, complete = tf.cond(
        tf.reduce_any(use_approx),
        lambda: approx_plan(cat, queries, enc, plan, tf.where(use_approx, need, 0.0), approx_topk, width),
        lambda: (tf.fill([batch, width], -1), tf.fill([batch, width], -np.inf), tf.zeros([batch], tf.bool)))
    return rows, scores, complete & use_approx, use_approx


def _exact_part(cat: RuleCatalogue, queries, rules: Rules, cfg: PlanConfig, default_k: int, prior=None):
    """The exact plan for every row not `complete` in prior = (rows, scores, complete) (None: all
    rows): ([B, K] rows, scores). It encodes and plans again (general encoding), so that the branch
    that calls it needs only the request, not the approx part's intermediate tensors."""
    batch = tf.shape(queries)[0]
    enc = encode_rules(cat, rules, batch, default_k, cfg.max_k)
    plan = plan_rows(cat, enc)
    if prior is None:
        width = tf.maximum(tf.reduce_max(enc.k), 1)
        rows, scores, complete = tf.fill([batch, width], -1), tf.fill([batch, width], -np.inf), tf.zeros([batch], bool)
    else:
        (rows, scores, complete), width = prior, tf.shape(prior[0])[1]
    ie = tf.cast(tf.where(~complete)[:, 0], tf.int32)
    e_rows, e_scores = tf.map_fn(
        lambda i: exact_row(cat, queries[i], enc, i, cfg, width, plan), ie,
        fn_output_signature=(tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32)))
    return (tf.tensor_scatter_nd_update(rows, ie[:, None], e_rows),
            tf.tensor_scatter_nd_update(scores, ie[:, None], e_scores))


@tf.autograph.experimental.do_not_convert  # all control flow is explicit; a caller's AutoGraph need not convert it
def filtered_search(cat: RuleCatalogue, queries: tf.Tensor, rules: Rules, approx_topk: ApproxTopK | None = None,
                    cfg: PlanConfig = PlanConfig(), default_k: int = 10) -> dict:
    """Top-k per query under its rules. queries [B, D], L2-normalised. Returns movie_ids [B, K]
    ("" = no result), scores [B, K] (-inf), rows [B, K] int32 (-1), num_results [B] int32 and plan
    [B] string (`PLANS`), K = the batch's largest k. num_results < k only when fewer posters
    satisfy the rules (with crowding: when no more can be placed).

    Fast path: a batch whose genre, tag and id lists are all empty (no rules, or only year ranges,
    crowding and k) needs no vocabulary lookups, no word tests and no exclusions; it runs a
    specialisation of the same code (`encode_rules(lists=False)`). The general approx part and the
    exact part are function calls the graph does not inline, so a branch not taken costs one dead
    node, not the hundreds of nodes of its body (the exact part's loop above all)."""
    def no_inline(fn):  # (called eagerly, e.g. from a notebook, the parts simply run)
        if tf.executing_eagerly():
            return fn
        return tf.function(fn, autograph=False, experimental_attributes={"_noinline": True})

    @no_inline
    def exact_part(queries, rules, prior):
        return _exact_part(cat, queries, rules, cfg, default_k, prior)

    if approx_topk is None:
        rows, scores = exact_part(queries, rules, None)
        complete = use_approx = tf.zeros([tf.shape(queries)[0]], tf.bool)
    else:
        lists = [rules.include_genres, rules.exclude_genres, rules.required_tags, rules.forbidden_tags,
                 rules.exclude_ids]
        cheap = tf.reduce_all(tf.stack([tf.reduce_all(t == "") for t in lists]))
        general = no_inline(lambda q, r: _approx_part(cat, q, r, approx_topk, cfg, default_k, lists=True))
        rows, scores, complete, use_approx = tf.cond(
            cheap, lambda: _approx_part(cat, queries, rules, approx_topk, cfg, default_k, lists=False),
            lambda: general(queries, rules))
        rows, scores = tf.cond(tf.reduce_all(complete), lambda: (rows, scores),
                               lambda: exact_part(queries, rules, (rows, scores, complete)))
    plan_index = tf.where(complete, 1, tf.where(use_approx, 2, 0))
    return {"movie_ids": tf.where(rows >= 0, tf.gather(cat.ids, tf.maximum(rows, 0)), ""), "scores": scores,
            "rows": rows, "num_results": tf.reduce_sum(tf.cast(rows >= 0, tf.int32), axis=1),
            "plan": tf.gather(tf.constant(PLANS), plan_index)}


class FilteredIndex(tf.Module):
    """A catalogue + an optional approximate index + plan thresholds, callable in a tf.function or
    exported as a signature (`signature()`): embedding [B, D] and the rule inputs of `RULE_SPECS`."""

    def __init__(self, catalogue: RuleCatalogue, approx_topk: ApproxTopK | None = None, default_k: int = 10,
                 config: PlanConfig = PlanConfig(), approx_layer=None):
        super().__init__()
        self.catalogue = catalogue
        self.approx_layer = approx_layer  # tracked, so a SavedModel keeps the ScaNN searcher it needs
        self._approx_topk = approx_topk
        self._cfg = config
        self._default_k = default_k

    def __call__(self, queries, rules: Rules) -> dict:
        return filtered_search(self.catalogue, queries, rules, self._approx_topk, self._cfg, self._default_k)

    def signature(self):
        """tf.function: `embedding` [B, D] (normalised here) + the rule inputs → the outputs above."""
        dim = int(self.catalogue.embeddings.shape[1])

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="embedding"), *RULE_SPECS],
                     autograph=False)  # all control flow is explicit (tf.cond, tf.while_loop)
        def filtered_neighbors(embedding, *rules):
            out = self(tf.math.l2_normalize(embedding, axis=-1), Rules(*rules))
            out.pop("rows")
            return out

        return filtered_neighbors

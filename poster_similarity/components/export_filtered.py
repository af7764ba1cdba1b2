"""The served model's filtered signatures: today's queries under business rules, inside the graph.

Why a separate signature per query kind instead of new inputs on today's: TF Serving clients must
send every input a signature declares, so adding the eight rule inputs to `neighbors` would break
every existing client. The filtered signatures share the catalogue's ids and embeddings (the same
variables as today's signatures, so nothing is stored twice) and add only the attributes:

  neighbors_filtered  embedding [B,D]   + rules → movie_ids [B,K], scores [B,K], num_results [B], plan [B]
  similar_filtered    image_bytes [B]   + rules → embedding [B,D] and the outputs above
  recommend_filtered  history [B,H]     + rules → the outputs above and history_used [B]; every
                      history id is excluded (added to exclude_ids), not only the 100 averaged

The rules (`retrieval_rules.RULE_SPECS`): include_genres, exclude_genres, year_range,
required_tags, forbidden_tags, exclude_ids, per_group, k; an empty entry means "no rule", so one
batch can mix rows with and without rules. K is the batch's largest k (0 = the index's k); slots
past `num_results` hold "" and -inf. The plan per row (`filtered_search`): exact over the allowed
subset when the rules are selective, over-fetch from the index otherwise, exact again when the
index's candidates do not yield k. The candidates come from the export's own index layer: ScaNN's
searcher for a scann export, one matmul for brute_force (which therefore stays free of `Scann>`
ops and loads in stock TF Serving).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from poster_similarity.components.filtered_search import (
    FilteredIndex,
    PlanConfig,
    brute_force_candidates,
    crowd_keep,
    scann_candidates,
    select_first,
)
from poster_similarity.components.retrieval_rules import (
    MAX_EXCLUDE_IDS,
    RULE_SPECS,
    RuleCatalogue,
    Rules,
    group_codes,
)

FILTERED_SIGNATURES = ("neighbors_filtered", "similar_filtered", "recommend_filtered")


@dataclass(frozen=True)
class CatalogueAttributes:
    """Per-poster attributes, in catalogue order; None = the catalogue has none (nothing stored).

    genre_vocab: the genres a rule may name: the served model's own vocabulary (Transform's), so
        "Horror" means the same in a rule as in training; a catalogue genre outside it is not
        filterable and a rule naming it is rejected (InvalidArgument).
    genres / tags: lists of strings per poster. years: 0 = unknown (never matches a year rule).
    groups: crowding keys ("" = none), e.g. from `index_builder.executor.crowding_keys`.
    """

    genres: Sequence[Sequence[str]] | None = None
    years: Sequence[int] | np.ndarray | None = None
    tags: Sequence[Sequence[str]] | None = None
    groups: Sequence[str] | None = None
    duplicate_groups: Sequence[str] | None = None
    genre_vocab: Sequence[str] = field(default_factory=tuple)


def genre_multi_hot(genres: Sequence[Sequence[str]] | None, vocab: Sequence[str], n: int) -> np.ndarray:
    """[N, len(vocab)] bool; genres outside `vocab` are dropped (as Transform drops them)."""
    out = np.zeros((n, len(vocab)), bool)
    pos = {g: j for j, g in enumerate(vocab)}
    for i, row in enumerate(genres or ()):
        cols = [pos[g] for g in row if g in pos]
        out[i, cols] = True
    return out


def rule_catalogue(ids: tf.Variable, embeddings: tf.Variable, attrs: CatalogueAttributes | None) -> RuleCatalogue:
    """The rule engine's catalogue over the serving module's own id/embedding variables."""
    attrs = attrs or CatalogueAttributes()
    n = int(ids.shape[0])
    for name in ("genres", "years", "tags", "groups"):
        values = getattr(attrs, name)
        if values is not None and len(values) != n:
            raise ValueError(f"attributes.{name}: {len(values)} entries for {n} catalogue posters")
    vocab = [g.decode() if isinstance(g, bytes) else str(g) for g in attrs.genre_vocab]
    groups = None if attrs.groups is None else group_codes(list(attrs.groups))
    return RuleCatalogue(ids, embeddings, vocab, genre_multi_hot(attrs.genres, vocab, n),
                         years=None if attrs.years is None else np.asarray(attrs.years, np.int32),
                         tags=None if attrs.tags is None else list(attrs.tags), groups=groups)


def attribute_report(cat: RuleCatalogue) -> dict:
    """What the served model can filter on, for `index_report.json`."""
    years = cat.years.numpy()
    return {"genres": len(cat.genre_vocab), "posters_with_year": int((years > 0).sum()),
            "tags": len(cat.tag_vocab), "crowding_keys": int(len(set(cat.groups.numpy().tolist()) - {-1}))}


def filtered_index(catalogue: RuleCatalogue, index, default_k: int, config: PlanConfig | None = None) -> FilteredIndex:
    """A FilteredIndex whose permissive plan draws candidates from `index`, the export's own layer:
    ScaNN's searcher for tfrs ScaNN, an exact matmul otherwise (no ScaNN op in the graph)."""
    import tensorflow_recommenders as tfrs

    if isinstance(index, tfrs.layers.factorized_top_k.ScaNN):
        return FilteredIndex(catalogue, scann_candidates(index), default_k=default_k, config=config or PlanConfig(),
                             approx_layer=index)
    return FilteredIndex(catalogue, brute_force_candidates(catalogue.embeddings), default_k=default_k,
                         config=config or PlanConfig())


def _answer(out: dict) -> dict:
    out = dict(out)
    out.pop("rows")  # catalogue rows: internal
    return out


@dataclass(frozen=True)
class DuplicateLimits:
    """A catalogue's near-duplicate groups for the filtered signatures (`export.DuplicateCollapse`):
    codes [N] (-1 = none), the largest group, the redundant posters (Σ size - 1), the index's k and
    the plan's max_k."""

    codes: tf.Variable
    largest: int
    redundant: int
    default_k: int
    max_k: int


def collapsing(findex: FilteredIndex, dups: DuplicateLimits | None) -> Callable:
    """(queries, rules) → `findex`'s answer with at most one poster per duplicate group: asks for
    min(k·largest, k + redundant, max_k) results (k·largest always hold k distinct artworks), keeps
    the best of each group, then the first k. None: `findex` itself."""
    if dups is None:
        return findex

    def search(queries, rules: Rules) -> dict:
        size = int(findex.catalogue.size)
        want = tf.minimum(tf.where(rules.k > 0, rules.k, min(dups.default_k, dups.max_k)), size)
        fetch = tf.minimum(tf.minimum(want * dups.largest, want + dups.redundant), dups.max_k)
        out = findex(queries, rules._replace(k=tf.maximum(fetch, rules.k)))
        rows = out["rows"]
        codes = tf.where(rows >= 0, tf.gather(dups.codes, tf.maximum(rows, 0)), -1)
        keep = crowd_keep(codes, tf.ones([tf.shape(rows)[0]], tf.int32)) & (rows >= 0)
        width = tf.maximum(tf.reduce_max(want), 1)
        pos, filled = select_first(keep, want, width)
        pad = [[0, 0], [0, tf.maximum(width - tf.shape(rows)[1], 0)]]
        rows = tf.where(filled, tf.gather(tf.pad(rows, pad, constant_values=-1), pos, batch_dims=1), -1)
        scores = tf.gather(tf.pad(out["scores"], pad, constant_values=-np.inf), pos, batch_dims=1)
        return {"movie_ids": tf.where(rows >= 0, tf.gather(findex.catalogue.ids, tf.maximum(rows, 0)), ""),
                "scores": tf.where(filled, scores, -np.inf), "rows": rows,
                "num_results": tf.reduce_sum(tf.cast(filled, tf.int32), axis=1), "plan": out["plan"]}

    return search


def filtered_signatures(findex: FilteredIndex, embed, history_query: Callable,
                        duplicates: DuplicateLimits | None = None) -> dict:
    """The three filtered signatures (module docstring).

    Args:
        findex: the catalogue, its attributes and plans (`filtered_index`).
        duplicates: near-duplicate groups to collapse (`collapsing`; None: none, today's graph).
        embed: the `embed` signature function (image bytes → {"embedding": L2-normalised [B, D]}).
        history_query: history [B, H] → (normalised query [B, D], history_used [B]): the same
            query `recommend` uses, so both signatures average a history the same way.
    """
    search = collapsing(findex, duplicates)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"), *RULE_SPECS])
    def similar_filtered(image_bytes, *rules):
        e = embed(image_bytes)["embedding"]
        return {"embedding": e, **_answer(search(e, Rules(*rules)))}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="history"), *RULE_SPECS])
    def recommend_filtered(history, *rules):
        """The history is excluded by adding it to exclude_ids (a set, so TF Serving's padding of
        either with copies changes nothing); both together are capped like exclude_ids alone."""
        rules = Rules(*rules)
        q, used = history_query(history)
        cap = tf.debugging.assert_less_equal(
            tf.shape(rules.exclude_ids)[1] + tf.shape(history)[1], MAX_EXCLUDE_IDS,
            message=f"exclude_ids + history: at most {MAX_EXCLUDE_IDS} ids per row")
        with tf.control_dependencies([cap]):
            exclude = tf.concat([rules.exclude_ids, history], axis=1)
        return {"history_used": used, **_answer(search(q, rules._replace(exclude_ids=exclude)))}

    neighbors_filtered = findex.signature()
    if duplicates is not None:
        dim = int(findex.catalogue.embeddings.shape[1])

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="embedding"), *RULE_SPECS])
        def neighbors_filtered(embedding, *rules):
            return _answer(search(tf.math.l2_normalize(embedding, axis=-1), Rules(*rules)))

    return {"neighbors_filtered": neighbors_filtered, "similar_filtered": similar_filtered,
            "recommend_filtered": recommend_filtered}

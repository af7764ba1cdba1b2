"""Business rules evaluated inside the served graph: the catalogue's attributes and the rule mask.

Why in-graph: TF Serving (stock image for brute_force, the ScaNN image for scann) must answer a
filtered request on its own; a client that post-filters an over-fetched list silently returns fewer
than k posters, or the wrong ones, when the filter is selective. Everything here is plain
TF ops; the plans that use the mask (exact subset search, ScaNN over-fetch) are in `filtered_search`.

Catalogue attributes (`RuleCatalogue`), N posters:
  genres  multi-hot [N, G] packed into 64-bit words, word-major [Wg, N] int64 (G=20 → 8 MB at 1M)
  years   [N] int32, 0 = unknown (an unknown year never satisfies a year rule)
  tags    optional per-poster strings (`rating:R`, `region:DE`), packed the same way [Wt, N];
          no tags → Wt = 0, nothing stored and nothing computed
  groups  optional crowding key [N] int32, -1 = no group (never crowded)
The same attributes are stored a second time row-major, `attr_rows` [N, 1 + Wg + Wt] int64 (year,
genre words, tag words; 48 MB at 1M with 200 tags), so that checking C candidates is one gather of
C contiguous rows (gathering C columns of three word-major arrays costs ~10× more); the word-major
arrays serve the full-catalogue mask, which reads whole words.
Planner statistics, computed once here (numpy) so that no request pays for them: per genre and per
tag its document count, and posting lists `post_rows` [N + Σ genre counts + Σ tag counts] int32 =
the rows in year order (a year window is one slice of it), then each genre's rows, then each tag's
rows (ascending); 24 MB at 1M with two tags per poster, plus the sorted years (8 MB). A request's
smallest candidate superset (year window, rarest required tag, union of included genres) is thus a
few slices: the exact plan checks and scores those, never the whole catalogue.

Request rules (`Rules`, one row per query; an empty/zero entry means "no rule" so rows of one batch
can differ; lists are dense and padded with "", as TF Serving needs, and are sets, so the copies of a
row's first element that TF Serving's `pad_variable_length_inputs` appends change nothing):
  include_genres [B, Mg] str  any-of         exclude_genres [B, Mg] str  none-of
  year_range     [B, 2] int32 [min, max], 0 = open on that side
  required_tags  [B, Mt] str  all-of         forbidden_tags [B, Mt] str  none-of
  exclude_ids    [B, E] str   never returned (unknown ids ignored)
  per_group      [B] int32    at most this many results per crowding key (0 = off)
  k              [B] int32    results wanted (0 = the index's default k)
Sizes are capped (Mg, Mt ≤ 64, E ≤ 10,000, k ≤ max_k) and checked by one `tf.debugging.Assert` (its
message names every failed check), so a hostile request fails with InvalidArgument (HTTP 400)
before any large tensor is allocated. A genre outside the vocabulary is an error too (the
vocabulary is closed and published); a tag outside it is not (tags are open-ended: a required
unknown tag matches nothing, a forbidden one excludes nothing).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

MAX_GENRE_RULES = 64
MAX_TAG_RULES = 64
MAX_EXCLUDE_IDS = 10_000
MAX_TAG_VOCAB = 4096  # 64 words per poster; more would not be "memory-sane" at 1M posters
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_BIT_VALUES = np.array([1 << j for j in range(64)], dtype=np.uint64).view(np.int64)


class Rules(NamedTuple):
    """Raw request rules, one row per query (shapes and meaning: module docstring)."""

    include_genres: tf.Tensor
    exclude_genres: tf.Tensor
    year_range: tf.Tensor
    required_tags: tf.Tensor
    forbidden_tags: tf.Tensor
    exclude_ids: tf.Tensor
    per_group: tf.Tensor
    k: tf.Tensor


RULE_SPECS = Rules(
    include_genres=tf.TensorSpec([None, None], tf.string, name="include_genres"),
    exclude_genres=tf.TensorSpec([None, None], tf.string, name="exclude_genres"),
    year_range=tf.TensorSpec([None, 2], tf.int32, name="year_range"),
    required_tags=tf.TensorSpec([None, None], tf.string, name="required_tags"),
    forbidden_tags=tf.TensorSpec([None, None], tf.string, name="forbidden_tags"),
    exclude_ids=tf.TensorSpec([None, None], tf.string, name="exclude_ids"),
    per_group=tf.TensorSpec([None], tf.int32, name="per_group"),
    k=tf.TensorSpec([None], tf.int32, name="k"),
)


class EncodedRules(NamedTuple):
    """Rules turned into catalogue terms, batch-major. The list rules share one vocabulary space of
    D = 128·Wg + 128·Wt columns, in this order: included genres | excluded genres | forbidden tags |
    required tags (64 columns per word), so one one-hot and one packing encode all four."""

    hot: tf.Tensor  # [B, D] bool
    words: tf.Tensor  # [B, 2Wg + 2Wt] int64 bit words of `hot` (same order; `word_slices`)
    has_inc: tf.Tensor  # [B] bool: an any-of genre rule
    want_words: tf.Tensor  # [B, Wg + Wt] int64: bits a candidate (genre words | tag words) must have …
    test_words: tf.Tensor  # … among these (+ excluded genres, forbidden tags): words & test == want
    year_min: tf.Tensor  # [B] int64 effective bounds: no year rule → [INT32_MIN, INT32_MAX] (all pass),
    year_max: tf.Tensor  # a rule open on one side → [1, max] / [min, INT32_MAX] (unknown years fail)
    has_year: tf.Tensor  # [B] bool
    impossible: tf.Tensor  # [B] bool: a required tag no poster has, or one also forbidden
    excl_rows: tf.Tensor  # [B, E+1] int64 catalogue rows, ascending, -1 = pad/unknown
    n_excl: tf.Tensor  # [B] int32 known excluded ids (with repeats)
    n_excl_distinct: tf.Tensor  # [B] int32 distinct known excluded rows
    per_group: tf.Tensor  # [B] int32
    k: tf.Tensor  # [B] int32, ≥ 1


def _pad_rows(rows: Sequence[Sequence[str]] | None, batch: int) -> np.ndarray:
    rows = list(rows) if rows is not None else [[] for _ in range(batch)]
    width = max([len(r) for r in rows] + [0])
    out = np.full((batch, width), b"", dtype=object)
    for i, r in enumerate(rows):
        out[i, :len(r)] = [s.encode() if isinstance(s, str) else bytes(s) for s in r]
    return out.astype(bytes) if width else np.zeros((batch, 0), dtype=bytes)


def make_rules(batch: int, include_genres=None, exclude_genres=None, year_range=None, required_tags=None,
               forbidden_tags=None, exclude_ids=None, per_group=None, k=None) -> Rules:
    """Dense, ""-padded request tensors from per-row Python lists (None = no rule for any row): what
    the client library and the tests send."""
    def ints(v, shape):
        return tf.constant(np.zeros(shape, np.int32) if v is None else np.asarray(v, np.int32).reshape(shape))

    def strs(v):
        return tf.constant(_pad_rows(v, batch), tf.string)

    return Rules(strs(include_genres), strs(exclude_genres), ints(year_range, (batch, 2)), strs(required_tags),
                 strs(forbidden_tags), strs(exclude_ids), ints(per_group, (batch,)), ints(k, (batch,)))


# --- catalogue ----------------------------------------------------------------------------------
def pack_multi_hot(multi_hot: np.ndarray) -> np.ndarray:
    """[N, T] bool → [ceil(T/64), N] int64 bit words (bit t%64 of word t//64)."""
    multi_hot = np.asarray(multi_hot, bool)
    n, t = multi_hot.shape
    out = np.zeros(((t + 63) // 64, n), np.uint64)
    for j in range(t):
        out[j // 64] |= multi_hot[:, j].astype(np.uint64) << np.uint64(j % 64)
    return out.view(np.int64)


def pack_tag_lists(tags: Sequence[Iterable[str]], n: int) -> tuple[list[str], np.ndarray]:
    """Per-poster tag lists → (sorted vocabulary, [W, N] int64 bit words); no tag at all → W = 0."""
    pairs = [(i, t) for i, row in enumerate(tags) for t in set(row or ()) if t]
    vocab = sorted({t for _, t in pairs})
    if len(vocab) > MAX_TAG_VOCAB:
        raise ValueError(f"{len(vocab)} distinct tags > {MAX_TAG_VOCAB}: not memory-sane as bit words")
    out = np.zeros(((len(vocab) + 63) // 64, n), np.uint64)
    if pairs:
        pos = {t: j for j, t in enumerate(vocab)}
        rows = np.fromiter((i for i, _ in pairs), np.int64, len(pairs))
        cols = np.fromiter((pos[t] for _, t in pairs), np.int64, len(pairs))
        for w in range(out.shape[0]):
            sel = cols // 64 == w
            np.bitwise_or.at(out[w], rows[sel], np.uint64(1) << (cols[sel] % 64).astype(np.uint64))
    return vocab, out.view(np.int64)


def group_codes(keys: Sequence[str | bytes | None]) -> np.ndarray:
    """Crowding keys (franchise/series ids as strings) → int32 codes; "" / None → -1 (no group)."""
    codes: dict = {}
    return np.array([-1 if not key else codes.setdefault(key, len(codes)) for key in keys], np.int32)


def _table(keys: Sequence[str], name: str, offset: int = 0) -> tf.lookup.StaticHashTable:
    keys = list(keys) or ["\x00none"]  # a table needs one key; this one is never sent
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string),
                                            tf.range(offset, offset + len(keys), dtype=tf.int64)),
        default_value=-1, name=name)


def postings(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[W, N] bit words → (the rows of bit 0, then of bit 1, … each ascending, int32; [64W] counts)."""
    rows, bits = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for w, col in enumerate(np.asarray(words).astype("<i8").view("<u8")):
        nz = np.flatnonzero(col)
        hot = np.unpackbits(col[nz].view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")  # [nz, 64]
        r, b = np.nonzero(hot)
        rows.append(nz[r])
        bits.append(b + 64 * w)
    rows, bits = np.concatenate(rows), np.concatenate(bits)
    return rows[np.argsort(bits, kind="stable")].astype(np.int32), np.bincount(bits, minlength=64 * len(words))


class RuleCatalogue(tf.Module):
    """The catalogue's embeddings and attributes as (non-trainable) variables, so a SavedModel keeps
    them out of the graph proto; `ids`/`embeddings` may be the serving module's own variables."""

    def __init__(self, ids, embeddings, genre_vocab: Sequence[str], genre_multi_hot: np.ndarray,
                 years: np.ndarray | None = None, tags: Sequence[Iterable[str]] | None = None,
                 groups: np.ndarray | None = None, seed: int = 0, name: str = "rule_catalogue"):
        super().__init__(name=name)
        del seed  # (the planner used to sample the catalogue; it now reads exact counts)

        def var(v, dtype, nm):
            return v if isinstance(v, tf.Variable) else tf.Variable(tf.constant(v, dtype), trainable=False, name=nm)

        self.ids = var(np.asarray(ids).astype(bytes) if not isinstance(ids, tf.Variable) else ids, tf.string, "ids")
        self.embeddings = var(embeddings, tf.float32, "embeddings")
        n = int(self.ids.shape[0])
        self.size = n
        self.genre_vocab = [g.decode() if isinstance(g, bytes) else str(g) for g in genre_vocab]
        self.genre_words = len(self.genre_vocab) and (len(self.genre_vocab) + 63) // 64
        genre_bits = pack_multi_hot(np.asarray(genre_multi_hot).reshape(n, -1)[:, :len(self.genre_vocab)])
        self.genre_bits = var(genre_bits, tf.int64, "genre_bits")
        years = np.zeros(n, np.int32) if years is None else np.asarray(years, np.int32)
        self.years = var(years, tf.int32, "years")
        self.tag_vocab, tag_bits = pack_tag_lists(tags or [], n)
        self.tag_words = int(tag_bits.shape[0])
        self.tag_bits = var(tag_bits, tf.int64, "tag_bits")
        self.has_groups = groups is not None and bool(np.any(np.asarray(groups) >= 0))
        self.groups = var(np.full(n, -1, np.int32) if groups is None else np.asarray(groups, np.int32),
                          tf.int32, "groups")
        self.attr_rows = tf.Variable(np.concatenate([years[:, None].astype(np.int64), genre_bits.T, tag_bits.T], 1),
                                     trainable=False, name="attr_rows")
        self.genre_table = _table(self.genre_vocab, "genre_table")  # values = columns of the rule space
        self.tag_table = _table(self.tag_vocab, "tag_table")
        gw, tw = 64 * self.genre_words, 64 * self.tag_words
        self.exclude_genre_table = _table(self.genre_vocab, "exclude_genre_table", offset=gw)
        self.forbidden_tag_table = _table(self.tag_vocab, "forbidden_tag_table", offset=2 * gw)
        self.required_tag_table = _table(self.tag_vocab, "required_tag_table", offset=2 * gw + tw)
        self.id_table = _table([i.decode() for i in self.ids.numpy()], "id_table")
        # Planner statistics (module docstring): small vectors are graph constants, lists variables.
        year_order = np.argsort(years, kind="stable").astype(np.int32)
        genre_rows, genre_count = postings(genre_bits)
        tag_rows, tag_count = postings(tag_bits)
        self.years_sorted = tf.Variable(years[year_order].astype(np.int64), trainable=False, name="years_sorted")
        self.post_rows = tf.Variable(np.concatenate([year_order, genre_rows, tag_rows]), trainable=False,
                                     name="post_rows")
        self.genre_count, self.tag_count = genre_count.astype(np.int32), tag_count.astype(np.int32)
        self.genre_start = (n + np.cumsum(genre_count) - genre_count).astype(np.int32)
        self.tag_start = (n + len(genre_rows) + np.cumsum(tag_count) - tag_count).astype(np.int32)
        # The same per rule-space column (EncodedRules): count, posting-list start, log share factors.
        share = np.concatenate([genre_count, genre_count, tag_count, tag_count]) / max(n, 1)
        with np.errstate(divide="ignore"):
            log_none, log_all = np.log1p(-share), np.log(share)
        self.col_count = np.concatenate([genre_count, genre_count, tag_count, tag_count]).astype(np.int32)
        self.col_start = np.concatenate([self.genre_start, self.genre_start, self.tag_start,
                                         self.tag_start]).astype(np.int32)
        self.col_required = np.arange(len(share)) >= 2 * gw + tw
        self.col_log_include = np.where(np.arange(len(share)) < gw, log_none, 0).astype(np.float32)
        self.col_log_other = np.where(np.arange(len(share)) < gw, 0, np.where(self.col_required, log_all,
                                                                               log_none)).astype(np.float32)
        log.info("rule catalogue: %d posters, %d genres, %d tags, groups=%s", n, len(self.genre_vocab),
                 len(self.tag_vocab), self.has_groups)

    def attributes(self, rows=None) -> dict:
        """The attributes of catalogue `rows` (any shape; None = all): bit words [W, *rows.shape]."""
        if rows is None:
            return {"genre_bits": self.genre_bits, "years": self.years, "tag_bits": self.tag_bits}
        return {"genre_bits": tf.gather(self.genre_bits, rows, axis=1), "years": tf.gather(self.years, rows),
                "tag_bits": tf.gather(self.tag_bits, rows, axis=1)}

    def attribute_rows(self, rows) -> tf.Tensor:
        """[*rows.shape, 1 + Wg + Wt] int64: year, genre words, tag words of catalogue `rows`."""
        return tf.gather(self.attr_rows, rows)


# --- request encoding ---------------------------------------------------------------------------
def word_slices(cat: RuleCatalogue, words: tf.Tensor) -> tuple:
    """EncodedRules.words [..., 2Wg + 2Wt] → (included genres, excluded genres, forbidden, required tags)."""
    gw, tw = cat.genre_words, cat.tag_words
    return words[..., :gw], words[..., gw:2 * gw], words[..., 2 * gw:2 * gw + tw], words[..., 2 * gw + tw:]


def encode_rules(cat: RuleCatalogue, rules: Rules, batch: tf.Tensor, default_k: int, max_k: int,
                 lists: bool = True) -> EncodedRules:
    """Validates `rules` against `batch` rows and the caps, then encodes them. The vocabulary lookups
    (proportional to the request) come first, then one assert over every check; every output depends
    on it, so an oversized request allocates nothing large. `lists=False` (a batch whose genre, tag
    and id lists are all empty) skips the lookups and encodes the lists as zero-width tensors, which
    the plans recognise statically (`has_lists`) and skip."""
    r = rules
    fields = ["include_genres", "exclude_genres", "required_tags", "forbidden_tags", "exclude_ids"]
    caps = [MAX_GENRE_RULES, MAX_GENRE_RULES, MAX_TAG_RULES, MAX_TAG_RULES, MAX_EXCLUDE_IDS]
    shapes = tf.stack(tf.shape_n([getattr(r, f) for f in fields]))  # [5, 2] (year_range: [B, 2] by its spec)
    ok = [shapes[:, 1] <= caps, tf.concat([shapes[:, 0], *tf.shape_n([r.year_range[:, 0], r.per_group, r.k])],
                                          0) == batch,
          tf.stack([tf.reduce_min(r.year_range) >= 0, tf.reduce_min(r.per_group) >= 0, tf.reduce_min(r.k) >= 0,
                    tf.reduce_max(r.k) <= max_k])]
    messages = ([f"{f}: at most {c} entries per row" for f, c in zip(fields, caps, strict=True)]
                + [f"{f}: one row per query expected" for f in fields + ["year_range", "per_group", "k"]]
                + ["year_range: 0 (open) or a year", "per_group: 0 (off) or a positive limit",
                   "k: 0 (default) or a positive count", f"k: at most {max_k}"])
    gated = [tf.cast(r.year_range, tf.int64), r.per_group, r.k]
    if lists:
        inc, exc = cat.genre_table.lookup(r.include_genres), cat.exclude_genre_table.lookup(r.exclude_genres)
        req, forb = cat.required_tag_table.lookup(r.required_tags), cat.forbidden_tag_table.lookup(r.forbidden_tags)
        req_given = r.required_tags != ""
        unknown = (tf.reduce_any((inc < 0) & (r.include_genres != ""))
                   | tf.reduce_any((exc < 0) & (r.exclude_genres != "")))
        ok.append(~unknown[None])
        messages.append(f"unknown genre (known: {', '.join(cat.genre_vocab)})")
        gated += [tf.concat([inc, exc, forb, req], axis=1), cat.id_table.lookup(r.exclude_ids),
                  tf.reduce_any(req_given & (req < 0), axis=1)]
    ok = tf.concat(ok, 0)
    failed = tf.strings.reduce_join(tf.boolean_mask(tf.constant(messages), ~ok), separator="; ")
    with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(ok), [failed])]):
        gated = [tf.identity(t) for t in gated]
    years, per_group, k = gated[:3]
    ymin, ymax = years[:, 0], years[:, 1]
    has_year = (ymin > 0) | (ymax > 0)
    k = tf.minimum(tf.where(k > 0, k, min(default_k, max_k)), cat.size)
    year_min = tf.where(ymin > 0, ymin, tf.where(has_year, tf.constant(1, tf.int64), _INT32_MIN))
    year_max = tf.where(ymax > 0, ymax, _INT32_MAX)
    if not lists:
        none = tf.zeros([batch, 0], tf.int64)
        no = tf.zeros([batch], tf.bool)
        return EncodedRules(
            hot=tf.zeros([batch, 0], tf.bool), words=none, has_inc=no, want_words=none, test_words=none,
            year_min=year_min, year_max=year_max, has_year=has_year, impossible=no,
            excl_rows=tf.fill([batch, 1], tf.constant(-1, tf.int64)), n_excl=tf.zeros([batch], tf.int32),
            n_excl_distinct=tf.zeros([batch], tf.int32), per_group=per_group, k=k)
    idx, excl, impossible = gated[3:]
    gw, tw = cat.genre_words, cat.tag_words
    width = 2 * gw + 2 * tw
    hot = tf.reduce_any(tf.one_hot(idx, 64 * width, on_value=True, off_value=False, dtype=tf.bool), axis=1)
    words = tf.reduce_sum(tf.reshape(tf.cast(hot, tf.int64), [batch, width, 64]) * _BIT_VALUES, axis=2)
    _, _, forb_w, req_w = word_slices(cat, words)
    want = tf.pad(req_w, [[0, 0], [gw, 0]])
    excl = tf.sort(tf.concat([tf.fill([batch, 1], tf.constant(-1, tf.int64)), excl], axis=1), axis=1)
    distinct = (excl[:, 1:] != excl[:, :-1]) & (excl[:, 1:] >= 0)
    return EncodedRules(
        hot=hot, words=words, has_inc=tf.reduce_any(words[:, :gw] != 0, axis=1),
        want_words=want, test_words=want | words[:, gw:2 * gw + tw],
        year_min=year_min, year_max=year_max, has_year=has_year,
        impossible=impossible | tf.reduce_any(tf.bitwise.bitwise_and(req_w, forb_w) != 0, axis=1),
        excl_rows=excl, n_excl=tf.reduce_sum(tf.cast(excl >= 0, tf.int32), axis=1),
        n_excl_distinct=tf.reduce_sum(tf.cast(distinct, tf.int32), axis=1), per_group=per_group, k=k)


def has_lists(enc: EncodedRules) -> bool:
    """Static: whether `enc` encodes list rules (False: `encode_rules(lists=False)`, or a catalogue
    without genres and tags), i.e. whether word terms and exclusions must be computed at all."""
    return enc.hot.shape[1] != 0 or enc.excl_rows.shape[1] != 1


def gather_rules(enc: EncodedRules, rows: tf.Tensor) -> EncodedRules:
    """The encoded rules of batch `rows`."""
    return EncodedRules(*[tf.gather(t, rows) for t in enc])


# --- the mask -----------------------------------------------------------------------------------
def _all_bits(bits: tf.Tensor, words: tf.Tensor) -> tf.Tensor:
    return tf.reduce_all(tf.bitwise.bitwise_and(bits, words) == words, axis=0)


def _no_bits(bits: tf.Tensor, words: tf.Tensor) -> tf.Tensor:
    return tf.reduce_all(tf.bitwise.bitwise_and(bits, words) == 0, axis=0)


def batch_mask(cat: RuleCatalogue, enc: EncodedRules, rows: tf.Tensor) -> tf.Tensor:
    """The attribute rules (not exclusions) of B queries over their candidate catalogue `rows`
    [B or 1, C] → [B, C] bool, from one gather of the candidates' attribute rows. A row without a
    rule has neutral bounds and words (the whole year range; no bit wanted or tested), so only the
    any-of genre term needs a switch; all-of and none-of are one test: words & test == want."""
    attrs = cat.attribute_rows(rows)  # [B, C, 1 + Wg + Wt]
    y = attrs[:, :, 0]
    mask = (y >= enc.year_min[:, None]) & (y <= enc.year_max[:, None])
    if has_lists(enc):
        mask &= ~enc.impossible[:, None]
    if enc.test_words.shape[1]:  # static: no genres and tags (catalogue or batch) → no word terms
        words = attrs[:, :, 1:]
        mask &= tf.reduce_all(tf.bitwise.bitwise_and(words, enc.test_words[:, None, :]) == enc.want_words[:, None, :],
                              axis=2)
    if enc.test_words.shape[1] and cat.genre_words:
        inc = tf.bitwise.bitwise_and(words[:, :, :cat.genre_words], enc.words[:, None, :cat.genre_words])
        mask &= ~enc.has_inc[:, None] | tf.reduce_any(inc != 0, axis=2)
    return mask


def row_mask(cat: RuleCatalogue, enc: EncodedRules, i: tf.Tensor) -> tf.Tensor:
    """The full rule mask [N] of query `i` over the whole catalogue, exclusions included. Each term
    runs only when the row has that rule (tf.cond), because at 1M posters every term is ~1 ms, and
    a tag term reads only the tag words the row uses."""
    row = EncodedRules(*[t[i] for t in enc])
    inc, exc, forb, req = word_slices(cat, row.words)

    def used(bits, words):  # the catalogue words [u, N] and request words [u, 1] the row uses
        u = tf.where(words != 0)[:, 0]
        return tf.gather(bits, u), tf.gather(words, u)[:, None]

    def year():  # the bounds are int32-range by construction: compare the int32 years without a cast
        return ((cat.years >= tf.cast(row.year_min, tf.int32)) & (cat.years <= tf.cast(row.year_max, tf.int32)))

    terms = [
        (row.has_year, year),
        (row.has_inc, lambda: tf.reduce_any(tf.bitwise.bitwise_and(cat.genre_bits, inc[:, None]) != 0, 0)),
        (tf.reduce_any(exc != 0), lambda: _no_bits(cat.genre_bits, exc[:, None])),
        (tf.reduce_any(req != 0) & ~row.impossible, lambda: _all_bits(*used(cat.tag_bits, req))),
        (tf.reduce_any(forb != 0), lambda: _no_bits(*used(cat.tag_bits, forb))),
    ]
    mask = tf.fill([cat.size], ~row.impossible)
    for active, term in terms:
        mask = tf.cond(active, lambda m=mask, f=term: m & f(), lambda m=mask: m)

    def drop_excluded():
        rows = row.excl_rows[-row.n_excl:]  # ascending, the -1 padding first
        return tf.tensor_scatter_nd_update(mask, rows[:, None], tf.zeros_like(rows, tf.bool))

    return tf.cond(row.n_excl > 0, drop_excluded, lambda: mask)


def is_excluded(enc: EncodedRules, rows: tf.Tensor) -> tf.Tensor:
    """[B, C] catalogue rows → excluded by their query's exclude_ids (binary search in the sorted rows)."""
    pos = tf.searchsorted(enc.excl_rows, tf.cast(rows, tf.int64), side="left")
    pos = tf.minimum(pos, tf.shape(enc.excl_rows)[1] - 1)
    return tf.equal(tf.gather(enc.excl_rows, pos, batch_dims=1), tf.cast(rows, tf.int64))

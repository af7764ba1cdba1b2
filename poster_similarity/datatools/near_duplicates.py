"""Near-duplicate and placeholder posters: which movie ids share one artwork.

Why: a poster dump maps ids to images, and many ids map to the *same* artwork — re-encoded,
resized, cropped by a few %, letterboxed, colour-graded a little, or stamped with a streaming
badge — and a few images ("no image available", a studio logo card) are shared by dozens of ids.
Both poison a similarity index: the same artwork under two ids is a trivially "similar" pair, and a
placeholder makes unrelated films neighbours. The import reports the first and rejects the second.

How (pure functions, plus `NearDuplicateIndex` to collect fingerprints as posters stream by):
1. `perceptual_hash.fingerprint`: SHA-256, and per view (whole image; borders trimmed) a 64-bit
   pHash and dHash, a 256-bit pHash and an 8×8 chroma thumbnail.
2. Exact copies (same SHA-256) are grouped at once; only one of them is searched further.
3. Candidates, sub-quadratically: `perceptual_hash.candidate_pairs` (multi-index hashing: 4 chunks
   of 16 bits, each searched within 2 bits, finds every pair within `candidate_radius` bits) on the
   pHash and on the dHash; the union is the candidate set.
4. `confirm`: a candidate is a near-duplicate only if the sum of its distances — both 64-bit
   hashes, the 256-bit pHash (it sees a different picture in the same frame, or different words on
   the same card, which the 64-bit hashes barely do) and the colours (chroma) — is small, so
   same-template and same-palette posters stay apart (`Thresholds`).
5. Union-find over the confirmed pairs gives the groups (with the pairs that joined them as
   evidence); a group with more than `placeholder_min_ids` distinct ids is a placeholder.

Thresholds (`Thresholds`) were tuned on the generated set of `bench/near_duplicates.py` (results and
the command in docs/data.md).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poster_similarity.datatools import perceptual_hash as ph

log = logging.getLogger(__name__)

# A group with MORE than this many distinct ids is a placeholder. Not 3: `posters sample` makes series
# of up to 4 posters sharing one re-framed artwork (measured, 400 sample posters: 25 series, 22 found
# as groups, 4 of them of 4 posters, nothing else grouped); at 3 those would be rejected.
PLACEHOLDER_MIN_IDS = 4


@dataclass(frozen=True)
class Thresholds:
    """When two fingerprints are the same artwork (tuned in bench/near_duplicates.py, see docs/data.md).

    `candidate_radius`: pairs whose 64-bit pHash *or* dHash are within this many bits are compared
    at all. A candidate is confirmed when its score — pHash bits/64 + dHash bits/64 + `fine` (share
    of the 256-bit pHash's bits that differ) + `chroma_weight` × mean chroma difference — is at most
    `score_max`, and no signal passes its own cap. Why a sum: a true copy is usually far on one
    signal only (a crop moves the hashes, a colour shift the chroma), a look-alike (another poster
    from the same template or palette) a little on all of them; on the bench's generated sets the
    sum kept precision ≥ 0.99 where per-signal thresholds alone reached 0.95–0.97."""
    candidate_radius: int = 9
    score_max: float = 0.57
    chroma_weight: float = 10.0
    phash_max: int = 20
    dhash_max: int = 16
    fine_max: float = 0.3
    chroma_max: float = 0.035


@dataclass
class Fingerprints:
    """Columnar fingerprints: posters 0..n-1 (`ids`, `sha256`) and their views (`owner` = poster)."""
    ids: list[str]
    sha256: list[str]
    owner: np.ndarray  # (v,) int64
    phash: np.ndarray  # (v,) uint64
    dhash: np.ndarray  # (v,) uint64
    fine: np.ndarray  # (v, 32) uint8
    chroma: np.ndarray  # (v, CHROMA²·3) int8

    @classmethod
    def build(cls, ids: list[str], fps: list[ph.Fingerprint]) -> Fingerprints:
        views = [(i, v) for i, f in enumerate(fps) for v in f.views]
        nv = len(views)
        return cls(list(ids), [f.sha256 for f in fps],
                   np.fromiter((i for i, _ in views), np.int64, nv),
                   np.fromiter((v.phash for _, v in views), np.uint64, nv),
                   np.fromiter((v.dhash for _, v in views), np.uint64, nv),
                   np.stack([v.fine for _, v in views]) if nv else np.zeros((0, 32), np.uint8),
                   np.stack([v.chroma for _, v in views]) if nv else np.zeros((0, ph.CHROMA ** 2 * 3), np.int8))

    def __len__(self) -> int:
        return len(self.ids)

    def select_views(self, keep: np.ndarray) -> Fingerprints:
        """The same posters with only the views of posters where `keep[owner]`."""
        m = keep[self.owner]
        return Fingerprints(self.ids, self.sha256, self.owner[m], self.phash[m], self.dhash[m], self.fine[m],
                            self.chroma[m])


@dataclass
class Group:
    """Movie ids sharing one artwork. `pairs`: the confirmed pairs that joined them (a spanning tree,
    len(movie_ids) - 1 pairs), each {"a", "b", "evidence"}; evidence is "identical_bytes" or the
    distances that confirmed it."""
    movie_ids: list[str]
    pairs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """A stable group id: the smallest movie id in the group (string order)."""
        return self.movie_ids[0]

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.key, "movie_ids": self.movie_ids, "pairs": self.pairs}


@dataclass
class Result:
    """What a search found: groups of two or more posters, and the posters that could not be read."""
    groups: list[Group]  # sorted by key
    skipped: list[dict[str, str]]  # {"movie_id", "reason", "detail"}: could not be fingerprinted
    candidates: int = 0  # candidate view pairs compared
    seconds: dict[str, float] = field(default_factory=dict)

    def placeholders(self, min_ids: int = PLACEHOLDER_MIN_IDS) -> list[Group]:
        """The groups with more than `min_ids` distinct movie ids (`placeholder_groups`)."""
        return placeholder_groups(self.groups, min_ids)


# --- confirmation -------------------------------------------------------------------------------------


def pair_signals(fp: Fingerprints, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """The distances between the views in `pairs` ((k, 2) view indices), vectorised."""
    a, b = pairs[:, 0], pairs[:, 1]
    fine = np.unpackbits(np.bitwise_xor(fp.fine[a], fp.fine[b]), axis=1).sum(axis=1) / (fp.fine.shape[1] * 8)
    chroma = np.abs(fp.chroma[a].astype(np.int16) - fp.chroma[b]).mean(axis=1) / 127.0
    return {"phash": ph.hamming(fp.phash[a], fp.phash[b]), "dhash": ph.hamming(fp.dhash[a], fp.dhash[b]),
            "fine": fine, "chroma": chroma}


def score(signals: dict[str, np.ndarray], t: Thresholds) -> np.ndarray:
    """The combined distance of candidate pairs (see `Thresholds`): 0 for identical fingerprints."""
    return signals["phash"] / 64 + signals["dhash"] / 64 + signals["fine"] + t.chroma_weight * signals["chroma"]


def confirm(signals: dict[str, np.ndarray], t: Thresholds) -> np.ndarray:
    """Which candidate pairs are the same artwork: score within `score_max`, each signal within its cap."""
    return ((score(signals, t) <= t.score_max) & (signals["phash"] <= t.phash_max)
            & (signals["dhash"] <= t.dhash_max) & (signals["fine"] <= t.fine_max)
            & (signals["chroma"] <= t.chroma_max))


def _evidence(signals: dict[str, np.ndarray], scores: np.ndarray, k: int) -> dict[str, Any]:
    return {"phash": int(signals["phash"][k]), "dhash": int(signals["dhash"][k]),
            "fine": round(float(signals["fine"][k]), 4), "chroma": round(float(signals["chroma"][k]), 4),
            "score": round(float(scores[k]), 4)}


# --- groups -------------------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def group(fp: Fingerprints, t: Thresholds = Thresholds()) -> tuple[list[Group], int]:
    """Groups of posters sharing an artwork (identical bytes always; else confirmed candidates),
    and the number of candidate view pairs compared. Only the first poster with given bytes takes
    part in the perceptual search: its copies follow it."""
    n = len(fp)
    uf = _UnionFind(n)
    edges: list[tuple[int, int, Any]] = []
    first: dict[str, int] = {}
    for i, sha in enumerate(fp.sha256):
        j = first.setdefault(sha, i)
        if j != i and uf.union(j, i):
            edges.append((j, i, "identical_bytes"))
    search = fp.select_views(np.array([first[sha] == i for i, sha in enumerate(fp.sha256)], bool))
    cand = np.concatenate([ph.candidate_pairs(search.phash, t.candidate_radius),
                           ph.candidate_pairs(search.dhash, t.candidate_radius)])
    cand = cand[search.owner[cand[:, 0]] != search.owner[cand[:, 1]]]  # two views of one poster
    cand = np.unique(cand, axis=0) if len(cand) else cand
    signals = pair_signals(search, cand)
    scores = score(signals, t)
    ok = np.flatnonzero(confirm(signals, t))
    ok = ok[np.argsort(scores[ok], kind="stable")]  # closest first: the tree shows the best evidence
    for k in ok:
        a, b = int(search.owner[cand[k, 0]]), int(search.owner[cand[k, 1]])
        if uf.union(a, b):
            edges.append((a, b, _evidence(signals, scores, int(k))))
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        members[uf.find(i)].append(i)
    tree: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a, b, ev in edges:
        tree[uf.find(a)].append({"a": fp.ids[a], "b": fp.ids[b], "evidence": ev})
    groups = [Group(sorted({fp.ids[i] for i in m}), tree[root]) for root, m in members.items() if len(m) > 1]
    return sorted(groups, key=lambda g: g.key), len(cand)


def placeholder_groups(groups: Iterable[Group], min_ids: int = PLACEHOLDER_MIN_IDS) -> list[Group]:
    """Groups shared by more than `min_ids` distinct movie ids: one image standing for many films
    is a placeholder ("no image available", a studio card), not a poster."""
    return [g for g in groups if len(set(g.movie_ids)) > min_ids]


def duplicate_group_ids(movie_ids: Iterable[str], groups: Iterable[Group]) -> dict[str, str]:
    """movie id → its duplicate-group id (the group's smallest movie id; its own id when it shares
    its artwork with no one): a crowding key, so one artwork fills one slot of a result list."""
    out = {m: m for m in movie_ids}
    for g in groups:
        out.update({m: g.key for m in g.movie_ids})
    return out


def import_report(result: Result, min_ids: int, keep: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """For `posters import`: its report.json entries, and movie id → why it is a placeholder (for the
    `placeholder_image` rejection; empty when `keep`). Placeholder groups are listed under
    `placeholders` only, the other groups under `near_duplicates`."""
    placeholders = result.placeholders(min_ids)
    big = {g.key for g in placeholders}
    why: dict[str, str] = {}
    for g in [] if keep else placeholders:
        shown = ", ".join(g.movie_ids[:5]) + (", ..." if len(g.movie_ids) > 5 else "")
        why.update({m: f"one image shared by {len(g.movie_ids)} movie ids (> placeholder_min_ids={min_ids}): "
                       f"{shown}" for m in g.movie_ids})
    report = {"near_duplicates": [g.to_dict() for g in result.groups if g.key not in big],
              "placeholders": [{**g.to_dict(), "kept": keep} for g in placeholders],
              "near_duplicate_check": {"skipped": result.skipped, "candidates": result.candidates,
                                       "seconds": result.seconds}}
    return report, why


def find_near_duplicates(posters: Iterable[tuple[str, bytes]], thresholds: Thresholds = Thresholds(),
                         max_pixels: int = ph.DEFAULT_MAX_PIXELS) -> Result:
    """Fingerprint (movie_id, image bytes) pairs and group them; bad bytes are skipped with a reason."""
    index = NearDuplicateIndex(thresholds, max_pixels)
    for movie_id, data in posters:
        index.add(movie_id, data)
    return index.find()


class NearDuplicateIndex:
    """Collects fingerprints as posters stream by (the import adds each accepted poster), then
    groups them. Holds ~2 KB per poster (measured: 1.8 KB, 1.8 views), never the image."""

    def __init__(self, thresholds: Thresholds = Thresholds(), max_pixels: int = ph.DEFAULT_MAX_PIXELS):
        self.thresholds, self.max_pixels = thresholds, max_pixels
        self.ids: list[str] = []
        self.fingerprints: list[ph.Fingerprint] = []
        self.skipped: list[dict[str, str]] = []
        self.hash_seconds = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, movie_id: str, data: bytes) -> bool:
        """Fingerprint one poster; False (and a `skipped` entry) when its bytes do not decode."""
        t0 = time.perf_counter()
        try:
            fp = ph.fingerprint(data, self.max_pixels)
        except ph.Unreadable as e:
            log.info("near duplicates: skipping %s: %s (%s)", movie_id, e.reason, e.detail)
            self.skipped.append({"movie_id": movie_id, "reason": e.reason, "detail": e.detail})
            return False
        finally:
            self.hash_seconds += time.perf_counter() - t0
        self.add_fingerprint(movie_id, fp)
        return True

    def add_fingerprint(self, movie_id: str, fp: ph.Fingerprint) -> None:
        self.ids.append(movie_id)
        self.fingerprints.append(fp)

    def find(self) -> Result:
        t0 = time.perf_counter()
        groups, candidates = group(Fingerprints.build(self.ids, self.fingerprints), self.thresholds)
        seconds = {"hash": round(self.hash_seconds, 3), "group": round(time.perf_counter() - t0, 3)}
        log.info("near duplicates: %d posters, %d candidate pairs, %d groups in %.1f s", len(self), candidates,
                 len(groups), seconds["group"])
        return Result(groups, list(self.skipped), candidates, seconds)

"""Fingerprints of poster images and the candidate search over them (`near_duplicates.py` uses both).

Why a fingerprint and not the image: the import may see 100k posters, and finding which share an
artwork must not hold their pixels. A fingerprint is ~1 KB per view: the SHA-256 of the bytes
(exact copies) and, per view, hashes from `imagehash`: a 64-bit pHash (signs of the lowest DCT
frequencies: robust to re-encoding, resizing and colour shifts) and a 64-bit dHash (signs of
horizontal gradients: a second opinion that fails differently) find candidates; a 256-bit pHash
(16×16 DCT signs: sees finer structure such as the words of a title) and an 8×8 chroma thumbnail
(colour minus grey: a channel swap or another palette shows, a few % of saturation does not)
confirm them.

Views: the whole image, and — when it has one — what is left after trimming uniform borders
(letterbox / pillar-box bars, a scanner's margin), so a letterboxed copy hashes like its original.
Images are decoded small (JPEG draft mode, ≤ 128 px), so a 4k poster costs little more than a
thumbnail. `candidate_pairs` is multi-index hashing over the 64-bit hashes (docstring there).
"""
from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

WORK_SIZE = 128  # the longest side the image is decoded/resized to before anything else
CHROMA = 8  # chroma thumbnail side
HASH_INPUT = 64  # grey side handed to imagehash (its 256-bit pHash reads a 64×64 DCT)
MAX_TRIM = 0.2  # never trim more than this share of a side (a nearly blank card stays a card)
ROW_TOLERANCE = 16.0  # a border row: its pixels within this of the row's median ...
ROW_OUTLIERS = 0.06  # ... except at most this share of them (JPEG ringing, grain)
DEFAULT_MAX_PIXELS = 1 << 24  # as `core.tfrecords.MAX_IMAGE_PIXELS`: never decode a bomb


class Unreadable(Exception):
    """Bytes that cannot be fingerprinted; `reason` is a short code for the report."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses process boundaries (fingerprint_many)
        return Unreadable, (self.reason, self.detail)


@dataclass(frozen=True)
class View:
    """One way of looking at an image: the whole of it, or what is left after trimming borders."""
    phash: int  # 64-bit pHash (8×8 DCT signs), as an unsigned int: candidates
    dhash: int  # 64-bit dHash (8×8 gradient signs): candidates, fails differently from pHash
    fine: np.ndarray  # (32,) uint8: 256-bit pHash (16×16 DCT signs): sees a changed title, confirms
    chroma: np.ndarray  # (CHROMA*CHROMA*3,) int8: (RGB − grey) × 127, RGB in 0..1: confirms colour


@dataclass(frozen=True)
class Fingerprint:
    """What near-duplicate detection keeps of one image (no pixels beyond the thumbnails).

    Two views when the image has a border to trim: the trimmed view matches a letterboxed copy to
    its original, the whole view survives what trimming gets wrong (a badge stamped on a flat
    margin stops the trim early in one copy but not in the other)."""
    sha256: str
    size: tuple[int, int]  # the original (w, h)
    views: tuple[View, ...]


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Bytes → small RGB image (longest side ≤ WORK_SIZE). Raises Unreadable, never anything else
    for bad bytes: a fingerprint failure must not stop an import."""
    if not data:
        raise Unreadable("empty", "0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise Unreadable("too_large", f"{w}x{h} > max_pixels={max_pixels}")
            if img.format == "JPEG":
                img.draft("RGB", (WORK_SIZE * 2, WORK_SIZE * 2))  # DCT-domain downscale: 2-8x less work
            img.load()
            img = _rgb(img)
    except Unreadable:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
            TypeError, IndexError, MemoryError) as e:
        raise Unreadable("undecodable", f"{type(e).__name__}: {e}") from None
    img.thumbnail((WORK_SIZE, WORK_SIZE), Image.BILINEAR, reducing_gap=2.0)
    img.info["original_size"] = (w, h)
    return img


def _rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode in ("I", "I;16", "F"):
        arr = np.asarray(img, dtype=np.float64)
        arr = arr * (255.0 / max(float(arr.max()), 1.0))
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def _border_run(lines: np.ndarray, limit: int) -> int:
    """How many of `lines` (pixel rows, outermost first) are border: uniform in colour (at most
    ROW_OUTLIERS of the pixels off) and of the outermost line's colour."""
    lines = lines[:limit]
    if len(lines) == 0:
        return 0
    ref = np.median(lines[0], axis=0)
    if np.mean(np.abs(lines[0] - ref).max(axis=-1) > ROW_TOLERANCE) > ROW_OUTLIERS:
        return 0  # most images: no border at all, decided on one line
    off = (np.abs(lines - ref).max(axis=-1) > ROW_TOLERANCE).mean(axis=1) > ROW_OUTLIERS
    return int(np.argmax(off)) if off.any() else len(lines)


def trim_box(img: Image.Image) -> tuple[int, int, int, int]:
    """The box left after removing border lines from each side (at most MAX_TRIM of each side).

    Repeated until nothing changes: pillar-box bars make every row non-uniform until they are
    trimmed, and only then does a flat top margin show. A border line has the colour of the
    outermost line, so a letterbox bar and the flat sky beyond it (of another colour) trim to the
    same place as the original's sky."""
    a = np.asarray(img, dtype=np.int16)
    h, w = a.shape[:2]
    lim_y, lim_x = int(h * MAX_TRIM), int(w * MAX_TRIM)
    left, top, right, bottom = 0, 0, w, h
    for _ in range(4):
        box = (left, top, right, bottom)
        inner = a[top:bottom, left:right]
        top += _border_run(inner, lim_y - top)
        bottom -= _border_run(inner[::-1], lim_y - (h - bottom))
        cols = a[top:bottom, left:right].transpose(1, 0, 2)
        left += _border_run(cols, lim_x - left)
        right -= _border_run(cols[::-1], lim_x - (w - right))
        if (left, top, right, bottom) == box:
            break
    if bottom - top < 8 or right - left < 8:
        return 0, 0, w, h
    return left, top, right, bottom


def _chroma(img: Image.Image) -> np.ndarray:
    rgb = np.asarray(img.resize((CHROMA, CHROMA), Image.BOX), np.float32) / 255.0
    return np.round((rgb - rgb.mean(axis=-1, keepdims=True)).ravel() * 127).astype(np.int8)


def _bits(h: imagehash.ImageHash) -> np.ndarray:
    return np.packbits(np.asarray(h.hash, dtype=np.uint8).ravel())


def view(img: Image.Image) -> View:
    """Hashes and chroma of one view. imagehash resizes (LANCZOS) for each hash; one shared LANCZOS
    resize to 64×64 grey first makes the three hashes cheap (measured: as robust as hashing the
    128 px image, more robust than a BOX pre-shrink)."""
    grey = img.convert("L").resize((HASH_INPUT, HASH_INPUT), Image.LANCZOS)
    return View(int.from_bytes(_bits(imagehash.phash(grey)).tobytes(), "big"),
                int.from_bytes(_bits(imagehash.dhash(grey)).tobytes(), "big"),
                _bits(imagehash.phash(grey, hash_size=16)), _chroma(img))


def fingerprint(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Fingerprint:
    """One image's fingerprint; raises Unreadable for bytes that do not decode."""
    sha = hashlib.sha256(data).hexdigest()
    img = decode(data, max_pixels)
    size = tuple(img.info.get("original_size", img.size))
    box = trim_box(img)
    views = [view(img)]
    if box != (0, 0, *img.size):
        views.append(view(img.crop(box)))
    return Fingerprint(sha, size, tuple(views))  # type: ignore[arg-type]


def _fingerprint_or_error(datas: list[bytes], max_pixels: int) -> list[Fingerprint | Unreadable]:
    out: list[Fingerprint | Unreadable] = []
    for d in datas:
        try:
            out.append(fingerprint(d, max_pixels))
        except Unreadable as e:
            out.append(e)
    return out


def fingerprint_many(datas: Sequence[bytes], workers: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS
                     ) -> list[Fingerprint | Unreadable]:
    """Fingerprints of many images, an Unreadable in place of each that does not decode; in
    `workers` processes when > 1 (hashing is CPU-bound pure Python/Pillow: processes, not threads)."""
    datas = list(datas)
    if workers <= 1 or len(datas) < 2 * workers:
        return _fingerprint_or_error(datas, max_pixels)
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    step = max(1, min(2000, len(datas) // (workers * 4)))
    with ProcessPoolExecutor(workers) as pool:
        parts = pool.map(partial(_fingerprint_or_error, max_pixels=max_pixels),
                         [datas[i:i + step] for i in range(0, len(datas), step)])
        return [f for part in parts for f in part]


_POPCOUNT16 = np.array([bin(i).count("1") for i in range(1 << 16)], np.int32)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of two uint64 arrays (element-wise; a 16-bit popcount table)."""
    x = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    w = x.reshape(-1).view(np.uint16).reshape(-1, 4)
    return _POPCOUNT16[w].sum(axis=1, dtype=np.int32).reshape(x.shape)


# --- candidates: multi-index hashing ------------------------------------------------------------------
CHUNKS = 4  # 16-bit chunks of a 64-bit hash
MAX_BUCKET = 2000  # a chunk value shared by more codes is "hot": a star, not all its pairs; not probed


def _masks(bits: int, probe: int) -> list[int]:
    """Every `bits`-bit XOR mask with at most `probe` bits set, 0 first."""
    out = [0]
    for k in range(1, probe + 1):
        out += [sum(1 << b for b in c) for c in combinations(range(bits), k)]
    return out


def _bucket_pairs(keys: np.ndarray) -> np.ndarray:
    """All (i, j), i < j, with keys[i] == keys[j]. A bucket over MAX_BUCKET (thousands of posters
    with one hash: blank cards) gives only (first, other) pairs: union-find needs no more, and all
    pairs would be quadratic."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    sizes = np.diff(np.r_[starts, len(k)])
    out = []
    for size in np.unique(sizes[(sizes > 1) & (sizes <= MAX_BUCKET)]):
        first = starts[sizes == size]  # every bucket of this size: members order[first + 0..size-1]
        a, b = np.triu_indices(int(size), 1)
        members = order[first[:, None] + np.arange(size)[None, :]]
        out.append(np.stack([members[:, a].ravel(), members[:, b].ravel()], axis=1))
    for start, size in zip(starts[sizes > MAX_BUCKET], sizes[sizes > MAX_BUCKET], strict=True):
        log.warning("near duplicates: %d posters share one hash chunk; comparing each with the first only", size)
        members = order[start:start + size]
        out.append(np.stack([np.full(size - 1, members[0]), members[1:]], axis=1))
    return np.sort(np.concatenate(out), axis=1).astype(np.int64) if out else np.zeros((0, 2), np.int64)


def _probe_pairs(keys: np.ndarray, order: np.ndarray, starts: np.ndarray, mask: int) -> np.ndarray:
    """All (i, j), i < j, with keys[i] ^ keys[j] == mask (mask != 0), neither key a hot one (bucket
    over MAX_BUCKET). `order` sorts `keys`; the posters with key k are order[starts[k]:starts[k + 1]]
    (a 2^16 table: one gather per probe)."""
    own = keys.astype(np.int64)
    probe = own ^ mask
    lo, counts = starts[probe], starts[probe + 1] - starts[probe]
    counts[(counts > MAX_BUCKET) | (starts[own + 1] - starts[own] > MAX_BUCKET)] = 0
    total = int(counts.sum())
    if not total:
        return np.zeros((0, 2), np.int64)
    i = np.repeat(np.arange(len(keys)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    j = order[np.repeat(lo, counts) + offsets]
    keep = i < j  # each unordered pair is found from both ends
    return np.stack([i[keep], j[keep]], axis=1).astype(np.int64)


def candidate_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """Every pair (i < j) with hamming(codes[i], codes[j]) <= radius, without the n² comparison.

    Multi-index hashing: split the 64 bits into CHUNKS chunks. If each chunk is searched within
    `probe` bits, every pair within CHUNKS·(probe+1) − 1 bits is found (pigeonhole: were every
    chunk more than `probe` bits apart, the pair would be at least CHUNKS·(probe+1) apart). probe=0
    is exact chunk matching (radius ≤ 3); probe=1 (17 probes per chunk) reaches radius 7, probe=2
    (137 probes) radius 11. Each probe is a table lookup per code, so the cost is ~n·probes plus the
    pairs found; each chunk's matches are checked on the whole code, so the answer is exact — except
    around a hot chunk value (shared by more than MAX_BUCKET codes, e.g. the all-zero dHash chunk of
    a flat sky): its codes are paired with the bucket's first code only and are not probed, so their
    pairs must come from another chunk (in `near_duplicates`, also from the pHash, whose bits are
    balanced by construction)."""
    codes = np.asarray(codes, np.uint64)
    n = len(codes)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    probe = max(0, -(-(radius + 1) // CHUNKS) - 1)
    found = []
    width = 64 // CHUNKS
    for c in range(CHUNKS):
        keys = ((codes >> np.uint64(c * width)) & np.uint64((1 << width) - 1)).astype(np.uint32)
        order = np.argsort(keys, kind="stable")
        starts = np.r_[0, np.cumsum(np.bincount(keys, minlength=1 << width))]
        for mask in _masks(width, probe):
            pairs = _bucket_pairs(keys) if mask == 0 else _probe_pairs(keys, order, starts, mask)
            if len(pairs):
                found.append(pairs[hamming(codes[pairs[:, 0]], codes[pairs[:, 1]]) <= radius])
    if not found:
        return np.zeros((0, 2), np.int64)
    flat = np.unique(np.concatenate(found) @ np.array([n, 1], np.int64))
    return np.stack([flat // n, flat % n], axis=1)

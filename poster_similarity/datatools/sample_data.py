"""`posters sample`: deterministic synthetic movie posters with a visual language per genre.

Why: the pipeline, the tests and the demo need a catalogue that exists offline, is small, and
carries a learnable signal (genre → composition, motifs, typography, palette) without being
trivial (1–3 blended genres, random titles, layout jitter, noise, near-duplicate "series").

Colour grades (`palette="graded"`, the default): most posters get a channel swap and some a
negative-print look, so colour alone no longer names the genre. Measured why: with
`palette="genre"` an *untrained* random CNN already ranks as well as an oracle that knows each
poster's primary genre (its pooled features are a colour histogram), so training could not show
what it learns; graded posters need motifs and composition, which only a trained network sees.

Only numpy + Pillow; every random draw comes from `np.random.default_rng` seeded by `--seed`,
and the title font is Pillow's bundled default, so the same seed gives byte-identical files.
Each genre's painters live in `datatools.genres`, titles and typography in `datatools.drawing`;
this module plans the catalogue, paints and grades each poster and writes the files.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from poster_similarity.core import tfrecords as tfr
from poster_similarity.datatools.drawing import draw_credits, draw_title, make_title
from poster_similarity.datatools.genres import GENRE_NAMES, GENRE_WEIGHTS, GENRES

CSV_NAME = "posters.csv"
CSV_COLUMNS = ("movie_id", "title", "year", "genres", "poster", "group")  # group: the series ("" = none)
TFRECORD_DIR = "tfrecords"
JPEG_QUALITY = 90
PALETTES = ("graded", "genre")
GRADE_P = 0.8  # share of posters re-graded (channel swap) ...
NEGATIVE_P = 0.4  # ... and of those, printed as a negative
_SWAPS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # every channel order but RGB

# --- catalogue --------------------------------------------------------------------------------------


@dataclass
class Plan:
    movie_id: str
    title: str
    year: int
    genres: list[str]
    design_seed: int
    series: str  # "" = standalone
    member: int  # 0 = original, k = k-th sequel (jittered)


def plan_catalogue(n: int, seed: int) -> list[Plan]:
    """Decide every poster (genres, title, year, series) before painting; cheap, deterministic."""
    rng = np.random.default_rng([seed, 0x5EED])
    plans: list[Plan] = []
    series_count = 0
    while len(plans) < n:
        k = int(rng.choice([1, 2, 3], p=[0.55, 0.33, 0.12]))
        picks = rng.choice(len(GENRE_NAMES), size=k, replace=False, p=GENRE_WEIGHTS)
        genres = [GENRE_NAMES[i] for i in picks]
        title = make_title(rng, genres[0])
        year = int(rng.integers(1955, 2025))
        design_seed = int(rng.integers(2**31))
        length = 1
        if rng.random() < 0.06 and n - len(plans) >= 2:  # a franchise: 2–4 near-duplicate posters
            length = int(min(rng.integers(2, 5), n - len(plans)))
        series = f"series{series_count:03d}" if length > 1 else ""
        series_count += length > 1
        for m in range(length):
            plans.append(Plan(
                movie_id=f"syn{len(plans):05d}", title=title if m == 0 else f"{title} {m + 1}",
                year=min(2025, year + m * int(rng.integers(2, 5))), genres=list(genres),
                design_seed=design_seed, series=series, member=m))
    return plans


def colour_grade(img: Image.Image, design_seed: int) -> Image.Image:
    """The designer's colour grade: a channel swap (orange-and-black becomes blue-and-black) for
    GRADE_P of posters, a negative print for NEGATIVE_P of those. Seeded by the design alone, so a
    series shares its grade, and drawn from its own stream, so `palette="genre"` posters are
    unchanged by its existence."""
    rng = np.random.default_rng([design_seed, 0xC010])
    if rng.random() >= GRADE_P:
        return img
    arr = np.asarray(img)[..., list(_SWAPS[int(rng.integers(len(_SWAPS)))])]
    if rng.random() < NEGATIVE_P:
        arr = 255 - arr
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def render_poster(genres: list[str], title: str, size: tuple[int, int], design_seed: int,
                  jitter_seed: int | None = None, palette: str = "graded") -> Image.Image:
    """Paint one poster. Same `design_seed` = same layout/palette; `jitter_seed` adds the small
    differences between members of a series (shift, zoom, colour cast). `palette="genre"` skips the
    colour grade (every genre in its own colours)."""
    if palette not in PALETTES:
        raise ValueError(f"palette must be one of {PALETTES}, got {palette!r}")
    w, h = size
    rng = np.random.default_rng(design_seed)
    img = Image.new("RGB", (w, h))
    GENRES[genres[0]].primary(img, rng)  # background + composition from the primary genre
    for g in genres[1:]:  # secondary genres contribute their motifs
        GENRES[g].accent(img, rng)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    jr = np.random.default_rng(jitter_seed) if jitter_seed is not None else None
    if jr is not None:  # sequel: same artwork, slightly re-framed
        z = jr.uniform(1.0, 1.05)
        dx, dy = jr.uniform(-0.025, 0.025) * w, jr.uniform(-0.025, 0.025) * h
        img = img.transform((w, h), Image.AFFINE,
                            (1 / z, 0, (w - w / z) / 2 + dx, 0, 1 / z, (h - h / z) / 2 + dy), Image.BILINEAR)
    draw_title(img, title, GENRES[genres[0]].title, rng)
    mean = np.asarray(img.resize((8, 12))).mean()
    draw_credits(img, rng, dark_text=mean > 140)
    if palette == "graded":
        img = colour_grade(img, design_seed)
    # print/scan variation: contrast, colour cast and grain (a sequel shares the first two, roughly)
    contrast = rng.uniform(0.92, 1.08)
    cast = rng.integers(-12, 13, size=3).astype(np.float32)
    grain = rng.uniform(2, 8)
    if jr is not None:
        contrast *= jr.uniform(0.98, 1.02)
        cast += jr.integers(-3, 4, size=3)
    arr = np.asarray(img).astype(np.float32) * np.float32(contrast) + cast
    arr += (jr if jr is not None else rng).standard_normal(arr.shape, dtype=np.float32) * np.float32(grain)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _encode_jpeg(img: Image.Image) -> bytes:
    buf = BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def generate(out_dir: str | os.PathLike, n: int, size: tuple[int, int] = (200, 300), seed: int = 0,
             tfrecords: bool = False, progress: bool = False, palette: str = "graded") -> list[dict[str, Any]]:
    """Write `n` posters + `posters.csv` into `out_dir` (and `tfrecords/` shards if asked).

    Returns one dict per poster: movie_id, title, year, genres (list), poster (file name relative to
    the CSV), path (absolute), series ("" = standalone). Deterministic in (n, size, seed).
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if palette not in PALETTES:
        raise ValueError(f"palette must be one of {PALETTES}, got {palette!r}")
    w, h = int(size[0]), int(size[1])
    if w < 32 or h < 48:
        raise ValueError(f"poster size {w}x{h} is too small (min 32x48)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_catalogue(n, seed)
    records: list[dict[str, Any]] = []
    images: list[bytes] = []
    it: Any = plans
    if progress:
        from tqdm import tqdm

        it = tqdm(plans, desc="posters", unit="poster", leave=False)
    for p in it:
        jitter = (seed * 1_000_003 + p.member * 7919 + p.design_seed) if p.member else None
        img = render_poster(p.genres, p.title, (w, h), p.design_seed, jitter_seed=jitter, palette=palette)
        data = _encode_jpeg(img)
        name = f"{p.movie_id}.jpg"
        (out / name).write_bytes(data)
        if tfrecords:
            images.append(data)
        records.append({"movie_id": p.movie_id, "title": p.title, "year": p.year, "genres": p.genres,
                        "poster": name, "path": str((out / name).resolve()), "series": p.series})
    with open(out / CSV_NAME, "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(CSV_COLUMNS)
        for r in records:
            wr.writerow([r["movie_id"], r["title"], r["year"], tfr.join_genres(r["genres"]), r["poster"], r["series"]])
    if tfrecords:
        tf_dir = out / TFRECORD_DIR
        tf_dir.mkdir(exist_ok=True)
        for old in tf_dir.glob("data-*"):  # a previous run may have used another shard count
            old.unlink()
        shards = max(1, min(4, n // 100))
        # The series is the poster's crowding group: "max 1 per series" in served answers.
        examples = (tfr.make_example(r["movie_id"], data, r["genres"], r["title"], r["year"], group=r["series"])
                    for r, data in zip(records, images, strict=True))
        tfr.write_sharded(examples, str(tf_dir), shards=shards, gzip=False)
    return records


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 200x300, got {text!r}") from None
    return w, h


def main(args: argparse.Namespace) -> int:
    try:
        w, h = parse_size(args.size)
        if abs(w / h - 2 / 3) > 0.05:
            print(f"posters sample: warning: {w}x{h} is not 2:3 portrait (movie posters are ~2:3)",
                  file=sys.stderr)
        t0 = time.perf_counter()
        records = generate(args.out, args.n, (w, h), args.seed, tfrecords=args.tfrecords, progress=True,
                           palette=args.palette)
    except ValueError as e:
        print(f"posters sample: error: {e}", file=sys.stderr)
        return 2
    genres = {g for r in records for g in r["genres"]}
    series = {r["series"] for r in records if r["series"]}
    extra = f" + TFRecords in {os.path.join(args.out, TFRECORD_DIR)}" if args.tfrecords else ""
    print(f"wrote {len(records)} posters {w}x{h} ({len(genres)} genres, {len(series)} series, "
          f"seed {args.seed}, {args.palette} palette) + {CSV_NAME} to {args.out}{extra} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0

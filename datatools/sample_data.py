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
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core import tfrecords as tfr

CSV_NAME = "posters.csv"
CSV_COLUMNS = ("movie_id", "title", "year", "genres", "poster")
TFRECORD_DIR = "tfrecords"
JPEG_QUALITY = 90
PALETTES = ("graded", "genre")
GRADE_P = 0.8  # share of posters re-graded (channel swap) ...
NEGATIVE_P = 0.4  # ... and of those, printed as a negative
_SWAPS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # every channel order but RGB

Color = tuple[int, int, int]

# --- titles ---------------------------------------------------------------------------------------

_WORDS: dict[str, list[str]] = {
    "Action": ["Strike", "Fury", "Velocity", "Impact", "Bullet", "Vendetta", "Havoc", "Rampage", "Siege"],
    "Comedy": ["Party", "Oops", "Crazy", "Wedding", "Goofs", "Sunny", "Roommates", "Pickle", "Fiasco"],
    "Drama": ["Silence", "Letters", "Winter", "Promise", "River", "Memory", "Daughter", "Distance"],
    "Horror": ["Blood", "Haunting", "Cellar", "Curse", "Hollow", "Shadows", "Night", "Grave", "Scream"],
    "Romance": ["Love", "Heart", "Kiss", "Paris", "Forever", "Summer", "Sweet", "Darling", "Vows"],
    "Sci-Fi": ["Galaxy", "Orbit", "Protocol", "Nexus", "Android", "Nebula", "Quantum", "Void", "Colony"],
    "Animation": ["Bunny", "Dragon", "Toy", "Bubbles", "Penguin", "Magic", "Rocket", "Kitty", "Jelly"],
    "Documentary": ["Inside", "Truth", "Ocean", "Voices", "Planet", "Story", "Archive", "Witness"],
    "Western": ["Dusty", "Outlaw", "Gunslinger", "Canyon", "Sheriff", "Frontier", "Rider", "Mesa"],
    "Thriller": ["Trap", "Witness", "Alibi", "Cipher", "Hostage", "Deadline", "Stranger", "Code"],
}
_COMMON = ["City", "Road", "Game", "Secret", "Last", "Lost", "Dark", "Golden", "Red", "King", "Girl",
           "Man", "Island", "House", "Day", "Dawn", "Edge", "Line", "Fire", "Star", "Time", "Heist"]
_PATTERNS = ["{a}", "The {a}", "{a} {b}", "The {a} {b}", "{a} of the {b}", "{a} {c}", "{c} {a}",
             "{a}: {b}", "Return of the {a}", "{a} Tonight"]


def _make_title(rng: np.random.Generator, primary: str) -> str:
    words = _WORDS[primary]
    a = words[int(rng.integers(len(words)))]
    b = _COMMON[int(rng.integers(len(_COMMON)))]
    c = words[int(rng.integers(len(words)))]
    if c == a:
        c = _COMMON[(int(rng.integers(len(_COMMON))) + 3) % len(_COMMON)]
    return _PATTERNS[int(rng.integers(len(_PATTERNS)))].format(a=a, b=b, c=c)


# --- drawing helpers ------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _font(size: int) -> Any:
    """Pillow's bundled default font (identical on every machine with this Pillow), sized."""
    try:
        return ImageFont.load_default(size=max(6, int(size)))
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


@lru_cache(maxsize=8)
def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return xx / max(w - 1, 1), yy / max(h - 1, 1)


def _jc(rng: np.random.Generator, c: Color, amount: int = 18) -> Color:
    """Jitter a colour: the same genre never paints exactly the same palette twice."""
    d = rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(c) + d, 0, 255))  # type: ignore[return-value]


def _gradient(w: int, h: int, c1: Color, c2: Color, kind: str, rng: np.random.Generator) -> np.ndarray:
    xx, yy = _grid(w, h)
    if kind == "vertical":
        t = yy
    elif kind == "diagonal":
        t = np.clip(xx * 0.5 + yy * 0.5 + rng.uniform(-0.15, 0.15), 0, 1)
    elif kind == "radial":
        cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.55)
        t = np.clip(np.sqrt((xx - cx) ** 2 + ((yy - cy) * 1.5) ** 2) * 1.3, 0, 1)
    else:  # flat with a faint vertical drift
        t = yy * 0.25
    t = t[..., None]
    return np.asarray(c1, np.float32) * (1 - t) + np.asarray(c2, np.float32) * t


def _star(d: ImageDraw.ImageDraw, cx: float, cy: float, r_out: float, r_in: float, spikes: int,
          fill: Any, rot: float = 0.0) -> None:
    pts = []
    for k in range(spikes * 2):
        r = r_out if k % 2 == 0 else r_in
        a = rot + math.pi * k / spikes
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    d.polygon(pts, fill=fill)


def _heart(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, fill: Any) -> None:
    r = s * 0.5
    d.ellipse([cx - s, cy - r, cx, cy + r * 0.9], fill=fill)
    d.ellipse([cx, cy - r, cx + s, cy + r * 0.9], fill=fill)
    d.polygon([(cx - s * 0.97, cy + r * 0.1), (cx + s * 0.97, cy + r * 0.1), (cx, cy + s * 1.25)], fill=fill)


def _figure(d: ImageDraw.ImageDraw, cx: float, base: float, h: float, fill: Any) -> None:
    """A standing silhouette: head + shoulders + legs."""
    hr = h * 0.09
    d.ellipse([cx - hr, base - h, cx + hr, base - h + 2 * hr], fill=fill)
    d.polygon([(cx - h * 0.16, base - h + 2.3 * hr), (cx + h * 0.16, base - h + 2.3 * hr),
               (cx + h * 0.11, base - h * 0.45), (cx - h * 0.11, base - h * 0.45)], fill=fill)
    d.polygon([(cx - h * 0.11, base - h * 0.46), (cx + h * 0.11, base - h * 0.46),
               (cx + h * 0.1, base), (cx + h * 0.02, base), (cx, base - h * 0.25),
               (cx - h * 0.02, base), (cx - h * 0.1, base)], fill=fill)


# --- genre visual languages -----------------------------------------------------------------------
# Each genre has a `primary` painter (background + composition + its own motifs, used when it is the
# poster's first genre) and an `accent` painter (a few motifs, used for secondary genres), plus a
# title style. Painters draw on an RGB image through an "RGBA" ImageDraw (alpha blending).


@dataclass(frozen=True)
class TitleStyle:
    color: Color
    stroke: Color | None = None
    case: str = "title"  # title | upper | lower
    pos: str = "top"  # top | middle | bottom | lower
    size: float = 0.11  # font size as a fraction of the width
    scale_y: float = 1.0  # > 1: tall condensed letters
    shear: float = 0.0  # italic
    spacing: float = 0.0  # letter spacing (fraction of the font size)
    rotate: float = 0.0  # max absolute rotation in degrees
    shadow: Color | None = None
    bounce: float = 0.0  # per-letter vertical wobble (fraction of the font size)
    align: str = "center"  # center | left


@dataclass(frozen=True)
class Genre:
    name: str
    primary: Callable[[Image.Image, np.random.Generator], None]
    accent: Callable[[Image.Image, np.random.Generator], None]
    title: TitleStyle


def _paint_bg(img: Image.Image, arr: np.ndarray) -> None:
    img.paste(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"))


def _action(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (235, 110, 20)), _jc(rng, (15, 8, 5), 8), "diagonal", rng))
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(4, 9))):  # diagonal speed streaks
        x0 = rng.uniform(-0.5, 1.0) * w
        t = rng.uniform(0.02, 0.07) * w
        c = _jc(rng, (255, 200, 60), 30) + (int(rng.integers(90, 200)),)
        d.polygon([(x0, h), (x0 + t, h), (x0 + t + h * 0.8, 0), (x0 + h * 0.8, 0)], fill=c)
    _action_accent(img, rng, big=True)
    _figure(d, rng.uniform(0.3, 0.7) * w, h * rng.uniform(0.78, 0.86), h * rng.uniform(0.4, 0.55),
            (10, 5, 5, 255))


def _action_accent(img: Image.Image, rng: np.random.Generator, big: bool = False) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(1, 3)) if big else 1):
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.3, 0.75) * h
        r = rng.uniform(0.22, 0.38) * w if big else rng.uniform(0.12, 0.2) * w
        rot = rng.uniform(0, math.pi)
        n = int(rng.integers(9, 14))
        _star(d, cx, cy, r, r * 0.55, n, (255, 90, 0, 230), rot)
        _star(d, cx, cy, r * 0.7, r * 0.4, n, (255, 190, 30, 240), rot + 0.2)
        d.ellipse([cx - r * 0.3, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3], fill=(255, 250, 200, 255))


def _comedy(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (255, 225, 50)), _jc(rng, (255, 245, 190)), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(2, 5))):  # big ring shapes
        cx, cy, r = rng.uniform(0, 1) * w, rng.uniform(0.2, 1) * h, rng.uniform(0.1, 0.25) * w
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=_jc(rng, (255, 120, 40), 40) + (200,),
                  width=max(2, w // 40))
    _comedy_accent(img, rng, n=int(rng.integers(14, 26)))
    if rng.random() < 0.6:  # a grinning face ...
        cx, cy, r = rng.uniform(0.35, 0.65) * w, rng.uniform(0.5, 0.62) * h, rng.uniform(0.16, 0.22) * w
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 255, 255, 255), outline=(30, 30, 30, 255),
                  width=max(2, w // 70))
        d.ellipse([cx - r * 0.45, cy - r * 0.4, cx - r * 0.2, cy - r * 0.05], fill=(30, 30, 30, 255))
        d.ellipse([cx + r * 0.2, cy - r * 0.4, cx + r * 0.45, cy - r * 0.05], fill=(30, 30, 30, 255))
        d.chord([cx - r * 0.6, cy - r * 0.3, cx + r * 0.6, cy + r * 0.7], 0, 180, fill=(220, 40, 60, 255))
    else:  # ... or a mismatched duo in loud colours
        base = h * rng.uniform(0.82, 0.88)
        for cx, c in ((0.36, (230, 40, 60)), (0.64, (40, 110, 230))):
            _figure(d, (cx + rng.uniform(-0.05, 0.05)) * w, base, h * rng.uniform(0.35, 0.5), c + (255,))


def _comedy_accent(img: Image.Image, rng: np.random.Generator, n: int = 6) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    palette = [(230, 40, 60), (40, 120, 230), (40, 200, 90), (250, 150, 20), (170, 60, 220)]
    for _ in range(n):  # confetti dots
        cx, cy, r = rng.uniform(0, 1) * w, rng.uniform(0, 1) * h, rng.uniform(0.02, 0.06) * w
        c = palette[int(rng.integers(len(palette)))] + (230,)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)


def _drama(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (110, 120, 140)), _jc(rng, (35, 40, 55), 10), "radial", rng))
    d = ImageDraw.Draw(img, "RGBA")
    # a large face in profile: head ellipse + neck/shoulders, dark on a soft light
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.38, 0.48) * h
    r = rng.uniform(0.22, 0.3) * w
    d.ellipse([cx - r * 1.8, cy - r * 1.8, cx + r * 1.8, cy + r * 1.8], fill=(230, 225, 210, 40))
    shade = _jc(rng, (25, 28, 38), 8) + (255,)
    d.ellipse([cx - r * 0.8, cy - r, cx + r * 0.8, cy + r], fill=shade)
    d.polygon([(cx - r * 0.35, cy + r * 0.7), (cx + r * 0.35, cy + r * 0.7), (cx + r * 0.5, cy + r * 1.4),
               (cx + r * 2.2, cy + r * 2.2), (cx + r * 2.2, h), (cx - r * 2.2, h),
               (cx - r * 2.2, cy + r * 2.2), (cx - r * 0.5, cy + r * 1.4)], fill=shade)
    side = 1 if rng.random() < 0.5 else -1  # nose: which way the profile looks
    d.polygon([(cx + side * r * 0.7, cy - r * 0.1), (cx + side * r * 1.0, cy + r * 0.15),
               (cx + side * r * 0.7, cy + r * 0.3)], fill=shade)
    _drama_accent(img, rng)


def _drama_accent(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(25, 45))):  # rain streaks
        x, y = rng.uniform(0, 1) * w, rng.uniform(0, 1) * h
        ln = rng.uniform(0.04, 0.1) * h
        d.line([(x, y), (x - ln * 0.15, y + ln)], fill=(200, 210, 230, 90), width=1)


def _horror(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (70, 10, 10), 12), _jc(rng, (5, 3, 3), 4), "radial", rng))
    d = ImageDraw.Draw(img, "RGBA")
    cx, cy, r = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.4) * h, rng.uniform(0.16, 0.24) * w
    d.ellipse([cx - r * 1.5, cy - r * 1.5, cx + r * 1.5, cy + r * 1.5], fill=(200, 200, 180, 30))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jc(rng, (215, 215, 195), 10) + (255,))  # pale moon
    # dead tree branches on the horizon
    base = h * rng.uniform(0.72, 0.82)
    d.rectangle([0, base, w, h], fill=(8, 4, 4, 255))
    for _ in range(int(rng.integers(2, 4))):
        x = rng.uniform(0.05, 0.95) * w
        th = rng.uniform(0.25, 0.45) * h
        d.line([(x, base), (x + rng.uniform(-0.05, 0.05) * w, base - th)], fill=(8, 4, 4, 255),
               width=max(2, w // 45))
        for _k in range(4):
            y = base - th * rng.uniform(0.4, 1.0)
            d.line([(x, y), (x + rng.uniform(-0.18, 0.18) * w, y - rng.uniform(0.03, 0.1) * h)],
                   fill=(8, 4, 4, 255), width=max(1, w // 90))
    _horror_accent(img, rng, n=int(rng.integers(8, 15)))


def _horror_accent(img: Image.Image, rng: np.random.Generator, n: int = 5) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    d.rectangle([0, 0, w, h * 0.025], fill=(150, 0, 0, 255))
    for _ in range(n):  # blood drips from the top edge
        x = rng.uniform(0, 1) * w
        t = rng.uniform(0.012, 0.035) * w
        ln = rng.uniform(0.05, 0.3) * h
        c = (int(rng.integers(130, 190)), 0, 0, 255)
        d.rectangle([x - t / 2, 0, x + t / 2, ln], fill=c)
        d.ellipse([x - t * 0.9, ln - t * 0.9, x + t * 0.9, ln + t * 0.9], fill=c)


def _romance(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (250, 160, 185)), _jc(rng, (255, 215, 195)), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    cx, cy, r = rng.uniform(0.35, 0.65) * w, rng.uniform(0.45, 0.6) * h, rng.uniform(0.3, 0.42) * w
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 240, 200, 120))  # sunset glow
    # a couple: two heads leaning together
    c = _jc(rng, (150, 40, 80), 15) + (255,)
    hr = r * 0.3
    for sx in (-0.55, 0.55):
        hx, hy = cx + sx * r * 0.75, cy + r * 0.05
        d.ellipse([hx - hr, hy - hr * 1.2, hx + hr, hy + hr * 1.2], fill=c)
        d.pieslice([hx - hr * 2.2, hy + hr * 0.9, hx + hr * 2.2, hy + hr * 5.5], 180, 360, fill=c)
    _romance_accent(img, rng, n=int(rng.integers(6, 12)))


def _romance_accent(img: Image.Image, rng: np.random.Generator, n: int = 3) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    palette = [(230, 30, 70), (255, 255, 255), (250, 100, 140), (200, 20, 50)]
    for _ in range(n):
        c = palette[int(rng.integers(len(palette)))] + (int(rng.integers(170, 255)),)
        _heart(d, rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h, rng.uniform(0.04, 0.1) * w, c)


def _scifi(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (5, 8, 35), 6), _jc(rng, (25, 40, 100), 15), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    horizon = h * rng.uniform(0.58, 0.7)
    grid = (0, 230, 255, 170)
    d.rectangle([0, horizon, w, h], fill=(5, 5, 25, 200))
    vx = rng.uniform(0.4, 0.6) * w
    for k in range(-8, 9):  # perspective grid
        d.line([(vx, horizon), (vx + k * w * 0.22, h)], fill=grid, width=1)
    y = horizon
    step = (h - horizon) * 0.06
    while y < h:
        d.line([(0, y), (w, y)], fill=grid, width=1)
        step *= 1.35
        y += step
    _scifi_accent(img, rng, big=True)


def _scifi_accent(img: Image.Image, rng: np.random.Generator, big: bool = False) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(40, 80)) if big else 20):  # stars
        x, y = rng.uniform(0, 1) * w, rng.uniform(0, 0.65) * h
        s = rng.uniform(0.4, 1.4)
        d.ellipse([x - s, y - s, x + s, y + s], fill=(255, 255, 255, int(rng.integers(150, 255))))
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.45) * h
    r = rng.uniform(0.15, 0.25) * w if big else rng.uniform(0.07, 0.12) * w
    c = (int(rng.integers(120, 220)), int(rng.integers(40, 120)), int(rng.integers(180, 255)), 255)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)  # ringed planet
    d.ellipse([cx - r * 1.8, cy - r * 0.35, cx + r * 1.8, cy + r * 0.35], outline=(0, 230, 255, 220),
              width=max(1, w // 70))


def _animation(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (40, 190, 250)), _jc(rng, (150, 230, 255)), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    cx = rng.uniform(0.3, 0.7) * w
    for k, c in enumerate([(250, 60, 60), (250, 160, 30), (250, 240, 50), (60, 200, 80), (60, 120, 250)]):
        r = w * (0.75 - k * 0.06)  # rainbow arcs
        d.arc([cx - r, h * 0.55 - r, cx + r, h * 0.55 + r], 180, 360, fill=c + (255,), width=max(3, w // 40))
    d.ellipse([-w * 0.3, h * 0.72, w * 1.3, h * 1.4], fill=_jc(rng, (90, 210, 60)) + (255,))  # hill
    _animation_accent(img, rng, n=int(rng.integers(2, 4)), big=True)


def _animation_accent(img: Image.Image, rng: np.random.Generator, n: int = 1, big: bool = False) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    palette = [(255, 90, 170), (130, 90, 255), (255, 150, 0), (0, 200, 170), (240, 60, 60)]
    for _ in range(n):  # cartoon blobs with big eyes
        r = (rng.uniform(0.14, 0.22) if big else rng.uniform(0.08, 0.12)) * w
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.55, 0.85) * h
        d.ellipse([cx - r, cy - r * 0.9, cx + r, cy + r * 0.9], fill=palette[int(rng.integers(5))] + (255,),
                  outline=(20, 20, 60, 255), width=max(2, w // 80))
        for ex in (-0.35, 0.35):
            er = r * 0.28
            d.ellipse([cx + ex * r - er, cy - r * 0.35 - er, cx + ex * r + er, cy - r * 0.35 + er],
                      fill=(255, 255, 255, 255))
            pr = er * 0.5
            d.ellipse([cx + ex * r - pr, cy - r * 0.3 - pr, cx + ex * r + pr, cy - r * 0.3 + pr],
                      fill=(10, 10, 10, 255))


def _documentary(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (222, 218, 205), 8), _jc(rng, (200, 196, 185), 8), "flat", rng))
    d = ImageDraw.Draw(img, "RGBA")
    x0, y0 = rng.uniform(0.08, 0.14) * w, rng.uniform(0.08, 0.2) * h
    x1, y1 = w - rng.uniform(0.08, 0.14) * w, y0 + rng.uniform(0.42, 0.55) * h
    d.rectangle([x0 - 4, y0 - 4, x1 + 4, y1 + 4], fill=(255, 255, 255, 255))  # photo frame
    photo = _gradient(int(x1 - x0), int(y1 - y0), _jc(rng, (170, 165, 150), 20), _jc(rng, (70, 68, 62), 15),
                      "vertical", rng)
    ph = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), "RGB")
    pd = ImageDraw.Draw(ph)
    pw, phh = ph.size
    hz = phh * rng.uniform(0.5, 0.7)  # a muted landscape or street photo
    pts = [(0, phh), (0, hz)]
    for k in range(7):
        pts.append(((k + 0.5) * pw / 7, hz - rng.uniform(0, 0.3) * phh))
    pts += [(pw, hz), (pw, phh)]
    pd.polygon(pts, fill=_jc(rng, (60, 58, 52), 10))
    ph = ph.convert("L").convert("RGB")  # black-and-white archive look
    img.paste(ph, (int(x0), int(y0)))
    d.line([(x0, y1 + 0.09 * h), (x0 + 0.35 * w, y1 + 0.09 * h)], fill=(40, 40, 40, 255), width=2)
    _documentary_accent(img, rng)


def _documentary_accent(img: Image.Image, rng: np.random.Generator) -> None:
    """Festival laurels: two leafy arcs."""
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.83, 0.86) * h
    r = rng.uniform(0.06, 0.08) * w
    c = (70, 70, 60, 255) if rng.random() < 0.5 else (150, 120, 40, 255)
    for a0 in (110, -70):  # "(" and ")"
        for k in range(6):
            a = math.radians(a0 + k * 28)
            lx, ly = cx + r * 1.3 * math.cos(a), cy + r * math.sin(a)
            d.ellipse([lx - r * 0.22, ly - r * 0.13, lx + r * 0.22, ly + r * 0.13], fill=c)


def _western(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (235, 130, 50)), _jc(rng, (240, 210, 150)), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    horizon = h * rng.uniform(0.62, 0.72)
    cx, r = rng.uniform(0.25, 0.75) * w, rng.uniform(0.18, 0.28) * w
    d.ellipse([cx - r, horizon - r * 1.3, cx + r, horizon + r * 0.7], fill=(255, 235, 140, 255))  # sun
    x = -rng.uniform(0, 0.2) * w
    while x < w:  # flat-topped mesas
        mw, mh = rng.uniform(0.25, 0.5) * w, rng.uniform(0.08, 0.2) * h
        c = _jc(rng, (150, 70, 35), 20) + (255,)
        d.polygon([(x, horizon), (x + mw * 0.2, horizon - mh), (x + mw * 0.8, horizon - mh),
                   (x + mw, horizon)], fill=c)
        x += mw * rng.uniform(0.7, 1.1)
    d.rectangle([0, horizon, w, h], fill=_jc(rng, (215, 175, 110), 12) + (255,))
    _western_accent(img, rng)


def _western_accent(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    c = _jc(rng, (60, 100, 40), 15) + (255,)
    for _ in range(int(rng.integers(1, 3))):  # saguaro cacti
        x, base = rng.uniform(0.08, 0.92) * w, rng.uniform(0.8, 0.95) * h
        ch, t = rng.uniform(0.18, 0.3) * h, rng.uniform(0.035, 0.05) * w
        d.rounded_rectangle([x - t, base - ch, x + t, base], radius=t, fill=c)
        for side in (-1, 1):
            ay = base - ch * rng.uniform(0.4, 0.7)
            ax = x + side * t * 2.6
            d.rounded_rectangle([min(x, ax) - t * 0.6, ay - t * 0.6, max(x, ax) + t * 0.6, ay + t * 0.6],
                                radius=t * 0.6, fill=c)
            d.rounded_rectangle([ax - t * 0.7, ay - ch * 0.3, ax + t * 0.7, ay + t * 0.5], radius=t * 0.7,
                                fill=c)


def _thriller(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, _gradient(w, h, _jc(rng, (20, 32, 38), 6), _jc(rng, (70, 85, 90), 10), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    sx = rng.uniform(0.3, 0.7) * w  # spotlight cone onto a lone figure
    d.polygon([(sx - w * 0.04, 0), (sx + w * 0.04, 0), (sx + w * 0.35, h), (sx - w * 0.35, h)],
              fill=(220, 235, 240, 45))
    d.ellipse([sx - w * 0.3, h * 0.86, sx + w * 0.3, h * 0.96], fill=(220, 235, 240, 60))
    _figure(d, sx, h * 0.92, h * rng.uniform(0.22, 0.32), (5, 8, 10, 255))
    d.rectangle([0, h * rng.uniform(0.44, 0.52), w, h * 0.53], fill=(190, 20, 30, 140))  # red band
    _thriller_accent(img, rng)


def _thriller_accent(img: Image.Image, rng: np.random.Generator) -> None:
    """Shattered-glass cracks radiating from an impact point."""
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.1, 0.45) * h
    for k in range(int(rng.integers(7, 12))):
        a = k * 2 * math.pi / 10 + rng.uniform(-0.3, 0.3)
        x, y = cx, cy
        for _ in range(3):
            ln = rng.uniform(0.05, 0.15) * w
            nx, ny = x + ln * math.cos(a), y + ln * math.sin(a)
            d.line([(x, y), (nx, ny)], fill=(235, 245, 250, 200), width=1)
            x, y, a = nx, ny, a + rng.uniform(-0.4, 0.4)


GENRES: dict[str, Genre] = {g.name: g for g in [
    Genre("Action", _action, _action_accent,
          TitleStyle((255, 255, 255), stroke=(200, 60, 0), case="upper", pos="bottom", size=0.13,
                     scale_y=1.25, shear=0.2)),
    Genre("Comedy", _comedy, _comedy_accent,
          TitleStyle((220, 30, 50), stroke=(255, 255, 255), pos="top", size=0.15, rotate=7, bounce=0.12)),
    Genre("Drama", _drama, _drama_accent,
          TitleStyle((235, 230, 215), case="lower", pos="lower", size=0.08, spacing=0.25)),
    Genre("Horror", _horror, _horror_accent,
          TitleStyle((200, 10, 10), case="upper", pos="middle", size=0.11, scale_y=1.7, shadow=(0, 0, 0))),
    Genre("Romance", _romance, _romance_accent,
          TitleStyle((255, 255, 255), stroke=(190, 40, 90), pos="top", size=0.12, shear=0.3)),
    Genre("Sci-Fi", _scifi, _scifi_accent,
          TitleStyle((0, 235, 255), case="upper", pos="top", size=0.11, spacing=0.35, scale_y=0.8)),
    Genre("Animation", _animation, _animation_accent,
          TitleStyle((255, 230, 40), stroke=(30, 40, 140), pos="top", size=0.17, bounce=0.18, rotate=4)),
    Genre("Documentary", _documentary, _documentary_accent,
          TitleStyle((25, 25, 25), case="upper", pos="lower", size=0.08, align="left")),
    Genre("Western", _western, _western_accent,
          TitleStyle((95, 40, 10), stroke=(250, 220, 150), case="upper", pos="top", size=0.15,
                     spacing=0.08, shadow=(60, 25, 5))),
    Genre("Thriller", _thriller, _thriller_accent,
          TitleStyle((245, 245, 245), case="upper", pos="middle", size=0.1, spacing=0.2, scale_y=1.3)),
]}
GENRE_NAMES = list(GENRES)
# Relative frequency of genres (Drama/Comedy common, like real catalogues, but none rare).
_GENRE_WEIGHTS = np.array([1.2, 1.3, 1.4, 1.0, 1.0, 0.9, 0.8, 0.7, 0.7, 1.0])
_GENRE_WEIGHTS = _GENRE_WEIGHTS / _GENRE_WEIGHTS.sum()


# --- title rendering ------------------------------------------------------------------------------


def _wrap(text: str, font: Any, max_w: float, spacing: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and _text_w(trial, font, spacing) <= max_w:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines or [text]


def _text_w(text: str, font: Any, spacing: float) -> float:
    return font.getlength(text) + spacing * max(len(text) - 1, 0)


def _draw_title(img: Image.Image, title: str, style: TitleStyle, rng: np.random.Generator) -> None:
    """Render the title on its own layer (so it can be stretched, sheared, rotated) and paste it."""
    w, h = img.size
    text = {"upper": title.upper(), "lower": title.lower()}.get(style.case, title)
    size = max(8, int(w * style.size * rng.uniform(0.9, 1.1)))
    max_w = w * 0.9 / (1 + abs(style.shear))
    for _ in range(8):  # shrink until every wrapped line fits
        font = _font(size)
        spacing = style.spacing * size
        lines = _wrap(text, font, max_w, spacing)
        if max(_text_w(ln, font, spacing) for ln in lines) <= max_w and len(lines) <= 3:
            break
        size = max(8, int(size * 0.85))
    stroke = max(1, size // 12) if style.stroke else 0
    asc, desc = font.getmetrics()
    line_h = asc + desc + stroke * 2
    lw = int(max(_text_w(ln, font, spacing) for ln in lines)) + 4 * stroke + 8
    lh = line_h * len(lines) + 8
    layer = Image.new("RGBA", (lw, lh), (0, 0, 0, 0))
    ld = ImageDraw.Draw(layer)
    bounce = style.bounce * size
    for li, line in enumerate(lines):
        x = (lw - _text_w(line, font, spacing)) / 2 if style.align == "center" else 2 * stroke + 2
        y = li * line_h + 4 + stroke
        for k, ch in enumerate(line):
            dy = math.sin(k * 1.3 + li) * bounce if bounce else 0
            if style.shadow:
                ld.text((x + max(1, size // 14), y + dy + max(1, size // 14)), ch, font=font,
                        fill=style.shadow + (200,))
            ld.text((x, y + dy), ch, font=font, fill=style.color + (255,), stroke_width=stroke,
                    stroke_fill=(style.stroke + (255,)) if style.stroke else None)
            x += font.getlength(ch) + spacing
    if style.scale_y != 1.0:
        layer = layer.resize((lw, max(1, int(lh * style.scale_y))), Image.BILINEAR)
    if style.shear:
        lw2 = int(layer.width + layer.height * style.shear)
        layer = layer.transform((lw2, layer.height), Image.AFFINE,
                                (1, style.shear, -layer.height * style.shear, 0, 1, 0), Image.BILINEAR)
    if style.rotate:
        layer = layer.rotate(rng.uniform(-style.rotate, style.rotate), Image.BILINEAR, expand=True)
    if layer.width > w * 0.96:  # never leave the poster
        new_h = max(1, int(layer.height * w * 0.96 / layer.width))
        layer = layer.resize((int(w * 0.96), new_h), Image.BILINEAR)
    y_fracs = {"top": rng.uniform(0.04, 0.1), "middle": rng.uniform(0.4, 0.5),
               "lower": rng.uniform(0.68, 0.74), "bottom": rng.uniform(0.78, 0.8)}
    pos = style.pos
    if rng.random() < 0.15:  # designers break the genre's habit now and then
        pos = {"top": "lower", "middle": "top", "lower": "top", "bottom": "top"}[pos]
    y_frac = y_fracs[pos]
    y = int(y_frac * h - (layer.height / 2 if pos == "middle" else 0))
    y = min(max(0, y), h - layer.height - int(h * 0.06))
    x_center = int((w - layer.width) / 2 + rng.uniform(-0.03, 0.03) * w)
    x = x_center if style.align == "center" else int(w * 0.08)
    img.paste(layer, (max(0, x), max(0, y)), layer)


def _draw_credits(img: Image.Image, rng: np.random.Generator, dark_text: bool) -> None:
    """The billing block at the foot of every real poster: tiny condensed lines of text."""
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    c = (40, 40, 40, 170) if dark_text else (230, 230, 230, 150)
    y = h * rng.uniform(0.93, 0.95)
    for _ in range(2):
        lw = rng.uniform(0.6, 0.85) * w
        x = (w - lw) / 2
        while x < (w + lw) / 2:  # "words"
            ww = rng.uniform(0.02, 0.08) * w
            d.rectangle([x, y, min(x + ww, (w + lw) / 2), y + max(1, h * 0.006)], fill=c)
            x += ww + w * 0.012
        y += h * 0.015


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
        picks = rng.choice(len(GENRE_NAMES), size=k, replace=False, p=_GENRE_WEIGHTS)
        genres = [GENRE_NAMES[i] for i in picks]
        title = _make_title(rng, genres[0])
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
    _draw_title(img, title, GENRES[genres[0]].title, rng)
    mean = np.asarray(img.resize((8, 12))).mean()
    _draw_credits(img, rng, dark_text=mean > 140)
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
            wr.writerow([r["movie_id"], r["title"], r["year"], tfr.join_genres(r["genres"]), r["poster"]])
    if tfrecords:
        tf_dir = out / TFRECORD_DIR
        tf_dir.mkdir(exist_ok=True)
        for old in tf_dir.glob("data-*"):  # a previous run may have used another shard count
            old.unlink()
        shards = max(1, min(4, n // 100))
        examples = (tfr.make_example(r["movie_id"], data, r["genres"], r["title"], r["year"])
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

"""Drawing for the synthetic posters: random titles, Pillow helpers, and title/credits typography.

Deterministic: every random draw comes from the generator passed in, and the font is Pillow's
bundled default (identical on every machine with this Pillow).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def make_title(rng: np.random.Generator, primary: str) -> str:
    words = _WORDS[primary]
    a = words[int(rng.integers(len(words)))]
    b = _COMMON[int(rng.integers(len(_COMMON)))]
    c = words[int(rng.integers(len(words)))]
    if c == a:
        c = _COMMON[(int(rng.integers(len(_COMMON))) + 3) % len(_COMMON)]
    return _PATTERNS[int(rng.integers(len(_PATTERNS)))].format(a=a, b=b, c=c)


# --- drawing helpers ------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def load_font(size: int) -> Any:
    """Pillow's bundled default font (identical on every machine with this Pillow), sized."""
    try:
        return ImageFont.load_default(size=max(6, int(size)))
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


@lru_cache(maxsize=8)
def unit_grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return xx / max(w - 1, 1), yy / max(h - 1, 1)


def jitter(rng: np.random.Generator, c: Color, amount: int = 18) -> Color:
    """Jitter a colour: the same genre never paints exactly the same palette twice."""
    d = rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(c) + d, 0, 255))  # type: ignore[return-value]


def gradient(w: int, h: int, c1: Color, c2: Color, kind: str, rng: np.random.Generator) -> np.ndarray:
    xx, yy = unit_grid(w, h)
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


def star(d: ImageDraw.ImageDraw, cx: float, cy: float, r_out: float, r_in: float, spikes: int,
          fill: Any, rot: float = 0.0) -> None:
    pts = []
    for k in range(spikes * 2):
        r = r_out if k % 2 == 0 else r_in
        a = rot + math.pi * k / spikes
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    d.polygon(pts, fill=fill)


def heart(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, fill: Any) -> None:
    r = s * 0.5
    d.ellipse([cx - s, cy - r, cx, cy + r * 0.9], fill=fill)
    d.ellipse([cx, cy - r, cx + s, cy + r * 0.9], fill=fill)
    d.polygon([(cx - s * 0.97, cy + r * 0.1), (cx + s * 0.97, cy + r * 0.1), (cx, cy + s * 1.25)], fill=fill)


def figure(d: ImageDraw.ImageDraw, cx: float, base: float, h: float, fill: Any) -> None:
    """A standing silhouette: head + shoulders + legs."""
    hr = h * 0.09
    d.ellipse([cx - hr, base - h, cx + hr, base - h + 2 * hr], fill=fill)
    d.polygon([(cx - h * 0.16, base - h + 2.3 * hr), (cx + h * 0.16, base - h + 2.3 * hr),
               (cx + h * 0.11, base - h * 0.45), (cx - h * 0.11, base - h * 0.45)], fill=fill)
    d.polygon([(cx - h * 0.11, base - h * 0.46), (cx + h * 0.11, base - h * 0.46),
               (cx + h * 0.1, base), (cx + h * 0.02, base), (cx, base - h * 0.25),
               (cx - h * 0.02, base), (cx - h * 0.1, base)], fill=fill)



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


def draw_title(img: Image.Image, title: str, style: TitleStyle, rng: np.random.Generator) -> None:
    """Render the title on its own layer (so it can be stretched, sheared, rotated) and paste it."""
    w, h = img.size
    text = {"upper": title.upper(), "lower": title.lower()}.get(style.case, title)
    size = max(8, int(w * style.size * rng.uniform(0.9, 1.1)))
    max_w = w * 0.9 / (1 + abs(style.shear))
    for _ in range(8):  # shrink until every wrapped line fits
        font = load_font(size)
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


def draw_credits(img: Image.Image, rng: np.random.Generator, dark_text: bool) -> None:
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

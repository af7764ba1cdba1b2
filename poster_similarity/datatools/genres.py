"""Each genre's visual language for the synthetic posters (composition, motifs, palette, title style).

Each genre has a `primary` painter (background + composition + its own motifs, used when it is the
poster's first genre) and an `accent` painter (a few motifs, used for secondary genres), plus a
title style. Painters draw on an RGB image through an "RGBA" ImageDraw (alpha blending).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from poster_similarity.datatools.drawing import TitleStyle, figure, gradient, heart, jitter, star


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
    _paint_bg(img, gradient(w, h, jitter(rng, (235, 110, 20)), jitter(rng, (15, 8, 5), 8), "diagonal", rng))
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(4, 9))):  # diagonal speed streaks
        x0 = rng.uniform(-0.5, 1.0) * w
        t = rng.uniform(0.02, 0.07) * w
        c = jitter(rng, (255, 200, 60), 30) + (int(rng.integers(90, 200)),)
        d.polygon([(x0, h), (x0 + t, h), (x0 + t + h * 0.8, 0), (x0 + h * 0.8, 0)], fill=c)
    _action_accent(img, rng, big=True)
    figure(d, rng.uniform(0.3, 0.7) * w, h * rng.uniform(0.78, 0.86), h * rng.uniform(0.4, 0.55),
            (10, 5, 5, 255))


def _action_accent(img: Image.Image, rng: np.random.Generator, big: bool = False) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(1, 3)) if big else 1):
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.3, 0.75) * h
        r = rng.uniform(0.22, 0.38) * w if big else rng.uniform(0.12, 0.2) * w
        rot = rng.uniform(0, math.pi)
        n = int(rng.integers(9, 14))
        star(d, cx, cy, r, r * 0.55, n, (255, 90, 0, 230), rot)
        star(d, cx, cy, r * 0.7, r * 0.4, n, (255, 190, 30, 240), rot + 0.2)
        d.ellipse([cx - r * 0.3, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3], fill=(255, 250, 200, 255))


def _comedy(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, gradient(w, h, jitter(rng, (255, 225, 50)), jitter(rng, (255, 245, 190)), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(2, 5))):  # big ring shapes
        cx, cy, r = rng.uniform(0, 1) * w, rng.uniform(0.2, 1) * h, rng.uniform(0.1, 0.25) * w
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=jitter(rng, (255, 120, 40), 40) + (200,),
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
            figure(d, (cx + rng.uniform(-0.05, 0.05)) * w, base, h * rng.uniform(0.35, 0.5), c + (255,))


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
    _paint_bg(img, gradient(w, h, jitter(rng, (110, 120, 140)), jitter(rng, (35, 40, 55), 10), "radial", rng))
    d = ImageDraw.Draw(img, "RGBA")
    # a large face in profile: head ellipse + neck/shoulders, dark on a soft light
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.38, 0.48) * h
    r = rng.uniform(0.22, 0.3) * w
    d.ellipse([cx - r * 1.8, cy - r * 1.8, cx + r * 1.8, cy + r * 1.8], fill=(230, 225, 210, 40))
    shade = jitter(rng, (25, 28, 38), 8) + (255,)
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
    _paint_bg(img, gradient(w, h, jitter(rng, (70, 10, 10), 12), jitter(rng, (5, 3, 3), 4), "radial", rng))
    d = ImageDraw.Draw(img, "RGBA")
    cx, cy, r = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.4) * h, rng.uniform(0.16, 0.24) * w
    d.ellipse([cx - r * 1.5, cy - r * 1.5, cx + r * 1.5, cy + r * 1.5], fill=(200, 200, 180, 30))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=jitter(rng, (215, 215, 195), 10) + (255,))  # pale moon
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
    _paint_bg(img, gradient(w, h, jitter(rng, (250, 160, 185)), jitter(rng, (255, 215, 195)), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    cx, cy, r = rng.uniform(0.35, 0.65) * w, rng.uniform(0.45, 0.6) * h, rng.uniform(0.3, 0.42) * w
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 240, 200, 120))  # sunset glow
    # a couple: two heads leaning together
    c = jitter(rng, (150, 40, 80), 15) + (255,)
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
        heart(d, rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h, rng.uniform(0.04, 0.1) * w, c)


def _scifi(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    _paint_bg(img, gradient(w, h, jitter(rng, (5, 8, 35), 6), jitter(rng, (25, 40, 100), 15), "vertical", rng))
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
    _paint_bg(img, gradient(w, h, jitter(rng, (40, 190, 250)), jitter(rng, (150, 230, 255)), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    cx = rng.uniform(0.3, 0.7) * w
    for k, c in enumerate([(250, 60, 60), (250, 160, 30), (250, 240, 50), (60, 200, 80), (60, 120, 250)]):
        r = w * (0.75 - k * 0.06)  # rainbow arcs
        d.arc([cx - r, h * 0.55 - r, cx + r, h * 0.55 + r], 180, 360, fill=c + (255,), width=max(3, w // 40))
    d.ellipse([-w * 0.3, h * 0.72, w * 1.3, h * 1.4], fill=jitter(rng, (90, 210, 60)) + (255,))  # hill
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
    _paint_bg(img, gradient(w, h, jitter(rng, (222, 218, 205), 8), jitter(rng, (200, 196, 185), 8), "flat", rng))
    d = ImageDraw.Draw(img, "RGBA")
    x0, y0 = rng.uniform(0.08, 0.14) * w, rng.uniform(0.08, 0.2) * h
    x1, y1 = w - rng.uniform(0.08, 0.14) * w, y0 + rng.uniform(0.42, 0.55) * h
    d.rectangle([x0 - 4, y0 - 4, x1 + 4, y1 + 4], fill=(255, 255, 255, 255))  # photo frame
    photo = gradient(int(x1 - x0), int(y1 - y0), jitter(rng, (170, 165, 150), 20), jitter(rng, (70, 68, 62), 15),
                      "vertical", rng)
    ph = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), "RGB")
    pd = ImageDraw.Draw(ph)
    pw, phh = ph.size
    hz = phh * rng.uniform(0.5, 0.7)  # a muted landscape or street photo
    pts = [(0, phh), (0, hz)]
    for k in range(7):
        pts.append(((k + 0.5) * pw / 7, hz - rng.uniform(0, 0.3) * phh))
    pts += [(pw, hz), (pw, phh)]
    pd.polygon(pts, fill=jitter(rng, (60, 58, 52), 10))
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
    _paint_bg(img, gradient(w, h, jitter(rng, (235, 130, 50)), jitter(rng, (240, 210, 150)), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    horizon = h * rng.uniform(0.62, 0.72)
    cx, r = rng.uniform(0.25, 0.75) * w, rng.uniform(0.18, 0.28) * w
    d.ellipse([cx - r, horizon - r * 1.3, cx + r, horizon + r * 0.7], fill=(255, 235, 140, 255))  # sun
    x = -rng.uniform(0, 0.2) * w
    while x < w:  # flat-topped mesas
        mw, mh = rng.uniform(0.25, 0.5) * w, rng.uniform(0.08, 0.2) * h
        c = jitter(rng, (150, 70, 35), 20) + (255,)
        d.polygon([(x, horizon), (x + mw * 0.2, horizon - mh), (x + mw * 0.8, horizon - mh),
                   (x + mw, horizon)], fill=c)
        x += mw * rng.uniform(0.7, 1.1)
    d.rectangle([0, horizon, w, h], fill=jitter(rng, (215, 175, 110), 12) + (255,))
    _western_accent(img, rng)


def _western_accent(img: Image.Image, rng: np.random.Generator) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    c = jitter(rng, (60, 100, 40), 15) + (255,)
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
    _paint_bg(img, gradient(w, h, jitter(rng, (20, 32, 38), 6), jitter(rng, (70, 85, 90), 10), "vertical", rng))
    d = ImageDraw.Draw(img, "RGBA")
    sx = rng.uniform(0.3, 0.7) * w  # spotlight cone onto a lone figure
    d.polygon([(sx - w * 0.04, 0), (sx + w * 0.04, 0), (sx + w * 0.35, h), (sx - w * 0.35, h)],
              fill=(220, 235, 240, 45))
    d.ellipse([sx - w * 0.3, h * 0.86, sx + w * 0.3, h * 0.96], fill=(220, 235, 240, 60))
    figure(d, sx, h * 0.92, h * rng.uniform(0.22, 0.32), (5, 8, 10, 255))
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
GENRE_WEIGHTS = np.array([1.2, 1.3, 1.4, 1.0, 1.0, 0.9, 0.8, 0.7, 0.7, 1.0])
GENRE_WEIGHTS = GENRE_WEIGHTS / GENRE_WEIGHTS.sum()

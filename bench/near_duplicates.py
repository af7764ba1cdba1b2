"""Near-duplicate / placeholder poster detection (`datatools.near_duplicates`): accuracy and speed.

Accuracy, on a labelled set generated here (no downloads): originals are sample posters painted by
`datatools.sample_data.render_poster` and "photo posters" (windows of scikit-image's bundled photos
with a title); each gets transformed copies (re-encoding, resizing, small crops, letterboxing, colour
shifts, a small overlay box, two of these combined), some get exact byte copies. Hard negatives are
look-alikes that are other artworks: one template with another picture, one text card with another
title, one genre palette with other designs. Pair precision / recall are over all pairs of items (a
predicted pair: both in one group; a true pair: one artwork). One sample-poster design with another
title ("retitled": the same artwork, only the title changed) is reported on its own.

Speed: hashing throughput on the labelled set's 200×300 posters (1 and `--workers` processes), and
the whole detection on 10k and 100k generated 64×96 JPEG posters: hashed for real in `--workers`
processes, then candidates + confirm + groups on those fingerprints (timed separately). Wall and CPU
seconds are both reported: on a shared machine CPU / workers is what idle cores would take.

    .venv/bin/python -m bench.near_duplicates [--out results.json] [--quick] [--workers 2]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import sys
import time
from collections import Counter, defaultdict
from itertools import combinations
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from poster_similarity.datatools import near_duplicates as nd
from poster_similarity.datatools import perceptual_hash as ph
from poster_similarity.datatools.drawing import draw_credits, draw_title, load_font, make_title
from poster_similarity.datatools.genres import GENRE_NAMES, GENRES
from poster_similarity.datatools.sample_data import render_poster

SIZE = (200, 300)
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field", "immunohistochemistry",
          "moon", "rocket", "retina", "clock", "brick", "grass", "gravel", "page", "text", "cell", "colorwheel")
TRANSFORMS = ("jpeg", "resize", "crop", "letterbox", "colour", "overlay", "combo")
PRECISION_TARGET, RECALL_TARGET, SECONDS_100K_TARGET = 0.98, 0.95, 600.0


# --- images ---------------------------------------------------------------------------------------
def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def load_photos() -> list[np.ndarray]:
    """scikit-image's bundled sample photos as RGB arrays (shipped with the package, no download)."""
    import skimage.data

    arrays = [np.asarray(getattr(skimage.data, name)()) for name in PHOTOS]
    return [np.ascontiguousarray(np.stack([a] * 3, axis=-1) if a.ndim == 2 else a[..., :3]) for a in arrays]


def photo_window(photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A random 2:3 window of a photo, resized to `size`: windows at different places/zooms are
    different pictures."""
    h, w = photo.shape[:2]
    wh = rng.uniform(0.35, 0.95) * min(w, h * 2 / 3)
    ww, hh = int(wh), int(wh * 1.5)
    x, y = int(rng.integers(0, w - ww + 1)), int(rng.integers(0, h - hh + 1))
    return Image.fromarray(photo[y:y + hh, x:x + ww]).resize(size, Image.BILINEAR)


def photo_poster(photos: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    img = photo_window(photos[int(rng.integers(len(photos)))], rng, SIZE)
    genre = GENRE_NAMES[int(rng.integers(len(GENRE_NAMES)))]
    draw_title(img, make_title(rng, genre), GENRES[genre].title, rng)
    draw_credits(img, rng, dark_text=False)
    return img


def template_poster(template_seed: int, picture: Image.Image, title: str) -> Image.Image:
    """A series template: frame colour, title band and credits fixed by `template_seed`; the picture
    (48 % of the poster) is what differs between members."""
    rng = np.random.default_rng(template_seed)
    w, h = SIZE
    img = Image.new("RGB", SIZE, tuple(int(v) for v in rng.integers(0, 256, 3)))
    img.paste(picture.resize((int(w * 0.8), int(h * 0.6))), (int(w * 0.1), int(h * 0.2)))
    d = ImageDraw.Draw(img)
    d.text((w * 0.5, h * 0.1), title, font=load_font(int(w * 0.09)), anchor="mm",
           fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw_credits(img, rng, dark_text=bool(rng.random() < 0.5))
    return img


def title_card(template_seed: int, title: str) -> Image.Image:
    """A text card (teaser poster): background and type fixed by `template_seed`, the title differs."""
    rng = np.random.default_rng(template_seed)
    w, h = SIZE
    c1, c2 = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = np.asarray(c1, np.float32) * (1 - t) + np.asarray(c2, np.float32) * t
    img = Image.fromarray(np.broadcast_to(arr, (h, w, 3)).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    ink = (0, 0, 0) if sum(c1) + sum(c2) > 3 * 255 else (255, 255, 255)  # legible: dark on light, light on dark
    for i, word in enumerate(title.upper().split()[:4]):
        d.text((w * 0.5, h * (0.25 + 0.16 * i)), word, font=load_font(int(w * 0.17)), anchor="mm", fill=ink,
               stroke_width=2, stroke_fill=ink)
    return img


# --- transformations (each one a near-duplicate of its input) ----------------------------------------
def t_resize(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    s, a = rng.uniform(0.5, 1.6), rng.uniform(0.98, 1.02)
    return img.resize((max(24, int(img.width * s * a)), max(36, int(img.height * s))), Image.BICUBIC)


def t_crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    f = rng.uniform(0.0, 0.04, 4)  # up to 4 % off each side
    return img.crop((int(w * f[0]), int(h * f[1]), w - int(w * f[2]), h - int(h * f[3])))


def t_letterbox(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    colour = [(0, 0, 0), (255, 255, 255), tuple(int(v) for v in rng.integers(0, 256, 3))][int(rng.integers(3))]
    f = rng.uniform(0.03, 0.1)  # bars above and below, or left and right
    pad = (0, int(h * f)) if rng.random() < 0.5 else (int(w * f), 0)
    out = Image.new("RGB", (w + 2 * pad[0], h + 2 * pad[1]), colour)
    out.paste(img, pad)
    return out


def t_colour(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enh(img).enhance(rng.uniform(0.92, 1.08))
    return img


def t_overlay(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A streaming service's badge: a box of 12–22 % × 4–7 % of the poster with a word in it."""
    img = img.copy()
    w, h = img.size
    bw, bh = int(w * rng.uniform(0.12, 0.22)), int(h * rng.uniform(0.04, 0.07))
    x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    d = ImageDraw.Draw(img)
    d.rectangle([x, y, x + bw, y + bh], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    word = ["NEW", "HD", "4K", "TOP 10", "NETFLX", "NOW"][int(rng.integers(6))]
    d.text((x + bw / 2, y + bh / 2), word, font=load_font(max(6, int(bh * 0.7))), anchor="mm", fill=(255, 255, 255))
    return img


def t_combo(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    for t in rng.choice([t_resize, t_crop, t_letterbox, t_colour, t_overlay], size=2, replace=False):
        img = t(img, rng)
    return img


def transform(img: Image.Image, kind: str, rng: np.random.Generator) -> bytes:
    """`kind` applied, then encoded (JPEG quality 40–95, or PNG): every copy is also re-encoded."""
    fn = {"jpeg": lambda i, r: i, "resize": t_resize, "crop": t_crop, "letterbox": t_letterbox,
          "colour": t_colour, "overlay": t_overlay, "combo": t_combo}[kind]
    out = fn(img, rng)
    if kind == "jpeg" or rng.random() < 0.85:
        return encode(out, "JPEG", int(rng.integers(40, 96)))
    return encode(out, "PNG")


# --- the labelled set -------------------------------------------------------------------------------
def sample_poster(rng: np.random.Generator, palette: str = "graded", genres: list[str] | None = None,
                  design_seed: int | None = None, title: str | None = None) -> Image.Image:
    """A `posters sample` poster (random genres/design unless given)."""
    if genres is None:
        k = int(rng.choice([1, 2, 3], p=[0.55, 0.33, 0.12]))
        genres = [GENRE_NAMES[i] for i in rng.choice(len(GENRE_NAMES), size=k, replace=False)]
    seed = int(rng.integers(2**31)) if design_seed is None else design_seed
    return render_poster(genres, title or make_title(rng, genres[0]), SIZE, seed, palette=palette)


def labelled_set(n_sample: int, n_photo: int, copies: int = 2, exact: int = 40, hard_groups: int = 50,
                 seed: int = 0) -> list[dict[str, Any]]:
    """Items {"id", "data", "label", "kind"}: equal `label` = one artwork. Kinds: original, a
    TRANSFORMS name, exact, and hard-negative kinds hn_* (each hn item is its own artwork)."""
    rng = np.random.default_rng(seed)
    photos = load_photos()
    items: list[dict[str, Any]] = []

    def add(data: bytes, label: str, kind: str) -> None:
        items.append({"id": f"i{len(items):06d}", "data": data, "label": label, "kind": kind})

    originals = [sample_poster(rng) for _ in range(n_sample)] + [photo_poster(photos, rng) for _ in range(n_photo)]
    for k, img in enumerate(originals):
        label = f"art{k:05d}"
        data = encode(img, "JPEG", 90) if k % 5 else encode(img, "PNG")
        add(data, label, "original")
        for c in range(copies):
            kind = TRANSFORMS[(k * copies + c) % len(TRANSFORMS)]
            add(transform(img, kind, rng), label, kind)
        if k < exact:
            add(data, label, "exact")
    g = hard_groups
    for t in range(g):  # one series template, a different picture each
        tseed, title = int(rng.integers(2**31)), make_title(rng, GENRE_NAMES[t % len(GENRE_NAMES)])
        for m in range(3):
            pic = photo_window(photos[int(rng.integers(len(photos)))], rng, SIZE)
            add(encode(template_poster(tseed, pic, title)), f"hn_template{t}_{m}", "hn_template")
    for t in range(g):  # one text card, a different title each
        tseed = int(rng.integers(2**31))
        for m in range(3):
            add(encode(title_card(tseed, make_title(rng, GENRE_NAMES[m]))), f"hn_title{t}_{m}", "hn_title_card")
    for t in range(g):  # one genre's own palette, different designs
        genre = GENRE_NAMES[t % len(GENRE_NAMES)]
        for m in range(3):
            add(encode(sample_poster(rng, "genre", [genre])), f"hn_palette{t}_{m}", "hn_palette")
    for t in range(g):  # one sample-poster design, a different title each
        genres, dseed = [GENRE_NAMES[t % len(GENRE_NAMES)]], int(rng.integers(2**31))
        for m in range(2):
            title = make_title(rng, genres[0])
            add(encode(sample_poster(rng, "graded", genres, dseed, title)), f"hn_retitled{t}_{m}", "hn_retitled")
    return items


# --- accuracy --------------------------------------------------------------------------------------
def fingerprint_all(datas: list[bytes], workers: int) -> tuple[list[Any], float, float]:
    """Fingerprints in `workers` processes; wall seconds and CPU seconds of all processes (on a shared
    machine, CPU / workers is what `workers` idle cores would take)."""
    def cpu() -> float:
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))
    t0, c0 = time.perf_counter(), cpu()
    fps = ph.fingerprint_many(datas, workers)  # the pool's workers are reaped on return: their CPU counts
    return fps, time.perf_counter() - t0, cpu() - c0


def detect(ids: list[str], fps: list[Any], thresholds: nd.Thresholds) -> tuple[list[nd.Group], int, float, float]:
    """Candidates + confirm + groups over precomputed fingerprints: groups, candidates, wall s, CPU s."""
    keep = [(i, f) for i, f in zip(ids, fps, strict=True) if isinstance(f, ph.Fingerprint)]
    t0, c0 = time.perf_counter(), time.process_time()
    groups, candidates = nd.group(nd.Fingerprints.build([i for i, _ in keep], [f for _, f in keep]), thresholds)
    return groups, candidates, time.perf_counter() - t0, time.process_time() - c0


def pair_metrics(items: list[dict[str, Any]], groups: list[nd.Group]) -> dict[str, Any]:
    """Pair precision / recall over all pairs of items; pairs of one 'retitled' design (same
    artwork, another title) are left out of both and reported on their own."""
    label = {it["id"]: it["label"] for it in items}
    kind = {it["id"]: it["kind"] for it in items}
    by_label: dict[str, list[str]] = defaultdict(list)
    for it in items:
        by_label[it["label"]].append(it["id"])
    true_pairs = sum(len(v) * (len(v) - 1) // 2 for v in by_label.values())
    tp = fp = retitled = 0
    false_kinds: Counter[str] = Counter()
    for g in groups:
        for a, b in combinations(g.movie_ids, 2):
            if label[a] == label[b]:
                tp += 1
            elif kind[a] == kind[b] == "hn_retitled" and label[a].rsplit("_", 1)[0] == label[b].rsplit("_", 1)[0]:
                retitled += 1
            else:
                fp += 1
                false_kinds["+".join(sorted({kind[a], kind[b]}))] += 1
    group_of = {m: g.key for g in groups for m in g.movie_ids}
    originals = {it["label"]: it["id"] for it in items if it["kind"] == "original"}
    found: dict[str, list[bool]] = defaultdict(list)
    for it in items:
        if it["kind"] in (*TRANSFORMS, "exact"):
            o = originals[it["label"]]
            found[it["kind"]].append(it["id"] in group_of and group_of.get(o) == group_of[it["id"]])
    retitled_designs = {it["label"].rsplit("_", 1)[0] for it in items if it["kind"] == "hn_retitled"}
    hn_items = Counter(it["kind"] for it in items if it["kind"].startswith("hn_"))
    return {
        "pair_precision": round(tp / max(tp + fp, 1), 4), "pair_recall": round(tp / max(true_pairs, 1), 4),
        "true_pairs": true_pairs, "predicted_true": tp, "predicted_false": fp,
        "false_pairs_by_kind": dict(false_kinds.most_common()),
        "recall_by_transform": {k: round(float(np.mean(v)), 4) for k, v in sorted(found.items())},
        "exact_copies_found": f"{sum(found['exact'])}/{len(found['exact'])}",
        "hard_negative_items": dict(hn_items),
        "retitled_pairs_grouped": f"{retitled}/{len(retitled_designs)}",
    }


def accuracy(args: argparse.Namespace, thresholds: nd.Thresholds) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generate the labelled set, detect, score: what the import would report, against the labels."""
    t0 = time.perf_counter()
    items = labelled_set(args.n_sample, args.n_photo, copies=2, exact=args.exact, hard_groups=args.hard_groups,
                         seed=args.seed)
    gen_s = time.perf_counter() - t0
    fps, hash_s, _ = fingerprint_all([it["data"] for it in items], args.workers)
    groups, candidates, group_s, _ = detect([it["id"] for it in items], fps, thresholds)
    kinds = Counter(it["kind"] for it in items)
    res = {"items": len(items), "originals": kinds["original"],
           "transformed_copies": sum(kinds[k] for k in TRANSFORMS), "exact_copies": kinds["exact"],
           "hard_negatives": sum(v for k, v in kinds.items() if k.startswith("hn_") and k != "hn_retitled"),
           "retitled_items": kinds["hn_retitled"], "generate_s": round(gen_s, 1), "hash_s": round(hash_s, 2),
           "candidates": candidates, "group_s": round(group_s, 3), "groups": len(groups),
           **pair_metrics(items, groups)}
    return res, items


# --- speed -----------------------------------------------------------------------------------------
def thumbnail_posters(n: int, seed: int, photos: list[np.ndarray]) -> list[bytes]:
    """n distinct small (64×96) JPEG "posters": a gradient, a photo window, a few shapes; every
    100th followed by a re-encoded, slightly cropped copy (so there is something to find)."""
    rng = np.random.default_rng(seed)
    w, h = 64, 96
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    out: list[bytes] = []
    while len(out) < n:
        c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        img = Image.fromarray(np.broadcast_to(c1 * (1 - yy) + c2 * yy, (h, w, 3)).astype(np.uint8), "RGB")
        pw, phh = int(rng.integers(20, 60)), int(rng.integers(20, 80))
        img.paste(photo_window(photos[int(rng.integers(len(photos)))], rng, (pw, phh)),
                  (int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - phh + 1))))
        d = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 20)
            d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        out.append(encode(img, "JPEG", 85))
        if len(out) % 100 == 0 and len(out) < n:
            out.append(encode(t_crop(img, rng), "JPEG", 60))
    return out[:n]


def speed(args: argparse.Namespace, items: list[dict[str, Any]], thresholds: nd.Thresholds) -> dict[str, Any]:
    """Hashing throughput on real-size posters, then the whole detection at 10k / 100k posters."""
    photos = load_photos()
    datas = [it["data"] for it in items]
    one = datas[: min(len(datas), 600)]
    _, wall1, cpu1 = fingerprint_all(one, 1)
    _, wall2, cpu2 = fingerprint_all(datas, args.workers)
    res: dict[str, Any] = {"posters": f"{len(datas)} labelled-set images, {SIZE[0]}x{SIZE[1]} JPEG/PNG",
                           "hash_img_per_s_1_process": round(len(one) / wall1, 1),
                           "hash_img_per_cpu_s": round(len(datas) / cpu2, 1),
                           f"hash_img_per_s_{args.workers}_processes": round(len(datas) / wall2, 1)}
    for n in args.sizes:
        t0 = time.perf_counter()
        thumbs = thumbnail_posters(n, args.seed + n, photos)
        gen_s = time.perf_counter() - t0
        fps, hash_s, hash_cpu = fingerprint_all(thumbs, args.workers)
        groups, candidates, group_s, group_cpu = detect([f"t{i:06d}" for i in range(n)], fps, thresholds)
        idle = hash_cpu / args.workers + group_cpu  # what a machine with `workers` free cores would take
        res[f"n{n}"] = {"what": f"{n} generated 64x96 JPEG posters, hashed for real in {args.workers} processes; "
                                "then candidates + confirm + groups on those fingerprints in one process",
                        "generate_s": round(gen_s, 1), "hash_wall_s": round(hash_s, 1),
                        "hash_cpu_s": round(hash_cpu, 1), "hash_img_per_cpu_s": round(n / hash_cpu, 1),
                        "candidates": candidates, "candidate_confirm_group_wall_s": round(group_s, 2),
                        "candidate_confirm_group_cpu_s": round(group_cpu, 2), "groups": len(groups),
                        "total_wall_s": round(hash_s + group_s, 1), "total_idle_estimate_s": round(idle, 1)}
        log(f"  {n}: hash {hash_s:.1f} s wall / {hash_cpu:.1f} CPU s ({n / hash_cpu:.0f} img per CPU s), "
            f"{candidates} candidates, candidate+confirm+group {group_s:.2f} s wall / {group_cpu:.2f} CPU s, "
            f"{len(groups)} groups; total {hash_s + group_s:.1f} s wall, {idle:.1f} s on {args.workers} idle cores")
    return res


# --- main ------------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="a small run (a smoke test, not the figures)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes for hashing (default 2)")
    a = p.parse_args(argv)
    a.n_sample, a.n_photo, a.exact, a.hard_groups = (40, 20, 10, 6) if a.quick else (400, 120, 60, 60)
    a.sizes = [2000] if a.quick else [10_000, 100_000]
    return a


def goals(acc: dict[str, Any], spd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found, total = acc["exact_copies_found"].split("/")
    out = {"pair_precision": (acc["pair_precision"], PRECISION_TARGET, acc["pair_precision"] >= PRECISION_TARGET),
           "pair_recall": (acc["pair_recall"], RECALL_TARGET, acc["pair_recall"] >= RECALL_TARGET),
           "exact_copies_all_found": (acc["exact_copies_found"], "all", found == total)}
    for key in ("total_wall_s", "total_idle_estimate_s"):
        if "n100000" in spd:
            v = spd["n100000"][key]
            out[f"100k_{key}"] = (v, SECONDS_100K_TARGET, v <= SECONDS_100K_TARGET)
    return {k: {"value": v, "target": t, "met": bool(m)} for k, (v, t, m) in out.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    thresholds = nd.Thresholds()
    started, load = time.time(), round(os.getloadavg()[0], 1)
    log(f"near-duplicate bench: {os.cpu_count()} cores, load average {load}, {thresholds}")
    acc, items = accuracy(args, thresholds)
    log(f"accuracy: {acc['items']} items ({acc['originals']} originals, {acc['transformed_copies']} transformed, "
        f"{acc['exact_copies']} exact copies, {acc['hard_negatives']} hard negatives + {acc['retitled_items']} "
        f"retitled): pair precision {acc['pair_precision']}, recall {acc['pair_recall']}, exact copies found "
        f"{acc['exact_copies_found']}, retitled pairs grouped {acc['retitled_pairs_grouped']}\n"
        f"  recall by transform {acc['recall_by_transform']}; false pairs {acc['false_pairs_by_kind']}")
    spd = speed(args, items, thresholds)
    result = {"name": "near_duplicates", "quick": args.quick, "seconds": round(time.time() - started, 1),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
              "machine": {"cores": os.cpu_count(), "load_average_at_start": load, "platform": platform.platform(),
                          "python": platform.python_version()},
              "thresholds": thresholds.__dict__, "accuracy": acc, "speed": spd, "goals": goals(acc, spd)}
    for k, g in result["goals"].items():
        log(f"goal {k}: {g['value']} (target {g['target']}) {'met' if g['met'] else 'NOT met'}")
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

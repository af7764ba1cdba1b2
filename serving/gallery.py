"""`posters gallery`: a static, offline HTML page (+ PNG contact sheet) of what the served model answers.

Every neighbour on the page comes from the running model server through `PosterClient` (REST, or
gRPC with `--grpc`): `similar` for the query rows, `embed` + `neighbors` for the style mix,
`recommend` for "Because you watched". The catalogue TFRecords only supply the pictures, titles
and genres. Output:

    DIR/index.html          the page (inline CSS, no external resources)
    DIR/contact_sheet.png   the same rows drawn with Pillow
    DIR/gallery.json        the raw answers (ids, scores) + the choices made, for tools and tests
    DIR/img/<id>.jpg        every catalogue poster shown

No TFX import; TensorFlow is imported only inside `core.tfrecords` to read the catalogue.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import glob as globlib
import hashlib
import html
import io
import json
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

K = 10
THUMB_W, THUMB_H = 96, 144  # contact sheet thumbnails (2:3)

# Metrics shown at the top, in this order: (key in run_summary.json["metrics"], label).
METRICS = [
    ("recall@1", "Recall@1"), ("recall@5", "Recall@5"), ("recall@10", "Recall@10"),
    ("precision@1", "Precision@1"), ("precision@5", "Precision@5"), ("precision@10", "Precision@10"),
    ("map@r", "MAP@R"), ("index_recall@10", "Index recall@10"),
]


# --- catalogue --------------------------------------------------------------------------------------

@dataclass
class Poster:
    movie_id: str
    title: str
    genres: list[str]
    year: int = 0

    @property
    def primary(self) -> str:
        return self.genres[0] if self.genres else "?"


def read_catalogue(pattern: str) -> list[Poster]:
    """Metadata of every catalogue poster (image bytes are dropped: see `read_images`)."""
    from core import tfrecords

    if not globlib.glob(pattern):
        raise FileNotFoundError(f"--catalogue {pattern!r} matches no files")
    out, seen = [], set()
    for ex in tfrecords.read_examples(pattern):
        mid = ex["movie_id"]
        if mid and mid not in seen:
            seen.add(mid)
            out.append(Poster(mid, ex["title"], list(ex["genres"]), int(ex["year"] or 0)))
    return out


def read_images(pattern: str, ids: Iterable[str]) -> dict[str, bytes]:
    """Encoded image bytes of the given ids (a second streaming pass: big catalogues stay off RAM)."""
    from core import tfrecords

    want = set(ids)
    out: dict[str, bytes] = {}
    for ex in tfrecords.read_examples(pattern):
        if ex["movie_id"] in want and ex["movie_id"] not in out:
            out[ex["movie_id"]] = ex["image"]
            if len(out) == len(want):
                break
    return out


# --- deterministic choices (pure) -------------------------------------------------------------------

def _key(seed: int, movie_id: str) -> str:
    return hashlib.sha1(f"{seed}:{movie_id}".encode()).hexdigest()


def spread_order(catalogue: Sequence[Poster], seed: int = 0) -> list[Poster]:
    """All posters, round-robin over primary genres (genres sorted by name, posters by a seeded hash).

    The first n of this order are n query posters spread across genres; the same catalogue and seed
    always give the same order, whatever the order of the TFRecords.
    """
    by_genre: dict[str, list[Poster]] = defaultdict(list)
    for p in catalogue:
        by_genre[p.primary].append(p)
    queues = [sorted(by_genre[g], key=lambda p: (_key(seed, p.movie_id), p.movie_id)) for g in sorted(by_genre)]
    out: list[Poster] = []
    depth = 0
    while len(out) < len(catalogue):
        for q in queues:
            if depth < len(q):
                out.append(q[depth])
        depth += 1
    return out


def choose_queries(catalogue: Sequence[Poster], n: int, seed: int = 0) -> list[Poster]:
    return spread_order(catalogue, seed)[:max(0, n)]


def choose_mix(catalogue: Sequence[Poster], exclude: Iterable[str] = (), seed: int = 0) -> tuple[Poster, Poster] | None:
    """Two posters for the style mix: genres as different as possible (disjoint, else other primary)."""
    skip = set(exclude)
    pool = [p for p in spread_order(catalogue, seed) if p.movie_id not in skip] or list(spread_order(catalogue, seed))
    if len(pool) < 2:
        return None
    a = pool[0]
    for cond in (lambda p: not set(p.genres) & set(a.genres), lambda p: p.primary != a.primary, lambda p: True):
        for b in pool[1:]:
            if cond(b):
                return a, b
    return None


def choose_history(catalogue: Sequence[Poster], exclude: Iterable[str] = (), size: int = 3,
                   seed: int = 0) -> list[Poster]:
    """A short watch history: `size` posters of the catalogue's most common primary genre."""
    skip = set(exclude)
    counts = Counter(p.primary for p in catalogue)
    if not counts:
        return []
    genre = sorted(counts, key=lambda g: (-counts[g], g))[0]
    pool = [p for p in spread_order(catalogue, seed) if p.primary == genre]
    fresh = [p for p in pool if p.movie_id not in skip]
    return (fresh + [p for p in pool if p.movie_id in skip])[:size]


def safe_name(movie_id: str) -> str:
    """File name for a movie id: itself when harmless, else a sanitised form + short hash."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,80}", movie_id):
        return movie_id
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", movie_id)[:60].strip("._") or "id"
    return f"{clean}-{hashlib.sha1(movie_id.encode()).hexdigest()[:8]}"


# --- answers from the server ------------------------------------------------------------------------

@dataclass
class Row:
    kind: str  # "query" | "mix" | "history"
    heading: str
    inputs: list[str]  # movie ids shown on the left
    neighbours: list[tuple[str, float]]
    match_genres: list[set[str]] = field(default_factory=list)  # one set per input: highlight overlap


def ask_server(client, catalogue: Sequence[Poster], images: dict[str, bytes], queries: Sequence[Poster],
               mix: tuple[Poster, Poster] | None, history: Sequence[Poster], k: int = K) -> list[Row]:
    """All rows of the page, answered by the served model."""
    rows: list[Row] = []
    if queries:
        answers: list[list[tuple[str, float]]] = []
        for start in range(0, len(queries), 16):
            chunk = queries[start:start + 16]
            answers += client.similar([images[p.movie_id] for p in chunk], k)
        for i, (p, ans) in enumerate(zip(queries, answers, strict=True), 1):
            rows.append(Row("query", f"Query {i}: {p.title or p.movie_id}", [p.movie_id], ans, [set(p.genres)]))
    if mix is not None:
        emb = np.asarray(client.embed([images[mix[0].movie_id], images[mix[1].movie_id]]), dtype=np.float32)
        mean = emb.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        ans = client.neighbors(mean, k)[0]
        heading = f"{mix[0].title or mix[0].movie_id} ({mix[0].primary}) + {mix[1].title or mix[1].movie_id} " \
                  f"({mix[1].primary})"
        rows.append(Row("mix", heading, [mix[0].movie_id, mix[1].movie_id], ans,
                        [set(mix[0].genres), set(mix[1].genres)]))
    if history:
        ans = client.recommend([[p.movie_id for p in history]], k)[0]
        common = Counter(g for p in history for g in p.genres).most_common(1)[0][0]
        heading = "Watched " + ", ".join(p.title or p.movie_id for p in history) + f" (mostly {common})"
        rows.append(Row("history", heading,
                        [p.movie_id for p in history], ans, [set(p.genres) for p in history]))
    return rows


def served_version(client) -> str | None:
    try:
        st = client.status()
    except Exception:  # the page still renders without it
        return None
    versions = [str(v.get("version")) for v in st.get("model_version_status", [])
                if str(v.get("state", "")).upper() == "AVAILABLE"]
    return versions[0] if versions else None


# --- writing ----------------------------------------------------------------------------------------

def write_images(images: dict[str, bytes], ids: Iterable[str], img_dir: str) -> dict[str, str]:
    """Write each poster as JPEG (PNG sources re-encoded); returns movie id → relative src."""
    from PIL import Image

    os.makedirs(img_dir, exist_ok=True)
    out = {}
    for mid in dict.fromkeys(ids):
        data = images.get(mid)
        if not data:
            continue
        name = safe_name(mid) + ".jpg"
        path = os.path.join(img_dir, name)
        if data[:3] != b"\xff\xd8\xff":
            im = Image.open(io.BytesIO(data)).convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90)
            data = buf.getvalue()
        with open(path, "wb") as f:
            f.write(data)
        out[mid] = f"img/{name}"
    return out


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


CSS = """
:root { --bg:#f4f5f7; --card:#fff; --ink:#1d2330; --muted:#667085; --line:#e3e6eb;
        --match:#12a150; --match-bg:#e8f7ee; --accent:#3b5bdb; --bad:#d92d20; --bad-bg:#fdecea; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
main { max-width:1360px; margin:0 auto; padding:16px 20px 40px; }
h1 { font-size:22px; margin:0 0 4px; }
h2 { font-size:17px; margin:22px 0 2px; }
.sub { color:var(--muted); margin:0 0 10px; }
.panel { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; }
.gate { display:flex; flex-wrap:wrap; gap:10px 24px; align-items:center; }
.badge { font-weight:700; padding:4px 12px; border-radius:999px; }
.badge.ok { background:var(--match-bg); color:var(--match); }
.badge.no { background:var(--bad-bg); color:var(--bad); }
.badge.na { background:var(--line); color:var(--muted); }
.kv { color:var(--muted); } .kv b { color:var(--ink); font-weight:600; }
.metrics { display:grid; grid-template-columns:repeat(auto-fill,minmax(118px,1fr)); gap:8px; margin-top:12px; }
.metric { background:var(--bg); border-radius:8px; padding:8px 10px; }
.metric .v { font-size:20px; font-weight:700; font-variant-numeric:tabular-nums; }
.metric .l { color:var(--muted); font-size:12px; }
.legend { display:inline-flex; gap:16px; color:var(--muted); font-size:12px; margin-left:12px; }
.legend span::before { content:""; display:inline-block; width:10px; height:10px; border-radius:3px;
                       margin-right:5px; vertical-align:-1px; border:2px solid var(--line); }
.legend .lm::before { border-color:var(--match); background:var(--match-bg); }
.row { display:grid; grid-template-columns:auto 1fr; gap:14px; margin-top:12px; align-items:start; }
.row .head { display:flex; justify-content:space-between; gap:12px; font-weight:600; margin-bottom:4px;
             white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.row .head .stat { color:var(--muted); font-weight:400; white-space:nowrap; }
.inputs { display:flex; gap:8px; }
.inputs .card { width:120px; border:2px solid var(--accent); }
.inputs[data-n="2"] .card { width:96px; }
.inputs[data-n="3"] .card { width:72px; }
.inputs[data-n="3"] .card .g { display:none; }
.plus { align-self:center; font-size:20px; color:var(--muted); }
.grid { display:grid; grid-template-columns:repeat(10,minmax(0,1fr)); gap:8px; }
.card { background:var(--card); border:2px solid var(--line); border-radius:8px; overflow:hidden;
        display:flex; flex-direction:column; min-width:0; }
.card.match { border-color:var(--match); background:var(--match-bg); }
.card img, .card .missing { width:100%; aspect-ratio:2/3; object-fit:cover; display:block; background:#dde1e7; }
.card .missing { display:flex; align-items:center; justify-content:center; color:var(--muted);
                 font-size:11px; text-align:center; padding:4px; }
.card .meta { padding:4px 6px 6px; font-size:11.5px; }
.card .t { font-weight:600; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.card .g { color:var(--muted); white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.card .g b { color:var(--match); font-weight:600; }
.pic { position:relative; }
.pic .r, .pic .sc { position:absolute; top:4px; font-size:11px; font-weight:700; color:#fff;
                    background:rgba(17,20,28,.72); border-radius:4px; padding:0 4px;
                    font-variant-numeric:tabular-nums; }
.pic .r { left:4px; } .pic .sc { right:4px; }
.tag { font-size:10px; font-weight:700; color:#fff; background:var(--accent); border-radius:4px; padding:0 4px;
       margin-right:4px; }
.tag.self { background:#667085; }
footer { color:var(--muted); font-size:12px; margin-top:28px; }
"""

# Marks the page for the headless-browser test: number of images and of images that failed to load.
CHECK_JS = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  document.body.dataset.ready = "1";
});
"""


class _Page:
    def __init__(self, catalogue: dict[str, Poster], srcs: dict[str, str]):
        self.catalogue = catalogue
        self.srcs = srcs

    def card(self, mid: str, score: float | None = None, rank: int | None = None,
             match: Sequence[set[str]] = (), tag: str = "", is_input: bool = False) -> str:
        p = self.catalogue.get(mid)
        title = p.title if p and p.title else mid
        genres = p.genres if p else []
        wanted = set().union(*match) if match else set()
        shared = [g for g in genres if g in wanted]
        classes = ["card"] + (["match"] if shared and not is_input else [])
        esc = html.escape
        src = self.srcs.get(mid)
        if src:
            alt = f"Poster: {title}" + (f" ({', '.join(genres)})" if genres else "")
            pic = f'<img src="{esc(src)}" alt="{esc(alt)}" loading="eager">'
        else:
            pic = f'<div class="missing">{esc(mid)}<br>not in the catalogue</div>'
        genre_html = ", ".join(f"<b>{esc(g)}</b>" if g in wanted and not is_input else esc(g) for g in genres) or "—"
        data_match = ' data-match="1"' if shared and not is_input else ""
        badges = ""
        if rank is not None:
            badges += f'<span class="r">#{rank}</span>'
        if score is not None:
            badges += f'<span class="sc">{score:.3f}</span>'
        tag_html = f'<span class="tag{" self" if tag == "query" else ""}">{esc(tag)}</span>' if tag else ""
        parts = [f'<div class="{" ".join(classes)}" data-id="{esc(mid)}"{data_match}>',
                 f'<div class="pic">{pic}{badges}</div><div class="meta">',
                 f'<div class="t" title="{esc(title)}">{tag_html}{esc(title)}</div>',
                 f'<div class="g" title="{esc(", ".join(genres))}">{genre_html}</div>']
        parts.append("</div></div>")
        return "".join(parts)

    def row(self, r: Row) -> str:
        esc = html.escape
        joiner = '<span class="plus">+</span>' if r.kind == "mix" else ""
        inputs = joiner.join(
            self.card(mid, tag=("A" if i == 0 else "B") if r.kind == "mix" else "", is_input=True)
            for i, mid in enumerate(r.inputs))
        cards = []
        n_match = 0
        for rank, (mid, score) in enumerate(r.neighbours, 1):
            p = self.catalogue.get(mid)
            tags = []
            if r.kind == "mix" and p:
                tags = [t for t, gs in zip("AB", r.match_genres, strict=False) if set(p.genres) & gs]
            tag = "query" if (r.kind == "query" and mid in r.inputs) else "+".join(tags)
            card = self.card(mid, score, rank, r.match_genres, tag)
            n_match += 'data-match="1"' in card
            cards.append(card)
        stat = f"{n_match}/{len(r.neighbours)} share a genre"
        return (f'<section class="row" data-row="{r.kind}">'
                f'<div class="inputs" data-n="{len(r.inputs)}">{inputs}</div><div>'
                f'<div class="head"><span>{esc(r.heading)}</span><span class="stat">{stat}</span></div>'
                f'<div class="grid">{"".join(cards)}</div></div></section>')


def _gate_html(metrics_doc: dict | None, version: str | None) -> str:
    esc = html.escape
    if metrics_doc is None:
        return ('<div class="panel gate"><span class="badge na">no metrics</span>'
                '<span class="kv">run with <b>--metrics run_summary.json</b> to show the evaluation</span></div>')
    blessed = metrics_doc.get("blessed")
    badge = ('<span class="badge ok">✔ blessed</span>' if blessed is True else
             '<span class="badge no">✘ not blessed</span>' if blessed is False else
             '<span class="badge na">blessing unknown</span>')
    pushed = metrics_doc.get("pushed_destination") or ""
    pushed_v = os.path.basename(pushed.rstrip("/")) if pushed else ""
    kv = [f'<span class="kv">served version <b>{esc(version or "?")}</b></span>']
    if pushed_v:
        kv.append(f'<span class="kv">pushed version <b>{esc(pushed_v)}</b></span>')
    m = metrics_doc.get("metrics") or {}
    if "example_count" in m:
        kv.append(f'<span class="kv">eval examples <b>{int(m["example_count"])}</b></span>')
    tiles = "".join(f'<div class="metric"><div class="v">{_fmt(m.get(key))}</div><div class="l">{label}</div></div>'
                    for key, label in METRICS)
    warn = ""
    if pushed_v and version and pushed_v != version:
        warn = (f'<p class="kv" style="color:var(--bad)">The metrics are for version {esc(pushed_v)}, '
                f'the server answers with version {esc(version)}.</p>')
    return (f'<div class="panel"><div class="gate">{badge}{"".join(kv)}</div>'
            f'<div class="metrics" data-section="metrics">{tiles}</div>{warn}</div>')


def render_html(rows: Sequence[Row], catalogue: dict[str, Poster], srcs: dict[str, str], *, model_name: str,
                server: str, protocol: str, version: str | None, metrics_doc: dict | None,
                catalogue_size: int) -> str:
    page = _Page(catalogue, srcs)
    esc = html.escape
    sections = {"query": [], "mix": [], "history": []}
    for r in rows:
        sections[r.kind].append(page.row(r))
    out = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Poster similarity — {esc(model_name)}</title>", f"<style>{CSS}</style>",
        f"<script>{CHECK_JS}</script></head><body><main>",
        "<h1>Poster similarity — what the served model answers</h1>",
        f'<p class="sub">Model <b>{esc(model_name)}</b> at {esc(server)} ({esc(protocol.upper())}), '
        f"catalogue of {catalogue_size} posters. Scores are the model's similarity scores.</p>",
        _gate_html(metrics_doc, version),
    ]
    legend = ('<span class="legend"><span class="lm">shares a genre with the query</span>'
              '<span>no genre in common</span></span>')
    if sections["query"]:
        out += ["<h2>Similar posters</h2>",
                f'<p class="sub">Top-{K} neighbours of sample posters picked across genres '
                f"(<code>serving_default</code>). A catalogue poster finds itself first.{legend}</p>"]
        out += sections["query"]
    if sections["mix"]:
        out += ["<h2>Style mix</h2>",
                '<p class="sub">Two posters of different genres: neighbours of their averaged, re-normalised '
                "embedding (<code>embed</code> + <code>neighbors</code>). Tags say whose genre a result "
                "shares.</p>"]
        out += sections["mix"]
    if sections["history"]:
        out += ["<h2>Because you watched</h2>",
                '<p class="sub">Recommendations for a short watch history (<code>recommend</code>; '
                "watched titles are excluded).</p>"]
        out += sections["history"]
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    out += [f"<footer>Generated {stamp} by <code>posters gallery</code>. "
            "Contact sheet: <a href=\"contact_sheet.png\">contact_sheet.png</a>, raw answers: "
            "<a href=\"gallery.json\">gallery.json</a>.</footer>", "</main></body></html>"]
    return "\n".join(out) + "\n"


# --- contact sheet ----------------------------------------------------------------------------------

def _font(size: int):
    from PIL import ImageFont

    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _thumb(data: bytes | None):
    from PIL import Image, ImageOps

    if not data:
        return Image.new("RGB", (THUMB_W, THUMB_H), (221, 225, 231))
    im = Image.open(io.BytesIO(data)).convert("RGB")
    return ImageOps.fit(im, (THUMB_W, THUMB_H))


def _clip(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render_contact_sheet(rows: Sequence[Row], catalogue: dict[str, Poster], images: dict[str, bytes],
                         path: str, metrics_line: str = "") -> None:
    from PIL import Image, ImageDraw

    pad, gap, border = 16, 8, 3
    cell_w, label_h, head_h = THUMB_W + gap, 30, 24
    max_inputs = max((len(r.inputs) for r in rows), default=1)
    width = pad * 2 + max_inputs * cell_w + 24 + K * cell_w
    row_h = head_h + THUMB_H + label_h + 14
    title_h = 56
    height = title_h + len(rows) * row_h + pad
    sheet = Image.new("RGB", (width, height), (244, 245, 247))
    d = ImageDraw.Draw(sheet)
    f_title, f_head, f_small = _font(20), _font(14), _font(11)
    d.text((pad, 12), "Poster similarity — neighbours from the served model", fill=(29, 35, 48), font=f_title)
    if metrics_line:
        d.text((pad, 36), metrics_line, fill=(102, 112, 133), font=f_small)
    green, grey, blue = (18, 161, 80), (200, 205, 212), (59, 91, 219)
    thumbs: dict[str, Any] = {}

    def thumb(mid):
        if mid not in thumbs:
            thumbs[mid] = _thumb(images.get(mid))
        return thumbs[mid]

    y = title_h
    for r in rows:
        d.text((pad, y), _clip(d, f"[{r.kind}] {r.heading}", f_head, width - 2 * pad), fill=(29, 35, 48), font=f_head)
        ty = y + head_h
        x = pad
        for mid in r.inputs:
            d.rectangle([x - border, ty - border, x + THUMB_W + border - 1, ty + THUMB_H + border - 1], fill=blue)
            sheet.paste(thumb(mid), (x, ty))
            p = catalogue.get(mid)
            d.text((x, ty + THUMB_H + 4), _clip(d, p.primary if p else mid, f_small, THUMB_W), fill=blue,
                   font=f_small)
            x += cell_w
        x = pad + max_inputs * cell_w + 24
        wanted = set().union(*r.match_genres) if r.match_genres else set()
        for mid, score in r.neighbours:
            p = catalogue.get(mid)
            match = bool(p and set(p.genres) & wanted)
            d.rectangle([x - border, ty - border, x + THUMB_W + border - 1, ty + THUMB_H + border - 1],
                        fill=green if match else grey)
            sheet.paste(thumb(mid), (x, ty))
            d.text((x, ty + THUMB_H + 4), f"{score:.3f}", fill=(29, 35, 48), font=f_small)
            d.text((x, ty + THUMB_H + 17), _clip(d, ", ".join(p.genres) if p else mid, f_small, THUMB_W),
                   fill=green if match else (102, 112, 133), font=f_small)
            x += cell_w
        y += row_h
    sheet.save(path, "PNG", optimize=True)


# --- driver -----------------------------------------------------------------------------------------

def build_gallery(client, catalogue_glob: str, out_dir: str, *, queries: int = 6, metrics_path: str | None = None,
                  seed: int = 0, k: int = K) -> str:
    """Ask the server, write DIR/index.html + contact_sheet.png + gallery.json + img/; returns index.html."""
    metrics_doc = None
    if metrics_path:
        with open(metrics_path) as f:
            metrics_doc = json.load(f)
    catalogue_list = read_catalogue(catalogue_glob)
    if not catalogue_list:
        raise ValueError(f"--catalogue {catalogue_glob!r} holds no posters")
    qs = choose_queries(catalogue_list, queries, seed)
    used = {p.movie_id for p in qs}
    mix = choose_mix(catalogue_list, used, seed)
    used |= {p.movie_id for p in mix or ()}
    history = choose_history(catalogue_list, used, 3, seed)
    inputs = [p.movie_id for p in qs] + [p.movie_id for p in mix or ()] + [p.movie_id for p in history]
    images = read_images(catalogue_glob, inputs)

    rows = ask_server(client, catalogue_list, images, qs, mix, history, k)
    version = served_version(client)

    shown = list(dict.fromkeys(inputs + [mid for r in rows for mid, _ in r.neighbours]))
    images.update(read_images(catalogue_glob, [m for m in shown if m not in images]))
    os.makedirs(out_dir, exist_ok=True)
    srcs = write_images(images, shown, os.path.join(out_dir, "img"))
    catalogue = {p.movie_id: p for p in catalogue_list}
    server = getattr(client, "server", "?")
    protocol = getattr(client, "protocol", "rest")
    model_name = getattr(client, "model_name", "posters")
    page = render_html(rows, catalogue, srcs, model_name=model_name, server=server, protocol=protocol,
                       version=version, metrics_doc=metrics_doc, catalogue_size=len(catalogue_list))
    index = os.path.join(out_dir, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(page)
    m = (metrics_doc or {}).get("metrics") or {}
    line = ""
    if metrics_doc is not None:
        line = ("blessed" if metrics_doc.get("blessed") else "NOT blessed") + f" · version {version or '?'} · " + \
               " · ".join(f"{label} {_fmt(m.get(key))}" for key, label in METRICS if key in m)
    render_contact_sheet(rows, catalogue, images, os.path.join(out_dir, "contact_sheet.png"), line)
    with open(os.path.join(out_dir, "gallery.json"), "w") as f:
        json.dump({
            "model_name": model_name, "server": server, "protocol": protocol, "served_version": version,
            "catalogue": catalogue_glob, "catalogue_size": len(catalogue_list),
            "blessed": (metrics_doc or {}).get("blessed"), "metrics": m,
            "rows": [{"kind": r.kind, "heading": r.heading, "inputs": r.inputs,
                      "neighbours": [[mid, score] for mid, score in r.neighbours]} for r in rows],
        }, f, indent=1)
    return index


def main(args: argparse.Namespace) -> int:
    from serving.client import PosterClient, ServerUnavailable, ServingError

    protocol = "grpc" if getattr(args, "grpc", False) else "rest"
    client = PosterClient(args.server, args.model_name, protocol=protocol)
    try:
        index = build_gallery(client, args.catalogue, args.out, queries=args.queries,
                              metrics_path=getattr(args, "metrics", None), seed=getattr(args, "seed", 0))
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as e:
        print(f"posters gallery: error: {e}", file=sys.stderr)
        return 2
    except ServerUnavailable as e:
        print(f"posters gallery: error: {e}", file=sys.stderr)
        return 2
    except ServingError as e:
        print(f"posters gallery: error: the server rejected a request: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(os.path.abspath(index))
    return 0

"""The gallery's page and contact sheet: what `posters gallery` writes, from rows the server answered.

Pure rendering (HTML with inline CSS, a Pillow-drawn PNG); `client.gallery` asks the server.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import html
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

K = 10
THUMB_W, THUMB_H = 96, 144  # contact sheet thumbnails (2:3)

# Metrics shown at the top, in this order: (key in run_summary.json["metrics"], label).
# METRICS_NOTE says what they measure (docs/evaluation.md): a reader of the page has no other key.
METRICS_NOTE = ("The pipeline's evaluation of the pushed model on its held-out posters: each poster queries "
                "the others, and a neighbour counts as relevant when it shares a genre. Recall@k: share of "
                "queries with a relevant poster in their top k; Precision@k: share of the top k that is "
                "relevant; MAP@R: ranking quality over all R relevant posters; Index recall@10: the served "
                "approximate index's top 10 against exact search.")
METRICS = [
    ("recall@1", "Recall@1"), ("recall@5", "Recall@5"), ("recall@10", "Recall@10"),
    ("precision@1", "Precision@1"), ("precision@5", "Precision@5"), ("precision@10", "Precision@10"),
    ("map@r", "MAP@R"), ("index_recall@10", "Index recall@10"),
]



@dataclass
class Poster:
    movie_id: str
    title: str
    genres: list[str]
    year: int = 0
    group: str = ""  # series / crowding key (data contract's optional `group`)

    @property
    def primary(self) -> str:
        return self.genres[0] if self.genres else "?"



@dataclass
class Row:
    kind: str  # "query" | "mix" | "history" | "filtered"
    heading: str
    inputs: list[str]  # movie ids shown on the left
    neighbors: list[tuple[str, float]]
    match_genres: list[set[str]] = field(default_factory=list)  # one set per input: highlight overlap



def safe_name(movie_id: str) -> str:
    """File name for a movie id: itself when harmless, else a sanitised form + short hash."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,80}", movie_id):
        return movie_id
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", movie_id)[:60].strip("._") or "id"
    return f"{clean}-{hashlib.sha1(movie_id.encode()).hexdigest()[:8]}"



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


def fmt_metric(value: Any) -> str:
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
.note { font-size:12px; margin:10px 0 0; }
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
        for rank, (mid, score) in enumerate(r.neighbors, 1):
            p = self.catalogue.get(mid)
            tags = []
            if r.kind == "mix" and p:
                tags = [t for t, gs in zip("AB", r.match_genres, strict=False) if set(p.genres) & gs]
            tag = "query" if (r.kind == "query" and mid in r.inputs) else "+".join(tags)
            card = self.card(mid, score, rank, r.match_genres, tag)
            n_match += 'data-match="1"' in card
            cards.append(card)
        stat = f"{n_match}/{len(r.neighbors)} share a genre"
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
    tiles = "".join(f'<div class="metric"><div class="v">{fmt_metric(m.get(key))}</div>'
                    f'<div class="l">{label}</div></div>' for key, label in METRICS)
    warn = ""
    if pushed_v and version and pushed_v != version:
        warn = (f'<p class="kv" style="color:var(--bad)">The metrics are for version {esc(pushed_v)}, '
                f'the server answers with version {esc(version)}.</p>')
    note = f'<p class="kv note" data-section="metrics-note">{esc(METRICS_NOTE)}</p>'
    return (f'<div class="panel"><div class="gate">{badge}{"".join(kv)}</div>'
            f'<div class="metrics" data-section="metrics">{tiles}</div>{note}{_lift_html(metrics_doc)}{warn}</div>')


def _lift_html(metrics_doc: dict) -> str:
    """"Did training help?": macro genre P@10 on the held-out posters for the model and the
    baselines the run measured (run summary's `did_training_help`, from ML Metadata)."""
    props = metrics_doc.get("did_training_help") or {}
    suffix = "_macro_precision_at_10"
    rows = sorted(((k[: -len(suffix)], v) for k, v in props.items() if k.endswith(suffix)),
                  key=lambda kv: (kv[0] != "model", -kv[1]))
    if not rows or rows[0][0] != "model":
        return ""
    cells = []
    for name, value in rows:
        lift = props.get(f"lift_over_{name}")
        note = f" (model ×{lift:.2f})" if lift is not None else ""
        cells.append(f'<span class="kv">{html.escape(name.replace("_", " "))} <b>{value:.3f}</b>{note}</span>')
    return ('<div class="gate" data-section="did-training-help"><span class="kv">did training help? '
            'held-out macro genre P@10:</span>' + "".join(cells) + "</div>")


def duplicates_html(page: _Page, groups: Sequence[Sequence[str]]) -> str:
    """The "duplicates found" panel: each near-duplicate group of the import report side by side."""
    if not groups:
        return ""
    rows = "".join(f'<div class="grid" data-group="{html.escape(g[0])}">{"".join(page.card(m) for m in g)}</div>'
                   for g in groups)
    return ('<h2>Duplicates found</h2><p class="sub">Posters the import found to share one artwork '
            f"(<code>near_duplicates</code> of its report, {len(groups)} group(s)); the served model answers "
            f'one poster per group.</p><section data-section="duplicates">{rows}</section>')


def render_html(rows: Sequence[Row], catalogue: dict[str, Poster], srcs: dict[str, str], *, model_name: str,
                server: str, protocol: str, version: str | None, metrics_doc: dict | None,
                catalogue_size: int, duplicate_groups: Sequence[Sequence[str]] = ()) -> str:
    page = _Page(catalogue, srcs)
    esc = html.escape
    sections: dict[str, list[str]] = {"query": [], "mix": [], "history": [], "filtered": []}
    for r in rows:
        sections[r.kind].append(page.row(r))
    out = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Poster similarity — {esc(model_name)}</title>", f"<style>{CSS}</style>",
        f"<script>{CHECK_JS}</script></head><body><main>",
        "<h1>Poster similarity — what the served model answers</h1>",
        f'<p class="sub">Model <b>{esc(model_name)}</b>, catalogue of {catalogue_size} posters. '
        "Scores are the model's similarity scores.</p>",
        _gate_html(metrics_doc, version),
    ]
    legend = ('<span class="legend"><span class="lm">shares a genre with the query</span>'
              '<span>no genre in common</span></span>')
    intros = {  # kind → (heading, the paragraph under it)
        "query": ("Similar posters", f"Top-{K} neighbours of sample posters picked across genres "
                  f"(<code>serving_default</code>). A catalogue poster finds itself first.{legend}"),
        "mix": ("Style mix", "Two posters of different genres: neighbours of their averaged, re-normalised "
                "embedding (<code>embed</code> + <code>neighbors</code>). Tags say whose genre a result shares."),
        "history": ("Because you watched", "Recommendations for a short watch history (<code>recommend</code>; "
                    "watched titles are excluded)."),
        "filtered": ("Under business rules", "A row as a streaming UI asks for it: neighbours of a poster that "
                     "satisfy rules applied inside the model (<code>similar_filtered</code>): its genre, a "
                     "20-year window, at most one poster per series where the catalogue has series, the "
                     "poster itself excluded."),
    }
    for kind, (heading, intro) in intros.items():
        if sections[kind]:
            out += [f"<h2>{heading}</h2>", f'<p class="sub">{intro}</p>', *sections[kind]]
    out.append(duplicates_html(page, duplicate_groups))
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    # The server's address is where the answers came from at generation time only (make demo's server
    # is gone once the demo ends): named in the footer as provenance, not as somewhere to go.
    out += [f"<footer>Generated {stamp} by <code>posters gallery</code>, served by <code>{esc(server)}</code> "
            f"({esc(protocol.upper())}): the server that answered then (a demo's server is temporary and gone "
            "once the demo ends); this page is static and needs no server. "
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
        for mid, score in r.neighbors:
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

"""Near-duplicate and placeholder posters (`datatools.near_duplicates`, `posters import`): every
transformation of an artwork is grouped with it, look-alikes that are not the same artwork are not,
placeholders are rejected (or kept), bad bytes are skipped — on images generated here."""
from __future__ import annotations

import io
import json
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from poster_similarity.datatools import ingest
from poster_similarity.datatools import near_duplicates as nd
from poster_similarity.datatools import perceptual_hash as ph
from poster_similarity.datatools.drawing import load_font
from poster_similarity.datatools.sample_data import render_poster

SIZE = (200, 300)
TRANSFORMS = ("jpeg_q40", "resize_half", "resize_up", "crop", "letterbox", "pillarbox", "colour", "overlay")


def _encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _photo(name: str, x: float, y: float, scale: float) -> Image.Image:
    """A 2:3 window of one of scikit-image's bundled photos (shipped with the package)."""
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    a = np.stack([a] * 3, axis=-1) if a.ndim == 2 else a[..., :3]
    h, w = a.shape[:2]
    ww = int(min(w, h * 2 / 3) * scale)
    x0, y0 = int((w - ww) * x), int((h - ww * 1.5) * y)
    return Image.fromarray(a[y0:y0 + int(ww * 1.5), x0:x0 + ww]).resize(SIZE, Image.BILINEAR)


def _transform(img: Image.Image, kind: str) -> bytes:
    w, h = img.size
    if kind == "jpeg_q40":
        return _encode(img, quality=40)
    if kind in ("resize_half", "resize_up"):
        f = 0.5 if kind == "resize_half" else 1.5
        return _encode(img.resize((int(w * f), int(h * f)), Image.BICUBIC), quality=85)
    if kind == "crop":  # 2 % off the left and top, 1 % off the right and bottom (bench: 0–4 % a side)
        return _encode(img.crop((int(w * 0.02), int(h * 0.02), w - int(w * 0.01), h - int(h * 0.01))))
    if kind in ("letterbox", "pillarbox"):  # black bars of 8 % of the side
        pad = (0, int(h * 0.08)) if kind == "letterbox" else (int(w * 0.08), 0)
        out = Image.new("RGB", (w + 2 * pad[0], h + 2 * pad[1]), (0, 0, 0))
        out.paste(img, pad)
        return _encode(out)
    if kind == "colour":  # brightness +6 %, contrast −5 %, saturation +6 %
        img = ImageEnhance.Color(ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(1.06)).enhance(0.95))
        return _encode(img.enhance(1.06))
    assert kind == "overlay"  # a streaming badge: 20 % × 6 % of the poster
    img = img.copy()
    d = ImageDraw.Draw(img)
    d.rectangle([w * 0.75, h * 0.03, w * 0.95, h * 0.09], fill=(200, 20, 30))
    d.text((w * 0.85, h * 0.06), "NEW", font=load_font(12), anchor="mm", fill=(255, 255, 255))
    return _encode(img)


def _template(picture: Image.Image, title: str, seed: int) -> Image.Image:
    """One series template (frame colour, title band) around a picture: the picture differs."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    img = Image.new("RGB", SIZE, tuple(int(v) for v in rng.integers(0, 256, 3)))
    img.paste(picture.resize((int(w * 0.8), int(h * 0.6))), (int(w * 0.1), int(h * 0.2)))
    ImageDraw.Draw(img).text((w / 2, h * 0.1), title, font=load_font(18), anchor="mm", fill=(255, 255, 255))
    return img


def _title_card(title: str) -> Image.Image:
    """One text-card template (teaser poster): same background and type, the title differs."""
    w, h = SIZE
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = np.asarray((30, 40, 110), np.float32) * (1 - t) + np.asarray((120, 20, 60), np.float32) * t
    img = Image.fromarray(np.broadcast_to(arr, (h, w, 3)).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for i, word in enumerate(title.upper().split()):
        d.text((w / 2, h * (0.25 + 0.16 * i)), word, font=load_font(34), anchor="mm", fill="white",
               stroke_width=2, stroke_fill="white")
    return img


@pytest.fixture(scope="module")
def catalogue():
    """(items, result): items {"id", "data", "label", "kind"}, equal label = one artwork."""
    originals = [render_poster(["Action"], "Velocity", SIZE, 11),
                 render_poster(["Horror", "Drama"], "Cellar", SIZE, 12),
                 render_poster(["Comedy"], "Party Time", SIZE, 13), render_poster(["Documentary"], "Ocean", SIZE, 14),
                 _photo("astronaut", 0.5, 0.2, 0.8), _photo("coffee", 0.3, 0.5, 0.9)]
    items = []

    def add(data, label, kind):
        items.append({"id": f"m{len(items):03d}", "data": data, "label": label, "kind": kind})

    for k, img in enumerate(originals):
        add(_encode(img) if k % 2 else _encode(img, "PNG"), f"art{k}", "original")
        for t in TRANSFORMS:
            add(_transform(img, t), f"art{k}", t)
    for k in range(2):
        add(items[k * (len(TRANSFORMS) + 1)]["data"], f"art{k}", "exact")
    negatives = {
        "template": [_template(_photo(p, 0.5, 0.5, 0.7), "THE SAGA", 5) for p in ("camera", "chelsea", "rocket")],
        "palette": [render_poster(["Sci-Fi"], "Orbit", SIZE, s, palette="genre") for s in (21, 22, 23)],
        "title": [_title_card(t) for t in ("Dark Harbour", "Red Planet", "Last Summer Night")],
    }
    for kind, imgs in negatives.items():
        for m, img in enumerate(imgs):
            add(_encode(img), f"{kind}{m}", f"hn_{kind}")
    result = nd.find_near_duplicates((it["id"], it["data"]) for it in items)
    return items, result


def _group_of(result: nd.Result) -> dict[str, str]:
    return {m: g.key for g in result.groups for m in g.movie_ids}


@pytest.mark.parametrize("kind", [*TRANSFORMS, "exact"])
def test_every_transformation_is_grouped_with_its_original(catalogue, kind):
    items, result = catalogue
    group_of = _group_of(result)
    original = {it["label"]: it["id"] for it in items if it["kind"] == "original"}
    copies = [it for it in items if it["kind"] == kind]
    assert copies
    for it in copies:
        assert it["id"] in group_of and group_of[it["id"]] == group_of.get(original[it["label"]]), it["label"]


def test_groups_are_exactly_the_artworks(catalogue):
    """Precision and recall both 1 on this set: no look-alike (same template with another picture or
    title, same palette) is grouped, and every artwork is one group."""
    items, result = catalogue
    by_label = defaultdict(set)
    for it in items:
        by_label[it["label"]].add(it["id"])
    expected = sorted(sorted(ids) for ids in by_label.values() if len(ids) > 1)
    assert sorted(g.movie_ids for g in result.groups) == expected
    assert not result.skipped


def test_evidence_names_identical_bytes_or_the_distances(catalogue):
    items, result = catalogue
    exact = {it["id"] for it in items if it["kind"] == "exact"}
    t = nd.Thresholds()
    for g in result.groups:
        assert len(g.pairs) == len(g.movie_ids) - 1  # a spanning tree: how the group was joined
        assert {m for p in g.pairs for m in (p["a"], p["b"])} == set(g.movie_ids)
        for p in g.pairs:
            ev = p["evidence"]
            if ev == "identical_bytes":
                assert {p["a"], p["b"]} & exact
            else:
                assert ev["phash"] <= t.phash_max and ev["dhash"] <= t.dhash_max
                assert ev["fine"] <= t.fine_max and ev["chroma"] <= t.chroma_max and ev["score"] <= t.score_max
                parts = ev["phash"] / 64 + ev["dhash"] / 64 + ev["fine"] + t.chroma_weight * ev["chroma"]
                assert parts == pytest.approx(ev["score"], abs=1e-3)


def test_duplicate_group_ids_are_the_smallest_id_of_the_group(catalogue):
    items, result = catalogue
    ids = [it["id"] for it in items]
    keys = nd.duplicate_group_ids(ids, result.groups)
    by_label = defaultdict(list)
    for it in items:
        by_label[it["label"]].append(it["id"])
    for members in by_label.values():
        assert {keys[m] for m in members} == {min(members)}


def test_bad_bytes_are_skipped_with_a_reason():
    good = _encode(render_poster(["Western"], "Mesa", SIZE, 3))
    posters = [("ok", good), ("copy", good), ("text", b"this is not an image"), ("empty", b""),
               ("truncated", good[: len(good) // 3]), ("png_header_only", b"\x89PNG\r\n\x1a\n" + b"\0" * 20)]
    result = nd.find_near_duplicates(posters)
    assert {s["movie_id"] for s in result.skipped} == {"text", "empty", "truncated", "png_header_only"}
    assert all(s["reason"] in ("undecodable", "empty") and s["detail"] for s in result.skipped)
    assert [g.movie_ids for g in result.groups] == [["copy", "ok"]]
    with pytest.raises(ph.Unreadable):
        ph.fingerprint(b"\xff\xd8\xff")


@pytest.mark.parametrize("radius", [3, 7])
def test_candidate_search_finds_exactly_the_pairs_within_the_radius(radius):
    rng = np.random.default_rng(radius)
    codes = rng.integers(0, 2**63, size=1500, dtype=np.int64).astype(np.uint64)
    for _ in range(300):  # plant neighbours at 0..10 bits
        i, j = rng.integers(len(codes), size=2)
        flips = rng.choice(64, size=int(rng.integers(0, 11)), replace=False)
        codes[j] = codes[i] ^ np.uint64(sum(1 << int(b) for b in flips))
    i, j = np.triu_indices(len(codes), 1)
    close = ph.hamming(codes[i], codes[j]) <= radius
    want = set(zip(i[close].tolist(), j[close].tolist(), strict=True))
    assert set(map(tuple, ph.candidate_pairs(codes, radius).tolist())) == want


def test_sample_catalogue_groups_only_series_and_has_no_placeholder(tmp_path):
    """`posters sample` series share one re-framed artwork: grouped (never across series), and a
    4-poster series is not a placeholder at the default threshold."""
    from poster_similarity.datatools import sample_data

    records = sample_data.generate(tmp_path, 60, seed=0)  # seed 0: a 4-poster series among the first 60
    series = {r["movie_id"]: r["series"] for r in records}
    assert max(Counter(s for s in series.values() if s).values()) == nd.PLACEHOLDER_MIN_IDS
    result = nd.find_near_duplicates((r["movie_id"], open(r["path"], "rb").read()) for r in records)
    assert result.groups and all(len({series[m] for m in g.movie_ids} - {""}) == 1 and
                                 all(series[m] for m in g.movie_ids) for g in result.groups)
    assert result.placeholders() == []


# --- the import -------------------------------------------------------------------------------------


def _placeholder_card() -> Image.Image:
    img = Image.new("RGB", SIZE, (225, 225, 225))
    d = ImageDraw.Draw(img)
    d.rectangle([70, 100, 130, 150], outline=(150, 150, 150), width=4)
    d.text((100, 190), "NO IMAGE", font=load_font(22), anchor="mm", fill=(120, 120, 120))
    d.text((100, 215), "AVAILABLE", font=load_font(22), anchor="mm", fill=(120, 120, 120))
    return img


@pytest.fixture
def dump(tmp_path):
    """A poster CSV where one placeholder image stands for PLACEHOLDER_MIN_IDS + 1 movies (as the
    same file, a re-encoded copy and a resized one), one poster has a re-encoded twin, and one file
    is broken."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    card = _placeholder_card()
    n = nd.PLACEHOLDER_MIN_IDS + 1
    files = {"card.jpg": _encode(card), "card_q60.jpg": _encode(card, quality=60),
             "card_small.png": _encode(card.resize((100, 150)), "PNG")}
    rows, placeholder_ids = [], []
    for k in range(n):
        name = list(files)[k % len(files)]
        placeholder_ids.append(f"p{k}")
        rows.append(f"p{k},Unknown {k},2001,Drama,{name}")
    for k, (genre, seed) in enumerate([("Action", 1), ("Romance", 2), ("Western", 3)]):
        files[f"real{k}.jpg"] = _encode(render_poster([genre], f"Film {k}", SIZE, seed))
        rows.append(f"r{k},Film {k},2010,{genre},real{k}.jpg")
    files["twin.jpg"] = _encode(Image.open(io.BytesIO(files["real0.jpg"])), quality=50)
    rows.append("r9,Film 0 (again),2010,Action,twin.jpg")
    files["broken.jpg"] = files["real1.jpg"][:200]
    rows.append("b0,Broken,2010,Action,broken.jpg")
    for name, data in files.items():
        (img_dir / name).write_bytes(data)
    csv = tmp_path / "posters.csv"
    csv.write_text("\n".join(["movie_id,title,year,genres,poster", *rows]) + "\n")
    return {"csv": csv, "images": img_dir, "rows": len(rows), "placeholders": placeholder_ids,
            "twins": ["r0", "r9"], "broken": "b0"}


def test_import_rejects_placeholders_and_reports_near_duplicates(dump, tmp_path):
    out = tmp_path / "out"
    report = ingest.import_posters(dump["csv"], dump["images"], out, shards=1, progress=False)
    n_ph = len(dump["placeholders"])
    assert report["read"] == dump["rows"] == report["written"] + report["rejected_total"]
    assert report["rejected"]["placeholder_image"] == n_ph and report["rejected"]["truncated"] == 1
    assert report["rejected_total"] == n_ph + 1
    assert {r["movie_id"] for r in report["rejections"] if r["reason"] == "placeholder_image"} == set(
        dump["placeholders"])
    assert [p["movie_ids"] for p in report["placeholders"]] == [sorted(dump["placeholders"])]
    assert report["placeholders"][0]["kept"] is False
    assert [g["movie_ids"] for g in report["near_duplicates"]] == [dump["twins"]]
    assert report["near_duplicates"][0]["group"] == min(dump["twins"])
    assert report["placeholder_min_ids"] == nd.PLACEHOLDER_MIN_IDS and report["keep_placeholders"] is False
    assert json.loads((out / ingest.REPORT_NAME).read_text()) == report
    written = {e["movie_id"]: e for e in ingest.tfr.read_examples(ingest.tfr.shard_glob(str(out)))}
    assert not set(written) & set(dump["placeholders"]) and len(written) == report["written"]
    # the crowding key: the group's smallest id on each twin, absent ("") on posters with no twin
    assert {m: e["duplicate_group"] for m, e in written.items() if e["duplicate_group"]} == {
        m: min(dump["twins"]) for m in dump["twins"]}
    summary = ingest._summary(report, str(out))
    assert "1 near-duplicate group(s), 1 placeholder(s);" in summary and f"placeholder_image {n_ph}" in summary


def test_import_keeps_placeholders_when_asked_and_counts_by_the_threshold(dump, tmp_path):
    n_ph = len(dump["placeholders"])
    kept = ingest.import_posters(dump["csv"], dump["images"], tmp_path / "kept", shards=1, progress=False,
                                 keep_placeholders=True)
    assert kept["rejected"]["placeholder_image"] == 0 and kept["written"] == dump["rows"] - 1
    assert kept["placeholders"][0]["kept"] is True and kept["read"] == kept["written"] + kept["rejected_total"]
    examples = ingest.tfr.read_examples(ingest.tfr.shard_glob(str(tmp_path / "kept")))
    assert {e["movie_id"] for e in examples if e["duplicate_group"] == min(dump["placeholders"])} == set(
        dump["placeholders"])
    # exactly placeholder_min_ids ids sharing an image is not a placeholder ("more than"): a near-duplicate group
    raised = ingest.import_posters(dump["csv"], dump["images"], tmp_path / "raised", shards=1, progress=False,
                                   placeholder_min_ids=n_ph)
    assert raised["placeholders"] == [] and raised["rejected"]["placeholder_image"] == 0
    assert sorted(g["movie_ids"] for g in raised["near_duplicates"]) == sorted([sorted(dump["placeholders"]),
                                                                               dump["twins"]])
    with pytest.raises(ingest.IngestError, match="placeholder-min-ids"):
        ingest.import_posters(dump["csv"], dump["images"], tmp_path / "bad", placeholder_min_ids=0)


def test_trimming_finds_the_picture_inside_letterbox_and_pillarbox_bars():
    """Bars of any colour, on two or four sides, are trimmed to the picture (to a pixel or two of the
    128 px working image); a picture without bars is not trimmed."""
    pic = _photo("astronaut", 0.5, 0.3, 0.8)
    assert ph.trim_box(ph.decode(_encode(pic))) == (0, 0, *ph.decode(_encode(pic)).size)
    for colour, pad in [((0, 0, 0), (0, 30)), ((255, 255, 255), (20, 0)), ((40, 90, 160), (16, 24))]:
        framed = Image.new("RGB", (SIZE[0] + 2 * pad[0], SIZE[1] + 2 * pad[1]), colour)
        framed.paste(pic, pad)
        img = ph.decode(_encode(framed, "PNG"))
        s = img.size[1] / framed.size[1]  # the working image's scale
        want = (pad[0] * s, pad[1] * s, (pad[0] + SIZE[0]) * s, (pad[1] + SIZE[1]) * s)
        assert np.abs(np.subtract(ph.trim_box(img), want)).max() <= 2, (colour, pad)

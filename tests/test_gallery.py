"""`posters gallery`: deterministic choices (fast), and the real page against a real served model,
rendered in headless Chromium (slow: uses the session's `trained_model` pipeline run)."""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
from html.parser import HTMLParser

import pytest

from poster_similarity.client.gallery import choose_history, choose_mix, choose_queries, spread_order
from poster_similarity.client.gallery_page import Poster, safe_name
from tests.helpers import ROOT

K = 10


def _catalogue() -> list[Poster]:
    genres = ["Action", "Comedy", "Drama", "Horror", "Romance"]
    out = []
    for i in range(50):
        g = genres[i % 5]
        extra = [genres[(i // 5) % 5]] if i % 3 == 0 and genres[(i // 5) % 5] != g else []
        out.append(Poster(f"tt{i:04d}", f"Movie {i}", [g] + extra))
    return out


# --- fast: pure helpers ------------------------------------------------------------------------

def test_queries_are_spread_across_genres_and_independent_of_record_order():
    cat = _catalogue()
    q = choose_queries(cat, 5)
    assert sorted(p.primary for p in q) == ["Action", "Comedy", "Drama", "Horror", "Romance"]
    shuffled = cat[:]
    random.Random(3).shuffle(shuffled)
    assert [p.movie_id for p in choose_queries(shuffled, 7)] == [p.movie_id for p in choose_queries(cat, 7)]
    assert [p.movie_id for p in choose_queries(cat, 5, seed=1)] != [p.movie_id for p in q]
    order = spread_order(cat)
    assert sorted(p.movie_id for p in order) == sorted(p.movie_id for p in cat)  # each poster once


def test_mix_and_history_choices():
    cat = _catalogue()
    q = choose_queries(cat, 5)
    a, b = choose_mix(cat, [p.movie_id for p in q])
    assert not set(a.genres) & set(b.genres)
    assert {a.movie_id, b.movie_id}.isdisjoint(p.movie_id for p in q)
    hist = choose_history(cat, [p.movie_id for p in q] + [a.movie_id, b.movie_id])
    assert len(hist) == 3 and len({p.primary for p in hist}) == 1 and len({p.movie_id for p in hist}) == 3
    assert choose_mix(cat[:1]) is None


def test_safe_name():
    assert safe_name("tt0111161") == "tt0111161"
    odd = safe_name("../a b/ç")
    assert "/" not in odd and not odd.startswith(".") and odd != safe_name("../a b/c")


# --- slow: the real page -----------------------------------------------------------------------

class _Dom(HTMLParser):
    """Rows, images and the body's data-* marks of a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.body: dict[str, str] = {}
        self.rows: list[dict] = []
        self.imgs: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "section" and "data-row" in a:
            self.rows.append({"kind": a["data-row"], "imgs": 0, "cards": 0, "match": 0})
        elif tag == "img":
            self.imgs.append(a)
            if self.rows:
                self.rows[-1]["imgs"] += 1
        elif tag == "div" and "data-id" in a and self.rows:
            self.rows[-1]["cards"] += 1
            self.rows[-1]["match"] += a.get("data-match") == "1"


def _chromium_or_skip() -> str:
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "ensure_chromium.sh")], capture_output=True,
                       text=True, timeout=900)
    if r.returncode == 3:
        pytest.skip(f"headless Chromium cannot be installed here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def served(trained_model):
    from poster_similarity.serving.server import ModelServer

    base = os.path.dirname(trained_model["model_dir"])  # <workdir>/serving_model/<name>
    with ModelServer(base, trained_model["summary"]["model_name"], rest_port=0, grpc_port=0,
                     poll_seconds=3600) as srv:
        yield srv


@pytest.mark.slow
def test_gallery_renders_in_chromium_with_every_answer_from_the_server(trained_model, served, tmp_path, capsys):
    from poster_similarity.posters.cli import main as cli

    chromium = _chromium_or_skip()
    queries = 4
    out = tmp_path / "gallery"
    catalogue = os.path.join(trained_model["data"], "*.tfrecord*")
    # the fixture's own summary: later tests may re-run the pipeline in the same workdir
    summary_path = str(tmp_path / "run_summary.json")
    with open(summary_path, "w") as f:
        json.dump(trained_model["summary"], f)
    rc = cli(["gallery", "--server", f"127.0.0.1:{served.rest_port}", "--model-name", served.model_name,
              "--catalogue", catalogue, "--out", str(out), "--queries", str(queries), "--metrics", summary_path])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    for name in ("index.html", "contact_sheet.png", "gallery.json"):
        assert (out / name).stat().st_size > 0

    shot, dom_file = tmp_path / "shot.png", tmp_path / "dom.html"
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "screenshot_gallery.sh"), str(out), str(shot),
                        str(dom_file)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"{chromium}: {r.stderr}"

    dom = _Dom()
    dom.feed(dom_file.read_text(encoding="utf-8"))
    kinds = [row["kind"] for row in dom.rows]
    assert kinds == ["query"] * queries + ["mix", "history", "filtered"]
    inputs = {"query": 1, "mix": 2, "history": 3, "filtered": 1}
    for row in dom.rows:  # every neighbour is a catalogue poster with its picture
        assert row["cards"] == inputs[row["kind"]] + K
        assert row["imgs"] == inputs[row["kind"]] + K
    total = queries * (1 + K) + (2 + K) + (3 + K) + (1 + K)
    assert dom.body.get("data-ready") == "1", "the page's load script did not run"
    assert dom.body.get("data-images") == str(total)
    assert dom.body.get("data-broken") == "0", "some images failed to load in Chromium"
    for img in dom.imgs:
        assert img["alt"].startswith("Poster: ")
        assert not re.match(r"[a-z]+:", img["src"]), f"non-relative src {img['src']}"
        assert (out / img["src"]).is_file()
    assert sum(row["match"] for row in dom.rows) > 0  # genre highlighting is there

    html_text = (out / "index.html").read_text(encoding="utf-8")
    assert "http://" not in html_text.replace(f"127.0.0.1:{served.rest_port}", "") and "https://" not in html_text
    m = trained_model["summary"]["metrics"]
    assert f"{m['recall@10']:.3f}" in html_text and "MAP@R" in html_text
    assert ("✔ blessed" if trained_model["summary"]["blessed"] else "✘ not blessed") in html_text
    version = os.path.basename(trained_model["model_dir"])
    assert f"served version <b>{version}</b>" in html_text

    from PIL import Image, ImageStat

    with Image.open(shot) as im:
        assert im.size == (1400, 2400)
        small = im.convert("RGB").resize((140, 240))
        assert len(set(small.getdata())) > 200, "the screenshot looks blank"
        assert max(ImageStat.Stat(small).stddev) > 20

    # The answers on the page are the served model's: same rows from a direct client call.
    from poster_similarity.client import PosterClient

    doc = json.loads((out / "gallery.json").read_text())
    first = doc["rows"][0]
    with PosterClient(f"127.0.0.1:{served.rest_port}", served.model_name) as client:
        from poster_similarity.core.tfrecords import read_examples

        img = next(ex["image"] for ex in read_examples(catalogue) if ex["movie_id"] == first["inputs"][0])
        direct = client.similar([img], K)[0]
    assert [mid for mid, _ in direct] == [mid for mid, _ in first["neighbors"]]


@pytest.mark.slow
def test_gallery_over_grpc_gives_the_same_rows(trained_model, served, tmp_path):
    from argparse import Namespace

    from poster_similarity.client import gallery

    catalogue = os.path.join(trained_model["data"], "*.tfrecord*")
    docs = {}
    for proto, port in (("rest", served.rest_port), ("grpc", served.grpc_port)):
        out = tmp_path / proto
        rc = gallery.main(Namespace(server=f"127.0.0.1:{port}", model_name=served.model_name, catalogue=catalogue,
                                    out=str(out), queries=3, metrics=None, grpc=proto == "grpc", seed=0))
        assert rc == 0
        docs[proto] = json.loads((out / "gallery.json").read_text())
        assert "no metrics" in (out / "index.html").read_text(encoding="utf-8")
    assert docs["grpc"]["protocol"] == "grpc"
    for a, b in zip(docs["rest"]["rows"], docs["grpc"]["rows"], strict=True):
        assert a["inputs"] == b["inputs"]
        assert [m for m, _ in a["neighbors"]] == [m for m, _ in b["neighbors"]]
        assert [s for _, s in a["neighbors"]] == pytest.approx([s for _, s in b["neighbors"]], abs=1e-5)


def test_gallery_reports_an_unreachable_server(tmp_path, capsys):
    from argparse import Namespace

    from poster_similarity.client import gallery
    from poster_similarity.datatools import sample_data

    # A catalogue is needed before the server is asked: three real posters in a TFRecord.
    sample_data.generate(str(tmp_path / "p"), 3, size=(64, 96), seed=1, tfrecords=True)
    rc = gallery.main(Namespace(server="127.0.0.1:9", model_name="posters", out=str(tmp_path / "g"),
                                catalogue=str(tmp_path / "p" / "tfrecords" / "*.tfrecord*"), queries=2,
                                metrics=None, grpc=False, seed=0))
    assert rc == 2
    assert "cannot reach the model server" in capsys.readouterr().err


def test_header_answers_did_training_help():
    from poster_similarity.client.gallery_page import _gate_html

    doc = {"blessed": True, "metrics": {}, "did_training_help": {
        "model_macro_precision_at_10": 0.61, "frozen_backbone_macro_precision_at_10": 0.5,
        "random_macro_precision_at_10": 0.2, "lift_over_frozen_backbone": 0.61 / 0.5, "lift_over_random": 3.05}}
    page = _gate_html(doc, "1")
    section = page[page.index('data-section="did-training-help"'):]
    assert section.index("model <b>0.610</b>") < section.index("frozen backbone <b>0.500</b> (model ×1.22)")
    assert "random <b>0.200</b> (model ×3.05)" in section
    assert "did-training-help" not in _gate_html({"blessed": True, "metrics": {}}, "1")


def test_duplicates_panel_from_the_import_report(tmp_path, capsys):
    from argparse import Namespace

    from poster_similarity.client import gallery
    from poster_similarity.client.gallery_page import render_html

    report = tmp_path / "report.json"
    report.write_text(json.dumps({"near_duplicates": [
        {"group": "m01", "movie_ids": ["m01", "m14"],
         "pairs": [{"a": "m01", "b": "m14", "evidence": "identical_bytes"}]},
        {"group": "m02", "movie_ids": ["m02", "m03", "m09"], "pairs": []}]}))
    groups = gallery.read_duplicate_groups(str(report))
    assert groups == [["m01", "m14"], ["m02", "m03", "m09"]]
    catalogue = {"m01": Poster("m01", "Alien", ["Horror"]), "m14": Poster("m14", "Alien (DVD)", ["Horror"])}
    page = render_html([], catalogue, {"m01": "img/m01.png"}, model_name="posters", server="s", protocol="rest",
                       version="1", metrics_doc=None, catalogue_size=2, duplicate_groups=groups)
    panel = page[page.index("Duplicates found"):]
    assert panel.index('data-id="m01"') < panel.index('data-id="m14"') < panel.index('data-group="m02"')
    assert "Duplicates found" not in render_html([], catalogue, {}, model_name="p", server="s", protocol="rest",
                                                 version=None, metrics_doc=None, catalogue_size=2)
    # A missing report is an argument mistake, caught before the catalogue is read or the server asked.
    (tmp_path / "c.tfrecord").write_bytes(b"")
    rc = gallery.main(Namespace(server="127.0.0.1:9", model_name="posters", out=str(tmp_path / "g"),
                                catalogue=str(tmp_path / "c.tfrecord"), queries=2, metrics=None, grpc=False,
                                seed=0, import_report=str(tmp_path / "nope.json")))
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--import-report" in err and "no such file" in err

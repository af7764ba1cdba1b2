"""`posters import`: every rejection reason, conversions to RGB, reconciled counts, both CSV layouts,
GZIP, atomic output, and the data contract round trip — all with real files."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poster_similarity.core import tfrecords as tfr
from poster_similarity.datatools import ingest
from poster_similarity.posters import cli
from tests.helpers import POSTERS_CLI, ROOT


def _rgb(w: int = 64, h: int = 96, seed: int = 0) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _write_csv(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))


@pytest.fixture
def messy(tmp_path):
    """A poster folder with one file per situation the import must handle, and its CSV."""
    img = tmp_path / "images"
    img.mkdir()
    originals = {
        "ok_jpeg": _save(_rgb(seed=1), img / "ok.jpg", "JPEG", quality=90),
        "ok_png": _save(_rgb(seed=2), img / "ok.png", "PNG"),
        "progressive": _save(_rgb(seed=3), img / "prog.jpg", "JPEG", progressive=True),
    }
    _save(_rgb(seed=4).convert("CMYK"), img / "cmyk.jpg", "JPEG")
    _save(_rgb(seed=5).convert("L"), img / "gray.jpg", "JPEG")
    rgba = _rgb(seed=6).convert("RGBA")
    rgba.paste((10, 20, 30, 0), (0, 0, 16, 16))  # a fully transparent corner → white after compositing
    _save(rgba, img / "alpha.png", "PNG")
    _save(_rgb(seed=7).convert("P", palette=Image.ADAPTIVE, colors=16), img / "palette.png", "PNG")
    full = _save(_rgb(seed=8), img / "whole.jpg", "JPEG")
    (img / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (img / "empty.jpg").write_bytes(b"")
    (img / "text.jpg").write_text("this is not an image\n")
    _save(_rgb(10, 10, seed=9), img / "tiny.jpg", "JPEG")
    rows = [  # line numbers: header is line 1
        "m01,Fine Jpeg,1999,Action|Comedy,ok.jpg",  # 2
        'm02,"Fine, Png",2001, Drama ,ok.png',  # 3
        "m03,Progressive,,Horror,prog.jpg",  # 4
        "m04,Cmyk,2005,Sci-Fi,cmyk.jpg",  # 5
        "m05,Gray,2006,Western|Drama|Drama,gray.jpg",  # 6
        "m06,Alpha,2007,Romance,alpha.png",  # 7
        "m07,Palette,2008,Animation,palette.png",  # 8
        "m08,Truncated,2009,Action,truncated.jpg",  # 9
        "m09,Empty,2010,Action,empty.jpg",  # 10
        "m10,Text,2011,Action,text.jpg",  # 11
        "m11,Tiny,2012,Action,tiny.jpg",  # 12
        "m12,Missing,2013,Action,nowhere.jpg",  # 13
        "m01,Duplicate,2014,Action,ok.png",  # 14
        "m13,No Genres,2015,,ok.jpg",  # 15
        "",  # blank line: not a row
        "m14,Amélie,2001,Romance|Comedy,ok.jpg",  # 17
    ]
    csv_path = tmp_path / "posters.csv"
    _write_csv(csv_path, "movie_id,title,year,genres,poster", rows)
    return {"csv": csv_path, "images": img, "originals": originals}


def _by_id(out: Path) -> dict[str, dict]:
    return {e["movie_id"]: e for e in tfr.read_examples(tfr.shard_glob(str(out)))}


def test_rejections_conversions_and_reconciliation(messy, tmp_path):
    import tensorflow as tf

    out = tmp_path / "out"
    report = ingest.import_posters(messy["csv"], messy["images"], out, shards=3)
    assert report["read"] == 15 == report["written"] + report["rejected_total"]
    assert report["written"] == 8 and report["rejected_total"] == 7
    assert report["rejected"] == {"missing_movie_id": 0, "missing_file": 1, "empty_file": 1, "undecodable": 1,
                                  "truncated": 1, "no_genres": 1, "duplicate_movie_id": 1, "too_small": 1,
                                  "too_large": 0, "placeholder_image": 0}
    got = {(r["line"], r["movie_id"], r["reason"]) for r in report["rejections"]}
    assert got == {(9, "m08", "truncated"), (10, "m09", "empty_file"), (11, "m10", "undecodable"),
                   (12, "m11", "too_small"), (13, "m12", "missing_file"), (14, "m01", "duplicate_movie_id"),
                   (15, "m13", "no_genres")}
    assert all(r["detail"] for r in report["rejections"])
    assert report["genres"] == {"Action": 1, "Animation": 1, "Comedy": 2, "Drama": 2, "Horror": 1,
                                "Romance": 2, "Sci-Fi": 1, "Western": 1}
    assert report["layout"] == "posters" and report["encoding"] == "utf-8"
    assert sorted(report["converted"]) == ["JPEG CMYK", "JPEG L", "PNG P", "PNG RGBA"]
    assert report["shards"] == [f"data-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*report["shards"], "report.json"])
    assert json.loads((out / "report.json").read_text()) == report

    ex = _by_id(out)
    assert sorted(ex) == ["m01", "m02", "m03", "m04", "m05", "m06", "m07", "m14"]
    for e in ex.values():  # every stored image is RGB for Pillow and for TF (what Transform uses)
        with Image.open(io.BytesIO(e["image"])) as im:
            im.load()
            assert im.mode == "RGB" and im.format in ("JPEG", "PNG") and im.size == (64, 96)
        assert tf.io.decode_image(e["image"], channels=0).shape == (96, 64, 3)
    # RGB JPEG/PNG (progressive too) are stored byte-for-byte; the others were re-encoded as JPEG
    assert ex["m01"]["image"] == messy["originals"]["ok_jpeg"]
    assert ex["m02"]["image"] == messy["originals"]["ok_png"]
    assert ex["m03"]["image"] == messy["originals"]["progressive"]
    for mid in ("m04", "m05", "m06", "m07"):
        assert Image.open(io.BytesIO(ex[mid]["image"])).format == "JPEG"
    assert min(Image.open(io.BytesIO(ex["m06"]["image"])).getpixel((8, 8))) > 240  # alpha → white
    # the other contract features
    assert (ex["m02"]["genres"], ex["m02"]["title"], ex["m02"]["year"]) == (["Drama"], "Fine, Png", 2001)
    assert ex["m05"]["genres"] == ["Western", "Drama"]
    assert ex["m03"]["year"] == 0
    assert ex["m14"]["title"] == "Amélie" and ex["m14"]["genres"] == ["Romance", "Comedy"]


def test_contract_round_trip_types_and_values(tmp_path):
    import tensorflow as tf

    jpeg = _save(_rgb(), tmp_path / "x.jpg", "JPEG")
    examples = [tfr.make_example("tt001", jpeg, ["Drama", "Crime"], "Le Samouraï", 1967),
                tfr.make_example(b"tt002", jpeg, ["Comedy"])]  # optional features omitted
    paths = tfr.write_sharded(iter(examples), str(tmp_path / "tf"), shards=4)
    assert [Path(p).name for p in paths] == ["data-00000-of-00002.tfrecord", "data-00001-of-00002.tfrecord"]
    spec = {"movie_id": tf.io.FixedLenFeature([], tf.string), "image": tf.io.FixedLenFeature([], tf.string),
            "genres": tf.io.VarLenFeature(tf.string), "title": tf.io.FixedLenFeature([], tf.string),
            "year": tf.io.FixedLenFeature([], tf.int64)}
    raw = list(tfr.iter_serialized(str(tmp_path / "tf" / "*.tfrecord")))
    parsed = [tf.io.parse_single_example(r, spec) for r in raw]  # every feature present, right dtype
    assert parsed[0]["movie_id"].numpy() == b"tt001" and parsed[0]["year"].dtype == tf.int64
    assert parsed[0]["year"].numpy() == 1967 and parsed[0]["title"].numpy().decode() == "Le Samouraï"
    assert list(tf.sparse.to_dense(parsed[0]["genres"]).numpy()) == [b"Drama", b"Crime"]
    assert parsed[1]["title"].numpy() == b"" and parsed[1]["year"].numpy() == 0
    assert parsed[0]["image"].numpy() == jpeg
    assert [e["movie_id"] for e in tfr.read_examples(str(tmp_path / "tf" / "*"))] == ["tt001", "tt002"]
    assert tfr.write_sharded(iter([]), str(tmp_path / "none"), shards=2) == []
    for bad in [("", jpeg, ["A"]), ("id", b"", ["A"]), ("id", jpeg, []), ("id", jpeg, [""])]:
        with pytest.raises(ValueError):
            tfr.make_example(*bad)


def test_kaggle_layout_latin1_and_gzip(tmp_path):
    img = tmp_path / "posters"
    img.mkdir()
    for i, imdb in enumerate(["114709", "113497", "211915"]):
        _save(_rgb(seed=i), img / f"{imdb}.jpg", "JPEG")
    header = "imdbId,Imdb Link,Title,IMDB Score,Genre,Poster"
    rows = ['114709,http://www.imdb.com/title/tt114709,Toy Story (1995),8.3,Animation|Adventure|Comedy,'
            '"https://images-na.ssl-images-amazon.com/images/M/x.jpg"',
            "113497,http://www.imdb.com/title/tt113497,Jumanji (1995),6.9,,https://example/y.jpg",
            "211915,http://www.imdb.com/title/tt211915,Le Fabuleux Destin d'Amélie Poulain (2001),8.4,"
            "Comedy|Romance,https://example/z.jpg",
            "999999,http://www.imdb.com/title/tt999999,No Poster,5.0,Drama,https://example/q.jpg"]
    _write_csv(tmp_path / "MovieGenre.csv", header, rows, encoding="latin-1")
    out = tmp_path / "ds"
    report = ingest.import_posters(tmp_path / "MovieGenre.csv", img, out, shards=2, gzip=True)
    assert (report["layout"], report["encoding"]) == ("kaggle", "latin-1")
    assert (report["read"], report["written"], report["rejected_total"]) == (4, 2, 2)
    assert {(r["line"], r["reason"]) for r in report["rejections"]} == {(3, "no_genres"), (5, "missing_file")}
    assert report["shards"] == ["data-00000-of-00002.tfrecord.gz", "data-00001-of-00002.tfrecord.gz"]
    assert all((out / s).read_bytes()[:2] == b"\x1f\x8b" for s in report["shards"])  # really GZIP
    ex = _by_id(out)
    assert ex["114709"]["title"] == "Toy Story" and ex["114709"]["year"] == 1995
    assert ex["114709"]["genres"] == ["Animation", "Adventure", "Comedy"]
    assert ex["211915"]["title"] == "Le Fabuleux Destin d'Amélie Poulain" and ex["211915"]["year"] == 2001


@pytest.mark.parametrize("content, line, words", [
    ("movie_id,title,year,genres,poster\na,b,1,Drama,a.jpg\nc,d,2,Drama\n", 3, "expected 5 fields"),
    ('movie_id,title,year,genres,poster\na,b,1,Drama,a.jpg\na,b,1,Drama,a.jpg\nc,"d"x,2,Drama,c.jpg\n', 4,
     "malformed"),
    ('movie_id,title,year,genres,poster\nc,"never closed,2,Drama,c.jpg\n', 2, "malformed"),
    ("id,title,genres\na,b,Drama\n", 1, "missing required column(s) movie_id, poster"),
])
def test_malformed_csv_names_the_line(tmp_path, content, line, words):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(ingest.IngestError, match=f"line {line}:") as e:
        ingest.import_posters(tmp_path / "bad.csv", tmp_path, tmp_path / "out")
    assert words in str(e.value)
    assert not (tmp_path / "out").exists()


def test_cli_malformed_csv_exits_2_with_one_line(tmp_path):
    (tmp_path / "bad.csv").write_text("movie_id,title,year,genres,poster\na,b,1,Drama,a.jpg\nc,d\n")
    p = subprocess.run([*POSTERS_CLI, "import", "--csv", str(tmp_path / "bad.csv"),
                        "--images", str(tmp_path), "--out", str(tmp_path / "out")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "line 3" in p.stderr and "bad.csv" in p.stderr


def test_cli_missing_csv_and_foreign_out_dir(tmp_path, capsys):
    assert cli.main(["import", "--csv", str(tmp_path / "nope.csv"), "--images", str(tmp_path),
                     "--out", str(tmp_path / "o")]) == 2
    assert "CSV file not found" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    (tmp_path / "c.csv").write_text("movie_id,title,year,genres,poster\n")
    assert cli.main(["import", "--csv", str(tmp_path / "c.csv"), "--images", str(tmp_path),
                     "--out", str(foreign)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]


def test_output_is_atomic_and_replaces_a_previous_import(messy, tmp_path):
    out = tmp_path / "out"
    ingest.import_posters(messy["csv"], messy["images"], out, shards=4)
    assert len(list(out.glob("data-*-of-00004.tfrecord"))) == 4
    r = ingest.import_posters(messy["csv"], messy["images"], out, shards=1, gzip=True)  # replaced whole
    assert sorted(p.name for p in out.iterdir()) == ["data-00000-of-00001.tfrecord.gz", "report.json"]
    assert r["written"] == 8 == len(_by_id(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out", "posters.csv"]  # no .tmp/.old


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_import_leaves_no_dataset(messy, tmp_path, sig):
    """Interrupt a real `posters import` process while it works in its temp folder (it is importing
    TensorFlow, ~9 s): `--out` never appears. Ctrl-C cleans the temp folder itself; after a kill the
    next import removes the orphan."""
    out = tmp_path / "out"
    proc = subprocess.Popen([*POSTERS_CLI, "import", "--csv", str(messy["csv"]),
                             "--images", str(messy["images"]), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tmp_path / f"out.tmp-{proc.pid}"
    deadline = time.monotonic() + 30
    while not tmp.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tmp.exists(), "the import should be working in its temp folder"
    os.kill(proc.pid, sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0 and not out.exists()
    assert tmp.exists() == (sig == signal.SIGKILL)
    if sig == signal.SIGKILL:
        ingest.import_posters(messy["csv"], messy["images"], out, shards=1)
        assert not tmp.exists() and (out / "report.json").exists()


def test_images_over_max_pixels_are_rejected_from_the_header(tmp_path):
    """A 5000×5000 greyscale PNG is tiny on disk but 25 M pixels: rejected as too_large (the limit
    shared with Transform and serving) without being decoded; a lower --max-pixels rejects more."""
    img = tmp_path / "images"
    img.mkdir()
    Image.new("L", (5000, 5000), 7).save(img / "huge.png")
    _save(_rgb(seed=1), img / "ok.png", "PNG")  # 64×96 = 6,144 pixels
    csv = tmp_path / "p.csv"
    _write_csv(csv, "movie_id,title,year,genres,poster", ["h,Huge,2000,Drama,huge.png", "o,Ok,2000,Drama,ok.png"])
    report = ingest.import_posters(csv, img, tmp_path / "out", shards=1, progress=False)
    nonzero = {k: v for k, v in report["rejected"].items() if v}
    assert report["written"] == 1 and nonzero == {"too_large": 1}
    assert "5000x5000" in report["rejections"][0]["detail"]
    report = ingest.import_posters(csv, img, tmp_path / "out2", shards=1, progress=False, max_pixels=6000)
    assert report["rejected"]["too_large"] == 2 and report["written"] == 0


def _swallowing_ctrl_c(real):
    """write_sharded as if Ctrl-C landed in library code that swallowed the KeyboardInterrupt (what
    a C extension can do to a SIGINT arriving mid-call, e.g. during `import tensorflow`)."""
    def write_sharded(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler runs here and raises …
        except KeyboardInterrupt:
            pass  # … and the "library" eats it
        return real(*args, **kwargs)
    return write_sharded


def test_ctrl_c_swallowed_by_library_code_still_stops_the_import(messy, tmp_path, monkeypatch):
    """The CI failure once seen (exit 0 after SIGINT, dataset published) reproduced in-process: the
    import notices the Ctrl-C anyway, publishes nothing, removes its temp folder, and the normal
    Ctrl-C handler is back afterwards."""
    monkeypatch.setattr(tfr, "write_sharded", _swallowing_ctrl_c(tfr.write_sharded))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        ingest.import_posters(messy["csv"], messy["images"], out)
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

"""`posters import --folders DIR`: the image-dataset layout (a folder per genre) — multi-genre merging,
what is ignored, rejections, the report's accounting, the TFRecords it writes, and the CLI's errors.
Every expected value is derived from the files the fixture writes."""
from __future__ import annotations

import io
import json
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poster_similarity.core import tfrecords as tfr
from poster_similarity.datatools import folder_layout, ingest
from poster_similarity.posters import cli
from tests.helpers import POSTERS_CLI, ROOT


def _image(path: Path, seed: int, fmt: str = "JPEG", size: tuple[int, int] = (64, 96), mode: str = "RGB") -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode == "P":
        img = img.convert("P", palette=Image.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@pytest.fixture
def tree(tmp_path):
    """DIR/<Genre>/… with one file per situation, and what the import should make of each: `posters`
    (movie_id → genres, in sorted folder order), `rejected` ((file, movie_id, reason) for each),
    `images` (image files found), `merged`, `ignored` (files counted as ignored)."""
    root = tmp_path / "by_genre"
    jpg = _image(root / "Action" / "tt01.jpg", seed=1)
    _write(root / "Comedy" / "tt01.jpg", jpg)  # the same poster filed under two genres
    _write(root / "Drama" / "tt01.jpg", jpg)  # … and three
    _image(root / "Action" / "tt02.png", seed=2, fmt="PNG")
    _image(root / "Drama" / "tt02.jpg", seed=22)  # same name, other bytes: another poster with id tt02
    _image(root / "Drama" / "tt03.JPEG", seed=3)  # extensions are matched in any case
    _image(root / "Drama" / "more" / "tt04.jpg", seed=4)  # a genre's subfolders belong to it (as in Keras)
    _write(root / "Drama" / "broken.jpg", b"not an image\n")
    _image(root / "Horror" / "tt05.gif", seed=5, fmt="GIF", mode="P")  # converted to RGB JPEG
    _image(root / "Horror" / "tt06.jpg", seed=6, size=(10, 10))  # too small …
    _image(root / "Western" / "tt06.jpg", seed=66)  # … so this other tt06 is the one written
    _write(root / "Horror" / "notes.txt", b"ignored\n")
    _write(root / "README.md", b"ignored: not in a genre folder\n")
    _write(root / "Horror" / ".DS_Store", b"hidden")
    _image(root / "Horror" / "._tt07.jpg", seed=7)  # macOS AppleDouble: hidden, not a poster
    _image(root / ".thumbnails" / "tt08.jpg", seed=8)  # a hidden folder is no genre
    (root / "Romance").mkdir()  # an empty genre is fine
    return {
        "root": root,
        "jpg": jpg,
        "posters": {"tt01": ["Action", "Comedy", "Drama"], "tt02": ["Action"], "tt03": ["Drama"],
                    "tt04": ["Drama"], "tt05": ["Horror"], "tt06": ["Western"]},
        "rejected": {("Drama/broken.jpg", "broken", "undecodable"), ("Drama/tt02.jpg", "tt02", "duplicate_movie_id"),
                     ("Horror/tt06.jpg", "tt06", "too_small")},
        "images": 11,  # visible image files under the genre folders
        "merged": 2,  # the two copies of tt01
        "ignored": {"README.md", "Horror/notes.txt"},
    }


def _by_id(out: Path) -> dict[str, dict]:
    return {e["movie_id"]: e for e in tfr.read_examples(tfr.shard_glob(str(out)))}


def test_folder_import_merges_genres_and_accounts_for_every_file(tree, tmp_path):
    out = tmp_path / "out"
    report = ingest.import_folders(tree["root"], out, shards=2, progress=False)
    expected_rejected = Counter(reason for _, _, reason in tree["rejected"])
    assert report["layout"] == "folders" and report["folders"] == str(tree["root"])
    assert report["written"] == len(tree["posters"]) and report["rejected_total"] == len(tree["rejected"])
    assert report["read"] == report["written"] + report["rejected_total"]
    assert (report["files"], report["merged"]) == (tree["images"], tree["merged"])
    assert report["files"] == report["read"] + report["merged"]
    assert {k: v for k, v in report["rejected"].items() if v} == dict(expected_rejected)
    assert set(report["rejected"]) == set(ingest.REASONS)
    assert {(r["file"], r["movie_id"], r["reason"]) for r in report["rejections"]} == tree["rejected"]
    assert all(r["detail"] and "line" not in r for r in report["rejections"])
    assert report["ignored"]["files"] == len(tree["ignored"]) and set(report["ignored"]["examples"]) == tree["ignored"]
    assert report["genres"] == dict(Counter(g for gs in tree["posters"].values() for g in gs))
    assert report["converted"] == {"GIF P": 1}
    assert json.loads((out / ingest.REPORT_NAME).read_text()) == report

    ex = _by_id(out)
    assert {mid: e["genres"] for mid, e in ex.items()} == tree["posters"]
    assert all((e["title"], e["year"]) == ("", 0) for e in ex.values())
    assert ex["tt01"]["image"] == tree["jpg"]  # an RGB JPEG is stored byte for byte
    with Image.open(io.BytesIO(ex["tt05"]["image"])) as im:
        assert (im.format, im.mode) == ("JPEG", "RGB")


def test_folder_import_is_deterministic_and_sorted_by_movie_id(tree, tmp_path):
    reports = [ingest.import_folders(tree["root"], tmp_path / f"out{i}", shards=1, progress=False) for i in (1, 2)]
    shard = reports[0]["shards"][0]
    assert (tmp_path / "out1" / shard).read_bytes() == (tmp_path / "out2" / shard).read_bytes()
    ids = [e["movie_id"] for e in tfr.read_examples(tfr.shard_glob(str(tmp_path / "out1")))]
    assert ids == sorted(tree["posters"])
    assert [r["rejections"] for r in reports] == [reports[0]["rejections"]] * 2


def test_scan_keeps_same_named_files_with_different_bytes_apart(tmp_path):
    a = _image(tmp_path / "A" / "x.jpg", seed=1)
    _write(tmp_path / "B" / "x.jpg", a)
    _image(tmp_path / "C" / "x.png", seed=2, fmt="PNG")
    scan = folder_layout.scan(tmp_path)
    assert [(p.movie_id, p.genres, p.file) for p in scan.posters] == [("x", ["A", "B"], "A/x.jpg"),
                                                                      ("x", ["C"], "C/x.png")]
    assert (scan.files, scan.merged, scan.ignored) == (3, 1, 0)


@pytest.mark.parametrize("make, words", [
    (lambda root: None, "is not a folder"),
    (lambda root: (root.mkdir(), (root / "loose.jpg").write_bytes(b"x"), (root / ".hidden").mkdir()),
     "no genre subfolders"),
    (lambda root: ((root / "Action").mkdir(parents=True), (root / "Action" / "a.txt").write_text("x")),
     "no image files"),
])
def test_whole_folder_problems_are_ingest_errors_before_any_output(tmp_path, make, words):
    root = tmp_path / "dir"
    make(root)
    with pytest.raises(ingest.IngestError, match=words):
        ingest.import_folders(root, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp-*"))


def test_cli_missing_folder_exits_2_with_one_line(tmp_path):
    p = subprocess.run([*POSTERS_CLI, "import", "--folders", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [f"posters import: error: --folders {tmp_path / 'nope'} is not a folder"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, words", [
    (["--csv", "x.csv", "--folders", "d"], "not allowed with argument"),
    ([], "one of the arguments --csv --folders is required"),
])
def test_cli_takes_exactly_one_input(tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as e:
        cli.main(["import", *args, "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and words in errors[0]


@pytest.mark.parametrize("args, words", [
    (["--folders", "DIR", "--images", "IMG"], "--images goes with --csv"),
    (["--csv", "x.csv"], "--csv needs --images"),
])
def test_cli_images_goes_with_csv_only(tmp_path, capsys, args, words):
    argv = [a.replace("DIR", str(tmp_path)).replace("IMG", str(tmp_path)) for a in args]
    assert cli.main(["import", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_cli_folder_import_prints_the_summary_line(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["import", "--folders", str(tree["root"]), "--out", str(out), "--shards", "3"]) == 0
    report = json.loads((out / ingest.REPORT_NAME).read_text())
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"read {report['read']} posters from {report['files']} image files (folders layout), "
        f"wrote {report['written']} posters in {len(report['shards'])} shard(s) to {out}, "
        f"rejected {report['rejected_total']} (")
    assert len(_by_id(out)) == report["written"]

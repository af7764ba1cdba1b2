"""`posters sample`: deterministic, genre-styled, 2:3 synthetic posters (+ optional TFRecords)."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poster_similarity.core import tfrecords as tfr
from poster_similarity.datatools import sample_data
from poster_similarity.posters import cli


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = sample_data.generate(tmp_path / "a", 10, seed=7)
    sample_data.generate(tmp_path / "b", 10, seed=7)
    sample_data.generate(tmp_path / "c", 10, seed=8)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(fa) == 11 and fa == fb  # 10 JPEGs + posters.csv, byte for byte
    assert fa[sample_data.CSV_NAME] != fc[sample_data.CSV_NAME]
    assert all(fa[r["poster"]] != fc.get(r["poster"]) for r in a)


def test_csv_matches_records_and_images_are_2x3_rgb_jpegs(tmp_path):
    recs = sample_data.generate(tmp_path, 6, seed=1)
    with open(tmp_path / sample_data.CSV_NAME, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(sample_data.CSV_COLUMNS)
    assert [r["movie_id"] for r in rows] == [r["movie_id"] for r in recs]
    assert len({r["movie_id"] for r in rows}) == 6
    for row, rec in zip(rows, recs, strict=True):
        assert row["genres"] == "|".join(rec["genres"]) and int(row["year"]) == rec["year"]
        with Image.open(tmp_path / row["poster"]) as im:  # poster is relative to the CSV
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (200, 300))
    sample_data.generate(tmp_path / "small", 2, size=(100, 150), seed=1)
    with Image.open(tmp_path / "small" / "syn00000.jpg") as im:
        assert im.size == (100, 150)


def test_catalogue_covers_many_genres_with_1_to_3_each_and_series():
    plans = sample_data.plan_catalogue(300, seed=0)
    assert len(sample_data.GENRE_NAMES) >= 8
    counts = Counter(g for p in plans for g in p.genres)
    assert set(counts) == set(sample_data.GENRE_NAMES) and min(counts.values()) >= 10
    assert all(1 <= len(p.genres) <= 3 and len(set(p.genres)) == len(p.genres) for p in plans)
    assert {len(p.genres) for p in plans} == {1, 2, 3}
    series = Counter(p.series for p in plans if p.series)
    assert len(series) >= 3 and all(2 <= c <= 4 for c in series.values())
    for name in series:
        members = [p for p in plans if p.series == name]
        assert len({tuple(p.genres) for p in members}) == 1  # a franchise keeps its genres
        assert members[1].title == f"{members[0].title} 2"
    assert len({p.movie_id for p in plans}) == 300


def _features(img: Image.Image) -> np.ndarray:
    return np.asarray(img.resize((4, 6), Image.BILINEAR), np.float32).ravel() / 255.0


def _centroid_accuracy(palette: str) -> float:
    """Nearest-centroid genre classifier on 4x6 colour thumbnails of single-genre posters."""
    size = (60, 90)
    train = {g: [_features(sample_data.render_poster([g], "Some Title", size, s, palette=palette))
                 for s in range(8)] for g in sample_data.GENRE_NAMES}
    centroids = {g: np.mean(v, axis=0) for g, v in train.items()}
    hits = 0
    for g in sample_data.GENRE_NAMES:
        for s in range(100, 106):
            f = _features(sample_data.render_poster([g], "Other Words Here", size, s, palette=palette))
            hits += min(centroids, key=lambda c: np.sum((centroids[c] - f) ** 2)) == g
    return hits / (6 * len(sample_data.GENRE_NAMES))


def test_genre_palettes_are_distinct_and_colour_grades_hide_them():
    """In their own colours, genres separate on colour thumbnails alone; graded (the default), colour
    stops naming the genre, so a model has to learn motifs and composition."""
    own, graded = _centroid_accuracy("genre"), _centroid_accuracy("graded")
    assert own >= 0.8
    assert graded <= own - 0.3, (own, graded)
    with pytest.raises(ValueError, match="palette"):
        sample_data.render_poster(["Drama"], "X", (60, 90), 1, palette="sepia")


def test_colour_grade_is_shared_by_a_series_and_keeps_the_drawing():
    grades = [np.asarray(sample_data.colour_grade(Image.new("RGB", (2, 2), (200, 100, 0)), s))[0, 0].tolist()
              for s in range(200)]
    kept = sum(g == [200, 100, 0] for g in grades) / len(grades)
    negative = sum(min(g) == 55 for g in grades) / len(grades)  # 255 - 200
    assert abs(kept - (1 - sample_data.GRADE_P)) < 0.08
    assert abs(negative - sample_data.GRADE_P * sample_data.NEGATIVE_P) < 0.08
    assert all(sorted(g) in ([0, 100, 200], [55, 155, 255]) for g in grades)  # channels move, shapes don't
    a = sample_data.render_poster(["Horror"], "T", (60, 90), 5, jitter_seed=None)
    b = sample_data.render_poster(["Horror"], "T 2", (60, 90), 5, jitter_seed=9)
    assert np.abs(np.asarray(a, np.float32).mean((0, 1)) - np.asarray(b, np.float32).mean((0, 1))).max() < 12


def test_series_are_near_duplicates():
    """A sequel is closer to its original than posters of the same genre are to each other."""
    size = (60, 90)

    def px(img: Image.Image) -> np.ndarray:  # thumbnail: compare structure, not grain
        return np.asarray(img.resize((10, 15), Image.BOX), np.float32)

    orig = px(sample_data.render_poster(["Western", "Comedy"], "Dust", size, 42))
    sequel = px(sample_data.render_poster(["Western", "Comedy"], "Dust 2", size, 42, jitter_seed=5))
    other = px(sample_data.render_poster(["Western", "Comedy"], "Dust", size, 43))
    assert np.abs(orig - sequel).mean() < 0.5 * np.abs(orig - other).mean()
    assert np.abs(orig - sequel).mean() > 0.5  # but not a copy


def test_tfrecords_match_csv(tmp_path):
    recs = sample_data.generate(tmp_path, 5, seed=3, tfrecords=True)
    shards = sorted((tmp_path / sample_data.TFRECORD_DIR).iterdir())
    assert [p.name for p in shards] == ["data-00000-of-00001.tfrecord"]
    got = list(tfr.read_examples(str(shards[0])))
    assert [e["movie_id"] for e in got] == [r["movie_id"] for r in recs]
    for e, r in zip(got, recs, strict=True):
        assert e["image"] == Path(r["path"]).read_bytes()
        assert (e["genres"], e["title"], e["year"]) == (r["genres"], r["title"], r["year"])


def test_cli_sample(tmp_path, capsys):
    args = ["sample", "--out", str(tmp_path / "o"), "--n", "3", "--size", "80x120", "--seed", "2"]
    assert cli.main(args) == 0
    assert "wrote 3 posters 80x120" in capsys.readouterr().out
    assert len(list((tmp_path / "o").glob("*.jpg"))) == 3
    assert cli.main(["sample", "--out", str(tmp_path / "o"), "--size", "big"]) == 2
    assert "--size" in capsys.readouterr().err
    assert cli.main(["sample", "--out", str(tmp_path / "w"), "--n", "1", "--size", "120x120"]) == 0
    assert "not 2:3" in capsys.readouterr().err  # warned, not refused


@pytest.mark.parametrize("n", [0, -1])
def test_rejects_bad_n(tmp_path, n):
    with pytest.raises(ValueError):
        sample_data.generate(tmp_path, n)

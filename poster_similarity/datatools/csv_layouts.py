"""The two CSV layouts of `posters import --csv`, read into `Row`s before any image is decoded.

Detected from the header:
- ours (`posters sample`): `movie_id,title,year,genres,poster`, `poster` relative to `--images`,
  plus the optional `tags` (`|`-separated) and `group` (crowding key) columns;
- Kaggle "Movie Genre from its Poster" `MovieGenre.csv`: `imdbId,Imdb Link,Title,IMDB Score,Genre,
  Poster`, images `<imdbId>.jpg` in `--images`, title "Toy Story (1995)" → title + year.
Strict on purpose: a malformed CSV means the user pointed at the wrong file (stop, name the line).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poster_similarity.core import tfrecords as tfr

_KAGGLE_EXTS = (".jpg", ".jpeg", ".png")
_YEAR_IN_TITLE = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


class IngestError(Exception):
    """A problem with the whole import (bad CSV, unusable paths): one line for the user, exit 2."""


@dataclass
class Row:
    line: int | None  # CSV line number (1 = header), for messages and report.json; None: not from a CSV
    movie_id: str
    title: str
    year: int
    genres: list[str]
    image_path: Path | None  # None: the row names no poster file
    file: str = ""  # folder layout: the image file relative to DIR (report.json names it instead of a line)
    tags: list[str] = field(default_factory=list)  # optional CSV column `tags` ("|"-separated), rule attributes
    group: str = ""  # optional CSV column `group`: crowding key (franchise/series id)


@dataclass
class Source:
    """The rows of one input, read and structurally checked, and what report.json says about it."""
    layout: str  # "posters" | "kaggle" | "folders"
    rows: list[Row]
    info: dict[str, Any] = field(default_factory=dict)  # input paths and layout specifics for the report


# --- CSV ------------------------------------------------------------------------------------------


def _read_text(csv_path: Path) -> tuple[str, str]:
    """Decode as UTF-8 (BOM tolerated), else latin-1: the Kaggle CSV in the wild is latin-1, and
    latin-1 decodes any byte, so a stray byte never aborts an import (worst case: a mangled title)."""
    try:
        data = csv_path.read_bytes()
    except FileNotFoundError:
        raise IngestError(f"CSV file not found: {csv_path}") from None
    except OSError as e:
        raise IngestError(f"cannot read CSV {csv_path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _int_or_zero(text: str) -> int:
    try:
        return int(float(text.strip())) if text.strip() else 0
    except ValueError:
        return 0


def read_rows(csv_path: Path, images_dir: Path) -> tuple[str, str, list[Row]]:
    """Parse and structurally validate the whole CSV before any image is touched.

    Returns (layout, encoding, rows). Raises IngestError naming the line on missing columns,
    a wrong number of fields or bad quoting.
    """
    text, encoding = _read_text(csv_path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise IngestError(f"{csv_path}: line {reader.line_num}: malformed CSV ({e})") from None
    if not header:
        raise IngestError(f"{csv_path}: line 1: empty file, expected a header row")
    cols = {name.strip().lower(): i for i, name in enumerate(header)}
    if "imdbid" in cols and "genre" in cols:
        layout, required = "kaggle", ("imdbid", "genre")
    else:
        layout, required = "posters", ("movie_id", "genres", "poster")
    missing = [c for c in required if c not in cols]
    if missing:
        raise IngestError(
            f"{csv_path}: line 1: missing required column(s) {', '.join(missing)}; expected "
            "'movie_id,title,year,genres,poster' or Kaggle MovieGenre.csv "
            "'imdbId,Imdb Link,Title,IMDB Score,Genre,Poster'")

    def get(rec: list[str], name: str) -> str:
        i = cols.get(name)
        return rec[i].strip() if i is not None else ""

    rows: list[Row] = []
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise IngestError(f"{csv_path}: line {reader.line_num}: malformed CSV ({e})") from None
        line = reader.line_num
        if not rec or all(not v.strip() for v in rec):
            continue  # blank line: not a row
        if len(rec) != len(header):
            raise IngestError(f"{csv_path}: line {line}: expected {len(header)} fields "
                              f"(header has {len(header)}), found {len(rec)}")
        if layout == "kaggle":
            movie_id = get(rec, "imdbid")
            title, year = get(rec, "title"), 0
            m = _YEAR_IN_TITLE.match(title)
            if m:
                title, year = m.group(1), int(m.group(2))
            image_path = _kaggle_image(images_dir, movie_id) if movie_id else None
            genres = tfr.split_genres(get(rec, "genre"))
        else:
            movie_id = get(rec, "movie_id")
            title, year = get(rec, "title"), _int_or_zero(get(rec, "year"))
            poster = get(rec, "poster")
            image_path = (images_dir / poster) if poster else None
            genres = tfr.split_genres(get(rec, "genres"))
        rows.append(Row(line, movie_id, title, year, genres, image_path,
                        tags=tfr.split_tags(get(rec, "tags")), group=get(rec, "group")))
    return layout, encoding, rows


def _kaggle_image(images_dir: Path, movie_id: str) -> Path:
    for ext in _KAGGLE_EXTS:
        p = images_dir / f"{movie_id}{ext}"
        if p.is_file():
            return p
    return images_dir / f"{movie_id}.jpg"

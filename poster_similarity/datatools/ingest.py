"""`posters import`: a poster CSV + image folder → sharded TFRecords in the data contract.

Why this module is strict about the CSV and lenient about the images: a malformed CSV means the
user pointed at the wrong file (stop at once, name the line, exit 2), while real poster dumps
always contain some broken, tiny, grayscale or CMYK images (convert what can be used, reject the
rest with a reason code, and account for every row in `report.json`: read = written + rejected).

Two CSV layouts, detected from the header:
- ours (`posters sample`): `movie_id,title,year,genres,poster`, `poster` relative to `--images`;
- Kaggle "Movie Genre from its Poster" `MovieGenre.csv`: `imdbId,Imdb Link,Title,IMDB Score,Genre,
  Poster`, images `<imdbId>.jpg` in `--images`, title "Toy Story (1995)" → title + year.

The output folder is built beside `--out` (`<out>.tmp-<pid>`) and renamed into place at the end,
so an interrupted import never leaves a half dataset.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from poster_similarity.core import tfrecords as tfr
from poster_similarity.datatools.interrupts import ctrl_c_remembered

REPORT_NAME = "report.json"
PRODUCER = "posters import"
JPEG_QUALITY = 95
REASONS = ("missing_movie_id", "missing_file", "empty_file", "undecodable", "truncated", "no_genres",
           "duplicate_movie_id", "too_small", "too_large")
_KAGGLE_EXTS = (".jpg", ".jpeg", ".png")
_YEAR_IN_TITLE = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


class IngestError(Exception):
    """A problem with the whole import (bad CSV, unusable paths): one line for the user, exit 2."""


@dataclass
class Row:
    line: int  # CSV line number (1 = header), for messages and report.json
    movie_id: str
    title: str
    year: int
    genres: list[str]
    image_path: Path | None  # None: the row names no poster file


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


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
        rows.append(Row(line, movie_id, title, year, genres, image_path))
    return layout, encoding, rows


def _kaggle_image(images_dir: Path, movie_id: str) -> Path:
    for ext in _KAGGLE_EXTS:
        p = images_dir / f"{movie_id}{ext}"
        if p.is_file():
            return p
    return images_dir / f"{movie_id}.jpg"


# --- images ---------------------------------------------------------------------------------------


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB; transparency is composited on white (posters have no alpha)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit/float grayscale: rescale
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if hi > 255:
            arr = arr * (255.0 / (65535.0 if hi <= 65535 else hi))
        elif img.mode == "F" and hi <= 1.0:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _decode_failure(path: Path, e: BaseException) -> Rejected:
    """Pillow reports a cut-off file as EOFError / "image file is truncated" / "broken PNG file"."""
    msg = str(e) or type(e).__name__
    truncated = isinstance(e, EOFError) or "truncat" in msg.lower() or "broken" in msg.lower()
    return Rejected("truncated" if truncated else "undecodable", f"{path.name}: {msg}")


def check_image(path: Path | None, min_size: int,
                max_pixels: int = tfr.MAX_IMAGE_PIXELS) -> tuple[bytes, dict[str, Any]]:
    """Return (bytes to store, info) or raise Rejected.

    The image is fully decoded (`load()`) so truncation is caught here rather than in Transform;
    before that, the size in its header is checked against `max_pixels` (the same limit Transform
    and the served model enforce), so a small file declaring a huge image is never decoded.
    RGB JPEG/PNG bytes are kept as they are; anything else is converted to RGB and re-encoded as
    JPEG quality 95 (info["converted"] says from what).
    """
    if path is None:
        raise Rejected("missing_file", "no poster file named in the CSV row")
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise Rejected("missing_file", f"{path} not found") from None
    except OSError as e:
        raise Rejected("missing_file", f"{path}: {e.strerror or e}") from None
    if not data:
        raise Rejected("empty_file", f"{path} is 0 bytes")
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
    except UnidentifiedImageError:
        raise Rejected("undecodable", f"{path.name}: not a recognised image format") from None
    except (Image.DecompressionBombError, ValueError, SyntaxError, OSError, EOFError) as e:
        raise _decode_failure(path, e) from None
    w, h = img.size  # from the header: nothing decoded yet
    if w * h > max_pixels:
        raise Rejected("too_large", f"{w}x{h} = {w * h} pixels > max_pixels={max_pixels}")
    relaxed = ImageFile.LOAD_TRUNCATED_IMAGES  # if some other code relaxed Pillow, truncation would pass
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img.load()
    except (OSError, EOFError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _decode_failure(path, e) from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = relaxed
    w, h = img.size
    if min(w, h) < min_size:
        raise Rejected("too_small", f"{w}x{h}, shorter side < {min_size}px")
    info: dict[str, Any] = {"format": fmt, "mode": img.mode, "size": [w, h]}
    if img.mode == "RGB" and fmt in ("JPEG", "PNG") and "transparency" not in img.info:
        return data, info
    info["converted"] = f"{fmt} {img.mode}"
    buf = io.BytesIO()
    try:
        _to_rgb(img).save(buf, format="JPEG", quality=JPEG_QUALITY)
    except (OSError, ValueError) as e:  # a mode Pillow cannot bring to RGB
        raise Rejected("undecodable", f"{path.name}: cannot convert {fmt} {img.mode} to RGB: {e}") from None
    return buf.getvalue(), info


# --- output folder --------------------------------------------------------------------------------


def _is_previous_import(out: Path) -> bool:
    try:
        return json.loads((out / REPORT_NAME).read_text()).get("producer") == PRODUCER
    except (OSError, ValueError, AttributeError):
        return False


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise IngestError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_previous_import(out):
        raise IngestError(f"--out {out} exists and is not empty (and is not a previous `posters import` "
                          "output, which would be replaced); choose another folder")


def _remove_stale_tmp(out: Path) -> None:
    """Temp folders left by an import that was killed (its pid is gone) are ours to clean."""
    for p in out.parent.glob(f"{out.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            continue


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place. Replacing a previous import: old → aside, new → out,
    then delete old; at no moment does `out` hold a mix of the two."""
    if out.is_dir() and any(out.iterdir()):
        old = out.parent / f"{out.name}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.is_dir():
            out.rmdir()
        os.rename(tmp, out)


# --- import ---------------------------------------------------------------------------------------


def import_posters(csv_path: str | os.PathLike, images_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   shards: int = 4, gzip: bool = False, min_size: int = 32, progress: bool | None = None,
                   max_pixels: int = tfr.MAX_IMAGE_PIXELS
                   ) -> dict[str, Any]:
    """Import a CSV + images into `out_dir` (sharded TFRecords + report.json); returns the report.

    Raises IngestError for problems with the whole import. `progress=None` shows tqdm only on a TTY.
    """
    from tqdm import tqdm

    csv_path, images_dir, out = Path(csv_path), Path(images_dir), Path(out_dir).absolute()
    if shards < 1:
        raise IngestError("--shards must be >= 1")
    if not images_dir.is_dir():
        raise IngestError(f"--images {images_dir} is not a folder")
    _check_out(out)
    layout, encoding, rows = read_rows(csv_path, images_dir)
    t0 = time.perf_counter()

    rejected: Counter[str] = Counter({r: 0 for r in REASONS})
    rejections: list[dict[str, Any]] = []
    genres: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    seen: set[str] = set()
    written = 0

    def examples() -> Iterator[Any]:
        nonlocal written
        for row in tqdm(rows, desc="import", unit="poster", disable=(not progress) if progress is not None
                        else None):
            if interrupted.is_set():
                raise KeyboardInterrupt
            try:
                if not row.movie_id:
                    raise Rejected("missing_movie_id", "empty movie id")
                if row.movie_id in seen:
                    raise Rejected("duplicate_movie_id", f"{row.movie_id} already written")
                if not row.genres:
                    raise Rejected("no_genres", "genres field is empty")
                data, info = check_image(row.image_path, min_size, max_pixels)
            except Rejected as r:
                rejected[r.reason] += 1
                rejections.append({"line": row.line, "movie_id": row.movie_id, "reason": r.reason,
                                   "detail": r.detail})
                continue
            if "converted" in info:
                converted[info["converted"]] += 1
            seen.add(row.movie_id)
            genres.update(row.genres)
            written += 1
            yield tfr.make_example(row.movie_id, data, row.genres, row.title, row.year)

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(out)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with ctrl_c_remembered() as interrupted:
        tmp.mkdir()
        try:
            paths = tfr.write_sharded(examples(), str(tmp), shards=shards, gzip=gzip)
            total_rejected = sum(rejected.values())
            if len(rows) != written + total_rejected:  # not `assert`: must hold under `python -O` too
                raise RuntimeError(f"bookkeeping error: read {len(rows)} != written {written} + rejected "
                                   f"{total_rejected}")
            report = {
                "producer": PRODUCER,
                "csv": str(csv_path),
                "images": str(images_dir),
                "layout": layout,
                "encoding": encoding,
                "read": len(rows),
                "written": written,
                "rejected": dict(rejected),
                "rejected_total": total_rejected,
                "rejections": rejections,
                "genres": dict(sorted(genres.items(), key=lambda kv: (-kv[1], kv[0]))),
                "converted": dict(converted),
                "shards": [os.path.basename(p) for p in paths],
                "gzip": gzip,
                "min_size": min_size,
                "max_pixels": max_pixels,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
            _check_out(out)  # someone may have written there meanwhile
            if interrupted.is_set():  # a Ctrl-C whose KeyboardInterrupt library code swallowed
                raise KeyboardInterrupt
            _publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return report


def main(args: argparse.Namespace) -> int:
    try:
        report = import_posters(args.csv, args.images, args.out, shards=args.shards, gzip=args.gzip,
                                min_size=args.min_size, max_pixels=args.max_pixels)
    except IngestError as e:
        print(f"posters import: error: {e}", file=sys.stderr)
        return 2
    reasons = ", ".join(f"{k} {v}" for k, v in report["rejected"].items() if v) or "none"
    print(f"read {report['read']} rows ({report['layout']} layout), wrote {report['written']} posters in "
          f"{len(report['shards'])} shard(s) to {args.out}, rejected {report['rejected_total']} ({reasons}); "
          f"details in {os.path.join(args.out, REPORT_NAME)}")
    if report["written"] == 0:
        print("posters import: error: no usable posters were found", file=sys.stderr)
        return 1
    return 0

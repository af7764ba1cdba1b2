"""`posters import`: a poster CSV + image folder, or a folder per genre → sharded TFRecords in the
data contract.

Why this module is strict about the CSV and lenient about the images: a malformed CSV means the
user pointed at the wrong file (stop at once, name the line, exit 2), while real poster dumps
always contain some broken, tiny, grayscale or CMYK images (convert what can be used, reject the
rest with a reason code, and account for every row in `report.json`: read = written + rejected).

Three input layouts, each read into the same `Row`s (a `Source`) before any image is decoded; from
there on (`import_source`) the checks, conversions, shards and report are shared: two CSV layouts
detected from the header (`csv_layouts.py`: ours, and Kaggle's `MovieGenre.csv`), and `--folders
DIR`, the image-dataset layout `DIR/<Genre>/<movie_id>.jpg` (`folder_layout.py`).

The output folder is built beside `--out` (`<out>.tmp-<pid>`) and renamed into place at the end,
so an interrupted import never leaves a half dataset.

Two passes: every row is checked (and each accepted poster fingerprinted, `near_duplicates.py`)
before anything is written, because whether a poster is a placeholder (one image shared by more
than `placeholder_min_ids` movie ids) is only known once all are seen. Only fingerprints are held
in between; the write pass reads the files again (and stops if one changed meanwhile).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poster_similarity.core import tfrecords as tfr
from poster_similarity.datatools import folder_layout
from poster_similarity.datatools import near_duplicates as nd
from poster_similarity.datatools.csv_layouts import IngestError, Row, Source, read_rows
from poster_similarity.datatools.image_checks import Rejected, check_image
from poster_similarity.datatools.interrupts import ctrl_c_remembered

REPORT_NAME = "report.json"
PRODUCER = "posters import"
REASONS = ("missing_movie_id", "missing_file", "empty_file", "undecodable", "truncated", "no_genres",
           "duplicate_movie_id", "too_small", "too_large", "placeholder_image")


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


@dataclass
class _Tally:
    """What the rows came to, as the import goes; becomes report.json."""
    rejected: Counter[str] = field(default_factory=lambda: Counter({r: 0 for r in REASONS}))
    rejections: list[dict[str, Any]] = field(default_factory=list)
    genres: Counter[str] = field(default_factory=Counter)
    converted: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)
    written: int = 0

    def reject(self, row: Row, r: Rejected) -> None:
        where: dict[str, Any] = {"line": row.line} if row.line is not None else {"file": row.file}
        self.rejected[r.reason] += 1
        self.rejections.append({**where, "movie_id": row.movie_id, "reason": r.reason, "detail": r.detail})

    def accept(self, row: Row, info: dict[str, Any]) -> None:
        if "converted" in info:
            self.converted[info["converted"]] += 1
        self.seen.add(row.movie_id)
        self.genres.update(row.genres)
        self.written += 1


def _check_row(row: Row, seen: set[str], min_size: int, max_pixels: int) -> tuple[bytes, dict[str, Any]]:
    """The checks in their documented order: id → duplicate → genres → file (the first reason wins)."""
    if not row.movie_id:
        raise Rejected("missing_movie_id", "empty movie id")
    if row.movie_id in seen:
        raise Rejected("duplicate_movie_id", f"{row.movie_id} already written")
    if not row.genres:
        raise Rejected("no_genres", "genres field is empty")
    return check_image(row.image_path, min_size, max_pixels)


@dataclass
class _Accepted:
    """A row that passed the checks, between the check pass and the write pass: the bytes only
    when converted (else the file is read again), and the file's SHA-256 to notice a change."""
    row: Row
    info: dict[str, Any]
    data: bytes | None
    sha256: str


def _check_all(rows: list[Row], tally: _Tally, index: nd.NearDuplicateIndex, min_size: int, max_pixels: int,
               interrupted: Any, progress: bool | None) -> list[_Accepted]:
    """Pass 1: check every row (rejections go to the tally) and fingerprint the accepted posters."""
    from tqdm import tqdm

    accepted = []
    for row in tqdm(rows, desc="import", unit="poster", disable=(not progress) if progress is not None else None):
        if interrupted.is_set():
            raise KeyboardInterrupt
        try:
            data, info = _check_row(row, tally.seen, min_size, max_pixels)
        except Rejected as r:
            tally.reject(row, r)
            continue
        tally.seen.add(row.movie_id)
        index.add(row.movie_id, data)
        converted = "converted" in info
        accepted.append(_Accepted(row, info, data if converted else None,
                                  "" if converted else hashlib.sha256(data).hexdigest()))
    return accepted


def _reread(a: _Accepted) -> bytes:
    """The write pass's copy of a file stored as is; it must be the file that was checked."""
    try:
        data = a.row.image_path.read_bytes() if a.row.image_path is not None else b""
    except OSError as e:
        raise IngestError(f"{a.row.image_path} could not be read again while importing: {e}") from None
    if hashlib.sha256(data).hexdigest() != a.sha256:
        raise IngestError(f"{a.row.image_path} changed while importing; run the import again")
    return data


def _examples(accepted: list[_Accepted], tally: _Tally, placeholders: dict[str, Rejected],
              duplicate_groups: dict[str, str], interrupted: Any) -> Iterator[Any]:
    """Pass 2: the tf.Examples to write; placeholder posters (`placeholders`: id → rejection) are
    rejected here, after every row was checked. A poster sharing its artwork gets the optional
    `duplicate_group` feature (the group's smallest movie id: the index's crowding key)."""
    for a in accepted:
        if interrupted.is_set():
            raise KeyboardInterrupt
        if a.row.movie_id in placeholders:
            tally.reject(a.row, placeholders[a.row.movie_id])
            continue
        data = a.data if a.data is not None else _reread(a)
        tally.accept(a.row, a.info)
        yield tfr.make_example(a.row.movie_id, data, a.row.genres, a.row.title, a.row.year,
                               tags=a.row.tags, group=a.row.group,
                               duplicate_group=duplicate_groups.get(a.row.movie_id, ""))


def _report(source: Source, tally: _Tally, paths: list[str], settings: dict[str, Any],
            duplicates: dict[str, Any]) -> dict[str, Any]:
    total_rejected = sum(tally.rejected.values())
    if len(source.rows) != tally.written + total_rejected:  # not `assert`: must hold under `python -O` too
        raise RuntimeError(f"bookkeeping error: read {len(source.rows)} != written {tally.written} + rejected "
                           f"{total_rejected}")
    return {
        "producer": PRODUCER,
        "layout": source.layout,
        **source.info,
        "read": len(source.rows),
        "written": tally.written,
        "rejected": dict(tally.rejected),
        "rejected_total": total_rejected,
        "rejections": tally.rejections,
        "genres": dict(sorted(tally.genres.items(), key=lambda kv: (-kv[1], kv[0]))),
        "converted": dict(tally.converted),
        "shards": [os.path.basename(p) for p in paths],
        **duplicates,
        **settings,
    }


def import_source(read: Callable[[], Source], out_dir: str | os.PathLike, shards: int = 4, gzip: bool = False,
                  min_size: int = 32, progress: bool | None = None, max_pixels: int = tfr.MAX_IMAGE_PIXELS,
                  placeholder_min_ids: int = nd.PLACEHOLDER_MIN_IDS, keep_placeholders: bool = False
                  ) -> dict[str, Any]:
    """Check the options and `out_dir`, call `read()` for the rows, then check, convert and write them
    (sharded TFRecords + report.json, published atomically); returns the report.

    Posters sharing an artwork are reported (`near_duplicates`); an artwork shared by more than
    `placeholder_min_ids` movie ids is a placeholder, rejected (`placeholder_image`) unless
    `keep_placeholders`. Raises IngestError for problems with the whole import. `progress=None`
    shows tqdm only on a TTY.
    """
    out = Path(out_dir).absolute()
    if shards < 1:
        raise IngestError("--shards must be >= 1")
    if placeholder_min_ids < 1:
        raise IngestError("--placeholder-min-ids must be >= 1")
    _check_out(out)
    source = read()
    t0 = time.perf_counter()
    tally = _Tally()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(out)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with ctrl_c_remembered() as interrupted:
        tmp.mkdir()
        try:
            index = nd.NearDuplicateIndex(max_pixels=max_pixels)
            accepted = _check_all(source.rows, tally, index, min_size, max_pixels, interrupted, progress)
            found = index.find()
            duplicates, why = nd.import_report(found, placeholder_min_ids, keep_placeholders)
            placeholders = {m: Rejected("placeholder_image", w) for m, w in why.items()}
            groups = {m: g.key for g in found.groups for m in g.movie_ids}
            paths = tfr.write_sharded(_examples(accepted, tally, placeholders, groups, interrupted), str(tmp),
                                      shards=shards, gzip=gzip)
            settings = {"gzip": gzip, "min_size": min_size, "max_pixels": max_pixels,
                        "placeholder_min_ids": placeholder_min_ids, "keep_placeholders": keep_placeholders,
                        "seconds": round(time.perf_counter() - t0, 2)}
            report = _report(source, tally, paths, settings, duplicates)
            (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
            _check_out(out)  # someone may have written there meanwhile
            if interrupted.is_set():  # a Ctrl-C whose KeyboardInterrupt library code swallowed
                raise KeyboardInterrupt
            _publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return report


def import_posters(csv_path: str | os.PathLike, images_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   **options: Any) -> dict[str, Any]:
    """Import a CSV (either layout) + its image folder; `options` as for `import_source`."""
    csv_path, images_dir = Path(csv_path), Path(images_dir)

    def read() -> Source:
        if not images_dir.is_dir():
            raise IngestError(f"--images {images_dir} is not a folder")
        layout, encoding, rows = read_rows(csv_path, images_dir)
        return Source(layout, rows, {"csv": str(csv_path), "images": str(images_dir), "encoding": encoding})

    return import_source(read, out_dir, **options)


def folder_rows(root: str | os.PathLike) -> Source:
    """The image-dataset layout `DIR/<Genre>/<movie_id>.jpg` (rules in `folder_layout`) as rows."""
    try:
        found = folder_layout.scan(root)
    except folder_layout.LayoutError as e:
        raise IngestError(str(e)) from None
    rows = [Row(None, p.movie_id, "", 0, p.genres, p.path, p.file) for p in found.posters]
    return Source("folders", rows, {"folders": str(root), "files": found.files, "merged": found.merged,
                                    "ignored": {"files": found.ignored, "examples": found.ignored_examples}})


def import_folders(root: str | os.PathLike, out_dir: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Import a folder per genre; `options` as for `import_source`."""
    return import_source(lambda: folder_rows(root), out_dir, **options)


def _summary(report: dict[str, Any], out: str) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in report["rejected"].items() if v) or "none"
    if report["layout"] == "folders":
        what = f"{report['read']} posters from {report['files']} image files"
    else:
        what = f"{report['read']} rows"
    kept = " (kept)" if report.get("keep_placeholders") else ""
    return (f"read {what} ({report['layout']} layout), wrote {report['written']} posters in "
            f"{len(report['shards'])} shard(s) to {out}, rejected {report['rejected_total']} ({reasons}); "
            f"{len(report['near_duplicates'])} near-duplicate group(s), {len(report['placeholders'])} "
            f"placeholder(s){kept}; details in {os.path.join(out, REPORT_NAME)}")


def main(args: argparse.Namespace) -> int:
    options = {"shards": args.shards, "gzip": args.gzip, "min_size": args.min_size, "max_pixels": args.max_pixels,
               "placeholder_min_ids": getattr(args, "placeholder_min_ids", nd.PLACEHOLDER_MIN_IDS),
               "keep_placeholders": getattr(args, "keep_placeholders", False)}
    folders, images = getattr(args, "folders", None), getattr(args, "images", None)
    try:
        if folders is not None:
            if images is not None:
                raise IngestError("--images goes with --csv; with --folders the images are in DIR/<Genre>/")
            report = import_folders(folders, args.out, **options)
        else:
            if images is None:
                raise IngestError("--csv needs --images, the folder holding the poster files")
            report = import_posters(args.csv, images, args.out, **options)
    except IngestError as e:
        print(f"posters import: error: {e}", file=sys.stderr)
        return 2
    print(_summary(report, args.out))
    if report["written"] == 0:
        print("posters import: error: no usable posters were found", file=sys.stderr)
        return 1
    return 0

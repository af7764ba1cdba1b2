"""The image-dataset layout for `posters import --folders DIR`: a folder per genre.

`DIR/<Genre>/<movie_id>.jpg`, the convention of Keras' `image_dataset_from_directory`:

- every visible subfolder of DIR is a genre, named as the folder is (Keras' class names); files
  and folders whose name starts with `.` are skipped everywhere (`.DS_Store`, `._x.jpg`,
  `.ipynb_checkpoints`), and, as in Keras, a genre folder's own subfolders belong to that genre;
- image files are recognised by extension (`IMAGE_SUFFIXES`, any case); other files, and files
  directly in DIR, are ignored (counted in the report, not rejected: they are not posters);
- a poster's movie_id is its file name without the extension, so `Action/tt0114709.jpg` and
  `Comedy/tt0114709.jpg` are ONE poster with genres [Action, Comedy] — when their bytes are
  identical. Files sharing a name but not their bytes are different posters with the same id:
  each becomes its own poster, and the import keeps the first and rejects the others as
  `duplicate_movie_id`.

Everything is sorted (genre folders by name, files by path, posters by movie_id), so the same
folder always gives the same posters in the same order. This module only reads the tree (and the
bytes of files whose names repeat); checking the images is `ingest`'s job, as for the CSV layouts.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
IGNORED_EXAMPLES = 10  # how many ignored files the report names


class LayoutError(Exception):
    """The folder as a whole cannot be imported (missing, unreadable, no genres, no images)."""


@dataclass
class Poster:
    movie_id: str
    genres: list[str]  # genre folders holding this image, in sorted order
    path: Path  # the first of its files
    file: str  # that file relative to DIR, with `/` (what the report names)


@dataclass
class Scan:
    posters: list[Poster]
    files: int  # image files found: files == len(posters) + merged
    merged: int  # image files that are an identical copy of a poster already found in another folder
    ignored: int  # other visible files (not an image by extension, or directly in DIR)
    ignored_examples: list[str] = field(default_factory=list)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _raise(e: OSError) -> NoReturn:
    raise LayoutError(f"cannot read {e.filename}: {e.strerror or e}")


def _genre_folders(root: Path) -> tuple[list[Path], list[Path]]:
    """(genre folders, files directly in root), both sorted, hidden entries left out."""
    if not root.is_dir():
        raise LayoutError(f"--folders {root} is not a folder")
    try:
        entries = sorted(p for p in root.iterdir() if _visible(p.name))
    except OSError as e:
        _raise(e)
    genres = [p for p in entries if p.is_dir()]
    if not genres:
        raise LayoutError(f"--folders {root} has no genre subfolders (expected DIR/<Genre>/<movie_id>.jpg)")
    return genres, [p for p in entries if not p.is_dir()]


def _files_under(folder: Path) -> list[Path]:
    """Every visible file below `folder`, sorted by path (symlinked folders are not followed, as in Keras)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        out += [Path(dirpath, f) for f in sorted(filenames) if _visible(f)]
    return out


def _content_key(path: Path) -> str:
    """What decides whether two same-named files are one poster: their bytes (an unreadable file
    is its own poster, which the import then rejects as `missing_file`)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return f"unreadable:{path}"


def _group(found: list[tuple[str, Path]]) -> tuple[list[tuple[str, list[tuple[str, Path]]]], int]:
    """Group (genre, file) pairs into posters: same stem and same bytes. Returns ((movie_id, pairs)
    sorted by movie_id, then by first file), and how many files were merged into another."""
    by_stem: dict[str, list[tuple[str, Path]]] = {}
    for genre, path in found:
        by_stem.setdefault(path.stem, []).append((genre, path))
    groups: list[tuple[str, list[tuple[str, Path]]]] = []
    merged = 0
    for stem in sorted(by_stem):
        pairs = by_stem[stem]
        if len(pairs) == 1:  # the common case: no file has to be read now
            groups.append((stem, pairs))
            continue
        by_content: dict[str, list[tuple[str, Path]]] = {}  # dicts keep the first-seen order
        for genre, path in pairs:
            by_content.setdefault(_content_key(path), []).append((genre, path))
        groups += [(stem, same) for same in by_content.values()]
        merged += len(pairs) - len(by_content)
    return groups, merged


def scan(root: str | os.PathLike) -> Scan:
    """Read the tree under `root` into posters; raises LayoutError before any image is decoded."""
    root = Path(root)
    genre_dirs, loose = _genre_folders(root)
    found: list[tuple[str, Path]] = []
    ignored = [p for p in loose if p.is_file()]
    for folder in genre_dirs:
        for path in _files_under(folder):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append((folder.name, path))
            else:
                ignored.append(path)
    if not found:
        raise LayoutError(f"--folders {root}: no image files ({' '.join(IMAGE_SUFFIXES)}) in its "
                          f"{len(genre_dirs)} genre subfolder(s)")
    groups, merged = _group(found)
    posters = []
    for movie_id, pairs in groups:
        genres = list(dict.fromkeys(genre for genre, _ in pairs))
        first = pairs[0][1]
        posters.append(Poster(movie_id, genres, first, first.relative_to(root).as_posix()))
    examples = [p.relative_to(root).as_posix() for p in ignored[:IGNORED_EXAMPLES]]
    return Scan(posters, len(found), merged, len(ignored), examples)

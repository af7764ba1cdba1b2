"""Pure parts of the real-poster benchmark (bench/real_posters.py): the folder
reader, deterministic subsampling, the raw-pixel baseline and the scores. numpy + PIL only here;
the scores come from the product's `retrieval_metrics` (imported lazily: it imports TFMA).

Folder layout: `DIR/<Genre>/<movie_id>.jpg` (what `posters import --folders` reads). A poster is a
file stem: the same stem under several genre folders is one poster with all those genres (the first
file, in sorted path order, is its image). Hidden files and folders (`.DS_Store`) are skipped.

Scores, over one set that is both the queries and the candidates (leave-one-out, cosine), computed
by the same functions as the Trainer's "did training help?" report and the Evaluator, so the
benchmark's figures and the pipeline's mean the same thing:
- `retrieval_metrics.genre_precision`: macro genre P@k (per genre with >= `min_posters` posters, the
  mean over its queries of the share of their top k having it; then the mean over those genres),
  micro genre P@k (the same share over every (query, genre of the query) pair) and the per-genre P@k;
- `retrieval_metrics.retrieval_scores`: precision@k (share of the top k sharing >= 1 genre with the
  query) and MAP@R (Musgrave et al. 2020).
The random and colour-histogram baselines are the product's too (`components.baselines`).
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
K = 10
MIN_GENRE_POSTERS = 10  # genres with fewer test posters are left out of the macro average
PIXEL_SIZE = 32


@dataclass(frozen=True)
class Poster:
    movie_id: str
    genres: tuple[str, ...]  # sorted genre folder names
    path: Path  # the first of its files (sorted by path)


# --- folders ------------------------------------------------------------------------------------------
def read_folders(root: str | os.PathLike) -> list[Poster]:
    """The posters under `root/<Genre>/` (files of any depth below a genre folder), sorted by movie_id."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    found: dict[str, tuple[set[str], list[Path]]] = {}
    for genre_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dirpath, dirnames, filenames in os.walk(genre_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                genres, paths = found.setdefault(path.stem, (set(), []))
                genres.add(genre_dir.name)
                paths.append(path)
    if not found:
        raise ValueError(f"{root}: no images under DIR/<Genre>/ (expected {', '.join(IMAGE_SUFFIXES)})")
    return [Poster(mid, tuple(sorted(g)), min(paths)) for mid, (g, paths) in sorted(found.items())]


def genre_names(posters: list[Poster]) -> list[str]:
    return sorted({g for p in posters for g in p.genres})


def genre_matrix(posters: list[Poster], names: list[str] | None = None) -> np.ndarray:
    """Multi-hot bool [N, G] over `names` (default: every genre present, sorted)."""
    names = names if names is not None else genre_names(posters)
    col = {g: i for i, g in enumerate(names)}
    out = np.zeros((len(posters), len(names)), bool)
    for i, p in enumerate(posters):
        out[i, [col[g] for g in p.genres]] = True
    return out


def subsample(posters: list[Poster], max_per_genre: int | None, seed: int = 0) -> list[Poster]:
    """At most `max_per_genre` posters picked per genre, deterministically: each genre's posters
    (sorted by movie_id) in an order drawn from a generator seeded by (seed, crc32(genre)), so one
    genre's pick does not depend on the other genres. A picked poster keeps all its genres, so a
    genre can end with more than `max_per_genre` posters picked through another genre."""
    if max_per_genre is None:
        return list(posters)
    keep: set[str] = set()
    for genre in genre_names(posters):
        ids = sorted(p.movie_id for p in posters if genre in p.genres)
        rng = np.random.default_rng([seed, zlib.crc32(genre.encode())])
        keep.update(ids[i] for i in rng.permutation(len(ids))[:max_per_genre])
    return [p for p in posters if p.movie_id in keep]


def describe(posters: list[Poster]) -> dict:
    """Counts for the results file: posters, posters per genre, multi-genre posters."""
    per_genre = {g: int(c) for g, c in zip(genre_names(posters), genre_matrix(posters).sum(0), strict=True)}
    return {"posters": len(posters), "genres": len(per_genre), "per_genre": per_genre,
            "multi_genre_posters": sum(len(p.genres) > 1 for p in posters)}


def link_tree(posters: list[Poster], dest: str | os.PathLike) -> str:
    """`dest/<Genre>/<file name>` symlinks (copies where links fail) to every poster, under each of
    its genres: the subsample as a folder `posters import --folders` reads. Replaces `dest`."""
    import shutil

    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    for p in posters:
        for g in p.genres:
            target = dest / g / p.path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.symlink_to(p.path.resolve())
            except OSError:
                shutil.copyfile(p.path, target)
    return str(dest)


def write_csv(posters: list[Poster], root: str | os.PathLike, csv_path: str | os.PathLike) -> str:
    """The posters as our CSV layout (`movie_id,title,year,genres,poster`, docs/data.md), `poster`
    relative to `root` (the `--images` folder), for `posters import --csv CSV --images ROOT`."""
    import csv

    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["movie_id", "title", "year", "genres", "poster"])
        for p in posters:
            w.writerow([p.movie_id, p.movie_id, 0, "|".join(p.genres), p.path.relative_to(root).as_posix()])
    return str(csv_path)


# --- scores -------------------------------------------------------------------------------------------
def genre_scores(emb: np.ndarray, genres: np.ndarray, names: list[str] | None = None, k: int = K,
                 min_posters: int = MIN_GENRE_POSTERS) -> dict:
    """macro / micro genre P@k, precision@k (shares a genre), MAP@R and the per-genre P@k (by genre
    name) of one embedding of the set, under the product's key names."""
    from poster_similarity.components.retrieval_metrics import genre_precision, retrieval_scores  # TFMA: ~30 s

    genres = np.asarray(genres, bool)
    gp = genre_precision(emb, genres, k, min_posters, per_genre=True)
    rs = retrieval_scores(emb, genres, ks=(k,))
    names = names or [str(i) for i in range(genres.shape[1])]
    return {f"macro_precision@{k}": gp[f"macro_precision@{k}"], f"micro_precision@{k}": gp[f"micro_precision@{k}"],
            f"precision@{k}": rs[f"precision@{k}"], "map@r": rs["map@r"],
            f"per_genre_precision@{k}": {names[g]: v for g, v in gp[f"per_genre_precision@{k}"].items()}}


# --- raw-pixel baseline -----------------------------------------------------------------------------------
def small_pixels(img, size: int = PIXEL_SIZE) -> np.ndarray:
    """A PIL image → its RGB pixels resized to size×size (bilinear, aspect ignored), float32 flat."""
    from PIL import Image

    return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), np.float32).reshape(-1)


def pixel_embeddings(pixels: np.ndarray) -> np.ndarray:
    """[N, D] raw pixels → minus the set's mean image (else every poster's nearest neighbours are
    the overall brightest/darkest ones), L2-normalised."""
    x = np.asarray(pixels, np.float32)
    x = x - x.mean(axis=0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def load_images(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(ok mask [N], small pixels [N, 32·32·3]) of the image files; files PIL cannot decode get
    ok=False and zero rows (the benchmark drops them from every embedding alike)."""
    from PIL import Image

    ok = np.ones(len(paths), bool)
    pix = np.zeros((len(paths), PIXEL_SIZE * PIXEL_SIZE * 3), np.float32)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img.load()
                pix[i] = small_pixels(img)
        except (OSError, ValueError, Image.DecompressionBombError):
            ok[i] = False
    return ok, pix

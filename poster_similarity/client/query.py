"""`posters query`: similar posters per image, a style mix (--mix) or recommendations (--history),
printed with titles and genres when `--catalogue` names the TFRecords."""
from __future__ import annotations

import argparse
import glob as globlib
import os
import sys
from collections.abc import Iterable

import numpy as np

from poster_similarity.client import PosterClient, ServerUnavailable, ServingError


def load_catalogue(pattern: str) -> dict[str, tuple[str, list[str]]]:
    """Titles and genres of the catalogue, to print beside the ids a query returns.

    Args:
        pattern: glob of TFRecord files in the data contract (imports TensorFlow to read them).

    Returns:
        movie_id → (title, genres).

    Raises:
        FileNotFoundError: no file matches `pattern`.
    """
    from poster_similarity.core import tfrecords

    if not globlib.glob(pattern):
        raise FileNotFoundError(f"--catalogue {pattern!r} matches no files")
    return {ex["movie_id"]: (ex["title"], ex["genres"]) for ex in tfrecords.read_examples(pattern) if ex["movie_id"]}


def format_results(header: str, rows: Iterable[tuple[str, float]],
                   catalogue: dict[str, tuple[str, list[str]]] | None) -> str:
    lines = [f"== {header} =="]
    for rank, (mid, score) in enumerate(rows, 1):
        if catalogue is not None:
            title, genres = catalogue.get(mid, ("?", []))
            lines.append(f"{rank:3d}. {mid:<12} {title[:40]:<40} {'|'.join(genres):<28} {score:8.4f}")
        else:
            lines.append(f"{rank:3d}. {mid:<12} {score:8.4f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """`posters query`: neighbours per image, a style mix (--mix), or recommendations (--history)."""
    images: list[str] = list(args.images or [])
    history: list[str] = list(getattr(args, "history", None) or [])
    if not images and not history:
        print("error: give poster image files and/or --history MOVIE_ID ...", file=sys.stderr)
        return 2
    if args.mix and len(images) < 1:
        print("error: --mix needs image files", file=sys.stderr)
        return 2
    blobs = []
    for path in images:
        if not os.path.isfile(path):
            print(f"error: image file not found: {path}", file=sys.stderr)
            return 2
        with open(path, "rb") as f:
            blobs.append(f.read())
    catalogue = None
    if getattr(args, "catalogue", None):
        try:
            catalogue = load_catalogue(args.catalogue)
        except (FileNotFoundError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    client = PosterClient(args.server, getattr(args, "model_name", "posters"),
                          protocol="grpc" if args.grpc else "rest")
    k = args.k
    blocks = []
    try:
        if blobs and args.mix:
            emb = client.embed(blobs)
            mean = emb.mean(axis=0)
            mean /= max(float(np.linalg.norm(mean)), 1e-12)
            rows = client.neighbors(mean, k)[0]
            blocks.append(format_results(f"style mix of {len(blobs)} images", rows, catalogue))
        elif blobs:
            for path, rows in zip(images, client.similar(blobs, k), strict=True):
                blocks.append(format_results(path, rows, catalogue))
        if history:
            rows = client.recommend([history], k)[0]
            blocks.append(format_results(f"recommendations after {' '.join(history)}", rows, catalogue))
    except ServerUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ServingError as e:
        print(f"error: the server rejected the request: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print("\n\n".join(blocks))
    return 0

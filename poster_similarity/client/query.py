"""`posters query`: similar posters per image, a style mix (--mix) or recommendations (--history),
printed with titles and genres when `--catalogue` names the TFRecords. Business rules (--genre,
--not-genre, --years, --tag, --not-tag, --exclude, --per-group) send the same queries to the model's
filtered signatures, which apply them inside the model: then -k is the model's k (≤ 1,000), and
fewer rows than k mean fewer posters satisfy the rules.

Exit status: 0 answered; 1 the server rejected the request; 2 a mistake in the arguments (checked
before anything is sent: `-k` < 1, a missing file or one that is not a JPEG/PNG/GIF/BMP image, a
catalogue glob matching nothing, an address without a port) or no server answers;
3 (`EXIT_HISTORY_UNKNOWN`) none of the `--history` ids is in the served catalogue: the rows printed
are the model's catalogue-wide fallback, not recommendations for that history (a warning says so).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable

from poster_similarity.client.checks import UsageError, check_catalogue, check_k, check_server, read_images
from poster_similarity.client.rules import MAX_K, QueryRules, parse_years

PROG = "posters query"
EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_HISTORY_UNKNOWN = 0, 1, 2, 3


def load_catalogue(pattern: str) -> dict[str, tuple[str, list[str]]]:
    """Titles and genres of the catalogue, to print beside the ids a query returns.

    Args:
        pattern: glob of TFRecord files in the data contract (imports TensorFlow to read them).

    Returns:
        movie_id → (title, genres).

    Raises:
        UsageError: no file matches `pattern`.
    """
    from poster_similarity.core import tfrecords

    check_catalogue(pattern)
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


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def rules_from_args(args: argparse.Namespace) -> QueryRules | None:
    """The business rules the flags ask for; None without any (today's signatures answer then).

    Raises:
        UsageError: a malformed --years, a negative --per-group, -k above the model's cap.
    """
    years = (0, 0)
    if getattr(args, "years", None):
        try:
            years = parse_years(args.years)
        except ValueError as e:
            raise UsageError(f"--{e}") from None
    per_group = int(getattr(args, "per_group", 0) or 0)
    if per_group < 0:
        raise UsageError(f"--per-group must be >= 0, got {per_group}")
    def flag(name: str) -> tuple[str, ...]:  # repeatable flags; Namespaces built by hand may lack them
        return tuple(getattr(args, name, None) or ())

    rules = QueryRules(genres=flag("genre"), not_genres=flag("not_genre"), years=years, tags=flag("tag"),
                       not_tags=flag("not_tag"), exclude=flag("exclude"), per_group=per_group)
    if not rules.any():
        return None
    if args.k > MAX_K:
        raise UsageError(f"-k must be <= {MAX_K} with business rules (the model's cap), got {args.k}")
    return rules


def check_args(args: argparse.Namespace) -> tuple[list[bytes], list[str]]:
    """Every argument mistake, before the server is asked or TensorFlow imported (the rules'
    too: `rules_from_args`).

    Returns:
        The images' bytes and the watch history.

    Raises:
        UsageError: one line naming the mistake.
    """
    images: list[str] = list(args.images or [])
    history = [h for h in (getattr(args, "history", None) or []) if h]
    if not images and not history:
        raise UsageError("give poster image files and/or --history MOVIE_ID ...")
    if args.mix and not images:
        raise UsageError("--mix needs image files")
    check_k(args.k)
    rules_from_args(args)
    check_server(args.server)
    check_catalogue(getattr(args, "catalogue", None))
    return read_images(images), history


def _history_status(history: list[str], used: list[int] | None) -> tuple[str, int]:
    """The heading's note and the exit status for a recommendation, from the model's `history_used`."""
    if not used:
        return "", EXIT_OK
    n, known = len(set(history)), used[0]
    if known == 0:
        _warn(f"none of the {n} --history id(s) is in the served catalogue; the rows below are the "
              f"model's catalogue-wide fallback, not recommendations (exit {EXIT_HISTORY_UNKNOWN})")
        return " (no id known: catalogue-wide fallback)", EXIT_HISTORY_UNKNOWN
    if known < n:
        _warn(f"the model used {known} of the {n} --history ids (ids not in its catalogue, or beyond its "
              "history window, are ignored)")
    return "", EXIT_OK


def ask(client, args: argparse.Namespace, blobs: list[bytes], history: list[str]) -> tuple[list[tuple[str, list]], int]:
    """The server's answers as (heading, rows) blocks, and the exit status they call for. With
    business rules, the filtered signatures answer and each heading names the rules."""
    import numpy as np

    k, blocks, status = args.k, [], EXIT_OK
    rules = rules_from_args(args)
    ruled = f" [{rules.describe()}]" if rules else ""
    if blobs and args.mix:
        emb = client.embed(blobs)
        mean = emb.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        rows = client.neighbors_filtered(mean, rules, k) if rules else client.neighbors(mean, k)
        blocks.append((f"style mix of {len(blobs)} images{ruled}", rows[0]))
    elif blobs:
        rows = client.similar_filtered(blobs, rules, k) if rules else client.similar(blobs, k)
        blocks += [(f"{name}{ruled}", r) for name, r in zip(args.images, rows, strict=True)]
    if history:
        recs = client.recommend_filtered([history], rules, k) if rules else client.recommend([history], k)
        note, status = _history_status(history, recs.history_used)
        blocks.append((f"recommendations after {' '.join(history)}{note}{ruled}", recs[0]))
    longest = max((len(rows) for _, rows in blocks), default=0)
    fewest = min((len(rows) for _, rows in blocks), default=k)
    if blocks and rules and fewest < k:
        _warn(f"-k {k}: only {fewest} posters satisfy the rules for at least one query")
    elif blocks and longest < k:
        _warn(f"-k {k}: the served model returned at most {longest} results per query")
    return blocks, status


def main(args: argparse.Namespace) -> int:
    """`posters query`: neighbours per image, a style mix (--mix), or recommendations (--history).

    Returns:
        The exit status (module docstring).
    """
    try:
        blobs, history = check_args(args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from poster_similarity.client.poster_client import PosterClient, ServerUnavailable, ServingError

    client = PosterClient(args.server, getattr(args, "model_name", "posters"),
                          protocol="grpc" if args.grpc else "rest")
    # This command prints its own one-line warning for an unknown history: keep the client's log quiet.
    logging.getLogger("poster_similarity.client.poster_client").addHandler(logging.NullHandler())
    try:
        blocks, status = ask(client, args, blobs, history)
    except ServerUnavailable as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ServingError as e:
        print(f"{PROG}: error: the server rejected the request: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_REJECTED
    finally:
        client.close()
    catalogue = load_catalogue(args.catalogue) if getattr(args, "catalogue", None) else None
    print("\n\n".join(format_results(header, rows, catalogue) for header, rows in blocks))
    return status

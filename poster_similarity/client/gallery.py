"""`posters gallery`: a static, offline HTML page (+ PNG contact sheet) of what the served model answers.

Every neighbour on the page comes from the running model server through `PosterClient` (REST, or
gRPC with `--grpc`): `similar` for the query rows, `embed` + `neighbors` for the style mix,
`recommend` for "Because you watched", `similar_filtered` for the row under business rules ("Horror
like this, 1980–1999, max 1 per series"; left out when the model has no filtered signatures). The
catalogue TFRecords only supply the pictures, titles, genres, years and series. Output:

    DIR/index.html          the page (inline CSS, no external resources)
    DIR/contact_sheet.png   the same rows drawn with Pillow
    DIR/gallery.json        the raw answers (ids, scores) + the choices made, for tools and tests
    DIR/img/<id>.jpg        every catalogue poster shown

No TFX import; TensorFlow is imported only inside `core.tfrecords` to read the catalogue. The page
itself is drawn by `client.gallery_page`.
"""
from __future__ import annotations

import argparse
import glob as globlib
import hashlib
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from poster_similarity.client.checks import UsageError, check_catalogue, check_file, check_server
from poster_similarity.client.gallery_page import (
    METRICS,
    K,
    Poster,
    Row,
    fmt_metric,
    render_contact_sheet,
    render_html,
    write_images,
)
from poster_similarity.client.rules import QueryRules

MAX_DUPLICATE_GROUPS = 24  # "duplicates found" panel: the first groups of the import report

# --- catalogue --------------------------------------------------------------------------------------

def read_catalogue(pattern: str) -> list[Poster]:
    """Metadata of every catalogue poster (image bytes are dropped: see `read_images`)."""
    from poster_similarity.core import tfrecords

    if not globlib.glob(pattern):
        raise FileNotFoundError(f"--catalogue {pattern!r} matches no files")
    out, seen = [], set()
    for ex in tfrecords.read_examples(pattern):
        mid = ex["movie_id"]
        if mid and mid not in seen:
            seen.add(mid)
            out.append(Poster(mid, ex["title"], list(ex["genres"]), int(ex["year"] or 0), ex.get("group") or ""))
    return out


def read_images(pattern: str, ids: Iterable[str]) -> dict[str, bytes]:
    """Encoded image bytes of the given ids (a second streaming pass: big catalogues stay off RAM)."""
    from poster_similarity.core import tfrecords

    want = set(ids)
    out: dict[str, bytes] = {}
    for ex in tfrecords.read_examples(pattern):
        if ex["movie_id"] in want and ex["movie_id"] not in out:
            out[ex["movie_id"]] = ex["image"]
            if len(out) == len(want):
                break
    return out


# --- deterministic choices (pure) -------------------------------------------------------------------

def _key(seed: int, movie_id: str) -> str:
    return hashlib.sha1(f"{seed}:{movie_id}".encode()).hexdigest()


def spread_order(catalogue: Sequence[Poster], seed: int = 0) -> list[Poster]:
    """All posters, round-robin over primary genres (genres sorted by name, posters by a seeded hash).

    The first n of this order are n query posters spread across genres; the same catalogue and seed
    always give the same order, whatever the order of the TFRecords.
    """
    by_genre: dict[str, list[Poster]] = defaultdict(list)
    for p in catalogue:
        by_genre[p.primary].append(p)
    queues = [sorted(by_genre[g], key=lambda p: (_key(seed, p.movie_id), p.movie_id)) for g in sorted(by_genre)]
    out: list[Poster] = []
    depth = 0
    while len(out) < len(catalogue):
        for q in queues:
            if depth < len(q):
                out.append(q[depth])
        depth += 1
    return out


def choose_queries(catalogue: Sequence[Poster], n: int, seed: int = 0) -> list[Poster]:
    return spread_order(catalogue, seed)[:max(0, n)]


def choose_mix(catalogue: Sequence[Poster], exclude: Iterable[str] = (), seed: int = 0) -> tuple[Poster, Poster] | None:
    """Two posters for the style mix: genres as different as possible (disjoint, else other primary)."""
    skip = set(exclude)
    pool = [p for p in spread_order(catalogue, seed) if p.movie_id not in skip] or list(spread_order(catalogue, seed))
    if len(pool) < 2:
        return None
    a = pool[0]
    for cond in (lambda p: not set(p.genres) & set(a.genres), lambda p: p.primary != a.primary, lambda p: True):
        for b in pool[1:]:
            if cond(b):
                return a, b
    return None


def choose_history(catalogue: Sequence[Poster], exclude: Iterable[str] = (), size: int = 3,
                   seed: int = 0) -> list[Poster]:
    """A short watch history: `size` posters of the catalogue's most common primary genre."""
    skip = set(exclude)
    counts = Counter(p.primary for p in catalogue)
    if not counts:
        return []
    genre = sorted(counts, key=lambda g: (-counts[g], g))[0]
    pool = [p for p in spread_order(catalogue, seed) if p.primary == genre]
    fresh = [p for p in pool if p.movie_id not in skip]
    return (fresh + [p for p in pool if p.movie_id in skip])[:size]


def choose_filtered(catalogue: Sequence[Poster], query: Poster, k: int = K) -> QueryRules:
    """The filtered row's rules for `query`: its primary genre, the 20-year window holding its year
    (widened 20 years a side at a time until k other posters qualify; none for an unknown year),
    at most 1 per series when the catalogue has series, the query itself excluded."""
    grouped = any(p.group for p in catalogue)
    same = [p for p in catalogue if p.movie_id != query.movie_id and query.primary in p.genres]

    def placeable(lo: int, hi: int) -> int:  # posters the rules would allow, 1 per series
        hits = [p for p in same if lo <= p.year <= hi]
        return len({p.group for p in hits if p.group}) + sum(not p.group for p in hits) if grouped else len(hits)

    years = (0, 0)
    if query.year:
        lo = query.year // 20 * 20
        for widen in range(0, 101, 20):
            if placeable(lo - widen, lo + 19 + widen) >= k:
                years = (lo - widen, lo + 19 + widen)
                break
    return QueryRules(genres=(query.primary,), years=years, exclude=(query.movie_id,), per_group=1 if grouped else 0)


# --- answers from the server ------------------------------------------------------------------------

def ask_server(client, catalogue: Sequence[Poster], images: dict[str, bytes], queries: Sequence[Poster],
               mix: tuple[Poster, Poster] | None, history: Sequence[Poster], k: int = K,
               filtered: tuple[Poster, QueryRules] | None = None) -> list[Row]:
    """All rows of the page, answered by the served model (`filtered`: one poster and its rules)."""
    import numpy as np

    rows: list[Row] = []
    if queries:
        answers: list[list[tuple[str, float]]] = []
        for start in range(0, len(queries), 16):
            chunk = queries[start:start + 16]
            answers += client.similar([images[p.movie_id] for p in chunk], k)
        for i, (p, ans) in enumerate(zip(queries, answers, strict=True), 1):
            rows.append(Row("query", f"Query {i}: {p.title or p.movie_id}", [p.movie_id], ans, [set(p.genres)]))
    if mix is not None:
        emb = np.asarray(client.embed([images[mix[0].movie_id], images[mix[1].movie_id]]), dtype=np.float32)
        mean = emb.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        ans = client.neighbors(mean, k)[0]
        heading = f"{mix[0].title or mix[0].movie_id} ({mix[0].primary}) + {mix[1].title or mix[1].movie_id} " \
                  f"({mix[1].primary})"
        rows.append(Row("mix", heading, [mix[0].movie_id, mix[1].movie_id], ans,
                        [set(mix[0].genres), set(mix[1].genres)]))
    if history:
        ans = client.recommend([[p.movie_id for p in history]], k)[0]
        common = Counter(g for p in history for g in p.genres).most_common(1)[0][0]
        heading = "Watched " + ", ".join(p.title or p.movie_id for p in history) + f" (mostly {common})"
        rows.append(Row("history", heading,
                        [p.movie_id for p in history], ans, [set(p.genres) for p in history]))
    if filtered is not None:
        rows += _filtered_row(client, images, *filtered, k)
    return rows


def _filtered_row(client, images: dict[str, bytes], p: Poster, rules: QueryRules, k: int) -> list[Row]:
    """The row under business rules; none when the served model has no filtered signatures (an
    export older than them): the page shows what the model can answer."""
    from poster_similarity.client.poster_client import ServingError

    try:
        ans = client.similar_filtered([images[p.movie_id]], rules, k)[0]
    except ServingError as e:
        if "not found in signature def" in e.message:
            return []
        raise
    heading = replace(rules, exclude=()).describe(like=p.title or p.movie_id)  # not "1 excluded": itself
    return [Row("filtered", heading, [p.movie_id], ans, [set(rules.genres)])]


def served_version(client) -> str | None:
    try:
        st = client.status()
    except Exception:  # the page still renders without it
        return None
    versions = [str(v.get("version")) for v in st.get("model_version_status", [])
                if str(v.get("state", "")).upper() == "AVAILABLE"]
    return versions[0] if versions else None


# --- driver -----------------------------------------------------------------------------------------

def read_duplicate_groups(report_path: str | None, limit: int = MAX_DUPLICATE_GROUPS) -> list[list[str]]:
    """The first `limit` near-duplicate groups (movie ids) of an import report (`report.json`)."""
    if not report_path:
        return []
    with open(report_path) as f:
        report = json.load(f)
    groups = report.get("near_duplicates") if isinstance(report, dict) else None
    if not isinstance(groups, list):
        raise ValueError(f"--import-report {report_path}: no near_duplicates list (not an import report.json?)")
    return [[str(m) for m in g.get("movie_ids", [])] for g in groups[:limit] if isinstance(g, dict)]


def build_gallery(client, catalogue_glob: str, out_dir: str, *, queries: int = 6, metrics_path: str | None = None,
                  seed: int = 0, k: int = K, import_report: str | None = None) -> str:
    """Ask the server, write DIR/index.html + contact_sheet.png + gallery.json + img/; returns index.html.
    `import_report`: an import report.json whose near-duplicate groups get a "duplicates found" panel."""
    metrics_doc = None
    if metrics_path:
        with open(metrics_path) as f:
            metrics_doc = json.load(f)
    catalogue_list = read_catalogue(catalogue_glob)
    if not catalogue_list:
        raise ValueError(f"--catalogue {catalogue_glob!r} holds no posters")
    qs = choose_queries(catalogue_list, queries, seed)
    used = {p.movie_id for p in qs}
    mix = choose_mix(catalogue_list, used, seed)
    used |= {p.movie_id for p in mix or ()}
    history = choose_history(catalogue_list, used, 3, seed)
    inputs = [p.movie_id for p in qs] + [p.movie_id for p in mix or ()] + [p.movie_id for p in history]
    images = read_images(catalogue_glob, inputs)

    filtered = (qs[0], choose_filtered(catalogue_list, qs[0], k)) if qs else None
    rows = ask_server(client, catalogue_list, images, qs, mix, history, k, filtered)
    version = served_version(client)

    dup_groups = read_duplicate_groups(import_report)
    shown = list(dict.fromkeys(inputs + [mid for r in rows for mid, _ in r.neighbors]
                               + [m for g in dup_groups for m in g]))
    images.update(read_images(catalogue_glob, [m for m in shown if m not in images]))
    os.makedirs(out_dir, exist_ok=True)
    srcs = write_images(images, shown, os.path.join(out_dir, "img"))
    catalogue = {p.movie_id: p for p in catalogue_list}
    server = getattr(client, "server", "?")
    protocol = getattr(client, "protocol", "rest")
    model_name = getattr(client, "model_name", "posters")
    page = render_html(rows, catalogue, srcs, model_name=model_name, server=server, protocol=protocol,
                       version=version, metrics_doc=metrics_doc, catalogue_size=len(catalogue_list),
                       duplicate_groups=dup_groups)
    index = os.path.join(out_dir, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(page)
    m = (metrics_doc or {}).get("metrics") or {}
    line = ""
    if metrics_doc is not None:
        line = ("blessed" if metrics_doc.get("blessed") else "NOT blessed") + f" · version {version or '?'} · " + \
               "held-out retrieval, relevant = shares a genre: " + \
               " · ".join(f"{label} {fmt_metric(m.get(key))}" for key, label in METRICS if key in m)
    render_contact_sheet(rows, catalogue, images, os.path.join(out_dir, "contact_sheet.png"), line)
    with open(os.path.join(out_dir, "gallery.json"), "w") as f:
        json.dump({
            "model_name": model_name, "server": server, "protocol": protocol, "served_version": version,
            "catalogue": catalogue_glob, "catalogue_size": len(catalogue_list),
            "blessed": (metrics_doc or {}).get("blessed"), "metrics": m,
            "rows": [{"kind": r.kind, "heading": r.heading, "inputs": r.inputs,
                      "neighbors": [[mid, score] for mid, score in r.neighbors]} for r in rows],
        }, f, indent=1)
    return index


def check_args(args: argparse.Namespace) -> None:
    """Argument mistakes, before TensorFlow reads the catalogue (~10 s) or the server is asked.

    Raises:
        UsageError: one line naming the mistake.
    """
    check_server(args.server)
    if args.queries < 0:
        raise UsageError(f"--queries must be >= 0, got {args.queries}")
    check_catalogue(args.catalogue)
    check_file(getattr(args, "metrics", None), "--metrics")
    check_file(getattr(args, "import_report", None), "--import-report")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: a file, not a folder")


def main(args: argparse.Namespace) -> int:
    """`posters gallery`: 0 written; 1 the server rejected a request; 2 an argument mistake or no server."""
    try:
        check_args(args)
    except UsageError as e:
        print(f"posters gallery: error: {e}", file=sys.stderr)
        return 2
    from poster_similarity.client.poster_client import PosterClient, ServerUnavailable, ServingError

    protocol = "grpc" if getattr(args, "grpc", False) else "rest"
    client = PosterClient(args.server, args.model_name, protocol=protocol)
    try:
        index = build_gallery(client, args.catalogue, args.out, queries=args.queries,
                              metrics_path=getattr(args, "metrics", None), seed=getattr(args, "seed", 0),
                              import_report=getattr(args, "import_report", None))
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as e:
        print(f"posters gallery: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except ServerUnavailable as e:
        print(f"posters gallery: error: {e}", file=sys.stderr)
        return 2
    except ServingError as e:
        print(f"posters gallery: error: the server rejected a request: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(os.path.abspath(index))
    return 0

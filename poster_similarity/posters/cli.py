"""`posters`: the one command-line entry point.

Each subcommand imports its heavy dependencies lazily, so `posters query` / `serve` / `gallery`
never pay the ~37 s `tfx.v1` import (measured in docs/development.md). Commands are quiet: the
TensorFlow C++ start-up lines (CUDA factory registration, CPU feature notes) and google-api-core's
Python-version FutureWarning are hidden unless `-v/--verbose` is given. TensorFlow reads
`TF_CPP_MIN_LOG_LEVEL` once, when it is first imported, so `quiet()` runs before any subcommand
imports it; the environment variables also reach child processes (Beam workers, a served model).
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import warnings

# The FutureWarning google-api-core emits on import under Python 3.10 (a supported version here).
_API_CORE_WARNING_MODULE = "google.api_core._python_version_support"


def quiet(verbose: bool) -> None:
    """Silence (or, verbose, restore) TensorFlow's C++ logs and third-party start-up warnings.

    Args:
        verbose: True brings back every TensorFlow log line (`TF_CPP_MIN_LOG_LEVEL=0`) and the
            project's and libraries' INFO logs; False hides TensorFlow's C++ logs below FATAL unless
            the caller set `TF_CPP_MIN_LOG_LEVEL` itself.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        logging.basicConfig(level=logging.INFO)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore", category=FutureWarning, module=_API_CORE_WARNING_MODULE.rsplit(".", 1)[0])
        opt = f"ignore::FutureWarning:{_API_CORE_WARNING_MODULE}"
        os.environ["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), opt) if w)
    from poster_similarity.core.logs import show_progress

    show_progress()


def _lazy(module: str):
    """A subcommand handler that imports `module` only when that subcommand runs."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).main(args)

    return handler


def _bench(extra: list[str]) -> int:
    """`python -m bench.run_all EXTRA…`: the benchmarks import the product, never the reverse."""
    return subprocess.call([sys.executable, "-m", "bench.run_all", *extra])


def _add_import(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`posters import`: exactly one input, `--csv` (+ `--images`) or `--folders` (docs/data.md)."""
    s = sub.add_parser("import", parents=[common],
                       help="import a poster CSV + image folder, or a folder per genre, into TFRecords")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="our CSV (movie_id,title,year,genres,poster) or Kaggle MovieGenre.csv")
    source.add_argument("--folders", metavar="DIR", help="a folder per genre, DIR/<Genre>/<movie_id>.jpg "
                        "(image_dataset_from_directory's layout; a poster in several folders gets all their genres)")
    s.add_argument("--images", help="with --csv: folder holding the poster files")
    s.add_argument("--out", required=True, help="output folder (written atomically)")
    s.add_argument("--shards", type=int, default=4)
    s.add_argument("--gzip", action="store_true", help="GZIP-compress the TFRecords")
    s.add_argument("--min-size", type=int, default=32, help="reject images whose shorter side is smaller")
    s.add_argument("--max-pixels", type=int, default=1 << 24,
                   help="reject images whose header declares more pixels (default 4096x4096, as Transform and serving)")
    s.set_defaults(func=_lazy("poster_similarity.datatools.ingest"))


def build_parser() -> argparse.ArgumentParser:
    """The `posters` parser: one subparser per command, each with `-v/--verbose`.

    Returns:
        The parser; each subcommand sets `func`, a handler taking the parsed namespace.
    """
    p = argparse.ArgumentParser(prog="posters", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's and the libraries' logs")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", parents=[common],
                       help="generate synthetic genre-styled posters (+CSV, optional TFRecords)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, default=400, help="number of posters")
    s.add_argument("--size", default="200x300", help="WxH of each poster (2:3 portrait)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tfrecords", action="store_true", help="also write TFRecords (data contract)")
    s.add_argument("--palette", choices=("graded", "genre"), default="graded",
                   help="graded (default): colour grades hide each genre's colours; genre: genres in their own colours")
    s.set_defaults(func=_lazy("poster_similarity.datatools.sample_data"))

    _add_import(sub, common)

    s = sub.add_parser("run", parents=[common],
                       help="run the TFX pipeline locally (LocalDagRunner, sqlite ML Metadata)")
    s.add_argument("--data", required=True, help="folder of training TFRecords in the data contract")
    s.add_argument("--catalogue", "--catalog", help="folder of TFRecords of the posters to recommend "
                   "(default: the training data); a new catalogue alone re-runs only the index branch")
    s.add_argument("--workdir", required=True, help="pipeline root, metadata.sqlite and serving_model/")
    s.add_argument("--config", help="YAML/JSON config file (defaults: poster_similarity/core/config.py)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    s.set_defaults(func=_lazy("poster_similarity.local_runner"))

    s = sub.add_parser("validate", parents=[common],
                       help="CD gate: retrieval metrics + thresholds; exit 0 pass, 1 fail, 2 bad input")
    s.add_argument("--model", required=True, help="exported SavedModel directory")
    s.add_argument("--examples", required=True, help="glob of TFRecord files (data contract)")
    s.add_argument("--baseline", help="baseline SavedModel for the change threshold")
    s.add_argument("--thresholds", help="YAML/JSON file of thresholds (defaults from the config)")
    s.set_defaults(func=_lazy("poster_similarity.pipeline.validate"))

    s = sub.add_parser("promote", parents=[common],
                       help="CD gate: move a version label (stable) to a candidate version if it passes; "
                            "exit 0 promoted, 1 rejected, 2 bad input")
    s.add_argument("--model-config-file", required=True, help="models.config (ModelServerConfig text proto)")
    s.add_argument("--model-name", default="posters")
    s.add_argument("--candidate", required=True, type=int, help="version number to promote")
    s.add_argument("--examples", required=True, help="glob of held-out TFRecord files (data contract)")
    s.add_argument("--label", default="stable", help="label to move (default stable)")
    s.add_argument("--baseline-label", default="stable",
                   help="label of the version to compare with ('' = absolute thresholds only)")
    s.add_argument("--thresholds", help="YAML/JSON file of thresholds (defaults from the config)")
    s.add_argument("--model-base-path", help="version folders on this machine, if not the config's base_path")
    s.set_defaults(func=_lazy("poster_similarity.pipeline.promote"))

    s = sub.add_parser("serve", parents=[common],
                       help="serve a versioned model base path with TF Serving's REST + gRPC API")
    from poster_similarity.serving.server.main import add_serve_arguments

    add_serve_arguments(s)
    s.set_defaults(func=_lazy("poster_similarity.serving.server.main"))

    s = sub.add_parser("query", parents=[common],
                       help="query a running server: similar posters, style mix, recommendations")
    s.add_argument("images", nargs="*", help="poster image files")
    s.add_argument("--history", nargs="*", default=[], help="watched movie ids → recommendations")
    s.add_argument("--mix", action="store_true", help="average the images' embeddings (style mix)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--server", default="localhost:8501", help="host:port of REST (or gRPC with --grpc)")
    s.add_argument("--grpc", action="store_true", help="use gRPC instead of REST")
    s.add_argument("--model-name", default="posters")
    s.add_argument("--catalogue", "--catalog", help="TFRecords glob to show titles/genres for ids")
    s.set_defaults(func=_lazy("poster_similarity.client.query"))

    s = sub.add_parser("gallery", parents=[common],
                       help="HTML gallery (+PNG contact sheet) of neighbours from the served model")
    s.add_argument("--server", default="localhost:8501")
    s.add_argument("--model-name", default="posters")
    s.add_argument("--catalogue", "--catalog", required=True, help="TFRecords glob of the catalogue (posters shown)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--queries", type=int, default=6)
    s.add_argument("--metrics", help="metrics/gate JSON to show at the top")
    s.add_argument("--grpc", action="store_true", help="use gRPC instead of REST (--server is the gRPC port)")
    s.add_argument("--seed", type=int, default=0, help="seed of the deterministic choice of sample posters")
    s.set_defaults(func=_lazy("poster_similarity.client.gallery"))

    s = sub.add_parser("bench", help="benchmarks (bench/run_all.py): --quick, --only ann,serving,…",
                       add_help=False)
    s.set_defaults(func=None)

    return p


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, quiet the libraries and run the subcommand.

    Args:
        argv: arguments after `posters`; None reads `sys.argv[1:]`.

    Returns:
        The subcommand's exit status (0 = success).
    """
    args, extra = build_parser().parse_known_args(argv)
    if args.command == "bench":
        return int(_bench(extra) or 0)
    if extra:
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    quiet(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

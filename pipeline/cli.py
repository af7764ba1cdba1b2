"""`posters`: the one command-line entry point.

Each subcommand imports its heavy dependencies lazily, so `posters query` / `serve` / `gallery`
never pay the ~37 s `tfx.v1` import (see FINDINGS.md).
"""
from __future__ import annotations

import argparse
import sys


def _lazy(module: str):
    """A subcommand handler that imports `module` only when that subcommand runs."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).main(args)

    return handler


def _bench(extra: list[str]) -> int:
    from bench import run_all

    return run_all.main(extra)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posters", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="generate synthetic genre-styled posters (+CSV, optional TFRecords)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, default=400, help="number of posters")
    s.add_argument("--size", default="200x300", help="WxH of each poster (2:3 portrait)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tfrecords", action="store_true", help="also write TFRecords (data contract)")
    s.add_argument("--palette", choices=("graded", "genre"), default="graded",
                   help="graded (default): colour grades hide each genre's colours; genre: genres in their own colours")
    s.set_defaults(func=_lazy("pipeline.sample_data"))

    s = sub.add_parser("import", help="import a poster CSV + image folder into TFRecords")
    s.add_argument("--csv", required=True, help="our CSV (movie_id,title,year,genres,poster) or Kaggle MovieGenre.csv")
    s.add_argument("--images", required=True, help="folder holding the poster files")
    s.add_argument("--out", required=True, help="output folder (written atomically)")
    s.add_argument("--shards", type=int, default=4)
    s.add_argument("--gzip", action="store_true", help="GZIP-compress the TFRecords")
    s.add_argument("--min-size", type=int, default=32, help="reject images whose shorter side is smaller")
    s.set_defaults(func=_lazy("pipeline.ingest"))

    s = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner, sqlite ML Metadata)")
    s.add_argument("--data", required=True, help="folder of TFRecords in the data contract")
    s.add_argument("--workdir", required=True, help="pipeline root, metadata.sqlite and serving_model/")
    s.add_argument("--config", help="YAML/JSON config file (defaults: pipeline/config.py)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    s.set_defaults(func=_lazy("pipeline.local_runner"))

    s = sub.add_parser("validate", help="CD gate: retrieval metrics + thresholds; exit 0 pass, 1 fail, 2 bad input")
    s.add_argument("--model", required=True, help="exported SavedModel directory")
    s.add_argument("--examples", required=True, help="glob of TFRecord files (data contract)")
    s.add_argument("--baseline", help="baseline SavedModel for the change threshold")
    s.add_argument("--thresholds", help="YAML/JSON file of thresholds (defaults from the config)")
    s.set_defaults(func=_lazy("pipeline.validate"))

    s = sub.add_parser("serve", help="serve a versioned model base path with TF Serving's REST + gRPC API")
    from serving.server.main import add_serve_arguments

    add_serve_arguments(s)
    s.set_defaults(func=_lazy("serving.server.main"))

    s = sub.add_parser("query", help="query a running server: similar posters, style mix, recommendations")
    s.add_argument("images", nargs="*", help="poster image files")
    s.add_argument("--history", nargs="*", default=[], help="watched movie ids → recommendations")
    s.add_argument("--mix", action="store_true", help="average the images' embeddings (style mix)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--server", default="localhost:8501", help="host:port of REST (or gRPC with --grpc)")
    s.add_argument("--grpc", action="store_true", help="use gRPC instead of REST")
    s.add_argument("--model-name", default="posters")
    s.add_argument("--catalog", help="TFRecords glob to show titles/genres for ids")
    s.set_defaults(func=_lazy("serving.client"))

    s = sub.add_parser("gallery", help="HTML gallery (+PNG contact sheet) of neighbours from the served model")
    s.add_argument("--server", default="localhost:8501")
    s.add_argument("--model-name", default="posters")
    s.add_argument("--catalog", required=True, help="TFRecords glob of the catalogue (posters shown)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--queries", type=int, default=6)
    s.add_argument("--metrics", help="metrics/gate JSON to show at the top")
    s.add_argument("--grpc", action="store_true", help="use gRPC instead of REST (--server is the gRPC port)")
    s.add_argument("--seed", type=int, default=0, help="seed of the deterministic choice of sample posters")
    s.set_defaults(func=_lazy("serving.gallery"))

    s = sub.add_parser("bench", help="benchmarks (bench/run_all.py): --quick, --only ann,serving,…",
                       add_help=False)
    s.set_defaults(func=None)

    return p


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if args.command == "bench":
        return int(_bench(extra) or 0)
    if extra:
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

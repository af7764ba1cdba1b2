"""`posters`: the one command-line entry point.

Each subcommand imports its heavy dependencies lazily, so `posters query` / `serve` / `gallery`
never pay the ~37 s `tfx.v1` import (measured in docs/development.md). Commands are quiet: the
TensorFlow C++ start-up lines (CUDA factory registration, CPU feature notes) and google-api-core's
Python-version FutureWarning are hidden unless `-v/--verbose` is given. TensorFlow reads
`TF_CPP_MIN_LOG_LEVEL` once, when it is first imported, so `quiet()` runs before any subcommand
imports it; the environment variables also reach child processes (Beam workers, a served model).

Errors follow one contract (posters/errors.py, docs/cli.md): a user mistake is one stderr line
`posters <cmd>: error: …` and exit 2, found before any expensive import; a runtime failure is one
line naming its traceback's log and exit 1 (`-v`: the traceback itself).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from poster_similarity.posters.errors import (
    EXIT_INTERRUPTED,
    DefaultsFormatter,
    OneLineParser,
    UsageError,
    mistake_types,
    report_failure,
    report_mistake,
)

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
    """`posters bench ARGS…` = `python -m bench.run_all ARGS…` of the source checkout, named
    `posters bench` in its help and errors (argparse takes its name from sys.argv[0]).

    The benchmarks are not installed (they import the product, never the reverse): an installed
    wheel has none, which is said in one line (exit 2) instead of "No module named bench". The
    checkout's `bench` package is registered by its file location, not found on sys.path, so no
    other distribution's `bench` can stand in for it.
    """
    import importlib.util
    import runpy

    from poster_similarity.posters.checks import BENCH_ENTRY, checkout_root

    root = checkout_root()
    if root is None:
        return report_mistake("bench", UsageError(
            "the benchmarks are in the source checkout (bench/ beside poster_similarity/), not in this "
            "installation: run posters bench from a clone of the repository installed with pip install -e"))
    folder = os.path.join(root, os.path.dirname(BENCH_ENTRY))
    spec = importlib.util.spec_from_file_location("bench", os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    package = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = package
    spec.loader.exec_module(package)
    saved = sys.argv[:]
    sys.argv = ["posters bench", *extra]
    try:
        runpy.run_module("bench.run_all", run_name="__main__", alter_sys=False)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def _version() -> str:
    """The installed distribution's version (setup.py), for `posters --version`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("poster-similarity")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _command(sub: argparse._SubParsersAction, name: str, common: argparse.ArgumentParser, help: str,
             **kwargs) -> argparse.ArgumentParser:
    """A subcommand parser with `-v`, one-line errors and every flag's default in its help."""
    return sub.add_parser(name, parents=[common], help=help, description=help[:1].upper() + help[1:] + ".",
                          formatter_class=DefaultsFormatter, **kwargs)


PLACEHOLDER_MIN_IDS = 4  # datatools.near_duplicates.PLACEHOLDER_MIN_IDS (not imported: help stays instant)


def _add_import(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`posters import`: exactly one input, `--csv` (+ `--images`) or `--folders` (docs/data.md)."""
    s = _command(sub, "import", common, "import a poster CSV + image folder, or a folder per genre, into TFRecords")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="our CSV (movie_id,title,year,genres,poster) or Kaggle MovieGenre.csv")
    source.add_argument("--folders", metavar="DIR", help="a folder per genre, DIR/<Genre>/<movie_id>.jpg "
                        "(image_dataset_from_directory's layout; a poster in several folders gets all their genres)")
    s.add_argument("--images", help="with --csv: folder holding the poster files")
    s.add_argument("--out", required=True, help="output folder (written atomically)")
    s.add_argument("--shards", type=int, default=4, help="number of TFRecord files written")
    s.add_argument("--gzip", action="store_true", help="GZIP-compress the TFRecords")
    s.add_argument("--min-size", type=int, default=32, help="reject images whose shorter side is smaller (pixels)")
    s.add_argument("--max-pixels", type=int, default=1 << 24,
                   help="reject images whose header declares more pixels (default 4096x4096 = %(default)s, "
                        "as Transform and serving)")
    s.add_argument("--placeholder-min-ids", type=int, default=PLACEHOLDER_MIN_IDS, metavar="N",
                   help="one artwork shared by more than N movie ids is a placeholder ('no image' card, logo)")
    s.add_argument("--keep-placeholders", action="store_true",
                   help="import placeholder posters anyway (they are rejected as placeholder_image by default)")
    s.set_defaults(func=_lazy("poster_similarity.datatools.ingest"))


def _add_pipeline_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`posters run`, `validate`, `promote`: the pipeline and its two CD gates."""
    s = _command(sub, "run", common, "run the TFX pipeline locally (LocalDagRunner, sqlite ML Metadata)")
    s.add_argument("--data", required=True, help="folder of training TFRecords (*.tfrecord*) in the data contract")
    s.add_argument("--catalogue", "--catalog", help="folder of TFRecords of the posters to recommend "
                   "(default: the training data); a new catalogue alone re-runs only the index branch")
    s.add_argument("--workdir", required=True, help="pipeline root, metadata.sqlite and serving_model/")
    s.add_argument("--config", help="YAML/JSON config file (default: the defaults in poster_similarity/core/config.py)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. batch_size=16 or index.kind=brute_force (repeatable)")
    s.set_defaults(func=_lazy("poster_similarity.local_runner"))

    s = _command(sub, "validate", common, "CD gate: retrieval metrics + thresholds; exit 0 pass, 1 fail, 2 bad input")
    s.add_argument("--model", required=True, help="exported SavedModel directory")
    s.add_argument("--examples", required=True, help="glob of TFRecord files (data contract)")
    s.add_argument("--baseline", help="baseline SavedModel for the change threshold")
    s.add_argument("--thresholds", help="YAML/JSON file of thresholds (default: the config's gates)")
    s.set_defaults(func=_lazy("poster_similarity.pipeline.validate"))

    s = _command(sub, "promote", common, "CD gate: move a version label (stable) to a candidate version if it "
                 "passes; exit 0 promoted, 1 rejected, 2 bad input")
    s.add_argument("--model-config-file", required=True, help="models.config (ModelServerConfig text proto)")
    s.add_argument("--model-name", default="posters", help="the model's name in the config")
    s.add_argument("--candidate", required=True, type=int, help="version number to promote")
    s.add_argument("--examples", required=True, help="glob of held-out TFRecord files (data contract)")
    s.add_argument("--label", default="stable", help="label to move")
    s.add_argument("--baseline-label", default="stable",
                   help="label of the version to compare with ('' = absolute thresholds only)")
    s.add_argument("--thresholds", help="YAML/JSON file of thresholds (default: the config's gates)")
    s.add_argument("--model-base-path", help="version folders on this machine, if not the config's base_path")
    s.set_defaults(func=_lazy("poster_similarity.pipeline.promote"))


def _add_serving_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
                          with_serve_flags: bool = True) -> None:
    """`posters serve`, `query`, `gallery`: the model server and the two apps that ask it.

    `with_serve_flags=False` leaves out `serve`'s own flags: they come from the server's module,
    whose import (numpy's, ~0.3 s) every other command would pay for nothing, mistakes included.
    """
    s = _command(sub, "serve", common, "serve a versioned model base path with TF Serving's REST + gRPC API")
    if with_serve_flags:
        from poster_similarity.serving.server.main import add_serve_arguments

        add_serve_arguments(s)
        for action in s._actions:  # the server's flags that have no help text still show their default
            if action.help is None and action.default is not None and action.default is not False:
                action.help = "(default: %(default)s)"
    s.set_defaults(func=_lazy("poster_similarity.serving.server.main"))

    s = _command(sub, "query", common, "query a running server: similar posters, style mix, recommendations")
    s.add_argument("images", nargs="*", help="poster image files (JPEG, PNG, GIF or BMP)")
    s.add_argument("--history", nargs="*", default=[], help="watched movie ids → recommendations (exit 3 "
                   "when none is in the served catalogue)")
    s.add_argument("--mix", action="store_true", help="average the images' embeddings (style mix)")
    s.add_argument("-k", type=int, default=10, help="results per query (>= 1; the model returns at most "
                   "the k it was exported with)")
    s.add_argument("--server", default="localhost:8501", help="HOST:PORT of REST (or gRPC with --grpc)")
    s.add_argument("--grpc", action="store_true", help="use gRPC instead of REST")
    s.add_argument("--model-name", default="posters", help="the served model's name")
    s.add_argument("--catalogue", "--catalog", help="TFRecords glob to show titles/genres for ids")
    r = s.add_argument_group("business rules", "any of these asks the model's *_filtered signatures, which "
                             "apply them inside the model (docs/serving.md#business-rules-filtered-signatures)")
    r.add_argument("--genre", action="append", default=[], metavar="G", help="results have genre G "
                   "(repeatable: any of them)")
    r.add_argument("--not-genre", action="append", default=[], metavar="G", help="results lack genre G (repeatable)")
    r.add_argument("--years", metavar="FROM-TO", help="results from these years, e.g. 1980-1999, 1980- or -1999")
    r.add_argument("--tag", action="append", default=[], metavar="T", help="results have tag T, e.g. region:DE "
                   "(repeatable: all of them)")
    r.add_argument("--not-tag", action="append", default=[], metavar="T", help="results lack tag T (repeatable)")
    r.add_argument("--exclude", action="append", default=[], metavar="ID", help="never return this movie id "
                   "(repeatable)")
    r.add_argument("--per-group", type=int, default=0, metavar="C", help="at most C results per series "
                   "(crowding; 0 = no limit)")
    s.set_defaults(func=_lazy("poster_similarity.client.query"))

    s = _command(sub, "gallery", common, "HTML gallery (+PNG contact sheet) of neighbours from the served model")
    s.add_argument("--server", default="localhost:8501", help="HOST:PORT of REST (or gRPC with --grpc)")
    s.add_argument("--model-name", default="posters", help="the served model's name")
    s.add_argument("--catalogue", "--catalog", required=True, help="TFRecords glob of the catalogue (posters shown)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--queries", type=int, default=6, help="sample posters whose neighbours are shown")
    s.add_argument("--metrics", help="metrics/gate JSON (run_summary.json) to show at the top")
    s.add_argument("--import-report", metavar="PATH", help="`posters import`'s report.json: show its "
                   "near-duplicate groups side by side in a \"duplicates found\" panel")
    s.add_argument("--grpc", action="store_true", help="use gRPC instead of REST (--server is the gRPC port)")
    s.add_argument("--seed", type=int, default=0, help="seed of the deterministic choice of sample posters")
    s.set_defaults(func=_lazy("poster_similarity.client.gallery"))


def build_parser(command: str | None = "serve") -> argparse.ArgumentParser:
    """The `posters` parser: one subparser per command, each with `-v/--verbose`.

    Args:
        command: the subcommand about to be parsed, when known (`main` reads it from argv); any
            value but "serve" (or None) skips importing the server's module for its flags.

    Returns:
        The parser; each subcommand sets `func`, a handler taking the parsed namespace. Its errors
        are one line (`OneLineParser`), exit 2.
    """
    p = OneLineParser(prog="posters", description=__doc__.splitlines()[0], formatter_class=DefaultsFormatter,
                      epilog="Exit status: 0 success; 1 a failure or a failed gate; 2 a mistake in the arguments; "
                             "3 query --history with no known id (docs/cli.md).")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow's and the libraries' logs, and a failure's traceback")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = _command(sub, "sample", common, "generate synthetic genre-styled posters (+CSV, optional TFRecords)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, default=400, help="number of posters")
    s.add_argument("--size", default="200x300", help="WxH of each poster (2:3 portrait)")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed draws the same posters")
    s.add_argument("--tfrecords", action="store_true", help="also write TFRecords (data contract)")
    s.add_argument("--palette", choices=("graded", "genre"), default="graded",
                   help="graded: colour grades hide each genre's colours; genre: genres in their own colours")
    s.set_defaults(func=_lazy("poster_similarity.datatools.sample_data"))

    _add_import(sub, common)
    _add_pipeline_commands(sub, common)
    _add_serving_commands(sub, common, with_serve_flags=command in (None, "serve"))

    s = sub.add_parser("bench", help="benchmarks of a source checkout (bench/run_all.py): --quick, "
                       "--only ann,serving,…; posters bench --help lists them", add_help=False)
    s.set_defaults(func=None)
    return p


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of one subcommand, so that its errors carry its name (`posters query: error:`)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed subcommand under the error contract (posters/errors.py).

    Returns:
        The subcommand's exit status; 2 for a user mistake, 1 for a runtime failure (its traceback
        in a log, or raised with `-v`), 130 when interrupted.
    """
    from poster_similarity.posters.checks import precheck

    try:
        precheck(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"posters {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if isinstance(e, mistake_types()):
            return report_mistake(args.command, e)
        if args.verbose:
            raise
        return report_failure(args.command, e, getattr(args, "workdir", None))


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, quiet the libraries and run the subcommand.

    Args:
        argv: arguments after `posters`; None reads `sys.argv[1:]`.

    Returns:
        The subcommand's exit status (0 = success; errors.py lists the others).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # Top-level options take no value, so the first other word is the command.
    parser = build_parser(next((a for a in argv if not a.startswith("-")), ""))
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        try:
            return int(_bench(extra) or 0)
        except Exception as e:  # the contract's one line; the traceback goes to the log
            return report_failure("bench", e, None)
    if extra:
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    quiet(args.verbose)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())

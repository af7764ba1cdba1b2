"""Argument checks the CLI runs before it hands a subcommand over to its module.

Most checks live with the code that needs them (`core.config` for the config and `--set`,
`local_runner.check_inputs` for `posters run`'s folders, `client.checks` for query/gallery,
`pipeline.validate`, the importers). These are the ones whose module would only notice late (a
ZeroDivisionError in `sample`, a bind() OverflowError after the model load in `serve`) or not in the
contract's words (`promote`, whose module is shared with the CD gate), plus `posters bench`'s
source-checkout check. Each raises `UsageError` with one line; no heavy import.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from collections.abc import Callable

from poster_similarity.posters.errors import UsageError

BENCH_ENTRY = os.path.join("bench", "run_all.py")


def checkout_root() -> str | None:
    """The source checkout this package runs from (the folder holding `bench/` beside
    `poster_similarity/`), or None for an installed wheel, which ships no benchmarks."""
    import poster_similarity

    root = os.path.dirname(os.path.dirname(os.path.abspath(poster_similarity.__file__)))
    return root if os.path.isfile(os.path.join(root, BENCH_ENTRY)) else None


def _positive_size(text: str) -> None:
    w, _, h = text.lower().partition("x")
    if not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
        raise UsageError(f"--size must be WIDTHxHEIGHT in positive pixels, e.g. 200x300, got {text!r}")


def _not_a_file(path: str, flag: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path}: a file, not a folder")


def _sample(args: argparse.Namespace) -> None:
    _positive_size(args.size)
    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    _not_a_file(args.out, "--out")


def _import(args: argparse.Namespace) -> None:
    _not_a_file(args.out, "--out")


def _port(value: int, flag: str) -> None:
    if not 0 <= value <= 65535:
        raise UsageError(f"{flag} {value}: a port is 0..65535 (0 = any free port)")


def _serve(args: argparse.Namespace) -> None:
    rest, grpc = getattr(args, "rest_port", 0), getattr(args, "grpc_port", 0)
    _port(rest, "--rest-port")
    _port(grpc, "--grpc-port")
    if rest == grpc != 0:
        raise UsageError(f"--rest-port and --grpc-port are both {rest}: give two ports")


def _promote(args: argparse.Namespace) -> None:
    if not os.path.isfile(args.model_config_file):
        raise UsageError(f"model config file not found: {args.model_config_file}")
    if args.candidate < 0:
        raise UsageError(f"--candidate must be a version number >= 0, got {args.candidate}")
    if not glob.glob(args.examples):
        raise UsageError(f"no files match {args.examples!r}")
    if args.thresholds and not os.path.isfile(args.thresholds):
        raise UsageError(f"thresholds file not found: {args.thresholds}")
    if args.model_base_path and not os.path.isdir(args.model_base_path):
        raise UsageError(f"--model-base-path {args.model_base_path}: no such folder")


PRECHECKS: dict[str, Callable[[argparse.Namespace], None]] = {
    "sample": _sample, "import": _import, "serve": _serve, "promote": _promote,
}
# Commands whose stdout is a JSON report for CD scripts: a refusal is reported there too.
JSON_REFUSAL = {"promote": "promoted", "validate": "passed"}


def precheck(args: argparse.Namespace) -> None:
    """Run the command's cheap checks (if it has any).

    Raises:
        UsageError: the first mistake found, as one line; for a command with a JSON report its
            `{"<verdict>": false, "error": …}` is printed on stdout first, as its module would.
    """
    check = PRECHECKS.get(args.command)
    if check is None:
        return
    try:
        check(args)
    except UsageError as e:
        if args.command in JSON_REFUSAL:
            print(json.dumps({JSON_REFUSAL[args.command]: False, "error": str(e)}))
        raise

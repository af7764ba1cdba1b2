"""`posters` shows its own output only: no TensorFlow C++ start-up lines, no third-party warnings;
`-v/--verbose` brings TensorFlow's logs back. Real processes, as a user runs them."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.helpers import POSTERS_CLI, ROOT

# TensorFlow's C++ log prefix: "2026-11-25 13:30:40.113600: I external/local_tsl/…] message".
TF_CPP_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]", re.M)


def _posters(*args: str) -> subprocess.CompletedProcess:
    """`posters ARGS` in a fresh interpreter, with no TF_CPP_MIN_LOG_LEVEL/PYTHONWARNINGS inherited."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    return subprocess.run([*POSTERS_CLI, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_tf_cpp_pattern_matches_real_lines():
    """The pattern the quiet tests rely on, against lines TensorFlow 2.15 prints on a CPU-only machine."""
    sample = ("2026-11-25 13:30:40.113600: I external/local_tsl/tsl/cuda/cudart_stub.cc:31] Could not find cuda "
              "drivers on your machine, GPU will not be used.\n"
              "2026-11-25 13:30:40.238994: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable "
              "to register cuDNN factory\nread 8 rows (posters layout)\n")
    assert len(TF_CPP_LINE.findall(sample)) == 2


def test_help_is_quiet_and_every_command_takes_verbose():
    for command in ("sample", "import", "run", "validate", "promote", "serve", "query", "gallery"):
        p = _posters(command, "--help")
        assert p.returncode == 0, p.stderr
        assert "-v, --verbose" in p.stdout
        assert p.stderr == ""
        assert not TF_CPP_LINE.search(p.stdout)


def _flags():
    """(command, action) for every flag of every subcommand, from the full parser."""
    import argparse

    from poster_similarity.posters.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.option_strings and action.help is not argparse.SUPPRESS:
                yield name, parser, action


def test_every_flag_has_help_and_shows_its_default():
    """Help text on every flag of every command (the server's flags are worded in
    poster_similarity/serving/server/main.py); every flag with a default shows it."""
    missing, no_default = [], []
    for command, parser, action in _flags():
        text = (action.help or "").strip()
        if not text or text.startswith("(default"):
            missing.append(f"{command} {action.option_strings[0]}")
        default = action.default
        if not (default is None or default is False or default in ([], "==SUPPRESS==") or action.required):
            shown = parser._get_formatter()._get_help_string(action) % {"default": default}
            if str(default) not in shown:
                no_default.append(f"{command} {action.option_strings[0]}")
    assert missing == [] and no_default == []


def test_version_and_help_pages_name_the_command():
    p = _posters("--version")
    assert p.returncode == 0 and re.fullmatch(r"posters \S+\n", p.stdout)
    p = _posters("query", "--help")
    assert p.stdout.startswith("usage: posters query") and "(default: 10)" in p.stdout
    assert "Exit status: 0 success" in _posters("--help").stdout


@pytest.mark.slow
def test_import_run_is_quiet_and_verbose_brings_tensorflow_logs_back(tmp_path):
    """Same import twice: quiet, the output is exactly the one summary line on stdout and nothing on
    stderr; with -v, TensorFlow's own start-up lines are there (so the quiet run did hide something)."""
    assert _posters("sample", "--out", str(tmp_path / "s"), "--n", "6", "--size", "40x60").returncode == 0
    csv, images = str(tmp_path / "s" / "posters.csv"), str(tmp_path / "s")

    quiet = _posters("import", "--csv", csv, "--images", images, "--out", str(tmp_path / "q"))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("read 6 rows (posters layout), wrote 6 posters")
    assert len(quiet.stdout.splitlines()) == 1

    verbose = _posters("import", "-v", "--csv", csv, "--images", images, "--out", str(tmp_path / "v"))
    assert verbose.returncode == 0, verbose.stderr
    assert TF_CPP_LINE.search(verbose.stderr), verbose.stderr[-2000:]
    assert verbose.stdout == quiet.stdout.replace(str(tmp_path / "q"), str(tmp_path / "v"))


def test_import_placeholder_flags_reach_the_importer_with_its_default():
    from poster_similarity.datatools import near_duplicates as nd
    from poster_similarity.posters.cli import build_parser

    args = build_parser("import").parse_args(["import", "--csv", "a.csv", "--images", "i", "--out", "o"])
    assert (args.placeholder_min_ids, args.keep_placeholders) == (nd.PLACEHOLDER_MIN_IDS, False)
    args = build_parser("import").parse_args(["import", "--folders", "d", "--out", "o", "--placeholder-min-ids", "9",
                                              "--keep-placeholders"])
    assert (args.placeholder_min_ids, args.keep_placeholders) == (9, True)

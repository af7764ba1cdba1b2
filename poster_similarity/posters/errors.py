"""The error contract of every `posters` subcommand (docs/cli.md):

    0  success (validate: passed; promote: promoted; run: blessed)
    1  a runtime failure, or a negative verdict (validate/promote: the gate failed; run: not blessed;
       query/gallery: the server rejected a request)
    2  a user mistake: bad arguments, config, `--set`, paths, ranges, or no server at the address
    3  `posters query --history`: none of the ids is in the served catalogue (warning on stderr)
    130 interrupted (Ctrl-C)

A user mistake is one stderr line `posters <cmd>: error: …`, found before any expensive work (the
~10 s TensorFlow import, a model load, a Beam start-up). A runtime failure is one line too, naming
the file that holds the traceback; `-v` prints the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HISTORY_UNKNOWN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MAX_MESSAGE = 300  # characters of an exception's text in the one-line report


class UsageError(ValueError):
    """A user mistake found by the CLI's own checks: one line, exit 2."""


def one_line(text: object, limit: int = MAX_MESSAGE) -> str:
    """The text with its whitespace (newlines included) collapsed, cut at `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def mistake_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the user asked for something impossible" (exit 2), from the layers
    that raise them. A layer that raised one is already imported; one that is not cannot have raised
    it and is not imported just to ask (the client's import costs numpy's)."""
    found: list[type[BaseException]] = [UsageError]
    for module, name in (("poster_similarity.core.config", "ConfigError"),
                         ("poster_similarity.client.checks", "UsageError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its error as the contract's single stderr line (no usage block), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, except where there is nothing to show: no default
    (None, False, []), a required flag, or help that already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default is argparse.SUPPRESS or default == []
        if (not action.option_strings or action.required or nothing
                or "%(default)" in text or "(default" in text or "default:" in text):
            return text
        return f"{text} (default: %(default)s)"


def traceback_log(command: str, workdir: str | None) -> str:
    """Write the current exception's traceback to a log file and return its path.

    `posters run` keeps it in `<workdir>/logs/` (beside what the run made); other commands, which
    have no folder of their own, in the temporary directory.
    """
    text = traceback.format_exc()
    if workdir and os.path.isdir(workdir):
        folder = os.path.join(workdir, "logs")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"posters-{command}-error.log")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    fd, path = tempfile.mkstemp(prefix=f"posters-{command}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def report_failure(command: str, exc: BaseException, workdir: str | None) -> int:
    """A runtime failure's one line (exception type, first words of its text, the log's path); exit 1."""
    try:
        where = f"traceback in {traceback_log(command, workdir)}"
    except OSError:
        where = "no log could be written"
    print(f"posters {command}: error: {type(exc).__name__}: {one_line(exc)} ({where}; -v prints it)",
          file=sys.stderr)
    return EXIT_FAILED


def report_mistake(command: str, exc: BaseException) -> int:
    """A user mistake's one line; exit 2."""
    print(f"posters {command}: error: {one_line(exc, 1000)}", file=sys.stderr)
    return EXIT_USAGE

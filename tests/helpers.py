"""Paths and commands shared by the tests."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root
PKG = os.path.join(ROOT, "poster_similarity")  # the installed package
POSTERS_CLI = [sys.executable, "-m", "poster_similarity.posters.cli"]  # `posters` of this interpreter

SERVING_DOC = os.path.join(ROOT, "docs", "serving.md")
SIGNATURES_HEADING = "## The served SavedModel"


def documented_signatures(path: str = SERVING_DOC) -> dict[str, tuple[set[str], set[str]]]:
    """signature → (input names, output names) from the signature table under SIGNATURES_HEADING.

    A row reads "| `name` | `input` type [shape] … | `output`, `output` … |": every backticked
    identifier in the inputs/outputs cells is a tensor name (`""` and prose are not identifiers).
    """
    import re

    text = open(path, encoding="utf-8").read()
    section = text.split(SIGNATURES_HEADING, 1)[1].split("\n## ", 1)[0]
    out: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = [set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", c)) for c in cells]
        (name,) = names[0]
        out[name] = (names[1], names[2])
    return out

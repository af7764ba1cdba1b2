"""The README and docs/ hold together: every relative link resolves (files and #anchors), the README
stays short, and no file points at something a user of the repository does not have."""
from __future__ import annotations

import os
import re

import pytest

from tests.helpers import ROOT, documented_signatures

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "demo_out", "workdir", "build", ".cache"}
TEXT_SUFFIXES = (".py", ".md", ".sh", ".yaml", ".yml", ".txt", ".toml", ".cfg", ".json", ".config", "Makefile",
                 "Dockerfile", ".in", ".gitignore", "run")


def doc_files(root: str = ROOT) -> list[str]:
    docs = os.path.join(root, "docs")
    return [os.path.join(root, "README.md")] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: str) -> set[str]:
    text = FENCE.sub("", open(path, encoding="utf-8").read())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def broken_links(path: str) -> list[str]:
    """Relative links in a Markdown file whose file or #anchor does not exist (code is not prose)."""
    text = INLINE_CODE.sub("", FENCE.sub("", open(path, encoding="utf-8").read()))
    bad = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(dest):
            bad.append(f"{target}: no such file")
        elif anchor and (not dest.endswith(".md") or anchor not in anchors(dest)):
            bad.append(f"{target}: no heading #{anchor}")
    return bad


def test_link_checker_reports_missing_files_and_anchors(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Does it learn?\n\n[ok](b.md) [self](#does-it-learn) "
                                   "[gone](c.md) [anchor](b.md#nope) [web](https://example.com)\n"
                                   "`[code](x.md)`\n```\n[fenced](y.md)\n```\n")
    (tmp_path / "b.md").write_text("# B\n")
    assert broken_links(str(tmp_path / "a.md")) == ["c.md: no such file", "b.md#nope: no heading #nope"]


def test_every_relative_link_in_readme_and_docs_resolves():
    bad = {os.path.relpath(p, ROOT): broken_links(p) for p in doc_files()}
    assert {p: b for p, b in bad.items() if b} == {}


def test_readme_is_short_and_links_every_docs_page():
    """The README is the entry point (≤ 250 lines); everything else lives once, in docs/."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert len(readme.splitlines()) <= 250
    for path in doc_files()[1:]:
        assert f"(docs/{os.path.basename(path)})" in readme, f"README does not link {path}"


def test_signature_table_is_parsed():
    """The table the e2e test compares with the exported model (guards the parser, not the model)."""
    sigs = documented_signatures()
    assert set(sigs) == {"serving_default", "embed", "neighbors", "recommend", "embed_examples",
                         "transform_features", "neighbors_filtered", "similar_filtered", "recommend_filtered"}
    assert sigs["recommend"] == ({"history"}, {"movie_ids", "scores", "history_used"})


def _forbidden() -> list[re.Pattern]:
    # Built from pieces so that this file does not name them itself.
    return [re.compile(re.escape("FINDINGS" + ".md")), re.compile(re.escape(".." + "/shared")),
            re.compile(r"\b" + "issue" + r"s? ?#?\d+\b", re.I)]


def test_no_file_names_notes_outside_the_repository_or_issue_numbers():
    bad = []
    for dirpath, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for f in files:
            if not f.endswith(TEXT_SUFFIXES):
                continue
            path = os.path.join(dirpath, f)
            text = open(path, encoding="utf-8", errors="replace").read()
            bad += [f"{os.path.relpath(path, ROOT)}: {m.group(0)}" for p in _forbidden() for m in p.finditer(text)]
    assert bad == []


@pytest.mark.slow
def test_documented_signatures_match_the_exported_model(trained_model):
    """docs/serving.md's table against the model the pipeline pushed, loaded in a fresh process: the
    same signatures, and each with exactly the documented inputs and outputs."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-m", "tests.children.signatures_of", trained_model["model_dir"]],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    exported = {name: (set(i), set(o)) for name, (i, o) in json.loads(out.stdout.splitlines()[-1]).items()}
    assert exported == documented_signatures()


def _map_tables() -> tuple[list[str], list[str]]:
    """First-column paths of the README's two "Map of the code" tables: (top level, package)."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("## Map of the code", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"^\| [^\n]*\|\n\|---[^\n]*\n((?:\|[^\n]*\n)+)", section, re.M)
    cells = [[re.findall(r"`([^`]+)`", row.split("|")[1]) for row in t.splitlines()] for t in tables]
    return [p for row in cells[0] for p in row], [p for row in cells[1] for p in row]


def test_readme_map_of_the_code_matches_the_tree():
    """Every path the map names exists, and every top-level folder and package layer is on it."""
    top, package = _map_tables()
    pkg = os.path.join(ROOT, "poster_similarity")
    assert [p for p in top if not os.path.exists(os.path.join(ROOT, p))] == []
    assert [p for p in package if not os.path.exists(os.path.join(pkg, p))] == []
    tracked_dirs = {d + "/" for d in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, d))
                    and not d.startswith(".") and d not in SKIP_DIRS and not d.endswith(".egg-info")}
    assert tracked_dirs - set(top) == set()
    layers = {d + "/" for d in os.listdir(pkg) if os.path.isfile(os.path.join(pkg, d, "__init__.py"))}
    layers |= {f for f in os.listdir(pkg) if f.endswith(".py") and f != "__init__.py"}
    assert layers - set(package) == set()

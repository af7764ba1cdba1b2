"""`pip install .` in a fresh venv, without scripts/bootstrap.sh: the wheel carries its dependencies
(`install_requires` from requirements/base.in) and nothing but the product.

The install resolves against requirements/lock.txt as constraints (`-c`): constraints pin versions
but never add a package, so a dependency missing from `install_requires` fails the imports below.
It runs from a copy of the source tree (what a fresh clone has), with uv's cache (~30 s here).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow
SKIP = {".git", ".venv", "demo_out", "build", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache", "workdir"}


def _base_python() -> str:
    """The Python 3.10 this venv was made from (a venv inside a venv would inherit its packages)."""
    exe = os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    return exe if os.path.exists(exe) else sys.executable


def _uv() -> list[str]:
    """uv as scripts/bootstrap.sh finds it: on PATH, else the base Python's `-m uv`."""
    if shutil.which("uv") and subprocess.run(["uv", "--version"], capture_output=True).returncode == 0:
        return ["uv"]
    return [_base_python(), "-m", "uv"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    venv = tmp / "venv"
    subprocess.run([*_uv(), "venv", "-q", "--python", _base_python(), str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    proc = subprocess.run([*_uv(), "pip", "install", "-q", "--python", py, "-c",
                           str(src / "requirements" / "lock.txt"), str(src)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"venv": venv, "src": src}


def _modules(src) -> set[str]:
    """Dotted names of the package's modules in the copied source tree (packages by their folder)."""
    out = set()
    for d, _, files in os.walk(src / "poster_similarity"):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), src)[:-3].split(os.sep)
                out.add(".".join(rel[:-1] if rel[-1] == "__init__" else rel))
    return out


def test_every_module_imports_from_the_installed_wheel(installed, tmp_path):
    venv = installed["venv"]
    proc = subprocess.run([str(venv / "bin" / "python"), os.path.join(ROOT, "tests", "children", "import_all.py")],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["package_dir"].startswith(str(venv))  # the wheel, not the source tree
    assert report["failed"] == {}
    assert set(report["imported"]) == _modules(installed["src"]) - {"poster_similarity"}  # every module
    assert report["non_python_files"] == []  # no Dockerfile, manifest or results in the wheel
    site = os.path.dirname(report["package_dir"])
    (info,) = [n for n in os.listdir(site) if n.startswith("poster_similarity-") and n.endswith(".dist-info")]
    with open(os.path.join(site, info, "RECORD"), encoding="utf-8") as f:
        paths = [line.split(",")[0] for line in f if line.strip()]
    # Inside site-packages only the package and its metadata ("../../../bin/posters" is the script).
    assert {p.split("/")[0] for p in paths if not p.startswith("..")} == {"poster_similarity", info}


def test_the_posters_command_answers_help(installed, tmp_path):
    proc = subprocess.run([str(installed["venv"] / "bin" / "posters"), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    for cmd in ("sample", "import", "run", "validate", "serve", "query", "gallery"):
        assert cmd in proc.stdout

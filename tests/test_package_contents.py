"""The installed package holds the product only (checked from the source tree).

What is deployed (Dockerfiles, k8s YAML, TF Serving configs, the ScaNN patch) lives in the top-level
`serving/` and `kubeflow/`; benchmarks, their results and caches in `bench/`; fixtures in `tests/`.
So: no deployment file under `poster_similarity/`; no module that writes next to its own source
(site-packages is read-only in images and shared between users); and no Python program kept in a
string and run with `python -c`, which ruff, the import checker and the tests never read (in the
package, `bench/` or `tests/`).
"""
from __future__ import annotations

import ast
import os

from tests.helpers import ROOT
from tests.test_architecture import PACKAGE, _write, module_files

DEPLOYMENT_SUFFIXES = (".yaml", ".yml", ".patch", ".config", ".txt", ".sh", ".json")
WRITERS = {"open", "makedirs", "mkdir", "write_text", "write_bytes", "save", "savez", "savez_compressed",
           "copy", "copyfile", "copytree", "move", "rename", "replace", "dump", "GFile", "urlretrieve"}


def deployment_files(root: str) -> list[str]:
    """Files under the package that are not Python source: Dockerfiles, manifests, configs, patches."""
    out = []
    for dirpath, dirs, files in os.walk(os.path.join(root, PACKAGE)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if f.startswith("Dockerfile") or f.endswith(DEPLOYMENT_SUFFIXES):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def _mentions(node: ast.AST, names: set[str]) -> bool:
    return any((isinstance(n, ast.Name) and n.id in names) for n in ast.walk(node))


def writes_beside_source(path: str) -> list[int]:
    """Lines that call a writer (open for writing, makedirs, save, copy, …) with a path derived from
    `__file__`: names assigned from `__file__` are followed through later assignments in the module."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    derived = {"__file__"}
    changed = True
    while changed:  # a fixed point over assignments: ROOT = dirname(__file__); OUT = join(ROOT, "x")
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _mentions(node.value, derived):
                new = {t.id for t in node.targets if isinstance(t, ast.Name)} - derived
                if new:
                    derived |= new
                    changed = True
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in WRITERS:
            continue
        if name == "open":
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), ast.Constant("r"))
            if isinstance(mode, ast.Constant) and not set(str(mode.value)) & set("wax+"):
                continue
        target = node.func.value if isinstance(node.func, ast.Attribute) else None
        if any(_mentions(a, derived) for a in [*node.args, *(k.value for k in node.keywords)]) or (
                target is not None and _mentions(target, derived - {"os", "shutil", "np"})):
            lines.append(node.lineno)
    return lines


def _is_flag(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("-")


def _hands_over_a_program(elts: list[ast.expr]) -> bool:
    """`[python, *flags, "-c", CODE, …]`: "-c" right after the command and its flags. A shell's `-c`
    (sh, bash) runs a command line, not a Python program; a later "-c" is another tool's option
    (`uv pip install -c lock.txt`: constraints)."""
    for i, e in enumerate(elts[1:], 1):
        if isinstance(e, ast.Constant) and e.value == "-c":
            first = elts[0]
            shell = isinstance(first, ast.Constant) and first.value in ("sh", "bash")
            return not shell and all(_is_flag(f) for f in elts[1:i])
    return False


def _is_python_program(node: ast.AST) -> bool:
    """A module-level `NAME = "…"` of several lines that parses as Python and imports something: a
    program kept in a string, to be written to a file and run (prose, SQL, CSS and protobuf text do
    not parse; tiny sources built inline as data for a parser under test are not module constants)."""
    if not isinstance(node, ast.Assign):
        return False
    node = node.value
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.count("\n") >= 2):
        return False
    try:
        body = ast.parse(node.value.replace("{{", "{").replace("}}", "}"))
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(body))


def program_strings(path: str) -> list[int]:
    """Lines that hand the interpreter a program as a string: `[python, "-c", CODE, …]`, or a
    string constant holding a Python program (to be written to a file and run)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    lists = [node.lineno for node in ast.walk(tree)
             if isinstance(node, (ast.List, ast.Tuple)) and _hands_over_a_program(node.elts)]
    return sorted(lists + [node.lineno for node in tree.body if _is_python_program(node)])


# --- the checkers catch what they claim to ---------------------------------------------------------

def test_checkers_find_a_manifest_a_write_beside_the_source_and_a_program_string(tmp_path):
    root = _write(tmp_path, {
        f"{PACKAGE}/__init__.py": "", f"{PACKAGE}/serving/k8s/deployment.yaml": "kind: Deployment\n",
        f"{PACKAGE}/serving/Dockerfile.scann": "FROM x\n",
        f"{PACKAGE}/bench/common.py": ("import os\nHERE = os.path.dirname(__file__)\nOUT = os.path.join(HERE, 'r')\n"
                                       "def save(x):\n    os.makedirs(OUT)\n    open(os.path.join(OUT, 'a'), 'w')\n"
                                       "    open(os.path.join(HERE, 'b'))\n    open('/tmp/c', 'w')\n"),
        f"{PACKAGE}/run.py": ("import sys\nCMD = [sys.executable, '-c', 'print(1)']\nOK = ['sh', '-c', 'ls']\n"
                             "UV = ['uv', 'pip', 'install', '-c', 'lock.txt', '.']\n"
                             "CMD2 = (PY, '-u', '-c', CODE)\n"
                             "PROG = r\"\"\"\nimport json\nprint(json.dumps({{}}))\n\"\"\"\n"
                             "DOC = \"\"\"\nImport the posters, then run.\nSELECT 1;\n\"\"\"\n"),
    })
    assert deployment_files(root) == [f"{PACKAGE}/serving/Dockerfile.scann", f"{PACKAGE}/serving/k8s/deployment.yaml"]
    assert writes_beside_source(os.path.join(root, PACKAGE, "bench", "common.py")) == [5, 6]
    assert program_strings(os.path.join(root, PACKAGE, "run.py")) == [2, 5, 6]


# --- the project -----------------------------------------------------------------------------------

def test_the_package_holds_no_deployment_files():
    assert deployment_files(ROOT) == []


def test_no_package_module_writes_beside_its_source():
    files = {m: p for m, p in module_files(ROOT).items() if m.startswith(PACKAGE)}
    assert len(files) > 50
    assert {m: lines for m, p in files.items() if (lines := writes_beside_source(p))} == {}


# Modules whose child programs are still strings, each being turned into a module under tests/children/
# by its own change; empty this set as they land (an entry that no longer holds a string fails below).
PENDING: set[str] = set()


def test_no_program_is_kept_in_a_string():
    """The package, the benchmarks and the tests run child processes as modules (`python -m …`; the
    tests' children live in tests/children/)."""
    files = module_files(ROOT)
    assert PENDING <= set(files), "PENDING names a module that does not exist"
    found = {m: lines for m, p in files.items() if (lines := program_strings(p))}
    assert {m: lines for m, lines in found.items() if m not in PENDING} == {}
    assert {m for m in PENDING if m not in found} == set(), "no longer pending: remove it from PENDING"

"""Code hashes for TFX's cache keys, computed from the modules a component actually imports.

TFX keys a component's cache by its executor's class name and its exec properties, never by the
code behind them, and the pipeline references module code by import path (so TFX builds no
wheels and hashes nothing). Each component therefore carries a hash of its code in its config;
hand-kept file lists for that hash went stale (a module imported by `preprocessing.py` was hashed
by nobody, a test fixture forced retrains). Here the files come from the import graph instead:
start at the modules TFX runs, follow every import of a `poster_similarity` module — at module
level or inside a function, since a lazy import runs at execution time all the same — and hash
what is reached. Nothing outside the package (tests, benchmarks) can be part of a key, and a module
nobody imports changes none.
"""
from __future__ import annotations

import ast
import hashlib
import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)

PACKAGE = "poster_similarity"
# The folder holding the package's folder (the repository root, or site-packages when installed).
DEFAULT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def module_files(root: str = DEFAULT_ROOT) -> dict[str, str]:
    """Every module of the package under `root` → its file (a package is its `__init__.py`).

    Taking `root` rather than reading the installed package lets a test hash an edited copy.
    """
    out = {}
    for dirpath, dirnames, files in os.walk(os.path.join(root, PACKAGE)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in files:
            if f.endswith(".py"):
                parts = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = os.path.join(dirpath, f)
    return out


def _is_package(module: str, files: dict[str, str]) -> bool:
    return os.path.basename(files[module]) == "__init__.py"


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Dotted names a module's source may import, anywhere in the file (relative imports resolved).

    `from a import b` yields both `a.b` (b may be a submodule) and `a` (b may be a name in a);
    `importlib.import_module("a.b")` with a literal name counts too. Some names are no module:
    `resolve` maps each to the module that defines it.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names.add(node.args[0].value)
    return names


def resolve(name: str, files: dict[str, str]) -> str | None:
    """The package module that importing `name` runs (`a.b.func` → `a.b`), or None outside the package."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    while name and name not in files:
        name = name.rpartition(".")[0]
    return name or None


def project_imports(module: str, files: dict[str, str]) -> set[str]:
    """The package modules that importing `module` runs directly: its imports and its parent packages
    (importing `a.b.c` first runs `a/__init__.py` and `a/b/__init__.py`)."""
    with open(files[module], encoding="utf-8") as f:
        source = f.read()
    deps = {resolve(n, files) for n in imported_names(source, module, _is_package(module, files))}
    parts = module.split(".")
    deps.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {d for d in deps if d is not None and d != module and d in files}


def module_closure(entry_modules: Iterable[str], root: str = DEFAULT_ROOT) -> list[str]:
    """Every package module that importing `entry_modules` can run, sorted by name.

    Raises ValueError for an entry that is no module of the package: a misspelt entry must not
    quietly hash nothing.
    """
    files = module_files(root)
    todo = list(entry_modules)
    missing = [m for m in todo if m not in files]
    if missing:
        raise ValueError(f"not modules of {PACKAGE} under {root}: {missing}")
    seen: set[str] = set()
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(project_imports(mod, files) - seen)
    return sorted(seen)


def code_hash(entry_modules: Iterable[str], root: str = DEFAULT_ROOT) -> str:
    """Hash of the names and contents of `module_closure(entry_modules)`: the cache key of the code.

    Names are hashed with the contents so that moving code between modules changes the key; each
    part is length-prefixed so that no two different closures share a byte stream.
    """
    files = module_files(root)
    closure = module_closure(entry_modules, root)
    h = hashlib.sha256()
    for mod in closure:
        with open(files[mod], "rb") as f:
            data = f.read()
        for part in (mod.encode(), data):
            h.update(len(part).to_bytes(8, "big") + part)
    log.debug("code hash %s of %s", h.hexdigest()[:16], closure)  # why a component re-ran
    return h.hexdigest()[:16]

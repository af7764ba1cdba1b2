"""The layering of the code, checked from its source: imports flow one way and never in a circle.

Layers are the subpackages of `poster_similarity` (and `tests`), bottom to top (a module may import
its own layer and the layers listed for it):

    core                       config + data contract
    components, datatools      model code run by TFX; sample posters and import
    serving, client, pipeline  the model server (no TFX); PosterClient, query, gallery (no server);
                               the TFX definition and gates
    local_runner, kubeflow_runner
    posters                    the CLI (imports its subcommands lazily, by name)
    bench, tests               top-level folders, not installed: they import the product, never the
                               reverse (bench uses two test fixtures: the stand-in export, LocalJob)

Every `import` statement counts, including those inside functions (a lazy import is still a
dependency), and so do the module names the CLI hands to `_lazy(...)`.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os

import pytest
from setuptools import find_packages

from tests.helpers import ROOT

PACKAGE = "poster_similarity"  # the one installed top-level name

PRODUCT = ("core", "components", "datatools", "serving", "client", "pipeline", "local_runner", "kubeflow_runner",
           "posters")
NOT_INSTALLED = ("bench", "tests")  # top-level folders of the repository
ALLOWED = {
    "core": set(),
    "components": {"core"},
    "datatools": {"core"},
    "serving": {"core"},
    "client": {"core"},
    "pipeline": {"core", "components"},
    "local_runner": {"core", "pipeline"},
    "kubeflow_runner": {"core", "pipeline"},
    "posters": {"core", "datatools", "serving", "client", "pipeline", "local_runner"},
    "bench": set(PRODUCT) | {"tests"},
    "tests": set(PRODUCT) | {"bench"},
}
# Third-party packages a layer must not import: serving runs where TFX is not installed (TF Serving's
# image) and must start fast; the core and data tools are imported by every command.
FORBIDDEN_THIRD_PARTY = {
    "serving": {"tfx", "tfx_bsl", "tensorflow_transform", "tensorflow_model_analysis", "apache_beam", "ml_metadata"},
    "client": {"tfx", "tfx_bsl", "tensorflow_transform", "tensorflow_model_analysis", "apache_beam", "ml_metadata"},
    "core": {"tfx", "tensorflow_transform", "tensorflow_model_analysis", "apache_beam"},
    "datatools": {"tfx", "tensorflow_transform", "tensorflow_model_analysis", "apache_beam"},
}


def layer_of(module: str) -> str:
    """poster_similarity.components.trainer → components; tests.helpers → tests."""
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else parts[0]


def module_files(root: str) -> dict[str, str]:
    """Dotted module name → path, for every .py file of the layers in ALLOWED under `root`."""
    out = {}
    for layer in ALLOWED:
        top = layer if layer in NOT_INSTALLED else os.path.join(PACKAGE, layer)
        if os.path.isfile(os.path.join(root, top + ".py")):
            out[top.replace(os.sep, ".")] = os.path.join(root, top + ".py")
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
                    if rel[-1] == "__init__":
                        rel = rel[:-1]
                    out[".".join(rel)] = os.path.join(dirpath, f)
    return out


def imports_of(path: str, module: str) -> set[str]:
    """Absolute names imported anywhere in the file (relative imports resolved against `module`)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names: set[str] = set()
    package = module.split(".")[:-1] if not path.endswith("__init__.py") else module.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import module` names pkg.module; `from mod import func` resolves to mod below.
            names.update(f"{base}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_lazy"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(node.args[0].value)
    return names


def import_graph(root: str) -> dict[str, set[str]]:
    """Module → the project modules it imports (`from a import b` counts as a.b when a.b is a module)."""
    files = module_files(root)
    graph = {}
    for mod, path in files.items():
        deps = set()
        for name in imports_of(path, mod):
            while name and name not in files:  # `from a.b import func` → a.b
                name = name.rpartition(".")[0]
            if name and name != mod:
                deps.add(name)
        graph[mod] = deps
    return graph


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in sorted(graph.items()):
        layer = layer_of(mod)
        for dep in sorted(deps):
            target = layer_of(dep)
            if target != layer and target not in ALLOWED[layer]:
                out.append(f"{mod} imports {dep}: {layer} may import only {sorted(ALLOWED[layer]) or 'itself'}")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _write(root, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


# --- the checker catches what it claims to (so a green run below means something) ---------------

def test_checker_finds_a_cycle_hidden_in_functions_and_an_upward_import(tmp_path):
    """components.a → components.b inside a function, b → a at the top: one cycle {a, b}. core →
    pipeline goes up the layers (core may import nothing), pipeline → core goes down (allowed)."""
    pkg = PACKAGE
    root = _write(tmp_path, {
        f"{pkg}/__init__.py": "", f"{pkg}/components/__init__.py": "", f"{pkg}/core/__init__.py": "",
        f"{pkg}/pipeline/__init__.py": "",
        f"{pkg}/components/a.py": f"def f():\n    from {pkg}.components import b\n",
        f"{pkg}/components/b.py": f"from {pkg}.components.a import f\n",
        f"{pkg}/core/c.py": f"from {pkg}.pipeline.p import x\n",
        f"{pkg}/pipeline/p.py": f"from {pkg}.core import c\nx = 1\n",
    })
    graph = import_graph(root)
    assert graph[f"{pkg}.components.a"] == {f"{pkg}.components.b"}
    assert graph[f"{pkg}.pipeline.p"] == {f"{pkg}.core.c"}
    assert [f"{pkg}.components.a", f"{pkg}.components.b"] in cycles(graph)
    # core.c ↔ pipeline.p is a cycle too, and core.c's import is against the direction.
    assert [f"{pkg}.core.c", f"{pkg}.pipeline.p"] in cycles(graph)
    assert layering_violations(graph) == [f"{pkg}.core.c imports {pkg}.pipeline.p: core may import only itself"]


def test_checker_reads_the_cli_lazy_module_names(tmp_path):
    """`_lazy("bench.x")` in the CLI is a dependency on bench, which the CLI may not have."""
    pkg = PACKAGE
    root = _write(tmp_path, {f"{pkg}/posters/__init__.py": "", "bench/__init__.py": "",
                             "bench/x.py": "", f"{pkg}/posters/cli.py": "h = _lazy('bench.x')\n"})
    assert layering_violations(import_graph(root)) == [
        f"{pkg}.posters.cli imports bench.x: posters may import only {sorted(ALLOWED['posters'])}"]


# --- the project -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph():
    g = import_graph(ROOT)
    assert {f"{PACKAGE}.{m}" for m in ("core.config", "components.trainer", "components.export", "posters.cli",
                                       "local_runner", "kubeflow_runner")} <= set(g)
    return g


def test_every_cli_subcommand_names_a_project_module():
    """`_lazy(name)` imports `name` only when its subcommand runs: a misspelt or moved module would
    pass every import-time check and fail in front of the user."""
    files = module_files(ROOT)
    cli = os.path.join(ROOT, PACKAGE, "posters", "cli.py")
    tree = ast.parse(open(cli, encoding="utf-8").read())
    lazy = [n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", "") == "_lazy" and n.args and isinstance(n.args[0], ast.Constant)]
    assert len(lazy) >= 8 and f"{PACKAGE}.local_runner" in lazy
    assert [m for m in lazy if m not in files] == []


def test_imports_flow_one_way(graph):
    assert layering_violations(graph) == []


def test_no_import_cycles(graph):
    """Including the ones hidden in functions: trainer → tower → dataset, never back; the index
    builder uses the export code and never the trainer (a catalogue refresh does not train)."""
    assert cycles(graph) == []
    assert "poster_similarity.components.dataset" in graph["poster_similarity.components.tower"]
    assert "poster_similarity.components.tower" in graph["poster_similarity.components.trainer"]
    assert "poster_similarity.components.export" in graph["poster_similarity.components.index_builder.executor"]
    assert "poster_similarity.components.trainer" not in graph["poster_similarity.components.export"]
    assert "poster_similarity.components.trainer" not in graph["poster_similarity.components.index_builder.executor"]


def test_layers_do_not_import_forbidden_third_party_packages():
    files = module_files(ROOT)
    bad = []
    for mod, path in files.items():
        forbidden = FORBIDDEN_THIRD_PARTY.get(layer_of(mod), set())
        bad += [f"{mod} imports {n}" for n in imports_of(path, mod) if n.split(".")[0] in forbidden]
    assert bad == []


def test_no_sys_path_edits_and_no_module_named_like_a_package():
    """A module named like a layer (pipeline/pipeline.py) shadows it whenever its folder is on
    sys.path (the TFX CLI runs runner files that way), which is what sys.path edits worked around."""
    files = module_files(ROOT)
    tops = {layer_of(m) for m in files} | {PACKAGE}
    # bench's modules only ever run as `python -m bench.x`, which never puts bench/ on sys.path.
    shadows = [m for m in files if m.count(".") > 1 and m.rsplit(".", 1)[1] in tops and layer_of(m) in PRODUCT]
    assert shadows == []
    edits = []
    for mod, path in files.items():
        if mod.startswith("tests"):
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"):
                edits.append(f"{mod}:{node.lineno}")
    assert edits == []


def test_installs_one_top_level_name_that_belongs_to_no_other_distribution():
    """setup.py installs only `poster_similarity`: generic top-level names (`pipeline`, `bench`,
    `core`, `kubeflow`, ...) hide other distributions' packages (django-pipeline's `pipeline`,
    frappe-bench's `bench`, the Kubeflow SDKs' `kubeflow.*`) wherever both are installed."""
    text = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    call = next(n for n in ast.walk(ast.parse(text))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in call.keywords}
    assert "py_modules" not in kw
    include = ast.literal_eval(next(k.value for k in kw["packages"].keywords if k.arg == "include"))
    packages = find_packages(ROOT, include=include)
    assert {p.split(".")[0] for p in packages} == {PACKAGE}
    assert {f"{PACKAGE}.{layer}" for layer in PRODUCT if "runner" not in layer} <= set(packages)
    assert not [p for p in packages if p.split(".")[-1] in NOT_INSTALLED]
    owners = importlib.metadata.packages_distributions()
    assert set(owners.get(PACKAGE, [])) <= {"poster-similarity"}


# One concern per file: a module past ~400 lines is doing two things.
MAX_LINES = 420
OVERSIZED: set[str] = set()


def test_no_python_file_is_over_about_400_lines():
    sizes = {}
    for path in module_files(ROOT).values():
        rel = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as f:
            sizes[rel] = sum(1 for _ in f)
    assert {p: n for p, n in sizes.items() if n > MAX_LINES and p not in OVERSIZED} == {}
    assert all(sizes[p] > MAX_LINES for p in OVERSIZED if p in sizes), "an exception that no longer applies"

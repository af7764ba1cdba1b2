"""Cache keys from real imports: each component's code hash covers exactly the package modules it
can run, so an edit there re-runs it and an edit anywhere else (tests, benchmarks, an unused
module) keeps the TFX cache."""
from __future__ import annotations

import os
import re
import shutil

import pytest

from poster_similarity.pipeline import modules
from poster_similarity.pipeline.code_hash import (
    DEFAULT_ROOT,
    PACKAGE,
    code_hash,
    module_closure,
    module_files,
    project_imports,
)

COMPONENTS = {"transform": modules.TRANSFORM_CODE, "trainer": modules.TRAINER_CODE,
              "embedder": modules.EMBEDDER_CODE, "index_builder": modules.INDEX_BUILDER_CODE}
C = f"{PACKAGE}.components"
# A regex, not the ast walk under test: `from poster_similarity.x import …` / `import poster_similarity.x`.
IMPORT_LINE = re.compile(rf"^\s*(?:from|import)\s+({PACKAGE}(?:\.\w+)*)", re.MULTILINE)


def keys(root) -> dict[str, str]:
    return {name: code_hash(entries, str(root)) for name, entries in COMPONENTS.items()}


def regex_imports(module: str, files: dict[str, str]) -> set[str]:
    """The modules named by the file's import lines (`from a.b import name` → the module a.b)."""
    with open(files[module], encoding="utf-8") as f:
        found = IMPORT_LINE.findall(f.read())
    out = set()
    for name in found:
        while name not in files:
            name = name.rpartition(".")[0]
        out.add(name)
    return out - {module}


@pytest.fixture
def tree(tmp_path):
    """A copy of the package beside a `tests/` and a `bench/` folder: edit the copy, never the source."""
    shutil.copytree(os.path.join(DEFAULT_ROOT, PACKAGE), tmp_path / PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for folder, importer in (("tests", "image_limits"), ("bench", "trainer")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
        (tmp_path / folder / "helper.py").write_text(f"from {C}.{importer} import *  # noqa\nX = 1\n")
    return tmp_path


def append(path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_a_closure_holds_every_project_import_of_its_modules(component):
    """Closed under the import relation, as read by a regex independently of the ast walk; only
    package modules, never the test fixture."""
    files = module_files()
    closure = set(module_closure(COMPONENTS[component]))
    for mod in closure:
        assert regex_imports(mod, files) <= closure, mod
        assert project_imports(mod, files) <= closure, mod
    assert all(m == PACKAGE or m.startswith(PACKAGE + ".") for m in closure)
    assert f"{C}.standin_export" not in closure


def test_the_edges_the_hand_kept_lists_missed_are_followed():
    """The edges the hand-kept file lists missed: preprocessing → image_limits → core.tfrecords, the
    embedder's lazy image_limits, export → retrieval_metrics under IndexBuilder; and the index code
    stays out of the Trainer's key (changing it must not retrain)."""
    closure = {name: set(module_closure(entries)) for name, entries in COMPONENTS.items()}
    files = module_files()
    assert f"{C}.image_limits" in regex_imports(f"{C}.preprocessing", files)
    transform = {f"{C}.preprocessing", f"{C}.image_limits", f"{C}.model", f"{PACKAGE}.core.tfrecords"}
    assert transform <= closure["transform"]
    assert f"{C}.image_limits" in closure["embedder"]
    assert {f"{C}.export", f"{C}.retrieval_metrics", f"{C}.warmup"} <= closure["index_builder"]
    assert {f"{C}.tower", f"{C}.retrieval_metrics"} <= closure["trainer"]  # imported inside functions
    assert not {f"{C}.export", f"{C}.warmup"} & closure["trainer"]


def test_editing_image_limits_changes_the_keys_of_every_component_that_runs_it(tree):
    before = keys(tree)
    append(tree / PACKAGE / "components" / "image_limits.py", "\n# a new pixel limit\n")
    after = keys(tree)
    assert all(after[name] != before[name] for name in COMPONENTS), (before, after)


def test_editing_index_code_changes_only_index_builders_key(tree):
    before = keys(tree)
    append(tree / PACKAGE / "components" / "export.py", "\n# another index\n")
    after = keys(tree)
    assert [name for name in COMPONENTS if after[name] != before[name]] == ["index_builder"]


def test_tests_bench_and_unimported_modules_change_no_key(tree):
    before = keys(tree)
    for folder in ("tests", "bench"):
        append(tree / folder / "helper.py", "X = 2\n")
    (tree / "tests" / "test_new.py").write_text(f"import {C}.preprocessing\n")
    (tree / PACKAGE / "components" / "orphan.py").write_text(f"from {C} import image_limits\n")
    assert keys(tree) == before


def test_the_real_keys_are_the_copy_s_keys_and_reach_the_module_configs(tree):
    """The copy hashes like the source (the root decides nothing else), and Transform's and the
    Trainer's `custom_config` carry these keys."""
    from poster_similarity.core.config import PipelineConfig

    assert keys(tree) == keys(DEFAULT_ROOT)
    cfg = PipelineConfig()
    assert modules.module_config(cfg, "transform")["code_version"] == code_hash(modules.TRANSFORM_CODE)
    assert modules.module_config(cfg, "trainer")["code_version"] == code_hash(modules.TRAINER_CODE)


def write_package(root, sources: dict[str, str]) -> None:
    for name, text in sources.items():
        path = root / (name.replace(".", os.sep) + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_lazy_relative_dotted_and_dynamic_imports_are_followed(tmp_path):
    p = PACKAGE
    write_package(tmp_path, {
        f"{p}.__init__": "",
        f"{p}.entry": f"def run():\n    from {p} import lazy\n    return lazy\n",
        f"{p}.lazy": "from .sub import mod\nfrom .sub.helpers import helper\n",
        f"{p}.sub.__init__": "",
        f"{p}.sub.mod": f"import {p}.deep.leaf\nfrom .. import other\n",
        f"{p}.sub.helpers": "import importlib\n\ndef helper():\n"
                            f"    return importlib.import_module('{p}.dynamic')\n",
        f"{p}.deep.__init__": "", f"{p}.deep.leaf": "import os\n",
        f"{p}.other": "", f"{p}.dynamic": "", f"{p}.unused": "",
    })
    closure = module_closure([f"{p}.entry"], str(tmp_path))
    assert closure == sorted(f"{p}{s}" for s in ("", ".entry", ".lazy", ".sub", ".sub.mod", ".sub.helpers",
                                                  ".deep", ".deep.leaf", ".other", ".dynamic"))
    before = code_hash([f"{p}.entry"], str(tmp_path))
    append(tmp_path / p / "lazy.py", "X = 1\n")
    assert code_hash([f"{p}.entry"], str(tmp_path)) != before


def test_an_entry_that_is_no_module_is_an_error():
    with pytest.raises(ValueError, match="not modules"):
        module_closure([f"{C}.preprocessing.preprocessing_fn"])

"""The TF Serving images' recipe (poster_similarity/serving/docker/), checked up to the Docker boundary.

No Docker daemon here, so nothing is built. What runs: the Dockerfiles read instruction by
instruction (line continuations and comments as Docker handles them, exec forms with `json`);
poster_similarity/serving/docker/scann_recipe.py, the build's fail-early steps, run for real on small source trees
(`patch --dry-run`, Python's `ast` for Starlark). Upstream facts the defaults encode (TF Serving
2.15.1 pins TensorFlow 5b2454e3…, ScaNN builds with clang and -fsized-deallocation -w, the
cnpy/highway pins) were read from upstream, not re-derived here.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shlex
import textwrap
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import PKG

DOCKER = Path(PKG) / "serving" / "docker"
TF_SERVING_2_15_1_TF_COMMIT = "5b2454e3de818c7ac24cf7fbb8d82aed83a577ca"


# --- Dockerfile reading --------------------------------------------------------------------------
@cache
def instructions(name: str) -> tuple[tuple[str, str], ...]:
    out, buf = [], ""
    for line in (DOCKER / name).read_text().splitlines():
        s = line.strip()
        if s.startswith("#") or (not s and not buf):
            continue  # comment lines are dropped, also inside a continued instruction
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        cmd, _, args = (buf + s).partition(" ")
        out.append((cmd.upper(), args.strip()))
        buf = ""
    return tuple(out)


def final_stage(name: str) -> list[tuple[str, str]]:
    ins = list(instructions(name))
    last_from = max(i for i, (cmd, _) in enumerate(ins) if cmd == "FROM")
    return ins[last_from:]


def _assignments(args: str) -> dict[str, str]:
    return dict(tok.split("=", 1) if "=" in tok else (tok, "") for tok in shlex.split(args))


def dockerfile_env(name: str) -> dict[str, str]:
    return {k: v for cmd, args in final_stage(name) if cmd == "ENV" for k, v in _assignments(args).items()}


def dockerfile_user(name: str) -> str:
    return [args for cmd, args in final_stage(name) if cmd == "USER"][-1]


def build_args(name: str) -> dict[str, str]:
    return {k: v for cmd, args in instructions(name) if cmd == "ARG" for k, v in _assignments(args).items()}


def runs(name: str) -> list[str]:
    return [args for cmd, args in instructions(name) if cmd == "RUN"]


# --- the images ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Dockerfile.scann", "Dockerfile.brute_force"])
def test_images_run_as_non_root_with_the_configs(name):
    user = dockerfile_user(name)
    uid, gid = user.split(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()  # numeric: runAsNonRoot can verify it
    assert any(f"--uid {uid}" in r for r in runs(name))
    stage = final_stage(name)
    (entry,) = [json.loads(a) for c, a in stage if c == "ENTRYPOINT"]
    assert entry[0] == "tensorflow_model_server" and "--enable_batching=true" in entry
    copies = {a.split()[-1] for c, a in stage if c == "COPY"}
    for cfg in ("models.config", "batching_parameters.txt", "monitoring.config"):
        assert f"/config/{cfg}" in copies
        assert any(f"=/config/{cfg}" in flag for flag in entry)


def test_brute_force_image_is_stock_tf_serving_2_15_1():
    (base,) = [a for c, a in instructions("Dockerfile.brute_force") if c == "FROM"]
    assert base == "tensorflow/serving:2.15.1"


def test_scann_build_pins_and_order():
    args = build_args("Dockerfile.scann")
    assert args["TF_SERVING_VERSION"] == "2.15.1" and args["TF_COMMIT"] == TF_SERVING_2_15_1_TF_COMMIT
    # The ScaNN the model is exported with, and the TensorFlow it requires.
    assert args["SCANN_VERSION"] == importlib.metadata.version("scann") == "1.3.0"
    tf_minor = ".".join(importlib.metadata.version("tensorflow").split(".")[:2])
    assert args["SCANN_TF_REQUIREMENT"] == f"tensorflow~={tf_minor}.0"
    # Two pins, not one: patch files and ScaNN source vary independently.
    assert "SCANN_PATCHES_COMMIT" in args and "SCANN_SOURCE_COMMIT" in args
    assert len(args["SCANN_PATCHES_COMMIT"]) == 40 and len(args["CNPY_COMMIT"]) == 40
    steps = runs("Dockerfile.scann")

    def first(text: str) -> int:
        return next(i for i, r in enumerate(steps) if text in r)

    build = first("bazel build")
    for check in ("check-tf-serving", "check-source", "check-patch", "edit-serving"):
        assert first(f"scann_recipe.py {check}") < build  # minutes in, not hours
    assert steps[build].startswith('CC="clang-${CLANG_VERSION}"') and args["CLANG_VERSION"].isdigit()
    assert first("apt-get install") < build and "clang-${CLANG_VERSION}" in steps[first("apt-get install")]
    opts = args["TF_SERVING_BUILD_OPTIONS"].split()
    for flag in ("--copt=-fsized-deallocation", "--copt=-w", "--copt=-mavx2", "--copt=-mfma", "--cxxopt=-std=c++17"):
        assert flag in opts
    assert "${TF_SERVING_BUILD_OPTIONS}" in steps[build]
    assert "tensorflow_serving/model_servers:tensorflow_model_server" in steps[build]


def test_scann_build_calls_the_recipe_with_arguments_it_accepts():
    recipe = _recipe()
    parser_checked = 0
    for step in runs("Dockerfile.scann"):
        for part in step.split("&&"):
            tokens = shlex.split(part.replace("$(", "").replace(")", ""))
            if "/opt/scann_recipe.py" in tokens:
                argv = tokens[tokens.index("/opt/scann_recipe.py") + 1:]
                ns = recipe.build_parser().parse_args(argv)  # raises SystemExit on an unknown flag
                parser_checked += 1
                assert ns.cmd in {"check-tf-serving", "check-source", "check-patch", "edit-serving"}
    assert parser_checked == 4


# --- scann_recipe.py on small trees --------------------------------------------------------------
def _recipe():
    spec = importlib.util.spec_from_file_location("scann_recipe", DOCKER / "scann_recipe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


OPS_BUILD = textwrap.dedent('''\
    load("//tensorflow_serving:serving.bzl", "serving_tflite_test")

    SUPPORTED_TENSORFLOW_OPS = if_v2([]) + if_not_v2([
        "@org_tensorflow//tensorflow/contrib:contrib_kernels",
    ]) + [
        "@org_tensorflow_text//tensorflow_text:ops_lib",
    ]

    cc_library(
        name = "server_lib",
        deps = SUPPORTED_TENSORFLOW_OPS,
    )
''')


@pytest.fixture
def tf_serving(tmp_path):
    (tmp_path / "tensorflow_serving" / "model_servers").mkdir(parents=True)
    (tmp_path / "WORKSPACE").write_text(textwrap.dedent(f'''\
        workspace(name = "tf_serving")
        load("//tensorflow_serving:repo.bzl", "tensorflow_http_archive")
        tensorflow_http_archive(
            name = "org_tensorflow",
            git_commit = "{TF_SERVING_2_15_1_TF_COMMIT}",
        )
        load("//tensorflow_serving:workspace.bzl", "tf_serving_workspace")
        tf_serving_workspace()
    '''))
    (tmp_path / "tensorflow_serving" / "model_servers" / "BUILD").write_text(OPS_BUILD)
    return tmp_path


def test_edit_serving_adds_the_repositories_and_links_the_ops(tf_serving):
    r = _recipe()
    a = build_args("Dockerfile.scann")
    kw = dict(source_commit="c" * 40, sha256="d" * 64, cnpy_commit=a["CNPY_COMMIT"], cnpy_remote=a["CNPY_REMOTE"],
              highway_tag=a["HIGHWAY_TAG"], local_archive="/opt/scann-src.tar.gz")
    r.edit_serving(tf_serving, **kw)
    r.edit_serving(tf_serving, **kw)  # idempotent
    ws = (tf_serving / "WORKSPACE").read_text()
    assert ws.count(r.MARKER) == 1
    repos = r.repositories(ws)
    assert repos["cnpy"]["commit"] == a["CNPY_COMMIT"] and repos["cnpy"]["remote"] == a["CNPY_REMOTE"]
    assert repos["com_google_highway"]["tag"] == a["HIGHWAY_TAG"]
    scann = repos["com_google_scann"]
    assert scann["sha256"] == "d" * 64 and scann["strip_prefix"] == f"google-research-{'c' * 40}/scann"
    assert scann["urls"][0] == "file:///opt/scann-src.tar.gz" and ("c" * 40) in scann["urls"][1]
    assert scann["patches"] == ["@//third_party/scann:tf_serving.patch"] and scann["patch_args"] == ["-p1"]
    ops = r.assigned_list((tf_serving / "tensorflow_serving" / "model_servers" / "BUILD").read_text(),
                          "SUPPORTED_TENSORFLOW_OPS")
    assert ops.count(r.OPS_TARGET) == 1 and "@org_tensorflow_text//tensorflow_text:ops_lib" in ops
    r.check_tf_serving(tf_serving, TF_SERVING_2_15_1_TF_COMMIT)
    with pytest.raises(SystemExit, match="TF_SERVING_VERSION"):
        r.check_tf_serving(tf_serving, "0" * 40)


def _scann_tree(root: Path, version="1.3.0", tf="tensorflow~=2.15.0", cnpy="57184ee0db37cac383fc29175950747a46a8b512"):
    scann = root / "scann"
    (scann / "scann" / "oss_wrappers").mkdir(parents=True)
    (scann / "setup.py").write_text(f'setuptools.setup(\n    name="scann",\n    version="{version}",\n)\n')
    (scann / "requirements.txt").write_text(f"{tf}\nnumpy\n")
    (scann / "WORKSPACE").write_text(f'git_repository(\n    name = "cnpy",\n    commit = "{cnpy}",\n)\n'
                                     'git_repository(name = "com_google_highway", tag = "1.0.1")\n')
    (scann / "scann" / "oss_wrappers" / "BUILD.bazel").write_text(
        'cc_library(\n    name = "tf_dependency",\n    deps = [\n'
        '        "@local_config_tf//:libtensorflow_framework",\n'
        '        "@local_config_tf//:tf_header_lib",\n    ],\n)\n')
    return root


def test_check_source_accepts_only_the_exported_scann(tmp_path):
    r = _recipe()
    a = build_args("Dockerfile.scann")
    pins = dict(version=a["SCANN_VERSION"], tf_requirement=a["SCANN_TF_REQUIREMENT"], cnpy_commit=a["CNPY_COMMIT"],
                highway_tag=a["HIGHWAY_TAG"])
    assert r.check_source(_scann_tree(tmp_path / "ok"), **pins)["version"] == "1.3.0"
    with pytest.raises(SystemExit, match="ScaNN 1.3.1, not 1.3.0"):
        r.check_source(_scann_tree(tmp_path / "newer", version="1.3.1"), **pins)
    with pytest.raises(SystemExit, match="tensorflow~=2.15.0"):
        r.check_source(_scann_tree(tmp_path / "tf216", tf="tensorflow~=2.16.1"), **pins)
    with pytest.raises(SystemExit, match="cnpy"):
        r.check_source(_scann_tree(tmp_path / "cnpy", cnpy="f" * 40), **pins)


PATCH = textwrap.dedent('''\
    --- a/scann/oss_wrappers/BUILD.bazel
    +++ b/scann/oss_wrappers/BUILD.bazel
    @@ -1,7 +1,6 @@
     cc_library(
         name = "tf_dependency",
         deps = [
    -        "@local_config_tf//:libtensorflow_framework",
    -        "@local_config_tf//:tf_header_lib",
    +        "@org_tensorflow//tensorflow/core:tensorflow_opensource",
         ],
     )
''')


def test_check_patch_fails_early_when_the_patch_does_not_apply(tmp_path):
    r = _recipe()
    (tmp_path / "tf_serving.patch").write_text(PATCH)
    src = _scann_tree(tmp_path / "src")
    r.check_patch(src, tmp_path / "tf_serving.patch")
    assert "local_config_tf" in (src / "scann" / "scann" / "oss_wrappers" / "BUILD.bazel").read_text()  # dry run
    moved = src / "scann" / "scann" / "oss_wrappers" / "BUILD.bazel"
    moved.write_text(moved.read_text().replace("tf_header_lib", "tf_headers"))  # context of another version
    with pytest.raises(SystemExit, match="does not apply.*SCANN_SOURCE_COMMIT"):
        r.check_patch(src, tmp_path / "tf_serving.patch")

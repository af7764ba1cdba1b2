"""The TF Serving images' recipe (serving/docker/), checked up to the Docker boundary.

No Docker daemon here, so nothing is built. What runs: the Dockerfiles read instruction by
instruction (line continuations and comments as Docker handles them, exec forms with `json`);
serving/docker/scann_recipe.py, the build's fail-early steps, run for real on small source trees
(`patch --dry-run`, Python's `ast` for Starlark). Upstream facts the defaults encode (TF Serving
2.15.1 pins TensorFlow 5b2454e3…, ScaNN builds with clang and -fsized-deallocation -w, the
cnpy/highway pins) were read from upstream, not re-derived here.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import textwrap
from pathlib import Path

import pytest

from tests.dockerfiles import (
    COMMIT_PINS,
    DOCKER,
    PATCH_IN_TFS,
    PROJECT_PATCH,
    SCANN_1_3_0_COMMIT,
    TF_SERVING_2_15_1_TF_COMMIT,
    build_args,
    dockerfile_user,
    final_stage,
    instructions,
    recipe,
    runs,
    stage_copies,
)
from tests.helpers import ROOT


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
    # Two pins, not one: patch files and ScaNN source vary independently. Each commit pin defaults
    # to a full sha; SCANN_SOURCE_COMMIT to the commit of ScaNN 1.3.0.
    assert args["SCANN_SOURCE_COMMIT"] == SCANN_1_3_0_COMMIT
    for pin in COMMIT_PINS:
        assert re.fullmatch(r"[0-9a-f]{40}", args[pin]), pin
    # The serving patch is the project's, written for 1.3.0, copied into the build stage before
    # the step that checks it.
    assert args["SCANN_PATCH"] == "project"
    copies = dict((dest, src) for src, dest in stage_copies("Dockerfile.scann"))
    (dest,) = [d for d, s in copies.items() if s == PROJECT_PATCH.relative_to(ROOT).as_posix()]
    ins = instructions("Dockerfile.scann")
    patch_step = next(i for i, (c, a) in enumerate(ins) if c == "RUN" and "check-patch" in a)
    assert next(i for i, (c, a) in enumerate(ins) if c == "COPY" and a.endswith(dest)) < patch_step
    assert dest in ins[patch_step][1] and f"check-patch /tmp/scann-src {PATCH_IN_TFS}" in ins[patch_step][1]
    steps = runs("Dockerfile.scann")

    def first(text: str) -> int:
        return next(i for i, r in enumerate(steps) if text in r)

    build = first("bazel build")
    for check in ("check-pins", "check-tf-serving", "check-source", "check-patch", "edit-serving"):
        assert first(f"scann_recipe.py {check}") < build  # minutes in, not hours
    pins_step = first("scann_recipe.py check-pins")
    assert pins_step < first("curl ")  # before anything is downloaded
    for pin in COMMIT_PINS:
        assert f'"{pin}=${{{pin}}}"' in steps[pins_step]
    assert steps[build].startswith('CC="clang-${CLANG_VERSION}"') and args["CLANG_VERSION"].isdigit()
    assert first("apt-get install") < build and "clang-${CLANG_VERSION}" in steps[first("apt-get install")]
    opts = args["TF_SERVING_BUILD_OPTIONS"].split()
    for flag in ("--copt=-fsized-deallocation", "--copt=-w", "--copt=-mavx2", "--copt=-mfma", "--cxxopt=-std=c++17"):
        assert flag in opts
    assert "${TF_SERVING_BUILD_OPTIONS}" in steps[build]
    assert "tensorflow_serving/model_servers:tensorflow_model_server" in steps[build]


def test_scann_build_calls_the_recipe_with_arguments_it_accepts():
    mod = recipe()
    parser_checked = 0
    for step in runs("Dockerfile.scann"):
        for part in step.split("&&"):
            tokens = shlex.split(part.replace("$(", "").replace(")", ""))
            if "/opt/scann_recipe.py" in tokens:
                argv = tokens[tokens.index("/opt/scann_recipe.py") + 1:]
                ns = mod.build_parser().parse_args(argv)  # raises SystemExit on an unknown flag
                parser_checked += 1
                assert ns.cmd in {"check-pins", "check-tf-serving", "check-source", "check-patch", "edit-serving"}
    assert parser_checked == 5


def test_docs_name_the_pinned_scann_commit_and_the_patch():
    doc = (Path(ROOT) / "docs" / "tf-serving-production.md").read_text()
    assert f"`{SCANN_1_3_0_COMMIT}`" in doc
    assert PROJECT_PATCH.relative_to(ROOT).as_posix() in doc
    assert f"patches/{PROJECT_PATCH.name}" in (DOCKER / "README.md").read_text()


# --- scann_recipe.py on small trees --------------------------------------------------------------
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
    r = recipe()
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
    assert repos["cnpy"]["guarded"] and repos["com_google_highway"]["guarded"]  # behind maybe()
    scann = repos["com_google_scann"]
    assert not scann["guarded"]
    assert scann["sha256"] == "d" * 64 and scann["strip_prefix"] == f"google-research-{'c' * 40}/scann"
    assert scann["urls"][0] == "file:///opt/scann-src.tar.gz" and ("c" * 40) in scann["urls"][1]
    assert scann["patches"] == ["@//third_party/scann:tf_serving.patch"] and scann["patch_args"] == ["-p1"]
    ops = r.assigned_list((tf_serving / "tensorflow_serving" / "model_servers" / "BUILD").read_text(),
                          "SUPPORTED_TENSORFLOW_OPS")
    assert ops.count(r.OPS_TARGET) == 1 and "@org_tensorflow_text//tensorflow_text:ops_lib" in ops
    r.check_tf_serving(tf_serving, TF_SERVING_2_15_1_TF_COMMIT)
    with pytest.raises(SystemExit, match="TF_SERVING_VERSION"):
        r.check_tf_serving(tf_serving, "0" * 40)


def _evaluate_workspace_tail(block: str, defined: dict[str, str]) -> dict[str, str]:
    """{repository: rule} after running the appended WORKSPACE block as Bazel does once TensorFlow's
    workspace macros have run: `defined` is what those macros defined; defining one of them again
    fails, as Bazel does after any load(). `maybe` is @bazel_tools' (skip if native.existing_rule)."""
    repos = dict(defined)

    def rule(kind):
        def define(name, **attrs):
            if name in repos:
                raise RuntimeError("Cannot redefine repository after any load statement in the WORKSPACE "
                                   f"file (for repository '{name}')")
            repos[name] = kind
        return define

    def maybe(repo_rule, name, **attrs):
        if name not in repos:
            repo_rule(name=name, **attrs)

    symbols = {"git_repository": rule("git_repository"), "http_archive": rule("http_archive"), "maybe": maybe}
    scope: dict = {}

    def load(label, *names, **aliases):
        scope.update({n: symbols[n] for n in names}, **{alias: symbols[n] for alias, n in aliases.items()})

    scope["load"] = load
    exec(compile(block, "WORKSPACE", "exec"), scope)  # the block is Starlark that Python also parses
    return repos


def test_workspace_block_keeps_repositories_tensorflow_already_defines(tf_serving):
    r = recipe()
    a = build_args("Dockerfile.scann")
    r.edit_serving(tf_serving, source_commit=SCANN_1_3_0_COMMIT, sha256="d" * 64, cnpy_commit=a["CNPY_COMMIT"],
                   cnpy_remote=a["CNPY_REMOTE"], highway_tag=a["HIGHWAY_TAG"])
    ws = (tf_serving / "WORKSPACE").read_text()
    block = ws[ws.index(r.MARKER):]
    # TensorFlow defines none of them: all three are ours.
    assert _evaluate_workspace_tail(block, {"org_tensorflow": "http_archive"}) == {
        "org_tensorflow": "http_archive", "cnpy": "git_repository", "com_google_highway": "git_repository",
        "com_google_scann": "http_archive"}
    # Newer TensorFlow's tf_workspace2() defines @com_google_highway itself: that one is kept.
    repos = _evaluate_workspace_tail(block, {"com_google_highway": "tf_http_archive"})
    assert repos["com_google_highway"] == "tf_http_archive" and repos["cnpy"] == "git_repository"
    assert repos["com_google_scann"] == "http_archive"
    # What an unguarded block (the recipe before maybe()) does there:
    unguarded = block.replace("scann_maybe(\n    scann_git_repository,\n", "scann_git_repository(\n")
    assert unguarded.count("scann_git_repository(") == 2
    with pytest.raises(RuntimeError, match="Cannot redefine repository.*com_google_highway"):
        _evaluate_workspace_tail(unguarded, {"com_google_highway": "tf_http_archive"})
    # com_google_scann is never guarded: another ScaNN must fail the build, not replace the checked one.
    with pytest.raises(RuntimeError, match="com_google_scann"):
        _evaluate_workspace_tail(block, {"com_google_scann": "http_archive"})


def test_commit_pins_must_be_full_shas(tf_serving):
    r = recipe()
    a = build_args("Dockerfile.scann")
    r.check_pins([f"{pin}={a[pin]}" for pin in COMMIT_PINS])
    assert r.main(["check-pins"] + [f"{pin}={a[pin]}" for pin in COMMIT_PINS]) == 0
    for bad in ("", "3fa387dc", SCANN_1_3_0_COMMIT[:12], "master", "v1.3.0", SCANN_1_3_0_COMMIT.upper(),
                SCANN_1_3_0_COMMIT + "0", "g" * 40, f" {SCANN_1_3_0_COMMIT}"):
        with pytest.raises(SystemExit, match="SCANN_SOURCE_COMMIT=.* is not a full 40-hex commit sha"):
            r.check_pins([f"SCANN_SOURCE_COMMIT={bad}"])
    with pytest.raises(SystemExit, match="CNPY_COMMIT='57184ee'"):
        r.main(["check-pins", f"SCANN_SOURCE_COMMIT={SCANN_1_3_0_COMMIT}", "CNPY_COMMIT=57184ee"])
    with pytest.raises(SystemExit, match="BUILD_ARG=value"):
        r.check_pins([SCANN_1_3_0_COMMIT])
    # edit-serving refuses one too: the archive's strip_prefix is named after the full sha.
    with pytest.raises(SystemExit, match="SCANN_SOURCE_COMMIT"):
        r.edit_serving(tf_serving, source_commit="3fa387dc", sha256="d" * 64, cnpy_commit=a["CNPY_COMMIT"],
                       cnpy_remote=a["CNPY_REMOTE"], highway_tag=a["HIGHWAY_TAG"])
    assert r.MARKER not in (tf_serving / "WORKSPACE").read_text()

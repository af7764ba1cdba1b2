"""The serving patch of the TF Serving + ScaNN image (serving/docker/patches/),
checked against the ScaNN 1.3.0 BUILD files it edits, and the recipe's patch step run for real.

Split from tests/test_tfs_recipe.py (the images, pins and WORKSPACE edits).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.dockerfiles import (
    PATCH_IN_TFS,
    PROJECT_PATCH,
    build_args,
    recipe,
    runs,
    stage_copies,
)
from tests.helpers import ROOT

# The two BUILD files the serving patch edits, as upstream has them at 3fa387dc… (ScaNN 1.3.0),
# cut to the parts around the patch's hunks: all of the oss_wrappers/BUILD.bazel head, and of
# scann_ops/cc/BUILD.bazel the head, the end of the `scann` library and the whole `scann_npy`.
OSS_WRAPPERS_1_3_0 = textwrap.dedent('''\
    package(
        default_visibility = ["//visibility:public"],
        licenses = ["notice"],
    )

    cc_library(
        name = "tf_dependency",
        tags = ["local"],
        deps = [
            "@local_config_tf//:libtensorflow_framework",
            "@local_config_tf//:tf_header_lib",
        ],
    )

    cc_library(
        name = "scann_aligned_malloc",
        srcs = ["scann_aligned_malloc.cc"],
        hdrs = ["scann_aligned_malloc.h"],
        tags = ["local"],
    )
''')
SCANN_NPY_DEPS_1_3_0 = (":scann", "//scann/base:single_machine_base", "//scann/base:single_machine_factory_options",
                        "//scann/data_format:datapoint", "//scann/data_format:dataset", "//scann/utils:common",
                        "//scann/utils:io_oss_wrapper", "//scann/utils:single_machine_autopilot",
                        "//scann/utils:types", "@com_google_absl//absl/synchronization",
                        "@com_google_absl//absl/types:span")
# What upstream's tf_serving.patch (1e56278f…) deletes: the older ScaNN it was written for.
SCANN_NPY_DEPS_OLDER = (":scann", "//scann/utils:io_oss_wrapper")


def scann_ops_cc_build(npy_deps=SCANN_NPY_DEPS_1_3_0) -> str:
    deps = "".join(f'        "{d}",\n' for d in npy_deps)
    return textwrap.dedent('''\
        load("@pybind11_bazel//:build_defs.bzl", "pybind_library")

        package(
            default_visibility = ["//visibility:public"],
            licenses = ["notice"],
        )

        cc_binary(
            name = "_scann_ops.so",
            copts = [
                "-pthread",
            ],
            linkshared = 1,
            tags = ["local"],
            deps = [
                ":scann_ops",
                ":scann_ops_kernels",
            ],
        )

        cc_library(
            name = "scann",
            srcs = ["scann.cc"],
            hdrs = ["scann.h"],
            tags = ["local"],
            deps = [
                "@com_google_absl//absl/types:span",
                "@com_google_protobuf//:protobuf",
            ],
        )

        pybind_library(
            name = "scann_npy",
            srcs = ["scann_npy.cc"],
            hdrs = ["scann_npy.h"],
            tags = ["local"],
            deps = [
    ''') + deps + "    ],\n)\n"


def _scann_tree(root: Path, version="1.3.0", tf="tensorflow~=2.15.0", cnpy="57184ee0db37cac383fc29175950747a46a8b512",
                npy_deps=SCANN_NPY_DEPS_1_3_0):
    scann = root / "scann"
    for pkg in ("oss_wrappers", "scann_ops/cc"):
        (scann / "scann" / pkg).mkdir(parents=True)
    (scann / "setup.py").write_text(f'setuptools.setup(\n    name="scann",\n    version="{version}",\n)\n')
    (scann / "requirements.txt").write_text(f"{tf}\nnumpy\n")
    (scann / "WORKSPACE").write_text(f'git_repository(\n    name = "cnpy",\n    commit = "{cnpy}",\n)\n'
                                     'git_repository(name = "com_google_highway", tag = "1.0.1")\n')
    (scann / "scann" / "oss_wrappers" / "BUILD.bazel").write_text(OSS_WRAPPERS_1_3_0)
    (scann / "scann" / "scann_ops" / "cc" / "BUILD.bazel").write_text(scann_ops_cc_build(npy_deps))
    return root


def test_check_source_accepts_only_the_exported_scann(tmp_path):
    r = recipe()
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


# scann/tf_serving/patches/scann/tf_serving.patch at SCANN_PATCHES_COMMIT (1e56278f…), as read
# upstream: what SCANN_PATCH=upstream downloads.
UPSTREAM_PATCH = textwrap.dedent('''\
    diff --git a/scann/oss_wrappers/BUILD.bazel b/scann/oss_wrappers/BUILD.bazel
    index 834e80b..ac0d048 100644
    --- a/scann/oss_wrappers/BUILD.bazel
    +++ b/scann/oss_wrappers/BUILD.bazel
    @@ -7,8 +7,7 @@ cc_library(
         name = "tf_dependency",
         tags = ["local"],
         deps = [
    -        "@local_config_tf//:libtensorflow_framework",
    -        "@local_config_tf//:tf_header_lib",
    +        "@org_tensorflow//tensorflow/core:tensorflow_opensource",
         ],
     )
    ~
    diff --git a/scann/scann_ops/cc/BUILD.bazel b/scann/scann_ops/cc/BUILD.bazel
    index 1bc9ac0..c525fee 100644
    --- a/scann/scann_ops/cc/BUILD.bazel
    +++ b/scann/scann_ops/cc/BUILD.bazel
    @@ -1,10 +1,17 @@
    -load("@pybind11_bazel//:build_defs.bzl", "pybind_library")
    -
     package(
         default_visibility = ["//visibility:public"],
         licenses = ["notice"],
     )
    ~
    +cc_library(
    +    name = "scann_ops_static",
    +    alwayslink = 1,
    +    deps = [
    +        ":scann_ops",
    +        ":scann_ops_kernels",
    +    ]
    +)
    +
     cc_binary(
         name = "_scann_ops.so",
         copts = [
    @@ -87,14 +94,3 @@ cc_library(
             "@com_google_protobuf//:protobuf",
         ],
     )
    -
    -pybind_library(
    -    name = "scann_npy",
    -    srcs = ["scann_npy.cc"],
    -    hdrs = ["scann_npy.h"],
    -    tags = ["local"],
    -    deps = [
    -        ":scann",
    -        "//scann/utils:io_oss_wrapper",
    -    ],
    -)
''').replace("\n~\n", "\n \n")  # a blank context line is one space


def _tree_files(src: Path) -> dict[str, str]:
    return {p.relative_to(src).as_posix(): p.read_text() for p in sorted(src.rglob("*")) if p.is_file()}


def _run_patch_step(tmp_path: Path, src: Path, **build_args_: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """Step 2 of Dockerfile.scann, the RUN line as Docker reads it, run by `sh` with the build
    arguments as its environment. `tmp_path/image` stands in for the build stage's `/` (its COPYs
    made from this checkout), `src` for /tmp/scann-src; `curl` serves UPSTREAM_PATCH and logs the
    URL; `python3` is this interpreter."""
    image = tmp_path / "image"
    for source, dest in stage_copies("Dockerfile.scann"):
        (image / dest.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(ROOT) / source, image / dest.lstrip("/"))
    workdir = image / "tensorflow-serving"
    workdir.mkdir()
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (tmp_path / "upstream.patch").write_text(UPSTREAM_PATCH)
    (bin_ / "curl").write_text(textwrap.dedent(f'''\
        #!/bin/sh
        out=""; url=""
        while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift 2 ;; *) url="$1"; shift ;; esac; done
        echo "$url" >> "{tmp_path}/curl.log"
        cp "{tmp_path}/upstream.patch" "$out"
    '''))
    (bin_ / "python3").symlink_to(sys.executable)
    (bin_ / "curl").chmod(0o755)
    (step,) = [r for r in runs("Dockerfile.scann") if "scann_recipe.py check-patch" in r]
    step = step.replace("/opt/", f"{image}/opt/").replace("/tmp/scann-src", str(src))
    env = {**build_args("Dockerfile.scann"), **build_args_, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(["sh", "-c", step], cwd=workdir, env=env, capture_output=True, text=True)
    return res, workdir, tmp_path / "curl.log"


def test_patch_step_checks_the_project_patch_against_scann_1_3_0(tmp_path):
    src = _scann_tree(tmp_path / "src")
    before = _tree_files(src)
    res, tfs, curl_log = _run_patch_step(tmp_path, src)  # the defaults: SCANN_PATCH=project
    assert res.returncode == 0, res.stdout + res.stderr  # the patch applies to the 1.3.0 BUILD files
    assert "scann_recipe: check-patch ok" in res.stdout
    assert (tfs / PATCH_IN_TFS).read_bytes() == PROJECT_PATCH.read_bytes()
    assert not curl_log.exists()  # nothing downloaded
    # //third_party/scann is a package (WORKSPACE's patches label needs one) and parses.
    recipe().ast.parse((tfs / "third_party" / "scann" / "BUILD.bazel").read_text())
    assert _tree_files(src) == before  # a dry run


def test_patch_step_with_upstreams_patch_stops_on_scann_1_3_0(tmp_path):
    src = _scann_tree(tmp_path / "src")
    a = build_args("Dockerfile.scann")
    res, tfs, curl_log = _run_patch_step(tmp_path, src, SCANN_PATCH="upstream")
    assert curl_log.read_text().split() == [
        f"https://raw.githubusercontent.com/google-research/google-research/{a['SCANN_PATCHES_COMMIT']}"
        "/scann/tf_serving/patches/scann/tf_serving.patch"]
    assert res.returncode != 0
    # What a dry run on the 1.3.0 files read upstream showed: the oss_wrappers hunk applies, hunk 2
    # of scann_ops/cc (the shorter scann_npy deps) does not.
    assert "does not apply to the ScaNN source at SCANN_SOURCE_COMMIT" in res.stderr
    assert "Hunk #2 FAILED" in res.stderr and "1 out of 2 hunks FAILED" in res.stderr
    # … while on the older ScaNN it was written for it does.
    older = _scann_tree(tmp_path / "older", npy_deps=SCANN_NPY_DEPS_OLDER)
    recipe().check_patch(older, tfs / PATCH_IN_TFS)


def test_patch_step_rejects_an_unknown_scann_patch(tmp_path):
    res, _, curl_log = _run_patch_step(tmp_path, _scann_tree(tmp_path / "src"), SCANN_PATCH="1e56278f")
    assert res.returncode != 0 and "SCANN_PATCH=1e56278f: expected project or upstream" in res.stderr
    assert "check-patch" not in res.stdout and not curl_log.exists()


def _diff_lines(patch: str, sign: str) -> list[str]:
    return [line[1:] for line in patch.splitlines() if line[:1] == sign and not line.startswith(sign * 3)]


def test_project_patch_makes_upstreams_change_to_scann_1_3_0(tmp_path):
    r = recipe()
    src = _scann_tree(tmp_path / "src")
    ours = PROJECT_PATCH.read_text()
    # The same lines added as upstream's; the same lines removed plus 1.3.0's longer scann_npy deps.
    assert _diff_lines(ours, "+") == _diff_lines(UPSTREAM_PATCH, "+")
    removed = _diff_lines(ours, "-")
    extra = [f'        "{d}",' for d in SCANN_NPY_DEPS_1_3_0 if d not in SCANN_NPY_DEPS_OLDER]
    assert [line for line in removed if line not in extra] == _diff_lines(UPSTREAM_PATCH, "-")
    assert all(line in removed for line in extra)
    # Applied for real, with the options the check and Bazel use.
    subprocess.run(["patch", *r.PATCH_ARGS, "--batch", "--forward", "--no-backup-if-mismatch", "-d", str(src / "scann"),
                    "-i", str(PROJECT_PATCH)], check=True, capture_output=True)
    cc = (src / "scann" / "scann" / "scann_ops" / "cc" / "BUILD.bazel").read_text()
    oss = (src / "scann" / "scann" / "oss_wrappers" / "BUILD.bazel").read_text()
    assert not list(src.rglob("*.rej")) and not list(src.rglob("*.orig"))

    def targets(text):
        return {c.func.id + ":" + kw["name"]: kw for c in r.ast.walk(r.ast.parse(text)) if isinstance(c, r.ast.Call)
                for kw in [{k.arg: r._literal(k.value) for k in c.keywords}] if "name" in kw}

    cc_targets = targets(cc)
    assert list(cc_targets) == ["cc_library:scann_ops_static", "cc_binary:_scann_ops.so", "cc_library:scann"]
    static = cc_targets["cc_library:scann_ops_static"]
    assert static["alwayslink"] == 1 and static["deps"] == [":scann_ops", ":scann_ops_kernels"]
    assert "pybind" not in cc and "load(" not in cc  # the package loads without @pybind11_bazel
    tf_dependency = targets(oss)["cc_library:tf_dependency"]
    assert tf_dependency["deps"] == ["@org_tensorflow//tensorflow/core:tensorflow_opensource"]
    assert "local_config_tf" not in oss and "cc_library:scann_aligned_malloc" in targets(oss)
    # Bazel's native patch ignores what precedes the first diff: no line there looks like one.
    head = ours[:ours.index("diff --git ")]
    assert all(line.startswith("# ") or line == "#" for line in head.splitlines())


def test_check_patch_fails_when_the_source_is_not_scann_1_3_0(tmp_path):
    r = recipe()
    with pytest.raises(SystemExit, match="does not apply to the ScaNN source at SCANN_SOURCE_COMMIT"):
        r.check_patch(_scann_tree(tmp_path / "older", npy_deps=SCANN_NPY_DEPS_OLDER), PROJECT_PATCH)
    # The last context line of a hunk changed: patch's default fuzz would accept that, Bazel's
    # native patch would not, so the check does not either.
    src = _scann_tree(tmp_path / "src")
    r.check_patch(src, PROJECT_PATCH)
    cc = src / "scann" / "scann" / "scann_ops" / "cc" / "BUILD.bazel"
    cc.write_text(cc.read_text().replace("    copts = [\n", "    copts = [  # edited\n", 1))
    fuzzy = subprocess.run(["patch", "-p1", "--dry-run", "--batch", "--forward", "-d", str(src / "scann"),
                            "-i", str(PROJECT_PATCH)], capture_output=True, text=True)
    assert fuzzy.returncode == 0 and "fuzz" in fuzzy.stdout
    with pytest.raises(SystemExit, match="Hunk #1 FAILED"):
        r.check_patch(src, PROJECT_PATCH)

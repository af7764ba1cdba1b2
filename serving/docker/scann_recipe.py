#!/usr/bin/env python3
"""Checks and edits for building TF Serving with ScaNN's ops (serving/docker/Dockerfile.scann).

Each step runs in the first minutes of the Docker build, before the hours of Bazel, and stops it
with a message that names the build argument to change:

  check-pins    every commit pin is a full 40-hex sha (an abbreviated sha, branch or tag can move
                or be ambiguous, and the archive's top directory, strip_prefix, is named after the
                full sha); runs before anything is downloaded.
  check-source  the ScaNN source commit is the ScaNN version the model was exported with
                (scann/setup.py) and builds against the expected TensorFlow (requirements.txt);
                ScaNN's own WORKSPACE pins the same cnpy / highway we add to TF Serving's.
  check-patch   the serving patch for ScaNN's BUILD files (SCANN_PATCH: by default the project's
                patches/scann-1.3.0-tf_serving.patch, or upstream's tf_serving.patch at
                SCANN_PATCHES_COMMIT) applies to that source as Bazel will apply it: `patch -p1
                --dry-run --fuzz=0` (http_archive's native patch has no fuzz). Its context lines
                change between ScaNN versions.
  edit-serving  TF Serving's WORKSPACE gets what upstream's serving.patch adds (cnpy, highway,
                ScaNN as `com_google_scann` patched with tf_serving.patch, pinned by sha256) and
                model_servers/BUILD links `scann_ops_static` into SUPPORTED_TENSORFLOW_OPS; both
                files are re-parsed afterwards and checked. cnpy and highway are added through
                `maybe()`: a repository TensorFlow's workspace macros already define (newer TF
                defines @com_google_highway) is kept rather than redefined, which Bazel rejects
                after a load() ("Cannot redefine repository after any load statement").

Standard library only, Python 3.8+ (the devel image's interpreter). Starlark files are read with
Python's `ast`, which parses the Starlark subset these files use.
"""
import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

OPS_TARGET = "@com_google_scann//scann/scann_ops/cc:scann_ops_static"
GITHUB_ARCHIVE = "https://github.com/google-research/google-research/archive/{commit}.tar.gz"
MARKER = "# --- ScaNN ops: added by serving/docker/scann_recipe.py ---"
FULL_SHA = re.compile(r"[0-9a-f]{40}")
# Added through maybe(): TensorFlow's workspace may define them too. com_google_scann is not: a
# second definition of it would mean a different ScaNN than the checked one, so that must fail.
GUARDED = ("cnpy", "com_google_highway")


class RecipeError(SystemExit):
    def __init__(self, message):
        super().__init__("scann_recipe: " + message)


# --- Starlark ------------------------------------------------------------------------------------
def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _is_repo_rule(name):
    return name.endswith(("_repository", "http_archive"))


def repositories(text):
    """{repository name: {attribute: value}} declared by a WORKSPACE text: direct repository-rule
    calls (`rule`), and `maybe(rule, name = ...)` calls (`rule`, plus `guarded=True`)."""
    repos = {}
    for node in ast.walk(ast.parse(text)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kw = {k.arg: _literal(k.value) for k in node.keywords if k.arg}
        fn, guarded = node.func.id, False
        if fn.endswith("maybe") and node.args and isinstance(node.args[0], ast.Name):
            fn, guarded = node.args[0].id, True
        if isinstance(kw.get("name"), str) and _is_repo_rule(fn):
            repos[kw["name"]] = dict(kw, rule=fn, guarded=guarded)
    return repos


def assigned_list(text, name):
    """The string literals of a top-level `NAME = [...] + f([...]) + ...` assignment."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return [n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    raise RecipeError(f"no `{name} = ...` in the file")


# --- checks --------------------------------------------------------------------------------------
def check_commit(arg, value):
    """`value` of build argument `arg` is a full, lower-case 40-hex commit sha."""
    if not FULL_SHA.fullmatch(value or ""):
        raise RecipeError(f"{arg}={value!r} is not a full 40-hex commit sha: pass the whole lower-case sha "
                          "(an abbreviated sha, branch or tag can move or be ambiguous, and the source "
                          "archive's top directory is named after the full sha)")
    return value


def check_pins(assignments):
    """assignments: ["BUILD_ARG=value", ...]; every value must be a full commit sha."""
    for item in assignments:
        arg, sep, value = item.partition("=")
        if not sep:
            raise RecipeError(f"check-pins takes BUILD_ARG=value, got {item!r}")
        check_commit(arg, value)


def check_source(src, version, tf_requirement, cnpy_commit, highway_tag):
    """src: the extracted google-research tree (holds scann/)."""
    scann = Path(src) / "scann"
    setup = (scann / "setup.py").read_text()
    found = re.search(r"""(?<![\w.])version\s*=\s*["']([^"']+)["']""", setup)
    if not found or found.group(1) != version:
        raise RecipeError(f"SCANN_SOURCE_COMMIT holds ScaNN {found.group(1) if found else '?'}, not {version} "
                          "(the version the SavedModel was exported with): op definitions would differ at load")
    reqs = (scann / "requirements.txt").read_text() if (scann / "requirements.txt").exists() else setup
    if tf_requirement not in reqs.replace(" ", ""):
        raise RecipeError(f"ScaNN {version} at SCANN_SOURCE_COMMIT does not require {tf_requirement}")
    own = repositories((scann / "WORKSPACE").read_text()) if (scann / "WORKSPACE").exists() else {}
    pins = {"cnpy": ("commit", cnpy_commit), "com_google_highway": ("tag", highway_tag)}
    for name, (attr, ours) in pins.items():
        if name in own and own[name].get(attr) != ours:
            raise RecipeError(f"ScaNN's WORKSPACE pins {name} {attr}={own[name].get(attr)!r}, the build "
                              f"arguments {ours!r}: make them equal")
    return {"version": version, "workspace": sorted(own)}


# As com_google_scann's http_archive applies it: inside scann/ (its strip_prefix), patch_args -p1,
# and Bazel's native patch, which allows offsets but no fuzz (so neither does the check).
PATCH_ARGS = ("-p1", "--fuzz=0")


def check_patch(src, patch):
    """`patch --dry-run` of the serving patch inside scann/, with the options Bazel applies it with."""
    patch = Path(patch).resolve()  # absolute: `patch -d` changes directory before it opens -i
    if not patch.is_file():
        raise RecipeError(f"no serving patch at {patch} (SCANN_PATCH)")
    cmd = ["patch", *PATCH_ARGS, "--dry-run", "--batch", "--forward", "-d", str(Path(src) / "scann"),
           "-i", str(patch)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RecipeError(f"the serving patch {patch} does not apply to the ScaNN source at SCANN_SOURCE_COMMIT "
                          "(patch -p1 --fuzz=0, as Bazel applies it). SCANN_PATCH=project is written for ScaNN "
                          "1.3.0 at 3fa387dc…; with SCANN_PATCH=upstream, pick a SCANN_PATCHES_COMMIT whose "
                          "tf_serving.patch was written for that ScaNN version.\n" + res.stdout + res.stderr)


def check_tf_serving(tfs_root, tf_commit):
    """The devel image's source tree is the TF Serving release we mean (its pinned TensorFlow)."""
    ws = repositories((Path(tfs_root) / "WORKSPACE").read_text())
    got = ws.get("org_tensorflow", {}).get("git_commit")
    if got != tf_commit:
        raise RecipeError(f"TF Serving's WORKSPACE pins TensorFlow {got}, expected {tf_commit} "
                          "(TF_SERVING_VERSION and the devel image disagree)")


# --- edits ---------------------------------------------------------------------------------------
def workspace_block(source_commit, sha256, cnpy_commit, cnpy_remote, highway_tag, local_archive=""):
    """What upstream's serving.patch adds, with ScaNN pinned by sha256. `local_archive`: the tarball
    the checks ran on, tried first (same sha256, so the bytes Bazel builds are the checked ones)."""
    urls = ([f"file://{local_archive}"] if local_archive else []) + [GITHUB_ARCHIVE.format(commit=source_commit)]
    return f'''
{MARKER}
load("@bazel_tools//tools/build_defs/repo:git.bzl", scann_git_repository = "git_repository")
load("@bazel_tools//tools/build_defs/repo:http.bzl", scann_http_archive = "http_archive")
load("@bazel_tools//tools/build_defs/repo:utils.bzl", scann_maybe = "maybe")

# maybe(): where TensorFlow's workspace macros already define one of these, theirs is kept (a
# second definition after a load() fails the whole WORKSPACE).
scann_maybe(
    scann_git_repository,
    name = "cnpy",
    commit = "{cnpy_commit}",
    remote = "{cnpy_remote}",
)

scann_maybe(
    scann_git_repository,
    name = "com_google_highway",
    remote = "https://github.com/google/highway.git",
    tag = "{highway_tag}",
)

scann_http_archive(
    name = "com_google_scann",
    sha256 = "{sha256}",
    strip_prefix = "google-research-{source_commit}/scann",
    urls = {json.dumps(urls)},
    patches = ["@//third_party/scann:tf_serving.patch"],
    patch_args = ["-p1"],
)
'''


def edit_serving(tfs_root, source_commit, sha256, cnpy_commit, cnpy_remote, highway_tag, local_archive=""):
    check_commit("SCANN_SOURCE_COMMIT", source_commit)
    check_commit("CNPY_COMMIT", cnpy_commit)
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise RecipeError(f"--sha256 {sha256!r} is not a sha256 hex digest")
    root = Path(tfs_root)
    ws_path, build_path = root / "WORKSPACE", root / "tensorflow_serving" / "model_servers" / "BUILD"
    ws = ws_path.read_text()
    if MARKER not in ws:
        ws_path.write_text(ws.rstrip("\n") + "\n" + workspace_block(source_commit, sha256, cnpy_commit,
                                                                    cnpy_remote, highway_tag, local_archive))
    build = build_path.read_text()
    if OPS_TARGET not in assigned_list(build, "SUPPORTED_TENSORFLOW_OPS"):
        build, n = re.subn(r"^(SUPPORTED_TENSORFLOW_OPS = )", rf'\1["{OPS_TARGET}"] + ', build, flags=re.M)
        if n != 1:
            raise RecipeError("SUPPORTED_TENSORFLOW_OPS not found in tensorflow_serving/model_servers/BUILD")
        build_path.write_text(build)
    # Re-read both as Starlark: what Bazel will see.
    repos = repositories(ws_path.read_text())
    for name in ("cnpy", "com_google_highway", "com_google_scann"):
        if name not in repos:
            raise RecipeError(f"{name} missing from WORKSPACE after the edit")
        if repos[name]["guarded"] != (name in GUARDED):
            raise RecipeError(f"{name} in WORKSPACE is {'' if repos[name]['guarded'] else 'not '}behind maybe()")
    if OPS_TARGET not in assigned_list(build_path.read_text(), "SUPPORTED_TENSORFLOW_OPS"):
        raise RecipeError("scann_ops_static is not in SUPPORTED_TENSORFLOW_OPS after the edit")
    return repos


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("check-pins")
    k.add_argument("pins", nargs="+", metavar="BUILD_ARG=SHA")
    s = sub.add_parser("check-source")
    s.add_argument("src")
    s.add_argument("--version", required=True)
    s.add_argument("--tf-requirement", required=True)
    s.add_argument("--cnpy-commit", required=True)
    s.add_argument("--highway-tag", required=True)
    c = sub.add_parser("check-patch")
    c.add_argument("src")
    c.add_argument("patch")
    t = sub.add_parser("check-tf-serving")
    t.add_argument("tfs_root")
    t.add_argument("--tf-commit", required=True)
    e = sub.add_parser("edit-serving")
    e.add_argument("tfs_root")
    for flag in ("--source-commit", "--sha256", "--cnpy-commit", "--cnpy-remote", "--highway-tag"):
        e.add_argument(flag, required=True)
    e.add_argument("--local-archive", default="")
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    if a.cmd == "check-pins":
        check_pins(a.pins)
    elif a.cmd == "check-source":
        print(check_source(a.src, a.version, a.tf_requirement, a.cnpy_commit, a.highway_tag))
    elif a.cmd == "check-patch":
        check_patch(a.src, a.patch)
    elif a.cmd == "check-tf-serving":
        check_tf_serving(a.tfs_root, a.tf_commit)
    else:
        edit_serving(a.tfs_root, a.source_commit, a.sha256, a.cnpy_commit, a.cnpy_remote, a.highway_tag,
                     a.local_archive)
    print(f"scann_recipe: {a.cmd} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

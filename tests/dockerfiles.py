"""The TF Serving Dockerfiles (serving/docker/) read instruction by instruction,
as Docker handles line continuations and comments."""
from __future__ import annotations

import importlib.util
import shlex
from functools import cache
from pathlib import Path

from tests.helpers import ROOT

DOCKER = Path(ROOT) / "serving" / "docker"


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


def stage_copies(name: str, stage: int = 0) -> list[tuple[str, str]]:
    """(source relative to the build context, destination) of each plain COPY in FROM stage `stage`
    (the build context is the repository root; COPY --from=… is left out)."""
    ins, n, out = instructions(name), -1, []
    for cmd, args in ins:
        n += cmd == "FROM"
        if cmd == "COPY" and n == stage and not args.startswith("--"):
            *srcs, dest = shlex.split(args)
            out += [(src, dest) for src in srcs]
    return out


# --- the ScaNN image's pins and recipe, shared by test_tfs_recipe*.py ---------------------------
TF_SERVING_2_15_1_TF_COMMIT = "5b2454e3de818c7ac24cf7fbb8d82aed83a577ca"
# google-research commit that set scann/setup.py to version="1.3.0" (requirements.txt
# tensorflow~=2.15.0, releases.md's 1.3.0 note): read upstream, see docs/tf-serving-production.md.
SCANN_1_3_0_COMMIT = "3fa387dc391cb66cdd1fec1469255e7c4b657571"
COMMIT_PINS = ("SCANN_SOURCE_COMMIT", "SCANN_PATCHES_COMMIT", "TF_COMMIT", "CNPY_COMMIT")
# The project's serving patch (the default SCANN_PATCH) and where step 2 puts it: the label
# WORKSPACE patches com_google_scann with is //third_party/scann:tf_serving.patch.
PROJECT_PATCH = DOCKER / "patches" / "scann-1.3.0-tf_serving.patch"
PATCH_IN_TFS = "third_party/scann/tf_serving.patch"


def recipe():
    """serving/docker/scann_recipe.py, loaded as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("scann_recipe", DOCKER / "scann_recipe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

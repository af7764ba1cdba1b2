"""serving/docker/smoke.sh: what CI sees with and without Docker, and its checks run for real.

Without a Docker daemon (this machine) the Docker part cannot run; `--if-available` must say so
plainly and succeed, and a plain run must fail. `--engine local` runs the same export and
smoke_check.py (every signature over REST and gRPC with poster_similarity/client/poster_client.py, compared with the
SavedModel in-process) against `posters serve`, which covers the script up to `docker run`.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT as ROOT_DIR

ROOT = Path(ROOT_DIR)  # the repository root
SMOKE = ROOT / "serving" / "docker" / "smoke.sh"


def _run(args, path_dirs, timeout=60):
    env = {**os.environ, "PATH": os.pathsep.join(map(str, path_dirs))}
    return subprocess.run(["bash", str(SMOKE), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def no_daemon(tmp_path):
    """A `docker` CLI whose daemon is down, as on this machine."""
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    return [tmp_path, "/usr/bin", "/bin"]


def test_if_available_skips_loudly_without_docker(no_daemon):
    res = _run(["--if-available"], no_daemon)
    assert res.returncode == 0
    assert res.stdout.startswith("SKIPPED serving/docker/smoke.sh")
    assert "NOT built or run" in res.stdout
    assert "Cannot connect to the Docker daemon" in res.stdout


def test_without_docker_the_plain_run_fails(no_daemon, tmp_path):
    res = _run([], no_daemon)
    assert res.returncode == 1 and "SKIPPED" in res.stderr
    absent = _run(["--if-available"], [tmp_path / "empty", "/usr/bin", "/bin"])  # no docker CLI at all
    if not (Path("/usr/bin/docker").exists() or Path("/bin/docker").exists()):
        assert absent.returncode == 0 and absent.stdout.startswith("SKIPPED")


def test_a_failed_image_build_stops_the_run(tmp_path):
    """`image="$(image_for kind)"`: bash ignores a failure inside `$(...)` unless inherit_errexit is
    set, so a failed `docker build` would go on to `docker run` an old image of the same tag."""
    calls = tmp_path / "calls"
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n"
                    "case \"$1\" in info) exit 0 ;; build) echo 'build failed' >&2; exit 1 ;; *) exit 1 ;; esac\n")
    fake.chmod(0o755)
    res = _run(["--kinds", "brute_force"], [tmp_path, "/usr/bin", "/bin"], timeout=600)
    assert res.returncode != 0, res.stdout + res.stderr
    verbs = [line.split()[0] for line in calls.read_text().splitlines()]
    assert "build" in verbs and "run" not in verbs, verbs


def test_unknown_argument_is_an_error(no_daemon):
    assert _run(["--bogus"], no_daemon).returncode == 2


@pytest.mark.slow
def test_local_engine_runs_every_signature_over_rest_and_grpc():
    res = subprocess.run(["bash", str(SMOKE), "--engine", "local", "--kinds", "brute_force"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"smoke: \d+ signatures × REST \+ gRPC answer like the SavedModel in-process", res.stdout)
    assert "smoke: OK (1 kind(s) on local)" in res.stdout

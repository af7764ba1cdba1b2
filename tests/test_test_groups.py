"""`make test` runs the suite on 2 processes (pytest-xdist, `--dist loadgroup`): the tests sharing an
expensive session fixture must land in one process, or each process builds the fixture again (a
pipeline run each). The grouping fails silently when pytest and xdist disagree (pytest 9.2 with
xdist 3.8 ignores every group: pytest-dev/pytest-xdist#1386), so this runs a real 2-process session
with this suite's grouping hook (tests/children/grouped_session/) and counts the fixture's builds."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import ROOT

TREE = os.path.join(ROOT, "tests", "children", "grouped_session")


def test_shared_fixture_is_built_once_and_modules_stay_together(tmp_path):
    builds = tmp_path / "builds.txt"
    env = dict(os.environ, PYTHONPATH=ROOT, BUILDS=str(builds))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
                           "-p", "no:cacheprovider", "-p", "tests.children.grouped_session.plugin",
                           "-o", "python_files=check_*.py", "--rootdir", TREE, "--confcutdir", TREE, TREE],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    workers = {nodeid: worker for worker, nodeid in re.findall(r"\[(gw\d)\] .*?PASSED (\S+)", proc.stdout)}
    assert len(workers) == 6, proc.stdout[-3000:]
    by_group: dict[str, set[str]] = {}
    for nodeid, worker in workers.items():
        group = nodeid.partition("@")[2]
        assert group, f"no group on {nodeid}: the grouping hook was not applied"
        by_group.setdefault(group, set()).add(worker)
    assert set(by_group) == {"trained_model", "check_a.py", "check_b.py"}, by_group
    assert all(len(w) == 1 for w in by_group.values()), by_group  # each group in one process
    assert len(builds.read_text().split()) == 1  # the session fixture was built once, for 3 tests

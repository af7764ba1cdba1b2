"""The TFX CLI path from the README: `tfx pipeline create` + `tfx run create` on the local engine."""
import glob
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

TFX = os.path.join(os.path.dirname(sys.executable), "tfx")


def test_tfx_pipeline_create_and_run_create(tmp_path):
    from poster_similarity.datatools import sample_data

    sample_data.generate(str(tmp_path / "posters"), 120, size=(100, 150), seed=3, tfrecords=True)
    env = dict(os.environ, HOME=str(tmp_path / "home"), LOCAL_HOME=str(tmp_path / "tfx_local"),
               POSTERS_CONFIG=os.path.join(ROOT, "configs", "demo.yaml"),
               POSTERS_DATA=str(tmp_path / "posters" / "tfrecords"), POSTERS_WORKDIR=str(tmp_path / "work"),
               POSTERS_SET="phase1_epochs=1;phase2_epochs=1;beam_direct_running_mode=in_memory")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    create = subprocess.run([TFX, "pipeline", "create", "--engine", "local",
                             "--pipeline_path", os.path.join(ROOT, "poster_similarity", "local_runner.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert create.returncode == 0, create.stdout[-2000:] + create.stderr[-2000:]
    assert not glob.glob(str(tmp_path / "work" / "serving_model" / "*" / "*")), "create must not run"
    run = subprocess.run([TFX, "run", "create", "--engine", "local", "--pipeline_name", "poster-similarity"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    pushed = glob.glob(str(tmp_path / "work" / "serving_model" / "posters" / "*" / "saved_model.pb"))
    assert len(pushed) == 1
    summary = json.load(open(tmp_path / "work" / "run_summary.json"))
    assert summary["blessed"] is True

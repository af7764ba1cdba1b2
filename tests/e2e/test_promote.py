"""`posters promote` on the pipeline's real model: promote, reject, bad input — the label moves only
on a pass, and models.config stays a valid ModelServerConfig the server can re-read."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
PY = sys.executable


def _config(path, base, labels, versions):
    labels_txt = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items())
    specific = "".join(f"versions: {v} " for v in versions)
    path.write_text(f'model_config_list {{\n  config {{\n    name: "posters"\n    base_path: "{base}"\n'
                    f'    model_platform: "tensorflow"\n    model_version_policy {{ specific {{ {specific}}} }}\n'
                    f'{labels_txt}  }}\n}}\n')


def _promote(cfg, *extra):
    return subprocess.run([PY, "-m", "posters.cli", "promote", "--model-config-file", str(cfg), *extra],
                          capture_output=True, text=True, timeout=600)


def test_promote_reject_and_bad_input(trained_model, tmp_path):
    from pipeline.promote import find_model, read_model_config

    base = tmp_path / "posters"
    for v in (1, 2):
        shutil.copytree(trained_model["model_dir"], base / str(v))
    cfg = tmp_path / "models.config"
    _config(cfg, base, {"stable": 1, "canary": 2}, [1, 2])
    examples = sorted(glob.glob(os.path.join(trained_model["data"], "*.tfrecord*")))[0]  # one shard: faster

    # Rejected: a threshold no model meets; the label stays, the file is unchanged.
    before = cfg.read_text()
    (tmp_path / "strict.yaml").write_text("min_recall_at_10: 1.01\n")
    rej = _promote(cfg, "--candidate", "2", "--examples", examples, "--thresholds", str(tmp_path / "strict.yaml"))
    assert rej.returncode == 1, rej.stderr[-2000:]
    report = json.loads(rej.stdout)
    assert report["promoted"] is False and "min_recall_at_10" in report["reason"]
    assert report["labels_after"] == {"stable": 1, "canary": 2} and cfg.read_text() == before

    # Promoted: version 2 (equal to the baseline, so no drop) takes `stable`, compared with version 1.
    ok = _promote(cfg, "--candidate", "2", "--examples", examples)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    report = json.loads(ok.stdout)
    assert report["promoted"] and report["baseline"] == 1 and len(report["checks"]) == 4
    model = find_model(read_model_config(str(cfg)), "posters")
    assert dict(model.version_labels) == {"stable": 2, "canary": 2}
    assert list(model.model_version_policy.specific.versions) == [2]  # version 1 lost its last label
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".models.config")], "temp file left behind"

    # Bad input: unknown version, unknown model, unreadable config, no examples → 2, nothing changed.
    after = cfg.read_text()
    for extra in (["--candidate", "7", "--examples", examples],
                  ["--candidate", "2", "--examples", examples, "--model-name", "nope"],
                  ["--candidate", "2", "--examples", str(tmp_path / "none-*.tfrecord")]):
        bad = _promote(cfg, *extra)
        assert bad.returncode == 2 and "error" in json.loads(bad.stdout), (extra, bad.stdout)
    (tmp_path / "broken.config").write_text("model_config_list { config { nme: 1 } }")
    bad = _promote(tmp_path / "broken.config", "--candidate", "2", "--examples", examples)
    assert bad.returncode == 2 and "ModelServerConfig" in bad.stderr
    assert cfg.read_text() == after

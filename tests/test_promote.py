"""models.config bookkeeping of the model lifecycle (no model needed): a push labels `canary`,
`specific` serves exactly the labelled versions, writes are atomic and re-readable."""
from __future__ import annotations

import pytest

from poster_similarity.pipeline import promote, validate
from tests.helpers import ROOT


def _labels(path, name="posters"):
    m = promote.find_model(promote.read_model_config(path), name)
    return dict(m.version_labels), list(m.model_version_policy.specific.versions), m.base_path


def test_first_push_creates_the_config_and_later_pushes_move_canary(tmp_path):
    path = promote.label_pushed_version(str(tmp_path), "posters", 100)
    assert path == str(tmp_path / "models.config")
    assert _labels(path) == ({"canary": 100}, [100], str(tmp_path / "posters"))
    model_cfg = promote.read_model_config(path)
    promote.set_label(promote.find_model(model_cfg, "posters"), "stable", 100)
    promote.write_model_config(path, model_cfg)
    promote.label_pushed_version(str(tmp_path), "posters", 200)
    # stable stays on 100, canary moves to 200: both served
    assert _labels(path)[:2] == ({"canary": 200, "stable": 100}, [100, 200])
    promote.label_pushed_version(str(tmp_path), "posters", 300)
    assert _labels(path)[:2] == ({"canary": 300, "stable": 100}, [100, 300])  # 200 lost its label
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.config"]  # no temp files left


def test_a_second_model_is_added_beside_the_first(tmp_path):
    promote.label_pushed_version(str(tmp_path), "posters", 1)
    promote.label_pushed_version(str(tmp_path), "other", 5)
    cfg = promote.read_model_config(str(tmp_path / "models.config"))
    assert [m.name for m in cfg.model_config_list.config] == ["posters", "other"]


def test_latest_policy_is_left_alone(tmp_path):
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "posters" base_path: "/m" '
                    'model_version_policy { latest { num_versions: 2 } } } }')
    cfg = promote.read_model_config(str(path))
    promote.set_label(promote.find_model(cfg, "posters"), "stable", 3)
    m = promote.find_model(cfg, "posters")
    assert m.model_version_policy.latest.num_versions == 2 and dict(m.version_labels) == {"stable": 3}


def test_bad_config_files_are_bad_input(tmp_path):
    with pytest.raises(validate.BadInput, match="not found"):
        promote.read_model_config(str(tmp_path / "missing.config"))
    (tmp_path / "x.config").write_text("model_config_list { config { nme: 1 } }")
    with pytest.raises(validate.BadInput, match="ModelServerConfig"):
        promote.read_model_config(str(tmp_path / "x.config"))
    (tmp_path / "y.config").write_text('model_config_list { config { name: "a" } }')
    with pytest.raises(validate.BadInput, match="'posters' not in the config"):
        promote.find_model(promote.read_model_config(str(tmp_path / "y.config")), "posters")


def test_cd_workflow_runs_the_pipeline_then_promotes_the_pushed_version():
    """The documented CD job: its steps call real subcommands with flags the CLI accepts, in order."""
    import os
    import shlex

    import yaml

    from poster_similarity.posters.cli import build_parser

    wf = yaml.safe_load(open(os.path.join(ROOT, ".github", "workflows", "cd.yml")))
    steps = [s.get("run", "") for s in wf["jobs"]["pipeline-then-promote"]["steps"]]
    commands = [line.strip() for s in steps for line in s.replace("\\\n", " ").splitlines()
                if line.strip().startswith(".venv/bin/posters ")]
    assert [c.split()[1] for c in commands] == ["run", "promote"]
    parser = build_parser()
    for c in commands:
        args = parser.parse_args(shlex.split(c.replace('"$version"', "7"))[1:])
        assert callable(args.func)
    promote_args = parser.parse_args(shlex.split(commands[1].replace('"$version"', "7"))[1:])
    assert promote_args.label == "stable" and promote_args.candidate == 7
    assert promote_args.model_config_file.endswith("serving_model/models.config")

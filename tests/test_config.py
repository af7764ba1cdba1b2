"""Config: defaults ← file ← overrides, typed; what the modules receive round-trips."""
import json

import pytest

from poster_similarity.core.config import ConfigError, PipelineConfig, load_config


def test_paths_derive_from_the_workdir_and_beam_args_from_the_runner_settings():
    """The runner is always named (Beam's default would try Prism, which downloads); in_memory takes no
    worker count, multi_processing does, and extra flags come last (later flags win)."""
    cfg = load_config(None, workdir="/w")
    assert (cfg.pipeline_root, cfg.metadata_path) == ("/w/pipeline_root", "/w/metadata.sqlite")
    assert cfg.serving_dir == "/w/serving_model/posters"  # TF Serving's <base>/<model_name>/
    assert load_config(None, ["model_name=p2"], workdir="/w").serving_dir == "/w/serving_model/p2"
    assert cfg.beam_pipeline_args() == ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
    mp = load_config(None, ["beam_direct_running_mode=multi_processing", "beam_direct_num_workers=2",
                            "beam_extra_args=[--x=1]"])
    assert mp.beam_pipeline_args() == ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                                       "--direct_num_workers=2", "--x=1"]


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("backbone: small_cnn\nweights: none\nindex:\n  kind: brute_force\n")
    cfg = load_config(str(f), ["phase1_epochs=7", "index.k=5", "unfreeze_schedule=[[0, -1]]",
                               "image_size=[60, 40]", "gates.min_recall_at_10=0.9"])
    assert (cfg.backbone, cfg.weights, cfg.phase1_epochs) == ("small_cnn", "none", 7)
    assert cfg.index.kind == "brute_force" and cfg.index.k == 5
    assert cfg.unfreeze_schedule == [[0, -1]] and cfg.image_size == [60, 40]
    assert cfg.gates.min_recall_at_10 == 0.9


def test_round_trip_through_custom_config():
    cfg = load_config(None, ["backbone=resnet50", "index.num_leaves=12"])
    again = PipelineConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


@pytest.mark.parametrize("override, message", [
    ("no_such_field=1", "unknown config field"),
    ("index.bogus=1", "index.bogus"),
    ("phase1_epochs=many", "phase1_epochs"),
    ("backbone", "KEY=VALUE"),
])
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent.yaml")


def test_config_from_env_reads_the_tfx_cli_variables(monkeypatch, tmp_path):
    """Runner files executed by the TFX CLI get their config from POSTERS_CONFIG / POSTERS_SET (";"-separated)."""
    from poster_similarity.core.config import load_config_from_env

    f = tmp_path / "c.yaml"
    f.write_text("phase1_epochs: 4\n")
    monkeypatch.setenv("POSTERS_CONFIG", str(f))
    monkeypatch.setenv("POSTERS_SET", "phase2_epochs=2; index.kind=brute_force;")
    cfg = load_config_from_env("/unused.yaml", workdir="/w")
    assert (cfg.phase1_epochs, cfg.phase2_epochs, cfg.index.kind, cfg.workdir) == (4, 2, "brute_force", "/w")
    monkeypatch.delenv("POSTERS_CONFIG")
    monkeypatch.delenv("POSTERS_SET")
    assert load_config_from_env(str(f)).phase1_epochs == 4  # the default file


def test_transform_config_excludes_training_settings():
    from poster_similarity.pipeline.definition import module_config

    a, b = load_config(None, ["phase1_epochs=1"]), load_config(None, ["phase1_epochs=9", "gates.max_recall_drop=0.5"])
    assert module_config(a, "transform") == module_config(b, "transform")
    assert module_config(a, "trainer") != module_config(b, "trainer")
    c = load_config(None, ["gates.max_recall_drop=0.5"])
    assert module_config(load_config(), "trainer") == module_config(c, "trainer")

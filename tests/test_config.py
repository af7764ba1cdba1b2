"""Config: defaults ← file ← overrides, typed; what the modules receive round-trips."""
import json

import pytest

from core.config import ConfigError, PipelineConfig, load_config


def test_defaults_are_the_production_setup():
    cfg = load_config()
    assert cfg.backbone == "nasnet_large" and cfg.weights == "imagenet"
    assert cfg.embedding_dim == 128 and cfg.triplet_margin == 0.1
    assert "--runner=DirectRunner" in cfg.beam_pipeline_args()


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


def test_demo_preset_loads():
    cfg = load_config("configs/demo.yaml")
    assert cfg.backbone == "small_cnn" and cfg.weights == "none"


def test_transform_config_excludes_training_settings():
    from pipeline.definition import module_config

    a, b = load_config(None, ["phase1_epochs=1"]), load_config(None, ["phase1_epochs=9", "gates.max_recall_drop=0.5"])
    assert module_config(a, "transform") == module_config(b, "transform")
    assert module_config(a, "trainer") != module_config(b, "trainer")
    c = load_config(None, ["gates.max_recall_drop=0.5"])
    assert module_config(load_config(), "trainer") == module_config(c, "trainer")

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


def test_plan_thresholds_from_the_file_and_overrides(tmp_path):
    """`index.plan.*` (two levels deep) from YAML and from `--set`; the rest keep their defaults."""
    from poster_similarity.core.config import PlanConfig

    f = tmp_path / "c.yaml"
    f.write_text("index:\n  k: 5\n  plan: {overfetch: 3.0, max_k: 50}\n")
    cfg = load_config(str(f), ["index.plan.crowding_overfetch=3", "index.plan.exact_max_rows=100"])
    assert cfg.index.k == 5 and cfg.index.plan == PlanConfig(overfetch=3.0, max_k=50, crowding_overfetch=3.0,
                                                              exact_max_rows=100)
    assert isinstance(cfg.index.plan.crowding_overfetch, float)  # an int in a float field is a float
    assert load_config(None, ["index.plan.overfetch=3"]).index.plan.overfetch == 3.0
    assert load_config().index.plan == PlanConfig()
    assert PipelineConfig.from_dict(json.loads(cfg.to_json())) == cfg  # what IndexBuilder receives


def test_round_trip_through_custom_config():
    cfg = load_config(None, ["backbone=resnet50", "index.num_leaves=12"])
    again = PipelineConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


@pytest.mark.parametrize("override, message", [
    ("no_such_field=1", "unknown config field"),
    ("index.bogus=1", "index.bogus"),
    ("index.plan.overfeth=3", r"index\.plan\.overfeth \(did you mean index\.plan\.overfetch\?\)"),
    ("index.plan=3", "index.plan: expected a mapping, got 3"),
    ("index.plan.max_k=many", "index.plan.max_k: expected int"),
    ("phase1_epochs=many", "phase1_epochs"),
    ("backbone", "KEY=VALUE"),
])
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent.yaml")


@pytest.mark.parametrize("override, message", [
    ("batchsize=3", r"unknown config field\(s\): batchsize \(did you mean batch_size\?\)"),
    ("index=3", "index: expected a mapping, got 3"),
    ("batch_size.x=1", "batch_size: expected int"),
    ("x=[1,", "override x='\\[1,': not a YAML value"),
    ("=3", "empty key"),
    ("index..k=2", "empty key"),
])
def test_malformed_overrides_are_one_line(override, message):
    """Every mistake a `--set` can hold is a ConfigError of one line (the CLI prints it as is)."""
    with pytest.raises(ConfigError, match=message) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_override_through_a_value_from_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("backbone: small_cnn\n")
    with pytest.raises(ConfigError, match="backbone is not a section"):
        load_config(str(f), ["backbone.name=x"])


@pytest.mark.parametrize("text, message", [
    ("phase1_epochs: [1,\n", "is not valid YAML/JSON: while parsing"),
    ("- a\n- b\n", "expected a mapping at top level, got list"),
    ("\xff\xfe not utf-8", "cannot read config file"),
])
def test_unusable_files_are_one_line(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=message) as e:
        load_config(str(f))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(str(tmp_path))
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(str(tmp_path / "empty.yaml")) == load_config()


@pytest.mark.parametrize("override, message", [
    ("index.kind=annoy", "index.kind: 'annoy' is not one of scann, brute_force"),
    ("backbone=vgg", "backbone: 'vgg' is not one of"),
    ("label_strategy=first", "label_strategy"),
    ("distributed.trainer_backend=k8s", "distributed.trainer_backend"),
    ("batch_size=0", "batch_size: must be >= 1, got 0"),
    ("phase1_epochs=-1", "phase1_epochs: must be >= 0"),
    ("index.k=0", "index.k: must be >= 1"),
    ("phase2_lr=0", "phase2_lr: must be > 0"),
    ("dropout=1.0", r"dropout: must be in \[0, 1\)"),
    ("index.plan.overfetch=0", "index.plan.overfetch: must be > 0, got 0.0"),
    ("index.plan.crowding_overfetch=-1", "index.plan.crowding_overfetch: must be > 0"),
    ("index.plan.exact_max_rows=0", "index.plan.exact_max_rows: must be >= 1"),
    ("index.plan.max_candidates=0", "index.plan.max_candidates: must be >= 1"),
    ("index.plan.exact_max_fraction=0", r"index.plan.exact_max_fraction: must be in \(0, 1\], got 0.0"),
    ("index.plan.gather_max_fraction=1.5", r"index.plan.gather_max_fraction: must be in \(0, 1\]"),
    ("index.plan.max_k=9", r"index.plan.max_k: must be >= index.k \(10\), got 9"),
    ("image_size=[60]", "image_size: expected \\[H, W\\]"),
    ("weights=/no/such.h5", "weights: '/no/such.h5' is neither imagenet, none nor an existing weights file"),
])
def test_check_config_refuses_values_a_run_would_trip_over(override, message):
    from poster_similarity.core.config import check_config

    cfg = load_config(None, [override])  # the types are right: only the values are impossible
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_check_config_accepts_the_defaults_and_every_shipped_config():
    import glob
    import os

    from poster_similarity.core.config import check_config
    from tests.helpers import ROOT

    check_config(load_config())
    files = glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    assert files
    for f in files:
        check_config(load_config(f))


def test_backbone_choices_match_the_model_code():
    """config.BACKBONES (checked without importing TensorFlow) is components/model.py's BACKBONES,
    read from its source: the first argument of every `Backbone(...)` in that dict."""
    import ast
    import os

    from poster_similarity.core.config import BACKBONES
    from tests.helpers import PKG

    tree = ast.parse(open(os.path.join(PKG, "components", "model.py"), encoding="utf-8").read())
    table = next(n.value for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                 and any(isinstance(t, ast.Name) and t.id == "BACKBONES"
                         for t in (n.targets if isinstance(n, ast.Assign) else [n.target])))
    names = {c.args[0].value for c in ast.walk(table)
             if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "Backbone" and c.args}
    assert names and names == set(BACKBONES)


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

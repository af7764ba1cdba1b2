"""The config presets: each loads, and each is used where its header says (CPU demo vs production)."""
from __future__ import annotations

import os
import re

import pytest

from poster_similarity.components.model import get_backbone
from poster_similarity.core.config import load_config
from tests.helpers import ROOT

CONFIGS = os.path.join(ROOT, "configs")


@pytest.mark.parametrize("name", ["demo.yaml", "production.yaml"])
def test_preset_loads_with_a_known_backbone(name):
    cfg = load_config(os.path.join(CONFIGS, name))
    assert get_backbone(cfg.backbone).name == cfg.backbone


def test_production_preset_is_the_gpu_backbone_at_its_native_size_with_a_training_gate():
    cfg = load_config(os.path.join(CONFIGS, "production.yaml"))
    spec = get_backbone(cfg.backbone)
    assert cfg.backbone == "nasnet_large" and cfg.weights == "imagenet"
    assert tuple(cfg.image_size) == tuple(spec.image_size)
    assert cfg.gates.min_lift_over_frozen > 1.0  # production refuses a model that did not beat its backbone


def test_cd_workflow_trains_with_the_production_preset():
    text = open(os.path.join(ROOT, ".github", "workflows", "cd.yml"), encoding="utf-8").read()
    assert re.findall(r"--config\s+(\S+)", text) == ["configs/production.yaml"]

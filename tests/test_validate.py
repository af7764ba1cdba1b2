"""`posters validate` reads its thresholds with the same checks as the pipeline config."""
from __future__ import annotations

import pytest

from poster_similarity.core.config import GateConfig
from poster_similarity.pipeline.validate import BadInput, load_thresholds


def test_thresholds_file_flat_or_inside_a_pipeline_config(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("min_recall_at_10: 0.7\nmax_map_drop: 0\n")
    assert load_thresholds(str(flat)) == GateConfig(min_recall_at_10=0.7, max_map_drop=0.0)
    full = tmp_path / "full.yaml"
    full.write_text("backbone: small_cnn\ngates:\n  min_index_recall_at_10: 0.9\n")
    assert load_thresholds(str(full)) == GateConfig(min_index_recall_at_10=0.9)
    assert load_thresholds(None) == GateConfig()


@pytest.mark.parametrize("text, words", [
    ("min_recal_at_10: 0.7\n", "gates.min_recal_at_10"),  # a typo is named, not silently ignored
    ("min_recall_at_10: high\n", "expected float"),
    ("- 0.5\n", "expected a mapping"),
])
def test_bad_thresholds_are_bad_input_naming_the_problem(tmp_path, text, words):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(BadInput, match=words):
        load_thresholds(str(path))

"""A `brute_force` export needs no op outside stock TensorFlow, so stock `tensorflow/serving:2.15.1`
(serving/docker/Dockerfile.brute_force) can load it; a `scann` export needs ScaNN's `Scann>` ops.

Every node of the SavedModel is scanned: the MetaGraph's graph and every function in its library
(tf.function bodies, where the index lives). The stock registry is read in a fresh interpreter that
imports only TensorFlow, because importing ScaNN or TFX in this process registers their ops too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tensorflow.core.protobuf import saved_model_pb2

from tests import tiny_export
from tests.helpers import ROOT


def saved_model_ops(export_dir: str) -> set[str]:
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    ops: set[str] = set()
    for mg in sm.meta_graphs:
        ops.update(n.op for n in mg.graph_def.node)
        for fn in mg.graph_def.library.function:
            ops.update(n.op for n in fn.node_def)
    return ops


def unregistered_in_stock_tensorflow(ops: set[str]) -> set[str]:
    out = subprocess.run([sys.executable, "-m", "tests.children.stock_ops"], input=json.dumps(sorted(ops)), cwd=ROOT,
                         capture_output=True, text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def ops() -> dict[str, set[str]]:
    return {kind: saved_model_ops(tiny_export.cached(kind)) for kind in ("brute_force", "scann")}


def test_brute_force_export_has_no_scann_op(ops):
    assert not {o for o in ops["brute_force"] if o.startswith("Scann>")}
    assert {"MatMul", "TopKV2"} <= ops["brute_force"]  # the index is really in the scanned graph


def test_filtered_signatures_are_in_the_scanned_graph(ops):
    """The rule engine (tables, bit tests, the per-row plans) is part of both exports, so the scan
    above covers it: its candidates come from one matmul in brute_force, from ScaNN in scann."""
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(tiny_export.cached("brute_force"), "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    assert {"neighbors_filtered", "similar_filtered", "recommend_filtered"} <= set(sm.meta_graphs[0].signature_def)
    rule_ops = {"LookupTableFindV2", "BitwiseAnd", "While", "TensorScatterUpdate"}
    assert rule_ops <= ops["brute_force"] and rule_ops <= ops["scann"]


def test_scann_export_has_scann_ops(ops):
    # The scan sees the index's ops at all (else the test above would pass vacuously).
    assert {"Scann>ScannSearchBatched", "Scann>TensorsToScann"} <= ops["scann"]


def test_brute_force_export_runs_on_stock_ops(ops):
    missing = unregistered_in_stock_tensorflow(ops["brute_force"] | ops["scann"])
    assert not missing & ops["brute_force"]
    assert missing == {o for o in ops["scann"] if o.startswith("Scann>")}  # exactly what a ScaNN build adds

"""End to end: the real TFX pipeline (LocalDagRunner, sqlite MLMD, Beam DirectRunner) on sample posters,
then the pushed SavedModel in a fresh process, the gate, lineage and the CD gate command."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import POSTERS_CLI, ROOT, documented_signatures

pytestmark = pytest.mark.slow
PY = sys.executable


def _catalogue(data):
    from poster_similarity.core.tfrecords import read_examples

    return list(read_examples(os.path.join(data, "*.tfrecord*")))


def test_first_run_is_blessed_and_pushed_in_tf_serving_layout(trained_model):
    s = trained_model["summary"]
    assert s["blessed"] is True and s["pushed"] is True
    m = s["metrics"]
    assert m["recall@10"] >= trained_model["config"].gates.min_recall_at_10
    assert {"recall@1", "recall@5", "precision@10", "map@r", "index_recall@10"} <= set(m)
    version_dir = trained_model["model_dir"]
    assert os.path.basename(version_dir).isdigit()
    assert os.path.exists(os.path.join(version_dir, "saved_model.pb"))
    report = json.load(open(os.path.join(version_dir, "assets.extra", "index_report.json")))
    assert report["catalogue_size"] == len(_catalogue(trained_model["data"]))  # every split is indexed
    assert report["kind"] == "scann" and report["build_seconds"] >= 0
    assert report["recall_at_k_vs_exact"] >= 0.95  # default parameters, tuned at export


def test_a_planted_near_duplicate_pair_is_served_once(trained_model):
    """The pair (`plant_duplicates`: one artwork, two ids, one `duplicate_group`) went through
    CatalogueExampleGen, the embedder and the IndexBuilder: one group collapsed, and the artwork's
    own query finds one of the two first and never both."""
    import scann  # noqa: F401 — registers the ScaNN ops
    import tensorflow as tf

    from poster_similarity.components.retrieval_rules import make_rules

    report = json.load(open(os.path.join(trained_model["model_dir"], "assets.extra", "index_report.json")))
    assert report["duplicate_collapse"] == {"groups": 1, "largest": 2, "redundant_posters": 1}, report
    pair = set(trained_model["duplicates"]["ids"])
    m = tf.saved_model.load(trained_model["model_dir"])
    image = tf.constant([trained_model["duplicates"]["image"]])
    for name in ("serving_default", "similar_filtered"):
        extra = {} if name == "serving_default" else make_rules(1)._asdict()
        ids = [i.decode() for i in m.signatures[name](image_bytes=image, **extra)["movie_ids"].numpy()[0]]
        assert ids[0] in pair and len(pair & set(ids)) == 1, (name, ids)


def _formats(jpeg: bytes) -> dict:
    """The same poster as PNG, grayscale JPEG, CMYK JPEG and PNG with alpha (hex for JSON)."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    out = {}
    for name, mode, fmt in [("png", "RGB", "PNG"), ("gray", "L", "JPEG"), ("cmyk", "CMYK", "JPEG"),
                            ("rgba_png", "RGBA", "PNG")]:
        buf = io.BytesIO()
        img.convert(mode).save(buf, fmt)
        out[name] = buf.getvalue().hex()
    return out


def test_fresh_process_with_only_tensorflow_and_scann_runs_every_signature(trained_model, tmp_path):
    from poster_similarity.core.tfrecords import iter_serialized

    cat = _catalogue(trained_model["data"])[:12]
    ser = list(iter_serialized(os.path.join(trained_model["data"], "*.tfrecord*")))[:12]
    blob = [{"movie_id": c["movie_id"], "image": c["image"].hex(), "serialized": s.hex(), "genres": c["genres"]}
            for c, s in zip(cat, ser, strict=True)]
    (tmp_path / "cat.json").write_text(json.dumps(blob))
    (tmp_path / "formats.json").write_text(json.dumps(_formats(cat[0]["image"])))
    everything = _catalogue(trained_model["data"])
    (tmp_path / "all.json").write_text(json.dumps([c["image"].hex() for c in everything]))
    (tmp_path / "ids.json").write_text(json.dumps([c["movie_id"] for c in everything]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    child = os.path.join(ROOT, "tests", "children", "fresh_signatures.py")  # a file: the repo stays off sys.path
    files = [str(tmp_path / f) for f in ("cat.json", "formats.json", "all.json", "ids.json")]
    proc = subprocess.run([PY, child, trained_model["model_dir"], *files],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert all(out["self_first"]), "a catalogue poster must find itself first"
    assert out["shapes"]["embedding"] == [12, 128] and out["shapes"]["movie_ids"] == [12, 10]
    assert out["embed_matches"]
    assert out["embedding_std"] > 1e-3, "collapsed embedding: every poster maps to the same point"
    history = {c["movie_id"] for c in cat[:3]}
    assert not history & set(out["rec"][0]), "recommend returned a watched title"
    assert out["history_used"] == [3.0, 0.0]
    # The style mix lands between its two parents: its neighbours are closer to the mix than average.
    sims = np.array(out["mix_sims"])
    assert sims[0] > np.median(sims) and sims[1] > np.median(sims)
    # … and its neighbours are nearer to each parent than the catalogue is on average.
    assert out["mix_top_to_a"] > out["cat_to_a"] and out["mix_top_to_b"] > out["cat_to_b"], out["mix_pair_cos"]
    assert set(out["embed_examples"]) >= {"embedding", "logits", "index_ids", "exact_ids"}
    assert out["bad_garbage"] == out["bad_empty"] == out["bad_truncated"] == "InvalidArgumentError"
    assert all(shape == [1, 128] for shape in out["formats"].values()) and len(out["formats"]) == 4


def test_saved_model_cli_lists_the_documented_signatures(trained_model):
    cli = os.path.join(os.path.dirname(PY), "saved_model_cli")
    out = subprocess.run([cli, "show", "--dir", trained_model["model_dir"], "--all"],
                         capture_output=True, text=True, timeout=300).stdout
    for sig in documented_signatures():  # all of them, transform_features included
        assert f"signature_def['{sig}']" in out
    block = out.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['image_bytes']" in block and "DT_STRING" in block
    assert "outputs['embedding']" in block and "(-1, 128)" in block
    assert "outputs['movie_ids']" in block and "outputs['scores']" in block


def test_lineage_of_the_pushed_model_is_in_ml_metadata(trained_model):
    from poster_similarity.pipeline.lineage import model_lineage

    lin = model_lineage(trained_model["config"].metadata_path)
    assert lin["pushed_destination"] == trained_model["model_dir"]
    assert lin["blessed"] is True
    assert {"ImportExampleGen", "Transform", "Trainer", "CatalogueExampleGen", "CatalogueEmbedder", "IndexBuilder",
            "Evaluator", "Pusher"} <= set(lin["components"])  # both ExampleGens, told apart by node id
    assert "/IndexBuilder/" in lin["model_uri"] and "/Trainer/" not in lin["model_uri"]
    assert lin["examples_uri"] and lin["transform_graph_uri"] and lin["model_uri"]


def test_validate_cli_exit_codes(trained_model, tmp_path):
    model = trained_model["model_dir"]
    data = sorted(glob.glob(os.path.join(trained_model["data"], "*.tfrecord*")))[0]  # one shard (100): faster
    ok = subprocess.run([*POSTERS_CLI, "validate", "--model", model, "--examples", data,
                         "--baseline", model], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["passed"] and len(report["checks"]) == 4  # 2 floors + 2 changes vs baseline
    (tmp_path / "strict.yaml").write_text("min_recall_at_10: 1.01\n")
    fail = subprocess.run([*POSTERS_CLI, "validate", "--model", model, "--examples", data,
                           "--thresholds", str(tmp_path / "strict.yaml")], capture_output=True, text=True, timeout=300)
    assert fail.returncode == 1 and json.loads(fail.stdout)["passed"] is False
    bad = subprocess.run([*POSTERS_CLI, "validate", "--model", str(tmp_path), "--examples", data],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no SavedModel" in bad.stderr
    none = subprocess.run([*POSTERS_CLI, "validate", "--model", model, "--examples", "/nope/*.tfrecord"],
                          capture_output=True, text=True, timeout=300)
    assert none.returncode == 2


def test_gate_blocks_a_worse_model_and_brute_force_variant_needs_no_custom_ops(trained_model):
    """Second run: a deliberately bad model (test-only `scramble_embeddings`, brute_force index) is
    evaluated against the blessed baseline, NOT blessed and NOT pushed; MLMD holds both
    evaluations; the unpushed brute_force model loads in TF without ScaNN."""
    from poster_similarity.core.config import load_config
    from poster_similarity.local_runner import run

    before = sorted(glob.glob(os.path.join(trained_model["serving_base"], "*", "*")))
    cfg = load_config(os.path.join(ROOT, "configs", "demo.yaml"),
                      ["phase1_epochs=1", "phase2_epochs=1", "beam_direct_running_mode=in_memory", "batch_size=32",
                       "index.kind=brute_force", "scramble_embeddings=true"],
                      data_root=trained_model["data"], workdir=trained_model["workdir"])
    summary = run(cfg)
    assert summary["blessed"] is False and summary["pushed"] is False
    assert sorted(glob.glob(os.path.join(trained_model["serving_base"], "*", "*"))) == before
    evaluation = summary["evaluation_uri"]
    import tensorflow_model_analysis as tfma

    validation = tfma.load_validation_result(evaluation)
    assert not validation.validation_ok
    failures = [f for s in validation.metric_validations_per_slice for f in s.failures]
    assert failures and all(f.metric_threshold.HasField("change_threshold") for f in failures), \
        "the worse model must be blocked by the comparison with the blessed baseline"
    assert "map@r" in {f.metric_key.name for f in failures}
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = cfg.metadata_path
    store = metadata_store.MetadataStore(conn)
    blessings = sorted(a.custom_properties["blessed"].int_value for a in store.get_artifacts_by_type("ModelBlessing"))
    assert blessings == [0, 1]
    types = {t.id: t.name for t in store.get_execution_types()}
    assert len([e for e in store.get_executions() if types[e.type_id].endswith("Evaluator")]) == 2
    eval_cfg = json.load(open(os.path.join(evaluation, "eval_config.json")))
    assert any(s.get("isBaseline") for s in eval_cfg["evalConfig"]["modelSpecs"]), "no baseline compared"
    model_uri = max(glob.glob(os.path.join(cfg.pipeline_root, "IndexBuilder", "serving_model", "*")),
                    key=os.path.getmtime)
    serving = os.path.join(model_uri, "Format-Serving")
    assert b"Scann" not in open(os.path.join(serving, "saved_model.pb"), "rb").read()
    proc = subprocess.run([PY, "-m", "tests.children.neighbors_shape", serving], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "[1, 10]" in proc.stdout.replace(" ", "").replace("(", "[").replace(")", "]") \
        or "(1, 10)" in proc.stdout, proc.stderr[-2000:]

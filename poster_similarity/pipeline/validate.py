"""`posters validate`: the Evaluator's gate outside the pipeline, for CI/CD.

Computes the same metrics as the TFMA Evaluator (components.retrieval_metrics) from the model's
`embed_examples` + `transform_features` signatures, applies the same thresholds, prints a JSON
report and exits 0 (pass), 1 (fail) or 2 (bad input). Imports no TFX.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys

import numpy as np

from poster_similarity.core.config import ConfigError, GateConfig
from poster_similarity.core.scann_ops import register_scann_ops

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    pass


def load_thresholds(path: str | None) -> GateConfig:
    if not path:
        return GateConfig()
    if not os.path.exists(path):
        raise BadInput(f"thresholds file not found: {path}")
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if isinstance(data, dict):
            data = data.get("gates", data)  # a full pipeline config file works too
        return GateConfig.from_dict(data)
    except (ConfigError, yaml.YAMLError) as e:
        raise BadInput(f"bad thresholds file {path}: {e}") from e


def _load_model(path: str):
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise BadInput(f"no SavedModel at {path} (expected {path}/saved_model.pb)")
    import tensorflow as tf

    register_scann_ops()
    model = tf.saved_model.load(path)
    missing = {"embed_examples", "transform_features"} - set(model.signatures)
    if missing:
        raise BadInput(f"{path} lacks signature(s) {sorted(missing)}; export it with components/export.py")
    return model


def evaluate(model_dir: str, files: list[str], batch_size: int = 64) -> dict:
    """Leave-one-out retrieval metrics over the examples + the bundled index's recall vs exact."""
    import tensorflow as tf

    from poster_similarity.components.retrieval_metrics import (
        FROZEN_P10_OUTPUT,
        LIFT_METRIC,
        RETRIEVAL_KS,
        genre_precision,
        index_recall,
        retrieval_scores,
    )

    model = _load_model(model_dir)
    embed, xf = model.signatures["embed_examples"], model.signatures["transform_features"]
    compression = "GZIP" if files[0].endswith(".gz") else ""
    embs, labels, index_ids, exact_ids, frozen = [], [], [], [], 0.0
    try:
        for batch in tf.data.TFRecordDataset(files, compression_type=compression).batch(batch_size):
            out = embed(examples=batch)
            embs.append(out["embedding"].numpy())
            index_ids.append(out["index_ids"].numpy())
            exact_ids.append(out["exact_ids"].numpy())
            if FROZEN_P10_OUTPUT in out:  # models exported before the baseline existed lack it
                frozen = float(out[FROZEN_P10_OUTPUT].numpy()[0])
            labels.append(xf(examples=batch)["genres_xf"].numpy())
    except tf.errors.OpError as e:
        raise BadInput(f"could not evaluate {files}: {e.message.splitlines()[0]}") from e
    if not embs:
        raise BadInput("no examples in the given files")
    emb, lab = np.concatenate(embs), np.concatenate(labels)
    metrics = retrieval_scores(emb, lab, RETRIEVAL_KS) | genre_precision(emb, lab, 10)
    # the Trainer scored the untrained backbone on its eval split; on other examples this is indicative
    metrics[LIFT_METRIC] = metrics["macro_precision@10"] / frozen if frozen > 0 else 0.0
    metrics["index_recall@10"] = index_recall(np.concatenate(index_ids), np.concatenate(exact_ids))
    return metrics


def gate(candidate: dict, baseline: dict | None, g: GateConfig) -> list[dict]:
    """Same semantics as the Evaluator: absolute floors, and (when a baseline exists) a max drop."""
    checks = [
        {"check": "recall@10 >= min_recall_at_10", "value": candidate["recall@10"],
         "threshold": g.min_recall_at_10, "ok": candidate["recall@10"] >= g.min_recall_at_10},
        {"check": "index_recall@10 >= min_index_recall_at_10", "value": candidate["index_recall@10"],
         "threshold": g.min_index_recall_at_10,
         "ok": candidate["index_recall@10"] >= g.min_index_recall_at_10},
    ]
    if g.min_lift_over_frozen > 0:
        lift = candidate.get("lift_over_frozen_backbone", 0.0)
        checks.append({"check": "lift_over_frozen_backbone >= min_lift_over_frozen", "value": lift,
                       "threshold": g.min_lift_over_frozen, "ok": lift >= g.min_lift_over_frozen})
    if baseline is not None:
        diff = candidate["recall@10"] - baseline["recall@10"]
        checks.append({"check": "recall@10 - baseline >= -max_recall_drop", "value": diff,
                       "threshold": -g.max_recall_drop, "ok": diff >= -g.max_recall_drop})
        diff = candidate["map@r"] - baseline["map@r"]
        checks.append({"check": "map@r - baseline >= -max_map_drop", "value": diff,
                       "threshold": -g.max_map_drop, "ok": diff >= -g.max_map_drop})
    return checks


def _check_saved_model(flag: str, path: str) -> None:
    """Fail in well under a second on a wrong path, before TensorFlow is imported (~10 s)."""
    if not os.path.isdir(path):
        raise BadInput(f"{flag} {path}: no such folder")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise BadInput(f"no SavedModel at {path} (expected {path}/saved_model.pb)")


def run(model: str, examples: str, baseline: str | None = None, thresholds: str | None = None) -> dict:
    _check_saved_model("--model", model)
    if baseline:
        _check_saved_model("--baseline", baseline)
    g = load_thresholds(thresholds)
    files = sorted(glob.glob(examples))
    if not files:
        raise BadInput(f"no files match {examples!r}")
    cand = evaluate(model, files)
    base = evaluate(baseline, files) if baseline else None
    checks = gate(cand, base, g)
    return {"passed": all(c["ok"] for c in checks), "model": model, "baseline": baseline,
            "examples": len(files), "metrics": cand, "baseline_metrics": base,
            "thresholds": dataclasses.asdict(g), "checks": checks}


def main(args) -> int:
    try:
        report = run(args.model, args.examples, args.baseline, args.thresholds)
    except BadInput as e:
        print(json.dumps({"passed": False, "error": str(e)}))
        print(f"posters validate: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(report, indent=2))
    return EXIT_PASS if report["passed"] else EXIT_FAIL

"""`posters promote`: move a TF Serving version label (e.g. `stable`) to a candidate version, gated.

The Pusher lands every blessed model as a new version, labelled `canary`; users of the `stable`
label only see it after this command has evaluated it against the version holding the baseline
label — on held-out examples, with the Evaluator's metrics and thresholds (`pipeline.validate`) —
and rewritten `models.config` atomically (TF Serving re-reads it with
`--model_config_file_poll_wait_seconds`; the local server watches it too).

Exit codes, for a CD job: 0 promoted, 1 rejected (label unchanged; the JSON report says why),
2 bad input (unreadable config, unknown model or version, no examples).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

from poster_similarity.pipeline import validate

EXIT_PROMOTED, EXIT_REJECTED, EXIT_BAD_INPUT = 0, 1, 2
MODELS_CONFIG = "models.config"  # written beside the model folders by `label_pushed_version`


def read_model_config(path: str):
    """Parse a `models.config` text proto (tensorflow_serving ModelServerConfig).

    Raises:
      validate.BadInput: the file is missing or not a ModelServerConfig.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not os.path.isfile(path):
        raise validate.BadInput(f"model config file not found: {path}")
    cfg = model_server_config_pb2.ModelServerConfig()
    try:
        with open(path) as f:
            text_format.Parse(f.read(), cfg)
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise validate.BadInput(f"{path} is not a ModelServerConfig text proto: {e}") from None
    return cfg


def write_model_config(path: str, cfg) -> None:
    """Write atomically (temp file in the same folder + rename): a server polling the file never
    reads half of it."""
    from google.protobuf import text_format

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".models.config.", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text_format.MessageToString(cfg))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def find_model(cfg, name: str):
    for m in cfg.model_config_list.config:
        if m.name == name:
            return m
    raise validate.BadInput(f"model {name!r} not in the config (has {[m.name for m in cfg.model_config_list.config]})")


def set_label(model, label: str, version: int) -> None:
    """Point `label` at `version`. A `specific` version policy then serves exactly the labelled
    versions (TF Serving only accepts labels of loaded versions; a version that lost its last label
    is unloaded); `latest`/`all` policies are left as they are."""
    model.version_labels[label] = version
    policy = model.model_version_policy
    if policy.WhichOneof("policy_choice") == "specific":
        del policy.specific.versions[:]
        policy.specific.versions.extend(sorted(set(model.version_labels.values())))


def label_pushed_version(serving_base: str, model_name: str, version: int, label: str = "canary") -> str:
    """After a push: give the new version `label` in `<serving_base>/models.config`, creating the
    file (a `specific` policy over the labelled versions) on the first push.

    Args:
      serving_base: the folder holding `<model_name>/<version>/` (the Pusher's base directory).
      model_name: model name in the config (and the folder name under `serving_base`).
      version: the pushed version number.
      label: the label to set (`canary`; `stable` moves only through `promote`).

    Returns:
      The path of the config file.
    """
    from tensorflow_serving.config import model_server_config_pb2

    path = os.path.join(serving_base, MODELS_CONFIG)
    cfg = read_model_config(path) if os.path.exists(path) else model_server_config_pb2.ModelServerConfig()
    try:
        model = find_model(cfg, model_name)
    except validate.BadInput:
        model = cfg.model_config_list.config.add(name=model_name, model_platform="tensorflow",
                                                  base_path=os.path.join(os.path.abspath(serving_base), model_name))
        model.model_version_policy.specific.SetInParent()
    set_label(model, label, version)
    write_model_config(path, cfg)
    return path


def promote(config_path: str, model_name: str, candidate: int, examples: str, label: str = "stable",
            baseline_label: str | None = "stable", thresholds: str | None = None,
            model_base_path: str | None = None) -> dict:
    """Evaluate `candidate` against the version holding `baseline_label`; move `label` if it passes.

    Args:
      config_path: models.config (ModelServerConfig text proto) the server reads.
      model_name: the model's `name` in that config.
      candidate: version number (a folder `<base_path>/<candidate>`).
      examples: glob of held-out TFRecords in the data contract.
      label: the label to move on success.
      baseline_label: the label whose version is the baseline (None or unset label: absolute gates only).
      thresholds: optional YAML/JSON thresholds (defaults: the pipeline's gates).
      model_base_path: where the version folders are on this machine, when the config's base_path
        is the server's view (e.g. `/models/posters` inside a container).

    Returns:
      The JSON-able report; `report["promoted"]` says what happened.

    Raises:
      validate.BadInput: bad config, model, version or examples.
    """
    cfg = read_model_config(config_path)
    model = find_model(cfg, model_name)
    base = model_base_path or model.base_path
    cand_dir = os.path.join(base, str(candidate))
    if not os.path.isfile(os.path.join(cand_dir, "saved_model.pb")):
        raise validate.BadInput(f"candidate version {candidate} not found: no {cand_dir}/saved_model.pb")
    baseline = model.version_labels.get(baseline_label) if baseline_label else None
    base_dir = os.path.join(base, str(baseline)) if baseline is not None else None
    if base_dir is not None and not os.path.isfile(os.path.join(base_dir, "saved_model.pb")):
        raise validate.BadInput(f"baseline version {baseline} (label {baseline_label!r}) not found under {base}")
    gate = validate.run(cand_dir, examples, baseline=base_dir if baseline != candidate else None,
                        thresholds=thresholds)
    before = dict(model.version_labels)
    report = {"promoted": gate["passed"], "model": model_name, "label": label, "candidate": candidate,
              "baseline_label": baseline_label, "baseline": baseline, "labels_before": before,
              "metrics": gate["metrics"], "baseline_metrics": gate["baseline_metrics"], "checks": gate["checks"]}
    if gate["passed"]:
        set_label(model, label, candidate)
        write_model_config(config_path, cfg)
    else:
        report["reason"] = "; ".join(c["check"] for c in gate["checks"] if not c["ok"])
    report["labels_after"] = dict(find_model(read_model_config(config_path), model_name).version_labels)
    return report


def main(args) -> int:
    """CLI entry (`posters promote`); prints the JSON report, returns the exit code."""
    try:
        report = promote(args.model_config_file, args.model_name, args.candidate, args.examples,
                         label=args.label, baseline_label=args.baseline_label or None,
                         thresholds=args.thresholds, model_base_path=args.model_base_path)
    except validate.BadInput as e:
        print(json.dumps({"promoted": False, "error": str(e)}))
        print(f"posters promote: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(report, indent=2))
    return EXIT_PROMOTED if report["promoted"] else EXIT_REJECTED

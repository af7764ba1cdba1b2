"""One typed config for the whole pipeline.

Flow: defaults here → YAML/JSON file → `--set key=value` overrides → `PipelineConfig`, passed to
the Transform/Trainer module files as `custom_config={"config": cfg.to_dict()}` and rebuilt there
with `PipelineConfig.from_dict`, so no module re-declares a setting.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any

# Nested config objects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanConfig:
    """Plan thresholds of the filtered signatures (components/filtered_search.py, docs/serving.md
    "Plans"); bench/filtered_search.py measured them at 1M posters on 2 cores. `index.plan.*`."""

    exact_max_fraction: float = 0.02  # driver share at or below → exact plan
    exact_max_rows: int = 2048  # driver rows at or below → exact plan (small catalogues)
    overfetch: float = 2.0  # candidates = k · overfetch / estimated allowed share …
    crowding_overfetch: float = 2.0  # … times this when the row has a crowding limit
    max_candidates: int = 4096  # more needed → exact plan instead
    gather_max_fraction: float = 0.3  # exact plan above this driver/allowed share: full-catalogue mask and matvec
    max_k: int = 1000


@dataclass
class IndexConfig:
    """Retrieval index bundled in the SavedModel; None → derived from catalogue size."""

    kind: str = "scann"  # "scann" (needs ScaNN ops in the server) | "brute_force" (stock TF ops)
    k: int = 10
    num_leaves: int | None = None  # default ≈ sqrt(N)
    num_leaves_to_search: int | None = None  # default: tuned toward `recall_target`
    dimensions_per_block: int = 2
    anisotropic_quantization_threshold: float = 0.2  # not exposed by tfrs; see poster_similarity/components/export.py
    training_iterations: int = 12
    num_reordering_candidates: int | None = None  # default: 10·k (exact re-scoring of candidates)
    recall_target: float = 0.95
    min_catalogue_for_scann: int = 64  # below this ScaNN cannot partition: fall back to brute force
    # One poster per near-duplicate group (`duplicate_group`) in serving_default/neighbors/recommend
    # answers; False serves every copy (docs/serving.md, "Near-duplicates are collapsed").
    collapse_duplicates: bool = True
    plan: PlanConfig = field(default_factory=PlanConfig)  # the filtered signatures' plans


@dataclass
class GateConfig:
    """Evaluator thresholds: absolute lower bounds + allowed drop vs the last blessed model."""

    min_recall_at_10: float = 0.5
    min_index_recall_at_10: float = 0.8
    max_recall_drop: float = 0.05
    max_map_drop: float = 0.05  # MAP@R vs the last blessed model (more sensitive than recall@10)
    # "did training help?": macro genre P@10 of the model over its untrained backbone's (0 = off)
    min_lift_over_frozen: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateConfig:
        """Thresholds from a mapping, checked like the pipeline config (unknown keys, types).

        Raises:
            ConfigError: an unknown threshold or a value of the wrong type.
        """
        return _build(cls, d, "gates.")


@dataclass
class DistributedConfig:
    """Where the Trainer runs (poster_similarity/components/distributed.py,
    poster_similarity/pipeline/trainer_switch.py, poster_similarity/pipeline/cluster_specs.py).

    `local`: in the pipeline's own process (LocalDagRunner, or the Kubeflow step's pod).
    `vertex`: TFX's Vertex AI Trainer extension starts a CustomJob with `replica_count` replicas of
    `image` (`docs/distributed-training.md`); the same fields render a Kubeflow TFJob manifest.
    """

    trainer_backend: str = "local"  # local | vertex
    replica_count: int = 2  # workers in the job (the first is the chief)
    machine_type: str = "n1-standard-8"
    accelerator_type: str | None = None  # Vertex machine_spec, e.g. NVIDIA_TESLA_T4 (TFJob: nvidia.com/gpu)
    accelerator_count: int = 0
    image: str | None = None  # None → `pipeline_image`
    project: str | None = None  # GCP project (vertex)
    region: str = "us-central1"
    namespace: str = "kubeflow"  # TFJob namespace
    startup_timeout_s: float = 300.0  # every worker named in TF_CONFIG must join within this
    export_wait_s: float = 1800.0  # non-chief workers wait this long for the chief's export


@dataclass
class PipelineConfig:
    pipeline_name: str = "poster-similarity"
    model_name: str = "posters"
    data_root: str = "data/tfrecords"  # folder of TFRecords in the data contract (training posters)
    catalogue_root: str | None = None  # folder of the posters to recommend; None → data_root
    workdir: str = "workdir"  # holds pipeline_root/, metadata.sqlite, serving_model/
    eval_buckets: int = 1  # hash split by movie_id: train_buckets : eval_buckets
    train_buckets: int = 4

    # Model
    backbone: str = "nasnet_large"  # production default (GPU); configs/demo.yaml: efficientnet_lite0 on CPU
    weights: str = "imagenet"  # "imagenet" | "none" | path to a local .h5 weights file
    image_size: list[int] | None = None  # [H, W]; None → the backbone's native size
    embedding_dim: int = 128
    dropout: float = 0.2

    # Phase 1: genre multi-label warm-up with progressive unfreezing
    phase1_epochs: int = 3
    phase1_lr: float = 1e-3
    # learning rate once backbone blocks are open (None → phase1_lr): pretrained weights need a
    # gentler step than the fresh head (measured on real posters, docs/pipeline-and-model.md)
    phase1_finetune_lr: float | None = None
    # [[epoch, n_top_blocks_trainable], ...]; -1 = every block. BatchNorm stays frozen.
    unfreeze_schedule: list[list[int]] = field(default_factory=lambda: [[0, 0], [1, 1], [2, 2]])
    batch_size: int = 32
    augment: bool = True  # small crops + colour jitter in training (no flips)

    # Phase 2: metric learning on the embedding layer
    phase2_epochs: int = 3
    phase2_steps_per_epoch: int | None = None  # None → catalogue size / (P·K)
    phase2_lr: float = 3e-4
    triplet_margin: float = 0.1
    label_strategy: str = "primary"  # "primary" (first genre) | "combo" (exact genre set)
    batch_p: int = 8  # classes per batch
    batch_k: int = 4  # examples per class

    seed: int = 42
    scramble_embeddings: bool = False  # test-only: export noise embeddings to prove the gate blocks it
    index: IndexConfig = field(default_factory=IndexConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    # Beam: DirectRunner locally (explicit runner: Beam's default tries Prism, which downloads);
    # configs/beam/*.yaml switch to DataflowRunner / FlinkRunner / SparkRunner.
    beam_runner: str = "DirectRunner"
    beam_direct_running_mode: str = "in_memory"  # in_memory | multi_threading | multi_processing
    beam_direct_num_workers: int = 1
    beam_extra_args: list[str] = field(default_factory=list)  # e.g. Dataflow/Flink/Spark flags

    # Kubeflow (poster_similarity/kubeflow_runner.py)
    pipeline_image: str = "poster-similarity-pipeline:latest"
    kubeflow_pipeline_root: str | None = None  # e.g. gs://bucket/root; None → <workdir>/pipeline_root
    kubeflow_serving_dir: str | None = None  # Pusher destination on Kubeflow, e.g. gs://bucket/serving/posters

    # ---- derived paths --------------------------------------------------------------------------
    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.workdir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.workdir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        """Pusher destination: TF Serving's `<base>/<model_name>/<version>/` layout."""
        return os.path.join(self.workdir, "serving_model", self.model_name)

    def beam_pipeline_args(self) -> list[str]:
        args = [f"--runner={self.beam_runner}"]
        if self.beam_runner == "DirectRunner":
            args.append(f"--direct_running_mode={self.beam_direct_running_mode}")
            if self.beam_direct_running_mode != "in_memory":
                args.append(f"--direct_num_workers={self.beam_direct_num_workers}")
        return args + list(self.beam_extra_args)

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipelineConfig:
        return _build(cls, d, "")


class ConfigError(ValueError):
    """A config file or override names an unknown field, has the wrong type or an impossible value.

    The message is one line naming the field (or file) at fault: `posters run` prints it as
    `posters run: error: <message>` and exits 2, before any TensorFlow/TFX import.
    """


def _build(cls, d: dict[str, Any], prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        import difflib

        near = difflib.get_close_matches(str(unknown[0]), sorted(names), n=1)
        hint = f" (did you mean {prefix}{near[0]}?)" if near else ""
        raise ConfigError(f"unknown config field(s): {', '.join(prefix + str(u) for u in unknown)}{hint}")
    kwargs = {}
    for name, value in d.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check(typ, value, prefix + name)
    return cls(**kwargs)


def _check(typ, value, name):
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{name}: must not be null")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _check(inner[0], value, name)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_check(args[0], v, name) for v in value] if args else value
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ in (int, float, str, bool) and not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {typ.__name__}, got {value!r}")
    return value


def _one_line(text: str) -> str:
    """YAML's parse errors span several lines (a caret under the offending column): keep one."""
    return " ".join(str(text).split())


def _parse_value(key: str, text: str) -> Any:
    """`--set` values are YAML scalars/lists: `3`, `0.1`, `none`, `[[0, -1]]`, `small_cnn`."""
    import yaml

    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key}={text!r}: not a YAML value ({_one_line(e)})") from None
    return None if isinstance(v, str) and v.lower() in ("null", "~") else v


def _read_file(path: str) -> dict[str, Any]:
    """The config file's mapping; every way it can be unusable is one `ConfigError` line."""
    import yaml

    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path}")
    if os.path.isdir(path):
        raise ConfigError(f"config file {path} is a folder")
    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {_one_line(e)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {_one_line(e)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping at top level, got {type(loaded).__name__}")
    return loaded


def _apply_override(d: dict[str, Any], item: str) -> None:
    """`a.b=value` into the nested mapping `d`; a KEY without `=` or a path through a value is an error."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. batch_size=16, index.kind=brute_force)")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    node = d
    *parents, leaf = key.split(".")
    for i, p in enumerate(parents):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parents[:i + 1])} is not a section")
    node[leaf] = _parse_value(key, text)


def load_config(path: str | None = None, overrides: list[str] | None = None, **fields: Any) -> PipelineConfig:
    """Defaults ← file (YAML or JSON) ← `key=value` overrides (dotted keys for nested) ← kwargs.

    Raises:
        ConfigError: (one line) a missing/unreadable/unparsable file, a malformed override, an
            unknown field or a value of the wrong type. Values are range-checked by `check_config`.
    """
    d: dict[str, Any] = dict(_read_file(path)) if path else {}
    for item in overrides or []:
        _apply_override(d, item)
    d.update({k: v for k, v in fields.items() if v is not None})
    return PipelineConfig.from_dict(d)


# Values a run cannot start with, checked before anything heavy is imported. Choices mirror the code
# that reads them (components/model.py BACKBONES, components/export.py, pipeline/trainer_switch.py,
# components/dataset.py); tests/test_config.py keeps BACKBONES in step.
BACKBONES = ("nasnet_large", "nasnet_mobile", "efficientnet_v2_b0", "mobilenet_v3_small", "resnet50",
             "efficientnet_lite0", "small_cnn")
CHOICES = {
    "backbone": BACKBONES,
    "label_strategy": ("primary", "combo"),
    "beam_direct_running_mode": ("in_memory", "multi_threading", "multi_processing"),
    "index.kind": ("scann", "brute_force"),
    "distributed.trainer_backend": ("local", "vertex"),
}
AT_LEAST = {  # field → smallest allowed value (None values are "derive it" and always allowed)
    "eval_buckets": 1, "train_buckets": 1, "embedding_dim": 1, "batch_size": 1, "batch_p": 1, "batch_k": 1,
    "phase1_epochs": 0, "phase2_epochs": 0, "phase2_steps_per_epoch": 1, "beam_direct_num_workers": 1,
    "index.k": 1, "index.num_leaves": 1, "index.num_leaves_to_search": 1, "index.dimensions_per_block": 1,
    "index.training_iterations": 1, "index.num_reordering_candidates": 1, "distributed.replica_count": 1,
    "distributed.accelerator_count": 0, "index.plan.exact_max_rows": 1, "index.plan.max_candidates": 1,
}
POSITIVE = ("phase1_lr", "phase1_finetune_lr", "phase2_lr", "triplet_margin", "index.recall_target",
            "index.plan.overfetch", "index.plan.crowding_overfetch")
FRACTIONS = ("index.plan.exact_max_fraction", "index.plan.gather_max_fraction")  # in (0, 1]


def _get(cfg: PipelineConfig, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def check_config(cfg: PipelineConfig) -> None:
    """Reject values a pipeline run would only trip over minutes later (in Transform or the Trainer).

    Types are checked by `load_config`; this checks choices and ranges, and that a weights file exists.

    Raises:
        ConfigError: one line naming the first field at fault and what it accepts.
    """
    for name, allowed in CHOICES.items():
        if _get(cfg, name) not in allowed:
            raise ConfigError(f"{name}: {_get(cfg, name)!r} is not one of {', '.join(allowed)}")
    for name, low in AT_LEAST.items():
        value = _get(cfg, name)
        if value is not None and value < low:
            raise ConfigError(f"{name}: must be >= {low}, got {value!r}")
    for name in POSITIVE:
        value = _get(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name}: must be > 0, got {value!r}")
    for name in FRACTIONS:
        if not 0 < _get(cfg, name) <= 1:
            raise ConfigError(f"{name}: must be in (0, 1], got {_get(cfg, name)!r}")
    if cfg.index.plan.max_k < cfg.index.k:
        raise ConfigError(f"index.plan.max_k: must be >= index.k ({cfg.index.k}), got {cfg.index.plan.max_k!r}")
    if not 0 <= cfg.dropout < 1:
        raise ConfigError(f"dropout: must be in [0, 1), got {cfg.dropout!r}")
    if cfg.image_size is not None and (len(cfg.image_size) != 2 or min(cfg.image_size) < 1):
        raise ConfigError(f"image_size: expected [H, W] of positive ints, got {cfg.image_size!r}")
    if cfg.weights not in ("imagenet", "none", "") and not os.path.isfile(cfg.weights):
        raise ConfigError(f"weights: {cfg.weights!r} is neither imagenet, none nor an existing weights file")


def load_config_from_env(default_path: str | None = None, **fields: Any) -> PipelineConfig:
    """The config of a runner file that the TFX CLI executes as `__main__` (it passes no arguments).

    Args:
        default_path: config file used when `POSTERS_CONFIG` is unset.
        **fields: field values that win over the file and the overrides (as in `load_config`).

    Returns:
        `load_config(POSTERS_CONFIG, POSTERS_SET split on ";", **fields)`.
    """
    overrides = [s for s in os.environ.get("POSTERS_SET", "").split(";") if s.strip()]
    return load_config(os.environ.get("POSTERS_CONFIG", default_path), overrides, **fields)

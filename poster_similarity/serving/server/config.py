"""Which models to serve: `--model-base-path/--model-name`, or TF Serving's `--model-config-file`.

The config file is TF Serving's ModelServerConfig text proto:

    model_config_list {
      config {
        name: "posters"
        base_path: "/models/posters"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 2 } }   # or specific { versions: 3 } / all {}
        version_labels { key: "stable" value: 3 }
        version_labels { key: "canary" value: 4 }
      }
    }

Relative base paths are resolved against the config file's directory. The server re-reads the file
when it changes (TF Serving's --model_config_file_poll_wait_seconds); a file that no longer parses
is logged and the previous config stays in force.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def valid_model_name(name: str) -> bool:
    """Names end up in URLs and log lines; keep them to a safe alphabet (no `..`)."""
    return bool(_NAME_RE.match(name)) and ".." not in name


@dataclass(frozen=True)
class ModelConfig:
    """One served model.

    Attributes:
        name: the model name in URLs and ModelSpecs.
        base_path: directory of numbered version directories.
        policy: "latest", "specific" or "all" (TF Serving's model_version_policy).
        num_versions: how many of the newest versions "latest" serves.
        versions: the versions "specific" serves.
        labels: version labels, e.g. {"stable": 3, "canary": 4}.
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if not valid_model_name(self.name):
            raise ValueError(f"invalid model name {self.name!r} (allowed: letters, digits, _ . -; no '..')")
        if self.policy not in ("latest", "specific", "all"):
            raise ValueError(f"model {self.name}: unknown version policy {self.policy!r}")
        if self.policy == "latest" and self.num_versions < 1:
            raise ValueError(f"model {self.name}: latest.num_versions must be >= 1")
        if self.policy == "specific" and not self.versions:
            raise ValueError(f"model {self.name}: specific policy lists no versions")
        for label, v in self.labels.items():
            if not valid_model_name(label) or v < 0:
                raise ValueError(f"model {self.name}: invalid version label {label!r} → {v}")


def parse_model_config(text: str, config_dir: str = ".") -> list[ModelConfig]:
    """Parse a ModelServerConfig text proto into ModelConfigs.

    Args:
        text: the file contents.
        config_dir: directory relative base paths are resolved against.

    Returns:
        One ModelConfig per `config` entry.

    Raises:
        ValueError: the text does not parse, uses unsupported fields, or repeats a model name.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    msg = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        raise ValueError(f"model config: {e}") from None
    if msg.HasField("custom_model_config"):
        raise ValueError("model config: custom_model_config is not supported; use model_config_list")
    out: list[ModelConfig] = []
    for c in msg.model_config_list.config:
        if c.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {c.name}: model_platform {c.model_platform!r} is not supported")
        if not c.base_path:
            raise ValueError(f"model {c.name}: base_path is empty")
        which = c.model_version_policy.WhichOneof("policy_choice") or "latest"
        kwargs = {}
        if which == "latest":
            kwargs["num_versions"] = c.model_version_policy.latest.num_versions or 1
        elif which == "specific":
            kwargs["versions"] = tuple(sorted(set(c.model_version_policy.specific.versions)))
        base = c.base_path if os.path.isabs(c.base_path) else os.path.join(config_dir, c.base_path)
        out.append(ModelConfig(c.name, os.path.abspath(base), which, labels=dict(c.version_labels), **kwargs))
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"model config: a model name is listed twice: {names}")
    if not out:
        raise ValueError("model config: no models listed")
    return out


def read_model_config(path: str) -> list[ModelConfig]:
    """Read and parse a `--model-config-file`; every error names the file (a server may be given
    several over its life: the message must say which one is wrong)."""
    try:
        with open(path) as f:
            text = f.read()
        return parse_model_config(text, os.path.dirname(os.path.abspath(path)))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"{path}: {detail}") from None

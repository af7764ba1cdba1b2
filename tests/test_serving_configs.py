"""Production serving configs parse with TF Serving's own protos and agree with each other.

Nothing here can run TF Serving, Docker or a cluster (none on this machine); parsing is the check.
The pip `tensorflow-serving-api` ships ModelServerConfig but not BatchingParameters or
MonitoringConfig, so those two come from poster_similarity/serving/tfs_protos.py (mirrors of TF Serving 2.15's .proto).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from poster_similarity.serving.tfs_protos import batching_parameters_cls, mirrored_protos, monitoring_config_cls
from tests.helpers import ROOT

SERVING = Path(ROOT) / "serving"
CONFIG, K8S = SERVING / "config", SERVING / "k8s"
BASE = K8S / "base"


def _parse(path: Path, cls):
    return text_format.Parse(path.read_text(), cls())


@pytest.fixture(scope="module")
def models_config():
    return _parse(CONFIG / "models.config", model_server_config_pb2.ModelServerConfig)


@pytest.fixture(scope="module")
def deployment():
    return yaml.safe_load((BASE / "deployment.yaml").read_text())


def _container(deployment) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def _flags(container) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in container["args"])


def test_models_config(models_config):
    (cfg,) = models_config.model_config_list.config
    assert cfg.name == "posters" and cfg.base_path == "/models/posters"
    assert cfg.model_platform == "tensorflow"
    assert cfg.model_version_policy.WhichOneof("policy_choice") == "latest"


def test_batching_parameters():
    bp = _parse(CONFIG / "batching_parameters.txt", batching_parameters_cls())
    assert bp.max_batch_size.value >= 1 and bp.num_batch_threads.value >= 1
    sizes = list(bp.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == bp.max_batch_size.value  # TF Serving's own rule
    # On: else TF Serving fails a batch of `recommend` histories of different lengths
    # (FAILED_PRECONDITION); tests/test_tfs_padding.py shows the padding changes no answer.
    assert bp.pad_variable_length_inputs


def test_monitoring_config():
    mc = _parse(CONFIG / "monitoring.config", monitoring_config_cls())
    assert mc.prometheus_config.enable and mc.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_mirrored_protos_reject_unknown_fields():
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise { value: 1 }", mirrored_protos()["BatchingParameters"]())


def test_deployment(deployment, models_config):
    (cfg,) = models_config.model_config_list.config
    assert deployment["apiVersion"] == "apps/v1" and deployment["kind"] == "Deployment"
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    c = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    flags = _flags(c)
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert flags["enable_batching"] == "true"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    for key, name in [("model_config_file", "models.config"), ("batching_parameters_file",
                      "batching_parameters.txt"), ("monitoring_config_file", "monitoring.config")]:
        assert flags[key] == f"{mounts['config']}/{name}" and (CONFIG / name).is_file()
    assert cfg.base_path.startswith(mounts["models"] + "/")
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert "persistentVolumeClaim" in volumes["models"] and "configMap" in volumes["config"]
    res = c["resources"]
    assert res["requests"]["cpu"] and res["limits"]["memory"]
    ann = spec["template"]["metadata"]["annotations"]
    monitoring = _parse(CONFIG / "monitoring.config", monitoring_config_cls())
    assert ann["prometheus.io/path"] == monitoring.prometheus_config.path


def test_service(deployment):
    svc = yaml.safe_load((BASE / "service.yaml").read_text())
    assert svc["kind"] == "Service" and svc["apiVersion"] == "v1"
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"grpc": (8500, 8500), "http": (8501, 8501)}


def test_hpa(deployment):
    hpa = yaml.safe_load((BASE / "hpa.yaml").read_text())
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["kind"] == "HorizontalPodAutoscaler"
    ref = hpa["spec"]["scaleTargetRef"]
    assert ref["kind"] == "Deployment" and ref["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "cpu" in _container(deployment)["resources"]["requests"]  # utilisation needs a request

"""The Kubernetes manifests (serving/k8s/) as the cluster would get them, checked without a cluster.

Rendered by `kubectl kustomize` (kustomize's own renderer) when kubectl is installed; the checks
that need only the base run everywhere. What is checked: the image follows the export's index kind;
readiness is "a version of the model is AVAILABLE" by TF Serving's own routing (its REST path regex
and the fact that /metadata needs an AVAILABLE servable: get_model_metadata_impl.cc calls
GetServableHandle); liveness does not depend on the model; non-root, read-only root filesystem,
no privilege escalation, no capabilities; a preStop drain shorter than the grace period; the model
volume is ReadOnlyMany. The init container's index-kind check is run for real with /bin/sh.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from poster_similarity.components.export import INDEX_REPORT
from poster_similarity.serving.tfs_protos import monitoring_config_cls
from tests.dockerfiles import dockerfile_env, dockerfile_user
from tests.helpers import ROOT

K8S, CONFIG = Path(ROOT) / "serving" / "k8s", Path(ROOT) / "serving" / "config"
KINDS = ("scann", "brute_force")  # what components.export.build_index can export
# tensorflow_serving/model_servers/http_rest_api_util.cc (2.15.1): the GET route for status/metadata.
TFS_GET_ROUTE = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                           r"(?:\/(metadata))?")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _render_base() -> list[dict]:
    kust = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    return [d for r in kust["resources"] for d in _docs(K8S / "base" / r)]


def _render(kind: str) -> list[dict]:
    """`kubectl kustomize overlays/<kind>` where kubectl exists; else base + the overlay's images."""
    overlay = K8S / "overlays" / kind
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    docs = _render_base()
    (img,) = yaml.safe_load((overlay / "kustomization.yaml").read_text())["images"]
    for d in docs:
        for c in _pod(d)["containers"] + _pod(d).get("initContainers", []) if d["kind"] == "Deployment" else []:
            if c["image"] == img["name"]:
                c["image"] = f"{img['newName']}:{img['newTag']}"
    return docs


def _pod(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def _by_kind(docs: list[dict], kind: str) -> dict:
    (d,) = [d for d in docs if d["kind"] == kind]
    return d


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {kind: _render(kind) for kind in KINDS}


@pytest.fixture(scope="module")
def deployment() -> dict:
    return _by_kind(_render_base(), "Deployment")


def test_one_overlay_per_index_kind_and_its_image(rendered):
    assert {p.name for p in (K8S / "overlays").iterdir()} == set(KINDS)
    images = {}
    for kind, docs in rendered.items():
        pod = _pod(_by_kind(docs, "Deployment"))
        used = {c["image"] for c in pod["containers"] + pod["initContainers"]}
        (images[kind],) = used  # the init check runs in the serving image itself
        assert images[kind].rsplit(":", 1)[1] == f"{kind}-2.15.1"
        # That image's Dockerfile declares it can serve this kind.
        assert kind in dockerfile_env(f"Dockerfile.{kind}")["POSTERS_INDEX_KINDS"].split()
    assert images["scann"] != images["brute_force"]
    assert "scann" not in dockerfile_env("Dockerfile.brute_force")["POSTERS_INDEX_KINDS"].split()


@pytest.mark.parametrize("image_kinds,report_kind,ok", [
    ("scann brute_force", "scann", True), ("scann brute_force", "brute_force", True),
    ("brute_force", "brute_force", True), ("brute_force", "scann", False),
])
def test_init_container_refuses_a_model_the_image_cannot_serve(deployment, tmp_path, image_kinds, report_kind, ok):
    (init,) = _pod(deployment)["initContainers"]
    for version, kind in (("2", "brute_force"), ("10", report_kind), ("tmp", "scann")):  # newest = 10
        (tmp_path / version / "assets.extra").mkdir(parents=True)
        with open(tmp_path / version / "assets.extra" / INDEX_REPORT, "w") as f:
            json.dump({"requested_kind": "x", "kind": kind, "k": 10}, f, indent=2)  # as export writes it
    env = {"PATH": os.environ["PATH"], "MODEL_BASE": str(tmp_path), "POSTERS_INDEX_KINDS": image_kinds}
    res = subprocess.run(init["command"], env=env, capture_output=True, text=True, timeout=30)
    assert (res.returncode == 0) == ok, res.stderr
    assert ("version 10" in res.stdout + res.stderr) and report_kind in res.stdout + res.stderr


def test_readiness_requires_an_available_model(deployment):
    (cfg,) = text_format.Parse((CONFIG / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig()).model_config_list.config
    c = _pod(deployment)["containers"][0]
    get = c["readinessProbe"]["httpGet"]
    m = TFS_GET_ROUTE.fullmatch(get["path"])
    # TF Serving routes it to ProcessModelMetadataRequest of the served model (not to the status
    # handler, which answers 200 in every state).
    assert m and m.group(1) == cfg.name and m.group(4) == "metadata" and not m.group(2) and not m.group(3)
    assert get["port"] == "http" and c["readinessProbe"]["failureThreshold"] >= 1


def test_liveness_is_not_the_model_status(deployment):
    c = _pod(deployment)["containers"][0]
    path = c["livenessProbe"]["httpGet"]["path"]
    monitoring = text_format.Parse((CONFIG / "monitoring.config").read_text(), monitoring_config_cls()())
    assert path == monitoring.prometheus_config.path and monitoring.prometheus_config.enable
    assert not TFS_GET_ROUTE.fullmatch(path)
    # REST opens only after the first load: a startup probe holds liveness off until then.
    assert "tcpSocket" in c["startupProbe"]
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 300


def test_non_root_read_only_no_privileges(deployment):
    pod = _pod(deployment)
    uid = pod["securityContext"]["runAsUser"]
    assert pod["securityContext"]["runAsNonRoot"] is True and uid != 0
    for name in ("Dockerfile.scann", "Dockerfile.brute_force"):
        assert dockerfile_user(name) == f"{uid}:{pod['securityContext']['runAsGroup']}"
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        assert sc["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m for m in pod["containers"][0]["volumeMounts"] if not m.get("readOnly")]
    assert [(m["mountPath"], "emptyDir" in volumes[m["name"]]) for m in writable] == [("/tmp", True)]


def test_prestop_drain_fits_the_grace_period(deployment):
    pod = _pod(deployment)
    cmd = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "/bin/sleep"
    assert 5 <= int(cmd[1]) < pod["terminationGracePeriodSeconds"]


def test_models_volume_is_read_only_many(rendered):
    for docs in rendered.values():
        pvc = _by_kind(docs, "PersistentVolumeClaim")
        assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
        pod = _pod(_by_kind(docs, "Deployment"))
        (models,) = [v for v in pod["volumes"] if v["name"] == "models"]
        assert models["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"], "readOnly": True}
        for c in pod["containers"] + pod["initContainers"]:
            assert all(m["readOnly"] for m in c["volumeMounts"] if m["name"] == "models")


def test_service_and_hpa_target_the_deployment(rendered):
    for docs in rendered.values():
        dep = _by_kind(docs, "Deployment")
        assert _by_kind(docs, "Service")["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        assert _by_kind(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]

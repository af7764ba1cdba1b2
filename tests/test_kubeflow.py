"""Kubeflow: the same pipeline compiles to KFP v2 IR and to a KFP v1 Argo package, with the local DAG."""
import json
import os
import tarfile

import pytest
import yaml

pytestmark = pytest.mark.slow
IMAGE = "registry.example.com/poster-similarity-pipeline:1.0"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from poster_similarity.core.config import load_config

    root = tmp_path_factory.mktemp("kf")
    return load_config("configs/demo.yaml", [f"pipeline_image={IMAGE}",
                                             f"kubeflow_pipeline_root={root}/root",
                                             "data_root=gs://bucket/posters/tfrecords"])


@pytest.fixture(scope="module")
def local_edges(cfg):
    from poster_similarity.pipeline.definition import create_pipeline

    p = create_pipeline(cfg)
    return {c.id: sorted(u.id for u in c.upstream_nodes) for c in p.components}


def test_the_dag_has_both_inputs_the_embedding_step_and_the_index_builder(local_edges):
    """The catalogue branch joins the trained tower at CatalogueEmbedder; the Evaluator and Pusher
    take IndexBuilder's model, not the Trainer's (a refresh re-runs only that branch)."""
    assert local_edges["CatalogueExampleGen"] == []
    assert local_edges["CatalogueEmbedder"] == ["CatalogueExampleGen", "Trainer"]
    assert local_edges["IndexBuilder"] == ["CatalogueEmbedder", "CatalogueExampleGen", "Trainer", "Transform"]
    assert "IndexBuilder" in local_edges["Evaluator"] and "Trainer" not in local_edges["Evaluator"]
    assert "IndexBuilder" in local_edges["Pusher"] and "Trainer" not in local_edges["Pusher"]
    assert "CatalogueExampleGen" not in local_edges["Transform"] + local_edges["Trainer"]


def test_v2_ir_has_every_component_with_image_edges_parameters_and_root(cfg, local_edges, tmp_path):
    from poster_similarity.kubeflow_runner import CATALOGUE_ROOT_PARAM, DATA_ROOT_PARAM, compile_v2

    spec = json.load(open(compile_v2(cfg, str(tmp_path))))
    ps = spec["pipelineSpec"]
    tasks = ps["root"]["dag"]["tasks"]
    local_components = {k for k in local_edges if k != "latest_blessed_model_resolver"}
    assert local_components <= set(tasks)
    for name in local_components:
        executor = ps["deploymentSpec"]["executors"][f"{name}_executor"]
        assert executor["container"]["image"] == IMAGE
        # every upstream edge of the local pipeline is a dependency in the IR (resolver = 2 tasks)
        deps = {d.split("-model")[0] for d in tasks[name].get("dependentTasks", [])}
        assert {u for u in local_edges[name] if u != "latest_blessed_model_resolver"} <= deps
    assert {DATA_ROOT_PARAM, CATALOGUE_ROOT_PARAM} <= set(ps["root"]["inputDefinitions"]["parameters"])
    for name, cls in (("IndexBuilder", "poster_similarity.components.index_builder.executor.Executor"),
                      ("CatalogueEmbedder", "poster_similarity.components.catalogue_embedder.executor.Executor")):
        assert cls in json.dumps(ps["deploymentSpec"]["executors"][f"{name}_executor"]), name
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == cfg.kubeflow_pipeline_root


def test_v1_argo_package(cfg, local_edges, tmp_path):
    from poster_similarity.kubeflow_runner import compile_v1

    with tarfile.open(compile_v1(cfg, str(tmp_path))) as tar:
        wf = yaml.safe_load(tar.extractfile("pipeline.yaml"))
    assert wf["kind"] == "Workflow"
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    dag = next(t for t in templates.values() if "dag" in t)["dag"]["tasks"]
    names = {t["name"]: t for t in dag}
    for comp, ups in local_edges.items():
        argo = comp.lower().replace("_", "-")
        assert argo in names, argo
        assert templates[names[argo]["template"]]["container"]["image"] == IMAGE
        assert {u.lower().replace("_", "-") for u in ups} <= set(names[argo].get("dependencies", []))
    params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    assert params["pipeline-root"] == cfg.kubeflow_pipeline_root and params["data-root"] == cfg.data_root
    assert params["catalogue-root"] == cfg.data_root  # defaults to the training data


def test_beam_presets_load():
    from poster_similarity.core.config import load_config

    for name in os.listdir("configs/beam"):
        cfg = load_config(os.path.join("configs/beam", name))
        args = cfg.beam_pipeline_args()
        assert args[0] == f"--runner={cfg.beam_runner}"
        assert ("--direct_running_mode" in " ".join(args)) == (cfg.beam_runner == "DirectRunner")

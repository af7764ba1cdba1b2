"""Read a pushed model's lineage back from ML Metadata: which data, which Transform, which blessing."""
from __future__ import annotations

import glob
import os


def newest_artifact_dir(pipeline_root: str, component: str, output: str) -> str:
    """`<pipeline_root>/<component>/<output>/<id>` with the highest artifact id (the latest run's)."""
    found = glob.glob(os.path.join(pipeline_root, component, output, "*"))
    if not found:
        raise FileNotFoundError(f"no {component} {output} artifact under {pipeline_root}")
    return max(found, key=lambda p: int(os.path.basename(p)))


def model_lineage(metadata_path: str, pushed_destination: str | None = None) -> dict:
    """Walk PushedModel ← Pusher ← (Model, ModelBlessing) ← Trainer ← (Examples, TransformGraph) …"""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(conn)
    types = {t.id: t.name for t in store.get_artifact_types()}
    exec_types = {t.id: t.name for t in store.get_execution_types()}

    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if a.custom_properties["pushed"].int_value == 1]
    if pushed_destination:
        pushed = [a for a in pushed if a.custom_properties["pushed_destination"].string_value == pushed_destination]
    if not pushed:
        raise LookupError("no pushed model in ML Metadata")
    start = max(pushed, key=lambda a: a.id)

    def producer(artifact_id):
        for ev in store.get_events_by_artifact_ids([artifact_id]):
            if ev.type == metadata_store_pb2.Event.OUTPUT:
                return store.get_executions_by_id([ev.execution_id])[0]
        return None

    def inputs(execution):
        ids = [ev.artifact_id for ev in store.get_events_by_execution_ids([execution.id])
               if ev.type == metadata_store_pb2.Event.INPUT]
        return store.get_artifacts_by_id(ids)

    out = {"pushed_destination": start.custom_properties["pushed_destination"].string_value, "components": {}}
    frontier, seen = [start], set()
    while frontier:
        art = frontier.pop()
        ex = producer(art.id)
        if ex is None or ex.id in seen:
            continue
        seen.add(ex.id)
        name = exec_types[ex.type_id].rsplit(".", 1)[-1]
        out["components"][name] = ex.id
        for a in inputs(ex):
            kind = types[a.type_id]
            if kind == "Model" and name == "Pusher":
                out["model_uri"] = a.uri
            elif kind == "ModelBlessing" and name == "Pusher":
                out["blessed"] = bool(a.custom_properties["blessed"].int_value)
                out["blessing_uri"] = a.uri
            elif kind == "Examples" and name == "Trainer":
                out["transformed_examples_uri"] = a.uri
            elif kind == "TransformGraph" and name == "Trainer":
                out["transform_graph_uri"] = a.uri
            elif kind == "Examples" and name == "Transform":
                out["examples_uri"] = a.uri
            frontier.append(a)
    return out

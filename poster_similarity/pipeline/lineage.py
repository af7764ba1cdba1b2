"""Everything read back from a pipeline run's ML Metadata: the run summary (blessing, metrics, pushed
model), a pushed model's lineage (which data, which Transform, which blessing) and component times.

One reader, through the `ml_metadata` client (never the store's SQL schema, which MLMD may change).
"""
from __future__ import annotations

import glob
import os
from typing import Any

from poster_similarity.core.config import PipelineConfig


def newest_artifact_dir(pipeline_root: str, component: str, output: str) -> str:
    """`<pipeline_root>/<component>/<output>/<id>` with the highest artifact id (the latest run's)."""
    found = glob.glob(os.path.join(pipeline_root, component, output, "*"))
    if not found:
        raise FileNotFoundError(f"no {component} {output} artifact under {pipeline_root}")
    return max(found, key=lambda p: int(os.path.basename(p)))


def open_store(metadata_path: str) -> Any:
    """An `ml_metadata.MetadataStore` on the sqlite file a local run writes (`cfg.metadata_path`)."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = metadata_path
    return metadata_store.MetadataStore(conn)


def _newest(store: Any, type_name: str) -> Any:
    arts = store.get_artifacts_by_type(type_name)
    return max(arts, key=lambda a: a.id) if arts else None


def summarize(cfg: PipelineConfig, seconds: float | None = None) -> dict:
    """Blessing, metrics and pushed model of the newest run, read back from ML Metadata.

    Args:
        cfg: the run's config (its `metadata_path`, `serving_dir`, names).
        seconds: the run's wall time, recorded as `wall_seconds` when given.

    Returns:
        The dict `posters run` prints and writes to `<workdir>/run_summary.json`: `blessed`,
        `metrics`, `pushed`, `pushed_destination`, `serving_base_path`, `model_name`, … (a key is
        absent when the run did not produce its artifact).
    """
    store = open_store(cfg.metadata_path)

    out: dict = {"pipeline_name": cfg.pipeline_name, "workdir": os.path.abspath(cfg.workdir)}
    if seconds is not None:
        out["wall_seconds"] = round(seconds, 1)
    blessing = _newest(store, "ModelBlessing")
    if blessing is not None:
        out["blessed"] = bool(blessing.custom_properties["blessed"].int_value)
    evaluation = _newest(store, "ModelEvaluation")
    if evaluation is not None:
        out["evaluation_uri"] = evaluation.uri
        out["metrics"] = read_metrics(evaluation.uri)
    served = _newest(store, "Model")  # IndexBuilder's output follows the Trainer's in every run
    if served is not None:
        props = {k: v.double_value for k, v in served.custom_properties.items()
                 if k.endswith("_macro_precision_at_10") or k.startswith("lift_over_")}
        if props:
            out["did_training_help"] = props
    pushed = _newest(store, "PushedModel")
    if pushed is not None and "pushed" in pushed.custom_properties:
        out["pushed"] = bool(pushed.custom_properties["pushed"].int_value)
        if out["pushed"]:
            out["pushed_destination"] = pushed.custom_properties["pushed_destination"].string_value
    out["serving_base_path"] = os.path.abspath(os.path.dirname(cfg.serving_dir))
    out["model_name"] = cfg.model_name
    out["components"] = run_states(store)
    return out


def training_lift_lines(summary: dict) -> list[str]:
    """The run's "did training help?" table (`summarize`'s `did_training_help`), as printable lines."""
    from poster_similarity.components.baselines import MODEL, summary_lines

    props = summary.get("did_training_help") or {}
    suffix = "_macro_precision_at_10"
    rows = {k[: -len(suffix)]: {"macro_precision@10": v} for k, v in props.items() if k.endswith(suffix)}
    model = rows.pop(MODEL, None)
    return summary_lines({MODEL: model, "baselines": rows}) if model else []


def run_states(store: Any) -> dict[str, str]:
    """Per component of the newest pipeline run: "ran", "cached" (outputs reused from an earlier
    run with the same inputs and config) or the execution's state ("failed", …).

    Args:
        store: an open `MetadataStore` (`open_store`).

    Returns:
        {node id: state}, in execution order (the Resolver, which runs no executor, is left out).
    """
    from ml_metadata.proto import metadata_store_pb2

    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return {}
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    node_type = store.get_context_type("node").id
    names = {metadata_store_pb2.Execution.COMPLETE: "ran", metadata_store_pb2.Execution.CACHED: "cached"}
    out = {}
    for e in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node = next((c.name for c in store.get_contexts_by_execution(e.id) if c.type_id == node_type), "")
        node = node.split(".", 1)[-1]
        if node and "resolver" not in node.lower():
            out[node] = names.get(e.last_known_state,
                                  metadata_store_pb2.Execution.State.Name(e.last_known_state).lower())
    return out


def read_metrics(evaluation_uri: str) -> dict:
    """Overall-slice metrics of a TFMA evaluation, name → value."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri)
    metrics = {}
    for _, per_output in result.slicing_metrics:
        for _, by_sub in per_output.items():
            for _, vals in by_sub.items():
                for name, v in vals.items():
                    value = v.get("doubleValue")
                    if value is not None:
                        metrics[name] = value
    return metrics


def model_lineage(metadata_path: str, pushed_destination: str | None = None) -> dict:
    """Walk PushedModel ← Pusher ← (Model, ModelBlessing) ← IndexBuilder ← Trainer ← (Examples, TransformGraph) …

    Args:
        metadata_path: the ML Metadata sqlite file.
        pushed_destination: follow the newest model pushed there (default: the newest pushed model).

    Returns:
        `pushed_destination`, `components` (node id → execution id) and the URIs of the model,
        blessing, examples, transformed examples and transform graph it came from.

    Raises:
        LookupError: no model was pushed (to that destination).
    """
    from ml_metadata.proto import metadata_store_pb2

    store = open_store(metadata_path)
    types = {t.id: t.name for t in store.get_artifact_types()}
    node_type = store.get_context_type("node").id

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
        # the node id (two ImportExampleGens share one execution type: the node tells them apart)
        name = next((c.name for c in store.get_contexts_by_execution(ex.id) if c.type_id == node_type), "")
        name = name.split(".", 1)[-1]
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


def component_times(metadata_path: str) -> list[dict]:
    """One row per execution: component, type, final state and seconds between its creation and its
    last update (ML Metadata's millisecond timestamps).

    Args:
        metadata_path: the ML Metadata sqlite file.

    Returns:
        Rows `{"execution_id", "component", "type", "state", "seconds"}` in execution order.
    """
    from ml_metadata.proto import metadata_store_pb2

    store = open_store(metadata_path)
    types = {t.id: t.name for t in store.get_execution_types()}
    state_name = metadata_store_pb2.Execution.State.Name
    return [{"execution_id": e.id, "component": types[e.type_id].rsplit(".", 1)[-1], "type": types[e.type_id],
             "state": state_name(e.last_known_state),
             "seconds": round((e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0, 2)}
            for e in sorted(store.get_executions(), key=lambda e: e.id)]

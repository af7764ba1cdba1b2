"""poster_similarity/pipeline/lineage.py reads ML Metadata through its client: checked on a real MLMD sqlite store."""
from __future__ import annotations

import time

from poster_similarity.pipeline.lineage import component_times, open_store


def test_component_times_on_a_real_metadata_store(tmp_path):
    """Two executions written with the ml_metadata client, the first updated 50 ms after creation. Expected
    rows are derived from what the store itself records: seconds = (last update − creation) / 1000."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    path = str(tmp_path / "metadata.sqlite")
    store = open_store(path)
    transform = store.put_execution_type(pb.ExecutionType(name="tfx.components.transform.component.Transform"))
    trainer = store.put_execution_type(pb.ExecutionType(name="tfx.components.trainer.component.Trainer"))
    [first] = store.put_executions([pb.Execution(type_id=transform, last_known_state=pb.Execution.RUNNING)])
    [second] = store.put_executions([pb.Execution(type_id=trainer, last_known_state=pb.Execution.CACHED)])
    time.sleep(0.05)
    store.put_executions([pb.Execution(id=first, type_id=transform, last_known_state=pb.Execution.COMPLETE)])
    stored = {e.id: e for e in store.get_executions()}
    del store

    rows = component_times(path)
    assert [r["execution_id"] for r in rows] == [first, second]
    assert [(r["component"], r["state"]) for r in rows] == [("Transform", "COMPLETE"), ("Trainer", "CACHED")]
    assert rows[0]["type"] == "tfx.components.transform.component.Transform"
    for r in rows:
        e = stored[r["execution_id"]]
        assert r["seconds"] == round((e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0, 2)
    assert rows[0]["seconds"] >= 0.05  # the update came ≥ 50 ms after the creation

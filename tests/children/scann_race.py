"""ScaNN's first-call race, provoked in a process of its own (it is expected to die of SIGSEGV when
cold); see tests/test_scann_first_call_race.py for the mechanism.

    python -m tests.children.scann_race EXPORT_DIR cold|warm ROUNDS K

Binds K fresh `TensorsToScann` kernels (K new tf.functions: new graphs, new kernel instances) to
one resource name, using the loaded model's own ScaNN variables, and starts their first runs
staggered across one `Initialize`, ROUNDS times. `cold`: a new resource each round, nobody has
initialised it; `warm`: the server's own LoadedModel + warm_up first, then the loaded version's
own resource. Prints JSON lines: (`warm_up_calls` when warm), `resource_name`, `alone` (one kernel
run alone on a fresh resource: the op path itself works), then one per round with its failures,
stopping at the first round that fails.
"""
from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid


def resource_name_of(state) -> str:
    """The shared name the SavedModel loader gave the export's `Scann>TensorsToScann` op."""
    graph = state.recreate_handle.get_concrete_function().graph.as_graph_def()  # the op may sit in a callee
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    return next(n.attr["shared_name"].s.decode() for n in nodes if n.op == "Scann>TensorsToScann")


class Kernels:
    """New kernels over the export's ScaNN variables, each bound to a resource name of the caller's."""

    def __init__(self, state):
        import tensorflow as tf

        self.variables = [state.dataset, state.scann_config, state.serialized_partitioner,
                          state.datapoint_to_token, state.ah_codebook, state.hashed_dataset, state.int8_dataset,
                          state.int8_multipliers, state.dp_norms]
        self.query = tf.math.l2_normalize(tf.random.stateless_normal([2, 128], seed=[1, 2]), axis=1)

    def kernel(self, name: str):
        """A new graph, so a new TensorsToScann kernel instance, bound to resource `name`."""
        import tensorflow as tf
        from scann.scann_ops.py import scann_ops

        @tf.function
        def first_run():
            handle = scann_ops.tensors_to_scann(*[v.read_value() for v in self.variables], shared_name=name)
            return handle, scann_ops.scann_search_batched(handle, self.query, 10, -1, -1, False).indices

        return first_run.get_concrete_function()


def answer(fn):
    handle, ids = fn()
    ids = ids.numpy()
    return handle, "ok" if ids.shape == (2, 10) and ids.min() >= 0 else f"bad answer {ids.tolist()}"


def race(fns: list, delays: list[float]) -> tuple[list[str], list]:
    """Start every kernel's first run at once (a barrier), each after its delay: (outcomes, handles)."""
    k = len(fns)
    barrier, out, handles = threading.Barrier(k), [None] * k, []

    def run(i):
        barrier.wait()
        time.sleep(delays[i])
        try:
            handle, out[i] = answer(fns[i])
            handles.append(handle)
        except Exception as e:  # noqa: BLE001 — every failure is an outcome to report
            out[i] = str(getattr(e, "message", e)).strip().splitlines()[0][:200]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, handles


def main(argv=None) -> int:
    path, mode, rounds, k = sys.argv[1:] if argv is None else argv
    rounds, k = int(rounds), int(k)
    import tensorflow as tf
    from scann.scann_ops.py import scann_ops  # noqa: F401  registers ScaNN's ops before the model loads

    from poster_similarity.serving.server.model import LoadedModel
    from poster_similarity.serving.server.warmup import warm_up

    model = LoadedModel(path, 1)
    state = model.obj.index._serialized_searcher  # the ScannState the export saved
    if mode == "warm":
        print(json.dumps({"warm_up_calls": warm_up(model)}), flush=True)
    resource_name = resource_name_of(state)
    print(json.dumps({"resource_name": resource_name}), flush=True)
    kernels = Kernels(state)
    handle, sanity = answer(kernels.kernel(f"alone_{uuid.uuid4().hex}"))  # the op path works, alone
    tf.raw_ops.DestroyResourceOp(resource=handle)
    print(json.dumps({"alone": sanity}), flush=True)

    rng, t0 = random.Random(0), time.monotonic()
    for r in range(rounds):
        # cold: a resource nobody has initialised; warm: the loaded version's own, warmed up
        name = resource_name if mode == "warm" else f"race_{uuid.uuid4().hex}"
        fns = [kernels.kernel(name) for _ in range(k)]
        delays = [rng.uniform(0, 0.03) for _ in range(k)]  # staggered across one Initialize
        out, handles = race(fns, delays)
        failed = [o for o in out if o != "ok"]
        print(json.dumps({"round": r, "failed": failed, "seconds": round(time.monotonic() - t0, 1)}), flush=True)
        if failed:
            break
        if mode == "cold" and handles:  # free this round's searcher (the warm arm keeps the version's)
            tf.raw_ops.DestroyResourceOp(resource=handles[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

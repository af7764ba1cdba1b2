"""Smoke check of a running model server on a fresh export (run by serving/docker/smoke.sh).

Waits for the Kubernetes readiness condition (GET /v1/models/NAME/metadata answers 200: a version
is AVAILABLE) and, if asked, the liveness one; then, over REST and over gRPC with the project's
client (poster_similarity/client/poster_client.py): the status says AVAILABLE, the metadata lists exactly the export's
signatures, and every signature answers what the same SavedModel answers in this process, and
the same over both protocols. A signature with no smoke input here fails the check, so a new
signature cannot go unchecked.

    PYTHONPATH=. python serving/docker/smoke_check.py --rest HOST:PORT --grpc HOST:PORT --export DIR
"""
from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import tensorflow as tf

from poster_similarity.client import PosterClient, history_rows


def _images(n: int = 2) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [tf.io.encode_jpeg(rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)).numpy() for _ in range(n)]


def _examples(images: list[bytes]) -> list[bytes]:
    def ex(img: bytes, movie_id: str) -> bytes:
        feats = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img])),
                 "movie_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[movie_id.encode()]))}
        return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()

    return [ex(img, f"m{i}") for i, img in enumerate(images)]


def smoke_inputs(reference) -> dict[str, dict[str, object]]:
    images = _images()
    emb = reference.signatures["embed"](image_bytes=tf.constant(images))["embedding"].numpy()
    return {
        "serving_default": {"image_bytes": images},
        "embed": {"image_bytes": images},
        "neighbors": {"embedding": emb},
        "recommend": {"history": history_rows([["m1", "m2", "m3", "m2"], ["m4"], []])},
        "embed_examples": {"examples": _examples(images)},
        "transform_features": {"examples": _examples(images)},
        # Two rows: no rule, and a rule (a year window, one id excluded, at most 1 per group, k 5).
        "neighbors_filtered": {"embedding": emb, **_rules()},
        "similar_filtered": {"image_bytes": images, **_rules()},
        "recommend_filtered": {"history": history_rows([["m1", "m2"], ["m4"]]), **_rules()},
    }


def _rules() -> dict[str, object]:
    """The filtered signatures' rule inputs (docs/serving.md), int32 where the signature says so."""
    empty = [[""], [""]]
    return {"include_genres": empty, "exclude_genres": empty, "required_tags": empty, "forbidden_tags": empty,
            "year_range": np.array([[0, 0], [1900, 2100]], np.int32), "exclude_ids": [[""], ["m1"]],
            "per_group": np.array([0, 1], np.int32), "k": np.array([0, 5], np.int32)}


def wait_ready(rest: str, model: str, timeout_s: float, liveness_path: str | None) -> None:
    paths = [f"/v1/models/{model}/metadata"] + ([liveness_path] if liveness_path else [])
    deadline = time.monotonic() + timeout_s
    for path in paths:
        while True:
            try:
                with urllib.request.urlopen(f"http://{rest}{path}", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"smoke: GET {path} did not answer 200 within {timeout_s:.0f} s")
            time.sleep(1)


def _same(name: str, got: dict, want: dict, where: str) -> None:
    if set(got) != set(want):
        raise AssertionError(f"{where} {name}: outputs {sorted(got)} != {sorted(want)}")
    for key, w in want.items():
        g = np.asarray(got[key])
        w = np.asarray(w)
        if w.dtype.kind in "SOU":
            np.testing.assert_array_equal(g.astype(bytes), w.astype(bytes), err_msg=f"{where} {name}.{key}")
        else:
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"{where} {name}.{key}")


def check(rest: str, grpc: str, export_dir: str, model: str) -> int:
    try:  # the in-process reference run of a ScaNN export needs ScaNN's ops registered here
        from scann.scann_ops.py import scann_ops  # noqa: F401
    except ImportError:
        pass
    reference = tf.saved_model.load(export_dir)
    signatures = set(reference.signatures)
    inputs = smoke_inputs(reference)
    missing = signatures - set(inputs)
    if missing:
        raise SystemExit(f"smoke: no smoke input for signature(s) {sorted(missing)}: add them to smoke_check.py")
    expected = {name: {k: v.numpy() for k, v in reference.signatures[name](
        **{k: tf.constant(np.asarray(v)) for k, v in inputs[name].items()}).items()} for name in signatures}
    answers = {}
    for protocol, server in (("rest", rest), ("grpc", grpc)):
        with PosterClient(server, model, protocol=protocol) as client:
            states = [s["state"] for s in client.status()["model_version_status"]]
            if "AVAILABLE" not in states:
                raise AssertionError(f"{protocol}: no AVAILABLE version ({states})")
            served = set(client.metadata()["metadata"]["signature_def"]["signature_def"])
            if served - {"__saved_model_init_op"} != signatures:
                raise AssertionError(f"{protocol}: metadata lists {sorted(served)}, the export {sorted(signatures)}")
            for name in sorted(signatures):
                answers[protocol, name] = client.predict(name, inputs[name])
                _same(name, answers[protocol, name], expected[name], f"{protocol} vs in-process:")
    for name in signatures:
        _same(name, answers["grpc", name], answers["rest", name], "gRPC vs REST:")
    print(f"smoke: {len(signatures)} signatures × REST + gRPC answer like the SavedModel in-process")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rest", required=True, help="host:port of the REST API")
    p.add_argument("--grpc", required=True, help="host:port of the gRPC API")
    p.add_argument("--export", required=True, help="the SavedModel directory the server serves")
    p.add_argument("--model", default="posters")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to wait for readiness")
    p.add_argument("--liveness-path", default=None, help="also wait for this GET path (the k8s liveness probe)")
    a = p.parse_args(argv)
    wait_ready(a.rest, a.model, a.wait, a.liveness_path)
    return check(a.rest, a.grpc, a.export, a.model)


if __name__ == "__main__":
    sys.exit(main())

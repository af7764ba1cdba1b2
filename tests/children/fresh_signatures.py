"""Runs every signature of a pushed SavedModel in a process where only TensorFlow and ScaNN are
importable, as TF Serving would load it, and prints one line `RESULT{json}` for the test to judge.

Run as a file, not with `-m`: the repository must not be on `sys.path` (the check below fails if
the project's package can be imported, which would mean the model needs project code to load).

    python tests/children/fresh_signatures.py MODEL_DIR CAT.json FORMATS.json ALL.json IDS.json
"""
from __future__ import annotations

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _project_importable() -> bool:
    try:
        __import__("poster_similarity")
    except ImportError:
        return False
    return True


def _mix(m, tf, e, out):
    """The style mix of the pair whose cosine is nearest 0.3 (different, not opposite: the midpoint
    of two near-opposite embeddings is degenerate; measured on the demo model, the per-parent check
    failed for 14 % of random pairs, every one with cosine < 0.12, and never above). Returns the
    embeddings reordered so that the two parents come first."""
    c = e @ e.T
    pa, pb = min(((i, j) for i in range(len(e)) for j in range(i + 1, len(e))), key=lambda p: abs(c[p] - 0.3))
    out["mix_pair_cos"] = float(c[pa, pb])
    e = e[[pa, pb] + [i for i in range(len(e)) if i not in (pa, pb)]]
    mix = (e[0] + e[1]) / 2
    n = m.signatures["neighbors"](embedding=tf.constant(mix[None]))
    out["mix_ids"] = [x.decode() for x in n["movie_ids"].numpy()[0]]
    out["mix_sims"] = (e @ (mix / (sum(mix ** 2) ** 0.5))).tolist()
    return e


def _mix_neighbours_vs_catalogue(m, tf, e, all_images, all_ids, out):
    """How near the mix's neighbours are to each parent, against the whole catalogue's average."""
    full = m.signatures["embed"](image_bytes=tf.constant(all_images))["embedding"].numpy()
    row = {i: r for r, i in enumerate(all_ids)}
    top = full[[row[i] for i in out["mix_ids"] if i in row]]
    out["mix_top_to_a"], out["mix_top_to_b"] = float((top @ e[0]).mean()), float((top @ e[1]).mean())
    out["cat_to_a"], out["cat_to_b"] = float((full @ e[0]).mean()), float((full @ e[1]).mean())


def _bad_inputs(m, tf, first_image: bytes, out):
    for name, data in {"garbage": b"not an image", "empty": b"", "truncated": first_image[:200]}.items():
        try:
            m.signatures["embed"](image_bytes=tf.constant([data]))
            out["bad_" + name] = "accepted"
        except tf.errors.InvalidArgumentError:
            out["bad_" + name] = "InvalidArgumentError"


def main(argv: list[str]) -> int:
    sys.path[:] = [p for p in sys.path if p not in ("", REPO)]
    if _project_importable():
        print("project code importable: poster_similarity", file=sys.stderr)
        return 1
    import scann  # noqa: F401  registers the index's ops
    import tensorflow as tf

    model_dir, cat_path, formats_path, all_path, ids_path = argv
    m = tf.saved_model.load(model_dir)
    cat = json.load(open(cat_path))
    imgs = tf.constant([bytes.fromhex(c["image"]) for c in cat])
    ids = [c["movie_id"].encode() for c in cat]
    out: dict = {}
    d = m.signatures["serving_default"](image_bytes=imgs)
    out["self_first"] = [r[0] == i for r, i in zip(d["movie_ids"].numpy().tolist(), ids, strict=True)]
    out["shapes"] = {k: v.shape.as_list() for k, v in d.items()}
    e = m.signatures["embed"](image_bytes=imgs)["embedding"].numpy()
    out["embed_matches"] = bool(abs(e - d["embedding"].numpy()).max() < 1e-4)
    out["embedding_std"] = float(e.std(axis=0).mean())
    e = _mix(m, tf, e, out)
    _mix_neighbours_vs_catalogue(m, tf, e, [bytes.fromhex(c) for c in json.load(open(all_path))],
                                 json.load(open(ids_path)), out)
    r = m.signatures["recommend"](history=tf.constant([[ids[0], ids[1], ids[2], b""], [b"unknown", b"", b"", b""]]))
    out["rec"] = [[x.decode() for x in row] for row in r["movie_ids"].numpy()]
    out["history_used"] = r["history_used"].numpy().tolist()
    ex = m.signatures["embed_examples"](examples=tf.constant([bytes.fromhex(c["serialized"]) for c in cat[:3]]))
    out["embed_examples"] = {k: v.shape.as_list() for k, v in ex.items()}
    _bad_inputs(m, tf, imgs.numpy()[0], out)
    sd = m.signatures["serving_default"]
    out["formats"] = {k: sd(image_bytes=tf.constant([bytes.fromhex(v)]))["embedding"].shape.as_list()
                      for k, v in json.load(open(formats_path)).items()}
    print("RESULT" + json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The models the serving benchmark loads: a cached demo pipeline model, or a quick stand-in.

Split from bench/serving.py (the load generators and the report); see there for how each is used.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

from bench.common import CACHE_DIR, ROOT, build_in_place, ensure_sample_data

MODEL_NAME = "posters"
CACHE_WORKDIR = os.path.join(CACHE_DIR, "serving_wd")


# --- model + image --------------------------------------------------------------------------------------
def latest_version_dir(base: str) -> str | None:
    from poster_similarity.serving.server import list_versions

    vs = list_versions(base)
    return os.path.join(base, str(vs[-1])) if vs else None


def ensure_model(n_posters: int = 120) -> tuple[str, str]:
    """(base_path, model_name) of the cached demo model, building it once if missing."""
    base = os.path.join(CACHE_WORKDIR, "serving_model", MODEL_NAME)
    if latest_version_dir(base):
        return base, MODEL_NAME
    print(f"[serving] no cached model: building one from {n_posters} sample posters (once, ~2 min)", flush=True)
    data = ensure_sample_data(n_posters)
    overrides = ["phase1_epochs=1", "phase2_epochs=1", "beam_direct_running_mode=in_memory"]
    cmd = [sys.executable, "-m", "bench.pipeline_child", os.path.join(ROOT, "configs", "demo.yaml"),
           json.dumps(overrides), data, CACHE_WORKDIR]
    subprocess.run(cmd, cwd=ROOT, check=True)
    if not latest_version_dir(base):
        raise RuntimeError(f"the demo pipeline pushed no model to {base} (not blessed?)")
    return base, MODEL_NAME


STANDIN_BASE = os.path.join(CACHE_DIR, "standin_model", MODEL_NAME)


def ensure_standin_model(catalogue: int = 2000) -> tuple[str, str]:
    """Quick mode's model: the real export module (components.export.PosterServingModule + build_index,
    saved as the Pusher would) around an untrained small_cnn, with the Transform graph replaced by
    the same image ops it runs (components.preprocessing.encode_pixels) and a random catalogue. Same
    request path and ops as a trained demo model (JPEG decode, resize, CNN, ScaNN); ~20 s to build."""
    if latest_version_dir(STANDIN_BASE):
        return STANDIN_BASE, MODEL_NAME
    from tests.standin_export import export

    build_in_place(os.path.join(STANDIN_BASE, "1"), lambda tmp: export(tmp, "scann", catalogue))
    return STANDIN_BASE, MODEL_NAME


def find_jpeg(image: str | None) -> bytes:
    """--image, else the first `image` of a sample TFRecord, else one freshly generated sample poster."""
    if image:
        with open(image, "rb") as f:
            return f.read()
    import tensorflow as tf

    for path in sorted(glob.glob(os.path.join(CACHE_DIR, "**", "*.tfrecord*"), recursive=True)):
        comp = "GZIP" if path.endswith(".gz") else ""
        for rec in tf.data.TFRecordDataset(path, compression_type=comp).take(1).as_numpy_iterator():
            img = tf.train.Example.FromString(rec).features.feature["image"].bytes_list.value
            if img and img[0][:2] == b"\xff\xd8":
                return img[0]
    from poster_similarity.datatools import sample_data

    out = os.path.join(CACHE_DIR, "one_poster")
    recs = sample_data.generate(out, 1, seed=1)
    with open(recs[0]["path"], "rb") as f:
        return f.read()

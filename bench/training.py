"""Training/embedding throughput per backbone vs its FLOP-bound ceiling, and tf.data input throughput.

* peak FLOP/s: best of float32 GEMMs (numpy and tf.linalg.matmul, 2048²), all cores;
* model FLOPs: tf.compat.v1 profiler on the frozen inference graph of the served tower at batch 1
  (counts multiply and add separately, i.e. 2·MACs); a training step is counted as 3× forward;
* ceiling = peak FLOP/s ÷ FLOPs per image; measured images/s for the served tower (embedding, batch 32,
  `training=False`) and for a full training step (all layers trainable, sigmoid BCE on the genre logits
  + the embedding, Adam, batch 16);
* input: the Trainer's own pipeline (components.trainer.genre_dataset: GZIP TFRecords → parse_example →
  components.preprocessing.decode_pixels) over transformed-like examples generated here.

    python -m bench.training [--quick] [--backbones efficientnet_lite0,small_cnn]
"""
from __future__ import annotations

import os
import time

import numpy as np

from bench import flops
from bench.common import CACHE_DIR, base_parser, goal, write_result
from bench.flops import graph_flops

ALL_BACKBONES = ("efficientnet_lite0", "small_cnn", "mobilenet_v3_small", "efficientnet_v2_b0", "nasnet_mobile")
SERVED = "efficientnet_lite0"  # configs/demo.yaml's backbone: the tower this machine serves
NUM_GENRES = 20
EFFICIENCY_TARGET = 0.25
INPUT_RATIO_TARGET = 3.0


def peak_flops(quick: bool) -> dict:
    peak = flops.peak_matmul(1024 if quick else 2048, 3 if quick else 6)
    return {"numpy_gflops": round(peak["numpy_flop_per_s"] / 1e9, 1),
            "tf_gflops": round(peak["tf_flop_per_s"] / 1e9, 1),
            "peak_gflops": round(peak["flop_per_s"] / 1e9, 1), "matrix": peak["matrix"]}


def images_per_s(step, batch: int, n_steps: int, budget_s: float) -> tuple[float, int]:
    step()  # trace / warm up
    done, t0 = 0, time.perf_counter()
    while done < n_steps or (time.perf_counter() - t0 < budget_s and done < 10 * n_steps):
        step()
        done += 1
        if time.perf_counter() - t0 > budget_s and done >= 2:
            break
    return round(done * batch / (time.perf_counter() - t0), 2), done


def bench_backbone(name: str, quick: bool) -> dict:
    import tensorflow as tf

    from poster_similarity.components.model import build_model, embedding_model, get_backbone

    h, w = get_backbone(name).image_size
    tf.keras.backend.clear_session()
    t0 = time.perf_counter()
    model = build_model(name, "none", None, NUM_GENRES, embedding_dim=128)
    tower = embedding_model(model)
    build_s = time.perf_counter() - t0
    flops = graph_flops(tower, h, w, "uint8")
    rng = np.random.default_rng(0)
    eb, tb = (8, 4) if quick else (32, 16)
    x_emb = tf.constant(rng.integers(0, 256, (eb, h, w, 3), dtype=np.uint8))
    embed = tf.function(lambda x: tower(x, training=False))
    emb_ips, emb_steps = images_per_s(lambda: embed(x_emb).numpy(), eb, 2 if quick else 3, 2.0 if quick else 10.0)

    x_tr = tf.constant(rng.integers(0, 256, (tb, h, w, 3), dtype=np.uint8))
    y_tr = tf.constant((rng.random((tb, NUM_GENRES)) < 0.2).astype(np.float32))
    model.trainable = True
    opt = tf.keras.optimizers.Adam(1e-4)
    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = bce(y, out["logit"]) + 1e-3 * tf.reduce_mean(tf.square(out["embedding"]))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    tr_ips, tr_steps = images_per_s(lambda: train_step(x_tr, y_tr).numpy(), tb, 2 if quick else 3,
                                    2.0 if quick else 15.0)
    return {"backbone": name, "image_size": [h, w], "params": int(model.count_params()),
            "build_s": round(build_s, 2), "forward_gflops_per_image": round(flops / 1e9, 4),
            "embed_batch": eb, "embed_images_per_s": emb_ips, "embed_steps": emb_steps,
            "train_batch": tb, "train_images_per_s": tr_ips, "train_steps": tr_steps}


def write_examples(path: str, n: int, h: int, w: int) -> None:
    """Transformed-like examples: image_xf = serialize_tensor(uint8 [H,W,3]), multi-hot genres, ids."""
    import tensorflow as tf

    from poster_similarity.components.preprocessing import GENRES_XF, IMAGE_XF, MAX_GENRES, MOVIE_ID_KEY, PRIMARY_XF

    rng = np.random.default_rng(0)
    opts = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(path, opts) as wr:
        for i in range(n):
            # smooth-ish content (a gradient + noise) so GZIP does what it does on real posters
            base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
            img = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            genres = np.zeros(MAX_GENRES, np.float32)
            genres[rng.choice(NUM_GENRES, 2, replace=False)] = 1.0
            feat = {
                IMAGE_XF: tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[tf.io.serialize_tensor(tf.constant(img)).numpy()])),
                GENRES_XF: tf.train.Feature(float_list=tf.train.FloatList(value=genres.tolist())),
                PRIMARY_XF: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(np.argmax(genres))])),
                MOVIE_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"m{i}".encode()])),
            }
            wr.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())


def bench_input(h: int, w: int, batch: int, quick: bool) -> dict:
    """Examples/s of components.trainer.genre_dataset (the Trainer's phase-1 input) over generated records."""
    import tensorflow as tf

    from poster_similarity.components import dataset, trainer
    from poster_similarity.components.preprocessing import GENRES_XF, IMAGE_XF, MAX_GENRES, MOVIE_ID_KEY, PRIMARY_XF
    from poster_similarity.core.config import PipelineConfig

    n = 64 if quick else 512
    folder = os.path.join(CACHE_DIR, "training")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"xf_{h}x{w}_{n}.tfrecord.gz")
    if not os.path.exists(path):
        write_examples(path + ".tmp", n, h, w)
        os.replace(path + ".tmp", path)
    feats = object.__new__(dataset.Features)  # the real parser, without a Transform output on disk
    feats.cfg, feats.h, feats.w = PipelineConfig(), h, w
    feats.spec = {IMAGE_XF: tf.io.FixedLenFeature([], tf.string),
                  GENRES_XF: tf.io.FixedLenFeature([MAX_GENRES], tf.float32),
                  PRIMARY_XF: tf.io.FixedLenFeature([], tf.int64),
                  MOVIE_ID_KEY: tf.io.FixedLenFeature([], tf.string)}
    feats.genres = [f"g{i}" for i in range(NUM_GENRES)]
    feats.num_genres = NUM_GENRES
    ds = trainer.genre_dataset(feats, path, batch, shuffle=True, seed=0)
    it = iter(ds)
    next(it)
    steps = 10 if quick else 100
    t0 = time.perf_counter()
    for _ in range(steps):
        images, _labels = next(it)
    dt = time.perf_counter() - t0
    return {"image_size": [h, w], "batch": batch, "records": n, "file_bytes": os.path.getsize(path),
            "examples_per_s": round(steps * batch / dt, 1), "batches": steps,
            "pipeline": "components.trainer.genre_dataset (GZIP TFRecord → parse_example → decode_pixels)"}


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--backbones", default=None, help=f"comma-separated subset of {','.join(ALL_BACKBONES)}")
    args = p.parse_args(argv)
    started = time.time()
    names = args.backbones.split(",") if args.backbones else (["small_cnn"] if args.quick else list(ALL_BACKBONES))
    peak = peak_flops(args.quick)
    print(f"[training] peak {peak}", flush=True)
    runs = [peak]
    rows_out, inputs, failures = [], {}, {}
    for name in names:
        try:
            r = bench_backbone(name, args.quick)
        except Exception as e:  # one backbone failing must not lose the others' numbers
            print(f"[training] {name} failed: {type(e).__name__}: {e}", flush=True)
            failures[name] = f"{type(e).__name__}: {e}"
            continue
        rows_out.append(r)
    # peak again at the end: the machine is shared, the less disturbed measurement is the peak
    runs.append(peak_flops(args.quick))
    peak = max(runs, key=lambda d: d["peak_gflops"])
    peak["runs_gflops"] = [d["peak_gflops"] for d in runs]
    print(f"[training] peak {peak}", flush=True)
    for r in rows_out:
        name = r["backbone"]
        f = r["forward_gflops_per_image"] * 1e9
        r["embed_ceiling_images_per_s"] = round(peak["peak_gflops"] * 1e9 / f, 1)
        r["train_ceiling_images_per_s"] = round(peak["peak_gflops"] * 1e9 / (3 * f), 1)
        r["embed_fraction_of_ceiling"] = round(r["embed_images_per_s"] / r["embed_ceiling_images_per_s"], 3)
        r["train_fraction_of_ceiling"] = round(r["train_images_per_s"] / r["train_ceiling_images_per_s"], 3)
        size = tuple(r["image_size"])
        if size not in inputs:
            inputs[size] = bench_input(size[0], size[1], r["train_batch"], args.quick)
        r["input_examples_per_s"] = inputs[size]["examples_per_s"]
        r["input_over_train_ratio"] = round(r["input_examples_per_s"] / r["train_images_per_s"], 2)
        print(f"[training] {name}: {r['forward_gflops_per_image']:.3f} GFLOP/img; embed {r['embed_images_per_s']} "
              f"img/s (ceiling {r['embed_ceiling_images_per_s']}); train {r['train_images_per_s']} img/s "
              f"(ceiling {r['train_ceiling_images_per_s']}); input {r['input_examples_per_s']} ex/s", flush=True)

    goals = []
    served = next((r for r in rows_out if r["backbone"] == SERVED), None)
    if served:
        goals.append(goal(f"served tower ({SERVED}) embedding images/s ÷ FLOP-bound ceiling",
                          served["embed_fraction_of_ceiling"], f">= {EFFICIENCY_TARGET}",
                          served["embed_fraction_of_ceiling"] >= EFFICIENCY_TARGET))
    for r in rows_out:
        goals.append(goal(f"{r['backbone']}: tf.data input ÷ training-step images/s", r["input_over_train_ratio"],
                          f">= {INPUT_RATIO_TARGET}", r["input_over_train_ratio"] >= INPUT_RATIO_TARGET))
    headers = ["backbone", "input", "GFLOP/img", "embed img/s", "embed ceiling", "% of ceiling",
               "train img/s", "train ceiling", "% of ceiling", "tf.data ex/s", "input ÷ train"]
    rows = [[r["backbone"], f"{r['image_size'][0]}×{r['image_size'][1]}", r["forward_gflops_per_image"],
             r["embed_images_per_s"], r["embed_ceiling_images_per_s"], f"{100 * r['embed_fraction_of_ceiling']:.1f} %",
             r["train_images_per_s"], r["train_ceiling_images_per_s"], f"{100 * r['train_fraction_of_ceiling']:.1f} %",
             r["input_examples_per_s"], r["input_over_train_ratio"]] for r in rows_out]
    notes = [f"peak FP32 measured: numpy {peak['numpy_gflops']} GFLOP/s, TF {peak['tf_gflops']} GFLOP/s "
             f"({peak['matrix']}² GEMM); ceiling = peak ÷ FLOPs/image (training step = 3× forward)",
             "weights=none (random init); training step = full fine-tune of every layer"]
    notes += [f"{k} failed: {v}" for k, v in failures.items()]
    if any(r["embed_fraction_of_ceiling"] > 1 for r in rows_out):
        notes.append("a fraction above 100 % means the GEMM peak was measured while other work shared the "
                     "cores (peak runs: " + ", ".join(f"{g} GFLOP/s" for g in peak["runs_gflops"]) + ")")
    write_result("training", args.quick, started,
                 {"backbones": names, "served_backbone": SERVED, "num_genres": NUM_GENRES, "peak": peak,
                  "flops_method": "tf.compat.v1.profiler float_operation on the frozen served tower, batch 1",
                  "train_step_flops": "3 x forward"},
                 {"backbones": rows_out, "input": list(inputs.values()), "failures": failures}, goals, out_dir=args.out,
                 table={"headers": headers, "rows": rows}, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

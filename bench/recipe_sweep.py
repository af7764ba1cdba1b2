"""Recipe sweep: which unfreezing schedule and learning rates help a pretrained backbone on real posters?

Why a sweep outside the pipeline: each pipeline run re-imports, re-transforms and re-indexes the
posters, so comparing five schedules that way costs five full runs. Here the posters are decoded
once into memory (the pipeline's own `decode_and_pad`), and each recipe trains the pipeline's own
model code (`components.model`: the registry, `set_trainable_blocks` with BatchNorm frozen, the
embedding tower; `components.trainer.triplet_loss` for phase 2) and is scored with the pipeline's
metric (`retrieval_metrics.genre_precision`, macro genre P@10) next to the frozen backbone. The
chosen recipe is then confirmed end to end by `bench.real_posters`.

    python -m bench.recipe_sweep --train DIR --test DIR [--per-genre 200] \
        [--test-per-genre 150] [--recipes recipes.json]

A recipe: {"schedule": [[epoch, open_blocks], ...], "epochs": E1, "lr": 1e-3, "finetune_lr": 1e-4,
"phase2_epochs": E2, "phase2_lr": 3e-5}. Measurement only: results print and go to
`results/recipe_sweep.json`; nothing here is used by the pipeline.
"""
from __future__ import annotations

import json
import time

import numpy as np

from bench import real_posters_baselines as rb
from bench.common import base_parser, write_result

DEFAULT_RECIPES = [  # the three schedules behind configs/demo.yaml (docs/pipeline-and-model.md)
    {"schedule": [[0, 0]], "epochs": 6, "lr": 1e-3, "phase2_epochs": 0},
    {"schedule": [[0, 0], [3, 2]], "epochs": 6, "lr": 1e-3, "phase2_epochs": 4, "phase2_lr": 1e-4},
    {"schedule": [[0, 0], [3, 3]], "epochs": 8, "lr": 1e-3, "finetune_lr": 1e-4, "phase2_epochs": 4,
     "phase2_lr": 3e-5},
]


def load(root: str, per_genre: int, size: tuple[int, int], seed: int):
    """(uint8 images [N,H,W,3], multi-hot genres [N,G], genre names) of a subsample of a folder."""
    import tensorflow as tf

    from poster_similarity.components.preprocessing import decode_and_pad

    posters = rb.subsample(rb.read_folders(root), per_genre, seed)
    names = rb.genre_names(posters)
    images = np.stack([decode_and_pad(tf.constant(p.path.read_bytes()), *size).numpy() for p in posters])
    return images, rb.genre_matrix(posters, names).astype(np.float32), names


def pk_batches(labels: np.ndarray, p: int, k: int, seed: int):
    """Index batches of P labels × K posters each (every anchor has positives), forever."""
    rng = np.random.default_rng(seed)
    by_label = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    valid = [c for c, idx in by_label.items() if len(idx) >= k]
    while True:
        chosen = rng.choice(valid, min(p, len(valid)), replace=False)
        yield np.concatenate([rng.choice(by_label[c], k, replace=False) for c in chosen])


def run_recipe(recipe: dict, backbone: str, train, test, batch: int = 32, seed: int = 0) -> dict:
    """Train one recipe from the ImageNet weights; macro P@10 of the frozen backbone, after phase 1
    and after phase 2, with each phase's wall time."""
    import tensorflow as tf

    from poster_similarity.components import model as model_lib
    from poster_similarity.components.retrieval_metrics import genre_precision
    from poster_similarity.components.trainer import triplet_loss
    from poster_similarity.core.config import PipelineConfig

    (x_tr, y_tr, _), (x_te, y_te, _) = train, test
    tf.keras.utils.set_random_seed(seed)
    model = model_lib.build_model(backbone, "imagenet", x_tr.shape[1:3], y_tr.shape[1])
    score = lambda emb: genre_precision(emb, y_te, 10)["macro_precision@10"]  # noqa: E731
    pre = model_lib.get_backbone(backbone).preprocess
    out = {"recipe": recipe,
           "frozen": score(model.get_layer("backbone").predict(pre(x_te.astype(np.float32)), batch, verbose=0))}
    ds = tf.data.Dataset.from_tensor_slices((x_tr, y_tr)).shuffle(4096, seed=seed).repeat().batch(batch)
    ds = ds.map(lambda x, y: (x, {model_lib.LOGIT_LAYER: y}))
    steps, t0 = max(1, len(x_tr) // batch), time.perf_counter()
    sched = recipe["schedule"]
    for (start, n), end in zip(sched, [s for s, _ in sched[1:]] + [recipe["epochs"]], strict=True):
        model_lib.set_trainable_blocks(model, backbone, n)
        lr = recipe.get("finetune_lr", recipe["lr"]) if n else recipe["lr"]
        model.compile(tf.keras.optimizers.Adam(lr),
                      loss={model_lib.LOGIT_LAYER: tf.keras.losses.BinaryCrossentropy(from_logits=True)})
        model.fit(ds, epochs=end, initial_epoch=start, steps_per_epoch=steps, verbose=0)
    tower = model_lib.embedding_model(model)
    out |= {"phase1": score(tower.predict(x_te, batch, verbose=0)), "phase1_s": round(time.perf_counter() - t0, 1)}
    if recipe.get("phase2_epochs"):
        t0, labels = time.perf_counter(), y_tr.argmax(axis=1)  # label_strategy=primary
        batches = pk_batches(labels, 8, 4, seed)
        pk = tf.data.Dataset.from_generator(lambda: ((x_tr[i], labels[i]) for i in batches), output_signature=(
            tf.TensorSpec((None, *x_tr.shape[1:]), tf.uint8), tf.TensorSpec((None,), tf.int64)))
        tower.compile(tf.keras.optimizers.Adam(recipe["phase2_lr"]), loss=triplet_loss(PipelineConfig()))
        tower.fit(pk, epochs=recipe["phase2_epochs"], steps_per_epoch=steps, verbose=0)
        out |= {"phase2": score(tower.predict(x_te, batch, verbose=0)),
                "phase2_s": round(time.perf_counter() - t0, 1)}
    return out


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="DIR/<Genre>/*.jpg")
    p.add_argument("--test", required=True, help="DIR/<Genre>/*.jpg")
    p.add_argument("--per-genre", type=int, default=200, help="training posters per genre")
    p.add_argument("--test-per-genre", type=int, default=150, help="test posters per genre")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--size", default="224x160", help="HxW")
    p.add_argument("--recipes", help="JSON file with a list of recipes (default: the three documented)")
    args = p.parse_args(argv)
    started = time.time()
    size = tuple(int(v) for v in args.size.split("x"))
    recipes = DEFAULT_RECIPES
    if args.recipes:
        with open(args.recipes) as f:
            recipes = json.load(f)
    train = load(args.train, args.per_genre, size, seed=0)
    test = load(args.test, args.test_per_genre, size, seed=1)
    print(f"[recipe_sweep] {len(train[0])} training, {len(test[0])} test posters at {size}", flush=True)
    rows = []
    for recipe in recipes:
        r = run_recipe(recipe, args.backbone, train, test)
        print(f"[recipe_sweep] {json.dumps(r)}", flush=True)
        rows.append(r)
    table = {"headers": ["schedule", "epochs", "phase-1 lr (open)", "phase 2", "frozen", "after phase 1",
                         "after phase 2"],
             "rows": [[json.dumps(r["recipe"]["schedule"]), r["recipe"]["epochs"],
                       r["recipe"].get("finetune_lr", r["recipe"]["lr"]),
                       f'{r["recipe"].get("phase2_epochs", 0)} @ {r["recipe"].get("phase2_lr", "-")}',
                       round(r["frozen"], 3), round(r["phase1"], 3), round(r.get("phase2", float("nan")), 3)]
                      for r in rows]}
    write_result("recipe_sweep", False, started, vars(args), rows, [], out_dir=args.out, table=table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

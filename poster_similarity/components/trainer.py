"""Trainer `run_fn`: phase 1 genre warm-up with progressive unfreezing, phase 2 triplet metric learning.

Reads the Transform output (uint8 pixels + multi-hot genres), writes TensorBoard logs for both
phases to `fn_args.model_run_dir`, and exports the trained tower (`components.tower`);
`IndexBuilder` adds the catalogue's index.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_addons as tfa
import tensorflow_transform as tft

from poster_similarity.components import baselines, chief_writes, distributed, sharding
from poster_similarity.components import model as model_lib
from poster_similarity.components.dataset import AUTOTUNE, Features, embed_dataset, list_files, records
from poster_similarity.components.preemption import TrainingState, canonical_weight_order
from poster_similarity.components.preprocessing import GENRES_XF, IMAGE_XF
from poster_similarity.components.tf_config import cluster_from_env
from poster_similarity.core.config import PipelineConfig
from poster_similarity.core.logs import show_progress

log = logging.getLogger(__name__)


def count_labels(feats: Features, patterns) -> dict[int, int]:
    counts: dict[int, int] = {}
    for labels in records(patterns).batch(512).map(feats.label_spec_only):
        for v in labels.numpy().tolist():
            counts[v] = counts.get(v, 0) + 1
    return counts


def augment(images: tf.Tensor, seed: int | None = None) -> tf.Tensor:
    """Augmentations that keep posters posters: small random crops (90–100 %, resized back) and
    colour jitter (brightness, contrast). No flips: titles would read backwards."""
    b = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    scale = tf.random.uniform([b, 1], 0.9, 1.0, seed=seed)
    y0 = tf.random.uniform([b, 1], 0.0, 1.0, seed=seed) * (1.0 - scale)
    x0 = tf.random.uniform([b, 1], 0.0, 1.0, seed=seed) * (1.0 - scale)
    boxes = tf.concat([y0, x0, y0 + scale, x0 + scale], axis=1)
    x = tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes, tf.range(b), [h, w])
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.uniform([b, 1, 1, 1], 0.85, 1.15, seed=seed)
    brightness = tf.random.uniform([b, 1, 1, 1], -20.0, 20.0, seed=seed)
    x = (x - mean) * contrast + mean + brightness
    return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)


def genre_dataset(feats: Features, patterns, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    ds = records(patterns)
    if shuffle:
        ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size).map(feats.parse, num_parallel_calls=AUTOTUNE)
    if shuffle and feats.cfg.augment:
        ds = ds.map(lambda f: {**f, IMAGE_XF: augment(f[IMAGE_XF])}, num_parallel_calls=AUTOTUNE)
    return ds.map(lambda f: (f[IMAGE_XF], {model_lib.LOGIT_LAYER: f[GENRES_XF]})).prefetch(AUTOTUNE)


def pk_dataset(feats: Features, patterns, p: int, k: int, valid_labels: list[int], seed: int):
    """P×K batches: windows of K same-label posters, P windows per batch, so every anchor has positives."""
    valid = tf.constant(sorted(valid_labels), tf.int64)

    def keyed(serialized):
        label = feats.label_spec_only(tf.expand_dims(serialized, 0))[0]
        return serialized, label

    ds = records(patterns).shuffle(4096, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(keyed, num_parallel_calls=AUTOTUNE)
    ds = ds.filter(lambda s, lab: tf.reduce_any(tf.equal(valid, lab)))
    ds = ds.group_by_window(
        key_func=lambda s, lab: lab, reduce_func=lambda _, w: w.batch(k, drop_remainder=True), window_size=k
    )
    ds = ds.shuffle(4 * p, seed=seed).batch(p, drop_remainder=True)
    ds = ds.map(lambda s, lab: (tf.reshape(s, [-1]), tf.reshape(lab, [-1])))
    ds = ds.map(lambda s, lab: (feats.parse(s)[IMAGE_XF], lab), num_parallel_calls=AUTOTUNE)
    if feats.cfg.augment:
        ds = ds.map(lambda x, lab: (augment(x), lab), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def retrieval_report(emb: np.ndarray, genres: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Leave-one-out recall@k (a neighbour shares a genre) + embedding spread (collapse detector)."""
    from poster_similarity.components.retrieval_metrics import genre_precision, retrieval_scores

    out = retrieval_scores(emb, genres, ks) | genre_precision(emb, genres, 10)
    out["embedding_std"] = float(emb.std(axis=0).mean())
    return out


def eval_baselines(model: tf.keras.Model, cfg: PipelineConfig, feats: Features, eval_files) -> dict:
    """The eval split scored by the untrained backbone, a colour histogram and random (`baselines`)."""
    preprocess = model_lib.get_backbone(cfg.backbone).preprocess
    backbone = model.get_layer("backbone")
    batches = ((b[IMAGE_XF], b[GENRES_XF]) for b in records(eval_files).batch(64).map(feats.parse))
    t0 = time.perf_counter()
    out = baselines.baseline_reports(
        lambda images: backbone(preprocess(tf.cast(images, tf.float32)), training=False), batches, cfg.seed)
    log.info("baselines on the eval split (%.1f s): %s", time.perf_counter() - t0,
             {k: round(v.get("macro_precision@10", 0.0), 3) for k, v in out.items()})
    return out


def triplet_loss(cfg: PipelineConfig) -> tf.keras.losses.Loss:
    return tfa.losses.TripletSemiHardLoss(margin=cfg.triplet_margin, distance_metric="angular")


def phase1_lr(cfg: PipelineConfig, n_blocks: int) -> float:
    """The head alone trains at `phase1_lr`; with backbone blocks open, at `phase1_finetune_lr`."""
    if n_blocks != 0 and cfg.phase1_finetune_lr is not None:
        return cfg.phase1_finetune_lr
    return cfg.phase1_lr


def _schedule_stages(cfg: PipelineConfig) -> list[tuple[int, int, int]]:
    """[(start_epoch, end_epoch, n_blocks)] from `unfreeze_schedule`, clipped to phase1_epochs."""
    sched = sorted(cfg.unfreeze_schedule or [[0, -1]])
    if sched[0][0] != 0:
        sched = [[0, 0]] + sched
    stages = []
    for i, (start, n) in enumerate(sched):
        end = sched[i + 1][0] if i + 1 < len(sched) else cfg.phase1_epochs
        end = min(end, cfg.phase1_epochs)
        if end > start:
            stages.append((start, end, n))
    return stages


def distribution_strategy(startup_timeout_s: float = 300.0) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster (Kubeflow TFJob / Vertex AI
    Training set it), else the default single-device strategy (`components.distributed`)."""
    return distributed.make_strategy(startup_timeout_s)


class Progress(tf.keras.callbacks.Callback):
    """One readable line per epoch with the phase, metrics, training images/s and an ETA.

    Images/s counts the training steps only (validation excluded), `images_per_step` per step on
    this replica; `rates` keeps one figure per epoch for the training report.
    """

    def __init__(self, phase: str, total_epochs: int, images_per_step: int = 0):
        super().__init__()
        self.phase, self.total, self.durations, self.t_epoch = phase, total_epochs, [], 0.0
        self.images_per_step, self.steps, self.t_train, self.rates = images_per_step, 0, 0.0, []

    def on_epoch_begin(self, epoch, logs=None):
        self.t_epoch = time.perf_counter()
        self.steps, self.t_train = 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_test_begin(self, logs=None):
        self.t_train = time.perf_counter() - self.t_epoch

    def on_epoch_end(self, epoch, logs=None):
        self.durations.append(time.perf_counter() - self.t_epoch)
        train_s = self.t_train or self.durations[-1]
        rate = self.steps * self.images_per_step / train_s if train_s > 0 else 0.0
        self.rates.append(rate)
        eta = float(np.mean(self.durations)) * (self.total - epoch - 1)
        metrics = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        log.info("%s epoch %d/%d: %s (%.1f s, %.0f img/s, ETA %.0f s)", self.phase, epoch + 1, self.total,
                 metrics, self.durations[-1], rate, eta)


def train_phase1(cfg: PipelineConfig, strategy: tf.distribute.Strategy, model: tf.keras.Model,
                 state: TrainingState, history: dict, train: tuple, evaluation: tuple, log_dir: str) -> None:
    """Phase 1, genre classification, one `fit` per unfreeze stage (`_schedule_stages`): each stage
    recompiles with its learning rate and is a segment of its own, skipped when a restarted job
    finished it already.

    Args:
        cfg, strategy, model, state: the config, the strategy, the full model, the training state.
        history: extended in place with the stages' metrics.
        train, evaluation: (distributed dataset, steps per epoch) of each split.
        log_dir: TensorBoard logs go to `<log_dir>/phase1_genres`.
    """
    (train_ds, steps), (eval_ds, eval_steps) = train, evaluation
    tb1 = tf.keras.callbacks.TensorBoard(os.path.join(log_dir, "phase1_genres"), update_freq="epoch")
    progress1 = Progress("phase 1 (genres)", cfg.phase1_epochs, cfg.batch_size)
    for start, end, n_blocks in _schedule_stages(cfg):
        opened = model_lib.set_trainable_blocks(model, cfg.backbone, n_blocks)
        segment = f"phase1_epoch{start}"
        if segment in state.done:
            continue
        log.info("phase 1 epochs %d-%d: top %d blocks open (%d layers), learning rate %g", start, end, n_blocks,
                 opened, phase1_lr(cfg, n_blocks))
        with strategy.scope():
            model.compile(
                optimizer=tf.keras.optimizers.Adam(phase1_lr(cfg, n_blocks)),
                loss={model_lib.LOGIT_LAYER: tf.keras.losses.BinaryCrossentropy(from_logits=True)},
                metrics={model_lib.LOGIT_LAYER: [tf.keras.metrics.AUC(multi_label=True, from_logits=True,
                                                                      name="auc")]},
            )
        h = model.fit(train_ds, validation_data=eval_ds, epochs=end, initial_epoch=start,
                      steps_per_epoch=steps, validation_steps=eval_steps,
                      callbacks=state.callbacks(segment, model) + [tb1, progress1], verbose=0)
        for key, vals in h.history.items():
            history.setdefault(f"phase1/{key}", []).extend(float(v) for v in vals)
        history.setdefault("phase1/images_per_s", []).extend(progress1.rates[-(end - start):])
        history.setdefault("phase1/open_blocks", []).extend([n_blocks] * (end - start))
        state.finish(segment, model, history)


def train(cfg: PipelineConfig, tft_output, train_files, eval_files, log_dir: str):
    """Both phases; returns (full model, embedding tower, Features, history dict).

    Per-replica batches are `batch_size` (phase 1) and P×K (phase 2); the global batch is that ×
    replicas. Each epoch is checkpointed under `log_dir/backup/` and a restarted job resumes there.
    """
    tf.keras.utils.set_random_seed(cfg.seed)
    feats = Features.from_transform(cfg, tft_output)
    strategy = distribution_strategy(cfg.distributed.startup_timeout_s)
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        model = model_lib.build_model(
            cfg.backbone, cfg.weights, (feats.h, feats.w), feats.num_genres, cfg.embedding_dim, cfg.dropout
        )
    state = TrainingState(log_dir)
    history: dict[str, list] = dict(state.history)
    if eval_files is not None and "baselines" not in history:  # before training: the backbone as it came
        history["baselines"] = eval_baselines(model, cfg, feats, eval_files)
    state.restore_weights(model)
    train_list, eval_list = list_files(train_files), list_files(eval_files)
    counts = count_labels(feats, train_files)  # one pass over the labels: epoch length + P×K classes
    n_train = sum(counts.values())
    steps = max(1, math.ceil(n_train / (cfg.batch_size * replicas)))
    eval_steps = max(1, math.ceil(sum(count_labels(feats, eval_files).values()) / (cfg.batch_size * replicas)))
    train_ds = sharding.distributed_dataset(
        strategy, lambda f: genre_dataset(feats, f, cfg.batch_size, True, cfg.seed), train_list)
    eval_ds = sharding.distributed_dataset(
        strategy, lambda f: genre_dataset(feats, f, cfg.batch_size, False, cfg.seed), eval_list, repeat=True)
    history["input_sharding"] = {"workers": cluster_from_env().num_workers, "replicas": replicas,
                                 "train": sharding.shard_policy(len(train_list), replicas),
                                 "eval": sharding.shard_policy(len(eval_list), replicas)}
    log.info("%d replica(s); input sharding %s; global batch %d", replicas, history["input_sharding"],
             cfg.batch_size * replicas)

    train_phase1(cfg, strategy, model, state, history, (train_ds, steps), (eval_ds, eval_steps), log_dir)
    with strategy.scope():
        tower = model_lib.embedding_model(model)
    if eval_files is not None and "phase1_eval" not in history:  # phase-1 quality, to compare honestly
        _, emb, gen = embed_dataset(tower, feats, eval_files)
        history["phase1_eval"] = retrieval_report(emb, gen)
    valid = [lab for lab, n in counts.items() if n >= 2 and lab >= 0]
    if "phase2" in state.done:  # a restart after training finished (e.g. during the export)
        log.info("phase 2 already finished: its weights were restored")
    elif cfg.phase2_epochs > 0 and len(valid) >= 2:
        p = min(cfg.batch_p, len(valid))
        pk = sharding.distributed_dataset(
            strategy, lambda f: pk_dataset(feats, f, p, cfg.batch_k, valid, cfg.seed), train_list)
        steps2 = cfg.phase2_steps_per_epoch or max(1, math.ceil(n_train / (p * cfg.batch_k * replicas)))
        with strategy.scope():
            tower.compile(optimizer=tf.keras.optimizers.Adam(cfg.phase2_lr), loss=triplet_loss(cfg))
        tb2 = tf.keras.callbacks.TensorBoard(os.path.join(log_dir, "phase2_triplet"), update_freq="epoch")
        log.info("phase 2: %d epochs × %d steps of P×K = %d×%d per replica", cfg.phase2_epochs, steps2, p,
                 cfg.batch_k)
        progress2 = Progress("phase 2 (triplets)", cfg.phase2_epochs, p * cfg.batch_k)
        h = tower.fit(pk, epochs=cfg.phase2_epochs, steps_per_epoch=steps2,
                      callbacks=state.callbacks("phase2", tower) + [tb2, progress2], verbose=0)
        history["phase2/loss"] = [float(v) for v in h.history.get("loss", [])]
        history["phase2/epochs_run"] = [int(e) for e in h.epoch]  # fewer after a resume
        history["phase2/images_per_s"] = list(progress2.rates)
        state.finish("phase2", model, history)  # the full model: the tower shares its layers
    else:
        log.info("phase 2 skipped: %d labels with ≥2 examples, epochs=%d", len(valid), cfg.phase2_epochs)
    return model, tower, feats, history


def local_copy(model: tf.keras.Model, cfg: PipelineConfig, feats: Features) -> tuple[tf.keras.Model, tf.keras.Model]:
    """The trained model rebuilt outside the distribution strategy, with its weights.

    Why: under MultiWorkerMirroredStrategy BatchNorm's moving statistics are sync-on-read
    distributed variables, and a SavedModel signature that reads them cannot be saved. Every
    worker calls this (reading those variables is an all-reduce).
    """
    plain = model_lib.build_model(cfg.backbone, "none", (feats.h, feats.w), feats.num_genres, cfg.embedding_dim,
                                  cfg.dropout)
    with canonical_weight_order(model):  # both lists in the all-trainable order
        weights = model.get_weights()
    with canonical_weight_order(plain):
        plain.set_weights(weights)
    return plain, model_lib.embedding_model(plain)


def scrambled_tower(tower: tf.keras.Model) -> tf.keras.Model:
    """Test-only (config `scramble_embeddings`): a deliberately bad model whose embedding is random
    noise seeded by the image's pixels — deterministic per poster, meaningless across posters —
    so tests can prove the Evaluator's gate blocks a worse model."""

    def noise(images):
        seeds = tf.strings.to_hash_bucket_fast(
            tf.map_fn(tf.io.serialize_tensor, images, fn_output_signature=tf.string), 2**31 - 1)
        vecs = tf.map_fn(lambda s: tf.random.stateless_normal([tower.output.shape[-1]], tf.stack([s, s])),
                         seeds, fn_output_signature=tf.float32)
        return tf.math.l2_normalize(vecs, axis=-1)

    out = tf.keras.layers.Lambda(noise, name="scrambled_embedding")(tower.input)
    return tf.keras.Model(tower.input, out, name="scrambled_tower")


def run_fn(fn_args):
    """TFX Trainer entry point (GenericExecutor), on one machine or on every replica of a cluster.

    Every worker trains; every worker runs the export (collectives may read variables), but only
    the chief writes to the real model, projector and report paths: the others write to temp
    folders, delete them, then wait for the chief's export so TFX's check passes on every replica.

    Args:
        fn_args: TFX's `FnArgs`: `custom_config["config"]` (the config subset), `transform_output`,
            `train_files` / `eval_files` (transformed examples), `model_run_dir` (TensorBoard logs,
            projector, checkpoints) and `serving_model_dir` (the tower SavedModel IndexBuilder wraps).
    """
    from poster_similarity.components import tower as tower_export

    if cluster_from_env().num_workers > 1:
        show_progress()  # a replica runs under TFX's run_executor, which shows no INFO lines of ours
    cfg = PipelineConfig.from_dict(fn_args.custom_config["config"])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    log_dir = fn_args.model_run_dir
    model, tower, feats, history = train(cfg, tft_output, fn_args.train_files, fn_args.eval_files, log_dir)
    if cluster_from_env().num_workers > 1:
        model, tower = local_copy(model, cfg, feats)
    if cfg.scramble_embeddings:
        tower = scrambled_tower(tower)

    cluster = cluster_from_env()
    report_dir = chief_writes.write_dir(os.path.join(log_dir, "retrieval"), cluster)
    projector_dir = chief_writes.write_dir(os.path.join(log_dir, "projector"), cluster)
    export_dir = chief_writes.write_dir(fn_args.serving_model_dir, cluster)
    _, eval_emb, eval_genres = embed_dataset(tower, feats, fn_args.eval_files)
    report = retrieval_report(eval_emb, eval_genres)
    log.info("eval retrieval: %s", json.dumps(report))
    helped = {baselines.MODEL: report, "baselines": history.get("baselines", {}),
              "lift_macro_precision@10": baselines.lift(report, history.get("baselines", {}), "macro_precision@10")}
    for line in baselines.summary_lines(helped):
        log.info("%s", line)
    writer = tf.summary.create_file_writer(report_dir)
    with writer.as_default():
        for key, val in report.items():
            tf.summary.scalar(key, val, step=0)
    writer.close()
    tower_export.write_projector(tower, feats, fn_args.eval_files, projector_dir)
    tower_export.export_tower(model, tower, feats, tft_output, export_dir,
                              report={"training_history": history, "eval_retrieval": report,
                                      "did_training_help": helped})
    if cluster.is_chief:
        return
    for path in (os.path.join(log_dir, "retrieval"), os.path.join(log_dir, "projector"), fn_args.serving_model_dir):
        chief_writes.remove_temp(path, cluster)
    chief_export = os.path.join(fn_args.serving_model_dir, "saved_model.pb")
    if not chief_writes.wait_for(chief_export, cfg.distributed.export_wait_s):
        log.warning("the chief's export %s did not appear within %.0f s", chief_export,
                    cfg.distributed.export_wait_s)

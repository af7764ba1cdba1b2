"""Trainer pieces: unfreeze schedule, P×K batches, the triplet loss, augmentation."""
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from poster_similarity.components import trainer
from poster_similarity.components.preprocessing import GENRES_XF, PRIMARY_XF
from poster_similarity.core.config import load_config
from tests.transformed_data import H, W, transformed_features, write_transformed


def test_pk_batches_hold_k_of_each_label(tmp_path):
    labels = [0] * 9 + [1] * 7 + [2] * 5 + [3] * 1  # label 3 has no positive: excluded
    write_transformed(tmp_path / "t.gz", labels)
    cfg = load_config(None, [f"image_size=[{H}, {W}]", "augment=false"])
    feats = transformed_features(cfg)
    ds = trainer.pk_dataset(feats, [str(tmp_path / "t.gz")], p=3, k=2, valid_labels=[0, 1, 2], seed=0)
    for images, labs in ds.take(20):
        assert images.shape == (6, H, W, 3)
        values, counts = np.unique(labs.numpy(), return_counts=True)
        assert 3 not in values and (counts >= 2).all() and counts.sum() == 6


def test_schedule_stages_follow_the_config():
    cfg = load_config(None, ["phase1_epochs=5", "unfreeze_schedule=[[1, 2], [3, -1]]"])
    assert trainer._schedule_stages(cfg) == [(0, 1, 0), (1, 3, 2), (3, 5, -1)]
    cfg = load_config(None, ["phase1_epochs=2", "unfreeze_schedule=[[0, 1], [4, -1]]"])
    assert trainer._schedule_stages(cfg) == [(0, 2, 1)]


def test_triplet_loss_is_tfa_angular_semi_hard_with_configured_margin():
    import tensorflow_addons as tfa

    loss = trainer.triplet_loss(load_config(None, ["triplet_margin=0.3"]))
    assert isinstance(loss, tfa.losses.TripletSemiHardLoss)
    assert loss.get_config()["margin"] == 0.3 and loss.get_config()["distance_metric"] == "angular"


def test_combo_labels_encode_the_exact_genre_set():
    cfg = load_config(None, ["label_strategy=combo"])
    feats = transformed_features(cfg)
    f = {GENRES_XF: tf.constant([[1, 0, 1, 0], [0, 0, 1, 1], [1, 0, 1, 0]], tf.float32),
         PRIMARY_XF: tf.constant([0, 2, 2], tf.int64)}
    labels = feats.triplet_label(f).numpy()
    assert labels[0] == labels[2] != labels[1]
    assert transformed_features(load_config(None, [])).triplet_label(f).numpy().tolist() == [0, 2, 2]


def test_augmentation_keeps_shape_and_never_flips():
    img = np.zeros((2, H, W, 3), np.uint8)
    img[:, :, : W // 2] = 200  # bright left half
    out = trainer.augment(tf.constant(img), seed=1).numpy()
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[:, :, :4].mean() > out[:, :, -4:].mean() + 100)  # left stays left


def test_local_copy_has_the_trained_weights_whatever_blocks_are_open():
    """Multi-worker exports go through a copy built outside the strategy: same outputs, with the
    trained model's top blocks open and BatchNorm frozen (weights listed trainable-first)."""
    import numpy as np

    from poster_similarity.components import model as model_lib
    from poster_similarity.components.trainer import local_copy
    from poster_similarity.core.config import PipelineConfig

    cfg = PipelineConfig(backbone="efficientnet_lite0", weights="none")
    feats = SimpleNamespace(h=64, w=48, num_genres=3)
    trained = model_lib.build_model(cfg.backbone, "none", (64, 48), 3, cfg.embedding_dim, cfg.dropout)
    model_lib.set_trainable_blocks(trained, cfg.backbone, 3)
    rng = np.random.default_rng(1)
    trained.set_weights([rng.uniform(0.05, 0.15, w.shape).astype(np.float32) for w in trained.weights])  # var > 0
    plain, tower = local_copy(trained, cfg, feats)
    images = rng.integers(0, 255, (2, 64, 48, 3)).astype(np.uint8)
    want = trained(images, training=False)
    got = plain(images, training=False)
    assert np.isfinite(want["embedding"]).all()
    np.testing.assert_allclose(got["embedding"], want["embedding"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(tower(images).numpy(), axis=1), 1.0, rtol=1e-5)

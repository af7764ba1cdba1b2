"""The real-poster benchmark (bench/real_posters*.py): its scores are the product's
(`retrieval_metrics`, `components.baselines`) on hand-built examples, the baseline embeddings on
PIL-made images, the folder reader, the report's efficiency names. No trained model."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from bench import real_posters_baselines as rb
from bench.real_posters import TRAIN_FLOPS_FACTOR, efficiency, goals_for, notes_for
from bench.real_posters_models import embed_files, histogram_embedder, throughput_entries

# Four posters on the unit circle at 0°, 10°, 30°, 100°; genres (columns A, B):
# P0 {A}, P1 {A}, P2 {B}, P3 {A, B}.
ANGLES = [0, 10, 30, 100]
GENRES = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], bool)


def _unit(degrees):
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- scores -------------------------------------------------------------------------------------------
def test_genre_scores_macro_micro_precision_and_mapr_by_hand():
    """Top 2 by angle: P0 [1, 2], P1 [0, 2], P2 [1, 0], P3 [2, 1].
    macro genre P@2: A (P0 1/2, P1 1/2, P3 1/2) = 1/2; B (P2 0, P3 1/2) = 1/4 → 3/8.
    micro genre P@2, over the (query, genre) pairs (P0,A) 1/2, (P1,A) 1/2, (P2,B) 0, (P3,A) 1/2,
    (P3,B) 1/2 → 2/5. precision@2 (share of the top 2 sharing >= 1 genre): P0 1/2, P1 1/2, P2 0,
    P3 1 → 1/2: "has the query's genre" and "shares a genre" differ on multi-genre posters.
    MAP@R (relevant = shares a genre): P0 rel {P1, P3}, R=2, top 2 [hit, miss] → 1/2; P1 the same
    → 1/2; P2 rel {P3}, R=1, top 1 = P1 miss → 0; P3 rel {P0, P1, P2}, R=3, all hits → 1 → 1/2."""
    s = rb.genre_scores(_unit(ANGLES), GENRES, ["A", "B"], k=2, min_posters=1)
    assert s["macro_precision@2"] == pytest.approx(3 / 8)
    assert s["micro_precision@2"] == pytest.approx(2 / 5)
    assert s["precision@2"] == pytest.approx(1 / 2)
    assert s["map@r"] == pytest.approx(1 / 2)
    assert s["per_genre_precision@2"] == pytest.approx({"A": 1 / 2, "B": 1 / 4})
    # cosine ignores length
    scaled = _unit(ANGLES) * np.array([[3.0], [0.5], [7.0], [1.0]], np.float32)
    again = rb.genre_scores(scaled, GENRES, ["A", "B"], k=2, min_posters=1)
    assert again.pop("per_genre_precision@2") == pytest.approx(s["per_genre_precision@2"])
    assert again == pytest.approx({k: v for k, v in s.items() if k != "per_genre_precision@2"})
    # min_posters=3 leaves B (2 posters) out of the macro average and the per-genre table
    s3 = rb.genre_scores(_unit(ANGLES), GENRES, ["A", "B"], k=2, min_posters=3)
    assert s3["macro_precision@2"] == pytest.approx(1 / 2) and set(s3["per_genre_precision@2"]) == {"A"}
    assert s3["micro_precision@2"] == s["micro_precision@2"]  # micro counts every pair


def test_bench_scores_are_the_trainer_reports_scores():
    """The benchmark and the pipeline's "did training help?" rows (`baselines.scores`) give the same
    numbers for the same embedding: one implementation."""
    from poster_similarity.components import baselines

    rng = np.random.default_rng(3)
    genres = rng.random((60, 3)) > 0.5  # multi-label, ~30 posters per genre
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    bench, trainer = rb.genre_scores(emb, genres), baselines.scores(emb, genres.astype(np.float32))
    for key in ("macro_precision@10", "micro_precision@10", "precision@10", "map@r"):
        assert bench[key] == trainer[key], key
    assert np.mean(list(bench["per_genre_precision@10"].values())) == pytest.approx(bench["macro_precision@10"])


def test_perfect_embedding_scores_one():
    genres = np.repeat(np.eye(3, dtype=bool), 12, axis=0)  # 3 genres × 12 posters
    emb = genres.astype(np.float32) + 0.01 * np.random.default_rng(0).normal(size=genres.shape)
    s = rb.genre_scores(emb, genres)
    assert s["macro_precision@10"] == pytest.approx(1.0) and s["micro_precision@10"] == pytest.approx(1.0)
    assert s["precision@10"] == pytest.approx(1.0) and s["map@r"] == pytest.approx(1.0)


# --- baselines ----------------------------------------------------------------------------------------
def _solid(rgb, size=(20, 30)):
    return Image.new("RGB", size, rgb)


def _png(img, path):
    img.save(path)
    return path


def _bin(h, s, v, bins=(8, 4, 4)):
    """The flat index of HSV (each in [0, 1]) in an 8×4×4 histogram, hue major."""
    return int(np.ravel_multi_index([min(int(c * n), n - 1) for c, n in zip((h, s, v), bins, strict=True)], bins))


def test_histogram_is_the_products_on_the_pipelines_pixels(tmp_path):
    """Pure red is HSV (0, 1, 1), pure blue (2/3, 1, 1): one bin each, in the product's binning. A
    20×20 image at the pipeline's 40×20 (H×W) is resized keeping its aspect and padded: half its
    pixels are then black padding, HSV (0, 0, 0), as in the Trainer's histogram of the eval split."""
    red = _png(_solid((255, 0, 0), (20, 40)), tmp_path / "red.png")  # PIL size = (W, H): already 40×20
    blue = _png(_solid((0, 0, 255), (20, 40)), tmp_path / "blue.png")
    square = _png(_solid((255, 0, 0), (20, 20)), tmp_path / "square.png")
    hist, failed = embed_files(histogram_embedder((40, 20)), [red, blue, square], batch=2)
    assert failed == 0 and hist.shape == (3, 128) and hist.sum(axis=1) == pytest.approx([1, 1, 1])
    assert hist[0, _bin(0, 1, 1)] == pytest.approx(1.0) and hist[1, _bin(2 / 3, 1, 1)] == pytest.approx(1.0)
    assert _cos(hist[0], hist[1]) == 0.0
    assert sorted(np.flatnonzero(hist[2])) == sorted([_bin(0, 1, 1), _bin(0, 0, 0)])
    assert hist[2, _bin(0, 1, 1)] == pytest.approx(0.5, abs=0.03)  # the resize may blur one row


def test_small_pixels_and_centred_pixel_embeddings():
    px = rb.small_pixels(_solid((10, 20, 30), (50, 70)))
    assert px.shape == (32 * 32 * 3,) and px.reshape(32, 32, 3)[5, 7].tolist() == [10, 20, 30]
    a, b = rb.small_pixels(_solid((200, 0, 0))), rb.small_pixels(_solid((0, 0, 200)))
    # two images: each minus their mean is ±(a − b)/2, so they point opposite ways
    emb = rb.pixel_embeddings(np.stack([a, b]))
    assert np.linalg.norm(emb, axis=1) == pytest.approx([1.0, 1.0])
    assert _cos(emb[0], emb[1]) == pytest.approx(-1.0)
    # a uniform shift of every image (brightness) is removed by the centring
    assert rb.pixel_embeddings(np.stack([a, b]) + 17) == pytest.approx(emb, abs=1e-6)


def test_identical_images_have_cosine_one_in_every_baseline(tmp_path):
    paths = []
    for name, rgb in (("a", (200, 30, 30)), ("b", (200, 30, 30)), ("c", (20, 160, 40))):
        img = _solid(rgb, (40, 60))
        img.paste((250, 250, 0), (5, 5, 15, 20))
        paths.append(_png(img, tmp_path / f"{name}.png"))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    ok, pix = rb.load_images([*paths, tmp_path / "bad.jpg"])
    assert ok.tolist() == [True, True, True, False] and not pix[3].any()
    emb = rb.pixel_embeddings(pix[:3])
    assert _cos(emb[0], emb[1]) == pytest.approx(1.0) and _cos(emb[0], emb[2]) < 0.5
    hist, failed = embed_files(histogram_embedder((60, 40)), [*paths, tmp_path / "bad.jpg"], batch=4)
    assert failed == 1 and not hist[3].any()  # the batch is retried image by image; the bad one is zeros
    assert _cos(hist[0], hist[1]) == pytest.approx(1.0) and _cos(hist[0], hist[2]) < 0.5


# --- folders ------------------------------------------------------------------------------------------
def _tree(root, files):
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".jpg", ".png"):
            _solid((len(rel) * 7 % 256, 0, 0), (8, 12)).save(path)
        else:
            path.write_text("x")
    return root


def test_read_folders_merges_genres_by_file_stem_and_skips_hidden(tmp_path):
    root = _tree(tmp_path / "posters", ["Action/m1.jpg", "Action/m2.jpg", "Comedy/m1.jpg", "Comedy/m3.png",
                                        "Comedy/.DS_Store", "Comedy/notes.txt", "Comedy/sub/m4.jpg",
                                        ".hidden/m9.jpg", "loose.jpg"])
    posters = rb.read_folders(root)
    assert [(p.movie_id, p.genres) for p in posters] == [
        ("m1", ("Action", "Comedy")), ("m2", ("Action",)), ("m3", ("Comedy",)), ("m4", ("Comedy",))]
    assert posters[0].path == root / "Action" / "m1.jpg"  # the first file in sorted order
    assert rb.genre_matrix(posters).tolist() == [[True, True], [True, False], [False, True], [False, True]]
    d = rb.describe(posters)
    assert d == {"posters": 4, "genres": 2, "per_genre": {"Action": 2, "Comedy": 3}, "multi_genre_posters": 1}
    with pytest.raises(FileNotFoundError):
        rb.read_folders(tmp_path / "missing")


def test_subsample_is_deterministic_and_per_genre(tmp_path):
    files = [f"{g}/{g[0]}{i:02d}.jpg" for g in ("Action", "Comedy", "Drama") for i in range(20)]
    posters = rb.read_folders(_tree(tmp_path / "p", files + ["Drama/A00.jpg"]))  # A00 is Action + Drama
    pick = rb.subsample(posters, 5, seed=0)
    assert pick == rb.subsample(posters, 5, seed=0)
    assert pick != rb.subsample(posters, 5, seed=1)
    counts = rb.describe(pick)["per_genre"]
    # 5 picked per genre; A00, if picked through one genre, keeps its other genre too
    assert all(5 <= c <= 6 for c in counts.values()) and 14 <= len(pick) <= 15
    # one genre's pick does not depend on the others: drop Comedy, Action's pick stays
    no_comedy = [p for p in posters if "Comedy" not in p.genres]
    action = {p.movie_id for p in pick if p.genres == ("Action",)}
    assert action == {p.movie_id for p in rb.subsample(no_comedy, 5, seed=0) if p.genres == ("Action",)}
    assert rb.subsample(posters, None) == posters


def test_link_tree_and_csv_describe_the_same_posters(tmp_path):
    root = _tree(tmp_path / "p", ["Action/m1.jpg", "Comedy/m1.jpg", "Comedy/m2.jpg", "Drama/m3.jpg"])
    pick = rb.subsample(rb.read_folders(root), 1, seed=0)
    linked = rb.read_folders(rb.link_tree(pick, tmp_path / "w" / "subset"))
    assert [(p.movie_id, p.genres) for p in linked] == [(p.movie_id, p.genres) for p in pick]
    csv_path = rb.write_csv(linked, tmp_path / "w" / "subset", tmp_path / "w" / "posters.csv")
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["movie_id", "title", "year", "genres", "poster"]
    assert [(r["movie_id"], r["genres"]) for r in rows] == [(p.movie_id, "|".join(p.genres)) for p in pick]
    assert all((tmp_path / "w" / "subset" / r["poster"]).is_file() for r in rows)


def test_embed_files_retries_a_failed_batch_image_by_image(tmp_path):
    """A batch holding a bad image is embedded one by one; the bad one gets a zero vector."""
    paths = []
    for i, data in enumerate([b"good", b"bad", b"good", b"good"]):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(data)

    def embed(batch):
        if b"bad" in batch:
            raise ValueError("undecodable")
        return np.full((len(batch), 3), 2.0, np.float32)

    emb, failed = embed_files(embed, paths, batch=3)
    assert failed == 1 and emb.shape == (4, 3)
    assert emb[:, 0].tolist() == [2.0, 0.0, 2.0, 2.0]


# --- report helpers -----------------------------------------------------------------------------------
def test_throughput_entries_found_anywhere_in_the_report():
    report = {"training_history": {"phase1": {"images_per_s": 41.5}, "phase2/images_per_s": [10.0, 20.0]},
              "eval_retrieval": {"map@r": 0.1}}
    assert throughput_entries(report) == {"training_history.phase1.images_per_s": 41.5,
                                          "training_history.phase2/images_per_s": 15.0}
    assert throughput_entries({}) == {}


def test_goal_ratios_of_one_run():
    rows = {"colour histogram": {"macro_precision@10": 0.2}, "frozen backbone": {"macro_precision@10": 0.25},
            "fine-tuned": {"macro_precision@10": 0.3}}
    goals, ratios = goals_for(rows)
    assert ratios == {"frozen backbone": 1.2, "colour histogram": 1.5}
    assert [g["met"] for g in goals] == [True, True]
    goals, ratios = goals_for({k: v for k, v in rows.items() if k != "fine-tuned"})
    assert ratios == {} and [g["met"] for g in goals] == [None, None]


def test_share_of_peak_is_named_and_derived_from_its_inputs():
    """share = images/s × FLOPs per image / measured peak FLOP/s: 50 × 1e7 / 1e9 = 0.5 for the frozen
    forward pass; a training phase at 20 images/s is 20 × 1e7 / 1e9 = 0.2 if only the forward pass
    counts, × TRAIN_FLOPS_FACTOR with full backpropagation."""
    class FakeModels:
        FROZEN_BACKBONE = "efficientnet_lite0"

        @staticmethod
        def peak_matmul_flops():
            return {"flop_per_s": 1e9, "device": "CPU"}

        @staticmethod
        def flops_per_image(backbone, size):
            return {"flops": 1e7, "source": "test"}

        @staticmethod
        def forward_images_per_s(net, size):
            return 50.0

    eff = efficiency(FakeModels, None, (4, 4))
    assert eff["frozen_forward_share_of_peak_fp32_matmul"] == 0.5 and eff["peak_fp32_matmul"]["flop_per_s"] == 1e9
    assert "peak_fp32_matmul.flop_per_s" in eff["share_of_peak_definition"]
    eff["training"] = {"phases": {"phase1": {"images_per_s": 20.0, "share_of_peak_fp32_matmul_if_forward_only": 0.2,
                                             "share_of_peak_fp32_matmul_if_full_backprop": 0.2 * TRAIN_FLOPS_FACTOR}}}
    args = type("Args", (), {"skip_train": False, "workdir": "W"})()
    notes = notes_for(args, {"model_kind": "pushed serving model", "run": {"returncode": 2}}, eff, 30, 3)
    assert "50.0 images/s = 50.0% of the measured fp32 matmul peak" in notes[1]
    assert f"20.0–{20 * TRAIN_FLOPS_FACTOR:.1f}% of the measured fp32 matmul peak" in notes[2]
    assert notes[-1] == "run exited 2: see W/run.log"


def test_recipe_sweep_pk_batches_hold_k_posters_of_each_of_p_labels():
    from bench.recipe_sweep import pk_batches

    labels = np.array([0] * 10 + [1] * 6 + [2] * 3 + [3] * 8)  # label 2 has fewer than K=4 posters
    gen = pk_batches(labels, p=2, k=4, seed=0)
    for _ in range(20):
        idx = next(gen)
        values, counts = np.unique(labels[idx], return_counts=True)
        assert len(idx) == 8 and len(set(idx.tolist())) == 8
        assert len(values) == 2 and set(counts) == {4} and 2 not in values

"""Real-poster benchmark: genre retrieval on a labelled poster folder, fine-tuned model vs baselines.

Both folders use the layout `DIR/<Genre>/<movie_id>.jpg` (a poster under several genre folders has
all of them). The fine-tuned model is trained on --train by the project's own commands, as a user
runs them: `posters import` (the folder layout, or the CSV layout where `--folders` is missing) into
W/train_tfrecords, then `posters run --data W/train_tfrecords --workdir W/work --config CONFIG`; the
SavedModel it pushes (W/work/serving_model/<model>/<version>, or the Trainer's tower if the gate did
not bless it) embeds the --test posters through its `embed` signature (image bytes in).

On the test posters (queries = candidates, leave-one-out, cosine) it reports macro and micro genre
P@10, precision@10 (shares any genre) and MAP@R, computed by the product's `retrieval_metrics` (as
the Trainer's "did training help?" report; bench/real_posters_baselines.py) for: random vectors and
the HSV colour histogram of `components.baselines` (the Trainer's baselines), raw pixels (32×32,
centred, L2; bench-only), the frozen ImageNet efficientnet_lite0 (pooled features at the configured
image size) and the fine-tuned model. Also: the training report's `images_per_s` entries per phase,
the machine's measured float32 matmul peak and FLOPs per image → each throughput's share of that peak.

    python -m bench.real_posters --train DIR --test DIR [--max-per-genre N]
        [--max-test-per-genre N] [--config configs/demo.yaml] [--set k=v ...] [--workdir W]
        [--skip-train] [--reuse-model] [--describe TEXT] [--out DIR]
"""
from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import time

import numpy as np

from bench import real_posters_baselines as rb
from bench.common import CACHE_DIR, ROOT, base_parser, goal, md_table, write_result

NAME = "real_posters"
CLI = [sys.executable, "-m", "poster_similarity.posters.cli"]
TARGETS = {"frozen backbone": 1.10, "colour histogram": 1.30}  # fine-tuned macro P@10 ≥ target × baseline
TRAIN_FLOPS_FACTOR = 3  # forward + backward ≈ 3 × forward (full backpropagation)
EMBEDDINGS = ("random", "raw pixels", "colour histogram", "frozen backbone", "fine-tuned")
METRICS = ("macro_precision@10", "micro_precision@10", "precision@10", "map@r")  # the product's key names
MACRO, PER_GENRE = "macro_precision@10", "per_genre_precision@10"
SHARE_OF_PEAK = ("share of peak = achieved FLOP/s / peak_fp32_matmul.flop_per_s; achieved = images/s × forward "
                 f"FLOPs per image (training phases: × 1 if forward only, × {TRAIN_FLOPS_FACTOR} if full "
                 "backpropagation); the peak is the best float32 matmul rate measured on this machine in this "
                 "run, not a vendor figure")


def say(msg: str) -> None:
    print(f"[real_posters] {msg}", flush=True)


def parse_args(argv):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--train", help="training folder, DIR/<Genre>/*.jpg (not needed with --skip-train)")
    p.add_argument("--test", required=True, help="test folder, DIR/<Genre>/*.jpg (queries and candidates)")
    p.add_argument("--max-per-genre", type=int, help="train on at most N posters per genre (seeded pick)")
    p.add_argument("--max-test-per-genre", type=int, help="evaluate on at most N posters per genre")
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "demo.yaml"), help="pipeline config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeat)")
    p.add_argument("--workdir", default=os.path.join(CACHE_DIR, NAME), help="W: imports, pipeline, logs")
    p.add_argument("--skip-train", action="store_true", help="baselines only (no import, no pipeline run)")
    p.add_argument("--reuse-model", action="store_true", help="evaluate the model already trained in W")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsampling and the random baseline")
    p.add_argument("--batch", type=int, default=64, help="images per embedding call")
    p.add_argument("--describe", default="", help="free text about the data (source, version) for the results")
    args = p.parse_args(argv)
    if args.quick:  # a smoke run: baselines on a few posters per genre
        args.skip_train = True
        args.max_test_per_genre = args.max_test_per_genre or 20
    if not args.skip_train and not args.train:
        p.error("--train is required unless --skip-train")
    args.workdir = os.path.abspath(args.workdir)
    return args


# --- training through the product's CLI ----------------------------------------------------------------
def run_logged(cmd: list[str], log_path: str, label: str) -> int:
    """Runs `cmd`, echoing its output (prefixed) and keeping it in `log_path`; returns the exit code."""
    say(f"{label}: {shlex.join(cmd)}  (log {log_path})")
    t0 = time.perf_counter()
    with open(log_path, "w") as log, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            log.write(line)
            print(f"    {label} | {line.rstrip()}", flush=True)
    say(f"{label}: exit {proc.returncode} in {time.perf_counter() - t0:.0f} s")
    return proc.returncode


def folders_import_available() -> bool:
    out = subprocess.run([*CLI, "import", "--help"], cwd=ROOT, capture_output=True, text=True)
    return out.returncode == 0 and "--folders" in out.stdout


def import_command(args, posters: list[rb.Poster], subsampled: bool) -> tuple[list[str], str]:
    """The `posters import` command for the training posters, and which layout it uses."""
    out = os.path.join(args.workdir, "train_tfrecords")
    root = os.path.abspath(args.train)
    if subsampled:  # the pick as a folder tree of links under W
        root = rb.link_tree(posters, os.path.join(args.workdir, "train_subset"))
        posters = rb.read_folders(root)
    if folders_import_available():
        return [*CLI, "import", "--folders", root, "--out", out], "folders"
    csv_path = rb.write_csv(posters, root, os.path.join(args.workdir, "train_posters.csv"))
    return [*CLI, "import", "--csv", csv_path, "--images", root, "--out", out], "csv"


def find_model(cfg) -> tuple[str | None, str]:
    """(model dir, what it is): the newest pushed version, else the Trainer's newest tower."""
    if os.path.isdir(cfg.serving_dir):
        versions = sorted((v for v in os.listdir(cfg.serving_dir) if v.isdigit()), key=int)
        for v in reversed(versions):
            path = os.path.join(cfg.serving_dir, v)
            if os.path.exists(os.path.join(path, "saved_model.pb")):
                return path, "pushed serving model"
    try:
        from poster_similarity.pipeline.lineage import newest_artifact_dir

        path = os.path.join(newest_artifact_dir(cfg.pipeline_root, "Trainer", "model"), "Format-Serving")
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return path, "Trainer tower (nothing pushed: the Evaluator did not bless it, or the run failed later)"
    except Exception:  # noqa: BLE001 - no Trainer output at all
        pass
    return None, "no model"


def train(args, cfg, posters: list[rb.Poster], subsampled: bool) -> dict:
    """posters import + posters run in W; returns what happened and the model to evaluate."""
    os.makedirs(args.workdir, exist_ok=True)
    info: dict = {"workdir": args.workdir}
    if args.reuse_model:
        info["model_dir"], info["model_kind"] = find_model(cfg)
        say(f"reusing {info['model_kind']}: {info['model_dir']}")
        return info
    cmd, layout = import_command(args, posters, subsampled)
    t0 = time.perf_counter()
    info["import"] = {"layout": layout, "command": shlex.join(cmd),
                      "returncode": run_logged(cmd, os.path.join(args.workdir, "import.log"), "import"),
                      "seconds": round(time.perf_counter() - t0, 1)}
    if info["import"]["returncode"] != 0:
        return info
    cmd = [*CLI, "run", "--data", os.path.join(args.workdir, "train_tfrecords"), "--workdir", cfg.workdir,
           "--config", os.path.abspath(args.config)] + [a for s in args.set for a in ("--set", s)]
    t0 = time.perf_counter()
    info["run"] = {"command": shlex.join(cmd),
                   "returncode": run_logged(cmd, os.path.join(args.workdir, "run.log"), "run"),
                   "seconds": round(time.perf_counter() - t0, 1)}
    info["model_dir"], info["model_kind"] = find_model(cfg)
    return info


# --- embeddings and scores ------------------------------------------------------------------------------
def evaluate(name: str, emb: np.ndarray, genres: np.ndarray, names: list[str], seconds: float, **extra) -> dict:
    """One embedding's row: the product's scores (rb.genre_scores) printed as they come, so a long run
    shows each baseline's figures without waiting for the end, plus its size and time."""
    scores = rb.genre_scores(emb, genres, names)
    say(f"{name:17s} macro P@10 {scores[MACRO]:.3f}  micro P@10 {scores['micro_precision@10']:.3f}  "
        f"P@10 {scores['precision@10']:.3f}  MAP@R {scores['map@r']:.4f}  ({emb.shape[1]}-d, {seconds:.1f} s)")
    return scores | {"dim": int(emb.shape[1]), "seconds": round(seconds, 1)} | extra


def baselines(args, cfg, test: list[rb.Poster], pix, genres, names) -> tuple[dict, dict]:
    """Scores of the four baselines, and the frozen backbone's efficiency figures. Random and the
    colour histogram are the Trainer's own (`components.baselines`), so its report and this agree."""
    from bench import real_posters_models as rm
    from poster_similarity.components.baselines import random_embedding

    paths = [p.path for p in test]
    out, t0 = {}, time.perf_counter()
    out["random"] = evaluate("random", random_embedding(len(test), seed=args.seed), genres, names,
                             time.perf_counter() - t0)
    t0 = time.perf_counter()
    out["raw pixels"] = evaluate("raw pixels", rb.pixel_embeddings(pix), genres, names, time.perf_counter() - t0)
    size = rm.configured_size(cfg)
    t0 = time.perf_counter()
    hist, failed = rm.embed_files(rm.histogram_embedder(size), paths, args.batch, "colour histogram")
    out["colour histogram"] = evaluate("colour histogram", hist, genres, names, time.perf_counter() - t0,
                                       failed_images=failed, image_size=list(size))
    say(f"frozen backbone: {rm.FROZEN_BACKBONE} ImageNet at {size[0]}x{size[1]} on {len(test)} posters")
    t0 = time.perf_counter()
    embed, net = rm.frozen_backbone(size)
    emb, failed = rm.embed_files(embed, paths, args.batch, "frozen backbone")
    out["frozen backbone"] = evaluate("frozen backbone", emb, genres, names, time.perf_counter() - t0,
                                      failed_images=failed, image_size=list(size))
    return out, efficiency(rm, net, size)


def efficiency(rm, net, size) -> dict:
    """The frozen backbone's forward throughput as a share of the measured float32 matmul peak:
    how far the machine's arithmetic is used, which images/s alone cannot say across machines."""
    say("measuring the float32 matmul peak and the backbone's FLOPs per image")
    peak = rm.peak_matmul_flops()
    flops = rm.flops_per_image(rm.FROZEN_BACKBONE, size)
    ips = rm.forward_images_per_s(net, size)
    share = ips * flops["flops"] / peak["flop_per_s"]
    say(f"peak {peak['flop_per_s'] / 1e9:.1f} GFLOP/s ({peak['device']}); {rm.FROZEN_BACKBONE} "
        f"{flops['flops'] / 1e9:.3f} GFLOP/image ({flops['source']}); forward {ips:.1f} images/s = "
        f"{100 * share:.1f}% of peak")
    return {"share_of_peak_definition": SHARE_OF_PEAK, "peak_fp32_matmul": peak, "frozen_backbone_flops": flops,
            "frozen_forward_images_per_s": round(ips, 2), "frozen_forward_share_of_peak_fp32_matmul": round(share, 4)}


def fine_tuned(args, cfg, info: dict, test, genres, names, eff: dict) -> dict | None:
    from bench import real_posters_models as rm

    if not info.get("model_dir"):
        say("no fine-tuned model to evaluate")
        return None
    say(f"fine-tuned: {info['model_kind']} {info['model_dir']}")
    t0 = time.perf_counter()
    emb, failed = rm.embed_files(rm.saved_model(info["model_dir"]), [p.path for p in test], args.batch,
                                 "fine-tuned")
    result = evaluate("fine-tuned", emb, genres, names, time.perf_counter() - t0, failed_images=failed,
                      model_dir=info["model_dir"], model_kind=info["model_kind"])
    phases = rm.throughput_entries(rm.training_report(info["model_dir"]))
    if phases:
        from poster_similarity.components.model import get_backbone

        size = tuple(cfg.image_size) if cfg.image_size else get_backbone(cfg.backbone).image_size
        flops = rm.flops_per_image(cfg.backbone, size)
        peak = eff["peak_fp32_matmul"]["flop_per_s"]
        eff["training"] = {"backbone_flops": flops, "phases": {
            k: {"images_per_s": v,
                "share_of_peak_fp32_matmul_if_forward_only": round(v * flops["flops"] / peak, 4),
                "share_of_peak_fp32_matmul_if_full_backprop": round(v * TRAIN_FLOPS_FACTOR * flops["flops"] / peak, 4)}
            for k, v in phases.items()}, "note": "work per image lies between the forward pass (1×, a frozen "
            f"backbone) and full backpropagation (≈{TRAIN_FLOPS_FACTOR}× forward); the two shares bracket it"}
        for k, v in eff["training"]["phases"].items():
            say(f"training {k}: {v['images_per_s']:.1f} images/s = "
                f"{100 * v['share_of_peak_fp32_matmul_if_forward_only']:.1f}–"
                f"{100 * v['share_of_peak_fp32_matmul_if_full_backprop']:.1f}% of peak "
                f"(1×–{TRAIN_FLOPS_FACTOR}× forward FLOPs)")
    else:
        eff["training"] = {"note": "the training report has no images_per_s entries"}
    return result


# --- data description -------------------------------------------------------------------------------------
def describe_data(args, train_all, train_used, test_all, test_used, dropped: int) -> dict:
    d = {"note": args.describe, "test": {"dir": os.path.abspath(args.test), "all": rb.describe(test_all),
                                        "evaluated": rb.describe(test_used), "undecodable_dropped": dropped,
                                        "max_per_genre": args.max_test_per_genre}}
    if train_all is not None:
        d["train"] = {"dir": os.path.abspath(args.train), "all": rb.describe(train_all),
                      "used": rb.describe(train_used), "max_per_genre": args.max_per_genre}
        digests = {hashlib.sha256(p.path.read_bytes()).hexdigest() for p in train_all}
        d["test_posters_identical_to_a_train_poster"] = sum(
            hashlib.sha256(p.path.read_bytes()).hexdigest() in digests for p in test_used)
    return d


def goals_for(rows: dict) -> tuple[list[dict], dict]:
    goals, ratios = [], {}
    ft = rows.get("fine-tuned")
    for base, target in TARGETS.items():
        name = f"fine-tuned macro P@10 / {base} macro P@10 (one run)"
        if ft is None or base not in rows:
            goals.append(goal(name, None, f">= {target}", None, "no fine-tuned model (--skip-train or a failed run)"))
            continue
        ratio = round(ft[MACRO] / rows[base][MACRO], 3)
        ratios[base] = ratio
        goals.append(goal(name, ratio, f">= {target}", ratio >= target))
    return goals, ratios


def tables(rows: dict, names: list[str]) -> tuple[dict, str]:
    headers = ["embedding", "macro genre P@10", "micro genre P@10", "P@10 (shares a genre)", "MAP@R", "dim", "s"]
    body = [[n, *(round(r[m], 4) for m in METRICS), r["dim"], r["seconds"]] for n, r in rows.items()]
    per = [[n, *(round(r[PER_GENRE].get(g, float("nan")), 3) for g in names)] for n, r in rows.items()]
    text = md_table(headers, body) + "\n\nP@10 per genre (queries having the genre):\n" + md_table(
        ["embedding", *names], per)
    return {"headers": headers, "rows": body}, text


def notes_for(args, info: dict, eff: dict, n_test: int, n_genres: int) -> list[str]:
    """The bullet lines under the README table: what the scores are, the throughputs as shares of
    peak (the JSON's `efficiency` holds the inputs), and where a failed step's log is."""
    notes = [f"test: {n_test} posters, {n_genres} genres; macro P@10 over genres with ≥ {rb.MIN_GENRE_POSTERS} "
             "test posters; cosine, leave-one-out; scores by retrieval_metrics (genre_precision, "
             "retrieval_scores), as in the Trainer's report",
             f"frozen backbone forward: {eff['frozen_forward_images_per_s']} images/s = "
             f"{100 * eff['frozen_forward_share_of_peak_fp32_matmul']:.1f}% of the measured fp32 matmul peak"]
    for k, v in (eff.get("training") or {}).get("phases", {}).items():
        notes.append(f"training {k}: {v['images_per_s']:.1f} images/s = "
                     f"{100 * v['share_of_peak_fp32_matmul_if_forward_only']:.1f}–"
                     f"{100 * v['share_of_peak_fp32_matmul_if_full_backprop']:.1f}% of the measured fp32 matmul "
                     f"peak (1×–{TRAIN_FLOPS_FACTOR}× forward FLOPs)")
    notes.append("fine-tuned: not run (--skip-train)" if args.skip_train else
                 f"fine-tuned: {info.get('model_kind')} ({(info.get('import') or {}).get('layout', 'reused')} import)")
    notes += [f"{step} exited {info[step]['returncode']}: see {args.workdir}/{step}.log"
              for step in ("import", "run") if (info.get(step) or {}).get("returncode")]
    return notes


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.time()
    from poster_similarity.core.config import load_config
    from poster_similarity.posters.cli import quiet

    quiet(verbose=False)  # TensorFlow's C++ start-up lines, here and in the pipeline's processes

    cfg = load_config(args.config, args.set, workdir=os.path.join(args.workdir, "work"))
    test_all = rb.read_folders(args.test)
    test = rb.subsample(test_all, args.max_test_per_genre, args.seed)
    train_all = rb.read_folders(args.train) if args.train else None
    train_used = rb.subsample(train_all, args.max_per_genre, args.seed) if train_all else None
    say(f"test {args.test}: {len(test)} of {len(test_all)} posters; train {args.train}: "
        f"{len(train_used) if train_used else 0} of {len(train_all) if train_all else 0} posters")
    info = {} if args.skip_train else train(args, cfg, train_used, args.max_per_genre is not None)

    say(f"reading {len(test)} test images")
    ok, pix = rb.load_images([p.path for p in test])
    dropped = int((~ok).sum())
    test, pix = [p for p, k in zip(test, ok, strict=True) if k], pix[ok]
    names = rb.genre_names(test)
    genres = rb.genre_matrix(test, names)
    rows, eff = baselines(args, cfg, test, pix, genres, names)
    ft = None if args.skip_train else fine_tuned(args, cfg, info, test, genres, names, eff)
    if ft is not None:
        rows["fine-tuned"] = ft
    goals, ratios = goals_for(rows)
    table, text = tables(rows, names)
    print("\n" + text + "\n", flush=True)
    for g in goals:
        say(f"goal {g['goal']}: {g['value']} (target {g['target']}, met {g['met']})")
    data = describe_data(args, train_all, train_used, test_all, test, dropped)
    notes = notes_for(args, info, eff, len(test), len(names))
    params = vars(args) | {"command": "python -m bench.real_posters " + shlex.join(argv),
                           "config_resolved": cfg.to_dict()}
    results = {"data": data, "embeddings": rows, "ratios": ratios, "efficiency": eff, "training": info}
    write_result(NAME, args.quick, started, params, results, goals, out_dir=args.out, table=table, notes=notes)
    failed = any((info.get(step) or {}).get("returncode") for step in ("import", "run"))
    return 1 if failed or (not args.skip_train and ft is None) else 0


if __name__ == "__main__":
    raise SystemExit(main())

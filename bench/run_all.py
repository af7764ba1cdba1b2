"""Run every benchmark (`make bench`; `make bench-quick` = `--quick`) and render the README table.

Each benchmark runs in its own process (fresh TF state and memory). Order: ann, training, pipeline,
serving, learning, distributed, real_posters — serving reuses the model the pipeline benchmark just
pushed when no --model-base-path is given. real_posters needs poster folders the repository does not
ship (docs/benchmarks.md): it runs only given --real-test DIR [--real-train DIR] (or the environment
variables POSTERS_REAL_TEST / POSTERS_REAL_TRAIN); without --real-train it scores the baselines only.
Results: bench/results/<name>.json and bench/results/README_table.md.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.common import ROOT, base_parser, latest_model_base, render_table

ORDER = ("ann", "training", "pipeline", "serving", "learning", "distributed", "real_posters")
REAL_TRAIN_ENV, REAL_TEST_ENV = "POSTERS_REAL_TRAIN", "POSTERS_REAL_TEST"
SKIP_REAL = (f"skipped: no real poster folders given (--real-test DIR [--real-train DIR], or "
             f"{REAL_TEST_ENV} / {REAL_TRAIN_ENV})")


def real_posters_args(train: str | None, test: str | None) -> list[str] | None:
    """bench.real_posters' folder arguments, or None when it cannot run: its data are not in the
    repository, so a default `make bench` must not fail for want of them. A test folder alone
    scores the baselines (--skip-train); a train folder alone has nothing to evaluate on."""
    if not test:
        return None  # the benchmark runs from the repository root: relative folders are made absolute here
    return ["--test", os.path.abspath(test)] + (["--train", os.path.abspath(train)] if train else ["--skip-train"])


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(ORDER)}")
    p.add_argument("--model-base-path", default=None, help="passed to bench.serving")
    p.add_argument("--real-train", default=os.environ.get(REAL_TRAIN_ENV) or None,
                   help=f"real_posters: training folder DIR/<Genre>/*.jpg (default ${REAL_TRAIN_ENV})")
    p.add_argument("--real-test", default=os.environ.get(REAL_TEST_ENV) or None,
                   help=f"real_posters: test folder DIR/<Genre>/*.jpg (default ${REAL_TEST_ENV}); "
                        "without it real_posters is skipped")
    args, rest = p.parse_known_args(argv)
    names = [n for n in ORDER if not args.only or n in args.only.split(",")]
    status = {}
    t_all = time.perf_counter()
    for name in names:
        cmd = [sys.executable, "-m", f"{__package__}.{name}", "--out", args.out] + (["--quick"] if args.quick else [])
        if name == "serving":
            base = args.model_base_path or latest_model_base(args.out)
            if base:
                cmd += ["--model-base-path", base]
        if name == "real_posters":
            folders = real_posters_args(args.real_train, args.real_test)
            if folders is None:
                print(f"[run_all] real_posters: {SKIP_REAL}", flush=True)
                continue
            cmd += folders
        print(f"[run_all] {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd + rest, cwd=ROOT).returncode
        status[name] = rc
        print(f"[run_all] {name}: rc {rc} in {time.perf_counter() - t0:.1f} s", flush=True)
    text = render_table(args.out)
    print(text)
    print(f"[run_all] total {time.perf_counter() - t_all:.1f} s; "
          f"results in {os.path.relpath(args.out, ROOT) if args.out.startswith(ROOT) else args.out}", flush=True)
    failed = [n for n, rc in status.items() if rc != 0]
    if failed:
        print(f"[run_all] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run every benchmark (`make bench`; `make bench-quick` = `--quick`) and render the README table.

Each benchmark runs in its own process (fresh TF state and memory). Order: ann, training, pipeline,
serving, learning, distributed — serving reuses the model the pipeline benchmark just pushed when no
--model-base-path is given.
Results: poster_similarity/bench/results/<name>.json and poster_similarity/bench/results/README_table.md.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from poster_similarity.bench.common import ROOT, base_parser, latest_model_base, render_table

ORDER = ("ann", "training", "pipeline", "serving", "learning", "distributed")


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(ORDER)}")
    p.add_argument("--model-base-path", default=None, help="passed to bench.serving")
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

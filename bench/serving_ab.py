"""What the serving hardening costs: the pre-hardening server and this one, side by side, interleaved.

Single benchmark runs at different times cannot resolve a 10 % change on a shared machine (the
in-process row of `bench.serving`, which no server code touches, moves by up to 22 % between runs).
So both servers run at once on the same model, and one client alternates between them in blocks
(REST, then gRPC): each round sends BLOCK requests to one and BLOCK to the other, the order
flipping every round, so machine load hits both arms alike. Goal: after ÷ before p50 ≤ 1.10.

"Before" is the local server as it was before the hardening (`serving/local_server.py` at
BASELINE_COMMIT, taken from this repository's history with `git archive`); "after" is
`poster_similarity.serving.server`. Both get the same `serving_default` request (one JPEG) from the
same `PosterClient`.

    python -m bench.serving_ab [--quick] [--model-base-path DIR] [--baseline COMMIT]
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time

from bench.common import ROOT, base_parser, goal, percentiles, write_result
from bench.server_child import ServerChild
from bench.serving_models import MODEL_NAME, ensure_model, ensure_standin_model, find_jpeg

BASELINE_COMMIT = "dc23286c28689598ceb2e6fb2b122c34f8531919"  # main before the serving-hardening merge

BASELINE_SERVER = "serving.local_server"  # module of the baseline tree, run from its extracted copy
P50_GOAL = 1.10  # after ÷ before p50 at most: the hardening may cost up to 10 %


def p50_goal(protocol: str, before_p50: float, after_p50: float) -> dict:
    """The goal record for one protocol: after ÷ before p50 (3 decimals), met when ≤ P50_GOAL."""
    ratio = round(after_p50 / before_p50, 3)
    return goal(f"{protocol}: hardened ÷ pre-hardening p50 (interleaved, 1 client, batch 1)", ratio,
                f"<= {P50_GOAL:.2f}", ratio <= P50_GOAL)


def baseline_tree(commit: str, dest: str) -> str:
    """Extract the baseline's `serving/` package from git history into `dest`; returns `dest`."""
    if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True).returncode:
        raise SystemExit(f"baseline commit {commit} is not in this clone (a shallow clone? `git fetch --unshallow`)")
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "serving"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


def interleave(calls: dict, rounds: int, block: int) -> dict[str, list[float]]:
    """Latencies per arm; each round runs `block` calls per arm, the arm order flipping each round."""
    lat: dict[str, list[float]] = {arm: [] for arm in calls}
    arms = list(calls)
    for r in range(rounds):
        for arm in (arms if r % 2 == 0 else arms[::-1]):
            for _ in range(block):
                t0 = time.perf_counter()
                calls[arm]()
                lat[arm].append(time.perf_counter() - t0)
    return lat


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--model-base-path", default=None, help="versioned base path (default: as bench.serving)")
    p.add_argument("--model-name", default=MODEL_NAME)
    p.add_argument("--baseline", default=BASELINE_COMMIT, help="the pre-hardening commit")
    p.add_argument("--image", default=None, help="a JPEG to send (default: a sample poster)")
    args = p.parse_args(argv)
    from poster_similarity.client import PosterClient

    started = time.time()
    if args.model_base_path:
        base, name = os.path.abspath(args.model_base_path), args.model_name
    else:
        base, name = ensure_standin_model() if args.quick else ensure_model()
    rounds, block = (4, 10) if args.quick else (20, 25)
    jpeg = find_jpeg(args.image)
    results, rows, goals = {}, [], []
    with tempfile.TemporaryDirectory(prefix="serving_ab_") as tree:
        servers: dict[str, ServerChild] = {}
        try:
            servers["before"] = ServerChild(base, name, server=BASELINE_SERVER, path=baseline_tree(args.baseline, tree),
                                            label="before")
            servers["after"] = ServerChild(base, name, label="after")
            for protocol in ("rest", "grpc"):
                calls = {}
                for arm, srv in servers.items():
                    client = PosterClient(srv.addr[protocol], name, protocol=protocol, timeout=60)
                    for _ in range(3):  # first calls (the baseline has no warm-up) stay out of the numbers
                        client.predict("serving_default", {"image_bytes": [jpeg]})
                    calls[arm] = lambda c=client: c.predict("serving_default", {"image_bytes": [jpeg]})
                lat = interleave(calls, rounds, block)
                pct = {arm: percentiles(v) for arm, v in lat.items()}
                g = p50_goal(protocol, pct["before"]["p50"], pct["after"]["p50"])
                ratio = g["value"]
                results[protocol] = {"latency_ms": pct, "requests_per_arm": rounds * block, "p50_ratio": ratio}
                rows.append([protocol, pct["before"]["p50"], pct["after"]["p50"], ratio, pct["before"]["p95"],
                             pct["after"]["p95"]])
                goals.append(g)
                print(f"[serving_ab] {protocol}: p50 before {pct['before']['p50']} ms, after "
                      f"{pct['after']['p50']} ms, ratio {ratio}", flush=True)
        finally:
            for srv in servers.values():
                srv.close()
    write_result("serving_ab", args.quick, started,
                 {"model_base_path": base, "model_name": name, "baseline_commit": args.baseline, "rounds": rounds,
                  "block": block, "jpeg_bytes": len(jpeg)}, results, goals, out_dir=args.out,
                 table={"headers": ["protocol", "p50 before ms", "p50 after ms", "after ÷ before", "p95 before ms",
                                    "p95 after ms"], "rows": rows},
                 notes=[f"before = serving/local_server.py at {args.baseline[:7]} (pre-hardening); after = "
                        "poster_similarity.serving.server; both processes up at once, requests alternated "
                        f"in blocks of {block}, {rounds} rounds per protocol"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

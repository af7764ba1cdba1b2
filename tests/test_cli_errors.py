"""The CLI's error contract (docs/cli.md), as a user meets it: every subcommand, driven through the
mistakes people make, answers with exit 2 and exactly one stderr line `posters <cmd>: error: …`,
no traceback, nothing left behind, and before TensorFlow/TFX/Beam is imported (checked in the
child's `sys.modules`, tests/children/posters_child.py, and by wall time).

The mistakes run as real processes, in parallel (a module fixture), so the file stays fast. The
time bound is on the child's CPU time (TensorFlow's import alone costs ~5 s of CPU; a mistake costs
~0.1–0.4 s), with a loose wall-time bound beside it: wall time on a shared 2-core machine under load
measures the other jobs as much as this one.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import POSTERS_CLI, ROOT

CHILD = [sys.executable, "-m", "tests.children.posters_child"]
CPU_LIMIT_S = 2.0  # each mistake, start-up included
WALL_LIMIT_S = 20.0  # catches a hang or a model load even on a loaded machine

# (case id, command, arguments; "{in}" is a folder of prepared inputs, outside the checked cwd)
MISTAKES = [
    ("no-command", "", []),
    ("unknown-command", "", ["nosuch"]),
    ("sample-no-out", "sample", []),
    ("sample-n-0", "sample", ["--out", "s", "--n", "0"]),
    ("sample-size-0x0", "sample", ["--out", "s", "--size", "0x0"]),
    ("sample-size-abc", "sample", ["--out", "s", "--size", "abc"]),
    ("sample-seed-abc", "sample", ["--out", "s", "--seed", "abc"]),
    ("import-missing-csv", "import", ["--csv", "missing.csv", "--images", "{in}", "--out", "o"]),
    ("import-missing-folders", "import", ["--folders", "missing", "--out", "o"]),
    ("import-shards-0", "import", ["--folders", "{in}", "--out", "o", "--shards", "0"]),
    ("run-set-unknown", "run", ["--data", "{in}/data", "--workdir", "w", "--set", "nosuchkey=1"]),
    ("run-set-type", "run", ["--data", "{in}/data", "--workdir", "w", "--set", "batch_size=abc"]),
    ("run-set-no-equals", "run", ["--data", "{in}/data", "--workdir", "w", "--set", "k"]),
    ("run-set-choice", "run", ["--data", "{in}/data", "--workdir", "w", "--set", "index.kind=annoy"]),
    ("run-set-range", "run", ["--data", "{in}/data", "--workdir", "w", "--set", "batch_size=0"]),
    ("run-config-missing", "run", ["--data", "{in}/data", "--workdir", "w", "--config", "missing.yaml"]),
    ("run-config-unparsable", "run", ["--data", "{in}/data", "--workdir", "w", "--config", "{in}/bad.yaml"]),
    ("run-data-missing", "run", ["--data", "nodir", "--workdir", "w"]),
    ("run-data-no-tfrecords", "run", ["--data", "{in}/empty", "--workdir", "w"]),
    ("run-catalogue-missing", "run", ["--data", "{in}/data", "--catalogue", "nodir", "--workdir", "w"]),
    ("run-workdir-is-file", "run", ["--data", "{in}/data", "--workdir", "{in}/a_file"]),
    ("validate-model-missing", "validate", ["--model", "nodir", "--examples", "{in}/data/*"]),
    ("validate-examples-none", "validate", ["--model", "{in}/model", "--examples", "{in}/nomatch*"]),
    ("validate-thresholds-missing", "validate", ["--model", "{in}/model", "--examples", "{in}/data/*",
                                                 "--thresholds", "missing.yaml"]),
    ("promote-config-missing", "promote", ["--model-config-file", "missing.config", "--candidate", "1",
                                           "--examples", "{in}/data/*"]),
    ("promote-candidate-negative", "promote", ["--model-config-file", "{in}/models.config", "--candidate", "-1",
                                               "--examples", "{in}/data/*"]),
    ("promote-examples-none", "promote", ["--model-config-file", "{in}/models.config", "--candidate", "1",
                                          "--examples", "{in}/nomatch*"]),
    ("serve-no-model", "serve", []),
    ("serve-port-range", "serve", ["--model-base-path", "{in}", "--rest-port", "-1"]),
    ("serve-same-ports", "serve", ["--model-base-path", "{in}", "--rest-port", "18501", "--grpc-port", "18501"]),
    ("query-nothing", "query", []),
    ("query-k-0", "query", ["{in}/poster.png", "-k", "0"]),
    ("query-k-negative", "query", ["{in}/poster.png", "-k", "-3"]),
    ("query-not-an-image", "query", ["{in}/notimg.jpg", "--server", "127.0.0.1:9"]),
    ("query-unsupported-image", "query", ["{in}/poster.tiff", "--server", "127.0.0.1:9"]),
    ("query-truncated-image", "query", ["{in}/truncated.png", "--server", "127.0.0.1:9"]),
    ("query-missing-file", "query", ["missing.png"]),
    ("query-folder", "query", ["{in}"]),
    ("query-server-no-port", "query", ["{in}/poster.png", "--server", "localhost"]),
    ("query-mix-no-images", "query", ["--mix", "--history", "tt1"]),
    ("query-catalogue-none", "query", ["{in}/poster.png", "--catalogue", "{in}/nomatch*"]),
    ("query-bad-flag", "query", ["--bogus"]),
    ("gallery-queries-negative", "gallery", ["--catalogue", "{in}/data/*", "--out", "g", "--queries", "-1"]),
    ("gallery-catalogue-none", "gallery", ["--catalogue", "{in}/nomatch*", "--out", "g"]),
    ("gallery-metrics-missing", "gallery", ["--catalogue", "{in}/data/*", "--out", "g", "--metrics", "m.json"]),
    ("gallery-server-bad", "gallery", ["--catalogue", "{in}/data/*", "--out", "g", "--server", "host:99999"]),
]


def _png(size=(40, 60)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def _prepare_inputs(folder) -> None:
    """Files the mistakes refer to: good ones (so that only the named mistake is wrong) and bad ones."""
    from PIL import Image

    (folder / "data").mkdir()
    (folder / "data" / "part-0.tfrecord").write_bytes(b"")
    (folder / "empty").mkdir()
    (folder / "model").mkdir()
    (folder / "model" / "saved_model.pb").write_bytes(b"not read: the examples are checked first")
    (folder / "models.config").write_text("model_config_list {}\n")
    (folder / "bad.yaml").write_text("phase1_epochs: [1,\n")
    (folder / "a_file").write_text("a file\n")
    (folder / "notimg.jpg").write_text("these bytes are text, whatever the name says\n")
    (folder / "poster.png").write_bytes(_png())
    (folder / "truncated.png").write_bytes(_png((200, 300))[:120])
    Image.new("RGB", (40, 60)).save(folder / "poster.tiff", "TIFF")


def _listing(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, ds, fs in os.walk(folder) for n in ds + fs)


def _run_child(args: list[str], cwd, report, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    env.update(PYTHONPATH=ROOT, POSTERS_CHILD_REPORT=str(report))
    t0 = time.perf_counter()
    proc = subprocess.run([*CHILD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    note = json.loads(report.read_text()) if report.exists() else {}
    return proc, elapsed, note


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every mistake run once, in parallel: id → (completed process, seconds, child note, listings)."""
    base = tmp_path_factory.mktemp("mistakes")
    inputs = base / "in"
    inputs.mkdir()
    _prepare_inputs(inputs)
    before_inputs = _listing(inputs)

    def one(case):
        name, command, args = case
        cwd = base / name
        cwd.mkdir()
        argv = ([command] if command else []) + [a.replace("{in}", str(inputs)) for a in args]
        proc, elapsed, note = _run_child(argv, cwd, base / f"{name}.json")
        return name, (proc, elapsed, note, _listing(cwd))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        results = dict(pool.map(one, MISTAKES))
    assert _listing(inputs) == before_inputs, "a mistake changed the prepared inputs"
    return results


@pytest.mark.parametrize("name, command, args", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_is_one_line_exit_2_before_tensorflow(outcomes, name, command, args):
    proc, elapsed, note, left = outcomes[name]
    lines = proc.stderr.splitlines()
    prefix = f"posters {command}: error: " if command else "posters: error: "
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert left == [], f"left behind: {left}"
    assert note.get("rc") == 2 and note.get("heavy") == [], note
    assert note["cpu_s"] < CPU_LIMIT_S and elapsed < WALL_LIMIT_S, f"{note['cpu_s']:.1f} s CPU, {elapsed:.1f} s"


def test_the_messages_name_the_mistake(outcomes):
    """A few messages, word for word where the wording is the point."""
    err = {name: outcomes[name][0].stderr.strip() for name in outcomes}
    assert err["run-set-unknown"] == "posters run: error: unknown config field(s): nosuchkey"
    assert err["run-set-type"] == "posters run: error: batch_size: expected int, got 'abc'"
    assert "expected KEY=VALUE" in err["run-set-no-equals"]
    assert "no such folder" in err["run-data-missing"] and "no *.tfrecord* files" in err["run-data-no-tfrecords"]
    assert err["query-k-0"] == "posters query: error: -k must be >= 1, got 0"
    assert "notimg.jpg: not an image (the model reads JPEG, PNG, GIF or BMP)" in err["query-not-an-image"]
    assert "a TIFF image; the model reads JPEG, PNG, GIF or BMP only" in err["query-unsupported-image"]
    assert "a damaged PNG file" in err["query-truncated-image"]
    assert err["validate-model-missing"] == "posters validate: error: --model nodir: no such folder"
    assert json.loads(outcomes["promote-config-missing"][0].stdout) == {
        "promoted": False, "error": "model config file not found: missing.config"}


# --- query: answers the CLI must qualify (a stub of TF Serving's REST API) --------------------------

class _StubServing(BaseHTTPRequestHandler):
    """TF Serving's REST answers for a model exported with k=3 whose catalogue is m0…m4."""

    SIGS = {"serving_default": {"movie_ids": "DT_STRING", "scores": "DT_FLOAT", "embedding": "DT_FLOAT"},
            "recommend": {"movie_ids": "DT_STRING", "scores": "DT_FLOAT", "history_used": "DT_FLOAT"}}
    CATALOGUE = {"m0", "m1", "m2", "m3", "m4"}

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def _send(self, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        sigs = {n: {"outputs": {o: {"dtype": d} for o, d in outs.items()}} for n, outs in self.SIGS.items()}
        self._send({"metadata": {"signature_def": {"signature_def": sigs}}})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if req["signature_name"] == "recommend":
            rows = [[base64.b64decode(x["b64"]).decode() for x in row] for row in req["inputs"]["history"]]
            used = [float(len(set(row) & self.CATALOGUE)) for row in rows]
            self._send({"outputs": {"movie_ids": [["m2", "m3", "m4"]] * len(rows),
                                    "scores": [[0.9, 0.8, 0.7]] * len(rows), "history_used": used}})
        else:
            n = len(req["inputs"]["image_bytes"])
            self._send({"outputs": {"movie_ids": [["m0", "m1", "m2"]] * n, "scores": [[1.0, 0.5, 0.2]] * n,
                                    "embedding": [[1.0, 0.0]] * n}})


@pytest.fixture(scope="module")
def stub_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _StubServing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("history, rc, warning", [
    (["nosuch1", "nosuch2"], 3, "none of the 2 --history id(s) is in the served catalogue"),
    (["m0", "nosuch"], 0, "the model used 1 of the 2 --history ids"),
    (["m0", "m1"], 0, None),
])
def test_query_history_unknown_ids_warn_and_exit_3(stub_server, tmp_path, history, rc, warning):
    proc, _, note = _run_child(["query", "--history", *history, "-k", "3", "--server", stub_server],
                               tmp_path, tmp_path / "note.json")
    assert proc.returncode == rc, proc.stderr
    lines = proc.stderr.splitlines()
    if warning is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith("posters query: warning: ") and warning in lines[0]
    assert "  1. m2" in proc.stdout  # the rows are printed either way
    assert ("catalogue-wide fallback" in proc.stdout) == (rc == 3)
    assert note["heavy"] == []  # REST needs no TensorFlow


def test_query_k_beyond_the_model_warns_once(stub_server, tmp_path):
    img = tmp_path / "p.png"
    img.write_bytes(_png())
    proc, _, _ = _run_child(["query", str(img), "-k", "100000", "--server", stub_server], tmp_path, tmp_path / "n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "posters query: warning: -k 100000: the served model returned at most 3 results per query"]
    assert "  3. m2" in proc.stdout


def test_client_recommend_exposes_history_used_and_logs_unknown_histories(stub_server, caplog):
    from poster_similarity.client import PosterClient

    with PosterClient(stub_server) as client, caplog.at_level("WARNING"):
        recs = client.recommend([["m0", "m1", "m1"], ["nosuch"]], k=2)
    assert [[mid for mid, _ in row] for row in recs] == [["m2", "m3"]] * 2  # still the plain rows
    assert isinstance(recs, list) and recs[0][0][1] == pytest.approx(0.9)
    assert recs.history_used == [2, 0]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "none of the ids ['nosuch'] is in the served catalogue" in caplog.records[0].getMessage()


# --- runtime failures, bench, --version ---------------------------------------------------------------

def test_a_runtime_failure_is_one_line_naming_its_log_and_v_shows_the_traceback(tmp_path):
    (tmp_path / "a_file").write_text("x")
    out = str(tmp_path / "a_file" / "posters")  # a folder inside a file: mkdir fails at run time
    proc, _, _ = _run_child(["sample", "--out", out, "--n", "2"], tmp_path, tmp_path / "n1")
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith("posters sample: error: NotADirectoryError: ") and "-v prints it" in line
    log = line.split("traceback in ", 1)[1].split(";", 1)[0]
    try:
        assert "Traceback (most recent call last)" in open(log, encoding="utf-8").read()
    finally:
        os.remove(log)
    proc, _, _ = _run_child(["sample", "-v", "--out", out, "--n", "2"], tmp_path, tmp_path / "n2")
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr


def test_bench_is_named_posters_bench_and_refuses_outside_a_checkout(monkeypatch, capsys):
    proc = subprocess.run([*POSTERS_CLI, "bench", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: posters bench"), proc.stdout[:200]

    from poster_similarity.posters import checks, cli

    monkeypatch.setattr(checks, "checkout_root", lambda: None)
    assert cli.main(["bench", "--quick"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("posters bench: error: the benchmarks are in the source checkout")


def test_version(tmp_path):
    proc, _, _ = _run_child(["--version"], tmp_path, tmp_path / "n")
    assert proc.returncode == 0 and proc.stdout.startswith("posters ") and proc.stderr == ""

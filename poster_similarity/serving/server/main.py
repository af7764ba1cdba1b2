"""`posters serve`: flags (TF Serving's names where it has the knob), start, drain on SIGTERM.

TensorFlow is imported only when the server starts, never TFX.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import traceback

from poster_similarity.serving.batching import BatchingOptions
from poster_similarity.serving.server.config import valid_model_name
from poster_similarity.serving.server.limits import Limits
from poster_similarity.serving.server.ports import PortError
from poster_similarity.serving.server.versions import RetryPolicy

_D = Limits()
PROG = "posters serve"


def _explain(args: argparse.Namespace, detail: str = "") -> None:
    """With -v only: the traceback of the exception being handled (and what grpc said), before the one line."""
    if getattr(args, "verbose", False):
        traceback.print_exc()
        if detail:
            print(detail, file=sys.stderr)


def _refuse(message: str) -> int:
    """A user mistake or a busy port: one line `posters serve: error: …` on stderr, exit status 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return 2


def add_serve_arguments(s: argparse.ArgumentParser) -> None:
    """Add the `posters serve` flags to a parser.

    Args:
        s: the subcommand parser.
    """
    s.add_argument("--model-base-path", default=None, help="versioned base path of one model")
    s.add_argument("--model-name", default="posters",
                   help="the model's name in URLs and requests (with --model-base-path)")
    s.add_argument("--model-config-file", default=None,
                   help="TF Serving ModelServerConfig text proto (models, version policies, labels); "
                        "re-read when it changes")
    s.add_argument("--rest-port", type=int, default=8501, help="REST API port (TF Serving's --rest_api_port)")
    s.add_argument("--grpc-port", type=int, default=8500, help="gRPC API port (TF Serving's --port)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--engine", choices=["local", "tfserving"], default="local",
                   help="tfserving = exec tensorflow_model_server (must be on PATH)")
    s.add_argument("--poll-seconds", type=float, default=2.0,
                   help="how often to look for new versions and config changes")
    s.add_argument("--enable-batching", action="store_true",
                   help="merge concurrent requests into batched calls (TF Serving's --enable_batching)")
    s.add_argument("--batching-parameters-file", default=None,
                   help="BatchingParameters text proto, e.g. serving/config/batching_parameters.txt")
    g = s.add_argument_group("limits (docs/serving-faults.md)")
    g.add_argument("--max-body-bytes", type=int, default=_D.max_body_bytes, help="REST body limit (413 above)")
    g.add_argument("--read-timeout-seconds", type=float, default=_D.read_timeout_s,
                   help="time to receive one whole REST request; keep-alive idle limit (408 / close)")
    g.add_argument("--max-connections", type=int, default=_D.max_connections,
                   help="open REST connections (oldest idle one closed at the cap; 503 if all busy)")
    g.add_argument("--rest-api-num-threads", type=int, default=_D.max_concurrent_requests,
                   help="REST requests executing at once (503 after --queue-timeout-seconds)")
    g.add_argument("--queue-timeout-seconds", type=float, default=_D.queue_timeout_s,
                   help="how long a REST request waits for a free thread (503 after it)")
    g.add_argument("--rest-api-timeout-in-ms", type=int, default=_D.rest_api_timeout_ms,
                   help="REST request deadline (504 after it)")
    g.add_argument("--grpc-max-threads", type=int, default=_D.grpc_max_threads, help="gRPC worker threads")
    g.add_argument("--grpc-max-concurrent-rpcs", type=int, default=_D.grpc_max_concurrent_rpcs,
                   help="RPCs admitted at once (RESOURCE_EXHAUSTED beyond)")
    g.add_argument("--grpc-max-message-bytes", type=int, default=_D.grpc_max_message_bytes,
                   help="largest gRPC request or response (RESOURCE_EXHAUSTED above)")
    g.add_argument("--max-json-depth", type=int, default=_D.max_json_depth, help="JSON nesting depth (400 above)")
    g.add_argument("--max-json-elements", type=int, default=_D.max_json_elements,
                   help="values in one JSON body (400 above)")
    g.add_argument("--max-tensor-elements", type=int, default=_D.max_tensor_elements,
                   help="elements of one input tensor, REST or gRPC (400 above)")
    g.add_argument("--max-image-pixels", type=int, default=_D.max_image_pixels,
                   help="width x height x frames of one image, read from its header (400 above)")
    g.add_argument("--drain-timeout-seconds", type=float, default=_D.drain_timeout_s,
                   help="on SIGTERM: time for in-flight requests before exiting")
    g.add_argument("--max-num-load-retries", type=int, default=5, help="as TF Serving's flag")
    g.add_argument("--load-retry-interval-seconds", type=float, default=60.0,
                   help="first retry delay of a failed load; doubles per attempt (max 10x)")


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The Limits the flags ask for (defaults for flags a caller's Namespace lacks)."""
    def g(name, default):
        value = getattr(args, name, None)
        return default if value is None else value

    return Limits(
        max_body_bytes=g("max_body_bytes", _D.max_body_bytes),
        read_timeout_s=g("read_timeout_seconds", _D.read_timeout_s),
        max_connections=g("max_connections", _D.max_connections),
        max_concurrent_requests=g("rest_api_num_threads", _D.max_concurrent_requests),
        queue_timeout_s=g("queue_timeout_seconds", _D.queue_timeout_s),
        rest_api_timeout_ms=g("rest_api_timeout_in_ms", _D.rest_api_timeout_ms),
        grpc_max_threads=g("grpc_max_threads", _D.grpc_max_threads),
        grpc_max_concurrent_rpcs=g("grpc_max_concurrent_rpcs", _D.grpc_max_concurrent_rpcs),
        grpc_max_message_bytes=g("grpc_max_message_bytes", _D.grpc_max_message_bytes),
        max_json_depth=g("max_json_depth", _D.max_json_depth),
        max_json_elements=g("max_json_elements", _D.max_json_elements),
        max_tensor_elements=g("max_tensor_elements", _D.max_tensor_elements),
        max_image_pixels=g("max_image_pixels", _D.max_image_pixels),
        drain_timeout_s=g("drain_timeout_seconds", _D.drain_timeout_s),
    )


def _exec_tfserving(args: argparse.Namespace) -> int:
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
        return _refuse("--engine tfserving needs `tensorflow_model_server` on PATH (see docs/serving.md: "
                       "serving/docker/Dockerfile.scann); use --engine local here")
    if args.host not in ("0.0.0.0", ""):
        print(f"note: tensorflow_model_server binds all interfaces, not only {args.host}", file=sys.stderr)
    argv = [binary, f"--port={args.grpc_port}", f"--rest_api_port={args.rest_port}",
            f"--file_system_poll_wait_seconds={max(1, int(round(args.poll_seconds)))}"]
    if getattr(args, "model_config_file", None):
        argv += [f"--model_config_file={os.path.abspath(args.model_config_file)}",
                 f"--model_config_file_poll_wait_seconds={max(1, int(round(args.poll_seconds)))}"]
    else:
        argv += [f"--model_name={args.model_name}", f"--model_base_path={os.path.abspath(args.model_base_path)}"]
    if getattr(args, "rest_api_timeout_in_ms", None):
        argv.append(f"--rest_api_timeout_in_ms={args.rest_api_timeout_in_ms}")
    if getattr(args, "grpc_max_threads", None):
        argv.append(f"--grpc_max_threads={args.grpc_max_threads}")
    if getattr(args, "rest_api_num_threads", None):
        argv.append(f"--rest_api_num_threads={args.rest_api_num_threads}")
    if getattr(args, "enable_batching", False):
        argv.append("--enable_batching=true")
        if args.batching_parameters_file:
            argv.append(f"--batching_parameters_file={os.path.abspath(args.batching_parameters_file)}")
    sys.stdout.flush()
    os.execv(binary, argv)
    return 0  # pragma: no cover


def main(args: argparse.Namespace) -> int:
    """`posters serve`: serve until SIGINT/SIGTERM, then drain.

    Args:
        args: the parsed `posters serve` flags.

    Returns:
        0 after a clean drain, 1 if requests were still running at the drain deadline, 2 on bad flags
        or a port that cannot be bound (checked before any model loads).
    """
    from poster_similarity.serving.server.model_server import ModelServer

    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(level)  # `posters -v` configured the root logger at INFO already
    config_file = getattr(args, "model_config_file", None)
    if config_file is None:
        if not getattr(args, "model_base_path", None):
            return _refuse("give --model-base-path or --model-config-file")
        if not valid_model_name(args.model_name):
            return _refuse(f"invalid --model-name {args.model_name!r}")
        if not os.path.isdir(args.model_base_path):
            return _refuse(f"--model-base-path {args.model_base_path} is not a directory")
    for flag, port in (("--rest-port", args.rest_port), ("--grpc-port", args.grpc_port)):
        if port is not None and not 0 <= port <= 65535:
            return _refuse(f"{flag} {port}: a port is 0..65535 (0 = any free port)")
    if args.rest_port == args.grpc_port and args.rest_port:
        return _refuse(f"--rest-port and --grpc-port are both {args.rest_port}: give two ports")
    if getattr(args, "engine", "local") == "tfserving":
        return _exec_tfserving(args)
    batching = None
    if getattr(args, "enable_batching", False):
        try:
            batching = (BatchingOptions.from_file(args.batching_parameters_file)
                        if args.batching_parameters_file else BatchingOptions())
        except (OSError, ValueError) as e:
            return _refuse(f"--batching-parameters-file: {e}")
    retry = RetryPolicy(max_retries=getattr(args, "max_num_load_retries", 5),
                        interval_s=getattr(args, "load_retry_interval_seconds", 60.0))
    try:
        srv = ModelServer(args.model_base_path, args.model_name, rest_port=args.rest_port,
                          grpc_port=args.grpc_port, host=args.host, poll_seconds=args.poll_seconds,
                          batching=batching, model_config_file=config_file, limits=limits_from_args(args),
                          retry=retry)
        srv.start()
    except PortError as e:  # refused before any model loads: the line names the port
        _explain(args, e.detail)
        return _refuse(str(e))
    except (OSError, RuntimeError, ValueError) as e:  # unreadable base path, bad config
        _explain(args)
        return _refuse(f"cannot start the server: {e}")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    for name, mv in srv.models.items():
        vs = mv.available_versions()
        print(f"serving {name} (version {vs[-1] if vs else 'none yet'}) from {mv.config.base_path}", flush=True)
    print(f"REST: http://{srv.host}:{srv.rest_port}/v1/models/{srv.model_name}", flush=True)
    print(f"gRPC: {srv.host}:{srv.grpc_port}", flush=True)
    if batching is not None:
        print(f"batching: up to {batching.max_batch_size} rows, {batching.batch_timeout_micros} µs timeout, "
              f"{batching.num_batch_threads} threads", flush=True)
    while not done.wait(0.5):
        pass
    print("draining: new requests refused, in-flight ones answered", flush=True)
    clean = srv.drain()
    srv.stop()
    print("stopped" if clean else "stopped (drain deadline passed with requests running)", flush=True)
    return 0 if clean else 1

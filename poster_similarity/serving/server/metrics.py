"""Prometheus metrics at TF Serving's default path, `GET /monitoring/prometheus/metrics`.

TF Serving exports its metrics there once a monitoring config enables Prometheus; the local server
always does, so a scraper (or a test) sees the same URL on both. What is exported, and why:

- `posters_serving_requests_total{api, code}`: every answer by API (rest/grpc) and status — the
  error rate an alert watches;
- `posters_serving_inflight_requests`: requests accepted and not yet answered — what a drain waits for;
- `posters_serving_draining`: 1 once SIGTERM arrived;
- `posters_serving_available_versions{model}`: versions that take traffic — 0 means the model is down.

Reading the metrics is not itself a request: it is not counted and is answered while draining.
"""
from __future__ import annotations

import threading
from collections import Counter

PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(families: list[tuple[str, str, str, list[tuple[dict, float]]]]) -> str:
    """Prometheus text exposition format (version 0.0.4).

    Args:
        families: (name, type, help, [(labels, value), ...]) per metric family.

    Returns:
        The exposition text, one `# HELP`/`# TYPE` header per family.
    """
    lines = []
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


class Metrics:
    """Thread-safe answer counters; the gauges are read from the server when rendered."""

    def __init__(self):
        self._lock = threading.Lock()
        self._answers: Counter = Counter()

    def answered(self, api: str, code: int | str) -> None:
        """Count one answer (`code`: an HTTP status for REST, a gRPC status name for gRPC)."""
        with self._lock:
            self._answers[(api, str(code))] += 1

    def text(self, server) -> str:
        """The exposition text for `server` (a ModelServer)."""
        with self._lock:
            answers = sorted(self._answers.items())
        return render([
            ("posters_serving_requests_total", "counter", "Answers by API and status code.",
             [({"api": api, "code": code}, n) for (api, code), n in answers]),
            ("posters_serving_inflight_requests", "gauge", "Requests accepted and not yet answered.",
             [({}, server.inflight)]),
            ("posters_serving_draining", "gauge", "1 once the server stopped taking requests.",
             [({}, 1.0 if server.draining.is_set() else 0.0)]),
            ("posters_serving_available_versions", "gauge", "Versions taking traffic, per model.",
             [({"model": name}, len(mv.available_versions())) for name, mv in sorted(server.models.items())]),
        ])

"""Building agent polls for controller tests."""

from __future__ import annotations

from typing import Any


def poll_body(
    instance: str,
    version: int = 0,
    *,
    service: str = "shop",
    stacks: dict[str, int] | None = None,
    cpu_s: float = 0.01,
    markers_per_s: float = 4.0,
    backend: str = "py-spy",
) -> dict[str, Any]:
    """A valid PollRequest as JSON; with a window unless ``version`` is 0."""
    body: dict[str, Any] = {
        "protocol_version": 1,
        "agent": {
            "service": service,
            "instance_id": instance,
            "host": "h",
            "pid": 7,
            "profiler_backend": backend,
        },
        "config_version": version,
    }
    if version:
        body["window"] = {
            "window_start": 1_790_000_000.0 + version,
            "window_seconds": 5.0,
            "profiler_cpu_seconds": cpu_s,
            "markers_per_s": markers_per_s,
            "samples_per_s": 20.0,
            "bytes_exported_per_s": 1000.0,
        }
        hist = stacks or {
            "main (app.py:1);handle (app.py:9);burn_cpu (work.py:3)": 40,
            "main (app.py:1);query (db.py:4)": 10,
        }
        body["stacks"] = {
            "stacks": [{"stack": s, "count": c} for s, c in hist.items()],
            "total_samples": sum(hist.values()),
            "depth": 64,
        }
    return body

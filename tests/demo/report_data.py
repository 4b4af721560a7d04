"""A hand-made session: a timeline in the controller's shape and a matching profile."""

from __future__ import annotations

T0 = 1_800_000_000.0


def timeline() -> dict:
    windows = []
    for i in range(12):
        interval = 50 if i < 5 else 10  # the policy raised the rate at window 5
        windows.append({
            "agent": "adaprof-demo-1",
            "config_version": 1 if i < 5 else 2,
            "params": {"sampling_interval_ms": interval, "stack_depth": 64, "trace_ratio": 1.0,
                       "span_filters": {"categories": ["db", "http"], "errors_only": False},
                       "marker_trigger": {"min_duration_ms": 0}},
            "state": {"window_start": T0 + 2 * i, "window_seconds": 2.0,
                      "profiler_cpu_seconds": 0.01 if i < 5 else 0.06,
                      "samples_per_s": 1000 / interval, "markers_per_s": 12.0,
                      "bytes_exported_per_s": 4000.0 + 100 * i},
            "reward": 0.1 * i - 0.3,
            "reward_terms": {"information": 0.05 * (12 - i)},
        })  # fmt: skip
    return {"session_id": "s-1", "windows": windows}


COLLAPSED = {
    "main;serve;price_items (otel_adaprof/demo/workload.py:48)": 40.0,
    "main;serve;parse_catalog (otel_adaprof/demo/workload.py:36)": 30.0,
    "main;serve;peer;compute_tax (otel_adaprof/demo/workload.py:60)": 10.0,
    "main;serve;render_invoice (otel_adaprof/demo/workload.py:70)": 20.0,
    "main;serve;<select & escape> (x.py:1)": 5.0,
}

"""``bench/slow_span_capture.py``: its coverage figure, computed from hand-made spans.

The figure is the share of each operation's slowest 10 % of server spans that carry at
least one sample; the full run (six demo services, minutes) is in docs/benchmarks.md.
"""

from __future__ import annotations

import json

from tests.support.bench_scripts import load


def _bench():
    return load("slow_span_capture")


def _row(service: str, name: str, ms: float, samples: int | None, kind: str = "SERVER") -> str:
    attrs = [] if samples is None else [
        {"key": "adaprof.marker", "value": {"boolValue": True}},
        {"key": "adaprof.sample_count", "value": {"intValue": str(samples)}},
    ]  # fmt: skip
    return json.dumps({
        "service": service, "name": name, "kind": f"SPAN_KIND_{kind}",
        "startTimeUnixNano": "1000000000", "endTimeUnixNano": str(1000000000 + int(ms * 1e6)),
        "attributes": attrs,
    })  # fmt: skip


def test_coverage_takes_each_operations_slowest_tenth(tmp_path):
    rows = []
    # GET /a: 20 spans of 1..20 ms; its slowest 2 are 20 and 19 ms: one has samples.
    for ms in range(1, 21):
        rows.append(_row("s", "GET /a", ms, 3 if ms == 20 else (5 if ms < 5 else None)))
    # GET /b: 10 spans of 100..109 ms; its slowest (109 ms) has samples. Internal spans
    # (even slow ones without samples) do not count.
    for ms in range(100, 110):
        rows.append(_row("s", "GET /b", ms, 7 if ms == 109 else None))
    rows.append(_row("s", "parse", 500, None, kind="INTERNAL"))
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(rows) + "\nnot json\n")
    got = _bench().coverage(path)["s"]
    assert (got["server_spans"], got["slowest"], got["covered"]) == (30, 3, 2)
    assert abs(got["coverage"] - 2 / 3) < 1e-9
    assert abs(got["mean_samples"] - (3 + 0 + 7) / 3) < 1e-9

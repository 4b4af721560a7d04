"""The benchmark's figures on hand-made data."""

from __future__ import annotations

import pytest

from otel_adaprof.demo.bench import CONFIGS, STATIC_PARAMS, markdown_table
from otel_adaprof.demo.bench_figures import (
    carries_samples,
    detection_time,
    efficiency,
    marker_coverage,
    profile_diff,
)


def span(start_s: float, dur_ms: float, samples: int | None, kind="SPAN_KIND_SERVER"):
    attrs = [] if samples is None else [{"key": "adaprof.sample_count",
                                          "value": {"intValue": str(samples)}}]  # fmt: skip
    start = int(start_s * 1e9)
    return {"kind": kind, "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + int(dur_ms * 1e6)), "attributes": attrs}  # fmt: skip


def test_static_configurations_are_what_the_spec_says():
    assert CONFIGS == ("off", "static-100", "static-10", "static-1", "heuristic", "adaptive")
    assert STATIC_PARAMS["off"].rate_hz == 0
    assert [STATIC_PARAMS[f"static-{n}"].rate_hz for n in (100, 10, 1)] == [100, 10, 1]
    assert STATIC_PARAMS["static-100"].stack_depth == 128


def test_detection_time_needs_half_the_true_share_since_onset():
    snaps = [(0.0, {"m;parse_catalog": 100.0}),
             (5.0, {"m;parse_catalog": 110.0, "m;compress_report": 1.0}),
             (9.0, {"m;parse_catalog": 120.0, "m;compress_report": 9.0})]  # fmt: skip
    # at 5 s: 1 of 11 gained samples (9 %) < 20 %; at 9 s: 9 of 29 (31 %) ≥ 20 %
    assert detection_time(snaps, onset=1.0, true_share=0.4) == 8.0
    assert detection_time(snaps[:2], onset=1.0, true_share=0.4) is None
    assert profile_diff({"a": 1.0}, {"a": 3.0}) == {}


def test_marker_coverage_counts_slow_server_spans_with_samples():
    spans = [span(10 + i * 0.1, 5.0, None) for i in range(18)]
    spans += [span(11.0, 50.0, 2), span(11.1, 60.0, 0)]
    spans += [span(11.2, 99.0, 5, kind="SPAN_KIND_CLIENT"), span(30.0, 80.0, 1)]
    assert marker_coverage(spans, 10.0, 20.0) == 0.5
    assert marker_coverage(spans, 50.0, 60.0) is None
    assert carries_samples({"events": [{"name": "adaprof.samples"}]})
    assert not carries_samples({"attributes": [{"key": "http.method",
                                                "value": {"stringValue": "GET"}}]})  # fmt: skip


def test_efficiency_and_table():
    assert efficiency(200, 96) == pytest.approx(0.48)
    assert efficiency(0, 96) is None
    result = {"configurations": {
        "off": {"steady": {"profiler_cpu": 0.0, "samples": 0}, "_run": {"sessions": 1}},
        "adaptive": {"steady": {"profiler_cpu": 0.012, "samples": 40, "profile_error_l1": 0.2},
                     "_run": {"hot_path_detect_s": 4.5, "sessions": 1}},
    }}  # fmt: skip
    table = markdown_table(result)
    assert "| adaptive | steady | 0.012 |" in table
    assert "| adaptive | 4.5 | 1 |" in table and "| off | – | 1 |" in table

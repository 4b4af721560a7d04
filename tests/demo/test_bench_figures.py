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
    request_coverage,
    sampled_requests,
)
from otel_adaprof.demo.bench_verdict import verdict, verdict_markdown
from otel_adaprof.demo.loadgen import REQUEST_ID_ATTRIBUTE, RequestRecord


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
        "off": {"steady": {"profiler_cpu": 0.0, "samples": 0}, "_run": {"params_changes": 0}},
        "adaptive": {"steady": {"profiler_cpu": 0.012, "samples": 40, "profile_error_l1": 0.2},
                     "_run": {"hot_path_detect_s": 4.5, "params_changes": 3}},
    }}  # fmt: skip
    table = markdown_table(result)
    assert "| adaptive | steady | 0.012 |" in table
    assert "| adaptive | 4.5 | 3 |" in table and "| off | – | 0 |" in table


def _server(trace: str, rid: str | None, samples: int | None) -> dict:
    value = {"arrayValue": {"values": [{"stringValue": rid}]}}
    attrs = [] if rid is None else [{"key": REQUEST_ID_ATTRIBUTE, "value": value}]
    s = span(1.0, 10.0, samples)
    s["traceId"] = trace
    s["attributes"] = s["attributes"] + attrs
    return s


def test_slow_request_coverage_counts_every_request_sent_and_dropped_traces_as_uncovered():
    # 40 requests sent; the slowest tenth are r36..r39 (by client latency)
    reqs = [RequestRecord(f"r{i}", "p", float(i), float(i), True) for i in range(40)]
    spans = [
        _server("t36", "r36", 3),  # sampled on the server span
        _server("t37", "r37", None),  # exported, its child carries the sample
        {**span(1.0, 5.0, 1, kind="SPAN_KIND_INTERNAL"), "traceId": "t37"},
        _server("t38", "r38", None),  # exported, no sample anywhere
        # r39's trace was dropped by the sampler: no span at all
        _server("t5", "r5", 2),  # a fast request with samples does not count
    ]
    sampled = sampled_requests(spans)
    assert sampled == {"r36", "r37", "r5"}
    assert request_coverage(reqs, sampled, "p") == 0.5
    # a failed request is uncovered whatever its spans say
    reqs[39] = RequestRecord("r39", "p", 39.0, 39.0, False)
    assert request_coverage(reqs, sampled | {"r39"}, "p") == 0.5
    assert request_coverage(reqs, sampled, "other") is None


def test_verdict_ratios_against_static_100():
    def conf(cpu, l1, cov, detect):
        phase = {"profiler_cpu": cpu, "profile_error_l1": l1, "slow_request_coverage": cov}
        return {"steady": phase, "hot_path": phase, "_run": {"hot_path_detect_s": detect}}

    result = {"settings": {"phase_scale": 1.0}, "configurations": {
        "off": conf(0.0, None, 0.0, None),
        "static-100": conf(0.3, 0.1, 0.8, 4.0),
        "static-10": conf(0.05, 0.3, 0.2, 8.0),
        "static-1": conf(0.02, 0.9, 0.05, None),
        "heuristic": conf(0.1, 0.2, 0.3, 6.0),
        "adaptive": conf(0.12, 0.14, 0.7, 5.0),
    }}  # fmt: skip
    v = verdict(result)
    a = v["adaptive"]
    assert a["cpu_ratio"] == 0.4 and a["detect_ratio"] == 1.25
    assert a["checks"] == {"l1": True, "detection": True, "coverage": True, "cpu": True}
    assert a["targets_met"] and not v["static-10"]["targets_met"]
    # per CPU-second: L1 x CPU 0.0168 vs static-10's 0.015 (behind), coverage/CPU ahead
    assert a["ahead_per_cpu_second"]["static-10"] == {
        "l1_x_cpu": False, "detect_x_cpu": False, "coverage_per_cpu": True}  # fmt: skip
    assert a["ahead_per_cpu_second"]["static-1"]["detect_x_cpu"] is True  # never detected
    # with phases 4x longer the CPU bound is 0.2x
    result["settings"]["phase_scale"] = 4.0
    assert verdict(result)["adaptive"]["checks"]["cpu"] is False
    # the sessions' budget, on average over the run: adaptive's 0.12 is over 0.1, the
    # static configurations have none to keep
    result["budget_cpu"] = 0.1
    kept = verdict(result)
    assert kept["adaptive"]["checks"]["budget"] is False and not kept["adaptive"]["targets_met"]
    assert kept["adaptive"]["run_cpu"] == 0.12 and "budget" not in kept["static-10"]["checks"]
    assert "| 1.2 | yes, yes, yes, **no**, **no** |" in verdict_markdown(kept)
    result["budget_cpu"] = 0.12
    assert verdict(result)["adaptive"]["checks"]["budget"] is True
    del result["budget_cpu"]
    assert "adaptive" in verdict_markdown(v)
    assert "without samples" not in verdict_markdown(v)
    # a phase the configuration took no samples in fails L1 and the table says so
    # (its worst ratio over the other phases alone read as if it had passed there)
    result["configurations"]["adaptive"]["hot_path"] = {
        "profiler_cpu": 0.12, "profile_error_l1": None, "slow_request_coverage": 0.7}  # fmt: skip
    blind = verdict(result)
    assert blind["adaptive"]["checks"]["l1"] is False
    assert "| 1.4 (1 phase without samples) |" in verdict_markdown(blind)


def test_a_phase_profile_holds_the_windows_wholly_inside_it_read_from_the_controller(tmp_path):
    """The windows come from a real controller's database (in-process poll handling on a
    SQLite file): a window that opened before the phase (or within a py-spy run's length
    after its start, whose report may hold earlier samples) or that closed after it counts
    in neither phase; a burst right after a change no longer lands in the phase before."""
    from otel_adaprof.controller.config import ControllerConfig
    from otel_adaprof.controller.polling import ControllerCore
    from otel_adaprof.controller.store import Store
    from otel_adaprof.demo.bench_figures import (
        reported_windows,
        windows_profile,
        windows_within,
    )
    from otel_adaprof.protocol import PollRequest
    from tests.controller.polls import poll_body

    db = tmp_path / "adaprof.db"
    core = ControllerCore(ControllerConfig(), Store(str(db)))
    version = core.poll(PollRequest.model_validate(poll_body("a-1", 0))).config_version
    t0, edge = 1_790_000_000.0, 1_790_000_012.0
    # windows of 5 s: two before the change, one across it (a burst of "new" right after
    # it, one "old" sample before), one after it
    reports = [
        (t0, {"main;old": 1}),
        (t0 + 5, {"main;old": 1}),
        (t0 + 10, {"main;old": 1, "main;new": 40}),
        (t0 + 15, {"main;new": 40}),
    ]
    for start, stacks in reports:
        body = poll_body("a-1", version, stacks=stacks)
        body["window"]["window_start"] = start
        version = core.poll(PollRequest.model_validate(body)).config_version
    core.close()
    windows = reported_windows(db, "shop")
    assert [(w[0], w[1]) for w in windows] == [(s, s + 5.0) for s, _ in reports]
    assert reported_windows(db, "another") == []
    before = windows_profile(windows_within(windows, t0 - 10, edge, lead_s=2.0))
    after = windows_profile(windows_within(windows, edge, t0 + 100, lead_s=2.0))
    assert before == {"main;old": 2.0} and after == {"main;new": 40.0}, (before, after)
    # read at the edges, the window across the change went to the phase before
    everything_before = windows_profile(windows_within(windows, t0 - 10, edge + 5, lead_s=0.0))
    assert everything_before["main;new"] == 40.0

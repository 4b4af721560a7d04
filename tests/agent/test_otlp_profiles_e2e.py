"""OTLP profiles end to end: a service under ``opentelemetry-instrument`` with the agent
(real py-spy) sends spans and profiles to a real OTLP/HTTP receiver on 127.0.0.1. Every
linked sample belongs to an exported span that carries ``pyroscope.profile.id`` with
that span's id, falls inside the span, and the stacks name the hot function."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest

from tests.support.instrumented import InstrumentedService
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.profiles import observations, resource_attributes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

HOT = "burn_cpu_hotspot"
PARAMS = {
    "sampling_interval_ms": 10,
    "stack_depth": 64,
    "span_filters": {"categories": ["internal", "http", "db"]},
}


def _drive(svc: InstrumentedService, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for path in ("/burn", "/query", "/healthz"):
            assert svc.get(path)[0] == 200


def test_profiles_link_samples_to_exported_spans(tmp_path):
    env = {"ADAPROF_PROFILES_EXPORT": "otlp", "ADAPROF_PARAMS": json.dumps(PARAMS)}
    with OtlpReceiver() as rx:
        svc = InstrumentedService(tmp_path, rx.endpoint, env=env, name="profiles-test").start()
        try:
            _drive(svc, 3.0)
            # the worker sends on its own (every 5 s), before any shutdown
            wait_until(rx.profile_requests, 20, "a profiles request while the service runs")
        finally:
            assert svc.stop() == 0, svc.log()[-2000:]  # a clean exit flushes the rest
        requests = rx.profile_requests()
        spans = {f"{span.span_id.hex()}": (span, attrs) for span, attrs in rx.spans()}

    assert "OTLP profiles stay off" not in svc.log()
    samples = [s for request in requests for s in observations(request)]
    linked = [s for s in samples if s.span_id]
    assert linked and len(linked) == len(samples)  # the agent sends linked samples only

    for request in requests:
        assert resource_attributes(request)["service.name"] == "profiles-test"
        d = request.dictionary
        profile = request.resource_profiles[0].scope_profiles[0].profiles[0]
        assert d.string_table[profile.sample_type.type_strindex] == "samples"
        assert d.string_table[profile.period_type.type_strindex] == "cpu"
        assert d.string_table[profile.period_type.unit_strindex] == "nanoseconds"
        assert profile.period == 10_000_000

    # every linked sample's span was exported and carries pyroscope.profile.id = its id
    per_span: dict[str, list] = defaultdict(list)
    for sample in linked:
        assert sample.span_id in spans, f"sample linked to unknown span {sample.span_id}"
        span, attrs = spans[sample.span_id]
        assert attrs.get("pyroscope.profile.id") == sample.span_id
        assert span.trace_id.hex() == sample.trace_id
        assert span.start_time_unix_nano <= sample.time_unix_nano <= span.end_time_unix_nano
        per_span[sample.span_id].append(sample)
    # and every span carrying the id has its samples in the profiles
    marked = {sid for sid, (_s, attrs) in spans.items() if "pyroscope.profile.id" in attrs}
    assert marked == set(per_span)

    # the stacks name the hot function, on the "burn" spans: the innermost marker span
    # takes the sample, the server span around it gets what ran outside "burn" (a few
    # samples placed a few ms past a span's end land on the next span of the thread)
    hot = [s for s in linked if any(HOT in frame for frame in s.stack)]
    assert len(hot) >= 20, len(hot)
    on_burn = sum(spans[s.span_id][0].name == "burn" for s in hot)
    assert on_burn >= 0.75 * len(hot), (on_burn, len(hot))
    burn_spans = [sid for sid, samples in per_span.items() if spans[sid][0].name == "burn"]
    assert burn_spans
    leaves = [s.stack[-1] for sid in burn_spans for s in per_span[sid]]
    assert sum(HOT in leaf for leaf in leaves) >= 0.75 * len(leaves), leaves[:20]

    # a sample is in one span only: no (time, stack) twice within a trace
    seen: dict[tuple[str, int, tuple[str, ...]], str] = {}
    for s in linked:
        key = (s.trace_id, s.time_unix_nano, s.stack)
        assert seen.setdefault(key, s.span_id) == s.span_id, key

"""Long py-spy segments with the real binary, against this test process.

* a window's close, and a new config version whose py-spy knobs (rate, profile mode)
  are the same, do not restart py-spy (its starts are counted);
* the samples of a segment that spans several windows and versions land in the
  histogram under the version in force when each was taken: once each, none lost, the
  earlier versions' as late stacks of the next report;
* a change of py-spy's knobs still cuts the segment within a sampling interval;
* a marker span does not wait for a long segment beyond the join's hold bound.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler.supervisor import Profiler
from otel_adaprof.params import Params

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
pytestmark = pytest.mark.skipif(not Path(PY_SPY).exists(), reason="needs the py-spy binary")

#: 50 Hz, cpu mode; with 1000 samples per segment the planned segment is 20 s, cut at 30.
P50 = Params(sampling_interval_ms=20, profile_mode="cpu")


def _profiler(live: LiveParams, store: SampleStore) -> Profiler:
    return Profiler(
        live, store, choice="py-spy", segment_s=2, segment_max_s=30, segment_samples=1000,
        clock_beacon=False,
    )  # fmt: skip


def _wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(cond())


def _window(profiler: Profiler, store: SampleStore, version: int) -> int:
    """What the poller does at a window's close: pause, take the histogram, resume."""
    profiler.pause()
    total = store.take_histogram(depth=8, version=version).total_samples
    profiler.resume()
    return total


def test_window_closes_and_same_knob_versions_do_not_restart_py_spy(spinner):
    live = LiveParams(P50)
    live.apply(P50, version=1, session_id=None)
    store = SampleStore()
    profiler = _profiler(live, store)
    assert profiler.segment_length(50) == 20
    profiler.start()
    try:
        assert _wait(lambda: profiler.starts == 1, 10)
        for version in (1, 2, 3):
            time.sleep(0.7)
            _window(profiler, store, version)  # a window's close...
            live.apply(P50, version=version + 1, session_id=None)  # ...and a new version
            assert profiler.pending_since() is not None  # the segment is in flight
        time.sleep(0.5)
        assert profiler.starts == 1 and profiler.runs == 0 and profiler.cuts == 0
        # py-spy's knobs change (25 Hz): the segment is cut within an interval
        live.apply(Params(sampling_interval_ms=40), version=5, session_id=None)
        assert _wait(lambda: profiler.runs == 1, 2.0)
        assert profiler.cuts == 1
        assert _wait(lambda: profiler.starts == 2, 5)
    finally:
        profiler.stop()


def test_samples_of_a_segment_spanning_windows_keep_their_version(spinner):
    live = LiveParams(P50)
    live.apply(P50, version=1, session_id=None)
    store = SampleStore()
    profiler = _profiler(live, store)
    profiler.start()
    try:
        assert _wait(lambda: profiler.starts == 1, 10)
        time.sleep(1.5)  # attached, sampling under v1
        in_reports = _window(profiler, store, 1)  # v1's report: its samples are in flight
        live.apply(P50, version=2, session_id=None)
        v2_from = time.time()
        time.sleep(1.5)
        in_reports += _window(profiler, store, 2)  # v2's report: the same
        live.apply(P50, version=3, session_id=None)
        v3_from = time.time()
        time.sleep(1.0)
        assert profiler.starts == 1 and profiler.runs == 0  # one segment all along
        # the next version turns profiling off: the segment is cut, its samples come in
        live.apply(Params(sampling_interval_ms=0), version=4, session_id=None)
        assert _wait(lambda: profiler.runs == 1, 3.0)
        assert _wait(lambda: profiler.pending_since() is None, 3.0)
        in_reports += _window(profiler, store, 4)
        late = {item.config_version: item for item in store.take_late(depth=8)}
    finally:
        profiler.stop()
    assert in_reports == 0  # nothing of v1-v3 was credited to another version's report
    assert set(late) == {1, 2, 3}, late
    counts = {v: late[v].stacks.total_samples for v in late}
    # 50 Hz on a thread that holds the GIL: about 75, 75 and 50 samples
    assert counts[1] > 20 and counts[2] > 40 and counts[3] > 25, counts
    # each sample once: the histograms add up to every CPU sample the store took
    assert sum(counts.values()) == store.cpu_samples_added, (counts, store.cpu_samples_added)
    # each under the version in force when it was taken (py-spy's clock: ~50 ms)
    assert late[1].taken_to <= v2_from + 0.05 <= late[2].taken_from + 0.1, late
    assert late[2].taken_to <= v3_from + 0.05 <= late[3].taken_from + 0.1, late


def test_marker_spans_leave_at_the_hold_bound_while_a_long_segment_runs(spinner):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_adaprof.instrumentation.join.span_join import SpanJoin
    from otel_adaprof.instrumentation.spans.markers import MarkerBook, MarkerProcessor

    live, book, store = LiveParams(P50), MarkerBook(), SampleStore()
    profiler = _profiler(live, store)  # 20 s segments
    memory = InMemorySpanExporter()
    join = SpanJoin(SimpleSpanProcessor(memory), book, store, live, hold_s=1.5,
                    profiling=lambda: profiler.active)  # fmt: skip
    provider = TracerProvider()
    provider.add_span_processor(MarkerProcessor(live, book))
    provider.add_span_processor(join)
    profiler.start()
    try:
        assert _wait(lambda: profiler.starts == 1, 10)
        time.sleep(0.5)
        with provider.get_tracer("t").start_as_current_span("work"):
            time.sleep(0.05)
        ended = time.monotonic()
        assert memory.get_finished_spans() == ()  # held: its samples are in flight
        assert _wait(lambda: len(memory.get_finished_spans()) == 1, 5.0)
        waited = time.monotonic() - ended
        assert 1.3 <= waited <= 2.5, waited  # the hold bound, not the 20 s segment
        assert join.counters.timed_out == 1 and profiler.runs == 0
        span = memory.get_finished_spans()[0]
        assert span.attributes is not None and span.attributes["adaprof.marker"] is True
    finally:
        provider.shutdown()
        profiler.stop()

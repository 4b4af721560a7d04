"""The fast loop reads the change signals as often as they can form an observation.

A real process with the agent (profiler off, no capture) and a request loop, first at
about 8 requests/s, then at about 80: at the slow rate the loop wakes for the signals
about once per 12 requests (capped at 1.25 s), not four times a second as the fixed
0.25 s tick did; at the fast rate it reads every 0.25 s, as before. With the native
profiler's slow-span watcher in the watch, the loop wakes for those readings only.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import time
import weakref

from otel_adaprof.instrumentation.control.fast_loop import FastLoop
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler.clock_beacon import ClockBeacon
from otel_adaprof.instrumentation.profiler.slow_spans import SlowSpanCapture
from otel_adaprof.instrumentation.spans.latency import LatencyTracker
from otel_adaprof.instrumentation.threads import ThreadLiveness
from otel_adaprof.params import Params
from tests.support.native import needs_native

PROBE = textwrap.dedent(
    """
    import json, threading, time
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    agent = otel_adaprof.configure(
        service_name="ticks", exporter=InMemorySpanExporter(),
        params={"sampling_interval_ms": 0, "burst_sensitivity": 8},
        settings=AgentSettings(profiler="off"))
    tracer = trace.get_tracer("ticks")
    loop = agent.fast_loop
    gap = [0.125]
    stop = threading.Event()

    def requests():
        while not stop.is_set():
            with tracer.start_as_current_span("GET /x", kind=trace.SpanKind.SERVER):
                time.sleep(0.001)
            time.sleep(gap[0])

    threading.Thread(target=requests, daemon=True).start()
    out = {}
    for name, g in (("slow", 0.125), ("fast", 0.0115)):
        gap[0] = g
        time.sleep(3.0)  # the rate settles
        t0, ticks0, seen0 = time.monotonic(), loop.ticks, agent.counters.requests
        time.sleep(5.0)
        seconds = time.monotonic() - t0
        out[name] = {"ticks_per_s": (loop.ticks - ticks0) / seconds,
                     "requests_per_s": (agent.counters.requests - seen0) / seconds,
                     "estimate": loop.request_rate, "period": loop.signal_period()}
    stop.set()
    print(json.dumps(out))
    """
)


def test_signal_readings_follow_the_request_rate():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    slow, fast = got["slow"], got["fast"]
    assert 2 <= slow["requests_per_s"] <= 9, got  # the loop ran about as asked (or slower)
    assert 0.6 * slow["requests_per_s"] <= slow["estimate"] <= 1.5 * slow["requests_per_s"], got
    # 12 requests at about 8/s: one reading per 1.25 s (at most), not four a second
    assert slow["period"] >= 1.0 and slow["ticks_per_s"] <= 1.5, got
    if fast["requests_per_s"] >= 50:  # a loaded machine may not serve 80/s
        assert fast["period"] <= 0.3 and fast["ticks_per_s"] >= 2.5, got


WATCH_PROBE = textwrap.dedent(
    """
    import json, threading, time
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    agent = otel_adaprof.configure(
        service_name="ticks", exporter=InMemorySpanExporter(),
        params={"sample_scope": "requests", "sampling_interval_ms": 0,
                "marker_trigger": {"latency_percentile": 90}, "slow_span_interval_ms": 50,
                "burst_sensitivity": 8, "glimpse_sensitivity": 2.5},
        settings=AgentSettings(profiler="native"))
    tracer = trace.get_tracer("ticks")
    loop = agent.fast_loop
    stop = threading.Event()

    def requests():
        while not stop.is_set():
            with tracer.start_as_current_span("GET /x", kind=trace.SpanKind.SERVER):
                time.sleep(0.002)
            time.sleep(0.15)

    threading.Thread(target=requests, daemon=True).start()
    time.sleep(4.0)  # the rate settles, the watcher is on
    t0, ticks0, seen0 = time.monotonic(), loop.ticks, agent.counters.requests
    time.sleep(8.0)
    seconds = time.monotonic() - t0
    stop.set()
    print(json.dumps({"ticks_per_s": (loop.ticks - ticks0) / seconds,
                      "requests_per_s": (agent.counters.requests - seen0) / seconds,
                      "period": loop.signal_period(),
                      "watching": type(loop.capture.open_spans).__name__}))
    """
)


@needs_native
def test_with_the_native_watcher_the_loop_wakes_for_its_signal_readings_only():
    """The native watcher reads the slow spans in its own C thread; the loop only keeps
    its triggers up to date, which its signal readings do. It used to plan a tick of its
    own a second as well: at about 6 requests/s (a reading per 1.25 s) it woke 1.6-1.8
    times a second, not 0.8 (session 53, docs/benchmarks.md)."""
    done = subprocess.run(
        [sys.executable, "-c", WATCH_PROBE], capture_output=True, text=True, timeout=90,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["watching"] == "NativeWatchIndex", got
    assert got["period"] >= 1.0, got  # 12 requests take more than a second
    assert got["ticks_per_s"] <= 1.0 / got["period"] + 0.3, got


def _loop(live: LiveParams, beacon: ClockBeacon | None = None) -> FastLoop:
    """A fast loop with no requests: it reads the signals every 1.25 s (not started)."""
    latency = LatencyTracker()
    capture = SlowSpanCapture(live, SampleStore(), latency, enable=lambda index: True)
    loop = FastLoop(live, capture, latency, counts=lambda: (0, 0), agent_threads=list,
                    beacon=beacon)  # fmt: skip
    loop.request_rate = 0.0
    return loop


def _within(predicate, seconds: float) -> float:
    """Seconds until ``predicate()`` held; fails after ``seconds``."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < seconds, f"not within {seconds} s"
        time.sleep(0.005)
    return time.monotonic() - t0


def test_the_clock_beacons_first_notes_do_not_wait_for_the_next_reading():
    """In cpu mode the clock beacon's notes ride on the loop's wake-ups; the loop may be
    asleep until its next signal reading (up to 1.25 s), and a py-spy run that starts
    meanwhile needs its notes from its first period: starting the beacon wakes it."""
    beacon = ClockBeacon(ThreadLiveness())
    loop = _loop(LiveParams(Params()), beacon)
    loop.start()
    try:
        time.sleep(0.3)  # asleep now, until its next reading
        beacon.track_cpu = True
        beacon.start()  # what the profiler does before a py-spy run in cpu mode
        assert beacon.hosted and beacon.liveness is not None
        liveness = beacon.liveness
        # at once, not at its next reading 0.95 s from here (a bound with room for the
        # suite's four workers on two cores)
        assert _within(lambda: liveness.snapshots > 0, 0.9) < 0.6
    finally:
        loop.stop()


def test_new_params_wake_the_loop_while_the_capture_sleeps_on_its_alarm():
    """Capture on, no span open: the loop sleeps on the capture's alarm until its next
    reading (1.25 s here). New params (a new trigger or interval, py-spy starting) are
    acted on at once, not at that reading."""
    live = LiveParams(Params(slow_span_interval_ms=50))
    loop = _loop(live)
    loop.start()
    try:
        time.sleep(0.3)  # asleep on the alarm now
        assert loop.capture.open_spans is not None
        ticks = loop.ticks
        live.apply(Params(slow_span_interval_ms=100), version=2, session_id=None)
        assert _within(lambda: loop.ticks > ticks, 0.9) < 0.6  # the reading: 0.95 s away
    finally:
        loop.stop()


def test_a_replaced_loop_is_not_kept_alive_by_the_params_it_listens_to():
    """The loop listens to params changes (they wake it); a loop replaced (a forked
    child's agent makes a new one on the same params) must not stay in memory."""
    live = LiveParams(Params())
    loop = _loop(live)
    ref = weakref.ref(loop)
    live.apply(Params(sampling_interval_ms=10), version=2, session_id=None)
    assert loop._kick.is_set()  # a change of params wakes it
    del loop
    gc.collect()
    assert ref() is None
    live.apply(Params(sampling_interval_ms=20), version=3, session_id=None)  # no error

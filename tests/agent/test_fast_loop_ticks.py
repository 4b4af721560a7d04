"""The fast loop reads the change signals as often as they can form an observation.

A real process with the agent (profiler off, no capture) and a request loop, first at
about 8 requests/s, then at about 80: at the slow rate the loop wakes for the signals
about once per 12 requests (capped at 1.25 s), not four times a second as the fixed
0.25 s tick did; at the fast rate it reads every 0.25 s, as before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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


def test_the_clock_beacons_first_notes_do_not_wait_for_the_next_reading():
    """In cpu mode the clock beacon's notes ride on the loop's wake-ups; the loop may be
    asleep until its next signal reading (up to 1.25 s), and a py-spy run that starts
    meanwhile needs its notes from its first period: starting the beacon wakes it."""
    import time

    from otel_adaprof.instrumentation.control.fast_loop import FastLoop
    from otel_adaprof.instrumentation.control.live_params import LiveParams
    from otel_adaprof.instrumentation.join.samples import SampleStore
    from otel_adaprof.instrumentation.profiler.clock_beacon import ClockBeacon
    from otel_adaprof.instrumentation.profiler.slow_spans import SlowSpanCapture
    from otel_adaprof.instrumentation.spans.latency import LatencyTracker
    from otel_adaprof.instrumentation.threads import ThreadLiveness
    from otel_adaprof.params import Params

    live, latency = LiveParams(Params()), LatencyTracker()
    beacon = ClockBeacon(ThreadLiveness())
    loop = FastLoop(live, SlowSpanCapture(live, SampleStore(), latency), latency,
                    counts=lambda: (0, 0), agent_threads=list, beacon=beacon)  # fmt: skip
    loop.request_rate = 0.0  # no requests: the loop reads the signals every 1.25 s
    loop.start()
    try:
        time.sleep(0.3)  # asleep now, until its next reading
        beacon.track_cpu = True
        t0 = time.monotonic()
        beacon.start()  # what the profiler does before a py-spy run in cpu mode
        assert beacon.hosted
        while beacon.liveness is not None and beacon.liveness.snapshots == 0:
            assert time.monotonic() - t0 < 0.5, "no note within 0.5 s of the start"
            time.sleep(0.005)
        assert time.monotonic() - t0 < 0.2
    finally:
        loop.stop()


def test_a_replaced_loop_is_not_kept_alive_by_the_params_it_listens_to():
    """The loop listens to params changes (they wake it); a loop replaced (a forked
    child's agent makes a new one on the same params) must not stay in memory."""
    import gc
    import weakref

    from otel_adaprof.instrumentation.control.fast_loop import FastLoop
    from otel_adaprof.instrumentation.control.live_params import LiveParams
    from otel_adaprof.instrumentation.join.samples import SampleStore
    from otel_adaprof.instrumentation.profiler.slow_spans import SlowSpanCapture
    from otel_adaprof.instrumentation.spans.latency import LatencyTracker
    from otel_adaprof.params import Params

    live, latency = LiveParams(Params()), LatencyTracker()
    loop = FastLoop(live, SlowSpanCapture(live, SampleStore(), latency), latency,
                    counts=lambda: (0, 0), agent_threads=list)  # fmt: skip
    ref = weakref.ref(loop)
    live.apply(Params(sampling_interval_ms=10), version=2, session_id=None)
    assert loop._kick.is_set()  # a change of params wakes it
    del loop
    gc.collect()
    assert ref() is None
    live.apply(Params(sampling_interval_ms=20), version=3, session_id=None)  # no error

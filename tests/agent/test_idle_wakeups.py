"""The agent's threads sleep while there is nothing to do (real threads, their wake-ups
counted by the kernel: voluntary context switches), and still act at once when there is.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler.supervisor import Profiler
from otel_adaprof.params import Params

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="counts wake-ups from /proc"
)

#: How long the wake-ups of an idle thread are counted (s).
WATCH_S = 1.5


def wakeups(native_id: int) -> int:
    """Voluntary context switches of a thread of this process so far (its sleeps)."""
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def wakeups_during(native_id: int, seconds: float) -> int:
    before = wakeups(native_id)
    time.sleep(seconds)
    return wakeups(native_id) - before


def wait_for(predicate, timeout: float = 2.0) -> float:
    """Seconds until ``predicate()`` held (polled every ms); fails after ``timeout``."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, "not within the timeout"
        time.sleep(0.001)
    return time.monotonic() - t0


def _idle_profiler() -> tuple[Profiler, LiveParams, SampleStore]:
    live, store = LiveParams(Params(sampling_interval_ms=0)), SampleStore()
    profiler = Profiler(live, store, choice="in-process", clock_beacon=False)
    profiler.start()
    assert profiler._thread is not None
    wait_for(lambda: profiler._paused.is_set())
    return profiler, live, store


def test_profiler_sleeps_while_profiling_is_off():
    # It used to look at the params every 0.2 s: ~7 wake-ups in 1.5 s.
    profiler, _live, _store = _idle_profiler()
    try:
        assert profiler._thread is not None and profiler._thread.native_id is not None
        assert wakeups_during(profiler._thread.native_id, WATCH_S) <= 1
    finally:
        profiler.stop()


def test_profiler_off_lets_the_watermark_follow_the_clock():
    profiler, _live, store = _idle_profiler()
    try:
        time.sleep(0.3)  # no tick moves it: it is the clock
        assert store.watermark_ns >= time.time_ns() - 20_000_000
    finally:
        profiler.stop()


def test_profiler_off_wakes_at_once_for_new_params_and_stop():
    profiler, live, store = _idle_profiler()
    try:
        time.sleep(0.3)
        live.apply(Params(sampling_interval_ms=10), version=2, session_id=None)
        took = wait_for(lambda: profiler._inproc is not None)
        assert took < 0.1
        assert not store._follows_clock  # sampling: the sampler moves the watermark
        live.apply(Params(sampling_interval_ms=0), version=3, session_id=None)
        wait_for(lambda: profiler._inproc is None)
        time.sleep(0.1)
    finally:
        t0 = time.monotonic()
        profiler.stop()
    assert time.monotonic() - t0 < 0.5
    assert profiler._thread is not None and not profiler._thread.is_alive()


def test_profiler_off_stops_promptly_however_stop_falls():
    # stop() may come between the loop's look at its stop flag and its (long) wait
    for k in range(20):
        profiler, _live, _store = _idle_profiler()
        time.sleep(0.001 * k)
        t0 = time.monotonic()
        profiler.stop()
        assert time.monotonic() - t0 < 0.5
        assert profiler._thread is not None and not profiler._thread.is_alive()

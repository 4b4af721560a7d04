"""The agent's threads sleep while there is nothing to do (real threads, their wake-ups
counted by the kernel: voluntary context switches), and still act at once when there is.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.poller import Poller
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.join.span_join import SpanJoin
from otel_adaprof.instrumentation.observe.observer import Counts, WindowObserver
from otel_adaprof.instrumentation.profiler.supervisor import Profiler
from otel_adaprof.instrumentation.spans.markers import MarkerBook, MarkerProcessor
from otel_adaprof.params import Params
from otel_adaprof.protocol import AgentIdentity

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
        # at once, not at the idle wait's next look (IDLE_WAIT_S, 5 s: 4.7 s from here);
        # the bound leaves room for a busy 2-core machine (0.116 s seen in CI at 0.1)
        assert took < 1.0
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


def test_profiler_off_sleeps_through_the_polls_pause_and_resume():
    # cut_rule="params": the poller's pause() and resume() around every poll have
    # nothing for it to do; resume() used to wake it at every poll
    profiler, _live, _store = _idle_profiler()
    try:
        assert profiler._thread is not None and profiler._thread.native_id is not None
        before = wakeups(profiler._thread.native_id)
        for _ in range(10):
            assert profiler.pause(timeout=0.1)
            profiler.resume()
            time.sleep(0.02)
        assert wakeups(profiler._thread.native_id) - before <= 1
    finally:
        profiler.stop()


def test_poller_without_a_controller_sleeps_until_stopped():
    live = LiveParams(Params())
    store = SampleStore()
    observer = WindowObserver(counts=Counts)
    poller = Poller(live, observer, _identity, store.take_histogram, controller_url=None,
                    window_s=0.5)  # fmt: skip
    poller.start()
    try:
        wait_for(lambda: poller.native_id is not None)
        assert poller.native_id is not None
        assert wakeups_during(poller.native_id, WATCH_S) <= 1  # it used to wake every window
    finally:
        t0 = time.monotonic()
        poller.stop()
    assert time.monotonic() - t0 < 0.2
    assert poller._thread is not None and not poller._thread.is_alive()


def _identity() -> AgentIdentity:
    return AgentIdentity(service="s", instance_id="s-1")


def _join(
    hold_s: float = 6.0,
) -> tuple[TracerProvider, InMemorySpanExporter, SpanJoin, SampleStore]:
    live, book, store = LiveParams(Params()), MarkerBook(), SampleStore()
    memory = InMemorySpanExporter()
    join = SpanJoin(SimpleSpanProcessor(memory), book, store, live, hold_s=hold_s)
    provider = TracerProvider()
    provider.add_span_processor(MarkerProcessor(live, book))
    provider.add_span_processor(join)
    return provider, memory, join, store


def _one_span(provider: TracerProvider) -> None:
    with provider.get_tracer("t").start_as_current_span("work"):
        pass


@pytest.mark.flaky(reruns=2)  # a bound in tens of ms on a shared 2-core machine
def test_join_worker_sleeps_with_nothing_held():
    # It used to look every 0.1 s whatever it held: ~15 wake-ups in 1.5 s.
    provider, memory, join, store = _join()
    store.follow_clock(True)  # profiling off: the span's samples are all in
    try:
        _one_span(provider)
        wait_for(lambda: len(memory.get_finished_spans()) == 1)
        assert join.native_id is not None
        assert wakeups_during(join.native_id, WATCH_S) <= 1
        _one_span(provider)  # a span held wakes it at once
        assert wait_for(lambda: len(memory.get_finished_spans()) == 2) < 0.05
    finally:
        provider.shutdown()


def test_join_worker_passes_once_a_second_while_no_sampler_runs():
    # Slow-span capture alone (py-spy off): a marker's samples are in when it ends. The
    # worker used to pass every 0.2 s, woken about twice per pass: 10 markers/s for 2 s
    # woke it ~16-20 times; now about once per CLOCK_TICK_S.
    provider, memory, join, store = _join()
    store.follow_clock(True)
    try:
        _one_span(provider)
        wait_for(lambda: len(memory.get_finished_spans()) == 1)
        assert join.native_id is not None
        before, sent = wakeups(join.native_id), []
        for _ in range(20):
            _one_span(provider)
            sent.append(time.monotonic())
            time.sleep(0.1)
        woke = wakeups(join.native_id) - before
        wait_for(lambda: len(memory.get_finished_spans()) == 21, timeout=2.0)
        late = time.monotonic() - sent[-1]
        assert woke <= 6, woke
        assert late < 1.2  # every marker goes on within about a second
    finally:
        provider.shutdown()


@pytest.mark.flaky(reruns=2)  # a bound in tens of ms on a shared 2-core machine
def test_join_worker_sleeps_until_the_watermark_passes_the_span():
    provider, memory, join, store = _join()
    try:
        _one_span(provider)
        wait_for(lambda: join.native_id is not None and join.held == 1)
        assert join.native_id is not None
        assert wakeups_during(join.native_id, WATCH_S) <= 1  # py-spy's run goes on
        assert memory.get_finished_spans() == ()
        store.set_watermark(time.time_ns())  # the run's samples are in
        assert wait_for(lambda: len(memory.get_finished_spans()) == 1) < 0.05
        assert join.counters.timed_out == 0
    finally:
        provider.shutdown()


@pytest.mark.flaky(reruns=2)  # a bound in tens of ms on a shared 2-core machine
def test_join_worker_sends_a_span_on_after_its_hold():
    provider, memory, join, _store = _join(hold_s=0.3)
    try:
        t0 = time.monotonic()
        _one_span(provider)
        wait_for(lambda: len(memory.get_finished_spans()) == 1)
        assert 0.29 <= time.monotonic() - t0 < 0.45
        assert join.counters.timed_out == 1
    finally:
        provider.shutdown()


@pytest.mark.flaky(reruns=2)  # a bound in tens of ms on a shared 2-core machine
def test_join_worker_stops_promptly():
    provider, _memory, join, _store = _join()
    _one_span(provider)
    wait_for(lambda: join._worker is not None and join._worker.is_alive())
    t0 = time.monotonic()
    join.stop()
    assert time.monotonic() - t0 < 0.2
    assert join._worker is not None and not join._worker.is_alive()
    provider.shutdown()


def test_store_wakes_a_waiter_when_the_watermark_passes():
    store, event = SampleStore(), threading.Event()
    store.set_watermark(1_000)
    store.wake_at(2_000, event)
    store.set_watermark(1_500)
    assert not event.is_set()
    store.set_watermark(2_000)
    assert event.is_set()
    event.clear()
    store.set_watermark(3_000)  # once
    assert not event.is_set()
    store.wake_at(2_500, event)  # passed already
    assert event.is_set()
    event.clear()
    store.wake_at(time.time_ns() + 10**9, event)
    store.follow_clock(True)
    assert not event.is_set()  # not yet the time
    store.wake_at(time.time_ns() - 1, event)
    assert event.is_set()

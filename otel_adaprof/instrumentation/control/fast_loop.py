"""The agent's fast loop: slow-span captures and the change signals, in one daemon thread.

About as often as the change signals can form an observation (every
:data:`~otel_adaprof.instrumentation.observe.change_signals.CPU_MIN_REQUESTS` requests
at the service's request rate, between :data:`SIGNAL_TICK_S` and
:data:`SIGNAL_TICK_MAX_S`: :meth:`FastLoop.signal_period`) it reads a few counters — the
process's CPU net of the agent's own threads, the requests and spans ended, the new
span durations — feeds them to the change signals and lets the burst reflex act on what
fired, so a burst starts within a tick or two of a change, not at the next poll. In
between, it runs the slow-span capture as often as ``slow_span_interval_ms`` asks while
a span is slow, and sleeps otherwise (a change of params, or the clock beacon's notes
starting to ride on it, wakes it at once). Its thread is one of the agent's: its CPU
is profiler overhead.

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> from otel_adaprof.instrumentation.join.samples import SampleStore
    >>> from otel_adaprof.instrumentation.spans.latency import LatencyTracker
    >>> live, latency = LiveParams(Params()), LatencyTracker()
    >>> loop = FastLoop(live, SlowSpanCapture(live, SampleStore(), latency), latency,
    ...                 counts=lambda: (0, 0), agent_threads=list)
    >>> loop.start(); loop.stop()
    >>> loop.ticks >= 1
    True
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.reflex import BurstReflex
from otel_adaprof.instrumentation.observe.agent_cpu import (
    name_os_thread,
    thread_cpu_seconds,
    thread_part,
)
from otel_adaprof.instrumentation.observe.change_signals import (
    CPU_MIN_REQUESTS,
    ChangeDetector,
    Inputs,
)
from otel_adaprof.instrumentation.observe.new_code import NewCode
from otel_adaprof.instrumentation.profiler.clock_beacon import ClockBeacon
from otel_adaprof.instrumentation.profiler.slow_spans import SlowSpanCapture
from otel_adaprof.instrumentation.spans.latency import LatencyTracker

log = logging.getLogger("otel_adaprof.agent")

#: Shortest time between two readings of the change signals (s): at a high request
#: rate, and until the rate is known.
SIGNAL_TICK_S = 0.25
#: Longest time between two readings of the change signals (s). A reading that forms
#: no observation (fewer than ``CPU_MIN_REQUESTS`` requests, or latencies, since the
#: last) only carries the counts on, and each reading is a wake-up of the loop's thread:
#: 0.2-0.36 ms of CPU on the benchmark machine, most of it the wake-up itself, not the
#: arithmetic (docs/benchmarks.md, "Watch mode: waking less"). At 10 requests/s the
#: former fixed 0.25 s tick woke the loop four times per observation.
SIGNAL_TICK_MAX_S = 1.25
#: Weight of the newest reading in the request rate that sets the tick (its noise at
#: 12 requests a reading is about 30 %: the tick follows the rate within a few readings).
RATE_ALPHA = 0.3
#: A signal tick is taken at a wake-up up to this much before it is due (s), rather
#: than at a wake-up of its own between two capture ticks.
SIGNAL_EARLY_S = 0.02
#: Waits up to this long are a ``time.sleep`` (s): a timed ``Event.wait`` costs about
#: twice the CPU per wake-up, and while spans are open the loop wakes every capture
#: interval (20 ms in the catalog). ``stop()`` waits at most this much longer.
SLEEP_MAX_S = 0.05


def threads_cpu_seconds(native_ids: list[int]) -> float:
    """CPU seconds of these threads of this process (their CPU-time clocks, else
    ``/proc``; a thread that exited counts nothing).

    >>> threads_cpu_seconds([threading.get_native_id()]) > 0
    True
    """
    return sum(thread_cpu_seconds(native) or 0.0 for native in native_ids)


def signal_period_for(request_rate: float | None) -> float:
    """Seconds between two readings of the change signals at ``request_rate`` (req/s).

    The time the service takes to end ``CPU_MIN_REQUESTS`` requests, so that a reading
    forms about one observation of CPU per request, within [:data:`SIGNAL_TICK_S`,
    :data:`SIGNAL_TICK_MAX_S`]: that observation is read when it is complete, as with a
    fixed quarter-second tick; a latency observation holds the spans ended since the
    last reading (16 or more).

    >>> signal_period_for(None)  # the rate is not known yet
    0.25
    >>> signal_period_for(20.0), signal_period_for(2.0), signal_period_for(400.0)
    (0.6, 1.25, 0.25)
    """
    if request_rate is None:
        return SIGNAL_TICK_S
    if request_rate <= 0.0:
        return SIGNAL_TICK_MAX_S
    return min(SIGNAL_TICK_MAX_S, max(SIGNAL_TICK_S, CPU_MIN_REQUESTS / request_rate))


def _wake(ref: weakref.ReferenceType[FastLoop]) -> None:
    loop = ref()
    if loop is not None:
        loop.wake()


class FastLoop:
    """One daemon thread: slow-span capture ticks, change signals and the burst reflex."""

    def __init__(
        self,
        live: LiveParams,
        capture: SlowSpanCapture,
        latency: LatencyTracker,
        *,
        counts: Callable[[], tuple[int, int]],
        agent_threads: Callable[[], list[int]],
        beacon: ClockBeacon | None = None,
        profiler_cpu: Callable[[], float] | None = None,
        one_level: Callable[[], bool] | None = None,
        new_code: NewCode | None = None,
        glimpse_on_new_code: Callable[[], bool] | None = None,
    ) -> None:
        self.live = live
        self.capture = capture
        self.latency = latency
        #: ``(requests, spans)`` ended since start.
        self.counts = counts
        self.agent_threads = agent_threads
        #: CPU seconds so far of the profiler's threads that :attr:`agent_threads` does
        #: not list (the native sampler's, stopped ones included): not the service's.
        self.profiler_cpu = profiler_cpu
        #: Whether the profiler costs the service's own threads nothing whatever its
        #: rate (the native sampler: its own thread, no GIL): then every rate is one
        #: profiling level and no switch relearns a baseline (:meth:`_level`).
        self.one_level = one_level
        #: The clock beacon whose cpu-mode notes ride on this loop's wake-ups
        #: (:meth:`ClockBeacon.visit`): one thread waking instead of two.
        self.beacon = beacon
        #: The own functions of the agent's CPU samples: new code seen wakes the loop
        #: (:meth:`wake`) and its next tick lets the reflex take a glimpse at once.
        self.new_code = new_code
        #: Whether new code starts a glimpse now (``None``: always). The agent says so
        #: with the native profiler only: with py-spy it is not measured (docs/agent.md).
        self.glimpse_on_new_code = glimpse_on_new_code
        self.detector = self._detector()
        self.reflex = BurstReflex(live)
        self.ticks = 0
        #: Wake-ups by how they came: ``alarm`` (slow-span capture on: the alarm of
        #: :class:`~otel_adaprof.instrumentation.spans.open_spans.OpenSpanIndex`, set by
        #: the loop's plan or by a starting span), ``timeout`` and ``timer`` (a sleep).
        self.wake_ups: dict[str, int] = {"alarm": 0, "timeout": 0, "timer": 0}
        self.native_id: int | None = None
        self.ident: int | None = None
        self._seen: dict[str, int] = {}
        #: Requests per second (smoothed over readings; ``None`` before two readings),
        #: and the last reading's time and request count.
        self.request_rate: float | None = None
        self._last_reading: tuple[float, int] | None = None
        #: Called (on this loop's thread, must not block) when a burst starts.
        self.on_burst: Callable[[], None] | None = None
        self._stop = threading.Event()
        #: Set to end a sleep early: a change of params (the capture switched on, a new
        #: trigger or level), or ``stop()``.
        self._kick = threading.Event()
        # weakly: a loop replaced (a forked child's agent makes a new one) is not kept
        ref = weakref.ref(self)
        live.on_change(lambda _in_force: _wake(ref))
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (a daemon; idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="adaprof-fast-loop", daemon=True)
        self._thread.start()
        if self._thread.native_id is not None:
            # named for the OS at once (``top -H``, the benchmarks), as the agent's CPU
            # accounting names it at its first window: ``adaprof-`` and its part
            name_os_thread(self._thread.native_id, thread_part(self._thread.name))
        if self.beacon is not None:
            self.beacon.host = "fast loop"  # the profiler moves its notes here (cpu mode)
            self.beacon.wake_host = self.wake  # its first notes are due at once

    def wake(self) -> None:
        """Wake the loop now, whichever way it sleeps (up to a signal reading, 1.25 s):
        new params, the clock beacon's notes starting to ride on it, stop. Never blocks."""
        self._kick.set()
        index = self.capture.open_spans
        if index is not None:
            index.wake_now()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread; a running burst ends and the capture index is removed."""
        self._stop.set()
        self.wake()
        if self.beacon is not None:  # the profiler's next run starts the beacon's thread
            self.beacon.host = None
            self.beacon.wake_host = None
            if self.beacon.hosted:
                self.beacon.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.reflex.stop()
        self.capture.stop()

    def after_fork(self) -> None:
        """In a forked child: no thread, fresh signals (the child is a new process)."""
        self._thread = None
        self._stop = threading.Event()
        self._kick = threading.Event()
        self.detector = self._detector()
        self.reflex = BurstReflex(self.live)
        self._seen = {}
        self.request_rate = None
        self._last_reading = None

    def _level(self) -> int:
        """The profiling level in force: the sampling interval, a burst's included.

        With a profiler that costs the service's threads nothing (:attr:`one_level`),
        always ``-1``: a rebase relearns a baseline from what comes after the switch,
        so a change just before it is learnt as the new normal and never fires (seen in
        the benchmark: the controller's watch began 1.6 s after the hot path did, and
        the reflex stayed silent for the whole phase, docs/agent.md).
        """
        if self.one_level is not None and self.one_level():
            return -1
        return self.live.params.sampling_interval_ms

    def _detector(self) -> ChangeDetector:
        detector = ChangeDetector()
        detector.level = self._level()
        return detector

    def signal_period(self) -> float:
        """Seconds to the next reading of the signals (:func:`signal_period_for` the
        service's recent request rate)."""
        return signal_period_for(self.request_rate)

    def _follow_rate(self, now: float, requests: int) -> None:
        last, self._last_reading = self._last_reading, (now, requests)
        if last is None or now <= last[0]:
            return
        rate = max(0, requests - last[1]) / (now - last[0])
        old = self.request_rate
        self.request_rate = rate if old is None else old + RATE_ALPHA * (rate - old)

    def signal_tick(self, now: float) -> list[str]:
        """Read the counters, update the signals, let the reflex act; what fired."""
        new_code = self.new_code.take() if self.new_code is not None else []
        if self.glimpse_on_new_code is not None and not self.glimpse_on_new_code():
            new_code = []  # counted in the report, no glimpse
        requests, spans = self.counts()
        self._follow_rate(now, requests)
        cpu = time.process_time() - threads_cpu_seconds(self.agent_threads())
        if self.profiler_cpu is not None:
            cpu -= self.profiler_cpu()
        inputs = Inputs(
            now=now,
            cpu_seconds=cpu,
            requests=requests,
            spans=spans,
            durations=self.latency.take_new(self._seen),
        )
        if self._level() != self.detector.level:
            # The profiling level changed since the last tick (the controller's new rate):
            # this tick's CPU and latencies straddle two levels. Their baselines, no alarm.
            self.detector.observe(inputs, float("inf"), now_unix=time.time())
            self.detector.rebase(self._level())
            if self.reflex.react([], now, rise=self.detector.rise, new_code=new_code):
                self._burst_started()
            return []
        fired = self.detector.observe(
            inputs,
            self.reflex.threshold,
            now_unix=time.time(),
            profile_mode=self.live.params.profile_mode,
        )
        if self.reflex.react(fired, now, rise=self.detector.rise, new_code=new_code):
            self._burst_started()
        if self._level() != self.detector.level:
            # A burst started or ended: the agent changed its own cost to the service.
            self.detector.rebase(self._level())
        return fired

    def _burst_started(self) -> None:
        if self.on_burst is not None:
            self.on_burst()

    def _new_code_seen(self) -> bool:
        return self.new_code is not None and self.new_code.pending

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self.ident = threading.get_ident()
        self.capture.store.ignored.add(self.ident)
        next_signal = time.monotonic()
        while not self._stop.is_set():
            try:
                wait = self.capture.tick(time.time_ns())
                now = time.monotonic()
                if now >= next_signal - SIGNAL_EARLY_S or self._new_code_seen():
                    # (new code is not kept for the next reading: its glimpse now)
                    self.signal_tick(now)
                    next_signal = now + self.signal_period()
                self.ticks += 1
                own = max(0.0, next_signal - time.monotonic())  # the signals', the beacon's
                if self.beacon is not None:  # its notes, when due (cpu mode)
                    until = self.beacon.visit(time.time_ns())
                    if until is not None:
                        own = min(own, until)
                wait = min(wait, own)
                index = self.capture.open_spans
                if index is not None:
                    # The loop's own next tick: starting spans need not set the alarm
                    # before it, and one that ends in time sets it back to it.
                    index.plan(time.time_ns() + int(own * 1e9))
            except Exception:  # never let the loop die (nor the service): log, slow down
                log.exception("otel-adaprof: fast loop tick failed")
                wait, index = 1.0, None
            if index is not None:
                # Until the alarm: the planned tick, or one a starting span set
                # (OpenSpanIndex.starting).
                rang = index.wait(index.timeout_s(time.time_ns()))
                self.wake_ups["alarm" if rang else "timeout"] += 1
            elif wait <= SLEEP_MAX_S:
                time.sleep(wait)
                self.wake_ups["timer"] += 1
            else:
                self._kick.wait(wait)
                self._kick.clear()
                self.wake_ups["timer"] += 1

"""Slow-span capture: the stack of one slow span's own thread, read in-process.

While ``slow_span_interval_ms`` is set, the marker processor keeps an index of open
spans (span id → thread, start, name). At each :meth:`SlowSpanCapture.tick` the
capture looks for open spans that have outlived their ``marker_trigger`` — longer
than ``min_duration_ms`` and, if a ``latency_percentile`` is set, slower than that
percentile of their operation, or for a request of all the service's requests
(:meth:`~otel_adaprof.instrumentation.spans.latency.LatencyTracker.trigger_ms`) —
and reads the stack of each such span's thread, all in one read
(:mod:`~otel_adaprof.instrumentation.profiler.thread_stacks`, with the backend that
is safe on this Python). With no slow span nothing is read, and the capture sleeps
until the earliest open span turns slow (at least an interval between two ticks); a
span that starts meanwhile and would be looked at more than half an interval after it
turns slow sets the loop's alarm earlier, and one that ends before it is looked at sets
it back (:class:`~otel_adaprof.instrumentation.spans.open_spans.OpenSpanIndex`): with no
span open, or every open span ending in time, the capture does not tick at all. Where the
read is a Python walk (all but CPython 3.11) only the slow threads are walked; on
CPython 3.11 (``faulthandler``) a read costs in proportion to the process's
threads, so the interval between a span's captures is stretched to keep the reads
under :data:`CORE_SHARE` of a core (:attr:`SlowSpanCapture.effective_interval_ms`).
A span that turns slow is captured at its first tick while the reads of the last
:data:`BUDGET_HORIZON_S` are under that share; beyond it, no read at all until they
are (then the cost no longer grows with the slow spans: some go without a sample).
Repeat captures of a span already read stop at :data:`REPEAT_SHARE` of the budget, so
a long slow span cannot leave the spans that turn slow after it without a sample.

The samples go into the same :class:`~otel_adaprof.instrumentation.join.samples.SampleStore`
as py-spy's, so they land on the span (through the span join), cut to ``stack_depth``
frames — but not in the window's CPU histogram: taken because their span was slow, they
are not a uniform sample of where the CPU goes, and counted there they over-weighted
the slow spans' code (the demo's session profile drifted from an L1 error of 0.035 to
0.13 against the truth when they were). The report counts them (``slow_span_samples``).

A sample is *waiting* when its leaf is a known wait, or when the thread was on a CPU
(or in the run queue) less than a fifth of the time since the previous capture
(``/proc/self/task/<tid>/schedstat``): a sleep in C or a lock wait is not counted as
CPU. The thread's clock starts at a tick up to :data:`CLOCK_LEAD` intervals before its
span turns slow, when there is one; a span first seen already slow gets its first sample
judged by the stack alone.

    >>> import threading, time
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> from otel_adaprof.instrumentation.join.samples import SampleStore
    >>> from otel_adaprof.instrumentation.spans.latency import LatencyTracker
    >>> live = LiveParams(Params.parse({"slow_span_interval_ms": 5,
    ...                                 "marker_trigger": {"min_duration_ms": 10}}))
    >>> store = SampleStore()
    >>> capture = SlowSpanCapture(live, store, LatencyTracker(), enable=lambda index: True)
    >>> capture.tick(time.time_ns())  # installs the open-span index; no span is open
    1.0
    >>> done = threading.Event()
    >>> worker = threading.Thread(target=done.wait); worker.start(); time.sleep(0.05)
    >>> t0 = time.time_ns()  # the ticks' times given, so a busy machine changes nothing
    >>> capture.open_spans[1] = (worker.ident, worker.native_id, t0 - 7_000_000, "op")
    >>> capture.tick(t0)  # 7 ms: slow in 3 ms (a tick at least an interval on)
    0.005
    >>> # its thread's clock starts
    >>> time.sleep(0.005); capture.tick(t0 + 5_000_000) >= 0.005  # slow now, captured
    True
    >>> done.set(); worker.join()
    >>> capture.slow_spans, capture.samples, capture.waiting_samples  # it used no CPU
    (1, 1, 1)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from otel_adaprof.cost_model import SLOW_SPAN_CORE_SHARE
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.join.stacks import Stack
from otel_adaprof.instrumentation.profiler.native import SlowSpanWatcher
from otel_adaprof.instrumentation.profiler.thread_stacks import ThreadStacks
from otel_adaprof.instrumentation.spans.latency import LatencyTracker
from otel_adaprof.instrumentation.spans.open_spans import NEVER_NS, OpenSpan, OpenSpanIndex
from otel_adaprof.params import MarkerTrigger

log = logging.getLogger("otel_adaprof.agent")

#: Longest sleep the capture plans (s): with no span open, or none due sooner. A span
#: that starts meanwhile sets the alarm when it must be looked at sooner
#: (:meth:`OpenSpanIndex.starting`); the fast loop wakes at least every signal reading
#: (0.25-1.25 s), and each tick looks at every open span again (an operation's percentile
#: may have fallen since: its open spans are due sooner than planned).
NONE_OPEN_S = 1.0
#: Seconds between two refreshes of every operation's ``look_ns`` (the span path's
#: alarm rule): a percentile that moved is used there within this long.
LATE_REFRESH_S = 0.25
#: The same with the native watcher (s): there ``look_ns`` only sets when a starting
#: span is due, and no tick looks at the open spans again, so a percentile that moved
#: is used by the spans starting within this long, and the fast loop's ticks (0.25-1.25
#: s apart) do not compute every operation's percentile again each time. It is also
#: the longest sleep the capture plans with the watcher: the loop's signal readings
#: come sooner, and the spans of an operation not known yet wake it at once.
NATIVE_LATE_REFRESH_S = 2.0
#: Sleep while capture is off (s): the fast loop's own signal readings come sooner, and
#: a change of params (a new ``slow_span_interval_ms``) wakes it at once.
OFF_TICK_S = 5.0
#: Open spans indexed at most; beyond it the oldest are forgotten (spans never ended).
MAX_OPEN_SPANS = 100_000
#: Open spans older than this are forgotten (s).
MAX_OPEN_AGE_S = 600.0
#: A thread that ran, or waited for a CPU in the run queue, at least this share of the
#: time since the previous capture is on CPU (a thread blocked in I/O, a lock or a
#: sleep uses next to none; two busy threads sharing the GIL use about half each).
ON_CPU_SHARE = 0.2
#: Share of a core the captures' stack reads may use: the interval between captures
#: is stretched to the measured cost of a read over this share. The walk of one slow
#: thread costs tens of µs, so the cap binds only with many slow spans at once (with the
#: ``faulthandler`` reader, CPython 3.11's before session 25, a read cost about 0.08 ms
#: per thread of the process and bound it in most services:
#: bench/output/thread_stacks_cost.json).
#: The controller's cost estimates know this cap (:mod:`otel_adaprof.cost_model`).
CORE_SHARE = SLOW_SPAN_CORE_SHARE
#: A span's thread clock starts at a tick (of any cause) within this many intervals
#: before the span turns slow: its first capture is judged over at most that long. No
#: tick is planned for it (its first capture is; with no tick in that lead, that
#: capture is judged by its stack alone and starts the clock for the next).
CLOCK_LEAD = 2
#: Thread clocks kept open, unwatched, for the next span of the same thread (a pool
#: thread's next request): opening ``/proc/self/task/<tid>/schedstat`` for every span
#: about to turn slow cost more than the rest of the fast loop's tick.
IDLE_CLOCKS = 32
#: Seconds over which the reads' CPU is held under :data:`CORE_SHARE`: a span that turns
#: slow is read at once while the reads of the last this-many seconds are under budget,
#: else it waits for the budget like the repeats.
BUDGET_HORIZON_S = 5.0
#: Part of the budget repeat captures of a span already captured may use: past it only
#: spans that turn slow are read (what coverage counts is slow spans with a sample).
REPEAT_SHARE = 0.5
#: Alarm moves per second (asked by starting and ending spans) above which the loop
#: polls instead (a tick every interval while capture is on, as before the alarm): a
#: move costs the span's thread about 3 µs (a ``timerfd_settime``; a span that moves it
#: there and back 6.3 µs, bench/output/alarm_cost_s19.json), so 1,000 a second cost
#: about what the loop's 50 ticks a second of polling did (0.1-0.2 ms of CPU each in a
#: loaded service, bench/output/watch_mode_s19_reflex_off.json). Back to the alarm
#: below half of it.
MAX_MOVES_PER_S = 1000.0
#: Spans of operations not known yet that the native index keeps for the loop at most.
MAX_PENDING = 1000
#: Operations whose ``look_ns`` is kept at most (beyond, the table starts again).
MAX_LOOK_OPERATIONS = 2048


class _ThreadClock:
    """A thread's time on a CPU and in the run queue (``/proc/self/task/<tid>/schedstat``, ns).

    The file stays open while the thread is slow: a read is one ``pread``.
    """

    __slots__ = ("fd", "last_cpu", "last_wall")

    def __init__(self, native_id: int) -> None:
        self.fd = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
        self.last_cpu: int | None = None
        self.last_wall = 0

    def on_cpu(self, now_ns: int) -> bool | None:
        """Whether the thread ran ≥ :data:`ON_CPU_SHARE` since the last call (None: unknown)."""
        run, queued = os.pread(self.fd, 96, 0).split()[:2]
        cpu = int(run) + int(queued)
        last, wall = self.last_cpu, self.last_wall
        self.last_cpu, self.last_wall = cpu, now_ns
        if last is None or now_ns <= wall:
            return None
        return (cpu - last) >= ON_CPU_SHARE * (now_ns - wall)

    def close(self) -> None:
        os.close(self.fd)


class NativeWatchIndex(OpenSpanIndex):
    """The open-span index when the native watcher reads the slow spans: the span path
    hands each span to the watcher as it starts (with when it turns slow: its
    operation's ``look_ns``) and takes it back as it ends; nothing is kept here, and the
    loop's alarm is its own ticks only (it reads nothing)."""

    def __init__(self, watcher: SlowSpanWatcher) -> None:
        super().__init__()
        self.watcher = watcher
        #: Spans of operations whose trigger the loop does not know yet: it registers
        #: them at the tick they wake it for.
        self.pending: dict[int, OpenSpan] = {}
        self._pending_lock = threading.Lock()
        #: Spans that could not be registered (an error in the span path, counted).
        self.errors = 0

    def __setitem__(self, span_id: int, span: OpenSpan) -> None:
        try:
            name = span[3]
            look = self.look_ns.get(name)
            if look is None:  # the loop learns its operation (its trigger) now
                with self._pending_lock:
                    if len(self.pending) < MAX_PENDING:
                        self.pending[span_id] = span
                self.unknown.add(name)
                self.wake_now()
            elif look < NEVER_NS:
                self.watcher.watch(span_id, span[2] + look)
        except Exception:  # the span's start must not fail: it goes unwatched
            self.errors += 1

    def starting(self, start_ns: int, name: str) -> bool:
        return False

    def pop(self, span_id: int, default: object = None) -> object:  # type: ignore[override]
        if self.pending:
            with self._pending_lock:
                self.pending.pop(span_id, None)
        self.watcher.ended(span_id)  # after: a span the loop registered meanwhile goes
        return default

    def register_pending(self) -> None:
        """The loop's tick: register the spans that waited for their operation's trigger."""
        with self._pending_lock:
            pending, self.pending = self.pending, {}
            for span_id, (ident, native_id, start, name) in pending.items():
                look = self.look_ns.get(name)
                if look is not None and look < NEVER_NS:
                    self.watcher.watch(span_id, start + look, ident, native_id)


class SlowSpanCapture:
    """Captures the stacks of slow spans' threads; called by the agent's fast loop.

    ``native``: the native watcher to read them with (:class:`NativeWatchIndex`), when
    the agent's profiler is the native one, else ``None`` (the reads in this thread).
    """

    def __init__(
        self,
        live: LiveParams,
        store: SampleStore,
        latency: LatencyTracker,
        enable: Callable[[OpenSpanIndex | None], bool] | None = None,
        native: Callable[[], SlowSpanWatcher | None] | None = None,
    ) -> None:
        self.live = live
        self.store = store
        self.latency = latency
        #: Installs (a dict) or removes (``None``) the marker processor's open-span
        #: index; returns whether it could.
        self.enable = enable or (lambda index: False)
        self.native = native or (lambda: None)
        self.open_spans: OpenSpanIndex | None = None
        #: Spans its ticks saw outlive their trigger, and samples taken on them (since
        #: start). The agent reports the spans that *ended* slow (the marker
        #: processor's count): a span the ticks missed still counts there.
        self.slow_spans = 0
        self.samples = 0
        self.waiting_samples = 0
        #: CPU seconds of the captures (thread time spent in :meth:`tick`).
        self.cpu_seconds = 0.0
        self._seen: set[int] = set()
        #: Slow span → when it is captured next (unix ns).
        self._next_ns: dict[int, int] = {}
        #: (when, CPU s) of the recent reads, for the budget.
        self._reads: deque[tuple[int, float]] = deque()
        #: (when, ``OpenSpanIndex.asked``) at the last judgement of the alarm's cost.
        self._moves_seen = (0, 0)
        #: (interval ns, marker trigger) that ``look_ns`` was computed for.
        self._late_for: tuple[int, MarkerTrigger] | None = None
        self._late_refresh_ns = 0
        self._clocks: dict[int, _ThreadClock] = {}
        #: Clocks of threads no longer watched, still open (oldest first).
        self._idle_clocks: dict[int, _ThreadClock] = {}
        #: The reader of other threads' stacks (the backend safe on this Python).
        self.stacks = ThreadStacks()
        #: Interval between captures in force (ms): ``slow_span_interval_ms``, or
        #: longer when reads cost more than :data:`CORE_SHARE` of a core at that rate.
        self.effective_interval_ms = 0.0

    @property
    def interval_s(self) -> float:
        """``slow_span_interval_ms`` in force, in seconds (0: capture off)."""
        return self.live.params.slow_span_interval_ms / 1000

    @property
    def on(self) -> bool:
        """Whether the capture is running (its index is installed)."""
        return self.open_spans is not None

    def stop(self) -> None:
        """Remove the index and close the thread clocks."""
        self._switch(False)

    def _switch(self, on: bool) -> None:
        if on and self.open_spans is None:
            watcher = self.native()
            index = OpenSpanIndex() if watcher is None else NativeWatchIndex(watcher)
            index.seen = self._seen
            if self.enable(index):
                self.open_spans = index
        elif not on and self.open_spans is not None:
            self.enable(None)
            if isinstance(self.open_spans, NativeWatchIndex):
                self.open_spans.watcher.stop()
            self.open_spans.close()
            self.open_spans = None
            self.stacks.close()
            self._seen.clear()
            self._next_ns.clear()
            for clock in [*self._clocks.values(), *self._idle_clocks.values()]:
                clock.close()
            self._clocks.clear()
            self._idle_clocks.clear()

    def tick(self, now_ns: int) -> float:
        """Capture the threads of the spans slow now; seconds until the next tick."""
        t_cpu = time.thread_time()
        try:
            return self._tick(now_ns)
        finally:
            self.cpu_seconds += time.thread_time() - t_cpu

    def _tick(self, now_ns: int) -> float:
        params = self.live.params
        interval_ms = params.slow_span_interval_ms
        self._switch(interval_ms > 0)
        index = self.open_spans
        if index is None:
            return OFF_TICK_S
        interval_ns = interval_ms * 1_000_000
        if isinstance(index, NativeWatchIndex):
            return self._native_tick(index, now_ns, interval_ns)
        # Spans starting from now on set the alarm themselves until the plan below.
        index.begin()
        index.slack_ns = interval_ns // 2  # (a new index after a switch has 0)
        if self._keep_looks(index, now_ns, interval_ns, params.marker_trigger):
            self._judge_moves(index, now_ns, interval_ms)
        if not index and not self._seen and not self._clocks and not index.polling:
            # no span open (between requests, most ticks): nothing to look at, and
            # no tick until a span that starts could turn slow (it sets the alarm)
            index.plan(now_ns + int(NONE_OPEN_S * 1e9))
            return NONE_OPEN_S
        trigger = params.marker_trigger
        min_ns = int(trigger.min_duration_ms * 1e6)
        pct = trigger.latency_percentile
        limits: dict[str, int | None] = {}
        slow: dict[int, int] = {}  # thread ident → native id, to capture now
        captured: list[int] = []  # their spans
        repeats: set[int] = set()  # of them, spans captured before (a repeat capture)
        soon: dict[int, int] = {}  # threads of spans slow within CLOCK_LEAD: clocks start
        lead_ns = CLOCK_LEAD * interval_ns
        base = now_ns + int(NONE_OPEN_S * 1e9)  # the loop's own next tick (repeats)
        wake = NEVER_NS  # the open spans' next look
        seen = self._seen
        still_open: set[int] = set()
        items = list(index.items())
        if len(items) > MAX_OPEN_SPANS:
            self._forget(index, items, now_ns)
        for span_id, (tid, native, start_ns, name) in items:
            limit = limits.get(name, -1)
            if limit == -1:
                limit = limits[name] = self._limit_ns(name, min_ns, pct)
            if limit is None:  # no percentile yet: the trigger cannot fire
                continue
            due = start_ns + limit
            if now_ns >= due:
                still_open.add(span_id)
                if span_id not in seen:  # newly slow: captured at once
                    seen.add(span_id)
                    self.slow_spans += 1
                    slow[tid] = native
                elif now_ns >= self._next_ns.get(span_id, 0):
                    slow[tid] = native
                    repeats.add(span_id)
                else:
                    base = min(base, self._next_ns[span_id])
                    continue
                captured.append(span_id)
            else:
                if now_ns >= due - lead_ns:  # this tick is close enough: its clock starts
                    soon[tid] = native
                wake = min(wake, due)  # looked at as it turns slow
        seen.intersection_update(still_open)
        for span_id in [k for k in self._next_ns if k not in still_open]:
            del self._next_ns[span_id]
        look = index.look_ns
        for name, limit in limits.items():  # the span path's alarm rule, fresh
            look[name] = NEVER_NS if limit is None else limit
        # No tick for the spans that may start meanwhile: each one that would be looked
        # at more than half an interval after it turns slow sets the alarm as it starts
        # (OpenSpanIndex.starting). Polling instead (a tick every interval while an
        # operation with a p90 of a few ms, a DB call, was known) cost 50 wake-ups a
        # second at any load: most of the agent's CPU in the catalog's watch actions.
        for native in soon.values():
            self._on_cpu(native, now_ns)  # starts its clock
        if slow and not self._within_budget(now_ns):
            slow, captured = {}, []  # over budget: they stay slow, and are read when it allows
            base = min(base, now_ns + interval_ns)
        elif repeats and not self._within_budget(now_ns, REPEAT_SHARE):
            # Repeats use at most part of the budget: the rest stays for spans that turn
            # slow, so a long slow span's repeats cannot leave the next ones unsampled.
            firsts = {index[k][0] for k in captured if k not in repeats and k in index}
            slow = {tid: native for tid, native in slow.items() if tid in firsts}
            captured = [k for k in captured if k not in repeats]
            for span_id in repeats:
                self._next_ns[span_id] = now_ns + interval_ns
            base = min(base, now_ns + interval_ns)
        if slow:
            t_read = time.thread_time()
            self._capture(slow, now_ns, params.stack_depth)
            self._reads.append((now_ns, time.thread_time() - t_read))
        if self._clocks:
            watched = set(slow.values()) | set(soon.values())
            for native in [n for n in self._clocks if n not in watched]:
                self._unwatch(native)
        if slow:
            # Each span's next capture is an interval away, stretched to keep the reads
            # under CORE_SHARE; a span that turns slow meanwhile is captured at once.
            again_s = self.stacks.interval_s(interval_ns / 1e9, CORE_SHARE, "slow-span capture")
            self.effective_interval_ms = again_s * 1e3
            again_ns = now_ns + int(again_s * 1e9)
            for span_id in captured:
                self._next_ns[span_id] = again_ns
            base = min(base, again_ns)
        # At least an interval between two ticks; an open span that ends before its look
        # moves the alarm to the next one (OpenSpanIndex.ending).
        if index.polling:  # starting spans do not move the alarm: look every interval
            base = min(base, now_ns + interval_ns)
        base_ns = max(interval_ns, base - now_ns)
        wake_ns = max(interval_ns, wake - now_ns)
        index.plan(now_ns + base_ns, now_ns + wake_ns)
        return min(base_ns, wake_ns) / 1e9

    def _native_tick(self, index: NativeWatchIndex, now_ns: int, interval_ns: int) -> float:
        """With the native watcher: keep its settings and each operation's trigger
        (``look_ns``, what a starting span is registered with) up to date; no read here,
        and no tick of its own sooner than :data:`NATIVE_LATE_REFRESH_S`: the loop's
        signal readings (every 0.25-1.25 s) tick it. Until session 53 it planned one a
        second, and below 12 requests a second (a reading per more than a second) the
        loop woke about twice as often as it reads the signals."""
        params = self.live.params
        try:
            index.watcher.start(
                self.store, lambda: self.live.current.version, interval_ns / 1e9,
                params.stack_depth,
            )  # fmt: skip
        except (OSError, RuntimeError) as exc:  # the reads go on in this thread
            log.warning(
                "otel-adaprof: the native slow-span watcher cannot run (%s); slow spans "
                "are read in-process",
                exc,
            )
            self.native = lambda: None
            self._switch(False)  # the next tick installs the in-process index
            return 0.0
        self._keep_looks(
            index, now_ns, interval_ns, params.marker_trigger, refresh_s=NATIVE_LATE_REFRESH_S
        )
        index.register_pending()
        self.slow_spans = int(index.watcher.stats().get("spans", 0))
        index.begin()
        index.plan(now_ns + int(NATIVE_LATE_REFRESH_S * 1e9))
        return NATIVE_LATE_REFRESH_S

    def _keep_looks(
        self, index: OpenSpanIndex, now_ns: int, interval_ns: int, trigger: MarkerTrigger,
        refresh_s: float = LATE_REFRESH_S,
    ) -> bool:  # fmt: skip
        """Each operation's ``look_ns`` up to date: cleared on new params (each comes back
        as its operation starts), computed for the operations that started since, all
        of them again every ``refresh_s``. Whether they were all computed again."""
        if (interval_ns, trigger) != self._late_for:
            index.look_ns.clear()
            self._late_for = (interval_ns, trigger)
        if index.unknown:  # operations that started since, maybe ended already
            for name in list(index.unknown):
                index.unknown.discard(name)
                index.look_ns.setdefault(name, 0)  # (computed just below)
            self._late_refresh_ns = 0
        if now_ns < self._late_refresh_ns:
            return False
        self._refresh_look(index, trigger)
        self._late_refresh_ns = now_ns + int(refresh_s * 1e9)
        return True

    def _judge_moves(self, index: OpenSpanIndex, now_ns: int, interval_ms: int) -> None:
        """Poll instead of the alarm while spans ask for more moves than polling costs."""
        last_ns, last_asked = self._moves_seen
        self._moves_seen = (now_ns, index.asked)
        if last_ns == 0 or now_ns <= last_ns:
            return
        rate = (index.asked - last_asked) / ((now_ns - last_ns) / 1e9)
        if not index.polling and rate > MAX_MOVES_PER_S:
            index.polling = True
            log.info(
                "otel-adaprof: slow-span capture polls every %d ms: starting and ending "
                "spans would move its alarm %.0f times a second",
                interval_ms,
                rate,
            )
        elif index.polling and rate < MAX_MOVES_PER_S / 2:
            index.polling = False

    def _limit_ns(self, name: str, min_ns: int, pct: float | None) -> int | None:
        """How long after its start a span of ``name`` turns slow (ns); ``None``: its
        trigger cannot fire yet (no percentile yet)."""
        if pct is None:
            return min_ns
        ms = self.latency.trigger_ms(name, pct)
        return None if ms is None else max(min_ns, int(ms * 1e6) + 1)

    def _refresh_look(self, index: OpenSpanIndex, trigger: MarkerTrigger) -> None:
        """Every known operation's ``look_ns`` again (percentiles move)."""
        look = index.look_ns
        if len(look) > MAX_LOOK_OPERATIONS:
            look.clear()
        min_ns = int(trigger.min_duration_ms * 1e6)
        pct = trigger.latency_percentile
        for name in list(look):
            limit = self._limit_ns(name, min_ns, pct)
            look[name] = NEVER_NS if limit is None else limit

    def _within_budget(self, now_ns: int, part: float = 1.0) -> bool:
        """Whether the reads of the last :data:`BUDGET_HORIZON_S` used less than
        ``part`` of :data:`CORE_SHARE` of a core."""
        reads = self._reads
        horizon_ns = int(BUDGET_HORIZON_S * 1e9)
        while reads and reads[0][0] < now_ns - horizon_ns:
            reads.popleft()
        return sum(cpu for _t, cpu in reads) < part * CORE_SHARE * BUDGET_HORIZON_S

    @staticmethod
    def _forget(index: dict[int, OpenSpan], items: list[tuple[int, OpenSpan]], now_ns: int) -> None:
        """Too many open spans (some never end): forget the oldest half and the very old."""
        cutoff = now_ns - int(MAX_OPEN_AGE_S * 1e9)
        items.sort(key=lambda item: item[1][2])
        for k, (span_id, span) in enumerate(items):
            if k < len(items) - MAX_OPEN_SPANS // 2 or span[2] < cutoff:
                index.pop(span_id, None)
        items[:] = list(index.items())

    def _capture(self, slow: dict[int, int], now_ns: int, depth: int) -> None:
        # Every stack is read first, in one read (thread_stacks: the backend that is
        # safe on this Python), before the /proc reads below let other threads run.
        read = self.stacks.read(depth, slow.keys())
        stacks = [(tid, native, read[tid]) for tid, native in slow.items() if tid in read]
        for tid, native, captured in stacks:
            on_cpu = self._on_cpu(native, now_ns)
            version = self.live.current.version  # the config version it is taken under
            if self.store.add_one(
                tid, now_ns, captured, idle=on_cpu is False, version=version, in_profile=False
            ):
                self.samples += 1
                self.waiting_samples += on_cpu is False

    def _unwatch(self, native: int) -> None:
        """The thread has no span slow or about to be: its clock waits, open, for the
        thread's next one (from a new baseline, as a clock opened then would)."""
        clock = self._clocks.pop(native)
        clock.last_cpu = None
        idle = self._idle_clocks
        idle[native] = clock
        if len(idle) > IDLE_CLOCKS:
            idle.pop(next(iter(idle))).close()

    def _on_cpu(self, native: int, now_ns: int) -> bool | None:
        """Whether the thread was on CPU since its clock's last reading (None: unknown)."""
        clock = self._clocks.get(native)
        try:
            if clock is None:
                clock = self._idle_clocks.pop(native, None) or _ThreadClock(native)
                self._clocks[native] = clock
            return clock.on_cpu(now_ns)
        except (OSError, ValueError, IndexError):  # thread gone, or no /proc
            if clock is not None:
                self._clocks.pop(native, None)
                clock.close()
            return None


__all__ = ["NativeWatchIndex", "OpenSpan", "OpenSpanIndex", "SlowSpanCapture", "Stack"]

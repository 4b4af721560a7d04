"""Stack samples of this process, kept per thread in time order for the join.

Both profiler backends add samples here; the span join asks for a thread's samples
between a span's start and end; the poller takes the window's histogram. Stacks are
interned (a sample is a time and an int). Memory is bounded: samples older than the
retention, and the oldest beyond :data:`MAX_SAMPLES`, are dropped.

The *watermark* is the wall time up to which every sample has arrived: py-spy's
samples arrive when its run ends, so a span that ended after the watermark waits.
While no sampler runs (profiling off: only the slow-span capture's samples, added as
they are taken) the watermark follows the clock (:meth:`SampleStore.follow_clock`),
with no thread to move it. A waiter is woken when the watermark passes a time
(:meth:`SampleStore.wake_at`), not by looking again and again.

    >>> store = SampleStore(retention_s=60)
    >>> store.add_many(7, [(1_000, ("main (a.py:1)", "burn (b.py:2)"), 1_000)])
    >>> store.set_watermark(2_000)
    >>> [stack for _t, stack, _waiting in store.samples_between(7, 0, 1_500)]
    [('main (a.py:1)', 'burn (b.py:2)')]
    >>> store.take_histogram(depth=1).stacks[0].stack
    'burn (b.py:2)'
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Iterable

from otel_adaprof.instrumentation.join.stacks import Stack, collapse, is_waiting
from otel_adaprof.instrumentation.observe.new_code import NewCode, own_functions
from otel_adaprof.instrumentation.threads import AgentThreads, inherited_until
from otel_adaprof.protocol import (
    MAX_LATE_VERSIONS,
    MAX_STACK_CHARS,
    MAX_STACK_DEPTH,
    MAX_STACKS,
    LateStacks,
    StackCount,
    StackHistogram,
)

#: Samples kept at most (all threads together).
MAX_SAMPLES = 400_000
#: Characters of stacks sent in one window's histogram at most (the poll's limit is 512 KiB).
MAX_HISTOGRAM_CHARS = 256 * 1024
#: Characters of stacks sent as late stacks of one earlier version at most.
MAX_LATE_CHARS = 16 * 1024
#: Distinct stacks interned at most before the table is rebuilt from live samples.
MAX_STACK_TABLE = 50_000


class _Thread:
    __slots__ = ("since", "stacks", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.stacks: list[int] = []
        self.since: list[int] = []


class SampleStore:
    """Per-thread, time-ordered samples with interned stacks (thread-safe)."""

    def __init__(
        self, retention_s: float = 30.0, agent_threads: AgentThreads | None = None
    ) -> None:
        self.retention_ns = int(retention_s * 1e9)
        self._threads: dict[int, _Thread] = {}
        self._ids: dict[Stack, int] = {}
        #: Stacks seen as waiting although their leaf is not a known wait (the
        #: slow-span capture saw the thread use no CPU): interned apart.
        self._idle_ids: dict[Stack, int] = {}
        self._table: list[Stack] = []
        self._waiting: list[bool] = []
        self._code_keys: list[str] = []  # each stack's innermost own function (NewCode's key)
        # the window's CPU histogram, per config version the samples were taken under
        self._window: dict[int, Counter[int]] = {}
        self._window_total: dict[int, int] = {}
        self._window_times: dict[int, list[int]] = {}  # version -> [first, last] ns
        # samples of versions already reported, arrived since: the next report's late part
        self._late: dict[int, Counter[int]] = {}
        self._late_total: dict[int, int] = {}
        self._late_times: dict[int, list[int]] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._watermark_ns = 0
        self._follows_clock = False
        #: Events set once the watermark reaches their time (ns): :meth:`wake_at`.
        self._watchers: dict[threading.Event, int] = {}
        #: Told the innermost own function of every CPU sample kept (in and out of the
        #: profile): new code starts a glimpse (set by the agent; ``None``: not followed).
        self.new_code: NewCode | None = None
        #: The agent's own threads: their samples are not kept.
        self.ignored = agent_threads if agent_threads is not None else AgentThreads()
        self.samples_added = 0
        self.cpu_samples_added = 0
        self.samples_dropped = 0
        #: Samples of a config version whose window had already been reported and that
        #: could not be sent late either (more than MAX_LATE_VERSIONS versions behind).
        self.stale_samples = 0
        #: Samples of a reported version handed over late (:meth:`take_late`).
        self.late_samples = 0

    def _intern(self, stack: Stack, idle: bool = False) -> int:
        ids = self._idle_ids if idle else self._ids
        sid = ids.get(stack)
        if sid is None:
            sid = ids[stack] = len(self._table)
            self._table.append(stack)
            self._waiting.append(idle or is_waiting(stack))
            own = own_functions(stack)
            self._code_keys.append(own[0] if own else "")
            if len(own) > 1 and self.new_code is not None:
                self.new_code.know(own[1:])  # its callers are known code
        return sid

    def add_one(
        self,
        tid: int,
        t_ns: int,
        stack: Stack,
        *,
        idle: bool = False,
        version: int = 0,
        in_profile: bool = True,
    ) -> bool:
        """Add one sample taken now; ``idle``: the thread was seen using no CPU.

        An idle sample is *waiting* whatever its leaf (it stays on spans, out of the CPU
        histogram). ``version``: the config version it was taken under.
        ``in_profile=False``: the sample lands on spans only, never in the CPU histogram
        (a sample taken because its span was slow is not a uniform sample of the CPU:
        counted in the profile it would over-weight the slow spans' code). Returns
        whether it was kept (not an ignored agent thread).
        """
        if tid in self.ignored:
            return False
        with self._lock:
            sid = self._intern(stack, idle and not is_waiting(stack))
            thread = self._threads.get(tid)
            if thread is None:
                thread = self._threads[tid] = _Thread()
            at = len(thread.times)
            if thread.times and t_ns < thread.times[-1]:
                at = bisect.bisect_right(thread.times, t_ns)
            thread.times.insert(at, t_ns)
            thread.stacks.insert(at, sid)
            thread.since.insert(at, t_ns)
            self._count += 1
            self.samples_added += 1
            if self.new_code is not None and not self._waiting[sid]:
                self.new_code.observe(self._code_keys[sid], t_ns)
            if not self._waiting[sid] and in_profile:
                self.cpu_samples_added += 1
                window = self._window.get(version)
                if window is None:
                    window = self._window[version] = Counter()
                window[sid] += 1
                self._window_total[version] = self._window_total.get(version, 0) + 1
                self._note_time(version, t_ns, t_ns)
            if self._count > MAX_SAMPLES:
                self._trim(time.time_ns())
        return True

    def add_many(
        self,
        tid: int,
        samples: Iterable[tuple[int, Stack, int]],
        version: int = 0,
        *,
        idle: bool = False,
        in_profile: bool = True,
    ) -> None:
        """Add one thread's samples ``(unix time ns, stack, since ns)``, in time order.

        ``version`` is the config version the samples were taken under: the window's
        histogram of that version only counts them. ``idle``: the thread was seen using
        no CPU in every one of them (as :meth:`add_one`'s): they stay on spans, out of
        the CPU histogram. ``in_profile=False``: they land on spans only (as
        :meth:`add_one`'s: samples taken because their span was slow).

        ``since`` is when the stack was first seen unchanged up to this sample (py-spy
        reports changes only); the join uses it to tell a thread from a new thread that
        got the same id.
        """
        if tid in self.ignored:
            return
        with self._lock:
            thread = self._threads.get(tid)
            if thread is None:
                thread = self._threads[tid] = _Thread()
            window = self._window.get(version)
            if window is None:
                window = self._window[version] = Counter()
            added, first, last = 0, 0, 0
            new_code = self.new_code
            for t_ns, stack, since in samples:
                sid = self._intern(stack, idle and not is_waiting(stack))
                if thread.times and t_ns < thread.times[-1]:
                    at = bisect.bisect_right(thread.times, t_ns)
                    thread.times.insert(at, t_ns)
                    thread.stacks.insert(at, sid)
                    thread.since.insert(at, since)
                else:
                    thread.times.append(t_ns)
                    thread.stacks.append(sid)
                    thread.since.append(since)
                self._count += 1
                self.samples_added += 1
                if new_code is not None and not self._waiting[sid]:
                    new_code.observe(self._code_keys[sid], t_ns)
                if not self._waiting[sid] and in_profile:
                    self.cpu_samples_added += 1
                    window[sid] += 1
                    added += 1
                    first = t_ns if not first else min(first, t_ns)
                    last = max(last, t_ns)
            self._window_total[version] = self._window_total.get(version, 0) + added
            if added:
                self._note_time(version, first, last)
            if self._count > MAX_SAMPLES:
                self._trim(time.time_ns())

    def _note_time(self, version: int, first: int, last: int) -> None:  # under self._lock
        span = self._window_times.get(version)
        if span is None:
            self._window_times[version] = [first, last]
        else:
            span[0], span[1] = min(span[0], first), max(span[1], last)

    @property
    def watermark_ns(self) -> int:
        """Wall time (ns) before which every sample has been added (now, while the
        watermark follows the clock)."""
        if self._follows_clock:
            return max(self._watermark_ns, time.time_ns())
        return self._watermark_ns

    @property
    def follows_clock(self) -> bool:
        """Whether the watermark is the clock (:meth:`follow_clock`: no sampler runs)."""
        return self._follows_clock

    def set_watermark(self, t_ns: int) -> None:
        """Every sample before ``t_ns`` has been added."""
        if t_ns > self._watermark_ns:
            self._watermark_ns = t_ns
            if self._watchers:
                self._wake_watchers()

    def follow_clock(self, on: bool) -> None:
        """``on``: no sample will come later than it is taken (no sampler runs): the
        watermark is the clock. Off: it stays where the clock is now until set.

        >>> store = SampleStore()
        >>> store.follow_clock(True); store.watermark_ns > time.time_ns() - 10**9
        True
        >>> store.follow_clock(False); mark = store.watermark_ns; time.sleep(0.002)
        >>> store.watermark_ns == mark
        True
        """
        if on == self._follows_clock:
            return
        if on:
            self._follows_clock = True
            self._wake_watchers()
        else:
            self.set_watermark(time.time_ns())
            self._follows_clock = False

    def wake_at(self, t_ns: int, event: threading.Event) -> None:
        """Set ``event`` once the watermark reaches ``t_ns`` (at once if it has; once:
        ask again for the next time). One time per event: the last one asked counts."""
        with self._lock:
            self._watchers[event] = t_ns
        if self.watermark_ns >= t_ns:
            self._wake_watchers()

    def _wake_watchers(self) -> None:
        mark = self.watermark_ns
        with self._lock:
            due = [e for e, at in self._watchers.items() if at <= mark]
            for event in due:
                del self._watchers[event]
        for event in due:
            event.set()

    def samples_between(
        self, tid: int, start_ns: int, end_ns: int, born_ns: int = 0
    ) -> list[tuple[int, Stack, bool]]:
        """``(time, stack, waiting)`` of ``tid``'s samples in ``[start_ns, end_ns]``.

        ``born_ns`` is when the thread now using ``tid`` was first seen. py-spy reports
        stack *changes*, so after a thread exits its last stack seems to go on until a
        new thread with the same id is first sampled; samples whose stack was already
        there before ``born_ns`` and that come before the first change after it belong
        to the old thread and are left out
        (:func:`~otel_adaprof.instrumentation.threads.inherited_until`).
        """
        with self._lock:
            thread = self._threads.get(tid)
            if thread is None:
                return []
            times, since = thread.times, thread.since
            lo = bisect.bisect_left(times, start_ns)
            hi = bisect.bisect_right(times, end_ns)
            first_change: int | None = None
            if lo < hi and since[lo] < born_ns:
                first_change = inherited_until(times, since, born_ns)
            out = []
            for k in range(lo, hi):
                t = times[k]
                if since[k] < born_ns and first_change is not None and t < first_change:
                    continue
                sid = thread.stacks[k]
                out.append((t, self._table[sid], self._waiting[sid]))
            return out

    def take_histogram(self, depth: int, version: int | None = None) -> StackHistogram:
        """The samples since the last call (waiting ones left out), top stacks first.

        With ``version``, only the samples taken under that config version. Those of
        earlier versions (their report has gone: a py-spy segment that spanned its
        window's close) are kept for :meth:`take_late`; those of later versions wait
        for their own window.
        """
        with self._lock:
            if version is None:
                windows, totals = self._window, self._window_total
                self._window, self._window_total, self._window_times = {}, {}, {}
                window: Counter[int] = Counter()
                for counts in windows.values():
                    window.update(counts)
                total = sum(totals.values())
            else:
                window = self._window.pop(version, Counter())
                total = self._window_total.pop(version, 0)
                self._window_times.pop(version, None)
                for older in [v for v in self._window if v < version]:
                    self._to_late(older)
            merged = self._collapse(window, depth)
        return self._histogram(merged, total, depth, MAX_HISTOGRAM_CHARS)

    def _to_late(self, version: int) -> None:  # under self._lock
        counts = self._window.pop(version)
        total = self._window_total.pop(version, 0)
        first, last = self._window_times.pop(version, [0, 0])
        late = self._late.setdefault(version, Counter())
        late.update(counts)
        self._late_total[version] = self._late_total.get(version, 0) + total
        span = self._late_times.setdefault(version, [first, last])
        span[0], span[1] = min(span[0], first), max(span[1], last)

    def take_late(self, depth: int) -> list[LateStacks]:
        """Samples of already-reported versions that arrived since (newest versions first,
        at most :data:`MAX_LATE_VERSIONS`; the rest are counted in :attr:`stale_samples`).

        >>> store = SampleStore()
        >>> store.add_many(7, [(2_000_000_000, ("main (a.py:1)",), 0)], version=3)
        >>> store.take_histogram(depth=8, version=4).total_samples
        0
        >>> [(late.config_version, late.stacks.total_samples) for late in store.take_late(8)]
        [(3, 1)]
        """
        with self._lock:
            late, totals, times = self._late, self._late_total, self._late_times
            self._late, self._late_total, self._late_times = {}, {}, {}
            versions = sorted(late, reverse=True)
            for dropped in versions[MAX_LATE_VERSIONS:]:
                self.stale_samples += totals.get(dropped, 0)
            collapsed = [(v, self._collapse(late[v], depth)) for v in versions[:MAX_LATE_VERSIONS]]
        out = []
        for v, merged in collapsed:
            total = totals.get(v, 0)
            if not total:
                continue
            self.late_samples += total
            first, last = times.get(v, [0, 0])
            out.append(
                LateStacks(
                    config_version=v,
                    stacks=self._histogram(merged, total, depth, MAX_LATE_CHARS),
                    taken_from=first / 1e9,
                    taken_to=last / 1e9,
                )
            )
        return out

    def _collapse(self, window: Counter[int], depth: int) -> Counter[str]:  # under self._lock
        merged: Counter[str] = Counter()
        depth = max(1, min(depth, MAX_STACK_DEPTH))
        for sid, count in window.items():
            text = collapse(self._table[sid], depth, MAX_STACK_CHARS)
            if text:
                merged[text] += count
        return merged

    @staticmethod
    def _histogram(merged: Counter[str], total: int, depth: int, max_chars: int) -> StackHistogram:
        stacks, size = [], 0
        for text, count in merged.most_common(MAX_STACKS):
            size += len(text) + 32
            if size > max_chars:  # keeps the poll under the message limit
                break
            stacks.append(StackCount(stack=text, count=count))
        depth = max(1, min(depth, MAX_STACK_DEPTH))
        return StackHistogram(stacks=stacks, total_samples=total, depth=depth)

    def trim(self, now_ns: int | None = None) -> None:
        """Drop samples older than the retention."""
        with self._lock:
            self._trim(now_ns if now_ns is not None else time.time_ns())

    def _trim(self, now_ns: int) -> None:
        cutoff = now_ns - self.retention_ns
        count = 0
        for tid in list(self._threads):
            thread = self._threads[tid]
            cut = bisect.bisect_left(thread.times, cutoff)
            if self._count - cut > MAX_SAMPLES:  # still too many: drop the older half
                cut = max(cut, len(thread.times) // 2)
            if cut:
                del thread.times[:cut]
                del thread.stacks[:cut]
                del thread.since[:cut]
                self.samples_dropped += cut
            if not thread.times:
                del self._threads[tid]
            else:
                count += len(thread.times)
        self._count = count
        pending = any(self._window.values()) or any(self._late.values())
        if len(self._table) > MAX_STACK_TABLE and not pending:
            self._rebuild_table()

    def _rebuild_table(self) -> None:
        old_table, old_waiting = self._table, self._waiting
        self._ids, self._idle_ids, self._table, self._waiting = {}, {}, [], []
        self._code_keys = []
        for thread in self._threads.values():
            thread.stacks = [
                self._intern(old_table[sid], old_waiting[sid] and not is_waiting(old_table[sid]))
                for sid in thread.stacks
            ]

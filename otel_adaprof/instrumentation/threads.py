"""Thread identity and liveness, for spans and samples alike; and the agent's own threads.

Three questions about threads come up all over the agent, and are answered here only:

* **Who is this thread?** (:class:`ThreadIdentity`) A thread id
  (``threading.get_ident()``, what py-spy reports) is reused as soon as its thread has
  exited, as on servers that start a thread per request. The native id tells the new
  thread from the old; ``born_ns`` is when the agent first saw it. The answer is cached
  per thread (a ``threading.local``), so a span pays an attribute read, not a syscall.
* **When was it alive?** (:class:`ThreadLiveness`) py-spy reports stack *changes*;
  when a thread exits it reports nothing, so the thread's last stack seems to go on
  until py-spy's file ends, or until a new thread with the same id changes it. While
  py-spy runs, the clock beacon notes every living thread (id and native id) at every
  move, and spans prove their thread alive from start to end. A sample is kept while a
  thread with its id lived, if its stack (``since``) began after that thread was born
  (after the last snapshot that did not see it); a stack begun before is the exited
  thread's, which py-spy repeats until the new thread's stack changes: kept only while
  the exited thread lived (the parser dates a stack from a later sample when py-spy
  read the new thread with it and saw no change all its life:
  :meth:`ThreadLiveness.lived_until`). The samples of the histogram and of the spans
  obey the same rule: they are filtered once, as they arrive.
* **Which threads are the agent's?** (:class:`AgentThreads`) Their samples are not the
  service's, and their CPU is the agent's overhead.

    >>> live = ThreadLiveness()
    >>> for t in (0, 20, 40):
    ...     live.seen({7: 70, 9: 90} if t < 40 else {9: 90}, t * 1_000_000)
    >>> live.alive(7, 21_000_000), live.alive(7, 30_000_000), live.alive(9, 45_000_000)
    (True, False, True)
    >>> live.alive(8, 10)          # never seen: no evidence against it
    True

Thread id 7 reused by a new thread, first seen at 42 ms (the snapshot at 40 ms did not
see it: born after). At 41 and at 45 ms, a stack that began at 15 ms is the old
thread's last one, which py-spy seems to go on with after it exited; one that began at
41 ms is the new thread's own, from just before it was first seen:

    >>> live.seen({7: 71}, 42_000_000); live.seen({7: 71}, 60_000_000)
    >>> live.alive(7, 41_000_000, since_ns=15_000_000), live.alive(7, 41_000_000, 41_000_000)
    (False, True)
    >>> live.alive(7, 45_000_000, since_ns=15_000_000), live.alive(7, 45_000_000, 41_000_000)
    (False, True)
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

#: Two sightings closer than this join one interval of life (ns).
MERGE_GAP_NS = 60_000_000
#: How far before the first sign of life a sample still counts (ns).
SLACK_NS = 25_000_000
#: How far py-spy's placed sample times may be off the wall clock (ns).
CLOCK_SLACK_NS = 5_000_000
#: How far a placed sample time may be off when compared with a span's exact end (ns):
#: the clock beacon places py-spy's samples within about a millisecond
#: (bench/thread_per_request_probe.py).
PLACED_SLACK_NS = 1_000_000
#: How long after its last sign of life a thread that a later snapshot missed still
#: counts as alive (ns).
GRACE_NS = 3_000_000
#: Span lives waiting to be merged at most (the oldest are forgotten beyond it).
MAX_PENDING = 20_000
#: Intervals kept per thread id.
MAX_INTERVALS = 256

#: One sample as the profilers give it: ``(unix time ns, stack, since ns)``.
Sample = tuple[int, Any, int]


class ThreadIdentity:
    """``(ident, native id, born ns)`` of the calling thread, cached per thread.

    >>> identity = ThreadIdentity()
    >>> key = identity.current()
    >>> key[:2] == (threading.get_ident(), threading.get_native_id()), identity.current() is key
    (True, True)
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def current(self) -> tuple[int, int, int]:
        """The calling thread's key; born now (wall ns) if it is new to the agent."""
        try:
            key: tuple[int, int, int] = self._local.key
        except AttributeError:
            key = (threading.get_ident(), threading.get_native_id(), time.time_ns())
            self._local.key = key
        return key

    def after_fork(self) -> None:
        """In a forked child: the forking thread has a new native id."""
        self._local = threading.local()


class _Life:
    __slots__ = ("his", "los", "natives")

    def __init__(self) -> None:
        self.los: list[int] = []
        self.his: list[int] = []
        self.natives: list[int] = []


class ThreadLiveness:
    """Intervals of life per thread id and native id (thread-safe)."""

    def __init__(self) -> None:
        self._threads: dict[int, _Life] = {}
        self._pending: deque[tuple[int, int, int, int]] = deque(maxlen=MAX_PENDING)
        self._snapshots_pending: deque[tuple[int, dict[int, int]]] = deque(maxlen=MAX_PENDING)
        #: Set while snapshots are taken (py-spy runs); spans are recorded only then.
        self.active = False
        self._snapshot_times: list[int] = []
        self._lock = threading.Lock()
        self.snapshots = 0
        #: Samples :meth:`keep` left out since start (an exited thread's stack going on).
        self.dropped = 0

    def after_fork(self) -> None:
        """In a forked child: a new lock and nothing of the parent's threads."""
        self._lock = threading.Lock()
        self._threads.clear()
        self._pending.clear()
        self._snapshots_pending.clear()
        self._snapshot_times.clear()
        self.active = False

    def seen(self, alive: dict[int, int], t_ns: int) -> None:
        """A snapshot: ``{thread id: native id}`` of every thread alive at ``t_ns``.

        Only queued here (the beacon thread stays cheap); merged when read.
        """
        self._snapshots_pending.append((t_ns, alive))
        self.snapshots += 1

    def span(self, ident: int, native: int, start_ns: int, end_ns: int) -> None:
        """A span ran on the thread from ``start_ns`` to ``end_ns``: it was alive.

        Called on the application's thread: only an append (merged when read).
        """
        if self.active:
            self._pending.append((ident, native, start_ns, end_ns))

    def _merge(self) -> None:  # under self._lock
        snapshots = self._snapshots_pending
        times = self._snapshot_times
        while snapshots:
            t_ns, alive = snapshots.popleft()
            if not times or t_ns >= times[-1]:
                times.append(t_ns)
            # The beacon hands the same dict while the same threads live: a run of such
            # snapshots, each within MERGE_GAP_NS of the last, extends each thread's
            # interval at the run's first time and then to its last (what extending at
            # every snapshot of the run does, at one step per thread, not one per
            # snapshot and thread)
            run = [t_ns]
            while (
                snapshots
                and snapshots[0][1] is alive
                and 0 <= snapshots[0][0] - run[-1] <= MERGE_GAP_NS
            ):
                run.append(snapshots.popleft()[0])
                if run[-1] >= times[-1]:
                    times.append(run[-1])
            last = run[-1]
            for ident, native in alive.items():
                self._extend(ident, native, t_ns, t_ns)
                if last == t_ns:
                    continue
                life = self._threads[ident]
                if native and life.natives[-1] == native and life.los[-1] <= t_ns <= life.his[-1]:
                    life.his[-1] = max(life.his[-1], last)
                else:  # the snapshot did not land in the last interval: one at a time
                    for t in run[1:]:
                        self._extend(ident, native, t, t)
        pending = self._pending
        while pending:
            ident, native, lo, hi = pending.popleft()
            self._extend(ident, native, lo, hi)

    def _extend(self, ident: int, native: int, lo: int, hi: int) -> None:
        life = self._threads.get(ident)
        if life is None:
            life = self._threads[ident] = _Life()
        los, his, natives = life.los, life.his, life.natives
        if not native and natives:
            native = natives[-1]
        if los and natives[-1] == native and lo - his[-1] <= MERGE_GAP_NS and lo >= los[-1]:
            his[-1] = max(his[-1], hi)
        elif los and lo < los[-1]:  # out of order (a span ending late): insert
            at = bisect.bisect_left(los, lo)
            los.insert(at, lo)
            his.insert(at, hi)
            natives.insert(at, native)
        else:
            los.append(lo)
            his.append(hi)
            natives.append(native)
            if len(los) > MAX_INTERVALS:
                del los[0], his[0], natives[0]

    def alive(self, ident: int, t_ns: int, since_ns: int | None = None) -> bool:
        """Whether the thread whose stack began at ``since_ns`` may still live at ``t_ns``.

        ``since_ns`` (default ``t_ns``) picks the thread: the one of this id alive when
        the stack began. With no evidence either way, the answer is yes.
        """
        with self._lock:
            if self._snapshots_pending or self._pending:
                self._merge()
            return self._alive(ident, t_ns, t_ns if since_ns is None else since_ns)

    def keep(self, ident: int, samples: Iterable[Sample]) -> list[Sample]:
        """Of ``(t ns, …, since ns)`` samples of one thread id, those its thread lived.

        A sample's stack belongs to the thread alive when it began (``since``); once
        that thread is gone, py-spy's repeats of its last stack are dropped (and counted
        in :attr:`dropped`).
        """
        rows = list(samples)
        with self._lock:
            if self._snapshots_pending or self._pending:
                self._merge()
            if ident not in self._threads:
                return rows
            kept = [s for s in rows if self._alive(ident, s[0], s[2])]
        self.dropped += len(rows) - len(kept)
        return kept

    def lived_until(self, ident: int, t_ns: int) -> int | None:
        """The last sign of life (ns) of the thread with this id that showed signs of
        life before and after ``t_ns`` (a span around it, or snapshots on both sides);
        ``None`` if none did.

        >>> live = ThreadLiveness()
        >>> live.seen({7: 70}, 0); live.seen({7: 70}, 20); live.seen({}, 40)
        >>> live.lived_until(7, 10), live.lived_until(7, 30), live.lived_until(8, 10)
        (20, None, None)
        """
        with self._lock:
            if self._snapshots_pending or self._pending:
                self._merge()
            life = self._threads.get(ident)
            if life is None:
                return None
            los, his, natives = life.los, life.his, life.natives
            end = bisect.bisect_right(los, t_ns)
            if end == 0:
                return None
            first = max(0, end - 64)
            native = natives[end - 1]
            hi = max(his[k] for k in range(first, end) if natives[k] == native)
            for k in range(end, min(len(los), end + 64)):
                if natives[k] != native:
                    break
                hi = max(hi, his[k])
            return hi if t_ns <= hi else None

    def _alive(self, ident: int, t_ns: int, since_ns: int) -> bool:  # under self._lock
        life = self._threads.get(ident)
        if life is None or not life.los:
            return True
        los, his, natives = life.los, life.his, life.natives
        end = bisect.bisect_right(los, t_ns + SLACK_NS)
        if end == 0:
            return True  # before what we know of it: no evidence either way
        # the latest thread with this id seen by t (+ slack): its intervals run back
        # to its first sign of life, `start`
        first = max(0, end - 64)
        j = end - 1
        native, hi = natives[j], his[j]
        while j > first and natives[j - 1] == native:
            j -= 1
            if his[j] > hi:  # (not max(): this walk runs for every sample kept)
                hi = his[j]
        start = los[j]
        if j == 0 or (j == first and natives[j - 1] == native):
            # no forerunner known: the stack is this thread's
            return t_ns < start or self._lived(t_ns, hi)
        # A thread id is held by one living thread at a time: this one was born after
        # its forerunner's last sign of life, and after the last snapshot without it.
        previous = natives[j - 1]
        previous_hi = max(his[k] for k in range(first, j) if natives[k] == previous)
        born = max(self._born_after(start) - CLOCK_SLACK_NS, previous_hi - PLACED_SLACK_NS)
        if since_ns >= born:
            # its own stack, begun since it was born (just before its first sign of life)
            return t_ns < start or self._lived(t_ns, hi)
        # A stack begun before this thread was born: its forerunner's last one, which
        # py-spy repeats until the new thread's stack changes (or for ever, when the new
        # thread's first stack is the same: then its samples until its first change are
        # lost, as they are on its spans). Kept only while the forerunner lived.
        return self._lived(t_ns, previous_hi)

    def _born_after(self, start_ns: int) -> int:  # under self._lock
        """When a thread first seen at ``start_ns`` was at the earliest born: the last
        snapshot before it (which did not see it), else :data:`SLACK_NS` before."""
        times = self._snapshot_times
        k = bisect.bisect_left(times, start_ns) - 1
        return times[k] if k >= 0 else start_ns - SLACK_NS

    def _lived(self, t_ns: int, hi: int) -> bool:  # under self._lock
        if t_ns <= hi:
            return True
        # After its last sign of life: if a later snapshot missed it, it exited in
        # between, most likely right away (threads end soon after their last span), so
        # it counts as alive only for GRACE_NS more.
        times = self._snapshot_times
        after = bisect.bisect_right(times, hi)
        return after >= len(times) or t_ns <= hi + GRACE_NS

    def forget_before(self, t_ns: int) -> None:
        """Drop intervals that ended, and snapshots taken, before ``t_ns``."""
        with self._lock:
            cut = bisect.bisect_left(self._snapshot_times, t_ns)
            del self._snapshot_times[:cut]
            for ident in list(self._threads):
                life = self._threads[ident]
                keep = [k for k, hi in enumerate(life.his) if hi >= t_ns]
                life.los = [life.los[k] for k in keep]
                life.his = [life.his[k] for k in keep]
                life.natives = [life.natives[k] for k in keep]
                if not life.los:
                    del self._threads[ident]


def inherited_until(times: Sequence[int], since: Sequence[int], born_ns: int) -> int | None:
    """Until when a thread first seen at ``born_ns`` shows its forerunner's last stack.

    ``times`` and ``since`` are one thread id's samples (time order) and when each
    one's stack began. py-spy reports stack *changes*, so after a thread exits its last
    stack seems to go on until the new thread with the same id changes it: samples
    whose stack began before ``born_ns`` and that come before the first change after
    it are the forerunner's. ``None``: no change after it is known.

    >>> inherited_until([10, 20, 30, 40], [0, 0, 0, 35], born_ns=15)
    40
    """
    j = bisect.bisect_left(times, born_ns)
    while j < len(times) and since[j] < born_ns:
        j += 1
    return times[j] if j < len(times) else None


class AgentThreads:
    """The threads the agent itself started: their samples are not the service's, and
    their CPU is the agent's overhead.

    Each agent thread registers itself when it starts (``add()``, or ``add(ident)``
    for another thread) and is forgotten once it has exited, so that an application
    thread that reuses its id is not mistaken for it.

    >>> threads = AgentThreads()
    >>> threads.add()
    >>> threading.get_ident() in threads, threads.native_ids() == [threading.get_native_id()]
    (True, True)
    """

    def __init__(self) -> None:
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def add(self, ident: int | None = None) -> None:
        """Register the thread with this id (default: the calling thread)."""
        if ident is None or ident == threading.get_ident():
            thread = threading.current_thread()
        else:
            found = [t for t in threading.enumerate() if t.ident == ident]
            if not found:
                return
            thread = found[0]
        if thread.ident is not None:
            with self._lock:
                self._threads[thread.ident] = thread

    def __contains__(self, ident: object) -> bool:
        thread = self._threads.get(ident) if isinstance(ident, int) else None
        return thread is not None and thread.is_alive()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Register the calling thread for the duration of the block."""
        self.add()
        try:
            yield
        finally:
            with self._lock:
                self._threads.pop(threading.get_ident(), None)

    def threads(self) -> list[threading.Thread]:
        """The registered threads still alive (the others are forgotten)."""
        with self._lock:
            for ident in [i for i, t in self._threads.items() if not t.is_alive()]:
                del self._threads[ident]
            return list(self._threads.values())

    def native_ids(self) -> list[int]:
        """Native ids of the living agent threads (for their CPU times)."""
        return [t.native_id for t in self.threads() if t.native_id is not None]

    def after_fork(self) -> None:
        """In a forked child: none of the parent's threads run here."""
        self._lock = threading.Lock()
        self._threads.clear()

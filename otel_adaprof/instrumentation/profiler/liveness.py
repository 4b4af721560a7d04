"""When each thread was alive, so that py-spy's samples of exited threads are dropped.

py-spy reports stack *changes*; when a thread exits it reports nothing, so the
thread's last stack seems to go on until py-spy's file ends (or a new thread reuses
the id). On a server with one thread per request that multiplies samples many times
over. While py-spy runs, the clock beacon notes every living thread (id and native
id) at every move (20–100 ms); spans add what they prove (their thread was alive from start to
end). A thread last known alive at ``hi`` and missing from a snapshot taken after
``hi`` had exited in between: its samples after ``hi`` (plus :data:`GRACE_NS`) are
dropped.

    >>> live = ThreadLiveness()
    >>> for t in (0, 20, 40):
    ...     live.seen({7: 70, 9: 90} if t < 40 else {9: 90}, t * 1_000_000)
    >>> live.alive(7, 21_000_000), live.alive(7, 30_000_000), live.alive(9, 45_000_000)
    (True, False, True)
    >>> live.alive(8, 10)          # never seen: no evidence against it
    True
"""

from __future__ import annotations

import bisect
import threading
from collections import deque

#: Two sightings closer than this join one interval of life (ns).
MERGE_GAP_NS = 60_000_000
#: How far before the first sign of life a sample still counts (ns).
SLACK_NS = 25_000_000
#: How long after its last sign of life a thread that a later snapshot missed still
#: counts as alive (ns).
GRACE_NS = 3_000_000
#: Span lives waiting to be merged at most (the oldest are forgotten beyond it).
MAX_PENDING = 20_000
#: Intervals kept per thread id.
MAX_INTERVALS = 256


class _Life:
    __slots__ = ("his", "los", "native")

    def __init__(self) -> None:
        self.los: list[int] = []
        self.his: list[int] = []
        self.native = 0


class ThreadLiveness:
    """Intervals of life per thread id (thread-safe)."""

    def __init__(self) -> None:
        self._threads: dict[int, _Life] = {}
        self._pending: deque[tuple[int, int, int, int]] = deque(maxlen=MAX_PENDING)
        self._snapshots_pending: deque[tuple[int, dict[int, int]]] = deque(maxlen=MAX_PENDING)
        #: Set while snapshots are taken (py-spy runs); spans are recorded only then.
        self.active = False
        self._snapshot_times: list[int] = []
        self._lock = threading.Lock()
        self.snapshots = 0

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

    def _merge_snapshots(self) -> None:  # under self._lock
        pending = self._snapshots_pending
        while pending:
            t_ns, alive = pending.popleft()
            if not self._snapshot_times or t_ns >= self._snapshot_times[-1]:
                self._snapshot_times.append(t_ns)
            for ident, native in alive.items():
                self._extend(ident, native, t_ns, t_ns)

    def span(self, ident: int, native: int, start_ns: int, end_ns: int) -> None:
        """A span ran on the thread from ``start_ns`` to ``end_ns``: it was alive.

        Called on the application's thread: only an append (merged when read).
        """
        if self.active:
            self._pending.append((ident, native, start_ns, end_ns))

    def _merge_pending(self) -> None:  # under self._lock
        pending = self._pending
        while pending:
            ident, native, lo, hi = pending.popleft()
            self._extend(ident, native, lo, hi)

    def _extend(self, ident: int, native: int, lo: int, hi: int) -> None:
        life = self._threads.get(ident)
        if life is None:
            life = self._threads[ident] = _Life()
        same_thread = life.native in (0, native)
        if life.his and same_thread and lo - life.his[-1] <= MERGE_GAP_NS and lo >= life.los[-1]:
            life.his[-1] = max(life.his[-1], hi)
        elif life.his and lo < life.los[-1]:  # out of order (a span ending late): insert
            at = bisect.bisect_left(life.los, lo)
            life.los.insert(at, lo)
            life.his.insert(at, hi)
        else:
            life.los.append(lo)
            life.his.append(hi)
            if len(life.los) > MAX_INTERVALS:
                del life.los[0], life.his[0]
        life.native = native or life.native

    def alive(self, ident: int, t_ns: int) -> bool:
        """Whether the thread may have been alive at ``t_ns`` (no evidence: yes)."""
        with self._lock:
            if self._snapshots_pending:
                self._merge_snapshots()
            if self._pending:
                self._merge_pending()
            life = self._threads.get(ident)
            if life is None or not life.los:
                return True
            if t_ns < life.los[0] - SLACK_NS:
                return True  # before what we know of it: no evidence either way
            k = bisect.bisect_right(life.los, t_ns + SLACK_NS)
            if k == 0:
                return True
            hi = max(life.his[max(0, k - 64) : k])
            if t_ns <= hi:
                return True
            # After its last sign of life: if a later snapshot missed it, it exited in
            # between — most likely right away (threads end soon after their last
            # span), so it counts as alive only for GRACE_NS more.
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
                keep = [(lo, hi) for lo, hi in zip(life.los, life.his, strict=True) if hi >= t_ns]
                life.los = [lo for lo, _ in keep]
                life.his = [hi for _, hi in keep]
                if not life.los:
                    del self._threads[ident]

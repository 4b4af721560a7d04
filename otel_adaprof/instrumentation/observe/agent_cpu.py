"""The agent's own CPU: every thread it starts and every py-spy run, per config version.

Each agent thread calls :meth:`AgentCpu.enter` with the part it belongs to when it
starts and :meth:`AgentCpu.leave` when it ends (its final CPU time is kept). Threads
started elsewhere can be named by a callable (``extra``, native ids with their part).
Meters (``add_meter``) give monotonic CPU seconds of other sources, such as py-spy's
children. :meth:`AgentCpu.checkpoint` attributes what was used since the last
checkpoint to the config version in force, and :meth:`AgentCpu.take` hands a window
exactly its version's CPU per part (what other versions used is dropped and counted).

A live thread's CPU is read from its CPU-time clock (:func:`thread_cpu_ns`,
nanoseconds), else ``/proc/self/task/<tid>/schedstat``, else
``/proc/self/task/<tid>/stat`` (clock ticks). Each agent thread is also named
``adaprof-<part>`` for the operating system (``top -H``, ``ps -L``, the benchmarks).

    >>> import threading, time
    >>> cpu = AgentCpu()
    >>> def burn():
    ...     cpu.enter("beacon")
    ...     end = time.thread_time() + 0.05
    ...     while time.thread_time() < end:
    ...         pass
    ...     cpu.leave()
    >>> t = threading.Thread(target=burn); t.start(); t.join()
    >>> cpu.checkpoint(version=7)
    >>> round(cpu.take(7)["beacon"], 2) >= 0.04
    True
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from otel_adaprof.protocol import MAX_LATE_VERSIONS

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def name_os_thread(native_id: int, part: str) -> None:
    """Name a thread of this process ``adaprof-<part>`` for the OS (best effort)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/self/task/{native_id}/comm").write_text(f"adaprof-{part}"[:15])


#: Part of the agent each thread name belongs to (``profiler_cpu_breakdown`` keys).
PARTS_BY_THREAD_NAME = {
    "adaprof-profiler": "parse",
    "adaprof-clock": "beacon",
    "adaprof-sampler": "inprocess",
    "adaprof-poller": "poller",
    "adaprof-span-join": "join",
    "adaprof-fast-loop": "slow_span",  # slow-span capture and the change signals
}


def thread_part(name: str) -> str:
    """The part an agent thread belongs to, from its Python name.

    >>> thread_part("adaprof-span-join"), thread_part("adaprof-slow-span")
    ('join', 'slow_span')
    """
    known = PARTS_BY_THREAD_NAME.get(name)
    if known is not None:
        return known
    return (name.removeprefix("adaprof-").replace("-", "_") or "agent")[:64]


def thread_cpu_clock(native_id: int) -> int:
    """The id of the CPU-time clock of a thread of this process, from its native id.

    Linux's ``MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)``, what glibc's
    ``pthread_getcpuclockid`` returns, built from the native id so that no
    ``pthread_t`` of a thread that may have exited is touched.

    >>> thread_cpu_clock(1234)
    -9874
    """
    return (~native_id << 3) | 6


def thread_cpu_ns(native_id: int) -> int:
    """CPU nanoseconds of a thread of this process, from its CPU-time clock.

    The figure of the first field of ``/proc/self/task/<tid>/schedstat``, without a
    file, and without releasing the GIL (``time.clock_gettime_ns`` keeps it; a read of
    ``/proc`` hands it to a busy thread and waits to get it back). ``OSError`` when the
    thread is gone (or is not this process's, or there is no such clock here).

    >>> thread_cpu_ns(threading.get_native_id()) > 0
    True
    """
    gettime = getattr(time, "clock_gettime_ns", None)
    if gettime is None:  # not on this platform
        raise OSError("no thread CPU clocks here")
    return int(gettime(thread_cpu_clock(native_id)))


def thread_cpu_seconds(native_id: int) -> float | None:
    """CPU seconds of one thread of this process, ``None`` when it is gone."""
    with contextlib.suppress(OSError):
        return thread_cpu_ns(native_id) / 1e9
    base = f"/proc/self/task/{native_id}"
    try:
        return int(Path(base + "/schedstat").read_bytes().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        raw = Path(base + "/stat").read_bytes()
        fields = raw[raw.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


class AgentCpu:
    """CPU seconds of the agent's threads and children, per part and config version."""

    def __init__(self, extra: Callable[[], Iterable[tuple[str, int]]] | None = None) -> None:
        self._extra = extra
        self._live: dict[int, str] = {}  # native id -> part
        self._retired: dict[str, float] = {}
        self._meters: dict[str, Callable[[], float]] = {}
        self._last: dict[tuple[str, int], float] = {}  # (part, native id or 0) -> seconds
        self._by_version: dict[int, dict[str, float]] = {}
        self._named: set[int] = set()
        self._left: set[int] = set()  # native ids that counted themselves and left
        self._lock = threading.Lock()
        #: CPU seconds that belonged to a version no window reported.
        self.dropped_seconds = 0.0
        self._late: dict[int, float] = {}
        self._loans: dict[str, Callable[[], Mapping[int, float]]] = {}

    def enter(self, part: str) -> None:
        """Register the calling thread as part ``part`` of the agent."""
        native = threading.get_native_id()
        name_os_thread(native, part)
        with self._lock:
            self._live[native] = part
            self._left.discard(native)

    def leave(self) -> None:
        """The calling thread ends: keep its CPU time (call it last in the thread)."""
        native = threading.get_native_id()
        spent = time.thread_time()
        with self._lock:
            part = self._live.pop(native, None)
            self._left.add(native)
            if part is not None:
                seen = self._last.pop((part, native), 0.0)
                self._retired[part] = self._retired.get(part, 0.0) + max(0.0, spent - seen)

    def add_loan(self, part: str, seconds: Callable[[], Mapping[int, float]]) -> None:
        """CPU seconds that other threads spent on ``part``'s work, by native id (e.g. the
        clock beacon's notes taken on the fast loop's wake-ups; monotonic): counted as
        ``part``, not as those threads' own parts.

        >>> cpu, me = AgentCpu(), threading.get_native_id()
        >>> cpu.add_loan("beacon", lambda: {me: 0.25}); cpu.checkpoint(1); cpu.take(1)
        {'beacon': 0.25}
        """
        self._loans[part] = seconds

    def add_meter(self, part: str, seconds: Callable[[], float]) -> None:
        """A monotonic source of CPU seconds (e.g. py-spy's runs) counted as ``part``."""
        self._meters[part] = seconds

    def counts_itself(self, native_id: int) -> bool:
        """Whether this thread counts its own CPU here (now, or until it left)."""
        return native_id in self._live or native_id in self._left

    def native_ids(self) -> list[int]:
        """Native ids of the registered threads alive now."""
        with self._lock:
            return list(self._live)

    def name_threads(self) -> list[tuple[str, int]]:
        """Name the threads given by ``extra`` for the OS (once each); they are returned."""
        extra = list(self._extra()) if self._extra is not None else []
        for part, native in extra:
            if native not in self._named:
                self._named.add(native)
                name_os_thread(native, part)
        return extra

    def checkpoint(self, version: int) -> None:
        """Attribute the CPU used since the last checkpoint to ``version``."""
        threads = dict(self._live)
        extra = self.name_threads()
        self._left = {n for n in self._left if os.path.exists(f"/proc/self/task/{n}")}
        readings: list[tuple[str, int, float]] = []
        for native, part in [*threads.items(), *((n, p) for p, n in extra)]:
            spent = thread_cpu_seconds(native)
            if spent is not None:
                readings.append((part, native, spent))
        meters = [(part, 0, read()) for part, read in list(self._meters.items())]
        if self._loans:  # a thread's CPU spent on another part is that part's
            lent: dict[int, float] = {}
            for part, read_loans in list(self._loans.items()):
                loans = dict(read_loans())
                meters.append((part, 0, sum(loans.values())))
                for native, spent in loans.items():
                    lent[native] = lent.get(native, 0.0) + spent
            readings = [(part, n, spent - lent.get(n, 0.0)) for part, n, spent in readings]
        with self._lock:
            bucket = self._by_version.setdefault(version, {})
            for part, key, spent in [*readings, *meters]:
                if key in threads and key not in self._live:
                    continue  # left while we read: leave() counted it
                previous = self._last.get((part, key), 0.0)
                if spent > previous:
                    bucket[part] = bucket.get(part, 0.0) + spent - previous
                    self._last[(part, key)] = spent
            for part, spent in self._retired.items():
                bucket[part] = bucket.get(part, 0.0) + spent
            self._retired = {}

    def move_meter(self, part: str, version: int) -> float:
        """Credit what meter ``part`` used since the last checkpoint to ``version`` (e.g.
        the tail of a py-spy segment cut after a new version came in force); the next
        checkpoint does not count it again. Returns the seconds moved."""
        read = self._meters.get(part)
        if read is None:
            return 0.0
        now = read()
        with self._lock:
            previous = self._last.get((part, 0), 0.0)
            moved = max(0.0, now - previous)
            if moved:
                self._last[(part, 0)] = previous + moved
                bucket = self._by_version.setdefault(version, {})
                bucket[part] = bucket.get(part, 0.0) + moved
            return moved

    def take(self, version: int) -> dict[str, float]:
        """The CPU seconds per part that ``version`` used since the last take.

        What earlier versions used since their own take (a py-spy segment's tail) is
        kept for :meth:`take_late`; later versions' waits for their window.
        """
        with self._lock:
            mine = self._by_version.pop(version, {})
            for other in [v for v in self._by_version if v < version]:
                late = self._late.setdefault(other, 0.0)
                self._late[other] = late + sum(self._by_version.pop(other).values())
            return {part: round(seconds, 6) for part, seconds in mine.items() if seconds > 0}

    def take_late(self) -> dict[int, float]:
        """CPU seconds of already-reported versions, used after their report, by version."""
        with self._lock:
            late, self._late = self._late, {}
            keep = sorted(late, reverse=True)[:MAX_LATE_VERSIONS]
            self.dropped_seconds += sum(s for v, s in late.items() if v not in keep)
            return {v: round(late[v], 6) for v in keep if late[v] > 0}

"""A clock beacon: places py-spy's samples on the wall clock to about a millisecond.

py-spy stamps events in microseconds since its own clock started, an unknown few tens
of milliseconds after it was spawned. While py-spy runs, the beacon thread moves
between four tiny functions every period (every other sample: 20 ms at 100 Hz, 40 ms
at 50 Hz), noting the wall time of each move.
py-spy sees each move at its next sample, so for every move ``k`` the event's time
is about ``wall_k − ts_k`` plus the delay until that sample; with tens of moves a run
the median over a run, plus half a sampling period, puts samples where they were
taken (see :meth:`ClockBeacon.calibrate`). The beacon's own samples are never
kept (its thread is ignored by the sample store). At every move it also notes which
threads are alive (:class:`~otel_adaprof.instrumentation.threads.ThreadLiveness`)
and, in ``profile_mode: cpu``, which of them used CPU since the last move.

In ``cpu`` mode (py-spy ``--gil``) py-spy sees the beacon's thread only when it
happens to hold the GIL at a sample, which a thread awake some 40 µs every 20 ms
almost never does: no run was placed by the beacon thread in that mode (0 of 56 runs
at 100 Hz, bench/output/attribution_cpu_s18.json). There the moves are only their
notes, so when another agent thread wakes that often anyway (the agent's fast loop,
:attr:`ClockBeacon.host`) the notes ride on its wake-ups (:meth:`ClockBeacon.visit`)
and the beacon starts no thread of its own: one thread wakes instead of two (see
docs/benchmarks.md).

    >>> beacon = ClockBeacon()
    >>> beacon.moves.extend([(0, 1_000_000_000), (1, 1_020_000_000), (2, 1_040_000_000)])
    >>> events = [{"ph": "B", "name": f"_adaprof_clock_{k}", "ts": ts}
    ...           for k, ts in ((0, 3_000), (1, 22_500), (2, 43_500))]
    >>> beacon.calibrate(events, rough_t0_ns=990_000_000, period_ns=10_000_000)
    1002000000
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from otel_adaprof.instrumentation.observe.agent_cpu import thread_cpu_clock
from otel_adaprof.instrumentation.threads import ThreadLiveness

log = logging.getLogger("otel_adaprof.agent")

#: Seconds between two moves of the beacon, at most and at least: the profiler sets the
#: period per py-spy run to the sampling interval within these bounds (at 1–10 Hz the
#: sampling period dwarfs any clock error, and each wake-up costs CPU: 0.1–0.2 ms per
#: move on the development machine, the CPU notes of cpu mode included).
MIN_PERIOD_S = 0.02
MAX_PERIOD_S = 0.5
#: Sampling intervals between two moves (:meth:`ClockBeacon.period_for`): a move, and in
#: cpu mode its notes of which threads ran, every other sample, as at 100 Hz under the
#: 20 ms floor. At one move a sample, 50 Hz paid the beacon's and the fast loop's
#: wake-ups (7-9 ms of CPU a second) for half 100 Hz's samples: 2.8-4.5 ms a sample
#: against 1.7-2.1 (bench/output/cpu_by_action_s32.json; the notes' precision at one
#: and two samples a move: bench/output/attribution_cpu_s33.json).
SAMPLES_PER_MOVE = 2
#: A move and the event that saw it are matched within this window of the rough
#: anchor (ns); same-named moves are at least four periods (80 ms) apart.
MATCH_WINDOW_NS = 35_000_000
#: Fewer matched moves than this: keep the rough anchor.
MIN_MATCHES = 3


def _adaprof_clock_0(beacon: ClockBeacon) -> None:
    beacon.hold()


def _adaprof_clock_1(beacon: ClockBeacon) -> None:
    beacon.hold()


def _adaprof_clock_2(beacon: ClockBeacon) -> None:
    beacon.hold()


def _adaprof_clock_3(beacon: ClockBeacon) -> None:
    beacon.hold()


_STEPS = (_adaprof_clock_0, _adaprof_clock_1, _adaprof_clock_2, _adaprof_clock_3)
_NAMES = {f.__name__: i for i, f in enumerate(_STEPS)}


class ClockBeacon:
    """The beacon thread and the moves it made (the last few seconds' worth)."""

    def __init__(
        self,
        liveness: ThreadLiveness | None = None,
        on_thread: Callable[[bool], None] | None = None,
    ) -> None:
        self.liveness = liveness
        #: Called in the beacon thread when it starts (True) and ends (False): CPU counting.
        self.on_thread = on_thread
        self.moves: deque[tuple[int, int]] = deque(maxlen=4096)
        #: In ``profile_mode: cpu``: note at every move which threads ran since the last.
        self.track_cpu = False
        self._ran: deque[tuple[int, frozenset[int]]] = deque(maxlen=4096)
        self._cpu_seen: dict[int, int] = {}
        #: Thread ids whose CPU is not noted (the agent's own threads: their samples
        #: are never kept, so whether they ran does not matter).
        self.skip: Container[int] = ()
        self._threads_seen: list[threading.Thread] = []
        self._alive_seen: dict[int, int] = {}
        self._watch: list[tuple[int, int, int]] = []  # (ident, native id, clock id)
        self._watch_for: dict[int, int] | None = None
        self.ident: int | None = None
        self.period_s = MIN_PERIOD_S
        #: Longest period :meth:`set_period` allows (benchmarks set the old 0.1 s).
        self.max_period_s = MAX_PERIOD_S
        #: Set (to its name) while another agent thread calls :meth:`visit` at its every
        #: wake-up: in cpu mode the notes are taken there, and no beacon thread runs.
        self.host: str | None = None
        #: CPU seconds of the hosted notes, by native id of the thread that took them
        #: (CPU accounting: they are the beacon's, spent on the host's thread).
        self.hosted_cpu: dict[int, float] = {}
        #: Called when the notes start riding on the host (set by the host: it may be
        #: asleep for longer than a period, and the first notes are due now).
        self.wake_host: Callable[[], None] | None = None
        self._hosted = False
        self._last_note_ns = 0
        self._note_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the beacon is moving (its thread, or its notes on the host's)."""
        return self._hosted or self._thread_alive()

    @property
    def hosted(self) -> bool:
        """Whether the notes ride on the host's wake-ups (no beacon thread)."""
        return self._hosted

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start moving: in cpu mode (:attr:`track_cpu`) with a :attr:`host`, its notes
        ride on the host's wake-ups; else a daemon thread moves. Idempotent, and it
        switches between the two when the mode or the host changed."""
        hosted = self.host is not None and self.track_cpu
        if (self._hosted if hosted else self._thread_alive()) and not self._stop.is_set():
            return
        self.stop()
        self._stop = threading.Event()
        if hosted:
            self._last_note_ns = 0
            self._hosted = True
            if self.liveness is not None:
                self.liveness.active = True
            if self.wake_host is not None:
                self.wake_host()
            return
        self._thread = threading.Thread(target=self._run, name="adaprof-clock", daemon=True)
        self._thread.start()
        while self.ident is None and self._thread.is_alive():
            time.sleep(0.001)

    def stop(self) -> None:
        """Stop moving."""
        self._stop.set()
        if self._hosted:
            self._hosted = False
            if self.liveness is not None:
                self.liveness.active = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._thread = None

    def visit(self, now_ns: int) -> float | None:
        """Called by the :attr:`host` at each of its wake-ups: the notes of a move when
        three quarters of a period have passed since the last (a host waking every
        period takes them at every wake-up, one waking more often not at each); seconds
        until the next is due, or ``None`` while the notes do not ride on the host.

        >>> beacon = ClockBeacon(ThreadLiveness())
        >>> beacon.host, beacon.track_cpu = "fast loop", True
        >>> beacon.start(); beacon.hosted, beacon.liveness.active
        (True, True)
        >>> beacon.visit(10**9), beacon.visit(10**9 + 10_000_000), beacon.liveness.snapshots
        (0.02, 0.01, 1)
        >>> beacon.visit(10**9 + 16_000_000), beacon.liveness.snapshots
        (0.02, 2)
        >>> beacon.stop(); beacon.visit(10**9 + 40_000_000), beacon.liveness.active
        (None, False)
        """
        if not self._hosted:
            return None
        period_ns = int(self.period_s * 1e9)
        due = self._last_note_ns + period_ns
        if now_ns >= due - period_ns // 4:
            t_cpu = time.thread_time()
            with self._note_lock:
                if self._hosted:
                    self.note()
            self._last_note_ns, due = now_ns, now_ns + period_ns
            native, spent = threading.get_native_id(), time.thread_time() - t_cpu
            self.hosted_cpu[native] = self.hosted_cpu.get(native, 0.0) + spent
        return (due - now_ns) / 1e9

    def _run(self) -> None:
        self.ident = threading.get_ident()
        if self.on_thread is not None:
            self.on_thread(True)
        stop = self._stop
        k = 0
        if self.liveness is not None:
            self.liveness.active = True
        try:
            while not stop.is_set():
                step = k % len(_STEPS)
                self.moves.append((step, time.time_ns()))
                _STEPS[step](self)
                k += 1
        except Exception:  # without the beacon, samples keep the rough clock
            self.moves.clear()
            log.exception("otel-adaprof: clock beacon stopped")
        finally:
            if self.liveness is not None:
                self.liveness.active = False
            if self.on_thread is not None:
                self.on_thread(False)

    def set_period(self, seconds: float) -> None:
        """Move every ``seconds``, within [:data:`MIN_PERIOD_S`, :data:`max_period_s`]."""
        self.period_s = min(self.max_period_s, max(MIN_PERIOD_S, seconds))

    @staticmethod
    def period_for(sampling_interval_s: float) -> float:
        """The period between moves for a sampling interval: :data:`SAMPLES_PER_MOVE`
        intervals (before the bounds of :meth:`set_period`).

        >>> ClockBeacon.period_for(0.02), ClockBeacon.period_for(0.01)  # 50 Hz, 100 Hz
        (0.04, 0.02)
        """
        return SAMPLES_PER_MOVE * sampling_interval_s

    def hold(self) -> None:
        """Between two moves: the notes (:meth:`note`), then sleep one period.

        ``time.sleep``, not a timed ``Event.wait``: that costs twice the CPU per
        wake-up, and stopping within one period is soon enough.
        """
        with self._note_lock:
            self.note()
        if not self._stop.is_set():
            time.sleep(self.period_s)

    def note(self) -> None:
        """A move's notes: the living threads and, in cpu mode, which of them ran."""
        if self.liveness is not None or self.track_cpu:
            alive = self._alive()
            now = time.time_ns()
            if self.liveness is not None:  # which threads live, for ThreadLiveness
                self.liveness.seen(alive, now)
            if self.track_cpu:
                self._note_cpu(alive, now)

    def _alive(self) -> dict[int, int]:
        """``{thread id: native id}`` of the living threads (not to be modified).

        The same dict as at the last move while the same threads live (the list of
        ``threading.enumerate()`` compares by identity, in C); built again when one
        started or ended, and at every move while one is still starting (no ids yet).
        """
        threads = threading.enumerate()
        if threads != self._threads_seen:
            alive = {t.ident or 0: t.native_id or 0 for t in threads}
            complete = all(alive) and all(alive.values())
            self._threads_seen = threads if complete else []
            self._alive_seen = alive
        return self._alive_seen

    def _note_cpu(self, alive: dict[int, int], now_ns: int) -> None:
        """Which threads used CPU since the last move (their CPU-time clocks,
        :func:`~otel_adaprof.instrumentation.observe.agent_cpu.thread_cpu_ns`: one
        ``clock_gettime`` per thread and move, the GIL kept throughout)."""
        if alive is not self._watch_for:  # threads came or went: whom to watch
            me, skip = threading.get_ident(), self.skip
            self._watch = [
                (ident, native, thread_cpu_clock(native))
                for ident, native in alive.items()
                if ident != me and native and ident not in skip
            ]
            self._watch_for = alive
        seen, ran = self._cpu_seen, set()
        now_seen: dict[int, int] = {}
        gettime = getattr(time, "clock_gettime_ns", None)
        if gettime is None:  # not on this platform: no evidence, samples are kept
            return
        for ident, native, clock in self._watch:
            try:
                spent = gettime(clock)
            except OSError:  # exited since the snapshot, or no such clock here
                continue
            now_seen[native] = spent
            if spent != seen.get(native, -1):
                ran.add(ident)
        if self._watch and not now_seen:
            return  # no clock could be read (a sandbox?): no evidence, samples are kept
        self._cpu_seen = now_seen
        self._ran.append((now_ns, frozenset(ran)))

    def ran_on_cpu(self) -> Callable[[int, int], bool] | None:
        """``ran(ident, t_ns)``: whether that thread used CPU in the beacon's interval
        around ``t_ns`` (``True`` where nothing was noted); ``None`` if nothing was."""
        rows = list(self._ran)
        if len(rows) < 2:
            return None
        times = [t for t, _ in rows]

        def ran(ident: int, t_ns: int) -> bool:
            k = bisect.bisect_left(times, t_ns)
            if k == 0 or k >= len(times):
                return True  # before the first or after the last note: unknown
            return ident in rows[k][1]

        return ran

    def calibrate(
        self, events: Sequence[Mapping[str, Any]], rough_t0_ns: int, period_ns: int = 0
    ) -> int | None:
        """``t0`` (wall ns of py-spy's ``ts = 0``) from the beacon's events, or ``None``.

        Each move is seen at the next sample (on average half a period later) and
        stamped when py-spy has processed that sample (a latency that varies). The
        median of ``wall − ts`` plus half a period places samples where they were
        taken on average, rather than when py-spy got round to writing them down.
        """
        moves = list(self.moves)
        if not moves:
            return None
        estimates: list[int] = []
        for ev in events:
            if ev.get("ph") != "B":
                continue
            step = _NAMES.get(str(ev.get("name")))
            ts = ev.get("ts")
            if step is None or not isinstance(ts, (int, float)):
                continue
            seen_at = rough_t0_ns + int(ts * 1000)
            candidates = [w for s, w in moves if s == step and abs(seen_at - w) <= MATCH_WINDOW_NS]
            if not candidates:
                continue
            estimates.append(max(candidates) - int(ts * 1000))
        if len(estimates) < MIN_MATCHES:
            return None
        estimates.sort()
        return estimates[len(estimates) // 2] + period_ns // 2

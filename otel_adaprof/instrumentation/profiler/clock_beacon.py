"""A clock beacon: places py-spy's samples on the wall clock to about a millisecond.

py-spy stamps events in microseconds since its own clock started, an unknown few tens
of milliseconds after it was spawned. While py-spy runs, the beacon thread moves
between four tiny functions every :data:`PERIOD_S`, noting the wall time of each move.
py-spy sees each move at its next sample, so for every move ``k`` the event's time
is about ``wall_k − ts_k`` plus the delay until that sample; with fifty moves a second
the median over a run, plus half a sampling period, puts samples where they were
taken (see :meth:`ClockBeacon.calibrate`). The beacon's own samples are never
kept (its thread is ignored by the sample store). Every 5 ms it also notes which
threads are alive (:class:`~otel_adaprof.instrumentation.profiler.liveness.ThreadLiveness`).

    >>> beacon = ClockBeacon()
    >>> beacon.moves.extend([(0, 1_000_000_000), (1, 1_020_000_000), (2, 1_040_000_000)])
    >>> events = [{"ph": "B", "name": f"_adaprof_clock_{k}", "ts": ts}
    ...           for k, ts in ((0, 3_000), (1, 22_500), (2, 43_500))]
    >>> beacon.calibrate(events, rough_t0_ns=990_000_000, period_ns=10_000_000)
    1002000000
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_adaprof.instrumentation.profiler.liveness import ThreadLiveness

log = logging.getLogger("otel_adaprof.agent")

#: Seconds between two moves of the beacon.
PERIOD_S = 0.02
#: A move and the event that saw it are matched within this window of the rough
#: anchor (ns); same-named moves are four periods apart.
MATCH_WINDOW_NS = 35_000_000
#: Fewer matched moves than this: keep the rough anchor.
MIN_MATCHES = 3

#: Snapshots of the living threads per move (one every 5 ms).
SNAPSHOTS_PER_MOVE = 4


def _hold(stop: threading.Event, between: Callable[[], None]) -> None:
    for _ in range(SNAPSHOTS_PER_MOVE):
        between()
        if stop.wait(PERIOD_S / SNAPSHOTS_PER_MOVE):
            return


def _adaprof_clock_0(stop: threading.Event, between: Callable[[], None]) -> None:
    _hold(stop, between)


def _adaprof_clock_1(stop: threading.Event, between: Callable[[], None]) -> None:
    _hold(stop, between)


def _adaprof_clock_2(stop: threading.Event, between: Callable[[], None]) -> None:
    _hold(stop, between)


def _adaprof_clock_3(stop: threading.Event, between: Callable[[], None]) -> None:
    _hold(stop, between)


_STEPS = (_adaprof_clock_0, _adaprof_clock_1, _adaprof_clock_2, _adaprof_clock_3)
_NAMES = {f.__name__: i for i, f in enumerate(_STEPS)}


class ClockBeacon:
    """The beacon thread and the moves it made (the last few seconds' worth)."""

    def __init__(self, liveness: ThreadLiveness | None = None) -> None:
        self.liveness = liveness
        self.moves: deque[tuple[int, int]] = deque(maxlen=4096)
        self.ident: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the beacon thread is moving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start moving (a daemon thread); idempotent."""
        if self.running:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="adaprof-clock", daemon=True)
        self._thread.start()
        while self.ident is None and self._thread.is_alive():
            time.sleep(0.001)

    def stop(self) -> None:
        """Stop moving."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._thread = None

    def _run(self) -> None:
        self.ident = threading.get_ident()
        stop = self._stop
        k = 0
        if self.liveness is not None:
            self.liveness.active = True
        try:
            while not stop.is_set():
                step = k % len(_STEPS)
                self.moves.append((step, time.time_ns()))
                _STEPS[step](stop, self._snapshot)
                k += 1
        except Exception:  # without the beacon, samples keep the rough clock
            self.moves.clear()
            log.exception("otel-adaprof: clock beacon stopped")
        finally:
            if self.liveness is not None:
                self.liveness.active = False

    def _snapshot(self) -> None:
        if self.liveness is not None:  # which threads live, for ThreadLiveness
            alive = {t.ident or 0: t.native_id or 0 for t in threading.enumerate()}
            self.liveness.seen(alive, time.time_ns())

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

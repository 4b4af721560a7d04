"""The clock beacon's CPU notes (``profile_mode: cpu``): which threads ran between moves.

They read each thread's CPU-time clock (``clock_gettime``): the figure of
``/proc/self/task/<tid>/schedstat``, read without releasing the GIL, so a note never
hands the GIL to a busy application thread (a ``/proc`` read did, once per thread and
move); the agent's own threads are not read; a thread started between two moves is
noted from the next one.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_adaprof.instrumentation.observe.agent_cpu import thread_cpu_ns
from otel_adaprof.instrumentation.profiler.clock_beacon import ClockBeacon
from otel_adaprof.instrumentation.threads import AgentThreads

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="needs Linux thread CPU clocks"
)


def _schedstat_ns(native: int) -> int:
    return int(Path(f"/proc/self/task/{native}/schedstat").read_text().split()[0])


class Parked:
    """Threads waiting on one event (they use no CPU until released)."""

    def __init__(self, n: int) -> None:
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.done.wait, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def parked() -> Iterator[Parked]:
    p = Parked(4)
    try:
        yield p
    finally:
        p.stop()


def test_thread_cpu_clock_is_schedstat_and_fails_for_a_gone_thread(parked: Parked) -> None:
    native = parked.threads[0].native_id
    assert native is not None
    # a parked thread's CPU does not move: both readings are the same nanoseconds
    assert thread_cpu_ns(native) == _schedstat_ns(native)
    me = threading.get_native_id()
    before = _schedstat_ns(me)
    mine = thread_cpu_ns(me)
    assert before <= mine <= _schedstat_ns(me)

    gone = threading.Thread(target=lambda: None)
    gone.start()
    gone.join()  # returns a moment before the OS thread has exited: wait for that
    assert gone.native_id is not None
    task = Path(f"/proc/self/task/{gone.native_id}")
    deadline = time.monotonic() + 5
    while task.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not task.exists()
    with pytest.raises(OSError):
        thread_cpu_ns(gone.native_id)


def test_cpu_notes_keep_the_gil_from_a_busy_thread(parked: Parked) -> None:
    """A busy thread waiting for the GIL does not run during a note (a ``/proc`` read
    per thread let it run at each read: it then held the GIL for a switch interval)."""
    beacon = ClockBeacon()
    counter = [0]
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            counter[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.2)
    worker = threading.Thread(target=busy, daemon=True)
    try:
        worker.start()
        alive = {t.ident or 0: t.native_id or 0 for t in threading.enumerate()}
        ran_during = []
        for _ in range(3):  # the switch interval may end in one note, not in three
            before = counter[0]
            beacon._note_cpu(alive, time.time_ns())
            ran_during.append(counter[0] - before)
            time.sleep(0.01)  # the busy thread runs here
        assert counter[0] > 0
        assert min(ran_during) == 0, ran_during
    finally:
        stop.set()
        sys.setswitchinterval(old)
        worker.join(5)
    rows = list(beacon._ran)
    assert len(rows) == 3
    assert worker.ident in rows[1][1] and worker.ident in rows[2][1]  # it ran between notes
    assert not any(t.ident in rows[2][1] for t in parked.threads)  # the parked did not


def _burn(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))
        time.sleep(0.0005)


def test_agent_threads_are_not_noted(parked: Parked) -> None:
    """Their samples are never kept: reading their CPU at every move was waste."""
    agent = AgentThreads()
    stop = threading.Event()
    mine = threading.Thread(target=lambda: (agent.add(), _burn(stop)), daemon=True)
    app = threading.Thread(target=_burn, args=(stop,), daemon=True)
    mine.start()
    app.start()
    deadline = time.monotonic() + 5
    while mine.ident not in agent and time.monotonic() < deadline:
        time.sleep(0.001)
    beacon = ClockBeacon()
    beacon.skip = agent
    try:
        for _ in range(3):
            alive = {t.ident or 0: t.native_id or 0 for t in threading.enumerate()}
            beacon._note_cpu(alive, time.time_ns())
            time.sleep(0.02)
    finally:
        stop.set()
        mine.join(5)
        app.join(5)
    rows = list(beacon._ran)
    assert all(app.ident in ran for _t, ran in rows[1:]), rows
    assert not any(mine.ident in ran for _t, ran in rows), rows
    assert mine.native_id not in beacon._cpu_seen


def test_threads_that_start_or_end_between_moves_are_seen_at_the_next(parked: Parked) -> None:
    """The living threads are listed again only when they changed: a thread started
    between two moves is noted (alive, and on CPU) from the next, one that ended is not."""
    beacon = ClockBeacon()
    stop = threading.Event()
    first = beacon._alive()
    beacon._note_cpu(first, time.time_ns())
    assert beacon._alive() is first  # nothing changed: the same snapshot
    app = threading.Thread(target=_burn, args=(stop,), daemon=True)
    app.start()
    time.sleep(0.02)
    try:
        second = beacon._alive()
        beacon._note_cpu(second, time.time_ns())
        time.sleep(0.02)
        beacon._note_cpu(beacon._alive(), time.time_ns())
    finally:
        stop.set()
        app.join(5)
    assert app.ident not in first and second[app.ident or 0] == app.native_id
    rows = list(beacon._ran)
    assert app.ident in rows[1][1] and app.ident in rows[2][1]
    assert not any(t.ident in rows[2][1] for t in parked.threads)
    ran = beacon.ran_on_cpu()
    assert ran is not None
    assert ran(app.ident or 0, rows[2][0] - 1_000_000)
    assert not ran(parked.threads[0].ident or 0, rows[2][0] - 1_000_000)
    parked.stop()
    third = beacon._alive()
    assert app.ident not in third
    assert not any(t.ident in third for t in parked.threads)


def test_no_readable_clock_notes_nothing_and_keeps_every_sample(
    parked: Parked, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where thread CPU clocks cannot be read (a sandbox refusing the call), the beacon
    has no evidence that a thread did not run: no filter, rather than one dropping all."""

    def refused(clock: int) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(time, "clock_gettime_ns", refused)
    beacon = ClockBeacon()
    for _ in range(3):
        beacon._note_cpu(beacon._alive(), time.time_ns())
    assert beacon.ran_on_cpu() is None

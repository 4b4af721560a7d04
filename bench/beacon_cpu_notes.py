"""What the clock beacon's CPU notes cost (``profile_mode: cpu``): thread CPU clocks
against the ``/proc`` reads they replaced, with and without busy Python threads.

In one process: ``--waiting`` threads parked on an event and ``--busy`` threads running
Python code all the time (they want the GIL). A real :class:`ClockBeacon` moves every
20 ms (its period at 50–100 Hz) for ``--seconds`` per variant, in rotating order:

* ``clock``: the notes as they are (each thread's CPU-time clock, ``clock_gettime``,
  the GIL kept);
* ``proc``: the notes as they were (``pread`` of each thread's
  ``/proc/self/task/<tid>/schedstat``, kept open; the read releases the GIL);
* ``none``: no CPU notes (as in ``wall`` mode): the move alone, wake-up and snapshot.

Per variant: moves per second, and the beacon thread's CPU per move (its ``schedstat``,
read from the main thread). Then one read per thread in a tight loop, both ways (µs).

Usage::

    python bench/beacon_cpu_notes.py                    # ≈ 40 s
    python bench/beacon_cpu_notes.py --busy 0 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from otel_adaprof.demo.bench import machine_description
from otel_adaprof.instrumentation.observe.agent_cpu import thread_cpu_ns
from otel_adaprof.instrumentation.profiler.clock_beacon import ClockBeacon
from otel_adaprof.instrumentation.threads import ThreadLiveness

PERIOD_S = 0.02
VARIANTS = ("clock", "proc", "none")


class ProcNotesBeacon(ClockBeacon):
    """The beacon with its CPU notes as they were before: a ``pread`` per thread."""

    def __init__(self, liveness: ThreadLiveness) -> None:
        super().__init__(liveness)
        self._fds: dict[int, int] = {}

    def _note_cpu(self, alive: dict[int, int], now_ns: int) -> None:
        seen, ran = self._cpu_seen, set()
        me = threading.get_ident()
        now_seen: dict[int, int] = {}
        fds = self._fds
        for ident, native in alive.items():
            if ident == me or not native:
                continue
            try:
                fd = fds.get(native)
                if fd is None:
                    fd = fds[native] = os.open(f"/proc/self/task/{native}/schedstat", os.O_RDONLY)
                spent = int(os.pread(fd, 64, 0).split(maxsplit=1)[0])
            except (OSError, ValueError, IndexError):
                continue
            now_seen[native] = spent
            if spent != seen.get(native, -1):
                ran.add(ident)
        for gone in [n for n in fds if n not in now_seen]:
            with contextlib.suppress(OSError):
                os.close(fds.pop(gone))
        self._cpu_seen = now_seen
        self._ran.append((now_ns, frozenset(ran)))


def _schedstat_ns(native: int) -> int:
    return int(Path(f"/proc/self/task/{native}/schedstat").read_text().split()[0])


def one_variant(variant: str, seconds: float) -> tuple[float, float]:
    """(moves per second, beacon CPU µs per move) of one variant."""
    liveness = ThreadLiveness()
    beacon = ProcNotesBeacon(liveness) if variant == "proc" else ClockBeacon(liveness)
    beacon.track_cpu = variant != "none"
    beacon.set_period(PERIOD_S)
    beacon.start()
    try:
        time.sleep(0.2)  # first moves: files opened, caches filled
        thread = beacon._thread
        assert thread is not None and thread.native_id is not None
        native = thread.native_id
        cpu0, moves0, t0 = _schedstat_ns(native), len(beacon.moves), time.monotonic()
        time.sleep(seconds)
        cpu1, moves1, t1 = _schedstat_ns(native), len(beacon.moves), time.monotonic()
    finally:
        beacon.stop()
    moves = max(1, moves1 - moves0)
    return moves / (t1 - t0), (cpu1 - cpu0) / 1e3 / moves


def read_costs(natives: list[int], reps: int = 2000) -> dict[str, float]:
    """CPU µs per thread of one read, hot, both ways."""
    fds = {n: os.open(f"/proc/self/task/{n}/schedstat", os.O_RDONLY) for n in natives}
    try:
        t0 = time.thread_time_ns()
        for _ in range(reps):
            for n in natives:
                thread_cpu_ns(n)
        t1 = time.thread_time_ns()
        for _ in range(reps):
            for n in natives:
                int(os.pread(fds[n], 64, 0).split(maxsplit=1)[0])
        t2 = time.thread_time_ns()
    finally:
        for fd in fds.values():
            os.close(fd)
    per = reps * len(natives) * 1e3
    return {"clock_us": round((t1 - t0) / per, 3), "proc_us": round((t2 - t1) / per, 3)}


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the variants in rotating order, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=20, help="threads parked on an event")
    parser.add_argument("--busy", type=int, default=2, help="threads running Python code")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per variant run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if not 0 <= args.waiting <= 200 or not 0 <= args.busy <= 8 or args.rounds < 1:
        parser.error("--waiting in [0, 200], --busy in [0, 8], --rounds >= 1")
    if not 0 < args.seconds <= 30:
        parser.error("--seconds in (0, 30]")
    done = threading.Event()
    parked = [threading.Thread(target=done.wait, daemon=True) for _ in range(args.waiting)]

    def burn() -> None:
        while not done.is_set():
            sum(range(1000))

    busy = [threading.Thread(target=burn, daemon=True) for _ in range(args.busy)]
    for t in parked + busy:
        t.start()
    runs: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    try:
        for r in range(args.rounds):
            for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
                runs[variant].append(one_variant(variant, args.seconds))
        natives = [t.native_id for t in parked if t.native_id is not None]
        reads = read_costs(natives or [threading.get_native_id()])
    finally:
        done.set()
    result: dict[str, Any] = {
        "machine": machine_description(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": started,
        "ended_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "threads": {"waiting": args.waiting, "busy": args.busy, "period_s": PERIOD_S},
        "variants": {
            v: {
                "moves_per_s": [round(m, 1) for m, _ in rows],
                "cpu_us_per_move": [round(c, 1) for _, c in rows],
            }
            for v, rows in runs.items()
        },
        "read_us_per_thread": reads,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.waiting} waiting + {args.busy} busy threads, a move every 20 ms")
        print("| notes | moves/s | CPU µs per move |")
        print("|---|---|---|")
        for v, fig in result["variants"].items():
            moves = ", ".join(f"{m:.1f}" for m in fig["moves_per_s"])
            cpu = ", ".join(f"{c:.0f}" for c in fig["cpu_us_per_move"])
            print(f"| {v} | {moves} | {cpu} |")
        print(f"one read per thread, hot: {reads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

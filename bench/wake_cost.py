"""What one wake-up of a sleeping Python thread costs in CPU, on this machine.

The agent's threads (the fast loop's slow-span ticks, the clock beacon's notes, the
span join's looks) each wake up many times a second; on a virtual machine a wake-up
(the timer, the context switch, taking the GIL back) can cost far more CPU than the
work it wakes for. A thread sleeps ``--wakes`` times for each period and its CPU time
(``time.thread_time``) is divided by its wake-ups, with the process otherwise idle and
with one other thread running Python code throughout (GIL contention, as in a busy
service).

Usage::

    python bench/wake_cost.py            # a few seconds
    python bench/wake_cost.py --json > bench/output/wake_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_adaprof.demo.bench import machine_description

PERIODS_S = (0.005, 0.02, 0.05)


def _sleeper(period_s: float, wakes: int, out: list[float]) -> None:
    t0 = time.thread_time()
    for _ in range(wakes):
        time.sleep(period_s)
    out.append((time.thread_time() - t0) / wakes * 1e6)


def measure(period_s: float, wakes: int, busy: bool) -> float:
    """CPU µs per wake-up of a thread sleeping ``period_s`` between wake-ups."""
    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(range(1000))

    other = threading.Thread(target=burn, daemon=True) if busy else None
    if other is not None:
        other.start()
    out: list[float] = []
    try:
        t = threading.Thread(target=_sleeper, args=(period_s, wakes, out))
        t.start()
        t.join()
    finally:
        stop.set()
        if other is not None:
            other.join()
    return out[0]


def main(argv: list[str] | None = None) -> int:
    """Print the CPU per wake-up, idle and busy, per period (markdown or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakes", type=int, default=200, help="wake-ups per measurement")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    if not 10 <= args.wakes <= 10_000:
        parser.error("--wakes in [10, 10000]")
    rows: list[dict[str, Any]] = []
    for period in PERIODS_S:
        for busy in (False, True):
            us = measure(period, args.wakes, busy)
            rows.append(
                {
                    "period_ms": period * 1e3,
                    "other_thread_busy": busy,
                    "cpu_us_per_wake": round(us, 1),
                }
            )
    result = {
        "machine": machine_description(),
        "load_average_start": list(os.getloadavg()),
        "command": "python bench/wake_cost.py " + " ".join(argv or sys.argv[1:]),
        "wakes": args.wakes,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("| period ms | another thread runs Python | CPU µs per wake-up |")
    print("|---:|---|---:|")
    for r in rows:
        busy = "yes" if r["other_thread_busy"] else "no"
        print(f"| {r['period_ms']:g} | {busy} | {r['cpu_us_per_wake']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

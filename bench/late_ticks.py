"""Late ticks under contention: does the native sampler read a short stretch of CPU as
often as it runs, with the kernel's scheduler slice or its own short one, and with or
without the scheduler's stamps?

In ``adaprof bench`` six services share two cores and get each request at the same
instant. A sampler thread that wakes while every CPU is busy waits, with the kernel's
default slice (0.7-3 ms), until the running thread's slice ends or that thread blocks;
a short stretch of CPU (the ledger's ``/catalog``: 2 ms) has often ended by then, its
thread blocked, and the read lands on whatever runs next. So short stretches lose
reads to the code after them, and the profile reads them low. The sampler thread now
asks for a 100 us slice (``start(slice_us=100)``, Linux 6.12 and later), with which a
waking thread preempts the running one at once.

This script reproduces that side by side in one run. ``--helpers`` processes wake at
the same instants every ``--period-ms`` and each burns a random 2-12 ms of CPU (the
other services' requests); a thread of this process wakes at the same instants and
burns 2 ms (``short_stretch``) or 8 ms (``long_stretch``) of its own CPU, half the
time each, then sleeps (the sampled service's requests). The truth is the thread's
own CPU clock in each function. The native sampler reads it at 100 Hz (the agent's
``cpu`` mode: GIL holder, wall clock, a holder the scheduler set aside not counted),
in rounds of four variants (``VARIANTS``): session 50's sampler (the kernel's slice; a
holder whose clock stood still looked at again after 0.1 ms), the short slice alone,
the scheduler's stamps alone (``took_its_cpu`` in the extension), and both (the agent's
from session 51). Printed per round and variant: the short function's share of the
samples against its true share (and that share's standard error at the sample
count), the ticks read more than 0.5 ms late, the mean delay of a tick and the
sampler thread's CPU.

Usage::

    python bench/late_ticks.py                       # 3 rounds of 4 x 10 s, ~2.5 min
    python bench/late_ticks.py --rounds 3 --seconds 20 --json > bench/output/late_ticks_s51.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: One helper process: wakes at every multiple of the period (CLOCK_MONOTONIC, shared by
#: every process) and burns a random 2-12 ms of its CPU.
HELPER = """
import random, sys, time
period = float(sys.argv[1]); rng = random.Random(int(sys.argv[2]))
while True:
    now = time.monotonic()
    time.sleep((now // period + 1) * period - now)
    end = time.thread_time() + rng.uniform(0.002, 0.012)
    while time.thread_time() < end:
        pass
"""
SHORT_MS, LONG_MS = 2.0, 8.0


def short_stretch(ms: float) -> None:
    """Burn ``ms`` of this thread's CPU (the short request's work)."""
    end = time.thread_time() + ms / 1000.0
    x = 1
    while time.thread_time() < end:
        for _ in range(200):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def long_stretch(ms: float) -> None:
    """Burn ``ms`` of this thread's CPU (the long request's work)."""
    end = time.thread_time() + ms / 1000.0
    x = 3
    while time.thread_time() < end:
        for _ in range(200):
            x = (x * 22695477 + 1) & 0xFFFFFFFF


def requests(period: float, stop: threading.Event, cpu: dict[str, float], seed: int) -> None:
    """The sampled thread: at each instant a short or a long stretch, then sleep."""
    rng = random.Random(seed)
    while not stop.is_set():
        now = time.monotonic()
        time.sleep((now // period + 1) * period - now)
        fn, ms = (short_stretch, SHORT_MS) if rng.random() < 0.5 else (long_stretch, LONG_MS)
        t0 = time.thread_time()
        fn(ms)
        cpu[fn.__name__] += time.thread_time() - t0


#: The sampler's variants, each run once a round: (name, slice_us, stamps).
VARIANTS = (
    ("session 50", 0, False),  # the kernel's slice, the 0.1 ms look again
    ("short slice", 100, False),
    ("stamps", 0, True),  # the scheduler's stamps tell a holder set aside by the sampler
    ("both", 100, True),  # the agent's sampler from session 51
)


def one_round(
    slice_us: int, stamps: bool, seconds: float, period: float, seed: int
) -> dict[str, Any]:
    """One sampler run of ``seconds`` with the slice asked for and the stamps on or off;
    its figures."""
    from otel_adaprof.instrumentation.profiler import _native_sampler as ns  # type: ignore

    stop = threading.Event()
    cpu = {"short_stretch": 0.0, "long_stretch": 0.0}
    worker = threading.Thread(target=requests, args=(period, stop, cpu, seed))
    worker.start()
    time.sleep(0.3)
    cpu["short_stretch"] = cpu["long_stretch"] = 0.0
    ns.start(10_000, 128, "wall", "holder", True, slice_us=slice_us, stamps=stamps)
    time.sleep(seconds)
    ns.stop()
    stop.set()
    worker.join()
    stats = ns.stats()
    counts = {"short_stretch": 0, "long_stretch": 0}
    for _ts, _tid, frames in ns.drain():
        leaf = frames[0].split(" (", 1)[0] if frames else ""
        if leaf in counts:
            counts[leaf] += 1
    n = sum(counts.values())
    truth = cpu["short_stretch"] / max(1e-9, sum(cpu.values()))
    read = counts["short_stretch"] / n if n else float("nan")
    ticks = max(1, int(stats["ticks"]))
    return {
        "slice_us": slice_us,
        "stamps": stamps,
        "slice_kept_ns": int(stats["slice_ns"]),
        "samples": n,
        "short_truth": round(truth, 4),
        "short_read": round(read, 4),
        "short_error": round(read - truth, 4),
        "standard_error": round(math.sqrt(truth * (1 - truth) / n), 4) if n else None,
        "ticks": ticks,
        "late_share": round(int(stats["late_ticks"]) / ticks, 4),
        "mean_delay_ms": round(int(stats["late_ns"]) / ticks / 1e6, 3),
        "off_cpu": int(stats["off_cpu"]),
        "switched": int(stats["switched"]),
        "sampler_cpu_ms_per_s": round(int(stats["cpu_ns"]) / 1e6 / seconds, 3),
        "sampler_cpu_us_per_tick": round(int(stats["cpu_ns"]) / 1e3 / ticks, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four variants")
    parser.add_argument("--seconds", type=float, default=10.0, help="each run's length")
    parser.add_argument("--helpers", type=int, default=5, help="processes bursting in step")
    parser.add_argument("--period-ms", type=float, default=20.0, help="between the instants")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.helpers < 0 or args.period_ms <= 0:
        parser.error("--rounds, --seconds and --period-ms must be positive, --helpers >= 0")
    period = args.period_ms / 1000.0
    helpers = [
        subprocess.Popen([sys.executable, "-c", HELPER, str(period), str(k)])
        for k in range(args.helpers)
    ]
    rows = []
    try:
        time.sleep(0.5)
        for r in range(args.rounds):
            for name, slice_us, stamps in VARIANTS:
                run = one_round(slice_us, stamps, args.seconds, period, r)
                rows.append({"round": r + 1, "sampler": name, **run})
                print(f"round {r + 1} {name}: done", file=sys.stderr)
    finally:
        for proc in helpers:
            proc.kill()
            proc.wait()
    summary = {}
    for name, _slice_us, _stamps in VARIANTS:
        mine = [row for row in rows if row["sampler"] == name]

        def mean(key: str, rows: list[dict[str, Any]] = mine) -> float:
            return round(sum(r[key] for r in rows) / len(rows), 4)

        summary[name] = {
            "mean_short_error": mean("short_error"),
            "mean_late_share": mean("late_share"),
            "mean_delay_ms": mean("mean_delay_ms"),
            "mean_samples": mean("samples"),
            "sampler_cpu_ms_per_s": mean("sampler_cpu_ms_per_s"),
        }
    out = {
        "cpus": len(os.sched_getaffinity(0)),
        "kernel": os.uname().release,
        "helpers": args.helpers,
        "period_ms": args.period_ms,
        "seconds": args.seconds,
        "runs": rows,
        "summary": summary,
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print("| round | sampler | slice kept | samples | short: truth | read | error (SE) "
          "| ticks > 0.5 ms late | mean delay ms | sampler CPU ms/s |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['round']} | {r['sampler']} | {r['slice_kept_ns'] // 1000} us "
              f"| {r['samples']} | {r['short_truth']:.3f} | {r['short_read']:.3f} "
              f"| {r['short_error']:+.3f} ({r['standard_error']}) | {r['late_share']:.2f} "
              f"| {r['mean_delay_ms']:.2f} | {r['sampler_cpu_ms_per_s']:.2f} |")  # fmt: skip
    for key, s in summary.items():
        err, late, cpu = s["mean_short_error"], s["mean_late_share"], s["sampler_cpu_ms_per_s"]
        print(f"{key}: mean error {err:+.3f}, late {late:.2f}, sampler {cpu:.2f} ms/s")


if __name__ == "__main__":
    main()

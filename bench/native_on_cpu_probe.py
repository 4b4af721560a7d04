"""Does the native sampler's on-CPU check keep a GIL holder's sample as often as it runs?

One thread spins in Python for 8 s while the native sampler reads the GIL holder at
100 Hz with ``on_cpu=True``; 0–3 other processes spin beside it, so the holder runs
only part of the time. The holder's own CPU clock over its wall time says how much of
the time it ran; the share of samples the check kept as CPU should be the same. Before
session 42 the check dropped a sample whenever the holder's clock stood still while
its frames were read, which is also what happens when the sampler's own wake-up took
the holder's CPU; now such a sample is looked at again after the sampler has slept
0.1 ms.

Usage::

    python bench/native_on_cpu_probe.py [--spinners 0 1 2 3] [--seconds 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def probe(spinners: int, seconds: float) -> dict[str, Any]:
    """One run: the holder's CPU share and the share of samples kept as CPU."""
    from otel_adaprof.instrumentation.profiler import _native_sampler as ns  # type: ignore

    kids = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(spinners)]
    try:
        time.sleep(0.5)
        stop, ran = threading.Event(), []

        def burn() -> None:
            w0, c0, x = time.monotonic(), time.thread_time(), 1
            while not stop.is_set():
                for _ in range(200):
                    x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            ran.append((time.thread_time() - c0) / (time.monotonic() - w0))

        worker = threading.Thread(target=burn)
        worker.start()
        time.sleep(0.2)
        ns.start(10_000, 128, "wall", "holder", True)
        time.sleep(seconds)
        ns.stop()
        stop.set()
        worker.join()
        stats = ns.stats()
        ns.drain()
    finally:
        for kid in kids:
            kid.kill()
            kid.wait()
    off = int(stats["off_cpu"])
    kept = int(stats["samples"]) - off
    return {
        "spinners": spinners,
        "holder_on_cpu": round(ran[0], 3),
        "kept_as_cpu": kept,
        "off_cpu": off,
        "kept_share": round(kept / max(1, kept + off), 3),
        "rechecked": int(stats.get("rechecked", 0)),
        "sampler_cpu_s": round(int(stats["cpu_ns"]) / 1e9, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spinners", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if min(args.spinners) < 0 or args.seconds <= 0:
        parser.error("--spinners must be 0 or more and --seconds more than 0")
    rows = [probe(k, args.seconds) for k in args.spinners]
    if args.json:
        print(json.dumps({"cpus": len(__import__("os").sched_getaffinity(0)), "runs": rows}))
        return
    print(
        "| spinners | holder on CPU | kept as CPU | off CPU | kept share | looked at again "
        "| sampler CPU s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['spinners']} | {r['holder_on_cpu']:.2f} | {r['kept_as_cpu']} | "
              f"{r['off_cpu']} | {r['kept_share']:.2f} | {r['rechecked']} "
              f"| {r['sampler_cpu_s']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()

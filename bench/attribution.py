"""How well samples land on the spans they belong to: clock beacon on vs off.

A worker pool (like a WSGI server's) runs requests in spans; each request spins on
CPU in one of three named functions (``fa``, ``fb``, ``fc``: 4, 8 and 12 ms times
``--scale``) inside its own span, and the pool threads wait on a queue between
requests. The agent profiles with py-spy at ``--rate`` Hz. *Precision* is the share
of samples attached to an ``fa``/``fb``/``fc`` span whose stack holds that span's own
function; *waiting share* is the share that shows the pool's idle wait instead.
Configurations run in fresh processes, interleaved.

Usage::

    python bench/attribution.py                  # scales 1 and 5, 3 rounds, ~2 min
    python bench/attribution.py --json --rounds 1 --scales 5
    python bench/attribution.py --mode cpu       # py-spy --gil (the beacon rarely holds
                                                 # the GIL at a sample: runs keep the rough clock)
    python bench/attribution.py --mode cpu --rate 50 --samples-per-move 1 2
                                                 # the beacon's cpu notes every sample or
                                                 # every other one

``--mode wall`` (the default here) samples every thread, which the beacon needs.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

FUNCTIONS = ("fa", "fb", "fc")
BASE_MS = {"fa": 4.0, "fb": 8.0, "fc": 12.0}


SCALE = [1.0]


def _spin(ms: float) -> None:
    end = time.thread_time() + ms / 1000.0
    while time.thread_time() < end:
        pass


def fa() -> None:
    _spin(BASE_MS["fa"] * SCALE[0])


def fb() -> None:
    _spin(BASE_MS["fb"] * SCALE[0])


def fc() -> None:
    _spin(BASE_MS["fc"] * SCALE[0])


def child(
    beacon: bool,
    rate_hz: int,
    scale: float,
    seconds: float,
    mode: str = "wall",
    samples_per_move: int | None = None,
) -> dict[str, Any]:
    """One configuration in this process; its figures."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_adaprof
    from otel_adaprof.instrumentation.profiler import clock_beacon
    from otel_adaprof.instrumentation.settings import AgentSettings

    if samples_per_move is not None:  # the beacon's moves (and cpu notes) this often
        clock_beacon.SAMPLES_PER_MOVE = samples_per_move

    memory = InMemorySpanExporter()
    agent = otel_adaprof.configure(
        service_name="attribution",
        exporter=memory,
        settings=AgentSettings(profiler="py-spy", segment_s=1, clock_beacon=beacon),
        params={"sampling_interval_ms": max(1, round(1000 / rate_hz)), "profile_mode": mode},
    )
    tracer = trace.get_tracer("bench.attribution")
    SCALE[0] = scale
    named = {"fa": fa, "fb": fb, "fc": fc}
    jobs: queue.Queue[str] = queue.Queue()

    def worker() -> None:
        while True:
            name = jobs.get()
            with tracer.start_as_current_span("request"), tracer.start_as_current_span(name):
                named[name]()
            jobs.task_done()

    for _ in range(4):
        threading.Thread(target=worker, daemon=True).start()
    time.sleep(1.5)  # py-spy's first run is under way
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        jobs.put(FUNCTIONS[k % 3])
        k += 1
        time.sleep(0.012 * scale)
    jobs.join()
    time.sleep(2.5)
    for join in agent.joins:
        join.force_flush()
    own = other = waiting = 0
    for span in memory.get_finished_spans():
        if span.name not in named:
            continue
        stacks = (span.attributes or {}).get("adaprof.stacks", ())
        for line in stacks if isinstance(stacks, (tuple, list)) else ():
            count_text, stack = str(line).split(" ", 1)
            count = int(count_text)
            frames = [f.split(" (", 1)[0] for f in stack.split(";")]
            if span.name in frames:
                own += count
            elif frames and frames[-1] in ("Condition.wait", "Queue.get", "wait", "get"):
                waiting += count
            else:
                other += count
    total = own + other + waiting
    return {
        "beacon": beacon,
        "scale": scale,
        "samples": total,
        "precision": round(own / total, 4) if total else None,
        "waiting_share": round(waiting / total, 4) if total else None,
        "calibrated_runs": agent.profiler.calibrated_runs,
        "runs": agent.profiler.runs,
        "beacon_period_ms": round(agent.profiler.beacon.period_s * 1000, 1),
    }


def _moves(text: str) -> int:
    """``--samples-per-move``: a whole number of samples, 1 or more (0 would be read as
    "as shipped" by the child)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=int, default=100, help="py-spy rate, Hz")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="load per configuration")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--mode", choices=("wall", "cpu"), default="wall", help="profile_mode")
    parser.add_argument(
        "--samples-per-move",
        type=_moves,
        nargs="+",
        default=None,
        help="compare the beacon moving every N samples (e.g. 1 2); default: as shipped",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("BEACON", "SCALE", "SPM"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        spm = int(args.child[2]) or None
        out = child(
            args.child[0] == "1", args.rate, float(args.child[1]), args.seconds, args.mode, spm
        )
        print(json.dumps(out))
        return
    # (scale, beacon, samples per move: 0 = as shipped) → runs
    results: dict[tuple[float, bool, int], list[dict[str, Any]]] = {}
    variants = [(True, n) for n in args.samples_per_move or [0]] + [(False, 0)]
    for _ in range(args.rounds):
        for scale in args.scales:
            for beacon, spm in variants:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", "1" if beacon else "0", str(scale),
                     str(spm), "--rate", str(args.rate), "--seconds", str(args.seconds),
                     "--mode", args.mode],
                    capture_output=True, text=True, timeout=120, check=True,
                )  # fmt: skip
                results.setdefault((scale, beacon, spm), []).append(
                    json.loads(done.stdout.strip().splitlines()[-1])
                )
    rows = []
    for (scale, beacon, _spm), runs in sorted(results.items()):
        precision = [r["precision"] for r in runs if r["precision"] is not None]
        waiting = [r["waiting_share"] for r in runs if r["waiting_share"] is not None]
        rows.append({
            "span_cpu_ms": [BASE_MS[f] * scale for f in FUNCTIONS],
            "clock_beacon": beacon,
            "beacon_period_ms": runs[0]["beacon_period_ms"] if beacon else None,
            "rounds": len(runs),
            "samples": sum(r["samples"] for r in runs),
            "precision_median": round(statistics.median(precision), 3) if precision else None,
            "waiting_share_median": round(statistics.median(waiting), 3) if waiting else None,
            "calibrated_runs": f"{sum(r['calibrated_runs'] for r in runs)}/"
                               f"{sum(r['runs'] for r in runs)}",
        })  # fmt: skip
    if args.json:
        print(json.dumps({"rate_hz": args.rate, "mode": args.mode, "rows": rows}, indent=2))
        return
    print(f"py-spy {args.rate} Hz, {args.mode} mode, 4 pool threads, {args.rounds} rounds\n")
    print("| span CPU (ms) | clock beacon | samples | precision | waiting share | calibrated |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        ms = "/".join(f"{m:g}" for m in row["span_cpu_ms"])
        on = f"every {row['beacon_period_ms']:g} ms" if row["clock_beacon"] else "off"
        print(f"| {ms} | {on} | {row['samples']} | "
              f"{row['precision_median']} | {row['waiting_share_median']} | "
              f"{row['calibrated_runs']} |")  # fmt: skip


if __name__ == "__main__":
    main()

"""How far a wall-clock reading of the GIL holder is from the CPU truth in an `adaprof bench` run.

The benchmark's truth is CPU: each workload function spins until its thread has used a
known CPU time (``demo/workload.py``). A sampler that reads the GIL holder at random
*wall* times (py-spy ``--gil``; the native profiler before session 42) reads wall time
held instead: a holder the scheduler has set aside keeps the GIL, and its waiting is
charged to the code it is in. Where the waiting falls evenly on every function that is
harmless; in the benchmark it does not: six services on two cores get the same request
at the same instant, so the code that runs when all six are busy (the longest CPU
stretches) waits most.

For each configuration and phase of a run kept with ``--workdir``, this prints:

* ``n``: the phase's workload samples, from the windows the agent reported wholly
  inside it (as ``adaprof bench`` reads them), and ``ideal``: the L1 that many ideal
  samples would reach (``ground_truth.sampling_l1``);
* ``L1 cpu``: the profile against the CPU truth (the benchmark's figure);
* ``L1 wall``: the profile against the *wall-time* shares of the same functions, read
  from the run's own spans (each workload function runs in a span of its own name, so
  its span durations are its wall time, waiting for the GIL included);
* ``skew``: the L1 between those wall-time shares and the CPU truth: what a reading of
  wall time would be off by with any number of samples.

A profile close to ``L1 wall`` and far from ``L1 cpu`` read wall time.

Usage::

    python bench/wall_vs_cpu.py WORKDIR [WORKDIR ...] [--shape shop|ledger] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHASES = ("steady", "hot_path", "load_change", "hot_path_gone")
CONFIGS = ("static-100", "static-10", "heuristic", "adaptive")


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_run(workdir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{config: {phase: figures}}`` of one kept bench workdir."""
    from otel_adaprof.demo.bench_figures import (
        reported_windows,
        windows_profile,
        windows_within,
    )
    from otel_adaprof.demo.ground_truth import GROUND_TRUTH, function_of, sampling_l1
    from otel_adaprof.demo.stack import SEGMENT_S
    from otel_adaprof.demo.workload import FUNCTIONS

    def l1(a: dict[str, float], b: dict[str, float]) -> float:
        return sum(abs(a.get(f, 0.0) - b.get(f, 0.0)) for f in FUNCTIONS)

    out: dict[str, dict[str, dict[str, float]]] = {}
    for config in CONFIGS:
        spans_file = workdir / f"spans-{config}.jsonl"
        if not spans_file.exists():
            continue
        spans = _spans(spans_file)
        switch = "POST /control/hot-path"
        starts = sorted(int(s["startTimeUnixNano"]) / 1e9 for s in spans if s["name"] == switch)
        edges = [*starts, max(int(s["endTimeUnixNano"]) / 1e9 for s in spans)]
        windows = reported_windows(workdir / "adaprof.db", f"bench-{config}")
        out[config] = {}
        for i, phase in enumerate(PHASES[: len(edges) - 1]):
            start, end = edges[i], edges[i + 1]
            wall: collections.Counter[str] = collections.Counter()
            for s in spans:
                t = int(s["startTimeUnixNano"]) / 1e9
                if s["name"] in FUNCTIONS and start <= t < end:
                    wall[s["name"]] += int(s["endTimeUnixNano"]) / 1e6 - t * 1e3
            wall_total = sum(wall.values()) or 1.0
            wall_shares = {f: v / wall_total for f, v in wall.items()}
            counts: collections.Counter[str] = collections.Counter()
            inside = windows_within(windows, start, end, SEGMENT_S)
            for stack, count in windows_profile(inside).items():
                name = function_of(stack)
                if name is not None:
                    counts[name] += int(count)
            n = sum(counts.values())
            shares = {f: c / n for f, c in counts.items()} if n else {}
            truth = GROUND_TRUTH[phase]
            out[config][phase] = {
                "n": n,
                "ideal": round(sampling_l1(n, truth), 4) if n else float("nan"),
                "l1_cpu": round(l1(shares, truth), 4) if n else float("nan"),
                "l1_wall": round(l1(shares, wall_shares), 4) if n else float("nan"),
                "skew": round(l1(wall_shares, truth), 4),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", type=Path, help="adaprof bench --workdir folders")
    parser.add_argument(
        "--shape",
        choices=("shop", "ledger"),
        default=None,
        help="the runs' shape (default: $ADAPROF_DEMO_SHAPE, else shop)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    if args.shape:  # the ground truth is the shape's: set before the demo modules load
        os.environ["ADAPROF_DEMO_SHAPE"] = args.shape
    result = {str(w): read_run(w) for w in args.workdirs}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for workdir, run in result.items():
        print(f"\n**{workdir}**\n")
        print("| config | phase | n | ideal | L1 cpu | L1 wall | skew |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for config, phases in run.items():
            for phase, f in phases.items():
                print(f"| {config} | {phase} | {f['n']} | {f['ideal']:.3f} | {f['l1_cpu']:.3f} "
                      f"| {f['l1_wall']:.3f} | {f['skew']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()

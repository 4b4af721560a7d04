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
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHASES = ("steady", "hot_path", "load_change", "hot_path_gone")
CONFIGS = ("static-100", "static-10", "heuristic", "adaptive")


def read_run(workdir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{config: {phase: figures}}`` of one kept bench workdir."""
    from otel_adaprof.demo.bench_figures import (
        phase_switches,
        read_phase,
        reported_windows,
        wall_shares,
        windows_profile,
        windows_within,
    )
    from otel_adaprof.demo.ground_truth import (
        GROUND_TRUTH,
        function_shares,
        l1_error,
        sampling_l1,
    )
    from otel_adaprof.demo.stack import SEGMENT_S

    out: dict[str, dict[str, dict[str, float]]] = {}
    for config in CONFIGS:
        spans_file = workdir / f"spans-{config}.jsonl"
        if not spans_file.exists():
            continue
        lines = spans_file.read_text().splitlines()
        spans = [json.loads(line) for line in lines if line.strip()]
        ends = max(int(s["endTimeUnixNano"]) / 1e9 for s in spans)
        edges = [*phase_switches(spans_file), ends]
        windows = reported_windows(workdir / "adaprof.db", f"bench-{config}")
        out[config] = {}
        for i, phase in enumerate(PHASES[: len(edges) - 1]):
            start, end = edges[i], edges[i + 1]
            truth = GROUND_TRUTH[phase]
            wall = wall_shares(spans, start, end, truth.keys())
            profile = windows_profile(windows_within(windows, start, end, SEGMENT_S))
            n, l1_cpu = read_phase(profile, truth)
            nan = float("nan")
            out[config][phase] = {
                "n": int(n),
                "ideal": round(sampling_l1(n, truth), 4) if n else nan,
                "l1_cpu": l1_cpu if l1_cpu is not None else nan,
                "l1_wall": round(l1_error(wall, function_shares(profile)), 4) if n else nan,
                "skew": round(l1_error(wall, truth), 4),
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
    for workdir in args.workdirs:
        if not (workdir / "adaprof.db").is_file() or not list(workdir.glob("spans-*.jsonl")):
            parser.error(
                f"{workdir} holds no adaprof.db and spans-*.jsonl: not a folder kept with "
                "`adaprof bench --workdir`"
            )
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

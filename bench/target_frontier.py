"""What issue #11's targets demand of the mechanism, read off committed `adaprof bench` runs.

The benchmark judges adaptive against static-100 phase by phase: L1 ≤ 1.5× static-100's
at ≤ 0.5× its profiler CPU (≤ 0.2× with ``--phase-scale 4``). A sampling profiler's
samples cost CPU in proportion to their number, so those two bounds together fix how
many samples a phase needs and how little the rest of the time may cost. This script
works that out from each run's own figures, with no model of the policy:

* static-100's L1 in a phase is split into the error of sampling alone, the expected
  L1 of ``n`` ideal samples over the phase's true shares (``Σ √(2p(1−p)/(πn))``,
  ``ground_truth.sampling_l1``), and a *floor* (``√(L1² − noise²)``, 0 when the noise
  explains it all): what no number of samples removes (py-spy's reading, the truth's
  own approximation, phase edges) — ``bench_verdict.static_draws``, which
  ``adaprof bench`` prints under its verdict;
* adaptive's L1 is at best ``√(floor² + noise(n)²)``, so L1 ≤ 1.5× needs ``n`` samples
  with ``noise(n)² ≤ (1.5·L1)² − floor²``: a fraction ``f`` of static-100's samples;
* taking those samples at static-100's cost per sample, and watching the rest of the
  phase at ``watch`` cores, costs ``f + (1 − f)·watch/S`` of static-100's CPU ``S``.
  The most the watch may cost for the phase to stay within the CPU bound ``R`` is
  ``S·(R − f)/(1 − f)`` (negative: no watch cost is low enough).

And what adaptive got in the same run (since session 35), to tell a phase it sampled too
little from one whose samples read worse than their number: its workload samples, its
L1, the L1 expected of that many samples (``√(floor² + noise(n)²)``, the noise scaled
from static-100's by ``√(n_static / n)``), and their ratio, the *excess* (about 1: its
samples were as good as static-100's, too few of them if the L1 is still over the bound;
well over 1: they read worse than their count).

Both bounds are met only when the watch is cheaper than the smallest of those limits
over the phases. The result is a floor for any policy of "learn at 100 Hz, watch
otherwise": a policy can do worse (learning at the wrong time, more than it needs), not
better, unless a sample costs less than static-100's.

Usage::

    python bench/target_frontier.py bench/output/bench_s21_seed{1,2,3}.json \\
        bench/output/bench_s21_phase_scale_4.json --watch 0.0075
    python bench/target_frontier.py bench/output/bench_s21_seed1.json --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_adaprof.demo.bench_verdict import (  # noqa: E402
    CPU_MAX_RATIO,
    CPU_MAX_RATIO_LONG,
    LONG_PHASE_SCALE,
    static_draws,
)
from otel_adaprof.demo.phases import PHASE_PLAN  # noqa: E402


def expected_l1(draw: dict[str, Any], static_samples: float, samples: float) -> float | None:
    """The L1 expected of ``samples`` samples of a phase whose static-100 draw (its
    :func:`~otel_adaprof.demo.bench_verdict.static_draws` entry) came from
    ``static_samples``: ``√(floor² + noise²)``, the noise scaled by ``√(n_static / n)``.

    >>> expected_l1({"floor": 0.03, "noise": 0.04}, 400, 100)
    0.0854
    """
    if samples <= 0 or static_samples <= 0:
        return None
    noise = float(draw["noise"]) * math.sqrt(static_samples / samples)
    return round(math.hypot(float(draw["floor"]), noise), 4)


def phase_frontier(
    draw: dict[str, Any],
    static: dict[str, Any],
    watch: float,
    cpu_ratio: float,
    adaptive: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What one phase costs at best: ``draw`` is the phase's entry of
    :func:`~otel_adaprof.demo.bench_verdict.static_draws`, ``static`` static-100's
    figures in it, ``adaptive`` adaptive's (see module doc)."""
    n_s = float(static["workload_samples"])
    cpu_s = float(static["profiler_cpu"])
    f = float(draw["share_needed"])
    w = watch / cpu_s if cpu_s > 0 else math.inf
    n_a = float((adaptive or {}).get("workload_samples") or 0)
    l1_a = (adaptive or {}).get("profile_error_l1")
    expected = expected_l1(draw, n_s, n_a)
    excess = round(float(l1_a) / expected, 2) if l1_a is not None and expected else None
    return {
        "static_samples": int(n_s),
        "static_l1": draw["l1"],
        "static_noise": draw["noise"],
        "floor": draw["floor"],
        "samples_needed": round(f * n_s) if f < 1.0 else None,
        "fraction_needed": f,
        "static_cpu": round(cpu_s, 4),
        "cpu_ratio_at_watch": round(f + (1.0 - f) * w, 3),
        "watch_max": round(cpu_s * (cpu_ratio - f) / (1.0 - f), 4) if f < 1.0 else None,
        "adaptive_samples": int(n_a),
        "adaptive_l1": l1_a,
        "adaptive_expected_l1": expected,
        "adaptive_excess": excess,
    }


def frontier(run: dict[str, Any], watch: float) -> dict[str, Any]:
    """Per phase and for the run: what both bounds demand (see module doc)."""
    scale = float(run.get("settings", {}).get("phase_scale", 1.0))
    cpu_ratio = CPU_MAX_RATIO_LONG if scale >= LONG_PHASE_SCALE else CPU_MAX_RATIO
    static = run["configurations"]["static-100"]
    draws = static_draws(run)
    adaptive = run["configurations"].get("adaptive", {})
    phases = {
        name: phase_frontier(draws[name], static[name], watch, cpu_ratio, adaptive.get(name))
        for name, *_ in PHASE_PLAN
        if name in draws
    }
    if not phases:
        raise KeyError("no static-100 phase with samples")
    weights = {name: fraction for name, fraction, *_ in PHASE_PLAN}
    total = sum(weights[p] for p in phases)
    ratio = sum(weights[p] * v["cpu_ratio_at_watch"] for p, v in phases.items()) / total
    limits = [v["watch_max"] for v in phases.values()]
    return {
        "phase_scale": scale,
        "cpu_bound": cpu_ratio,
        "watch": watch,
        "phases": phases,
        "cpu_ratio_at_watch": round(ratio, 3),
        "watch_max": None if None in limits else min(limits),
    }


def table(name: str, result: dict[str, Any]) -> str:
    """One run's frontier as markdown."""
    lines = [
        f"**{name}** (phase scale {result['phase_scale']:g}, CPU bound "
        f"{result['cpu_bound']}×, watch {result['watch']} of a core)",
        "",
        "| phase | static-100 samples | L1 | of which noise | floor | samples needed "
        "| share of static-100's | CPU ratio at this watch | watch at most "
        "| adaptive samples | adaptive L1 | expected at its samples | excess |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase, v in result["phases"].items():
        lines.append(
            f"| {phase} | {v['static_samples']} | {v['static_l1']} | {v['static_noise']} "
            f"| {v['floor']} | {v['samples_needed']} | {v['fraction_needed']} "
            f"| {v['cpu_ratio_at_watch']} | {v['watch_max']} | {v['adaptive_samples']} "
            f"| {v['adaptive_l1']} | {v['adaptive_expected_l1']} | {v['adaptive_excess']} |"
        )
    lines.append(
        f"| run | | | | | | | **{result['cpu_ratio_at_watch']}** | **{result['watch_max']}** "
        "| | | | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="adaprof bench JSON outputs")
    parser.add_argument(
        "--watch", type=float, default=0.0075,
        help="cores the watch costs (default 0.0075: watch-reflex, bench_s21 runs)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if args.watch < 0:
        parser.error("--watch: cores cannot be negative")
    out: dict[str, Any] = {}
    for path in args.runs:
        try:
            run = json.loads(path.read_text())
            out[path.name] = frontier(run, args.watch)
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"{path}: not an adaprof bench JSON output ({exc!r})")
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print("\n\n".join(table(name, result) for name, result in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

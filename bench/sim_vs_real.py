"""The simulator against the real benchmark: predicted vs measured, per configuration.

Runs the ``demo`` scenario (``adaprof bench``'s phases; ``--phase-scale`` stretches them
like the benchmark's option) in the simulator for static-100, static-10, static-1, the
heuristic and adaptive (the packaged default model), and sets its figures beside those
of a real ``adaprof bench`` result: profiler CPU, workload samples per second, mean
per-phase L1 error, hot-path detection, and the ranking by CPU.

Usage::

    .venv/bin/python bench/sim_vs_real.py /tmp/h11-bench-1/bench.json [--seeds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from otel_adaprof.controller.policy.vw import default_model
from otel_adaprof.demo.bench_verdict import summary
from otel_adaprof.sim.compare import compare
from otel_adaprof.sim.scenario import WINDOW_SECONDS, demo_scenario
from otel_adaprof.sim.training import SIM_BUDGET

NAMES = ("static-100", "static-10", "static-1", "heuristic", "adaptive")


def simulated(phase_scale: float, seeds: int) -> dict[str, dict[str, float | None]]:
    """Figures of each configuration on the demo scenario in the simulator."""
    scen = demo_scenario(phase_scale)
    report = compare([scen], seeds=list(range(1, seeds + 1)), model=default_model(),
                     budget=SIM_BUDGET)  # fmt: skip
    rep = report.scenarios[0]
    seconds = scen.total_windows * WINDOW_SECONDS
    out: dict[str, dict[str, float | None]] = {}
    for name in NAMES:
        p = rep.get(name)
        l1 = [v for v in p.l1 if v is not None]
        out[name] = {
            "cpu": p.cpu,
            "samples_per_s": None,
            "l1_mean": statistics.fmean(l1) if l1 else None,
            "detect_s": p.detect_s[0],
            "changes": p.changes,
            "seconds": seconds,
        }
    return out


def measured(result: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The same figures from a real benchmark result."""
    out: dict[str, dict[str, float | None]] = {}
    for name in NAMES:
        conf = result["configurations"][name]
        s = summary(conf)
        phases = [f for k, f in conf.items() if not k.startswith("_")]
        out[name] = {
            "cpu": s["cpu"],
            "l1_mean": s["l1_mean"],
            "detect_s": s["detect_s"],
            "coverage": s["coverage"],
            "changes": conf.get("_run", {}).get("params_changes"),
            "workload_samples": sum(f.get("workload_samples") or 0 for f in phases),
        }
    return out


def _f(v: Any, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec)


def main() -> None:
    """Print the sim-vs-real table (markdown) or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = json.loads(args.bench_json.read_text())
    scale = float(result.get("settings", {}).get("phase_scale", 1.0))
    sim, real = simulated(scale, args.seeds), measured(result)
    if args.json:
        print(json.dumps({"phase_scale": scale, "simulated": sim, "measured": real}, indent=1))
        return
    print(f"phase scale {scale:g}; simulator: {args.seeds} seeds of the demo scenario\n")
    print("| configuration | profiler CPU sim / real | mean phase L1 sim / real "
          "| detection s sim / real | params changes sim / real | coverage real |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in NAMES:
        s, r = sim[name], real[name]
        print(f"| {name} | {_f(s['cpu'])} / {_f(r['cpu'])} | {_f(s['l1_mean'])} / "
              f"{_f(r['l1_mean'])} | {_f(s['detect_s'])} / {_f(r['detect_s'])} | "
              f"{_f(s['changes'], '.0f')} / {_f(r['changes'], '.0f')} | "
              f"{_f(r.get('coverage'))} |")  # fmt: skip
    rank_sim = sorted(NAMES, key=lambda n: sim[n]["cpu"] or 0.0)
    rank_real = sorted(NAMES, key=lambda n: real[n]["cpu"] or 0.0)
    print(f"\nby CPU, sim: {', '.join(rank_sim)}\nby CPU, real: {', '.join(rank_real)}")


if __name__ == "__main__":
    main()

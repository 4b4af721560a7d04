"""The simulator against the real benchmark: predicted vs measured, per configuration.

Runs the ``demo`` scenario (``adaprof bench``'s phases; ``--phase-scale`` stretches them
like the benchmark's option) in the simulator for static-100, static-10, static-1, the
heuristic and adaptive (the packaged default model), under the real runs' budget, and
sets its figures beside those of real ``adaprof bench`` results (their mean when several
are given): profiler CPU, mean per-phase L1 error, hot-path detection, params changes.

The simulated world is the profiler's the real runs ran (their ``settings.profiler``:
py-spy's ``calibration.json`` or the native profiler's ``calibration_native.json``,
both from ``bench/sim_calibration.py``), and the real runs must be of the shop, the
service the ``demo`` scenario mirrors.

Then the ranking, measure by measure (CPU, L1, detection): for every pair of
configurations, whether the simulator orders them as the real runs do. A pair the real
runs order both ways (one run one way, another the other) is a tie the simulator cannot
get wrong; a pair every real run orders the same way and the simulator the other way is
a disagreement.

Usage::

    .venv/bin/python bench/sim_vs_real.py RUN1/bench.json [RUN2/bench.json ...] [--seeds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from otel_adaprof.controller.policy.vw import default_model
from otel_adaprof.demo.bench_verdict import summary
from otel_adaprof.session_spec import OverheadBudget
from otel_adaprof.sim.calibration import calibration
from otel_adaprof.sim.compare import compare
from otel_adaprof.sim.scenario import demo_scenario
from otel_adaprof.sim.training import SIM_BUDGET

NAMES = ("static-100", "static-10", "static-1", "heuristic", "adaptive")


def simulated(
    phase_scale: float, seeds: int, budget_cpu: float | None = None, profiler: str = "py-spy"
) -> dict[str, dict[str, float | None]]:
    """Figures of each configuration on the demo scenario in ``profiler``'s simulated
    world, under ``budget_cpu`` (a fraction of a core; the benchmark's) or the
    simulator's own."""
    calib = calibration(profiler)
    scen = demo_scenario(phase_scale, calib=calib)
    budget = OverheadBudget(cpu_fraction=budget_cpu) if budget_cpu else SIM_BUDGET
    report = compare([scen], seeds=list(range(1, seeds + 1)), model=default_model(),
                     budget=budget, calib=calib)  # fmt: skip
    rep = report.scenarios[0]
    seconds = scen.total_windows * scen.window_s
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


MEASURES = (("cpu", "CPU"), ("l1_mean", "mean phase L1"), ("detect_s", "detection"))


def mean_measured(
    runs: list[dict[str, dict[str, float | None]]],
) -> dict[str, dict[str, float | None]]:
    """Several runs' :func:`measured` figures, figure by figure their mean (absent ones
    skipped)."""
    out: dict[str, dict[str, float | None]] = {}
    for name in NAMES:
        row: dict[str, float | None] = {}
        for key in runs[0][name]:
            values = [run[name][key] for run in runs if run[name].get(key) is not None]
            row[key] = statistics.fmean(v for v in values if v is not None) if values else None
        out[name] = row
    return out


def pair_agreement(
    sim: dict[str, dict[str, float | None]],
    runs: list[dict[str, dict[str, float | None]]],
    key: str,
    sim_tie: float = 0.05,
) -> dict[str, list[str]]:
    """Pairs of configurations by how the simulator orders them on ``key`` against the
    real runs: ``agree`` (same order as every run), ``tie`` (the runs order them both
    ways, or the simulator has them within ``sim_tie`` of each other, relatively: less
    than its seeds' spread), ``disagree`` (every run one way, the simulator the other).

    >>> sim = {"a": {"cpu": 1.0}, "b": {"cpu": 2.0}, "c": {"cpu": 3.0}}
    >>> runs = [{"a": {"cpu": 1.0}, "b": {"cpu": 3.0}, "c": {"cpu": 2.0}},
    ...         {"a": {"cpu": 1.0}, "b": {"cpu": 2.5}, "c": {"cpu": 2.6}}]
    >>> pair_agreement(sim, runs, "cpu")
    {'agree': ['a < b', 'a < c'], 'tie': ['b < c'], 'disagree': []}
    """
    names = list(sim)
    out: dict[str, list[str]] = {"agree": [], "tie": [], "disagree": []}
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            sx, sy = sim[x].get(key), sim[y].get(key)
            signs = set()
            for run in runs:
                rx, ry = run[x].get(key), run[y].get(key)
                if rx is not None and ry is not None:
                    signs.add((rx > ry) - (rx < ry))
            label = f"{x} < {y}" if sx is None or sy is None or sx <= sy else f"{y} < {x}"
            close = sx is None or sy is None or abs(sx - sy) <= sim_tie * max(abs(sx), abs(sy))
            if close or len(signs) != 1 or 0 in signs:
                out["tie"].append(label)
                continue
            real = signs.pop()
            out["agree" if real == (sx > sy) - (sx < sy) else "disagree"].append(label)
    return out


def _f(v: Any, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec)


def main() -> None:
    """Print the sim-vs-real table (markdown) or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("bench_json", type=Path, nargs="+", help="real bench results")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [json.loads(p.read_text()) for p in args.bench_json]
    scales = {float(r.get("settings", {}).get("phase_scale", 1.0)) for r in results}
    budgets = {r.get("budget_cpu") for r in results}
    profilers = {r.get("settings", {}).get("profiler", "py-spy") for r in results}
    if len(scales) != 1 or len(budgets) != 1 or len(profilers) != 1:
        parser.error(
            "the results differ in phase scale, budget or profiler: compare like with like"
        )
    shapes = {r.get("shape") or "shop" for r in results}
    if shapes != {"shop"}:
        parser.error(f"the demo scenario is the shop's story; these runs are of {shapes}")
    scale, budget, profiler = scales.pop(), budgets.pop(), profilers.pop()
    runs = [measured(r) for r in results]
    sim, real = simulated(scale, args.seeds, budget, profiler), mean_measured(runs)
    pairs = {key: pair_agreement(sim, runs, key) for key, _ in MEASURES}
    if args.json:
        out = {"phase_scale": scale, "budget_cpu": budget, "profiler": profiler,
               "runs": len(results),
               "simulated": sim, "measured": real, "pairs": pairs}  # fmt: skip
        print(json.dumps(out, indent=1))
        return
    print(f"profiler {profiler}, phase scale {scale:g}, budget {budget}; simulator: "
          f"{args.seeds} seeds of the demo "
          f"scenario; real: the mean of {len(results)} run(s)\n")  # fmt: skip
    print("| configuration | profiler CPU sim / real | mean phase L1 sim / real "
          "| detection s sim / real | params changes sim / real | coverage real |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in NAMES:
        s, r = sim[name], real[name]
        print(f"| {name} | {_f(s['cpu'])} / {_f(r['cpu'])} | {_f(s['l1_mean'])} / "
              f"{_f(r['l1_mean'])} | {_f(s['detect_s'])} / {_f(r['detect_s'])} | "
              f"{_f(s['changes'], '.0f')} / {_f(r['changes'], '.0f')} | "
              f"{_f(r.get('coverage'))} |")  # fmt: skip
    print("\n| measure | pairs ordered as every real run | ties (real runs both ways, "
          "or within 5 % in the simulator) | ordered the other way |")  # fmt: skip
    print("|---|---:|---|---|")
    for key, label in MEASURES:
        p = pairs[key]
        print(
            f"| {label} | {len(p['agree'])} of {sum(len(v) for v in p.values())} | "
            f"{'; '.join(p['tie']) or '–'} | {'; '.join(p['disagree']) or '–'} |"
        )


if __name__ == "__main__":
    main()

"""How often "L1 ≤ 1.5× static-100's in every phase" holds for ideal samplers.

Issue #11 judges adaptive's profile phase by phase against one draw of static-100 in
the same run. Since session 51 both configurations of the native profiler read each
phase at about their sampling error (docs/benchmarks.md, "Late ticks under
contention"), so the bound compares two random draws. This asks what that comparison
alone allows, with no profiler in it: for each phase of a committed ``adaprof bench``
run, static-100's workload samples are drawn again and again from the phase's true
function shares (a multinomial: ideal, independent samples), and so are those of a
sampler with ``m`` times as many, and it counts how often the second's L1 is within
1.5× the first's — in each phase, in every phase of a run, and in every phase of each
of three runs.

``m = 1`` is static-100's exact twin (the same samples, the same cost). A run's odds
are the product of its phases' (the draws are independent).

Usage::

    python bench/l1_bound_odds.py bench/output/bench_s52_wakes_shop_seed1_native.json
    python bench/l1_bound_odds.py RUN.json ... --ratios 1 2 4 --draws 40000 --json \\
        > bench/output/l1_bound_odds_s52.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_adaprof.demo.bench_verdict import L1_MAX_RATIO  # noqa: E402


def phase_odds(
    truth: dict[str, float], n_static: int, ratio: float, draws: int, rng: np.random.Generator
) -> float:
    """P(L1 of ``ratio·n_static`` ideal samples ≤ L1_MAX_RATIO × L1 of ``n_static``)."""
    p = np.array(list(truth.values()), dtype=float)
    p = p / p.sum()
    n_other = max(1, round(ratio * n_static))
    static = rng.multinomial(n_static, p, size=draws) / n_static
    other = rng.multinomial(n_other, p, size=draws) / n_other
    l1_static = np.abs(static - p).sum(axis=1)
    l1_other = np.abs(other - p).sum(axis=1)
    # ties (small counts put both on a grid) pass, as equal figures pass the verdict
    return float(np.mean(l1_other <= L1_MAX_RATIO * l1_static + 1e-12))


def run_odds(path: Path, ratios: list[float], draws: int, seed: int) -> dict[str, Any]:
    """Per ratio: each phase's odds, and the run's (every phase)."""
    bench = json.loads(path.read_text())
    rng = np.random.default_rng(seed)
    static = bench["configurations"]["static-100"]
    out: dict[str, Any] = {"run": path.name, "shape": bench.get("shape"), "ratios": {}}
    for ratio in ratios:
        phases = {}
        for phase, truth in bench["ground_truth"].items():
            n = int(static[phase]["workload_samples"])
            if n <= 0:
                continue
            phases[phase] = {"static_samples": n, "odds": phase_odds(truth, n, ratio, draws, rng)}
        run = float(np.prod([v["odds"] for v in phases.values()]))
        out["ratios"][str(ratio)] = {"phases": phases, "run": run, "three_runs": run**3}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("runs", nargs="+", type=Path, help="adaprof bench JSON outputs")
    parser.add_argument(
        "--ratios", nargs="+", type=float, default=[1.0, 1.5, 2.0, 3.0, 4.0],
        help="the other sampler's samples, in multiples of static-100's",
    )  # fmt: skip
    parser.add_argument("--draws", type=int, default=20000, help="draws per phase and ratio")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 100 <= args.draws <= 1_000_000 or any(r <= 0 for r in args.ratios):
        parser.error("--draws in 100..1,000,000 and every ratio > 0")
    results = [run_odds(path, args.ratios, args.draws, args.seed) for path in args.runs]
    if args.json:
        print(json.dumps({"draws": args.draws, "seed": args.seed, "runs": results}, indent=1))
        return
    for res in results:
        print(f"{res['run']} ({res['shape']})")
        for ratio, figures in res["ratios"].items():
            per = " / ".join(f"{v['odds']:.2f}" for v in figures["phases"].values())
            print(
                f"  {float(ratio):4.1f}x static-100's samples: per phase {per}; "
                f"every phase {figures['run']:.2f}; three runs {figures['three_runs']:.3f}"
            )


if __name__ == "__main__":
    main()

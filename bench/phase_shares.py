"""Each function's share of a bench configuration's samples, per phase, against the truth.

``adaprof bench --workdir DIR`` keeps the controller's database and each service's spans.
For each configuration named, this reads the window reports (their stacks folded by
workload function, ``ground_truth.function_of``), puts each window in the phase its
middle falls in (the phases' starts from the configuration's spans,
``bench_figures.phase_switches``) and prints, per phase, the workload samples and every
function's share with the run's truth in brackets (``bench.json``'s ``ground_truth``).
It shows *which* function a configuration reads wrong, where the bench's L1 only says
how much.

Usage::

    python bench/phase_shares.py WORKDIR WORKDIR/../out/bench.json static-100 adaptive
    python bench/phase_shares.py wd out.json static-100 static-10 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from otel_adaprof.demo.bench_figures import (
    phase_switches,
    read_phase,
    reported_windows,
    windows_profile,
)
from otel_adaprof.demo.ground_truth import function_shares


def phase_shares(workdir: Path, truth: dict[str, dict[str, float]], config: str) -> dict[str, Any]:
    """``{phase: {"samples": n, "shares": {function: share}}}`` for one configuration."""
    names = list(truth)
    starts = [*phase_switches(workdir / f"spans-{config}.jsonl"), float("inf")]
    windows = reported_windows(workdir / "adaprof.db", f"bench-{config}")
    out: dict[str, Any] = {}
    for i, phase in enumerate(names):
        # a window counts in the phase its middle falls in
        profile = windows_profile(
            [w for w in windows if starts[i] <= (w[0] + w[1]) / 2 < starts[i + 1]]
        )
        samples, _l1 = read_phase(profile, truth[phase])
        shares = function_shares(profile)
        out[phase] = {"samples": samples, "shares": {f: shares.get(f, 0.0) for f in truth[phase]}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="the run's --workdir")
    parser.add_argument("bench_json", type=Path, help="the run's bench.json (its ground truth)")
    parser.add_argument("configs", nargs="+", help="configurations, e.g. static-100 adaptive")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args(argv)
    try:
        truth = json.loads(args.bench_json.read_text())["ground_truth"]
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"{args.bench_json}: no bench result with a ground_truth ({exc})")
    if not (args.workdir / "adaprof.db").exists():
        parser.error(f"{args.workdir}: no adaprof.db (run adaprof bench with --workdir)")
    result = {c: phase_shares(args.workdir, truth, c) for c in args.configs}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for config, phases in result.items():
        for phase, fig in phases.items():
            cells = " ".join(
                f"{f[:7]}={share:.3f}({truth[phase][f]:.2f})" for f, share in fig["shares"].items()
            )
            print(f"{config:11s} {phase:14s} n={fig['samples']:5.0f} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

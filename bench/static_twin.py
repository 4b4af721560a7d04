"""How far apart two identical static-100 services land: the L1 bound's own spread.

Issue #11 judges adaptive by "every phase's L1 ≤ 1.5× static-100's in the same run".
This runs ``adaprof bench`` with two of its slots changed, side by side with the usual
six services under the same load:

* ``static-1`` → **static-100's twin**: the very same params (100 Hz, depth 128, cpu mode);
* ``static-10`` → static-100's params **with the adaptive catalog's marker trigger**
  (latency percentile 90) — ``learn-100hz`` as a static session, to tell the trigger's
  effect on the profile from the twins' spread.

With ``--variant scope`` the ``static-10`` slot is static-100's params **in the requests
scope** instead (``sample_scope: requests``: the native profiler samples only while a
request is open, docs/agent.md), to measure what that scope costs and reads against
static-100 and its twin in the same run (session 48).

It prints each phase's workload samples, L1 and profiler CPU for static-100, its twin,
the variant and adaptive, and the twin's L1 ratio to static-100 both ways (an identical
configuration "fails" the bound when either is over 1.5).

    python bench/static_twin.py --workdir /tmp/twin --out /tmp/twin-out
    python bench/static_twin.py --duration 120 --json
    ADAPROF_DEMO_SHAPE=ledger python bench/static_twin.py --profiler native --variant scope
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_adaprof.demo import bench
from otel_adaprof.demo.phases import PHASE_PLAN

PHASES = tuple(name for name, *_ in PHASE_PLAN)
LABELS = {
    "static-100": "static-100",
    "static-1": "static-100 twin",
    "static-10": "100 Hz + p90 marker trigger",
    "adaptive": "adaptive",
}


VARIANTS = {"trigger": "100 Hz + p90 marker trigger", "scope": "100 Hz, requests scope"}


def twin_settings(variant: str = "trigger") -> None:
    """Swap the two slots' params (the module's table, read when sessions open)."""
    same = bench.STATIC_PARAMS["static-100"]
    bench.STATIC_PARAMS["static-1"] = same
    if variant == "scope":
        bench.STATIC_PARAMS["static-10"] = same.with_changes(sample_scope="requests")
    else:
        bench.STATIC_PARAMS["static-10"] = same.with_changes(
            marker_trigger={"latency_percentile": 90.0}, slow_span_interval_ms=0
        )
    LABELS["static-10"] = VARIANTS[variant]


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Per phase: samples and L1 of the four rows, and the twin's ratios to static-100."""
    configs = result["configurations"]
    rows: dict[str, Any] = {}
    for name, label in LABELS.items():
        rows[label] = {
            p: (
                configs[name][p]["workload_samples"],
                configs[name][p]["profile_error_l1"],
                configs[name][p]["profiler_cpu"],
            )
            for p in PHASES
        }
    ratios = {}
    for p in PHASES:
        a, b = (
            configs["static-100"][p]["profile_error_l1"],
            configs["static-1"][p]["profile_error_l1"],
        )
        ratios[p] = {
            "twin_over_static_100": round(b / a, 3) if a and b else None,
            "static_100_over_twin": round(a / b, 3) if a and b else None,
        }
    return {"rows": rows, "twin_ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of load")
    parser.add_argument("--order-seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("adaprof-twin"))
    parser.add_argument("--profiler", choices=("auto", "py-spy", "native"), default="auto")
    parser.add_argument(
        "--variant", choices=sorted(VARIANTS), default="trigger", help="the static-10 slot"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON result")
    args = parser.parse_args()
    if not 10 <= args.duration <= 3600:
        parser.error("--duration must be in [10, 3600]")
    twin_settings(args.variant)
    settings = bench.BenchSettings(
        duration_s=args.duration, order_seed=args.order_seed, profiler=args.profiler
    )
    result = bench.run_bench(
        settings, args.out, args.workdir,
        on_progress=lambda done, what: print(f"  {done:5.0f} s {what}", file=sys.stderr),
    )  # fmt: skip
    out = {"command": "python bench/static_twin.py " + " ".join(sys.argv[1:]), **summary(result)}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print("| configuration | " + " | ".join(PHASES) + " |")
    print("|---|" + "---|" * len(PHASES))
    for label, phases in out["rows"].items():
        cells = [
            f"{n:g} / {'–' if l1 is None else f'{l1:.3f}'} / {'–' if cpu is None else f'{cpu:.4f}'}"
            for n, l1, cpu in phases.values()
        ]
        print(f"| {label} (samples / L1 / CPU) | " + " | ".join(cells) + " |")
    worst = max(
        max(r["twin_over_static_100"] or 0, r["static_100_over_twin"] or 0)
        for r in out["twin_ratios"].values()
    )
    print(f"\nthe twins' largest L1 ratio in a phase, either way: {worst:.2f}")


if __name__ == "__main__":
    main()

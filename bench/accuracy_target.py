"""The session goal's default accuracy target, derived from committed benchmark runs.

A phase's profile is "good enough" (``RewardWeights.accuracy_target``: the reward stops
paying for samples, the policy settles on a maintenance rate) when the expected L1
error of its function shares from its samples, ``e(n) = sqrt(2K / (π n))``
(``reward.expected_l1``), is within ``L1_MAX_RATIO`` (1.5, issue #11's bound) of what a
fixed 100 Hz py-spy's samples give in a minute-long phase of the benchmark's service:
``target = 1.5 · e(n₁₀₀)``, with ``n₁₀₀`` the median of static-100's samples per phase
(all its samples, as the controller counts a phase's) over the runs given (``adaprof
bench`` JSON at ``--phase-scale 1``; runs at other scales are refused).

Until session 36 the default was 0.09, about 630 samples at ``K = 8``: the docstring
said "within 1.5× of the L1 error 100 Hz reaches in a minute-long phase", but on the
runs since session 33 static-100 took a median of about 900 samples a minute-long
phase, so 0.09 asked for 1.0× its sampling error (0.7 of its samples), not 1.5×.

``--ratio`` takes another multiple than the bound: the native sampler's target is 1.1×
(session 48: at the bound a phase's expected error sat on it, so one draw against
another missed it half the time, and sampling only while a request is open paid for the
extra samples).

Each profiler has its own target (``RewardWeights.for_profiler``): py-spy's is the
field's default, from py-spy runs; the native sampler's (``PROFILER_ACCURACY_TARGETS``)
from native runs (``--profiler native``), since it takes fewer samples at 100 Hz (only
a thread that holds the GIL, and from session 51 not one waiting for a CPU: a median of
453 a minute-long phase of the shop in session 51's runs, 717 in session 44's, against
py-spy's 974).

Usage::

    python bench/accuracy_target.py bench/output/bench_s51_shop_seed?_native.json --ratio 1.1 \
        --json --out bench/output/accuracy_target_native_s51.json
    python bench/accuracy_target.py bench/output/bench_s3[345]*_seed?.json
    python bench/accuracy_target.py bench/output/bench_s35_*_seed?.json --json \\
        --out bench/output/accuracy_target.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_adaprof.demo.bench_verdict import L1_MAX_RATIO  # noqa: E402
from otel_adaprof.reward import expected_l1, samples_for_error  # noqa: E402
from otel_adaprof.session_spec import RewardWeights  # noqa: E402

#: Decimals the derived target is rounded to for the default.
DECIMALS = 3


def derive(
    runs: dict[str, dict[str, Any]], functions: int, ratio: float = L1_MAX_RATIO
) -> dict[str, Any]:
    """The target from ``{name: bench.json}``: static-100's samples per phase, their
    median, its expected error and ``ratio`` (1.5×, the bound, unless given) of it.

    >>> run = {"settings": {"phase_scale": 1.0}, "configurations": {"static-100": {
    ...     "steady": {"samples": 800.0}, "hot_path": {"samples": 1000.0}}}}
    >>> out = derive({"r": run}, functions=8)
    >>> out["median_samples"], out["target"], round(out["target_samples"])
    (900.0, 0.113, 399)
    """
    counts: list[float] = []
    per_run: dict[str, dict[str, float]] = {}
    for name, run in runs.items():
        scale = float(run.get("settings", {}).get("phase_scale", 1.0))
        if scale != 1.0:
            raise ValueError(f"{name}: phase scale {scale:g}; the target is per minute-long phase")
        phases = run["configurations"]["static-100"]
        row = {p: float(f["samples"]) for p, f in phases.items() if not p.startswith("_")}
        per_run[name] = row
        counts += row.values()
    if not counts:
        raise ValueError("no static-100 phases in the runs given")
    median = float(statistics.median(counts))
    error = expected_l1(median, functions)
    if not 0.0 < ratio <= L1_MAX_RATIO:
        raise ValueError(f"ratio {ratio:g} must be in (0, {L1_MAX_RATIO:g}], the bound")
    target = round(ratio * error, DECIMALS)
    return {
        "functions": functions,
        "l1_max_ratio": L1_MAX_RATIO,
        "ratio": ratio,
        "phases": len(counts),
        "median_samples": median,
        "static_100_expected_l1": round(error, 4),
        "target": target,
        "target_samples": round(samples_for_error(target, functions), 1),
        "per_run": per_run,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="adaprof bench JSON (phase scale 1)")
    parser.add_argument("--functions", type=int, default=RewardWeights().functions)
    parser.add_argument(
        "--ratio",
        type=float,
        default=L1_MAX_RATIO,
        help="target = RATIO × static-100's expected error (default: the bound, 1.5)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, Any]] = {}
    for path in args.runs:
        try:
            runs[path.name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"{path}: {exc}")
    try:
        out = derive(runs, args.functions, args.ratio)
    except (KeyError, ValueError) as exc:
        parser.error(str(exc))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{out['phases']} static-100 phases in {len(runs)} runs: median "
            f"{out['median_samples']:g} samples, expected L1 {out['static_100_expected_l1']} "
            f"(K = {out['functions']}); target {out['ratio']}× = {out['target']} "
            f"(about {out['target_samples']:.0f} samples)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

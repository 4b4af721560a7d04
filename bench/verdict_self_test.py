"""Would static-100 pass issue #11's verdict against another draw of itself?

The verdict judges adaptive against the one static-100 service of the same run: every
phase's L1 ≤ 1.5× static-100's, detection ≤ 1.5×, every phase's slow-request coverage
≥ 0.5×, in each of three runs. This script asks how often static-100 itself meets those
bounds when the reference is static-100 of *another* committed run of the same shape and
phase scale (same params, same load, another draw): for every ordered pair of runs, does
the first pass against the second, bound by bound? And, from the share of pairs that
pass, how often three runs in a row would all pass (``share ** 3``, pairs taken as
independent). Session 26's ``static_twin.py`` put two static-100 services in one run for
the L1 bound; this reads every committed run, for every bound, without new runs.

Caveat: the runs come from several sessions (agent changes between them, and the
machine's speed moves static-100's cost 0.033–0.051 of a core), so some of the spread
is theirs, not the draw's; rows give the runs they pooled.

    python bench/verdict_self_test.py bench/output/bench_s3[3-6]*_seed?.json \\
        bench/output/bench_s3[3-6]*_phase_scale_4.json
    python bench/verdict_self_test.py bench/output/bench_s36_*seed?.json --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_adaprof.demo.bench_verdict import verdict

#: The verdict's bounds judged here (its CPU and budget bounds do not apply to a
#: configuration against its own kind).
BOUNDS = ("l1", "detection", "coverage")


def _draw(path: Path) -> tuple[tuple[str, float], dict[str, Any]]:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: {exc}") from None
    conf = result["configurations"].get("static-100")
    if conf is None:
        raise SystemExit(f"{path}: no static-100 configuration")
    draw = {"run": path.name, "conf": conf, "detect_s": conf["_run"].get("hot_path_detect_s")}
    key = (str(result.get("shape", "shop")), float(result["settings"]["phase_scale"]))
    return key, draw


def passes(mine: dict[str, Any], ref: dict[str, Any]) -> dict[str, bool]:
    """Whether static-100's figures ``mine["conf"]`` meet each bound against those of
    another run, ``ref["conf"]``, judged by the benchmark's own verdict
    (``bench_verdict.verdict``, with ``mine`` in adaptive's place).

    >>> fig = {"profiler_cpu": 0.04, "slow_request_coverage": 0.8}
    >>> a = {"conf": {"p": {**fig, "profile_error_l1": 0.10}, "_run": {"hot_path_detect_s": 6.5}}}
    >>> b = {"conf": {"p": {**fig, "profile_error_l1": 0.06}, "_run": {"hot_path_detect_s": 3.5}}}
    >>> passes(a, b)
    {'l1': False, 'detection': False, 'coverage': True, 'all': False}
    >>> passes(b, a)
    {'l1': True, 'detection': True, 'coverage': True, 'all': True}
    """
    judged = verdict({"configurations": {"static-100": ref["conf"], "adaptive": mine["conf"]}})
    checks = {k: bool(judged["adaptive"]["checks"][k]) for k in BOUNDS}
    return {**checks, "all": all(checks.values())}


def self_test(paths: list[Path]) -> list[dict[str, Any]]:
    """Per shape and phase scale: the pairs, the share passing each bound, and the
    chance three runs in a row all pass."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for path in paths:
        key, draw = _draw(path)
        groups.setdefault(key, []).append(draw)
    out = []
    for (shape, scale), draws in sorted(groups.items()):
        pairs = list(itertools.permutations(draws, 2))
        if not pairs:
            continue
        results = [passes(a, b) for a, b in pairs]
        share = {k: round(sum(r[k] for r in results) / len(results), 3) for k in results[0]}
        out.append(
            {
                "shape": shape,
                "phase_scale": scale,
                "runs": [d["run"] for d in draws],
                "pairs": len(pairs),
                "pass_share": share,
                "three_runs_all_pass": round(share["all"] ** 3, 3),
                "static_100_detect_s": sorted(d["detect_s"] for d in draws if d["detect_s"]),
            }
        )
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shape | phase scale | runs | pairs | L1 (every phase) | detection | coverage | all "
        "| three runs all pass |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["pass_share"]
        lines.append(
            f"| {r['shape']} | {r['phase_scale']:g} | {len(r['runs'])} | {r['pairs']} "
            f"| {s['l1']:.2f} | {s['detection']:.2f} | {s['coverage']:.2f} | {s['all']:.2f} "
            f"| {r['three_runs_all_pass']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="committed bench JSON files")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    rows = self_test(args.runs)
    if not rows:
        sys.exit("no shape and phase scale with two runs or more: nothing to pair")
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))


if __name__ == "__main__":
    main()

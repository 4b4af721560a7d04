"""Hot-path detection of finished `adaprof bench` runs, to the report that showed it.

Until session 37 the benchmark looked at each service's cumulative profile once a window
(3 s) and timed detection by the first look that showed the hot path, so every figure
was rounded up to that grid, and "≤ 1.5× static-100's" turned on which side of a look a
report landed. The benchmark now rebuilds the profile at each report's arrival in the
controller (``bench_figures.arrival_snapshots``). This script applies that reading to
runs made before, from their work folders (``--workdir``: the controller's
``adaprof.db`` and each service's ``spans-<name>.jsonl``) and their JSON, and prints both
readings with their ratios to static-100.

The onset is the service's own ``/control/hot-path`` span (``phase_switches``): the
benchmark itself uses the load generator's clock for it, a few milliseconds apart.

A third reading (``confident``, session 50) asks the same of the lower end of the hot
share's Wilson interval (``--z`` standard errors, 1.645: one-sided 95 %): on the
ledger (the hot path 15 % of the CPU, 10-12 samples a second at 100 Hz) the plain
reading is crossed on a few samples — one hot sample of three is a share of 0.33 —
so who crosses first turns on window alignment as much as on the profile. The
benchmark's verdict reads the plain one; this one is for reading its figures.

    python bench/detection_from_reports.py WORKDIR BENCH_JSON [WORKDIR BENCH_JSON ...]
    python bench/detection_from_reports.py /tmp/wd /tmp/out/bench.json --json
    python bench/detection_from_reports.py /tmp/wd /tmp/out/bench.json --z 2.0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_adaprof.demo.bench_figures import arrival_snapshots, detection_time, phase_switches
from otel_adaprof.demo.workload import HOT_PATH

CONFIGS = ("static-100", "static-10", "static-1", "heuristic", "adaptive")


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 2)


#: Standard errors above half the true share the confident reading asks (one-sided 95 %).
CONFIDENT_Z = 1.645


def run_detection(workdir: Path, bench_json: Path, z: float = CONFIDENT_Z) -> dict[str, Any]:
    """The three readings of one run's detection, per configuration, and their ratios."""
    try:
        result = json.loads(bench_json.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{bench_json}: {exc}") from None
    phases = list(result["ground_truth"])
    if "hot_path" not in phases:
        raise SystemExit(f"{bench_json}: no hot_path phase in its ground truth")
    share = float(result["ground_truth"]["hot_path"][HOT_PATH])
    db = workdir / "adaprof.db"
    if not db.exists():
        raise SystemExit(f"{workdir}: no adaprof.db (give the run's --workdir)")
    rows: dict[str, dict[str, Any]] = {}
    for name in CONFIGS:
        spans = workdir / f"spans-{name}.jsonl"
        if name not in result["configurations"] or not spans.exists():
            continue
        switches = phase_switches(spans)
        onset = switches[phases.index("hot_path")]
        snapshots = arrival_snapshots(db, f"bench-{name}")
        rows[name] = {
            "by_looks_s": result["configurations"][name]["_run"]["hot_path_detect_s"],
            "by_reports_s": detection_time(snapshots, onset, share),
            "confident_s": detection_time(snapshots, onset, share, z=z),
        }
    ref = rows.get("static-100", {})
    for row in rows.values():
        for key in ("by_looks", "by_reports", "confident"):
            row[f"{key}_ratio"] = _ratio(row[f"{key}_s"], ref.get(f"{key}_s"))
    return {
        "run": bench_json.name,
        "shape": result.get("shape", "shop"),
        "phase_scale": result["settings"]["phase_scale"],
        "z": z,
        "configurations": rows,
    }


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| run | configuration | by looks (s) | ÷ static-100 | by reports (s) | ÷ static-100 "
        "| confident (s) | ÷ static-100 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for name, row in run["configurations"].items():
            lines.append(
                f"| {run['run']} | {name} | {row['by_looks_s']} | {row['by_looks_ratio']} "
                f"| {row['by_reports_s']} | {row['by_reports_ratio']} "
                f"| {row['confident_s']} | {row['confident_ratio']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", help="WORKDIR BENCH_JSON, repeated")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--z", type=float, default=CONFIDENT_Z,
        help="standard errors the confident reading asks (default 1.645)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give the work folder and the JSON of each run, in pairs")
    if not 0.0 < args.z <= 5.0:
        parser.error("--z must be in (0, 5]")
    runs = [
        run_detection(Path(wd), Path(js), args.z)
        for wd, js in zip(args.pairs[::2], args.pairs[1::2], strict=True)
    ]
    print(json.dumps(runs, indent=1) if args.json else markdown(runs))


if __name__ == "__main__":
    main()

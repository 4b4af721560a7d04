"""How many of adaptive's learning windows a change *building up* alone started.

The policy learns while a phase needs samples (``vw._phase_needs_samples``): a change
just seen or pending, the profile short of its accuracy target, or the window's change
statistics (CPU per request, span rate) at ``BUILDING_STD`` baseline standard
deviations or more. This script reads an ``adaprof bench --workdir`` folder (the
controller's ``adaprof.db``: every decision with its logged state, every report) and
counts the learning decisions (actions tagged ``learn``) whose state shows the target
reached, no change seen or pending: those the building statistic alone started. For
them it gives the statistic's sign, the action in force before (the watch, or learning
already), and the profiler CPU-seconds of the windows they ran, against all of the
service's profiler CPU-seconds in the run.

Usage::

    python bench/building_windows.py /work/runs/s36/b/wd_ledger_4x
    python bench/building_windows.py WORKDIR... --json --out bench/output/building_windows_s36.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The benchmark's adaptive service.
SERVICE = "bench-adaptive"


def started_by_building(state: dict[str, float]) -> bool:
    """Whether a learning decision's logged state leaves only the building statistic as
    its reason (target reached, no change seen, none pending).

    >>> started_by_building({"reached": 1.0, "change": 0.0, "pending": 0.0})
    True
    >>> started_by_building({"reached": 0.0, "change": 0.0, "pending": 0.0})
    False
    """
    return state.get("reached") == 1.0 and not state.get("change") and not state.get("pending")


def count(workdir: Path, service: str = SERVICE) -> dict[str, Any]:
    """The figures of one run (see the module doc)."""
    from otel_adaprof.controller.policy.catalog import load_catalog
    from otel_adaprof.controller.policy.features import SIGNAL_SCALE
    from otel_adaprof.controller.policy.vw import LEARN_TAG

    learn = {a.name for a in load_catalog() if LEARN_TAG in a.tags}
    with contextlib.closing(
        sqlite3.connect(f"file:{workdir / 'adaprof.db'}?mode=ro", uri=True)
    ) as db:
        decisions = db.execute(
            "SELECT config_version, action, features FROM decisions WHERE service = ? ORDER BY id",
            (service,),
        ).fetchall()
        reports = db.execute(
            "SELECT config_version, window FROM reports WHERE service = ?", (service,)
        ).fetchall()
    cpu_s: dict[int, float] = {}
    for version, window in reports:
        w = json.loads(window) if window else {}
        cpu_s[version] = cpu_s.get(version, 0.0) + float(w.get("profiler_cpu_seconds", 0.0))
    out: dict[str, Any] = {
        "workdir": str(workdir),
        "learning_windows": 0,
        "by_building": 0,
        "cpu_drop": 0,
        "cpu_rise": 0,
        "span_rate": 0,
        "from_maintenance": 0,
        "by_building_cpu_s": 0.0,
        "run_cpu_s": round(sum(cpu_s.values()), 3),
    }
    before = ""
    for version, action, features in decisions:
        feats = json.loads(features) if features else {}
        state = feats.get("state", {}) if isinstance(feats, dict) else {}
        if action in learn:
            out["learning_windows"] += 1
            if started_by_building(state):
                out["by_building"] += 1
                cpr = float(state.get("sig_cpu_per_request", 0.0)) * SIGNAL_SCALE
                rate = float(state.get("sig_span_rate", 0.0)) * SIGNAL_SCALE
                key = (
                    "span_rate"
                    if abs(rate) >= abs(cpr)
                    else ("cpu_drop" if cpr < 0 else "cpu_rise")
                )
                out[key] += 1
                out["from_maintenance"] += before not in learn
                out["by_building_cpu_s"] += cpu_s.get(version, 0.0)
        before = action
    out["by_building_cpu_s"] = round(out["by_building_cpu_s"], 3)
    out["by_building_cpu_share"] = (
        round(out["by_building_cpu_s"] / out["run_cpu_s"], 3) if out["run_cpu_s"] else None
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", type=Path, help="adaprof bench --workdir folders")
    parser.add_argument("--service", default=SERVICE)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    rows = []
    for wd in args.workdirs:
        if not (wd / "adaprof.db").exists():
            parser.error(f"{wd}: no adaprof.db (an adaprof bench --workdir folder?)")
        rows.append(count(wd, args.service))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| run | learning windows | by building alone (drop / rise / span rate; from the watch) "
          "| their CPU-s | of the run's |")  # fmt: skip
    print("|---|---:|---|---:|---:|")
    for r in rows:
        name = "/".join(Path(r["workdir"]).parts[-2:])
        print(
            f"| {name} | {r['learning_windows']} | {r['by_building']} "
            f"({r['cpu_drop']} / {r['cpu_rise']} / {r['span_rate']}; {r['from_maintenance']}) "
            f"| {r['by_building_cpu_s']} | {r['by_building_cpu_share']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

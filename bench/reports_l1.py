"""L1 of the samples a bench service reported over a stretch of time, from its workdir.

``adaprof bench --workdir DIR`` keeps the controller's database: every window report
with its stack histogram. This reads the reports of the named services received
between ``--start`` and ``--end`` seconds after each service's first report, takes the
function shares of their workload samples (``ground_truth.function_shares``) and
their L1 distance to the ground truth of ``--truth-phase``.

It answers questions the benchmark's per-phase figures do not, e.g. the profile a user
reads at the end of ``load_change`` (the load doubled, the functions' shares as in
``hot_path``): the samples since the hot path began, not only those of the phase::

    python bench/reports_l1.py --workdir DIR --start 288 --end 768 --truth-phase load_change
    python bench/reports_l1.py --workdir DIR --start 528 --end 768 --truth-phase load_change

(times for ``--phase-scale 4``: steady 0–288 s, hot_path 288–528, load_change 528–768,
hot_path_gone 768–960; at scale 1 a quarter of those). The alignment by first report is
approximate (a window or two): check it against the benchmark's own figure of a phase.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from otel_adaprof.demo.ground_truth import GROUND_TRUTH, function_of, function_shares, l1_error


def stacks_between(db: Path, service: str, start: float, end: float) -> dict[str, float]:
    """The stack histogram ``service`` reported in [start, end) s after its first report."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT stacks, received_at FROM reports WHERE service = ? ORDER BY received_at",
            (service,),
        ).fetchall()
    out: dict[str, float] = {}
    if not rows:
        return out
    t0 = rows[0][1]
    for stacks, at in rows:
        if not start <= at - t0 < end or not stacks:
            continue
        data: Any = json.loads(stacks)
        if isinstance(data, dict) and "stacks" in data:
            data = {s["stack"]: s["count"] for s in data["stacks"]}
        for stack, n in data.items():
            out[stack] = out.get(stack, 0.0) + float(n)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="adaprof bench --workdir")
    parser.add_argument("--start", type=float, required=True, help="seconds, from")
    parser.add_argument("--end", type=float, required=True, help="seconds, to")
    parser.add_argument("--truth-phase", choices=sorted(GROUND_TRUTH), required=True)
    parser.add_argument(
        "--configs", nargs="+", default=["adaptive", "static-100"], help="bench configurations"
    )
    args = parser.parse_args(argv)
    db = args.workdir / "adaprof.db"
    if not db.is_file():
        parser.error(f"--workdir {args.workdir}: no adaprof.db in it")
    if args.end <= args.start:
        parser.error("--end must be after --start")
    truth = GROUND_TRUTH[args.truth_phase]
    out = {}
    for config in args.configs:
        stacks = stacks_between(db, f"bench-{config}", args.start, args.end)
        # as the benchmark counts a phase: samples in the named functions, their shares
        workload = sum(n for st, n in stacks.items() if function_of(st) is not None)
        shares = function_shares(stacks)
        out[config] = {
            "workload_samples": workload,
            "shares": {k: round(v, 4) for k, v in shares.items()},
            "l1": round(l1_error(truth, shares), 4) if workload else None,
        }
    print(json.dumps({"workdir": str(args.workdir), "start": args.start, "end": args.end,
                      "truth_phase": args.truth_phase, "configs": out}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

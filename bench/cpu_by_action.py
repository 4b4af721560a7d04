"""Where a benchmark run's profiler CPU went: per configuration, per action, per agent part.

Reads the controller database an ``adaprof bench --workdir DIR`` run leaves
(``DIR/adaprof.db``: every agent's window reports and every decision) and sums, for each
benchmarked service, its windows by what the agent was doing — the action in force
(the decision's name; a static configuration's is ``static``), or ``burst`` for a
window that was mostly a reflex burst (``burst_seconds`` over half the window):

- windows, seconds, profiler CPU (every agent thread and py-spy: the window's
  ``profiler_cpu_seconds``) in CPU-seconds and in cores;
- the samples the windows reported (their stacks, with the late ones of earlier
  windows), each counted for the *last window that profiled*: a py-spy run's samples
  often arrive in the report after it (``late_stacks``), when the params in force are
  already the watch's; and CPU milliseconds per sample;
- the agent's CPU by part (``profiler_cpu_breakdown``: ``pyspy``, ``native``,
  ``parse``, ``join``, ``slow_span`` — the fast loop: the in-process slow-span capture,
  change signals, and the clock beacon's notes it hosts in cpu mode —, ``watch`` — the
  native profiler's slow-span watcher and its takes, from session 44; in ``slow_span``
  before —, ``beacon``, ``poller``, ``late`` — earlier versions' CPU spent in the
  window's time, from session 44; dropped before) in ms per second.

A run's per-phase figures (``adaprof bench``'s JSON) say how much; this says on what.

Usage::

    python bench/cpu_by_action.py --workdir RUN_WORKDIR [--out bench/output/x.json]
    python bench/cpu_by_action.py --workdir W1 --label seed1 --workdir W4 --label 4x \\
        --services adaptive static-100
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

#: A window is a burst's when the reflex burst for more than this share of it.
BURST_SHARE = 0.5
#: Services of ``adaprof bench`` read by default (``bench-<configuration>``).
DEFAULT_SERVICES = ("adaptive", "static-100", "static-10")


def by_action(db: sqlite3.Connection, service: str) -> dict[str, dict[str, Any]]:
    """Per action (or ``burst``) of ``service``: windows, seconds, CPU, samples, parts."""
    actions: dict[int, str] = {}
    rates: dict[int, int] = {}
    for version, action, raw in db.execute(
        "SELECT config_version, action, params FROM decisions WHERE service=?", (service,)
    ):
        actions[version] = action
        rates[version] = (json.loads(raw) or {}).get("sampling_interval_ms") or 0
    sums: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"windows": 0, "seconds": 0.0, "cpu_s": 0.0, "samples": 0, "parts": {}}
    )
    last_profiling: str | None = None
    rows = db.execute(
        "SELECT config_version, window, stacks FROM reports WHERE service=? ORDER BY id",
        (service,),
    )
    for version, raw_window, raw_stacks in rows:
        window = json.loads(raw_window)
        seconds = float(window.get("window_seconds") or 0.0)
        burst = float(window.get("burst_seconds") or 0.0) > BURST_SHARE * seconds
        name = "burst" if burst else str(actions.get(version) or "static")
        entry = sums[name]
        entry["windows"] += 1
        entry["seconds"] += seconds
        entry["cpu_s"] += float(window.get("profiler_cpu_seconds") or 0.0)
        parts = entry["parts"]
        for part, cpu in (window.get("profiler_cpu_breakdown") or {}).items():
            parts[part] = parts.get(part, 0.0) + float(cpu)
        if burst or rates.get(version, 0) > 0 or last_profiling is None:
            last_profiling = name
        stacks = json.loads(raw_stacks or "{}")
        sums[last_profiling]["samples"] += int(sum(stacks.values()))
    out: dict[str, dict[str, Any]] = {}
    for name, entry in sorted(sums.items(), key=lambda kv: -kv[1]["cpu_s"]):
        seconds = max(entry["seconds"], 1e-9)
        out[name] = {
            "windows": entry["windows"],
            "seconds": round(entry["seconds"], 1),
            "cpu_s": round(entry["cpu_s"], 3),
            "cores": round(entry["cpu_s"] / seconds, 5),
            "samples": entry["samples"],
            "ms_per_sample": (
                round(1e3 * entry["cpu_s"] / entry["samples"], 2) if entry["samples"] else None
            ),
            "parts_ms_per_s": {
                part: round(1e3 * cpu / seconds, 3) for part, cpu in sorted(entry["parts"].items())
            },
        }
    return out


def read_run(workdir: Path, services: list[str]) -> dict[str, Any]:
    """:func:`by_action` for each of ``services`` in the run left in ``workdir``."""
    path = workdir / "adaprof.db"
    if not path.exists():
        raise SystemExit(f"error: {path}: no controller database (an adaprof bench --workdir?)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {s: by_action(db, f"bench-{s}") for s in services}
    except sqlite3.DatabaseError as exc:
        raise SystemExit(f"error: {path}: not a controller database ({exc})") from None
    finally:
        db.close()


def table(label: str, run: dict[str, Any]) -> str:
    """A run's figures as plain text, one line per (service, action)."""
    lines = []
    for service, actions in run.items():
        for name, f in actions.items():
            per = f["ms_per_sample"]
            lines.append(
                f"{label:>10} {service:<11} {name:<20} windows {f['windows']:4}"
                f"  CPU {f['cpu_s']:6.2f} s  {f['cores']:.4f} core"
                f"  samples {f['samples']:6}  ms/sample {per if per is not None else '-':>6}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, action="append", required=True,
                        help="an adaprof bench --workdir (repeat for several runs)")  # fmt: skip
    parser.add_argument("--services", nargs="+", default=list(DEFAULT_SERVICES),
                        help="configurations to read (default: %(default)s)")  # fmt: skip
    parser.add_argument("--label", action="append", default=[],
                        help="a name for each --workdir, in order (default: its path)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.label and len(args.label) != len(args.workdir):
        parser.error(f"{len(args.label)} --label for {len(args.workdir)} --workdir")
    labels = args.label or [str(w) for w in args.workdir]
    runs = {
        label: read_run(w, args.services) for label, w in zip(labels, args.workdir, strict=True)
    }
    for label, run in runs.items():
        print(table(label, run))
    if args.out is not None:
        args.out.write_text(json.dumps(runs, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

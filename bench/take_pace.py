"""The agent's threads at one catalog action, this tree beside another, side by side.

The demo service under ``opentelemetry-instrument`` with the native profiler in the
params of a catalog action (``--action``: ``learn-100hz``, the default, 100 Hz only
while a request is open; ``watch-reflex``, the watch: no steady sampling, the native
slow-span watcher and the change signals), the real controller answering them with a
poll every 3 s, loaded at ``--rate`` req/s; this tree and ``--baseline`` (another tree,
e.g. ``git archive REV | tar -x -C DIR``) one after the other, ``--rounds`` times, so
the two are measured side by side on the same machine. For each agent thread: its CPU
per second (% of a core) and its wake-ups a second (``bench/agent_threads_profile.py``'s
figures, from ``/proc/<pid>/task/<tid>/schedstat``), median over the rounds.

Made for session 50's takes paced by the samples the native sampler achieves
(``learn-100hz``: ``bench/output/take_pace_s50.json``); with ``watch-reflex`` it measured
a span join passing every 2 s in the watch, not kept
(``bench/output/take_pace_s50_watch_join_2s*.json``).

Usage::

    git archive HEAD~1 otel_adaprof pyproject.toml setup.py | tar -x -C /tmp/base
    cp otel_adaprof/instrumentation/profiler/_native_sampler*.so \\
       /tmp/base/otel_adaprof/instrumentation/profiler/
    python bench/take_pace.py --baseline /tmp/base --json > bench/output/take_pace.json
    python bench/take_pace.py --baseline /tmp/base --action watch-reflex

About ``rounds x 2 x (seconds + 15)`` s. The load targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_overhead import action_params
from agent_threads_profile import measure

from otel_adaprof.demo.bench import machine_description

POLL_S = 3.0


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median % of a core and wake-ups a second per thread over ``runs``; the agent's
    threads' total (every thread named ``adaprof-*``)."""
    names = sorted({name for run in runs for name in run["threads"]})
    out: dict[str, Any] = {}
    for name in names:
        rows = [run["threads"].get(name) for run in runs]
        got = [row for row in rows if row is not None]
        out[name] = {
            "pct_core": round(statistics.median(r["pct_core"] for r in got), 4),
            "wakes_per_s": round(statistics.median(r["wakes_per_s"] for r in got), 1),
        }
    agent = [
        sum(f["pct_core"] for n, f in run["threads"].items() if n.startswith("adaprof-"))
        for run in runs
    ]
    out["agent_threads_pct_core"] = {
        "median": round(statistics.median(agent), 4),
        "runs": [round(a, 4) for a in agent],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, metavar="DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40.0, help="seconds of load a run")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--action", default="learn-100hz", help="a catalog action's params")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    if not (args.baseline / "otel_adaprof" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no otel_adaprof package in it")
    if not 1 <= args.rounds <= 10 or not 5 <= args.seconds <= 120:
        parser.error("--rounds must be in [1, 10] and --seconds in [5, 120]")
    try:
        action = action_params(args.action)
    except KeyError as exc:
        parser.error(f"--action {args.action}: {exc.args[0]}")
    params = json.dumps(action)
    runs: dict[str, list[dict[str, Any]]] = {"this tree": [], "baseline": []}
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    for i in range(args.rounds):
        for label, tree in (("baseline", args.baseline), ("this tree", None)):
            print(f"round {i + 1}/{args.rounds}: {label}", file=sys.stderr, flush=True)
            runs[label].append(
                measure(params, args.seconds, args.rate, False, POLL_S, tree, "native")
            )
    result = {
        "machine": machine_description(),
        "started_utc": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "action": args.action,
        "params": action,
        "rate": args.rate,
        "seconds": args.seconds,
        "baseline_tree": str(args.baseline),
        "summary": {label: summary(rows) for label, rows in runs.items()},
        "runs": runs,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print("| thread | baseline % core | wakes/s | this tree % core | wakes/s |")
    print("|---|---:|---:|---:|---:|")
    base, this = result["summary"]["baseline"], result["summary"]["this tree"]
    for name in sorted(set(base) | set(this)):
        if name == "agent_threads_pct_core":
            continue
        b, t = base.get(name, {}), this.get(name, {})
        print(
            f"| {name} | {b.get('pct_core', '-')} | {b.get('wakes_per_s', '-')} "
            f"| {t.get('pct_core', '-')} | {t.get('wakes_per_s', '-')} |"
        )
    print(
        f"| all agent threads | {base['agent_threads_pct_core']['median']} | "
        f"| {this['agent_threads_pct_core']['median']} | |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

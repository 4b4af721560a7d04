"""Slow-span capture alone: how many of a fresh service's slowest requests get a sample.

One demo service (``python -m otel_adaprof.demo.service`` under
``opentelemetry-instrument``, no py-spy: ``ADAPROF_PROFILER=off``) with local params (by
default the catalog's ``watch-reflex``), open-loop load on 127.0.0.1 at ``--rate`` req/s
for ``--seconds``, spans to an in-process sink. Then, in buckets of ``--bucket`` seconds
from the start of the load: the server spans among the slowest tenth of the run (by
duration, all operations pooled) and how many carry at least one sample
(``adaprof.sample_count > 0``). ``--tree DIR`` runs the service from another source tree
(``git archive <commit> | tar -x -C DIR``) to compare two versions of the capture.

Usage::

    python bench/capture_coverage.py                      # about 70 s
    python bench/capture_coverage.py --seconds 40 --json --tree /tmp/old-tree
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from otel_adaprof.controller.policy.catalog import load_catalog
from otel_adaprof.demo.bench import machine_description
from otel_adaprof.demo.loadgen import LoadGenerator
from otel_adaprof.demo.phases import Phase
from otel_adaprof.demo.processes import Children
from otel_adaprof.demo.stack import DemoStack

#: Share of the run's server spans that count as its slowest.
SLOWEST = 0.10
#: Seconds after the load for the last spans to be sent on.
DRAIN_S = 8.0
MAX_RATE, MAX_SECONDS = 100.0, 600.0


def watch_params() -> dict[str, Any]:
    """The catalog's ``watch-reflex`` params as JSON."""
    action = next(a for a in load_catalog() if a.name == "watch-reflex")
    return json.loads(action.params.model_dump_json(exclude_defaults=True))


def run(params: dict[str, Any], seconds: float, rate: float, tree: Path | None) -> dict[str, Any]:
    """Load one service under ``params``; its slowest server spans' samples by bucket."""
    env = {"ADAPROF_PROFILER": "off", "ADAPROF_PARAMS": json.dumps(params)}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with tempfile.TemporaryDirectory(prefix="adaprof-capcov-") as tmp, Children() as kids:
        stack = DemoStack(kids, workdir=tmp)
        stack.start_sink()
        try:
            port = stack.start_service("capcov", extra_env=env, key="capcov", cwd=tree)
            t0 = time.time()
            LoadGenerator(port, [Phase("load", 0.0, seconds, rate, False)]).run()
            time.sleep(DRAIN_S)
            kids.stop("capcov")
        finally:
            stack.stop_sink()
        spans = []
        for line in stack.spans_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("kind") != "SPAN_KIND_SERVER":
                continue
            start, end = int(row["startTimeUnixNano"]), int(row["endTimeUnixNano"])
            attrs = {a["key"]: a.get("value", {}) for a in row.get("attributes", [])}
            count = int(attrs.get("adaprof.sample_count", {}).get("intValue", "0"))
            spans.append((start / 1e9 - t0, (end - start) / 1e6, count))
    return {"spans": spans}


def buckets(spans: list[tuple[float, float, int]], seconds: float, width: float) -> dict[str, Any]:
    """The slowest tenth's cut (ms) and, per bucket, (slowest spans, those with samples)."""
    durations = sorted(ms for _t, ms, _n in spans)
    cut = durations[int((1.0 - SLOWEST) * (len(durations) - 1))] if durations else 0.0
    rows = []
    t = 0.0
    while t < seconds:
        slow = [n for at, ms, n in spans if t <= at < t + width and ms >= cut]
        rows.append({"from_s": t, "slowest": len(slow), "sampled": sum(1 for n in slow if n > 0)})
        t += width
    slow_all = [n for _t, ms, n in spans if ms >= cut]
    return {
        "server_spans": len(spans),
        "cut_ms": round(cut, 2),
        "slowest": len(slow_all),
        "sampled": sum(1 for n in slow_all if n > 0),
        "buckets": rows,
    }


def main(argv: list[str] | None = None) -> int:
    """Run and print markdown (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", default=None, help="ADAPROF_PARAMS JSON (default: watch-reflex)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--bucket", type=float, default=10.0, help="bucket width (s)")
    parser.add_argument("--tree", type=Path, default=None, help="run the service from this tree")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    if not (0 < args.rate <= MAX_RATE and 0 < args.seconds <= MAX_SECONDS and args.bucket > 0):
        parser.error(
            f"--rate in (0, {MAX_RATE:g}], --seconds in (0, {MAX_SECONDS:g}], --bucket > 0"
        )
    if args.tree is not None and not (args.tree / "otel_adaprof").is_dir():
        parser.error(f"--tree: {args.tree} holds no otel_adaprof package")
    params = json.loads(args.params) if args.params else watch_params()
    load_average = list(os.getloadavg())
    got = run(params, args.seconds, args.rate, args.tree)
    result = {
        "machine": machine_description(),
        "load_average_start": load_average,
        "command": "python bench/capture_coverage.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "params": params,
        "tree": str(args.tree) if args.tree else None,
        **buckets(got["spans"], args.seconds, args.bucket),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"slowest tenth: server spans over {result['cut_ms']} ms; "
        f"{result['sampled']} of {result['slowest']} carry samples"
    )
    print("| seconds | slowest | with samples |")
    print("|---|---:|---:|")
    for b in result["buckets"]:
        print(
            f"| {b['from_s']:g}–{b['from_s'] + args.bucket:g} | {b['slowest']} | {b['sampled']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

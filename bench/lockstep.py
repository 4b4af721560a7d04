"""Does a sampler whose period divides the request period read a biased profile?

The benchmark's load sends a request every ``1/rate`` seconds (10 req/s: every 100 ms).
py-spy samples every ``1/Hz`` seconds. When one period divides the other (50 Hz: five
samples a request period, 100 Hz: ten), each sample falls at the same offset into each
request, for as long as the two clocks keep step: a request shorter than that offset is
never sampled, a function that runs at other offsets never either. A rate that does not
divide the request period (49 Hz) moves the offset on at every sample. This is the
lockstep that system profilers avoid by sampling at 99 Hz rather than 100.

The script asks it of the demo's service (its shape from ``--shape``): one service under
one load (one phase, hot path on or off), and ``--segments`` py-spy runs of
``--segment-s`` seconds for every rate of ``--rates``, all rates running side by side in
each segment (the same requests, the same machine load); each segment's function shares
against the shape's truth, for uniform and for poisson arrivals in turn. For each
(arrivals, rate) it prints the median segment's L1, the L1 ideal sampling would have at
that segment's workload samples (``ground_truth.sampling_l1``), their ratio (the *excess*: 1 means
the samples read as well as independent draws), and the L1 of all segments pooled.

Usage::

    python bench/lockstep.py                      # ledger, 50/49 and 100/97 Hz, ~3 min
    python bench/lockstep.py --shape shop --rates 50,49 --segments 4 --json \\
        --out bench/output/lockstep_shop.json

It runs the service and py-spy on this machine (127.0.0.1 only); nothing else should run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _segment(
    kids: Any, folder: Path, pid: int, rates: list[int], seconds: int, tag: str
) -> dict[int, dict[str, float]]:
    """One segment: every rate's py-spy side by side; {rate: stacks}."""
    from otel_adaprof.demo.reference import start_py_spy
    from otel_adaprof.exporters.collapsed import parse_collapsed

    procs = {}
    for hz in rates:
        out = folder / f"raw-{tag}-{hz}.txt"
        procs[hz] = (start_py_spy(kids, f"py-spy-{tag}-{hz}", pid, hz, seconds, out), out)
    stacks: dict[int, dict[str, float]] = {}
    for hz, (proc, out) in procs.items():
        proc.wait(seconds + 30)
        stacks[hz] = parse_collapsed(out.read_text()) if out.exists() else {}
    return stacks


def run(
    rates: list[int],
    segments: int,
    segment_s: int,
    rate_rps: float,
    hot_path: bool,
    arrivals_modes: list[str],
    progress: bool = True,
) -> dict[str, Any]:
    """Run the experiment; the figures as a dict (see the module doc)."""
    from otel_adaprof.demo.ground_truth import (
        function_of,
        function_shares,
        l1_error,
        sampling_l1,
        truth_for,
    )
    from otel_adaprof.demo.loadgen import LoadGenerator
    from otel_adaprof.demo.phases import SHAPE, Phase
    from otel_adaprof.demo.processes import Children
    from otel_adaprof.demo.reference import start_plain_service

    truth = truth_for(hot_path)
    out: dict[str, Any] = {
        "shape": SHAPE.name,
        "rate_rps": rate_rps,
        "hot_path": hot_path,
        "segment_s": segment_s,
        "segments": segments,
        "truth": truth,
        "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="adaprof-lockstep-") as tmp, Children() as kids:
        folder = Path(tmp)
        proc, port = start_plain_service(kids, folder)
        for mode in arrivals_modes:
            length = segments * (segment_s + 1.0) + 3.0
            phase = Phase("hot_path" if hot_path else "steady", 0.0, length, rate_rps, hot_path)
            gen = LoadGenerator(port, [phase], arrivals=mode, seed=1)
            load = threading.Thread(target=gen.run, daemon=True)
            load.start()
            time.sleep(2.0)  # the load under way
            per_rate: dict[int, list[dict[str, float]]] = {hz: [] for hz in rates}
            for k in range(segments):
                got = _segment(kids, folder, proc.pid, rates, segment_s, f"{mode}-{k}")
                for hz, stacks in got.items():
                    per_rate[hz].append(stacks)
                if progress:
                    print(f"{mode}: segment {k + 1}/{segments} done", file=sys.stderr)
            load.join(length + 30)
            res: dict[str, Any] = {}
            for hz, segs in per_rate.items():
                rows = []
                pooled: dict[str, float] = {}
                for stacks in segs:
                    work = sum(n for s, n in stacks.items() if function_of(s))
                    shares = function_shares(stacks)
                    l1 = l1_error(truth, shares) if work else None
                    ideal = sampling_l1(work, truth)
                    rows.append(
                        {
                            "workload_samples": work,
                            "l1": None if l1 is None else round(l1, 4),
                            "ideal_l1": round(ideal, 4),
                            "excess": None if l1 is None else round(l1 / ideal, 3),
                            "shares": {f: round(v, 4) for f, v in shares.items()},
                        }
                    )
                    for s, n in stacks.items():
                        pooled[s] = pooled.get(s, 0.0) + n
                l1s = [r["l1"] for r in rows if r["l1"] is not None]
                excess = [r["excess"] for r in rows if r["excess"] is not None]
                total = sum(n for s, n in pooled.items() if function_of(s))
                res[str(hz)] = {
                    "segments": rows,
                    "median_l1": round(statistics.median(l1s), 4) if l1s else None,
                    "median_workload_samples": statistics.median(
                        r["workload_samples"] for r in rows
                    ),
                    "median_excess": round(statistics.median(excess), 3) if excess else None,
                    "pooled_workload_samples": total,
                    "pooled_l1": round(l1_error(truth, function_shares(pooled)), 4)
                    if total
                    else None,
                    "pooled_ideal_l1": round(sampling_l1(total, truth), 4),
                }
            out["results"][mode] = res
    return out


def table(result: dict[str, Any]) -> str:
    """The figures as markdown, one row per (arrivals, rate)."""
    lines = [
        f"{result['shape']}, {result['rate_rps']:g} req/s, hot path "
        f"{'on' if result['hot_path'] else 'off'}, {result['segments']} segments of "
        f"{result['segment_s']} s, every rate side by side",
        "",
        "| arrivals | py-spy Hz | workload samples (median segment) | L1 (median segment) "
        "| ideal L1 at that count | excess (median) | L1 pooled | ideal pooled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    from otel_adaprof.demo.ground_truth import sampling_l1

    for mode, res in result["results"].items():
        for hz, r in res.items():
            n = r["median_workload_samples"]
            lines.append(
                f"| {mode} | {hz} | {n:g} | {r['median_l1']} | "
                f"{round(sampling_l1(n, result['truth']), 4)} | {r['median_excess']} | "
                f"{r['pooled_l1']} | {r['pooled_ideal_l1']} |"
            )
    names = list(result["truth"])
    lines += [
        "",
        "Pooled function shares (all segments) against the truth:",
        "",
        "| arrivals | py-spy Hz | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
        "| truth | – | " + " | ".join(f"{result['truth'][f]:.3f}" for f in names) + " |",
    ]
    for mode, res in result["results"].items():
        for hz, r in res.items():
            pooled = pooled_shares(r["segments"])
            lines.append(
                f"| {mode} | {hz} | "
                + " | ".join(f"{pooled.get(f, 0.0):.3f}" for f in names)
                + " |"
            )
    return "\n".join(lines) + "\n"


def pooled_shares(segments: list[dict[str, Any]]) -> dict[str, float]:
    """Function shares of all ``segments`` together (each segment's shares weighted by
    its workload samples: the pooled counts' shares).

    >>> pooled_shares([{"workload_samples": 10, "shares": {"a": 1.0}},
    ...                {"workload_samples": 30, "shares": {"a": 0.5, "b": 0.5}}])
    {'a': 0.625, 'b': 0.375}
    """
    counts: dict[str, float] = {}
    for seg in segments:
        for f, share in seg["shares"].items():
            counts[f] = counts.get(f, 0.0) + share * seg["workload_samples"]
    total = sum(counts.values())
    return {f: round(c / total, 4) for f, c in counts.items()} if total else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="ledger", help="the demo service's shape")
    parser.add_argument(
        "--rates", default="50,49,100,97", help="py-spy rates (Hz), comma-separated"
    )
    parser.add_argument("--segments", type=int, default=6, help="segments per arrivals mode")
    parser.add_argument("--segment-s", type=int, default=10, help="seconds per segment")
    parser.add_argument("--rate-rps", type=float, default=10.0, help="requests per second")
    parser.add_argument("--hot-path", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--arrivals", default="uniform,poisson", help="comma-separated modes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    if not rates or min(rates) < 1 or args.segments < 1 or args.segment_s < 1:
        parser.error("--rates, --segments and --segment-s must be positive")
    os.environ["ADAPROF_DEMO_SHAPE"] = args.shape  # before the demo's modules import
    result = run(
        rates,
        args.segments,
        args.segment_s,
        args.rate_rps,
        args.hot_path,
        [m for m in args.arrivals.split(",") if m],
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

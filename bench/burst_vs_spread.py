"""Does a phase's profile suffer when its samples come in one burst rather than spread?

Adaptive takes a phase's samples in a burst after the change (3-15 s at 100 Hz) and then
watches; static profiling spreads them over the phase. If the service's work drifted
within a phase (request mix, caches), a burst would read a biased profile and more
samples would not mend it. This script asks that of static-100's own samples in
committed ``adaprof bench`` runs (its windows cover every phase evenly): for each phase
it compares, against the phase's truth (``ground_truth.GROUND_TRUTH``),

* ``burst``: ``k`` consecutive windows (every offset in the phase, median L1),
* ``spread``: ``k`` windows ``m`` apart, ``m`` = windows // ``k`` (every offset, median L1),
* ``iid``: the same number of samples drawn at random from the whole phase (median of
  ``--draws`` draws),

each with about the same number of samples. A burst as accurate as the iid draw means
the count, not the timing, sets a burst's error.

Usage::

    python bench/burst_vs_spread.py /work/runs/s34/w1 /work/runs/s34/w2 --windows 5
    python bench/burst_vs_spread.py RUN_WORKDIR --json --out bench/output/burst_vs_spread_s34.json

``RUN_WORKDIR`` is an ``adaprof bench --workdir`` folder (its ``adaprof.db`` and
``spans-static-100.jsonl``; the phase edges are the service's hot-path switches, the
last phase as long as the run's schedule makes it for ``--duration`` and
``--phase-scale``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_adaprof.demo.bench import BenchSettings  # noqa: E402
from otel_adaprof.demo.bench_figures import (  # noqa: E402
    Window,
    phase_switches,
    read_phase,
    reported_windows,
    windows_profile,
    windows_within,
)
from otel_adaprof.demo.ground_truth import GROUND_TRUTH  # noqa: E402
from otel_adaprof.demo.phases import schedule  # noqa: E402
from otel_adaprof.demo.stack import SEGMENT_S  # noqa: E402


def phase_edges(
    workdir: Path, config: str, settings: BenchSettings
) -> list[tuple[str, float, float]]:
    """``(phase, start, end)`` of each phase: from the service's hot-path switches, the
    last phase as long as the run's schedule makes it."""
    phases = schedule(settings.load_s, settings.rate_rps)
    starts = phase_switches(workdir / f"spans-{config}.jsonl")
    if len(starts) < len(phases):
        raise SystemExit(f"{workdir}: {len(starts)} hot-path switches, {len(phases)} phases")
    starts = starts[: len(phases)]
    ends = [*starts[1:], starts[-1] + phases[-1].duration_s]
    return [(p.name, a, b) for p, a, b in zip(phases, starts, ends, strict=True)]


def _l1(windows: list[Window], phase: str) -> tuple[float, float | None]:
    return read_phase(windows_profile(windows), GROUND_TRUTH[phase])


def _draw(profile: dict[str, float], n: int, rng: random.Random) -> dict[str, float]:
    items = [stack for stack, count in profile.items() for _ in range(int(count))]
    out: dict[str, float] = {}
    for stack in rng.sample(items, min(n, len(items))):
        out[stack] = out.get(stack, 0.0) + 1.0
    return out


def compare(
    windows: list[Window], phase: str, k: int, draws: int, rng: random.Random
) -> dict[str, Any] | None:
    """The three readings of one phase (module doc), or ``None`` if it has < 2k windows."""
    if len(windows) < 2 * k:
        return None
    step = max(1, len(windows) // k)
    bursts = [_l1(windows[i : i + k], phase) for i in range(len(windows) - k + 1)]
    spreads = [_l1(windows[i::step][:k], phase) for i in range(step)]
    burst_n = statistics.median(n for n, _ in bursts)
    whole = windows_profile(windows)
    iid = [read_phase(_draw(whole, int(burst_n), rng), GROUND_TRUTH[phase]) for _ in range(draws)]
    full_n, full_l1 = _l1(windows, phase)

    def med(rows: list[tuple[float, float | None]]) -> float | None:
        values = [v for _, v in rows if v is not None]  # None: no workload sample
        return round(statistics.median(values), 4) if values else None

    return {
        "windows": len(windows),
        "samples": full_n,
        "l1": full_l1,
        "burst_samples": burst_n,
        "burst_l1": med(bursts),
        "spread_samples": statistics.median(n for n, _ in spreads),
        "spread_l1": med(spreads),
        "iid_l1": med(iid),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdirs", nargs="+", type=Path, help="adaprof bench --workdir folders")
    ap.add_argument("--config", default="static-100", help="configuration whose samples to read")
    ap.add_argument("--windows", type=int, default=5, help="windows in a burst (3 s each)")
    ap.add_argument("--phase-scale", type=float, default=1.0, help="the runs' --phase-scale")
    ap.add_argument("--duration", type=float, default=240.0, help="the runs' --duration (s)")
    ap.add_argument("--draws", type=int, default=50, help="iid draws per phase")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.windows < 1 or args.draws < 1:
        ap.error("--windows and --draws must be at least 1")
    settings = BenchSettings(duration_s=args.duration, phase_scale=args.phase_scale)
    rng = random.Random(1)
    rows: list[dict[str, Any]] = []
    for wd in args.workdirs:
        db = wd / "adaprof.db"
        if not db.exists():
            ap.error(f"{wd}: no adaprof.db (not an adaprof bench --workdir)")
        windows = reported_windows(db, f"bench-{args.config}")
        for phase, start, end in phase_edges(wd, args.config, settings):
            # as the benchmark reads a phase: a window's samples may predate it by a
            # py-spy run (bench.py, windows_within)
            inside = windows_within(windows, start, end, SEGMENT_S)
            got = compare(inside, phase, args.windows, args.draws, rng)
            if got is not None:
                rows.append({"run": str(wd), "phase": phase, **got})
    doc = {"config": args.config, "burst_windows": args.windows, "phases": rows}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"{args.config}: a burst of {args.windows} windows against the same samples spread")
    print("| run | phase | samples (L1) | burst: samples, L1 | spread: samples, L1 | iid L1 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {Path(r['run']).name} | {r['phase']} | {r['samples']:.0f} ({r['l1']}) | "
            f"{r['burst_samples']:.0f}, {r['burst_l1']} | {r['spread_samples']:.0f}, "
            f"{r['spread_l1']} | {r['iid_l1']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

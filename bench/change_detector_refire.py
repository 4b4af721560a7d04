"""The change detector after it fired: is a second change soon after seen, and at what
price in false alarms? (``PROVISIONAL_SPREAD`` and ``PROVISIONAL_MEAN_PACE`` in
``otel_adaprof/instrumentation/observe/change_signals.py``)

The agent's CPU-per-request signal (its ``ChangeDetector``, the real one) is fed the
benchmark service's load, drawn request by request: 10 requests/s, each costing its
endpoint's CPU (40 % ``/catalog`` 6.25 ms, 40 % ``/price`` 8.75 ms, 20 % ``/checkout``
7.5 ms, +16.7 ms with the hot path on; ±10 %), read every 0.25 s as the agent's fast
loop reads its counters, at the watch's sensitivity (8 std). Four scenarios, each
``--seeds`` times:

* **second change** — 60 s steady, then the service's CPU per request rises 25 % (the
  detector fires: in a benchmark run such a rise, or a false alarm, came 13 s before the
  hot path), then 12 s later the hot path comes on: the delay from the hot path's onset
  to the next firing (missed: none in 60 s);
* **after a change** — 60 s steady, then 120 s of the hot path: firings after the first
  (the hot path triples the spread of CPU per request; a provisional spread too narrow
  fires again on noise);
* **end after a change** — 60 s of the hot path, its CPU per request then rises 60 %
  (it fires), the agent bursts twice at another profiling level, and 40 s after the
  rise the hot path ends: the delay to the next firing (the hot path's regime is wide:
  its end is about 1.5 of its standard deviations);
* **no change** — 180 s steady: firings at all.

Per variant: ``restart`` (the detector before session 30: a firing restarts the baseline,
16 observations blind; emulated by restarting the CUSUM after each firing, so the firing
observation itself is not counted again) and the provisional baseline at several
widths of its spread and paces of its level (:data:`VARIANTS`).

Usage::

    .venv/bin/python bench/change_detector_refire.py                       # about 5 s
    .venv/bin/python bench/change_detector_refire.py --seeds 200 --write   # committed, 25 s

``--write`` stores the figures in ``bench/output/change_detector_refire.json``;
``tests/agent/test_change_signals.py`` draws its load from :func:`mixed_load` (one copy).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from otel_adaprof.instrumentation.observe import change_signals
from otel_adaprof.instrumentation.observe.change_signals import ChangeDetector, Inputs

OUTPUT = Path(__file__).resolve().parent / "output" / "change_detector_refire.json"
#: The watch action's sensitivity (configs/actions.yaml).
THRESHOLD = 8.0
#: Seconds between the detector's readings (the agent's fast loop).
TICK_S = 0.25
#: CPU per request while the agent bursts at 100 Hz, against the watch (the demo
#: service: a fifth to a third more, docs/benchmarks.md "Agent overhead").
BURST_COST = 1.3
#: Provisional baselines compared: (``PROVISIONAL_SPREAD``, ``PROVISIONAL_MEAN_PACE``),
#: the committed one among them.
VARIANTS = ((2.0, 0.5), (2.5, 0.5), (3.0, 0.5), (4.0, 0.5), (2.5, 1.0), (3.0, 1.0))

Tick = tuple[float, int]


def mixed_load(rng: random.Random, seconds: float, hot: bool, rps: float = 10.0) -> list[Tick]:
    """Ticks (:data:`TICK_S`) of the benchmark's service: (CPU s, requests) each, every
    request's CPU by its endpoint (40 % /catalog 6.25 ms, 40 % /price 8.75 ms, 20 %
    /checkout 7.5 ms, +16.7 ms with the hot path; framework time included), arrivals at
    ``rps`` on average.

    >>> ticks = mixed_load(random.Random(1), 10.0, hot=False)
    >>> len(ticks), 0.0062 < sum(c for c, _ in ticks) / sum(n for _, n in ticks) < 0.0085
    (40, True)
    """
    ticks = []
    for _ in range(int(seconds / TICK_S)):
        n = sum(1 for _ in range(int(rps)) if rng.random() < rps * TICK_S / int(rps))
        cpu = 0.0
        for _ in range(n):
            u = rng.random()
            ms = 6.25 if u < 0.4 else 8.75 if u < 0.8 else 7.5 + (16.7 if hot else 0.0)
            cpu += ms * rng.uniform(0.9, 1.1) / 1000
        ticks.append((cpu, n))
    return ticks


def scaled(ticks: list[Tick], factor: float) -> list[Tick]:
    """The same ticks with every request's CPU times ``factor``."""
    return [(cpu * factor, n) for cpu, n in ticks]


def firings(
    ticks: list[Tick],
    restart: bool = False,
    origin_s: float = 0.0,
    levels: list[int] | None = None,
    carry: bool = True,
) -> list[float]:
    """Feed ``ticks`` to a fresh detector; the times of its CPU-per-request firings
    (seconds from ``origin_s``). ``restart``: the old behaviour (restart after a firing).
    ``levels``: the profiling level of each tick (the detector rebases when it changes,
    as the agent's fast loop does when a burst starts or ends). ``carry``: a level
    returned to takes the evidence of the level left (``ChangeDetector.carry_evidence``)."""
    d = ChangeDetector(carry_evidence=carry)
    d.level = levels[0] if levels else None
    cpu, reqs, out = 0.0, 0, []
    for i, (c, n) in enumerate(ticks):
        if levels is not None and levels[i] != d.level:
            d.rebase(levels[i])
        cpu, reqs = cpu + c, reqs + n
        fired = d.observe(Inputs(now=i * TICK_S, cpu_seconds=cpu, requests=reqs, spans=reqs),
                          threshold=THRESHOLD)  # fmt: skip
        if "cpu_per_request" in fired:
            out.append(i * TICK_S - origin_s)
            if restart:
                d.cpu.restart()
    return out


@contextmanager
def provisional(width: float, pace: float) -> Iterator[None]:
    """Run with ``PROVISIONAL_SPREAD`` = ``width`` and ``PROVISIONAL_MEAN_PACE`` = ``pace``."""
    kept = change_signals.PROVISIONAL_SPREAD, change_signals.PROVISIONAL_MEAN_PACE
    change_signals.PROVISIONAL_SPREAD, change_signals.PROVISIONAL_MEAN_PACE = width, pace
    try:
        yield
    finally:
        change_signals.PROVISIONAL_SPREAD, change_signals.PROVISIONAL_MEAN_PACE = kept


def second_change(seed: int, restart: bool) -> float | None:
    """Delay (s) from the hot path's onset, 12 s after a 25 % rise, to the next firing."""
    rng = random.Random(10_000 + seed)
    ticks = (
        mixed_load(rng, 60, hot=False)
        + scaled(mixed_load(rng, 12, hot=False), 1.25)
        + scaled(mixed_load(rng, 60, hot=True), 1.25)
    )
    late = [t for t in firings(ticks, restart, origin_s=72.0) if t >= 0]
    return late[0] if late else None


def end_after_a_change(seed: int, restart: bool) -> float | None:
    """Delay (s) from the hot path's end to the next firing, 40 s after a 60 % rise while
    it was on (a wide regime: its spread is three times the steady one's), the agent
    bursting at another profiling level twice in between (15 s and 6 s, CPU per request
    ×1.3), as in the 4× benchmark run of session 30."""
    rng = random.Random(30_000 + seed)
    parts = [
        (mixed_load(rng, 60, hot=True), 1.0, 0),
        (mixed_load(rng, 5, hot=True), 1.6, 0),
        (mixed_load(rng, 15, hot=True), 1.6 * BURST_COST, 10),
        (mixed_load(rng, 14, hot=True), 1.6, 0),
        (mixed_load(rng, 6, hot=True), 1.6 * BURST_COST, 10),
        (mixed_load(rng, 60, hot=False), 1.6, 0),
    ]
    ticks = [t for load, factor, _ in parts for t in scaled(load, factor)]
    levels = [level for load, _, level in parts for _ in load]
    late = [t for t in firings(ticks, restart, origin_s=100.0, levels=levels) if t >= 0]
    return late[0] if late else None


def after_a_change(seed: int, restart: bool) -> int:
    """Firings after the first in 120 s of the hot path that follows 60 s steady."""
    rng = random.Random(seed)
    ticks = mixed_load(rng, 60, hot=False) + mixed_load(rng, 120, hot=True)
    return max(0, len([t for t in firings(ticks, restart, origin_s=60.0) if t >= 0]) - 1)


def no_change(seed: int, restart: bool) -> int:
    """Firings in 180 s of the steady load."""
    return len(firings(mixed_load(random.Random(20_000 + seed), 180, hot=False), restart))


def variant(seeds: int, restart: bool) -> dict[str, Any]:
    """The three scenarios' figures for the detector as it is configured now."""
    delays = [second_change(s, restart) for s in range(seeds)]
    seen = sorted(d for d in delays if d is not None)
    ends = [end_after_a_change(s, restart) for s in range(seeds)]
    ended = sorted(d for d in ends if d is not None)
    extra = sum(after_a_change(s, restart) for s in range(seeds))
    quiet = sum(no_change(s, restart) for s in range(seeds))
    return {
        "second_change_seen": len(seen),
        "second_change_missed": seeds - len(seen),
        "second_change_delay_median_s": round(statistics.median(seen), 2) if seen else None,
        "second_change_delay_p90_s": round(seen[int(0.9 * (len(seen) - 1))], 2) if seen else None,
        "end_seen": len(ended),
        "end_missed": seeds - len(ended),
        "end_delay_median_s": round(statistics.median(ended), 2) if ended else None,
        "false_alarms_after_a_change": extra,
        "false_alarms_after_a_change_per_s": round(extra / (seeds * 120.0), 6),
        "false_alarms_no_change": quiet,
    }


def run(seeds: int) -> dict[str, Any]:
    """Every variant's figures, over ``seeds`` seeds."""
    out: dict[str, Any] = {
        "seeds": seeds,
        "threshold_std": THRESHOLD,
        "committed": {
            "width": change_signals.PROVISIONAL_SPREAD,
            "mean_pace": change_signals.PROVISIONAL_MEAN_PACE,
        },
    }
    out["restart"] = variant(seeds, restart=True)
    for width, pace in VARIANTS:
        with provisional(width, pace):
            out[f"width_{width}_pace_{pace}"] = variant(seeds, restart=False)
    return out


def seeded_cli(
    description: str,
    run: Callable[[int], dict[str, Any]],
    output: Path,
    table: Callable[[dict[str, Any]], None],
) -> None:
    """The command line of a seeded scenario bench: ``--seeds N`` (40), ``--write``
    (store the result in ``output``), ``--json`` (print it) or ``table(result)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=40, help="runs of each scenario (40)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--write", action="store_true", help=f"store in {output.name}")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    result = run(args.seeds)
    if args.write:
        output.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(f"{args.seeds} seeds a scenario, threshold {THRESHOLD:g} std")
    table(result)


def _table(result: dict[str, Any]) -> None:
    head = ("variant", "2nd seen", "median s", "p90 s", "end seen", "median s", "FA after",
            "FA none")  # fmt: skip
    row = "{:<22} {:>8} {:>9} {:>6} {:>8} {:>9} {:>9} {:>8}"
    print(row.format(*head))
    for name, v in result.items():
        if not isinstance(v, dict) or "end_seen" not in v:
            continue
        cells = (
            name,
            v["second_change_seen"],
            v["second_change_delay_median_s"] or "-",
            v["second_change_delay_p90_s"] or "-",
            v["end_seen"],
            v["end_delay_median_s"] or "-",
            v["false_alarms_after_a_change"],
            v["false_alarms_no_change"],
        )
        print(row.format(*cells))


def main() -> None:
    seeded_cli(__doc__.splitlines()[0], run, OUTPUT, _table)


if __name__ == "__main__":
    main()

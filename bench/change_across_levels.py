"""A change that starts at one profiling level and is still building when the agent
moves to another: does its evidence go with it? (``ChangeDetector.carry_evidence`` in
``otel_adaprof/instrumentation/observe/change_signals.py``)

The agent keeps a CPU-per-request baseline per profiling level (a burst at 100 Hz costs
the service about a third more per request than the watch). Before session 31 each
level kept only its own CUSUM evidence: in a benchmark run (session 30, seed 3) the
statistic stood at 8.0 of 8 in a 50 Hz learning window as the hot path came on, the
controller's next params went back to the watch, and the watch's baseline, with no
evidence yet, fired 6 s later (detection 15.5 s, 2.4x static-100's). Now a level
returned to takes the larger of its own evidence and the level left's
(:meth:`Cusum.take_evidence`).

The real detector is fed the benchmark service's load, drawn request by request
(``change_detector_refire.mixed_load``: 10 requests/s, the hot path adds 16.7 ms to one
request in five), read every 0.25 s, at the watch's sensitivity (8 std). Three
scenarios, each ``--seeds`` times, for both rules:

* **change in a burst** — 40 s at the watch, 24 s at 100 Hz (x1.3 per request), 30 s at
  the watch, then a burst at 100 Hz during which the hot path comes on (1-5 s into it);
  the burst ends 1-8 s after the onset (drawn), back to the watch: the delay from the
  onset to the first firing (missed: none in 60 s);
* **steady, switching** — 40 s at the watch, then 300 s of steady load with the level
  switching between the watch and 100 Hz every 3-12 s (drawn): firings (false alarms);
* **hot path, switching** — the same, the hot path on from the start of the switching
  (its wide regime): firings after the first.

Usage::

    .venv/bin/python bench/change_across_levels.py                       # about 2 s
    .venv/bin/python bench/change_across_levels.py --seeds 200 --write   # committed, 15 s

``--write`` stores the figures in ``bench/output/change_across_levels.json``; the tests
in ``tests/agent/test_change_signals.py`` draw from :func:`change_in_a_burst`.
"""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from change_detector_refire import (
    BURST_COST,
    THRESHOLD,
    TICK_S,
    Tick,
    firings,
    mixed_load,
    seeded_cli,
)

OUTPUT = Path(__file__).resolve().parent / "output" / "change_across_levels.json"
#: The profiling levels (the agent names a level by its sampling interval, ms).
WATCH, BURST = 0, 10


def _parts(
    rng: random.Random, parts: list[tuple[float, bool, int]]
) -> tuple[list[Tick], list[int]]:
    """Ticks and their levels: (seconds, hot path on, level) each, CPU per request x1.3
    at the burst's level."""
    ticks: list[Tick] = []
    levels: list[int] = []
    for seconds, hot, level in parts:
        factor = BURST_COST if level == BURST else 1.0
        load = mixed_load(rng, seconds, hot=hot)
        ticks += [(cpu * factor, n) for cpu, n in load]
        levels += [level] * len(load)
    return ticks, levels


#: The changes tried: the benchmark's hot path (+16.7 ms on one request in five, about
#: +45 % CPU per request), and the service's CPU per request times 1.15 and 1.25.
STEPS: tuple[str | float, ...] = ("hot_path", 1.15, 1.25)


def change_in_a_burst(
    seed: int, carry: bool, step: str | float = "hot_path"
) -> tuple[float | None, float]:
    """(delay from the change's onset to the first firing or None, seconds the burst ran
    on after the onset). ``step``: ``"hot_path"`` or a factor on every request's CPU."""
    rng = random.Random(40_000 + seed)
    lead = rng.uniform(1.0, 5.0)
    after = rng.uniform(1.0, 8.0)
    hot = step == "hot_path"
    factor = 1.0 if isinstance(step, str) else step
    steady = [(40.0, False, WATCH), (24.0, False, BURST), (30.0, False, WATCH)]
    ticks, levels = _parts(rng, [*steady, (lead, False, BURST)])
    changed, changed_levels = _parts(rng, [(after, hot, BURST), (60.0, hot, WATCH)])
    ticks += [(cpu * factor, n) for cpu, n in changed]
    levels += changed_levels
    onset = 94.0 + round(lead / TICK_S) * TICK_S
    seen = [t for t in firings(ticks, origin_s=onset, levels=levels, carry=carry) if t >= 0]
    return (seen[0] if seen else None), after


def _switching(rng: random.Random, seconds: float, hot: bool) -> list[tuple[float, bool, int]]:
    parts: list[tuple[float, bool, int]] = []
    level, left = BURST, seconds
    while left > 0:
        span = min(left, rng.uniform(3.0, 12.0))
        parts.append((span, hot, level))
        level = WATCH if level == BURST else BURST
        left -= span
    return parts


def steady_switching(seed: int, carry: bool) -> int:
    """Firings in 300 s of steady load with the level switching every 3-12 s."""
    rng = random.Random(50_000 + seed)
    ticks, levels = _parts(rng, [(40.0, False, WATCH), *_switching(rng, 300.0, hot=False)])
    return len(firings(ticks, levels=levels, carry=carry))


def hot_switching(seed: int, carry: bool) -> int:
    """Firings after the first in 300 s of the hot path, the level switching every 3-12 s."""
    rng = random.Random(60_000 + seed)
    ticks, levels = _parts(rng, [(40.0, False, WATCH), *_switching(rng, 300.0, hot=True)])
    seen = [t for t in firings(ticks, origin_s=40.0, levels=levels, carry=carry) if t >= 0]
    return max(0, len(seen) - 1)


def _delays(seeds: int, carry: bool, step: str | float) -> dict[str, Any]:
    runs = [change_in_a_burst(s, carry, step) for s in range(seeds)]
    seen = sorted(d for d, _ in runs if d is not None)
    # the runs where the burst ended before the change fired in it
    after = sorted(d for d, ran_on in runs if d is not None and d > ran_on)
    return {
        "seen": len(seen),
        "missed": seeds - len(seen),
        "delay_median_s": round(statistics.median(seen), 2) if seen else None,
        "delay_p90_s": round(seen[int(0.9 * (len(seen) - 1))], 2) if seen else None,
        "delay_max_s": round(seen[-1], 2) if seen else None,
        "seen_after_the_burst": len(after),
        "after_the_burst_delay_median_s": round(statistics.median(after), 2) if after else None,
    }


def rule(seeds: int, carry: bool) -> dict[str, Any]:
    """One rule's figures over ``seeds`` seeds."""
    return {
        "change_in_a_burst": {str(step): _delays(seeds, carry, step) for step in STEPS},
        "false_alarms_steady_switching": sum(steady_switching(s, carry) for s in range(seeds)),
        "false_alarms_hot_switching": sum(hot_switching(s, carry) for s in range(seeds)),
        "switching_seconds": seeds * 300.0,
    }


def run(seeds: int) -> dict[str, Any]:
    """Both rules' figures, over ``seeds`` seeds."""
    return {
        "seeds": seeds,
        "threshold_std": THRESHOLD,
        "per_level": rule(seeds, carry=False),
        "carried": rule(seeds, carry=True),
    }


def _table(result: dict[str, Any]) -> None:
    row = "{:<10} {:<9} {:>5} {:>9} {:>6} {:>6} {:>12} {:>9}"
    print(row.format("rule", "change", "seen", "median s", "p90 s", "max s", "after burst",
                     "median s"))  # fmt: skip
    for name in ("per_level", "carried"):
        for step, v in result[name]["change_in_a_burst"].items():
            cells = (name, step, v["seen"], v["delay_median_s"], v["delay_p90_s"],
                     v["delay_max_s"], v["seen_after_the_burst"],
                     v["after_the_burst_delay_median_s"] or "-")  # fmt: skip
            print(row.format(*cells))
    for name in ("per_level", "carried"):
        v = result[name]
        print(
            f"{name}: false alarms in {v['switching_seconds']:g} s of switching levels: "
            f"steady {v['false_alarms_steady_switching']}, "
            f"hot path (after its first firing) {v['false_alarms_hot_switching']}"
        )


def main() -> None:
    seeded_cli(__doc__.splitlines()[0], run, OUTPUT, _table)


if __name__ == "__main__":
    main()
